//! Inspection and repair for `loglines status` and `loglines queue`: one attempt per command,
//! no reconnect loop, so a command that cannot reach Redis says so at once.

use super::keys::{parse_dead_letter, Keys};
use super::link::{Fail, Link, COMMAND_TIMEOUT};
use super::liveness::scan;
use super::scripts;
use crate::queue::{Admin, ConsumerInfo, DeadLetter, QResult, QueueError, QueueInfo};
use std::collections::HashMap;

/// Inspection and repair; one attempt per command (no reconnect loop), for the commands.
pub struct RedisAdmin {
    link: Link,
    version: String,
    label: String,
}

impl RedisAdmin {
    pub(super) fn new(link: Link, version: &str, label: String) -> Self {
        RedisAdmin {
            link,
            version: version.to_string(),
            label,
        }
    }

    fn once<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> QResult<T> {
        match self.link.attempt(COMMAND_TIMEOUT, f) {
            Ok(v) => Ok(v),
            Err(Fail::Lost) => Err(QueueError::Unavailable(format!(
                "lost the connection to {}",
                self.label
            ))),
            Err(Fail::Err(e)) => Err(e),
        }
    }

    fn scan_suffixes(&mut self, pattern: &str, prefix: &str) -> QResult<Vec<String>> {
        Ok(scan(&mut self.link, pattern)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect())
    }
}

impl Admin for RedisAdmin {
    fn info(&mut self, queue: &str) -> QResult<QueueInfo> {
        let keys = Keys::new(queue);
        let mut names =
            self.scan_suffixes(&keys.inflight_pattern(), &format!("{queue}:inflight:"))?;
        let alive = self.scan_suffixes(&keys.alive_pattern(), &format!("{queue}:alive:"))?;
        names.extend(alive.iter().cloned());
        names.sort();
        names.dedup();
        let mut pipe = redis::pipe();
        pipe.cmd("LLEN").arg(&keys.queue);
        pipe.cmd("LLEN").arg(&keys.dead);
        pipe.cmd("TIME");
        pipe.cmd("HGETALL").arg(&keys.since);
        pipe.cmd("LLEN").arg(&keys.suspect);
        pipe.cmd("HGETALL").arg(&keys.tracker);
        for n in &names {
            pipe.cmd("LLEN").arg(keys.inflight(n));
        }
        let v: Vec<redis::Value> = self.once(|c| pipe.query(c))?;
        let conv = |v: &redis::Value| -> QResult<u64> {
            redis::from_redis_value_ref(v)
                .map_err(|e| QueueError::Server(format!("unexpected answer from redis: {e}")))
        };
        // Suspects (what stopped consumers held) wait to be taken too, before the rest.
        let length = conv(&v[0])? + conv(&v[4])?;
        let dead = conv(&v[1])?;
        let (now, _): (u64, u64) = redis::from_redis_value_ref(&v[2])
            .map_err(|e| QueueError::Server(format!("unexpected TIME answer: {e}")))?;
        let since: HashMap<String, u64> = redis::from_redis_value_ref(&v[3]).unwrap_or_default();
        let tracker: HashMap<String, String> =
            redis::from_redis_value_ref(&v[5]).unwrap_or_default();
        let mut consumers = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let in_flight = conv(&v[6 + i])?;
            consumers.push(ConsumerInfo {
                consumer: n.clone(),
                in_flight,
                oldest_age_secs: since
                    .get(n)
                    .filter(|_| in_flight > 0)
                    .map(|s| now.saturating_sub(*s)),
                alive: alive.contains(n),
                tracker: tracker.get(n).and_then(|j| serde_json::from_str(j).ok()),
            });
        }
        Ok(QueueInfo {
            queue: queue.to_string(),
            length,
            dead,
            consumers,
        })
    }

    fn peek(&mut self, queue: &str, n: usize) -> QResult<Vec<String>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        // As bytes: another program may have pushed what is not UTF-8; it is shown escaped.
        let v: Vec<Vec<u8>> = self.once(|c| {
            redis::cmd("LRANGE")
                .arg(queue)
                .arg(-(n as i64))
                .arg(-1)
                .query(c)
        })?;
        Ok(v.iter()
            .rev()
            .map(|m| crate::util::text::escape_invalid_utf8(m))
            .collect())
    }

    fn dead_letters(&mut self, queue: &str, n: usize) -> QResult<Vec<DeadLetter>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let key = Keys::new(queue).dead;
        let raw: Vec<Vec<u8>> = self.once(|c| {
            redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(n as i64 - 1)
                .query(c)
        })?;
        Ok(raw.iter().map(|r| parse_dead_letter(r)).collect())
    }

    fn requeue_dead(&mut self, queue: &str, reason: Option<&str>) -> QResult<u64> {
        let keys = Keys::new(queue);
        self.once(|c| {
            scripts()
                .requeue_dead
                .key(&keys.dead)
                .key(&keys.queue)
                .arg(reason.unwrap_or(""))
                .invoke(c)
        })
    }

    fn purge(&mut self, queue: &str) -> QResult<u64> {
        // A script, not MULTI/EXEC: LLEN failing on a key that is not a list did not stop the
        // DEL after it.
        let keys = Keys::new(queue);
        self.once(|c| {
            scripts()
                .purge
                .key(queue)
                .key(&keys.suspect)
                .key(&keys.attempts)
                .invoke(c)
        })
    }

    fn describe(&mut self) -> QResult<String> {
        Ok(format!("redis {} at {}", self.version, self.label))
    }
}
