//! kill -9 of the real `loglines watch` at random moments while lines are appended and the
//! log is rotated, against a real redis-server: every line must arrive, a line may arrive twice
//! only if it was in the crash window of a kill (handed to Redis after the checkpoint the
//! killed process had last written), and each window is at most one batch per file being read
//! (docs/architecture.md, "Delivery guarantees": duplicates only within one batch per
//! consumer).

use crate::support;

use loglines::roles::watch::checkpoint::{self, Loaded};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::redis::RedisServer;
use support::{temp_dir, wait_until};

const LINES: u64 = 12_000;
const BURST: u64 = 20;
const ROTATE_EVERY: u64 = 2_500;
/// The watcher section's `batch_size`: the most lines one push carries.
const BATCH: usize = 200;

/// Where the writer put each line: (file number, offset after the line).
type Placement = Vec<(usize, u64)>;

/// A checkpoint as the test reads it: (inode, offset) of the followed file, and of the rotated
/// file still being read, if any.
type Mark = ((u64, u64), Option<(u64, u64)>);

/// What a kill left: the checkpoint, if any, and the lines then in Redis.
type Kill = (Option<Mark>, BTreeSet<u64>);

/// A small xorshift generator: the test needs varied kill moments, not good randomness; the
/// seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn spawn(cfg: &Path, log: &Path) -> Child {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_loglines"))
        .args(["-v", "--config", cfg.to_str().unwrap()])
        .args(["watch", "--section", "logger_watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap()
}

/// The line numbers in the queue, with how often each is there.
fn counts(redis: &RedisServer) -> BTreeMap<u64, u32> {
    let mut m = BTreeMap::new();
    for msg in redis.redis_cmd(&["LRANGE", "lines", "0", "-1"]).lines() {
        let v: serde_json::Value = serde_json::from_str(msg).unwrap();
        let line = v["logline"].as_str().unwrap();
        let n: u64 = line.strip_prefix("line ").unwrap().parse().unwrap();
        *m.entry(n).or_insert(0) += 1;
    }
    m
}

#[test]
fn kill_9_at_random_moments_loses_no_line() {
    let redis = RedisServer::start();
    let dir = temp_dir();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("access.log");
    let ck = dir.path().join("state").join("w.checkpoint");
    let cfg = dir.path().join("loglines.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nport = {}\n\n[logger_watch]\ncommand = loglines watch\nlogfile = {}\npushto = lines\nservicename = s\nstart_at = beginning\nbatch_size = {BATCH}\ncheckpoint = {}\n",
            redis.port(),
            log.display(),
            ck.display()
        ),
    )
    .unwrap();
    let stderr_log = dir.path().join("watch.stderr");
    std::fs::write(&log, "").unwrap();

    // The writer behaves like a web server under logrotate's `create` + reload: it keeps its
    // descriptor, so after the rename it goes on writing to the old file, reopens the name a
    // little later, and a straggler still writes to the old file after that. It records every
    // file's inode and where every line ended.
    let placement: Arc<Mutex<Placement>> = Arc::default();
    let inodes: Arc<Mutex<Vec<u64>>> =
        Arc::new(Mutex::new(vec![std::fs::metadata(&log).unwrap().ino()]));
    let writer = {
        let (log, logs, placement, inodes) =
            (log.clone(), logs.clone(), placement.clone(), inodes.clone());
        std::thread::spawn(move || {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap()
            };
            let mut n = 0;
            let mut burst = |f: &mut std::fs::File, file_no: usize| {
                let mut text = String::new();
                let mut ends = Vec::new();
                let mut at = f.metadata().unwrap().len();
                for i in n..n + BURST {
                    let l = format!("line {i}\n");
                    at += l.len() as u64;
                    ends.push((file_no, at));
                    text.push_str(&l);
                }
                f.write_all(text.as_bytes()).unwrap();
                placement.lock().unwrap().extend(ends);
                n += BURST;
                std::thread::sleep(Duration::from_millis(10));
                n
            };
            let mut file_no = 0;
            let mut f = open();
            loop {
                let written = burst(&mut f, file_no);
                if written >= LINES {
                    break;
                }
                if written % ROTATE_EVERY == 0 {
                    std::fs::rename(&log, logs.join(format!("access.log.{}", file_no + 1)))
                        .unwrap();
                    // Still writing to the renamed file, before the reload.
                    burst(&mut f, file_no);
                    burst(&mut f, file_no);
                    let mut old = std::mem::replace(&mut f, open());
                    inodes.lock().unwrap().push(f.metadata().unwrap().ino());
                    burst(&mut f, file_no + 1);
                    // A long download finishing in an old child after the reload.
                    burst(&mut old, file_no);
                    file_no += 1;
                }
            }
        })
    };

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    // For each kill: the checkpoint the killed process left, and which lines were in Redis.
    let mut kills: Vec<Kill> = Vec::new();
    while !writer.is_finished() {
        let mut child = spawn(&cfg, &stderr_log);
        std::thread::sleep(Duration::from_millis(100 + rng.below(700)));
        child.kill().unwrap();
        child.wait().unwrap();
        let at = match checkpoint::load(&ck) {
            Loaded::Found { checkpoint, .. } => Some((
                (checkpoint.position.ino, checkpoint.position.offset),
                checkpoint
                    .rotated
                    .map(|r| (r.position.ino, r.position.offset)),
            )),
            Loaded::Missing => None,
            Loaded::Unreadable(why) => panic!("the checkpoint is unusable after kill -9: {why}"),
        };
        kills.push((at, counts(&redis).into_keys().collect()));
    }
    writer.join().unwrap();

    // Last run: until every line is there, then a clean stop.
    let mut child = spawn(&cfg, &stderr_log);
    let complete = wait_until(Duration::from_secs(20), || {
        counts(&redis).len() as u64 == LINES
    });
    support::sigterm_exits_0_within_5s(&mut child);
    let counts = counts(&redis);
    let missing: Vec<u64> = (0..LINES).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        complete && missing.is_empty(),
        "{} lines lost, first {:?}; watcher log:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        std::fs::read_to_string(&stderr_log).unwrap_or_default()
    );

    // A line is in kill k's window when it was in Redis at the kill but after the checkpoint
    // the killed process left; only those may be sent again, once per window. The checkpoint
    // covers the followed file up to its offset, the rotated file (when recorded) up to its
    // own, and every older file whole.
    let placement = placement.lock().unwrap();
    let inodes = inodes.lock().unwrap();
    let file_of = |ino: u64| {
        inodes.iter().position(|&i| i == ino).unwrap_or_else(|| {
            panic!("the checkpoint names inode {ino}, not one of the log's files")
        })
    };
    let covered = |n: u64, at: Option<Mark>| match at {
        None => false,
        Some(((ino, offset), rotated)) => {
            let main = file_of(ino);
            let (f, end) = placement[n as usize];
            match rotated.map(|(ri, ro)| (file_of(ri), ro)) {
                Some((r, ro)) if f == r => end <= ro,
                Some((r, _)) if f < r => true,
                _ => f < main || (f == main && end <= offset),
            }
        }
    };
    // The bound on each window. The watcher records every acknowledged batch in the
    // checkpoint before it pushes the next one, so a killed process leaves at most its last
    // batch beyond its checkpoint. That batch starts at the checkpoint's position in its file,
    // and checkpoints only move forward, so what earlier killed processes left beyond this
    // kill's checkpoint lies within one batch from it too: per file, the union of such
    // batches is at most one batch. Two files can each hold one: the checkpoint has a position
    // in the followed file and one in the rotated file still read for late lines, and a
    // process can be killed just after pushing a batch of one while an earlier process left
    // its batch in the other. Hence at most one batch per file, two in all.
    let mut total = 0;
    let mut widest = 0;
    let mut report = Vec::new();
    for (k, (at, present)) in kills.iter().enumerate() {
        let window: Vec<u64> = present
            .iter()
            .copied()
            .filter(|&n| !covered(n, *at))
            .collect();
        let mut per_file: BTreeMap<usize, usize> = BTreeMap::new();
        for &n in &window {
            *per_file.entry(placement[n as usize].0).or_insert(0) += 1;
        }
        report.push(format!(
            "kill {k}: checkpoint (followed, rotated) {at:?}, {} lines in Redis, window {} lines (per file {per_file:?})",
            present.len(),
            window.len()
        ));
        widest = widest.max(window.len());
        for (&file, &lines) in &per_file {
            assert!(
                lines <= BATCH,
                "kill {k}: {lines} lines of file {file} in Redis beyond the checkpoint, more than one batch ({BATCH})\n{}",
                report.join("\n")
            );
        }
        assert!(
            per_file.len() <= 2,
            "kill {k}: window spans {} files\n{}",
            per_file.len(),
            report.join("\n")
        );
    }
    for (&n, &c) in &counts {
        if c == 1 {
            continue;
        }
        total += c - 1;
        let windows = kills
            .iter()
            .filter(|(at, present)| present.contains(&n) && !covered(n, *at))
            .count() as u32;
        assert!(
            c - 1 <= windows,
            "line {n} arrived {c} times but was in {windows} crash windows\n{}",
            report.join("\n")
        );
    }
    println!(
        "{} kills, {LINES} lines, {total} duplicates, all within crash windows; widest window {widest} lines (batch {BATCH})",
        kills.len()
    );
    for r in &report {
        println!("{r}");
    }
    assert!(kills.len() >= 5, "only {} kills happened", kills.len());
}
