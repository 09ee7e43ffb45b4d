//! `loglines check`: validate the configuration and show what it sets up.

use crate::app::{load_config, print, Failure, Global};
use crate::config::diag::{Diagnostic, Severity};
use crate::config::Config;
use crate::roles::worker::Endpoint;
use crate::roles::Role;
use crate::util::private;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Who writes and who reads each queue, by section name (notices marked).
#[derive(Debug, Default)]
pub struct QueueUse {
    pub writers: Vec<String>,
    pub readers: Vec<String>,
}

pub fn queue_use(cfg: &Config) -> BTreeMap<String, QueueUse> {
    let name = |i: usize| cfg.sections[i].name.clone();
    crate::config::graph::queue_use(&cfg.sections)
        .into_iter()
        .map(|(q, u)| {
            let writers = u
                .writers
                .into_iter()
                .map(|(i, notices)| match notices {
                    true => format!("{} (notices)", name(i)),
                    false => name(i),
                })
                .collect();
            let readers = u.readers.into_iter().map(name).collect();
            (q, QueueUse { writers, readers })
        })
        .collect()
}

/// Warnings about the queue graph: a queue written but never read fills up forever; one read
/// but never written is fine only if an external program pushes to it.
pub fn queue_warnings(cfg: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (q, u) in queue_use(cfg) {
        if u.readers.is_empty() {
            out.push(Diagnostic::warning(
                &cfg.path,
                None,
                format!("queue `{q}` is written by {} but read by no section; it will grow until something takes from it", u.writers.join(", ")),
            ));
        }
        if u.writers.is_empty() {
            out.push(Diagnostic::warning(
                &cfg.path,
                None,
                format!("queue `{q}` is read by {} but written by no section; fine only if another program pushes to it", u.readers.join(", ")),
            ));
        }
    }
    out
}

/// Warnings about files every user of the machine can read although they hold client
/// addresses: the file loggers' logs and the dead letters of `loglines run`. loglines creates
/// them readable by owner and group only; older ones, or ones made by hand, may not be.
pub fn privacy_warnings(cfg: &Config) -> Vec<Diagnostic> {
    let mut files: Vec<(Option<&str>, std::path::PathBuf)> = cfg
        .sections
        .iter()
        .filter_map(|s| match &s.role {
            Role::FileLog(f) => Some((Some(s.name.as_str()), f.logfile.clone())),
            _ => None,
        })
        .collect();
    if let Ok(dir) = std::fs::read_dir(cfg.general.dead_letter_dir()) {
        let mut dead: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        dead.sort();
        files.extend(dead.into_iter().map(|p| (None, p)));
    }
    files
        .into_iter()
        .filter(|(_, p)| private::readable_by_others(p))
        .map(|(section, p)| {
            let d = Diagnostic::warning(
                &cfg.path,
                None,
                format!(
                    "{} can be read by every user of this machine, and it holds client IP addresses (personal data); run `chmod o-r {}`",
                    p.display(),
                    p.display()
                ),
            );
            match section {
                Some(s) => d.in_section(s),
                None => d,
            }
        })
        .collect()
}

/// What a watcher follows: its file, or its list with what each glob matches now.
fn watched(w: &crate::roles::watch::WatchSettings) -> String {
    use crate::roles::watch::files::Entry;
    let entries = &w.logfiles.entries;
    if w.logfiles.single().is_some() || entries.is_empty() {
        return format!("{} -> {}", w.logfile.display(), w.pushto);
    }
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.path().display().to_string())
        .collect();
    let mut out = format!("{} -> {}", names.join(", "), w.pushto);
    let now = w.logfiles.matching();
    for e in entries.iter().filter(|e| matches!(e, Entry::Glob { .. })) {
        let found: Vec<String> = e.of(&now).iter().map(|p| p.display().to_string()).collect();
        let _ = match found.len() {
            0 => write!(out, "\n{:40}{} matches no file now", "", e.path().display()),
            n => write!(
                out,
                "\n{:40}{} matches {} now: {}",
                "",
                e.path().display(),
                if n == 1 {
                    "1 file".to_string()
                } else {
                    format!("{n} files")
                },
                found.join(", ")
            ),
        };
    }
    for s in &now.skipped {
        let _ = write!(
            out,
            "\n{:40}not followed: {}: {}",
            "",
            s.path.display(),
            s.why
        );
    }
    out
}

