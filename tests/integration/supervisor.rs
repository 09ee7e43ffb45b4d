//! `loglines supervisor generate|enable|disable|list` as the real binary, on files in temporary
//! folders: golden files, stable output, enabling and disabling, and the web UI safety rules.
//! (tests/supervisor_live.rs runs the generated files under a real supervisord.)
//!
//! Golden files live in tests/golden/supervisor/; `UPDATE_GOLDEN=1 cargo test --test supervisor`
//! rewrites them. The temporary folder is replaced by `@DIR@` and programs run
//! `--loglines-bin /usr/local/bin/loglines`, so the goldens hold no machine-specific path.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::bin::{loglines, text};
use support::configs::modernised_original;
use support::project::Project;

const BIN: &str = "/usr/local/bin/loglines";

// The folder, `run` and `ok` are the shared support::project::Project; these methods read what
// `generate` wrote.
impl Project {
    fn generate(&self) -> String {
        self.ok(&["generate", "--loglines-bin", BIN])
    }

    /// Every generated file, with the temporary folder replaced by @DIR@; workers_enabled/ as
    /// `NAME.conf -> TARGET` lines (or `NAME.conf (copy)`).
    fn snapshot(&self) -> BTreeMap<String, String> {
        let root = self.path().to_string_lossy().into_owned();
        let mut out = BTreeMap::new();
        let conf = std::fs::read_to_string(self.sv().join("supervisord.conf")).unwrap();
        out.insert("supervisord.conf".into(), conf.replace(&root, "@DIR@"));
        for e in sorted_dir(&self.sv().join("workers_available")) {
            let t = std::fs::read_to_string(&e).unwrap();
            out.insert(
                format!("workers_available/{}", name_of(&e)),
                t.replace(&root, "@DIR@"),
            );
        }
        let mut links = String::new();
        for e in sorted_dir(&self.sv().join("workers_enabled")) {
            match std::fs::read_link(&e) {
                Ok(t) => links.push_str(&format!("{} -> {}\n", name_of(&e), t.display())),
                Err(_) => links.push_str(&format!("{} (copy)\n", name_of(&e))),
            }
        }
        out.insert("workers_enabled.txt".into(), links);
        out
    }

    fn enabled(&self) -> Vec<String> {
        sorted_dir(&self.sv().join("workers_enabled"))
            .iter()
            .map(|p| name_of(p).trim_end_matches(".conf").to_string())
            .collect()
    }

    fn available(&self, name: &str) -> String {
        std::fs::read_to_string(self.sv().join(format!("workers_available/{name}.conf"))).unwrap()
    }

