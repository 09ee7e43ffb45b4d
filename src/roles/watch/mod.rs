//! `loglines watch`: follows an access log like `tail -F`, pushes every line (wrapped as
//! `{"service": ..., "logline": ...}`) to a queue in batches, and records in a checkpoint how far
//! the lines are safely handed over, so that no line is lost across crashes and rotations.
//!
//! One entry point, [`run`]. The file-following rules (docs/architecture.md, "Delivery
//! guarantees"), each in a file of its own:
//! - the checkpoint names the file (device, inode, fingerprints of its first bytes and of the
//!   bytes before the offset) and the offset; it only covers lines the transport acknowledged
//!   (see [`progress`]), and is written after every batch the transport acknowledged (without
//!   fsync: a killed watcher then sends at most one batch again) and durably at most once a
//!   second and at shutdown (see [`checkpoint`] for why the two together survive a power loss);
//! - rename rotation: the old file is read to its end before the new one is followed from 0,
//!   and is kept open for [`ROTATED_GRACE`] afterwards, because web servers keep writing to it
//!   until they reopen their logs (Apache's graceful restart lets busy children finish long
//!   downloads, the very requests that count); the checkpoint records that file too, so a
//!   restart within that time reads on where it left off;
//! - copytruncate: the file shrinking below what was read means it starts again at 0;
//! - a file rotated while the watcher was stopped is found again by its inode in the same
//!   folder and finished first; a file replaced while it was stopped is read from 0;
//! - waiting (missing file, idle file) sleeps in inotify, with a slow poll as the fallback.
//!
//! `start.rs` decides where to begin (checkpoint, rotated or replaced file, `start_at`),
//! `follow.rs` reads and hands lines over, `rotation.rs` handles a changed name and
//! copytruncate, `record.rs` writes the checkpoint, `checkpoint.rs` is its file format,
//! `progress.rs` and `handover.rs` track which lines are finished, `lines.rs` splits and wraps
//! lines, `push.rs` reads standard input instead of a file.

pub mod checkpoint;
pub mod files;
mod follow;
pub(crate) mod handover;
mod inotify;
pub(crate) mod lines;
mod many;
pub(crate) mod progress;
pub mod push;
mod record;
mod rotation;
pub mod settings;
mod start;

pub use settings::{StartAt, WatchSettings};

use crate::config::Section;
use crate::queue::{Message, Producer, QueueError, Transport};
use crate::roles::notify::Notifier;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use checkpoint::CheckpointError;
use handover::{Handover, Refused};
use inotify::Inotify;
use lines::{LineSplitter, Wrapper};
use progress::Committed;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes asked for per read.
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes read from one file before looking at shutdown, the checkpoint and the path.
const READ_BUDGET: u64 = 4 << 20;
/// Longest sleep, so that a shutdown requested by another thread (`loglines run`, tests) is
/// noticed; SIGTERM itself interrupts the sleep at once. Waking only checks the flag.
const WAKE_EVERY: Duration = Duration::from_millis(250);
/// Without a change reported by inotify, the file and its name are still looked at this
/// often: the fallback for filesystems where inotify sees nothing (NFS written from another
/// machine) or no inotify at all. Also how often the folder watch is renewed (a folder created
/// or replaced later is picked up).
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Durable (fsynced) checkpoint writes are at most this frequent; it bounds their cost. The
/// cheap unsynced write after each acknowledged batch is not limited: it bounds duplicates.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How long a rotated file is still read for lines its writers add after the switch.
pub const ROTATED_GRACE: Duration = Duration::from_secs(300);
/// With `start_at = end`, how far back to look for the start of a line being written.
const LINE_START_SCAN: u64 = 64 * 1024;
/// At shutdown with a completion-tracking transport, how long to wait for lines in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchStats {
    /// Lines pushed (empty lines included).
    pub lines: u64,
    /// Pushes made.
    pub batches: u64,
    /// Lines over `max_line_bytes` (or cut off by a truncation) filed as dead letters.
    pub dead_lettered: u64,
    /// Lines whose invalid UTF-8 was replaced by U+FFFD.
    pub invalid_utf8: u64,
    /// Switches to a new file under the followed name (rename or delete and re-create).
    pub rotations: u64,
    /// Times the file shrank below what was read (copytruncate).
    pub truncations: u64,
    /// Lines read from a rotated file after the switch to the new one.
    pub late_lines: u64,
    /// Checkpoint writes, durable or not.
    pub checkpoints: u64,
    /// Of those, the durable ones made once a second and at shutdown (the first unsynced
    /// writes of a section are fsynced too, see [`checkpoint::store_unsynced`]).
    pub durable_checkpoints: u64,
}

impl WatchStats {
    /// Adds the counts of another file's follower (a section with several files).
    fn add(&mut self, o: &WatchStats) {
        self.lines += o.lines;
        self.batches += o.batches;
        self.dead_lettered += o.dead_lettered;
        self.invalid_utf8 += o.invalid_utf8;
        self.rotations += o.rotations;
        self.truncations += o.truncations;
        self.late_lines += o.late_lines;
        self.checkpoints += o.checkpoints;
        self.durable_checkpoints += o.durable_checkpoints;
    }
}

