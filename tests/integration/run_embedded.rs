//! `loglines run`: the whole pipeline in one process, no Redis, to a real tracker stand-in.
//! The sample logs arrive exactly as the plugin says; nothing is lost through kill -9 of the
//! whole process, a tracker outage, rotation, or a plugin that fails on some lines.

use crate::support;

use std::process::Stdio;
use std::time::Duration;
use support::bin::assert_exit;
use support::loggen;
use support::pipeline::{
    assert_sample_delivered, check_generated, data, expected, wait_complete, Options, Pipeline,
};
use support::wait_until;

fn run_once(p: &Pipeline, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--once"];
    args.extend_from_slice(extra);
    p.command(&args).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn sample_logs_through_run_once() {
    for (plugin, log_name, section) in [
        ("irus", "combined.log", "repository = repo.example.ac.uk\n"),
        ("ora", "ora-wsgi.log", ""),
    ] {
        let p = Pipeline::embedded(Options {
            plugin: plugin.into(),
            plugin_section: section.into(),
            ..Options::default()
        });
        let log = std::fs::read_to_string(data(log_name)).unwrap();
        let (urls, sent, other) = expected(&p, &log);
        p.append(&log);
        let out = run_once(&p, &[]);
        assert_exit(&out, 0);
        assert_sample_delivered(&p, log_name, &urls, &sent, &other);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let summary = stderr.lines().last().unwrap_or_default();
        assert!(
            summary.contains(&format!(
                "{} sent to the tracker, {} not usage events",
                urls.len(),
                other.len()
            )),
            "{summary}"
        );
        // A second --once resumes from the checkpoint: nothing is sent again.
        let out = run_once(&p, &[]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            p.tracker.count(),
            urls.len(),
            "{log_name}: a rerun must not resend"
        );
    }
}

#[test]
fn run_once_replays_files_given_on_the_command_line() {
    let p = Pipeline::embedded(Options::default());
    let file = data("combined.log");
    let (urls, _, _) = expected(&p, &std::fs::read_to_string(&file).unwrap());
    let out = run_once(&p, &[file.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(p.tracker.count(), urls.len());
}

/// A rotated log that logrotate compressed is read as it is: `run --once FILE.gz` delivers
/// exactly what the plain file would (gzip recognised by content, whatever the name, every
/// member of a file that holds two), and the summary counts its lines.
#[test]
fn run_once_reads_gzip_compressed_files() {
    let p = Pipeline::embedded(Options::default());
    let file = data("combined.log");
    let log = std::fs::read_to_string(&file).unwrap();
    let (urls, sent, other) = expected(&p, &log);
    let gz = p.path("access.log.2.gz");
    support::gzip(&file, &gz, false);
    let out = run_once(&p, &[gz.to_str().unwrap()]);
    assert_exit(&out, 0);
    let err = support::bin::text(&out.stderr);
    assert!(
        err.contains(&format!("summary: {} lines read", log.lines().count())),
        "{err}"
    );
    assert_sample_delivered(&p, "combined.log.gz", &urls, &sent, &other);

    // Two members (two compressed logs concatenated), under a name that does not say gzip.
    let p = Pipeline::embedded(Options::default());
    let both = p.path("access.log.old");
    support::gzip(&file, &both, true);
    assert_exit(&run_once(&p, &[both.to_str().unwrap()]), 0);
    assert_eq!(p.tracker.count(), 2 * urls.len());

    // Cut short: what it holds is delivered, and the run says the rest could not be read.
    let p = Pipeline::embedded(Options::default());
    let whole = std::fs::read(&gz).unwrap();
    let cut = p.path("cut.gz");
    std::fs::write(&cut, &whole[..whole.len() - 20]).unwrap();
    let out = run_once(&p, &[cut.to_str().unwrap()]);
    let err = support::bin::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the gzip data cannot be read after")
            && err.contains("could not be read to its end"),
        "{err}"
    );
}

const N: u64 = 50_000;
const EVERY: u64 = 20;
/// How long a phase of a scenario may take to be met (seconds on a quiet machine).
const OUTAGE_WAIT: Duration = Duration::from_secs(30);

#[test]
fn kill_9_of_the_whole_process_then_restart_loses_nothing() {
    let p = Pipeline::embedded(Options::default());
    let mut child = p.spawn_run();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    let mut kills = 0;
    let chunks = 20;
    for c in 0..chunks {
        p.append(&loggen::lines(c * N / chunks, (c + 1) * N / chunks, EVERY));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 250));
        if c % 3 == 1 {
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            child = p.spawn_run();
        }
    }
    let ok = wait_complete(&p, N, EVERY, Duration::from_secs(120));
    support::sigterm_exits_0_within_5s(&mut child);
    let (dup_requests, dup_other) = check_generated(&p, N, EVERY);
    println!("{kills} kill -9s; duplicates from lines in flight at a kill: {dup_requests} tracker requests, {dup_other} other.log lines");
    assert!(
        ok,
        "timed out: {}",
        std::fs::read_to_string(p.path("run.err")).unwrap_or_default()
    );
}

