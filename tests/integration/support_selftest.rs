//! Proves the test harnesses in `tests/integration/support/` do what other tests rely on them for.
//!
//! Uses real processes and sockets only: a real redis-server, a real supervisord, and real
//! HTTP clients (raw sockets and ureq) against the tracker.

use crate::support;

use loglines::commands::supervisor::rpc::basic_auth;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::redis::{find_redis_server, Options, RedisServer};
use support::supervisord::{
    find_supervisor_binary, parse_process_info, supervisorctl, try_get_process_details,
    SupervisorConfig, Supervisord,
};
use support::tracker::{parse_query, Tracker};
use support::{free_port, process_alive, temp_dir, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers for talking HTTP by hand, so keep-alive and failure modes are observed directly.

/// A response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connect(t: &Tracker) -> BufReader<TcpStream> {
    let s = TcpStream::connect(t.addr()).expect("connect to tracker");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    BufReader::new(s)
}

fn send(conn: &mut BufReader<TcpStream>, method: &str, target: &str) {
    let req =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: selftest\r\n\r\n");
    conn.get_mut()
        .write_all(req.as_bytes())
        .expect("write request");
}

/// Reads one response; `head` means the request was HEAD (no body even with Content-Length).
fn read_response(conn: &mut BufReader<TcpStream>, head: bool) -> std::io::Result<RawResponse> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header line");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut r = RawResponse {
        status,
        headers,
        body: String::new(),
    };
    let len: usize = r
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    if !head {
        let mut body = vec![0; len];
        conn.read_exact(&mut body)?;
        r.body = String::from_utf8(body).unwrap();
    }
    Ok(r)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// True once the peer has closed the connection (read returns 0 or a reset).
fn closed_by_peer(conn: &mut BufReader<TcpStream>) -> bool {
    conn.get_ref()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Tracker

#[test]
fn tracker_records_requests_with_decoded_parameters() {
    let t = Tracker::start();
    assert_eq!(
        t.url(),
        format!("http://127.0.0.1:{}/counter/test/", t.port())
    );
    let url = format!(
        "{}?url_ver=Z39.88-2004&url_tim=2010-10-17T03%3A04%3A42Z&req_dat=Mozilla%2F5.0+(X11%3B+Linux)\
         &rft.artnum=oai%3Aora.ox.ac.uk%3Auuid%3A1234&rfr_dat=&svc_dat=http%3A%2F%2Fx%2Fa%2Bb.pdf",
        t.url()
    );
    let before = Instant::now();
    let mut resp = agent(Duration::from_secs(5)).get(&url).call().expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.body_mut().read_to_string().unwrap(), "OK\n");

    assert_eq!(t.count(), 1);
    let reqs = t.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.status, 200);
    assert_eq!(r.path(), "/counter/test/");
    assert!(
        r.target.starts_with("/counter/test/?url_ver=Z39.88-2004&"),
        "{}",
        r.target
    );
    assert!(r.at >= before && r.at <= Instant::now());
    assert_eq!(r.param("url_ver").as_deref(), Some("Z39.88-2004"));
    assert_eq!(r.param("url_tim").as_deref(), Some("2010-10-17T03:04:42Z"));
    assert_eq!(
        r.param("req_dat").as_deref(),
        Some("Mozilla/5.0 (X11; Linux)")
    );
    assert_eq!(
        r.param("rft.artnum").as_deref(),
        Some("oai:ora.ox.ac.uk:uuid:1234")
    );
    assert_eq!(r.param("rfr_dat").as_deref(), Some(""));
    assert_eq!(r.param("svc_dat").as_deref(), Some("http://x/a+b.pdf"));
    assert_eq!(r.param("absent"), None);
    assert_eq!(r.params().len(), 6);
}

#[test]
fn parse_query_decodes_form_urlencoding() {
    let q = parse_query("a=1+2&b=%2B%26%3D&&c&d=caf%C3%A9&e=100%&f=%zz&a=again");
    let expected = [
        ("a", "1 2"),
        ("b", "+&="),
        ("c", ""),
        ("d", "café"),
        ("e", "100%"),
        ("f", "%zz"),
        ("a", "again"),
    ];
    let got: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, expected);
    assert!(parse_query("").is_empty());
}

