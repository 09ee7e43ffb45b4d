//! The four roles as separate processes over a real redis-server, to a real tracker stand-in:
//! the sample logs arrive exactly as the plugin says, and nothing is lost when processes are
//! killed, the tracker goes away, Redis restarts, or the log holds a 2 MiB line and bad UTF-8.

use crate::support;

use std::time::{Duration, Instant};
use support::loggen;
use support::pipeline::{
    assert_sample_delivered, check_generated, data, expected, wait_complete, Options, Pipeline,
    QUEUES,
};
use support::wait_until;

fn run_sample(plugin: &str, log_name: &str, plugin_section: &str) {
    let mut p = Pipeline::redis(Options {
        plugin: plugin.into(),
        plugin_section: plugin_section.into(),
        ..Options::default()
    });
    let log = std::fs::read_to_string(data(log_name)).unwrap();
    let (urls, sent, other) = expected(&p, &log);
    assert!(
        !urls.is_empty() && !other.is_empty(),
        "the sample has both kinds of line"
    );
    p.append(&log);
    deliver_and_stop(
        &mut p,
        log_name,
        log.lines().count(),
        (&urls, &sent, &other),
    );
}

/// Starts every role, waits until the `total` lines given to the pipeline are filed and the
/// tracker has the expected requests, checks each went where `expected` says, and stops every
/// role, which must exit 0.
fn deliver_and_stop(
    p: &mut Pipeline,
    what: &str,
    total: usize,
    (urls, sent, other): (&[String], &[String], &[String]),
) {
    p.start_all();
    assert!(
        p.wait_for_filed(total, Duration::from_secs(30)),
        "not all lines filed:\n{}",
        p.outputs()
    );
    assert!(p.tracker.wait_for(urls.len(), Duration::from_secs(10)));
    // A duplicate or a stray request would come from work still queued or in flight.
    let redis = p.redis.as_ref().expect("a Redis pipeline");
    assert!(wait_until(Duration::from_secs(30), || redis.queues_idle(QUEUES)));
    assert_sample_delivered(p, what, urls, sent, other);
    for (who, code) in p.stop_all() {
        assert_eq!(
            code,
            Some(0),
            "{who} did not exit 0 on SIGTERM:\n{}",
            p.outputs()
        );
    }
}

#[test]
fn combined_sample_log_through_every_role() {
    run_sample("irus", "combined.log", "repository = repo.example.ac.uk\n");
}

#[test]
fn ora_sample_log_through_every_role() {
    run_sample("ora", "ora-wsgi.log", "");
}

/// A backfill of a compressed rotated log over Redis: `push < access.log.2.gz` puts its lines
/// on the watcher's queue, and every role delivers exactly what the plain file would. The same
/// file through a pipe is refused with how to give it instead, pushing nothing.
#[test]
fn a_gzip_backfill_pushed_through_every_role() {
    let mut p = Pipeline::redis(Options::default());
    let file = data("combined.log");
    let log = std::fs::read_to_string(&file).unwrap();
    let (urls, sent, other) = expected(&p, &log);
    let gz = p.path("access.log.2.gz");
    support::gzip(&file, &gz, false);

    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {} | {} --config {} push --section logger_watch",
            gz.display(),
            env!("CARGO_BIN_EXE_loglines"),
            p.config.display()
        ))
        .output()
        .unwrap();
    let err = support::bin::text(&piped.stderr);
    assert_ne!(piped.status.code(), Some(0), "{err}");
    assert!(
        err.contains("compressed data coming through a pipe"),
        "{err}"
    );
    assert!(p.redis.as_ref().unwrap().lrange("loglines").is_empty());

    let out = p
        .command(&["push", "--section", "logger_watch"])
        .stdin(std::fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        support::bin::text(&out.stderr)
    );
    deliver_and_stop(
        &mut p,
        "combined.log.gz",
        log.lines().count(),
        (&urls, &sent, &other),
    );
}

/// Writes `n` generated lines over `secs` seconds, calling `during` between chunks.
fn feed(
    p: &mut Pipeline,
    n: u64,
    every: u64,
    chunks: u64,
    mut during: impl FnMut(&mut Pipeline, u64),
) {
    let step = n / chunks;
    for c in 0..chunks {
        let end = if c == chunks - 1 { n } else { (c + 1) * step };
        p.append(&loggen::lines(c * step, end, every));
        during(p, c);
        std::thread::sleep(Duration::from_millis(100));
    }
}

const N: u64 = 50_000;
const EVERY: u64 = 20;

