//! The Redis transport: at-least-once queues on Redis lists, shared by any number of processes
//! on any number of machines.
//!
//! Key names (`Q` is the queue name; `C` a consumer id `host:section:process`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `Q` | list | the queue: producers LPUSH, consumers take from the right |
//! | `Q:inflight:C` | list | what consumer C has taken and not finished, newest at the left |
//! | `Q:alive:C` | string with TTL | C's heartbeat; when it expires C counts as gone |
//! | `Q:since` | hash C → unix time | when C's in-flight list last became non-empty |
//! | `Q:ops` | hash C → operation id | the last commit C applied (makes retries idempotent) |
//! | `Q:dead` | list | dead letters as JSON, oldest at the left |
//! | `Q:producer:T` | string with TTL | the last batch producer T pushed (idempotent retries) |
//!
//! `docs/queues.md` explains the guarantees and how to repair things by hand.
//!
//! One file per part: [`keys`] (key names, the dead-letter record), [`producer`], the consumer
//! ([`consumer`] takes, [`commit`] acks, forwards, requeues and dead-letters atomically,
//! [`liveness`] keeps the heartbeat and returns gone consumers' messages), [`admin`] (status
//! and repairs), [`link`] (a connection that reconnects) and [`scripts`] (the Lua scripts).

mod admin;
mod commit;
mod consumer;
mod keys;
mod link;
mod liveness;
mod producer;
mod scripts;

pub use admin::RedisAdmin;
pub use consumer::RedisConsumer;
pub(crate) use keys::parse_dead_letter;
pub use producer::RedisProducer;

use super::{Admin, ConsumerId, Producer, QResult, QueueError, Transport};
use crate::config::{read_pem, PemKind, RedisSettings};
use crate::util::shutdown::Shutdown;
use link::Link;
use redis::{Client, ClientTlsConfig, Script, TlsCertificates};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Redis 6.2 brought BLMOVE, which the single take relies on.
const MIN_VERSION: (u32, u32) = (6, 2);
/// Batch takes move at most this many messages (below Lua's unpack limit of about 8,000).
pub const MAX_TAKE: usize = 7_500;

/// The Lua scripts, loaded once per process (redis-rs sends them by hash, loading on a miss).
struct Scripts {
    take: Script,
    commit: Script,
    recover: Script,
    requeue_dead: Script,
    refresh: Script,
    release: Script,
    take_over: Script,
    store: Script,
    purge: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| Scripts {
        take: Script::new(scripts::TAKE),
        commit: Script::new(scripts::COMMIT),
        recover: Script::new(scripts::RECOVER),
        requeue_dead: Script::new(scripts::REQUEUE_DEAD),
        refresh: Script::new(scripts::REFRESH),
        release: Script::new(scripts::RELEASE),
        take_over: Script::new(scripts::TAKE_OVER),
        store: Script::new(scripts::STORE),
        purge: Script::new(scripts::PURGE),
    })
}

/// A unique-enough token for this process: pid and start time. Producers and consumers add a
/// counter, so operation ids never repeat across restarts.
fn process_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{:x}-{n}", std::process::id(), nanos)
}

/// The Redis transport for one `[redis]` section.
#[derive(Clone)]
pub struct RedisTransport {
    client: Client,
    settings: RedisSettings,
    shutdown: Shutdown,
    version: String,
}

impl RedisTransport {
    /// Connects once (failing fast with a message that says what to check), verifies that the
    /// server is Redis 6.2 or later, and returns a transport whose handles reconnect by
    /// themselves afterwards.
    pub fn connect(settings: &RedisSettings, shutdown: Shutdown) -> QResult<RedisTransport> {
        Self::connect_within(settings, shutdown, link::CONNECT_TIMEOUT)
    }

