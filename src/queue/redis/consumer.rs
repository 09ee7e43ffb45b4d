//! A consumer of one queue: takes (a Lua script for a batch, BLMOVE to wait), each into its own
//! in-flight list, handing out first what it held when it last stopped.
//!
//! Queue items are read as bytes: any program may LPUSH, and an item that is not UTF-8 must not
//! fail every read of the list. It is handed out with its exact bytes ([`Message::raw`]), and the
//! consume loop dead-letters it like any message no role can handle.

use super::commit::Commit;
use super::keys::{encode_dead_letter, Keys};
use super::link::{Fail, Link, COMMAND_TIMEOUT};
use super::{process_token, scripts, RedisTransport, MAX_TAKE};
use crate::queue::{ConsumerId, DeadLetter, Message, QResult};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A blocking take wakes at least this often to refresh its heartbeat and notice shutdown.
const MAX_BLOCK: Duration = Duration::from_secs(2);

/// A consumer of one queue with its own in-flight list.
///
/// It keeps a local account of what it holds: `delivered` (handed to the caller, still in the
/// in-flight list) and `pending` (in the list from before a restart or a lost connection, not
/// yet handed out). The account matches the list whenever the heartbeat is alive and the
/// connection unbroken; after either event it is rebuilt from the list ([`Self::resync`]).
pub struct RedisConsumer {
    pub(super) link: Link,
    pub(super) name: String,
    pub(super) section: String,
    /// This machine's name as the consumer id has it.
    pub(super) host: String,
    pub(super) keys: Keys,
    pub(super) inflight: String,
    pub(super) alive: String,
    pub(super) alive_value: String,
    pub(super) ttl: u64,
    pub(super) max_len: u64,
    pub(super) delivered: HashMap<Vec<u8>, usize>,
    pub(super) delivered_len: usize,
    pub(super) pending: VecDeque<Vec<u8>>,
    pub(super) last_scan: Option<Instant>,
    pub(super) op_prefix: String,
    pub(super) op_seq: u64,
}

impl RedisConsumer {
    pub(super) fn open(t: &RedisTransport, queue: &str, id: &ConsumerId) -> QResult<RedisConsumer> {
        let keys = Keys::new(queue);
        let name = id.to_string();
        let mut c = RedisConsumer {
            link: t.link(true),
            inflight: keys.inflight(&name),
            alive: keys.alive(&name),
            // Unique to this process: the heartbeat is its claim on the consumer id.
            alive_value: format!(
                "pid {} on {} since {} ({})",
                std::process::id(),
                id.host,
                now_secs(),
                process_token()
            ),
            name,
            section: id.section.clone(),
            host: id.host.clone(),
            keys,
            ttl: t.settings.heartbeat_ttl.max(1),
            max_len: t.settings.max_queue_length,
            delivered: HashMap::new(),
            delivered_len: 0,
            pending: VecDeque::new(),
            last_scan: None,
            op_prefix: process_token(),
            op_seq: 0,
        };
        // Alive first, so nobody recovers our list while we read it.
        c.set_alive()?;
        // What the last run held and did not finish (it was killed, crashed, or could not give
        // it back) may be what stopped it: each is taken again alone, and one that is in hand
        // every time a consumer stops is dead-lettered after a few attempts.
        let (list, name) = (c.inflight.clone(), c.name.clone());
        let held = c.set_aside(&list, &name, true)?;
        if held > 0 {
            log::warn!(
                "{}: {held} messages were in flight when this consumer last stopped without finishing them; they are taken again one at a time, before the rest of the queue",
                c.inflight
            );
        }
        c.resync()?;
        c.maybe_recover()?;
        Ok(c)
    }

    /// Messages handed out and not yet acked (tests).
    pub fn delivered_len(&self) -> usize {
        self.delivered_len
    }

    /// Messages from an earlier run not yet handed out again (tests).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

impl RedisConsumer {
    fn deliver(&mut self, items: impl IntoIterator<Item = Vec<u8>>, out: &mut Vec<Message>) {
        for item in items {
            *self.delivered.entry(item.clone()).or_default() += 1;
            self.delivered_len += 1;
            out.push(Message::from_bytes(item));
        }
    }

    /// Runs the take script for up to `max` messages (or one suspect, when `out` is still
    /// empty); handles an expired heartbeat.
    fn take_now(&mut self, max: usize, out: &mut Vec<Message>) -> QResult<()> {
        let keys = [
            self.keys.queue.as_str(),
            self.inflight.as_str(),
            self.alive.as_str(),
            self.keys.since.as_str(),
            self.keys.suspect.as_str(),
            self.keys.attempts.as_str(),
        ];
        let (val, ttl, name) = (&self.alive_value, self.ttl, &self.name);
        // A suspect comes only into an empty batch: it goes alone.
        let suspect_ok = if out.is_empty() { "1" } else { "0" };
        let r = self.link.attempt(COMMAND_TIMEOUT, |c| {
            scripts()
                .take
                .key(&keys[..])
                .arg(max.min(MAX_TAKE))
                .arg(ttl)
                .arg(val)
                .arg(name)
                .arg(suspect_ok)
                .invoke::<(i64, Vec<Vec<u8>>, u32)>(c)
        });
        match r {
            Ok((1, mut items, attempts)) => {
                items.reverse();
                let first = out.len();
                self.deliver(items, out);
                if attempts > 0 {
                    for m in &mut out[first..] {
                        m.attempts = attempts;
                    }
                }
                Ok(())
            }
            Ok(_) => {
                self.expired()?;
                self.deliver_pending(out.len() + max, out)
            }
            // The move may have happened with the answer lost: the list tells.
            Err(Fail::Lost) => {
                self.resync()?;
                self.deliver_pending(out.len() + max, out)
            }
            Err(Fail::Err(e)) => Err(e),
        }
    }

