//! `loglines push`: log lines from standard input instead of a followed file, for Apache's
//! piped logging (`CustomLog "|/usr/bin/loglines push --section NAME" combined`) and for
//! replaying old logs (`loglines push --section NAME < access.log.1`).
//!
//! The same wrapping, batching and dead-lettering of over-long lines as `loglines watch`, but
//! no checkpoint: the input is consumed once. A partial batch is pushed as soon as no more
//! input is immediately available, so piped lines are not held back waiting for a full batch.
//! On SIGTERM/SIGINT whatever is already in the pipe is still read and pushed (briefly), since
//! nobody could read it again afterwards.

use super::WatchSettings;
use crate::config::Section;
use crate::queue::{Message, Producer, QueueError};
use crate::roles::notify::Notifier;
use crate::roles::watch::handover::{Handover, Refused};
use crate::roles::watch::lines::{self, LineSplitter, Piece, Wrapper};
use crate::util::compressed;
use crate::util::progress::Bar;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use crate::util::sys::readable;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

const READ_CHUNK: usize = 64 * 1024;
/// How long to wait for input before looking at the shutdown flag again.
const WAKE_EVERY: Duration = Duration::from_millis(250);
/// After a shutdown request, how long input already waiting in the pipe is still read.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// With a completion-tracking transport, how long to wait at the end for lines in flight
/// once shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// "No limit" for waits that end at shutdown anyway (a year: far, yet safe to add to now).
const UNTIL_SHUTDOWN: Duration = Duration::from_secs(365 * 86_400);

/// How the read loop ended early.
enum Halt {
    Refused(Refused),
    Read(io::Error),
}

impl From<Refused> for Halt {
    fn from(r: Refused) -> Self {
        Halt::Refused(r)
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushStats {
    /// Lines pushed (empty lines included).
    pub lines: u64,
    pub batches: u64,
    pub dead_lettered: u64,
    pub invalid_utf8: u64,
    /// Bytes read from the input.
    pub bytes: u64,
    /// False when shutdown came before the end of the input.
    pub reached_end: bool,
}

/// Why `loglines push` stopped with an error. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot read standard input: {0}; give the log on stdin (`loglines push --section NAME < FILE`)")]
    Read(io::Error),
    #[error("cannot push to the queue: {0}")]
    Queue(QueueError),
}

/// Reads `input` to its end (or until shutdown), pushing its lines through `producer` with
/// `settings`' service name, batch size and line limit; dead letters are told to `notifier`,
/// counts kept in `stats` as the watcher does.
pub fn run<R: Read + AsFd>(
    section: &Section,
    settings: &WatchSettings,
    producer: Box<dyn Producer>,
    mut input: R,
    shutdown: &Shutdown,
    notifier: &mut Notifier,
    stats: &Stats,
) -> Result<PushStats, PushError> {
    let out = Handover::new(
        producer,
        &settings.pushto,
        &section.name,
        shutdown,
        notifier,
        stats,
    );
    let max = settings.max_line_bytes;
    let mut p = Pusher {
        out,
        wrapper: Wrapper::new(&settings.servicename),
        splitter: LineSplitter::new(max),
        max,
        batch_size: section.batch_size.max(1),
        batch: Vec::new(),
        line_no: 0,
        counts: PushStats::default(),
    };
    let bar = Bar::over(input.as_fd(), 0);
    let result = p.read_all(&mut input, shutdown, bar.as_ref());
    if let Some(b) = &bar {
        b.finish();
    }
    p.finish(&section.name, result)
}

/// One run's reading state.
struct Pusher<'a> {
    out: Handover<'a>,
    wrapper: Wrapper,
    splitter: LineSplitter,
    max: usize,
    batch_size: usize,
    /// Lines read and not yet pushed.
    batch: Vec<Message>,
    line_no: u64,
    counts: PushStats,
}

