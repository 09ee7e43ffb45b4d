//! Tests of the watcher against real files that are really appended to, rotated, truncated
//! and replaced, with a recording producer standing in for the transport.

use super::*;
use crate::config::Config;
use crate::queue::QResult;
use crate::roles::notify::Notifier;
use crate::roles::Role;
use crate::util::stats::Stats;
use checkpoint::Loaded;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

// ---- a logger that keeps what was logged, so tests can check the warnings ----

struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        if let Ok(mut v) = self.0.lock() {
            v.push((r.level(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static C: OnceLock<&'static Capture> = OnceLock::new();
    C.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        if log::set_logger(c).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
        c
    })
}

/// Messages logged at `level` that mention `needle` (tests use their temp folder's path, so
/// parallel tests do not see each other's messages).
fn logged(level: log::Level, needle: &str) -> Vec<String> {
    capture()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == level && m.contains(needle))
        .map(|(_, m)| m.clone())
        .collect()
}

// ---- the recording producer ----

#[derive(Default)]
struct Seen {
    /// Each push's message texts.
    pushes: Vec<Vec<String>>,
    /// (message, reason) of each dead letter.
    dead: Vec<(String, String)>,
    /// With `tracks`, the pushed messages, kept (so their lineage lives) until a test drops
    /// them.
    held: Vec<Message>,
    /// Pushes still to fail with "unavailable" before one succeeds.
    fail_next: usize,
    /// With `ck`, the checkpoint offset on disk when each push arrived.
    offset_at_push: Vec<Option<u64>>,
}

struct Recording {
    seen: Arc<Mutex<Seen>>,
    tracks: bool,
    /// The checkpoint to look at on each push (what a kill at that moment would leave).
    ck: Option<PathBuf>,
}

