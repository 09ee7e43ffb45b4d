//! A watcher section with several logs: `logfile` as a list of paths and globs. Every file is
//! followed with its own checkpoint, a file that comes to match is picked up while running, a
//! rotated name that no longer matches is finished and never read again, and `loglines check`
//! says what the globs match. Real files, the real binary, a real tracker stand-in; the
//! distributed case over a real redis-server.

use crate::support;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use support::bin::assert_exit;
use support::loggen;
use support::pipeline::{check_generated, wait_complete, Options, Pipeline};

const EVERY: u64 = 20;
const WAIT: Duration = Duration::from_secs(90);

/// Points the pipeline's watcher at `logfile` (the value as written, continuation lines
/// included).
fn set_logfile(p: &Pipeline, logfile: &str) {
    let text = std::fs::read_to_string(&p.config).unwrap();
    let text = text.replace("logfile = access.log\n", &format!("logfile = {logfile}\n"));
    assert!(text.contains(logfile));
    std::fs::write(&p.config, text).unwrap();
}

fn append(p: &Pipeline, rel: &str, text: &str) {
    let path = p.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn err(p: &Pipeline) -> String {
    std::fs::read_to_string(p.path("run.err")).unwrap_or_default()
}

fn checkpoints(p: &Pipeline) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path("state/logger_watch.checkpoint.d"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".checkpoint"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_glob_follows_every_matching_log_new_ones_too_and_a_rotated_name_is_not_read_again() {
    let p = Pipeline::embedded(Options {
        workers: 2,
        ..Options::default()
    });
    set_logfile(&p, "\n    sites/*access.log*\n    main.log");
    // Two sites' logs exist before the start, and one log named like a rotation of one of
    // them, whose lines the watcher must never read (they would be numbers 90,000 and up).
    append(&p, "sites/a_access.log", &loggen::lines(0, 4_000, EVERY));
    append(
        &p,
        "sites/b_access.log",
        &loggen::lines(4_000, 8_000, EVERY),
    );
    append(
        &p,
        "sites/b_access.log.1",
        &loggen::lines(90_000, 90_100, EVERY),
    );
    append(
        &p,
        "sites/b_error.log",
        &loggen::lines(91_000, 91_100, EVERY),
    );
    let mut child = p.spawn_run();
    assert!(wait_complete(&p, 8_000, EVERY, WAIT), "{}", err(&p));

    // A third site appears while running: read from its beginning. The plain path named in
    // the list appears too.
    append(
        &p,
        "sites/c_access.log",
        &loggen::lines(8_000, 10_000, EVERY),
    );
    append(&p, "main.log", &loggen::lines(10_000, 11_000, EVERY));
    // Site a is rotated: renamed out of the glob, its writer adds late lines to the old file,
    // and a new a_access.log is started.
    let mut old_writer = std::fs::OpenOptions::new()
        .append(true)
        .open(p.path("sites/a_access.log"))
        .unwrap();
    std::fs::rename(p.path("sites/a_access.log"), p.path("sites/a_access.log.1")).unwrap();
    append(
        &p,
        "sites/a_access.log",
        &loggen::lines(11_000, 12_000, EVERY),
    );
    old_writer
        .write_all(loggen::lines(12_000, 12_500, EVERY).as_bytes())
        .unwrap();
    assert!(wait_complete(&p, 12_500, EVERY, WAIT), "{}", err(&p));
    assert!(
        err(&p).contains("c_access.log matches now: following it from its beginning"),
        "{}",
        err(&p)
    );

    // kill -9 in the middle of more lines to three files; the restart resumes each from its
    // own checkpoint.
    append(
        &p,
        "sites/b_access.log",
        &loggen::lines(12_500, 20_000, EVERY),
    );
    append(
        &p,
        "sites/c_access.log",
        &loggen::lines(20_000, 27_000, EVERY),
    );
    append(&p, "main.log", &loggen::lines(27_000, 34_000, EVERY));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = p.spawn_run();
    append(
        &p,
        "sites/a_access.log",
        &loggen::lines(34_000, 36_000, EVERY),
    );
    assert!(wait_complete(&p, 36_000, EVERY, WAIT), "{}", err(&p));
    support::sigterm_exits_0_within_5s(&mut child);

    let (dup_requests, dup_other) = check_generated(&p, 36_000, EVERY);
    println!(
        "duplicates after one kill -9: {dup_requests} tracker requests, {dup_other} other lines"
    );
    // Nothing from the rotation-named files, ever.
    let from_rotations = p
        .lines_of("logs/other.log")
        .iter()
        .chain(p.lines_of("logs/articles.log").iter())
        .filter(|l| loggen::number_of(l).is_some_and(|n| n >= 90_000))
        .count();
    assert_eq!(from_rotations, 0, "a rotation-named file was read");
    let names = checkpoints(&p);
    assert_eq!(names.len(), 4, "{names:?}");
    for stem in [
        "a_access.log-",
        "b_access.log-",
        "c_access.log-",
        "main.log-",
    ] {
        assert!(names.iter().any(|n| n.starts_with(stem)), "{names:?}");
    }
    assert!(
        err(&p).contains("not following") && err(&p).contains("b_access.log.1"),
        "{}",
        err(&p)
    );
}

#[test]
fn a_single_log_turned_into_a_list_goes_on_from_its_checkpoint() {
    let p = Pipeline::embedded(Options::default());
    p.append(&loggen::lines(0, 1_000, EVERY));
    let out = p.command(&["run", "--once"]).output().unwrap();
    assert_exit(&out, 0);
    assert!(p.path("state/logger_watch.checkpoint").exists());

    set_logfile(&p, "\n    access.log\n    vhosts/*.log");
    p.append(&loggen::lines(1_000, 2_000, EVERY));
    append(&p, "vhosts/site.log", &loggen::lines(2_000, 3_000, EVERY));
    let out = p.command(&["run", "--once"]).output().unwrap();
    assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the checkpoint of") && stderr.contains("moved to"),
        "{stderr}"
    );
    assert!(wait_complete(&p, 3_000, EVERY, Duration::from_secs(5)));
    assert_eq!(check_generated(&p, 3_000, EVERY), (0, 0), "nothing twice");
    assert!(!p.path("state/logger_watch.checkpoint").exists());
    assert_eq!(checkpoints(&p).len(), 2, "{:?}", checkpoints(&p));

    // And a dry run of the list leaves those checkpoints as they were.
    let before: Vec<Vec<u8>> = checkpoints(&p)
        .iter()
        .map(|n| std::fs::read(p.path("state/logger_watch.checkpoint.d").join(n)).unwrap())
        .collect();
    p.append(&loggen::lines(3_000, 3_100, EVERY));
    let out = p.command(&["run", "--once", "--dry-run"]).output().unwrap();
    assert_exit(&out, 0);
    let printed = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(printed, 5, "the 5 downloads of the 100 new lines");
    let after: Vec<Vec<u8>> = checkpoints(&p)
        .iter()
        .map(|n| std::fs::read(p.path("state/logger_watch.checkpoint.d").join(n)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn check_lists_what_a_glob_matches_and_names_a_bad_one() {
    let p = Pipeline::embedded(Options::default());
    append(&p, "sites/one_access.log", "");
    append(&p, "sites/two_access.log", "");
    append(&p, "sites/two_access.log.2.gz", "");
    set_logfile(&p, "\n    sites/*access.log*\n    empty/*.log");
    std::fs::create_dir(p.path("empty")).unwrap();
    let out = p.command(&["check"]).output().unwrap();
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = p.dir.path().display();
    for want in [
        format!("{dir}/sites/*access.log* matches 2 files now: {dir}/sites/one_access.log, {dir}/sites/two_access.log"),
        format!("not followed: {dir}/sites/two_access.log.2.gz: compressed (.gz)"),
        format!("[logger_watch] logfile: warning: `{dir}/empty/*.log` matches no file now"),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in\n{stdout}");
    }

    let text = std::fs::read_to_string(&p.config).unwrap();
    let text = text.replace("sites/*access.log*\n    empty/*.log", "sites/[access.log");
    std::fs::write(&p.config, text).unwrap();
    let out = p.command(&["check"]).output().unwrap();
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = std::fs::read_to_string(&p.config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("logfile ="))
        .unwrap()
        + 1;
    let want = format!(
        "loglines.cfg:{line} [logger_watch] logfile: `sites/[access.log` is not a valid glob"
    );
    assert!(stderr.contains(&want), "missing {want:?} in\n{stderr}");
}

#[test]
fn distributed_watcher_with_a_glob_over_redis_survives_kill_9() {
    let mut p = Pipeline::redis(Options {
        workers: 1,
        ..Options::default()
    });
    set_logfile(&p, "\n    sites/*.log");
    append(&p, "sites/one.log", &loggen::lines(0, 3_000, EVERY));
    p.start_all();
    append(&p, "sites/two.log", &loggen::lines(3_000, 6_000, EVERY));
    append(&p, "sites/one.log", &loggen::lines(6_000, 12_000, EVERY));
    std::thread::sleep(Duration::from_millis(200));
    p.kill_and_restart("logger_watch", 0);
    append(&p, "sites/two.log", &loggen::lines(12_000, 14_000, EVERY));
    let ok = wait_complete(&p, 14_000, EVERY, WAIT);
    let outputs = p.outputs();
    p.stop_all();
    assert!(ok, "{outputs}");
    let (dups, _) = check_generated(&p, 14_000, EVERY);
    println!("duplicates after kill -9 of the watcher: {dups}");
    let folder: PathBuf = p.path("state/logger_watch.checkpoint.d");
    let kept = std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".checkpoint"))
        .count();
    assert_eq!(kept, 2, "one checkpoint per file");
}
