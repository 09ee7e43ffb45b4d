//! The worker's promises beyond the happy path, through `loglines run --once` to a real tracker
//! stand-in: permanent rejections are dead-lettered with the status and body, notifications
//! reach a command and a queue, `method = HEAD` and `ratelimit` are honoured, and a plugin
//! changed on disk is reloaded between batches; and, over Redis, a stopped worker exits within
//! 5 s with the unsent messages back in order: a request the tracker is answering is let
//! finish (nothing sent twice), one to a hanging tracker is cut; the tracker is reached through
//! an HTTP proxy named in the environment, and a SOCKS one is left out with a warning.

use crate::support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::loggen;
use support::pipeline::{config_text, Options, Pipeline};

/// Rewrites the pipeline's config with extra lines appended to the worker section.
fn with_worker_keys(p: &Pipeline, extra: &str) {
    let text = config_text(None, &p.tracker.url(), &p.options);
    let text = text.replace(
        "other_queue = otherlog\n",
        &format!("other_queue = otherlog\n{extra}"),
    );
    std::fs::write(&p.config, text).unwrap();
}

fn run_once(p: &Pipeline) -> std::process::Output {
    p.command(&["run", "--once"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_permanent_rejection_is_dead_lettered_with_status_and_body_and_notified() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    let notices = p.path("notices.jsonl");
    with_worker_keys(
        &p,
        &format!(
            "notify_command = cat >> {} && echo \"$LOGLINES_EVENT $LOGLINES_SECTION\" >> {}.env\nnotify_queue = notices\nnotify_interval = 3600\n",
            notices.display(),
            notices.display()
        ),
    );
    // A file logger for the notices queue, so the notice can be read back.
    let mut cfg = std::fs::read_to_string(&p.config).unwrap();
    cfg.push_str("\n[logger_notices]\ncommand = loglines filelog\nlistento = notices\nlogfile = logs/notices.log\nformat = json\n");
    std::fs::write(&p.config, cfg).unwrap();
    p.tracker.reject(400, "unknown rft.artnum prefix");
    p.append(&loggen::lines(0, 40, 20)); // two downloads
    let out = run_once(&p);
    assert_eq!(
        out.status.code(),
        Some(1),
        "dead letters make --once exit 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead = p.lines_of("state/dead/pirus2.dead.jsonl");
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reason = serde_json::from_str::<serde_json::Value>(&dead[0]).unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("status 400") && reason.contains("unknown rft.artnum prefix"),
        "{reason}"
    );
    // One notice per kind per interval: two dead letters, one notice.
    assert!(support::wait_until(Duration::from_secs(5), || p
        .lines_of("notices.jsonl")
        .len()
        == 1));
    let notice: serde_json::Value = serde_json::from_str(&p.lines_of("notices.jsonl")[0]).unwrap();
    assert_eq!(notice["event"], "dead_letter");
    assert_eq!(notice["section"], "worker_pirus2");
    assert_eq!(notice["queue"], "pirus2");
    assert_eq!(
        p.lines_of("notices.jsonl.env"),
        vec!["dead_letter worker_pirus2"]
    );
    let queued = p.lines_of("logs/notices.log");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(queued[0].contains("\"event\":\"dead_letter\""));
}

#[test]
fn a_long_outage_is_notified_and_the_events_still_arrive() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        pauseonfail: 1,
        ..Options::default()
    });
    let notices = p.path("notices.jsonl");
    with_worker_keys(
        &p,
        &format!(
            "notify_command = cat >> {}\nnotify_after = 1\n",
            notices.display()
        ),
    );
    p.tracker.fail(503);
    p.append(&loggen::lines(0, 20, 20));
    let mut child: Child = p
        .command(&["run", "--once"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        support::wait_until(Duration::from_secs(15), || !p
            .lines_of("notices.jsonl")
            .is_empty()),
        "no tracker_down notice"
    );
    let notice: serde_json::Value = serde_json::from_str(&p.lines_of("notices.jsonl")[0]).unwrap();
    assert_eq!(notice["event"], "tracker_down");
    assert!(
        notice["reason"].as_str().unwrap().contains("503"),
        "{notice}"
    );
    p.tracker.ok();
    let status = support::wait_until(Duration::from_secs(15), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(
        status,
        "run --once did not finish after the tracker came back"
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        p.tracker
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .count(),
        1
    );
}

#[test]
fn method_head_and_ratelimit_are_honoured() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    with_worker_keys(&p, "method = HEAD\nratelimit = 0.2\n");
    p.append(&loggen::lines(0, 5, 1)); // five downloads
    let out = run_once(&p);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = p.tracker.requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs.iter().all(|r| r.method == "HEAD"));
    // A lower bound only: ratelimit promises at least this much time between requests.
    for w in reqs.windows(2) {
        assert!(
            w[1].at.duration_since(w[0].at) >= Duration::from_millis(190),
            "requests closer than ratelimit"
        );
    }
}

