//! `loglines worker` (the 2010 pirus2.py): runs the Lua plugin on each message and sends the
//! usage events to the tracker.
//!
//! Messages are handled one by one in queue order; the plugin runs on a thread of its own,
//! ahead of the sending within the batch, so that its work overlaps the wait for the tracker
//! (see `prepare`). A usage event the tracker cannot take right
//! now (unreachable, timeout, 408, 429, 5xx) is retried in place with exponential backoff and
//! jitter capped at `pauseonfail`, so order is kept and nothing is dropped; a plugin error or a
//! permanent rejection (other 4xx) dead-letters that one message and the worker carries on.
//! A batch's outcome (acks plus pushes to `success_queue` / `other_queue`) is committed with one
//! atomic forward.

pub mod prepare;
pub mod tracker;

use crate::config::{Endpoint, Section, WorkerSettings};
use crate::plugin::library::openurl::{openurl, query_string};
use crate::queue::{utc_iso8601, Consumer, Message, QueueError};
use crate::roles::notify::Notifier;
use crate::roles::worker::tracker::{Answer, Backoff, TrackerClient};
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use prepare::{Prepared, Preparer, Step};
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug)]
pub enum WorkerError {
    Queue(QueueError),
    /// The plugin thread is gone (a panic in the plugin host).
    Plugin(String),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::Queue(e) => write!(f, "{e}; check that the queue server is running"),
            WorkerError::Plugin(e) => write!(f, "{e}; the messages it held are still in flight and are taken again when the worker restarts"),
        }
    }
}

impl std::error::Error for WorkerError {}

impl From<QueueError> for WorkerError {
    fn from(e: QueueError) -> Self {
        WorkerError::Queue(e)
    }
}

/// The URL (or, in a dry run, the query) for one event. `url_ver` and `rfr_id` from the worker
/// section fill in when the plugin does not set them, as the 2010 "OpenURL default details" did.
pub fn event_url(settings: &WorkerSettings, mut params: Vec<(String, String)>) -> String {
    if !params.iter().any(|(k, _)| k == "url_ver") {
        params.push(("url_ver".into(), settings.url_ver.clone()));
    }
    if let Some(rfr) = &settings.rfr_id {
        if !params.iter().any(|(k, _)| k == "rfr_id") {
            params.push(("rfr_id".into(), rfr.clone()));
        }
    }
    match &settings.endpoint {
        Endpoint::Url(u) => openurl(u, &params),
        Endpoint::DryRun => query_string(&params),
    }
}

/// A tracker outage in progress, for logging once per change of state.
struct Outage {
    since: SystemTime,
    started: Instant,
}

/// What happened to one batch so far, committed together.
#[derive(Default)]
struct Pending {
    done: Vec<Message>,
    sent: Vec<Message>,
    other: Vec<Message>,
}

struct Worker<'a> {
    section: &'a Section,
    settings: &'a WorkerSettings,
    consumer: Box<dyn Consumer>,
    client: TrackerClient,
    backoff: Backoff,
    outage: Option<Outage>,
    shutdown: &'a Shutdown,
    notifier: &'a mut Notifier,
    stats: &'a Stats,
}

/// Runs until `shutdown` is set. On shutdown the current batch is committed as far as it got
/// and the rest is returned to the queue in order.
pub fn run(
    section: &Section,
    settings: &WorkerSettings,
    mut plugin: Preparer,
    consumer: Box<dyn Consumer>,
    shutdown: &Shutdown,
    notifier: &mut Notifier,
    stats: &Stats,
) -> Result<(), WorkerError> {
    let mut w = Worker {
        section,
        settings,
        consumer,
        client: TrackerClient::new(settings, shutdown),
        backoff: Backoff::new(settings.pauseonfail),
        outage: None,
        shutdown,
        notifier,
        stats,
    };
    log::info!(
        "[{}] worker: {} -> {} via {}",
        section.name,
        settings.listento,
        w.client.endpoint().unwrap_or("stdout (dry run)"),
        plugin.display_path()
    );
    let result = w.run_loop(&mut plugin);
    if w.outage.is_some() {
        stats.retrying.fetch_sub(1, Ordering::Relaxed);
    }
    log::info!("[{}] worker stopped", section.name);
    result
}

