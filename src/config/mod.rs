//! `loglines.cfg`: the INI file shared with the 2010 tool, validated into typed settings.
//!
//! Loading happens in three steps: [`ini`] reads the raw sections with line numbers, [`keys`]
//! says which keys each kind of section accepts, and [`validate`] turns the raw file into a
//! [`Config`], collecting every problem at once. A section's role is stated once, in its
//! `command` (`command = loglines worker`), and everything else (the supervisord generator,
//! `loglines run`, `check`) reads it from [`Section::role`].

pub mod diag;
pub mod ini;
pub mod keys;
mod validate;

use crate::config::diag::Diagnostic;
pub use ini::{RawEntry, RawIni, RawSection};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the file it came from.
    pub path: PathBuf,
    /// The folder relative paths are resolved against (the file's folder).
    pub dir: PathBuf,
    /// The raw file, for plugins (`c:get(section, key)`) and plugin-specific sections.
    pub raw: Arc<RawIni>,
    pub supervisor: SupervisorSettings,
    /// `[redis]` under the name `redis`, `[redis_test]` under `redis_test`, ...
    pub redis: BTreeMap<String, RedisSettings>,
    pub general: GeneralSettings,
    /// The role sections (`process_*`, `worker_*`, `logger_*`) in file order.
    pub sections: Vec<Section>,
    /// Problems that do not stop anything from running.
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// Reads and validates `path`. On failure, every problem found (errors and warnings).
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        let raw = RawIni::load(path)?;
        validate::validate(raw)
    }

    /// Validates INI text as if it had been read from `path` (tests, generated configs).
    pub fn from_str(path: &Path, text: &str) -> Result<Config, Vec<Diagnostic>> {
        let raw = ini::parse(path, text)?;
        validate::validate(raw)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The Redis settings a section uses (its `redis` key, or `[redis]`).
    pub fn redis_for(&self, section: &Section) -> &RedisSettings {
        &self.redis[&section.redis]
    }

    /// Every queue named anywhere, sorted, for `status` and `check`.
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self
            .sections
            .iter()
            .flat_map(|s| s.role.reads().into_iter().chain(s.role.writes()))
            .collect();
        q.sort();
        q.dedup();
        q
    }
}

/// The kind of section, from its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// `process_*`: any command under supervisord (e.g. redis-server).
    Process,
    /// `worker_*`: a broker or a tracker worker (default numprocs 3).
    Worker,
    /// `logger_*`: a watcher or a file logger (default numprocs 1).
    Logger,
}

/// What a role section runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Watch(WatchSettings),
    Broker(BrokerSettings),
    Worker(WorkerSettings),
    FileLog(FileLogSettings),
    /// A `process_*` section: its command runs as written.
    Process,
}

impl Role {
    /// The subcommand name (`watch`, `broker`, `worker`, `filelog`), or `process`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Watch(_) => "watch",
            Role::Broker(_) => "broker",
            Role::Worker(_) => "worker",
            Role::FileLog(_) => "filelog",
            Role::Process => "process",
        }
    }

    /// Queues this role takes from.
    pub fn reads(&self) -> Vec<String> {
        match self {
            Role::Broker(b) => vec![b.listento.clone()],
            Role::Worker(w) => vec![w.listento.clone()],
            Role::FileLog(f) => vec![f.listento.clone()],
            Role::Watch(_) | Role::Process => vec![],
        }
    }

    /// Queues this role pushes to.
    pub fn writes(&self) -> Vec<String> {
        match self {
            Role::Watch(w) => vec![w.pushto.clone()],
            Role::Broker(b) => b.fanout.clone(),
            Role::Worker(w) => w
                .success_queue
                .iter()
                .chain(&w.other_queue)
                .cloned()
                .collect(),
            Role::FileLog(_) | Role::Process => vec![],
        }
    }
}

/// One `process_*`, `worker_*` or `logger_*` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub kind: SectionKind,
    pub role: Role,
    pub program: ProgramSettings,
    /// Name of the Redis section it uses (`redis`, `redis_test`, ...).
    pub redis: String,
    pub notify: NotifySettings,
    /// Messages per take/push; defaults per role.
    pub batch_size: usize,
}

/// How supervisord runs a section (the 2010 defaults, each overridable).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramSettings {
    /// The command as written in the file.
    pub command: String,
    pub numprocs: u32,
    pub stdout_logfile: Option<PathBuf>,
    pub user: Option<String>,
    pub directory: Option<PathBuf>,
    pub environment: Option<String>,
    pub autostart: bool,
    pub autorestart: String,
    pub startsecs: u32,
    pub stopwaitsecs: u32,
    pub startretries: u32,
    pub priority: u32,
    pub redirect_stderr: bool,
}

