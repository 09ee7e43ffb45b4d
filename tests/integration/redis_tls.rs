//! Redis over TLS against a real redis-server that listens for TLS only, on a CA and
//! certificates made for the test with `openssl`: the transport with `tls_ca_file`, the errors
//! without it, client certificates (`tls-auth-clients yes`), and `loglines check` / `status`
//! through a configuration file.

use crate::support;

use loglines::config::{Config, RedisSettings};
use loglines::queue::redis::RedisTransport;
use loglines::queue::{ConsumerId, Message, Transport};
use loglines::util::shutdown::Shutdown;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use support::redis::{find_openssl, RedisServer, TestCerts};
use support::temp_dir;

const T: Duration = Duration::from_secs(5);

/// Pushes three messages, takes them, checks they sit in the consumer's in-flight list on the
/// server, acks them, and checks the server holds nothing afterwards.
fn round_trip(r: &RedisServer, settings: &RedisSettings, queue: &str) {
    let t = RedisTransport::connect(settings, Shutdown::new())
        .unwrap_or_else(|e| panic!("connect over TLS: {e}"));
    assert!(t.version().starts_with(['6', '7', '8']), "{}", t.version());
    let sent = ["a", "b", "c"];
    t.producer(queue)
        .unwrap()
        .push(sent.iter().map(|s| Message::new(*s)).collect())
        .unwrap();
    let id = ConsumerId::new("box1", "worker_tls", 1);
    let mut c = t.consumer(queue, &id).unwrap();
    let got = c.take(10, T).unwrap();
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, sent, "FIFO order over TLS");
    let inflight = format!("{queue}:inflight:box1:worker_tls:1");
    assert_eq!(r.redis_cmd(&["LLEN", &inflight]), "3");
    c.ack(got).unwrap();
    assert_eq!(r.redis_cmd(&["LLEN", &inflight]), "0");
    assert_eq!(r.redis_cmd(&["LLEN", queue]), "0");
}

/// The error of a connection attempt that must fail.
fn connect_error(settings: &RedisSettings) -> String {
    match RedisTransport::connect(settings, Shutdown::new()) {
        Ok(_) => panic!("connected to {} although it must fail", settings.display()),
        Err(e) => {
            // Shown with --nocapture: these are the messages an administrator reads.
            println!("{e}");
            e.to_string()
        }
    }
}

fn assert_contains(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "`{p}` missing from:\n{text}");
    }
}

#[test]
fn a_machine_without_openssl_is_told_how_to_install_it() {
    let err = find_openssl(Some(std::ffi::OsStr::new("/nonexistent-dir"))).unwrap_err();
    assert_eq!(
        err,
        "openssl not found on PATH: install it with 'apt-get install openssl' \
         (the TLS tests make their certificates with it)"
    );
    let path = std::env::var_os("PATH");
    assert!(find_openssl(path.as_deref()).is_ok(), "{err}");
}

#[test]
fn push_take_ack_over_tls_with_the_ca_file_in_both_config_styles() {
    let r = RedisServer::start_tls(false);
    let ca = r.certs().unwrap().ca_cert.display().to_string();
    let port = r.port();
    let dir = temp_dir();
    let styles = [
        (
            "url",
            format!("url = rediss://127.0.0.1:{port}/0\ntls_ca_file = {ca}\n"),
        ),
        (
            "tls key",
            format!("host = 127.0.0.1\nport = {port}\ntls = true\ntls_ca_file = {ca}\n"),
        ),
    ];
    for (style, section) in styles {
        let cfg = Config::from_str(
            &dir.path().join("loglines.cfg"),
            &format!("[redis]\n{section}"),
        )
        .unwrap_or_else(|d| panic!("{style}: {}", loglines::config::diag::render(&d)));
        let s = &cfg.redis["redis"];
        assert!(s.tls, "{style}");
        assert_eq!(s.tls_ca_file.as_deref(), Some(Path::new(&ca)), "{style}");
        round_trip(&r, s, &format!("q-{}", style.replace(' ', "-")));
    }
}

#[test]
fn without_the_right_ca_file_the_certificate_is_not_trusted() {
    let r = RedisServer::start_tls(false);
    // The public web roots (no tls_ca_file) do not include the test CA.
    let mut s = r.settings(30);
    s.tls_ca_file = None;
    let e = connect_error(&s);
    assert_contains(&e, &["is not trusted", "UnknownIssuer", "set tls_ca_file"]);
    // Another CA's file replaces the web roots but is not the signer. (Both test CAs have the
    // same name, so rustls finds it as the issuer and reports BadSignature instead.)
    let other = temp_dir();
    s.tls_ca_file = Some(TestCerts::generate(other.path()).ca_cert);
    let e = connect_error(&s);
    assert_contains(&e, &["is not trusted", "BadSignature", "set tls_ca_file"]);
    // The same server with its own CA: the failures above were about trust, nothing else.
    round_trip(&r, &r.settings(30), "q");
}

#[test]
fn a_server_that_demands_client_certificates_takes_one_from_its_ca_only() {
    let r = RedisServer::start_tls(true);
    let good = r.settings(30);
    assert!(
        good.tls_client.is_some(),
        "the harness presents its client cert"
    );
    round_trip(&r, &good, "q");

    let mut none = good.clone();
    none.tls_client = None;
    let e = connect_error(&none);
    assert_contains(
        &e,
        &[
            "refused this client",
            "CertificateRequired",
            "set tls_cert_file and tls_key_file",
        ],
    );

    // A certificate from another CA is refused too: the server checks who signed it.
    let other = temp_dir();
    let mut foreign = good.clone();
    foreign.tls_client = Some(TestCerts::generate(other.path()).client_files());
    let e = connect_error(&foreign);
    assert_contains(
        &e,
        &[
            "refused this client's certificate",
            "UnknownCA",
            "tls_cert_file",
        ],
    );
}

