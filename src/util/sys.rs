//! The system calls loglines needs beyond std, through rustix: one way to wait for a
//! descriptor, and the host name. (inotify, renameat2, flock and the tracker's sockets are
//! called through rustix where they are used: the Lua bindings are the only code that calls C
//! directly.)

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

pub use rustix::event::PollFlags as Ready;

/// Waits up to `timeout` for `fd` to be ready for `wanted` (input: [`Ready::IN`], a connect
/// finished: [`Ready::OUT`]). Returns what it is ready for, empty when the time ran out or a
/// signal ended the wait early, which callers take as one more look at their own flags. An
/// error, a hang-up or an invalid descriptor counts as ready: the read or write that follows
/// reports it.
pub fn wait_for(fd: impl AsFd, wanted: Ready, timeout: Duration) -> io::Result<Ready> {
    let mut fds = [PollFd::new(&fd, wanted)];
    // A timeout too long for a timespec waits as long as one can.
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    match poll(&mut fds, Some(&ts)) {
        Ok(0) => Ok(Ready::empty()),
        Ok(_) => Ok(fds[0].revents()),
        Err(rustix::io::Errno::INTR) => Ok(Ready::empty()),
        Err(e) => Err(e.into()),
    }
}

/// True when `fd` has input (or end of input, or an error) within `timeout`.
pub fn readable(fd: impl AsFd, timeout: Duration) -> bool {
    wait_for(fd, PollFlags::IN, timeout).is_ok_and(|r| !r.is_empty())
}

/// This machine's host name (for consumer ids), or `unknown-host` when it has none.
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    if name.is_empty() {
        "unknown-host".to_string()
    } else {
        name.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn readable_waits_for_input_and_times_out_without_it() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let t = Instant::now();
        assert!(!readable(&b, Duration::from_millis(100)));
        assert!(
            t.elapsed() >= Duration::from_millis(90),
            "{:?}",
            t.elapsed()
        );
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            a.write_all(b"x").unwrap();
            a
        });
        assert!(
            readable(&b, Duration::from_secs(10)),
            "input wakes the wait"
        );
        drop(writer.join().unwrap());
        assert!(readable(&b, Duration::ZERO), "still unread input");
    }

    #[test]
    fn a_closed_peer_counts_as_readable() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(readable(&b, Duration::from_secs(10)));
    }

    #[test]
    fn a_writable_socket_is_ready_for_output() {
        let (a, _b) = UnixStream::pair().unwrap();
        let r = wait_for(&a, Ready::OUT, Duration::from_secs(10)).unwrap();
        assert!(r.contains(Ready::OUT));
    }

    #[test]
    fn the_host_has_a_name() {
        let name = host_name();
        assert!(!name.is_empty() && !name.contains('\0'), "{name:?}");
    }
}
