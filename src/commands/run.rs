//! `loglines run`: every section of the file as threads of one process, on the embedded
//! transport, with the same role code as the separate processes.
//!
//! Nothing is lost without Redis because the watcher's checkpoint moves past a line only once
//! every branch it was fanned out to has finished with it (the message's
//! [`Lineage`](crate::queue::Lineage) is dropped everywhere): sent and acknowledged by the
//! tracker, routed to `other_queue`, written by a file logger, or dead-lettered. After a kill -9
//! the lines that were in flight are read again.

use crate::app::{load_config, Failure, Global};
use crate::config::{Config, Endpoint, Role, Section, WatchSettings};
use crate::plugin::PluginSpec;
use crate::queue::embedded::EmbeddedTransport;
use crate::queue::{ConsumerId, Transport};
use crate::roles::notify::Notifier;
use crate::roles::worker::prepare::Preparer;
use crate::util::shutdown::Shutdown;
use crate::util::stats::{Snapshot, Stats};
use anyhow::anyhow;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages one in-process queue holds before its producer waits.
pub const QUEUE_CAPACITY: usize = 20_000;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Read the log files to their end, wait until every line is delivered, print a summary
    /// and exit (1 if anything was dead-lettered): the way to replay old logs.
    #[arg(long)]
    pub once: bool,
    /// With --once: read these files (from their beginning, no checkpoint) instead of the
    /// configured log files.
    #[arg(requires = "once")]
    pub files: Vec<PathBuf>,
    /// The watcher section whose service name and queue FILES go through (needed when the
    /// file has more than one).
    #[arg(long)]
    pub section: Option<String>,
    /// Print the OpenURLs on stdout instead of sending them (every worker's endpoint_url = -).
    #[arg(long, conflicts_with = "endpoint")]
    pub dry_run: bool,
    /// Send to this tracker instead of each worker's endpoint_url (e.g. a local test tracker).
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// Applies `--dry-run` / `--endpoint` to every worker section.
fn override_endpoints(cfg: &mut Config, args: &RunArgs) {
    for s in &mut cfg.sections {
        if let Role::Worker(w) = &mut s.role {
            if args.dry_run {
                w.endpoint = Endpoint::DryRun;
            } else if let Some(e) = &args.endpoint {
                w.endpoint = Endpoint::Url(e.clone());
            }
        }
    }
}

/// The watcher section FILES are fed through.
fn replay_section<'c>(cfg: &'c Config, args: &RunArgs) -> Result<&'c Section, Failure> {
    if let Some(name) = &args.section {
        return crate::roles::find_section(cfg, name, "watch");
    }
    let watchers: Vec<&Section> = cfg
        .sections
        .iter()
        .filter(|s| matches!(s.role, Role::Watch(_)))
        .collect();
    match watchers.as_slice() {
        [one] => Ok(one),
        [] => Err(Failure::Config(vec![format!(
            "{}: has no `loglines watch` section to give the files a service name and a queue; add one",
            cfg.path.display()
        )])),
        many => Err(Failure::Config(vec![format!(
            "{}: has several watcher sections ({}); say which one the files belong to with --section",
            cfg.path.display(),
            many.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        )])),
    }
}

/// One thread of the pipeline, named for messages.
struct Running {
    name: String,
    handle: JoinHandle<anyhow::Result<()>>,
}

fn spawn(
    name: String,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> Result<Running, Failure> {
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Failure::Runtime(anyhow!("cannot start thread {name}: {e}")))?;
    Ok(Running { name, handle })
}

