//! When the watcher writes its checkpoint: after every batch the transport acknowledged
//! without fsync (a kill repeats at most one batch), durably at most once a second and at
//! shutdown, and not at all while nothing moves. The file format is in `checkpoint`.

use super::checkpoint;
use super::{first_time, Flow, WatchError, Watcher, CHECKPOINT_EVERY};
use std::time::Instant;

impl Watcher<'_> {
    /// Writes the checkpoint if what is finished moved since the last write: durably when a
    /// second has passed since the last durable write (or now, with `force`), else without
    /// fsync. Nothing is written while nothing moves, so an idle watcher stays idle. A failure
    /// is logged and retried, durably, once a second: watching goes on, at the price of lines
    /// sent again after a restart.
    pub(super) fn maybe_checkpoint(&mut self, force: bool) {
        let c = self.out.progress.committed();
        let Some(main) = &c.main else {
            return;
        };
        let due = force
            || self
                .last_durable
                .is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY);
        let sync = due && self.durable.as_ref() != Some(&c);
        // While writes fail, only the once-a-second durable attempt retries.
        if !sync && (self.checkpoint_failing || self.written.as_ref() == Some(&c)) {
            return;
        }
        let (ck, log) = (&self.settings.checkpoint, &self.settings.logfile);
        let stored = if sync {
            self.last_durable = Some(Instant::now());
            checkpoint::store(ck, log, main, c.rotated.as_ref())
        } else {
            checkpoint::store_unsynced(ck, log, main, c.rotated.as_ref())
        };
        match stored {
            Ok(()) => {
                if self.checkpoint_failing {
                    log::info!("checkpoint written again");
                    self.checkpoint_failing = false;
                }
                self.stats.checkpoints += 1;
                if sync {
                    self.stats.durable_checkpoints += 1;
                    self.durable = Some(c.clone());
                }
                self.written = Some(c);
            }
            Err(e) => {
                if first_time(&mut self.checkpoint_failing) {
                    log::error!("{e}; retrying every second (until then a restart would send some lines again)");
                }
            }
        }
    }

    /// The first checkpoint write: failing here means a misconfigured state folder, which
    /// is better reported at once than discovered after a crash.
    pub(super) fn write_checkpoint_or_fail(&mut self) -> Result<(), Flow> {
        let c = self.out.progress.committed();
        if let Some(main) = &c.main {
            let (ck, log) = (&self.settings.checkpoint, &self.settings.logfile);
            checkpoint::store(ck, log, main, c.rotated.as_ref()).map_err(WatchError::Checkpoint)?;
            self.last_durable = Some(Instant::now());
            self.durable = Some(c.clone());
            self.written = Some(c);
            self.stats.checkpoints += 1;
            self.stats.durable_checkpoints += 1;
        }
        Ok(())
    }
}