#[test]
fn tracker_keeps_connections_alive() {
    let t = Tracker::start();
    let mut c = connect(&t);
    for i in 0..5 {
        send(&mut c, "GET", &format!("/counter/test/?n={i}"));
        let r = read_response(&mut c, false).expect("response");
        assert_eq!((r.status, r.body.as_str()), (200, "OK\n"));
        assert_eq!(
            r.header("connection"),
            None,
            "HTTP/1.1 keep-alive needs no header"
        );
    }
    // HEAD gets the headers (with the GET body's length) but no body; if a body were sent the
    // next response on this connection would be misread.
    send(&mut c, "HEAD", "/counter/test/?n=head");
    let r = read_response(&mut c, true).unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("3")));
    // Pipelined: three requests in one write, three responses in order.
    let three: String = (5..8)
        .map(|i| format!("GET /counter/test/?n={i} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    c.get_mut().write_all(three.as_bytes()).unwrap();
    for _ in 0..3 {
        assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    }
    let reqs = t.requests();
    assert_eq!(reqs.len(), 9);
    assert!(
        reqs.iter().all(|r| r.conn == reqs[0].conn),
        "all on one connection: {reqs:?}"
    );
    let ns: Vec<String> = reqs.iter().map(|r| r.param("n").unwrap()).collect();
    assert_eq!(ns, ["0", "1", "2", "3", "4", "head", "5", "6", "7"]);
    assert_eq!(reqs[5].method, "HEAD");

    // ureq (what the worker uses) reuses its pooled connection too.
    t.clear();
    let a = agent(Duration::from_secs(5));
    for _ in 0..3 {
        let mut resp = a.get(&t.url()).call().unwrap();
        resp.body_mut().read_to_string().unwrap();
    }
    let reqs = t.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter().all(|r| r.conn == reqs[0].conn),
        "ureq reused: {reqs:?}"
    );
}

#[test]
fn tracker_is_fast_on_one_keep_alive_connection() {
    // A stall per request (e.g. headers and body in separate writes meeting delayed ACKs, about
    // 40 ms each) would make this take a minute; normally it takes well under a second even in
    // a debug build, so the generous bound does not make the test flaky on a busy machine.
    let t = Tracker::start();
    let mut c = connect(&t);
    let started = Instant::now();
    for i in 0..2000 {
        send(&mut c, "GET", &format!("/counter/test/?n={i}"));
        assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "2000 requests took {took:?}"
    );
    assert_eq!(t.count(), 2000);
}

#[test]
fn tracker_closes_when_asked_and_answers_other_methods_405() {
    let t = Tracker::start();
    let mut c = connect(&t);
    c.get_mut()
        .write_all(b"POST /counter/test/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // The body was consumed, so the connection is still usable.
    c.get_mut()
        .write_all(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(closed_by_peer(&mut c));
    // HTTP/1.0 closes unless asked to keep alive.
    let mut c = connect(&t);
    c.get_mut().write_all(b"GET /y HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    assert!(closed_by_peer(&mut c));
    let statuses: Vec<(String, u16)> = t
        .requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("POST".into(), 405),
            ("GET".into(), 200),
            ("GET".into(), 200)
        ]
    );
}

#[test]
fn tracker_fail_and_reject_answer_their_status() {
    let t = Tracker::start();
    let a = agent(Duration::from_secs(5));
    let get = |a: &ureq::Agent| {
        let mut r = a.get(&t.url()).call().expect("GET");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    for status in [500, 429, 408, 503] {
        t.fail(status);
        assert_eq!(get(&a).0, status);
    }
    t.reject(400, "invalid rft.artnum\n");
    assert_eq!(get(&a), (400, "invalid rft.artnum\n".to_string()));
    t.ok();
    assert_eq!(get(&a), (200, "OK\n".to_string()));
    let statuses: Vec<u16> = t.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 429, 408, 503, 400, 200]);
    // Failures stay on the same keep-alive connection (the worker's retries reuse it).
    let reqs = t.requests();
    assert!(reqs.iter().all(|r| r.conn == reqs[0].conn));
}

