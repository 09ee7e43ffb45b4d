//! Sending usage events to the tracker: one keep-alive HTTP agent, answers classified into
//! accepted, retry later, or rejected for good; and the retry backoff.

use crate::config::{Endpoint, HttpMethod, WorkerSettings};
use crate::util::shutdown::Shutdown;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

pub mod transport;

/// How long a request in flight when the worker is told to stop may still take before its
/// connection is closed under it.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long the tracker's resolved addresses are used before its host name is looked up again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// What the tracker made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The status equalled `success` (or the URL was printed in a dry run).
    Accepted,
    /// Unreachable, timed out, 408, 429, 5xx, or an unexpected status: keep the message and
    /// retry. Nothing is lost by retrying; an event dropped by mistake is lost for good.
    Retry(String),
    /// Any other 4xx: the tracker will never take this request; dead-letter it.
    Rejected { status: u16, body: String },
}

/// How the worker classifies a status that is not `success`.
pub fn classify(status: u16, success: u16, body: &str) -> Answer {
    if status == success {
        Answer::Accepted
    } else if status == 408 || status == 429 || status >= 500 {
        Answer::Retry(format!("the tracker answered {status}"))
    } else if (400..500).contains(&status) {
        let mut end = body.len().min(200);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        Answer::Rejected {
            status,
            body: body[..end].to_string(),
        }
    } else {
        Answer::Retry(format!("the tracker answered {status}, expected {success} (see `success` in the worker section)"))
    }
}

/// The addresses last resolved for one `scheme://host:port`.
struct Resolved {
    key: String,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

/// Remembers the tracker's addresses for [`RESOLVE_TTL`].
///
/// ureq asks its resolver before every request, even one that then goes over a kept-alive
/// connection, and its default resolver, when a timeout is set, looks the name up in a new
/// thread each time: one thread start (and, for a host name, one DNS query) per usage event,
/// which held one worker to a small fraction of what its connection carries. The inner resolver
/// still does every actual look-up, with the request's timeout.
pub struct CachingResolver<R = DefaultResolver> {
    inner: R,
    ttl: Duration,
    last: Arc<Mutex<Option<Resolved>>>,
}

impl<R: Resolver> CachingResolver<R> {
    pub fn new(inner: R, ttl: Duration) -> Self {
        CachingResolver {
            inner,
            ttl,
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// A handle that makes the next request look the name up again (after a failed request:
    /// the tracker may have moved).
    pub fn forgetter(&self) -> Forget {
        Forget(self.last.clone())
    }
}

/// See [`CachingResolver::forgetter`].
#[derive(Clone)]
pub struct Forget(Arc<Mutex<Option<Resolved>>>);

impl Forget {
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl<R> fmt::Debug for CachingResolver<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingResolver")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<R: Resolver> Resolver for CachingResolver<R> {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = last.as_ref() {
                if r.key == key && r.at.elapsed() < self.ttl {
                    return Ok(r.addrs.clone());
                }
            }
        }
        // Failures are not remembered: the next request tries again.
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Resolved {
            key,
            at: Instant::now(),
            addrs: addrs.clone(),
        });
        Ok(addrs)
    }
}

/// One worker's connection to the tracker.
pub struct TrackerClient {
    agent: ureq::Agent,
    resolved: Forget,
    endpoint: Endpoint,
    method: HttpMethod,
    success: u16,
    ratelimit: Duration,
    last_request: Option<Instant>,
    stop: Shutdown,
}