#[test]
fn handles_reconnect_over_tls_after_a_server_restart() {
    let mut r = RedisServer::start_tls(true);
    // The handles retry until shutdown: if reconnecting over TLS never worked, this watchdog
    // turns the endless retry into a failing test (ShuttingDown) instead of a hang.
    let shutdown = Shutdown::new();
    let watchdog = shutdown.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        watchdog.trigger();
    });
    let t = RedisTransport::connect(&r.settings(30), shutdown).unwrap();
    let mut p = t.producer("q").unwrap();
    let mut c = t
        .consumer("q", &ConsumerId::new("box1", "worker_tls", 1))
        .unwrap();
    p.push(vec![Message::new("before")]).unwrap();
    let got = c.take(10, T).unwrap();
    c.ack(got).unwrap();
    // Without persistence the server comes back empty; what matters is that the existing
    // handles reconnect by themselves, with the same certificates.
    r.restart();
    p.push(vec![Message::new("after")]).unwrap();
    let got = c.take(10, T).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "after");
    c.ack(got).unwrap();
    assert_eq!(r.redis_cmd(&["LLEN", "q"]), "0");
}

#[test]
fn connecting_reads_the_files_again_and_names_the_key() {
    let r = RedisServer::start_tls(true);
    let dir = temp_dir();
    let mut s = r.settings(30);
    s.tls_ca_file = Some(dir.path().join("gone.pem"));
    let e = connect_error(&s);
    assert_contains(&e, &["tls_ca_file of [redis]", "gone.pem does not exist"]);

    // A certificate where the key belongs.
    let mut s = r.settings(30);
    let files = s.tls_client.as_mut().unwrap();
    files.key_file = files.cert_file.clone();
    let e = connect_error(&s);
    assert_contains(
        &e,
        &[
            "tls_key_file of [redis]",
            "holds no unencrypted private key",
        ],
    );
}

fn loglines(cfg: &Path, args: &[&str]) -> Output {
    // Bounded: a TLS handshake that hangs must fail the test, not stall it.
    support::bin::output_within(cfg, args, Duration::from_secs(30))
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A configuration with one broker (so `check` and `status` have a queue and a Redis to ask)
/// and the given `[redis]` lines.
fn write_config(dir: &Path, name: &str, redis: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[worker_broker]\ncommand = loglines broker\nlistento = incoming\nfanout = out\n\n[redis]\n{redis}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_and_status_through_a_config_file() {
    let r = RedisServer::start_tls(true);
    let certs = r.certs().unwrap();
    // Relative paths, resolved against the config file's folder as every path in it is.
    let dir = temp_dir();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    for (from, to) in [
        (&certs.ca_cert, "ca.crt"),
        (&certs.client_cert, "client.crt"),
        (&certs.client_key, "client.key"),
    ] {
        std::fs::copy(from, dir.path().join("tls").join(to)).unwrap();
    }
    let url = format!("url = rediss://127.0.0.1:{}/0\n", r.port());
    let full = format!(
        "{url}tls_ca_file = tls/ca.crt\ntls_cert_file = tls/client.crt\ntls_key_file = tls/client.key\n"
    );
    let good = write_config(dir.path(), "good.cfg", &full);
    RedisTransport::connect(&r.settings(30), Shutdown::new())
        .unwrap()
        .producer("incoming")
        .unwrap()
        .push(vec![Message::new("m1"), Message::new("m2")])
        .unwrap();

    let o = loglines(&good, &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // `[redis] redis 7.0.15 at rediss://...`: the version is only known after connecting.
    let at = format!(" at rediss://127.0.0.1:{} db 0", r.port());
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("[redis] redis ") && l.ends_with(&at)),
        "no `[redis] redis VERSION{at}` in\n{}",
        text(&o)
    );

    let o = loglines(&good, &["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
    assert_eq!(v["servers"][0]["error"], serde_json::Value::Null, "{v}");
    let queues = v["servers"][0]["queues"].as_array().unwrap();
    let incoming = queues.iter().find(|q| q["queue"] == "incoming").unwrap();
    assert_eq!(incoming["length"], 2, "{v}");

    // Without the CA file: check still passes (Redis is a warning there) but says why;
    // status fails so that monitoring notices.
    let no_ca = write_config(
        dir.path(),
        "no-ca.cfg",
        &full.replace("tls_ca_file = tls/ca.crt\n", ""),
    );
    let o = loglines(&no_ca, &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_contains(
        &text(&o),
        &[
            "[redis] warning:",
            "is not trusted",
            "UnknownIssuer",
            "set tls_ca_file",
        ],
    );
    let o = loglines(&no_ca, &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_contains(&text(&o), &["is not trusted", "set tls_ca_file"]);

    // Without the client certificate the server refuses the connection.
    let no_cert = write_config(
        dir.path(),
        "no-cert.cfg",
        &format!("{url}tls_ca_file = tls/ca.crt\n"),
    );
    let o = loglines(&no_cert, &["status", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
    let err = v["servers"][0]["error"].as_str().unwrap_or_default();
    assert_contains(
        err,
        &["refused this client", "set tls_cert_file and tls_key_file"],
    );
}
