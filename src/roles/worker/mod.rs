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
//! atomic forward by the consume loop every consuming role shares (`roles::consume`).

pub mod prepare;
pub mod settings;
pub mod tracker;
pub mod window;

pub use settings::{plugin_spec, Endpoint, HttpMethod, WorkerSettings};

use crate::config::Section;
use crate::plugin::library::openurl::{openurl, query_string};
use crate::queue::{utc_iso8601, Message};
use crate::roles::consume::{Batch, Consume, Handler, Next};
use crate::roles::RoleError;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use crate::util::text::shorten;
use prepare::{Prepared, Preparer, Step};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tracker::{Answer, Backoff, TrackerClient, STOP_GRACE};
use window::{Flight, Senders};

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

/// What the plugin's verdict on a message leaves to do.
enum Verdict {
    /// Nothing: it was not an event (or the plugin failed on it) and is settled.
    Settled,
    /// Send this URL for it.
    Send(Message, String),
    /// It came back from the plugin thread unprocessed: give it back.
    Skipped(Message),
}

/// How much of a URL a dead-letter reason quotes (the message itself keeps the whole line).
const REASON_URL: usize = 2000;

/// A tracker outage in progress, for logging once per change of state.
struct Outage {
    since: SystemTime,
    started: Instant,
}

/// A worker: the plugin thread ahead, the tracker client, and the outage state.
struct Worker<'a> {
    section: &'a Section,
    settings: &'a WorkerSettings,
    plugin: Preparer,
    client: TrackerClient,
    backoff: Backoff,
    outage: Option<Outage>,
    shutdown: &'a Shutdown,
    stats: &'a Stats,
    /// With `concurrency` above 1: the threads making the requests, and the window the next
    /// batch starts with (narrow after an outage, widening as requests succeed).
    senders: Option<Senders>,
    window: usize,
    /// The tracker's answer times since the last report to `loglines status`.
    latency: Latency,
    /// When the window last refreshed the consumer's heartbeat.
    last_beat: Instant,
}

/// How often a window waiting on the tracker refreshes the consumer's heartbeat (as
/// `Batch::wait` does).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// The tracker's answer times, reported (as their mean) at most once per [`REPORT_EVERY`].
#[derive(Default)]
struct Latency {
    sum: Duration,
    n: u32,
    last: Option<Instant>,
    last_mean: Option<u64>,
}