#[test]
fn tracker_down_then_back_and_rotation_while_running() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        pauseonfail: 1,
        ..Options::default()
    });
    let mut child = p.spawn_run();
    let tracker = p.tracker.handle();
    p.append(&loggen::lines(0, 10_000, EVERY));
    let err = || std::fs::read_to_string(p.path("run.err")).unwrap_or_default();
    tracker.refuse();
    p.append(&loggen::lines(10_000, 20_000, EVERY));
    // Each phase lasts until the worker has met it.
    assert!(
        wait_until(OUTAGE_WAIT, || err().contains("tracker unreachable since")),
        "{}",
        err()
    );
    tracker.fail(500);
    // Rename rotation while the tracker is failing: the old file is finished, the new followed.
    std::fs::rename(p.log_path(), p.path("access.log.1")).unwrap();
    p.append(&loggen::lines(20_000, 30_000, EVERY));
    assert!(wait_until(OUTAGE_WAIT, || p
        .tracker
        .requests()
        .iter()
        .any(|r| r.status == 500)));
    tracker.ok();
    // copytruncate: the file is copied away and truncated to zero.
    assert!(
        p.wait_for_filed(30_000, Duration::from_secs(60)),
        "{}",
        std::fs::read_to_string(p.path("run.err")).unwrap_or_default()
    );
    std::fs::copy(p.log_path(), p.path("access.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p.log_path())
        .unwrap();
    // Appended only once the watcher has seen the file shrink: lines written before that
    // could make it as long again and hide the truncation.
    assert!(
        wait_until(OUTAGE_WAIT, || err().contains("was truncated to")),
        "{}",
        err()
    );
    p.append(&loggen::lines(30_000, N, EVERY));
    assert!(
        wait_complete(&p, N, EVERY, Duration::from_secs(60)),
        "{}",
        std::fs::read_to_string(p.path("run.err")).unwrap_or_default()
    );
    support::sigterm_exits_0_within_5s(&mut child);
    let (dups, dup_other) = check_generated(&p, N, EVERY);
    assert_eq!((dups, dup_other), (0, 0), "no crash, so nothing twice");
    let accepted = p.accepted_numbers();
    assert!(
        accepted.windows(2).all(|w| w[0] < w[1]),
        "one worker: requests in log order"
    );
    assert!(
        p.tracker.requests().iter().any(|r| r.status == 500),
        "the outage was met"
    );
}

#[test]
fn a_plugin_error_on_some_lines_dead_letters_them_and_the_rest_is_delivered() {
    let dir = support::temp_dir();
    let plugin = dir.path().join("flaky.lua");
    std::fs::write(
        &plugin,
        "local irus = nil\n\
         function parseline(jmsg)\n\
           local m = loglines.json.decode(jmsg)\n\
           if m.logline:find('BOOM', 1, true) then error('cannot parse this line') end\n\
           return { line = m.logline }\n\
         end\n\
         function get_openurl_params(c, section, pl)\n\
           if pl.line:find('paper.pdf', 1, true) then return { url_tim = '2026-11-27T00:00:00Z', ['rft.artnum'] = pl.line:match('/id/eprint/(%d+)/') } end\n\
           return nil\n\
         end\n",
    )
    .unwrap();
    let p = Pipeline::embedded(Options {
        plugin: plugin.display().to_string(),
        plugin_section: String::new(),
        ..Options::default()
    });
    p.append(&loggen::lines(0, 1000, 10));
    p.append(
        "192.0.2.1 - - [27/Nov/2026:09:00:00 +0000] \"GET /BOOM HTTP/1.1\" 200 1 \"-\" \"x\"\n",
    );
    p.append(&loggen::lines(1000, 2000, 10));
    p.append("192.0.2.1 - - [27/Nov/2026:09:00:00 +0000] \"GET /BOOM/again HTTP/1.1\" 200 1 \"-\" \"x\"\n");
    let out = run_once(&p, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--once exits 1 when something was dead-lettered"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 dead-lettered"), "{stderr}");
    assert_eq!(
        p.tracker.count(),
        200,
        "every download of the other lines was sent"
    );
    assert_eq!(p.lines_of("logs/other.log").len(), 1800);
    let dead = p.lines_of("state/dead/pirus2.dead.jsonl");
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert!(v["message"].as_str().unwrap().contains("BOOM"));
        let reason = v["reason"].as_str().unwrap();
        assert!(
            reason.contains("flaky.lua:4") && reason.contains("cannot parse this line"),
            "{reason}"
        );
        assert_eq!(v["section"], "worker_pirus2");
    }
    // The dead letters can be listed and put back with the queue commands.
    let out = p
        .command(&["queue", "dead", "pirus2", "--embedded"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot parse this line"));
}

/// The README's main job: a dry run prints every event's OpenURL on stdout, sends nothing, and
/// says so in its summary.
#[test]
fn dry_run_prints_the_events_and_sends_nothing() {
    let p = Pipeline::embedded(Options::default());
    let file = data("combined.log");
    let (urls, _, _) = expected(&p, &std::fs::read_to_string(&file).unwrap());
    let out = run_once(&p, &["--dry-run", file.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(p.tracker.count(), 0, "a dry run sends nothing");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), urls.len());
    assert!(
        printed
            .lines()
            .all(|l| l.starts_with("url_ver=Z39.88-2004&")),
        "{printed}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} printed (dry run, nothing sent)", urls.len())),
        "{stderr}"
    );
}