#[test]
fn a_plugin_changed_on_disk_is_reloaded_and_a_broken_one_is_not() {
    let dir = support::temp_dir();
    let plugin = dir.path().join("switch.lua");
    let version = |tag: &str| {
        format!(
            "function parseline(j) return loglines.json.decode(j) end\n\
             function get_openurl_params(c, s, pl) return {{ rft_dat = '{tag}', ['rft.artnum'] = pl.logline:match('/id/eprint/(%d+)/') }} end\n"
        )
    };
    std::fs::write(&plugin, version("one")).unwrap();
    let p = Pipeline::embedded(Options {
        workers: 1,
        plugin: plugin.display().to_string(),
        plugin_section: String::new(),
        ..Options::default()
    });
    let err = std::fs::File::create(p.path("run.err")).unwrap();
    let mut child = p
        .command(&["run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    // A change whose modification time moves by whole seconds, whatever the file system's
    // resolution and however fast the test runs.
    let loaded_at = std::fs::metadata(&plugin).unwrap().modified().unwrap();
    let change = |text: &str, secs: u64| {
        std::fs::write(&plugin, text).unwrap();
        let f = std::fs::File::options().write(true).open(&plugin).unwrap();
        f.set_modified(loaded_at + Duration::from_secs(secs))
            .unwrap();
    };
    p.append(&loggen::lines(0, 1, 1));
    assert!(p.tracker.wait_for(1, Duration::from_secs(10)));
    change(&version("two"), 10);
    // The worker looks at the plugin's files at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    p.append(&loggen::lines(1, 2, 1));
    assert!(p.tracker.wait_for(2, Duration::from_secs(10)));
    change("this is not lua (", 20);
    std::thread::sleep(Duration::from_millis(1100));
    p.append(&loggen::lines(2, 3, 1));
    assert!(p.tracker.wait_for(3, Duration::from_secs(10)));
    support::sigterm_exits_0_within_5s(&mut child);
    let tags: Vec<String> = p
        .tracker
        .requests()
        .iter()
        .map(|r| r.param("rft_dat").unwrap_or_default())
        .collect();
    assert_eq!(
        tags,
        vec!["one", "two", "two"],
        "reloaded once, the broken version kept out"
    );
    let log = std::fs::read_to_string(p.path("run.err")).unwrap();
    assert!(
        log.contains("cannot be loaded, keeping the previous version"),
        "{log}"
    );
}

/// The worker section's queue (over Redis), oldest first; LPUSH puts the newest at the head.
fn queued(p: &Pipeline, queue: &str) -> Vec<String> {
    let mut v: Vec<String> = redis::cmd("LRANGE")
        .arg(queue)
        .arg(0)
        .arg(-1)
        .query(&mut p.redis.as_ref().unwrap().conn())
        .unwrap();
    v.reverse();
    v
}

/// Keys of the worker's in-flight lists that still hold something.
fn in_flight(p: &Pipeline) -> Vec<String> {
    let mut con = p.redis.as_ref().unwrap().conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("pirus2:inflight:*")
        .query(&mut con)
        .unwrap();
    keys.into_iter()
        .filter(|k| redis::cmd("LLEN").arg(k).query::<u64>(&mut con).unwrap() > 0)
        .collect()
}

/// A Redis pipeline with one worker (batch 50, `timeout = 60`, the default) whose queue holds
/// `lines` downloads, numbered from 0.
fn worker_with_downloads(lines: u64) -> Pipeline {
    worker_with_downloads_and(lines, Options::default())
}

/// [`worker_with_downloads`] with other options (a plugin of the test's own, say).
fn worker_with_downloads_and(lines: u64, options: Options) -> Pipeline {
    let p = Pipeline::redis(Options {
        workers: 1,
        batch_size: Some(50),
        ..options
    });
    // The watcher section feeds the worker's queue directly; `timeout = 60` is far beyond the
    // 5 s a stopping worker has.
    let cfg = std::fs::read_to_string(&p.config)
        .unwrap()
        .replace("pushto = loglines", "pushto = pirus2")
        .replace("timeout = 5\n", "timeout = 60\n");
    std::fs::write(&p.config, cfg).unwrap();
    let mut push = p
        .command(&["push", "--section", "logger_watch"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    push.stdin
        .take()
        .unwrap()
        .write_all(loggen::lines(0, lines, 1).as_bytes())
        .unwrap();
    assert!(push.wait().unwrap().success());
    assert_eq!(queued(&p, "pirus2").len(), lines as usize);
    p
}

/// Stops every process with SIGTERM; asserts exit 0 within 5 s and no outage logged.
fn stop_within_5_s(p: &mut Pipeline) {
    let t = Instant::now();
    let codes = p.stop_all();
    let took = t.elapsed();
    assert_eq!(codes, vec![("worker_pirus2:0".to_string(), Some(0))]);
    assert!(
        took < Duration::from_secs(5),
        "stopping took {took:?}\n{}",
        p.outputs()
    );
    let out = p.outputs();
    assert!(
        !out.contains("tracker unreachable"),
        "a stop is not an outage:\n{out}"
    );
}

/// After a stop: nothing in flight, the unsent messages back in the queue in log order right
/// after the accepted ones; then a restarted worker sends the rest, in order. Returns how many
/// were accepted before the stop.
fn rest_is_back_in_order_and_sent_after_a_restart(p: &mut Pipeline, lines: u64) -> usize {
    let accepted = p.accepted_numbers();
    let back: Vec<u64> = queued(p, "pirus2")
        .iter()
        .map(|m| support::loggen::number_of(m).expect("a generated line"))
        .collect();
    assert!(in_flight(p).is_empty(), "{:?}", in_flight(p));
    let first_back = *back.first().expect("something is back in the queue");
    assert_eq!(
        back,
        (first_back..lines).collect::<Vec<_>>(),
        "returned in order"
    );
    assert_eq!(
        accepted,
        (0..first_back).collect::<Vec<_>>(),
        "accepted in order, each once, up to the first one returned"
    );
    p.tracker.ok();
    p.tracker.delay(Duration::ZERO);
    p.start("worker_pirus2", 0);
    assert!(
        support::wait_until(Duration::from_secs(30), || p.accepted_numbers().len()
            >= lines as usize),
        "the rest was not sent\n{}",
        p.outputs()
    );
    // A request cut at the stop may still be answered (and recorded) by the slow tracker.
    assert!(support::wait_until(Duration::from_secs(10), || p
        .tracker
        .delaying()
        == 0));
    assert_eq!(
        p.accepted_numbers(),
        (0..lines).collect::<Vec<_>>(),
        "no duplicates"
    );
    assert_eq!(p.stop_all(), vec![("worker_pirus2:0".to_string(), Some(0))]);
    accepted.len()
}

#[test]
fn sigterm_while_the_tracker_hangs_returns_the_batch_in_order_within_5_s() {
    const LINES: u64 = 120;
    let mut p = worker_with_downloads(LINES);
    p.start("worker_pirus2", 0);
    assert!(
        p.tracker.wait_for(10, Duration::from_secs(20)),
        "the worker did not start sending\n{}",
        p.outputs()
    );
    p.tracker.hang();
    assert!(
        support::wait_until(Duration::from_secs(10), || p.tracker.unanswered() >= 1),
        "no request reached the hanging tracker\n{}",
        p.outputs()
    );
    // The hung request is cut after the grace period, and it and the rest go back.
    stop_within_5_s(&mut p);
    rest_is_back_in_order_and_sent_after_a_restart(&mut p, LINES);
}

#[test]
fn sigterm_lets_a_request_the_tracker_is_answering_finish_so_nothing_is_sent_twice() {
    const LINES: u64 = 60;
    let mut p = worker_with_downloads(LINES);
    // A slow tracker that answers: every request takes 0.4 s, well within the 2 s grace.
    p.tracker.delay(Duration::from_millis(400));
    p.start("worker_pirus2", 0);
    assert!(
        p.tracker.wait_for(1, Duration::from_secs(20))
            && support::wait_until(Duration::from_secs(10), || p.tracker.delaying() == 1),
        "no request in progress\n{}",
        p.outputs()
    );
    stop_within_5_s(&mut p);
    // The request in progress at the stop was answered and acked, not cut and requeued.
    let before = rest_is_back_in_order_and_sent_after_a_restart(&mut p, LINES);
    assert!(
        before >= 2,
        "the request in progress at the stop finished: {before} accepted"
    );
}

/// A minimal HTTP CONNECT proxy on 127.0.0.1: answers each CONNECT with 200 and then relays
/// bytes both ways. Returns its port and the number of tunnels it opened.
fn connect_proxy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = std::sync::Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let target = match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["CONNECT", target, _] => target.to_string(),
                    _ => return,
                };
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                        break;
                    }
                }
                let upstream = TcpStream::connect(&target).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let mut c = client;
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let (mut up_r, mut c_w) = (upstream.try_clone().unwrap(), c.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut up_r, &mut c_w));
                let mut up_w = upstream;
                // What the reader already buffered belongs to the tunnel too.
                up_w.write_all(reader.buffer()).unwrap();
                let _ = std::io::copy(reader.get_mut(), &mut up_w);
            });
        }
    });
    (port, tunnels)
}

