//! The process around every command: global options, loading the configuration, logging
//! set-up, and turning a command's result into one-line errors and an exit code.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a usage or configuration error. Every error is
//! printed as one line `loglines: <what went wrong and how to fix it>` (a configuration with
//! several problems prints one line per problem). Commands take [`Global`], [`Failure`] and
//! [`load_config`] from here, never from `cli`, so the command line only points down.

use crate::cli::Cli;
use crate::config::diag;
use crate::config::Config;
use crate::roles::StartError;
use clap::{Args, Parser};
use std::path::PathBuf;

/// Options every subcommand accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The configuration file [default: loglines.cfg].
    #[arg(long, short = 'c', global = true, env = "LOGLINES_CONFIG")]
    pub config: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// The configuration file read when `--config` (and LOGLINES_CONFIG) are not given.
pub const DEFAULT_CONFIG: &str = "loglines.cfg";

impl Global {
    /// The configuration file to read: `--config`, else LOGLINES_CONFIG, else `loglines.cfg`.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// True when the file was named (`--config` or LOGLINES_CONFIG), not the default: commands
    /// that can run without a configuration read one only when asked to.
    pub fn config_given(&self) -> bool {
        self.config.is_some()
    }
}

/// Why a command failed, deciding the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or configuration: exit 2. Each string is one line.
    Config(Vec<String>),
    /// Something went wrong while running: exit 1.
    Runtime(anyhow::Error),
    /// Standard output was closed by its reader (`loglines check | head`): the reader has what
    /// it wanted, so the command ends quietly, exit 0.
    OutputClosed,
}

/// Writes `text` to standard output, as the commands' `print!`. A closed pipe is
/// [`Failure::OutputClosed`], not an error (nor a panic, as `print!` would make it).
pub fn print(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(output_failure)
}

/// A failed write to standard output: [`Failure::OutputClosed`] when its reader went away.
pub fn output_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::OutputClosed
    } else {
        Failure::Runtime(anyhow::anyhow!("cannot write to standard output: {e}"))
    }
}

impl From<anyhow::Error> for Failure {
    /// A runtime failure, unless it comes from writing to a standard output its reader closed.
    fn from(e: anyhow::Error) -> Self {
        let closed = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if closed {
            Failure::OutputClosed
        } else {
            Failure::Runtime(e)
        }
    }
}

impl From<StartError> for Failure {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Config(lines) => Failure::Config(lines),
            StartError::Runtime(why) => Failure::Runtime(anyhow::anyhow!(why)),
            StartError::OutputClosed => Failure::OutputClosed,
        }
    }
}

/// Logging to stderr. Long-running roles log at info by default (what they do, outages,
/// recoveries: what supervisord's log should show); one-shot commands only warn.
fn init_logging(g: &Global, service: bool) {
    let level = match (g.verbose, g.quiet) {
        (0, 0) if service => "info",
        (0, 0) => "warn",
        (_, 1) => "error",
        (_, q) if q > 1 => "off",
        (1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(format!("loglines={level},{level}"));
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_secs()
        .try_init();
}

/// Loads the configuration, turning problems into a configuration failure. Warnings stay in
/// [`Config::warnings`] for the caller to show.
pub fn load_config(g: &Global) -> Result<Config, Failure> {
    match Config::load(&g.config_path()) {
        Ok(c) => Ok(c),
        Err(diags) => {
            let text = diag::render(&diags);
            Err(Failure::Config(text.lines().map(str::to_string).collect()))
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 2,
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(&cli.global, cli.command.is_service());
    match cli.dispatch() {
        Ok(code) => code,
        Err(Failure::Config(lines)) => {
            for l in lines {
                eprintln!("loglines: {l}");
            }
            2
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("loglines: {}", format!("{e:#}").replace('\n', " "));
            1
        }
        Err(Failure::OutputClosed) => 0,
    }
}
