//! Pushing to a queue: one LPUSH per batch, stored exactly once however the connection
//! breaks, and waiting while the queue is above `max_queue_length`.

use super::keys::{encode_dead_letter, Keys};
use super::link::{Fail, Link, COMMAND_TIMEOUT};
use super::{process_token, scripts};
use crate::queue::{DeadLetter, Message, Producer, QResult, QueueError};
use std::time::{Duration, Instant};

/// How often a producer above the high-water mark looks at the queue length again.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(200);
/// Producer batch records live this long: far longer than any reconnect takes.
const PRODUCER_RECORD_TTL: u64 = 3_600;

/// Waits while `queue` holds more than `max` messages, saying so once. `beat` runs on every
/// look (a consumer refreshes its heartbeat there).
pub(super) fn wait_for_room(
    link: &mut Link,
    queue: &str,
    max: u64,
    mut beat: impl FnMut(&mut Link) -> QResult<()>,
) -> QResult<()> {
    let mut since: Option<Instant> = None;
    loop {
        let len: u64 = link.idempotent(|c| redis::cmd("LLEN").arg(queue).query(c))?;
        if len <= max {
            if let Some(t) = since {
                log::info!(
                    "queue `{queue}` is below max_queue_length again ({len} messages); resuming after {:.1}s",
                    t.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if since.is_none() {
            since = Some(Instant::now());
            log::warn!(
                "queue `{queue}` on {} holds {len} messages, more than max_queue_length {max}; waiting for its consumers",
                link.label()
            );
        }
        beat(link)?;
        if link.shutdown().sleep(BACKPRESSURE_POLL) {
            return Err(QueueError::ShuttingDown);
        }
    }
}

/// Pushes batches with one LPUSH each.
pub struct RedisProducer {
    link: Link,
    queue: String,
    /// Key recording the last applied batch number of this producer.
    record: String,
    seq: u64,
    max_len: u64,
    /// Queue length after the last push: above `max_len`, the next push waits first.
    last_len: u64,
}

impl RedisProducer {
    pub(super) fn new(link: Link, queue: &str, max_len: u64) -> Self {
        RedisProducer {
            link,
            queue: queue.to_string(),
            record: format!("{queue}:producer:{}", process_token()),
            seq: 0,
            max_len,
            last_len: 0,
        }
    }

    /// Pushes `items` onto `list` with `cmd` (LPUSH or RPUSH) once, whatever happens to the
    /// connection: one script stores the batch with a record of its number (both or, on a
    /// wrong-type key, neither), and after a lost answer the record tells whether it ran.
    /// Returns the list length after the push.
    fn store(&mut self, cmd: &str, list: &str, items: &[&[u8]]) -> QResult<u64> {
        self.seq += 1;
        let seq = self.seq.to_string();
        let mut inv = scripts().store.prepare_invoke();
        inv.key(list)
            .key(&self.record)
            .arg(cmd)
            .arg(&seq)
            .arg(PRODUCER_RECORD_TTL);
        for item in items {
            inv.arg(*item);
        }
        let mut in_doubt = false;
        loop {
            if in_doubt {
                let rec: Option<String> = match self.link.attempt(COMMAND_TIMEOUT, |c| {
                    redis::cmd("GET").arg(&self.record).query(c)
                }) {
                    Ok(v) => v,
                    Err(Fail::Lost) => continue,
                    Err(Fail::Err(e)) => return Err(e),
                };
                if rec.as_deref() == Some(seq.as_str()) {
                    // Stored before the connection broke; the length is not known, so the
                    // next push checks the high-water mark again.
                    return Ok(self.max_len.saturating_add(1));
                }
            }
            match self.link.attempt(COMMAND_TIMEOUT, |c| inv.invoke::<u64>(c)) {
                Ok(len) => return Ok(len),
                Err(Fail::Lost) => in_doubt = true,
                Err(Fail::Err(e)) => return Err(e),
            }
        }
    }
}

impl Producer for RedisProducer {
    fn push(&mut self, batch: Vec<Message>) -> QResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.last_len > self.max_len {
            wait_for_room(&mut self.link, &self.queue, self.max_len, |_| Ok(()))?;
        }
        let items: Vec<&[u8]> = batch.iter().map(|m| m.body.as_bytes()).collect();
        let queue = self.queue.clone();
        self.last_len = self.store("LPUSH", &queue, &items)?;
        Ok(())
    }

    fn dead_letter(&mut self, item: Message, reason: &str, section: &str) -> QResult<()> {
        let json = encode_dead_letter(&DeadLetter::from_producer(item.body, reason, section))?;
        let dead = Keys::new(&self.queue).dead;
        self.store("RPUSH", &dead, &[json.as_bytes()]).map(|_| ())
    }

    fn tracks_completion(&self) -> bool {
        false
    }
}
