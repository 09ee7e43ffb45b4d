//! `loglines status`, `loglines queue peek|dead|requeue-dead|purge` and the Redis line of
//! `loglines check`, run as the built binary against a real redis-server and a temp config.

use crate::support;

use loglines::queue::redis::RedisTransport;
use loglines::queue::{ConsumerId, Message, Transport};
use loglines::util::shutdown::Shutdown;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use support::redis::RedisServer;

fn config(dir: &Path, port: u16) -> PathBuf {
    std::fs::write(dir.join("access.log"), "").unwrap();
    let path = dir.join("loglines.cfg");
    std::fs::write(
        &path,
        format!(
            "[logger_watch]\ncommand = loglines watch\npushto = incoming\nservicename = repo.example\nlogfile = access.log\n\n\
             [logger_files]\ncommand = loglines filelog\nlistento = incoming\nlogfile = out.log\n\n\
             [redis]\nhost = 127.0.0.1\nport = {port}\nheartbeat_ttl = 30\n"
        ),
    )
    .unwrap();
    path
}

fn loglines(cfg: &Path, args: &[&str]) -> Output {
    // Bounded: none of these commands may hang.
    support::bin::output_within(cfg, args, Duration::from_secs(20))
}

fn stdout(o: &Output) -> String {
    support::bin::text(&o.stdout)
}

fn stderr(o: &Output) -> String {
    support::bin::text(&o.stderr)
}

#[test]
fn status_peek_requeue_dead_and_purge_against_real_redis() {
    let r = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), r.port());
    let t = RedisTransport::connect(&r.settings(30), Shutdown::new()).unwrap();
    t.producer("incoming")
        .unwrap()
        .push((1..=6).map(|i| Message::new(format!("m{i}"))).collect())
        .unwrap();
    let mut c = t
        .consumer("incoming", &ConsumerId::new("box1", "logger_files", 1))
        .unwrap();
    let got = c.take(3, Duration::from_secs(5)).unwrap();
    c.dead_letter(got[0].clone(), "disk full").unwrap();
    c.dead_letter(got[1].clone(), "bad line").unwrap();

    let o = loglines(&cfg, &["status"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(
        text.contains("redis 7") || text.contains("redis 6"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("incoming"))
        .unwrap_or_else(|| panic!("no row for the queue:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["incoming", "3", "1"], "{row}");
    assert_eq!(cols[4], "2", "dead letters: {row}");
    assert!(row.contains("1 alive"), "{row}");
    assert!(text.contains("box1:logger_files:1"), "{text}");

    let o = loglines(&cfg, &["status", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let q = &v["servers"][0]["queues"][0];
    assert_eq!(q["queue"], "incoming");
    assert_eq!(q["length"], 3);
    assert_eq!(q["dead"], 2);
    assert_eq!(q["consumers"][0]["consumer"], "box1:logger_files:1");
    assert_eq!(q["consumers"][0]["in_flight"], 1);
    assert_eq!(q["consumers"][0]["alive"], true);

    let o = loglines(&cfg, &["queue", "peek", "incoming", "-n", "2"]);
    assert_eq!(stdout(&o), "m4\nm5\n");

    let o = loglines(&cfg, &["queue", "dead", "incoming"]);
    assert!(stdout(&o).contains("disk full") && stdout(&o).contains("m1"));

    let o = loglines(
        &cfg,
        &["queue", "requeue-dead", "incoming", "--reason", "bad"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("moved 1 dead letters"),
        "{}",
        stdout(&o)
    );
    // Requeued at the producer end: after everything already waiting.
    let o = loglines(&cfg, &["queue", "peek", "incoming", "-n", "10"]);
    assert_eq!(stdout(&o), "m4\nm5\nm6\nm2\n");

    let o = loglines(&cfg, &["queue", "purge", "incoming"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("add --yes"), "{}", stderr(&o));
    // A suspect (what a stopped consumer held) waits too: purged with the rest.
    let _: () = redis::cmd("RPUSH")
        .arg("incoming:suspect")
        .arg("m9")
        .query(&mut r.conn())
        .unwrap();
    let o = loglines(&cfg, &["queue", "purge", "incoming", "--yes"]);
    assert!(stdout(&o).contains("deleted 5 messages"), "{}", stdout(&o));
    assert!(!r.exists("incoming:suspect"));
    let o = loglines(&cfg, &["queue", "peek", "incoming"]);
    assert_eq!(stdout(&o), "");

    let o = loglines(&cfg, &["queue", "peek", "nosuchqueue"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not named in the configuration"));

    let o = loglines(&cfg, &["check"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("[redis] redis 7") || stdout(&o).contains("[redis] redis 6"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn an_unreachable_redis_is_a_warning_for_check_and_a_failure_for_status() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = config(dir.path(), port);
    let o = loglines(&cfg, &["check"]);
    assert!(o.status.success(), "check must not fail without Redis");
    assert!(stdout(&o).contains("[redis] warning:"), "{}", stdout(&o));
    assert!(stdout(&o).contains("connection refused"));
    let o = loglines(&cfg, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("UNREACHABLE"), "{}", stdout(&o));
}

#[test]
fn status_watch_refreshes_until_interrupted() {
    let r = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), r.port());
    let mut child = support::bin::loglines()
        .arg("-c")
        .arg(&cfg)
        .args(["status", "--json", "--watch", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Interrupted once it has shown the status twice: it refreshes until then.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        loop {
            let docs = seen.lines().filter(|l| l.starts_with('{')).count();
            if docs >= 2 {
                return (seen, stdout);
            }
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => return (seen, stdout),
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    let (mut seen, mut stdout) = reader.join().unwrap();
    support::send_signal(child.id(), libc::SIGINT);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = child.try_wait().unwrap().is_some();
    if !finished {
        let _ = child.kill();
    }
    std::io::Read::read_to_string(&mut stdout, &mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(finished, "status --watch must stop on SIGINT");
    assert_eq!(status.code(), Some(0));
    let docs = seen.lines().filter(|l| l.starts_with('{')).count();
    assert!(docs >= 2, "refreshed {docs} times");
}

#[test]
fn embedded_dead_letters_can_be_listed_and_requeued_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1);
    let state = dir.path().join("state/dead");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("incoming.dead.jsonl"),
        "{\"message\":\"m1\",\"reason\":\"disk full\",\"section\":\"s\",\"consumer\":\"c\",\"at\":\"2026-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let o = loglines(&cfg, &["status", "--embedded"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row = stdout(&o)
        .lines()
        .find(|l| l.trim_start().starts_with("incoming"))
        .unwrap()
        .to_string();
    assert_eq!(row.split_whitespace().nth(4), Some("1"), "{row}");
    let o = loglines(&cfg, &["queue", "requeue-dead", "incoming", "--embedded"]);
    assert!(stdout(&o).contains("moved 1"), "{}", stderr(&o));
    let o = loglines(&cfg, &["queue", "peek", "incoming", "--embedded"]);
    assert_eq!(stdout(&o), "m1\n");
    assert_eq!(
        std::fs::read_to_string(state.join("incoming.dead.jsonl")).unwrap(),
        ""
    );
}
