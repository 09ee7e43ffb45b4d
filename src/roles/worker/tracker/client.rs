//! One worker's connection to the tracker: a keep-alive ureq agent over our own transport, the
//! request (or, in a dry run, the printed URL) for one event, `ratelimit`, and a stop that cuts
//! a request still unanswered after [`STOP_GRACE`]. With `concurrency` above 1 the window's
//! sender threads each hold a clone: one agent (one pool of keep-alive connections, as many as
//! requests in flight) and one `ratelimit` turn shared by all.

use super::resolver::{CachingResolver, Forget};
use super::{classify, is_local_error, parse_url, transport, Answer, RESOLVE_TTL, STOP_GRACE};
use crate::roles::worker::{Endpoint, HttpMethod, WorkerSettings};
use crate::util::shutdown::Shutdown;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::DefaultResolver;

/// How much of an answer's body is read.
const BODY_READ: u64 = 64 * 1024;
/// Each connection's input buffer, and the largest answer head taken.
const INPUT_BUFFER: usize = 16 * 1024;

/// One worker's connection to the tracker. Clones share the agent and the `ratelimit` turn.
#[derive(Clone)]
pub struct TrackerClient {
    agent: ureq::Agent,
    resolved: Forget,
    endpoint: Endpoint,
    method: HttpMethod,
    success: u16,
    ratelimit: Duration,
    /// When the next request of this worker may start (`ratelimit` apart, across clones).
    next_turn: Arc<Mutex<Option<Instant>>>,
    stop: Shutdown,
}

impl TrackerClient {
    /// A client whose requests fail at once when `shutdown` is triggered, rather than waiting
    /// out `timeout` on a tracker that does not answer.
    pub fn new(w: &WorkerSettings, shutdown: &Shutdown) -> Self {
        // With many connections, each one's output buffer counts: 32 KiB holds any request a
        // tracker takes (Apache refuses a request line over 8 KiB); a longer one is then
        // dead-lettered as one the client cannot send. One connection keeps ureq's 128 KiB.
        let output_buffer = if w.concurrency > 1 {
            32 * 1024
        } else {
            128 * 1024
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(w.timeout))
            .timeout_connect(Some(w.connect_timeout))
            .http_status_as_error(false)
            // A redirect is an answer to classify (never acceptance), not a request to follow.
            .max_redirects(0)
            .user_agent(concat!("loglines/", env!("CARGO_PKG_VERSION")))
            // One keep-alive connection per request in flight.
            .max_idle_connections(w.concurrency.max(10))
            .max_idle_connections_per_host(w.concurrency.max(3))
            // A tracker's answer is a status line, a few headers and a short body: each
            // connection's input buffer need not be ureq's 128 KiB (with 128 connections, the
            // zeroed buffers alone were 16 MiB).
            .input_buffer_size(INPUT_BUFFER)
            .max_response_header_size(INPUT_BUFFER)
            .output_buffer_size(output_buffer)
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
            next_turn: Arc::new(Mutex::new(None)),
            stop: shutdown.clone(),
        }
    }

    pub fn endpoint(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Url(u) => Some(u),
            Endpoint::DryRun => None,
        }
    }

    /// Books this request's start, `ratelimit` after the previous one of any clone: how long
    /// to wait for it, if at all.
    fn take_turn(&self) -> Option<Duration> {
        if self.ratelimit.is_zero() {
            return None;
        }
        let now = Instant::now();
        let mut next = self.next_turn.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.map_or(now, |t| t.max(now));
        *next = Some(start + self.ratelimit);
        (start > now).then(|| start - now)
    }

    /// Sends one request (honouring `ratelimit`), or prints it in a dry run.
    pub fn send(&mut self, url: &str) -> Answer {
        if self.endpoint().is_none() {
            let mut out = std::io::stdout().lock();
            return match writeln!(out, "{url}") {
                Ok(()) => Answer::Printed,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Answer::OutputClosed,
                Err(e) => Answer::Retry(format!("cannot print the URL: {e}")),
            };
        }
        // Checked before the rate limit: a request that cannot be made takes no turn.
        let uri = match parse_url(url) {
            Ok(uri) => uri,
            Err(why) => return Answer::Unsendable(why),
        };
        if let Some(wait) = self.take_turn() {
            // `ratelimit` may be long (up to an hour): a stop ends the wait, and then nothing
            // is sent.
            if self.stop.sleep(wait) {
                return Answer::Retry("the worker is stopping".into());
            }
        }
        let result = match self.method {
            HttpMethod::Get => self.agent.get(uri).call(),
            HttpMethod::Head => self.agent.head(uri).call(),
        };
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let location = resp
                    .headers()
                    .get("location")
                    .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
                // The start of the body, for a rejection's reason. A body the tracker's answer
                // usually has is read whole, so the connection can be reused; a larger one is
                // cut (and its connection not reused) rather than dropped unread: its start is
                // what says why.
                let mut start = Vec::new();
                let _ = resp
                    .body_mut()
                    .as_reader()
                    .take(BODY_READ)
                    .read_to_end(&mut start);
                let body = String::from_utf8_lossy(&start);
                classify(status, self.success, &body, location.as_deref())
            }
            Err(e) if is_local_error(&e) => {
                Answer::Unsendable(format!("the HTTP client cannot send this request: {e}"))
            }
            Err(e) => {
                self.resolved.forget();
                Answer::Retry(format!("cannot reach the tracker: {e}"))
            }
        }
    }
}
