//! A consumer id belongs to one process at a time, over a real Redis and the real binary: a
//! second worker started with the same `--process-num` takes nothing and stops with an error
//! naming the id, so no event is sent twice; a clean stop gives the id up at once (`status`
//! no longer shows it alive, a restart claims it without waiting).

use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant};
use support::pipeline::{Options, Pipeline};
use support::wait_until;

const EVENTS: u64 = 300;

fn push_events(p: &Pipeline) {
    let mut c = p.redis.as_ref().unwrap().conn();
    for i in 0..EVENTS {
        let msg = serde_json::json!({"service": "repo.example.ac.uk", "logline": support::loggen::line(i, 1)})
            .to_string();
        let _: () = redis::cmd("LPUSH")
            .arg("pirus2")
            .arg(msg)
            .query(&mut c)
            .unwrap();
    }
}

#[test]
fn a_second_process_with_the_same_consumer_id_stops_and_nothing_is_sent_twice() {
    let mut p = Pipeline::redis(Options {
        workers: 1,
        batch_size: Some(5),
        ..Options::default()
    });
    // Slow enough that the first worker is still busy when the second starts.
    p.tracker.delay(Duration::from_millis(20));
    push_events(&p);
    p.start("worker_pirus2", 0);
    assert!(
        p.tracker.wait_for(10, Duration::from_secs(30)),
        "{}",
        p.outputs()
    );
    let err_file = p.path("second.err");
    let mut second = p
        .command(&["worker", "--section", "worker_pirus2", "--process-num", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    // It waits out twice the heartbeat ttl (3 s here) for the id, then stops.
    let stopped = wait_until(Duration::from_secs(30), || {
        second.try_wait().unwrap().is_some()
    });
    if !stopped {
        let _ = second.kill();
    }
    let status = second.wait().unwrap();
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert!(
        stopped,
        "the second process with the same id kept running:\n{err}"
    );
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("is in use by another running process") && err.contains(":worker_pirus2:0"),
        "{err}"
    );
    p.tracker.delay(Duration::ZERO);
    let all = p.tracker.wait_for(EVENTS as usize, Duration::from_secs(60));
    let outputs = p.outputs();
    p.stop_all();
    assert!(all, "{outputs}");
    let mut numbers: Vec<u64> = p
        .tracker
        .requests()
        .iter()
        .filter_map(|r| support::loggen::number_of(&r.target))
        .collect();
    numbers.sort();
    assert_eq!(
        numbers,
        (0..EVENTS).collect::<Vec<_>>(),
        "an event was sent twice or lost"
    );
}

#[test]
fn a_clean_stop_gives_the_consumer_id_up_at_once() {
    let mut p = Pipeline::redis(Options {
        workers: 1,
        ..Options::default()
    });
    p.start("worker_pirus2", 0);
    let alive_key = |p: &Pipeline| -> Vec<String> {
        redis::cmd("KEYS")
            .arg("pirus2:alive:*")
            .query(&mut p.redis.as_ref().unwrap().conn())
            .unwrap()
    };
    assert!(wait_until(Duration::from_secs(20), || alive_key(&p).len() == 1));
    let stopped = p.stop_all();
    assert!(
        stopped.iter().all(|(_, code)| *code == Some(0)),
        "{stopped:?}"
    );
    assert!(
        alive_key(&p).is_empty(),
        "the heartbeat outlived a clean stop"
    );
    // A restart claims the id without waiting for anything to expire.
    let started = Instant::now();
    p.start("worker_pirus2", 0);
    assert!(wait_until(Duration::from_secs(20), || alive_key(&p).len() == 1));
    let outputs = p.outputs();
    p.stop_all();
    assert!(!outputs.contains("waiting up to"), "{outputs}");
    println!("claimed again after {:?}", started.elapsed());
}
