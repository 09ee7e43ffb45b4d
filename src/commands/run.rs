//! `loglines run`: every section of the file as threads of one process, on the embedded
//! transport, with the same role code as the separate processes.
//!
//! Nothing is lost without Redis because the watcher's checkpoint moves past a line only once
//! every branch it was fanned out to has finished with it (the message's
//! [`Lineage`](crate::queue::Lineage) is dropped everywhere): sent and acknowledged by the
//! tracker, routed to `other_queue`, written by a file logger, or dead-lettered. After a kill -9
//! the lines that were in flight are read again.

use crate::app::{load_config, Failure, Global};
use crate::config::{Config, Section};
use crate::queue::embedded::EmbeddedTransport;
use crate::roles::watch::checkpoint::prev_path;
use crate::roles::watch::files::checkpoint_folder;
use crate::roles::worker::Endpoint;
use crate::roles::{find_section, Role, RoleError, RoleName, Source, StartError, Starter};
use crate::util::compressed;
use crate::util::shutdown::Shutdown;
use crate::util::stats::{BySection, Snapshot};
use anyhow::anyhow;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
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

/// Whether a configuration warning does not concern this run: with FILES the watchers' own
/// `logfile` is not read, so what is wrong with it does not matter now.
fn moot(cfg: &Config, args: &RunArgs, w: &crate::config::diag::Diagnostic) -> bool {
    let watcher = |name: &str| {
        cfg.section(name)
            .is_some_and(|s| matches!(s.role, Role::Watch(_)))
    };
    !args.files.is_empty()
        && w.key.as_deref() == Some("logfile")
        && w.section.as_deref().is_some_and(watcher)
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

/// A dry run reads from where the real run is but changes none of its state: the watchers'
/// checkpoints are copied into a scratch folder (deleted at the end) and the run keeps its
/// checkpoints, dead letters and requeued messages there. Otherwise a dry run over the
/// configured logs would move their checkpoints past lines it only printed, and the real run
/// would never send them.
fn dry_run_state(cfg: &mut Config) -> Result<tempfile::TempDir, Failure> {
    let scratch = tempfile::Builder::new()
        .prefix("loglines-dry-run-")
        .tempdir()
        .map_err(|e| {
            Failure::Runtime(anyhow!(
                "cannot create a scratch folder for the dry run in {}: {e}; set TMPDIR to a writable folder",
                std::env::temp_dir().display()
            ))
        })?;
    for s in &mut cfg.sections {
        if let Role::Watch(w) = &mut s.role {
            let copy = scratch.path().join(format!("{}.checkpoint", s.name));
            let mut files = vec![
                (w.checkpoint.clone(), copy.clone()),
                (prev_path(&w.checkpoint), prev_path(&copy)),
            ];
            // A section with several files keeps one checkpoint per file in a folder.
            let (folder, folder_copy) =
                (checkpoint_folder(&w.checkpoint), checkpoint_folder(&copy));
            if let Ok(dir) = std::fs::read_dir(&folder) {
                std::fs::create_dir_all(&folder_copy).map_err(|e| {
                    Failure::Runtime(anyhow!(
                        "cannot create {} for the dry run: {e}",
                        folder_copy.display()
                    ))
                })?;
                for entry in dir.flatten() {
                    files.push((entry.path(), folder_copy.join(entry.file_name())));
                }
            }
            for (from, to) in files {
                match std::fs::copy(&from, &to) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Failure::Runtime(anyhow!(
                            "[{}] cannot copy the checkpoint {} for the dry run: {e}",
                            s.name,
                            from.display()
                        )))
                    }
                }
            }
            w.checkpoint = copy;
        }
    }
    log::debug!(
        "dry run: the checkpoints and dead letters in {} are left as they are; this run keeps its own in {} until it ends",
        cfg.general.state_dir.display(),
        scratch.path().display()
    );
    cfg.general.state_dir = scratch.path().to_path_buf();
    Ok(scratch)
}

