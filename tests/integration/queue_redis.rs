//! The Redis transport against a real redis-server: order, takes, acks, requeue, dead letters,
//! recovery of in-flight lists, backpressure, authentication and shutdown.

use crate::support;

use loglines::queue::redis::RedisTransport;
use loglines::queue::{Consumer, ConsumerId, DeadLetter, Message, QueueError, Transport};
use loglines::util::shutdown::Shutdown;
use std::time::{Duration, Instant};
use support::queue::{bodies, msgs, numbered, strs, take_suspects};
use support::redis::{Options, RedisServer};
use support::wait_until;

const T: Duration = Duration::from_secs(5);

fn transport(r: &RedisServer, ttl: u64) -> RedisTransport {
    RedisTransport::connect(&r.settings(ttl), Shutdown::new()).expect("connect")
}

fn id(host: &str, n: u32) -> ConsumerId {
    ConsumerId::new(host, "worker_test", n)
}

#[test]
fn fifo_order_through_single_and_batch_takes() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    let mut p = t.producer("q").unwrap();
    p.push(numbered(1..=10)).unwrap();
    p.push(numbered(11..=20)).unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    let one = c.take(1, T).unwrap();
    assert_eq!(bodies(&one), ["1"]);
    let five = c.take(5, T).unwrap();
    assert_eq!(bodies(&five), strs(2..=6));
    let rest = c.take(100, T).unwrap();
    assert_eq!(bodies(&rest), strs(7..=20));
    // In flight until acked: newest at the left, as BLMOVE RIGHT LEFT leaves it.
    let inflight = r.lrange("q:inflight:h:worker_test:1");
    let mut expect = strs(1..=20);
    expect.reverse();
    assert_eq!(inflight, expect);
    c.ack(one).unwrap();
    c.ack(five).unwrap();
    c.ack(rest).unwrap();
    assert!(!r.exists("q:inflight:h:worker_test:1"));
    assert!(!r.exists("q"));
    // An external producer written for the 2010 tool LPUSHes one message at a time.
    redis::cmd("LPUSH")
        .arg("q")
        .arg("ext-1")
        .query::<()>(&mut r.conn())
        .unwrap();
    redis::cmd("LPUSH")
        .arg("q")
        .arg("ext-2")
        .query::<()>(&mut r.conn())
        .unwrap();
    assert_eq!(bodies(&c.take(10, T).unwrap()), ["ext-1", "ext-2"]);
}

#[test]
fn blocking_take_returns_as_soon_as_a_message_arrives_and_times_out_empty() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    let start = Instant::now();
    assert!(c.take(10, Duration::from_millis(300)).unwrap().is_empty());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The messages come while the consumer is blocked in BLMOVE, so the wake-up is tested.
    let (got, waited) = std::thread::scope(|s| {
        s.spawn(|| {
            assert!(wait_until(Duration::from_secs(10), || r.blocked_clients() >= 1));
            t.producer("q")
                .unwrap()
                .push(msgs(&["a", "b", "c"]))
                .unwrap();
        });
        let start = Instant::now();
        let got = c.take(10, Duration::from_secs(10)).unwrap();
        (got, start.elapsed())
    });
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
    // The three arrive in one LPUSH, so the batch after BLMOVE's first gets the others.
    assert_eq!(bodies(&got), ["a", "b", "c"]);
}

#[test]
fn ack_removes_exactly_one_copy_per_acked_duplicate() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q")
        .unwrap()
        .push(msgs(&["A", "A", "B", "A"]))
        .unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    let got = c.take(10, T).unwrap();
    assert_eq!(bodies(&got), ["A", "A", "B", "A"]);
    c.ack(msgs(&["A"])).unwrap();
    let mut left = r.lrange("q:inflight:h:worker_test:1");
    left.sort();
    assert_eq!(left, ["A", "A", "B"]);
    c.ack(msgs(&["A", "B"])).unwrap();
    assert_eq!(r.lrange("q:inflight:h:worker_test:1"), ["A"]);
    // Acking more copies than are held removes only what is held.
    c.ack(msgs(&["A", "A"])).unwrap();
    assert!(!r.exists("q:inflight:h:worker_test:1"));
}

#[test]
fn partial_ack_keeps_order_of_what_remains_for_a_restart() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q").unwrap().push(numbered(1..=6)).unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    assert_eq!(bodies(&c.take(6, T).unwrap()), strs(1..=6));
    c.ack(msgs(&["2", "5"])).unwrap();
    drop(c); // a crash: nothing more is acked
    let mut again = t.consumer("q", &id("h", 1)).unwrap();
    // What it held comes back oldest first, one at a time (it may be what stopped it).
    assert_eq!(take_suspects(again.as_mut(), 4, 1, T), ["1", "3", "4", "6"]);
}