impl Producer for Recording {
    fn push(&mut self, batch: Vec<Message>) -> QResult<()> {
        let mut s = self.seen.lock().unwrap();
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(QueueError::Unavailable("test: server away".into()));
        }
        s.pushes
            .push(batch.iter().map(|m| m.body.clone()).collect());
        if let Some(ck) = &self.ck {
            s.offset_at_push.push(offset_in(ck));
        }
        if self.tracks {
            s.held.extend(batch);
        }
        Ok(())
    }
    fn dead_letter(&mut self, item: Message, reason: &str, section: &str) -> QResult<()> {
        assert_eq!(section, "logger_watch");
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

// ---- harness ----

struct Harness {
    dir: tempfile::TempDir,
    log: PathBuf,
    ck: PathBuf,
    seen: Arc<Mutex<Seen>>,
    /// What went to the notify queue.
    notices: Arc<Mutex<Seen>>,
    /// The shared counters the watcher updates.
    counters: Stats,
    start_at: &'static str,
    batch: usize,
    max_line: usize,
}

struct Running {
    handle: JoinHandle<Result<WatchStats, WatchError>>,
    shutdown: Shutdown,
}

impl Harness {
    fn new(start_at: &'static str) -> Harness {
        capture();
        let dir = tempfile::Builder::new()
            .prefix("loglines-watch-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("access.log");
        let ck = dir.path().join("state").join("w.checkpoint");
        Harness {
            dir,
            log,
            ck,
            seen: Arc::new(Mutex::new(Seen::default())),
            notices: Arc::new(Mutex::new(Seen::default())),
            counters: Stats::new(),
            start_at,
            batch: 500,
            max_line: 1 << 20,
        }
    }

    /// A string that only this test's log messages contain.
    fn tag(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn section(&self) -> (Section, WatchSettings) {
        let text = format!(
            "[logger_watch]\ncommand = loglines watch\nlogfile = {}\npushto = lines\nservicename = repo.example.org\nstart_at = {}\nbatch_size = {}\nmax_line_bytes = {}\ncheckpoint = {}\nnotify_queue = notices\n",
            self.log.display(),
            self.start_at,
            self.batch,
            self.max_line,
            self.ck.display()
        );
        let c = Config::from_str(&self.dir.path().join("loglines.cfg"), &text)
            .unwrap_or_else(|d| panic!("{d:?}"));
        let s = c.section("logger_watch").unwrap().clone();
        let Role::Watch(w) = s.role.clone() else {
            panic!("not a watch section")
        };
        (s, w)
    }

    fn start(&self, tracks: bool) -> Running {
        self.start_on(tracks, || {})
    }

    /// [`Harness::start`], running `first` on the watcher's thread before the watcher.
    fn start_on(&self, tracks: bool, first: impl FnOnce() + Send + 'static) -> Running {
        let (s, w) = self.section();
        let p = Recording {
            seen: self.seen.clone(),
            tracks,
            ck: Some(self.ck.clone()),
        };
        let shutdown = Shutdown::new();
        let sd = shutdown.clone();
        let notices = Recording {
            seen: self.notices.clone(),
            tracks: false,
            ck: None,
        };
        let counters = self.counters.clone();
        let handle = std::thread::spawn(move || {
            first();
            let mut n = Notifier::new(&s.name, s.notify.clone(), Some(Box::new(notices)));
            run(&s, &w, Box::new(p), &sd, &mut n, &counters)
        });
        Running { handle, shutdown }
    }

    /// Every pushed line's `logline`, in push order.
    fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .pushes
            .iter()
            .flatten()
            .map(|b| logline(b))
            .collect()
    }

    /// Waits (at most 10 s) until `n` lines were pushed; returns them.
    fn wait_lines(&self, n: usize) -> Vec<String> {
        let mut l = Vec::new();
        wait_for(|| {
            l = self.lines();
            l.len() >= n
        });
        l
    }

    fn append(&self, text: &[u8]) {
        self.writer().write_all(text).unwrap();
    }

    /// Writes lines `0..n`, runs the watcher until it has pushed them, and stops it: a first
    /// run leaving a checkpoint at the end of those lines.
    fn first_run(&self, n: usize) {
        self.append(numbered(0, n).as_bytes());
        let r = self.start(false);
        self.wait_lines(n);
        r.stop();
    }

    /// The log opened for appending and kept open, as a web server keeps its log across a
    /// rotation.
    fn writer(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap()
    }

    /// Truncates the log to nothing in place (same inode), as copytruncate does.
    fn truncate(&self) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.log)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    fn checkpoint_offset(&self) -> Option<u64> {
        offset_in(&self.ck)
    }

    /// The checkpoint on disk, which must be there and usable.
    fn checkpoint(&self) -> checkpoint::Checkpoint {
        match checkpoint::load(&self.ck) {
            Loaded::Found { checkpoint, .. } => *checkpoint,
            other => panic!("{other:?}"),
        }
    }

    /// Warnings about the followed log: those starting with its path, then `what`.
    fn log_warnings(&self, what: &str) -> Vec<String> {
        logged(log::Level::Warn, &format!("{} {what}", self.log.display()))
    }
}

impl Running {
    /// Requests shutdown and waits for the watcher: it must stop well within the 5 s that
    /// supervisord and the issue allow (a tracking transport gets up to 2 s for lines in
    /// flight).
    fn stop(self) -> WatchStats {
        let t = Instant::now();
        self.shutdown.trigger();
        while !self.handle.is_finished() {
            assert!(
                t.elapsed() < Duration::from_millis(4500),
                "the watcher did not stop within 4.5 s of shutdown"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.handle.join().unwrap().unwrap()
    }
}

fn offset_in(ck: &Path) -> Option<u64> {
    match checkpoint::load(ck) {
        Loaded::Found { checkpoint, .. } => Some(checkpoint.position.offset),
        _ => None,
    }
}

fn logline(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["logline"].as_str().unwrap().to_string()
}

fn numbered(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("line {i}\n")).collect()
}

/// The length of `numbered(0, n)`: the offset just after line `n - 1`.
fn end_of(n: usize) -> u64 {
    numbered(0, n).len() as u64
}

fn expect_numbered(got: &[String], from: usize, to: usize) {
    let want: Vec<String> = (from..to).map(|i| format!("line {i}")).collect();
    assert_eq!(got, &want[..]);
}

/// `numbered` lines in number order (lines written late to a rotated file arrive out of
/// order).
fn sorted_by_number(mut lines: Vec<String>) -> Vec<String> {
    lines.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
    lines
}

/// Polls `cond` until it is true, for at most 10 s; returns its last value.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Harness {
    /// Waits until the watcher has looked at its files once more after this call began:
    /// whatever it was going to do about what happened before, it has done. (The look in
    /// progress may have started earlier; the one after it has not.) A file created and
    /// removed beside the log wakes the watcher (inotify), rather than waiting for the look it
    /// makes once a second anyway; the watcher itself only cares about its own file's name.
    fn settle(&self) {
        let looks = || {
            self.counters
                .looks
                .load(std::sync::atomic::Ordering::SeqCst)
        };
        let from = looks();
        let poke = self.dir.path().join(".settle");
        assert!(
            wait_for(|| {
                let _ = std::fs::write(&poke, b"");
                let _ = std::fs::remove_file(&poke);
                std::thread::sleep(Duration::from_millis(20));
                looks() >= from + 2
            }),
            "the watcher stopped looking at its files"
        );
    }
}

// ---- tests ----

#[test]
fn start_at_end_skips_what_is_there_but_keeps_a_line_being_written() {
    let h = Harness::new("end");
    h.append(b"old 1\nold 2\nhalf of a ");
    let r = h.start(false);
    // The first checkpoint is written at once, before any line arrives.
    assert!(wait_for(|| h.checkpoint_offset() == Some(12)));
    h.append(b"line\nnew 1\n");
    let got = h.wait_lines(2);
    assert_eq!(got, vec!["half of a line", "new 1"]);
    r.stop();
}

#[test]
fn start_at_beginning_reads_everything_there() {
    let h = Harness::new("beginning");
    h.append(numbered(0, 5).as_bytes());
    let r = h.start(false);
    expect_numbered(&h.wait_lines(5), 0, 5);
    r.stop();
    assert_eq!(h.checkpoint_offset(), Some(end_of(5)));
}

#[test]
fn a_restart_resumes_exactly_at_the_checkpoint() {
    let mut h = Harness::new("end");
    h.batch = 7;
    h.append(b"before the first start\n");
    let r = h.start(false);
    assert!(wait_for(|| h.checkpoint_offset().is_some()));
    h.append(numbered(0, 100).as_bytes());
    h.wait_lines(100);
    let stats = r.stop();
    assert_eq!(stats.lines, 100);
    // Batches of 7, the last one partial (a read racing the write may split one more).
    assert!(
        (15..=17).contains(&stats.batches),
        "{} batches",
        stats.batches
    );
    // Written while nobody watches, including a half line finished after the restart.
    h.append(numbered(100, 150).as_bytes());
    h.append(b"line 1");
    let r = h.start(false);
    h.append(b"50\n");
    h.wait_lines(151);
    h.settle();
    let all: Vec<String> = numbered(0, 151).lines().map(String::from).collect();
    assert_eq!(h.lines(), all, "nothing sent twice, nothing skipped");
    r.stop();
}

#[test]
fn a_partial_line_is_held_until_its_newline_comes() {
    let h = Harness::new("beginning");
    h.append(b"complete\nincompl");
    let r = h.start(false);
    assert_eq!(h.wait_lines(1), vec!["complete"]);
    h.settle();
    assert_eq!(h.lines().len(), 1, "the unfinished line was sent early");
    h.append(b"ete\r\n");
    assert_eq!(h.wait_lines(2), vec!["complete", "incomplete"]);
    let stats = r.stop();
    // The checkpoint never points into the middle of a line.
    assert_eq!(stats.lines, 2);
    assert_eq!(
        h.checkpoint_offset(),
        Some(b"complete\nincomplete\r\n".len() as u64)
    );
}

#[test]
fn crlf_is_stripped_and_empty_lines_pass() {
    let h = Harness::new("beginning");
    h.append(b"a\r\n\r\n\nb\n");
    let r = h.start(false);
    assert_eq!(h.wait_lines(4), vec!["a", "", "", "b"]);
    r.stop();
}

#[test]
fn invalid_utf8_is_converted_and_counted() {
    let h = Harness::new("beginning");
    h.append(b"caf\xe9\nok\n\xff\xfe\n");
    let r = h.start(false);
    assert_eq!(
        h.wait_lines(3),
        vec!["caf\u{fffd}", "ok", "\u{fffd}\u{fffd}"]
    );
    let stats = r.stop();
    assert_eq!(stats.invalid_utf8, 2);
    assert_eq!(
        logged(log::Level::Warn, &h.tag()).len(),
        1,
        "first occurrence logged"
    );
    // The raw JSON is valid and keeps the key order.
    let first = h.seen.lock().unwrap().pushes[0][0].clone();
    assert_eq!(
        first,
        "{\"service\":\"repo.example.org\",\"logline\":\"caf\u{fffd}\"}"
    );
}

#[test]
fn a_two_mib_line_is_dead_lettered_and_the_rest_flows() {
    let h = Harness::new("beginning");
    let r = h.start(false);
    h.append(b"before\n");
    h.wait_lines(1);
    // Written in pieces, as a slow writer would, so the watcher streams over it.
    let piece = vec![b'x'; 256 * 1024];
    for _ in 0..8 {
        h.append(&piece);
    }
    h.append(b"\nafter\n");
    assert_eq!(h.wait_lines(2), vec!["before", "after"]);
    let stats = r.stop();
    assert_eq!(stats.dead_lettered, 1);
    let seen = h.seen.lock().unwrap();
    let (body, reason) = &seen.dead[0];
    assert!(
        reason.contains("2097152 bytes") && reason.contains("(1048576)"),
        "{reason}"
    );
    let head = logline(body);
    assert_eq!(head.len(), lines::DEAD_HEAD_BYTES);
    assert!(head.bytes().all(|b| b == b'x'));
    // A person is told (notify_queue), and the shared counters saw it.
    let notices = h.notices.lock().unwrap();
    assert_eq!(notices.pushes.len(), 1);
    assert!(
        notices.pushes[0][0].contains("2097152 bytes"),
        "{:?}",
        notices.pushes
    );
    drop(notices);
    // Three lines read: two pushed, one dead-lettered.
    let c = h.counters.snapshot();
    assert_eq!((c.read, c.dead), (3, 1));
    // The checkpoint moved past the dead-lettered line too.
    drop(seen);
    assert_eq!(h.checkpoint_offset(), Some(7 + 2 * 1024 * 1024 + 1 + 6));
}

#[test]
fn rename_rotation_loses_nothing_written_to_the_old_file() {
    let h = Harness::new("beginning");
    let r = h.start(false);
    // The writer keeps its descriptor across the rename, as a web server does.
    let mut writer = h.writer();
    writer.write_all(numbered(0, 10).as_bytes()).unwrap();
    h.wait_lines(10);
    let rotated = h.dir.path().join("access.log.1");
    std::fs::rename(&h.log, &rotated).unwrap();
    // After the rename, before the server reopens its log.
    writer.write_all(numbered(10, 20).as_bytes()).unwrap();
    h.wait_lines(20);
    writer.write_all(numbered(20, 25).as_bytes()).unwrap();
    // The server reopens: a new file under the name.
    h.append(numbered(25, 30).as_bytes());
    let got = h.wait_lines(30);
    // A straggler still writing to the old file after the switch (a long download ending).
    writer.write_all(numbered(30, 32).as_bytes()).unwrap();
    let got2 = h.wait_lines(32);
    let stats = r.stop();
    expect_numbered(&sorted_by_number(got2), 0, 32);
    expect_numbered(&got[..25], 0, 25);
    assert_eq!(stats.rotations, 1);
    assert_eq!(stats.late_lines, 2);
    // The checkpoint is on the new file, at its end.
    assert_eq!(h.checkpoint_offset(), Some(numbered(25, 30).len() as u64));
}

#[test]
fn late_lines_of_a_rotated_file_written_while_stopped_are_read_after_a_restart() {
    let h = Harness::new("beginning");
    let r = h.start(false);
    let mut writer = h.writer();
    writer.write_all(numbered(0, 5).as_bytes()).unwrap();
    h.wait_lines(5);
    std::fs::rename(&h.log, h.dir.path().join("access.log.1")).unwrap();
    h.append(numbered(5, 8).as_bytes());
    h.wait_lines(8);
    writer.write_all(numbered(8, 10).as_bytes()).unwrap();
    h.wait_lines(10);
    r.stop();
    let rotated = h
        .checkpoint()
        .rotated
        .expect("the rotated file is in the checkpoint");
    assert_eq!(
        rotated.position.offset,
        (numbered(0, 5).len() + numbered(8, 10).len()) as u64
    );
    // The web server still finishes requests into the old file while the watcher is down.
    writer.write_all(numbered(10, 13).as_bytes()).unwrap();
    let r = h.start(false);
    h.wait_lines(13);
    h.append(numbered(13, 15).as_bytes());
    h.wait_lines(15);
    h.settle();
    let stats = r.stop();
    expect_numbered(&sorted_by_number(h.lines()), 0, 15);
    assert_eq!(stats.late_lines, 3);
}

#[test]
fn a_rotated_file_gone_while_stopped_is_reported() {
    let h = Harness::new("beginning");
    let r = h.start(false);
    h.append(numbered(0, 2).as_bytes());
    h.wait_lines(2);
    let old = h.dir.path().join("access.log.1");
    std::fs::rename(&h.log, &old).unwrap();
    h.append(numbered(2, 4).as_bytes());
    h.wait_lines(4);
    r.stop();
    std::fs::remove_file(&old).unwrap();
    let r = h.start(false);
    h.append(numbered(4, 5).as_bytes());
    expect_numbered(&h.wait_lines(5), 0, 5);
    r.stop();
    let warned = logged(log::Level::Warn, "is no longer in the folder");
    assert!(warned.iter().any(|w| w.contains(&h.tag())), "{warned:?}");
    // Forgotten in the next checkpoint.
    assert_eq!(h.checkpoint().rotated, None);
}

#[test]
fn copytruncate_starts_the_file_again() {
    let h = Harness::new("beginning");
    let r = h.start(false);
    h.append(numbered(0, 20).as_bytes());
    h.wait_lines(20);
    std::fs::copy(&h.log, h.dir.path().join("access.log.1")).unwrap();
    h.truncate();
    h.append(numbered(20, 23).as_bytes());
    expect_numbered(&h.wait_lines(23), 0, 23);
    let stats = r.stop();
    assert_eq!(stats.truncations, 1);
    assert_eq!(stats.rotations, 0);
    assert_eq!(h.checkpoint_offset(), Some(numbered(20, 23).len() as u64));
    assert!(!h.log_warnings("was truncated").is_empty());
}

#[test]
fn delete_and_recreate_follows_the_new_file() {
    let h = Harness::new("beginning");
    let r = h.start(false);
    h.append(numbered(0, 5).as_bytes());
    h.wait_lines(5);
    std::fs::remove_file(&h.log).unwrap();
    h.settle();
    h.append(numbered(5, 12).as_bytes());
    expect_numbered(&h.wait_lines(12), 0, 12);
    let stats = r.stop();
    assert_eq!(stats.rotations, 1);
}

#[test]
fn a_file_replaced_while_stopped_is_read_from_its_start_and_said_so() {
    let h = Harness::new("beginning");
    h.first_run(5);
    // Another file takes the name; the old one is gone for good.
    let tmp = h.dir.path().join("new.tmp");
    std::fs::write(&tmp, "other 1\nother 2\n").unwrap();
    std::fs::rename(&tmp, &h.log).unwrap();
    let r = h.start(false);
    let got = h.wait_lines(7);
    assert_eq!(&got[5..], ["other 1", "other 2"]);
    r.stop();
    let warned = h.log_warnings("was replaced");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("inode"), "{}", warned[0]);
}

