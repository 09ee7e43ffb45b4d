//! `loglines test-plugin`: runs a plugin over sample log lines exactly as a worker would, without
//! sending anything, and shows per line what the plugin made of it.
//!
//! Each line is wrapped as the watcher wraps it (`{"service": ..., "logline": ...}`), both hooks
//! run with the worker section's configuration (from `--config`, `LOGLINES_CONFIG` or
//! `./loglines.cfg` as for every command; with none found, the plugin's own defaults apply), and
//! the output shows what `parseline` returned and then the full URL that would be sent, or why
//! not (not eligible, an error, or a URL the worker could not send and would dead-letter). The
//! exit code is 0 when no line raised an error and every event could be sent.

use crate::app::{load_config, Failure, Global};
use crate::config::Config;
use crate::plugin::library::openurl;
use crate::plugin::{Explained, Outcome, Plugin, PluginSpec};
use crate::roles::worker::tracker::unsendable;
use crate::roles::worker::Endpoint;
use crate::roles::Role;
use crate::util::compressed;
use crate::util::progress::Bar;
use crate::util::text;
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the URLs shown point when no worker section names an endpoint.
pub const DEFAULT_ENDPOINT: &str = crate::config::legacy::IRUS_TEST_ENDPOINT;
/// The service name lines are wrapped with when nothing else names one.
pub const DEFAULT_SERVICE: &str = "repo.example.ac.uk";
/// The worker section name the plugin sees when there is no configuration.
pub const DEFAULT_SECTION: &str = "worker_pirus2";
/// Files larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_BYTES: u64 = 1 << 20;

#[derive(Args, Debug, Clone)]
pub struct TestPluginArgs {
    /// The plugin, e.g. lua_plugins/irus.lua.
    pub plugin: PathBuf,
    /// A log file to run through it (`-` reads standard input).
    pub sample: PathBuf,
    /// The worker section whose settings the plugin gets (default: the worker section of
    /// --config whose repository_plugin is this plugin).
    #[arg(long)]
    pub section: Option<String>,
    /// The service name each line is wrapped with (default: the watcher's servicename in
    /// --config, else repo.example.ac.uk).
    #[arg(long)]
    pub service: Option<String>,
    /// Print one JSON object per line (and a final summary object) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What the run is set up with, resolved from the arguments and the configuration.
struct Setup {
    spec: PluginSpec,
    service: String,
    endpoint: String,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn setup(g: &Global, args: &TestPluginArgs, with_config: bool) -> Result<Setup, Failure> {
    if !args.plugin.is_file() {
        return Err(Failure::Config(vec![format!(
            "{} does not exist; pass the plugin file, e.g. lua_plugins/irus.lua",
            args.plugin.display()
        )]));
    }
    let standalone = || {
        let section = args.section.as_deref().unwrap_or(DEFAULT_SECTION);
        Setup {
            spec: PluginSpec::standalone(&args.plugin, section),
            service: args
                .service
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVICE.to_string()),
            endpoint: DEFAULT_ENDPOINT.to_string(),
        }
    };
    if !with_config {
        return Ok(standalone());
    }
    let cfg = load_config(g)?;
    // The file found by default (not named) may be for another plugin: trying a new plugin in
    // a deployment's folder runs it on its own defaults, and says so.
    if !g.config_given() && args.section.is_none() && pick_section(&cfg, &args.plugin).is_err() {
        log::warn!(
            "no worker section of {} uses {}; running it without configuration (pass --config or --section to give it one)",
            cfg.path.display(),
            args.plugin.display()
        );
        return Ok(standalone());
    }
    let section = match &args.section {
        Some(name) => match cfg.section(name).map(|s| &s.role) {
            Some(Role::Worker(_)) => name.clone(),
            Some(_) => {
                return Err(Failure::Config(vec![format!(
                    "[{name}] in {} is not a worker section; pass the section that runs the plugin (command = loglines worker)",
                    cfg.path.display()
                )]))
            }
            None => {
                return Err(Failure::Config(vec![format!(
                    "there is no section [{name}] in {}; pass a worker section name with --section",
                    cfg.path.display()
                )]))
            }
        },
        None => pick_section(&cfg, &args.plugin)?,
    };
    let mut spec =
        crate::roles::worker::plugin_spec(&cfg, &section).expect("checked to be a worker");
    // The plugin under test replaces the configured one (it may be a new version of it).
    spec.path = args.plugin.clone();
    let endpoint = match cfg.section(&section).map(|s| &s.role) {
        Some(Role::Worker(w)) => match &w.endpoint {
            Endpoint::Url(u) => u.clone(),
            Endpoint::DryRun => DEFAULT_ENDPOINT.to_string(),
        },
        _ => DEFAULT_ENDPOINT.to_string(),
    };
    let service = args.service.clone().unwrap_or_else(|| {
        cfg.sections
            .iter()
            .find_map(|s| match &s.role {
                Role::Watch(w) => Some(w.servicename.clone()),
                _ => None,
            })
            .unwrap_or_else(|| DEFAULT_SERVICE.to_string())
    });
    Ok(Setup {
        spec,
        service,
        endpoint,
    })
}

/// The worker section that runs `plugin`: exactly one must.
fn pick_section(cfg: &Config, plugin: &Path) -> Result<String, Failure> {
    let using: Vec<&str> = cfg
        .sections
        .iter()
        .filter(|s| matches!(&s.role, Role::Worker(w) if same_file(&w.plugin, plugin)))
        .map(|s| s.name.as_str())
        .collect();
    match using.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Failure::Config(vec![format!(
            "no worker section of {} uses {} as repository_plugin; pass --section NAME to choose whose settings it gets",
            cfg.path.display(),
            plugin.display()
        )])),
        many => Err(Failure::Config(vec![format!(
            "several worker sections use {}: {}; pass --section NAME to choose one",
            plugin.display(),
            many.iter()
                .map(|s| format!("[{s}]"))
                .collect::<Vec<_>>()
                .join(", ")
        )])),
    }
}

