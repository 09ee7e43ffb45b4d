//! A real `redis-server` for tests: own free port, own temp dir, started and stopped by the test.
//!
//! Never touches the machine's Redis on 6379. Speaks RESP directly for readiness checks and
//! assertions, so tests need neither `redis-cli` nor a client connection of their own; the queue
//! tests also get `RedisSettings` and `redis` crate connections pointing at it. With
//! [`Options::tls`] (or [`RedisServer::start_tls`]) the server listens for TLS only, on
//! certificates the harness makes with the `openssl` command line tool; the RESP helpers then
//! speak TLS too.

use super::{find_executable, free_port, stop_child, temp_dir};
use loglines::config::{RedisSettings, TlsClientFiles};
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a starting server may take to answer PING (loading a big AOF included).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `stop()` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Socket timeout for commands sent with `redis_cmd`.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// What to tell a developer whose machine lacks redis-server.
pub fn redis_server_missing_message() -> String {
    "redis-server not found on PATH: install it with 'apt-get install redis-server' \
     (the README's test command does this)"
        .to_string()
}

/// Finds redis-server in a PATH-style list; the error is the message to show.
pub fn find_redis_server(path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    find_executable("redis-server", path_var, &[]).ok_or_else(redis_server_missing_message)
}

/// How a test server is configured.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// AOF with fsync on every write, so `kill()` + `restart()` loses nothing acknowledged.
    pub appendonly: bool,
    /// `requirepass`: clients must AUTH (the harness does so itself for its own commands).
    pub password: Option<String>,
    /// TLS only (`--port 0 --tls-port PORT`), on a new CA and certificates in `dir()/tls`.
    pub tls: Option<TlsOptions>,
}

/// TLS settings of a test server.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsOptions {
    /// `tls-auth-clients yes`: the server demands a client certificate signed by its CA.
    pub auth_clients: bool,
}

/// What to tell a developer whose machine lacks the openssl command line tool.
pub fn openssl_missing_message() -> String {
    "openssl not found on PATH: install it with 'apt-get install openssl' \
     (the TLS tests make their certificates with it)"
        .to_string()
}

/// Finds openssl in a PATH-style list; the error is the message to show.
pub fn find_openssl(path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    find_executable("openssl", path_var, &[]).ok_or_else(openssl_missing_message)
}

/// A test certificate authority with a server certificate (for 127.0.0.1 and localhost) and a
/// client certificate, all PEM files in one folder, made with the `openssl` command line tool.
///
/// Elliptic-curve keys: generating them takes milliseconds, where RSA keys would slow every
/// TLS test down. Valid for two days, so a clock a little off does not matter.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// The extensions each certificate needs: rustls (webpki) accepts a server certificate only for
/// a name in its subjectAltName, and only from a CA marked as one.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = loglines test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl TestCerts {
    /// Makes a new CA and certificates in `dir` (created if needed). Each call makes a different
    /// CA, so certificates of two calls do not trust each other.
    pub fn generate(dir: &Path) -> TestCerts {
        let path = std::env::var_os("PATH");
        let openssl = find_openssl(path.as_deref()).unwrap_or_else(|m| panic!("{m}"));
        std::fs::create_dir_all(dir).expect("cannot create the certificate folder");
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).expect("cannot write openssl.cnf");
        let f = |name: &str| dir.join(name);
        let run = |args: &[&OsStr]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .expect("cannot run openssl");
            assert!(
                out.status.success(),
                "openssl {:?} failed: {}",
                args,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let os = |s: &'static str| OsStr::new(s);
        let mut ca = vec![os("req"), os("-x509"), os("-days"), os("2")];
        ca.extend(ec.map(os));
        ca.extend([os("-config"), cnf.as_os_str(), os("-extensions"), os("ca")]);
        ca.extend([os("-subj"), os("/CN=loglines test CA")]);
        let (ca_key, ca_cert) = (f("ca.key"), f("ca.crt"));
        ca.extend([
            os("-keyout"),
            ca_key.as_os_str(),
            os("-out"),
            ca_cert.as_os_str(),
        ]);
        run(&ca);
        // One certificate signed by the CA: a request with a fresh key, then the signature.
        let signed = |name: &str, cn: &str, ext: &'static str, serial: &'static str| {
            let (key, csr, cert) = (
                f(&format!("{name}.key")),
                f(&format!("{name}.csr")),
                f(&format!("{name}.crt")),
            );
            let subj = format!("/CN={cn}");
            let mut req = vec![os("req"), os("-new")];
            req.extend(ec.map(os));
            req.extend([
                os("-config"),
                cnf.as_os_str(),
                os("-subj"),
                OsStr::new(&subj),
            ]);
            req.extend([os("-keyout"), key.as_os_str(), os("-out"), csr.as_os_str()]);
            run(&req);
            run(&[
                os("x509"),
                os("-req"),
                os("-in"),
                csr.as_os_str(),
                os("-CA"),
                ca_cert.as_os_str(),
                os("-CAkey"),
                ca_key.as_os_str(),
                os("-set_serial"),
                os(serial),
                os("-days"),
                os("2"),
                os("-extfile"),
                cnf.as_os_str(),
                os("-extensions"),
                os(ext),
                os("-out"),
                cert.as_os_str(),
            ]);
            (cert, key)
        };
        let (server_cert, server_key) = signed("server", "localhost", "server", "2");
        let (client_cert, client_key) = signed("client", "loglines client", "client", "3");
        TestCerts {
            ca_cert,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }

    /// The client certificate as settings want it.
    pub fn client_files(&self) -> TlsClientFiles {
        TlsClientFiles {
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
        }
    }
}

