//! Configuration validation: every rule of the crate issue, fed a file that breaks it.

use crate::support;

use loglines::config::diag::{Diagnostic, Severity};
use loglines::config::Config;
use loglines::roles::watch::StartAt;
use loglines::roles::worker::Endpoint;
use loglines::roles::Role;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::configs::modernised_original;

/// A temporary folder holding a config file and a plugin file, so plugin-existence checks pass.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lua_plugins")).unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("lua_plugins/p.lua"), "-- a plugin\n").unwrap();
        Dir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn load(&self, text: &str) -> Result<Config, Vec<Diagnostic>> {
        let p = self.dir.path().join("loglines.cfg");
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    /// Loads `text`, expecting errors; returns them rendered.
    fn errors(&self, text: &str) -> Vec<String> {
        match self.load(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(d) => d
                .iter()
                .filter(|d| d.is_error())
                .map(|d| strip(&d.to_string()))
                .collect(),
        }
    }
}

/// Removes the temporary folder from a rendered diagnostic so tests compare the rest.
fn strip(s: &str) -> String {
    match s.find("loglines.cfg") {
        Some(i) => s[i..].to_string(),
        None => s.to_string(),
    }
}

const WORKER: &str = "[worker_w]\ncommand = loglines worker\nlistento = q\nrepository_plugin = lua_plugins/p.lua\nendpoint_url = http://127.0.0.1:1/\n";

fn assert_one(errs: &[String], expected: &str) {
    assert!(
        errs.iter().any(|e| e.starts_with(expected)),
        "no error starting with\n  {expected}\nin\n  {}",
        errs.join("\n  ")
    );
}

#[test]
fn example_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::load(&root.join("loglines.cfg"))
        .unwrap_or_else(|d| panic!("{}", loglines::config::diag::render(&d)));
    let roles: Vec<(&str, &str)> = cfg
        .sections
        .iter()
        .map(|s| (s.name.as_str(), s.role.name()))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("process_redis", "process"),
            ("logger_logfilewatcher", "watch"),
            ("worker_broker", "broker"),
            ("worker_pirus2", "worker"),
            ("logger_articlelogger", "filelog"),
            ("logger_otherlogger", "filelog"),
        ]
    );
    let w = cfg.section("worker_pirus2").unwrap();
    assert_eq!(w.program.numprocs, 3);
    let Role::Worker(ws) = &w.role else { panic!() };
    assert_eq!(
        ws.endpoint,
        Endpoint::Url("https://irus.jisc.ac.uk/counter/test/".into())
    );
    assert_eq!(ws.plugin, root.join("lua_plugins/irus.lua"));
    assert!(cfg.redis.contains_key("redis_test"));
}

#[test]
fn original_2010_config_validates_after_changing_commands_and_plugin() {
    let d = Dir::new();
    let cfg = d
        .load(&modernised_original(&format!(
            "{}/lua_plugins/ora.lua",
            env!("CARGO_MANIFEST_DIR")
        )))
        .unwrap_or_else(|e| panic!("{}", loglines::config::diag::render(&e)));
    let w = cfg.section("worker_pirus2").unwrap();
    let Role::Worker(ws) = &w.role else { panic!() };
    // Every 2010 key keeps its meaning.
    assert_eq!(ws.listento, "pirus2");
    assert_eq!(
        ws.endpoint,
        Endpoint::Url("http://cclibweb-4.dmz.cranfield.ac.uk/tracker/".into())
    );
    assert_eq!(ws.url_ver, "Z39.88-2004");
    assert_eq!(ws.rfr_id.as_deref(), Some("ora.bodleian.ox.ac.uk"));
    assert_eq!(ws.success, 200);
    assert_eq!(ws.timeout, Duration::from_secs(60));
    assert_eq!(ws.pauseonfail, Duration::from_secs(3600));
    assert_eq!(ws.ratelimit, Duration::from_secs_f64(0.3));
    assert_eq!(ws.success_queue.as_deref(), Some("articlelog"));
    assert_eq!(ws.other_queue.as_deref(), Some("otherlog"));
    assert_eq!(w.program.numprocs, 3);
    assert_eq!(
        w.program.stdout_logfile,
        Some(d.path().join("workerlogs/pirus2.log"))
    );
    let Role::Broker(b) = &cfg.section("worker_broker").unwrap().role else {
        panic!()
    };
    assert_eq!(
        (b.listento.as_str(), b.fanout.clone()),
        ("loglines", vec!["pirus2".to_string()])
    );
    let Role::Watch(wt) = &cfg.section("logger_logfilewatcher").unwrap().role else {
        panic!()
    };
    assert_eq!(wt.servicename, "ora.bodleian.ox.ac.uk");
    assert_eq!(wt.pushto, "loglines");
    assert_eq!(wt.start_at, StartAt::End);
    assert_eq!(cfg.redis["redis_test"].db, 1);
    assert_eq!(cfg.supervisor.port.as_deref(), Some("127.0.0.1:9001"));
    // Its guest/guest web UI and its placeholder log path are warned about, not fatal.
    let warnings: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings.iter().any(|w| w.contains("guest/guest")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("/path/to/logfile/to does not exist")),
        "{warnings:?}"
    );
}