/// The command without any proxy settings inherited from the machine running the tests.
fn without_proxies(mut c: std::process::Command) -> std::process::Command {
    for v in ["ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"] {
        c.env_remove(v).env_remove(v.to_lowercase());
    }
    c
}

#[test]
fn the_tracker_is_reached_through_an_http_proxy_and_a_socks_one_is_left_out() {
    let p = Pipeline::embedded(Options {
        workers: 1,
        ..Options::default()
    });
    p.append(&loggen::lines(0, 40, 20)); // two downloads
    let (port, tunnels) = connect_proxy();
    let out = without_proxies(p.command(&["run", "--once"]))
        .env("HTTP_PROXY", format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.accepted_numbers(), vec![0, 20]);
    assert!(
        tunnels.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the requests went through the proxy"
    );

    p.tracker.clear();
    p.append(&loggen::lines(40, 60, 20)); // one more download
    let out = without_proxies(p.command(&["run", "--once"]))
        .env("ALL_PROXY", "socks5://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SOCKS proxy"), "{stderr}");
    assert_eq!(p.accepted_numbers(), vec![40], "sent directly");
}

#[test]
fn sigterm_does_not_wait_for_the_plugin_on_the_rest_of_the_batch() {
    const LINES: u64 = 100;
    // A plugin that looks each message up on a server that never answers (a Solr that hangs),
    // 2 s each, and finds no event: without the stop reaching the look-up and the plugin
    // thread, a stop would wait for the rest of the batch, 2 s a message.
    let solr = support::tracker::Tracker::start();
    solr.hang();
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("lookup.lua");
    std::fs::write(
        &plugin,
        format!(
            "function parseline(m) return {{m = m}} end\n\
             function get_openurl_params(c, s, pl)\n\
             loglines.http_get('{}', {{timeout = 2, cache = 0}})\n\
             return nil\n\
             end\n",
            solr.url()
        ),
    )
    .unwrap();
    let mut p = worker_with_downloads_and(
        LINES,
        Options {
            plugin: plugin.display().to_string(),
            plugin_section: String::new(),
            ..Options::default()
        },
    );
    p.start("worker_pirus2", 0);
    assert!(
        support::wait_until(Duration::from_secs(20), || solr.unanswered() >= 1),
        "the plugin did not start looking up\n{}",
        p.outputs()
    );
    stop_within_5_s(&mut p);
    // Nothing was sent or acked; everything is back in the queue, in order.
    assert!(in_flight(&p).is_empty(), "{:?}", in_flight(&p));
    let back: Vec<u64> = queued(&p, "pirus2")
        .iter()
        .map(|m| support::loggen::number_of(m).expect("a generated line"))
        .collect();
    let first = back[0];
    assert_eq!(back, (first..LINES).collect::<Vec<_>>());
    assert!(first <= 1, "at most the first look-up finished: {first}");
}

