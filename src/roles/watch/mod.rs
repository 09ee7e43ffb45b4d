//! `loglines watch`: follows an access log like `tail -F`, pushes every line (wrapped as
//! `{"service": ..., "logline": ...}`) to a queue in batches, and records in a checkpoint how far
//! the lines are safely handed over, so that no line is lost across crashes and rotations.
//!
//! One entry point, [`run`]. The file-following rules (DESIGN section 3):
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

pub mod checkpoint;
pub(crate) mod handover;
mod inotify;
pub(crate) mod lines;
pub(crate) mod progress;
pub mod push;
pub mod settings;

pub use settings::{StartAt, WatchSettings};

use crate::config::Section;
use crate::queue::{Message, Producer, QueueError};
use crate::roles::notify::Notifier;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use checkpoint::{CheckpointError, Loaded, Position, Rotated};
use handover::{Handover, Refused};
use inotify::Inotify;
use lines::{LineSplitter, Piece, Wrapper};
use progress::{Committed, End, Progress};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
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

/// Why the watcher stopped with an error. Messages say what to fix.
#[derive(Debug)]
pub enum WatchError {
    StateDir { path: PathBuf, source: io::Error },
    Checkpoint(CheckpointError),
    Open { path: PathBuf, source: io::Error },
    Read { path: PathBuf, source: io::Error },
    Queue(QueueError),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::StateDir { path, source } => write!(
                f,
                "cannot create the state folder {}: {source}; create it, or point `state_dir` or `checkpoint` somewhere writable",
                path.display()
            ),
            WatchError::Checkpoint(e) => e.fmt(f),
            WatchError::Open { path, source } => write!(
                f,
                "cannot open the log file {}: {source}; check `logfile` and that this user may read it",
                path.display()
            ),
            WatchError::Read { path, source } => write!(
                f,
                "cannot read the log file {}: {source}; check the disk and the file (the watcher resumes from its checkpoint when restarted)",
                path.display()
            ),
            WatchError::Queue(e) => write!(f, "cannot push to the queue: {e}"),
        }
    }
}

impl std::error::Error for WatchError {}

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
    run_until(
        section, settings, producer, shutdown, notifier, stats, false,
    )
}

