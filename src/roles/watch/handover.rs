//! Handing lines to the transport: batches and dead letters, each a segment of [`Progress`],
//! with retries while a durable transport is unavailable. Shared by the watcher and
//! `loglines push`.

use super::progress::{Committed, End, Progress};
use crate::queue::{Message, Producer, QueueError};
use crate::roles::notify::Notifier;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use std::time::{Duration, Instant};

/// Retries of a failed push wait this long at first, doubling up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a hand-over did not happen.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Shutdown was requested; the lines are not handed over (and not counted as such).
    Stop,
    /// The transport failed in a way retrying cannot fix.
    Failed(QueueError),
}

pub(crate) struct Handover<'a> {
    producer: Box<dyn Producer>,
    /// The transport holds what it accepted (Redis): a push that returned Ok is finished.
    durable: bool,
    pub(crate) progress: Progress,
    queue: String,
    section: String,
    shutdown: &'a Shutdown,
    /// Told about every dead letter (notify_command / notify_queue).
    notifier: &'a mut Notifier,
    /// Shared counters (`loglines run`'s status line): lines handed over, dead letters.
    stats: &'a Stats,
    pub(crate) lines: u64,
    pub(crate) batches: u64,
    pub(crate) dead_lettered: u64,
}

impl<'a> Handover<'a> {
    /// The shared counters this handover counts in.
    pub(crate) fn stats(&self) -> &Stats {
        self.stats
    }

    pub(crate) fn new(
        producer: Box<dyn Producer>,
        queue: &str,
        section: &str,
        shutdown: &'a Shutdown,
        notifier: &'a mut Notifier,
        stats: &'a Stats,
    ) -> Self {
        Handover {
            durable: !producer.tracks_completion(),
            producer,
            progress: Progress::new(Committed::default()),
            queue: queue.to_string(),
            section: section.to_string(),
            shutdown,
            notifier,
            stats,
            lines: 0,
            batches: 0,
            dead_lettered: 0,
        }
    }

    pub(crate) fn durable(&self) -> bool {
        self.durable
    }

    /// Pushes one batch as one segment ending at `end`. A durable transport is retried with
    /// backoff until it accepts or shutdown is requested; a tracking one fails at once.
    pub(crate) fn send(
        &mut self,
        mut batch: Vec<Message>,
        end: Option<End>,
    ) -> Result<(), Refused> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let seq = self.progress.open(end);
        // With a tracking transport this copy keeps the segment unfinished until the push has
        // returned: a push failing part-way must be marked abandoned before the messages it
        // dropped could finish the segment.
        let keep = if self.durable {
            None
        } else {
            let l = self.progress.guard(seq);
            for m in &mut batch {
                m.lineage = l.clone();
            }
            Some(l)
        };
        let mut delay = RETRY_FIRST;
        let mut failing_since: Option<Instant> = None;
        loop {
            let attempt = if self.durable {
                batch.clone()
            } else {
                std::mem::take(&mut batch)
            };
            match self.producer.push(attempt) {
                Ok(()) => {
                    if self.durable {
                        self.progress.finish(seq);
                    }
                    drop(keep);
                    if let Some(t) = failing_since {
                        log::info!(
                            "pushing to `{}` works again after {:.1}s",
                            self.queue,
                            t.elapsed().as_secs_f64()
                        );
                    }
                    self.lines += n;
                    self.batches += 1;
                    Stats::add(&self.stats.read, n);
                    return Ok(());
                }
                Err(QueueError::ShuttingDown) => {
                    self.progress.abandon(seq);
                    return Err(Refused::Stop);
                }
                Err(e) if self.durable => {
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        log::warn!(
                            "pushing {n} lines to `{}` failed: {e}; retrying (the lines wait in memory, no more are read meanwhile)",
                            self.queue
                        );
                    }
                    if self.shutdown.sleep(delay) {
                        self.progress.abandon(seq);
                        return Err(Refused::Stop);
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    self.progress.abandon(seq);
                    return Err(Refused::Failed(e));
                }
            }
        }
    }

    /// Files one message as a dead letter of the queue, as its own segment; retried like
    /// [`send`](Self::send) (a dead letter filed twice is better than none).
    pub(crate) fn dead_letter(
        &mut self,
        body: String,
        reason: &str,
        end: Option<End>,
    ) -> Result<(), Refused> {
        let seq = self.progress.open(end);
        let mut delay = RETRY_FIRST;
        let mut said = false;
        loop {
            match self
                .producer
                .dead_letter(Message::new(body.clone()), reason, &self.section)
            {
                Ok(()) => {
                    self.progress.finish(seq);
                    self.dead_lettered += 1;
                    // Read, and dead-lettered: so that every line is in one count and the
                    // summary adds up.
                    Stats::add(&self.stats.read, 1);
                    Stats::add(&self.stats.dead, 1);
                    self.notifier.dead_letter(&self.queue, reason, &body);
                    return Ok(());
                }
                Err(QueueError::ShuttingDown) => {
                    self.progress.abandon(seq);
                    return Err(Refused::Stop);
                }
                Err(e) => {
                    if !said {
                        log::warn!(
                            "filing a dead letter for `{}` failed: {e}; retrying",
                            self.queue
                        );
                        said = true;
                    }
                    if self.shutdown.sleep(delay) {
                        self.progress.abandon(seq);
                        return Err(Refused::Stop);
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// A finished marker segment: the checkpoint moves to `at` once everything before it is
    /// finished.
    pub(crate) fn mark(&mut self, at: End) {
        let seq = self.progress.open(Some(at));
        self.progress.finish(seq);
    }

    /// With a tracking transport, waits (up to `limit`, or until shutdown when `stop_early`)
    /// for every handed-over line to be finished. Returns true when all are.
    pub(crate) fn wait_finished(&self, limit: Duration, stop_early: bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if self.progress.unfinished() == 0 {
                return true;
            }
            if Instant::now() >= end || (stop_early && self.shutdown.is_set()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
