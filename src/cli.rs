//! The command line: argument parsing, logging set-up, and one-line errors with exit codes.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a usage or configuration error. Every error is
//! printed as one line `loglines: <what went wrong and how to fix it>` (a configuration with
//! several problems prints one line per problem).

use crate::check;
use crate::config::{Config, Role, Section, WatchSettings};
use crate::diag;
use crate::notify::Notifier;
use crate::queue::redis::RedisTransport;
use crate::queue::{Producer, Transport};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use clap::{Args, Parser, Subcommand};
use std::os::fd::AsFd;
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
    //RUN0
    //RUN
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
        Command::Broker(_) | Command::Worker(_) | Command::Filelog(_)
    );
    init_logging(&cli.global, service);
    let result = match &cli.command {
        Command::Check => check::run(&cli.global),
        Command::Status(a) => crate::status::run(&cli.global, a),
        Command::Queue(a) => crate::queuecmd::run(&cli.global, a),
        Command::Watch { section } => run_watch(&cli.global, section),
        Command::Push { section } => run_push(&cli.global, section),
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
        //RUN2
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

/// A watch section by name, or a configuration failure naming the ones there are.
fn watch_section(config: &Config, name: &str) -> Result<(Section, WatchSettings), Failure> {
    let found = config.section(name).and_then(|s| match &s.role {
        Role::Watch(w) => Some((s.clone(), w.clone())),
        _ => None,
    });
    found.ok_or_else(|| {
        let known: Vec<String> = config
            .sections
            .iter()
            .filter(|s| matches!(s.role, Role::Watch(_)))
            .map(|s| s.name.clone())
            .collect();
        Failure::Config(vec![format!(
            "{}: no watch section [{name}]; expected one with `command = loglines watch`{}",
            config.path.display(),
            if known.is_empty() {
                String::new()
            } else {
                format!(", such as {}", known.join(", "))
            }
        )])
    })
}

/// The section's producer for `queue` and its notifier, on the section's Redis (the separate
/// role processes use Redis).
fn redis_producer(
    config: &Config,
    section: &Section,
    queue: &str,
    shutdown: &Shutdown,
) -> Result<(Box<dyn Producer>, Notifier), Failure> {
    let fail = |e: crate::queue::QueueError| {
        Failure::Runtime(anyhow::anyhow!("section [{}]: {e}", section.name))
    };
    let t = RedisTransport::connect(config.redis_for(section), shutdown.clone()).map_err(fail)?;
    let notify_queue = match &section.notify.queue {
        Some(q) => Some(t.producer(q).map_err(fail)?),
        None => None,
    };
    let notifier = Notifier::new(&section.name, section.notify.clone(), notify_queue);
    Ok((t.producer(queue).map_err(fail)?, notifier))
}

fn signals() -> Result<Shutdown, Failure> {
    Shutdown::on_signals()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot install signal handlers: {e}")))
}

/// `loglines watch --section NAME`.
fn run_watch(g: &Global, name: &str) -> Result<i32, Failure> {
    let config = load_config(g)?;
    let (section, settings) = watch_section(&config, name)?;
    let shutdown = signals()?;
    let (producer, mut notifier) = redis_producer(&config, &section, &settings.pushto, &shutdown)?;
    let stats = Stats::new();
    crate::watch::run(
        &section,
        &settings,
        producer,
        &shutdown,
        &mut notifier,
        &stats,
    )
    .map_err(|e| Failure::Runtime(anyhow::anyhow!("section [{name}]: {e}")))?;
    Ok(0)
}

/// `loglines push --section NAME`.
fn run_push(g: &Global, name: &str) -> Result<i32, Failure> {
    let config = load_config(g)?;
    let (section, settings) = watch_section(&config, name)?;
    let shutdown = signals()?;
    let (producer, mut notifier) = redis_producer(&config, &section, &settings.pushto, &shutdown)?;
    // A descriptor of our own, read directly: Stdin's buffer would hide waiting input from
    // the readiness checks that decide when to push a partial batch.
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot use standard input: {e}")))?;
    let stats = Stats::new();
    crate::push::run(
        &section,
        &settings,
        producer,
        stdin,
        &shutdown,
        &mut notifier,
        &stats,
    )
    .map_err(|e| Failure::Runtime(anyhow::anyhow!("section [{name}]: {e}")))?;
    Ok(0)
}
