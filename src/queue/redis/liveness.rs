//! A consumer's heartbeat, and what happens when one stops: rebuilding its own account after
//! its heartbeat expired, and returning the in-flight lists of consumers that are gone.

use super::consumer::RedisConsumer;
use super::link::Link;
use super::scripts;
use crate::queue::QResult;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

impl RedisConsumer {
    pub(super) fn set_alive(&mut self) -> QResult<()> {
        let (key, val, ttl) = (&self.alive, &self.alive_value, self.ttl);
        self.link.idempotent(|c| {
            redis::cmd("SET")
                .arg(key)
                .arg(val)
                .arg("EX")
                .arg(ttl)
                .query::<()>(c)
        })
    }

    /// Refreshes the heartbeat; if it had expired, our list may have been given back to the
    /// queue by another consumer, so the local account is rebuilt first.
    pub(super) fn beat(&mut self) -> QResult<()> {
        if !refresh_heartbeat(&mut self.link, &self.alive, &self.alive_value, self.ttl)? {
            self.expired()?;
        }
        Ok(())
    }

    pub(super) fn expired(&mut self) -> QResult<()> {
        log::warn!(
            "{}: heartbeat expired (no take, ack or heartbeat for over {}s); what this consumer held may have gone back to the queue and be processed again",
            self.name,
            self.ttl
        );
        self.set_alive()?;
        self.resync()
    }

    /// Rebuilds `delivered` and `pending` from the in-flight list: delivered keeps what is
    /// still there; anything else in the list (restart, a take whose answer was lost) becomes
    /// pending, oldest first.
    pub(super) fn resync(&mut self) -> QResult<()> {
        let key = self.inflight.clone();
        let list: Vec<Vec<u8>> = self
            .link
            .idempotent(|c| redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c))?;
        let mut avail: HashMap<&[u8], usize> = HashMap::new();
        for item in &list {
            *avail.entry(item.as_slice()).or_default() += 1;
        }
        let mut delivered = HashMap::new();
        let mut delivered_len = 0;
        for (item, n) in &self.delivered {
            let a = avail.get_mut(item.as_slice()).map(|a| {
                let keep = (*a).min(*n);
                *a -= keep;
                keep
            });
            if let Some(keep) = a.filter(|k| *k > 0) {
                delivered.insert(item.clone(), keep);
                delivered_len += keep;
            }
        }
        let mut pending = VecDeque::new();
        for item in list.iter().rev() {
            if let Some(a) = avail.get_mut(item.as_slice()).filter(|a| **a > 0) {
                *a -= 1;
                pending.push_back(item.clone());
            }
        }
        self.delivered = delivered;
        self.delivered_len = delivered_len;
        self.pending = pending;
        Ok(())
    }

    /// At start and then at most once per heartbeat ttl: returns in-flight lists of consumers
    /// whose heartbeat expired to the queue.
    pub(super) fn maybe_recover(&mut self) -> QResult<()> {
        if self
            .last_scan
            .is_some_and(|t| t.elapsed() < Duration::from_secs(self.ttl))
        {
            return Ok(());
        }
        self.last_scan = Some(Instant::now());
        let pattern = self.keys.inflight_pattern();
        let lists = scan(&mut self.link, &pattern)?;
        let prefix = format!("{}:inflight:", self.keys.queue);
        for list in lists {
            let Some(other) = list.strip_prefix(&prefix) else {
                continue;
            };
            if other == self.name {
                continue;
            }
            let (alive, queue, since) = (
                self.keys.alive(other),
                self.keys.queue.clone(),
                self.keys.since.clone(),
            );
            let moved: i64 = self.link.idempotent(|c| {
                scripts()
                    .recover
                    .key(&list)
                    .key(&alive)
                    .key(&queue)
                    .key(&since)
                    .arg(other)
                    .invoke(c)
            })?;
            if moved > 0 {
                log::warn!(
                    "consumer {other} of queue `{queue}` stopped with {moved} messages in flight (heartbeat expired); returned them to the queue"
                );
            }
        }
        Ok(())
    }
}

/// Extends a consumer's heartbeat key by `ttl` seconds if it still exists (`SET XX`); false if
/// it had expired, when other consumers may already have taken back what it held.
pub(super) fn refresh_heartbeat(link: &mut Link, key: &str, val: &str, ttl: u64) -> QResult<bool> {
    let ok: Option<String> = link.idempotent(|c| {
        redis::cmd("SET")
            .arg(key)
            .arg(val)
            .arg("XX")
            .arg("EX")
            .arg(ttl)
            .query(c)
    })?;
    Ok(ok.is_some())
}

pub(super) fn scan(link: &mut Link, pattern: &str) -> QResult<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = link.idempotent(|c| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(c)
        })?;
        out.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out.dedup();
    Ok(out)
}