/// Why the watcher stopped with an error. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot create the state folder {}: {error}; create it, or point `state_dir` or `checkpoint` somewhere writable", path.display())]
    StateDir { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Checkpoint(CheckpointError),
    #[error("cannot open the log file {}: {error}; check `logfile` and that this user may read it", path.display())]
    Open { path: PathBuf, error: io::Error },
    #[error("cannot read the log file {}: {error}; check the disk and the file (the watcher resumes from its checkpoint when restarted)", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("cannot push to the queue: {0}")]
    Queue(QueueError),
    #[error("the thread following {} stopped on an internal error (a bug: please report it with the log above); restart the watcher to resume from the checkpoints", .0.display())]
    Panicked(PathBuf),
}

/// How a step ended early: shutdown requested, or a failure.
enum Flow {
    Stop,
    Fail(WatchError),
}

impl From<WatchError> for Flow {
    fn from(e: WatchError) -> Self {
        Flow::Fail(e)
    }
}

impl From<Refused> for Flow {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Stop => Flow::Stop,
            Refused::Failed(e) => Flow::Fail(WatchError::Queue(e)),
        }
    }
}

/// Runs a watcher section until `shutdown` (or, with `until_eof`, `loglines run --once`: until
/// its files are read to their ends and every line read is finished): follows its one file, or
/// each file of its list and globs (see `many.rs`), opening producers and notifiers on
/// `transport`. Returns after writing the final checkpoints.
pub fn run_section(
    section: &Section,
    settings: &WatchSettings,
    transport: &dyn Transport,
    shutdown: &Shutdown,
    stats: &Stats,
    until_eof: bool,
) -> Result<WatchStats, WatchError> {
    if settings.logfiles.single().is_none() {
        return many::run(section, settings, transport, shutdown, stats, until_eof);
    }
    let producer = transport
        .producer(&settings.pushto)
        .map_err(WatchError::Queue)?;
    let mut notifier = Notifier::for_section(section, transport).map_err(WatchError::Queue)?;
    follow(
        section,
        settings,
        producer,
        shutdown,
        &mut notifier,
        stats,
        until_eof,
    )
}

/// Follows `settings.logfile` until `shutdown` is set, pushing lines through `producer`,
/// telling `notifier` about dead letters and counting in `stats`. Returns after writing the
/// final checkpoint; an error only for what a restart should report (unusable state folder,
/// unreadable log, a transport that gave up).
pub fn run(
    section: &Section,
    settings: &WatchSettings,
    producer: Box<dyn Producer>,
    shutdown: &Shutdown,
    notifier: &mut Notifier,
    stats: &Stats,
) -> Result<WatchStats, WatchError> {
    follow(
        section, settings, producer, shutdown, notifier, stats, false,
    )
}

/// [`run`], or with `until_eof` (`loglines run --once`): read from the checkpoint to the end
/// of the file, wait until every line read is finished, write the checkpoint and return.
fn follow(
    section: &Section,
    settings: &WatchSettings,
    producer: Box<dyn Producer>,
    shutdown: &Shutdown,
    notifier: &mut Notifier,
    stats: &Stats,
    until_eof: bool,
) -> Result<WatchStats, WatchError> {
    let inotify = match Inotify::new() {
        Ok(i) => Some(i),
        Err(e) => {
            log::warn!(
                "inotify is not available ({e}); checking {} every {} ms instead",
                settings.logfile.display(),
                LOOK_EVERY.as_millis()
            );
            None
        }
    };
    let mut w = Watcher {
        settings,
        section: &section.name,
        batch_size: section.batch_size.max(1),
        out: Handover::new(
            producer,
            &settings.pushto,
            &section.name,
            shutdown,
            notifier,
            stats,
        ),
        wrapper: Wrapper::new(&settings.servicename),
        stats: WatchStats::default(),
        shutdown,
        inotify,
        current: None,
        retired: None,
        said_gone: false,
        said_waiting: false,
        said_open_error: false,
        last_rewatch: None,
        last_durable: None,
        written: None,
        durable: None,
        checkpoint_failing: false,
        buf: vec![0; READ_CHUNK],
        pending: Vec::new(),
        pending_end: 0,
        until_eof,
    };
    log::info!(
        "watching {} (section {}): lines go to queue `{}` in batches of up to {}",
        settings.logfile.display(),
        section.name,
        settings.pushto,
        w.batch_size
    );
    let outcome = match w.start() {
        Ok(()) => w.follow(),
        Err(f) => Err(f),
    };
    let failure = match outcome {
        Ok(()) | Err(Flow::Stop) => None,
        Err(Flow::Fail(e)) => Some(e),
    };
    w.finish();
    match failure {
        Some(e) => Err(e),
        None => Ok(w.stats),
    }
}

/// One open file being read.
struct Tail {
    file: File,
    /// The name it had when opened, for messages.
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Bytes read so far (the next read starts here).
    pos: u64,
    splitter: LineSplitter,
    /// Its inotify watch, removed when the file is closed.
    wd: Option<i32>,
    /// A copy nobody writes to (copytruncate's, found at start): once finished it is closed
    /// at once, not watched for late lines like a renamed log.
    copy: bool,
}

