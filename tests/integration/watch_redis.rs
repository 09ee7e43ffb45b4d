//! The watcher and `loglines push` on the real transports: a real redis-server (in-process
//! and as the real binary), and the embedded transport with a real consumer acking out of
//! order.

use crate::support;

use loglines::config::{Config, RedisSettings, Section};
use loglines::queue::embedded::EmbeddedTransport;
use loglines::queue::redis::RedisTransport;
use loglines::queue::{Consumer, ConsumerId, Producer, Transport};
use loglines::roles::notify::Notifier;
use loglines::roles::watch::WatchSettings;
use loglines::roles::watch::{self, checkpoint, WatchStats};
use loglines::roles::Role;
use loglines::util::shutdown::Shutdown;
use loglines::util::stats::Stats;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;
use support::bin::assert_exit;
use support::redis::RedisServer;
use support::{temp_dir, wait_until};

const WAIT: Duration = Duration::from_secs(15);

/// A config file for one watch section reading `log` into queue `lines` on `port`.
fn config_text(port: u16, log: &Path, ck: &Path, batch: usize) -> String {
    format!(
        "[redis]\nhost = 127.0.0.1\nport = {port}\n\n[logger_watch]\ncommand = loglines watch\nlogfile = {}\npushto = lines\nservicename = repo.example.org\nstart_at = beginning\nbatch_size = {batch}\ncheckpoint = {}\n",
        log.display(),
        ck.display()
    )
}

fn section(cfg: &Path, text: &str) -> (Config, Section, WatchSettings) {
    std::fs::write(cfg, text).unwrap();
    let c = Config::load(cfg).unwrap_or_else(|d| panic!("{d:?}"));
    let s = c.section("logger_watch").unwrap().clone();
    let Role::Watch(w) = s.role.clone() else {
        panic!("not a watch section")
    };
    (c, s, w)
}

/// The loglines in queue `key`, oldest first (producers LPUSH, so LRANGE is newest first).
fn queue_lines(redis: &RedisServer, key: &str) -> Vec<String> {
    let text = redis.redis_cmd(&["LRANGE", key, "0", "-1"]);
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|m| {
            let j: serde_json::Value =
                serde_json::from_str(m).unwrap_or_else(|e| panic!("{e}: {m}"));
            assert_eq!(j["service"], "repo.example.org");
            j["logline"].as_str().unwrap().to_string()
        })
        .collect();
    v.reverse();
    v
}

fn numbered(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("line {i}\n")).collect()
}

fn expect_numbered(got: &[String], from: usize, to: usize) {
    let want: Vec<String> = (from..to).map(|i| format!("line {i}")).collect();
    assert_eq!(got, &want[..]);
}

fn append(path: &Path, text: &[u8]) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text))
        .unwrap();
}

/// Runs the watcher in a thread, pushing through `producer`, until `shutdown`.
fn spawn_watch(
    s: &Section,
    w: &WatchSettings,
    producer: Box<dyn Producer>,
    shutdown: &Shutdown,
) -> JoinHandle<WatchStats> {
    let (s, w, sd) = (s.clone(), w.clone(), shutdown.clone());
    std::thread::spawn(move || {
        let mut n = Notifier::disabled(&s.name);
        watch::run(&s, &w, producer, &sd, &mut n, &Stats::new()).unwrap()
    })
}

fn start_in_process(
    s: &Section,
    w: &WatchSettings,
    redis: &RedisSettings,
) -> (JoinHandle<WatchStats>, Shutdown) {
    let shutdown = Shutdown::new();
    let producer = RedisTransport::connect(redis, shutdown.clone())
        .unwrap()
        .producer(&w.pushto)
        .unwrap();
    (spawn_watch(s, w, producer, &shutdown), shutdown)
}

#[test]
fn over_redis_a_restart_and_a_rotation_deliver_every_line_once() {
    let redis = RedisServer::start();
    let dir = temp_dir();
    let log = dir.path().join("access.log");
    let (c, s, w) = section(
        &dir.path().join("loglines.cfg"),
        &config_text(redis.port(), &log, &dir.path().join("w.checkpoint"), 10),
    );
    let rs = c.redis_for(&s).clone();
    append(&log, numbered(0, 25).as_bytes());
    let (h, sd) = start_in_process(&s, &w, &rs);
    assert!(wait_until(WAIT, || queue_lines(&redis, "lines").len() >= 25));
    sd.trigger();
    let stats = h.join().unwrap();
    assert_eq!((stats.lines, stats.batches), (25, 3));
    // While stopped: more lines, then a rotation, then lines in the new file.
    append(&log, numbered(25, 30).as_bytes());
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    append(&log, numbered(30, 33).as_bytes());
    let (h, sd) = start_in_process(&s, &w, &rs);
    assert!(wait_until(WAIT, || queue_lines(&redis, "lines").len() >= 33));
    // And a rotation while running.
    std::fs::rename(&log, dir.path().join("access.log.2")).unwrap();
    append(&log, numbered(33, 40).as_bytes());
    assert!(wait_until(WAIT, || queue_lines(&redis, "lines").len() >= 40));
    sd.trigger();
    let stats = h.join().unwrap();
    assert_eq!(stats.rotations, 2);
    expect_numbered(&queue_lines(&redis, "lines"), 0, 40);
}

