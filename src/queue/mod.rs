//! The queue abstraction every role is written against, and its two transports.
//!
//! Roles only see [`Transport`], [`Producer`], [`Consumer`] and [`Admin`]; whether messages go
//! through Redis lists (several processes, several machines) or crossbeam channels inside one
//! process (`loglines run`) is decided once, when the transport is built.
//!
//! Semantics shared by both transports (docs/architecture.md, "Delivery guarantees", says where
//! each is enforced):
//! - FIFO per queue: producers add at one end, consumers take from the other.
//! - A taken message is *in flight* until the consumer acks, forwards, requeues or dead-letters
//!   it. A consumer that dies with messages in flight loses nothing: they return to the queue.
//! - `forward` is atomic: the taken messages are acked and the new ones pushed together, so a
//!   broker's fan-out reaches every queue exactly once or not at all.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod embedded;
pub mod redis;

/// How long one take waits before a consumer checks its shutdown signal again: a stop is
/// seen within this time even when the queue is idle.
pub const TAKE_WAIT: Duration = Duration::from_millis(500);

/// What a consumer is called, unique across machines: host name, section and process number.
/// It names the consumer's in-flight list, so two hosts never share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerId {
    pub host: String,
    pub section: String,
    pub process: u32,
}

impl ConsumerId {
    pub fn new(host: &str, section: &str, process: u32) -> Self {
        ConsumerId {
            host: host.to_string(),
            section: section.to_string(),
            process,
        }
    }

    /// This machine's host name, for consumer ids.
    pub fn local_host() -> String {
        crate::util::sys::host_name()
    }
}

impl fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.section, self.process)
    }
}

/// Opaque completion tracking, carried by a message through every queue it passes.
///
/// The embedded transport uses it so the watcher's checkpoint moves past a line only once every
/// branch of its fan-out is finished with it: the watcher attaches a value whose `Drop` reports
/// completion; `forward` clones it into the outgoing messages; ack, dead-letter and forward drop
/// the consumed message. When the last clone is dropped, the line is done. The Redis transport
/// ignores it (the checkpoint moves when Redis has the line).
#[derive(Clone, Default)]
pub struct Lineage(Option<Arc<dyn Any + Send + Sync>>);

impl Lineage {
    pub fn none() -> Self {
        Lineage(None)
    }

    /// Wraps a completion guard; its `Drop` runs when the last message carrying it is finished.
    pub fn track<T: Any + Send + Sync>(guard: Arc<T>) -> Self {
        Lineage(Some(guard))
    }

    pub fn is_tracked(&self) -> bool {
        self.0.is_some()
    }

    /// True when both carry the same completion guard (not merely equal ones), so a transport
    /// can tell apart two in-flight messages whose texts are identical.
    pub fn same_as(&self, other: &Lineage) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// One lineage that keeps every given one alive: a message derived from several inputs
    /// (a batch forwarded as a whole) is finished only when all of them may be.
    pub fn merge<'a>(all: impl IntoIterator<Item = &'a Lineage>) -> Lineage {
        let tracked: Vec<Lineage> = all
            .into_iter()
            .filter(|l| l.is_tracked())
            .cloned()
            .collect();
        match tracked.len() {
            0 => Lineage::none(),
            1 => tracked.into_iter().next().unwrap_or_default(),
            _ if tracked.iter().all(|l| l.same_as(&tracked[0])) => tracked[0].clone(),
            _ => Lineage::track(Arc::new(tracked)),
        }
    }
}

impl fmt::Debug for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Lineage(tracked)"
        } else {
            "Lineage(none)"
        })
    }
}

/// A message: the JSON text `{"service": ..., "logline": ...}` and its completion tracking.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: String,
    pub lineage: Lineage,
    /// The exact bytes of a queue item that is not UTF-8 (another program pushed it); `body`
    /// then shows them with the invalid bytes written `\xHH`. No role handles such a message:
    /// the consume loop dead-letters it ([`Message::unreadable`]).
    pub raw: Option<Vec<u8>>,
    /// How often this message has been taken alone after a consumer stopped while holding it,
    /// this time included; 0 for an ordinary take. The consume loop dead-letters a message
    /// taken more than [`MAX_ATTEMPTS`] times.
    pub attempts: u32,
}

/// A message that was in hand each time this many consumers stopped without finishing it is
/// dead-lettered on the next take rather than handled again: it may be what stops them.
pub const MAX_ATTEMPTS: u32 = 3;

impl Message {
    pub fn new(body: impl Into<String>) -> Self {
        Message {
            body: body.into(),
            lineage: Lineage::none(),
            raw: None,
            attempts: 0,
        }
    }