/// The worker's transport re-arms a read's timeout with only the time left after a signal
/// interrupts it (SIGHUP from logrotate, say), so signals cannot stretch a wait for the
/// tracker. Here, not beside the transport: signalling one thread takes libc's pthread_kill,
/// and the crate itself has no unsafe code outside the Lua bindings.
#[test]
fn signals_do_not_stretch_a_tracker_read_beyond_its_timeout() {
    use loglines::roles::worker::tracker::transport::TrackerTcp;
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use ureq::unversioned::transport::{LazyBuffers, NextTimeout, Transport};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let mut t = TrackerTcp::new(client, LazyBuffers::new(1024, 1024));
    // A handler, so SIGUSR1 interrupts the read rather than ending the test process.
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGUSR1, flag.clone()).unwrap();
    // SAFETY: pthread_self of this (the reading) thread, signalled while it lives.
    let me = unsafe { libc::pthread_self() } as usize;
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    // Signals for 3 s at most, so that without the rule the test fails instead of hanging.
    let pester = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(3);
        while !d.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(150));
            if !d.load(Ordering::SeqCst) {
                unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR1) };
            }
        }
    });
    let timeout = NextTimeout {
        after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(1)),
        ..NextTimeout::default()
    };
    let started = Instant::now();
    let r = t.await_input(timeout);
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    pester.join().unwrap();
    assert!(flag.load(Ordering::SeqCst), "the read was interrupted");
    assert!(matches!(r, Err(ureq::Error::Timeout(_))), "{r:?}");
    // Without the remaining-time rule every signal restarts the full second.
    assert!(took < Duration::from_millis(1900), "{took:?}");
}