#[test]
fn over_redis_a_long_line_becomes_a_dead_letter_with_its_reason() {
    let redis = RedisServer::start();
    let dir = temp_dir();
    let log = dir.path().join("access.log");
    let (c, s, w) = section(
        &dir.path().join("loglines.cfg"),
        &config_text(redis.port(), &log, &dir.path().join("w.checkpoint"), 500),
    );
    let mut text = b"before\n".to_vec();
    text.extend(std::iter::repeat_n(b'y', 2 << 20));
    text.extend_from_slice(b"\ncaf\xe9\n");
    append(&log, &text);
    let (h, sd) = start_in_process(&s, &w, c.redis_for(&s));
    assert!(wait_until(WAIT, || queue_lines(&redis, "lines").len() >= 2));
    sd.trigger();
    let stats = h.join().unwrap();
    assert_eq!(queue_lines(&redis, "lines"), vec!["before", "caf\u{fffd}"]);
    assert_eq!((stats.dead_lettered, stats.invalid_utf8), (1, 1));
    let dead = redis.redis_cmd(&["LRANGE", "lines:dead", "0", "-1"]);
    let d: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(d["section"], "logger_watch");
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("2097152 bytes") && reason.contains("1048576"),
        "{reason}"
    );
    let msg: serde_json::Value = serde_json::from_str(d["message"].as_str().unwrap()).unwrap();
    assert_eq!(msg["logline"].as_str().unwrap().len(), 1024);
}

#[test]
fn embedded_the_checkpoint_follows_acks_not_pushes() {
    let dir = temp_dir();
    let log = dir.path().join("access.log");
    let ck = dir.path().join("state").join("w.checkpoint");
    let (_, s, w) = section(
        &dir.path().join("loglines.cfg"),
        &config_text(6379, &log, &ck, 2),
    );
    let shutdown = Shutdown::new();
    let t = EmbeddedTransport::with_shutdown(100, dir.path().join("dead"), shutdown.clone());
    let mut consumer = t
        .consumer("lines", &ConsumerId::new("test", "logger_consume", 1))
        .unwrap();
    let producer = t.producer("lines").unwrap();
    append(&log, numbered(0, 6).as_bytes());
    let h = spawn_watch(&s, &w, producer, &shutdown);
    let offset = || match checkpoint::load(&ck) {
        checkpoint::Loaded::Found { checkpoint, .. } => Some(checkpoint.position.offset),
        _ => None,
    };
    let end_of = |n: usize| numbered(0, n).len() as u64;
    let mut taken = Vec::new();
    assert!(wait_until(WAIT, || {
        taken.extend(consumer.take(10, Duration::from_millis(50)).unwrap());
        taken.len() == 6
    }));
    // Batches of 2: [0,1] [2,3] [4,5]. Ack the last batch and one line of the first.
    let mut taken: Vec<Option<_>> = taken.into_iter().map(Some).collect();
    let pick = |v: &mut Vec<Option<_>>, i: usize| v[i].take().unwrap();
    let done = vec![
        pick(&mut taken, 4),
        pick(&mut taken, 5),
        pick(&mut taken, 0),
    ];
    consumer.ack(done).unwrap();
    // The watcher has looked at what is finished once two lines appended after the acks have
    // come through: the second was read in a turn of its loop that began after the first one's,
    // which wrote any checkpoint the acks allowed. The appended lines stay unfinished, after
    // the rest.
    let mut appended = 6;
    let mut two_turns = |consumer: &mut Box<dyn Consumer>| {
        for _ in 0..2 {
            append(&log, numbered(appended, appended + 1).as_bytes());
            appended += 1;
            let mut got = Vec::new();
            assert!(wait_until(WAIT, || {
                got.extend(consumer.take(1, Duration::from_millis(50)).unwrap());
                !got.is_empty()
            }));
        }
    };
    two_turns(&mut consumer);
    assert_eq!(offset(), Some(0), "line 1 and batch [2,3] are unfinished");
    consumer.ack(vec![pick(&mut taken, 1)]).unwrap();
    assert!(wait_until(WAIT, || offset() == Some(end_of(2))));
    two_turns(&mut consumer);
    assert_eq!(offset(), Some(end_of(2)), "batch [2,3] is unfinished");
    // A dead-lettered message is finished too.
    consumer.dead_letter(pick(&mut taken, 2), "test").unwrap();
    consumer.ack(vec![pick(&mut taken, 3)]).unwrap();
    assert!(wait_until(WAIT, || offset() == Some(end_of(6))));
    shutdown.trigger();
    let stats = h.join().unwrap();
    assert_eq!(stats.lines, 10, "the 6 lines and the 4 appended ones");
}