/// A dry run claims nothing was sent and takes nothing from the real run: no line in the
/// success_queue's log, no checkpoint moved (the real run then sends every event), no dead
/// letter left in the state folder.
#[test]
fn a_dry_run_leaves_the_state_and_the_sent_log_as_they_were() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    p.append(&loggen::lines(0, 40, 20)); // two downloads
                                         // A first real run leaves a checkpoint for the dry run to start from.
    assert_exit(&run_once(&p, &[]), 0);
    assert_eq!(p.tracker.count(), 2);
    let checkpoint = p.path("state/logger_watch.checkpoint");
    let before = std::fs::read(&checkpoint).unwrap();
    p.append(&loggen::lines(40, 80, 20)); // two more
                                          // A line the plugin fails on, so the dry run has a dead letter to keep somewhere.
    let broken = support::temp_dir();
    let plugin = broken.path().join("fails.lua");
    std::fs::write(
        &plugin,
        "function parseline(j) error('no lines today') end\nfunction get_openurl_params() end\n",
    )
    .unwrap();

    let out = run_once(&p, &["--dry-run"]);
    assert_exit(&out, 0);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), 2, "{printed}");
    assert_eq!(p.tracker.count(), 2, "a dry run sends nothing");
    assert_eq!(
        p.lines_of("logs/articles.log").len(),
        2,
        "a dry run wrote unsent events to the sent log"
    );
    assert_eq!(
        std::fs::read(&checkpoint).unwrap(),
        before,
        "a dry run moved the checkpoint"
    );

    // The real run still sends what the dry run printed, from the untouched checkpoint.
    assert_exit(&run_once(&p, &[]), 0);
    assert_eq!(p.tracker.count(), 4);
    assert_eq!(p.lines_of("logs/articles.log").len(), 4);

    // Dead letters of a dry run are reported, not filed where `queue dead` and a later
    // `requeue-dead` would find them.
    let cfg = std::fs::read_to_string(&p.config).unwrap();
    let lua = support::crate_root().join("lua_plugins/irus.lua");
    std::fs::write(
        &p.config,
        cfg.replace(lua.to_str().unwrap(), plugin.to_str().unwrap())
            .replace("[irus]", "[fails]"),
    )
    .unwrap();
    p.append(&loggen::lines(80, 81, 20));
    let out = run_once(&p, &["--dry-run"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no lines today"), "{stderr}");
    assert!(
        !p.path("state/dead/pirus2.dead.jsonl").exists(),
        "a dry run filed a dead letter in the state folder"
    );
}

/// Files holding client addresses are not for every user of the machine: the file loggers'
/// logs, dead letters and checkpoints are created 0640, and `check` names one that others can
/// read.
#[test]
fn files_with_client_addresses_are_created_private_and_check_warns_about_public_ones() {
    use std::os::unix::fs::PermissionsExt;
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    p.tracker.reject(400, "no");
    p.append(&loggen::lines(0, 40, 20));
    // Dead letters make --once exit 1.
    assert_exit(&run_once(&p, &[]), 1);
    p.tracker.ok();
    p.append(&loggen::lines(40, 60, 20));
    assert_exit(&run_once(&p, &[]), 0);
    let mode = |rel: &str| {
        std::fs::metadata(p.path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    for rel in [
        "logs/articles.log",
        "logs/other.log",
        "state/dead/pirus2.dead.jsonl",
        "state/logger_watch.checkpoint",
    ] {
        assert_eq!(mode(rel) & 0o007, 0, "{rel} is {:o}", mode(rel));
    }
    let check = |p: &Pipeline| {
        let out = p.command(&["check"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        !check(&p).contains("every user of this machine"),
        "{}",
        check(&p)
    );
    for rel in ["logs/articles.log", "state/dead/pirus2.dead.jsonl"] {
        std::fs::set_permissions(p.path(rel), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = check(&p);
    for rel in ["logs/articles.log", "state/dead/pirus2.dead.jsonl"] {
        let path = p.path(rel);
        assert!(
            out.contains(&format!(
                "{} can be read by every user of this machine, and it holds client IP addresses (personal data); run `chmod o-r {}`",
                path.display(),
                path.display()
            )),
            "{out}"
        );
    }
}

/// Replaying FILES, the run says what concerns it: nothing about the configured log it does
/// not read, and each section's start once, however many threads it has.
#[test]
fn run_once_files_logs_each_section_once_and_nothing_about_the_configured_log() {
    let p = Pipeline::embedded(Options::default()); // 3 worker threads
    let cfg = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        cfg.replace(
            "logfile = access.log",
            "logfile = /nonexistent-loglines-folder/access.log",
        ),
    )
    .unwrap();
    let file = data("combined.log");
    let out = run_once(&p, &[file.to_str().unwrap()]);
    assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("nonexistent-loglines-folder"), "{stderr}");
    let starts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("[worker_pirus2] worker: pirus2 -> "))
        .collect();
    assert_eq!(starts.len(), 1, "{stderr}");
    assert!(starts[0].ends_with("(3 threads)"), "{stderr}");
    assert_eq!(
        stderr.matches("[worker_pirus2] worker stopped").count(),
        1,
        "{stderr}"
    );
}

/// Two trackers (a broker fanning out to two workers): the summary says what each branch did,
/// not only the sum of both.
#[test]
fn with_two_trackers_the_summary_says_what_each_did() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    let second = support::tracker::Tracker::start();
    second.reject(400, "unknown repository");
    let cfg = std::fs::read_to_string(&p.config).unwrap();
    let plugin = support::crate_root().join("lua_plugins/irus.lua");
    let cfg = cfg.replace("fanout = pirus2\n", "fanout = pirus2, second\n")
        + &format!(
            "\n[worker_second]\ncommand = loglines worker\nlistento = second\nnumprocs = 1\n\
             repository_plugin = {}\nendpoint_url = {}\ntimeout = 5\n",
            plugin.display(),
            second.url()
        );
    std::fs::write(&p.config, cfg).unwrap();
    let file = data("combined.log");
    let (urls, _, other) = expected(&p, &std::fs::read_to_string(&file).unwrap());
    let out = run_once(&p, &[file.to_str().unwrap()]);
    // The second tracker's rejections are dead letters: exit 1.
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "[worker_pirus2] {} sent to {}, {} not usage events, 0 dead-lettered",
            urls.len(),
            p.tracker.url(),
            other.len()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "[worker_second] 0 sent to {}, {} not usage events, {} dead-lettered",
            second.url(),
            other.len(),
            urls.len()
        )),
        "{stderr}"
    );
}

