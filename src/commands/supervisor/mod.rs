//! `loglines supervisor generate|enable|disable|list`: supervisord programs from loglines.cfg.
//!
//! `generate` writes `supervisord.conf` (from a base template) and one program file per
//! `process_*`, `worker_*` and `logger_*` section into `workers_available/`; enabled programs
//! are linked from `workers_enabled/`, which supervisord includes. `enable` and `disable` add
//! and remove those links; `list` shows both folders and, when supervisord answers, the state of
//! every process. Any of them applies its change to a running supervisord with `--apply`
//! (the XML-RPC equivalent of `supervisorctl reread` + `update`). See docs/supervisor.md.

pub mod enabled;
pub mod facts;
pub mod render;
pub mod rpc;

use crate::app::{load_config, Failure, Global};
use crate::config::diag::Diagnostic;
use crate::config::Config;
use clap::{Args, Subcommand};
use enabled::Entry;
use facts::ConfFacts;
use render::MARKER;
use rpc::{Endpoint, RpcError, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Folder names inside the supervisor folder (the 2010 tool's names).
pub const AVAILABLE_DIR: &str = "workers_available";
pub const ENABLED_DIR: &str = "workers_enabled";

/// How long a quick question to supervisord (its state, its processes) may take.
const QUICK: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct SupervisorArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Write supervisord.conf and one program file per process_/worker_/logger_ section.
    Generate {
        /// Base template for supervisord.conf [default: SUPERVISOR_DIR/supervisord.conf.base,
        /// or the shipped one when that does not exist].
        #[arg(long, value_name = "FILE")]
        base: Option<PathBuf>,
        /// The loglines binary the programs run [default: this binary].
        #[arg(long, value_name = "FILE")]
        loglines_bin: Option<PathBuf>,
        /// Apply the result to a running supervisord (reread + update).
        #[arg(long)]
        apply: bool,
    },
    /// Enable programs: link workers_enabled/NAME.conf to workers_available/NAME.conf.
    Enable {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Apply the change to a running supervisord (reread + update).
        #[arg(long)]
        apply: bool,
    },
    /// Disable programs: remove workers_enabled/NAME.conf.
    Disable {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Apply the change to a running supervisord: stop and remove them.
        #[arg(long)]
        apply: bool,
    },
    /// Show every program: available, enabled, and its processes' states when supervisord answers.
    List,
}

/// Why a supervisor command failed.
#[derive(Debug)]
pub enum SupervisorError {
    /// `[supervisor]` asks for an insecure or impossible web UI.
    WebUi(Diagnostic),
    /// A section name supervisord cannot use as a program name.
    BadProgramName {
        name: String,
    },
    /// A value supervisord would read differently from what loglines.cfg says.
    UnsafeValue {
        section: String,
        key: String,
        value: String,
        why: String,
    },
    /// The base template is unusable.
    Base {
        path: PathBuf,
        problem: String,
    },
    SocketPathTooLong {
        path: PathBuf,
    },
    /// enable/disable of a name workers_available/ does not have.
    UnknownProgram {
        name: String,
        available: Vec<String>,
    },
    /// enable/disable/list before anything was generated.
    NotGenerated {
        dir: PathBuf,
    },
    /// The running binary cannot be found (for the programs' command lines).
    NoBinary(std::io::Error),
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    Rpc(RpcError),
}

impl SupervisorError {
    /// Mistakes in the configuration or the command line (exit 2), as opposed to things going
    /// wrong while doing what was asked (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            SupervisorError::Io { .. } | SupervisorError::Rpc(_) | SupervisorError::NoBinary(_)
        )
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SupervisorError {
        let path = path.to_path_buf();
        move |source| SupervisorError::Io {
            action,
            path,
            source,
        }
    }
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::WebUi(d) => write!(f, "{d}"),
            SupervisorError::BadProgramName { name } => write!(
                f,
                "section [{name}] cannot be a supervisord program: rename it using only letters, digits, `_`, `.` and `-`"
            ),
            SupervisorError::UnsafeValue {
                section,
                key,
                value,
                why,
            } => write!(f, "[{section}] {key} = `{value}`: {why}"),
            SupervisorError::Base { path, problem } => {
                write!(f, "the base template {} {problem}", path.display())
            }
            SupervisorError::SocketPathTooLong { path } => write!(
                f,
                "the socket path {} is {} bytes, longer than the 107 a unix socket may have; set `supervisor_dir` in [loglines] to a shorter folder",
                path.display(),
                path.as_os_str().len()
            ),
            SupervisorError::UnknownProgram { name, available } => {
                if available.is_empty() {
                    write!(f, "no program `{name}`: workers_available/ is empty; add a process_*, worker_* or logger_* section and run `loglines supervisor generate`")
                } else {
                    write!(
                        f,
                        "no program `{name}` in workers_available/; expected one of: {}",
                        available.join(", ")
                    )
                }
            }
            SupervisorError::NotGenerated { dir } => write!(
                f,
                "{} has no generated programs yet; run `loglines supervisor generate` first",
                dir.display()
            ),
            SupervisorError::NoBinary(e) => write!(
                f,
                "cannot tell where the loglines binary is ({e}); pass --loglines-bin /path/to/loglines"
            ),
            SupervisorError::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            SupervisorError::Rpc(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SupervisorError {}

impl From<RpcError> for SupervisorError {
    fn from(e: RpcError) -> Self {
        SupervisorError::Rpc(e)
    }
}

/// Where everything lives inside the supervisor folder. The socket, pid and log paths are fixed
/// here once and filled into the base template, so that supervisord and supervisorctl cannot
/// disagree about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub base: PathBuf,
    pub available: PathBuf,
    pub enabled: PathBuf,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub logfile: PathBuf,
    /// Where supervisord puts the output of programs without a `stdout_logfile`.
    pub childlogdir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
            conf: dir.join("supervisord.conf"),
            base: dir.join("supervisord.conf.base"),
            available: dir.join(AVAILABLE_DIR),
            enabled: dir.join(ENABLED_DIR),
            socket: dir.join("supervisor.sock"),
            pidfile: dir.join("supervisord.pid"),
            logfile: dir.join("supervisord.log"),
            childlogdir: dir.join("logs"),
        }
    }

    pub fn of(cfg: &Config) -> Layout {
        Layout::new(&cfg.general.supervisor_dir)
    }

    pub fn available_file(&self, name: &str) -> PathBuf {
        self.available.join(format!("{name}.conf"))
    }

    pub fn enabled_file(&self, name: &str) -> PathBuf {
        self.enabled.join(format!("{name}.conf"))
    }

    /// What an enabled entry's symlink contains: relative, so the folder can be moved.
    pub fn link_target(name: &str) -> PathBuf {
        Path::new("..")
            .join(AVAILABLE_DIR)
            .join(format!("{name}.conf"))
    }

    /// The commands that apply a change by hand.
    pub fn apply_commands(&self) -> String {
        let c = render::shell_quote(&self.conf.to_string_lossy());
        format!("supervisorctl -c {c} reread && supervisorctl -c {c} update")
    }

    pub fn start_command(&self) -> String {
        format!(
            "supervisord -c {}",
            render::shell_quote(&self.conf.to_string_lossy())
        )
    }
}

