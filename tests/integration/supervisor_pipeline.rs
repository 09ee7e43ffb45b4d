//! The repository's example `loglines.cfg`, turned into supervisord programs by `loglines
//! supervisor generate` and run by a real supervisord with the real roles over a real Redis:
//! every program reaches RUNNING (the example's `process_redis` as a real redis-server), lines
//! written to the watched log reach the tracker stand-in and the file loggers, a worker killed
//! with SIGKILL is restarted by supervisord without losing a line, the web UI shows every
//! program running, and on SIGTERM every program exits cleanly.
//!
//! The example is adapted only where a temporary folder needs it (ports, paths, the tracker,
//! shorter startsecs): see `example_config`. Everything else, the sections, their roles, queues,
//! numprocs, priorities and the [irus] settings, is the file the repository ships.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::loggen;
use support::pipeline::{data, plugin_verdicts, tally};
use support::redis::RedisServer;
use support::supervisord::{
    web_ui_all_running, web_ui_get, ProcessInfo, SupervisorConfig, Supervisord,
};
use support::tracker::Tracker;
use support::{crate_root, free_port, send_signal, wait_until};

/// supervisord's own start-up, startsecs, and restarts on a loaded 2-core machine take a few
/// seconds; this is the bound, not the expected time.
const STATE_WAIT: Duration = Duration::from_secs(20);
/// How long lines may take from the log file to the tracker and the file loggers.
const FILED_WAIT: Duration = Duration::from_secs(30);

/// The example's topology: (section, role, processes). Checked against the adapted file, so a
/// change to the example that this test does not cover fails here, not somewhere obscure.
const TOPOLOGY: &[(&str, &str, u32)] = &[
    ("logger_articlelogger", "filelog", 1),
    ("logger_logfilewatcher", "watch", 1),
    ("logger_otherlogger", "filelog", 1),
    ("process_redis", "process", 1),
    ("worker_broker", "broker", 1),
    ("worker_pirus2", "worker", 3),
];

/// The queues of the example, which must all be empty (and have no dead letters) at the end.
const QUEUES: &[&str] = &["loglines", "pirus2", "articlelog", "otherlog"];

/// Sets `key = value` in `[section]` of an INI text, replacing the key's line. With `add`, a
/// missing key is added after the section header; without, a missing key panics, so the test
/// notices when the example stops having a line it adapts.
fn set(text: &str, section: &str, key: &str, value: &str, add: bool) -> String {
    let mut out = Vec::new();
    let (mut current, mut found_section, mut done) = (String::new(), false, false);
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.to_string();
            out.push(line.to_string());
            if current == section {
                found_section = true;
                if add {
                    out.push(format!("{key} = {value}"));
                    done = true;
                }
            }
            continue;
        }
        let is_key = t
            .split_once(['=', ':'])
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(key));
        if current == section && is_key && !t.starts_with(['#', ';']) {
            if !add {
                out.push(format!("{key} = {value}"));
                done = true;
            }
            // With `add`, the line added after the header replaces this one.
            continue;
        }
        out.push(line.to_string());
    }
    assert!(found_section, "the example has no [{section}]");
    assert!(done, "the example's [{section}] has no `{key}` line");
    out.join("\n") + "\n"
}