#[test]
fn a_file_rewritten_in_place_while_stopped_is_read_from_its_start() {
    let h = Harness::new("beginning");
    h.first_run(3);
    // Same inode, longer than the offset, but different bytes before it.
    h.truncate();
    h.append(b"LINE 0\nLINE 1\nLINE 2\nLINE 3\n");
    let r = h.start(false);
    let got = h.wait_lines(7);
    assert_eq!(&got[3..], ["LINE 0", "LINE 1", "LINE 2", "LINE 3"]);
    r.stop();
    let warned = h.log_warnings("is not the file the checkpoint describes");
    assert!(warned[0].contains("differ"), "{warned:?}");
}

#[test]
fn copytruncate_while_stopped_finishes_the_copy_before_the_truncated_file() {
    let h = Harness::new("beginning");
    h.first_run(4);
    // Written after the checkpoint, then copied and truncated (logrotate's copytruncate).
    h.append(numbered(4, 8).as_bytes());
    std::fs::copy(&h.log, h.dir.path().join("access.log.1")).unwrap();
    h.truncate();
    h.append(numbered(8, 10).as_bytes());
    let r = h.start(false);
    expect_numbered(&h.wait_lines(10), 0, 10);
    h.settle();
    r.stop();
    expect_numbered(&h.lines(), 0, 10);
    assert!(h
        .log_warnings("is not the file the checkpoint describes")
        .is_empty());
}