    fn conf_text(&self) -> String {
        std::fs::read_to_string(self.conf()).unwrap()
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn sorted_dir(d: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The example config, as shipped.
fn example_config() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("loglines.cfg")).unwrap()
}

/// Compares a snapshot with tests/golden/supervisor/CASE/, or rewrites that folder when
/// UPDATE_GOLDEN=1.
fn assert_golden(case: &str, snap: &BTreeMap<String, String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/supervisor")
        .join(case);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&dir);
        for (name, content) in snap {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        return;
    }
    let mut expected = BTreeMap::new();
    for sub in ["", "workers_available"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_file() {
                let key = if sub.is_empty() {
                    name_of(&p)
                } else {
                    format!("{sub}/{}", name_of(&p))
                };
                expected.insert(key, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    assert!(
        !expected.is_empty(),
        "no golden files in {}; run with UPDATE_GOLDEN=1 to create them",
        dir.display()
    );
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        snap.keys().collect::<Vec<_>>(),
        "the generated files differ from {} (UPDATE_GOLDEN=1 rewrites them)",
        dir.display()
    );
    for (name, content) in snap {
        assert_eq!(
            &expected[name],
            content,
            "{name} differs from its golden file in {} (UPDATE_GOLDEN=1 rewrites it)",
            dir.display()
        );
    }
}

#[test]
fn golden_files_for_the_example_config() {
    let p = Project::new(&example_config());
    let out = p.generate();
    for name in [
        "logger_articlelogger",
        "logger_logfilewatcher",
        "logger_otherlogger",
        "process_redis",
        "worker_broker",
        "worker_pirus2",
    ] {
        assert!(out.contains(&format!("{name}: new, enabled\n")), "{out}");
    }
    assert_golden("example", &p.snapshot());
}

#[test]
fn golden_files_for_the_2010_config() {
    let p = Project::new(&modernised_original("lua_plugins/ora.lua"));
    let out = p.run(&["generate", "--loglines-bin", BIN]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("[supervisor] password: warning: the web UI still has the 2010 default credentials guest/guest"),
        "{err}"
    );
    let snap = p.snapshot();
    // The 2010 defaults: a worker_ section without numprocs runs 3 processes, each with its own log.
    let broker = &snap["workers_available/worker_broker.conf"];
    assert!(broker.contains("\nnumprocs=3\n"), "{broker}");
    assert!(
        broker.contains("\nstdout_logfile=@DIR@/workerlogs/broker_%(process_num)02d.log\n"),
        "{broker}"
    );
    // process_ sections run their command as written.
    assert!(snap["workers_available/process_redis.conf"]
        .contains("\ncommand=/home/ben/workspace/redis-1.2.6/redis-server\n"));
    assert_golden("original-2010", &snap);
}

#[test]
fn generating_twice_gives_identical_files_and_touches_none() {
    let p = Project::new(&example_config());
    p.generate();
    let first = p.snapshot();
    let mtimes = |p: &Project| -> Vec<std::time::SystemTime> {
        let mut v = vec![std::fs::metadata(p.sv().join("supervisord.conf"))
            .unwrap()
            .modified()
            .unwrap()];
        for f in sorted_dir(&p.sv().join("workers_available")) {
            v.push(std::fs::metadata(f).unwrap().modified().unwrap());
        }
        v
    };
    let before = mtimes(&p);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = p.generate();
    assert_eq!(first, p.snapshot());
    assert_eq!(before, mtimes(&p), "unchanged files were rewritten");
    assert!(out.contains("supervisord.conf: unchanged"), "{out}");
    assert!(out.contains("worker_pirus2: unchanged, enabled"), "{out}");
    assert!(!out.contains("new"), "{out}");
}

const TWO: &str =
    "[process_a]\ncommand = sleep 1000\n\n[process_b]\ncommand = sleep 1001\nnumprocs = 2\n";

#[test]
fn disabled_programs_stay_disabled_across_generate() {
    let p = Project::new(TWO);
    p.generate();
    assert_eq!(p.enabled(), ["process_a", "process_b"]);
    let out = p.ok(&["disable", "process_b"]);
    assert!(out.starts_with("process_b: disabled\n"), "{out}");
    assert!(out.contains("supervisord is not running"), "{out}");
    assert_eq!(p.enabled(), ["process_a"]);

    // Regenerating, even with a changed section, keeps it disabled (and updates its file).
    p.write_config(&TWO.replace("numprocs = 2", "numprocs = 4"));
    let out = p.generate();
    assert!(
        out.contains("process_b: updated, disabled (kept disabled)"),
        "{out}"
    );
    assert!(p.available("process_b").contains("\nnumprocs=4\n"));
    assert_eq!(p.enabled(), ["process_a"]);

    // A section added later is enabled on its first generation.
    p.write_config(&format!(
        "{}\n[process_c]\ncommand = sleep 1002\n",
        TWO.replace("numprocs = 2", "numprocs = 4")
    ));
    let out = p.generate();
    assert!(out.contains("process_c: new, enabled"), "{out}");
    assert_eq!(p.enabled(), ["process_a", "process_c"]);

    let out = p.ok(&["enable", "process_b"]);
    assert!(out.starts_with("process_b: enabled\n"), "{out}");
    assert_eq!(
        std::fs::read_link(p.sv().join("workers_enabled/process_b.conf")).unwrap(),
        PathBuf::from("../workers_available/process_b.conf")
    );
    assert!(p
        .ok(&["enable", "process_b"])
        .starts_with("process_b: already enabled\n"));
    p.ok(&["disable", "process_a", "process_b"]);
    assert!(p
        .ok(&["disable", "process_a"])
        .starts_with("process_a: already disabled\n"));
    assert_eq!(p.enabled(), ["process_c"]);
}

#[test]
fn unknown_names_are_refused_with_the_available_ones_and_change_nothing() {
    let p = Project::new(TWO);
    p.generate();
    let out = p.run(&["disable", "process_a", "process_x"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "loglines: no program `process_x` in workers_available/; expected one of: process_a, process_b\n"
    );
    // process_a was named too, but nothing changes when any name is wrong.
    assert_eq!(p.enabled(), ["process_a", "process_b"]);
    let out = p.run(&["enable"]);
    assert_eq!(out.status.code(), Some(2), "a name is required");
}

#[test]
fn enable_disable_and_list_before_generate_say_to_generate() {
    let p = Project::new(TWO);
    for args in [
        &["enable", "process_a"][..],
        &["disable", "process_a"],
        &["list"],
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("run `loglines supervisor generate` first"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn sections_that_are_gone_lose_their_files_and_hand_written_programs_stay() {
    let p = Project::new(TWO);
    p.generate();
    let custom = p.sv().join("workers_available/custom.conf");
    std::fs::write(&custom, "[program:custom]\ncommand=sleep 5\n").unwrap();
    assert!(p.ok(&["enable", "custom"]).starts_with("custom: enabled\n"));
    p.ok(&["disable", "process_b"]);

    p.write_config("[process_a]\ncommand = sleep 1000\n");
    let out = p.generate();
    assert!(
        out.contains("process_b: removed (no longer a section of the configuration)"),
        "{out}"
    );
    assert!(!p.sv().join("workers_available/process_b.conf").exists());
    assert!(custom.exists(), "a hand-written program was removed");
    assert_eq!(p.enabled(), ["custom", "process_a"]);

    // An enabled program whose section is gone loses its link too.
    p.write_config("[process_z]\ncommand = sleep 1000\n");
    p.generate();
    assert_eq!(p.enabled(), ["custom", "process_z"]);
    assert!(!p.sv().join("workers_available/process_a.conf").exists());
}

#[test]
fn a_copy_in_workers_enabled_is_kept_up_to_date() {
    let p = Project::new(TWO);
    p.generate();
    // Where symlinks cannot be made, workers_enabled/ holds copies; simulate one.
    let link = p.sv().join("workers_enabled/process_a.conf");
    let old = p.available("process_a");
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&link, &old).unwrap();
    let list = p.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("process_a") && l.contains("yes (copy)")),
        "{list}"
    );
    p.write_config(&TWO.replace("sleep 1000", "sleep 2000"));
    let out = p.generate();
    assert!(out.contains("process_a: updated, enabled"), "{out}");
    let now = std::fs::read_to_string(&link).unwrap();
    assert_eq!(now, p.available("process_a"));
    assert!(now.contains("command=sleep 2000"), "{now}");
}

#[test]
fn list_without_a_running_supervisord() {
    let p = Project::new(TWO);
    p.generate();
    p.ok(&["disable", "process_b"]);
    let out = p.ok(&["list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["PROGRAM", "AVAILABLE", "ENABLED", "STATE"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["process_a", "yes", "yes", "-"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["process_b", "yes", "no", "-"]
    );
    assert!(
        out.contains("supervisord: not running (nothing answers on unix://"),
        "{out}"
    );
}

fn web(port: &str, user: Option<&str>, pass: Option<&str>) -> String {
    let mut s = format!("[supervisor]\nport = {port}\n");
    if let Some(u) = user {
        s.push_str(&format!("username = {u}\n"));
    }
    if let Some(pw) = pass {
        s.push_str(&format!("password = {pw}\n"));
    }
    s + TWO
}

#[test]
fn a_web_ui_beyond_loopback_needs_a_password_of_ones_own() {
    let refused = [
        (
            web("0.0.0.0:9001", Some("guest"), Some("guest")),
            "loglines.cfg:4 [supervisor] password: `guest` is a default password, and port `0.0.0.0:9001` would open the web UI on every network interface",
        ),
        (
            web("*:9001", None, None),
            "loglines.cfg:2 [supervisor] port: `*:9001` would open the web UI on every network interface without a username and password",
        ),
        (
            web("192.168.1.5:9001", Some("admin"), Some("change-this-password")),
            "[supervisor] password: `change-this-password` is a default password, and port `192.168.1.5:9001` would open the web UI on `192.168.1.5`, beyond this machine",
        ),
        (
            web("127.0.0.1:9001", Some("admin"), None),
            "[supervisor] password: is missing while username is set",
        ),
    ];
    for (cfg, expected) in refused {
        let p = Project::new(&cfg);
        let out = p.run(&["generate", "--loglines-bin", BIN]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cfg}\n{err}");
        assert!(err.contains(expected), "expected {expected:?} in\n{err}");
        assert!(!p.sv().exists(), "a refused configuration wrote files");
    }
    let p = Project::new(&web("*:9001", Some("admin"), Some("a-long-own-secret")));
    p.generate();
    assert!(
        p.conf_text().contains(
            "\n[inet_http_server]\nport=*:9001\nusername=admin\npassword=a-long-own-secret\n"
        ),
        "{}",
        p.conf_text()
    );
    // The password is for the owner's eyes only; the program files hold no secret.
    assert_eq!(mode(&p.conf()), 0o600);
    assert_eq!(
        mode(&p.sv().join("workers_available/process_a.conf")),
        0o644
    );
    // A file made readable by others (an earlier version, or by hand) is made private again,
    // although its content does not change.
    std::fs::set_permissions(
        p.conf(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    p.generate();
    assert_eq!(mode(&p.conf()), 0o600);
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_sha_password_is_kept_as_it_is() {
    // {SHA} + sha1("thepassword")
    let sha = "{SHA}82ab876d1387bfafe46cc1c8a2ef074eae50cb1d";
    let p = Project::new(&web("0.0.0.0:9001", Some("admin"), Some(sha)));
    let out = p.run(&["generate", "--loglines-bin", BIN]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        p.conf_text()
            .contains(&format!("\nusername=admin\npassword={sha}\n")),
        "{}",
        p.conf_text()
    );
}

#[test]
fn guest_guest_on_loopback_is_written_with_a_warning() {
    let p = Project::new(&web("127.0.0.1:9001", Some("guest"), Some("guest")));
    let out = p.run(&["generate", "--loglines-bin", BIN]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("guest/guest").count(),
        1,
        "one warning, not one from the config check and one from the generator:\n{err}"
    );
    assert!(err.contains("loglines.cfg:4 [supervisor] password: warning: the web UI still has the 2010 default credentials guest/guest"), "{err}");
}

#[test]
fn without_a_port_there_is_no_inet_http_server_and_the_socket_is_private() {
    let p = Project::new(TWO);
    p.generate();
    let conf = p.conf_text();
    assert!(
        !conf.lines().any(|l| l.trim() == "[inet_http_server]"),
        "{conf}"
    );
    let sock = p.sv().join("supervisor.sock");
    assert!(conf.contains(&format!(
        "\n[unix_http_server]\n; Only supervisord's own user may use the socket: whoever can, controls every program.\nfile={}\nchmod=0700\n",
        sock.display()
    )), "{conf}");
    assert!(conf.contains(&format!("\nserverurl=unix://{}\n", sock.display())));
    assert!(conf.contains("\nfiles = workers_enabled/*.conf\n"));
}

#[test]
fn a_bare_port_means_loopback() {
    let p = Project::new(&web("9001", Some("admin"), Some("own-secret")));
    p.generate();
    assert!(
        p.conf_text().contains("\nport=127.0.0.1:9001\n"),
        "{}",
        p.conf_text()
    );
}

#[test]
fn a_base_template_whose_parts_disagree_is_refused() {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("supervisor/supervisord.conf.base"),
    )
    .unwrap();
    let cases = [
        (
            shipped.replace(
                "serverurl=unix://@SOCKET@",
                "serverurl=unix:///tmp/supervisor.sock",
            ),
            "[supervisorctl] serverurl is `unix:///tmp/supervisor.sock` but the server's socket is",
        ),
        (
            shipped.replace("chmod=0700", "chmod=0766"),
            "[unix_http_server] chmod is `0766`",
        ),
        (
            shipped.replace("@INET_HTTP_SERVER@", "[inet_http_server]\nport=*:9001"),
            "has an [inet_http_server] section; remove it",
        ),
        (
            shipped.replace("@PIDFILE@", "supervisord.pid"),
            "[supervisord] pidfile is `supervisord.pid`; expected an absolute path",
        ),
        (
            shipped.replace("@LOGFILE@", "@LOGFILES@"),
            "has the unknown placeholder @LOGFILES@",
        ),
    ];
    for (base, expected) in cases {
        let p = Project::new(TWO);
        let base_path = p.path().join("my.base");
        std::fs::write(&base_path, &base).unwrap();
        let out = p.run(&["generate", "--base", base_path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("the base template {}", base_path.display())),
            "{err}"
        );
        assert!(err.contains(expected), "expected {expected:?} in\n{err}");
        assert!(!p.sv().exists());
    }
    // A base of one's own in the supervisor folder is used without --base.
    let p = Project::new(TWO);
    std::fs::create_dir(p.sv()).unwrap();
    std::fs::write(
        p.sv().join("supervisord.conf.base"),
        shipped.replace("loglevel=info", "loglevel=debug"),
    )
    .unwrap();
    p.generate();
    assert!(p.conf_text().contains("\nloglevel=debug\n"));
    assert!(
        !p.conf_text().contains(";;"),
        "template notes leaked into the result"
    );
}

#[test]
fn values_supervisord_would_misread_are_escaped_or_refused() {
    let p = Project::new(
        "[process_a]\ncommand = date +%s\nenvironment = GREETING=\"100%\",\n    OTHER=\"x\"\n",
    );
    p.generate();
    let a = p.available("process_a");
    assert!(a.contains("\ncommand=date +%%s\n"), "{a}");
    assert!(
        a.contains(
            "\nenvironment=GREETING=\"100%\", OTHER=\"x\"\n"
                .replace('%', "%%")
                .as_str()
        ),
        "{a}"
    );

    let p = Project::new("[process_a]\ncommand = redis-server ; managed by supervisord\n");
    let out = p.run(&["generate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[process_a] command = `redis-server ; managed by supervisord`: supervisord would cut it at ` ;`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn paths_with_spaces_are_quoted_in_commands() {
    let dir = tempfile::tempdir().unwrap();
    let spaced = dir.path().join("my repo");
    std::fs::create_dir_all(spaced.join("lua_plugins")).unwrap();
    std::fs::write(spaced.join("lua_plugins/p.lua"), "").unwrap();
    std::fs::write(
        spaced.join("loglines.cfg"),
        "[worker_w]\ncommand = loglines worker\nlistento = q\nrepository_plugin = lua_plugins/p.lua\nendpoint_url = -\n",
    )
    .unwrap();
    let out = loglines()
        .args([
            "--config",
            "loglines.cfg",
            "supervisor",
            "generate",
            "--loglines-bin",
        ])
        .arg("/opt/log lines/loglines")
        .current_dir(&spaced)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let w =
        std::fs::read_to_string(spaced.join("supervisor/workers_available/worker_w.conf")).unwrap();
    assert!(
        w.contains(&format!(
            "\ncommand='/opt/log lines/loglines' --config '{}' worker --section worker_w --process-num %(process_num)s\n",
            spaced.join("loglines.cfg").display()
        )),
        "{w}"
    );
    assert!(
        w.contains("\nprocess_name=%(program_name)s_%(process_num)02d\nnumprocs=3\n"),
        "{w}"
    );
}

#[test]
fn a_section_name_supervisord_cannot_use_is_refused() {
    let p = Project::new("[process_a:b]\ncommand = sleep 1\n");
    let out = p.run(&["generate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("section [process_a:b] cannot be a supervisord program: rename it using only letters, digits"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_program_file_shown_in_the_docs_is_what_generate_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/supervisor.md")).unwrap();
    let after = &doc[doc
        .find("**A program file**")
        .expect("docs lost their example")..];
    let start = after.find("```ini\n").unwrap() + "```ini\n".len();
    let shown = &after[start..start + after[start..].find("```").unwrap()];
    let p = Project::new(&example_config());
    p.generate();
    let real = p
        .available("worker_pirus2")
        .replace(&p.path().to_string_lossy().into_owned(), "/srv/loglines");
    assert_eq!(shown, real);
}

/// `process_name`, which 2010 files set, is honoured as supervisord's own (not escaped), and
/// one that would name every process alike is refused.
#[test]
fn process_name_is_honoured_and_must_tell_processes_apart() {
    let p = Project::new(
        "[process_a]\ncommand = sleep 1000\nnumprocs = 2\nprocess_name = sleeper_%(process_num)d\n",
    );
    p.generate();
    assert!(
        p.available("process_a")
            .contains("\nprocess_name=sleeper_%(process_num)d\nnumprocs=2\n"),
        "{}",
        p.available("process_a")
    );
    let p =
        Project::new("[process_a]\ncommand = sleep 1000\nnumprocs = 2\nprocess_name = sleeper\n");
    let out = p.run(&["generate", "--loglines-bin", BIN]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("[process_a] process_name: `sleeper` names all 2 processes alike"),
        "{}",
        text(&out.stderr)
    );
}