impl TrackerClient {
    /// A client whose requests fail at once when `shutdown` is triggered, rather than waiting
    /// out `timeout` on a tracker that does not answer.
    pub fn new(w: &WorkerSettings, shutdown: &Shutdown) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(w.timeout))
            .timeout_connect(Some(w.connect_timeout))
            .http_status_as_error(false)
            .user_agent(concat!("loglines/", env!("CARGO_PKG_VERSION")))
            .proxy(crate::util::proxy::from_env())
            .build();
        let resolver = CachingResolver::new(DefaultResolver::default(), RESOLVE_TTL);
        let resolved = resolver.forgetter();
        let agent =
            ureq::Agent::with_parts(config, transport::connector(shutdown.clone()), resolver);
        let (closing, closing_now) = (agent.clone(), agent.clone());
        shutdown.on_trigger(move || {
            // A request the tracker is answering normally is given STOP_GRACE to finish: cut,
            // it would be sent again after the restart although the tracker counted it. One
            // that is still waiting then is cut, so the worker stops well within supervisord's
            // stopwaitsecs (10 s) whatever `timeout` is.
            let cut = move || {
                std::thread::sleep(STOP_GRACE);
                closing.shutdown();
            };
            if let Err(e) = std::thread::Builder::new()
                .name("tracker stop".into())
                .spawn(cut)
            {
                log::warn!("cannot start a thread to wait {STOP_GRACE:?} for the request in progress ({e}); ending it now");
                closing_now.shutdown();
            }
        });
        TrackerClient {
            agent,
            resolved,
            endpoint: w.endpoint.clone(),
            method: w.method,
            success: w.success,
            ratelimit: w.ratelimit,
            last_request: None,
            stop: shutdown.clone(),
        }
    }

    pub fn endpoint(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Url(u) => Some(u),
            Endpoint::DryRun => None,
        }
    }

    /// Sends one request (honouring `ratelimit`), or prints it in a dry run.
    pub fn send(&mut self, url: &str) -> Answer {
        if self.endpoint().is_none() {
            let mut out = std::io::stdout().lock();
            return match writeln!(out, "{url}") {
                Ok(()) => Answer::Accepted,
                Err(e) => Answer::Retry(format!("cannot print the URL: {e}")),
            };
        }
        if let Some(last) = self.last_request {
            let since = last.elapsed();
            // `ratelimit` may be long (up to an hour): a stop ends the wait, and then nothing
            // is sent.
            if since < self.ratelimit && self.stop.sleep(self.ratelimit - since) {
                return Answer::Retry("the worker is stopping".into());
            }
        }
        self.last_request = Some(Instant::now());
        let result = match self.method {
            HttpMethod::Get => self.agent.get(url).call(),
            HttpMethod::Head => self.agent.head(url).call(),
        };
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                // Read the body (small, bounded) so the connection can be reused.
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                classify(status, self.success, &body)
            }
            Err(e) => {
                self.resolved.forget();
                Answer::Retry(format!("cannot reach the tracker: {e}"))
            }
        }
    }
}

/// Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, 1 s * 2^n)],
/// so many workers recovering together do not hit the tracker in step.
pub struct Backoff {
    attempt: u32,
    cap: Duration,
    state: u64,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            attempt: 0,
            cap,
            state: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The upper bound of the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        let exp = Duration::from_secs(1).saturating_mul(1u32 << self.attempt.min(30));
        exp.min(self.cap)
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*: plenty for jitter, no dependency.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200, 200, ""), Answer::Accepted);
        for s in [408, 429, 500, 502, 503] {
            assert!(matches!(classify(s, 200, ""), Answer::Retry(_)), "{s}");
        }
        assert_eq!(
            classify(400, 200, "bad"),
            Answer::Rejected {
                status: 400,
                body: "bad".into()
            }
        );
        assert!(
            matches!(classify(404, 200, &"x".repeat(500)), Answer::Rejected { body, .. } if body.len() == 200)
        );
        // An unexpected 2xx/3xx is retried, never dropped.
        assert!(matches!(classify(204, 200, ""), Answer::Retry(m) if m.contains("expected 200")));
        // A body cut inside a multi-byte character stays valid UTF-8.
        let body = format!("{}é", "x".repeat(199));
        assert!(
            matches!(classify(403, 200, &body), Answer::Rejected { body, .. } if body.len() == 199)
        );
    }

    /// Counts the look-ups that reach the real resolver.
    #[derive(Debug, Clone, Default)]
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &ureq::http::Uri,
            config: &ureq::config::Config,
            timeout: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            DefaultResolver::default().resolve(uri, config, timeout)
        }
    }

    #[test]
    fn resolver_looks_up_once_per_host_until_forgotten_or_expired() {
        let count = Counting::default();
        let looked_up = || count.0.load(std::sync::atomic::Ordering::SeqCst);
        let r = CachingResolver::new(count.clone(), Duration::from_secs(60));
        let config = ureq::Agent::config_builder().build();
        let resolve = |r: &CachingResolver<Counting>, u: &str| {
            r.resolve(&u.parse().unwrap(), &config, NextTimeout::default())
                .unwrap()
                .to_vec()
        };
        let a = resolve(&r, "http://127.0.0.1:8080/counter/?x=1");
        assert_eq!(a, vec!["127.0.0.1:8080".parse().unwrap()]);
        resolve(&r, "http://127.0.0.1:8080/counter/?x=2");
        assert_eq!(looked_up(), 1, "the second request reuses the addresses");
        let b = resolve(&r, "http://127.0.0.1:9090/");
        assert_eq!(b, vec!["127.0.0.1:9090".parse().unwrap()]);
        assert_eq!(looked_up(), 2, "another port is another look-up");
        r.forgetter().forget();
        resolve(&r, "http://127.0.0.1:9090/");
        assert_eq!(looked_up(), 3, "forgotten after a failed request");
        let expired = CachingResolver::new(count.clone(), Duration::ZERO);
        resolve(&expired, "http://127.0.0.1:9090/");
        resolve(&expired, "http://127.0.0.1:9090/");
        assert_eq!(looked_up(), 5, "looked up again once the time is up");
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c);
                c.as_secs()
            })
            .collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the waits"
        );
    }
}