#[test]
fn requeue_puts_messages_back_in_order_to_be_taken_next() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q").unwrap().push(numbered(1..=8)).unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    let got = c.take(5, T).unwrap();
    assert_eq!(bodies(&got), strs(1..=5));
    c.requeue(got[..3].to_vec()).unwrap();
    // Another consumer takes them next, before 6..8, in their original order.
    let mut other = t.consumer("q", &id("other", 1)).unwrap();
    assert_eq!(bodies(&other.take(4, T).unwrap()), ["1", "2", "3", "6"]);
    assert_eq!(r.lrange("q:inflight:h:worker_test:1"), ["5", "4"]);
}

#[test]
fn dead_letter_records_message_reason_section_consumer_and_time() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q")
        .unwrap()
        .push(msgs(&[r#"{"service":"s","logline":"x"}"#, "ok"]))
        .unwrap();
    let mut c = t.consumer("q", &id("h1", 2)).unwrap();
    let mut got = c.take(2, T).unwrap();
    let good = got.pop().unwrap();
    c.dead_letter(got.pop().unwrap(), "plugin error: boom at line 3")
        .unwrap();
    assert_eq!(r.lrange("q:inflight:h1:worker_test:2"), ["ok"]);
    let dead = r.lrange("q:dead");
    assert_eq!(dead.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["at", "consumer", "message", "reason", "section"]);
    assert_eq!(v["message"], r#"{"service":"s","logline":"x"}"#);
    assert_eq!(v["reason"], "plugin error: boom at line 3");
    assert_eq!(v["section"], "worker_test");
    assert_eq!(v["consumer"], "h1:worker_test:2");
    let at = v["at"].as_str().unwrap();
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            .unwrap()
            .is_match(at),
        "{at}"
    );
    c.ack(vec![good]).unwrap();

    let mut admin = t.admin().unwrap();
    let letters: Vec<DeadLetter> = admin.dead_letters("q", 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "plugin error: boom at line 3");
    assert_eq!(admin.requeue_dead("q", Some("timeout")).unwrap(), 0);
    assert_eq!(admin.requeue_dead("q", Some("boom")).unwrap(), 1);
    assert!(!r.exists("q:dead"));
    assert_eq!(
        bodies(&c.take(1, T).unwrap()),
        [r#"{"service":"s","logline":"x"}"#]
    );
}

#[test]
fn a_restarted_consumer_first_gets_back_what_it_had_in_flight() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q").unwrap().push(numbered(1..=10)).unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    assert_eq!(bodies(&c.take(3, T).unwrap()), strs(1..=3));
    drop(c);
    let mut c = t.redis_consumer("q", &id("h", 1)).unwrap();
    // Its own in-flight list was set aside as suspects: each comes back alone, first.
    assert_eq!(c.pending_len(), 0);
    assert_eq!(r.lrange("q:suspect").len(), 3);
    // `status` counts them among the waiting.
    assert_eq!(t.admin().unwrap().info("q").unwrap().length, 10);
    assert_eq!(take_suspects(&mut c, 3, 1, T), strs(1..=3));
    let rest = c.take(100, T).unwrap();
    assert_eq!(bodies(&rest), strs(4..=10));
    assert_eq!(c.delivered_len(), 10);
    c.ack(numbered(1..=10)).unwrap();
    assert!(!r.exists("q:inflight:h:worker_test:1"));
}

#[test]
fn an_expired_consumers_in_flight_list_goes_back_to_the_queue_once_and_in_order() {
    let r = RedisServer::start();
    let t = transport(&r, 1);
    t.producer("q").unwrap().push(numbered(1..=5)).unwrap();
    let mut gone = t.consumer("q", &id("hostA", 1)).unwrap();
    assert_eq!(bodies(&gone.take(3, T).unwrap()), strs(1..=3));
    // Killed: it never comes back, and never releases its heartbeat (a clean stop would).
    std::mem::forget(gone);
    let mut b = t.consumer("q", &id("hostB", 1)).unwrap();
    assert_eq!(bodies(&b.take(10, T).unwrap()), ["4", "5"]);
    b.ack(msgs(&["4", "5"])).unwrap();
    // hostA's heartbeat expires after 1 s; hostB's next scan sets 1..3 aside, and they come
    // back one at a time ahead of anything new.
    let start = Instant::now();
    assert_eq!(
        take_suspects(&mut *b, 3, 1, Duration::from_secs(8)),
        strs(1..=3)
    );
    assert!(start.elapsed() < Duration::from_secs(6));
    assert!(!r.exists("q:inflight:hostA:worker_test:1"));
    // A third consumer's scan finds nothing left to recover: it happened once.
    let mut c = t.consumer("q", &id("hostC", 1)).unwrap();
    assert!(c.take(10, Duration::from_millis(200)).unwrap().is_empty());
    assert_eq!(r.lrange("q:inflight:hostB:worker_test:1").len(), 3);
}

#[test]
fn consumers_on_different_hosts_with_the_same_section_and_number_never_share() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q").unwrap().push(numbered(1..=40)).unwrap();
    let mut a = t.consumer("q", &id("alpha.example", 1)).unwrap();
    let mut b = t.consumer("q", &id("beta.example", 1)).unwrap();
    let mut took_a = Vec::new();
    let mut took_b = Vec::new();
    for _ in 0..4 {
        took_a.extend(bodies(&a.take(5, T).unwrap()));
        took_b.extend(bodies(&b.take(5, T).unwrap()));
    }
    let mut la = r.lrange("q:inflight:alpha.example:worker_test:1");
    let mut lb = r.lrange("q:inflight:beta.example:worker_test:1");
    la.sort();
    lb.sort();
    took_a.sort();
    took_b.sort();
    assert_eq!(la, took_a);
    assert_eq!(lb, took_b);
    assert!(la.iter().all(|x| !lb.contains(x)));
    // Acks of one touch only its own list.
    a.ack(took_a.iter().map(Message::new).collect()).unwrap();
    assert_eq!(r.lrange("q:inflight:beta.example:worker_test:1").len(), 20);
    let mut all = took_a.clone();
    all.extend(took_b);
    all.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(all, strs(1..=40));
}

#[test]
fn forward_acks_and_pushes_to_every_queue_in_one_step() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("in").unwrap().push(msgs(&["x", "y"])).unwrap();
    let mut c = t.consumer("in", &id("h", 1)).unwrap();
    let got = c.take(2, T).unwrap();
    c.forward(
        got,
        vec![
            ("out1".into(), msgs(&["x1", "y1"])),
            ("out2".into(), msgs(&["x2", "y2"])),
            ("empty".into(), vec![]),
        ],
    )
    .unwrap();
    assert!(!r.exists("in:inflight:h:worker_test:1"));
    let mut c1 = t.consumer("out1", &id("h", 1)).unwrap();
    assert_eq!(bodies(&c1.take(10, T).unwrap()), ["x1", "y1"]);
    assert_eq!(r.lrange("out2"), ["y2", "x2"]);
    assert!(!r.exists("empty"));
}