#[test]
fn tracker_refuse_refuses_and_reopens_the_same_port() {
    let t = Tracker::start();
    let port = t.port();
    let mut idle = connect(&t);
    send(&mut idle, "GET", "/before");
    assert_eq!(read_response(&mut idle, false).unwrap().status, 200);

    t.refuse();
    let err = TcpStream::connect(t.addr()).expect_err("connect must fail while refusing");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // The established keep-alive connection was closed too, or a pooled client would still
    // reach a "down" tracker.
    assert!(
        closed_by_peer(&mut idle),
        "open connections must be closed by refuse()"
    );
    let e = agent(Duration::from_secs(5))
        .get(&t.url())
        .call()
        .expect_err("ureq must fail");
    assert!(
        matches!(e, ureq::Error::Io(ref io) if io.kind() == ErrorKind::ConnectionRefused),
        "{e:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || t.open_connections() == 0));

    t.ok();
    assert_eq!(t.port(), port);
    let mut c = connect(&t);
    send(&mut c, "GET", "/after");
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    let targets: Vec<String> = t.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/before", "/after"]);

    // Refusing twice in a row and switching straight to a failure status also works.
    t.refuse();
    t.refuse();
    assert!(TcpStream::connect(t.addr()).is_err());
    t.fail(500);
    assert_eq!(
        agent(Duration::from_secs(5))
            .get(&t.url())
            .call()
            .unwrap()
            .status()
            .as_u16(),
        500
    );
}

#[test]
fn tracker_hang_never_answers_until_switched_back() {
    let t = Tracker::start();
    t.hang();
    let mut c = connect(&t);
    c.get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    send(&mut c, "GET", "/hung");
    let err = read_response(&mut c, false).expect_err("no answer while hanging");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );

    let started = Instant::now();
    let e = agent(Duration::from_millis(300))
        .get(&t.url())
        .call()
        .expect_err("must time out");
    assert!(matches!(e, ureq::Error::Timeout(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    assert!(
        wait_until(Duration::from_secs(5), || t.unanswered() == 2),
        "{}",
        t.unanswered()
    );
    assert_eq!(
        t.count(),
        0,
        "hung requests are not answered, so not recorded"
    );
    assert_eq!(t.open_connections(), 2);

    t.ok();
    // Hung connections are closed, not leaked and not answered late.
    assert!(closed_by_peer(&mut c));
    assert!(
        wait_until(Duration::from_secs(5), || t.open_connections() == 0),
        "leaked connections"
    );
    let mut resp = agent(Duration::from_secs(5)).get(&t.url()).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.body_mut().read_to_string().unwrap(), "OK\n");
    assert_eq!(t.count(), 1);
}

#[test]
fn tracker_wait_for_and_control_from_another_thread() {
    let t = Tracker::start();
    let started = Instant::now();
    assert!(!t.wait_for(1, Duration::from_millis(100)));
    assert!(started.elapsed() >= Duration::from_millis(100));

    let h = t.handle();
    let url = t.url();
    let client = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        h.fail(503);
        let a = agent(Duration::from_secs(5));
        let first = a.get(&url).call().unwrap().status().as_u16();
        h.ok();
        let second = a.get(&url).call().unwrap().status().as_u16();
        (first, second)
    });
    assert!(t.wait_for(2, Duration::from_secs(5)));
    assert_eq!(client.join().unwrap(), (503, 200));
    assert_eq!(t.count(), 2);

    // Without recording only the count grows (for long benchmarks).
    t.set_recording(false);
    agent(Duration::from_secs(5)).get(&t.url()).call().unwrap();
    assert_eq!((t.count(), t.requests().len()), (3, 2));
}

#[test]
fn tracker_drop_stops_quickly_and_closes_everything() {
    let t = Tracker::start();
    let addr = t.addr();
    let mut idle = connect(&t);
    send(&mut idle, "GET", "/x");
    read_response(&mut idle, false).unwrap();
    let mut hung = connect(&t);
    t.hang();
    send(&mut hung, "GET", "/hung");
    assert!(wait_until(Duration::from_secs(5), || t.unanswered() == 1));

    let started = Instant::now();
    drop(t);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        started.elapsed()
    );
    assert!(closed_by_peer(&mut idle));
    assert!(closed_by_peer(&mut hung));
    assert_eq!(
        TcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );

    // Dropping while refusing must not wait on a listener that no longer exists.
    let t = Tracker::start();
    t.refuse();
    let started = Instant::now();
    drop(t);
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// Redis

