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
pub mod generate;
pub mod list;
pub mod live;
pub mod render;
pub mod rpc;

pub use generate::{generate, GenerateOptions, Generated};
pub use live::{apply, connect, endpoints, process_states, Applied, ProcessState};

use crate::app::{load_config, print, Failure, Global};
use crate::config::diag::Diagnostic;
use crate::config::Config;
use clap::{Args, Subcommand};
use rpc::RpcError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Folder names inside the supervisor folder (the 2010 tool's names).
pub const AVAILABLE_DIR: &str = "workers_available";
pub const ENABLED_DIR: &str = "workers_enabled";

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
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// `[supervisor]` asks for an insecure or impossible web UI.
    #[error("{0}")]
    WebUi(Diagnostic),
    /// A section name supervisord cannot use as a program name.
    #[error("section [{name}] cannot be a supervisord program: rename it using only letters, digits, `_`, `.` and `-`")]
    BadProgramName { name: String },
    /// A value supervisord would read differently from what loglines.cfg says.
    #[error("[{section}] {key} = `{value}`: {why}")]
    UnsafeValue {
        section: String,
        key: String,
        value: String,
        why: String,
    },
    /// The base template is unusable.
    #[error("the base template {} {problem}", path.display())]
    Base { path: PathBuf, problem: String },
    #[error("the socket path {} is {} bytes, longer than the 107 a unix socket may have; set `supervisor_dir` in [loglines] to a shorter folder", path.display(), path.as_os_str().len())]
    SocketPathTooLong { path: PathBuf },
    /// enable/disable of a name workers_available/ does not have.
    #[error("{}", unknown_program(name, available))]
    UnknownProgram {
        name: String,
        available: Vec<String>,
    },
    /// enable/disable/list before anything was generated.
    #[error("{} has no generated programs yet; run `loglines supervisor generate` first", dir.display())]
    NotGenerated { dir: PathBuf },
    /// The running binary cannot be found (for the programs' command lines).
    #[error(
        "cannot tell where the loglines binary is ({0}); pass --loglines-bin /path/to/loglines"
    )]
    NoBinary(std::io::Error),
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

fn unknown_program(name: &str, available: &[String]) -> String {
    if available.is_empty() {
        format!("no program `{name}`: workers_available/ is empty; add a process_*, worker_* or logger_* section and run `loglines supervisor generate`")
    } else {
        format!(
            "no program `{name}` in workers_available/; expected one of: {}",
            available.join(", ")
        )
    }
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
        move |error| SupervisorError::Io {
            action,
            path,
            error,
        }
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

/// After a change: apply it, or say how to. Returns what to tell the administrator.
fn after_change(
    cfg: &Config,
    layout: &Layout,
    apply_now: bool,
) -> Result<Vec<String>, SupervisorError> {
    let how = format!("to apply: {} (or add --apply)", layout.apply_commands());
    match connect(layout) {
        Err(RpcError::NotRunning { endpoint }) => Ok(vec![format!(
            "supervisord is not running (nothing answers on {endpoint}); start it with: {}",
            layout.start_command()
        )]),
        Err(e) if apply_now => Err(e.into()),
        Err(_) => Ok(vec![how]),
        Ok(ep) if apply_now => {
            let longest = cfg
                .sections
                .iter()
                .map(|s| s.program.stopwaitsecs)
                .max()
                .unwrap_or(10)
                .max(10);
            let applied = apply(&ep, Duration::from_secs(u64::from(longest) + 30))?;
            let mut lines = vec![applied.to_string()];
            lines.extend(applied.problems.iter().map(|p| format!("  {p}")));
            Ok(lines)
        }
        Ok(_) => Ok(vec![how]),
    }
}

/// Prints `lines`, one a line.
fn print_lines(lines: &[String]) -> Result<(), Failure> {
    lines.iter().try_for_each(|l| print(&format!("{l}\n")))
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
            print_lines(&done.lines)?;
            print_lines(&after_change(&cfg, &layout, *apply).map_err(fail)?)?;
        }
        Action::Enable { names, apply } | Action::Disable { names, apply } => {
            let enable = matches!(args.action, Action::Enable { .. });
            print_lines(&enabled::set_enabled(&layout, names, enable).map_err(fail)?)?;
            print_lines(&after_change(&cfg, &layout, *apply).map_err(fail)?)?;
        }
        Action::List => {
            let (rows, live) = list::list(&layout).map_err(fail)?;
            let state = match live {
                Ok(ep) => format!("answering on {ep}"),
                Err(RpcError::NotRunning { endpoint }) => format!(
                    "not running (nothing answers on {endpoint}); start it with: {}",
                    layout.start_command()
                ),
                Err(e) => format!("no states ({e})"),
            };
            print(&format!(
                "{}\nsupervisord: {state}\n",
                list::format_list(&rows)
            ))?;
        }
    }
    Ok(0)
}
