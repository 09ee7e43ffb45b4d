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

use crate::util::text::{prefix, shorten};
use std::time::Duration;

/// How long a request in flight when the worker is told to stop may still take before its
/// connection is closed under it.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long the tracker's resolved addresses are used before its host name is looked up again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// What the tracker made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The status equalled `success`.
    Accepted,
    /// A dry run printed the URL: nothing was sent, so nothing may claim it was (no
    /// `success_queue`).
    Printed,
    /// Unreachable, timed out, 408, 429, 5xx, or an unexpected status: keep the message and
    /// retry. Nothing is lost by retrying; an event dropped by mistake is lost for good.
    Retry(String),
    /// Any other 4xx: the tracker will never take this request; dead-letter it.
    Rejected { status: u16, body: String },
    /// Our side cannot send this request at all (a URL too long for the HTTP client, a
    /// character no request may carry): it would fail the same way on every retry, so it is
    /// dead-lettered and never taken for a tracker outage.
    Unsendable(String),
    /// A dry run's standard output was closed by its reader: nothing more can be printed.
    OutputClosed,
}

/// How the worker classifies the tracker's answer. `location` is the answer's `Location`
/// header, shown for a redirect.
pub fn classify(status: u16, success: u16, body: &str, location: Option<&str>) -> Answer {
    if status == success {
        Answer::Accepted
    } else if (300..400).contains(&status) {
        // Redirects are not followed: a tracker redirecting to a maintenance page that answers
        // 200 would otherwise have every event taken as delivered while it counted none. The
        // events wait until the tracker answers itself or `endpoint_url` is corrected.
        let to = location.map_or_else(
            || "no Location".to_string(),
            |l| format!("to {}", shorten(l, 300)),
        );
        Answer::Retry(format!(
            "the tracker answered {status}, a redirect {to}, which is not followed: events count as delivered only when the tracker itself answers {success}; if it has moved, change endpoint_url"
        ))
    } else if status == 408 || status == 429 || status >= 500 {
        Answer::Retry(format!("the tracker answered {status}"))
    } else if (400..500).contains(&status) {
        Answer::Rejected {
            status,
            body: prefix(body, 200).to_string(),
        }
    } else {
        Answer::Retry(format!("the tracker answered {status}, expected {success} (see `success` in the worker section)"))
    }
}

/// Whether our HTTP client could send `url` at all; if not, why (the same reason on every
/// retry, so the message is dead-lettered rather than retried). Checked before sending, so that
/// `test-plugin` can say what the worker would do.
pub fn unsendable(url: &str) -> Option<String> {
    parse_url(url).err()
}

/// `url` as the HTTP client takes it, parsed once per request; or why it cannot be sent.
pub(super) fn parse_url(url: &str) -> Result<ureq::http::Uri, String> {
    ureq::http::Uri::try_from(url).map_err(|e| {
        format!(
            "the HTTP client cannot send this URL ({} bytes): {e}",
            url.len()
        )
    })
}

/// Whether a failed request failed on our side, before the tracker had any say (the request
/// could not be built or written as asked): retrying would fail the same way.
pub fn is_local_error(e: &ureq::Error) -> bool {
    use ureq::Error as E;
    use ureq_proto::Error as P;
    match e {
        E::Http(_) | E::BadUri(_) => true,
        // Only the errors in forming our request; those in reading the tracker's answer (a
        // parse failure, a bad chunk) are the tracker's side and are retried.
        E::Protocol(p) => matches!(
            p,
            P::BadHeader(_)
                | P::MethodVersionMismatch(..)
                | P::TooManyHostHeaders
                | P::TooManyContentLengthHeaders
                | P::BadHostHeader
                | P::BadAuthorizationHeader
                | P::BadContentLengthHeader
                | P::ConflictingBodyHeaders
                | P::OutputOverflow
                | P::BodyNotAllowed
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200, 200, "", None), Answer::Accepted);
        for s in [408, 429, 500, 502, 503] {
            assert!(
                matches!(classify(s, 200, "", None), Answer::Retry(_)),
                "{s}"
            );
        }
        assert_eq!(
            classify(400, 200, "bad", None),
            Answer::Rejected {
                status: 400,
                body: "bad".into()
            }
        );
        assert!(
            matches!(classify(404, 200, &"x".repeat(500), None), Answer::Rejected { body, .. } if body.len() == 200)
        );
        // A redirect is retried (an outage), never followed or dropped; it names the Location.
        for s in [301, 302, 303, 307, 308] {
            assert!(
                matches!(classify(s, 200, "", Some("http://x/maint")), Answer::Retry(m) if m.contains("to http://x/maint") && m.contains("endpoint_url")),
                "{s}"
            );
        }
        assert!(
            matches!(classify(302, 200, "", None), Answer::Retry(m) if m.contains("no Location"))
        );
        // An unexpected 2xx is retried, never dropped.
        assert!(
            matches!(classify(204, 200, "", None), Answer::Retry(m) if m.contains("expected 200"))
        );
        // Whatever the HTTP client cannot send is found before sending.
        assert_eq!(unsendable("http://127.0.0.1:1/counter/?a=b"), None);
        let long = format!("http://127.0.0.1:1/counter/?a={}", "x".repeat(70_000));
        assert!(
            matches!(unsendable(&long), Some(m) if m.contains("too long") && m.contains("70030 bytes"))
        );
        // A body cut inside a multi-byte character stays valid UTF-8.
        let body = format!("{}é", "x".repeat(199));
        assert!(
            matches!(classify(403, 200, &body, None), Answer::Rejected { body, .. } if body.len() == 199)
        );
    }
}
