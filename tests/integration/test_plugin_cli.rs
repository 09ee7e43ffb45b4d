//! `loglines test-plugin` as an administrator runs it: the real binary, real files, exit codes.

use crate::support::plugin as plugin_util;

use plugin_util::Dir;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary in the crate's folder with no configuration in the environment.
fn loglines(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loglines"))
        .args(args)
        .current_dir(root())
        .env_remove("LOGLINES_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn runs_out_of_the_box_on_the_sample_log() {
    let out = loglines(&[
        "test-plugin",
        "lua_plugins/irus.lua",
        "tests/data/combined.log",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("\n28 lines: 14 would send, 14 not eligible, 0 errors; "),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("lines/s"), "{stdout}");
    // Line 2: what parseline returned, then the full URL.
    assert!(stdout.contains(
        "  send https://irus.jisc.ac.uk/counter/test/?url_ver=Z39.88-2004&req_dat=Mozilla%2F5.0+%28Windows+NT+10.0%3B+Win64%3B+x64%29+AppleWebKit%2F537.36+%28KHTML%2C+like+Gecko%29+Chrome%2F131.0.0.0+Safari%2F537.36&req_id=192.0.2.10&rfr_dat=https%3A%2F%2Frepo.example.ac.uk%2Fid%2Feprint%2F1234%2F&rfr_id=repo.example.ac.uk&rft.artnum=oai%3Arepo.example.ac.uk%3A1234&rft_dat=Request&svc_dat=https%3A%2F%2Frepo.example.ac.uk%2Fid%2Feprint%2F1234%2F1%2Fsmith2026-neutrino.pdf&url_tim=2026-11-27T09%3A00%3A07Z\n"
    ), "{stdout}");
    assert!(stdout.contains("  parseline -> {\"bytes\":1048576,\"ident\":\"-\",\"ip\":\"192.0.2.10\",\"item\":\"1234\",\"kind\":\"Request\""), "{stdout}");
    // Why lines are not sent.
    assert!(stdout.contains("line 4: 198.51.100.23"), "{stdout}");
    assert!(
        stdout.contains("  not eligible: status 206 is not 200 or 304\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  not eligible: COUNTER robot\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  not eligible: method HEAD is not GET\n"),
        "{stdout}"
    );
    // No progress bar: stderr is not a terminal here.
    assert_eq!(text(&out.stderr), "");
}

/// A sample log compressed by logrotate is read as it is: the same lines, the same verdicts.
#[test]
fn a_gzip_compressed_sample_gives_what_the_plain_one_does() {
    let dir = crate::support::temp_dir();
    let gz = dir.path().join("access.log.2.gz");
    crate::support::gzip(&root().join("tests/data/combined.log"), &gz, false);
    let plain = loglines(&[
        "test-plugin",
        "lua_plugins/irus.lua",
        "tests/data/combined.log",
        "--json",
    ]);
    let packed = loglines(&[
        "test-plugin",
        "lua_plugins/irus.lua",
        gz.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(packed.status.code(), Some(0), "{}", text(&packed.stderr));
    // Everything but the summary's timing.
    let body = |o: &Output| {
        let t = text(&o.stdout);
        t.lines()
            .filter(|l| !l.contains("\"summary\""))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(body(&packed), body(&plain));
    assert_eq!(body(&packed).len(), 28);
}

#[test]
fn json_output_is_one_object_per_line_and_a_summary() {
    let out = loglines(&[
        "test-plugin",
        "lua_plugins/ora.lua",
        "tests/data/ora-wsgi.log",
        "--json",
        "--service",
        "ora.bodleian.ox.ac.uk",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 7, "six lines and the summary");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["outcome"], "send");
    assert_eq!(lines[0]["parsed"]["dsid"], "ATTACHMENT02");
    assert_eq!(
        lines[0]["params"]["rft.artnum"],
        "oai:ora.bodleian.ox.ac.uk:uuid:c2c638d3-fc6c-4dd1-85c8-682f3e9f40a2"
    );
    assert!(lines[0]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://irus.jisc.ac.uk/counter/test/?url_ver=Z39.88-2004&"));
    assert_eq!(lines[4]["outcome"], "not_eligible");
    assert_eq!(lines[4]["reason"], "metadata datastream MODS");
    assert_eq!(lines[5]["reason"], "status 404 is not 200 or 204");
    let s = &lines[6]["summary"];
    assert_eq!(
        (&s["lines"], &s["send"], &s["not_eligible"], &s["errors"]),
        (
            &serde_json::json!(6),
            &serde_json::json!(1),
            &serde_json::json!(5),
            &serde_json::json!(0)
        )
    );
}

#[test]
fn a_line_that_raises_makes_the_exit_code_1_and_names_file_and_line() {
    let d = Dir::new();
    let plugin = d.write(
        "fragile.lua",
        "function parseline(jmsg)\n  local m = loglines.json.decode(jmsg)\n  if m.logline == 'boom' then error('cannot handle this') end\n  return m\nend\nfunction get_openurl_params(c, s, pl) return {line = pl.logline} end\n",
    );
    let log = d.write("s.log", "fine\nboom\nalso fine\n");
    let out = loglines(&[
        "test-plugin",
        plugin.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("fragile.lua:3: cannot handle this (in parseline)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 lines: 2 would send, 0 not eligible, 1 errors"),
        "{stdout}"
    );
}

#[test]
fn reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loglines"))
        .args(["test-plugin", "lua_plugins/irus.lua", "-", "--json"])
        .current_dir(root())
        .env_remove("LOGLINES_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET /5/ HTTP/1.1\" 200 1 \"-\" \"Firefox/133.0\"\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["outcome"], "send");
    assert_eq!(first["params"]["rft_dat"], "Investigation");
    assert_eq!(
        first["params"]["req_dat"], "Firefox/133.0",
        "the \\r is not part of the line"
    );
}

/// A configuration with a watcher and a worker running `plugin`.
fn config(d: &Dir, plugin: &Path, extra: &str) -> PathBuf {
    d.write(
        "loglines.cfg",
        &format!(
            "[logger_watch]\ncommand = loglines watch\npushto = q\nservicename = svc.example.org\nlogfile = {log}\n\n\
             [worker_w]\ncommand = loglines worker\nlistento = q\nrepository_plugin = {plugin}\n\
             endpoint_url = https://tracker.example/counter/?site=1\n\n{extra}",
            log = d.path().join("access.log").display(),
            plugin = plugin.display()
        ),
    )
}

#[test]
fn with_a_configuration_it_uses_the_workers_settings() {
    let d = Dir::new();
    let plugin = root().join("lua_plugins/irus.lua");
    let cfg = config(&d, &plugin, "[irus]\nreq_id = urn:ip\n");
    let out = loglines(&[
        "--config",
        cfg.to_str().unwrap(),
        "test-plugin",
        "lua_plugins/irus.lua",
        "tests/data/combined.log",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    // The endpoint of [worker_w], the service of the watcher, and [irus] req_id.
    assert!(first["url"]
        .as_str()
        .unwrap()
        .starts_with("https://tracker.example/counter/?site=1&url_ver=Z39.88-2004&"));
    assert_eq!(first["params"]["rfr_id"], "svc.example.org");
    assert_eq!(first["params"]["req_id"], "urn:ip:192.0.2.10");

    // The same through LOGLINES_CONFIG, and with --section named.
    let out = Command::new(env!("CARGO_BIN_EXE_loglines"))
        .args([
            "test-plugin",
            "lua_plugins/irus.lua",
            "tests/data/combined.log",
            "--section",
            "worker_w",
            "--json",
        ])
        .current_dir(root())
        .env("LOGLINES_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("urn:ip:192.0.2.10"));
}

/// As `--help` says, `--config` defaults to `loglines.cfg`: in a deployment's folder the plugin
/// gets that file's settings; a plugin no worker section there runs is run on its defaults,
/// with a word saying so.
#[test]
fn the_loglines_cfg_of_the_current_folder_is_read_as_help_says() {
    let d = Dir::new();
    let plugin = root().join("lua_plugins/irus.lua");
    config(&d, &plugin, "[irus]\nreq_id = urn:ip\n");
    let sample = root().join("tests/data/combined.log");
    let run = |plugin: &Path| {
        Command::new(env!("CARGO_BIN_EXE_loglines"))
            .args([
                "test-plugin",
                plugin.to_str().unwrap(),
                sample.to_str().unwrap(),
                "--json",
            ])
            .current_dir(d.path())
            .env_remove("LOGLINES_CONFIG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = run(&plugin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["params"]["req_id"], "urn:ip:192.0.2.10");
    assert_eq!(first["params"]["rfr_id"], "svc.example.org");

    let other = root().join("lua_plugins/template.lua");
    let out = run(&other);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("uses") && stderr.contains("running it without configuration"),
        "{stderr}"
    );
}

#[test]
fn usage_problems_exit_2_with_a_hint() {
    let d = Dir::new();
    let cfg = config(&d, &root().join("lua_plugins/irus.lua"), "");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "test-plugin".into(),
                "lua_plugins/nope.lua".into(),
                "tests/data/combined.log".into(),
            ],
            "lua_plugins/nope.lua does not exist",
        ),
        (
            vec![
                "test-plugin".into(),
                "lua_plugins/irus.lua".into(),
                "tests/data/nope.log".into(),
            ],
            "cannot read the sample log tests/data/nope.log",
        ),
        (
            vec![
                "-c".into(),
                cfg.display().to_string(),
                "test-plugin".into(),
                "lua_plugins/ora.lua".into(),
                "tests/data/ora-wsgi.log".into(),
            ],
            "no worker section of",
        ),
        (
            vec![
                "-c".into(),
                cfg.display().to_string(),
                "test-plugin".into(),
                "lua_plugins/irus.lua".into(),
                "tests/data/combined.log".into(),
                "--section".into(),
                "logger_watch".into(),
            ],
            "[logger_watch] in",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = loglines(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn a_plugin_that_does_not_load_exits_1() {
    let d = Dir::new();
    let plugin = d.write("broken.lua", "function parseline(\n");
    let out = loglines(&[
        "test-plugin",
        plugin.to_str().unwrap(),
        "tests/data/combined.log",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot load") && stderr.contains("broken.lua:2:"),
        "{stderr}"
    );
}

#[test]
fn check_reports_plugins_that_do_not_load() {
    let d = Dir::new();
    let good = config(&d, &root().join("lua_plugins/irus.lua"), "");
    let out = loglines(&["-c", good.to_str().unwrap(), "check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Plugins:\n  [worker_w] "), "{stdout}");
    assert!(stdout.contains("irus.lua: loaded"), "{stdout}");

    let bad = config(
        &d,
        &root().join("lua_plugins/irus.lua"),
        "[irus]\nreq_id = hmac\n",
    );
    let out = loglines(&["-c", bad.to_str().unwrap(), "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Where, as every configuration problem says: file, line, section, key. The plugin said
    // which of its settings is wrong (c:error_at): that key's section (hmac_secret is not
    // written, so the line of [irus]).
    assert!(
        stderr.contains(&format!(
            "{}:13 [irus] hmac_secret: is needed with req_id = hmac",
            bad.display()
        )) && stderr.contains("(read by ")
            && stderr.contains("the plugin of [worker_w])"),
        "{stderr}"
    );
    // Any other error of the plugin's is reported where the plugin is named.
    let plugin = d.path().join("broken.lua");
    std::fs::write(
        &plugin,
        "function init(c, s) error('no database') end\nfunction parseline(j) end\nfunction get_openurl_params(c, s, pl) end\n",
    )
    .unwrap();
    let broken = config(&d, &plugin, "");
    let out = loglines(&["-c", broken.to_str().unwrap(), "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:10 [worker_w] repository_plugin: ",
            broken.display()
        )) && stderr.contains("no database"),
        "{stderr}"
    );
}

/// On a terminal, a compressed sample gets a progress bar too: over its compressed bytes,
/// since the size of the text inside is not known until its end. `script` (util-linux, part
/// of every Debian system) gives the command a terminal.
#[test]
fn a_compressed_sample_on_a_terminal_shows_a_progress_bar_over_its_compressed_bytes() {
    let d = Dir::new();
    // Lines that do not compress to nothing: the bar is shown above 1 MiB.
    let mut log = String::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..60_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        log.push_str(&format!(
            "192.0.2.{} - - [27/Nov/2026:09:00:00 +0000] \"GET /id/eprint/{i}/1/f{x:x}.pdf HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\"\n",
            x % 250 + 1,
            x % 99_999
        ));
    }
    let plain = d.write("access.log", &log);
    let gz = d.path().join("access.log.2.gz");
    crate::support::gzip(&plain, &gz, false);
    assert!(std::fs::metadata(&gz).unwrap().len() > 1 << 20);
    let command = format!(
        "{} test-plugin {} {} > /dev/null",
        env!("CARGO_BIN_EXE_loglines"),
        root().join("lua_plugins/irus.lua").display(),
        gz.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(d.path())
        .env_remove("LOGLINES_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("`script` is needed (apt-get install bsdutils)");
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(" compressed ") && shown.contains("MiB/"),
        "no progress bar over the compressed bytes:\n{shown}"
    );
}
