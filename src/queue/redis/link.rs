//! One Redis connection that comes back by itself: reconnects with backoff, logs an outage once.
//!
//! The sync redis client does not reconnect. Every producer, consumer and admin handle owns a
//! [`Link`]; a command that fails because the connection broke is reported as [`Fail::Lost`]
//! (it may or may not have run on the server) so the caller can decide how to retry without
//! losing or repeating anything. The next call reconnects, waiting longer after each failure,
//! and gives up only when shutdown is requested.

use super::super::{QResult, QueueError};
use crate::util::shutdown::Shutdown;
use redis::{Client, Connection, ErrorKind, RedisError, ServerErrorKind};
use std::time::{Duration, Instant};

/// How long a connection attempt may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Socket read timeout for ordinary commands; a blocking command adds its own block time.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// Backoff between reconnect attempts: doubles from the first value up to the second.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The connection broke (or the server was not ready): the command may have run or not.
    Lost,
    /// A definite failure that retrying will not fix (script error, wrong type, shutdown).
    Err(QueueError),
}

impl From<QueueError> for Fail {
    fn from(e: QueueError) -> Self {
        Fail::Err(e)
    }
}

/// A connection with reconnect-on-demand.
pub(crate) struct Link {
    client: Client,
    conn: Option<Connection>,
    shutdown: Shutdown,
    /// Human-readable server address (no password), for messages.
    label: String,
    /// When the current outage began; None while connected and working.
    down_since: Option<Instant>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// False for one-shot tools (`loglines status`): a failed connect is an error at once.
    persistent: bool,
}

impl Link {
    pub(crate) fn new(client: Client, label: String, shutdown: Shutdown, persistent: bool) -> Self {
        Link {
            client,
            conn: None,
            shutdown,
            label,
            down_since: None,
            failures: 0,
            persistent,
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Runs `f` once on a (re)connected connection with the given socket read timeout.
    pub(crate) fn attempt<T>(
        &mut self,
        read_timeout: Duration,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Fail> {
        let label = self.label.clone();
        let conn = self.connection()?;
        if let Err(e) = conn.set_read_timeout(Some(read_timeout)) {
            self.broken(&e);
            return Err(Fail::Lost);
        }
        match f(conn) {
            Ok(v) => {
                self.healthy();
                Ok(v)
            }
            Err(e) if is_lost(&e) && self.shutdown.is_set() => {
                // SIGTERM interrupted a blocking read (EINTR): not an outage. Whatever the
                // command did on the server is in this consumer's in-flight list and comes
                // back on restart.
                self.conn = None;
                Err(Fail::Err(QueueError::ShuttingDown))
            }
            Err(e) if is_lost(&e) => {
                self.broken(&e);
                if self.persistent {
                    Err(Fail::Lost)
                } else {
                    Err(Fail::Err(QueueError::Unavailable(format!(
                        "lost the connection to {label}: {e}"
                    ))))
                }
            }
            Err(e) => {
                // The server answered; the connection is still usable.
                self.healthy();
                Err(Fail::Err(server_error(&label, &e)))
            }
        }
    }

    /// Runs `f` once, even while stopping (for the last word of a clean stop): on the live
    /// connection, or on one new connection if a stop closed it. None if it could not run.
    pub(crate) fn last_word<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if self.conn.is_none() {
            self.conn = self
                .client
                .get_connection_with_timeout(Duration::from_secs(1))
                .ok();
        }
        let conn = self.conn.as_mut()?;
        conn.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        f(conn).ok()
    }

    /// Like [`attempt`](Self::attempt), retrying while the connection is lost. Only for commands
    /// that may safely run twice (reads, SET of a heartbeat, ...).
    pub(crate) fn idempotent<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> QResult<T> {
        loop {
            match self.attempt(COMMAND_TIMEOUT, &mut f) {
                Ok(v) => return Ok(v),
                Err(Fail::Lost) => continue,
                Err(Fail::Err(e)) => return Err(e),
            }
        }
    }

    fn healthy(&mut self) {
        if let Some(since) = self.down_since.take() {
            log::info!(
                "connection to {} is back after {:.1}s",
                self.label,
                since.elapsed().as_secs_f64()
            );
        }
        self.failures = 0;
    }

    fn broken(&mut self, e: &RedisError) {
        self.conn = None;
        self.failures = self.failures.saturating_add(1);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            if self.persistent {
                log::warn!("lost the connection to {} ({e}); reconnecting", self.label);
            }
        }
    }

    /// The live connection, connecting first if needed (with backoff after failures).
    fn connection(&mut self) -> Result<&mut Connection, Fail> {
        while self.conn.is_none() {
            if self.shutdown.is_set() {
                return Err(Fail::Err(QueueError::ShuttingDown));
            }
            if self.failures > 0 && self.shutdown.sleep(backoff(self.failures)) {
                return Err(Fail::Err(QueueError::ShuttingDown));
            }
            match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    let msg = connect_error(&self.label, &e);
                    if !self.persistent {
                        return Err(Fail::Err(msg));
                    }
                    self.failures = self.failures.saturating_add(1);
                    if self.down_since.is_none() {
                        self.down_since = Some(Instant::now());
                        log::warn!("{msg}; retrying");
                    }
                }
            }
        }
        // The loop above only ends with a connection.
        self.conn.as_mut().ok_or(Fail::Lost)
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (BACKOFF_FIRST * factor).min(BACKOFF_MAX)
}

