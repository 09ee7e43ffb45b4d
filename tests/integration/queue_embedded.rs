//! The embedded transport: the same semantics as Redis inside one process, a property test over
//! random interleavings, completion tracking through forward, and its dead-letter files.

use crate::support;

use loglines::queue::embedded::EmbeddedTransport;
use loglines::queue::{Consumer, ConsumerId, Lineage, Message, QueueError, Transport};
use loglines::util::shutdown::Shutdown;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::queue::{bodies, numbered, strs};
use support::wait_until;

const T: Duration = Duration::from_millis(200);
/// How long a test waits for something that must happen (much sooner, on a quiet machine).
const WAIT: Duration = Duration::from_secs(10);

fn id(n: u32) -> ConsumerId {
    ConsumerId::new("localhost", "worker_e", n)
}

fn transport(cap: usize) -> (EmbeddedTransport, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (EmbeddedTransport::new(cap, dir.path().to_path_buf()), dir)
}

#[test]
fn fifo_requeue_order_and_crash_return() {
    let (t, _d) = transport(100);
    t.producer("q").unwrap().push(numbered(1..=8)).unwrap();
    let mut a = t.consumer("q", &id(1)).unwrap();
    assert_eq!(bodies(&a.take(1, T).unwrap()), ["1"]);
    let got = a.take(4, T).unwrap();
    assert_eq!(bodies(&got), strs(2..=5));
    a.requeue(got[1..3].to_vec()).unwrap(); // 3, 4 back in front
    assert_eq!(bodies(&a.take(3, T).unwrap()), ["3", "4", "6"]);
    drop(a); // crash: 1, 2, 5, 3, 4, 6 were held; they go back in the order taken
    let mut b = t.consumer("q", &id(2)).unwrap();
    assert_eq!(
        bodies(&b.take(100, T).unwrap()),
        ["1", "2", "5", "3", "4", "6", "7", "8"]
    );
}

#[test]
fn a_blocked_consumer_wakes_for_a_message_put_back_by_another() {
    let (t, _d) = transport(10);
    t.producer("q").unwrap().push(numbered(1..=1)).unwrap();
    let mut a = t.consumer("q", &id(1)).unwrap();
    let got = a.take(1, T).unwrap();
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        let mut b = t2.consumer("q", &id(2)).unwrap();
        let start = Instant::now();
        let got = b.take(1, Duration::from_secs(10)).unwrap();
        (bodies(&got), start.elapsed())
    });
    // b is blocked in its take before the message comes back, so the wake-up is what is tested.
    assert!(wait_until(WAIT, || t.waiting_consumers("q") == 1));
    a.requeue(got).unwrap();
    let (got, waited) = waiter.join().unwrap();
    assert_eq!(got, ["1"]);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn a_full_queue_slows_its_producer_until_shutdown_or_room() {
    let shutdown = Shutdown::new();
    let dir = tempfile::tempdir().unwrap();
    let t = EmbeddedTransport::with_shutdown(3, dir.path().to_path_buf(), shutdown.clone());
    let mut p = t.producer("q").unwrap();
    p.push(numbered(1..=3)).unwrap();
    let pusher = std::thread::spawn(move || p.push(numbered(4..=5)));
    assert!(
        wait_until(WAIT, || t.waiting_producers("q") == 1),
        "a full queue makes the producer wait"
    );
    assert!(!pusher.is_finished());
    let mut c = t.consumer("q", &id(1)).unwrap();
    let got = c.take(1, T).unwrap();
    c.ack(got).unwrap();
    // One more goes in when there is room, and the producer waits again for the last.
    assert!(
        wait_until(WAIT, || t.len("q") == 3 && t.waiting_producers("q") == 1),
        "len {}, waiting {}",
        t.len("q"),
        t.waiting_producers("q")
    );
    assert!(!pusher.is_finished());
    shutdown.trigger();
    assert!(matches!(
        pusher.join().unwrap(),
        Err(QueueError::ShuttingDown)
    ));
}