/// Everything one run needs; supervisord is stopped (and so every program) on drop, before the
/// Redis server and the tracker go away.
struct Setup {
    sd: Supervisord,
    rpc: SupervisorConfig,
    redis: RedisServer,
    tracker: Tracker,
    managed_redis_port: u16,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn append(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("access.log"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn lines_of(&self, rel: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn processes(&self) -> Vec<ProcessInfo> {
        self.rpc.try_process_info().unwrap_or_default()
    }

    /// What supervisord and every program printed, for failure messages.
    fn outputs(&self) -> String {
        let mut s = format!("--- supervisord\n{}", self.sd.output_text());
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path("workerlogs"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&format!("--- {}\n", f.display()));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// The full names (as supervisorctl and the web UI show them) of every process of the
/// topology: `worker_pirus2:worker_pirus2_00` for a section with several processes.
fn every_process() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, _, n) in TOPOLOGY {
        if *n == 1 {
            out.insert(name.to_string());
        } else {
            out.extend((0..*n).map(|i| format!("{name}:{name}_{i:02}")));
        }
    }
    out
}

/// The example configuration, adapted to a temporary folder.
fn example_config(
    dir: &Path,
    redis_port: u16,
    managed_redis_port: u16,
    tracker_url: &str,
    web_port: u16,
    password: &str,
) -> String {
    let mut t = std::fs::read_to_string(crate_root().join("loglines.cfg")).unwrap();
    let d = dir.display();
    t = set(
        &t,
        "supervisor",
        "port",
        &format!("127.0.0.1:{web_port}"),
        false,
    );
    t = set(&t, "supervisor", "password", password, false);
    // The example's own redis-server command, on a port and in a folder of this test, and
    // started with supervisord, so the `process_*` path (a command run as written) runs for
    // real. The pipeline itself uses the test's Redis below, which the test can inspect.
    let redis_server = support::redis::find_redis_server(std::env::var_os("PATH").as_deref())
        .unwrap_or_else(|m| panic!("{m}"));
    t = set(
        &t,
        "process_redis",
        "command",
        &format!(
            "{} --port {managed_redis_port} --bind 127.0.0.1 --appendonly yes --dir {d}/redis-data",
            redis_server.display()
        ),
        false,
    );
    t = set(&t, "process_redis", "autostart", "true", false);
    t = set(
        &t,
        "logger_logfilewatcher",
        "logfile",
        &format!("{d}/access.log"),
        false,
    );
    // `end` (the example's) would skip lines written before the watcher first opened the
    // file; under load that can be after supervisord calls it RUNNING. `beginning` reads the
    // same lines without depending on that race.
    t = set(&t, "logger_logfilewatcher", "start_at", "beginning", false);
    t = set(&t, "worker_pirus2", "endpoint_url", tracker_url, false);
    let plugin = crate_root().join("lua_plugins/irus.lua");
    t = set(
        &t,
        "worker_pirus2",
        "repository_plugin",
        &plugin.to_string_lossy(),
        false,
    );
    t = set(&t, "redis", "port", &redis_port.to_string(), false);
    // Unused by the example's sections; pointed away from the machine's Redis all the same.
    t = set(&t, "redis_test", "port", &redis_port.to_string(), false);
    for (section, _, _) in TOPOLOGY {
        // 3 s (the default) per start is most of this test's time budget.
        t = set(&t, section, "startsecs", "1", true);
        t = set(&t, section, "stopwaitsecs", "5", true);
    }
    t
}

/// True when a Redis server answers PING on `port`.
fn redis_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Generates the example's files, starts supervisord on them, and waits until every program
/// is RUNNING.
fn start() -> Setup {
    let dir = support::temp_dir();
    let redis = RedisServer::start_with(support::redis::Options {
        appendonly: true,
        password: None,
        ..Default::default()
    });
    let tracker = Tracker::start();
    let web_port = free_port();
    let mut managed_redis_port = free_port();
    while managed_redis_port == web_port {
        managed_redis_port = free_port();
    }
    let password = format!("pw-{}-own", std::process::id());
    let config = dir.path().join("loglines.cfg");
    std::fs::write(
        &config,
        example_config(
            dir.path(),
            redis.port(),
            managed_redis_port,
            &tracker.url(),
            web_port,
            &password,
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("redis-data")).unwrap();
    std::fs::write(dir.path().join("access.log"), "").unwrap();

    let cfg = loglines::config::Config::load(&config).unwrap();
    let topology: Vec<(String, &str, u32)> = cfg
        .sections
        .iter()
        .map(|s| (s.name.clone(), s.role.name(), s.program.numprocs))
        .collect();
    let expected: Vec<(String, &str, u32)> = TOPOLOGY
        .iter()
        .map(|(n, r, p)| (n.to_string(), *r, *p))
        .collect();
    let mut sorted = topology.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "the example's topology changed");

    let bin = env!("CARGO_BIN_EXE_loglines");
    let out = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .args(["supervisor", "generate", "--loglines-bin", bin])
        .env_remove("LOGLINES_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(
        !redis_answers(managed_redis_port),
        "something already answers on the port chosen for process_redis"
    );
    let rpc = SupervisorConfig {
        path: dir.path().join("supervisor/supervisord.conf"),
        port: web_port,
        user: "loglines".into(),
        password,
    };
    let mut sd = Supervisord::start(&rpc.path);
    sd.wait_ready(&rpc, STATE_WAIT);
    let setup = Setup {
        sd,
        rpc,
        redis,
        tracker,
        managed_redis_port,
        config,
        dir,
    };
    let every = every_process();
    let running = || -> BTreeSet<String> {
        setup
            .processes()
            .iter()
            .filter(|p| p.statename == "RUNNING")
            .map(ProcessInfo::full_name)
            .collect()
    };
    assert!(
        wait_until(STATE_WAIT, || running() == every),
        "not every program reached RUNNING: {:?}\n{}",
        setup.processes(),
        setup.outputs()
    );
    setup
}

/// A worker process of the example holding messages in its in-flight list: its process number
/// and how many. The list is `pirus2:inflight:<host>:<section>:<process number>`.
fn busy_worker(redis: &RedisServer) -> Option<(u32, usize)> {
    let keys = redis.redis_cmd(&["KEYS", "pirus2:inflight:*"]);
    keys.lines().find_map(|key| {
        let len: usize = redis.redis_cmd(&["LLEN", key]).trim().parse().ok()?;
        let n = key.rsplit(':').next()?.parse().ok()?;
        (len > 0).then_some((n, len))
    })
}

/// Sorted copy, to compare multisets (three workers deliver in no particular order).
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Waits until `cond` holds, printing nothing; returns how long it took (or None on timeout).
fn timed(timeout: Duration, cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    wait_until(timeout, cond).then(|| t0.elapsed())
}

#[test]
fn example_topology_under_supervisord_delivers_survives_a_worker_kill_and_stops_cleanly() {
    let t0 = Instant::now();
    let mut s = start();
    println!("every program RUNNING after {:?}", t0.elapsed());

    // process_redis ran the example's command as written: a redis-server on its port.
    assert!(
        redis_answers(s.managed_redis_port),
        "process_redis is RUNNING but no Redis answers on port {}",
        s.managed_redis_port
    );

    // 1. The sample log: the tracker receives exactly the requests the plugin computes, and
    //    each line is filed where the plugin sends it.
    let sample = std::fs::read_to_string(data("combined.log")).unwrap();
    let verdicts = plugin_verdicts(&s.config, "worker_pirus2", &sample);
    let urls: Vec<String> = verdicts.iter().filter_map(|(_, t)| t.clone()).collect();
    let sent: Vec<String> = verdicts
        .iter()
        .filter(|(_, t)| t.is_some())
        .map(|(l, _)| l.clone())
        .collect();
    let other: Vec<String> = verdicts
        .iter()
        .filter(|(_, t)| t.is_none())
        .map(|(l, _)| l.clone())
        .collect();
    assert!(!urls.is_empty() && !other.is_empty(), "both kinds of line");
    s.append(&sample);
    let took = timed(FILED_WAIT, || {
        s.lines_of("logs/articles.log").len() + s.lines_of("logs/other.log").len() >= verdicts.len()
            && s.tracker.count() >= urls.len()
    });
    assert!(
        took.is_some(),
        "the sample was not delivered:\n{}",
        s.outputs()
    );
    // Anything extra (a duplicate, a stray request) would come from work still queued or in
    // flight: once there is none, what arrived is all there will be.
    assert!(wait_until(FILED_WAIT, || s.redis.queues_idle(QUEUES)));
    let got: Vec<String> = s
        .tracker
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(sorted(got), sorted(urls.clone()), "tracker requests");
    assert_eq!(
        sorted(s.lines_of("logs/articles.log")),
        sorted(sent.clone())
    );
    assert_eq!(sorted(s.lines_of("logs/other.log")), sorted(other.clone()));
    println!(
        "sample: {} requests, {} + {} lines filed in {:?}",
        urls.len(),
        sent.len(),
        other.len(),
        took.unwrap()
    );

    // 2. Generated numbered lines, with one worker process SIGKILLed while they flow.
    s.tracker.clear();
    let (articles_before, other_before) = (sent.len(), other.len());
    const N: u64 = 4000;
    const EVERY: u64 = 4;
    const CHUNKS: u64 = 10;
    let generated = loggen::lines(0, N, EVERY);
    // Number -> the exact request its line must produce, or None for a line that is no event.
    let expected: HashMap<u64, Option<String>> =
        plugin_verdicts(&s.config, "worker_pirus2", &generated)
            .into_iter()
            .map(|(line, target)| (loggen::number_of(&line).unwrap(), target))
            .collect();
    let events: BTreeSet<u64> = (0..N).filter(|n| expected[n].is_some()).collect();
    assert!(events.len() as u64 >= N / EVERY / 2, "plenty of events");
    let pid_of = |s: &Setup, name: &str| -> u32 {
        s.processes()
            .iter()
            .find(|p| p.name == name && p.statename == "RUNNING")
            .map_or(0, |p| p.pid)
    };
    let (mut victim, mut victim_log, mut killed, mut in_flight) =
        (String::new(), String::new(), 0, 0);
    let mut killed_at = Instant::now();
    let step = N / CHUNKS;
    for c in 0..CHUNKS {
        if c == 3 {
            // While the tracker answers 503, each worker keeps its batch in its in-flight list
            // and retries: killing one then is sure to catch messages in flight, which its
            // restarted self must finish (a kill between batches would prove less).
            s.tracker.fail(503);
        }
        s.append(&loggen::lines(c * step, (c + 1) * step, EVERY));
        if c == 3 {
            let found = wait_until(FILED_WAIT, || match busy_worker(&s.redis) {
                Some((n, len)) => {
                    victim = format!("worker_pirus2_{n:02}");
                    // The example's stdout_logfile, one file per process.
                    victim_log = format!("workerlogs/pirus2_{n:02}.log");
                    in_flight = len;
                    true
                }
                None => false,
            });
            assert!(found, "no worker took a batch:\n{}", s.outputs());
            killed = pid_of(&s, &victim);
            assert_ne!(killed, 0, "{victim} is not RUNNING: {:?}", s.processes());
            send_signal(killed, libc::SIGKILL);
            killed_at = Instant::now();
            s.tracker.ok();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wait_until(STATE_WAIT, || {
            let pid = pid_of(&s, &victim);
            pid != 0 && pid != killed
        }),
        "supervisord did not restart {victim} (pid {killed} killed): {:?}\n{}",
        s.processes(),
        s.outputs()
    );
    let restarted = killed_at.elapsed();
    let fed = Instant::now();
    let new_pid = pid_of(&s, &victim);
    assert!(
        s.sd.output_text()
            .contains(&format!("exited: {victim} (terminated by SIGKILL")),
        "supervisord saw the kill:\n{}",
        s.sd.output_text()
    );
    // Every line at least once: events at the tracker and in articles.log, the rest in
    // other.log. Duplicates are allowed (the batch in flight at the kill) and reported.
    let others: BTreeSet<u64> = (0..N).filter(|n| expected[n].is_none()).collect();
    let missing = |s: &Setup| -> (Vec<u64>, Vec<u64>, Vec<u64>) {
        let tracked: Vec<u64> = s
            .tracker
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| loggen::number_of(&r.target))
            .collect();
        let art = s.lines_of("logs/articles.log");
        let oth = s.lines_of("logs/other.log");
        let art_nums = art[articles_before.min(art.len())..]
            .iter()
            .filter_map(|l| loggen::number_of(l));
        let oth_nums = oth[other_before.min(oth.len())..]
            .iter()
            .filter_map(|l| loggen::number_of(l));
        (
            tally(events.iter().copied(), tracked.into_iter()).0,
            tally(events.iter().copied(), art_nums).0,
            tally(others.iter().copied(), oth_nums).0,
        )
    };
    let all_there = wait_until(FILED_WAIT, || {
        let (a, b, c) = missing(&s);
        a.is_empty() && b.is_empty() && c.is_empty()
    });
    let took = fed.elapsed();
    // Duplicates are counted once nothing is queued or in flight any more.
    let idle = wait_until(FILED_WAIT, || s.redis.queues_idle(QUEUES));
    let (m_tracker, m_articles, m_other) = missing(&s);
    let head = |v: &[u64]| v[..v.len().min(10)].to_vec();
    assert!(
        all_there,
        "lost after the kill: {} events at the tracker (e.g. {:?}), {} in articles.log (e.g. \
         {:?}), {} in other.log (e.g. {:?})\n{}",
        m_tracker.len(),
        head(&m_tracker),
        m_articles.len(),
        head(&m_articles),
        m_other.len(),
        head(&m_other),
        s.outputs()
    );

    assert!(idle, "work still queued or in flight:\n{}", s.outputs());

    // The restarted process took over its predecessor's in-flight list (rather than other
    // workers reclaiming it once the heartbeat expired). It says so once it has connected,
    // which on a loaded machine can be after supervisord calls it RUNNING. Its count can only
    // be higher than the one seen before the kill: the list grows until the new process acks.
    let taken_over = |s: &Setup| -> Option<usize> {
        s.lines_of(&victim_log).iter().find_map(|l| {
            let (before, _) = l.split_once(" messages were in flight when this consumer")?;
            before.rsplit(' ').next()?.parse::<usize>().ok()
        })
    };
    assert!(
        wait_until(STATE_WAIT, || taken_over(&s).is_some()),
        "{victim} did not report taking over its in-flight messages:\n{}",
        s.outputs()
    );
    let taken_over = taken_over(&s).unwrap();
    assert!(taken_over >= in_flight, "{taken_over} < {in_flight}");

    // Each request is exactly the one its line must produce, and only events were sent.
    let mut per_number: BTreeMap<u64, usize> = BTreeMap::new();
    for r in s.tracker.requests() {
        if r.status != 200 {
            // The 503 answers of the outage above, sent again later.
            continue;
        }
        let n = loggen::number_of(&r.target)
            .unwrap_or_else(|| panic!("a request for no generated line: {}", r.target));
        assert_eq!(
            expected.get(&n).and_then(|t| t.as_deref()),
            Some(r.target.as_str()),
            "request for line {n}"
        );
        *per_number.entry(n).or_default() += 1;
    }
    let dup_requests: Vec<u64> = per_number
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let filed = s.lines_of("logs/articles.log").len() + s.lines_of("logs/other.log").len();
    println!(
        "killed {victim} (pid {killed}) holding {in_flight} messages in flight; supervisord \
         restarted it as pid {new_pid} {restarted:?} later, which took over {taken_over}; every line delivered {took:?} after \
         the restart; duplicates: {} tracker requests {:?}, {} extra filed lines",
        dup_requests.len(),
        head(&dup_requests),
        filed - articles_before - other_before - N as usize
    );

    // Nothing is left behind: queues and in-flight lists empty, nothing dead-lettered.
    for q in QUEUES {
        for key in [q.to_string(), format!("{q}:dead")] {
            assert_eq!(s.redis.redis_cmd(&["LLEN", &key]), "0", "{key}");
        }
        assert_eq!(
            s.redis
                .redis_cmd(&["KEYS", &format!("{q}:inflight:*")])
                .trim(),
            "",
            "in-flight lists of {q}"
        );
    }

    // 3. The web UI: the configured credentials see every process running; others get 401.
    let every = every_process();
    let (status, html) = web_ui_get(s.rpc.port, Some(("loglines", &s.rpc.password)));
    assert_eq!(status, 200, "{html}");
    if let Err(e) = web_ui_all_running(&html, &every) {
        panic!("{e}");
    }
    assert_eq!(web_ui_get(s.rpc.port, Some(("loglines", "wrong"))).0, 401);

    // 4. SIGTERM to supervisord: it stops every program, and each exits 0 in time rather than
    //    being killed after stopwaitsecs (a role ignoring SIGTERM would be).
    let stopped = Instant::now();
    let status = s.sd.stop();
    let log = s.sd.output_text();
    assert!(
        status.is_some_and(|st| st.success()),
        "supervisord: {status:?}\n{log}"
    );
    for name in &every {
        let short = name.rsplit(':').next().unwrap();
        assert!(
            log.contains(&format!("stopped: {short} (exit status 0)")),
            "{short} did not exit 0 on SIGTERM:\n{log}"
        );
    }
    assert!(
        !redis_answers(s.managed_redis_port),
        "process_redis still answers after supervisord stopped"
    );
    println!(
        "supervisord and every program stopped in {:?}; whole test {:?}",
        stopped.elapsed(),
        t0.elapsed()
    );
}