#[test]
fn copytruncate_while_stopped_without_the_copy_says_what_is_lost() {
    let h = Harness::new("beginning");
    h.first_run(4);
    h.append(numbered(4, 8).as_bytes());
    // The copy was compressed (or removed) before the watcher came back.
    h.truncate();
    h.append(numbered(8, 10).as_bytes());
    let r = h.start(false);
    let got = h.wait_lines(6);
    r.stop();
    expect_numbered(&got[4..], 8, 10);
    let warned = h.log_warnings("is not the file the checkpoint describes");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains(&format!("after byte {} before that is lost", end_of(4))),
        "{}",
        warned[0]
    );
}

#[test]
fn a_file_rotated_while_stopped_is_finished_before_the_new_one() {
    let h = Harness::new("beginning");
    h.first_run(4);
    h.append(numbered(4, 8).as_bytes());
    std::fs::rename(&h.log, h.dir.path().join("access.log.1")).unwrap();
    h.append(numbered(8, 10).as_bytes());
    let r = h.start(false);
    expect_numbered(&h.wait_lines(10), 0, 10);
    h.settle();
    let stats = r.stop();
    expect_numbered(&h.lines(), 0, 10);
    assert_eq!(stats.rotations, 1);
    // Read as part of the old file before the switch, so covered by the checkpoint; not as
    // stragglers after it.
    assert_eq!(stats.late_lines, 0);
}