/// Counts completed lines, like the watcher's checkpoint would.
struct Line(Arc<AtomicUsize>);

impl Drop for Line {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_line_completes_only_when_every_branch_of_its_fan_out_is_finished() {
    let (t, _d) = transport(100);
    let done = Arc::new(AtomicUsize::new(0));
    let mut p = t.producer("in").unwrap();
    assert!(p.tracks_completion());
    let tracked = |s: &str| Message {
        body: s.to_string(),
        lineage: Lineage::track(Arc::new(Line(done.clone()))),
        raw: None,
        attempts: 0,
    };
    p.push(vec![tracked("a"), tracked("a")]).unwrap();
    let mut broker = t.consumer("in", &id(1)).unwrap();
    let got = broker.take(10, T).unwrap();
    assert_eq!(got.len(), 2);
    // One output derives its lineage explicitly, the others inherit it from the batch.
    let out1 = vec![got[0].derive("a1"), Message::new("b1")];
    let out2 = vec![Message::new("a2")];
    broker
        .forward(got, vec![("w1".into(), out1), ("w2".into(), out2)])
        .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 0);
    let mut w1 = t.consumer("w1", &id(2)).unwrap();
    let mut w2 = t.consumer("w2", &id(3)).unwrap();
    let m1 = w1.take(10, T).unwrap();
    let m2 = w2.take(10, T).unwrap();
    assert_eq!(bodies(&m1), ["a1", "b1"]);
    w1.ack(m1).unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 0, "w2 still holds the lines");
    w2.dead_letter(m2[0].clone(), "rejected").unwrap();
    drop(m2);
    assert_eq!(done.load(Ordering::SeqCst), 2);
}