/// [`run`], or with `until_eof` (`loglines run --once`): read from the checkpoint to the end
/// of the file, wait until every line read is finished, write the checkpoint and return.
pub fn run_until(
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

    /// Decides where to start: from the checkpoint, or `start_at` on a first start.
    fn start(&mut self) -> Result<(), Flow> {
        let ck = &self.settings.checkpoint;
        if let Some(dir) = ck.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| WatchError::StateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        match checkpoint::load(ck) {
            Loaded::Found {
                checkpoint,
                fallback,
            } => {
                if let Some(why) = fallback {
                    log::warn!(
                        "checkpoint: {why}; using the previous copy {} (lines handed over in the second or two before it was written may be sent again)",
                        checkpoint::prev_path(ck).display()
                    );
                }
                self.resume(*checkpoint)
            }
            Loaded::Missing => self.first_start(self.settings.start_at),
            Loaded::Unreadable(why) => {
                log::warn!(
                    "checkpoint unusable: {why}; reading {} from its beginning so that no line is lost (lines sent before will be sent again)",
                    self.path().display()
                );
                self.first_start(StartAt::Beginning)
            }
        }
    }

    fn first_start(&mut self, start_at: StartAt) -> Result<(), Flow> {
        let path = self.path().to_path_buf();
        match self.open_tail(&path) {
            Ok(mut t) => {
                let at = match start_at {
                    StartAt::Beginning => 0,
                    StartAt::End => {
                        line_start_before_end(&t.file).map_err(|source| WatchError::Read {
                            path: path.clone(),
                            source,
                        })?
                    }
                };
                t.pos = at;
                log::info!(
                    "no checkpoint yet: reading {} from byte {at} (start_at = {})",
                    path.display(),
                    if start_at == StartAt::End {
                        "end"
                    } else {
                        "beginning"
                    }
                );
                let p =
                    checkpoint::position_in(&t.file, at).map_err(|source| WatchError::Read {
                        path: path.clone(),
                        source,
                    })?;
                self.out.progress = Progress::new(Committed {
                    main: Some(p),
                    rotated: None,
                });
                self.current = Some(t);
                // Written now, so that a crash before the first line still resumes here
                // instead of starting at the (by then later) end again.
                self.write_checkpoint_or_fail()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Everything in the file when it appears was written after this start.
                self.say_waiting();
                Ok(())
            }
            Err(source) => Err(WatchError::Open { path, source }.into()),
        }
    }

    fn resume(&mut self, c: checkpoint::Checkpoint) -> Result<(), Flow> {
        self.out.progress = Progress::new(Committed {
            main: Some(c.position.clone()),
            rotated: c.rotated.clone(),
        });
        self.resume_main(c.position)?;
        match c.rotated {
            Some(r) => self.resume_rotated(r),
            None => Ok(()),
        }
    }

    /// The file before the last rotation was still being read for late lines when the
    /// watcher stopped: it is read again from where that got to, for the rest of its time.
    fn resume_rotated(&mut self, r: Rotated) -> Result<(), Flow> {
        let p = &r.position;
        let found = find_rotated(self.path(), p).filter(|(_, f)| {
            // Not the file being followed (it would be read twice).
            let same = |t: &Tail| {
                f.metadata()
                    .is_ok_and(|m| (m.dev(), m.ino()) == (t.dev, t.ino))
            };
            !self.current.as_ref().is_some_and(same)
        });
        let Some((path, f)) = found else {
            log::warn!(
                "the rotated file (device {} inode {}) is no longer in the folder of {}; lines its writers added after byte {} while the watcher was stopped were not read",
                p.dev,
                p.ino,
                self.path().display(),
                p.offset
            );
            self.out.mark(End::RotatedClosed);
            return Ok(());
        };
        let left = r.until.saturating_sub(unix_now());
        log::info!(
            "reading the rotated file {} from byte {} for lines added late, for {left} more seconds",
            path.display(),
            p.offset
        );
        let mut tail = self.tail_from(f, path);
        tail.pos = p.offset;
        self.retired = Some(Retired {
            tail,
            until: Instant::now() + Duration::from_secs(left),
            until_unix: r.until,
        });
        Ok(())
    }

    fn resume_main(&mut self, p: Position) -> Result<(), Flow> {
        let path = self.path().to_path_buf();
        let read_err = |source| WatchError::Read {
            path: path.clone(),
            source,
        };
        let mut file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(WatchError::Open { path, source }.into()),
        };
        let mut now_at = None;
        if let Some(f) = &file {
            let m = f.metadata().map_err(read_err)?;
            now_at = Some((m.dev(), m.ino()));
            if m.ino() == p.ino {
                let why = checkpoint::mismatch(f, &p).map_err(read_err)?;
                let Some(f) = file.take() else {
                    return Ok(());
                };
                let t = self.tail_from(f, path.clone());
                match why {
                    None => {
                        if m.dev() != p.dev {
                            log::info!(
                                "{}: device number changed ({} to {}) but the content matches the checkpoint; resuming",
                                path.display(),
                                p.dev,
                                m.dev()
                            );
                        }
                        log::info!("resuming {} at byte {}", path.display(), p.offset);
                        return self.begin_at(t, p.offset, false);
                    }
                    Some(why) => {
                        log::warn!(
                            "{} is not the file the checkpoint describes: {why}; it was truncated or rewritten while the watcher was stopped, so it is read from its start",
                            path.display()
                        );
                        return self.begin_at(t, 0, true);
                    }
                }
            }
        }
        // Another file (or none) has the name now. If the checkpointed one is still in the
        // folder under another name (rotated while stopped), its unread lines come first;
        // the switch to the new file then happens as for a rotation while running.
        if let Some((old_path, old)) = find_rotated(&path, &p) {
            log::info!(
                "{} was rotated while the watcher was stopped; finishing the old file, now {}, from byte {} first",
                path.display(),
                old_path.display(),
                p.offset
            );
            let t = self.tail_from(old, old_path);
            return self.begin_at(t, p.offset, false);
        }
        match (file, now_at) {
            (Some(f), Some((dev, ino))) => {
                log::warn!(
                    "{} was replaced while the watcher was stopped (it was device {} inode {}, now device {dev} inode {ino}, and the old file is not in its folder); reading the new file from its start",
                    path.display(),
                    p.dev,
                    p.ino
                );
                let t = self.tail_from(f, path);
                self.begin_at(t, 0, true)
            }
            _ => {
                self.say_waiting();
                Ok(())
            }
        }
    }

    /// Makes `t` the current file at `at`; with `mark`, the checkpoint moves there at once
    /// (so a restart does not repeat the decision that led here).
    fn begin_at(&mut self, mut t: Tail, at: u64, mark: bool) -> Result<(), Flow> {
        t.pos = at;
        if mark {
            self.mark(&t.file, at);
        }
        self.current = Some(t);
        Ok(())
    }

    fn say_waiting(&mut self) {
        if first_time(&mut self.said_waiting) {
            log::warn!(
                "{} does not exist (yet); waiting for it to appear",
                self.path().display()
            );
        }
    }

    /// The main loop: read, check the name, checkpoint, sleep when there is nothing to do.
    fn follow(&mut self) -> Result<(), Flow> {
        let mut last_look = Instant::now();
        let mut look = true;
        loop {
            if self.shutdown.is_set() {
                return Err(Flow::Stop);
            }
            if !look {
                // Idle: only completions (embedded transport) can have moved the checkpoint.
                self.maybe_checkpoint(false);
                look = self.wait() || last_look.elapsed() >= LOOK_EVERY;
                continue;
            }
            last_look = Instant::now();
            let mut more = false;
            if let Some(mut old) = self.retired.take() {
                let side = Side::Rotated {
                    until: old.until_unix,
                };
                let at_end = self.pump(&mut old.tail, side)?;
                more |= !at_end;
                if at_end && Instant::now() >= old.until {
                    self.close_retired(old)?;
                } else {
                    self.retired = Some(old);
                }
            }
            if let Some(mut t) = self.current.take() {
                let r = self.pump(&mut t, Side::Current);
                self.current = Some(t);
                more |= !r?;
            }
            self.check_path()?;
            self.maybe_checkpoint(false);
            self.wrapper.summarise(false);
            if self.until_eof && !more && self.retired.is_none() {
                // Everything up to the end is handed over: wait until it is finished (or
                // shutdown), then stop; finish() writes the checkpoint.
                self.out
                    .wait_finished(Duration::from_secs(365 * 86_400), true);
                return Ok(());
            }
            look = more || self.wait();
        }
    }

    /// Reads `t` from its position until the end of the file (or the read budget), handing
    /// over complete lines. Returns true when it stopped at the end.
    fn pump(&mut self, t: &mut Tail, side: Side) -> Result<bool, Flow> {
        let mut items = Vec::new();
        let mut budget = READ_BUDGET;
        loop {
            if self.shutdown.is_set() {
                return Err(Flow::Stop);
            }
            if budget == 0 {
                // Pushed now so that a batch never mixes lines of two files.
                self.flush(t, side)?;
                return Ok(false);
            }
            let n = match t.file.read_at(&mut self.buf, t.pos) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(WatchError::Read {
                        path: t.path.clone(),
                        source,
                    }
                    .into())
                }
            };
            if n == 0 {
                self.flush(t, side)?;
                if matches!(side, Side::Current) {
                    let size = t
                        .file
                        .metadata()
                        .map_err(|source| WatchError::Read {
                            path: t.path.clone(),
                            source,
                        })?
                        .len();
                    if size < t.pos {
                        self.truncated(t, size)?;
                        continue;
                    }
                }
                return Ok(true);
            }
            let base = t.pos;
            t.pos += n as u64;
            budget = budget.saturating_sub(n as u64);
            let (wrapper, max) = (&mut self.wrapper, self.settings.max_line_bytes);
            let path = &t.path;
            t.splitter.feed(&self.buf[..n], |piece, after| {
                let end = base + after as u64;
                items.push(to_item(wrapper, piece, end, max, path));
            });
            self.hand_over(t, side, &mut items)?;
        }
    }

    /// Adds lines to the batch (pushing it when full) and dead-letters over-long lines, in
    /// file order.
    fn hand_over(&mut self, t: &Tail, side: Side, items: &mut Vec<Item>) -> Result<(), Flow> {
        for item in items.drain(..) {
            match item {
                Item::Line { body, end } => {
                    self.pending.push(Message::new(body));
                    self.pending_end = end;
                    if self.pending.len() >= self.batch_size {
                        self.flush(t, side)?;
                    }
                }
                Item::TooLong { body, reason, end } => {
                    self.flush(t, side)?;
                    log::warn!("{}, ending at byte {end}: {reason}", t.path.display());
                    let at = self.end_at(t, side, end);
                    self.dead_letter(body, &reason, at)?;
                }
            }
        }
        Ok(())
    }

    /// Where the checkpoint may move after a line of `t` ending at `end`; None when the file
    /// no longer has those bytes (truncated meanwhile: the truncation moves it instead).
    fn end_at(&self, t: &Tail, side: Side, end: u64) -> Option<End> {
        let position = checkpoint::position_in(&t.file, end).ok()?;
        Some(match side {
            Side::Current => End::Main(position),
            Side::Rotated { until } => End::Rotated(Rotated { until, position }),
        })
    }

    /// Pushes the batch being filled.
    fn flush(&mut self, t: &Tail, side: Side) -> Result<(), Flow> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let n = batch.len() as u64;
        let at = self.end_at(t, side, self.pending_end);
        self.send(batch, at)?;
        if let Side::Rotated { .. } = side {
            self.stats.late_lines += n;
            log::info!(
                "{} lines were added to the rotated file (inode {}, opened as {}) after the switch to the new one; sent them too",
                n,
                t.ino,
                t.path.display()
            );
        }
        Ok(())
    }

    /// Pushes one batch (see [`Handover::send`]) and records it in the checkpoint if that
    /// finished it: before the next push, so that a kill sends at most this batch again.
    fn send(&mut self, batch: Vec<Message>, end: Option<End>) -> Result<(), Flow> {
        self.out.send(batch, end).map_err(Flow::from)?;
        self.maybe_checkpoint(false);
        Ok(())
    }

    fn dead_letter(&mut self, body: String, reason: &str, end: Option<End>) -> Result<(), Flow> {
        self.out
            .dead_letter(body, reason, end)
            .map_err(Flow::from)?;
        self.maybe_checkpoint(false);
        Ok(())
    }

    /// A finished marker segment: the checkpoint moves to `at` in `file` once everything
    /// before it is finished.
    fn mark(&mut self, file: &File, at: u64) {
        if let Ok(p) = checkpoint::position_in(file, at) {
            self.out.mark(End::Main(p));
        }
    }

    /// The current file shrank below what was read: copytruncate (or someone emptied it).
    fn truncated(&mut self, t: &mut Tail, size: u64) -> Result<(), Flow> {
        log::warn!(
            "{} was truncated to {size} bytes, below the {} bytes already read (copytruncate rotation, or it was emptied); reading it again from its start",
            t.path.display(),
            t.pos
        );
        let held = t.splitter.pending_bytes();
        if held > 0 {
            // The start of a line whose end, if it was ever written, went to the copy.
            if let Some(piece) = t.splitter.finish() {
                let body = piece_text(&mut self.wrapper, piece);
                let reason = format!(
                    "unfinished line of {held} bytes cut off when {} was truncated (copytruncate); its end was never read",
                    t.path.display()
                );
                log::warn!("{reason}");
                self.dead_letter(body, &reason, None)?;
            }
        }
        t.splitter.clear();
        t.pos = 0;
        self.stats.truncations += 1;
        self.mark(&t.file, 0);
        Ok(())
    }

    /// Looks at what the followed name points to now.
    fn check_path(&mut self) -> Result<(), Flow> {
        let path = self.path().to_path_buf();
        let Some(cur) = &self.current else {
            return self.try_appeared(&path);
        };
        match std::fs::metadata(&path) {
            Ok(m) if (m.dev(), m.ino()) != (cur.dev, cur.ino) => self.rotate(&path),
            Ok(_) => {
                self.said_gone = false;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if first_time(&mut self.said_gone) {
                    log::info!(
                        "{} was renamed or deleted; reading the old file to its end and waiting for a new one",
                        path.display()
                    );
                }
                Ok(())
            }
            Err(e) => {
                if first_time(&mut self.said_gone) {
                    log::warn!("cannot look at {}: {e}; retrying", path.display());
                }
                Ok(())
            }
        }
    }

    /// No file was being read: opens it once it exists, from its start.
    fn try_appeared(&mut self, path: &Path) -> Result<(), Flow> {
        match self.open_tail(path) {
            Ok(t) => {
                log::info!("{} appeared; reading it from its start", path.display());
                self.said_waiting = false;
                self.begin_at(t, 0, true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                if first_time(&mut self.said_open_error) {
                    log::warn!("cannot open {}: {e}; retrying", path.display());
                }
                Ok(())
            }
        }
    }

    /// The name points to another file: finish the old one, then follow the new one from 0.
    fn rotate(&mut self, path: &Path) -> Result<(), Flow> {
        let Some(mut old) = self.current.take() else {
            return Ok(());
        };
        // Lines written to the old file between the rename and now are read here.
        loop {
            match self.pump(&mut old, Side::Current) {
                Ok(true) => break,
                Ok(false) => {}
                Err(f) => {
                    self.current = Some(old);
                    return Err(f);
                }
            }
        }
        let new = match self.open_tail(path) {
            Ok(t) => t,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound && first_time(&mut self.said_open_error) {
                    log::warn!(
                        "cannot open the new {}: {e}; still reading the old file, retrying",
                        path.display()
                    );
                }
                self.current = Some(old);
                return Ok(());
            }
        };
        self.said_open_error = false;
        self.said_gone = false;
        log::info!(
            "{} was rotated: read the old file (inode {}) to byte {}; now reading the new one (inode {}) from its start",
            path.display(),
            old.ino,
            old.pos,
            new.ino
        );
        self.stats.rotations += 1;
        if let Some(older) = self.retired.take() {
            self.close_retired(older)?;
        }
        self.begin_at(new, 0, true)?;
        // From here the old file's late lines move a checkpoint entry of their own.
        let until_unix = unix_now() + ROTATED_GRACE.as_secs();
        let line_end = old.pos - old.splitter.pending_bytes();
        if let Ok(position) = checkpoint::position_in(&old.file, line_end) {
            self.out.mark(End::Rotated(Rotated {
                until: until_unix,
                position,
            }));
        }
        self.retired = Some(Retired {
            tail: old,
            until: Instant::now() + ROTATED_GRACE,
            until_unix,
        });
        Ok(())
    }

    /// Reads a rotated file one last time and closes it; a last line without its newline is
    /// sent as it is (no writer will finish it now).
    fn close_retired(&mut self, retired: Retired) -> Result<(), Flow> {
        let side = Side::Rotated {
            until: retired.until_unix,
        };
        let mut old = retired.tail;
        while !self.pump(&mut old, side)? {}
        let held = old.splitter.pending_bytes();
        if let Some(piece) = old.splitter.finish() {
            log::warn!(
                "the rotated file {} ends with a line without a newline ({held} bytes); sent it as it is",
                old.path.display()
            );
            let item = to_item(
                &mut self.wrapper,
                piece,
                old.pos,
                self.settings.max_line_bytes,
                &old.path,
            );
            let mut items = vec![item];
            self.hand_over(&old, side, &mut items)?;
            self.flush(&old, side)?;
        }
        old.splitter.clear();
        self.out.mark(End::RotatedClosed);
        if let (Some(ino), Some(wd)) = (&self.inotify, old.wd) {
            ino.remove(wd);
        }
        Ok(())
    }

    fn open_tail(&self, path: &Path) -> io::Result<Tail> {
        let file = File::open(path)?;
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

    /// Writes the checkpoint if what is finished moved since the last write: durably when a
    /// second has passed since the last durable write (or now, with `force`), else without
    /// fsync. Nothing is written while nothing moves, so an idle watcher stays idle. A failure
    /// is logged and retried, durably, once a second: watching goes on, at the price of lines
    /// sent again after a restart.
    fn maybe_checkpoint(&mut self, force: bool) {
        let c = self.out.progress.committed();
        let Some(main) = &c.main else {
            return;
        };
        let due = force
            || self
                .last_durable
                .is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY);
        let sync = due && self.durable.as_ref() != Some(&c);
        // While writes fail, only the once-a-second durable attempt retries.
        if !sync && (self.checkpoint_failing || self.written.as_ref() == Some(&c)) {
            return;
        }
        let (ck, log) = (&self.settings.checkpoint, &self.settings.logfile);
        let stored = if sync {
            self.last_durable = Some(Instant::now());
            checkpoint::store(ck, log, main, c.rotated.as_ref())
        } else {
            checkpoint::store_unsynced(ck, log, main, c.rotated.as_ref())
        };
        match stored {
            Ok(()) => {
                if self.checkpoint_failing {
                    log::info!("checkpoint written again");
                    self.checkpoint_failing = false;
                }
                self.stats.checkpoints += 1;
                if sync {
                    self.stats.durable_checkpoints += 1;
                    self.durable = Some(c.clone());
                }
                self.written = Some(c);
            }
            Err(e) => {
                if first_time(&mut self.checkpoint_failing) {
                    log::error!("{e}; retrying every second (until then a restart would send some lines again)");
                }
            }
        }
    }

    /// The first checkpoint write: failing here means a misconfigured state folder, which
    /// is better reported at once than discovered after a crash.
    fn write_checkpoint_or_fail(&mut self) -> Result<(), Flow> {
        let c = self.out.progress.committed();
        if let Some(main) = &c.main {
            let (ck, log) = (&self.settings.checkpoint, &self.settings.logfile);
            checkpoint::store(ck, log, main, c.rotated.as_ref()).map_err(WatchError::Checkpoint)?;
            self.last_durable = Some(Instant::now());
            self.durable = Some(c.clone());
            self.written = Some(c);
            self.stats.checkpoints += 1;
            self.stats.durable_checkpoints += 1;
        }
        Ok(())
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
            "watch {}: stopped; {} lines sent in {} batches, {} dead-lettered, {} with invalid UTF-8, {} rotations, {} truncations",
            self.section,
            self.stats.lines,
            self.stats.batches,
            self.stats.dead_lettered,
            self.stats.invalid_utf8,
            self.stats.rotations,
            self.stats.truncations
        );
    }
}