/// True when the connection is gone or the server cannot serve yet (restarting, loading its
/// data): the command may or may not have run, and a new connection is needed or worth trying.
pub(crate) fn is_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Parse
                | ErrorKind::Server(ServerErrorKind::BusyLoading)
                | ErrorKind::Server(ServerErrorKind::TryAgain)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
                | ErrorKind::Server(ServerErrorKind::ReadOnly)
        )
}

/// A connect failure as a message that says what to check.
pub(crate) fn connect_error(label: &str, e: &RedisError) -> QueueError {
    if let Some(tls) = tls_problem(label, e) {
        return tls;
    }
    if e.kind() == ErrorKind::AuthenticationFailed
        || e.code().is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH")
    {
        return QueueError::Server(format!(
            "{label} refused the credentials ({e}): check username and password (or `url`) in the redis section"
        ));
    }
    if e.is_connection_refusal() {
        return QueueError::Unavailable(format!(
            "cannot connect to {label}: connection refused; is redis-server running there?"
        ));
    }
    if e.is_timeout() {
        return QueueError::Unavailable(format!(
            "cannot connect to {label}: no answer within {}s; check host, port and firewall",
            CONNECT_TIMEOUT.as_secs()
        ));
    }
    QueueError::Unavailable(format!("cannot connect to {label}: {e}"))
}

/// A failed TLS handshake as a message naming the key or server setting to fix; None when `e`
/// is not a TLS failure.
///
/// The redis crate reports these as I/O errors whose text ("invalid peer certificate:
/// UnknownIssuer") says what rustls saw but not what to change in loglines.cfg.
pub(crate) fn tls_problem(label: &str, e: &RedisError) -> Option<QueueError> {
    use rustls::{AlertDescription as A, CertificateError as C};
    let tls = rustls_error(e)?;
    let msg = match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature)
        | rustls::Error::InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. }) => format!(
            "the TLS certificate of {label} is not trusted ({tls}); set tls_ca_file in the redis section to the PEM file of the CA that signed it (the server's tls-ca-cert-file)"
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the TLS certificate of {label} does not name that host ({tls}); connect with a host name or address the certificate lists (its subjectAltName), or reissue the certificate"
        ),
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => format!(
            "the TLS certificate of {label} is outside its validity period ({tls}); renew the server's certificate, and check this machine's clock"
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "the TLS certificate of {label} was rejected ({tls}); check tls_ca_file in the redis section and the server's tls-cert-file"
        ),
        // What a server with `tls-auth-clients yes` sends a client without a certificate:
        // certificate_required in TLS 1.3, handshake_failure in TLS 1.2.
        rustls::Error::AlertReceived(A::CertificateRequired | A::HandshakeFailure) => format!(
            "{label} refused this client during the TLS handshake ({tls}); the server requires a client certificate (tls-auth-clients): set tls_cert_file and tls_key_file in the redis section to a certificate and key signed by a CA the server trusts (its tls-ca-cert-file)"
        ),
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => format!(
            "{label} refused this client's certificate during the TLS handshake ({tls}); tls_cert_file in the redis section must name a valid certificate signed by a CA the server trusts (its tls-ca-cert-file), and tls_key_file its key"
        ),
        _ => format!(
            "the TLS handshake with {label} failed ({tls}); check that the server listens for TLS on that port (its tls-port), or use a redis:// url for a server without TLS"
        ),
    };
    Some(QueueError::Unavailable(msg))
}

/// The rustls error under a redis error, if any. The redis crate wraps it in an `Arc`, or in an
/// `io::Error` (whose `source()` skips the wrapped error, hence `get_ref`).
fn rustls_error(e: &RedisError) -> Option<&rustls::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    fn direct<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        let io = err.downcast_ref::<std::io::Error>()?;
        io.get_ref()?.downcast_ref::<rustls::Error>()
    }
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        let found = match err.downcast_ref::<Shared>() {
            Some(shared) => direct(shared.as_ref()),
            None => direct(err),
        };
        if found.is_some() {
            return found;
        }
        cur = err.source();
    }
    None
}

fn server_error(label: &str, e: &RedisError) -> QueueError {
    QueueError::Server(format!("{label}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), BACKOFF_FIRST);
        assert_eq!(backoff(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff(50), BACKOFF_MAX);
    }
}
