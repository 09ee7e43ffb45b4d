//! The one loop every consuming role runs: take a batch, hand it to the role, commit what
//! became of each message.
//!
//! Broker, worker and filelog are each a [`Handler`]: they decide, message by message, whether
//! it is done, forwarded to other queues, dead-lettered, or (on a stop) given back. The loop
//! and [`Batch`] do the rest the same way for all three: the take with its wait, the
//! atomic commit (an ack, or a forward that acks and pushes together), dead letters with
//! their log line, notice and count, and the stop. A message leaves the consumer's in-flight
//! set only through a commit, a dead letter or a give-back, so one that a crash interrupts is
//! taken again (docs/architecture.md, "Delivery guarantees").

use super::notify::Notifier;
use super::RoleError;
use crate::config::Section;
use crate::queue::{Consumer, Message, QueueError, MAX_ATTEMPTS, TAKE_WAIT};
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use std::time::{Duration, Instant};

/// What a role does with each batch.
pub trait Handler {
    /// Called after every take, whether or not it brought messages (a file logger checks
    /// whether its file was moved away).
    fn after_take(&mut self) -> Result<(), RoleError> {
        Ok(())
    }

    /// Decides what becomes of each message of `batch`, through `out`. Returns
    /// [`Next::Stop`] when the role stops (it has given back what it did not finish).
    fn handle(&mut self, batch: Vec<Message>, out: &mut Batch<'_, '_>) -> Result<Next, RoleError>;
}

/// Whether the loop goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    Stop,
}

/// A consuming role's queue and what it reports to.
pub struct Consume<'a> {
    pub section: &'a Section,
    /// How the role logs its start and stop.
    pub announce: Announce,
    /// The queue taken from (dead letters go to `<queue>:dead`).
    pub queue: &'a str,
    pub consumer: Box<dyn Consumer>,
    pub shutdown: &'a Shutdown,
    pub notifier: &'a mut Notifier,
    pub stats: &'a Stats,
    /// Longer messages are dead-lettered before the handler sees them (`max_message_bytes`).
    pub max_message_bytes: usize,
}

/// The longest dead-letter reason, in bytes; a longer one is cut, saying how long it was.
pub const MAX_REASON: usize = 4096;
/// How much of a dead-lettered message a notice quotes.
const NOTICE_MESSAGE: usize = 4096;

/// How a consuming role's start and stop are logged. A process of its own logs them (its log
/// is its own); of the threads `loglines run` starts for one section, sharing one log, only the
/// first does, saying how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    Process,
    Thread { n: u32, of: u32 },
}

impl Announce {
    /// Logs `text` about `section` once per process, or once for all threads of a section,
    /// under the role's module as `target` (so `RUST_LOG` filters it with the role).
    pub fn log(self, target: &str, section: &str, text: &str) {
        match self {
            Announce::Process => log::info!(target: target, "[{section}] {text}"),
            Announce::Thread { n: 0, of } if of > 1 => {
                log::info!(target: target, "[{section}] {text} ({of} threads)")
            }
            Announce::Thread { n: 0, .. } => log::info!(target: target, "[{section}] {text}"),
            Announce::Thread { n, .. } => {
                log::debug!(target: target, "[{section}] {text} (thread {n})")
            }
        }
    }
}

impl Consume<'_> {
    /// Runs until `shutdown` is set or the handler stops. What a batch left pending is
    /// committed after it; a queue server that gives up ends the loop with its error (the
    /// messages in flight come back when the role restarts).
    pub fn run(mut self, handler: &mut dyn Handler) -> Result<(), RoleError> {
        while !self.shutdown.is_set() {
            let batch = match self.consumer.take(self.section.batch_size, TAKE_WAIT) {
                Ok(b) => b,
                Err(QueueError::ShuttingDown) => break,
                Err(e) => return Err(e.into()),
            };
            handler.after_take()?;
            if batch.is_empty() {
                continue;
            }
            let mut out = Batch {
                consume: &mut self,
                done: Vec::new(),
                out: Vec::new(),
                stopping: false,
            };
            // What no role can handle is filed whole, unread, here for every role: a message
            // that is not UTF-8, one too large (a plugin working on it would hold several
            // copies of it at once), or one that was in hand whenever consumers stopped.
            let max = out.consume.max_message_bytes;
            let mut fit = Vec::with_capacity(batch.len());
            for msg in batch {
                let unhandled = msg.unreadable().or_else(|| {
                    (msg.body.len() > max).then(|| format!(
                        "the message is {} bytes, over max_message_bytes = {max} in [loglines]; it was not handled",
                        msg.body.len()
                    ))
                }).or_else(|| {
                    (msg.attempts > MAX_ATTEMPTS).then(|| format!(
                        "{MAX_ATTEMPTS} consumers stopped without finishing this message, each while it was the only one they were handling: it may be what stops them (a crash, a kill, a call that never returns); set aside so that the queue moves on. Once the cause is fixed, `loglines queue requeue-dead QUEUE` puts it back"
                    ))
                });
                match unhandled {
                    Some(reason) => out.dead_letter(msg, &reason)?,
                    None => fit.push(msg),
                }
            }
            let next = if fit.is_empty() {
                Next::Continue
            } else {
                handler.handle(fit, &mut out)?
            };
            out.commit()?;
            if next == Next::Stop || out.stopping {
                break;
            }
        }
        Ok(())
    }
}