/// The message the watcher sends for a line: exactly the watcher's own wrapping, so a plugin
/// is tested on what it will receive.
pub fn wrap(service: &str, line: &str) -> String {
    crate::roles::watch::lines::wrap_text(service, line)
}

/// Counts for the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub send: u64,
    pub not_eligible: u64,
    pub errors: u64,
    /// Events the worker could not send (e.g. a URL too long for its HTTP client), which it
    /// would dead-letter.
    pub dead_letter: u64,
}

/// One line's result as `--json` prints it.
#[derive(Serialize)]
struct JsonLine<'a> {
    line: u64,
    logline: &'a str,
    parsed: serde_json::Value,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn parsed_json(ex: &Explained) -> serde_json::Value {
    match &ex.parsed {
        None => serde_json::Value::Null,
        Some(Ok(v)) => v.clone(),
        Some(Err(why)) => serde_json::Value::String(format!("<not shown as JSON: {why}>")),
    }
}

fn parsed_text(ex: &Explained) -> String {
    match &ex.parsed {
        None => "(parseline raised an error)".to_string(),
        Some(Ok(v)) => v.to_string(),
        Some(Err(why)) => format!("<not shown as JSON: {why}>"),
    }
}

/// Writes one line's result; returns which count it adds to.
fn report(
    out: &mut dyn Write,
    json: bool,
    n: u64,
    line: &str,
    ex: &Explained,
    endpoint: &str,
    counts: &mut Counts,
) -> std::io::Result<()> {
    counts.lines += 1;
    let (outcome, url, params, reason, error) = match &ex.outcome {
        Ok(Outcome::Eligible(p)) => {
            let url = openurl::openurl(endpoint, p);
            match unsendable(&url) {
                None => {
                    counts.send += 1;
                    ("send", Some(url), Some(p), None, None)
                }
                Some(why) => {
                    counts.dead_letter += 1;
                    ("dead_letter", Some(url), Some(p), Some(why), None)
                }
            }
        }
        Ok(Outcome::NotEligible) => {
            counts.not_eligible += 1;
            ("not_eligible", None, None, ex.reason.clone(), None)
        }
        Err(e) => {
            counts.errors += 1;
            ("error", None, None, None, Some(e.to_string()))
        }
    };
    if json {
        let record = JsonLine {
            line: n,
            logline: line,
            parsed: parsed_json(ex),
            outcome,
            url,
            params: params.map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect()
            }),
            reason,
            error,
        };
        serde_json::to_writer(&mut *out, &record)?;
        return writeln!(out);
    }
    writeln!(out, "line {n}: {}", text::shorten(line, 160))?;
    writeln!(out, "  parseline -> {}", parsed_text(ex))?;
    match (url, reason, error) {
        (Some(u), Some(why), _) => writeln!(
            out,
            "  would be dead-lettered: {why}\n  url {}",
            text::shorten(&u, 300)
        ),
        (Some(u), _, _) => writeln!(out, "  send {u}"),
        (_, Some(r), _) => writeln!(out, "  not eligible: {r}"),
        (_, _, Some(e)) => writeln!(out, "  error: {e}"),
        _ => writeln!(out, "  not eligible"),
    }
}

