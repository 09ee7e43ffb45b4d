//! A shutdown signal shared by every role: set once by SIGTERM/SIGINT (or a test), read often.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cloneable flag; roles check it between batches and during waits.
#[derive(Clone, Default, Debug)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// A flag that SIGTERM and SIGINT set. A second signal while shutting down exits at once,
    /// so an administrator pressing Ctrl-C twice is never ignored.
    pub fn on_signals() -> std::io::Result<Self> {
        let s = Shutdown::new();
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register_conditional_shutdown(sig, 130, s.0.clone())?;
            signal_hook::flag::register(sig, s.0.clone())?;
        }
        Ok(s)
    }

    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early (in steps of at most 100 ms) when shutdown is requested.
    /// Returns true if shutdown was requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.is_set() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(100)));
        }
    }
}