    /// A message read from a queue as bytes, whatever they are.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Message::new(text),
            Err(e) => {
                let raw = e.into_bytes();
                Message {
                    body: crate::util::text::escape_invalid_utf8(&raw),
                    lineage: Lineage::none(),
                    raw: Some(raw),
                    attempts: 0,
                }
            }
        }
    }

    /// The bytes the queue holds for this message (its exact ones if they were not UTF-8).
    pub fn into_bytes(self) -> Vec<u8> {
        self.raw.unwrap_or_else(|| self.body.into_bytes())
    }

    /// Why no role can handle this message, if it is one the queue held as bytes that are not
    /// UTF-8.
    pub fn unreadable(&self) -> Option<String> {
        let raw = self.raw.as_ref()?;
        let bad = std::str::from_utf8(raw)
            .err()
            .map_or(0, |e| e.valid_up_to());
        Some(format!(
            "the message is not valid UTF-8 (byte {bad} of {}); `message` shows it with the invalid bytes as \\xHH, `message_base64` holds it exactly",
            raw.len()
        ))
    }

    /// A new message that inherits this one's completion tracking (for forwarding).
    pub fn derive(&self, body: impl Into<String>) -> Self {
        Message {
            body: body.into(),
            lineage: self.lineage.clone(),
            raw: None,
            attempts: 0,
        }
    }
}

/// Errors from a transport. Messages say what to check.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The server could not be reached or the connection broke and could not be restored.
    #[error("queue server unavailable: {0}")]
    Unavailable(String),
    /// The server answered, but not as required (too old, wrong password, script error, ...).
    #[error("queue server error: {0}")]
    Server(String),
    /// A local file of the embedded transport (dead letters) could not be written or read.
    #[error("queue file error: {0}")]
    Io(String),
    /// The process is shutting down; the call was abandoned and nothing was lost.
    #[error("shutting down")]
    ShuttingDown,
    /// This transport cannot do that (e.g. peek into an in-process queue from another process).
    #[error("not supported: {0}")]
    Unsupported(String),
}

pub type QResult<T> = Result<T, QueueError>;

/// Adds messages to one queue.
pub trait Producer: Send {
    /// Pushes a batch in order. Returns once the transport holds every message (Redis has
    /// answered the LPUSH; the embedded channel has accepted them). Waits, rather than failing,
    /// while the queue is above its high-water mark.
    fn push(&mut self, batch: Vec<Message>) -> QResult<()>;

    /// Files a message that must not enter the queue (a line over `max_line_bytes`) in
    /// `<queue>:dead` with the reason and the producing section, as [`Consumer::dead_letter`]
    /// does for consumers.
    fn dead_letter(&mut self, item: Message, reason: &str, section: &str) -> QResult<()>;

    /// True when a pushed message is finished only once its [`Lineage`] is dropped everywhere
    /// (embedded); false when the transport itself is durable (Redis).
    fn tracks_completion(&self) -> bool;
}

/// Takes messages from one queue with at-least-once semantics.
pub trait Consumer: Send {
    /// Up to `max` messages in queue order, waiting at most `timeout` for the first one (an
    /// empty vector when none came). Blocks without using CPU. A restarted consumer first gets
    /// back what it had in flight when it stopped.
    fn take(&mut self, max: usize, timeout: Duration) -> QResult<Vec<Message>>;

    /// Finished with these: remove exactly them from the in-flight set (a message text that
    /// appears twice is removed once per acked copy).
    fn ack(&mut self, done: Vec<Message>) -> QResult<()>;

    /// Atomically ack `done` and push each `(queue, messages)` of `out`.
    fn forward(&mut self, done: Vec<Message>, out: Vec<(String, Vec<Message>)>) -> QResult<()>;

    /// Returns these to the consumer end of the queue, in order, so they are taken next.
    fn requeue(&mut self, items: Vec<Message>) -> QResult<()>;

    /// Moves one message to `<queue>:dead` with the reason, atomically with its removal from
    /// the in-flight set.
    fn dead_letter(&mut self, item: Message, reason: &str) -> QResult<()>;

    /// Refreshes this consumer's liveness; call it during long waits (tracker retries).
    fn heartbeat(&mut self) -> QResult<()>;

    /// Publishes how a worker's requests to the tracker are going, for `loglines status`.
    /// Transports without a place for it (the embedded one) keep nothing.
    fn report(&mut self, _tracker: &TrackerReport) -> QResult<()> {
        Ok(())
    }
}

/// A worker's requests to the tracker as `loglines status` shows them per consumer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrackerReport {
    /// Requests sent and not answered yet.
    pub requests_in_flight: u64,
    /// The mean time the tracker took to answer over the last few seconds, in milliseconds
    /// (None before the first answer).
    pub latency_ms: Option<u64>,
    /// When this was published (Unix seconds).
    pub at: u64,
}