/// Where a watcher starts reading a file it has never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    End,
    Beginning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchSettings {
    pub logfile: PathBuf,
    pub pushto: String,
    pub servicename: String,
    pub start_at: StartAt,
    pub max_line_bytes: usize,
    /// Checkpoint file of this section (`<state_dir>/<section>.checkpoint` by default).
    pub checkpoint: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSettings {
    pub listento: String,
    pub fanout: Vec<String>,
}

/// Where a worker sends its OpenURLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Url(String),
    /// `endpoint_url = -`: print the URLs on stdout instead of sending them.
    DryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    pub listento: String,
    pub plugin: PathBuf,
    pub endpoint: Endpoint,
    pub url_ver: String,
    pub rfr_id: Option<String>,
    pub success: u16,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pauseonfail: Duration,
    pub ratelimit: Duration,
    pub success_queue: Option<String>,
    pub other_queue: Option<String>,
    pub debug: bool,
    pub method: HttpMethod,
    pub limits: PluginLimits,
    /// A COUNTER robots list (JSON or one pattern a line) replacing the bundled one.
    pub robots_list: Option<PathBuf>,
}

/// Sandbox limits for one plugin VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    pub memory_mb: usize,
    pub max_instructions: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mb: 64,
            max_instructions: 10_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLogFormat {
    /// The message's `logline` only, as the 2010 logfromqueue.py wrote it.
    Line,
    /// The whole message JSON, one per line.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileLogSettings {
    pub listento: String,
    pub logfile: PathBuf,
    pub format: FileLogFormat,
}

/// Notifications on dead letters and long tracker outages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotifySettings {
    pub command: Option<String>,
    pub queue: Option<String>,
    pub after: Duration,
    pub interval: Duration,
    pub timeout: Duration,
}

/// `[supervisor]`: the web UI and supervisord's own files.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorSettings {
    /// `host:port` of the web UI, or None for no web UI.
    pub port: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub line: Option<usize>,
}

/// `[redis]` / `[redis_NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    /// `tls_ca_file`: PEM file of the CA that signed the server's certificate. None trusts the
    /// public web roots, which a self-hosted Redis's private CA is never among.
    pub tls_ca_file: Option<PathBuf>,
    /// `tls_cert_file` + `tls_key_file`: a client certificate, for servers started with
    /// `tls-auth-clients yes`. One field for both, because one without the other is useless.
    pub tls_client: Option<TlsClientFiles>,
    /// Producers wait while a queue holds more than this many messages.
    pub max_queue_length: u64,
    /// Seconds a consumer's heartbeat lives; in-flight lists of consumers silent for longer
    /// are returned to their queue.
    pub heartbeat_ttl: u64,
}

impl RedisSettings {
    /// A connection URL for the redis crate (`redis://` or `rediss://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
            (None, Some(p)) => format!(":{}@", enc(p)),
            (Some(u), None) => format!("{}@", enc(u)),
            (None, None) => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{auth}{host}:{}/{}", self.port, self.db)
    }

    /// The URL with the password hidden, for logs and `check`.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}:{} db {}", self.host, self.port, self.db)
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            name: "redis".into(),
            host: "127.0.0.1".into(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            tls: false,
            tls_ca_file: None,
            tls_client: None,
            max_queue_length: 1_000_000,
            heartbeat_ttl: 30,
        }
    }
}

/// A client certificate and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClientFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// What the file named by a TLS key must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    /// One or more certificates (`tls_ca_file`, `tls_cert_file`).
    Certificates,
    /// One private key (`tls_key_file`).
    PrivateKey,
}

/// Reads a PEM file named by a TLS key and checks that it holds what the key needs.
///
/// Both validation and the Redis connection call this, so a file that passed `loglines check`
/// cannot fail differently at connect time. The check matters beyond tidiness: a CA file with no
/// certificate in it would give an empty trust store, and every connection would then fail with
/// an "unknown issuer" error that points at the server instead of at this file. The error text
/// follows the path (`PATH does not exist`, ...).
pub fn read_pem(path: &Path, kind: PemKind) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{shown} does not exist"))
        }
        Err(e) => return Err(format!("{shown} cannot be read ({e})")),
    };
    match kind {
        PemKind::Certificates => {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                if let Err(e) = cert {
                    return Err(format!("{shown} is not valid PEM ({e})"));
                }
                found += 1;
            }
            if found == 0 {
                return Err(format!(
                    "{shown} holds no certificate (no `-----BEGIN CERTIFICATE-----` block)"
                ));
            }
        }
        PemKind::PrivateKey => {
            if let Err(e) = PrivateKeyDer::from_pem_slice(&bytes) {
                return Err(match e {
                    rustls::pki_types::pem::Error::NoItemsFound => format!(
                        "{shown} holds no unencrypted private key (no `-----BEGIN PRIVATE KEY-----` block or its RSA/EC variant)"
                    ),
                    e => format!("{shown} is not valid PEM ({e})"),
                });
            }
        }
    }
    Ok(bytes)
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `[loglines]`: settings of the program as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneralSettings {
    /// Checkpoints and (embedded mode) dead-letter files.
    pub state_dir: PathBuf,
    /// The supervisor/ folder the generator writes into.
    pub supervisor_dir: PathBuf,
}

impl GeneralSettings {
    /// Where `loglines run` files dead letters (`<queue>.dead.jsonl`) and where the `status`
    /// and `queue` commands look for them: one place, next to the checkpoints.
    pub fn dead_letter_dir(&self) -> PathBuf {
        self.state_dir.join("dead")
    }
}
