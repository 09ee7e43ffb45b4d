//! `[redis]` and `[redis_NAME]`: where the distributed mode's queues live, how to reach them
//! (host/port/db or a URL, TLS with its certificate files, a password), and the limits every
//! producer and consumer of that server keeps.

use super::keys::{
    Key, Scope, REDIS_DB, REDIS_HEARTBEAT_TTL, REDIS_HOST, REDIS_MAX_QUEUE_LENGTH, REDIS_PASSWORD,
    REDIS_PORT, REDIS_TLS, REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE, REDIS_URL,
    REDIS_USERNAME,
};
use super::read::Reader;
use std::path::{Path, PathBuf};

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
            host: REDIS_HOST.text_default().into(),
            port: REDIS_PORT.int_default() as u16,
            db: REDIS_DB.int_default() as i64,
            username: None,
            password: None,
            tls: REDIS_TLS.bool_default(),
            tls_ca_file: None,
            tls_client: None,
            max_queue_length: REDIS_MAX_QUEUE_LENGTH.int_default(),
            heartbeat_ttl: REDIS_HEARTBEAT_TTL.int_default(),
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

/// Reads and checks one redis section. None when its `url` cannot be understood (nothing
/// else of the section could be trusted then).
pub fn read(r: &mut Reader<'_>) -> Option<RedisSettings> {
    r.unknown_keys(&[Scope::Redis], "a [redis] section");
    let mut s = RedisSettings {
        name: r.section().to_string(),
        ..RedisSettings::default()
    };
    if let Some(url) = r.opt(&REDIS_URL) {
        for k in [REDIS_HOST, REDIS_PORT, REDIS_DB] {
            if r.has(&k) {
                r.err(
                    k.name,
                    "is set together with `url`; expected either `url` or host/port/db".into(),
                );
            }
        }
        if r.has(&REDIS_TLS) {
            r.err(REDIS_TLS.name, "is set together with `url`; expected `url = rediss://...` for TLS, or host/port/db with `tls = true`".into());
        }
        match parse_redis_url(&url) {
            Ok(u) => s = RedisSettings { name: s.name, ..u },
            Err(why) => {
                // Quoted without its password: check's output and role logs are shared.
                let url = crate::util::text::redact_userinfo(&url);
                r.err(REDIS_URL.name, format!("`{url}` {why}; expected `redis://[user:password@]host:port/db` or `rediss://...`"));
                return None;
            }
        }
    } else {
        s.host = r.text(&REDIS_HOST);
        s.port = r.int(&REDIS_PORT) as u16;
        s.db = r.int(&REDIS_DB) as i64;
        s.tls = r.boolean(&REDIS_TLS);
    }
    tls_files(r, &mut s);
    if let Some(u) = r.opt(&REDIS_USERNAME) {
        s.username = Some(u);
    }
    if let Some(p) = r.opt(&REDIS_PASSWORD) {
        s.password = Some(p);
    }
    s.max_queue_length = r.int(&REDIS_MAX_QUEUE_LENGTH);
    s.heartbeat_ttl = r.int(&REDIS_HEARTBEAT_TTL);
    Some(s)
}

/// `tls_ca_file`, `tls_cert_file` and `tls_key_file`: only with TLS, the last two together,
/// each naming a readable PEM file of the right kind.
fn tls_files(r: &mut Reader<'_>, s: &mut RedisSettings) {
    const FILES: [(Key, PemKind, &str); 3] = [
        (
            REDIS_TLS_CA_FILE,
            PemKind::Certificates,
            "the PEM file of the CA that signed the Redis server's certificate",
        ),
        (
            REDIS_TLS_CERT_FILE,
            PemKind::Certificates,
            "the PEM file of the client certificate (signed by a CA the Redis server trusts)",
        ),
        (
            REDIS_TLS_KEY_FILE,
            PemKind::PrivateKey,
            "the PEM file of the client certificate's private key, unencrypted",
        ),
    ];
    let mut found: [Option<PathBuf>; 3] = [None, None, None];
    for (slot, (key, kind, expected)) in found.iter_mut().zip(FILES) {
        let Some(path) = r.path(&key) else {
            continue;
        };
        if !s.tls {
            // Without TLS the file would be ignored silently, and the administrator would
            // believe the connection is protected.
            r.err(key.name, "is set, but this connection does not use TLS; expected `url = rediss://...` or `tls = true` in this section (or remove the key)".into());
            continue;
        }
        match read_pem(&path, kind) {
            Ok(_) => *slot = Some(path),
            Err(why) => r.err(key.name, format!("{why}; expected {expected}")),
        }
    }
    let [ca, cert, key] = found;
    s.tls_ca_file = ca;
    let (cert_set, key_set) = (
        r.opt(&REDIS_TLS_CERT_FILE).is_some(),
        r.opt(&REDIS_TLS_KEY_FILE).is_some(),
    );
    match (cert_set, key_set) {
        (true, false) => r.err(REDIS_TLS_CERT_FILE.name, "is set without `tls_key_file`; expected both (the client certificate and its private key) or neither".into()),
        (false, true) => r.err(REDIS_TLS_KEY_FILE.name, "is set without `tls_cert_file`; expected both (the client certificate and its private key) or neither".into()),
        _ => {}
    }
    if let (Some(cert_file), Some(key_file)) = (cert, key) {
        s.tls_client = Some(TlsClientFiles {
            cert_file,
            key_file,
        });
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or("has a `%` not followed by two hex digits")?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .map_err(|_| "has a `%` not followed by two hex digits")?,
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "decodes to invalid UTF-8".to_string())
}

/// Parses `redis://[user[:password]@]host[:port][/db]` (and `rediss://`).
pub(crate) fn parse_redis_url(url: &str) -> Result<RedisSettings, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("redis://") {
        (false, r)
    } else {
        return Err("does not start with redis:// or rediss://".into());
    };
    let (auth, hostpart) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut s = RedisSettings {
        tls,
        ..RedisSettings::default()
    };
    if let Some(auth) = auth {
        let (u, p) = match auth.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (auth, None),
        };
        s.username = if u.is_empty() {
            None
        } else {
            Some(percent_decode(u)?)
        };
        s.password = p.map(percent_decode).transpose()?;
    }
    let (hostport, db) = match hostpart.split_once('/') {
        Some((hp, db)) => (hp, db),
        None => (hostpart, ""),
    };
    if !db.is_empty() {
        s.db = db
            .parse()
            .map_err(|_| format!("has database `{db}`, not a number"))?;
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("has an IPv6 address without its closing `]`")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    s.host = host.to_string();
    if let Some(p) = port {
        s.port = p
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("has port `{p}`, not a number from 1 to 65535"))?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let s = parse_redis_url("rediss://bob:p%40ss@cache.example.org:6380/2").unwrap();
        assert!(s.tls);
        assert_eq!(
            (s.username.as_deref(), s.password.as_deref()),
            (Some("bob"), Some("p@ss"))
        );
        assert_eq!(
            (s.host.as_str(), s.port, s.db),
            ("cache.example.org", 6380, 2)
        );
        assert_eq!(s.url(), "rediss://bob:p%40ss@cache.example.org:6380/2");
        let s = parse_redis_url("redis://:secret@[::1]").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.password.as_deref()),
            ("::1", 6379, Some("secret"))
        );
        assert_eq!(s.url(), "redis://:secret@[::1]:6379/0");
        assert!(parse_redis_url("http://x").is_err());
        assert!(parse_redis_url("redis://h:99999").is_err());
        assert!(parse_redis_url("redis://h/x").is_err());
    }
}
