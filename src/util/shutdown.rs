//! The signals a process acts on: the shutdown signal shared by every role, set once by
//! SIGTERM/SIGINT (or a test) and read often, with hooks for what cannot poll a flag (a request
//! blocked on a socket); and SIGHUP, which asks a file logger to reopen its file. Every signal
//! handler of loglines is registered here.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Hook = Box<dyn FnOnce() + Send>;

/// Cloneable flag; roles check it between batches and during waits.
#[derive(Clone, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("set", &self.is_set())
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// A flag that SIGTERM and SIGINT set. A second signal while shutting down exits at once,
    /// so an administrator pressing Ctrl-C twice is never ignored.
    ///
    /// The flag is set inside the signal handler; the hooks run on a thread that sleeps on the
    /// signal (no CPU while nothing happens), since a handler may do almost nothing.
    pub fn on_signals() -> std::io::Result<Self> {
        let s = Shutdown::new();
        let sigs = [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT];
        for sig in sigs {
            signal_hook::flag::register_conditional_shutdown(sig, 130, s.flag.clone())?;
            signal_hook::flag::register(sig, s.flag.clone())?;
        }
        let mut signals = signal_hook::iterator::Signals::new(sigs)?;
        let hooks = s.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    hooks.run_hooks();
                }
            })?;
        Ok(s)
    }

    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.run_hooks();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Runs `hook` once shutdown is requested (at once if it already is), on the thread that
    /// notices: the signal thread, or whoever calls [`Shutdown::trigger`].
    pub fn on_trigger(&self, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock, so a hook is never added after they have all run.
        if self.flag.load(Ordering::SeqCst) {
            drop(hooks);
            hook();
        } else {
            hooks.push(Box::new(hook));
        }
    }

    fn run_hooks(&self) {
        let hooks = std::mem::take(&mut *self.hooks.lock().unwrap_or_else(|e| e.into_inner()));
        for h in hooks {
            h();
        }
    }

    /// Runs `f` on a thread of its own and returns its result, or None as soon as shutdown is
    /// requested. For a blocking call that cannot be interrupted (connecting to a server that
    /// accepted the connection and does not answer) in a process that is about to exit: the
    /// thread is left to finish on its own.
    pub fn unless_stopped<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Option<T>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("interruptible".into())
            .spawn(move || {
                let _ = tx.send(f());
            })?;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(v) => return Ok(Some(v)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if self.is_set() => {
                    return Ok(None)
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(std::io::Error::other("the thread running it panicked"))
                }
            }
        }
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

/// A flag that SIGHUP sets (and the holder clears when it has acted on it): a file logger
/// reopens its file, as logrotate's `postrotate` asks. Each caller gets a flag of its own, all
/// set by the one signal.
pub fn hangup_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone())?;
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn hooks_run_once_on_trigger_or_at_once_when_already_set() {
        let s = Shutdown::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        s.clone().on_trigger(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 0, "not before the trigger");
        s.trigger();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        s.trigger();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "once only");
        let r = ran.clone();
        s.on_trigger(move || {
            r.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 11, "late hooks run at once");
    }
}
