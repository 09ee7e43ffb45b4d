//! `loglines broker` (the 2010 broker.py): copies every message to each queue in `fanout`.
//!
//! Each batch is forwarded with one atomic [`Consumer::forward`]: the messages leave the
//! broker's in-flight list and enter every fan-out queue together, so no fan-out queue gets a
//! message twice or misses it, whatever is killed when. The 2010 broker's status queue and idle
//! sleep are gone: takes block.

use crate::config::{BrokerSettings, Section};
use crate::queue::{Consumer, QueueError};
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use std::fmt;
use std::time::Duration;

/// How long one take waits before checking the shutdown flag again.
pub const TAKE_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub enum BrokerError {
    Queue(QueueError),
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Queue(e) => write!(f, "{e}; check that the queue server is running"),
        }
    }
}

impl std::error::Error for BrokerError {}

/// Runs until `shutdown` is set. Messages taken but not yet forwarded when it is set are
/// forwarded first (the batch is finished), so nothing is left half done.
pub fn run(
    section: &Section,
    settings: &BrokerSettings,
    mut consumer: Box<dyn Consumer>,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), BrokerError> {
    log::info!(
        "[{}] broker: {} -> {}",
        section.name,
        settings.listento,
        settings.fanout.join(", ")
    );
    while !shutdown.is_set() {
        let batch = match consumer.take(section.batch_size, TAKE_WAIT) {
            Ok(b) => b,
            Err(QueueError::ShuttingDown) => break,
            Err(e) => return Err(BrokerError::Queue(e)),
        };
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        let out = settings
            .fanout
            .iter()
            .map(|q| {
                (
                    q.clone(),
                    batch.iter().map(|m| m.derive(m.body.clone())).collect(),
                )
            })
            .collect();
        match consumer.forward(batch, out) {
            Ok(()) => Stats::add(&stats.fanned_out, n),
            // Not forwarded: the batch stays in flight and comes back on restart.
            Err(QueueError::ShuttingDown) => break,
            Err(e) => return Err(BrokerError::Queue(e)),
        }
    }
    log::info!("[{}] broker stopped", section.name);
    Ok(())
}
