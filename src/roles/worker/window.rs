//! `concurrency` above 1: a batch's events are sent with several requests in flight at once, for
//! a tracker far away (at a round trip of 300 ms one request at a time makes 3 events a second).
//!
//! What does not change: a message is acknowledged only once the tracker accepted its request
//! (the batch is committed when every request of it has answered, or, on a stop, with what was
//! accepted; the rest goes back in batch order); a 4xx dead-letters that message only. What a
//! window changes:
//! - answers come in any order; [`Flight`] keeps the books (which events wait, which are in
//!   flight) and is a plain state machine, so that a model test can drive it with any order of
//!   answers and failures;
//! - a failure (unreachable, timeout, 5xx) closes the window: nothing new is sent, the requests
//!   in flight finish (the failed ones wait again, in batch order), the worker backs off as it
//!   does with one request, then sends one request alone (the probe); each success doubles the
//!   window again up to `concurrency`, so a tracker coming back is not hit by the whole window
//!   at once;
//! - `ratelimit` is one turn shared by all the requests of the process.
//!
//! The requests are made by [`Senders`]: `concurrency` threads sharing one HTTP agent, whose
//! pool keeps a keep-alive connection per request in flight.

use super::tracker::{Answer, TrackerClient};
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeSet, VecDeque};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The books of one batch's requests: events by their index in the batch.
#[derive(Debug)]
pub struct Flight {
    /// Not sent yet, or to be sent again, in batch order.
    waiting: VecDeque<usize>,
    in_flight: BTreeSet<usize>,
    /// Requests allowed in flight now.
    window: usize,
    max: usize,
    /// Since a failure: nothing new until the requests in flight have answered and the backoff
    /// wait is over ([`Flight::resume`]).
    paused: bool,
}

impl Flight {
    /// The books for `events` (indices, in batch order), with at most `max` in flight; `window`
    /// is where the window starts (1 after a failure of an earlier batch, `max` otherwise).
    pub fn new(events: impl IntoIterator<Item = usize>, max: usize, window: usize) -> Flight {
        let max = max.max(1);
        Flight {
            waiting: events.into_iter().collect(),
            in_flight: BTreeSet::new(),
            window: window.clamp(1, max),
            max,
            paused: false,
        }
    }

    /// Adds event `i`, later in the batch than every event added before, to the waiting ones.
    pub fn push(&mut self, i: usize) {
        debug_assert!(self.waiting.back().is_none_or(|&w| w < i));
        self.waiting.push_back(i);
    }

    /// Whether another request may go now (with one waiting to go, or one to add).
    pub fn has_room(&self) -> bool {
        !self.paused && self.in_flight.len() < self.window
    }

    /// The next event to send now, if the window has room: taken into flight.
    pub fn take_next(&mut self) -> Option<usize> {
        if self.paused || self.in_flight.len() >= self.window {
            return None;
        }
        let i = self.waiting.pop_front()?;
        self.in_flight.insert(i);
        Some(i)
    }

    /// The tracker answered for `i`: `finished` (accepted, or rejected for good), or to be sent
    /// again. A success widens the window, a failure closes it. Panics on an index not in
    /// flight: an answer for a request never sent, or answered twice, is a bug.
    pub fn answered(&mut self, i: usize, finished: bool) {
        assert!(
            self.in_flight.remove(&i),
            "event {i} answered but not in flight"
        );
        if finished {
            if !self.paused {
                self.window = (self.window * 2).min(self.max);
            }
        } else {
            let at = self.waiting.partition_point(|&w| w < i);
            self.waiting.insert(at, i);
            self.paused = true;
            self.window = 1;
        }
    }

    /// Whether the worker must back off now: a failure closed the window and nothing is in
    /// flight any more.
    pub fn must_wait(&self) -> bool {
        self.paused && self.in_flight.is_empty()
    }

