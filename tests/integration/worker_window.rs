//! `concurrency`: a worker keeping several requests in flight, against a tracker stand-in that
//! answers late, fails for a while, hangs, or loses the worker to kill -9 mid-window. Every
//! event arrives, none twice without a crash, dead letters only for a rejection; the stand-in
//! sees the requests overlap.

use crate::support;

use std::process::Stdio;
use std::time::Duration;
use support::loggen;
use support::pipeline::{check_generated, wait_complete, Options, Pipeline};
use support::wait_until;

/// One line in `EVERY` is a download: 4 gives a quarter of the lines as events, so that a few
/// thousand lines keep a window busy.
const EVERY: u64 = 4;
const WAIT: Duration = Duration::from_secs(120);

fn windowed(concurrency: u32, workers: u32) -> Options {
    Options {
        workers,
        pauseonfail: 1,
        batch_size: Some(200),
        worker_keys: format!("concurrency = {concurrency}\n"),
        ..Options::default()
    }
}

/// `loglines run --once`, which must end with exit code 0.
fn run_once_ok(p: &Pipeline) {
    let out = p
        .command(&["run", "--once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// The most requests the stand-in held back at once while `cond` was not yet met.
fn max_overlap(p: &Pipeline, timeout: Duration, mut cond: impl FnMut() -> bool) -> (bool, usize) {
    let tracker = p.tracker.handle();
    let mut most = 0;
    let met = wait_until(timeout, || {
        most = most.max(tracker.delaying());
        cond()
    });
    (met, most)
}

#[test]
fn a_slow_tracker_gets_many_requests_at_once_and_every_event_once() {
    let mut p = Pipeline::redis(windowed(16, 1));
    p.tracker.handle().delay(Duration::from_millis(50));
    p.append(&loggen::lines(0, 4_000, EVERY));
    p.start_all();
    let (ok, most) = max_overlap(&p, WAIT, || {
        std::thread::sleep(Duration::from_millis(20));
        p.tracker.count() >= 200
    });
    // `loglines status` shows the worker's requests in flight and the tracker's latency.
    let mut seen = None;
    let reported = wait_until(WAIT, || {
        let out = p.command(&["status", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        seen = v
            .pointer("/servers/0/queues")
            .and_then(|qs| qs.as_array())
            .and_then(|qs| {
                qs.iter()
                    .filter(|q| q["queue"] == "pirus2")
                    .flat_map(|q| q["consumers"].as_array().cloned().unwrap_or_default())
                    .find_map(|c| c.get("tracker").cloned())
            });
        seen.as_ref().is_some_and(|t| {
            t["requests_in_flight"].as_u64() > Some(0) && t["latency_ms"].as_u64() >= Some(45)
        })
    });
    let text =
        String::from_utf8_lossy(&p.command(&["status"]).output().unwrap().stdout).into_owned();
    let complete = ok && wait_complete(&p, 4_000, EVERY, WAIT);
    let outputs = p.outputs();
    p.stop_all();
    assert!(complete, "{outputs}");
    assert!(reported, "status --json never showed the window: {seen:?}");
    assert!(text.contains("requests in flight, answers in"), "{text}");
    assert_eq!(
        check_generated(&p, 4_000, EVERY),
        (0, 0),
        "no crash: nothing twice"
    );
    assert!(
        most > 1,
        "the requests never overlapped (at most {most} held at once)"
    );
    assert!(most <= 16, "more than concurrency in flight: {most}");
}

#[test]
fn a_tracker_failing_for_a_while_closes_the_window_and_nothing_is_lost() {
    let mut p = Pipeline::redis(windowed(8, 1));
    let tracker = p.tracker.handle();
    tracker.delay(Duration::from_millis(20));
    p.append(&loggen::lines(0, 2_000, EVERY));
    p.start_all();
    assert!(p.tracker.wait_for(50, WAIT));
    // Some requests of the window fail (those answered while it lasts), then it recovers.
    tracker.fail(500);
    assert!(wait_until(WAIT, || p
        .tracker
        .requests()
        .iter()
        .filter(|r| r.status == 500)
        .count()
        >= 3));
    tracker.ok();
    p.append(&loggen::lines(2_000, 4_000, EVERY));
    let complete = wait_complete(&p, 4_000, EVERY, WAIT);
    let outputs = p.outputs();
    p.stop_all();
    assert!(complete, "{outputs}");
    assert_eq!(check_generated(&p, 4_000, EVERY), (0, 0));
    assert!(
        outputs.contains("tracker unreachable since") && outputs.contains("tracker back after"),
        "{outputs}"
    );
    let dead = p.redis.as_ref().unwrap().lrange("pirus2:dead");
    assert!(
        dead.is_empty(),
        "a 500 is retried, never dead-lettered: {dead:?}"
    );
}

#[test]
fn a_tracker_closing_connections_mid_answer_gets_every_event_again() {
    let mut p = Pipeline::redis(windowed(8, 1));
    let tracker = p.tracker.handle();
    tracker.delay(Duration::from_millis(10));
    tracker.cut();
    p.append(&loggen::lines(0, 1_000, EVERY));
    p.start_all();
    // Answers cut short are no acceptance: the window closes and the events wait.
    assert!(wait_until(WAIT, || p
        .tracker
        .requests()
        .iter()
        .filter(|r| r.status == 0)
        .count()
        >= 2));
    tracker.ok();
    let complete = wait_complete(&p, 1_000, EVERY, WAIT);
    let outputs = p.outputs();
    p.stop_all();
    assert!(complete, "{outputs}");
    let (dups, _) = check_generated(&p, 1_000, EVERY);
    assert_eq!(
        dups, 0,
        "a cut answer is not counted as accepted by the checks"
    );
    assert!(p.redis.as_ref().unwrap().lrange("pirus2:dead").is_empty());
}

#[test]
fn kill_9_of_loglines_run_with_a_full_window_loses_nothing() {
    let p = Pipeline::embedded(windowed(16, 1));
    let tracker = p.tracker.handle();
    tracker.delay(Duration::from_millis(200));
    p.append(&loggen::lines(0, 2_000, EVERY));
    let mut child = p.spawn_run();
    assert!(
        wait_until(WAIT, || tracker.delaying() >= 8),
        "{}",
        std::fs::read_to_string(p.path("run.err")).unwrap_or_default()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    tracker.delay(Duration::from_millis(5));
    run_once_ok(&p);
    let (dups, _) = check_generated(&p, 2_000, EVERY);
    println!("requests sent again after kill -9 of loglines run mid-window: {dups}");
}

#[test]
fn kill_9_of_a_worker_with_a_full_window_loses_nothing() {
    let mut p = Pipeline::redis(windowed(16, 1));
    let tracker = p.tracker.handle();
    tracker.delay(Duration::from_millis(200));
    p.append(&loggen::lines(0, 3_000, EVERY));
    p.start_all();
    assert!(
        wait_until(WAIT, || tracker.delaying() >= 8),
        "{}",
        p.outputs()
    );
    p.kill_and_restart("worker_pirus2", 0);
    tracker.delay(Duration::from_millis(10));
    let complete = wait_complete(&p, 3_000, EVERY, WAIT);
    let outputs = p.outputs();
    p.stop_all();
    assert!(complete, "{outputs}");
    let (dups, _) = check_generated(&p, 3_000, EVERY);
    // At most what was in flight at the kill (the tracker may have counted some) is sent
    // again: bounded by concurrency.
    println!("requests sent again after kill -9 mid-window: {dups}");
    assert!(dups <= 16, "{dups} duplicates, more than the window");
}

#[test]
fn a_stop_with_a_hanging_tracker_ends_within_5_s_and_gives_everything_back() {
    let mut p = Pipeline::redis(windowed(8, 1));
    let tracker = p.tracker.handle();
    p.append(&loggen::lines(0, 400, EVERY));
    tracker.hang();
    p.start_all();
    assert!(
        wait_until(WAIT, || p.tracker.unanswered() >= 8),
        "{}",
        p.outputs()
    );
    let stopped = p.stop_all();
    for (name, code) in &stopped {
        assert_eq!(
            *code,
            Some(0),
            "{name} did not stop cleanly: {}",
            p.outputs()
        );
    }
    tracker.ok();
    p.start_all();
    let complete = wait_complete(&p, 400, EVERY, WAIT);
    let outputs = p.outputs();
    p.stop_all();
    assert!(complete, "{outputs}");
}

#[test]
fn loglines_run_uses_the_window_too() {
    let p = Pipeline::embedded(windowed(8, 2));
    p.tracker.handle().delay(Duration::from_millis(30));
    p.append(&loggen::lines(0, 2_000, EVERY));
    let child = p
        .command(&["run", "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, most) = max_overlap(&p, WAIT, || p.tracker.count() >= 500);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(check_generated(&p, 2_000, EVERY), (0, 0));
    assert!(most > 1, "the requests never overlapped");
}

/// `ratelimit` spaces every request of the process, whatever the window: 20 events at
/// `ratelimit = 0.1` cannot reach the tracker in less than 19 intervals, though 8 could be in
/// flight at once.
#[test]
fn ratelimit_holds_across_the_window() {
    let mut o = windowed(8, 1);
    o.worker_keys.push_str("ratelimit = 0.1\n");
    let p = Pipeline::embedded(o);
    p.append(&loggen::lines(0, 80, EVERY)); // 20 downloads
    run_once_ok(&p);
    assert_eq!(check_generated(&p, 80, EVERY), (0, 0));
    let mut at: Vec<_> = p.tracker.requests().iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), 20);
    let span = at[19] - at[0];
    // Each start is booked 100 ms after the previous one; arrival can only be later.
    assert!(
        span >= Duration::from_millis(1_850),
        "20 requests within {span:?}: ratelimit not held across the window"
    );
}

/// A rejection (4xx) dead-letters that event only: the others of the window are delivered, and
/// every event ends accepted or dead-lettered, never both, never neither.
#[test]
fn a_rejection_in_the_window_dead_letters_that_event_only() {
    use std::collections::BTreeSet;
    let mut p = Pipeline::redis(windowed(8, 1));
    let tracker = p.tracker.handle();
    tracker.delay(Duration::from_millis(20));
    p.append(&loggen::lines(0, 2_000, EVERY));
    p.start_all();
    assert!(p.tracker.wait_for(100, WAIT));
    // The events whose requests got `status`, and those dead-lettered.
    let answered = |p: &Pipeline, status: u16| -> BTreeSet<u64> {
        p.tracker
            .requests()
            .iter()
            .filter(|r| r.status == status)
            .filter_map(|r| loggen::number_of(&r.target))
            .collect()
    };
    let dead = |p: &Pipeline| -> BTreeSet<u64> {
        let redis = p.redis.as_ref().unwrap();
        redis
            .lrange("pirus2:dead")
            .iter()
            .filter_map(|d| loggen::number_of(d))
            .collect()
    };
    tracker.reject(404, "unknown item");
    assert!(wait_until(WAIT, || answered(&p, 404).len() >= 5));
    tracker.ok();
    let all: BTreeSet<u64> = (0..2_000).filter(|i| i % EVERY == 0).collect();
    let done = wait_until(WAIT, || {
        answered(&p, 200).len() + dead(&p).len() == all.len()
    });
    let outputs = p.outputs();
    p.stop_all();
    assert!(done, "{outputs}");
    let (accepted, dead) = (answered(&p, 200), dead(&p));
    assert_eq!(
        dead,
        answered(&p, 404),
        "exactly the rejected events are dead letters"
    );
    assert!(accepted.is_disjoint(&dead));
    let both: BTreeSet<u64> = accepted.union(&dead).copied().collect();
    assert_eq!(both, all, "every event accepted or dead-lettered");
}

/// Requests in flight longer than `heartbeat_ttl` (3 s in these pipelines): the window keeps the
/// consumer alive meanwhile, so what it holds is not handed back to the queue and sent twice.
#[test]
fn a_window_waiting_longer_than_the_heartbeat_ttl_keeps_its_consumer_alive() {
    let mut p = Pipeline::redis(windowed(8, 1));
    p.tracker.handle().delay(Duration::from_millis(4_500));
    p.append(&loggen::lines(0, 32, EVERY)); // 8 downloads, one window
    p.start_all();
    let complete = wait_complete(&p, 32, EVERY, WAIT);
    let outputs = p.outputs();
    p.stop_all();
    assert!(complete, "{outputs}");
    assert!(!outputs.contains("heartbeat expired"), "{outputs}");
    assert_eq!(check_generated(&p, 32, EVERY), (0, 0), "nothing sent twice");
}