/// A message over `max_message_bytes` is dead-lettered whole by the first role that takes it,
/// never handed to a plugin, and the lines around it are delivered.
#[test]
fn a_message_over_max_message_bytes_is_dead_lettered_unread() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    let cfg = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        cfg.replace(
            "[loglines]\nstate_dir = state\n",
            "[loglines]\nstate_dir = state\nmax_message_bytes = 4096\n",
        ),
    )
    .unwrap();
    let huge = format!("{} {}", loggen::line(20, 20), "x".repeat(5000));
    p.append(&format!(
        "{}{huge}\n{}",
        loggen::lines(0, 20, 20),
        loggen::lines(40, 41, 20)
    ));
    let out = run_once(&p, &[]);
    assert_exit(&out, 1);
    let dead = p.lines_of("state/dead/loglines.dead.jsonl");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let entry: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains("over max_message_bytes = 4096 in [loglines]"),
        "{reason}"
    );
    assert!(
        dead[0].contains(&"x".repeat(5000)),
        "the message was not kept whole"
    );
    // Lines 0 and 40 are downloads and arrive; 20, the huge one, does not.
    let sent: Vec<u64> = p.accepted_numbers();
    assert_eq!(sent, vec![0, 40]);
}

/// A plugin error of megabytes makes a dead-letter reason of a few kilobytes, saying how long
/// it was; the message is kept whole.
#[test]
fn a_huge_plugin_error_is_cut_in_the_dead_letter_reason() {
    let dir = support::temp_dir();
    let plugin = dir.path().join("loud.lua");
    std::fs::write(
        &plugin,
        "function parseline(j) error(string.rep('e', 10000000), 0) end\nfunction get_openurl_params() end\n",
    )
    .unwrap();
    let p = Pipeline::embedded(Options {
        workers: 1,
        plugin: plugin.to_str().unwrap().to_string(),
        plugin_section: String::new(),
        ..Options::default()
    });
    p.append(&loggen::lines(0, 1, 20));
    assert_exit(&run_once(&p, &[]), 1);
    let (reason, dead) = p.only_dead_letter("pirus2");
    assert!(reason.len() < 5_000, "{} bytes", reason.len());
    assert!(
        reason.contains("(10000"),
        "{}",
        &reason[reason.len() - 100..]
    );
    assert!(dead.contains("/id/eprint/0/1/paper.pdf"));
}