#[test]
fn original_2010_config_unchanged_loads_with_a_warning_for_each_difference() {
    let d = Dir::new();
    std::fs::copy(
        support::crate_root().join("lua_plugins/ora.lua"),
        d.path().join("lua_plugins/ora.lua"),
    )
    .unwrap();
    let cfg = d
        .load(include_str!("../data/loglines-original.cfg"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let warnings: Vec<String> = cfg.warnings.iter().map(|w| strip(&w.to_string())).collect();
    for (line, section, program, role) in [
        (14, "logger_logfilewatcher", "./logfilewatcher.py", "watch"),
        (23, "worker_broker", "./broker.py", "broker"),
        (32, "worker_pirus2", "./pirus2.py", "worker"),
        (64, "logger_articlelogger", "./logfromqueue.py", "filelog"),
        (70, "logger_otherlogger", "./logfromqueue.py", "filelog"),
    ] {
        assert_one(&warnings, &format!("loglines.cfg:{line} [{section}] command: warning: `{program}` is a program of the 2010 tool, run as `loglines {role}`; write `command = loglines {role}`"));
        assert_eq!(
            cfg.section(section)
                .unwrap()
                .role
                .kind()
                .map(|r| r.to_string()),
            Some(role.to_string())
        );
    }
    assert_one(&warnings, "loglines.cfg:43 [worker_pirus2] repository_plugin: warning: `plugins.ora_utils` is a 2010 Python plugin; loglines runs its Lua port, write `repository_plugin = lua_plugins/ora.lua`");
    assert_one(&warnings, "loglines.cfg:45 [worker_pirus2] endpoint_url: warning: `http://cclibweb-4.dmz.cranfield.ac.uk/tracker/` is the 2010 PIRUS2 tracker, which no longer exists; send to IRUS: https://irus.jisc.ac.uk/counter/");
    let Role::Worker(w) = &cfg.section("worker_pirus2").unwrap().role else {
        panic!()
    };
    assert!(w.plugin.ends_with("lua_plugins/ora.lua"), "{:?}", w.plugin);
}

#[test]
fn missing_file() {
    let err = Config::load(Path::new("/nonexistent/loglines.cfg")).unwrap_err();
    assert_eq!(err[0].to_string(), "/nonexistent/loglines.cfg: the file does not exist; expected a readable loglines.cfg (pass --config FILE, or write a starting one with `loglines init`)");
}

#[test]
fn unreadable_file() {
    // A folder cannot be read as a file, even by root (who can read any mode).
    let d = Dir::new();
    let err = Config::load(d.path()).unwrap_err();
    assert!(err[0].message.starts_with("cannot read it:"), "{}", err[0]);
}

#[test]
fn empty_file() {
    let d = Dir::new();
    assert_one(
        &d.errors("\n# only a comment\n"),
        "loglines.cfg: the file is empty",
    );
}

#[test]
fn non_utf8_file() {
    let d = Dir::new();
    let p = d.path().join("loglines.cfg");
    std::fs::write(&p, b"[redis]\nhost = caf\xe9\n").unwrap();
    let err = Config::load(&p).unwrap_err();
    assert!(
        err[0]
            .to_string()
            .ends_with("loglines.cfg:2: the file is not valid UTF-8; save it as UTF-8"),
        "{}",
        err[0]
    );
}

#[test]
fn duplicate_section_and_key() {
    let d = Dir::new();
    let errs = d.errors("[redis]\nport = 1\nport = 2\n[redis]\n");
    assert_one(
        &errs,
        "loglines.cfg:3 [redis] port: duplicate key, first set at line 2; keep one of the two",
    );
    assert_one(&errs, "loglines.cfg:4 [redis]: duplicate section, first defined at line 1; merge the two into one");
}

#[test]
fn key_outside_any_section() {
    let d = Dir::new();
    assert_one(
        &d.errors("host = x\n[redis]\n"),
        "loglines.cfg:1 host: a key outside any section; put it under a `[section]` header",
    );
}

#[test]
fn non_number_where_a_number_is_needed() {
    let d = Dir::new();
    let errs = d.errors(&format!("{WORKER}numprocs = three\n"));
    assert_one(&errs, "loglines.cfg:6 [worker_w] numprocs: `three` is not a number; expected a whole number from 1 to 256");
    let errs = d.errors("[redis]\nport = 70000\n");
    assert_one(&errs, "loglines.cfg:2 [redis] port: `70000` is out of range; expected a whole number from 1 to 65535");
}

#[test]
fn negative_timeout() {
    let d = Dir::new();
    let errs = d.errors(&format!("{WORKER}timeout = -5\n"));
    assert_one(&errs, "loglines.cfg:6 [worker_w] timeout: `-5` is negative; expected a number of seconds from 0.001 to 86400");
}

#[test]
fn worker_without_listento() {
    let d = Dir::new();
    let errs = d.errors(&WORKER.replace("listento = q\n", ""));
    assert_one(
        &errs,
        "loglines.cfg:1 [worker_w] listento: is missing; expected a queue name such as `loglines`",
    );
}

#[test]
fn watcher_whose_logfile_folder_does_not_exist_is_warned_about() {
    let d = Dir::new();
    let cfg = d
        .load("[logger_w]\ncommand = loglines watch\nlogfile = /no/such/folder/access.log\npushto = q\nservicename = s\n")
        .unwrap();
    let w = &cfg.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert!(
        strip(&w.to_string()).starts_with("loglines.cfg:3 [logger_w] logfile: warning: the folder /no/such/folder does not exist on this machine"),
        "{w}"
    );
}

#[test]
fn unknown_section_prefix() {
    let d = Dir::new();
    assert_one(
        &d.errors("[wroker_x]\ncommand = loglines worker\n"),
        "loglines.cfg:1 [wroker_x]: unknown section; expected [supervisor], [redis]",
    );
}

#[test]
fn plugin_sections_are_known() {
    let d = Dir::new();
    let cfg = d.load(&format!("{WORKER}[p]\nanything = goes\n")).unwrap();
    assert_eq!(cfg.raw.get("p", "anything"), Some("goes"));
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let d = Dir::new();
    let errs = d.errors(&format!("{WORKER}pauseonfial = 10\nendpoint = x\n"));
    assert_one(&errs, "loglines.cfg:6 [worker_w] pauseonfial: unknown key for a `loglines worker` section; did you mean `pauseonfail`?");
    assert_one(&errs, "loglines.cfg:7 [worker_w] endpoint: unknown key for a `loglines worker` section; did you mean `endpoint_url`?");
    // A key of another role is unknown here too.
    let errs = d.errors(&format!("{WORKER}fanout = a\n"));
    assert_one(
        &errs,
        "loglines.cfg:6 [worker_w] fanout: unknown key for a `loglines worker` section",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let d = Dir::new();
    let errs = d.errors(&format!(
        "{WORKER}timeout = x\nsuccess = 999\n[logger_l]\ncommand = loglines filelog\n"
    ));
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

#[test]
fn plugin_must_exist_and_be_lua() {
    let d = Dir::new();
    let errs = d.errors(&WORKER.replace("lua_plugins/p.lua", "lua_plugins/missing.lua"));
    assert!(
        errs[0].contains("repository_plugin: ")
            && errs[0].contains("lua_plugins/missing.lua does not exist"),
        "{errs:?}"
    );
    let errs = d.errors(&WORKER.replace("lua_plugins/p.lua", "plugins.mine"));
    assert_one(
        &errs,
        "loglines.cfg:4 [worker_w] repository_plugin: `plugins.mine` is not a Lua file",
    );
}

#[test]
fn paths_are_relative_to_the_config_folder() {
    let d = Dir::new();
    let cfg = d
        .load(&format!(
            "{WORKER}[logger_f]\ncommand = loglines filelog\nlistento = a\nlogfile = logs/a.log\n"
        ))
        .unwrap();
    let Role::FileLog(f) = &cfg.section("logger_f").unwrap().role else {
        panic!()
    };
    assert_eq!(f.logfile, d.path().join("logs/a.log"));
    let Role::Worker(w) = &cfg.section("worker_w").unwrap().role else {
        panic!()
    };
    assert_eq!(w.plugin, d.path().join("lua_plugins/p.lua"));
}

#[test]
fn backslashes_survive_as_written() {
    let d = Dir::new();
    let cfg = d
        .load(&format!(
            "{WORKER}[p]\npattern = ^/id/eprint/(\\d+)/$\nwinpath = C:\\logs\\new\n"
        ))
        .unwrap();
    assert_eq!(cfg.raw.get("p", "pattern"), Some("^/id/eprint/(\\d+)/$"));
    assert_eq!(cfg.raw.get("p", "winpath"), Some("C:\\logs\\new"));
}

#[test]
fn command_states_the_role() {
    let d = Dir::new();
    assert_one(
        &d.errors("[worker_x]\nlistento = q\n"),
        "loglines.cfg:1 [worker_x] command: is missing; expected `loglines watch`",
    );
    assert_one(
        &d.errors("[worker_x]\ncommand = loglines fly\n"),
        "loglines.cfg:2 [worker_x] command: `loglines fly` names no role",
    );
    assert_one(
        &d.errors("[worker_x]\ncommand = python x.py\n"),
        "loglines.cfg:2 [worker_x] command: `python x.py` does not run loglines",
    );
    assert_one(
        &d.errors("[worker_x]\ncommand = loglines broker --section y\nlistento = a\nfanout = b\n"),
        "loglines.cfg:2 [worker_x] command: `loglines broker --section y` has extra arguments",
    );
    // An absolute path to the binary is fine.
    let cfg = d
        .load("[worker_b]\ncommand = /usr/local/bin/loglines broker\nlistento = a\nfanout = b, c\n")
        .unwrap();
    let Role::Broker(b) = &cfg.sections[0].role else {
        panic!()
    };
    assert_eq!(b.fanout, vec!["b", "c"]);
    assert_eq!(
        cfg.sections[0].program.numprocs, 3,
        "worker_* defaults to 3 processes"
    );
}

/// A command that names no role does not hide the section's other problems: the rest is
/// checked as the role the section most likely is (a near miss of its name, else the role whose
/// own keys it uses), and the error says which.
#[test]
fn a_wrong_command_does_not_stop_the_rest_of_the_section_being_checked() {
    let d = Dir::new();
    let errs = d.errors(
        "[logger_w]\ncommand = loglines wacth\nlogfile = logs/x.log\npushto = q\nservicename = s\nbatch_size = 0\nbogus = 1\n",
    );
    assert_one(
        &errs,
        "loglines.cfg:2 [logger_w] command: `loglines wacth` names no role; expected `loglines watch`",
    );
    assert!(
        errs[0].contains("checked as those of a `loglines watch` section"),
        "{errs:?}"
    );
    assert_one(
        &errs,
        "loglines.cfg:6 [logger_w] batch_size: `0` is out of range",
    );
    assert_one(
        &errs,
        "loglines.cfg:7 [logger_w] bogus: unknown key for a `loglines watch` section",
    );
    // By its keys: endpoint_url is a worker's.
    let errs =
        d.errors("[worker_x]\ncommand = /opt/pirus/run.sh\nlistento = q\nendpoint_url = ftp://x\n");
    assert_one(
        &errs,
        "loglines.cfg:2 [worker_x] command: `/opt/pirus/run.sh` does not run loglines",
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("checked as those of a `loglines worker` section")),
        "{errs:?}"
    );
    assert_one(
        &errs,
        "loglines.cfg:1 [worker_x] repository_plugin: is missing",
    );
    assert_one(
        &errs,
        "loglines.cfg:4 [worker_x] endpoint_url: `ftp://x` is not an http(s) URL",
    );
    // Extra arguments: the role is known, so the rest is checked as it.
    let errs = d.errors("[worker_b]\ncommand = loglines broker -v\nlistento = a\n");
    assert_one(
        &errs,
        "loglines.cfg:2 [worker_b] command: `loglines broker -v` has extra arguments",
    );
    assert_one(&errs, "loglines.cfg:1 [worker_b] fanout: is missing");
}

#[test]
fn role_specific_rules() {
    let d = Dir::new();
    let watch =
        "[logger_w]\ncommand = loglines watch\nlogfile = logs/x.log\npushto = q\nservicename = s\n";
    assert_one(
        &d.errors(&format!("{watch}numprocs = 2\n")),
        "loglines.cfg:6 [logger_w] numprocs: is 2; a watcher must run as 1 process",
    );
    assert_one(
        &d.errors(&format!("{watch}start_at = middle\n")),
        "loglines.cfg:6 [logger_w] start_at: `middle` is not valid; expected one of end, beginning",
    );
    assert_one(&d.errors(&format!("{watch}batch_size = 9000\n")), "loglines.cfg:6 [logger_w] batch_size: `9000` is out of range; expected a whole number from 1 to 7999");
    let broker = "[worker_b]\ncommand = loglines broker\nlistento = a\n";
    assert_one(
        &d.errors(&format!("{broker}fanout = b, b\n")),
        "loglines.cfg:4 [worker_b] fanout: names `b` twice",
    );
    assert_one(
        &d.errors(&format!("{broker}fanout = a\n")),
        "loglines.cfg:4 [worker_b] fanout: includes `a`, the queue this broker listens to",
    );
    assert_one(
        &d.errors(&format!("{WORKER}success = 99\n")),
        "loglines.cfg:6 [worker_w] success: `99` is out of range",
    );
    assert_one(
        &d.errors(&format!("{WORKER}debug = maybe\n")),
        "loglines.cfg:6 [worker_w] debug: `maybe` is not a yes/no value",
    );
    assert_one(
        &d.errors(&format!("{WORKER}method = POST\n")),
        "loglines.cfg:6 [worker_w] method: `POST` is not valid; expected one of get, head",
    );
    assert_one(
        &d.errors(&format!("{WORKER}success_queue = a b\n")),
        "loglines.cfg:6 [worker_w] success_queue: `a b` is not one queue name",
    );
    assert_one(
        &d.errors(&WORKER.replace("http://127.0.0.1:1/", "ftp://x/")),
        "loglines.cfg:5 [worker_w] endpoint_url: `ftp://x/` is not an http(s) URL",
    );
    assert_one(
        &d.errors(&WORKER.replace("http://127.0.0.1:1/", "https:///counter/")),
        "loglines.cfg:5 [worker_w] endpoint_url: `https:///counter/` is not a valid URL (invalid format)",
    );
    assert_one(
        &d.errors(&WORKER.replace("http://127.0.0.1:1/", "http://exa mple.org/")),
        "loglines.cfg:5 [worker_w] endpoint_url: `http://exa mple.org/` is not a valid URL",
    );
    let cfg = d.load(&WORKER.replace("http://127.0.0.1:1/", "-")).unwrap();
    let Role::Worker(w) = &cfg.sections[0].role else {
        panic!()
    };
    assert_eq!(w.endpoint, Endpoint::DryRun);
    // URL schemes are case-insensitive: an uppercase one is taken, and written in lowercase.
    let cfg = d
        .load(&WORKER.replace("http://127.0.0.1:1/", "HTTPS://Irus.example/counter/"))
        .unwrap();
    let Role::Worker(w) = &cfg.sections[0].role else {
        panic!()
    };
    assert_eq!(
        w.endpoint,
        Endpoint::Url("https://Irus.example/counter/".into())
    );
    assert_one(
        &d.errors(
            "[logger_f]\ncommand = loglines filelog\nlistento = a\nlogfile = x\nformat = xml\n",
        ),
        "loglines.cfg:5 [logger_f] format: `xml` is not valid; expected one of line, json",
    );
}

#[test]
fn redis_sections() {
    let d = Dir::new();
    let cfg = d
        .load(&format!(
            "{WORKER}redis = test\n[redis_test]\nurl = rediss://u:p@h:6380/3\n"
        ))
        .unwrap();
    let r = cfg.redis_for(&cfg.sections[0]);
    assert_eq!(
        (r.name.as_str(), r.host.as_str(), r.port, r.db, r.tls),
        ("redis_test", "h", 6380, 3, true)
    );
    assert_eq!(
        (r.username.as_deref(), r.password.as_deref()),
        (Some("u"), Some("p"))
    );
    assert_eq!(
        cfg.redis["redis"].port, 6379,
        "a [redis] default exists even when the file has none"
    );
    assert_one(&d.errors(&format!("{WORKER}redis = prod\n")), "loglines.cfg:6 [worker_w] redis: names [redis_prod], which is not in the file; expected one of [redis]");
    assert_one(
        &d.errors("[redis]\nurl = http://x\n"),
        "loglines.cfg:2 [redis] url: `http://x` does not start with redis:// or rediss://",
    );
    assert_one(
        &d.errors("[redis]\nurl = redis://x\nport = 1\n"),
        "loglines.cfg:3 [redis] port: is set together with `url`",
    );
    // A malformed URL is quoted without its password.
    let errors = d.errors("[redis]\nurl = redis://app:TopSecret@db:99999/0\n");
    assert_one(
        &errors,
        "loglines.cfg:2 [redis] url: `redis://app:***@db:99999/0` has",
    );
    assert!(!errors.concat().contains("TopSecret"), "{errors:?}");
}

/// Stand-ins for PEM files: validation checks the PEM structure, not the certificate inside
/// (the TLS handshake does that; tests/redis_tls.rs covers it with real certificates).
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

#[test]
fn redis_tls_files() {
    let d = Dir::new();
    std::fs::create_dir(d.path().join("tls")).unwrap();
    for (name, text) in [
        ("ca.crt", CERT_PEM),
        ("client.crt", CERT_PEM),
        ("client.key", KEY_PEM),
    ] {
        std::fs::write(d.path().join("tls").join(name), text).unwrap();
    }
    let files =
        "tls_ca_file = tls/ca.crt\ntls_cert_file = tls/client.crt\ntls_key_file = tls/client.key\n";

    // Both TLS styles; paths relative to the config file's folder.
    for head in [
        "url = rediss://h:6380/0\n",
        "host = h\nport = 6380\ntls = yes\n",
    ] {
        let cfg = d.load(&format!("[redis]\n{head}{files}")).unwrap();
        let r = &cfg.redis["redis"];
        assert!(r.tls && r.url().starts_with("rediss://h:6380/"), "{head}");
        assert_eq!(r.tls_ca_file, Some(d.path().join("tls/ca.crt")));
        let client = r.tls_client.as_ref().expect("client certificate");
        assert_eq!(client.cert_file, d.path().join("tls/client.crt"));
        assert_eq!(client.key_file, d.path().join("tls/client.key"));
    }
    let cfg = d.load("[redis]\nhost = h\n").unwrap();
    let r = &cfg.redis["redis"];
    assert!(!r.tls && r.tls_ca_file.is_none() && r.tls_client.is_none());

    // Any file key without TLS is an error, one per key.
    for head in [
        "url = redis://h/0\n",
        "host = h\n",
        "host = h\ntls = false\n",
    ] {
        let errs = d.errors(&format!("[redis]\n{head}{files}"));
        for key in ["tls_ca_file", "tls_cert_file", "tls_key_file"] {
            let line = errs
                .iter()
                .find(|e| e.contains(&format!("[redis] {key}: is set, but this connection does not use TLS; expected `url = rediss://...` or `tls = true`")));
            assert!(line.is_some(), "{key} after {head:?}: {errs:?}");
        }
    }
    assert_one(
        &d.errors("[redis]\nurl = rediss://h/0\ntls = true\n"),
        "loglines.cfg:3 [redis] tls: is set together with `url`; expected `url = rediss://...` for TLS, or host/port/db with `tls = true`",
    );
    assert_one(
        &d.errors("[redis]\ntls = maybe\n"),
        "loglines.cfg:2 [redis] tls: `maybe` is not a yes/no value",
    );

    // Both or neither of the client certificate and its key.
    assert_one(
        &d.errors("[redis]\nurl = rediss://h/0\ntls_cert_file = tls/client.crt\n"),
        "loglines.cfg:3 [redis] tls_cert_file: is set without `tls_key_file`; expected both (the client certificate and its private key) or neither",
    );
    assert_one(
        &d.errors("[redis]\nurl = rediss://h/0\ntls_key_file = tls/client.key\n"),
        "loglines.cfg:3 [redis] tls_key_file: is set without `tls_cert_file`; expected both",
    );

    // Files must exist and hold the right kind of PEM block.
    let missing = d.path().join("tls/nope.crt");
    assert_one(
        &d.errors("[redis_cache]\nurl = rediss://h/0\ntls_ca_file = tls/nope.crt\n"),
        &format!(
            "loglines.cfg:3 [redis_cache] tls_ca_file: {} does not exist; expected the PEM file of the CA that signed the Redis server's certificate",
            missing.display()
        ),
    );
    let key_as_ca = d.path().join("tls/client.key");
    assert_one(
        &d.errors("[redis]\nurl = rediss://h/0\ntls_ca_file = tls/client.key\n"),
        &format!(
            "loglines.cfg:3 [redis] tls_ca_file: {} holds no certificate (no `-----BEGIN CERTIFICATE-----` block); expected the PEM file of the CA",
            key_as_ca.display()
        ),
    );
    let cert_as_key = d.path().join("tls/client.crt");
    assert_one(
        &d.errors("[redis]\nurl = rediss://h/0\ntls_cert_file = tls/client.crt\ntls_key_file = tls/client.crt\n"),
        &format!(
            "loglines.cfg:4 [redis] tls_key_file: {} holds no unencrypted private key",
            cert_as_key.display()
        ),
    );
    std::fs::write(
        d.path().join("tls/broken.crt"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .unwrap();
    let errs = d.errors("[redis]\nurl = rediss://h/0\ntls_ca_file = tls/broken.crt\n");
    assert_one(
        &errs,
        &format!(
            "loglines.cfg:3 [redis] tls_ca_file: {} is not valid PEM",
            d.path().join("tls/broken.crt").display()
        ),
    );
}

#[test]
fn supervisor_section() {
    let d = Dir::new();
    assert_one(
        &d.errors("[supervisor]\nport = 127.0.0.1:http\n"),
        "loglines.cfg:2 [supervisor] port: `127.0.0.1:http` is not an address",
    );
    let cfg = d
        .load("[supervisor]\nport = 9001\nusername = guest\npassword = guest\n")
        .unwrap();
    assert!(cfg.warnings[0]
        .to_string()
        .contains("default guest/guest credentials"));
}

#[test]
fn garbage_lines_are_errors_with_their_line() {
    let d = Dir::new();
    assert_one(
        &d.errors("[redis]\nthis line means nothing\n"),
        "loglines.cfg:2: not a `key = value` line",
    );
}

/// Every key the code accepts is documented under its section kind, with the default and the
/// meaning the key table gives it: the table is the one place a default is written.
#[test]
fn every_key_is_documented_with_its_default() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let mut wrong = Vec::new();
    for key in loglines::config::keys::all() {
        let heading = loglines::config::keys::doc_heading(key.scope);
        let Some(start) = doc.find(&format!("\n## {heading}\n")) else {
            wrong.push(format!("no heading `## {heading}`"));
            continue;
        };
        let body = &doc[start + 4..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        let row = format!(
            "| `{}` | {} | {} |",
            key.name,
            key.default_text(),
            key.meaning
        );
        if !body.lines().any(|l| l == row) {
            wrong.push(format!("under `## {heading}`, the row\n  {row}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/configuration.md does not match the key table:\n{}",
        wrong.join("\n")
    );
}

/// What no section shows alone: loops in the queue graph, a file logger writing the log a
/// watcher follows, a queue written on one Redis and read on another.
#[test]
fn the_pipeline_as_a_whole_has_no_loop_no_log_read_back_and_no_split_queue() {
    let d = Dir::new();
    // A worker sending its successes back to its own queue.
    let own = WORKER.to_string() + "success_queue = q\n";
    assert_one(
        &d.errors(&own),
        "loglines.cfg:1 [worker_w]: the queues form a loop: [worker_w] -> `q` -> [worker_w]",
    );
    // Two brokers feeding each other, through a third queue.
    let brokers = "[worker_a]\ncommand = loglines broker\nlistento = a\nfanout = b\n\n\
                   [worker_b]\ncommand = loglines broker\nlistento = b\nfanout = c, x\n\n\
                   [worker_c]\ncommand = loglines broker\nlistento = c\nfanout = a\n\n\
                   [logger_x]\ncommand = loglines filelog\nlistento = x\nlogfile = logs/x.log\n";
    let errs = d.errors(brokers);
    assert_one(
        &errs,
        "loglines.cfg:1 [worker_a]: the queues form a loop: [worker_a] -> `b` -> [worker_b] -> `c` -> [worker_c] -> `a` -> [worker_a]",
    );
    assert_eq!(errs.len(), 1, "one loop, said once: {errs:?}");
    // Notices read back into the pipeline.
    let notices = WORKER.to_string() + "notify_queue = q\n";
    assert_one(
        &d.errors(&notices),
        "loglines.cfg:1 [worker_w]: the queues form a loop: [worker_w] -> `q` -> [worker_w]",
    );
    // A file logger writing the watched log (named two ways).
    let watch = "[logger_watch]\ncommand = loglines watch\nlogfile = logs/access.log\npushto = a\nservicename = s\n\n\
                 [logger_f]\ncommand = loglines filelog\nlistento = a\nlogfile = logs/../logs/access.log\n";
    let errs = d.errors(watch);
    assert!(
        errs.len() == 1
            && errs[0].starts_with("loglines.cfg:7 [logger_f] logfile: ")
            && errs[0].contains("logs/../logs/access.log is the log [logger_watch] follows"),
        "{errs:?}"
    );
    // ... or a file a watcher's glob matches.
    let glob = "[logger_watch]\ncommand = loglines watch\nlogfile =\n  logs/main.log\n  logs/*.log\npushto = a\nservicename = s\n\n\
                [logger_f]\ncommand = loglines filelog\nlistento = a\nlogfile = logs/sent.log\n";
    let errs = d.errors(glob);
    assert!(
        errs.len() == 1
            && errs[0].starts_with("loglines.cfg:9 [logger_f] logfile: ")
            && errs[0].contains("logs/sent.log is the log [logger_watch] follows"),
        "{errs:?}"
    );
    // A broker on [redis_test] writing what the file logger reads on [redis].
    let split = "[redis_test]\nport = 6379\n\n\
                 [worker_b]\ncommand = loglines broker\nlistento = a\nfanout = b\nredis = test\n\n\
                 [logger_f]\ncommand = loglines filelog\nlistento = b\nlogfile = logs/f.log\n";
    assert_one(
        &d.errors(split),
        "loglines.cfg:10 [logger_f] redis: reads `b` on [redis], but [worker_b] writes it on [redis_test]",
    );
}

/// A syntax error does not hide the rest: every problem of the file comes in one pass.
#[test]
fn a_syntax_error_and_the_other_problems_are_reported_together() {
    let d = Dir::new();
    let errs = d.errors(
        "[worker_w]\ncommand = loglines worker\nlistento q\nnumprocs = 999\nrepository_plugin = lua_plugins/p.lua\nendpoint_url = -\n\n\
         [logger_f]\ncommand = loglines filelog\nlistento = a\nlogfile = logs/f.log\nformat = xml\n",
    );
    assert_one(&errs, "loglines.cfg:3: not a `key = value` line");
    assert_one(
        &errs,
        "loglines.cfg:4 [worker_w] numprocs: `999` is out of range",
    );
    assert_one(
        &errs,
        "loglines.cfg:12 [logger_f] format: `xml` is not valid",
    );
}

/// A `process_*` program that cannot start on this machine is said, not left for supervisord
/// to report as FATAL (a warning: the section may run on another machine).
#[test]
fn a_process_program_that_does_not_exist_is_a_warning() {
    let d = Dir::new();
    let cfg = d
        .load("[process_a]\ncommand = /nonexistent/prog --x\n\n[process_b]\ncommand = sleep 10\n\n[process_c]\ncommand = nosuchprog-xyz\n\n[process_d]\ncommand = bin/prog\n")
        .unwrap();
    let warnings: Vec<String> = cfg.warnings.iter().map(|w| strip(&w.to_string())).collect();
    assert_one(&warnings, "loglines.cfg:2 [process_a] command: warning: /nonexistent/prog does not exist on this machine");
    assert_one(&warnings, "loglines.cfg:8 [process_c] command: warning: `nosuchprog-xyz` is not a program found in PATH");
    assert_one(
        &warnings,
        "loglines.cfg:11 [process_d] command: warning: `bin/prog` is a relative path",
    );
    assert_eq!(warnings.len(), 3, "sleep is in PATH: {warnings:?}");
}