impl Pusher<'_> {
    /// Reads to the end of the input, pushing full batches, and a partial one whenever the
    /// input pauses. After a shutdown request, what is already waiting is still read, for
    /// [`DRAIN_LIMIT`] at most.
    fn read_all<R: Read + AsFd>(
        &mut self,
        input: &mut R,
        shutdown: &Shutdown,
        bar: Option<&Bar>,
    ) -> Result<(), Halt> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut draining: Option<Instant> = None;
        loop {
            if shutdown.is_set() && draining.is_none() {
                log::info!("stopping: pushing what is already waiting on standard input");
                draining = Some(Instant::now());
            }
            if !readable(input.as_fd(), Duration::ZERO) {
                // Nothing more right now: send what we have instead of waiting for a full
                // batch, then sleep until input comes.
                self.send()?;
                if draining.is_some() {
                    return Ok(());
                }
                if !readable(input.as_fd(), WAKE_EVERY) {
                    continue;
                }
            }
            if draining.is_some_and(|t| t.elapsed() > DRAIN_LIMIT) {
                return Ok(self.send()?);
            }
            let n = match input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.send()?;
                    return Err(Halt::Read(e));
                }
            };
            if self.counts.bytes == 0 && n > 0 {
                // Compressed data reaches here only through a pipe (a file is decoded before):
                // its bytes are not lines.
                if let compressed::Kind::Gzip | compressed::Kind::Other(_) =
                    compressed::kind_of(&buf[..n])
                {
                    return Err(Halt::Read(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the input is compressed data coming through a pipe; give the file itself (`< FILE.gz`, gzip is read as it is) or decompress it into the pipe (`zcat FILE.gz | ...`)",
                    )));
                }
            }
            if let Some(b) = bar {
                b.advance(n as u64);
            }
            self.counts.bytes += n as u64;
            self.take(&buf[..n])?;
            if n == 0 {
                self.counts.reached_end = true;
                return Ok(());
            }
        }
    }

    /// Splits what was read into lines and hands them over in order: full batches pushed,
    /// over-long lines dead-lettered. Empty `chunk`: the end of the input (a last line
    /// without its newline is sent as it is, and the partial batch pushed).
    fn take(&mut self, chunk: &[u8]) -> Result<(), Refused> {
        let mut items: Vec<(u64, String, Option<String>)> = Vec::new();
        let (wrapper, max, line_no) = (&mut self.wrapper, self.max, &mut self.line_no);
        let mut add = |piece: Piece<'_>| {
            *line_no += 1;
            let (body, too_long) = item(wrapper, piece, *line_no, max);
            items.push((*line_no, body, too_long));
        };
        if chunk.is_empty() {
            if let Some(piece) = self.splitter.finish() {
                add(piece);
            }
            self.splitter.clear();
        } else {
            self.splitter.feed(chunk, |piece, _| add(piece));
        }
        for (line, body, too_long) in items {
            match too_long {
                None => {
                    self.batch.push(Message::new(body));
                    if self.batch.len() >= self.batch_size {
                        self.send()?;
                    }
                }
                Some(reason) => {
                    self.send()?;
                    log::warn!("standard input, line {line}: {reason}");
                    self.out.dead_letter(body, &reason, None)?;
                }
            }
        }
        if chunk.is_empty() {
            self.send()?;
        } else {
            self.wrapper.summarise(false);
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), Refused> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.out.send(std::mem::take(&mut self.batch), None)
    }

    /// After reading: waits until what was pushed is finished (a tracking transport), logs
    /// the counts and returns them, or the error that ended the reading.
    fn finish(mut self, section: &str, result: Result<(), Halt>) -> Result<PushStats, PushError> {
        let failed = match result {
            Ok(()) | Err(Halt::Refused(Refused::Stop)) => None,
            Err(Halt::Refused(Refused::Failed(e))) => Some(PushError::Queue(e)),
            Err(Halt::Read(e)) => Some(PushError::Read(e)),
        };
        // "Pushed" means finished for a tracking transport: wait for that, and once shutdown
        // is requested only a little longer.
        if !self.out.durable()
            && !self.out.wait_finished(UNTIL_SHUTDOWN, true)
            && !self.out.wait_finished(SHUTDOWN_GRACE, false)
        {
            log::warn!(
                "stopped before every line was finished downstream; those lines were not delivered"
            );
        }
        self.wrapper.summarise(true);
        let mut counts = self.counts;
        counts.lines = self.out.lines;
        counts.batches = self.out.batches;
        counts.dead_lettered = self.out.dead_lettered;
        counts.invalid_utf8 = self.wrapper.invalid;
        let end = if counts.reached_end {
            ""
        } else {
            "; stopped before the end of the input"
        };
        log::info!(
            "push {section}: {} lines sent in {} batches, {} dead-lettered, {} with invalid UTF-8{end}",
            counts.lines,
            counts.batches,
            counts.dead_lettered,
            counts.invalid_utf8,
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(counts),
        }
    }
}