    /// [`connect`](Self::connect) with a chosen timeout (`loglines check` keeps it short).
    pub fn connect_within(
        settings: &RedisSettings,
        shutdown: Shutdown,
        timeout: Duration,
    ) -> QResult<RedisTransport> {
        let label = settings.display();
        let client = client(settings)?;
        let mut conn = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| link::connect_error(&label, &e))?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| link::connect_error(&label, &e))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .map_err(|e| match link::tls_problem(&label, &e) {
                Some(tls) => tls,
                None => QueueError::Unavailable(format!("{label} did not answer INFO: {e}")),
            })?;
        let version = parse_version(&info).ok_or_else(|| {
            QueueError::Server(format!(
                "{label} did not report redis_version in INFO; is it a Redis server?"
            ))
        })?;
        check_version(&label, &version)?;
        Ok(RedisTransport {
            client,
            settings: settings.clone(),
            shutdown,
            version,
        })
    }

    /// The server's version, as reported at connect time.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn link(&self, persistent: bool) -> Link {
        Link::new(
            self.client.clone(),
            self.settings.display(),
            self.shutdown.clone(),
            persistent,
        )
    }

    /// A consumer with the concrete type (tests use it to read its internal state).
    pub fn redis_consumer(&self, queue: &str, id: &ConsumerId) -> QResult<RedisConsumer> {
        RedisConsumer::open(self, queue, id)
    }
}

/// Builds the redis client for `settings`. Everything that talks to Redis gets its client from
/// here (through [`RedisTransport`]), so producers, consumers, `status`, `check` and the queue
/// commands all trust the same CA and present the same client certificate.
///
/// With TLS, the certificate files are read now, once per transport: the handles that reconnect
/// later reuse the client, so a file replaced on disk takes effect at the next restart, and a
/// file deleted under a running process does not break its reconnects.
pub fn client(settings: &RedisSettings) -> QResult<Client> {
    let label = settings.display();
    let invalid = |e: redis::RedisError| {
        QueueError::Server(format!("invalid redis settings for {label}: {e}"))
    };
    if !settings.tls {
        return Client::open(settings.url()).map_err(invalid);
    }
    // rustls needs a process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Validation checked these files, but they may have changed since (or the settings were
    // built in code): the same check again, naming the key to fix.
    let read = |key: &str, path: &std::path::Path, kind: PemKind| {
        read_pem(path, kind).map_err(|why| {
            QueueError::Io(format!(
                "{key} of [{}]: {why}; fix the file or the key in the configuration",
                settings.name
            ))
        })
    };
    let root_cert = match &settings.tls_ca_file {
        Some(p) => Some(read("tls_ca_file", p, PemKind::Certificates)?),
        // None keeps the crate's default trust store: the public web roots.
        None => None,
    };
    let client_tls = match &settings.tls_client {
        Some(files) => Some(ClientTlsConfig {
            client_cert: read("tls_cert_file", &files.cert_file, PemKind::Certificates)?,
            client_key: read("tls_key_file", &files.key_file, PemKind::PrivateKey)?,
        }),
        None => None,
    };
    Client::build_with_tls(
        settings.url(),
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(invalid)
}

fn parse_version(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
}

fn check_version(label: &str, version: &str) -> QResult<()> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        return Err(QueueError::Server(format!(
            "{label} runs redis {version}, but loglines needs redis {}.{} or later (for BLMOVE); upgrade the server",
            MIN_VERSION.0, MIN_VERSION.1
        )));
    }
    Ok(())
}

impl Transport for RedisTransport {
    fn producer(&self, queue: &str) -> QResult<Box<dyn Producer>> {
        let max_len = self.settings.max_queue_length;
        Ok(Box::new(RedisProducer::new(
            self.link(true),
            queue,
            max_len,
        )))
    }

    fn consumer(&self, queue: &str, id: &ConsumerId) -> QResult<Box<dyn super::Consumer>> {
        Ok(Box::new(RedisConsumer::open(self, queue, id)?))
    }

    fn admin(&self) -> QResult<Box<dyn Admin>> {
        let label = self.settings.display();
        Ok(Box::new(RedisAdmin::new(
            self.link(false),
            &self.version,
            label,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_check_names_the_version_found() {
        assert!(check_version("x", "6.2.0").is_ok());
        assert!(check_version("x", "7.0.15").is_ok());
        let e = check_version("redis://h:1 db 0", "5.0.7")
            .unwrap_err()
            .to_string();
        assert!(e.contains("5.0.7") && e.contains("6.2"), "{e}");
        assert_eq!(
            parse_version("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"),
            Some("7.0.15".into())
        );
    }
}