/// Options of `generate`.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    pub base: Option<PathBuf>,
    /// The binary the programs run; None means the one running now.
    pub loglines_bin: Option<PathBuf>,
}

/// What `generate` did, one line per file or program, and what it warns about.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

/// The binary the programs run: the given one (made absolute), or this one, canonicalized so
/// that a relative or symlinked invocation still gives a path supervisord can run from anywhere.
fn loglines_binary(given: Option<&Path>) -> Result<PathBuf, SupervisorError> {
    match given {
        Some(p) if p.is_absolute() => Ok(p.to_path_buf()),
        Some(p) => std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(SupervisorError::NoBinary),
        None => std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(SupervisorError::NoBinary),
    }
}

/// Writes `content` to `path` unless it already holds exactly that; true if it wrote. Writes go
/// to a temporary file renamed into place, so supervisord never reads half a file.
fn write_if_changed(path: &Path, content: &str) -> Result<bool, SupervisorError> {
    if let Ok(old) = std::fs::read(path) {
        if old == content.as_bytes() {
            return Ok(false);
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).map_err(SupervisorError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(SupervisorError::io("write", path))?;
    Ok(true)
}

fn create_dir(p: &Path) -> Result<(), SupervisorError> {
    std::fs::create_dir_all(p).map_err(SupervisorError::io("create the folder", p))
}

fn is_generated(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(MARKER))
}

/// `loglines supervisor generate`. Everything is rendered and checked before the first file
/// is written, so a refused configuration leaves the folder as it was.
pub fn generate(cfg: &Config, opts: &GenerateOptions) -> Result<Generated, SupervisorError> {
    let layout = Layout::of(cfg);
    let bin = loglines_binary(opts.loglines_bin.as_deref())?;
    let mut out = Generated::default();
    let web = render::web_ui(cfg)?;
    out.warnings
        .extend(web.warnings.iter().map(ToString::to_string));
    if !bin.is_file() {
        out.warnings.push(format!(
            "warning: the loglines binary {} does not exist on this machine; the programs will not start until it does",
            bin.display()
        ));
    }

    let (base_text, base_path) = match &opts.base {
        Some(p) => (
            std::fs::read_to_string(p).map_err(SupervisorError::io("read the base template", p))?,
            p.clone(),
        ),
        None if layout.base.is_file() => (
            std::fs::read_to_string(&layout.base)
                .map_err(SupervisorError::io("read the base template", &layout.base))?,
            layout.base.clone(),
        ),
        None => (
            render::BUILTIN_BASE.to_string(),
            PathBuf::from("(shipped supervisord.conf.base)"),
        ),
    };
    let conf = render::supervisord_conf(&base_text, &base_path, &layout, cfg, &web)?;

    let mut sections: Vec<&crate::config::Section> = cfg.sections.iter().collect();
    sections.sort_by(|a, b| a.name.cmp(&b.name));
    let mut programs = Vec::new();
    for s in &sections {
        programs.push((s, render::program_file(cfg, s, &bin)?));
    }

    create_dir(&layout.dir)?;
    create_dir(&layout.available)?;
    create_dir(&layout.enabled)?;
    create_dir(&layout.childlogdir)?;
    // supervisord refuses to start a program whose log folder does not exist.
    for s in &sections {
        if let Some(parent) = s.program.stdout_logfile.as_deref().and_then(Path::parent) {
            create_dir(parent)?;
        }
    }

    let wrote = write_if_changed(&layout.conf, &conf)?;
    out.lines.push(format!(
        "{}: {}",
        layout.conf.display(),
        if wrote { "written" } else { "unchanged" }
    ));

    let names: BTreeSet<&str> = sections.iter().map(|s| s.name.as_str()).collect();
    for (s, text) in &programs {
        let avail = layout.available_file(&s.name);
        let link = layout.enabled_file(&s.name);
        // Decided before writing: a program workers_available/ already has keeps its state.
        let is_new = std::fs::symlink_metadata(&avail).is_err();
        let wrote = write_if_changed(&avail, text)?;
        let state = enabled::entry(&link);
        let mut what = if is_new {
            "new".to_string()
        } else if wrote {
            "updated".to_string()
        } else {
            "unchanged".to_string()
        };
        let enable = is_new
            || state == Entry::BrokenLink
            || (state == Entry::Copy
                && std::fs::read(&link).ok() != Some(text.clone().into_bytes()));
        if enable {
            let made = enabled::link_or_copy(&avail, &Layout::link_target(&s.name), &link)
                .map_err(SupervisorError::io("enable", &link))?;
            match made {
                enabled::Made::Link => what.push_str(", enabled"),
                enabled::Made::Copy(why) => {
                    what.push_str(&format!(", enabled as a copy (no symlink: {why})"))
                }
            }
        } else if state == Entry::Missing {
            what.push_str(", disabled (kept disabled)");
        } else {
            what.push_str(", enabled");
        }
        out.lines.push(format!("{}: {what}", s.name));
    }

    // Programs of sections that are gone: only files this generator wrote are removed.
    let mut gone = BTreeSet::new();
    for dir in [&layout.available, &layout.enabled] {
        for name in enabled::conf_names(dir).map_err(SupervisorError::io("read", dir))? {
            if !names.contains(name.as_str()) {
                gone.insert(name);
            }
        }
    }
    for name in gone {
        let avail = layout.available_file(&name);
        let link = layout.enabled_file(&name);
        let generated = is_generated(&avail);
        let link_state = enabled::entry(&link);
        let mut removed = false;
        if generated {
            enabled::remove_if_present(&avail).map_err(SupervisorError::io("remove", &avail))?;
            removed = true;
        }
        let link_is_ours = match link_state {
            Entry::Copy => is_generated(&link),
            Entry::Link | Entry::BrokenLink => {
                std::fs::read_link(&link).ok() == Some(Layout::link_target(&name))
                    && (generated || link_state == Entry::BrokenLink)
            }
            Entry::Missing => false,
        };
        if link_is_ours {
            enabled::remove_if_present(&link).map_err(SupervisorError::io("remove", &link))?;
            removed = true;
        }
        if removed {
            out.lines.push(format!(
                "{name}: removed (no longer a section of the configuration)"
            ));
        }
    }
    Ok(out)
}

/// `loglines supervisor enable`/`disable`: the change per name. Every name is checked before
/// anything changes.
pub fn set_enabled(
    layout: &Layout,
    names: &[String],
    enable: bool,
) -> Result<Vec<String>, SupervisorError> {
    if !layout.available.is_dir() {
        return Err(SupervisorError::NotGenerated {
            dir: layout.dir.clone(),
        });
    }
    let available = enabled::conf_names(&layout.available)
        .map_err(SupervisorError::io("read", &layout.available))?;
    for name in names {
        let known = available.contains(name)
            || (!enable && enabled::entry(&layout.enabled_file(name)) != Entry::Missing);
        if !known {
            return Err(SupervisorError::UnknownProgram {
                name: name.clone(),
                available: available.clone(),
            });
        }
    }
    let mut lines = Vec::new();
    create_dir(&layout.enabled)?;
    for name in names {
        let link = layout.enabled_file(name);
        let state = enabled::entry(&link);
        let line = if enable {
            if state == Entry::Link {
                format!("{name}: already enabled")
            } else {
                let made = enabled::link_or_copy(
                    &layout.available_file(name),
                    &Layout::link_target(name),
                    &link,
                )
                .map_err(SupervisorError::io("enable", &link))?;
                match made {
                    enabled::Made::Link => format!("{name}: enabled"),
                    enabled::Made::Copy(why) => {
                        format!("{name}: enabled as a copy (no symlink: {why})")
                    }
                }
            }
        } else if enabled::remove_if_present(&link).map_err(SupervisorError::io("remove", &link))? {
            format!("{name}: disabled")
        } else {
            format!("{name}: already disabled")
        };
        lines.push(line);
    }
    Ok(lines)
}

/// The ways to reach the supervisord of a generated configuration: its unix socket first (no
/// password needed), then its web UI port when the configuration holds a usable password.
pub fn endpoints(layout: &Layout) -> Vec<Endpoint> {
    let facts = std::fs::read_to_string(&layout.conf)
        .ok()
        .and_then(|t| ConfFacts::parse(&t).ok());
    match facts {
        Some(f) => {
            let mut v = vec![Endpoint::Unix(f.socket)];
            if let Some((addr, auth)) = f.inet {
                v.push(Endpoint::Inet { addr, auth });
            }
            v
        }
        None => vec![Endpoint::Unix(layout.socket.clone())],
    }
}

/// The first endpoint where supervisord answers. When none does, the most telling error: a
/// refusal (permissions, credentials) rather than "not running".
pub fn connect(layout: &Layout) -> Result<Endpoint, RpcError> {
    let mut first_err: Option<RpcError> = None;
    for ep in endpoints(layout) {
        match rpc::call(&ep, "supervisor.getState", &[], QUICK) {
            Ok(_) => return Ok(ep),
            Err(e) => {
                let better = match (&first_err, &e) {
                    (None, _) => true,
                    (Some(RpcError::NotRunning { .. }), RpcError::NotRunning { .. }) => false,
                    (Some(RpcError::NotRunning { .. }), _) => true,
                    _ => false,
                };
                if better {
                    first_err = Some(e);
                }
            }
        }
    }
    Err(first_err.unwrap_or(RpcError::NotRunning {
        endpoint: layout.socket.display().to_string(),
    }))
}

/// One process as supervisord reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    pub group: String,
    pub name: String,
    pub state: String,
    pub pid: i64,
    pub description: String,
}