/// TLS settings of a server started with [`RedisServer::start_tls`].
struct ServerTls {
    certs: TestCerts,
    /// `tls-auth-clients yes`: the server refuses clients without a certificate from its CA.
    auth_clients: bool,
    /// The harness's own client configuration (trusts the CA, presents the client certificate).
    client: Arc<rustls::ClientConfig>,
}

/// A redis-server child process. Drop kills it (SIGKILL) and removes its directory.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    opts: Options,
    tls: Option<ServerTls>,
    child: Option<Child>,
    // Declared last so the directory is removed after the process is gone.
    dir: tempfile::TempDir,
}

/// Why a start attempt failed.
enum StartError {
    /// The port was taken between choosing it and redis binding it: try another.
    PortTaken,
    Other(String),
}

impl RedisServer {
    /// Starts a server without persistence or password.
    pub fn start() -> RedisServer {
        RedisServer::start_with(Options::default())
    }

    /// Starts a TLS-only server without persistence or password (see [`Options::tls`]).
    pub fn start_tls(auth_clients: bool) -> RedisServer {
        RedisServer::start_with(Options {
            tls: Some(TlsOptions { auth_clients }),
            ..Options::default()
        })
    }

    /// Starts a server configured by `opts` (see `Options`).
    pub fn start_with(opts: Options) -> RedisServer {
        let path = std::env::var_os("PATH");
        let binary = find_redis_server(path.as_deref()).unwrap_or_else(|m| panic!("{m}"));
        let dir = temp_dir();
        let tls = opts.tls.map(|TlsOptions { auth_clients }| {
            let certs = TestCerts::generate(&dir.path().join("tls"));
            let client = harness_tls_config(&certs);
            ServerTls {
                certs,
                auth_clients,
                client,
            }
        });
        let mut server = RedisServer {
            binary,
            port: 0,
            opts,
            tls,
            child: None,
            dir,
        };
        // free_port() can race with other tests picking ports; a few attempts make that moot.
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(StartError::PortTaken) => continue,
                Err(StartError::Other(m)) => panic!("{m}"),
            }
        }
        panic!("redis-server: could not find a free port in 5 attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` for a TLS server), with `:PASSWORD@` if the
    /// server has a password.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.opts.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("{scheme}://127.0.0.1:{}/0", self.port),
        }
    }

    /// The certificates of a TLS server (None for a plain one).
    pub fn certs(&self) -> Option<&TestCerts> {
        self.tls.as_ref().map(|t| &t.certs)
    }

    /// Queue settings that reach this server, with the given heartbeat ttl: password included;
    /// for a TLS server, trusting its CA and, if it demands one, presenting the client
    /// certificate.
    pub fn settings(&self, heartbeat_ttl: u64) -> RedisSettings {
        RedisSettings {
            name: "redis".into(),
            host: "127.0.0.1".into(),
            port: self.port,
            db: 0,
            username: None,
            password: self.opts.password.clone(),
            tls: self.tls.is_some(),
            tls_ca_file: self.tls.as_ref().map(|t| t.certs.ca_cert.clone()),
            tls_client: self
                .tls
                .as_ref()
                .filter(|t| t.auth_clients)
                .map(|t| t.certs.client_files()),
            max_queue_length: 1_000_000,
            heartbeat_ttl,
        }
    }

    /// The server's working directory (AOF, log file `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the running server, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A client from the `redis` crate for this server, built the way loglines builds its own.
    pub fn client(&self) -> ::redis::Client {
        loglines::queue::redis::client(&self.settings(30)).expect("valid redis settings")
    }

    /// A connected `redis` crate connection for assertions; its reads time out rather than
    /// hang a test whose server has died.
    pub fn conn(&self) -> ::redis::Connection {
        let c = self
            .client()
            .get_connection_with_timeout(CMD_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to redis-server on {}: {e}", self.port));
        c.set_read_timeout(Some(CMD_TIMEOUT))
            .expect("set a read timeout");
        c
    }

    /// The whole list at `key`, head first (`LRANGE key 0 -1`); empty if there is none.
    pub fn lrange(&self, key: &str) -> Vec<String> {
        match self.try_cmd(&["LRANGE", key, "0", "-1"]) {
            Ok(Reply::Array(Some(items))) => items.iter().map(|i| i.to_string()).collect(),
            other => panic!("LRANGE {key} on port {}: {other:?}", self.port),
        }
    }

    /// True if `key` exists.
    pub fn exists(&self, key: &str) -> bool {
        match self.try_cmd(&["EXISTS", key]) {
            Ok(Reply::Int(n)) => n == 1,
            other => panic!("EXISTS {key} on port {}: {other:?}", self.port),
        }
    }

    /// Graceful stop: SIGTERM (redis flushes the AOF), wait, SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, libc::SIGTERM, STOP_GRACE);
        }
    }

    /// Crash: SIGKILL, as a power cut or OOM killer would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (stopping it first if it runs),
    /// so with appendonly the data survives.
    pub fn restart(&mut self) {
        self.stop();
        // The old socket is gone once the process has exited, but another process could have
        // grabbed the port meanwhile: retry a little, then fail loudly rather than silently
        // moving to another port (clients are configured with this one).
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::PortTaken) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(StartError::PortTaken) => {
                    panic!("redis-server: port {} is taken, cannot restart", self.port)
                }
                Err(StartError::Other(m)) => panic!("{m}"),
            }
        }
    }

    /// True if the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Clients blocked in a blocking command (BLMOVE) now, from `INFO clients`.
    pub fn blocked_clients(&self) -> u64 {
        let info = self.redis_cmd(&["INFO", "clients"]);
        info.lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// True when every queue of `queues` is empty and no consumer holds anything of them (no
    /// in-flight list): all the work there was is done, and nothing more can come of it.
    pub fn queues_idle(&self, queues: &[&str]) -> bool {
        queues.iter().all(|q| {
            self.redis_cmd(&["LLEN", q]) == "0"
                && self
                    .redis_cmd(&["KEYS", &format!("{q}:inflight:*")])
                    .trim()
                    .is_empty()
        })
    }

    /// Runs one command and renders the reply like redis-cli's raw output: status and bulk
    /// replies as their text, integers as digits, nil as `(nil)`, errors as `(error) MSG`,
    /// arrays one element per line. Panics if the server cannot be reached.
    pub fn redis_cmd(&self, args: &[&str]) -> String {
        match self.try_cmd(args) {
            Ok(reply) => reply.to_string(),
            Err(e) => panic!("redis command {args:?} on port {} failed: {e}", self.port),
        }
    }

    /// Runs one command on a fresh connection and returns the parsed reply. With a password,
    /// the connection AUTHs first (a refused AUTH is returned as the reply, so it shows).
    pub fn try_cmd(&self, args: &[&str]) -> io::Result<Reply> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(CMD_TIMEOUT))?;
        stream.set_write_timeout(Some(CMD_TIMEOUT))?;
        let stream: Box<dyn ReadWrite> = match &self.tls {
            None => Box::new(stream),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
                    .map_err(io::Error::other)?;
                let conn = rustls::ClientConnection::new(tls.client.clone(), name)
                    .map_err(io::Error::other)?;
                Box::new(rustls::StreamOwned::new(conn, stream))
            }
        };
        let mut reader = BufReader::new(stream);
        if let Some(p) = &self.opts.password {
            send(reader.get_mut(), &encode_command(&["AUTH", p]))?;
            match read_reply(&mut reader)? {
                Reply::Status(_) => {}
                refused => return Ok(refused),
            }
        }
        send(reader.get_mut(), &encode_command(args))?;
        read_reply(&mut reader)
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let dir = self.dir.path();
        let log = dir.join("redis.log");
        // Truncate, so a failure message shows this attempt's log, not a previous run's.
        let _ = std::fs::write(&log, "");
        // A TLS server listens for TLS only: with the plain port off, a client that connects at
        // all spoke TLS.
        let plain_port = if self.tls.is_some() { 0 } else { self.port };
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(plain_port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .args([
                "--appendonly",
                if self.opts.appendonly { "yes" } else { "no" },
            ]);
        if self.opts.appendonly {
            cmd.args(["--appendfsync", "always"]);
        }
        if let Some(p) = &self.opts.password {
            cmd.arg("--requirepass").arg(p);
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--tls-port")
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.certs.server_cert)
                .arg("--tls-key-file")
                .arg(&tls.certs.server_key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.certs.ca_cert)
                .args([
                    "--tls-auth-clients",
                    if tls.auth_clients { "yes" } else { "no" },
                ]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StartError::Other(format!("cannot run {}: {e}", self.binary.display())))?;
        self.child = Some(child);
        let end = Instant::now() + START_TIMEOUT;
        loop {
            if matches!(self.try_cmd(&["PING"]), Ok(Reply::Status(ref s)) if s == "PONG") {
                // Make sure it is our server answering, not another test's that took the port
                // (ours then fails to bind and exits, which the next round notices).
                if self.answering_pid() == self.pid() {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if exited || Instant::now() >= end {
                self.kill();
                if log_text.contains("Address already in use") {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Other(format!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?} \
                     (exited: {exited}); its log:\n{log_text}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl RedisServer {
    /// The pid the server on our port reports (`INFO server`, field `process_id`).
    fn answering_pid(&self) -> Option<u32> {
        let info = self.try_cmd(&["INFO", "server"]).ok()?.to_string();
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A byte stream the RESP helpers speak over: plain TCP or TLS.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The rustls configuration the harness's own RESP connections use: trusts the test CA and
/// always presents the client certificate, so it works whether or not the server demands one.
fn harness_tls_config(certs: &TestCerts) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&certs.ca_cert).expect("read ca.crt") {
        roots
            .add(cert.expect("parse ca.crt"))
            .expect("add the test CA");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.client_cert)
        .expect("read client.crt")
        .collect::<Result<_, _>>()
        .expect("parse client.crt");
    let key = PrivateKeyDer::from_pem_file(&certs.client_key).expect("parse client.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    Arc::new(config)
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Status(s) => f.write_str(s),
            Reply::Error(e) => write!(f, "(error) {e}"),
            Reply::Int(i) => write!(f, "{i}"),
            Reply::Bulk(Some(b)) => f.write_str(&String::from_utf8_lossy(b)),
            Reply::Bulk(None) | Reply::Array(None) => f.write_str("(nil)"),
            Reply::Array(Some(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

/// Writes a whole request and flushes it (a TLS stream buffers until flushed).
fn send(stream: &mut dyn ReadWrite, req: &[u8]) -> io::Result<()> {
    stream.write_all(req)?;
    stream.flush()
}

/// A command as a RESP2 array of bulk strings.
fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads one RESP2 reply (recursing into arrays).
fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let body = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = body
        .split_at_checked(1)
        .ok_or_else(|| bad("empty reply line".into()))?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| bad(format!("bad number in {body:?}")))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Int(number()?)),
        "$" => {
            let n = number()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0; n as usize + 2]; // payload + CRLF
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let n = number()?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            (0..n)
                .map(|_| read_reply(r))
                .collect::<io::Result<_>>()
                .map(|v| Reply::Array(Some(v)))
        }
        _ => Err(bad(format!("unknown reply type in {body:?}"))),
    }
}
