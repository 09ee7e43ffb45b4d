//! Sending usage events to the tracker: one keep-alive HTTP agent, answers classified into
//! accepted, retry later, or rejected for good; and the retry backoff.

use crate::config::{Endpoint, HttpMethod, WorkerSettings};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// One worker's connection to the tracker.
pub struct TrackerClient {
    agent: ureq::Agent,
    endpoint: Endpoint,
    method: HttpMethod,
    success: u16,
    ratelimit: Duration,
    last_request: Option<Instant>,
}

impl TrackerClient {
    pub fn new(w: &WorkerSettings) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(w.timeout))
            .timeout_connect(Some(w.connect_timeout))
            .http_status_as_error(false)
            .user_agent(concat!("loglines/", env!("CARGO_PKG_VERSION")))
            .build();
        TrackerClient {
            agent: ureq::Agent::new_with_config(config),
            endpoint: w.endpoint.clone(),
            method: w.method,
            success: w.success,
            ratelimit: w.ratelimit,
            last_request: None,
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
            if since < self.ratelimit {
                std::thread::sleep(self.ratelimit - since);
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
            Err(e) => Answer::Retry(format!("cannot reach the tracker: {e}")),
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