/// One dead letter as stored: `{"message", "reason", "section", "consumer", "at"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The message; one that was not valid UTF-8 has its invalid bytes written `\xHH`.
    pub message: String,
    /// The message's exact bytes in base64, when they are not valid UTF-8 (so `message` could
    /// not hold them as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_base64: Option<String>,
    pub reason: String,
    pub section: String,
    pub consumer: String,
    /// UTC ISO 8601, `2026-11-27T09:00:00Z`.
    pub at: String,
}

impl DeadLetter {
    /// A letter filed now by consumer `consumer` (its `ConsumerId` as text) of `section`.
    pub fn filed_now(message: String, reason: &str, section: &str, consumer: String) -> Self {
        DeadLetter {
            message,
            message_base64: None,
            reason: reason.to_string(),
            section: section.to_string(),
            consumer,
            at: utc_iso8601(std::time::SystemTime::now()),
        }
    }

    /// A letter filed now by a producer of `section` on this machine. Producers have no
    /// consumer id, so the letter names `HOST:SECTION`.
    pub fn from_producer(message: String, reason: &str, section: &str) -> Self {
        let consumer = format!("{}:{section}", ConsumerId::local_host());
        DeadLetter::filed_now(message, reason, section, consumer)
    }
}

/// Dead letters' `at`; kept under this name because the transports and notifications call it
/// as `queue::utc_iso8601`.
pub use crate::util::time::utc_iso8601;

/// One consumer's in-flight state, for `loglines status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConsumerInfo {
    pub consumer: String,
    pub in_flight: u64,
    /// Seconds since the oldest in-flight item was taken, when known.
    pub oldest_age_secs: Option<u64>,
    pub alive: bool,
    /// A worker's requests to the tracker, as it last published them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracker: Option<TrackerReport>,
}

/// One queue's state, for `loglines status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueInfo {
    pub queue: String,
    pub length: u64,
    pub dead: u64,
    pub consumers: Vec<ConsumerInfo>,
}

/// Inspection and repair, for the `loglines status` and `loglines queue` commands.
pub trait Admin {
    fn info(&mut self, queue: &str) -> QResult<QueueInfo>;
    /// The next `n` messages a consumer would take, oldest first, without taking them.
    fn peek(&mut self, queue: &str, n: usize) -> QResult<Vec<String>>;
    /// The dead letters of `queue`, oldest first.
    fn dead_letters(&mut self, queue: &str, n: usize) -> QResult<Vec<DeadLetter>>;
    /// Moves dead letters (those whose reason contains `reason`, or all) back onto the queue,
    /// returning how many moved.
    fn requeue_dead(&mut self, queue: &str, reason: Option<&str>) -> QResult<u64>;
    /// Empties the queue (not its in-flight lists or dead letters); returns how many removed.
    fn purge(&mut self, queue: &str) -> QResult<u64>;
    /// A one-line description of the server, e.g. `redis 7.0.15 at 127.0.0.1:6379 db 0`.
    fn describe(&mut self) -> QResult<String>;
}

/// Builds producers, consumers and admin handles for one transport.
pub trait Transport: Send + Sync {
    fn producer(&self, queue: &str) -> QResult<Box<dyn Producer>>;
    fn consumer(&self, queue: &str, id: &ConsumerId) -> QResult<Box<dyn Consumer>>;
    fn admin(&self) -> QResult<Box<dyn Admin>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_kept_exactly_and_shown_escaped() {
        let ok = Message::from_bytes(b"plain".to_vec());
        assert_eq!((ok.body.as_str(), ok.unreadable()), ("plain", None));
        assert_eq!(ok.into_bytes(), b"plain");
        let bad = Message::from_bytes(b"ab\xff".to_vec());
        assert_eq!(bad.body, "ab\\xff");
        assert!(bad.unreadable().unwrap().contains("byte 2 of 3"));
        assert_eq!(bad.into_bytes(), b"ab\xff");
    }

    #[test]
    fn merged_lineage_lives_until_every_input_is_dropped() {
        let a = Arc::new(1u8);
        let b = Arc::new(2u8);
        let la = Lineage::track(a.clone());
        let lb = Lineage::track(b.clone());
        let m = Lineage::merge([&la, &lb, &Lineage::none()]);
        drop((la, lb));
        assert_eq!(Arc::strong_count(&a), 2, "the merged lineage keeps a alive");
        drop(m);
        assert_eq!(Arc::strong_count(&a), 1);
        assert_eq!(Arc::strong_count(&b), 1);
        assert!(!Lineage::merge([&Lineage::none()]).is_tracked());
    }
}
