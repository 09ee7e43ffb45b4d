//! The one start-up path of a role, whether it runs as its own process over Redis (under
//! supervisord, or by hand) or as a thread of `loglines run` over the embedded transport.
//!
//! Starting has two steps, so that a broken plugin stops everything before any line is read:
//! [`Starter::new`] checks the section and loads what needs no queue (the worker's plugin,
//! the file logger's SIGHUP), then [`Starter::run`] opens the role's queues on the transport
//! it is given and runs the role until its shutdown signal. `loglines broker|worker|filelog|
//! watch|push --section NAME` land in [`run_process`], which does both over Redis;
//! `commands::run` does the same for every section of the file, on threads.

use super::consume::{Announce, Consume};
use super::notify::Notifier;
use super::watch::push::PushError;
use super::watch::WatchError;
use super::worker::prepare::Preparer;
use super::{broker, filelog, watch, worker, Role, RoleName};
use crate::config::{Config, Section};
use crate::queue::redis::RedisTransport;
use crate::queue::{ConsumerId, QueueError, Transport};
use crate::util::shutdown::{self, Shutdown};
use crate::util::stats::Stats;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Why a role could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration does not allow it (no such section, another role's section, a
    /// plugin that does not load). One line each.
    #[error("{}", .0.join("; "))]
    Config(Vec<String>),
    /// Something outside the file failed (signals, the queue server).
    #[error("{0}")]
    Runtime(String),
    /// A dry run's reader closed standard output: the role stopped, nothing was lost.
    #[error("standard output was closed")]
    OutputClosed,
}

