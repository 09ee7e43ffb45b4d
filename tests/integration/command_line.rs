//! The command line: help, version, exit codes and one-line errors, run as the real binary.

use crate::support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;
use support::bin::{assert_exit, text};

fn loglines(args: &[&str], dir: &Path) -> Output {
    support::bin::loglines()
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_subcommands_and_version_prints() {
    let dir = tempfile::tempdir().unwrap();
    let out = loglines(&["--help"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("check"), "{help}");
    assert!(help.contains("--config"), "{help}");
    let out = loglines(&["--version"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("loglines {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = loglines(&["no-such-command"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unrecognized subcommand"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_on_a_missing_file_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = loglines(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "loglines: loglines.cfg: the file does not exist; expected a readable loglines.cfg (pass --config FILE, or write a starting one with `loglines init`)\n"
    );
}

#[test]
fn check_prints_every_problem_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.cfg"),
        "[worker_w]\ncommand = loglines worker\ntimeout = -1\n[oops]\n",
    )
    .unwrap();
    let out = loglines(&["check", "--config", "bad.cfg"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("loglines: bad.cfg:")),
        "{err}"
    );
    for expected in [
        "bad.cfg:3 [worker_w] timeout: `-1` is negative",
        "bad.cfg:1 [worker_w] listento: is missing",
        "bad.cfg:1 [worker_w] repository_plugin: is missing",
        "bad.cfg:1 [worker_w] endpoint_url: is missing",
        "bad.cfg:4 [oops]: unknown section",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn check_describes_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("loglines.cfg"),
        "[logger_w]\ncommand = loglines watch\nlogfile = logs/access.log\npushto = lines\nservicename = s\n\
         [worker_b]\ncommand = loglines broker\nlistento = lines\nfanout = a, b\n\
         [logger_f]\ncommand = loglines filelog\nlistento = a\nlogfile = logs/a.log\n",
    )
    .unwrap();
    let out = loglines(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("watch    [logger_w]"), "{s}");
    assert!(s.contains("broker   [worker_b] (x3)"), "{s}");
    assert!(
        s.contains("lines            written by logger_w; read by worker_b"),
        "{s}"
    );
    assert!(
        s.contains("queue `b` is written by worker_b but read by no section"),
        "{s}"
    );
    assert!(s.trim_end().ends_with("configuration is valid"), "{s}");
}

/// `loglines ... | head`: once the reader has what it wanted and closes the pipe, the command
/// ends quietly with exit 0, rather than panicking (`check`), failing (`test-plugin`) or, a dry
/// run, retrying to print for ever.
/// Runs `loglines ARGS` in `dir` with its standard output closed before it writes anything;
/// asserts that it ends, with exit 0 and no panic or broken-pipe error.
fn ends_quietly_with_stdout_closed(dir: &std::path::Path, args: &[&str]) {
    let mut child = support::bin::loglines()
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command has written anything (it is still reading
    // its configuration), as `head` does once it has its lines: every write fails.
    drop(child.stdout.take());
    let ended = support::wait_until(std::time::Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(ended, "{args:?} did not end after its output was closed");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{args:?}: {err}"
    );
}

/// Every command that prints, over a real Redis with messages, dead letters and consumers to
/// show, and over the embedded transport's files.
#[test]
fn every_printing_command_ends_quietly_when_its_output_is_closed() {
    let redis = support::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("loglines.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nurl = {}\n\n[supervisor]\nport = 127.0.0.1:{}\n\n[logger_files]\ncommand = loglines filelog\nlistento = q\nlogfile = f.log\n",
            redis.url(),
            support::free_port()
        ),
    )
    .unwrap();
    let mut c = redis.conn();
    for i in 0..2000 {
        let msg = format!("{{\"service\":\"s\",\"logline\":\"line {i}\"}}");
        let _: () = ::redis::cmd("LPUSH")
            .arg("q")
            .arg(&msg)
            .query(&mut c)
            .unwrap();
        let dead =
            format!("{{\"message\":{msg:?},\"reason\":\"test\",\"at\":\"2026-12-05T00:00:00Z\"}}");
        let _: () = ::redis::cmd("LPUSH")
            .arg("q:dead")
            .arg(&dead)
            .query(&mut c)
            .unwrap();
    }
    // Embedded dead letters, for the --embedded views.
    let dead_dir = dir.path().join("state/dead");
    std::fs::create_dir_all(&dead_dir).unwrap();
    let mut lines = String::new();
    for i in 0..2000 {
        lines.push_str(&format!("{{\"queue\":\"q\",\"message\":\"{{\\\"logline\\\":\\\"l{i}\\\"}}\",\"reason\":\"r\",\"at\":\"2026-12-05T00:00:00Z\"}}\n"));
    }
    std::fs::write(dead_dir.join("q.dead.jsonl"), lines).unwrap();
    let cfg = cfg.to_str().unwrap();
    support::bin::loglines()
        .args(["--config", cfg, "supervisor", "generate"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["queue", "--help"],
        vec!["--config", cfg, "check"],
        vec!["--config", cfg, "status"],
        vec!["--config", cfg, "status", "--json"],
        vec!["--config", cfg, "status", "--embedded"],
        vec!["--config", cfg, "queue", "peek", "-n", "2000", "q"],
        vec!["--config", cfg, "queue", "dead", "q"],
        vec!["--config", cfg, "queue", "dead", "--embedded", "q"],
        vec!["--config", cfg, "supervisor", "list"],
        vec!["--config", cfg, "supervisor", "generate"],
    ] {
        ends_quietly_with_stdout_closed(dir.path(), &args);
    }
}

#[test]
fn a_closed_standard_output_ends_a_command_quietly() {
    let root = support::crate_root();
    let cfg = root.join("loglines.cfg");
    let cfg = cfg.to_str().unwrap();
    let sample = root.join("tests/data/combined.log");
    let sample = sample.to_str().unwrap();
    let plugin = root.join("lua_plugins/irus.lua");
    let plugin = plugin.to_str().unwrap();
    for args in [
        vec!["--config", cfg, "check"],
        vec!["test-plugin", plugin, sample],
        vec!["test-plugin", "--json", plugin, sample],
        vec!["--config", cfg, "run", "--once", "--dry-run", sample],
    ] {
        let dir = tempfile::tempdir().unwrap();
        ends_quietly_with_stdout_closed(dir.path(), &args);
    }
}

/// `loglines migrate` on the 2010 file: a file `check` accepts, every comment of the old one
/// kept, each change said, the dead PIRUS2 tracker named with IRUS's; and a modern file (the
/// result itself) comes out unchanged.
#[test]
fn migrate_turns_the_2010_file_into_one_check_accepts() {
    let root = support::crate_root();
    let old = root.join("tests/data/loglines-original.cfg");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lua_plugins")).unwrap();
    std::fs::copy(
        root.join("lua_plugins/ora.lua"),
        dir.path().join("lua_plugins/ora.lua"),
    )
    .unwrap();
    let out = support::bin::loglines()
        .args(["migrate", old.to_str().unwrap()])
        .output()
        .unwrap();
    support::bin::assert_exit(&out, 0);
    let new = text(&out.stdout);
    let err = text(&out.stderr);
    let old_text = std::fs::read_to_string(&old).unwrap();
    for comment in old_text.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(new.contains(comment), "lost the comment {comment:?}");
    }
    for role in ["watch", "broker", "worker", "filelog"] {
        assert!(
            new.contains(&format!("\ncommand = loglines {role}\n")),
            "{new}"
        );
    }
    assert!(
        new.contains("\nrepository_plugin = lua_plugins/ora.lua\n"),
        "{new}"
    );
    assert!(
        new.contains("\nendpoint_url = https://irus.jisc.ac.uk/counter/test/\n"),
        "{new}"
    );
    assert!(
        err.contains("is the 2010 PIRUS2 tracker, which no longer exists; send to IRUS: https://irus.jisc.ac.uk/counter/"),
        "{err}"
    );
    assert!(err.contains("9 line(s) changed"), "{err}");

    let new_cfg = dir.path().join("loglines.cfg");
    std::fs::write(&new_cfg, &new).unwrap();
    let check = support::bin::output_within(&new_cfg, &["check"], Duration::from_secs(30));
    support::bin::assert_exit(&check, 0);
    assert!(text(&check.stdout).contains("configuration is valid"));

    let again = support::bin::loglines()
        .args(["migrate", new_cfg.to_str().unwrap()])
        .output()
        .unwrap();
    support::bin::assert_exit(&again, 0);
    assert_eq!(
        text(&again.stdout),
        new,
        "a modern file must come out unchanged"
    );
    assert!(text(&again.stderr).contains("0 line(s) changed"));
}

/// `loglines init` gives a binary without its source tree (copied elsewhere, as `cargo install`
/// leaves it) a configuration and plugins to run on: the dry run of a sample log works from a
/// folder that knows nothing of the checkout. A second init keeps what is there.
#[test]
fn init_writes_a_config_and_plugins_that_run_without_the_checkout() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin/loglines");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_loglines"), &bin).unwrap();
    let site = d.path().join("site");
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .current_dir(d.path())
            .env_remove("LOGLINES_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(&["init", site.to_str().unwrap()]);
    assert_exit(&out, 0);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("loglines.cfg: created") && said.contains("irus.lua: created"),
        "{said}"
    );
    let sample = d.path().join("access.log");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/combined.log"),
        &sample,
    )
    .unwrap();
    let cfg = site.join("loglines.cfg");
    let out = run(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--once",
        "--dry-run",
        sample.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 14);
    // Edited files are never replaced without --force.
    std::fs::write(&cfg, "# edited\n").unwrap();
    let out = run(&["init", site.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("exists, left as it is"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "# edited\n");
}