#[test]
fn redis_starts_on_its_own_port_and_answers() {
    let r = RedisServer::start();
    assert_ne!(r.port(), 6379, "must never use the machine's Redis");
    assert_eq!(r.url(), format!("redis://127.0.0.1:{}/0", r.port()));
    assert_eq!(r.redis_cmd(&["PING"]), "PONG");
    assert_eq!(r.redis_cmd(&["SET", "k", "a value with spaces"]), "OK");
    assert_eq!(r.redis_cmd(&["GET", "k"]), "a value with spaces");
    assert_eq!(r.redis_cmd(&["GET", "missing"]), "(nil)");
    assert_eq!(r.redis_cmd(&["LPUSH", "q", "1", "2"]), "2");
    assert_eq!(r.redis_cmd(&["LRANGE", "q", "0", "-1"]), "2\n1");
    assert!(r.redis_cmd(&["NOSUCHCOMMAND"]).starts_with("(error) ERR"));
    assert_eq!(
        r.redis_cmd(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno"
    );
    // The dir is the temp dir, and the redis crate can talk to it as well.
    assert_eq!(
        r.redis_cmd(&["CONFIG", "GET", "dir"]),
        format!("dir\n{}", r.dir().display())
    );
    let mut con = r.client().get_connection().expect("redis crate connects");
    let v: String = ::redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "a value with spaces");
}

#[test]
fn redis_restart_keeps_appendonly_data_even_after_kill() {
    let mut r = RedisServer::start_with(Options {
        appendonly: true,
        ..Options::default()
    });
    let port = r.port();
    assert_eq!(
        r.redis_cmd(&["CONFIG", "GET", "appendfsync"]),
        "appendfsync\nalways"
    );
    assert_eq!(r.redis_cmd(&["RPUSH", "q", "a", "b", "c"]), "3");
    let pid = r.pid().unwrap();
    r.kill();
    assert!(!r.is_running());
    assert!(wait_until(Duration::from_secs(5), || !process_alive(pid)));
    assert!(r.try_cmd(&["PING"]).is_err());
    r.restart();
    assert_eq!(r.port(), port);
    assert_ne!(r.pid(), Some(pid));
    assert_eq!(r.redis_cmd(&["LRANGE", "q", "0", "-1"]), "a\nb\nc");
    // And after a graceful stop as well.
    r.redis_cmd(&["RPUSH", "q", "d"]);
    r.stop();
    r.restart();
    assert_eq!(r.redis_cmd(&["LLEN", "q"]), "4");
}

#[test]
fn redis_with_a_password_refuses_strangers_and_lets_the_harness_and_its_clients_in() {
    let mut r = RedisServer::start_with(Options {
        password: Some("s3cret pass".into()),
        ..Options::default()
    });
    assert_eq!(
        r.url(),
        format!("redis://:s3cret pass@127.0.0.1:{}/0", r.port())
    );
    // The harness AUTHs for its own commands, across a restart as well.
    assert_eq!(r.redis_cmd(&["RPUSH", "q", "a", "b"]), "2");
    assert_eq!(r.lrange("q"), ["a", "b"]);
    assert!(r.exists("q"));
    r.restart();
    assert_eq!(r.redis_cmd(&["PING"]), "PONG");
    // A client without the password is refused, so requirepass really is on.
    let stranger = ::redis::Client::open(format!("redis://127.0.0.1:{}/0", r.port())).unwrap();
    let mut con = stranger.get_connection().unwrap();
    let err = ::redis::cmd("PING").query::<String>(&mut con).unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    // The redis crate connection and the settings carry it.
    let n: i64 = ::redis::cmd("DBSIZE").query(&mut r.conn()).unwrap();
    assert_eq!(n, 0, "no appendonly, so the restart emptied the server");
    assert_eq!(r.settings(7).password.as_deref(), Some("s3cret pass"));
    assert_eq!(
        (r.settings(7).port, r.settings(7).heartbeat_ttl),
        (r.port(), 7)
    );
    assert_eq!(r.lrange("missing"), Vec::<String>::new());
    assert!(!r.exists("q"));
}

