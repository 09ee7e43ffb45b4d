//! A consumer's heartbeat, and what happens when one stops: rebuilding its own account after
//! its heartbeat expired, and returning the in-flight lists of consumers that are gone.

use super::consumer::RedisConsumer;
use super::link::Link;
use super::scripts;
use crate::queue::{QResult, QueueError};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

impl RedisConsumer {
    /// Claims the consumer id: sets the heartbeat only if nobody holds it (`SET NX`). A holder
    /// that stopped without releasing it (kill -9) loses it within `ttl`, so the claim is tried
    /// again for up to twice that; a heartbeat still renewed after that belongs to a running
    /// process with the same id, and this one stops with an error naming the id rather than
    /// take messages from the same in-flight list.
    pub(super) fn set_alive(&mut self) -> QResult<()> {
        let (key, val, ttl) = (self.alive.clone(), self.alive_value.clone(), self.ttl);
        let give_up = Instant::now() + Duration::from_secs(2 * ttl + 1);
        let mut said = false;
        loop {
            let got: Option<String> = self.link.idempotent(|c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&val)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query(c)
            })?;
            if got.is_some() {
                if said {
                    log::info!("{}: claimed the consumer id", self.name);
                }
                return Ok(());
            }
            let holder: Option<String> = self
                .link
                .idempotent(|c| redis::cmd("GET").arg(&key).query(c))?;
            let Some(holder) = holder else {
                continue; // Expired between the two commands: claim again.
            };
            // A holder on this machine whose process is gone (kill -9, then supervisord's
            // restart) cannot renew it: take it over now rather than wait for the expiry.
            if holder_is_dead(&holder, &self.host) {
                let taken: i64 = self.link.idempotent(|c| {
                    scripts()
                        .take_over
                        .key(&key)
                        .arg(&holder)
                        .arg(&val)
                        .arg(ttl)
                        .invoke(c)
                })?;
                if taken == 1 {
                    log::info!(
                        "{}: took over the consumer id from `{holder}`, a process of this machine that is gone",
                        self.name
                    );
                    return Ok(());
                }
                continue;
            }
            if Instant::now() >= give_up {
                return Err(QueueError::Server(format!(
                    "consumer id {} is in use by another running process (its heartbeat {key} = `{holder}` is still renewed after {}s); two processes must not share an id: give each its own --process-num, or its own host name",
                    self.name,
                    2 * ttl + 1
                )));
            }
            if !said {
                log::warn!(
                    "{}: the consumer id is held by `{holder}`; waiting up to {}s for its heartbeat to expire (a process with this id stopped without releasing it, or is still running)",
                    self.name,
                    2 * ttl + 1
                );
                said = true;
            }
            if self.link.shutdown().sleep(Duration::from_millis(500)) {
                return Err(QueueError::ShuttingDown);
            }
        }
    }

    /// Gives up the consumer id on a clean stop, so that `status` no longer shows this consumer
    /// alive and a restart claims it at once. Best effort: an expired heartbeat does as much.
    pub(super) fn release(&mut self) {
        let (key, val) = (&self.alive, &self.alive_value);
        self.link
            .last_word(|c| scripts().release.key(key).arg(val).invoke::<i64>(c));
        // What it said about the tracker no longer holds.
        let (tracker, name) = (&self.keys.tracker, &self.name);
        self.link
            .last_word(|c| redis::cmd("HDEL").arg(tracker).arg(name).query::<i64>(c));
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
            let moved = self.set_aside(&list, other, false)?;
            if moved > 0 {
                log::warn!(
                    "consumer {other} of queue `{}` stopped with {moved} messages in flight (heartbeat expired); they are taken again one at a time, before the rest of the queue",
                    self.keys.queue
                );
            }
        }
        Ok(())
    }
}

impl RedisConsumer {
    /// Moves the in-flight list `list` of consumer `name` (this one's own when `own`) onto the
    /// queue's suspect list; the number of messages moved (-1: that consumer is alive).
    pub(super) fn set_aside(&mut self, list: &str, name: &str, own: bool) -> QResult<i64> {
        let alive = self.keys.alive(name);
        let (suspect, since) = (self.keys.suspect.clone(), self.keys.since.clone());
        self.link.idempotent(|c| {
            scripts()
                .recover
                .key(list)
                .key(&alive)
                .key(&suspect)
                .key(&since)
                .arg(name)
                .arg(if own { "own" } else { "other" })
                .invoke(c)
        })
    }
}

/// Extends a consumer's heartbeat by `ttl` seconds if it still holds this consumer's value;
/// false if it expired (other consumers may already have taken back what it held) or another
/// process holds the id now.
pub(super) fn refresh_heartbeat(link: &mut Link, key: &str, val: &str, ttl: u64) -> QResult<bool> {
    let ok: i64 = link.idempotent(|c| scripts().refresh.key(key).arg(val).arg(ttl).invoke(c))?;
    Ok(ok == 1)
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

/// Whether a heartbeat value (`pid N on HOST since T (TOKEN)`) names a process of `host` that
/// no longer exists. Anything else (another machine, a value of another form, a live pid) is
/// taken as alive: waiting for the expiry is the safe side.
fn holder_is_dead(holder: &str, host: &str) -> bool {
    let Some(rest) = holder.strip_prefix("pid ") else {
        return false;
    };
    let mut words = rest.split(' ');
    let (Some(pid), Some("on"), Some(h)) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    h == host
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::holder_is_dead;

    #[test]
    fn only_a_gone_process_of_this_machine_is_dead() {
        let me = std::process::id();
        assert!(!holder_is_dead(&format!("pid {me} on h since 1 (t)"), "h"));
        // Above the kernel's pid_max: no such process.
        assert!(holder_is_dead("pid 4999999 on h since 1 (t)", "h"));
        assert!(!holder_is_dead("pid 4999999 on other since 1 (t)", "h"));
        assert!(!holder_is_dead("something else", "h"));
    }
}