/// The outcome of one batch so far, committed together.
pub struct Batch<'b, 'a> {
    consume: &'b mut Consume<'a>,
    done: Vec<Message>,
    /// Messages to push at the commit, by queue, in the order they were added.
    out: Vec<(String, Vec<Message>)>,
    /// Set when the transport answered "shutting down": the role stops after this batch.
    stopping: bool,
}

impl Batch<'_, '_> {
    /// The role is finished with `msg`: it is acked at the commit.
    pub fn done(&mut self, msg: Message) {
        self.done.push(msg);
    }

    /// `msg` goes to `queue` at the commit, atomically with the acks.
    pub fn forward(&mut self, queue: &str, msg: Message) {
        match self.out.iter_mut().find(|(q, _)| q == queue) {
            Some((_, msgs)) => msgs.push(msg),
            None => self.out.push((queue.to_string(), vec![msg])),
        }
    }

    /// Files `msg` in `<queue>:dead` with `reason`, at once (atomically with its removal from
    /// the in-flight set), logs it, tells the notifier and counts it.
    pub fn dead_letter(&mut self, msg: Message, reason: &str) -> Result<(), RoleError> {
        let c = &mut *self.consume;
        // A reason quotes what went wrong (a plugin's error, a tracker's answer), which can be
        // megabytes; the message itself is kept whole.
        let reason = crate::util::text::shorten(reason, MAX_REASON);
        let reason = reason.as_str();
        // Said once it is filed: a dead letter that could not be filed is the error returned.
        // The notice quotes the message's start only (it may be megabytes).
        let head = crate::util::text::shorten(&msg.body, NOTICE_MESSAGE);
        match c.consumer.dead_letter(msg, reason) {
            Ok(()) => {
                log::warn!("[{}] dead-lettered a message: {reason}", c.section.name);
                c.notifier.dead_letter(c.queue, reason, &head);
                Stats::add(&c.stats.dead, 1);
                Ok(())
            }
            Err(QueueError::ShuttingDown) => {
                self.stopping = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Commits what is pending: acks the done messages, with the forwarded ones pushed in the
    /// same atomic step. Returns how many were acked (0 once the transport is shutting down:
    /// they stay in flight and are taken again).
    pub fn commit(&mut self) -> Result<usize, RoleError> {
        if self.done.is_empty() {
            return Ok(0);
        }
        let done = std::mem::take(&mut self.done);
        let out = std::mem::take(&mut self.out);
        let n = done.len();
        let consumer = &mut self.consume.consumer;
        let r = if out.is_empty() {
            consumer.ack(done)
        } else {
            consumer.forward(done, out)
        };
        match r {
            Ok(()) => Ok(n),
            Err(QueueError::ShuttingDown) => {
                self.stopping = true;
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// On a stop: commits what is done, and returns `rest` to the queue in order, to be taken
    /// first next time.
    pub fn give_back(&mut self, rest: Vec<Message>) -> Result<(), RoleError> {
        self.commit()?;
        self.stopping = true;
        match self.consume.consumer.requeue(rest) {
            Ok(()) | Err(QueueError::ShuttingDown) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits `d`, keeping the consumer's heartbeat fresh so that its in-flight messages are
    /// not handed to another consumer. Returns true if the role is to stop.
    pub fn wait(&mut self, d: Duration) -> bool {
        let c = &mut *self.consume;
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if c.shutdown.sleep(left.min(Duration::from_secs(2))) {
                return true;
            }
            match c.consumer.heartbeat() {
                Ok(()) => {}
                Err(QueueError::ShuttingDown) => return true,
                Err(e) => log::warn!("[{}] heartbeat failed: {e}", c.section.name),
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }

    /// True once a stop was asked for (the signal, or the transport shutting down).
    /// Refreshes the consumer's heartbeat, for a role that waits on something other than
    /// [`Batch::wait`] (a worker's requests in flight). Returns true if the role is to stop.
    pub fn keep_alive(&mut self) -> bool {
        let c = &mut *self.consume;
        match c.consumer.heartbeat() {
            Ok(()) => false,
            Err(QueueError::ShuttingDown) => true,
            Err(e) => {
                log::warn!("[{}] heartbeat failed: {e}", c.section.name);
                false
            }
        }
    }

    /// Publishes how the worker's requests are going (for `loglines status`); a failure is
    /// logged, not fatal: it is information, not a message.
    pub fn report(&mut self, tracker: &crate::queue::TrackerReport) {
        let c = &mut *self.consume;
        if let Err(e) = c.consumer.report(tracker) {
            log::debug!(
                "[{}] cannot publish the tracker report: {e}",
                c.section.name
            );
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping || self.consume.shutdown.is_set()
    }

    /// The notifier of the role's section, for notices other than dead letters.
    pub fn notifier(&mut self) -> &mut Notifier {
        self.consume.notifier
    }
}