/// `supervisor.getAllProcessInfo`.
pub fn process_states(ep: &Endpoint) -> Result<Vec<ProcessState>, RpcError> {
    let v = rpc::call(ep, "supervisor.getAllProcessInfo", &[], QUICK)?;
    let items = v.as_array().ok_or_else(|| RpcError::Malformed {
        endpoint: ep.to_string(),
        why: "getAllProcessInfo did not return an array".into(),
    })?;
    let s = |p: &Value, k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Ok(items
        .iter()
        .map(|p| ProcessState {
            group: s(p, "group"),
            name: s(p, "name"),
            state: s(p, "statename"),
            pid: p.get("pid").and_then(Value::as_int).unwrap_or(0),
            description: s(p, "description"),
        })
        .collect())
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Groups that could not be stopped and so were not removed.
    pub problems: Vec<String>,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty() {
            return write!(f, "supervisord already runs this configuration");
        }
        let mut parts = Vec::new();
        for (what, v) in [
            ("started", &self.added),
            ("restarted with the new settings", &self.changed),
            ("stopped and removed", &self.removed),
        ] {
            if !v.is_empty() {
                parts.push(format!("{what}: {}", v.join(", ")));
            }
        }
        write!(f, "applied: {}", parts.join("; "))
    }
}

/// Does what `supervisorctl reread` + `update` do: reload the configuration, stop and remove
/// programs that are gone, restart changed ones, add new ones. `stop_wait` bounds one stop.
pub fn apply(ep: &Endpoint, stop_wait: Duration) -> Result<Applied, RpcError> {
    let names = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    let r = rpc::call(ep, "supervisor.reloadConfig", &[], QUICK)?;
    let lists = r
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_array)
        .ok_or_else(|| RpcError::Malformed {
            endpoint: ep.to_string(),
            why: "reloadConfig did not return [[added, changed, removed]]".into(),
        })?;
    let mut out = Applied {
        added: names(lists.first()),
        changed: names(lists.get(1)),
        removed: names(lists.get(2)),
        problems: Vec::new(),
    };
    let stop = |g: &str| -> Result<bool, RpcError> {
        let r = rpc::call(
            ep,
            "supervisor.stopProcessGroup",
            &[Value::Str(g.into()), Value::Bool(true)],
            stop_wait,
        )?;
        Ok(!r
            .as_array()
            .unwrap_or(&[])
            .iter()
            .any(|x| x.get("status").and_then(Value::as_int) == Some(rpc::FAULT_FAILED)))
    };
    let group_arg = |g: &str| [Value::Str(g.to_string())];
    for g in &out.removed.clone() {
        if stop(g)? {
            rpc::call(ep, "supervisor.removeProcessGroup", &group_arg(g), QUICK)?;
        } else {
            out.problems
                .push(format!("{g}: could not be stopped, so it was not removed"));
        }
    }
    for g in &out.changed {
        stop(g)?;
        rpc::call(ep, "supervisor.removeProcessGroup", &group_arg(g), QUICK)?;
        rpc::call(ep, "supervisor.addProcessGroup", &group_arg(g), QUICK)?;
    }
    for g in &out.added {
        rpc::call(ep, "supervisor.addProcessGroup", &group_arg(g), QUICK)?;
    }
    Ok(out)
}