#[test]
fn redis_without_appendonly_loses_data_on_restart() {
    // Proves the appendonly flag really changes the server's configuration (the test above
    // would pass by accident if data survived anyway).
    let mut r = RedisServer::start();
    r.redis_cmd(&["SET", "k", "v"]);
    r.stop();
    r.restart();
    assert_eq!(r.redis_cmd(&["GET", "k"]), "(nil)");
}

#[test]
fn redis_stop_and_drop_end_the_process() {
    let mut r = RedisServer::start();
    let pid = r.pid().unwrap();
    r.stop();
    assert!(!process_alive(pid));
    assert!(r.try_cmd(&["PING"]).is_err());

    let r = RedisServer::start();
    let (pid, dir) = (r.pid().unwrap(), r.dir().to_path_buf());
    drop(r);
    assert!(!process_alive(pid));
    assert!(!dir.exists(), "temp dir removed");
}

#[test]
fn redis_missing_binary_message() {
    let err = find_redis_server(Some(std::ffi::OsStr::new("/nonexistent-dir"))).unwrap_err();
    assert_eq!(
        err,
        "redis-server not found on PATH: install it with 'apt-get install redis-server' \
         (the README's test command does this)"
    );
    assert!(find_redis_server(None).is_err());
    let path = std::env::var_os("PATH");
    assert!(
        find_redis_server(path.as_deref()).is_ok(),
        "redis-server is installed here"
    );
}

// ---------------------------------------------------------------------------------------------
// Supervisord

#[test]
fn supervisord_runs_a_program_and_stops_cleanly() {
    let dir = temp_dir();
    let cfg = SupervisorConfig::write(dir.path(), &[("sleeper", "sleep 1000")]);
    let mut sup = Supervisord::start(&cfg.path);
    assert!(
        cfg.wait_for_state("sleeper", "RUNNING", Duration::from_secs(20)),
        "sleeper not RUNNING: {:?}\n{}",
        cfg.try_process_info(),
        sup.output_text()
    );
    let info = support::supervisord::get_all_process_info(&cfg.url(), &cfg.user, &cfg.password);
    assert_eq!(info, [("sleeper".to_string(), "RUNNING".to_string())]);
    let details = cfg.try_process_info().unwrap();
    let pid = details[0].pid;
    assert!(pid > 0 && process_alive(pid), "{details:?}");

    // supervisorctl reads the same config and sees the same state.
    let (code, out) = supervisorctl(&cfg.path, &["status"]);
    assert!(
        out.contains("sleeper") && out.contains("RUNNING"),
        "code {code}: {out}"
    );

    let sup_pid = sup.pid().unwrap();
    let started = Instant::now();
    let status = sup.stop().expect("was running");
    assert!(
        status.success(),
        "supervisord exit: {status:?}\n{}",
        sup.output_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped by SIGTERM, not SIGKILL"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(pid)),
        "program left running"
    );
    assert!(!process_alive(sup_pid));
    assert!(sup.stop().is_none());
}

#[test]
fn supervisord_rpc_errors_are_reported() {
    let dir = temp_dir();
    let cfg = SupervisorConfig::write(dir.path(), &[]);
    // Nothing listening yet: an error, not a hang.
    let started = Instant::now();
    assert!(cfg.try_process_info().is_err());
    assert!(started.elapsed() < Duration::from_secs(6));

    let sup = Supervisord::start_ready(&cfg);
    assert_eq!(cfg.try_process_info().unwrap(), []);
    // Its output is captured for failure messages.
    assert!(
        sup.output_text().contains("supervisord started"),
        "{}",
        sup.output_text()
    );
    let err = try_get_process_details(&cfg.url(), &cfg.user, "wrong").unwrap_err();
    assert!(err.contains("refused the username and password"), "{err}");
}

