//! Sending usage events to the tracker: answers classified into accepted, retry later, or
//! rejected for good ([`classify`]); the worker's keep-alive HTTP client ([`client`]) with its
//! cached name look-ups ([`resolver`]) over a TCP transport of its own ([`transport`]); and the
//! retry backoff ([`backoff`]).

pub mod backoff;
pub mod client;
pub mod resolver;
pub mod transport;

pub use backoff::Backoff;
pub use client::TrackerClient;

use std::time::Duration;

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
    /// A dry run's standard output was closed by its reader: nothing more can be printed.
    OutputClosed,
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
}