/// Runs `plugin` over every line of `input`, writing results to `out`.
pub fn run_lines(
    plugin: &mut Plugin,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    service: &str,
    endpoint: &str,
    json: bool,
    progress: Option<&Bar>,
) -> anyhow::Result<(Counts, f64)> {
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .context("reading the sample log")?;
        if n == 0 {
            break;
        }
        if let Some(p) = progress {
            p.advance(n as u64);
        }
        let mut bytes = &buf[..];
        if let Some(b) = bytes.strip_suffix(b"\n") {
            bytes = b;
        }
        if let Some(b) = bytes.strip_suffix(b"\r") {
            bytes = b;
        }
        let line = String::from_utf8_lossy(bytes);
        let explained = plugin.explain(&wrap(service, &line));
        report(
            out,
            json,
            counts.lines + 1,
            &line,
            &explained,
            endpoint,
            &mut counts,
        )
        .context("writing the results")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        counts.lines as f64 / secs
    } else {
        0.0
    };
    Ok((counts, rate))
}

fn summary(out: &mut dyn Write, json: bool, c: Counts, rate: f64) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({"summary": {
            "lines": c.lines,
            "send": c.send,
            "not_eligible": c.not_eligible,
            "errors": c.errors,
            "dead_letter": c.dead_letter,
            "lines_per_second": rate.round() as u64,
        }});
        return writeln!(out, "{v}");
    }
    let dead = if c.dead_letter > 0 {
        format!(", {} would be dead-lettered", c.dead_letter)
    } else {
        String::new()
    };
    writeln!(
        out,
        "\n{} lines: {} would send, {} not eligible, {} errors{dead}; {:.0} lines/s",
        c.lines, c.send, c.not_eligible, c.errors, rate
    )
}

/// `loglines test-plugin`.
pub fn run(g: &Global, args: &TestPluginArgs) -> Result<i32, Failure> {
    // As every command: --config, LOGLINES_CONFIG, else ./loglines.cfg when there is one.
    let with_config = g.config_given() || g.config_path().is_file();
    let s = setup(g, args, with_config)?;
    let mut plugin = Plugin::load(s.spec.clone()).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot load {}: {e}",
            args.plugin.display()
        ))
    })?;

    let (mut input, progress): (Box<dyn BufRead>, Option<Bar>) = if args.sample == Path::new("-") {
        (Box::new(BufReader::new(std::io::stdin())), None)
    } else {
        let f = std::fs::File::open(&args.sample)
            .and_then(|f| compressed::open_text(f, &args.sample))
            .map_err(|e| {
                Failure::Config(vec![format!(
                    "cannot read the sample log {}: {e}; pass a readable log file (or - for standard input)",
                    args.sample.display()
                )])
            })?;
        // A file, or for a compressed one the pipe it is decoded into.
        let bar = Bar::over(f.as_fd(), PROGRESS_BYTES);
        (Box::new(BufReader::with_capacity(1 << 16, f)), bar)
    };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (counts, rate) = run_lines(
        &mut plugin,
        &mut input,
        &mut out,
        &s.service,
        &s.endpoint,
        args.json,
        progress.as_ref(),
    )?;
    if let Some(p) = progress {
        p.finish();
    }
    summary(&mut out, args.json, counts, rate).context("writing the summary")?;
    out.flush().context("writing the results")?;
    crate::util::compressed::read_whole().map_err(Failure::Runtime)?;
    Ok(if counts.errors > 0 || counts.dead_letter > 0 {
        1
    } else {
        0
    })
}