    /// After the backoff wait: one request (the probe) may go.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Every event answered for good.
    pub fn finished(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The window's size now (for the next batch to start from).
    pub fn window(&self) -> usize {
        self.window
    }

    /// What is not finished, in batch order: to give back on a stop.
    pub fn unfinished(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self
            .waiting
            .iter()
            .chain(&self.in_flight)
            .copied()
            .collect();
        all.sort_unstable();
        all
    }
}

/// A request to make: the event's index in its batch and its URL.
type Job = (usize, String);
/// What came of it, and how long the answer took.
pub type Done = (usize, Answer, Duration);

/// The threads that make a window's requests.
pub struct Senders {
    jobs: Option<Sender<Job>>,
    answers: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl Senders {
    /// `n` threads, each with a clone of `client`.
    pub fn start(client: &TrackerClient, n: usize, section: &str) -> std::io::Result<Senders> {
        let (jobs, take) = crossbeam_channel::unbounded::<Job>();
        let (give, answers) = crossbeam_channel::unbounded::<Done>();
        let mut threads = Vec::with_capacity(n);
        for k in 0..n {
            let (take, give, mut client) = (take.clone(), give.clone(), client.clone());
            let t = std::thread::Builder::new()
                .name(format!("{section} send {k}"))
                .spawn(move || {
                    for (i, url) in take {
                        let started = Instant::now();
                        let answer = client.send(&url);
                        if give.send((i, answer, started.elapsed())).is_err() {
                            return;
                        }
                    }
                })?;
            threads.push(t);
        }
        Ok(Senders {
            jobs: Some(jobs),
            answers,
            threads,
        })
    }

    pub fn send(&self, i: usize, url: String) {
        if let Some(jobs) = &self.jobs {
            // The threads end only when this sender is dropped: sending cannot fail before.
            let _ = jobs.send((i, url));
        }
    }

    /// The next answer, waiting at most `wait`.
    pub fn answer(&self, wait: Duration) -> Option<Done> {
        self.answers.recv_timeout(wait).ok()
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_window_fills_closes_on_a_failure_probes_and_opens_again() {
        let mut f = Flight::new(0..10, 4, 4);
        let sent: Vec<usize> = std::iter::from_fn(|| f.take_next()).collect();
        assert_eq!(sent, [0, 1, 2, 3]);
        f.answered(2, true);
        assert_eq!(f.take_next(), Some(4));
        // A failure: nothing new, the others in flight finish, then the backoff.
        f.answered(1, false);
        assert_eq!(f.take_next(), None);
        assert!(!f.must_wait());
        f.answered(0, true);
        f.answered(3, false);
        f.answered(4, true);
        assert!(f.must_wait());
        assert_eq!(f.unfinished(), [1, 3, 5, 6, 7, 8, 9]);
        f.resume();
        // The probe goes alone, in batch order; each success doubles the window.
        assert_eq!(f.take_next(), Some(1));
        assert_eq!(f.take_next(), None);
        f.answered(1, true);
        assert_eq!(
            (f.take_next(), f.take_next(), f.take_next()),
            (Some(3), Some(5), None)
        );
        f.answered(3, true);
        f.answered(5, true);
        let rest: Vec<usize> = std::iter::from_fn(|| f.take_next()).collect();
        assert_eq!(rest, [6, 7, 8, 9]);
        for i in rest {
            f.answered(i, true);
        }
        assert!(f.finished());
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Answer the k-th request in flight (modulo how many there are): accepted, rejected
        /// for good, or failed.
        Answer(usize, u8),
        Send,
        Stop,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                6 => (0usize..64, 0u8..10).prop_map(|(k, a)| Step::Answer(k, a)),
                3 => Just(Step::Send),
                1 => Just(Step::Stop),
            ],
            0..400,
        )
    }

    proptest! {
        /// Any order of answers, failures and a stop at any moment: an event is acked only
        /// after its request was accepted, never sent while it is in flight, and at the end
        /// every event is acked, dead-lettered or given back, exactly once.
        #[test]
        fn no_event_is_acked_unanswered_or_lost(n in 0usize..60, max in 1usize..20, steps in steps()) {
            let mut f = Flight::new(0..n, max, max);
            let mut in_flight: Vec<usize> = Vec::new();
            let mut acked = BTreeSet::new();
            let mut dead = BTreeSet::new();
            let mut stopped = false;
            for step in steps {
                if f.must_wait() {
                    f.resume();
                }
                match step {
                    Step::Send if !stopped => {
                        while let Some(i) = f.take_next() {
                            prop_assert!(!in_flight.contains(&i), "{i} sent twice at once");
                            prop_assert!(!acked.contains(&i) && !dead.contains(&i));
                            in_flight.push(i);
                        }
                        prop_assert!(in_flight.len() <= max);
                    }
                    Step::Answer(k, a) if !in_flight.is_empty() => {
                        let i = in_flight.remove(k % in_flight.len());
                        match a {
                            0..=5 => { acked.insert(i); f.answered(i, true); }
                            6 => { dead.insert(i); f.answered(i, true); }
                            _ => f.answered(i, false),
                        }
                    }
                    Step::Stop => stopped = true,
                    _ => {}
                }
                prop_assert_eq!(f.in_flight(), in_flight.len());
            }
            // The stop: what is in flight answers (here: fails), the rest goes back in order.
            for i in in_flight.drain(..) {
                f.answered(i, false);
            }
            let back = f.unfinished();
            prop_assert!(back.windows(2).all(|w| w[0] < w[1]), "given back in batch order");
            let mut all: Vec<usize> = acked.iter().chain(&dead).chain(&back).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..n).collect::<Vec<_>>(), "every event once");
        }
    }
}
