//! `loglines.http_get`: an HTTP GET for metadata look-ups (the 2010 Oxford plugin asked Solr
//! about each downloaded item), with a timeout and a small time-limited cache.
//!
//! The cache matters because downloads of one item come in bursts: a worker looking the same
//! item up a hundred times a minute would hammer the metadata server for identical answers.
//! Only answers are cached, never failures (a connection error is retried on the next call), and
//! server errors (5xx) are not cached either.

use crate::util::shutdown::Shutdown;
use mlua::{Lua, Table, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Entries kept at most; the oldest goes first when full.
const CACHE_ENTRIES: usize = 512;
/// Bytes of answers kept at most (the cache lives outside the plugin's memory limit, so it has
/// its own): the oldest go first when full.
pub(crate) const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// A larger answer is returned but not cached: one would push out many small ones.
pub(crate) const CACHE_ENTRY_BYTES: usize = CACHE_BYTES / 16;
/// Default time an answer is reused, in seconds (`cache = N` in the options changes it).
const DEFAULT_CACHE_SECS: f64 = 300.0;
/// Default and largest timeout, in seconds.
const DEFAULT_TIMEOUT_SECS: f64 = 10.0;
const MAX_TIMEOUT_SECS: f64 = 300.0;
/// Largest body read; a metadata answer is small, and a plugin must not fill its memory limit
/// with one response.
const MAX_BODY: u64 = 8 * 1024 * 1024;

struct Entry {
    at: Instant,
    ttl: Duration,
    status: u16,
    body: Vec<u8>,
}

/// Per-VM state: one agent (keeps connections alive between look-ups) and the cache.
pub(crate) struct HttpClient {
    // Built on first use: most plugins never call http_get, and TLS set-up is not free.
    agent: std::cell::OnceCell<ureq::Agent>,
    /// A stop ends a look-up in progress, so a stopping worker does not wait out its timeout.
    stop: Shutdown,
    cache: RefCell<HashMap<String, Entry>>,
    /// Bytes of URLs and bodies in the cache.
    cached_bytes: std::cell::Cell<usize>,
}

impl HttpClient {
    pub(crate) fn new(stop: Shutdown) -> Self {
        HttpClient {
            agent: std::cell::OnceCell::new(),
            stop,
            cache: RefCell::new(HashMap::new()),
            cached_bytes: std::cell::Cell::new(0),
        }
    }

    /// Bytes of answers the cache holds (tests).
    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> usize {
        self.cached_bytes.get()
    }

    fn remove(&self, cache: &mut HashMap<String, Entry>, url: &str) {
        if let Some(e) = cache.remove(url) {
            self.cached_bytes
                .set(self.cached_bytes.get() - url.len() - e.body.len());
        }
    }

    fn agent(&self) -> &ureq::Agent {
        self.agent.get_or_init(|| {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                // A 404 is an answer the plugin wants to see, not an error.
                .http_status_as_error(false)
                .user_agent(concat!("loglines/", env!("CARGO_PKG_VERSION")))
                .proxy(crate::util::proxy::from_env())
                .build()
                .into();
            let closing = agent.clone();
            self.stop.on_trigger(move || closing.shutdown());
            agent
        })
    }

    fn cached(&self, url: &str) -> Option<(u16, Vec<u8>)> {
        let mut cache = self.cache.borrow_mut();
        let e = cache.get(url)?;
        if e.at.elapsed() < e.ttl {
            return Some((e.status, e.body.clone()));
        }
        self.remove(&mut cache, url);
        None
    }

    fn store(&self, url: &str, status: u16, body: &[u8], ttl: Duration) {
        let size = url.len() + body.len();
        if ttl.is_zero() || status >= 500 || size > CACHE_ENTRY_BYTES {
            return;
        }
        let mut cache = self.cache.borrow_mut();
        self.remove(&mut cache, url);
        let full = |c: &HashMap<String, Entry>, bytes: usize| {
            c.len() >= CACHE_ENTRIES || bytes + size > CACHE_BYTES
        };
        if full(&cache, self.cached_bytes.get()) {
            let expired: Vec<String> = cache
                .iter()
                .filter(|(_, e)| e.at.elapsed() >= e.ttl)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                self.remove(&mut cache, &k);
            }
        }
        while full(&cache, self.cached_bytes.get()) {
            let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&mut cache, &oldest);
        }
        self.cached_bytes.set(self.cached_bytes.get() + size);
        cache.insert(
            url.to_string(),
            Entry {
                at: Instant::now(),
                ttl,
                status,
                body: body.to_vec(),
            },
        );
    }

    /// Performs the GET, or answers from the cache. Err is a message for the plugin.
    pub(crate) fn get(
        &self,
        url: &str,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "http_get: `{url}` is not an http:// or https:// URL"
            ));
        }
        // `cache = 0` asks for a fresh answer: it neither reads nor fills the cache.
        if !ttl.is_zero() {
            if let Some(hit) = self.cached(url) {
                return Ok(hit);
            }
        }
        let mut resp = self
            .agent()
            .get(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|e| format!("http_get {url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| format!("http_get {url}: reading the answer: {e}"))?;
        self.store(url, status, &body, ttl);
        Ok((status, body))
    }
}

