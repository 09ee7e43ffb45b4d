//! The tracker's addresses, looked up once a minute instead of before every request.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// The addresses last resolved for one `scheme://host:port`.
struct Resolved {
    key: String,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

/// Remembers the tracker's addresses for a while (the client uses
/// [`RESOLVE_TTL`](super::RESOLVE_TTL)).
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

#[cfg(test)]
mod tests {
    use super::*;

    use ureq::unversioned::resolver::DefaultResolver;

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
}
