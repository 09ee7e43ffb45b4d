//! What other programs push onto the queues, over a real Redis: a message that is not UTF-8
//! stalls no role. Broker, worker and file logger each dead-letter it with the reason and its
//! exact bytes, go on with the messages behind it, and `queue peek` and `queue dead` show it
//! escaped. Keys of the wrong type change nothing; and a fuzzer sends generated items of every
//! kind through all the roles.

use crate::support;

use base64::Engine as _;
use std::time::Duration;
use support::bin::{assert_exit, text};
use support::pipeline::{Options, Pipeline};
use support::wait_until;

const BAD: &[u8] = b"{\"service\":\"x\",\"logline\":\"\xff\xfe not UTF-8\"}";

fn lpush(p: &Pipeline, queue: &str, items: &[&[u8]]) {
    let mut c = p.redis.as_ref().unwrap().conn();
    for item in items {
        let _: () = redis::cmd("LPUSH")
            .arg(queue)
            .arg(*item)
            .query(&mut c)
            .unwrap();
    }
}

fn dead(p: &Pipeline, queue: &str) -> Vec<serde_json::Value> {
    let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(format!("{queue}:dead"))
        .arg(0)
        .arg(-1)
        .query(&mut p.redis.as_ref().unwrap().conn())
        .unwrap();
    raw.iter()
        .map(|r| serde_json::from_slice(r).expect("a dead letter is JSON"))
        .collect()
}