    fn deliver_pending(&mut self, max: usize, out: &mut Vec<Message>) -> QResult<()> {
        let n = self.pending.len().min(max.saturating_sub(out.len()));
        let items: Vec<Vec<u8>> = self.pending.drain(..n).collect();
        self.deliver(items, out);
        Ok(())
    }

    /// Blocks up to `block` for one message with BLMOVE.
    fn take_blocking(
        &mut self,
        block: Duration,
        max: usize,
        out: &mut Vec<Message>,
    ) -> QResult<()> {
        let (q, inflight) = (self.keys.queue.clone(), self.inflight.clone());
        let secs = block.as_secs_f64().max(0.01);
        let r = self.link.attempt(COMMAND_TIMEOUT + block, |c| {
            redis::cmd("BLMOVE")
                .arg(&q)
                .arg(&inflight)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(format!("{secs:.3}"))
                .query::<Option<Vec<u8>>>(c)
        });
        match r {
            Ok(Some(item)) => {
                self.deliver([item], out);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(Fail::Lost) => {
                self.resync()?;
                self.deliver_pending(max, out)
            }
            Err(Fail::Err(e)) => Err(e),
        }
    }
}

impl crate::queue::Consumer for RedisConsumer {
    fn take(&mut self, max: usize, timeout: Duration) -> QResult<Vec<Message>> {
        self.take_up_to(max, timeout)
    }

    fn ack(&mut self, done: Vec<Message>) -> QResult<()> {
        self.commit(bodies(done), Commit::Ack)
    }

    fn forward(&mut self, done: Vec<Message>, out: Vec<(String, Vec<Message>)>) -> QResult<()> {
        let out = out.into_iter().map(|(q, ms)| (q, bodies(ms))).collect();
        self.commit(bodies(done), Commit::Forward(out))
    }

    fn requeue(&mut self, items: Vec<Message>) -> QResult<()> {
        self.commit(bodies(items), Commit::Requeue)
    }

    fn dead_letter(&mut self, item: Message, reason: &str) -> QResult<()> {
        use base64::Engine as _;
        let mut letter =
            DeadLetter::filed_now(item.body.clone(), reason, &self.section, self.name.clone());
        letter.message_base64 = item
            .raw
            .as_ref()
            .map(|raw| base64::engine::general_purpose::STANDARD.encode(raw));
        let json = encode_dead_letter(&letter)?;
        self.commit(vec![item.into_bytes()], Commit::Dead(json))
    }

    fn heartbeat(&mut self) -> QResult<()> {
        self.beat()?;
        self.maybe_recover()
    }

    fn report(&mut self, tracker: &crate::queue::TrackerReport) -> QResult<()> {
        let json = serde_json::to_string(tracker).map_err(|e| {
            crate::queue::QueueError::Server(format!("cannot encode a report: {e}"))
        })?;
        let (key, name) = (&self.keys.tracker, &self.name);
        self.link.idempotent(|c| {
            redis::cmd("HSET")
                .arg(key)
                .arg(name)
                .arg(&json)
                .query::<i64>(c)
        })?;
        Ok(())
    }
}

impl Drop for RedisConsumer {
    fn drop(&mut self) {
        self.release();
    }
}

/// Messages' bodies as the bytes the queue holds (no copy).
fn bodies(ms: Vec<Message>) -> Vec<Vec<u8>> {
    ms.into_iter().map(Message::into_bytes).collect()
}

impl RedisConsumer {
    /// Up to `max` messages, waiting up to `timeout` for the first.
    fn take_up_to(&mut self, max: usize, timeout: Duration) -> QResult<Vec<Message>> {
        let max = max.clamp(1, MAX_TAKE);
        let mut out = Vec::new();
        self.maybe_recover()?;
        if !self.pending.is_empty() {
            self.beat()?;
            self.deliver_pending(max, &mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
        }
        let deadline = Instant::now() + timeout;
        self.take_now(max, &mut out)?;
        while out.is_empty() {
            let now = Instant::now();
            if now >= deadline || self.link.shutdown().is_set() {
                return Ok(out);
            }
            let block = (deadline - now)
                .min(MAX_BLOCK)
                .min(Duration::from_secs(self.ttl) / 3);
            self.take_blocking(block, max, &mut out)?;
            if out.is_empty() {
                self.maybe_recover()?;
                self.beat()?;
                // Recovered lists (ours after an expiry, or others' set aside as suspects,
                // which BLMOVE on the queue does not see) may be waiting.
                self.deliver_pending(max, &mut out)?;
                if out.is_empty() {
                    self.take_now(max, &mut out)?;
                }
            } else if out.len() < max {
                // One came: take what else is there without blocking (and mark the list's
                // start time, which BLMOVE does not).
                self.take_now(max - out.len(), &mut out)?;
            } else {
                self.take_now(0, &mut out)?;
            }
        }
        Ok(out)
    }
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
