//! Which handed-over lines are finished, and so how far the checkpoint may move.
//!
//! Lines leave the watcher in *segments* (a pushed batch, a dead-lettered line, or a marker
//! such as "now reading the new file from 0"), numbered in file order. A segment is finished
//! when the transport is done with it: at once when a durable transport (Redis) accepted it,
//! or, with the embedded transport, when the last message carrying its completion guard is
//! dropped, which can happen on any thread and in any order. The checkpoint is the end of the
//! longest run of finished segments from the start, so a segment finished early never moves it
//! past one still in flight.

use super::checkpoint::{Position, Rotated};
use crate::queue::Lineage;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done,
    /// Never finishes: its push failed part-way, so some of its lines may not have arrived.
    Abandoned,
}

/// What finishing a segment (and everything before it) tells the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The followed file is handed over up to here.
    Main(Position),
    /// The rotated file, still read for late lines, is handed over up to here.
    Rotated(Rotated),
    /// The rotated file is closed: nothing more to remember about it.
    RotatedClosed,
}

/// What the checkpoint may say: the end of the finished run, for the followed file and for
/// the rotated one still being read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) main: Option<Position>,
    pub(crate) rotated: Option<Rotated>,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Where the checkpoint may move once this and everything before it is finished; None
    /// for segments that do not move it (lines read from standard input).
    end: Option<End>,
    state: State,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    /// Unfinished segments and finished ones behind an unfinished one, in order.
    open: VecDeque<Segment>,
    /// End of the finished run.
    committed: Committed,
}

/// Shared between the watcher and the completion guards travelling with messages.
#[derive(Debug, Clone)]
pub(crate) struct Progress(Arc<Mutex<Inner>>);

/// Attached (through a [`Lineage`]) to every message of a segment; its drop finishes the
/// segment.
#[derive(Debug)]
struct Guard {
    progress: Progress,
    seq: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.progress.finish(self.seq);
    }
}

impl Progress {
    pub(crate) fn new(start: Committed) -> Self {
        Progress(Arc::new(Mutex::new(Inner {
            next_seq: 0,
            open: VecDeque::new(),
            committed: start,
        })))
    }

    /// Poisoning is ignored: the state stays consistent at every step, and a panicking
    /// consumer thread dropping a guard must not stop the watcher.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a segment ending at `end`; returns its number.
    pub(crate) fn open(&self, end: Option<End>) -> u64 {
        let mut g = self.lock();
        let seq = g.next_seq;
        g.next_seq += 1;
        g.open.push_back(Segment {
            seq,
            end,
            state: State::InFlight,
        });
        seq
    }

    /// A lineage that finishes segment `seq` when its last copy is dropped.
    pub(crate) fn guard(&self, seq: u64) -> Lineage {
        Lineage::track(Arc::new(Guard {
            progress: self.clone(),
            seq,
        }))
    }

    /// Marks `seq` finished and moves the committed position over the finished run.
    pub(crate) fn finish(&self, seq: u64) {
        self.set(seq, State::Done);
    }

    /// Marks `seq` as never finishing (its push failed); the checkpoint stays before it.
    pub(crate) fn abandon(&self, seq: u64) {
        self.set(seq, State::Abandoned);
    }

    fn set(&self, seq: u64, state: State) {
        let mut g = self.lock();
        let Some(front) = g.open.front().map(|s| s.seq) else {
            return;
        };
        let Some(idx) = seq.checked_sub(front) else {
            return;
        };
        if let Some(s) = g.open.get_mut(idx as usize) {
            // An abandoned segment stays abandoned even when its guard drops later.
            if s.state == State::InFlight {
                s.state = state;
            }
        }
        while g.open.front().is_some_and(|s| s.state == State::Done) {
            if let Some(s) = g.open.pop_front() {
                match s.end {
                    Some(End::Main(p)) => g.committed.main = Some(p),
                    Some(End::Rotated(r)) => g.committed.rotated = Some(r),
                    Some(End::RotatedClosed) => g.committed.rotated = None,
                    None => {}
                }
            }
        }
    }

    /// How far the checkpoint may say the log is handed over.
    pub(crate) fn committed(&self) -> Committed {
        self.lock().committed.clone()
    }

    /// Segments not yet finished (including finished ones waiting behind them).
    pub(crate) fn unfinished(&self) -> usize {
        self.lock().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> Position {
        Position {
            dev: 1,
            ino: 2,
            offset,
            head_len: 0,
            head_sha256: String::new(),
            tail_len: 0,
            tail_sha256: String::new(),
        }
    }

    fn at(offset: u64) -> Committed {
        Committed {
            main: Some(pos(offset)),
            rotated: None,
        }
    }

    fn main(offset: u64) -> Option<End> {
        Some(End::Main(pos(offset)))
    }

    #[test]
    fn out_of_order_completion_never_passes_an_unfinished_segment() {
        let p = Progress::new(at(0));
        let a = p.open(main(10));
        let b = p.open(main(20));
        let c = p.open(None);
        let d = p.open(main(40));
        let (ga, gb, gc, gd) = (p.guard(a), p.guard(b), p.guard(c), p.guard(d));
        let gb2 = gb.clone();
        drop((gd, gb));
        assert_eq!(p.committed(), at(0), "b still has a copy, a is in flight");
        drop(ga);
        assert_eq!(p.committed(), at(10));
        drop(gb2);
        assert_eq!(
            p.committed(),
            at(20),
            "c (no position of its own) is in flight"
        );
        drop(gc);
        assert_eq!(p.committed(), at(40));
        assert_eq!(p.unfinished(), 0);
    }

    #[test]
    fn an_abandoned_segment_holds_the_checkpoint_back_for_good() {
        let p = Progress::new(Committed::default());
        let a = p.open(main(5));
        let b = p.open(main(9));
        let ga = p.guard(a);
        p.abandon(a);
        drop(ga);
        p.finish(b);
        assert_eq!(p.committed(), Committed::default());
        assert_eq!(p.unfinished(), 2);
    }

    #[test]
    fn the_rotated_file_is_remembered_until_it_is_closed() {
        let p = Progress::new(at(0));
        let r = Rotated {
            until: 99,
            position: pos(7),
        };
        for end in [main(3), Some(End::Rotated(r.clone())), main(5)] {
            let s = p.open(end);
            p.finish(s);
        }
        assert_eq!(p.committed().main, Some(pos(5)));
        assert_eq!(p.committed().rotated, Some(r));
        let s = p.open(Some(End::RotatedClosed));
        p.finish(s);
        assert_eq!(p.committed(), at(5));
    }
}