#[test]
fn a_missing_file_is_waited_for_and_read_whole_when_it_appears() {
    let h = Harness::new("end");
    let r = h.start(false);
    h.settle();
    let warned = h.log_warnings("does not exist");
    assert_eq!(warned.len(), 1);
    h.append(numbered(0, 3).as_bytes());
    expect_numbered(&h.wait_lines(3), 0, 3);
    h.settle();
    r.stop();
    assert_eq!(h.log_warnings("does not exist").len(), 1, "said once");
}

#[test]
fn a_corrupt_checkpoint_falls_back_to_the_previous_copy() {
    let h = Harness::new("beginning");
    h.first_run(10);
    let older = std::fs::read(&h.ck).unwrap();
    assert_eq!(h.checkpoint_offset(), Some(end_of(10)));
    let r = h.start(false);
    h.append(numbered(10, 20).as_bytes());
    h.wait_lines(20);
    r.stop();
    // What a power loss can leave: the unsynced main copy garbage, the synced previous copy
    // older (here by lines 10..20).
    std::fs::write(checkpoint::prev_path(&h.ck), older).unwrap();
    std::fs::write(&h.ck, b"{\"version\":1,\"logf").unwrap();
    h.append(numbered(20, 25).as_bytes());
    let r = h.start(false);
    let got = h.wait_lines(35);
    h.settle();
    r.stop();
    // Lines 10..20 were sent again (the fallback is older), nothing was skipped.
    let mut want: Vec<String> = numbered(0, 20).lines().map(String::from).collect();
    want.extend(numbered(10, 25).lines().map(String::from));
    assert_eq!(got, want);
    assert_eq!(h.lines().len(), 35);
    assert_eq!(
        logged(log::Level::Warn, &format!("{}", h.ck.display())).len(),
        1
    );
}

