//! The generated supervisord files under a real supervisord: every program reaches RUNNING,
//! `disable`/`enable --apply` stop and start programs, `generate --apply` restarts changed ones,
//! `list` shows live states over the unix socket or the web UI port, and the web UI answers the
//! configured credentials (plain or `{SHA}`) and refuses others.
//!
//! The programs are `process_*` sections running `sleep`, so these tests need nothing but
//! supervisord; each test has its own folder, socket and port, never the machine's supervisord.

use crate::support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use support::project::Project;
use support::supervisord::{
    supervisorctl, web_ui_all_running, web_ui_get as http_get, SupervisorConfig, Supervisord,
};
use support::{free_port, process_alive, send_signal, wait_until};

/// Long enough for supervisord on a loaded 2-core machine; the states come much sooner.
const STATE_WAIT: Duration = Duration::from_secs(20);

// The folder, `run`, `ok` and `conf` are the shared support::project::Project.

/// The XML-RPC view of the generated configuration's web UI.
fn rpc(p: &Project, port: u16, user: &str, password: &str) -> SupervisorConfig {
    SupervisorConfig {
        path: p.conf(),
        port,
        user: user.into(),
        password: password.into(),
    }
}

/// Full names of the processes supervisord has loaded, and of those RUNNING.
fn loaded(c: &SupervisorConfig) -> (BTreeSet<String>, BTreeSet<String>) {
    let ps = c.try_process_info().unwrap_or_default();
    let all = ps.iter().map(|p| p.full_name()).collect();
    let running = ps
        .iter()
        .filter(|p| p.statename == "RUNNING")
        .map(|p| p.full_name())
        .collect();
    (all, running)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn pids(c: &SupervisorConfig, group: &str) -> Vec<u32> {
    c.try_process_info()
        .unwrap()
        .into_iter()
        .filter(|p| p.group == group)
        .map(|p| p.pid)
        .collect()
}

#[test]
fn programs_run_and_follow_disable_and_enable_with_apply() {
    let port = free_port();
    let password = format!("pw-{}-own", std::process::id());
    let p = Project::new(&format!(
        "[supervisor]\nport = 127.0.0.1:{port}\nusername = tester\npassword = {password}\n\n\
         [process_a]\ncommand = sleep 1000\nstartsecs = 1\nstopwaitsecs = 2\n\n\
         [process_b]\ncommand = sleep 1001\nnumprocs = 2\nstartsecs = 1\nstopwaitsecs = 2\nstdout_logfile = out/b.log\n\n\
         [logger_files]\ncommand = loglines filelog\nlistento = q\nlogfile = logs/f.log\nstartsecs = 1\n"
    ));
    p.ok(&["generate"]);
    // A disabled program is not even loaded.
    p.ok(&["disable", "logger_files"]);
    let c = rpc(&p, port, "tester", &password);
    let mut sd = Supervisord::start(&p.conf());
    sd.wait_ready(&c, STATE_WAIT);
    let every = set(&[
        "process_a",
        "process_b:process_b_00",
        "process_b:process_b_01",
    ]);
    assert!(
        wait_until(STATE_WAIT, || loaded(&c).1 == every),
        "not every program reached RUNNING: {:?}\n{}",
        c.try_process_info(),
        sd.output_text()
    );
    assert_eq!(loaded(&c).0, every, "logger_files was disabled");
    assert!(p.path().join("out/b_00.log").exists() && p.path().join("out/b_01.log").exists());

    // list, over the unix socket.
    let list = p.ok(&["list"]);
    let row = |name: &str| -> Vec<String> {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("process_a"), ["process_a", "yes", "yes", "RUNNING"]);
    assert_eq!(
        row("process_b"),
        ["process_b", "yes", "yes", "process_b_00", "RUNNING"]
    );
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["process_b_01", "RUNNING"]),
        "{list}"
    );
    assert_eq!(row("logger_files"), ["logger_files", "yes", "no", "-"]);
    assert!(list.contains("supervisord: answering on unix://"), "{list}");
    // supervisorctl -c the generated file reaches the same supervisord (in 2010 it pointed at
    // another socket); status exits 0 only when every process runs.
    let (code, status) = supervisorctl(&p.conf(), &["status"]);
    assert_eq!(code, 0, "{status}");
    assert_eq!(status.matches(" RUNNING ").count(), 3, "{status}");

    // The web UI: the configured credentials see every program running; others get 401.
    let (status, html) = http_get(port, Some(("tester", &password)));
    assert_eq!(status, 200, "{html}");
    if let Err(e) = web_ui_all_running(&html, &every) {
        panic!("{e}");
    }
    assert_eq!(http_get(port, Some(("tester", "wrong"))).0, 401);
    assert_eq!(http_get(port, Some(("guest", "guest"))).0, 401);
    assert_eq!(http_get(port, None).0, 401);

    // list falls back to the web UI port when the socket cannot be reached.
    let sock = p.path().join("supervisor/supervisor.sock");
    let moved = p.path().join("moved.sock");
    std::fs::rename(&sock, &moved).unwrap();
    let list2 = p.ok(&["list"]);
    std::fs::rename(&moved, &sock).unwrap();
    assert!(
        list2.contains(&format!(
            "supervisord: answering on http://127.0.0.1:{port}"
        )),
        "{list2}"
    );
    assert!(
        list2
            .lines()
            .any(|l| l.starts_with("process_a") && l.ends_with("RUNNING")),
        "{list2}"
    );

    // A program killed with SIGKILL is restarted by supervisord.
    let old = pids(&c, "process_a")[0];
    send_signal(old, libc::SIGKILL);
    assert!(
        wait_until(STATE_WAIT, || {
            c.try_process_info().is_ok_and(|ps| {
                ps.iter().any(|x| {
                    x.name == "process_a" && x.statename == "RUNNING" && x.pid != old && x.pid != 0
                })
            })
        }),
        "process_a was not restarted: {:?}",
        c.try_process_info()
    );

    // disable + --apply: stopped and gone.
    let b_pids = pids(&c, "process_b");
    assert_eq!(b_pids.len(), 2);
    let out = p.ok(&["disable", "process_b", "--apply"]);
    assert!(out.contains("process_b: disabled\n"), "{out}");
    assert!(
        out.contains("applied: stopped and removed: process_b"),
        "{out}"
    );
    assert_eq!(loaded(&c).0, set(&["process_a"]));
    assert!(
        wait_until(STATE_WAIT, || b_pids.iter().all(|&pid| !process_alive(pid))),
        "process_b's processes still run"
    );

    // enable + --apply: running again.
    let out = p.ok(&["enable", "process_b", "--apply"]);
    assert!(out.contains("applied: started: process_b"), "{out}");
    assert!(
        wait_until(STATE_WAIT, || loaded(&c).1 == every),
        "process_b did not come back: {:?}",
        c.try_process_info()
    );
    // Without --apply, the printed supervisorctl commands apply the change.
    let out = p.ok(&["disable", "process_a"]);
    let cmd = out
        .split_once("to apply: ")
        .and_then(|(_, rest)| rest.split_once(" (or add --apply)"))
        .map(|(cmd, _)| cmd.to_string())
        .unwrap_or_else(|| panic!("no apply command in\n{out}"));
    let sh = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert!(sh.status.success(), "{cmd}: {sh:?}");
    assert_eq!(
        loaded(&c).0,
        set(&["process_b:process_b_00", "process_b:process_b_01"])
    );
    p.ok(&["enable", "process_a", "--apply"]);
    assert!(wait_until(STATE_WAIT, || loaded(&c).1 == every));

    // Nothing left to apply.
    let out = p.ok(&["generate", "--apply"]);
    assert!(
        out.contains("supervisord already runs this configuration"),
        "{out}"
    );
    assert!(
        out.contains("logger_files: unchanged, disabled (kept disabled)"),
        "{out}"
    );
    sd.stop();
}