/// The watcher section FILES are fed through: `--section`, or the file's only watcher.
fn replay_section(cfg: &Config, args: &RunArgs) -> Result<String, Failure> {
    if let Some(name) = &args.section {
        find_section(cfg, name, RoleName::Watch)?;
        return Ok(name.clone());
    }
    let watchers: Vec<&Section> = cfg
        .sections
        .iter()
        .filter(|s| matches!(s.role, Role::Watch(_)))
        .collect();
    match watchers.as_slice() {
        [one] => Ok(one.name.clone()),
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
    handle: JoinHandle<Result<(), RoleError>>,
}

impl Running {
    /// Runs `starter` on a thread of its own, as consumer number `process` of its section.
    fn spawn(
        name: String,
        starter: Starter,
        transport: &EmbeddedTransport,
        process: u32,
    ) -> Result<Running, Failure> {
        let transport = transport.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || starter.run(&transport, process))
            .map_err(|e| Failure::Runtime(anyhow!("cannot start thread {name}: {e}")))?;
        Ok(Running { name, handle })
    }

    /// Waits for the thread; its failure as a line of the final report.
    fn join(self) -> Ended {
        match self.handle.join() {
            Ok(Ok(())) => Ended::Stopped,
            Ok(Err(RoleError::OutputClosed)) => Ended::OutputClosed,
            Ok(Err(e)) => Ended::Failed(format!("{}: {e}", self.name)),
            Err(_) => Ended::Failed(format!("{}: the thread panicked", self.name)),
        }
    }
}

/// How a thread of the pipeline ended.
enum Ended {
    Stopped,
    /// A dry run's reader closed standard output (`loglines run --dry-run | head`): the run
    /// stops, quietly.
    OutputClosed,
    Failed(String),
}

/// Starts every consumer thread (brokers, workers, file loggers), `numprocs` of each section.
/// Every plugin is loaded first, so that a broken one stops the run before any line is read.
fn start_consumers(
    cfg: &Arc<Config>,
    transport: &EmbeddedTransport,
    shutdown: &Shutdown,
    stats: &BySection,
) -> Result<Vec<Running>, Failure> {
    let mut starters = Vec::new();
    let mut errors = Vec::new();
    for sec in &cfg.sections {
        let Some(role) = sec.role.kind().filter(|r| *r != RoleName::Watch) else {
            continue;
        };
        for n in 0..sec.program.numprocs {
            match Starter::new(
                cfg.clone(),
                &sec.name,
                role,
                shutdown,
                &stats.section(&sec.name),
            ) {
                Ok(s) => starters.push((
                    format!("{}:{n}", sec.name),
                    s.one_of(sec.program.numprocs),
                    n,
                )),
                Err(StartError::Config(lines)) => errors.extend(lines),
                Err(e) => return Err(e.into()),
            }
        }
    }
    if !errors.is_empty() {
        errors.dedup();
        return Err(Failure::Config(errors));
    }
    starters
        .into_iter()
        .map(|(name, s, n)| Running::spawn(name, s, transport, n))
        .collect()
}

