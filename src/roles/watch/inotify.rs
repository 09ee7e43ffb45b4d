//! A minimal inotify wrapper: sleep without CPU until the followed file or its folder changes.
//!
//! The watcher does not need to know *what* happened, only that something may have: every
//! wake-up re-reads the file and re-checks the path, so events are drained and discarded. That
//! also makes a lost event (queue overflow) harmless.

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

/// Changes to the followed file itself: written, truncated, renamed or deleted.
pub(crate) const FILE_EVENTS: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::CLOSE_WRITE);

/// Changes of names in the file's folder: a new file appearing under the name, the old one
/// renamed or deleted. Plain writes to other files there do not wake the watcher.
pub(crate) const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);

pub(crate) struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub(crate) fn new() -> io::Result<Inotify> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(Inotify { fd })
    }

    /// Watches `path` (the inode it names now); returns the watch descriptor. Adding the same
    /// inode again returns the same descriptor, so repeating this is cheap and harmless.
    pub(crate) fn add(&self, path: &Path, mask: WatchFlags) -> io::Result<i32> {
        Ok(inotify::add_watch(&self.fd, path, mask)?)
    }

    /// Stops a watch; a watch the kernel already dropped (its file deleted) is not an error.
    pub(crate) fn remove(&self, wd: i32) {
        let _ = inotify::remove_watch(&self.fd, wd);
    }

    /// Sleeps until an event arrives or `timeout` passes (a signal also ends it early), then
    /// discards whatever events are queued. Returns true if there were any.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        if !crate::util::sys::readable(&self.fd, timeout) {
            return false;
        }
        let mut buf = [0u8; 4096];
        let mut any = false;
        // The descriptor is non-blocking: reading stops at WouldBlock once the queue is empty.
        while let Ok(n) = rustix::io::read(&self.fd, &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_write_wakes_the_wait_and_silence_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.log");
        std::fs::write(&f, "a\n").unwrap();
        let ino = Inotify::new().unwrap();
        ino.add(&f, FILE_EVENTS).unwrap();
        ino.add(dir.path(), DIR_EVENTS).unwrap();
        let t = Instant::now();
        assert!(!ino.wait(Duration::from_millis(200)));
        assert!(t.elapsed() >= Duration::from_millis(150));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .and_then(|mut h| std::io::Write::write_all(&mut h, b"b\n"))
            .unwrap();
        assert!(ino.wait(Duration::from_secs(5)));
        std::fs::rename(&f, dir.path().join("x.log.1")).unwrap();
        assert!(ino.wait(Duration::from_secs(5)));
        assert!(ino.add(&dir.path().join("missing"), FILE_EVENTS).is_err());
    }
}