/// A human-readable description of the configuration.
pub fn describe(cfg: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} role sections",
        cfg.path.display(),
        cfg.sections.len()
    );
    let _ = writeln!(out, "\nSections by role:");
    for s in &cfg.sections {
        let procs = if s.program.numprocs > 1 {
            format!(" (x{})", s.program.numprocs)
        } else {
            String::new()
        };
        let what = match &s.role {
            Role::Watch(w) => watched(w),
            Role::Broker(b) => format!("{} -> {}", b.listento, b.fanout.join(", ")),
            Role::Worker(w) => {
                let to = match &w.endpoint {
                    Endpoint::Url(u) => crate::util::text::redact_userinfo(u),
                    Endpoint::DryRun => "(dry run: printed)".into(),
                };
                let mut t = format!("{} -> {} via {}", w.listento, to, rel(cfg, &w.plugin));
                if w.concurrency > 1 {
                    let _ = write!(t, "; {} requests in flight", w.concurrency);
                    if s.batch_size < w.concurrency {
                        let _ = write!(t, " (at most batch_size = {})", s.batch_size);
                    }
                }
                if let Some(q) = &w.success_queue {
                    let _ = write!(t, "; sent -> {q}");
                }
                if let Some(q) = &w.other_queue {
                    let _ = write!(t, "; not eligible -> {q}");
                }
                t
            }
            Role::FileLog(f) => format!("{} -> {}", f.listento, f.logfile.display()),
            Role::Process => s.program.command.clone(),
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<28} {}",
            s.role.name(),
            format!("[{}]{procs}", s.name),
            what
        );
    }
    let uses = queue_use(cfg);
    if !uses.is_empty() {
        let _ = writeln!(out, "\nQueues:");
        for (q, u) in &uses {
            let w = if u.writers.is_empty() {
                "(nobody)".to_string()
            } else {
                u.writers.join(", ")
            };
            let r = if u.readers.is_empty() {
                "(nobody)".to_string()
            } else {
                u.readers.join(", ")
            };
            let _ = writeln!(out, "  {q:<16} written by {w}; read by {r}");
        }
    }
    out
}

/// How long `check` waits for each Redis server: it must stay quick when one is down.
const REDIS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Connects to each Redis section the roles use and reports its version or why it cannot be
/// reached. Only informative: `loglines run` (embedded queues) needs no Redis.
pub fn redis_report(cfg: &Config) -> String {
    let mut used: Vec<&str> = cfg
        .sections
        .iter()
        .filter(|s| !matches!(s.role, Role::Process))
        .map(|s| s.redis.as_str())
        .collect();
    used.sort();
    used.dedup();
    let mut out = String::new();
    if used.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nRedis (distributed mode only; `loglines run` needs none):"
    );
    for name in used {
        let Some(settings) = cfg.redis.get(name) else {
            continue;
        };
        let shutdown = crate::util::shutdown::Shutdown::new();
        match crate::queue::redis::RedisTransport::connect_within(
            settings,
            shutdown,
            REDIS_PROBE_TIMEOUT,
        ) {
            Ok(t) => {
                let _ = writeln!(
                    out,
                    "  [{name}] redis {} at {}",
                    t.version(),
                    settings.display()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  [{name}] warning: {e}");
            }
        }
    }
    out
}

fn rel(cfg: &Config, p: &std::path::Path) -> String {
    p.strip_prefix(&cfg.dir).unwrap_or(p).display().to_string()
}

pub fn run(g: &Global) -> Result<i32, Failure> {
    let cfg = load_config(g)?;
    print(&describe(&cfg))?;
    let mut warnings = cfg.warnings.clone();
    warnings.extend(queue_warnings(&cfg));
    warnings.extend(privacy_warnings(&cfg));
    if !warnings.is_empty() {
        print("\nWarnings:\n")?;
        for w in &warnings {
            debug_assert_eq!(w.severity, Severity::Warning);
            print(&format!("  {w}\n"))?;
        }
    }
    print(&redis_report(&cfg))?;
    let (report, problems) = plugin_report(&cfg);
    print(&report)?;
    if !problems.is_empty() {
        return Err(Failure::Config(problems));
    }
    print("\nconfiguration is valid\n")?;
    Ok(0)
}

/// Loads every worker's plugin (running its top-level code and `init` with this
/// configuration), so that a plugin that would fail on the first message fails here instead.
/// Returns the report and one line per plugin that cannot be loaded.
pub fn plugin_report(cfg: &Config) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut problems = Vec::new();
    let workers: Vec<&str> = cfg
        .sections
        .iter()
        .filter(|s| matches!(s.role, Role::Worker(_)))
        .map(|s| s.name.as_str())
        .collect();
    if workers.is_empty() {
        return (out, problems);
    }
    let _ = writeln!(out, "\nPlugins:");
    for name in workers {
        let Some(spec) = crate::roles::worker::plugin_spec(cfg, name) else {
            continue;
        };
        let shown = rel(cfg, &spec.path);
        match crate::plugin::Plugin::load(spec) {
            Ok(p) => {
                let _ = writeln!(
                    out,
                    "  [{name}] {shown}: loaded ({} KiB)",
                    p.used_memory() / 1024
                );
            }
            Err(crate::plugin::PluginError::Setting(e)) => {
                let _ = writeln!(out, "  [{name}] {shown}: cannot be loaded");
                // On the line of the plugin's own key, as loglines' keys are reported.
                let d = Diagnostic::error(
                    &cfg.path,
                    e.line,
                    format!("{} (read by {shown}, the plugin of [{name}])", e.message),
                )
                .in_section(&e.section)
                .at_key(&e.key);
                problems.push(d.to_string());
            }
            Err(e) => {
                let _ = writeln!(out, "  [{name}] {shown}: cannot be loaded");
                // Where the plugin is named, as every configuration problem says where.
                let line = cfg
                    .raw
                    .section(name)
                    .and_then(|s| s.entry("repository_plugin"))
                    .map(|e| e.line);
                let d =
                    Diagnostic::error(&cfg.path, line, format!("{shown} cannot be loaded: {e}"))
                        .in_section(name)
                        .at_key("repository_plugin");
                problems.push(d.to_string());
            }
        }
    }
    (out, problems)
}