/// Starts the watcher threads: one per watcher section following its file, or with FILES
/// one per file, read through the replay section.
fn start_watchers(
    cfg: &Arc<Config>,
    args: &RunArgs,
    transport: &EmbeddedTransport,
    shutdown: &Shutdown,
    stats: &BySection,
) -> Result<Vec<Running>, Failure> {
    let mut watchers = Vec::new();
    if !args.files.is_empty() {
        let section = replay_section(cfg, args)?;
        for file in &args.files {
            // A rotated log logrotate compressed is read as it is (gzip, by its content).
            let input = std::fs::File::open(file)
                .and_then(|f| compressed::open_text(f, file))
                .map_err(|e| Failure::Runtime(anyhow!("cannot read {}: {e}", file.display())))?;
            let counters = stats.section(&section);
            let starter =
                Starter::new(cfg.clone(), &section, RoleName::Watch, shutdown, &counters)?
                    .reading(Source::Lines(input));
            let name = format!("replay {}", file.display());
            watchers.push(Running::spawn(name, starter, transport, 0)?);
        }
        return Ok(watchers);
    }
    for sec in cfg
        .sections
        .iter()
        .filter(|s| matches!(s.role, Role::Watch(_)))
    {
        let counters = stats.section(&sec.name);
        let starter = Starter::new(cfg.clone(), &sec.name, RoleName::Watch, shutdown, &counters)?
            .reading(Source::Follow {
                until_eof: args.once,
            });
        watchers.push(Running::spawn(sec.name.clone(), starter, transport, 0)?);
    }
    if watchers.is_empty() {
        log::warn!(
            "{}: no `loglines watch` section; the pipeline only takes what other programs push",
            cfg.path.display()
        );
    }
    Ok(watchers)
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

/// With more than one worker section (two trackers, say), what each did: the total alone
/// would add one tracker's events to the other's.
fn branches(cfg: &Config, stats: &BySection, dry_run: bool) -> Vec<String> {
    let workers: Vec<&Section> = cfg
        .sections
        .iter()
        .filter(|s| matches!(s.role, Role::Worker(_)))
        .collect();
    if workers.len() < 2 {
        return Vec::new();
    }
    let each = stats.each();
    let sent = if dry_run { "printed" } else { "sent" };
    workers
        .into_iter()
        .map(|w| {
            let s = each
                .iter()
                .find(|(n, _)| *n == w.name)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            let to = match &w.role {
                Role::Worker(ws) => match &ws.endpoint {
                    Endpoint::Url(u) => crate::util::text::redact_userinfo(u),
                    Endpoint::DryRun => "stdout".to_string(),
                },
                _ => unreachable!("filtered to workers"),
            };
            format!(
                "[{}] {} {sent} to {to}, {} not usage events, {} dead-lettered",
                w.name, s.sent, s.not_eligible, s.dead
            )
        })
        .collect()
}

/// Shows progress until the run is over: with --once when every watcher has finished, else
/// on SIGTERM/SIGINT; or when a consumer thread stops by itself (a failure, or a dry run's
/// output closed).
fn wait_until_done(
    args: &RunArgs,
    signals: &Shutdown,
    watchers: &[Running],
    consumers: &[Running],
    stats: &BySection,
) {
    let tty = std::io::stderr().is_terminal();
    let mut last = (Instant::now(), stats.total());
    let mut last_summary = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let watchers_done = watchers.iter().all(|t| t.handle.is_finished());
        if (args.once && watchers_done) || signals.is_set() {
            break;
        }
        if consumers.iter().any(|t| t.handle.is_finished()) {
            // Why is known when it is joined: standard output closed, or a failure.
            break;
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let now = stats.total();
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
}

pub fn run(g: &Global, args: &RunArgs) -> Result<i32, Failure> {
    let mut cfg = load_config(g)?;
    for w in cfg.warnings.iter().filter(|w| !moot(&cfg, args, w)) {
        log::warn!("{w}");
    }
    override_endpoints(&mut cfg, args);
    // Removed when the run ends, after every thread is joined.
    let _scratch = match args.dry_run {
        true => Some(dry_run_state(&mut cfg)?),
        false => None,
    };
    let cfg = Arc::new(cfg);
    let signals = Shutdown::on_signals()
        .map_err(|e| Failure::Runtime(anyhow!("cannot install signal handlers: {e}")))?;
    // Watchers and consumers stop separately: with --once the consumers keep going until the
    // watchers have seen every line finished.
    let stop_watchers = Shutdown::new();
    let stop_consumers = Shutdown::new();
    {
        let stop_watchers = stop_watchers.clone();
        signals.on_trigger(move || stop_watchers.trigger());
    }
    let dead_dir = cfg.general.dead_letter_dir();
    let transport =
        EmbeddedTransport::with_shutdown(QUEUE_CAPACITY, dead_dir, stop_consumers.clone());
    let stats = BySection::default();
    let started = Instant::now();

    let consumers = start_consumers(&cfg, &transport, &stop_consumers, &stats)?;
    let watchers = match start_watchers(&cfg, args, &transport, &stop_watchers, &stats) {
        Ok(w) => w,
        Err(e) => {
            stop_consumers.trigger();
            consumers.into_iter().for_each(|t| drop(t.join()));
            return Err(e);
        }
    };
    wait_until_done(args, &signals, &watchers, &consumers, &stats);
    let consumer_ended = consumers.iter().any(|t| t.handle.is_finished());
    // Watchers first: they write their checkpoints for what is finished. Then the consumers,
    // which finish or give back what they hold.
    stop_watchers.trigger();
    let mut ended: Vec<Ended> = watchers.into_iter().map(Running::join).collect();
    stop_consumers.trigger();
    ended.extend(consumers.into_iter().map(Running::join));
    let snap = stats.total();
    eprintln!(
        "loglines: {}",
        summary(&snap, started.elapsed(), args.dry_run)
    );
    for line in branches(&cfg, &stats, args.dry_run) {
        eprintln!("loglines:   {line}");
    }
    let output_closed = ended.iter().any(|e| matches!(e, Ended::OutputClosed));
    let mut failures: Vec<String> = ended
        .into_iter()
        .filter_map(|e| match e {
            Ended::Failed(why) => Some(why),
            _ => None,
        })
        .collect();
    if consumer_ended && failures.is_empty() && !output_closed {
        failures.push("a pipeline thread stopped unexpectedly".to_string());
    }
    if !failures.is_empty() {
        return Err(Failure::Runtime(anyhow!("{}", failures.join("; "))));
    }
    if output_closed {
        return Err(Failure::OutputClosed);
    }
    crate::util::compressed::read_whole().map_err(Failure::Runtime)?;
    Ok(if args.once && snap.dead > 0 { 1 } else { 0 })
}