/// The built binary on config file `cfg`, with `args` after `--config CFG`.
fn loglines(cfg: &Path, args: &[&str]) -> Command {
    let mut c = support::bin::loglines();
    c.arg("--config").arg(cfg).args(args);
    c
}

#[test]
fn the_push_command_replays_a_file_and_exits_0() {
    let redis = RedisServer::start();
    let dir = temp_dir();
    let cfg = dir.path().join("loglines.cfg");
    let log = dir.path().join("unused.log");
    section(
        &cfg,
        &config_text(redis.port(), &log, &dir.path().join("w.checkpoint"), 3),
    );
    let sample = support::crate_root().join("tests/data/combined.log");
    let out = loglines(&cfg, &["push", "--section", "logger_watch"])
        .stdin(std::fs::File::open(&sample).unwrap())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let want: Vec<String> = std::fs::read_to_string(&sample)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    assert!(
        want.iter().any(|l| l.is_empty()),
        "the sample has an empty line"
    );
    assert_eq!(queue_lines(&redis, "lines"), want);
}

#[test]
fn the_push_command_on_a_pipe_sends_promptly_and_drains_it_on_sigterm() {
    let redis = RedisServer::start();
    let dir = temp_dir();
    let cfg = dir.path().join("loglines.cfg");
    section(
        &cfg,
        &config_text(
            redis.port(),
            &dir.path().join("u.log"),
            &dir.path().join("c"),
            500,
        ),
    );
    let mut child = loglines(&cfg, &["push", "--section", "logger_watch"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(numbered(0, 3).as_bytes()).unwrap();
    // Three lines, a batch of 500: they must not wait for more.
    assert!(wait_until(WAIT, || queue_lines(&redis, "lines").len() == 3));
    pipe.write_all(numbered(3, 10).as_bytes()).unwrap();
    support::sigterm_exits_0_within_5s(&mut child);
    expect_numbered(&queue_lines(&redis, "lines"), 0, 10);
    drop(pipe);
}

#[test]
fn the_watch_command_stops_on_sigterm_with_exit_0_and_a_checkpoint() {
    let redis = RedisServer::start();
    let dir = temp_dir();
    let cfg = dir.path().join("loglines.cfg");
    let log = dir.path().join("access.log");
    let ck = dir.path().join("w.checkpoint");
    section(&cfg, &config_text(redis.port(), &log, &ck, 500));
    let err_path = dir.path().join("stderr.log");
    let mut child = loglines(&cfg, &["watch", "--section", "logger_watch"])
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let err = || std::fs::read_to_string(&err_path).unwrap_or_default();
    // Missing at start: it says so and waits, then reads the file whole once it appears.
    assert!(
        wait_until(WAIT, || err().contains("does not exist")),
        "{}",
        err()
    );
    append(&log, numbered(0, 50).as_bytes());
    assert!(wait_until(WAIT, || queue_lines(&redis, "lines").len() >= 50));
    support::sigterm_exits_0_within_5s(&mut child);
    let err = err();
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    match checkpoint::load(&ck) {
        checkpoint::Loaded::Found { checkpoint, .. } => {
            assert_eq!(checkpoint.position.offset, numbered(0, 50).len() as u64)
        }
        other => panic!("{other:?}"),
    }
    expect_numbered(&queue_lines(&redis, "lines"), 0, 50);
}

#[test]
fn unknown_sections_and_unreachable_redis_fail_with_one_line() {
    let dir = temp_dir();
    let cfg = dir.path().join("loglines.cfg");
    let port = support::free_port();
    section(
        &cfg,
        &config_text(port, &dir.path().join("a.log"), &dir.path().join("c"), 5),
    );
    let run = |args: &[&str]| loglines(&cfg, args).stdin(Stdio::null()).output().unwrap();
    let out = run(&["watch", "--section", "logger_nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("there is no section [logger_nope]") && err.contains("[logger_watch]"),
        "{err}"
    );
    let out = run(&["push", "--section", "logger_watch"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("loglines:")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("connection refused") || err.contains("cannot connect"),
        "{err}"
    );
}