#[test]
fn dead_letters_go_to_a_json_lines_file_that_requeue_dead_reads() {
    let (t, dir) = transport(100);
    t.producer("q").unwrap().push(numbered(1..=3)).unwrap();
    let mut c = t.consumer("q", &id(7)).unwrap();
    let got = c.take(3, T).unwrap();
    c.dead_letter(got[0].clone(), "tracker said 400").unwrap();
    c.dead_letter(got[1].clone(), "plugin error").unwrap();
    c.ack(vec![got[2].clone()]).unwrap();
    let mut p = t.producer("q").unwrap();
    p.dead_letter(Message::new("too long"), "line too long", "logger_watch")
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("q.dead.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["message"], "too long");
    assert_eq!(lines[2]["section"], "logger_watch");
    assert_eq!(lines[0]["message"], "1");
    assert_eq!(lines[0]["reason"], "tracker said 400");
    assert_eq!(lines[0]["section"], "worker_e");
    assert_eq!(lines[0]["consumer"], "localhost:worker_e:7");
    assert!(lines[0]["at"].as_str().unwrap().ends_with('Z'));

    // Another process (`loglines queue requeue-dead --embedded`) requeues one of them: it
    // waits in a file until the process running the queue opens it.
    let other = EmbeddedTransport::new(10, dir.path().to_path_buf());
    let mut admin = other.admin().unwrap();
    assert_eq!(admin.info("q").unwrap().dead, 3);
    assert_eq!(admin.requeue_dead("q", Some("plugin")).unwrap(), 1);
    assert_eq!(
        admin.dead_letters("q", 10).unwrap()[0].reason,
        "tracker said 400"
    );
    assert_eq!(admin.peek("q", 10).unwrap(), ["2"]);
    let restarted = EmbeddedTransport::new(10, dir.path().to_path_buf());
    let mut c = restarted.consumer("q", &id(1)).unwrap();
    let again = c.take(10, T).unwrap();
    assert_eq!(bodies(&again), ["2"]);
    let files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("requeue")
            })
            .count()
    };
    assert_eq!(files(), 1, "kept until the message is finished");
    c.ack(again).unwrap();
    assert_eq!(files(), 0);
    // Live queue: requeue-dead puts them straight back.
    let mut admin = restarted.admin().unwrap();
    assert_eq!(admin.requeue_dead("q", None).unwrap(), 2);
    assert_eq!(bodies(&c.take(1, T).unwrap()), ["1"]);
    assert_eq!(admin.info("q").unwrap().consumers[0].in_flight, 1);
    assert!(matches!(
        admin.peek("q", 1),
        Err(QueueError::Unsupported(_))
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Push(u8),
    Take(usize, u8),
    Ack(usize, u8),
    Requeue(usize, u8),
    Dead(usize),
    Crash(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..6).prop_map(Op::Push),
        3 => (0usize..3, 1u8..5).prop_map(|(c, n)| Op::Take(c, n)),
        2 => (0usize..3, 1u8..4).prop_map(|(c, n)| Op::Ack(c, n)),
        1 => (0usize..3, 1u8..4).prop_map(|(c, n)| Op::Requeue(c, n)),
        1 => (0usize..3).prop_map(Op::Dead),
        1 => (0usize..3).prop_map(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the interleaving of push, take, ack, requeue, dead-letter and consumer crashes:
    /// every pushed message ends up acked, dead-lettered or still in the queue exactly once,
    /// and nothing that was never pushed ever comes out.
    #[test]
    fn no_message_is_lost_or_invented(ops in proptest::collection::vec(op(), 1..60)) {
        let (t, dir) = transport(1000);
        let mut p = t.producer("q").unwrap();
        let mut consumers: Vec<Box<dyn Consumer>> =
            (0..3).map(|i| t.consumer("q", &id(i)).unwrap()).collect();
        let mut held: Vec<Vec<Message>> = vec![Vec::new(); 3];
        let mut next = 0u32;
        let mut pushed = Vec::new();
        let mut finished: HashMap<String, u32> = HashMap::new();
        let mut dead_n = 0;
        for op in ops {
            match op {
                Op::Push(n) => {
                    let batch: Vec<Message> =
                        (0..n).map(|_| { next += 1; Message::new(format!("m{next}")) }).collect();
                    pushed.extend(bodies(&batch));
                    p.push(batch).unwrap();
                }
                Op::Take(c, n) => {
                    let got = consumers[c].take(n as usize, Duration::ZERO).unwrap();
                    prop_assert!(got.len() <= n as usize);
                    for m in &got {
                        prop_assert!(pushed.contains(&m.body), "invented {}", m.body);
                    }
                    held[c].extend(got);
                }
                Op::Ack(c, n) => {
                    let k = (n as usize).min(held[c].len());
                    let done: Vec<Message> = held[c].drain(..k).collect();
                    for m in &done { *finished.entry(m.body.clone()).or_default() += 1; }
                    consumers[c].ack(done).unwrap();
                }
                Op::Requeue(c, n) => {
                    let k = (n as usize).min(held[c].len());
                    let back: Vec<Message> = held[c].drain(..k).collect();
                    consumers[c].requeue(back).unwrap();
                }
                Op::Dead(c) => {
                    if let Some(m) = held[c].pop() {
                        *finished.entry(m.body.clone()).or_default() += 1;
                        dead_n += 1;
                        consumers[c].dead_letter(m, "test").unwrap();
                    }
                }
                Op::Crash(c) => {
                    held[c].clear();
                    consumers[c] = t.consumer("q", &id(c as u32)).unwrap();
                }
            }
        }
        // Everything still held goes back when the consumers stop.
        drop(consumers);
        let mut last = t.consumer("q", &id(9)).unwrap();
        let rest = last.take(10_000, Duration::ZERO).unwrap();
        for m in &rest { *finished.entry(m.body.clone()).or_default() += 1; }
        for b in &pushed {
            prop_assert_eq!(finished.get(b).copied(), Some(1), "message {}", b);
        }
        prop_assert_eq!(finished.len(), pushed.len());
        let dead = std::fs::read_to_string(dir.path().join("q.dead.jsonl")).unwrap_or_default();
        prop_assert_eq!(dead.lines().count(), dead_n);
    }
}
