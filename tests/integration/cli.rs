//! The command line: help, version, exit codes and one-line errors, run as the real binary.

use crate::support;

use std::path::Path;
use std::process::Output;
use support::bin::text;

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
        "loglines: loglines.cfg: the file does not exist; expected a readable loglines.cfg (pass --config FILE)\n"
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