/// One row of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub available: bool,
    pub enabled: Entry,
    /// None when supervisord did not answer.
    pub processes: Option<Vec<ProcessState>>,
}

impl Row {
    /// The STATE column, one string per output line.
    pub fn state_lines(&self) -> Vec<String> {
        let Some(ps) = &self.processes else {
            return vec!["-".into()];
        };
        let mut lines: Vec<String> = match ps.as_slice() {
            [] if self.enabled.is_enabled() => {
                vec!["not loaded (apply to start it)".into()]
            }
            [] => vec!["-".into()],
            [p] if p.name == self.name => vec![p.state.clone()],
            many => many
                .iter()
                .map(|p| format!("{} {}", p.name, p.state))
                .collect(),
        };
        if !ps.is_empty() && !self.enabled.is_enabled() {
            lines[0].push_str(" (disabled: apply to stop it)");
        }
        lines
    }
}

/// Everything `list` shows, and how supervisord was (or was not) reached.
pub fn list(layout: &Layout) -> Result<(Vec<Row>, Result<Endpoint, RpcError>), SupervisorError> {
    if !layout.available.is_dir() {
        return Err(SupervisorError::NotGenerated {
            dir: layout.dir.clone(),
        });
    }
    let available: BTreeSet<String> = enabled::conf_names(&layout.available)
        .map_err(SupervisorError::io("read", &layout.available))?
        .into_iter()
        .collect();
    let enabled_names = enabled::conf_names(&layout.enabled)
        .map_err(SupervisorError::io("read", &layout.enabled))?;
    let live = connect(layout).and_then(|ep| process_states(&ep).map(|ps| (ep, ps)));
    let mut groups: BTreeMap<String, Vec<ProcessState>> = BTreeMap::new();
    if let Ok((_, ps)) = &live {
        for p in ps {
            groups.entry(p.group.clone()).or_default().push(p.clone());
        }
    }
    let mut names: BTreeSet<String> = available.clone();
    names.extend(enabled_names);
    names.extend(groups.keys().cloned());
    let rows = names
        .into_iter()
        .map(|name| Row {
            available: available.contains(&name),
            enabled: enabled::entry(&layout.enabled_file(&name)),
            processes: live
                .as_ref()
                .ok()
                .map(|_| groups.get(&name).cloned().unwrap_or_default()),
            name,
        })
        .collect();
    Ok((rows, live.map(|(ep, _)| ep)))
}