#[test]
fn after_its_heartbeat_expired_a_slow_consumer_neither_loses_nor_fans_out_twice() {
    let r = RedisServer::start();
    let t = transport(&r, 1);
    t.producer("in").unwrap().push(msgs(&["m1", "m2"])).unwrap();
    let mut slow = t.consumer("in", &id("slow", 1)).unwrap();
    let batch = slow.take(2, T).unwrap();
    // No heartbeat: once its key expires, it counts as gone.
    assert!(wait_until(Duration::from_secs(10), || !r
        .exists("in:alive:slow:worker_test:1")));
    let mut b = t.consumer("in", &id("fast", 1)).unwrap();
    assert_eq!(take_suspects(&mut *b, 2, 1, T), ["m1", "m2"]);
    // The slow one finishes and forwards: the batch is already being redone by `fast`, so
    // nothing is pushed (the fan-out stays exactly once) and nothing of `fast` is touched.
    slow.forward(batch, vec![("out".into(), msgs(&["o1", "o2"]))])
        .unwrap();
    assert!(!r.exists("out"));
    assert_eq!(r.lrange("in:inflight:fast:worker_test:1").len(), 2);
    // And it carries on normally afterwards.
    t.producer("in").unwrap().push(msgs(&["m3"])).unwrap();
    let got = slow.take(1, T).unwrap();
    assert_eq!(bodies(&got), ["m3"]);
    slow.ack(got).unwrap();
    assert!(!r.exists("in:inflight:slow:worker_test:1"));
}