/// The one dead letter of `queue` holds BAD exactly and says why.
fn assert_filed_exactly(p: &Pipeline, queue: &str) {
    let letters = dead(p, queue);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let l = &letters[0];
    assert!(
        l["reason"].as_str().unwrap().contains("not valid UTF-8"),
        "{l}"
    );
    assert!(
        l["message"]
            .as_str()
            .unwrap()
            .contains("\\xff\\xfe not UTF-8"),
        "{l}"
    );
    let exact = base64::engine::general_purpose::STANDARD
        .decode(l["message_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(exact, BAD);
}

#[test]
fn a_message_that_is_not_utf8_is_dead_lettered_by_every_role_and_the_rest_flows() {
    let mut p = Pipeline::redis(Options {
        workers: 1,
        ..Options::default()
    });
    let good = |i: u64| {
        serde_json::json!({"service": "repo.example.ac.uk", "logline": support::loggen::line(i, 1)})
            .to_string()
    };
    // The broker's queue, the worker's and a file logger's each get one, between good ones.
    let (g0, g1) = (good(0), good(1));
    lpush(&p, "loglines", &[g0.as_bytes(), BAD, g1.as_bytes()]);
    let (g2, g3) = (good(2), good(3));
    lpush(&p, "pirus2", &[g2.as_bytes(), BAD, g3.as_bytes()]);
    lpush(
        &p,
        "otherlog",
        &[BAD, b"{\"service\":\"x\",\"logline\":\"after\"}"],
    );
    for section in [
        "worker_broker",
        "worker_pirus2",
        "logger_articlelogger",
        "logger_otherlogger",
    ] {
        p.start(section, 0);
    }
    // Four downloads reach the tracker: the broker's two through the worker, and the worker's.
    let delivered = p.tracker.wait_for(4, Duration::from_secs(30));
    let everyone_filed = wait_until(Duration::from_secs(30), || {
        ["loglines", "pirus2", "otherlog"]
            .iter()
            .all(|q| dead(&p, q).len() == 1)
    });
    let outputs = p.outputs();
    p.stop_all();
    assert!(delivered, "the messages behind it did not flow:\n{outputs}");
    assert!(everyone_filed, "a role did not file it:\n{outputs}");
    assert_eq!(p.tracker.count(), 4);
    for q in ["loglines", "pirus2", "otherlog"] {
        assert_filed_exactly(&p, q);
    }
    assert!(p.lines_of("logs/other.log").contains(&"after".to_string()));
    // No role took it for a lost connection and went round again; each filed it through its
    // consume loop, as any dead letter (logged, counted, notified).
    assert!(!outputs.contains("lost the connection"), "{outputs}");
    for section in ["worker_broker", "worker_pirus2", "logger_otherlogger"] {
        assert!(
            outputs.contains(&format!(
                "[{section}] dead-lettered a message: the message is not valid UTF-8"
            )),
            "{outputs}"
        );
    }

    // The admin commands show it, escaped, instead of failing.
    lpush(&p, "pirus2", &[BAD]);
    let peek = p.command(&["queue", "peek", "pirus2"]).output().unwrap();
    assert_exit(&peek, 0);
    assert!(
        text(&peek.stdout).contains("\\xff\\xfe not UTF-8"),
        "{}",
        text(&peek.stdout)
    );
    let shown = p.command(&["queue", "dead", "pirus2"]).output().unwrap();
    assert_exit(&shown, 0);
    assert!(
        text(&shown.stdout).contains("not valid UTF-8"),
        "{}",
        text(&shown.stdout)
    );
    // Even a dead-letter list holding raw bytes written by hand.
    lpush(&p, "pirus2:dead", &[BAD]);
    let shown = p.command(&["queue", "dead", "pirus2"]).output().unwrap();
    assert_exit(&shown, 0);
    assert!(
        text(&shown.stdout).contains("\\xff\\xfe"),
        "{}",
        text(&shown.stdout)
    );
}

/// A key of the wrong type where loglines keeps a list (a `pirus2:dead` set by hand) fails the
/// dead letter with an error naming the key, and the message stays where it was: in flight,
/// then dead-lettered once the key is fixed. Also for `queue requeue-dead` onto a queue of the
/// wrong type.
#[test]
fn a_wrong_type_key_is_an_error_naming_it_and_loses_nothing() {
    let mut p = Pipeline::redis(Options {
        workers: 1,
        ..Options::default()
    });
    p.tracker.reject(400, "no such item");
    let mut c = p.redis.as_ref().unwrap().conn();
    let _: () = redis::cmd("SET")
        .arg("pirus2:dead")
        .arg("not a list")
        .query(&mut c)
        .unwrap();
    let msg = serde_json::json!({"service": "repo.example.ac.uk", "logline": support::loggen::line(0, 1)})
        .to_string();
    lpush(&p, "pirus2", &[msg.as_bytes()]);
    p.start("worker_pirus2", 0);
    let said = wait_until(Duration::from_secs(30), || {
        p.outputs()
            .contains("pirus2:dead is a string where loglines keeps a list")
    });
    let outputs = p.outputs();
    assert!(said, "{outputs}");
    p.stop_all();
    // Not lost: still in the worker's in-flight list.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("pirus2:inflight:*")
        .query(&mut c)
        .unwrap();
    let mut held = Vec::new();
    for k in &keys {
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(k)
            .arg(0)
            .arg(-1)
            .query(&mut c)
            .unwrap();
        held.extend(items);
    }
    assert_eq!(held, vec![msg.clone()], "{outputs}");
    // Fixed, the restarted worker files it as it should have.
    let _: () = redis::cmd("DEL").arg("pirus2:dead").query(&mut c).unwrap();
    p.start("worker_pirus2", 0);
    let filed = wait_until(Duration::from_secs(30), || dead(&p, "pirus2").len() == 1);
    let outputs = p.outputs();
    p.stop_all();
    assert!(filed, "{outputs}");
    assert_eq!(
        dead(&p, "pirus2")[0]["message"].as_str(),
        Some(msg.as_str())
    );

    // requeue-dead onto a queue of the wrong type: an error naming it, the letter stays.
    let _: () = redis::cmd("SET")
        .arg("pirus2")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let out = p
        .command(&["queue", "requeue-dead", "pirus2"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("pirus2 is a string where loglines keeps a list"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(dead(&p, "pirus2").len(), 1);
}

/// A producer's push onto a key of the wrong type fails naming the key, and writes nothing: in
/// particular not the record of its batch number, which a producer that lost the answer reads
/// back to decide whether the batch was stored (with MULTI/EXEC the record was written although
/// the push had failed, so such a batch would have been skipped). `queue purge` of a key that is
/// not a queue deletes nothing.
#[test]
fn a_push_or_purge_on_a_wrong_type_key_changes_nothing() {
    let p = Pipeline::redis(Options::default());
    let mut c = p.redis.as_ref().unwrap().conn();
    let _: () = redis::cmd("SET")
        .arg("loglines")
        .arg("not a list")
        .query(&mut c)
        .unwrap();
    let err = p.dir.path().join("push.err");
    let mut push = p
        .command(&["push", "--section", "logger_watch"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = push.stdin.take().unwrap();
    {
        use std::io::Write as _;
        stdin
            .write_all(format!("{}\n", support::loggen::line(0, 1)).as_bytes())
            .unwrap();
    }
    let said = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("loglines is a string where loglines keeps a list")
    });
    let records: Vec<String> = redis::cmd("KEYS")
        .arg("loglines:producer:*")
        .query(&mut c)
        .unwrap();
    if !said || !records.is_empty() {
        // Not left running (holding the test's output) when an assertion fails.
        let _ = push.kill();
    }
    assert!(said, "{}", std::fs::read_to_string(&err).unwrap());
    assert_eq!(
        records,
        Vec::<String>::new(),
        "a failed push left its record"
    );
    // Once the key is out of the way the waiting line is pushed, and the push ends cleanly.
    let _: () = redis::cmd("DEL").arg("loglines").query(&mut c).unwrap();
    let stored = wait_until(Duration::from_secs(30), || {
        redis::cmd("LLEN")
            .arg("loglines")
            .query::<usize>(&mut c)
            .unwrap()
            == 1
    });
    drop(stdin);
    if !stored {
        let _ = push.kill();
    }
    let status = push.wait().unwrap();
    assert!(stored, "{}", std::fs::read_to_string(&err).unwrap());
    assert_eq!(status.code(), Some(0));

    let _: () = redis::cmd("DEL").arg("loglines").query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("loglines")
        .arg("not a list")
        .query(&mut c)
        .unwrap();
    let out = p
        .command(&["queue", "purge", "loglines", "--yes"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("loglines is a string where loglines keeps a list"),
        "{}",
        text(&out.stderr)
    );
    let kept: String = redis::cmd("GET").arg("loglines").query(&mut c).unwrap();
    assert_eq!(kept, "not a list");
}

/// What another program may push, generated: each item, whatever it is.
fn hostile_item(i: u64, rng: &mut u64) -> Vec<u8> {
    let mut next = || {
        *rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *rng >> 33
    };
    let line = support::loggen::line(i, 2);
    let wrap = |logline: &str| {
        serde_json::json!({"service": "repo.example.ac.uk", "logline": logline}).to_string()
    };
    match next() % 12 {
        0 | 1 => wrap(&line).into_bytes(),
        // The line mangled: bytes flipped, quotes and brackets inserted.
        2 => {
            let mut l = line.into_bytes();
            for _ in 0..1 + next() % 6 {
                let at = next() as usize % l.len();
                let pool = b"\"[]{}\\% \t\x01\xc3-/?";
                l[at] = pool[next() as usize % pool.len()];
            }
            wrap(&String::from_utf8_lossy(&l)).into_bytes()
        }
        // Cut anywhere: not JSON.
        3 => {
            let w = wrap(&line).into_bytes();
            w[..next() as usize % w.len()].to_vec()
        }
        4 => [
            "null", "42", "[]", "\"text\"", "{}", "true", "", " ",
            r#"{"logline": 5}"#,
            r#"{"service": null, "logline": null}"#,
            r#"{"service": "s", "logline": "\u0000\ud800"}"#,
            r#"{"service": "s", "logline": ["a"]}"#,
        ][next() as usize % 12]
            .as_bytes()
            .to_vec(),
        // Not UTF-8.
        5 => {
            let mut w = wrap(&line).into_bytes();
            let at = 20 + next() as usize % (w.len() - 20);
            w.insert(at, 0xff);
            w
        }
        // Very long: a 300 KB path and user agent.
        6 => wrap(&line.replace("/paper.pdf", &format!("/{}.pdf", "p".repeat(300_000)))).into_bytes(),
        // Deeply nested.
        7 => format!("{}1{}", "[".repeat(300), "]".repeat(300)).into_bytes(),
        // Newlines, carriage returns and escapes inside the line.
        8 => wrap(&format!("{line}\r\n{line}\u{2028}")).into_bytes(),
        // Extra fields, another service, numbers as strings.
        9 => serde_json::json!({"service": "other.example", "logline": line, "extra": {"a": [1, 2]}, "n": "1e999"})
            .to_string()
            .into_bytes(),
        // A line that is no access log.
        10 => wrap(&"x".repeat(next() as usize % 200)).into_bytes(),
        _ => wrap("").into_bytes(),
    }
}

/// The queue-message fuzzer: 300 generated items pushed by "another program" onto the broker's
/// queue go through broker, worker and both file loggers over a real Redis. Each is accounted
/// for exactly once: logged as sent (and received by the tracker), logged as not a usage event,
/// or dead-lettered by some role with a reason. Every queue drains, and every role stops
/// cleanly: no stall, no crash, nothing lost.
#[test]
fn generated_queue_messages_through_every_role_are_each_sent_logged_or_dead_lettered() {
    const N: u64 = 300;
    let mut p = Pipeline::redis(Options {
        workers: 1,
        ..Options::default()
    });
    let mut rng = 0x5eed;
    let items: Vec<Vec<u8>> = (0..N).map(|i| hostile_item(i, &mut rng)).collect();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    lpush(&p, "loglines", &refs);
    p.start_all();
    let mut c = p.redis.as_ref().unwrap().conn();
    let llen =
        |c: &mut redis::Connection, k: &str| -> u64 { redis::cmd("LLEN").arg(k).query(c).unwrap() };
    let deads = [
        "loglines:dead",
        "pirus2:dead",
        "articlelog:dead",
        "otherlog:dead",
    ];
    let accounted = |c: &mut redis::Connection| -> (u64, u64, u64) {
        let dead: u64 = deads.iter().map(|k| llen(c, k)).sum();
        let sent = p.lines_of("logs/articles.log").len() as u64;
        let other = p.lines_of("logs/other.log").len() as u64;
        (sent, other, dead)
    };
    let done = wait_until(Duration::from_secs(120), || {
        let (s, o, d) = accounted(&mut c);
        s + o + d >= N
    });
    let (sent, other, dead) = accounted(&mut c);
    let outputs = p.outputs();
    let codes = p.stop_all();
    assert!(
        done,
        "{sent} sent, {other} other, {dead} dead of {N}\n{outputs}"
    );
    assert_eq!(sent + other + dead, N, "each exactly once\n{outputs}");
    eprintln!("{sent} sent, {other} not usage events, {dead} dead-lettered, of {N}");
    for (role, code) in &codes {
        assert_eq!(*code, Some(0), "{role}\n{outputs}");
    }
    for q in ["loglines", "pirus2", "articlelog", "otherlog"] {
        assert_eq!(llen(&mut c, q), 0, "{q} drained");
    }
    assert_eq!(
        p.tracker.count() as u64,
        sent,
        "sent means the tracker has it"
    );
    assert!(sent > 0 && other > 0 && dead > 0, "{sent} {other} {dead}");
    for k in deads {
        let letters: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(k)
            .arg(0)
            .arg(-1)
            .query(&mut c)
            .unwrap();
        for l in letters {
            let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
            assert!(!v["reason"].as_str().unwrap_or("").is_empty(), "{k}: {v}");
        }
    }
}
