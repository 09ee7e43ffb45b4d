//! What the worker must not take as delivery, and what it must not take for an outage: a
//! tracker that redirects (to a maintenance page answering 200) is an outage, never acceptance;
//! a request our HTTP client cannot make (a URL over 64 KiB) is dead-lettered at once instead of
//! retried forever with everything behind it waiting; a log line as long as Apache allows still
//! gives a URL a real server takes (the shipped plugins cut the free-text parameters); and
//! `test-plugin` says what the worker would do with each.

use crate::support;

use std::process::Stdio;
use std::time::Duration;
use support::bin::{assert_exit, output_within, text};
use support::loggen;
use support::pipeline::{Options, Pipeline};
use support::tracker::Tracker;

/// A plugin that sends every line as it is, in `req_dat`: the URL is as long as the line.
const ECHO_PLUGIN: &str = r#"
function parseline(jmsg)
  return { line = loglines.json.decode(jmsg).logline }
end
function get_openurl_params(c, worker_section, pl)
  return { url_tim = "2026-12-05T10:00:00Z", req_id = "192.0.2.1", req_dat = pl.line,
           ["rft.artnum"] = "oai:repo.example.ac.uk:1", rft_dat = "Request" }
end
"#;

/// An embedded pipeline with one worker running `plugin` (a path), or irus.lua when None.
fn pipeline(plugin: Option<&str>) -> Pipeline {
    let mut o = Options {
        workers: 1,
        pauseonfail: 1,
        ..Options::default()
    };
    if let Some(p) = plugin {
        o.plugin = p.to_string();
    }
    Pipeline::embedded(o)
}

/// An echo-plugin pipeline (the plugin file lives in the pipeline's folder).
fn echo_pipeline() -> Pipeline {
    let dir = support::temp_dir();
    let path = dir.path().join("echo.lua");
    std::fs::write(&path, ECHO_PLUGIN).unwrap();
    let p = pipeline(Some(path.to_str().unwrap()));
    // The plugin must outlive the pipeline's runs: keep its folder with the pipeline's.
    std::fs::copy(&path, p.path("echo.lua")).unwrap();
    let cfg = std::fs::read_to_string(&p.config)
        .unwrap()
        .replace(path.to_str().unwrap(), p.path("echo.lua").to_str().unwrap());
    std::fs::write(&p.config, cfg).unwrap();
    p
}