/// sha1("thepassword"): supervisord compares the SHA-1 of what the browser sends.
const SHA_OF_THEPASSWORD: &str = "{SHA}82ab876d1387bfafe46cc1c8a2ef074eae50cb1d";

#[test]
fn generate_apply_restarts_changed_programs_and_list_shows_fatal_ones() {
    let port = free_port();
    let cfg = |sleep: u32, with_bad: bool| {
        let mut s = format!(
            "[supervisor]\nport = 127.0.0.1:{port}\nusername = admin\npassword = {SHA_OF_THEPASSWORD}\n\n\
             [process_a]\ncommand = sleep {sleep}\nstartsecs = 1\nstopwaitsecs = 2\n"
        );
        if with_bad {
            s.push_str("\n[process_bad]\ncommand = /nonexistent/loglines-test-program\nstartsecs = 1\nstartretries = 0\n");
        }
        s
    };
    let p = Project::new(&cfg(1000, true));
    p.ok(&["generate"]);
    assert!(std::fs::read_to_string(p.conf())
        .unwrap()
        .contains(&format!("\npassword={SHA_OF_THEPASSWORD}\n")));
    // The hashed password is what supervisord checks the plain one against.
    let c = rpc(&p, port, "admin", "thepassword");
    let mut sd = Supervisord::start(&p.conf());
    sd.wait_ready(&c, STATE_WAIT);
    assert!(
        c.wait_for_state("process_a", "RUNNING", STATE_WAIT)
            && c.wait_for_state("process_bad", "FATAL", STATE_WAIT),
        "{:?}\n{}",
        c.try_process_info(),
        sd.output_text()
    );
    assert_eq!(http_get(port, Some(("admin", "thepassword"))).0, 200);
    assert_eq!(http_get(port, Some(("admin", SHA_OF_THEPASSWORD))).0, 401);

    let list = p.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["process_bad", "yes", "yes", "FATAL"]),
        "{list}"
    );

    // A changed section is restarted with its new command; a removed one is stopped and removed.
    let old = pids(&c, "process_a")[0];
    std::fs::write(p.path().join("loglines.cfg"), cfg(1002, false)).unwrap();
    let out = p.ok(&["generate", "--apply"]);
    assert!(out.contains("process_a: updated, enabled"), "{out}");
    assert!(out.contains("process_bad: removed"), "{out}");
    assert!(
        out.contains(
            "applied: restarted with the new settings: process_a; stopped and removed: process_bad"
        ),
        "{out}"
    );
    assert!(
        wait_until(STATE_WAIT, || {
            c.try_process_info().is_ok_and(|ps| {
                ps.len() == 1
                    && ps[0].name == "process_a"
                    && ps[0].statename == "RUNNING"
                    && ps[0].pid != old
            })
        }),
        "{:?}",
        c.try_process_info()
    );
    let pid = pids(&c, "process_a")[0];
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x001002\x00");
    sd.stop();
}

