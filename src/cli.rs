//! The command line: the clap types of every subcommand, and the dispatch to the module that
//! runs it. Nothing else lives here; set-up, errors and exit codes are in `app`.

use crate::app::{load_config, Failure, Global};
use crate::commands;
use crate::roles::{self, RoleName};
use clap::{Args, Parser, Subcommand};

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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the configuration and show what it sets up.
    Check,
    /// Queue lengths, in-flight messages, dead letters and live consumers.
    Status(commands::status::StatusArgs),
    /// Inspect and repair one queue.
    Queue(commands::queue::QueueArgs),
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
    Supervisor(commands::supervisor::SupervisorArgs),
    /// Run a broker section: copy each message to every fan-out queue (over Redis).
    Broker(RoleArgs),
    /// Run a worker section: the Lua plugin on each message, events to the tracker (over Redis).
    Worker(RoleArgs),
    /// Run a file-logger section: append each message's log line to a file (over Redis).
    Filelog(RoleArgs),
    /// Run every section of the file as threads of one process, no Redis needed.
    Run(commands::run::RunArgs),
    /// Run a plugin over sample log lines and show what it would send (nothing is sent).
    TestPlugin(commands::test_plugin::TestPluginArgs),
    /// Write the loglines equivalent of a 2010 loglines.cfg to standard output, comments kept.
    Migrate(commands::migrate::MigrateArgs),
    /// Write a starting loglines.cfg and the shipped plugins (lua_plugins/) into a folder.
    Init(commands::init::InitArgs),
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

impl Command {
    /// True for the commands that run until stopped (they log at info by default).
    pub fn is_service(&self) -> bool {
        matches!(
            self,
            Command::Broker(_)
                | Command::Worker(_)
                | Command::Filelog(_)
                | Command::Run(_)
                | Command::Watch { .. }
                | Command::Push { .. }
        )
    }
}

impl Cli {
    /// Runs the command; returns its exit code or why it failed.
    pub fn dispatch(&self) -> Result<i32, Failure> {
        let g = &self.global;
        match &self.command {
            Command::Check => commands::check::run(g),
            Command::Migrate(a) => commands::migrate::run(g, a),
            Command::Status(a) => commands::status::run(g, a),
            Command::Queue(a) => commands::queue::run(g, a),
            Command::Watch { section } => run_role(g, RoleName::Watch, section, 0, false),
            Command::Push { section } => run_role(g, RoleName::Watch, section, 0, true),
            Command::Supervisor(a) => commands::supervisor::run(g, a),
            Command::Broker(a) => run_role(g, RoleName::Broker, &a.section, a.process_num, false),
            Command::Worker(a) => run_role(g, RoleName::Worker, &a.section, a.process_num, false),
            Command::Filelog(a) => run_role(g, RoleName::FileLog, &a.section, a.process_num, false),
            Command::Run(a) => commands::run::run(g, a),
            Command::TestPlugin(a) => commands::test_plugin::run(g, a),
            Command::Init(a) => commands::init::run(a),
        }
    }
}

/// A role section as this process (`loglines worker --section NAME`, ...).
fn run_role(
    g: &Global,
    role: RoleName,
    section: &str,
    process: u32,
    stdin: bool,
) -> Result<i32, Failure> {
    let cfg = load_config(g)?;
    roles::run_process(cfg, role, section, process, stdin)?;
    crate::util::compressed::read_whole().map_err(Failure::Runtime)?;
    Ok(0)
}