#[test]
fn a_redirect_is_an_outage_not_a_delivery_and_its_location_is_logged_once() {
    let p = pipeline(None);
    // The maintenance page: answers 200 to anything, and must never see an event.
    let maintenance = Tracker::start();
    let location = format!("{}maintenance.html", maintenance.base_url());
    p.tracker.redirect(302, &location);
    p.append(&loggen::lines(0, 40, 20)); // two downloads
    let stderr = p.path("stderr.log");
    let mut child = p
        .command(&["run", "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // Retried (three redirects seen), not taken as delivered nor followed.
    let retried = support::wait_until(Duration::from_secs(20), || p.tracker.count() >= 3);
    let redirected = p.tracker.requests();
    if !retried {
        let _ = child.kill();
    }
    assert!(retried, "the redirect was not retried: {redirected:?}");
    assert!(redirected.iter().all(|r| r.status == 302), "{redirected:?}");
    assert_eq!(maintenance.count(), 0, "the redirect was followed");
    assert!(
        p.lines_of("logs/articles.log").is_empty(),
        "redirected events were logged as sent"
    );
    p.tracker.ok();
    let ended = support::wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    assert!(ended, "run --once did not end once the tracker answered");
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{log}");
    let accepted: Vec<_> = p
        .tracker
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(p.lines_of("logs/articles.log").len(), 2);
    assert_eq!(maintenance.count(), 0);
    // The outage is logged when it starts, naming where the tracker sent us, and not again
    // for every retry.
    assert_eq!(log.matches(&location).count(), 1, "{log}");
    assert!(log.contains("302") && log.contains("endpoint_url"), "{log}");
}

#[test]
fn a_url_the_http_client_cannot_send_is_dead_lettered_and_the_rest_delivered() {
    let p = echo_pipeline();
    let long = "x".repeat(70_000);
    p.append(&format!("first\n{long}\nlast\n"));
    let out = output_within(&p.config, &["run", "--once"], Duration::from_secs(30));
    // Dead letters make --once exit 1; before, the run never ended.
    assert_exit(&out, 1);
    let (reason, dead) = p.only_dead_letter("pirus2");
    assert!(
        reason.contains("cannot send this URL") && reason.contains("too long"),
        "{reason}"
    );
    // The reason quotes the start of the URL, not all 70 KB of it; the message keeps the line.
    assert!(reason.len() < 3_000, "{} bytes", reason.len());
    assert!(dead.contains(&long));
    // Our side's failure is no tracker outage.
    assert!(
        !text(&out.stderr).contains("unreachable"),
        "{}",
        text(&out.stderr)
    );
    let sent: Vec<_> = p
        .tracker
        .requests()
        .iter()
        .map(|r| r.param("req_dat").unwrap())
        .collect();
    assert_eq!(sent, vec!["first", "last"]);
}

/// With `concurrency` above 1 each connection's output buffer is 32 KiB (memory for 128 of
/// them): a longer request is dead-lettered as one the client cannot send, the rest delivered.
#[test]
fn with_a_window_a_request_over_32_kib_is_dead_lettered_and_the_rest_delivered() {
    let p = echo_pipeline();
    let cfg = std::fs::read_to_string(&p.config).unwrap();
    let cfg = cfg.replace("[worker_pirus2]\n", "[worker_pirus2]\nconcurrency = 4\n");
    std::fs::write(&p.config, cfg).unwrap();
    let long = "y".repeat(40_000);
    p.append(&format!("first\n{long}\nlast\n"));
    let out = output_within(&p.config, &["run", "--once"], Duration::from_secs(30));
    assert_exit(&out, 1);
    let (reason, dead) = p.only_dead_letter("pirus2");
    assert!(reason.contains("cannot send this request"), "{reason}");
    assert!(dead.contains(&long));
    assert!(
        !text(&out.stderr).contains("unreachable"),
        "{}",
        text(&out.stderr)
    );
    let mut sent: Vec<_> = p
        .tracker
        .requests()
        .iter()
        .map(|r| r.param("req_dat").unwrap())
        .collect();
    sent.sort();
    assert_eq!(sent, vec!["first", "last"]);
}

#[test]
fn a_rejection_with_a_large_answer_is_dead_lettered_with_the_start_of_it() {
    let p = pipeline(None);
    let answer = format!("unknown item: {}", "x".repeat(200_000));
    p.tracker.reject(404, &answer);
    p.append(&loggen::lines(0, 20, 20)); // one download
    let out = output_within(&p.config, &["run", "--once"], Duration::from_secs(30));
    assert_exit(&out, 1);
    let (reason, _) = p.only_dead_letter("pirus2");
    assert!(
        reason.contains("status 404") && reason.contains("unknown item: xxx"),
        "{reason}"
    );
}

/// A download whose path, referer and user agent are each about 8,100 characters, as Apache's
/// default limits allow: a 24 KB log line.
fn longest_download() -> String {
    format!(
        "198.51.100.9 - - [05/Dec/2026:10:00:00 +0000] \"GET /id/eprint/7/1/{path}.pdf HTTP/1.1\" 200 1234 \"https://spam.example/{referer}\" \"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 {ua}\"",
        path = "%C3%A9".repeat(1_350),
        referer = "a/b;é".repeat(1_600),
        ua = "(;)".repeat(2_680),
    )
}

#[test]
fn a_download_with_a_huge_path_referer_and_user_agent_is_still_counted() {
    let p = pipeline(None);
    // As Apache refuses a longer request line by default.
    p.tracker.limit_request_line(8_190);
    let line = longest_download();
    assert!(line.len() > 24_000, "{}", line.len());
    p.append(&format!("{line}\n{}", loggen::lines(20, 21, 20)));
    let out = output_within(&p.config, &["run", "--once"], Duration::from_secs(30));
    assert_exit(&out, 0);
    let requests = p.tracker.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
    let long = &requests[0];
    assert_eq!(long.param("req_dat").unwrap().len(), 600);
    // At most 600 bytes, one less when the cut would fall inside a 2-byte "é".
    let referer = long.param("rfr_dat").unwrap();
    assert!(
        referer.len() == 600 || referer.len() == 599,
        "{}",
        referer.len()
    );
    assert!(!referer.contains('\u{FFFD}'), "a character was split");
    assert!(long.param("svc_dat").unwrap().len() <= 1_000);
    assert_eq!(
        long.param("rft.artnum").as_deref(),
        Some("oai:repo.example.ac.uk:7")
    );
}

#[test]
fn test_plugin_says_which_events_the_worker_would_dead_letter() {
    let p = echo_pipeline();
    let sample = p.path("sample.log");
    std::fs::write(&sample, format!("short\n{}\n", "y".repeat(70_000))).unwrap();
    let plugin = p.path("echo.lua");
    let args = [
        "test-plugin",
        plugin.to_str().unwrap(),
        sample.to_str().unwrap(),
    ];
    let out = output_within(&p.config, &args, Duration::from_secs(30));
    assert_exit(&out, 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("would be dead-lettered: the HTTP client cannot send this URL"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("2 lines: 1 would send, 0 not eligible, 0 errors, 1 would be dead-lettered"),
        "{stdout}"
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = output_within(&p.config, &json_args, Duration::from_secs(30));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["outcome"], "send");
    assert_eq!(lines[1]["outcome"], "dead_letter");
    assert!(lines[1]["reason"].as_str().unwrap().contains("too long"));
    assert_eq!(lines[2]["summary"]["dead_letter"], 1);

    // The shipped plugin's cuts keep the longest line Apache writes sendable.
    std::fs::write(&sample, format!("{}\n", longest_download())).unwrap();
    let irus = support::crate_root().join("lua_plugins/irus.lua");
    let out = output_within(
        &p.config,
        &[
            "test-plugin",
            irus.to_str().unwrap(),
            sample.to_str().unwrap(),
            "--section",
            "worker_pirus2",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert_exit(&out, 0);
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["outcome"], "send");
    let url = first["url"].as_str().unwrap();
    assert!(url.len() < 8_190, "{} bytes", url.len());
}