/// A piece as (message text, reason to dead-letter it if it is too long).
fn item(
    wrapper: &mut Wrapper,
    piece: Piece<'_>,
    line_no: u64,
    max: usize,
) -> (String, Option<String>) {
    match piece {
        Piece::Line(l) => (
            wrapper.wrap(l, || format!("standard input, line {line_no}")),
            None,
        ),
        Piece::TooLong { len, head } => (
            wrapper.wrap(head, || format!("standard input, line {line_no}")),
            Some(lines::too_long_reason(len, max, head.len())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::Write;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    /// What the recording producer saw.
    #[derive(Default)]
    struct Seen {
        pushes: Vec<Vec<String>>,
        dead: Vec<(String, String)>,
        held: Vec<Message>,
    }

    struct Recording {
        seen: Arc<Mutex<Seen>>,
        tracks: bool,
    }

    impl Producer for Recording {
        fn push(&mut self, batch: Vec<Message>) -> crate::queue::QResult<()> {
            let mut s = self.seen.lock().unwrap();
            s.pushes
                .push(batch.iter().map(|m| m.body.clone()).collect());
            if self.tracks {
                s.held.extend(batch);
            }
            Ok(())
        }
        fn dead_letter(
            &mut self,
            item: Message,
            reason: &str,
            _: &str,
        ) -> crate::queue::QResult<()> {
            self.seen
                .lock()
                .unwrap()
                .dead
                .push((item.body, reason.into()));
            Ok(())
        }
        fn tracks_completion(&self) -> bool {
            self.tracks
        }
    }

    fn section(batch: usize, max: usize) -> (Section, WatchSettings) {
        let text = format!(
            "[logger_in]\ncommand = loglines watch\nlogfile = /tmp/x.log\npushto = q\nservicename = svc\nbatch_size = {batch}\nmax_line_bytes = {max}\n"
        );
        let c = Config::from_str(Path::new("/tmp/loglines.cfg"), &text).unwrap();
        let s = c.section("logger_in").unwrap().clone();
        let crate::roles::Role::Watch(w) = s.role.clone() else {
            panic!("not a watch section")
        };
        (s, w)
    }

    fn logline(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["logline"].as_str().unwrap().to_string()
    }

    /// A recording producer, and what it will have seen.
    fn recording(tracks: bool) -> (Arc<Mutex<Seen>>, Recording) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let p = Recording {
            seen: seen.clone(),
            tracks,
        };
        (seen, p)
    }

    /// [`run`] with no notify queue and throwaway counters, which these tests do not look at.
    fn push_from<R: Read + AsFd>(
        (s, w): &(Section, WatchSettings),
        p: Recording,
        input: R,
        shutdown: &Shutdown,
    ) -> Result<PushStats, PushError> {
        run(
            s,
            w,
            Box::new(p),
            input,
            shutdown,
            &mut Notifier::disabled(&s.name),
            &Stats::new(),
        )
    }

    #[test]
    fn a_file_on_stdin_is_pushed_in_full_batches_with_the_last_line_unterminated() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("old.log");
        let mut text = String::new();
        for i in 0..25 {
            text.push_str(&format!("line {i}\r\n"));
        }
        text.push_str("last without newline");
        std::fs::write(&f, &text).unwrap();
        let (seen, p) = recording(false);
        let file = std::fs::File::open(&f).unwrap();
        let counts = push_from(&section(10, 1024), p, file, &Shutdown::new()).unwrap();
        assert_eq!(counts.lines, 26);
        assert!(counts.reached_end);
        let seen = seen.lock().unwrap();
        let sizes: Vec<usize> = seen.pushes.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 6]);
        let all: Vec<String> = seen.pushes.iter().flatten().map(|b| logline(b)).collect();
        assert_eq!(all[0], "line 0");
        assert_eq!(all[24], "line 24");
        assert_eq!(all[25], "last without newline");
        assert!(seen.pushes[0][0].starts_with(r#"{"service":"svc","logline":"#));
    }

    #[test]
    fn piped_lines_are_pushed_promptly_and_long_lines_dead_lettered() {
        let (r, mut wr) = std::io::pipe().unwrap();
        let (seen, p) = recording(false);
        let h = std::thread::spawn(move || push_from(&section(500, 300), p, r, &Shutdown::new()));
        wr.write_all(b"first\n").unwrap();
        let pushed = |n: usize| {
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if seen.lock().unwrap().pushes.iter().flatten().count() >= n {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        assert!(pushed(1), "a single line is not held back for a full batch");
        let long = "z".repeat(1000);
        wr.write_all(format!("{long}\nafter\n").as_bytes()).unwrap();
        assert!(pushed(2));
        drop(wr);
        let counts = h.join().unwrap().unwrap();
        assert!(counts.reached_end);
        assert_eq!((counts.lines, counts.dead_lettered), (2, 1));
        let seen = seen.lock().unwrap();
        let (body, reason) = &seen.dead[0];
        assert!(
            reason.contains("1000 bytes") && reason.contains("(300)"),
            "{reason}"
        );
        assert_eq!(logline(body).len(), 1000.min(lines::DEAD_HEAD_BYTES));
        assert_eq!(logline(&seen.pushes.last().unwrap()[0]), "after");
    }

    #[test]
    fn with_a_tracking_transport_it_returns_only_when_every_line_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("old.log");
        std::fs::write(&f, "a\nb\nc\n").unwrap();
        let (seen, p) = recording(true);
        let file = std::fs::File::open(&f).unwrap();
        let run = std::thread::spawn(move || {
            let counts = push_from(&section(2, 1024), p, file, &Shutdown::new());
            (counts, Instant::now())
        });
        // Every line pushed: the input is read to its end, and a run that did not wait for its
        // lines would be returning now.
        let all_held = || {
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if seen.lock().unwrap().held.len() == 3 {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        assert!(all_held(), "the three lines were not pushed");
        // Nothing tells that run is waiting rather than about to return: it gets ten of its
        // 20 ms looks at the lines in which it must not return.
        let held_since = Instant::now();
        while held_since.elapsed() < Duration::from_millis(200) {
            assert!(
                !run.is_finished(),
                "run returned before the lines were finished"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let held: Vec<Message> = std::mem::take(&mut seen.lock().unwrap().held);
        assert!(held.iter().all(|m| m.lineage.is_tracked()));
        let released = Instant::now();
        drop(held);
        let (counts, returned) = run.join().unwrap();
        assert_eq!(counts.unwrap().lines, 3);
        assert!(
            returned >= released,
            "run returned before the lines were finished"
        );
    }
}
