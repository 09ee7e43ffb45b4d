//! When the followed name changes: rename rotation (the old file is read to its end, then for
//! late lines for [`ROTATED_GRACE`](super::ROTATED_GRACE)), a file deleted or appearing, and
//! copytruncate (the file shrinking below what was read).

use super::checkpoint::{self, Rotated};
use super::follow::{piece_text, to_item};
use super::progress::End;
use super::{first_time, unix_now, Flow, Retired, Side, Tail, Watcher, ROTATED_GRACE};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

impl Watcher<'_> {
    /// The current file shrank below what was read: copytruncate (or someone emptied it).
    pub(super) fn truncated(&mut self, t: &mut Tail, size: u64) -> Result<(), Flow> {
        log::warn!(
            "{} was truncated to {size} bytes, below the {} bytes already read (copytruncate rotation, or it was emptied); reading it again from its start",
            t.path.display(),
            t.pos
        );
        let held = t.splitter.pending_bytes();
        if held > 0 {
            // The start of a line whose end, if it was ever written, went to the copy.
            if let Some(piece) = t.splitter.finish() {
                let body = piece_text(&mut self.wrapper, piece);
                let reason = format!(
                    "unfinished line of {held} bytes cut off when {} was truncated (copytruncate); its end was never read",
                    t.path.display()
                );
                log::warn!("{reason}");
                self.dead_letter(body, &reason, None)?;
            }
        }
        t.splitter.clear();
        t.pos = 0;
        self.stats.truncations += 1;
        self.mark(&t.file, 0);
        Ok(())
    }

    /// Looks at what the followed name points to now.
    pub(super) fn check_path(&mut self) -> Result<(), Flow> {
        let path = self.path().to_path_buf();
        let Some(cur) = &self.current else {
            return self.try_appeared(&path);
        };
        match std::fs::metadata(&path) {
            Ok(m) if (m.dev(), m.ino()) != (cur.dev, cur.ino) => self.rotate(&path),
            Ok(_) => {
                self.said_gone = false;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if first_time(&mut self.said_gone) {
                    log::info!(
                        "{} was renamed or deleted; reading the old file to its end and waiting for a new one",
                        path.display()
                    );
                }
                Ok(())
            }
            Err(e) => {
                if first_time(&mut self.said_gone) {
                    log::warn!("cannot look at {}: {e}; retrying", path.display());
                }
                Ok(())
            }
        }
    }

    /// No file was being read: opens it once it exists, from its start.
    pub(super) fn try_appeared(&mut self, path: &Path) -> Result<(), Flow> {
        match self.open_tail(path) {
            Ok(t) => {
                log::info!("{} appeared; reading it from its start", path.display());
                self.said_waiting = false;
                self.begin_at(t, 0, true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                if first_time(&mut self.said_open_error) {
                    log::warn!("cannot open {}: {e}; retrying", path.display());
                }
                Ok(())
            }
        }
    }

    /// The name points to another file: finish the old one, then follow the new one from 0.
    pub(super) fn rotate(&mut self, path: &Path) -> Result<(), Flow> {
        let Some(mut old) = self.current.take() else {
            return Ok(());
        };
        // Lines written to the old file between the rename and now are read here.
        loop {
            match self.pump(&mut old, Side::Current) {
                Ok(true) => break,
                Ok(false) => {}
                Err(f) => {
                    self.current = Some(old);
                    return Err(f);
                }
            }
        }
        let new = match self.open_tail(path) {
            Ok(t) => t,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound && first_time(&mut self.said_open_error) {
                    log::warn!(
                        "cannot open the new {}: {e}; still reading the old file, retrying",
                        path.display()
                    );
                }
                self.current = Some(old);
                return Ok(());
            }
        };
        self.said_open_error = false;
        self.said_gone = false;
        log::info!(
            "{} was rotated: read the old file (inode {}) to byte {}; now reading the new one (inode {}) from its start",
            path.display(),
            old.ino,
            old.pos,
            new.ino
        );
        self.stats.rotations += 1;
        if let Some(older) = self.retired.take() {
            self.close_retired(older)?;
        }
        self.begin_at(new, 0, true)?;
        // From here the old file's late lines move a checkpoint entry of their own. A copy has
        // no writers, and `run --once` reads to the end of what is there: no grace for late
        // lines then (the run would wait it out).
        let grace = if old.copy || self.until_eof {
            std::time::Duration::ZERO
        } else {
            ROTATED_GRACE
        };
        let until_unix = unix_now() + grace.as_secs();
        let line_end = old.pos - old.splitter.pending_bytes();
        if let Ok(position) = checkpoint::position_in(&old.file, line_end) {
            self.out.mark(End::Rotated(Rotated {
                until: until_unix,
                position,
            }));
        }
        self.retired = Some(Retired {
            tail: old,
            until: Instant::now() + grace,
            until_unix,
        });
        Ok(())
    }

    /// Reads a rotated file one last time and closes it; a last line without its newline is
    /// sent as it is (no writer will finish it now).
    pub(super) fn close_retired(&mut self, retired: Retired) -> Result<(), Flow> {
        let side = Side::Rotated {
            until: retired.until_unix,
        };
        let mut old = retired.tail;
        while !self.pump(&mut old, side)? {}
        let held = old.splitter.pending_bytes();
        if let Some(piece) = old.splitter.finish() {
            log::warn!(
                "the rotated file {} ends with a line without a newline ({held} bytes); sent it as it is",
                old.path.display()
            );
            let item = to_item(
                &mut self.wrapper,
                piece,
                old.pos,
                self.settings.max_line_bytes,
                &old.path,
            );
            let mut items = vec![item];
            self.hand_over(&old, side, &mut items)?;
            self.flush(&old, side)?;
        }
        old.splitter.clear();
        self.out.mark(End::RotatedClosed);
        if let (Some(ino), Some(wd)) = (&self.inotify, old.wd) {
            ino.remove(wd);
        }
        Ok(())
    }
}
