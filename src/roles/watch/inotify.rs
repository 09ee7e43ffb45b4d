//! A minimal inotify wrapper: sleep without CPU until the followed file or its folder changes.
//!
//! The watcher does not need to know *what* happened, only that something may have: every
//! wake-up re-reads the file and re-checks the path, so events are drained and discarded. That
//! also makes a lost event (queue overflow) harmless.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// Changes to the followed file itself: written, truncated, renamed or deleted.
pub(crate) const FILE_EVENTS: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_MOVE_SELF
    | libc::IN_DELETE_SELF
    | libc::IN_CLOSE_WRITE;

/// Changes of names in the file's folder: a new file appearing under the name, the old one
/// renamed or deleted. Plain writes to other files there do not wake the watcher.
pub(crate) const DIR_EVENTS: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

pub(crate) struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub(crate) fn new() -> io::Result<Inotify> {
        // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly created descriptor that nothing else owns.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `path` (the inode it names now); returns the watch descriptor. Adding the same
    /// inode again returns the same descriptor, so repeating this is cheap and harmless.
    pub(crate) fn add(&self, path: &Path, mask: u32) -> io::Result<i32> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        // SAFETY: c is a valid NUL-terminated string that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Stops a watch; a watch the kernel already dropped (its file deleted) is not an error.
    pub(crate) fn remove(&self, wd: i32) {
        // SAFETY: plain syscall on our own descriptor; EINVAL for a stale wd is ignored.
        unsafe {
            libc::inotify_rm_watch(self.fd.as_raw_fd(), wd);
        }
    }

    /// Sleeps until an event arrives or `timeout` passes (a signal also ends it early), then
    /// discards whatever events are queued. Returns true if there were any.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return false;
        }
        let mut buf = [0u8; 4096];
        let mut any = false;
        loop {
            // SAFETY: reading into a buffer we own, at most its length.
            let r = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if r <= 0 {
                return any;
            }
            any = true;
        }
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