impl Worker<'_> {
    fn run_loop(&mut self, plugin: &mut Preparer) -> Result<(), WorkerError> {
        while !self.shutdown.is_set() {
            let batch = match self
                .consumer
                .take(self.section.batch_size, crate::roles::broker::TAKE_WAIT)
            {
                Ok(b) => b,
                Err(QueueError::ShuttingDown) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if batch.is_empty() {
                continue;
            }
            plugin.submit(batch).map_err(WorkerError::Plugin)?;
            let mut pending = Pending::default();
            while let Some(prepared) = plugin.next_result() {
                let prepared = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        // What was sent is acked, so a restart does not send it again.
                        self.commit(pending)?;
                        return Err(WorkerError::Plugin(e));
                    }
                };
                // Stopping: what the plugin made of the rest no longer matters (it may even
                // come from an `http_get` the stop cut short); it all goes back in order.
                if self.shutdown.is_set() {
                    self.give_back(plugin, prepared.msg, &mut pending)?;
                    return Ok(());
                }
                if !self.handle(plugin, prepared, &mut pending)? {
                    return Ok(());
                }
            }
            self.commit(pending)?;
        }
        Ok(())
    }

    /// Handles one message. Returns false when the worker is stopping: the batch has then been
    /// committed as far as it got and the rest requeued in order.
    fn handle(
        &mut self,
        plugin: &mut Preparer,
        prepared: Prepared,
        pending: &mut Pending,
    ) -> Result<bool, WorkerError> {
        let Prepared { msg, step } = prepared;
        let url = match step {
            Step::PluginError(e) => {
                self.dead_letter(msg, &format!("plugin error: {e}"))?;
                return Ok(true);
            }
            Step::NotEligible => {
                Stats::add(&self.stats.not_eligible, 1);
                if self.settings.other_queue.is_some() {
                    pending.other.push(msg.derive(msg.body.clone()));
                }
                pending.done.push(msg);
                return Ok(true);
            }
            Step::Send(url) => url,
            // Skipping happens on a stop (caught before `handle`, unless it came just now) or
            // inside `drain`. Outside a stop it would be a bug: the message goes back to the
            // queue unlooked at, and the worker stops with an error rather than carry on.
            Step::Skipped => {
                self.give_back(plugin, msg, pending)?;
                if self.shutdown.is_set() {
                    return Ok(false);
                }
                return Err(WorkerError::Plugin(
                    "the plugin thread returned a message unprocessed outside a stop; it and the rest of its batch are back in the queue".into(),
                ));
            }
        };
        if self.settings.debug {
            log::info!("[{}] {url}", self.section.name);
        }
        loop {
            // Stopping: nothing new is sent; this message and the rest go back in order.
            if self.shutdown.is_set() {
                return self.give_back(plugin, msg, pending);
            }
            match self.client.send(&url) {
                Answer::Accepted => {
                    self.tracker_ok();
                    Stats::add(&self.stats.sent, 1);
                    if self.settings.success_queue.is_some() {
                        pending.sent.push(msg.derive(msg.body.clone()));
                    }
                    pending.done.push(msg);
                    return Ok(true);
                }
                Answer::Rejected { status, body } => {
                    self.tracker_ok();
                    let reason = format!(
                        "the tracker rejected the event with status {status}: {body:?}; url: {url}"
                    );
                    self.dead_letter(msg, &reason)?;
                    return Ok(true);
                }
                Answer::Retry(why) => {
                    // A stop cuts a request still unanswered after STOP_GRACE (or a connection
                    // attempt at once): that is no outage. The message goes back to the queue;
                    // the tracker may have counted it already (a duplicate of the kind a crash
                    // leaves).
                    if self.shutdown.is_set() {
                        return self.give_back(plugin, msg, pending);
                    }
                    self.tracker_failed(&why);
                    let delay = self.backoff.next_delay();
                    if self.wait(delay)? {
                        return self.give_back(plugin, msg, pending);
                    }
                }
            }
        }
    }

    /// On stop: commits what is done, and returns `msg` and the rest of the batch (taken back
    /// from the plugin thread, unprocessed) to the queue in order. Always false ("stopping").
    fn give_back(
        &mut self,
        plugin: &mut Preparer,
        msg: Message,
        pending: &mut Pending,
    ) -> Result<bool, WorkerError> {
        // What was sent is acked first, whatever happens to the rest.
        self.commit(std::mem::take(pending))?;
        let mut back = vec![msg];
        back.extend(
            plugin
                .drain()
                .map_err(WorkerError::Plugin)?
                .into_iter()
                .map(|p| p.msg),
        );
        match self.consumer.requeue(back) {
            Ok(()) | Err(QueueError::ShuttingDown) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn tracker_ok(&mut self) {
        self.backoff.reset();
        if let Some(o) = self.outage.take() {
            self.stats.retrying.fetch_sub(1, Ordering::Relaxed);
            log::warn!(
                "[{}] tracker back after {} s (unreachable since {})",
                self.section.name,
                o.started.elapsed().as_secs(),
                utc_iso8601(o.since)
            );
        }
    }

    fn tracker_failed(&mut self, why: &str) {
        let since = match &self.outage {
            Some(o) => o.since,
            None => {
                let now = SystemTime::now();
                self.stats.retrying.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "[{}] tracker unreachable since {}: {why}; retrying with backoff up to pauseonfail = {} s, messages are kept",
                    self.section.name,
                    utc_iso8601(now),
                    self.settings.pauseonfail.as_secs()
                );
                self.outage = Some(Outage {
                    since: now,
                    started: Instant::now(),
                });
                now
            }
        };
        self.notifier.tracker_down(since, why);
    }

    /// Waits `d`, keeping this consumer's heartbeat fresh so its in-flight messages are not
    /// handed to another consumer. Returns true if shutdown was requested.
    fn wait(&mut self, d: Duration) -> Result<bool, WorkerError> {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if self.shutdown.sleep(left.min(Duration::from_secs(2))) {
                return Ok(true);
            }
            match self.consumer.heartbeat() {
                Ok(()) => {}
                Err(QueueError::ShuttingDown) => return Ok(true),
                Err(e) => log::warn!("[{}] heartbeat failed: {e}", self.section.name),
            }
            if Instant::now() >= end {
                return Ok(false);
            }
        }
    }

    fn dead_letter(&mut self, msg: Message, reason: &str) -> Result<(), WorkerError> {
        log::warn!("[{}] dead-lettered a message: {reason}", self.section.name);
        self.notifier
            .dead_letter(&self.settings.listento, reason, &msg.body);
        match self.consumer.dead_letter(msg, reason) {
            Ok(()) => {
                Stats::add(&self.stats.dead, 1);
                Ok(())
            }
            Err(QueueError::ShuttingDown) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn commit(&mut self, p: Pending) -> Result<(), WorkerError> {
        if p.done.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        if let (Some(q), false) = (&self.settings.success_queue, p.sent.is_empty()) {
            out.push((q.clone(), p.sent));
        }
        if let (Some(q), false) = (&self.settings.other_queue, p.other.is_empty()) {
            out.push((q.clone(), p.other));
        }
        let r = if out.is_empty() {
            self.consumer.ack(p.done)
        } else {
            self.consumer.forward(p.done, out)
        };
        match r {
            Ok(()) | Err(QueueError::ShuttingDown) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
