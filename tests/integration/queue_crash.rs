//! The delivery guarantees under kill -9: of a consumer process in the middle of a batch, and of
//! redis-server itself in the middle of a producer/consumer run.
//!
//! The consumer process is this test binary run again with `--ignored --exact
//! consumer_process` and its settings in environment variables.

use crate::support;

use loglines::config::RedisSettings;
use loglines::queue::redis::RedisTransport;
use loglines::queue::{Consumer, ConsumerId, Transport};
use loglines::util::shutdown::Shutdown;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::queue::numbered;
use support::redis::{Options, RedisServer};
use support::wait_until;

const TOTAL: u32 = 300;

/// The child: takes batches of 50 and acks them one by one, printing each message before its
/// ack (so a printed message may be unacked, but an acked one is always printed).
#[test]
#[ignore = "helper process started by the kill tests"]
fn consumer_process() {
    let Ok(port) = std::env::var("QCHILD_PORT") else {
        panic!("run by the kill tests only (QCHILD_PORT is not set)");
    };
    let settings = RedisSettings {
        port: port.parse().unwrap(),
        heartbeat_ttl: std::env::var("QCHILD_TTL").unwrap().parse().unwrap(),
        ..RedisSettings::default()
    };
    let host = std::env::var("QCHILD_HOST").unwrap();
    let t = RedisTransport::connect(&settings, Shutdown::new()).unwrap();
    let mut c = t
        .consumer("q", &ConsumerId::new(&host, "worker_x", 1))
        .unwrap();
    let mut out = std::io::stdout();
    loop {
        let batch = c.take(50, Duration::from_secs(1)).unwrap();
        for m in batch {
            // libtest may have printed "test consumer_process ... " without a newline: start
            // each record on a fresh line with a marker.
            writeln!(out, "\nMSG {}", m.body).unwrap();
            out.flush().unwrap();
            c.ack(vec![m]).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
    }
}

/// Starts the child, lets it print `kill_after` messages, kills it with SIGKILL and returns what
/// it printed.
fn run_and_kill(r: &RedisServer, host: &str, ttl: u64, kill_after: usize) -> Vec<u32> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            // The test's name as libtest knows it: its module path without the crate's name.
            &format!(
                "{}::consumer_process",
                module_path!().split_once("::").map_or("", |(_, m)| m)
            ),
            "--nocapture",
            "--test-threads=1",
        ])
        .env("QCHILD_PORT", r.port().to_string())
        .env("QCHILD_TTL", ttl.to_string())
        .env("QCHILD_HOST", host)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let p2 = printed.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(Ok(n)) = line.strip_prefix("MSG ").map(|n| n.trim().parse::<u32>()) {
                p2.lock().unwrap().push(n);
            }
        }
    });
    let reached = wait_until(Duration::from_secs(20), || {
        printed.lock().unwrap().len() >= kill_after
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    assert!(reached, "the consumer process printed too little");
    let v = printed.lock().unwrap().clone();
    v
}

/// Takes and acks until everything not in `seen` has come, or `deadline` passes.
fn drain(c: &mut dyn Consumer, deadline: Duration, seen: &[u32]) -> Vec<u32> {
    let end = Instant::now() + deadline;
    let mut covered: BTreeSet<u32> = seen.iter().copied().collect();
    let mut got = Vec::new();
    while covered.len() < TOTAL as usize && Instant::now() < end {
        let batch = c.take(100, Duration::from_millis(500)).unwrap();
        for m in &batch {
            let n = m.body.parse::<u32>().unwrap();
            covered.insert(n);
            got.push(n);
        }
        c.ack(batch).unwrap();
    }
    got
}

fn assert_nothing_lost(printed: &[u32], after: &[u32]) {
    let seen: BTreeSet<u32> = printed.iter().chain(after).copied().collect();
    let missing: Vec<u32> = (1..=TOTAL).filter(|i| !seen.contains(i)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    // Duplicates only within what was in flight at the kill (here: the one printed message
    // whose ack may not have happened).
    let dup = printed.len() + after.len() - TOTAL as usize;
    assert!(dup <= 1, "{dup} duplicates");
}

#[test]
fn a_consumer_killed_mid_batch_loses_nothing_and_gets_its_batch_back_on_restart() {
    let r = RedisServer::start();
    let t = RedisTransport::connect(&r.settings(30), Shutdown::new()).unwrap();
    t.producer("q").unwrap().push(numbered(1..=TOTAL)).unwrap();
    let printed = run_and_kill(&r, "crashhost", 30, 75);
    let inflight: Vec<String> = redis::cmd("LRANGE")
        .arg("q:inflight:crashhost:worker_x:1")
        .arg(0)
        .arg(-1)
        .query(&mut r.conn())
        .unwrap();
    assert!(
        !inflight.is_empty(),
        "killed mid-batch: something is in flight"
    );
    // The same consumer id restarted (same host, section, process number).
    let mut c = t
        .consumer("q", &ConsumerId::new("crashhost", "worker_x", 1))
        .unwrap();
    let mut expect = inflight.clone();
    expect.reverse(); // oldest first
    let first_bodies =
        support::queue::take_suspects(c.as_mut(), expect.len(), 1, Duration::from_secs(2));
    assert_eq!(
        first_bodies, expect,
        "its own in-flight messages come first, in order, one at a time"
    );
    let mut after: Vec<u32> = first_bodies.iter().map(|b| b.parse().unwrap()).collect();
    c.ack(
        first_bodies
            .iter()
            .map(loglines::queue::Message::new)
            .collect(),
    )
    .unwrap();
    let seen: Vec<u32> = printed.iter().chain(&after).copied().collect();
    after.extend(drain(c.as_mut(), Duration::from_secs(10), &seen));
    assert_nothing_lost(&printed, &after);
}

#[test]
fn a_consumer_killed_for_good_has_its_batch_recovered_by_another_host_after_heartbeat_expiry() {
    let r = RedisServer::start();
    let t = RedisTransport::connect(&r.settings(2), Shutdown::new()).unwrap();
    t.producer("q").unwrap().push(numbered(1..=TOTAL)).unwrap();
    let printed = run_and_kill(&r, "lost-host", 2, 60);
    let killed_at = Instant::now();
    let mut c = t
        .consumer("q", &ConsumerId::new("survivor", "worker_x", 1))
        .unwrap();
    let after = drain(c.as_mut(), Duration::from_secs(15), &printed);
    assert_nothing_lost(&printed, &after);
    // Recovery waited for the heartbeat to expire (2 s) and then happened promptly.
    assert!(killed_at.elapsed() >= Duration::from_secs(2));
    assert!(killed_at.elapsed() < Duration::from_secs(12));
    let left: i64 = redis::cmd("EXISTS")
        .arg("q:inflight:lost-host:worker_x:1")
        .query(&mut r.conn())
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn redis_killed_and_restarted_mid_run_loses_nothing_and_clients_recover_by_themselves() {
    const N: u32 = 4000;
    let mut r = RedisServer::start_with(Options {
        appendonly: true,
        ..Options::default()
    });
    let t = RedisTransport::connect(&r.settings(30), Shutdown::new()).unwrap();
    let tp = t.clone();
    let producer = std::thread::spawn(move || {
        let mut p = tp.producer("q").unwrap();
        for start in (1..=N).step_by(20) {
            p.push(numbered(start..=(start + 19).min(N))).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let got = Arc::new(Mutex::new(Vec::<u32>::new()));
    let g2 = got.clone();
    let tc = t.clone();
    let consumer = std::thread::spawn(move || {
        let mut c = tc
            .consumer("q", &ConsumerId::new("h", "worker_x", 1))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(40);
        let mut distinct = BTreeSet::new();
        while distinct.len() < N as usize && Instant::now() < end {
            let batch = c.take(30, Duration::from_millis(300)).unwrap();
            for m in &batch {
                let n: u32 = m.body.parse().unwrap();
                distinct.insert(n);
                g2.lock().unwrap().push(n);
            }
            c.ack(batch).unwrap();
        }
    });
    // Let the run get going, then kill -9 the server and bring it back.
    let started = wait_until(Duration::from_secs(10), || got.lock().unwrap().len() > 300);
    assert!(started);
    assert!(
        !producer.is_finished(),
        "the kill must come in the middle of the run"
    );
    r.kill();
    std::thread::sleep(Duration::from_millis(700));
    r.restart();
    producer.join().unwrap();
    consumer.join().unwrap();
    let got = got.lock().unwrap().clone();
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for n in &got {
        *counts.entry(*n).or_default() += 1;
    }
    let missing: Vec<u32> = (1..=N).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "lost {} messages: {missing:?}",
        missing.len()
    );
    // Duplicates at most one batch (what was in flight at the kill).
    let dups = got.len() - N as usize;
    assert!(dups <= 30, "{dups} duplicates");
    let mut conn = r.conn();
    let inflight: i64 = redis::cmd("LLEN")
        .arg("q:inflight:h:worker_x:1")
        .query(&mut conn)
        .unwrap();
    let queued: i64 = redis::cmd("LLEN").arg("q").query(&mut conn).unwrap();
    assert_eq!((inflight, queued), (0, 0));
}