/// A line that sends the plugin into a backtracking string pattern (which runs in C, where
/// the count hook does not fire) is dead-lettered at the instruction limit, and the lines
/// after it are delivered: before, the worker spun on it for good and `run --once` never ended.
#[test]
fn a_line_that_makes_a_pattern_backtrack_is_dead_lettered_and_the_rest_delivered() {
    let dir = support::temp_dir();
    // A path made of one letter repeated defeats the pattern.
    let plugin = support::plugin::line_plugin(
        dir.path(),
        "greedy.lua",
        "if m.logline:find('/aaaa', 1, true) then m.logline:find('/(a-)(a-)(a-)(a-)(a-)(a-)b') end",
    );
    let p = Pipeline::embedded(Options {
        workers: 1,
        plugin: plugin.display().to_string(),
        plugin_section: String::new(),
        ..Options::default()
    });
    p.append(&loggen::lines(0, 100, 10));
    p.append(&format!(
        "192.0.2.1 - - [27/Nov/2026:09:00:00 +0000] \"GET /{} HTTP/1.1\" 200 1 \"-\" \"x\"\n",
        "a".repeat(3000)
    ));
    p.append(&loggen::lines(100, 200, 10));
    let out = support::bin::output_within(&p.config, &["run", "--once"], Duration::from_secs(120));
    let stderr = support::bin::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 dead-lettered"), "{stderr}");
    assert_eq!(
        p.tracker.count(),
        20,
        "every download of the other lines was sent"
    );
    let (reason, dead) = p.only_dead_letter("pirus2");
    assert!(
        reason.contains("greedy.lua: parseline ran more than 10000000 Lua instructions")
            && reason.contains("string pattern that backtracks"),
        "{reason}"
    );
    assert!(dead.contains("/aaaa"));
}