/// The `list` table.
pub fn format_list(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("PROGRAM".len());
    let mut out = format!(
        "{:<width$}  {:<9}  {:<11}  STATE\n",
        "PROGRAM", "AVAILABLE", "ENABLED"
    );
    for r in rows {
        let states = r.state_lines();
        out.push_str(&format!(
            "{:<width$}  {:<9}  {:<11}  {}\n",
            r.name,
            if r.available { "yes" } else { "no" },
            r.enabled.label(),
            states[0]
        ));
        for s in &states[1..] {
            out.push_str(&format!("{:<width$}  {:<9}  {:<11}  {s}\n", "", "", ""));
        }
    }
    out
}

/// After a change: apply it, or say how to.
fn after_change(cfg: &Config, layout: &Layout, apply_now: bool) -> Result<(), SupervisorError> {
    match connect(layout) {
        Err(RpcError::NotRunning { endpoint }) => {
            println!(
                "supervisord is not running (nothing answers on {endpoint}); start it with: {}",
                layout.start_command()
            );
            Ok(())
        }
        Err(e) if apply_now => Err(e.into()),
        Err(_) => {
            println!("to apply: {} (or add --apply)", layout.apply_commands());
            Ok(())
        }
        Ok(ep) if apply_now => {
            let longest = cfg
                .sections
                .iter()
                .map(|s| s.program.stopwaitsecs)
                .max()
                .unwrap_or(10)
                .max(10);
            let applied = apply(&ep, Duration::from_secs(u64::from(longest) + 30))?;
            println!("{applied}");
            for p in &applied.problems {
                println!("  {p}");
            }
            Ok(())
        }
        Ok(_) => {
            println!("to apply: {} (or add --apply)", layout.apply_commands());
            Ok(())
        }
    }
}