/// Which file lines come from, deciding what their segments tell the checkpoint.
#[derive(Debug, Clone, Copy)]
enum Side {
    Current,
    /// The file before the last rotation, read until `until` (Unix seconds).
    Rotated {
        until: u64,
    },
}

/// The file before the last rotation, still read for lines its writers add late.
struct Retired {
    tail: Tail,
    until: Instant,
    until_unix: u64,
}

/// A line (or over-long line) ready to be handed over, with the offset after its line end.
enum Item {
    Line {
        body: String,
        end: u64,
    },
    TooLong {
        body: String,
        reason: String,
        end: u64,
    },
}

struct Watcher<'a> {
    settings: &'a WatchSettings,
    section: &'a str,
    batch_size: usize,
    out: Handover<'a>,
    wrapper: Wrapper,
    stats: WatchStats,
    shutdown: &'a Shutdown,
    inotify: Option<Inotify>,
    current: Option<Tail>,
    retired: Option<Retired>,
    said_gone: bool,
    said_waiting: bool,
    said_open_error: bool,
    last_rewatch: Option<Instant>,
    /// When the last durable checkpoint write was attempted.
    last_durable: Option<Instant>,
    /// What `NAME` says (the last successful write of either kind).
    written: Option<Committed>,
    /// What the last durable write said.
    durable: Option<Committed>,
    checkpoint_failing: bool,
    buf: Vec<u8>,
    /// Lines of the batch being filled (all from the current file).
    pending: Vec<Message>,
    /// Offset after the last line in `pending`.
    pending_end: u64,
    /// Stop at the end of the file once everything read is finished (`run --once`).
    until_eof: bool,
}

impl Watcher<'_> {
    fn path(&self) -> &Path {
        &self.settings.logfile
    }

    /// Opens the log file. Only a regular file is followed: opening a FIFO would block until
    /// something writes to it (a stop could not end the wait), and a device or folder has no
    /// lines to resume from a checkpoint. Opened without blocking for that reason; reads of a
    /// regular file are not affected.
    fn open_tail(&self, path: &Path) -> io::Result<Tail> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)?;
        let kind = file.metadata()?.file_type();
        if !kind.is_file() {
            let what = if kind.is_fifo() {
                "a FIFO (named pipe)"
            } else if kind.is_dir() {
                "a folder"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {what}; the watcher follows a regular log file (to feed lines from a pipe, use `loglines push --section NAME`)", path.display()),
            ));
        }
        Ok(self.tail_from(file, path.to_path_buf()))
    }

    fn tail_from(&self, file: File, path: PathBuf) -> Tail {
        let (dev, ino) = file
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or((0, 0));
        let wd = self
            .inotify
            .as_ref()
            .and_then(|i| i.add(&path, inotify::FILE_EVENTS).ok());
        Tail {
            file,
            path,
            dev,
            ino,
            pos: 0,
            splitter: LineSplitter::new(self.settings.max_line_bytes),
            wd,
            copy: false,
        }
    }

    /// Sleeps until the file or its folder changes, or [`WAKE_EVERY`] passes. Returns true
    /// when inotify reported a change.
    fn wait(&mut self) -> bool {
        let Some(ino) = &self.inotify else {
            self.shutdown.sleep(WAKE_EVERY);
            return false;
        };
        if self.last_rewatch.is_none_or(|t| t.elapsed() >= LOOK_EVERY) {
            if let Some(dir) = self.settings.logfile.parent() {
                let _ = ino.add(dir, inotify::DIR_EVENTS);
            }
            self.last_rewatch = Some(Instant::now());
        }
        ino.wait(WAKE_EVERY)
    }

    /// Shutdown: lines read but not pushed are dropped (they lie after the checkpoint and
    /// are read again next time); lines in flight get a moment to finish; then the final
    /// checkpoint.
    fn finish(&mut self) {
        if !self.out.durable() {
            self.out.wait_finished(SHUTDOWN_GRACE, false);
        }
        self.pending.clear();
        self.maybe_checkpoint(true);
        self.wrapper.summarise(true);
        self.stats.invalid_utf8 = self.wrapper.invalid;
        self.stats.lines = self.out.lines;
        self.stats.batches = self.out.batches;
        self.stats.dead_lettered = self.out.dead_lettered;
        log::info!(
            "watch {} ({}): stopped; {} lines sent in {} batches, {} dead-lettered, {} with invalid UTF-8, {} rotations, {} truncations",
            self.section,
            self.settings.logfile.display(),
            self.stats.lines,
            self.stats.batches,
            self.stats.dead_lettered,
            self.stats.invalid_utf8,
            self.stats.rotations,
            self.stats.truncations
        );
    }
}

/// Sets `flag` and says whether it was clear: for a problem that is logged when it starts,
/// not again on every retry while it lasts (the flag is cleared when it is over).
fn first_time(flag: &mut bool) -> bool {
    !std::mem::replace(flag, true)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