fn seconds(opts: &Option<Table>, key: &str, default: f64, max: f64) -> mlua::Result<Duration> {
    let v: Option<f64> = match opts {
        Some(t) => t.get(key)?,
        None => None,
    };
    let v = v.unwrap_or(default);
    if !(v.is_finite() && v >= 0.0 && v <= max) {
        return Err(mlua::Error::runtime(format!(
            "http_get: option {key} = {v} is out of range; give seconds from 0 to {max}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Installs `loglines.http_get(url[, {timeout = s, cache = s}])` -> status, body; or nil and a
/// message when no answer came (connection refused, timeout, bad URL).
pub(crate) fn install(lua: &Lua, into: &Table, stop: Shutdown) -> mlua::Result<()> {
    let client = Rc::new(HttpClient::new(stop));
    into.set(
        "http_get",
        lua.create_function(move |lua, (url, opts): (String, Option<Table>)| {
            let timeout = seconds(&opts, "timeout", DEFAULT_TIMEOUT_SECS, MAX_TIMEOUT_SECS)?;
            if timeout.is_zero() {
                return Err(mlua::Error::runtime(
                    "http_get: timeout must be more than 0 seconds",
                ));
            }
            let ttl = seconds(&opts, "cache", DEFAULT_CACHE_SECS, 86_400.0)?;
            match client.get(&url, timeout, ttl) {
                Ok((status, body)) => Ok((
                    Value::Integer(i64::from(status)),
                    Value::String(lua.create_string(body)?),
                )),
                Err(msg) => Ok((Value::Nil, Value::String(lua.create_string(msg)?))),
            }
        })?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_in_bytes_and_keeps_the_newest() {
        let c = HttpClient::new(Shutdown::new());
        let ttl = Duration::from_secs(300);
        let body = vec![b'x'; CACHE_ENTRY_BYTES - 100];
        // Far more than the cache holds, in answers each as large as it caches.
        for i in 0..100 {
            c.store(&format!("http://h/{i}"), 200, &body, ttl);
            assert!(c.cached_bytes() <= CACHE_BYTES, "{}", c.cached_bytes());
        }
        assert!(c.cached("http://h/99").is_some());
        assert!(c.cached("http://h/0").is_none());
        // An answer too large to cache is not kept, and does not push others out.
        c.store("http://h/big", 200, &vec![0; CACHE_ENTRY_BYTES + 1], ttl);
        assert!(c.cached("http://h/big").is_none());
        assert!(c.cached("http://h/99").is_some());
        // Storing the same URL again replaces it without counting it twice.
        let before = c.cached_bytes();
        c.store("http://h/99", 200, &body, ttl);
        assert_eq!(c.cached_bytes(), before);
    }
}
