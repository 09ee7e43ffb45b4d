//! The command line: argument parsing, logging set-up, and one-line errors with exit codes.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a usage or configuration error. Every error is
//! printed as one line `loglines: <what went wrong and how to fix it>` (a configuration with
//! several problems prints one line per problem).

use crate::check;
use crate::config::Config;
use crate::diag;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "loglines",
    version,
    about = "Turns repository access logs into COUNTER usage events for the IRUS tracker"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "LOGLINES_CONFIG",
        default_value = "loglines.cfg"
    )]
    pub config: PathBuf,
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the configuration and show what it sets up.
    Check,
    /// Queue lengths, in-flight messages, dead letters and live consumers.
    Status(crate::status::StatusArgs),
    /// Inspect and repair one queue.
    Queue(crate::queuecmd::QueueArgs),
    /// Follow a section's log file and push its lines to its queue (the watcher role).
    Watch {
        /// The `logger_*` section with `command = loglines watch`.
        #[arg(long)]
        section: String,
    },
    /// Push lines from standard input as that section's watcher would (piped logs, replays).
    Push {
        /// The `logger_*` section with `command = loglines watch` whose queue and service
        /// name to use.
        #[arg(long)]
        section: String,
    },
    /// Generate, enable, disable and list supervisord programs (docs/supervisor.md).
    Supervisor(crate::supervisor::SupervisorArgs),
    /// Run a broker section: copy each message to every fan-out queue (over Redis).
    Broker(RoleArgs),
    /// Run a worker section: the Lua plugin on each message, events to the tracker (over Redis).
    Worker(RoleArgs),
    /// Run a file-logger section: append each message's log line to a file (over Redis).
    Filelog(RoleArgs),
    /// Run every section of the file as threads of one process, no Redis needed.
    Run(crate::run::RunArgs),
    /// Run a plugin over sample log lines and show what it would send (nothing is sent).
    TestPlugin(crate::testplugin::TestPluginArgs),
}

/// Which section a role process runs, and which of its processes this is.
#[derive(Args, Debug, Clone)]
pub struct RoleArgs {
    /// The section of the configuration file to run.
    #[arg(long)]
    pub section: String,
    /// This process's number among the section's `numprocs` (supervisord's %(process_num)s);
    /// with the host name and section it names this consumer's in-flight list.
    #[arg(long, default_value_t = 0)]
    pub process_num: u32,
}

/// Why a command failed, deciding the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or configuration: exit 2. Each string is one line.
    Config(Vec<String>),
    /// Something went wrong while running: exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
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

/// Loads the configuration, turning problems into a configuration failure and printing
/// warnings to stderr.
pub fn load_config(g: &Global) -> Result<Config, Failure> {
    match Config::load(&g.config) {
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
    let service = matches!(
        cli.command,
        Command::Broker(_)
            | Command::Worker(_)
            | Command::Filelog(_)
            | Command::Run(_)
            | Command::Watch { .. }
            | Command::Push { .. }
    );
    init_logging(&cli.global, service);
    let result = match &cli.command {
        Command::Check => check::run(&cli.global),
        Command::Status(a) => crate::status::run(&cli.global, a),
        Command::Queue(a) => crate::queuecmd::run(&cli.global, a),
        Command::Watch { section } => crate::roles::run_watch(&cli.global, section, false),
        Command::Push { section } => crate::roles::run_watch(&cli.global, section, true),
        Command::Supervisor(args) => crate::supervisor::run(&cli.global, args),
        Command::Broker(a) => {
            crate::roles::run_consumer_role(&cli.global, "broker", &a.section, a.process_num)
        }
        Command::Worker(a) => {
            crate::roles::run_consumer_role(&cli.global, "worker", &a.section, a.process_num)
        }
        Command::Filelog(a) => {
            crate::roles::run_consumer_role(&cli.global, "filelog", &a.section, a.process_num)
        }
        Command::Run(a) => crate::run::run(&cli.global, a),
        Command::TestPlugin(a) => crate::testplugin::run(&cli.global, a),
    };
    match result {
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
    }
}
