//! Counters every role updates, read by `loglines run`'s live status line and its summaries.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Shared, lock-free counters. Cloning shares them.
#[derive(Debug, Default, Clone)]
pub struct Stats(Arc<Inner>);

#[derive(Debug, Default)]
pub struct Inner {
    /// Lines read from log files (or stdin) and handed to a queue.
    pub read: AtomicU64,
    /// Usage events the tracker accepted (or, in a dry run, printed).
    pub sent: AtomicU64,
    /// Messages the plugin found not to be usage events.
    pub not_eligible: AtomicU64,
    /// Workers currently waiting to retry the tracker (a gauge).
    pub retrying: AtomicI64,
    /// Messages filed in a dead-letter queue.
    pub dead: AtomicU64,
    /// Lines a file logger wrote.
    pub written: AtomicU64,
    /// Messages a broker fanned out.
    pub fanned_out: AtomicU64,
    /// Times a watcher looked at its files: read what was new, checked the name, wrote the
    /// checkpoint if due. It moves at least once a second while a watcher runs, so it also
    /// tells that the watcher is alive (and tests wait on it).
    pub looks: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub read: u64,
    pub sent: u64,
    pub not_eligible: u64,
    pub retrying: i64,
    pub dead: u64,
    pub written: u64,
    pub fanned_out: u64,
}

impl Stats {
    pub fn new() -> Self {
        Stats::default()
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let i = &self.0;
        Snapshot {
            read: i.read.load(Ordering::Relaxed),
            sent: i.sent.load(Ordering::Relaxed),
            not_eligible: i.not_eligible.load(Ordering::Relaxed),
            retrying: i.retrying.load(Ordering::Relaxed),
            dead: i.dead.load(Ordering::Relaxed),
            written: i.written.load(Ordering::Relaxed),
            fanned_out: i.fanned_out.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Deref for Stats {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
