//! The watcher's main loop: read the files, hand complete lines over in batches, dead-letter
//! over-long ones, and sleep in inotify when there is nothing to read.

use super::checkpoint::{self, Rotated};
use super::lines::{self, Piece, Wrapper};
use super::progress::End;
use super::{Flow, Item, Side, Tail, WatchError, Watcher, LOOK_EVERY, READ_BUDGET};
use crate::queue::Message;
use crate::util::stats::Stats;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

impl Watcher<'_> {
    /// The main loop: read, check the name, checkpoint, sleep when there is nothing to do.
    pub(super) fn follow(&mut self) -> Result<(), Flow> {
        let mut last_look = Instant::now();
        let mut look = true;
        loop {
            if self.shutdown.is_set() {
                return Err(Flow::Stop);
            }
            if !look {
                // Idle: only completions (embedded transport) can have moved the checkpoint.
                self.maybe_checkpoint(false);
                look = self.wait() || last_look.elapsed() >= LOOK_EVERY;
                continue;
            }
            last_look = Instant::now();
            let mut more = false;
            if let Some(mut old) = self.retired.take() {
                let side = Side::Rotated {
                    until: old.until_unix,
                };
                let at_end = self.pump(&mut old.tail, side)?;
                more |= !at_end;
                if at_end && Instant::now() >= old.until {
                    self.close_retired(old)?;
                } else {
                    self.retired = Some(old);
                }
            }
            if let Some(mut t) = self.current.take() {
                let r = self.pump(&mut t, Side::Current);
                self.current = Some(t);
                more |= !r?;
            }
            self.check_path()?;
            self.maybe_checkpoint(false);
            Stats::add(&self.out.stats().looks, 1);
            self.wrapper.summarise(false);
            if self.until_eof && !more && self.retired.is_none() {
                // Everything up to the end is handed over: wait until it is finished (or
                // shutdown), then stop; finish() writes the checkpoint.
                self.out
                    .wait_finished(Duration::from_secs(365 * 86_400), true);
                return Ok(());
            }
            look = more || self.wait();
        }
    }

    /// Reads `t` from its position until the end of the file (or the read budget), handing
    /// over complete lines. Returns true when it stopped at the end.
    pub(super) fn pump(&mut self, t: &mut Tail, side: Side) -> Result<bool, Flow> {
        let mut items = Vec::new();
        let mut budget = READ_BUDGET;
        loop {
            if self.shutdown.is_set() {
                return Err(Flow::Stop);
            }
            if budget == 0 {
                // Pushed now so that a batch never mixes lines of two files.
                self.flush(t, side)?;
                return Ok(false);
            }
            let n = match t.file.read_at(&mut self.buf, t.pos) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(WatchError::Read {
                        path: t.path.clone(),
                        error: source,
                    }
                    .into())
                }
            };
            if n == 0 {
                self.flush(t, side)?;
                if matches!(side, Side::Current) {
                    let size = t
                        .file
                        .metadata()
                        .map_err(|source| WatchError::Read {
                            path: t.path.clone(),
                            error: source,
                        })?
                        .len();
                    if size < t.pos {
                        self.truncated(t, size)?;
                        continue;
                    }
                }
                return Ok(true);
            }
            let base = t.pos;
            t.pos += n as u64;
            budget = budget.saturating_sub(n as u64);
            let (wrapper, max) = (&mut self.wrapper, self.settings.max_line_bytes);
            let path = &t.path;
            t.splitter.feed(&self.buf[..n], |piece, after| {
                let end = base + after as u64;
                items.push(to_item(wrapper, piece, end, max, path));
            });
            self.hand_over(t, side, &mut items)?;
        }
    }

    /// Adds lines to the batch (pushing it when full) and dead-letters over-long lines, in
    /// file order.
    pub(super) fn hand_over(
        &mut self,
        t: &Tail,
        side: Side,
        items: &mut Vec<Item>,
    ) -> Result<(), Flow> {
        for item in items.drain(..) {
            match item {
                Item::Line { body, end } => {
                    self.pending.push(Message::new(body));
                    self.pending_end = end;
                    if self.pending.len() >= self.batch_size {
                        self.flush(t, side)?;
                    }
                }
                Item::TooLong { body, reason, end } => {
                    self.flush(t, side)?;
                    log::warn!("{}, ending at byte {end}: {reason}", t.path.display());
                    let at = self.end_at(t, side, end);
                    self.dead_letter(body, &reason, at)?;
                }
            }
        }
        Ok(())
    }

    /// Where the checkpoint may move after a line of `t` ending at `end`; None when the file
    /// no longer has those bytes (truncated meanwhile: the truncation moves it instead).
    pub(super) fn end_at(&self, t: &Tail, side: Side, end: u64) -> Option<End> {
        let position = checkpoint::position_in(&t.file, end).ok()?;
        Some(match side {
            Side::Current => End::Main(position),
            Side::Rotated { until } => End::Rotated(Rotated { until, position }),
        })
    }

    /// Pushes the batch being filled.
    pub(super) fn flush(&mut self, t: &Tail, side: Side) -> Result<(), Flow> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let n = batch.len() as u64;
        let at = self.end_at(t, side, self.pending_end);
        self.send(batch, at)?;
        if let Side::Rotated { .. } = side {
            self.stats.late_lines += n;
            log::info!(
                "{} lines were added to the rotated file (inode {}, opened as {}) after the switch to the new one; sent them too",
                n,
                t.ino,
                t.path.display()
            );
        }
        Ok(())
    }

    /// Pushes one batch (see [`Handover::send`]) and records it in the checkpoint if that
    /// finished it: before the next push, so that a kill sends at most this batch again.
    pub(super) fn send(&mut self, batch: Vec<Message>, end: Option<End>) -> Result<(), Flow> {
        self.out.send(batch, end).map_err(Flow::from)?;
        self.maybe_checkpoint(false);
        Ok(())
    }

    pub(super) fn dead_letter(
        &mut self,
        body: String,
        reason: &str,
        end: Option<End>,
    ) -> Result<(), Flow> {
        self.out
            .dead_letter(body, reason, end)
            .map_err(Flow::from)?;
        self.maybe_checkpoint(false);
        Ok(())
    }

    /// A finished marker segment: the checkpoint moves to `at` in `file` once everything
    /// before it is finished.
    pub(super) fn mark(&mut self, file: &File, at: u64) {
        if let Ok(p) = checkpoint::position_in(file, at) {
            self.out.mark(End::Main(p));
        }
    }
}

/// A piece as an [`Item`]: a wrapped line, or an over-long line's first bytes and reason.
pub(super) fn to_item(
    wrapper: &mut Wrapper,
    piece: Piece<'_>,
    end: u64,
    max: usize,
    path: &Path,
) -> Item {
    match piece {
        Piece::Line(l) => Item::Line {
            body: wrapper.wrap(l, || {
                format!("{}, line ending at byte {end}", path.display())
            }),
            end,
        },
        Piece::TooLong { len, head } => Item::TooLong {
            body: wrapper.wrap(head, || {
                format!("{}, line ending at byte {end}", path.display())
            }),
            reason: lines::too_long_reason(len, max, head.len()),
            end,
        },
    }
}

pub(super) fn piece_text(wrapper: &mut Wrapper, piece: Piece<'_>) -> String {
    match piece {
        Piece::Line(l) => wrapper.wrap(l, || "an unfinished line".into()),
        Piece::TooLong { head, .. } => wrapper.wrap(head, || "an unfinished line".into()),
    }
}