/// A FIFO where the log should be: never a hang. At start it is an error saying what to use
/// instead; one that appears later is said once, and SIGTERM still stops the run.
#[test]
fn a_fifo_as_the_log_is_refused_without_blocking() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    let mkfifo = |path: &std::path::Path| {
        let ok = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo failed");
    };
    mkfifo(&p.log_path());
    let out = support::bin::output_within(&p.config, &["run", "--once"], Duration::from_secs(20));
    let err = support::bin::text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("is a FIFO (named pipe); the watcher follows a regular log file")
            && err.contains("loglines push"),
        "{err}"
    );

    // Appearing while the run waits for the log.
    std::fs::remove_file(p.log_path()).unwrap();
    let mut child = p.spawn_run();
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(p.path("run.err")).is_ok_and(|e| e.contains("reading"))
            || std::fs::read_to_string(p.path("run.err")).is_ok_and(|e| e.contains("waiting"))
    }));
    mkfifo(&p.log_path());
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            p.path("run.err")
        )
        .is_ok_and(|e| e.contains("is a FIFO"))),
        "{}",
        std::fs::read_to_string(p.path("run.err")).unwrap_or_default()
    );
    support::sigterm_exits_0_within_5s(&mut child);
}

/// `run --once` after a copytruncate while it was stopped: the copy's unread lines, then the
/// truncated log's, and the run ends (a copy has no writers to wait five minutes for).
#[test]
fn run_once_after_copytruncate_while_stopped_reads_the_copy_then_the_log_and_ends() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    p.append(&loggen::lines(0, 40, 20));
    assert_exit(&run_once(&p, &[]), 0);
    p.append(&loggen::lines(40, 80, 20));
    std::fs::copy(p.log_path(), p.path("access.log.1")).unwrap();
    std::fs::write(p.log_path(), loggen::lines(80, 100, 20)).unwrap();
    let out = support::bin::output_within(&p.config, &["run", "--once"], Duration::from_secs(30));
    assert_exit(&out, 0);
    assert_eq!(p.accepted_numbers(), vec![0, 20, 40, 60, 80]);
}

/// `run --once` after a rename rotation while it was stopped reads the old file's rest and the
/// new file, and ends: it reads to the end of what is there, it does not wait for late writers.
#[test]
fn run_once_after_a_rotation_while_stopped_ends_without_waiting_for_late_lines() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    p.append(&loggen::lines(0, 40, 20));
    assert_exit(&run_once(&p, &[]), 0);
    p.append(&loggen::lines(40, 80, 20));
    std::fs::rename(p.log_path(), p.path("access.log.1")).unwrap();
    p.append(&loggen::lines(80, 100, 20));
    let out = support::bin::output_within(&p.config, &["run", "--once"], Duration::from_secs(30));
    assert_exit(&out, 0);
    assert_eq!(p.accepted_numbers(), vec![0, 20, 40, 60, 80]);
}

/// Two rotations while stopped: the checkpointed file (now `access.log.2`) is finished and the
/// new log read, but the file between them (`access.log.1`) is not; that is said, naming it and
/// how to send it, rather than passed over in silence. Once sent as the warning says, every
/// event has arrived.
#[test]
fn two_rotations_while_stopped_name_the_file_in_between() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    p.append(&loggen::lines(0, 40, 20));
    assert_exit(&run_once(&p, &[]), 0);
    p.append(&loggen::lines(40, 60, 20));
    std::fs::rename(p.log_path(), p.path("access.log.1")).unwrap();
    p.append(&loggen::lines(60, 80, 20));
    std::fs::rename(p.path("access.log.1"), p.path("access.log.2")).unwrap();
    std::fs::rename(p.log_path(), p.path("access.log.1")).unwrap();
    p.append(&loggen::lines(80, 100, 20));
    // The older rotation is older on disk too.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(p.path("access.log.2"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = support::bin::output_within(&p.config, &["run", "--once"], Duration::from_secs(30));
    assert_exit(&out, 0);
    let err = support::bin::text(&out.stderr);
    assert!(
        err.contains("was rotated more than once while the watcher was stopped")
            && err.contains("which the watcher does not read: ")
            && err.contains("access.log.1; send its lines")
            && err.contains("loglines run --once FILE"),
        "{err}"
    );
    assert_eq!(p.accepted_numbers(), vec![0, 20, 40, 80]);
    let path = p.path("access.log.1");
    let out = support::bin::output_within(
        &p.config,
        &["run", "--once", path.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_exit(&out, 0);
    assert_eq!(p.accepted_numbers(), vec![0, 20, 40, 80, 60]);
}