#[test]
fn a_producer_waits_while_the_queue_is_above_max_queue_length() {
    let r = RedisServer::start();
    let mut s = r.settings(30);
    s.max_queue_length = 5;
    let t = RedisTransport::connect(&s, Shutdown::new()).unwrap();
    let mut p = t.producer("q").unwrap();
    p.push(numbered(1..=8)).unwrap(); // now above the mark
    let pusher = std::thread::spawn(move || p.push(numbered(9..=9)).unwrap());
    // The waiting producer looks at the queue's length (LLEN) again and again: two more looks
    // than before it started, and it is waiting rather than merely slow to push.
    let llens = || {
        let stats = r.redis_cmd(&["INFO", "commandstats"]);
        let line = stats.lines().find(|l| l.starts_with("cmdstat_llen:"));
        line.and_then(|l| l.split(['=', ',']).nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = llens();
    assert!(wait_until(Duration::from_secs(10), || llens() >= before + 2));
    assert!(!pusher.is_finished(), "the push should wait");
    assert_eq!(r.lrange("q").len(), 8);
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    let got = c.take(4, T).unwrap();
    c.ack(got).unwrap();
    let resumed = wait_until(Duration::from_secs(5), || pusher.is_finished());
    assert!(resumed, "the push should resume below the mark");
    pusher.join().unwrap();
    assert_eq!(r.lrange("q").len(), 5);
}

#[test]
fn password_settings_are_used_and_wrong_ones_get_a_clear_error() {
    let r = RedisServer::start_with(Options {
        password: Some("s3cret pass".into()),
        ..Options::default()
    });
    let t = transport(&r, 30);
    t.producer("q").unwrap().push(msgs(&["a"])).unwrap();
    let mut admin = t.admin().unwrap();
    assert!(admin.describe().unwrap().starts_with("redis "));
    let mut wrong = r.settings(30);
    wrong.password = Some("nope".into());
    let e = RedisTransport::connect(&wrong, Shutdown::new())
        .err()
        .expect("wrong password must fail")
        .to_string();
    assert!(e.contains("credentials"), "{e}");
    wrong.password = None;
    let e = RedisTransport::connect(&wrong, Shutdown::new())
        .err()
        .expect("no password must fail")
        .to_string();
    assert!(e.contains("credentials") || e.contains("NOAUTH"), "{e}");
}

#[test]
fn a_server_that_is_not_there_gets_a_clear_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = support::free_port();
    let s = loglines::config::RedisSettings {
        port,
        ..Default::default()
    };
    let e = RedisTransport::connect(&s, Shutdown::new())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("connection refused") && e.contains("redis-server"),
        "{e}"
    );
}

#[test]
fn retries_stop_promptly_when_shutdown_is_requested() {
    let mut r = RedisServer::start();
    let shutdown = Shutdown::new();
    let t = RedisTransport::connect(&r.settings(30), shutdown.clone()).unwrap();
    let mut p = t.producer("q").unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    p.push(msgs(&["a"])).unwrap();
    r.kill();
    let pusher = std::thread::spawn(move || p.push(msgs(&["b"])));
    let taker = std::thread::spawn(move || c.take(1, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    shutdown.trigger();
    let pushed = pusher.join().unwrap();
    let taken = taker.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(pushed, Err(QueueError::ShuttingDown)),
        "{pushed:?}"
    );
    assert!(matches!(taken, Err(QueueError::ShuttingDown)), "{taken:?}");
}

#[test]
fn admin_reports_lengths_consumers_and_purges() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q").unwrap().push(numbered(1..=10)).unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    let got = c.take(4, T).unwrap();
    c.dead_letter(got[0].clone(), "bad").unwrap();
    let mut admin = t.admin().unwrap();
    let info = admin.info("q").unwrap();
    assert_eq!(info.length, 6);
    assert_eq!(info.dead, 1);
    assert_eq!(info.consumers.len(), 1);
    assert_eq!(info.consumers[0].consumer, "h:worker_test:1");
    assert_eq!(info.consumers[0].in_flight, 3);
    assert!(info.consumers[0].alive);
    assert!(info.consumers[0].oldest_age_secs.is_some_and(|a| a < 5));
    assert_eq!(admin.peek("q", 3).unwrap(), strs(5..=7));
    assert_eq!(admin.purge("q").unwrap(), 6);
    assert_eq!(admin.info("q").unwrap().length, 0);
    // The in-flight list and the dead letters are not touched by a purge.
    assert_eq!(r.lrange("q:inflight:h:worker_test:1").len(), 3);
    assert_eq!(r.lrange("q:dead").len(), 1);
}

