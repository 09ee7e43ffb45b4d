//! A consumer's commits: ack, forward, requeue and dead-letter, each one atomic Lua script run
//! at most once however often it is retried.

use super::consumer::RedisConsumer;
use super::link::Fail;
use super::link::COMMAND_TIMEOUT;
use super::liveness::refresh_heartbeat;
use super::producer::wait_for_room;
use super::scripts;
use crate::queue::{QResult, QueueError};

/// What a commit does besides removing acked messages from the in-flight list.
pub(super) enum Commit {
    Ack,
    /// Push to other queues (producer end) in one step with the ack.
    Forward(Vec<(String, Vec<Vec<u8>>)>),
    /// Back to the consumer end of this queue, in the order given (first is taken next).
    Requeue,
    /// To the dead-letter list, with this reason.
    Dead(String),
}

impl RedisConsumer {
    fn next_op(&mut self) -> String {
        self.op_seq += 1;
        format!("{}-{}", self.op_prefix, self.op_seq)
    }

    /// The acked items that this consumer still holds (all of them unless its list was
    /// recovered by another consumer), and whether that is everything it holds.
    fn present(&self, done: &[Vec<u8>]) -> (Vec<Vec<u8>>, bool) {
        let mut left = self.delivered.clone();
        let mut present = Vec::with_capacity(done.len());
        for d in done {
            if let Some(n) = left.get_mut(d).filter(|n| **n > 0) {
                *n -= 1;
                present.push(d.clone());
            }
        }
        let all = present.len() == self.delivered_len && self.pending.is_empty();
        (present, all)
    }

    fn forget(&mut self, acked: &[Vec<u8>]) {
        for a in acked {
            if let Some(n) = self.delivered.get_mut(a) {
                *n -= 1;
                self.delivered_len -= 1;
                if *n == 0 {
                    self.delivered.remove(a);
                }
            }
        }
    }

    /// Removes `done` from the in-flight list and does `what`, atomically and at most once.
    pub(super) fn commit(&mut self, done: Vec<Vec<u8>>, what: Commit) -> QResult<()> {
        if let Commit::Forward(out) = &what {
            for (q, items) in out {
                if !items.is_empty() {
                    self.wait_for_room(q)?;
                }
            }
        }
        let op = self.next_op();
        let mut resynced = false;
        loop {
            let (present, all) = self.present(&done);
            let mut dests: Vec<(String, &'static str, Vec<Vec<u8>>)> = Vec::new();
            match &what {
                Commit::Ack => {}
                Commit::Forward(out) if present.len() == done.len() => {
                    for (q, items) in out {
                        if !items.is_empty() {
                            dests.push((q.clone(), "L", items.clone()));
                        }
                    }
                }
                Commit::Forward(_) => {
                    // Part of the batch went back to the queue when our heartbeat expired and
                    // will be processed again; forwarding now would fan it out twice. Return
                    // the rest too, so the whole batch is redone once.
                    log::warn!(
                        "{}: {} of {} messages being forwarded were returned to the queue meanwhile; returning the rest too instead of forwarding",
                        self.name,
                        done.len() - present.len(),
                        done.len()
                    );
                    dests.push((self.keys.queue.clone(), "R", rev(&present)));
                }
                Commit::Requeue => dests.push((self.keys.queue.clone(), "R", rev(&present))),
                Commit::Dead(json) if !present.is_empty() => {
                    dests.push((self.keys.dead.clone(), "R", vec![json.clone().into_bytes()]))
                }
                Commit::Dead(_) => {}
            }
            dests.retain(|(_, _, items)| !items.is_empty());
            if present.is_empty() && dests.is_empty() {
                return Ok(());
            }
            // Finished, unless they go back to this queue: a suspect given back keeps its count
            // (it returns to the queue, and counts again if a consumer stops holding it).
            let given_back = dests.iter().any(|(q, _, _)| *q == self.keys.queue);
            let finished = !matches!(what, Commit::Requeue) && !given_back;
            let r = self.run_commit(&op, &present, all, finished, &dests);
            match r {
                Ok(1) | Ok(2) => {
                    self.forget(&present);
                    return Ok(());
                }
                Ok(-1) => self.expired()?,
                Ok(code) => {
                    if resynced {
                        return Err(QueueError::Server(format!(
                            "in-flight list {} changes under this consumer (code {code}): another process uses the same consumer id {}; give each process its own host name or process number",
                            self.inflight, self.name
                        )));
                    }
                    resynced = true;
                    self.resync()?;
                }
                // Retried with the same operation id: applied at most once.
                Err(Fail::Lost) => {}
                Err(Fail::Err(e)) => return Err(e),
            }
        }
    }

    fn run_commit(
        &mut self,
        op: &str,
        present: &[Vec<u8>],
        all: bool,
        finished: bool,
        dests: &[(String, &'static str, Vec<Vec<u8>>)],
    ) -> Result<i64, Fail> {
        let mut inv = scripts().commit.prepare_invoke();
        inv.key(&self.inflight)
            .key(&self.alive)
            .key(&self.keys.since)
            .key(&self.keys.ops)
            .key(&self.keys.attempts);
        for (q, _, _) in dests {
            inv.key(q);
        }
        inv.arg(&self.name)
            .arg(op)
            .arg(self.ttl)
            .arg(&self.alive_value);
        let finished = if finished { "1" } else { "0" };
        if all {
            inv.arg("all").arg(self.delivered_len).arg(0).arg(finished);
        } else {
            inv.arg("some")
                .arg(0)
                .arg(present.len())
                .arg(finished)
                .arg(present);
        }
        for (_, dir, items) in dests {
            inv.arg(*dir).arg(items.len()).arg(items);
        }
        self.link.attempt(COMMAND_TIMEOUT, |c| inv.invoke::<i64>(c))
    }

    fn wait_for_room(&mut self, queue: &str) -> QResult<()> {
        let (alive, val, ttl) = (&self.alive, &self.alive_value, self.ttl);
        let mut expired = false;
        wait_for_room(&mut self.link, queue, self.max_len, |link| {
            expired |= !refresh_heartbeat(link, alive, val, ttl)?;
            Ok(())
        })?;
        if expired {
            self.expired()?;
        }
        Ok(())
    }
}

/// Reversed copy: RPUSH of the reversed list leaves the first item at the right end.
fn rev(items: &[Vec<u8>]) -> Vec<Vec<u8>> {
    items.iter().rev().cloned().collect()
}