fn fail(e: SupervisorError) -> Failure {
    if e.is_usage() {
        Failure::Config(vec![e.to_string()])
    } else {
        Failure::Runtime(anyhow::Error::new(e))
    }
}

/// Entry point of `loglines supervisor ...`.
pub fn run(g: &Global, args: &SupervisorArgs) -> Result<i32, Failure> {
    let cfg = load_config(g)?;
    let layout = Layout::of(&cfg);
    match &args.action {
        Action::Generate {
            base,
            loglines_bin,
            apply,
        } => {
            // The generator states the web UI warnings itself, with what they mean here.
            for w in cfg
                .warnings
                .iter()
                .filter(|w| w.section.as_deref() != Some("supervisor"))
            {
                eprintln!("loglines: {w}");
            }
            let opts = GenerateOptions {
                base: base.clone(),
                loglines_bin: loglines_bin.clone(),
            };
            let done = generate(&cfg, &opts).map_err(fail)?;
            for w in &done.warnings {
                eprintln!("loglines: {w}");
            }
            for l in &done.lines {
                println!("{l}");
            }
            after_change(&cfg, &layout, *apply).map_err(fail)?;
        }
        Action::Enable { names, apply } | Action::Disable { names, apply } => {
            let enable = matches!(args.action, Action::Enable { .. });
            for l in set_enabled(&layout, names, enable).map_err(fail)? {
                println!("{l}");
            }
            after_change(&cfg, &layout, *apply).map_err(fail)?;
        }
        Action::List => {
            let (rows, live) = list(&layout).map_err(fail)?;
            print!("{}", format_list(&rows));
            match live {
                Ok(ep) => println!("\nsupervisord: answering on {ep}"),
                Err(RpcError::NotRunning { endpoint }) => println!(
                    "\nsupervisord: not running (nothing answers on {endpoint}); start it with: {}",
                    layout.start_command()
                ),
                Err(e) => println!("\nsupervisord: no states ({e})"),
            }
        }
    }
    Ok(0)
}