#[test]
fn a_producer_files_a_message_that_must_not_enter_the_queue_as_a_dead_letter() {
    let r = RedisServer::start();
    let t = transport(&r, 30);
    let mut p = t.producer("q").unwrap();
    p.push(msgs(&["fine"])).unwrap();
    p.dead_letter(
        Message::new("x".repeat(100)),
        "line longer than max_line_bytes (100 > 64)",
        "logger_watch",
    )
    .unwrap();
    assert_eq!(r.lrange("q"), ["fine"]);
    let dead = r.lrange("q:dead");
    assert_eq!(dead.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(v["message"], "x".repeat(100));
    assert_eq!(v["section"], "logger_watch");
    assert!(v["reason"].as_str().unwrap().contains("max_line_bytes"));
    assert!(v["consumer"].as_str().unwrap().ends_with(":logger_watch"));
}

/// The scripts push at most 4,000 elements per Redis call (Lua's unpack limit); lists longer
/// than that must still move whole and in order on every path: take, rebuilding an in-flight
/// list after a partial ack, forward, recovery, and requeueing dead letters.
#[test]
fn lists_longer_than_one_lua_unpack_move_whole_and_in_order() {
    use loglines::queue::redis::MAX_TAKE;
    const N: u32 = 9_001;
    let take = MAX_TAKE as u32;
    assert!(take > 4_000, "a full take must cross a chunk boundary");
    let r = RedisServer::start();
    let t = transport(&r, 30);
    t.producer("q").unwrap().push(numbered(1..=N)).unwrap();
    let mut c = t.consumer("q", &id("h", 1)).unwrap();
    let got = c.take(N as usize, T).unwrap();
    assert_eq!(bodies(&got), strs(1..=take));
    let newest_first = |list: &str| -> Vec<String> {
        let mut v = r.lrange(list);
        v.reverse();
        v
    };
    assert_eq!(newest_first("q:inflight:h:worker_test:1"), strs(1..=take));

    // Acking the newest 100 leaves a list that has to be rebuilt, not trimmed.
    let (older, newer) = got.split_at(got.len() - 100);
    c.ack(newer.to_vec()).unwrap();
    assert_eq!(
        newest_first("q:inflight:h:worker_test:1"),
        strs(1..=take - 100)
    );

    // Forward the rest with a fan-out longer than two chunks.
    c.forward(older.to_vec(), vec![("out".into(), numbered(1..=N))])
        .unwrap();
    assert!(!r.exists("q:inflight:h:worker_test:1"));
    assert_eq!(newest_first("out"), strs(1..=N));

    // A consumer that stops with a full take in flight has all of it recovered, oldest first.
    let quick = transport(&r, 1);
    let mut gone = quick.consumer("out", &id("gone", 1)).unwrap();
    assert_eq!(bodies(&gone.take(N as usize, T).unwrap()), strs(1..=take));
    drop(gone);
    assert!(wait_until(Duration::from_secs(10), || !r
        .exists("out:alive:gone:worker_test:1")));
    let mut b = quick.consumer("out", &id("b", 1)).unwrap();
    assert_eq!(take_suspects(&mut *b, take as usize, 1, T), strs(1..=take));
    assert!(!r.exists("out:inflight:gone:worker_test:1"));
    assert_eq!(bodies(&b.take(N as usize, T).unwrap()), strs(take + 1..=N));

    // Requeueing some dead letters rewrites the list of those that stay and pushes the others.
    let letter = |i: u32, reason: &str| {
        serde_json::json!({"message": i.to_string(), "reason": reason, "section": "s",
                           "consumer": "c", "at": "2026-11-27T09:00:00Z"})
        .to_string()
    };
    let mut cmd = redis::cmd("RPUSH");
    cmd.arg("d:dead");
    let (mut stay, mut back) = (Vec::new(), Vec::new());
    for i in 1..=N {
        if i % 2 == 0 {
            cmd.arg(letter(i, "kept"));
            stay.push(letter(i, "kept"));
        } else {
            cmd.arg(letter(i, "requeue me"));
            back.push(i.to_string());
        }
    }
    cmd.query::<()>(&mut r.conn()).unwrap();
    let mut admin = t.admin().unwrap();
    assert_eq!(
        admin.requeue_dead("d", Some("requeue")).unwrap(),
        back.len() as u64
    );
    assert_eq!(r.lrange("d:dead"), stay);
    // Oldest dead letter at the consumer end: taken first.
    assert_eq!(newest_first("d"), back);
}