#[test]
fn supervisord_missing_binary_message_and_venv_lookup() {
    let root = temp_dir();
    let nowhere = Some(std::ffi::OsStr::new("/nonexistent-dir"));
    let err = find_supervisor_binary("supervisord", nowhere, root.path()).unwrap_err();
    assert_eq!(
        err,
        "supervisord not found: install it with 'apt-get install supervisor' or \
         'python3 -m venv .venv && .venv/bin/pip install supervisor' (the README's test \
         command does this)"
    );
    // A supervisord in the crate root's .venv/bin is found when PATH has none.
    let bin = root.path().join(".venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("supervisord");
    std::fs::write(&fake, "#!/bin/sh\n").unwrap();
    // Not executable yet: must not count.
    assert!(find_supervisor_binary("supervisord", nowhere, root.path()).is_err());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        find_supervisor_binary("supervisord", nowhere, root.path()),
        Ok(fake)
    );
}

#[test]
fn xmlrpc_reply_parsing() {
    let reply = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n\
        <value><struct>\n<member>\n<name>name</name>\n<value><string>worker_0</string></value>\n\
        </member>\n<member>\n<name>group</name>\n<value><string>worker</string></value>\n</member>\n\
        <member>\n<name>statename</name>\n<value><string>BACKOFF</string></value>\n</member>\n\
        <member>\n<name>pid</name>\n<value><int>0</int></value>\n</member>\n<member>\n\
        <name>spawnerr</name>\n<value><string>can&apos;t find &lt;cmd&gt; &amp; co</string></value>\n\
        </member>\n</struct></value>\n<value><struct>\n<member>\n<name>name</name>\n\
        <value><string>redis</string></value>\n</member>\n<member>\n<name>group</name>\n\
        <value><string>redis</string></value>\n</member>\n<member>\n<name>statename</name>\n\
        <value><string>RUNNING</string></value>\n</member>\n<member>\n<name>pid</name>\n\
        <value><int>4242</int></value>\n</member>\n</struct></value>\n</data></array></value>\n\
        </param>\n</params>\n</methodResponse>\n";
    let ps = parse_process_info(reply).unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(
        (ps[0].full_name(), ps[0].statename.as_str(), ps[0].pid),
        ("worker:worker_0".into(), "BACKOFF", 0)
    );
    assert_eq!(
        (ps[1].full_name(), ps[1].statename.as_str(), ps[1].pid),
        ("redis".into(), "RUNNING", 4242)
    );

    let fault = "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n\
        <name>faultCode</name>\n<value><int>1</int></value>\n</member>\n<member>\n\
        <name>faultString</name>\n<value><string>UNKNOWN_METHOD</string></value>\n</member>\n\
        </struct></value>\n</fault>\n</methodResponse>\n";
    assert_eq!(
        parse_process_info(fault).unwrap_err(),
        "XML-RPC fault: UNKNOWN_METHOD"
    );
    assert!(parse_process_info("<html>login</html>").is_err());

    assert_eq!(basic_auth("user", "pass"), "Basic dXNlcjpwYXNz");
}

// ---------------------------------------------------------------------------------------------
// Small helpers

#[test]
fn helpers_behave() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("free port is bindable");

    let d = temp_dir();
    let p = d.path().to_path_buf();
    assert!(p.is_dir());
    drop(d);
    assert!(!p.exists());

    let started = Instant::now();
    assert!(!wait_until(Duration::from_millis(100), || false));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut n = 0;
    assert!(wait_until(Duration::from_secs(5), || {
        n += 1;
        n == 3
    }));
}

#[test]
fn tracker_delay_holds_answers_back_and_counts_them() {
    let t = Tracker::start();
    t.delay(Duration::from_secs(2));
    let mut c = connect(&t);
    send(&mut c, "GET", "/slow");
    assert!(
        wait_until(Duration::from_secs(5), || t.delaying() == 1
            && t.count() == 0),
        "the request is being held back, not answered (nor recorded) yet"
    );
    let r = read_response(&mut c, false).expect("answered after the delay");
    assert_eq!(r.status, 200);
    assert_eq!(t.delaying(), 0);
    assert_eq!(t.count(), 1);
    t.delay(Duration::ZERO);
    send(&mut c, "GET", "/fast");
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    assert_eq!(t.count(), 2);
}