/// Starts every consumer thread (brokers, workers, file loggers). Worker threads load their
/// plugin first and report the result, so a broken plugin stops the run before any line is read.
fn start_consumers(
    cfg: &Arc<Config>,
    transport: &EmbeddedTransport,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<Vec<Running>, Failure> {
    let host = ConsumerId::local_host();
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut expected = 0;
    for (index, sec) in cfg.sections.iter().enumerate() {
        if matches!(sec.role, Role::Watch(_) | Role::Process) {
            continue;
        }
        for n in 0..sec.program.numprocs {
            let (cfg, transport, shutdown, stats) = (
                cfg.clone(),
                transport.clone(),
                shutdown.clone(),
                stats.clone(),
            );
            let id = ConsumerId::new(&host, &sec.name, n);
            let ready = ready_tx.clone();
            if matches!(sec.role, Role::Worker(_)) {
                expected += 1;
            }
            threads.push(spawn(format!("{}:{n}", sec.name), move || {
                let sec = &cfg.sections[index];
                let queue = |q: &str| transport.consumer(q, &id).map_err(|e| anyhow!("{e}"));
                let mut notifier = Notifier::for_section(sec, &transport)?;
                match &sec.role {
                    Role::Broker(b) => Ok(crate::roles::broker::run(
                        sec,
                        b,
                        queue(&b.listento)?,
                        &shutdown,
                        &stats,
                    )?),
                    Role::FileLog(f) => {
                        // SIGHUP reopens the files, as for the separate process.
                        let hup = Arc::new(AtomicBool::new(false));
                        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
                        Ok(crate::roles::filelog::run(
                            sec,
                            f,
                            queue(&f.listento)?,
                            &shutdown,
                            hup,
                            &mut notifier,
                            &stats,
                        )?)
                    }
                    Role::Worker(w) => {
                        let spec =
                            PluginSpec::for_worker(&cfg, &sec.name).expect("a worker section");
                        let plugin = match Preparer::start(spec, w.clone(), &shutdown) {
                            Ok(p) => {
                                let _ = ready.send(Ok(()));
                                p
                            }
                            Err(e) => {
                                let _ = ready.send(Err(e));
                                return Ok(());
                            }
                        };
                        let consumer = queue(&w.listento)?;
                        Ok(crate::roles::worker::run(
                            sec,
                            w,
                            plugin,
                            consumer,
                            &shutdown,
                            &mut notifier,
                            &stats,
                        )?)
                    }
                    Role::Watch(_) | Role::Process => Ok(()),
                }
            })?);
        }
    }
    drop(ready_tx);
    let mut errors = Vec::new();
    for _ in 0..expected {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => break,
        }
    }
    if !errors.is_empty() {
        errors.dedup();
        shutdown.trigger();
        for t in threads {
            let _ = t.handle.join();
        }
        return Err(Failure::Config(errors));
    }
    Ok(threads)
}

/// The one-line status shown on a terminal.
fn status_line(s: &Snapshot, rate: f64) -> String {
    format!(
        "read {} | sent {} | not eligible {} | retrying {} | dead-lettered {} | {:.0} lines/s",
        s.read, s.sent, s.not_eligible, s.retrying, s.dead, rate
    )
}

/// The final summary. In a dry run nothing reaches a tracker, and the summary says so.
fn summary(s: &Snapshot, elapsed: Duration, dry_run: bool) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let sent = if dry_run {
        "printed (dry run, nothing sent)"
    } else {
        "sent to the tracker"
    };
    format!(
        "summary: {} lines read in {:.1} s ({:.0} lines/s); {} {sent}, {} not usage events, {} written by file loggers, {} dead-lettered",
        s.read,
        secs,
        s.read as f64 / secs,
        s.sent,
        s.not_eligible,
        s.written,
        s.dead
    )
}