#[test]
fn every_acknowledged_batch_is_in_the_checkpoint_before_the_next_push() {
    let mut h = Harness::new("beginning");
    h.batch = 10;
    h.append(numbered(0, 100).as_bytes());
    let t = Instant::now();
    let r = h.start(false);
    h.wait_lines(100);
    let stats = r.stop();
    let secs = t.elapsed().as_secs();
    // A kill at any push would leave the checkpoint at the end of the batch before it: at most
    // the one batch being pushed is sent again.
    let want: Vec<Option<u64>> = (0..10).map(|k| Some(end_of(10 * k))).collect();
    assert_eq!(h.seen.lock().unwrap().offset_at_push, want);
    assert_eq!(h.checkpoint_offset(), Some(end_of(100)));
    // The fsynced writes stay rare: the first, the one making `NAME.prev`, one a second, the
    // last.
    assert!(stats.checkpoints >= 11, "{stats:?}");
    assert!(stats.durable_checkpoints <= 3 + secs, "{stats:?}");
}

#[test]
fn an_idle_watcher_writes_no_checkpoint() {
    for tracks in [false, true] {
        let h = Harness::new("beginning");
        h.append(numbered(0, 5).as_bytes());
        let r = h.start(tracks);
        h.wait_lines(5);
        // With completion tracking, the lines finish later, while the watcher is idle.
        drop(std::mem::take(&mut h.seen.lock().unwrap().held));
        let end = end_of(5);
        assert!(wait_for(|| h.checkpoint_offset() == Some(end)));
        // Past the durable write that follows the last one within a second: made at the
        // first look after that second.
        let reached = Instant::now();
        assert!(wait_for(|| reached.elapsed() >= CHECKPOINT_EVERY));
        h.settle();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let prev = checkpoint::prev_path(&h.ck);
        let before = (ino(&h.ck), ino(&prev));
        // Three looks (an idle watcher looks once a second), each of which would have written
        // the checkpoint if it were going to.
        h.settle();
        h.settle();
        // Every write renames a new file into place: the same inodes mean no write.
        assert_eq!((ino(&h.ck), ino(&prev)), before, "tracks {tracks}");
        let stats = r.stop();
        assert_eq!(h.checkpoint_offset(), Some(end));
        assert!(stats.checkpoints <= 4, "tracks {tracks}: {stats:?}");
    }
}