/// How often a worker publishes its requests in flight and the tracker's latency.
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl Latency {
    fn observe(&mut self, took: Duration) {
        self.sum += took;
        self.n += 1;
    }

    /// The report due now, if a second has passed since the last one.
    fn due(&mut self, in_flight: usize) -> Option<crate::queue::TrackerReport> {
        if self.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        if self.n > 0 {
            self.last_mean = Some((self.sum / self.n).as_millis() as u64);
            (self.sum, self.n) = (Duration::ZERO, 0);
        }
        Some(crate::queue::TrackerReport {
            requests_in_flight: in_flight as u64,
            latency_ms: self.last_mean,
            at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }
}

/// Runs until the consume loop's shutdown is set. On shutdown the current batch is committed
/// as far as it got and the rest is returned to the queue in order.
pub fn run(
    settings: &WorkerSettings,
    plugin: Preparer,
    consume: Consume<'_>,
) -> Result<(), RoleError> {
    let client = TrackerClient::new(settings, consume.shutdown);
    // A dry run prints in queue order, one at a time.
    let senders = match (&settings.endpoint, settings.concurrency) {
        (Endpoint::Url(_), n) if n > 1 => Some(
            Senders::start(&client, n, &consume.section.name).map_err(|e| {
                RoleError::Io(format!(
                    "cannot start the {n} threads of concurrency = {n}: {e}; lower concurrency"
                ))
            })?,
        ),
        _ => None,
    };
    let mut w = Worker {
        section: consume.section,
        settings,
        plugin,
        client,
        backoff: Backoff::new(settings.pauseonfail),
        outage: None,
        shutdown: consume.shutdown,
        stats: consume.stats,
        senders,
        window: settings.concurrency,
        latency: Latency::default(),
        last_beat: Instant::now(),
    };
    let announce = consume.announce;
    announce.log(
        module_path!(),
        &w.section.name,
        &format!(
            "worker: {} -> {} via {}",
            settings.listento,
            w.client.endpoint().map_or(
                "stdout (dry run)".into(),
                crate::util::text::redact_userinfo
            ),
            w.plugin.display_path()
        ),
    );
    let result = consume.run(&mut w);
    if w.outage.is_some() {
        w.stats.retrying.fetch_sub(1, Ordering::Relaxed);
    }
    announce.log(module_path!(), &w.section.name, "worker stopped");
    result
}

impl Handler for Worker<'_> {
    fn handle(&mut self, batch: Vec<Message>, out: &mut Batch<'_, '_>) -> Result<Next, RoleError> {
        if self.senders.is_some() {
            return self.handle_window(batch, out);
        }
        self.plugin.submit(batch).map_err(RoleError::Plugin)?;
        while let Some(prepared) = self.plugin.next_result() {
            let prepared = match prepared {
                Ok(p) => p,
                Err(e) => {
                    // What was sent is acked, so a restart does not send it again.
                    out.commit()?;
                    return Err(RoleError::Plugin(e));
                }
            };
            // Stopping: what the plugin made of the rest no longer matters (it may even
            // come from an `http_get` the stop cut short); it all goes back in order.
            if self.shutdown.is_set() {
                return self.give_back(prepared.msg, out);
            }
            if self.handle_one(prepared, out)? == Next::Stop {
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Continue)
    }
}

impl Worker<'_> {
    /// Handles one message. [`Next::Stop`] when the worker is stopping: the batch has then
    /// been committed as far as it got and the rest requeued in order.
    fn handle_one(
        &mut self,
        prepared: Prepared,
        out: &mut Batch<'_, '_>,
    ) -> Result<Next, RoleError> {
        match self.verdict(prepared, out)? {
            Verdict::Settled => Ok(Next::Continue),
            Verdict::Send(msg, url) => self.deliver(msg, &url, out),
            Verdict::Skipped(msg) => {
                self.give_back(msg, out)?;
                self.skipped_outside_stop()
            }
        }
    }

    /// What the plugin's verdict on a message leaves to do: not an event or a plugin error are
    /// settled here (other_queue, dead letter); an event is to be sent.
    fn verdict(
        &mut self,
        prepared: Prepared,
        out: &mut Batch<'_, '_>,
    ) -> Result<Verdict, RoleError> {
        let Prepared { msg, step } = prepared;
        match step {
            Step::PluginError(e) => {
                out.dead_letter(msg, &format!("plugin error: {e}"))?;
                Ok(Verdict::Settled)
            }
            Step::NotEligible => {
                Stats::add(&self.stats.not_eligible, 1);
                if let Some(q) = &self.settings.other_queue {
                    out.forward(q, msg.derive(msg.body.clone()));
                }
                out.done(msg);
                Ok(Verdict::Settled)
            }
            Step::Send(url) => {
                if self.settings.debug {
                    log::info!("[{}] {url}", self.section.name);
                }
                Ok(Verdict::Send(msg, url))
            }
            Step::Skipped => Ok(Verdict::Skipped(msg)),
        }
    }

    /// After a message came back from the plugin thread unprocessed (and was given back with
    /// the rest): skipping happens on a stop, or inside `drain`. Outside a stop it would be a
    /// bug, and the worker stops with an error rather than carry on.
    fn skipped_outside_stop(&self) -> Result<Next, RoleError> {
        if self.shutdown.is_set() {
            return Ok(Next::Stop);
        }
        Err(RoleError::Plugin(
            "the plugin thread returned a message unprocessed outside a stop; it and the rest of its batch are back in the queue".into(),
        ))
    }

    /// Settles `msg` when `answer` finishes it (accepted, printed in a dry run, rejected for
    /// good, or one our side cannot send); otherwise hands it back with the answer (retry
    /// later, or a dry run's output closed).
    fn settle(
        &mut self,
        msg: Message,
        url: &str,
        answer: Answer,
        out: &mut Batch<'_, '_>,
    ) -> Result<Option<(Message, Answer)>, RoleError> {
        match answer {
            Answer::Accepted => {
                self.tracker_ok();
                Stats::add(&self.stats.sent, 1);
                if let Some(q) = &self.settings.success_queue {
                    out.forward(q, msg.derive(msg.body.clone()));
                }
                out.done(msg);
            }
            // Counted as sent (the summary of a dry run says "printed"), but nothing went
            // out, so nothing goes to success_queue, whose file logger records events sent.
            Answer::Printed => {
                Stats::add(&self.stats.sent, 1);
                out.done(msg);
            }
            Answer::Rejected { status, body } => {
                self.tracker_ok();
                let reason = format!(
                    "the tracker rejected the event with status {status}: {body:?}; url: {}",
                    shorten(url, REASON_URL)
                );
                out.dead_letter(msg, &reason)?;
            }
            // Not the tracker's doing and no outage: the same request would fail the same
            // way on every retry, and hold up every message behind it.
            Answer::Unsendable(why) => {
                let reason = format!("{why}; url: {}", shorten(url, REASON_URL));
                out.dead_letter(msg, &reason)?;
            }
            other @ (Answer::Retry(_) | Answer::OutputClosed) => return Ok(Some((msg, other))),
        }
        Ok(None)
    }

    /// Sends one event until the tracker takes or rejects it, retrying in place (order is
    /// kept, nothing dropped) while it cannot take it now.
    fn deliver(
        &mut self,
        mut msg: Message,
        url: &str,
        out: &mut Batch<'_, '_>,
    ) -> Result<Next, RoleError> {
        loop {
            // Stopping: nothing new is sent; this message and the rest go back in order.
            if self.shutdown.is_set() {
                return self.give_back(msg, out);
            }
            let started = Instant::now();
            let answer = self.client.send(url);
            if self.client.endpoint().is_some() {
                self.latency.observe(started.elapsed());
                if let Some(r) = self.latency.due(0) {
                    out.report(&r);
                }
            }
            let Some((back, answer)) = self.settle(msg, url, answer, out)? else {
                return Ok(Next::Continue);
            };
            msg = back;
            match answer {
                Answer::OutputClosed => {
                    self.give_back(msg, out)?;
                    return Err(RoleError::OutputClosed);
                }
                Answer::Retry(why) => {
                    // A stop cuts a request still unanswered after STOP_GRACE (or a connection
                    // attempt at once): that is no outage. The message goes back to the queue;
                    // the tracker may have counted it already (a duplicate of the kind a crash
                    // leaves).
                    if self.shutdown.is_set() {
                        return self.give_back(msg, out);
                    }
                    self.tracker_failed(&why, out);
                    let delay = self.backoff.next_delay();
                    if out.wait(delay) {
                        return self.give_back(msg, out);
                    }
                }
                _ => unreachable!("settle hands back only retries and a closed output"),
            }
        }
    }

    /// On stop: commits what is done, and returns `msg` and the rest of the batch (taken back
    /// from the plugin thread, unprocessed) to the queue in order.
    fn give_back(&mut self, msg: Message, out: &mut Batch<'_, '_>) -> Result<Next, RoleError> {
        self.give_back_all(vec![msg], out)
    }

    /// A batch with `concurrency` above 1 (see `window.rs`): each event goes out as soon as the
    /// plugin has made it and the window has room, so the plugin's work overlaps the requests in
    /// flight; until each is accepted or rejected for good. On a stop, the requests in flight
    /// get their STOP_GRACE and the rest goes back in batch order.
    fn handle_window(
        &mut self,
        batch: Vec<Message>,
        out: &mut Batch<'_, '_>,
    ) -> Result<Next, RoleError> {
        self.plugin.submit(batch).map_err(RoleError::Plugin)?;
        let mut events: Vec<(Option<Message>, String)> = Vec::new();
        let mut flight = Flight::new([], self.settings.concurrency, self.window);
        let mut plugin_done = false;
        let mut stop_seen: Option<Instant> = None;
        loop {
            if self.shutdown.is_set() && stop_seen.is_none() {
                stop_seen = Some(Instant::now());
            }
            if stop_seen.is_none() {
                if flight.must_wait() {
                    let delay = self.backoff.next_delay();
                    if out.wait(delay) {
                        continue;
                    }
                    flight.resume();
                }
                // Take the plugin's next verdicts while a request could go out for them.
                while !plugin_done && flight.has_room() && !self.shutdown.is_set() {
                    let Some(prepared) = self.plugin.next_result() else {
                        plugin_done = true;
                        break;
                    };
                    let prepared = match prepared {
                        Ok(p) => p,
                        Err(e) => {
                            self.wait_in_flight(&mut flight, &mut events, out)?;
                            let back = Self::unsent(&flight, &mut events);
                            self.give_back_all(back, out)?;
                            return Err(RoleError::Plugin(e));
                        }
                    };
                    match self.verdict(prepared, out)? {
                        Verdict::Settled => {}
                        Verdict::Send(msg, url) => {
                            flight.push(events.len());
                            events.push((Some(msg), url));
                            let senders = self.senders.as_ref().expect("a window has senders");
                            while let Some(i) = flight.take_next() {
                                senders.send(i, events[i].1.clone());
                            }
                        }
                        Verdict::Skipped(msg) => {
                            self.wait_in_flight(&mut flight, &mut events, out)?;
                            let mut back = Self::unsent(&flight, &mut events);
                            back.push(msg);
                            self.give_back_all(back, out)?;
                            return self.skipped_outside_stop();
                        }
                    }
                }
                let senders = self.senders.as_ref().expect("a window has senders");
                while let Some(i) = flight.take_next() {
                    senders.send(i, events[i].1.clone());
                }
            }
            if stop_seen.is_some() {
                break;
            }
            if plugin_done && flight.finished() {
                self.window = flight.window();
                return Ok(Next::Continue);
            }
            self.one_answer(&mut flight, &mut events, false, out)?;
        }
        // Stopping: the requests in flight finish (or are cut after STOP_GRACE); what was
        // accepted is acked, every other event goes back in batch order with the rest.
        self.wait_in_flight(&mut flight, &mut events, out)?;
        self.window = flight.window();
        let back = Self::unsent(&flight, &mut events);
        self.give_back_all(back, out)
    }

    /// Waits (a quarter of a second at most) for one answer of the window and applies it.
    fn one_answer(
        &mut self,
        flight: &mut Flight,
        events: &mut [(Option<Message>, String)],
        stopping: bool,
        out: &mut Batch<'_, '_>,
    ) -> Result<(), RoleError> {
        let senders = self.senders.as_ref().expect("a window has senders");
        if let Some((i, answer, took)) = senders.answer(Duration::from_millis(250)) {
            self.latency.observe(took);
            let finished = self.window_answer(&mut events[i], answer, stopping, out)?;
            flight.answered(i, finished);
        }
        // A slow tracker may keep the window waiting longer than `heartbeat_ttl`: the consumer
        // stays alive meanwhile, so that what it holds is not handed to another.
        if self.last_beat.elapsed() >= HEARTBEAT_EVERY {
            self.last_beat = Instant::now();
            out.keep_alive();
        }
        if let Some(r) = self.latency.due(flight.in_flight()) {
            out.report(&r);
        }
        Ok(())
    }

    /// On a stop or an error: lets the requests in flight answer. The transport cuts those
    /// still unanswered after STOP_GRACE on a stop; the bound here only guards against an
    /// answer that never comes back from a thread.
    fn wait_in_flight(
        &mut self,
        flight: &mut Flight,
        events: &mut [(Option<Message>, String)],
        out: &mut Batch<'_, '_>,
    ) -> Result<(), RoleError> {
        let since = Instant::now();
        while flight.in_flight() > 0 {
            if since.elapsed() > STOP_GRACE * 3 {
                log::warn!(
                    "[{}] {} requests still unanswered {} s after the stop; their messages go back to the queue",
                    self.section.name,
                    flight.in_flight(),
                    (STOP_GRACE * 3).as_secs()
                );
                break;
            }
            self.one_answer(flight, events, true, out)?;
        }
        Ok(())
    }

    /// The events not finished, in batch order (their messages taken out of `events`).
    fn unsent(flight: &Flight, events: &mut [(Option<Message>, String)]) -> Vec<Message> {
        flight
            .unfinished()
            .into_iter()
            .filter_map(|i| events[i].0.take())
            .collect()
    }

    /// Applies one answer of the window; whether the event is finished.
    fn window_answer(
        &mut self,
        event: &mut (Option<Message>, String),
        answer: Answer,
        stopping: bool,
        out: &mut Batch<'_, '_>,
    ) -> Result<bool, RoleError> {
        let msg = event.0.take().expect("an event is answered once");
        let Some((back, answer)) = self.settle(msg, &event.1, answer, out)? else {
            return Ok(true);
        };
        event.0 = Some(back);
        // Cut by a stop: no outage; it goes back with the rest. (A dry run, the only source
        // of a closed output, does not use the window.)
        if let (Answer::Retry(why), false) = (answer, stopping) {
            self.tracker_failed(&why, out);
        }
        Ok(false)
    }

    /// Commits what is done, gives back `back` (in order) and whatever the plugin thread still
    /// holds, unprocessed.
    fn give_back_all(
        &mut self,
        mut back: Vec<Message>,
        out: &mut Batch<'_, '_>,
    ) -> Result<Next, RoleError> {
        out.commit()?;
        let rest = self.plugin.drain().map_err(RoleError::Plugin)?;
        back.extend(rest.into_iter().map(|p| p.msg));
        out.give_back(back)?;
        Ok(Next::Stop)
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

    fn tracker_failed(&mut self, why: &str, out: &mut Batch<'_, '_>) {
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
        out.notifier().tracker_down(since, why);
    }
}