/// A role asked to stop while it is still starting (here: connecting to a Redis that accepts
/// the connection and never answers) stops cleanly, exit 0, with no error: nothing was taken.
#[test]
fn a_worker_stopped_while_it_connects_exits_0_without_an_error() {
    let dir = support::temp_dir();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let plugin = support::crate_root().join("lua_plugins/irus.lua");
    let cfg = dir.path().join("loglines.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\nhost = 127.0.0.1\nport = {port}\n\n[worker_pirus2]\ncommand = loglines worker\n\
             listento = pirus2\nrepository_plugin = {}\nendpoint_url = -\n",
            plugin.display()
        ),
    )
    .unwrap();
    let err = dir.path().join("stderr.log");
    let mut child = support::bin::loglines()
        .arg("--config")
        .arg(&cfg)
        .args(["worker", "--section", "worker_pirus2"])
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // Connected (the plugin is loaded before that): the worker waits for Redis's answer.
    let (_connection, _) = silent.accept().unwrap();
    support::sigterm_exits_0_within_5s(&mut child);
    let err = std::fs::read_to_string(&err).unwrap();
    assert!(!err.contains("loglines:"), "{err}");
}

/// A worker (as [`worker_with_downloads_and`]) whose plugin runs `before` on each line with an
/// instruction limit out of reach, so that it can spin for good.
fn worker_with_spinning_plugin(
    dir: &tempfile::TempDir,
    lines: u64,
    name: &str,
    before: &str,
) -> Pipeline {
    let plugin = support::plugin::line_plugin(dir.path(), name, before);
    worker_with_downloads_and(
        lines,
        Options {
            plugin: plugin.to_str().unwrap().to_string(),
            plugin_section: String::new(),
            worker_keys: format!("plugin_max_instructions = {}\n", u64::MAX >> 1),
            ..Options::default()
        },
    )
}