/// A loglines role reads its settings from loglines.cfg, not from its program file: changing
/// one (here the file logger's `format`, and then the plugin settings a worker reads) must still
/// restart the program on `generate --apply`, and a changed comment must not.
#[test]
fn generate_apply_restarts_a_role_whose_settings_changed_in_loglines_cfg() {
    let redis = support::redis::RedisServer::start();
    let port = free_port();
    let password = format!("pw-{}-own", std::process::id());
    let plugin = support::crate_root().join("lua_plugins/irus.lua");
    let cfg = |format: &str, comment: &str, repository: &str| {
        format!(
            "[supervisor]\nport = 127.0.0.1:{port}\nusername = tester\npassword = {password}\n\n\
             [redis]\nurl = {}\n\n\
             [logger_files]\ncommand = loglines filelog\nlistento = q\nlogfile = logs/f.log\nformat = {format}\nstartsecs = 1\n\
             # {comment}\n\n\
             [worker_w]\ncommand = loglines worker\nlistento = w\nnumprocs = 1\nendpoint_url = -\n\
             repository_plugin = {}\nstartsecs = 1\n\n\
             [irus]\nrepository = {repository}\n",
            redis.url(),
            plugin.display()
        )
    };
    let p = Project::new(&cfg("line", "one", "repo.example.ac.uk"));
    p.ok(&["generate"]);
    let c = rpc(&p, port, "tester", &password);
    let mut sd = Supervisord::start(&p.conf());
    sd.wait_ready(&c, STATE_WAIT);
    let every = set(&["logger_files", "worker_w"]);
    assert!(
        wait_until(STATE_WAIT, || loaded(&c).1 == every),
        "{:?}\n{}",
        c.try_process_info(),
        sd.output_text()
    );
    let (files, worker) = (pids(&c, "logger_files")[0], pids(&c, "worker_w")[0]);

    // A comment is no setting: nothing restarts.
    std::fs::write(
        p.path().join("loglines.cfg"),
        cfg("line", "two", "repo.example.ac.uk"),
    )
    .unwrap();
    let out = p.ok(&["generate", "--apply"]);
    assert!(
        out.contains("supervisord already runs this configuration"),
        "{out}"
    );

    // The file logger's own setting: it restarts, the worker does not.
    std::fs::write(
        p.path().join("loglines.cfg"),
        cfg("json", "two", "repo.example.ac.uk"),
    )
    .unwrap();
    let out = p.ok(&["generate", "--apply"]);
    assert!(out.contains("logger_files: updated, enabled"), "{out}");
    assert!(
        out.contains("applied: restarted with the new settings: logger_files"),
        "{out}"
    );
    assert!(
        wait_until(STATE_WAIT, || loaded(&c).1 == every
            && pids(&c, "logger_files")[0] != files),
        "{:?}",
        c.try_process_info()
    );
    assert_eq!(pids(&c, "worker_w")[0], worker);

    // The plugin's settings section: the worker restarts.
    std::fs::write(
        p.path().join("loglines.cfg"),
        cfg("json", "two", "other.example.ac.uk"),
    )
    .unwrap();
    let out = p.ok(&["generate", "--apply"]);
    assert!(
        out.contains("applied: restarted with the new settings: worker_w"),
        "{out}"
    );
    assert!(
        wait_until(STATE_WAIT, || loaded(&c).1 == every
            && pids(&c, "worker_w")[0] != worker),
        "{:?}",
        c.try_process_info()
    );
    sd.stop();
}