/// Why a running role stopped with an error. Messages say what to check.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("{0}; check that the queue server is running")]
    Queue(#[from] QueueError),
    /// A file the role writes (filelog) could not be opened or written.
    #[error("{0}")]
    Io(String),
    /// The plugin thread is gone (a panic in the plugin host).
    #[error("{0}; the messages it held are still in flight and are taken again when the worker restarts")]
    Plugin(String),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Push(#[from] PushError),
    /// A dry run printing its URLs found standard output closed (`loglines run --dry-run |
    /// head`): the worker stopped, with what it held back in the queue.
    #[error("standard output was closed; the messages not printed are back in the queue")]
    OutputClosed,
}

/// Where a watcher section's lines come from.
#[derive(Debug)]
pub enum Source {
    /// Follow the section's `logfile` (tail -F), to the end of the file and its lines'
    /// delivery when `until_eof` (`loglines run --once`), else until the shutdown signal.
    Follow { until_eof: bool },
    /// Read these lines to their end instead (`loglines push`, `loglines run --once FILES`).
    Lines(File),
}

/// A role section checked and ready to run: for a worker, its plugin is loaded.
pub struct Starter {
    cfg: Arc<Config>,
    index: usize,
    shutdown: Shutdown,
    stats: Stats,
    plugin: Option<Preparer>,
    hangup: Option<Arc<AtomicBool>>,
    source: Source,
    /// Set when the role runs as one of this many threads of `loglines run`.
    threads: Option<u32>,
}

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starter")
            .field("section", &self.section().name)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Starter {
    /// Checks that `section` is a section of `role`, and loads the worker's plugin (it fails
    /// here, with the plugin's own error, whatever else is wrong) or registers the file
    /// logger's SIGHUP. `shutdown` stops the role; `stats` counts what it does.
    pub fn new(
        cfg: Arc<Config>,
        section: &str,
        role: RoleName,
        shutdown: &Shutdown,
        stats: &Stats,
    ) -> Result<Starter, StartError> {
        let index = find_section(&cfg, section, role)?;
        let sec = &cfg.sections[index];
        let mut plugin = None;
        let mut hangup = None;
        match &sec.role {
            Role::Worker(w) => {
                let spec = worker::plugin_spec(&cfg, &sec.name).expect("a worker section");
                let p = Preparer::start(spec, w.clone(), shutdown)
                    .map_err(|e| StartError::Config(vec![e]))?;
                plugin = Some(p);
            }
            Role::FileLog(_) => {
                let flag = shutdown::hangup_flag().map_err(|e| {
                    StartError::Runtime(format!("cannot install the SIGHUP handler: {e}"))
                })?;
                hangup = Some(flag);
            }
            _ => {}
        }
        Ok(Starter {
            cfg,
            index,
            shutdown: shutdown.clone(),
            stats: stats.clone(),
            plugin,
            hangup,
            source: Source::Follow { until_eof: false },
            threads: None,
        })
    }

    /// The role runs as one of `of` threads of its section in this process (`loglines run`),
    /// sharing one log: only the first logs its start and stop.
    pub fn one_of(mut self, of: u32) -> Self {
        self.threads = Some(of);
        self
    }

    /// For a watcher section: where its lines come from (by default it follows its file).
    pub fn reading(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    pub fn section(&self) -> &Section {
        &self.cfg.sections[self.index]
    }

    /// Opens the role's queues on `transport` (as consumer number `process` of the section on
    /// this host) and runs the role until its shutdown signal.
    pub fn run(self, transport: &dyn Transport, process: u32) -> Result<(), RoleError> {
        let shutdown = self.shutdown.clone();
        match self.run_role(transport, process) {
            // Asked to stop while it was still opening its queues: nothing was taken, so
            // this is a stop like any other, not a failure.
            Err(RoleError::Queue(QueueError::ShuttingDown)) if shutdown.is_set() => Ok(()),
            r => r,
        }
    }

    fn run_role(self, transport: &dyn Transport, process: u32) -> Result<(), RoleError> {
        let Starter {
            cfg,
            index,
            shutdown,
            stats,
            plugin,
            hangup,
            source,
            threads,
        } = self;
        let announce = match threads {
            Some(of) => Announce::Thread { n: process, of },
            None => Announce::Process,
        };
        let sec = &cfg.sections[index];
        if let Role::Watch(w) = &sec.role {
            match source {
                Source::Follow { until_eof } => {
                    watch::run_section(sec, w, transport, &shutdown, &stats, until_eof)?;
                }
                Source::Lines(input) => {
                    let producer = transport.producer(&w.pushto)?;
                    let mut n = Notifier::for_section(sec, transport)?;
                    watch::push::run(sec, w, producer, input, &shutdown, &mut n, &stats)?;
                }
            }
            return Ok(());
        }
        let mut notifier = Notifier::for_section(sec, transport)?;
        let queue = sec.role.listento().expect("a consuming role");
        let id = ConsumerId::new(&ConsumerId::local_host(), &sec.name, process);
        let consume = Consume {
            section: sec,
            announce,
            queue,
            consumer: transport.consumer(queue, &id)?,
            shutdown: &shutdown,
            notifier: &mut notifier,
            stats: &stats,
            max_message_bytes: cfg.general.max_message_bytes,
        };
        match &sec.role {
            Role::Broker(b) => broker::run(b, consume),
            Role::Worker(w) => worker::run(w, plugin.expect("loaded by Starter::new"), consume),
            Role::FileLog(f) => filelog::run(f, hangup.expect("set by Starter::new"), consume),
            Role::Watch(_) | Role::Process => {
                unreachable!("find_section only finds loglines roles")
            }
        }
    }
}

/// The index of section `name` in `cfg`, checked to have `role`.
pub fn find_section(cfg: &Config, name: &str, role: RoleName) -> Result<usize, StartError> {
    let Some(index) = cfg.sections.iter().position(|s| s.name == name) else {
        let with_role: Vec<String> = cfg
            .sections
            .iter()
            .filter(|s| s.role.kind() == Some(role))
            .map(|s| format!("[{}]", s.name))
            .collect();
        let hint = if with_role.is_empty() {
            format!("the file has no `loglines {role}` section")
        } else {
            format!(
                "its `loglines {role}` sections are {}",
                with_role.join(", ")
            )
        };
        return Err(StartError::Config(vec![format!(
            "{}: there is no section [{name}]; {hint}",
            cfg.path.display()
        )]));
    };
    let sec = &cfg.sections[index];
    if sec.role.kind() != Some(role) {
        let other = sec.role.name();
        return Err(StartError::Config(vec![format!(
            "{}:{} [{name}] is a `{other}` section, not `loglines {role}`; run `loglines {other} --section {name}`",
            cfg.path.display(),
            sec.line,
        )]));
    }
    Ok(index)
}

/// Runs one role section as this process, over the Redis the section names, until SIGTERM or
/// SIGINT: `loglines ROLE --section NAME [--process-num N]`, and `loglines push` with `stdin`.
/// Start-up failures end the process with one clear line, so that supervisord's log shows why.
pub fn run_process(
    cfg: Config,
    role: RoleName,
    section: &str,
    process: u32,
    stdin: bool,
) -> Result<(), StartError> {
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let shutdown = Shutdown::on_signals()
        .map_err(|e| StartError::Runtime(format!("cannot install signal handlers: {e}")))?;
    // The plugin is loaded before connecting, so that a broken plugin is reported as such
    // even when Redis is down too.
    let mut starter = Starter::new(Arc::new(cfg), section, role, &shutdown, &Stats::new())?;
    if stdin {
        // A descriptor of our own, read directly: Stdin's buffer would hide waiting input from
        // the readiness checks that decide when to push a partial batch.
        let input = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|f| {
                crate::util::compressed::open_text(f, std::path::Path::new("standard input"))
            })
            .map_err(|e| StartError::Runtime(format!("cannot use standard input: {e}")))?;
        starter = starter.reading(Source::Lines(input));
    }
    let cfg = starter.cfg.clone();
    let sec = starter.section();
    let r = cfg.redis_for(sec);
    // A Redis that accepts the connection and does not answer would hold the start for the
    // connect timeouts; a stop meanwhile ends the process at once, cleanly (nothing was taken).
    let (settings, stop) = (r.clone(), shutdown.clone());
    let connecting = shutdown.unless_stopped(move || RedisTransport::connect(&settings, stop));
    let transport = match connecting {
        Ok(Some(Err(_)) | None) if shutdown.is_set() => return Ok(()),
        Ok(Some(t)) => t,
        Ok(None) => return Ok(()),
        Err(e) => return Err(StartError::Runtime(format!("cannot connect to Redis: {e}"))),
    };
    let transport = transport.map_err(|e| {
        StartError::Runtime(format!(
            "cannot use Redis at {} ([{}]): {e}",
            r.display(),
            r.name
        ))
    })?;
    let name = sec.name.clone();
    match starter.run(&transport, process) {
        Ok(()) => Ok(()),
        Err(RoleError::OutputClosed) => Err(StartError::OutputClosed),
        Err(e) => Err(StartError::Runtime(format!("section [{name}]: {e}"))),
    }
}