/// A plugin call that does not return (here a backtracking string pattern under a limit raised
/// out of reach, standing in for anything that runs in C) does not keep the worker from
/// stopping: SIGTERM ends it within 5 s, saying why, and the message it was on is not lost (it
/// is still in the worker's in-flight list).
#[test]
fn sigterm_stops_a_worker_whose_plugin_is_stuck_in_a_string_pattern() {
    let dir = support::temp_dir();
    let mut p = worker_with_spinning_plugin(
        &dir,
        3,
        "stuck.lua",
        "string.find(string.rep('a', 3000), '.-.-.-.-.-.-b')",
    );
    p.start("worker_pirus2", 0);
    // Taken (in flight), and the plugin busy on the first of them.
    assert!(
        support::wait_until(Duration::from_secs(20), || in_flight(&p).len() == 1),
        "{}",
        p.outputs()
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let codes = p.stop_all();
    let took = t.elapsed();
    let out = p.outputs();
    assert!(
        took < Duration::from_secs(5),
        "stopping took {took:?}\n{out}"
    );
    assert!(
        out.contains("still running 3s after the stop"),
        "{codes:?}\n{out}"
    );
    // Nothing lost: the three messages are in flight or back in the queue.
    let mut con = p.redis.as_ref().unwrap().conn();
    let mut held = queued(&p, "pirus2").len();
    for k in in_flight(&p) {
        held += redis::cmd("LLEN").arg(&k).query::<usize>(&mut con).unwrap();
    }
    assert_eq!(held, 3, "{out}");
}

/// A message that is in hand every time a worker stops without finishing it (here: the plugin
/// spins on it and the worker is killed, as supervisord or the OOM killer would) does not stop
/// the queue for good. What a killed worker held is taken again one message at a time, so the
/// count is the message's own; after the 3rd such stop it is dead-lettered with the reason, and
/// the messages beside it are delivered.
#[test]
fn a_message_in_hand_whenever_a_worker_is_killed_is_dead_lettered_after_three_attempts() {
    let dir = support::temp_dir();
    let mut p = worker_with_spinning_plugin(
        &dir,
        5,
        "spin.lua",
        "if m.logline:find('/id/eprint/0/', 1, true) then while true do end end",
    );
    let mut con = p.redis.as_ref().unwrap().conn();
    let attempts = |con: &mut redis::Connection| -> Vec<u32> {
        redis::cmd("HVALS")
            .arg("pirus2:attempts")
            .query(con)
            .unwrap()
    };
    p.start("worker_pirus2", 0);
    // The whole batch in hand, the plugin spinning on its first message.
    assert!(
        support::wait_until(Duration::from_secs(20), || queued(&p, "pirus2").is_empty()
            && !in_flight(&p).is_empty()),
        "{}",
        p.outputs()
    );
    for attempt in 1..=3u32 {
        p.kill_and_restart("worker_pirus2", 0);
        // Taken again alone, the attempt counted.
        assert!(
            support::wait_until(Duration::from_secs(20), || attempts(&mut con)
                == vec![attempt]),
            "attempt {attempt}: {:?}\n{}",
            attempts(&mut con),
            p.outputs()
        );
    }
    p.kill_and_restart("worker_pirus2", 0);
    let done = support::wait_until(Duration::from_secs(30), || {
        p.tracker.count() == 4
            && redis::cmd("LLEN")
                .arg("pirus2:dead")
                .query::<u64>(&mut con)
                .unwrap()
                == 1
    });
    let out = p.outputs();
    p.stop_all();
    assert!(done, "{} sent\n{out}", p.tracker.count());
    let dead: Vec<String> = redis::cmd("LRANGE")
        .arg("pirus2:dead")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    let letter: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains("3 consumers stopped without finishing this message"),
        "{reason}"
    );
    assert!(
        letter["message"]
            .as_str()
            .unwrap()
            .contains("/id/eprint/0/"),
        "{letter}"
    );
    let mut sent = p.accepted_numbers();
    sent.sort();
    assert_eq!(sent, vec![1, 2, 3, 4]);
    // Nothing left marked: every suspect was finished.
    assert!(attempts(&mut con).is_empty(), "{:?}", attempts(&mut con));
    assert!(out.contains("taken again one at a time"), "{out}");
}