pub fn run(g: &Global, args: &RunArgs) -> Result<i32, Failure> {
    let mut cfg = load_config(g)?;
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    override_endpoints(&mut cfg, args);
    let replay: Option<Section> = if args.files.is_empty() {
        None
    } else {
        Some(replay_section(&cfg, args)?.clone())
    };
    let cfg = Arc::new(cfg);
    let signals = Shutdown::on_signals()
        .map_err(|e| Failure::Runtime(anyhow!("cannot install signal handlers: {e}")))?;
    // Watchers and consumers stop separately: with --once the consumers keep going until the
    // watchers have seen every line finished.
    let stop_watchers = Shutdown::new();
    let stop_consumers = Shutdown::new();
    let dead_dir = cfg.general.dead_letter_dir();
    let transport =
        EmbeddedTransport::with_shutdown(QUEUE_CAPACITY, dead_dir, stop_consumers.clone());
    let stats = Stats::new();
    let started = Instant::now();

    let consumers = start_consumers(&cfg, &transport, &stop_consumers, &stats)?;

    let mut watchers = Vec::new();
    if let Some(sec) = replay {
        let Role::Watch(ws) = sec.role.clone() else {
            unreachable!("replay_section checked the role")
        };
        for file in args.files.clone() {
            let (sec, ws, transport, stop, stats) = (
                sec.clone(),
                ws.clone(),
                transport.clone(),
                stop_watchers.clone(),
                stats.clone(),
            );
            watchers.push(spawn(format!("replay {}", file.display()), move || {
                replay_file(&sec, &ws, &file, &transport, &stop, &stats)
            })?);
        }
    } else {
        for (index, sec) in cfg.sections.iter().enumerate() {
            let Role::Watch(ws) = &sec.role else { continue };
            let (cfg, transport, stop, stats) = (
                cfg.clone(),
                transport.clone(),
                stop_watchers.clone(),
                stats.clone(),
            );
            let until_eof = args.once;
            let pushto = ws.pushto.clone();
            watchers.push(spawn(sec.name.clone(), move || {
                let sec = &cfg.sections[index];
                let Role::Watch(ws) = &sec.role else {
                    unreachable!()
                };
                let producer = transport.producer(&pushto)?;
                let mut notifier = Notifier::for_section(sec, &transport)?;
                crate::roles::watch::run_until(
                    sec,
                    ws,
                    producer,
                    &stop,
                    &mut notifier,
                    &stats,
                    until_eof,
                )?;
                Ok(())
            })?);
        }
    }
    if watchers.is_empty() {
        log::warn!(
            "{}: no `loglines watch` section; the pipeline only takes what other programs push",
            cfg.path.display()
        );
    }

    let tty = std::io::stderr().is_terminal();
    let mut last = (Instant::now(), stats.snapshot());
    let mut last_summary = Instant::now();
    let mut failures = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if signals.is_set() {
            stop_watchers.trigger();
        }
        let watchers_done = watchers.iter().all(|t| t.handle.is_finished());
        if (args.once && watchers_done) || signals.is_set() {
            break;
        }
        if consumers.iter().any(|t| t.handle.is_finished()) {
            failures.push("a pipeline thread stopped unexpectedly".to_string());
            break;
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let now = stats.snapshot();
            let rate = (now.read - last.1.read) as f64 / last.0.elapsed().as_secs_f64();
            if tty {
                eprint!("\r\x1b[2K{}", status_line(&now, rate));
            } else if last_summary.elapsed() >= Duration::from_secs(60) {
                log::info!("{}", status_line(&now, rate));
                last_summary = Instant::now();
            }
            last = (Instant::now(), now);
        }
    }
    if tty {
        eprintln!();
    }
    // Watchers first: they write their checkpoints for what is finished. Then the consumers,
    // which finish or give back what they hold.
    stop_watchers.trigger();
    for t in watchers {
        match t.handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e:#}", t.name)),
            Err(_) => failures.push(format!("{}: the thread panicked", t.name)),
        }
    }
    stop_consumers.trigger();
    for t in consumers {
        match t.handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e:#}", t.name)),
            Err(_) => failures.push(format!("{}: the thread panicked", t.name)),
        }
    }
    let snap = stats.snapshot();
    eprintln!(
        "loglines: {}",
        summary(&snap, started.elapsed(), args.dry_run)
    );
    if !failures.is_empty() {
        return Err(Failure::Runtime(anyhow!("{}", failures.join("; "))));
    }
    Ok(if args.once && snap.dead > 0 { 1 } else { 0 })
}

/// Pushes one old log file through the watcher section's queue and waits until every line
/// is finished.
fn replay_file(
    sec: &Section,
    ws: &WatchSettings,
    file: &std::path::Path,
    transport: &EmbeddedTransport,
    stop: &Shutdown,
    stats: &Stats,
) -> anyhow::Result<()> {
    let input =
        std::fs::File::open(file).map_err(|e| anyhow!("cannot open {}: {e}", file.display()))?;
    let producer = transport.producer(&ws.pushto)?;
    let mut notifier = Notifier::for_section(sec, transport)?;
    crate::roles::watch::push::run(sec, ws, producer, input, stop, &mut notifier, stats)?;
    Ok(())
}