#[test]
fn sigkill_of_any_role_at_random_moments_loses_nothing() {
    let mut p = Pipeline::redis(Options {
        workers: 2,
        ..Options::default()
    });
    p.start_all();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64;
    let mut kills = Vec::new();
    feed(&mut p, N, EVERY, 20, |p, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let procs = p.processes();
        let (s, n) = procs[(seed % procs.len() as u64) as usize].clone();
        std::thread::sleep(Duration::from_millis(seed % 200));
        p.kill_and_restart(&s, n);
        kills.push(format!("{s}:{n}"));
    });
    let ok = wait_complete(&p, N, EVERY, Duration::from_secs(120));
    // Duplicates are counted once nothing is queued or in flight any more.
    let redis = p.redis.as_ref().expect("a Redis pipeline");
    let idle = wait_until(Duration::from_secs(30), || redis.queues_idle(QUEUES));
    let (dup_requests, dup_other) = check_generated(&p, N, EVERY);
    println!(
        "killed {} times ({}); duplicates from batches in flight at a kill: {dup_requests} tracker requests, {dup_other} other.log lines",
        kills.len(),
        kills.join(", ")
    );
    assert!(ok && idle, "timed out\n{}", p.outputs());
}

#[test]
fn tracker_down_then_back_loses_nothing_and_keeps_order() {
    let mut p = Pipeline::redis(Options {
        workers: 1,
        pauseonfail: 1,
        ..Options::default()
    });
    p.start_all();
    let tracker = p.tracker.handle();
    // Each outage phase lasts until the worker has met it.
    let met = |p: &Pipeline, what: &str| {
        assert!(
            wait_until(Duration::from_secs(30), || p.outputs().contains(what)),
            "the worker did not meet the outage ({what}):\n{}",
            p.outputs()
        );
    };
    let tracker2 = p.tracker.handle();
    feed(&mut p, N, EVERY, 10, |p, c| match c {
        2 => {
            tracker.refuse();
            met(p, "tracker unreachable since");
        }
        4 => {
            tracker.fail(503);
            let answered_503 = || tracker2.requests().iter().any(|r| r.status == 503);
            assert!(wait_until(Duration::from_secs(30), answered_503));
        }
        6 => tracker.ok(),
        _ => {}
    });
    assert!(
        wait_complete(&p, N, EVERY, Duration::from_secs(120)),
        "timed out\n{}",
        p.outputs()
    );
    let (dups, _) = check_generated(&p, N, EVERY);
    assert_eq!(dups, 0, "no process died, so nothing may be sent twice");
    // One worker: accepted requests arrive in log order.
    let accepted = p.accepted_numbers();
    assert!(
        accepted.windows(2).all(|w| w[0] < w[1]),
        "requests out of order"
    );
    let failed = p
        .tracker
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count();
    assert!(failed > 0, "the 503 phase was seen by the worker");
}

#[test]
fn redis_restart_in_the_middle_loses_nothing() {
    let mut p = Pipeline::redis(Options::default());
    p.start_all();
    feed(&mut p, N, EVERY, 10, |p, c| {
        if c == 4 {
            let r = p.redis.as_mut().unwrap();
            r.kill();
            std::thread::sleep(Duration::from_millis(500));
            r.restart();
        }
    });
    let ok = wait_complete(&p, N, EVERY, Duration::from_secs(120));
    let (dup_requests, dup_other) = check_generated(&p, N, EVERY);
    println!("duplicates after the Redis restart: {dup_requests} tracker requests, {dup_other} other.log lines");
    assert!(ok, "timed out\n{}", p.outputs());
}

#[test]
fn a_2_mib_line_and_invalid_utf8_in_the_middle() {
    let mut p = Pipeline::redis(Options::default());
    p.start_all();
    let started = Instant::now();
    p.append(&loggen::lines(0, N / 2, EVERY));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(p.log_path())
            .unwrap();
        let long = format!(
            "192.0.2.1 - - [27/Nov/2026:09:00:00 +0000] \"GET /{} HTTP/1.1\" 200 1 \"-\" \"x\"\n",
            "a".repeat(2 << 20)
        );
        f.write_all(long.as_bytes()).unwrap();
        f.write_all(b"192.0.2.2 - - [27/Nov/2026:09:00:00 +0000] \"GET /caf\xe9 HTTP/1.1\" 200 1 \"-\" \"x\"\n").unwrap();
    }
    p.append(&loggen::lines(N / 2, N, EVERY));
    assert!(
        p.wait_for_filed(N as usize + 1, Duration::from_secs(120)),
        "timed out\n{}",
        p.outputs()
    );
    check_generated(&p, N, EVERY);
    let other = p.lines_of("logs/other.log");
    assert!(
        other
            .iter()
            .any(|l| l.contains("GET /caf\u{fffd} HTTP/1.1")),
        "invalid UTF-8 converted and passed on"
    );
    let redis = p.redis.as_ref().unwrap();
    let dead = redis.redis_cmd(&["LRANGE", "loglines:dead", "0", "-1"]);
    assert!(
        dead.contains("max_line_bytes"),
        "the 2 MiB line is dead-lettered with its reason: {}",
        &dead[..dead.len().min(500)]
    );
    println!(
        "50,000 lines with a 2 MiB line in the middle filed in {:?}",
        started.elapsed()
    );
}
