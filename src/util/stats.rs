//! Counters every role updates, read by `loglines run`'s live status line and its summaries.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Shared, lock-free counters. Cloning shares them.
#[derive(Debug, Default, Clone)]
pub struct Stats(Arc<Inner>);

#[derive(Debug, Default)]
pub struct Inner {
    /// Lines read from log files (or stdin): handed to a queue, or dead-lettered (over-long).
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

impl std::ops::Add for Snapshot {
    type Output = Snapshot;
    fn add(self, o: Snapshot) -> Snapshot {
        Snapshot {
            read: self.read + o.read,
            sent: self.sent + o.sent,
            not_eligible: self.not_eligible + o.not_eligible,
            retrying: self.retrying + o.retrying,
            dead: self.dead + o.dead,
            written: self.written + o.written,
            fanned_out: self.fanned_out + o.fanned_out,
        }
    }
}

/// One set of counters per section, for a process that runs many (`loglines run`): its
/// summary says what each branch did (two workers for two trackers, say), and its status line
/// shows their sum. Cloning shares them.
#[derive(Debug, Default, Clone)]
pub struct BySection(Arc<Mutex<Vec<(String, Stats)>>>);

impl BySection {
    /// The counters of `section`, made on first use; every caller for a section shares them.
    pub fn section(&self, name: &str) -> Stats {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = v.iter().find(|(n, _)| n == name) {
            return s.clone();
        }
        let s = Stats::new();
        v.push((name.to_string(), s.clone()));
        s
    }

    /// Each section's counters, in the order the sections were first counted.
    pub fn each(&self) -> Vec<(String, Snapshot)> {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().map(|(n, s)| (n.clone(), s.snapshot())).collect()
    }

    /// The sum over every section.
    pub fn total(&self) -> Snapshot {
        self.each()
            .into_iter()
            .fold(Snapshot::default(), |t, (_, s)| t + s)
    }
}

impl std::ops::Deref for Stats {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_count_apart_and_sum() {
        let by = BySection::default();
        Stats::add(&by.section("a").sent, 2);
        Stats::add(&by.section("b").sent, 3);
        Stats::add(&by.section("a").dead, 1);
        let each = by.each();
        assert_eq!(each[0].0, "a");
        assert_eq!((each[0].1.sent, each[0].1.dead), (2, 1));
        assert_eq!(each[1].1.sent, 3);
        assert_eq!((by.total().sent, by.total().dead), (5, 1));
    }
}