#[test]
fn with_completion_tracking_the_checkpoint_waits_for_unfinished_lines() {
    let mut h = Harness::new("beginning");
    h.batch = 1;
    h.append(b"");
    let r = h.start(true);
    assert!(wait_for(|| h.checkpoint_offset() == Some(0)));
    h.append(numbered(0, 5).as_bytes());
    h.wait_lines(5);
    let held: Vec<Message> = std::mem::take(&mut h.seen.lock().unwrap().held);
    assert!(held.iter().all(|m| m.lineage.is_tracked()));
    let mut held: Vec<Option<Message>> = held.into_iter().map(Some).collect();
    // Finished out of order: lines 2 and 3 (0-based) first. The checkpoint must not move.
    held[2] = None;
    held[3] = None;
    h.settle();
    assert_eq!(h.checkpoint_offset(), Some(0));
    held[0] = None;
    assert!(wait_for(|| h.checkpoint_offset() == Some(end_of(1))));
    h.settle();
    assert_eq!(
        h.checkpoint_offset(),
        Some(end_of(1)),
        "line 1 is in flight"
    );
    held[1] = None;
    assert!(wait_for(|| h.checkpoint_offset() == Some(end_of(4))));
    // Line 4 stays unfinished through shutdown: the final checkpoint stops before it.
    let stats = r.stop();
    assert_eq!(stats.lines, 5);
    assert_eq!(h.checkpoint_offset(), Some(end_of(4)));
    drop(held);
}

#[test]
fn a_failing_push_is_retried_and_nothing_is_lost_or_doubled() {
    let h = Harness::new("beginning");
    h.seen.lock().unwrap().fail_next = 1;
    h.append(numbered(0, 3).as_bytes());
    let r = h.start(false);
    expect_numbered(&h.wait_lines(3), 0, 3);
    r.stop();
    expect_numbered(&h.lines(), 0, 3);
    assert!(!logged(log::Level::Warn, "test: server away").is_empty());
}

#[test]
fn an_idle_watcher_uses_no_cpu() {
    let h = Harness::new("beginning");
    h.append(b"one\n");
    let (tx, rx) = std::sync::mpsc::channel();
    let r = h.start_on(false, move || {
        tx.send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap()
    });
    let tid = rx.recv().unwrap();
    h.wait_lines(1);
    h.settle();
    let ticks = || {
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let looks = || h.counters.looks.load(std::sync::atomic::Ordering::SeqCst);
    let (before, looked, t) = (ticks(), looks(), Instant::now());
    // CPU use is measured over a span of time: at least 3 s, and at least two of the looks an
    // idle watcher makes once a second, so that a watcher that hung (and so used nothing)
    // fails instead of passing.
    assert!(
        wait_for(|| t.elapsed() >= Duration::from_secs(3) && looks() >= looked + 2),
        "the idle watcher stopped looking at its file"
    );
    let (used, span) = (ticks() - before, t.elapsed());
    r.stop();
    // Clock ticks are 10 ms: 2 ticks in 3 s is under 1% of a core.
    assert!(
        used <= 2,
        "the idle watcher used {used} clock ticks in {span:?}"
    );
}