/// A piece as an [`Item`]: a wrapped line, or an over-long line's first bytes and reason.
fn to_item(wrapper: &mut Wrapper, piece: Piece<'_>, end: u64, max: usize, path: &Path) -> Item {
    match piece {
        Piece::Line(l) => Item::Line {
            body: wrapper.wrap(l, || {
                format!("{}, line ending at byte {end}", path.display())
            }),
            end,
        },
        Piece::TooLong { len, head } => Item::TooLong {
            body: wrapper.wrap(head, || {
                format!("{}, line ending at byte {end}", path.display())
            }),
            reason: lines::too_long_reason(len, max, head.len()),
            end,
        },
    }
}

fn piece_text(wrapper: &mut Wrapper, piece: Piece<'_>) -> String {
    match piece {
        Piece::Line(l) => wrapper.wrap(l, || "an unfinished line".into()),
        Piece::TooLong { head, .. } => wrapper.wrap(head, || "an unfinished line".into()),
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

/// With `start_at = end`: the end of the file, or the start of the line being written there
/// (a line without its newline yet is new, and is read whole once finished).
fn line_start_before_end(file: &File) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let from = size.saturating_sub(LINE_START_SCAN);
    let mut buf = vec![0u8; (size - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    Ok(match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => from + i as u64 + 1,
        // No line end in the whole (short) file: it is one unfinished line.
        None if from == 0 => 0,
        // An unfinished line longer than the scan: start at the end, as asked.
        None => size,
    })
}

/// The checkpointed file under another name in the log's folder (rotated while the watcher
/// was stopped), recognised by device, inode and fingerprints.
fn find_rotated(logfile: &Path, p: &Position) -> Option<(PathBuf, File)> {
    let dir = match logfile.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(m) = std::fs::metadata(&path) else {
            continue;
        };
        if !m.is_file() || m.ino() != p.ino || m.dev() != p.dev || path == logfile {
            continue;
        }
        let Ok(f) = File::open(&path) else {
            continue;
        };
        if let Ok(None) = checkpoint::mismatch(&f, p) {
            return Some((path, f));
        }
    }
    None
}

#[cfg(test)]
mod tests;
