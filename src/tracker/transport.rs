//! The TCP transport under the worker's ureq agent: the same HTTP/1.1 over one kept-alive
//! connection as ureq's own, with fewer system calls per request.
//!
//! One worker sends its events one by one over one connection, so each request's cost beside
//! the round trip is what limits it. ureq's own TCP transport makes about ten system calls per
//! request where two (write, read) carry the data: it checks twice that a pooled connection is
//! still open, each time switching the socket to non-blocking and back around a read (three
//! calls), and it sets the read and write timeouts before every read and write, since the time
//! left before the request's deadline changes on every call. This transport checks with one
//! `recv(MSG_PEEK | MSG_DONTWAIT)`, and changes a socket timeout only when the time left differs
//! from the one set by more than [`TIMEOUT_SLACK`], so a request can time out that much early
//! or late, which for a timeout of seconds changes nothing.
//!
//! Proxies (CONNECT) and TLS come from ureq's own connectors, chained around this one exactly
//! as in ureq's default chain.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};
use std::time::Duration;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    RustlsConnector, ShutdownHandle, Transport,
};
use ureq::Error;

/// How far a socket timeout may be from the time actually left before it is set again. Also the
/// finest the timeouts get: a request's time left below it is still given in full.
pub const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// The connector chain for the tracker: CONNECT proxy (when configured), this TCP transport,
/// then TLS for `https://`.
pub fn connector() -> impl Connector<()> {
    ().chain(ConnectProxyConnector::default())
        .chain(TrackerTcpConnector)
        .chain(RustlsConnector::default())
}

/// Opens [`TrackerTcp`] connections.
#[derive(Debug, Default)]
pub struct TrackerTcpConnector;

impl<In: Transport> Connector<In> for TrackerTcpConnector {
    type Out = Either<In, TrackerTcp>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        // A connection made earlier in the chain (through a proxy) is used as it is.
        if let Some(c) = chained {
            return Ok(Some(Either::A(c)));
        }
        let budget = details.timeout.not_zero();
        let started = std::time::Instant::now();
        let addrs: Vec<_> = details.addrs.iter().copied().collect();
        let mut last_err = None;
        for (i, addr) in addrs.iter().enumerate() {
            // The time left is shared out evenly among the addresses not yet tried, so one
            // that swallows packets cannot use up the whole connect timeout.
            let attempt = match budget {
                None => TcpStream::connect(addr),
                Some(total) => {
                    let left = total.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(Error::Timeout(details.timeout.reason));
                    }
                    let share = left / (addrs.len() - i) as u32;
                    TcpStream::connect_timeout(addr, share.max(Duration::from_millis(10)))
                }
            };
            match attempt {
                Ok(stream) => {
                    if details.config.no_delay() {
                        stream.set_nodelay(true)?;
                    }
                    let transport = TrackerTcp::new(
                        stream,
                        LazyBuffers::new(
                            details.config.input_buffer_size(),
                            details.config.output_buffer_size(),
                        ),
                    );
                    (details.register_shutdown)(transport.shutdown_handle())?;
                    return Ok(Some(Either::B(transport)));
                }
                Err(e) => {
                    log::debug!("connecting to {addr}: {e}");
                    last_err = Some(e);
                }
            }
        }
        Err(match last_err {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => {
                Error::Timeout(details.timeout.reason)
            }
            Some(e) => e.into(),
            None => io::Error::new(io::ErrorKind::NotFound, "no address to connect to").into(),
        })
    }
}

/// One kept-alive TCP connection to the tracker.
pub struct TrackerTcp {
    /// Shared (weakly) with the agent's shutdown handle, which may shut the socket down while a
    /// request is waiting on it.
    stream: Arc<Socket>,
    buffers: LazyBuffers,
    /// The timeouts the socket has now (None: none, block for ever).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl TrackerTcp {
    fn new(stream: TcpStream, buffers: LazyBuffers) -> Self {
        TrackerTcp {
            stream: Arc::new(Socket(stream)),
            buffers,
            read_timeout: None,
            write_timeout: None,
        }
    }

    fn shutdown_handle(&self) -> Weak<dyn ShutdownHandle> {
        let weak: Weak<Socket> = Arc::downgrade(&self.stream);
        weak
    }
}

/// The socket, in a type of this crate so that it can be ureq's `ShutdownHandle`: the agent may
/// shut it down from another thread while a request waits on it.
struct Socket(TcpStream);

impl ShutdownHandle for Socket {
    fn shutdown(&self) {
        // Already closed is fine: the point is that nothing waits on it any more.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Whether the socket timeout `set` should be changed to `wanted`.
fn needs_setting(set: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (set, wanted) {
        (Some(s), Some(w)) => s.abs_diff(w) > TIMEOUT_SLACK,
        (s, w) => s != w,
    }
}

/// The timeout to give the socket for `t`, and the error to report if it runs out.
fn socket_timeout(t: NextTimeout) -> Result<Option<Duration>, Error> {
    if t.after.is_zero() {
        return Err(Error::Timeout(t.reason));
    }
    Ok(t.not_zero().map(|d| *d))
}

fn timed_out(e: io::Error, t: NextTimeout) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(t.reason),
        _ => e.into(),
    }
}

impl Transport for TrackerTcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let t = timeout.for_write();
        let wanted = socket_timeout(t)?;
        if needs_setting(self.write_timeout, wanted) {
            self.stream.0.set_write_timeout(wanted)?;
            self.write_timeout = wanted;
        }
        let output = &self.buffers.output()[..amount];
        (&self.stream.0)
            .write_all(output)
            .map_err(|e| timed_out(e, t))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let t = timeout.for_read();
        let wanted = socket_timeout(t)?;
        if needs_setting(self.read_timeout, wanted) {
            self.stream.0.set_read_timeout(wanted)?;
            self.read_timeout = wanted;
        }
        let input = self.buffers.input_append_buf();
        let amount = loop {
            // A signal (SIGTERM asking the worker to stop, say) interrupts a read with a
            // timeout even under SA_RESTART; the read is simply made again: the worker stops
            // after this request, and the socket timeout still bounds the wait.
            match (&self.stream.0).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| timed_out(e, t))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// Open means: not closed by the tracker and nothing unread on it. Bytes nobody asked for
    /// mean the previous answer was not read to its end, so the connection is not reused.
    fn is_open(&mut self) -> bool {
        let mut byte = 0u8;
        // SAFETY: recv into a one-byte buffer that lives across the call, on a socket this
        // transport owns.
        let n = unsafe {
            libc::recv(
                self.stream.0.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

impl fmt::Debug for TrackerTcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackerTcp")
            .field("peer", &self.stream.0.peer_addr().ok())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_change_only_beyond_the_slack() {
        let s = |ms| Some(Duration::from_millis(ms));
        assert!(needs_setting(None, s(10_000)));
        assert!(needs_setting(s(10_000), None));
        assert!(!needs_setting(None, None));
        assert!(!needs_setting(s(10_000), s(9_990)));
        assert!(!needs_setting(s(9_990), s(10_000)));
        assert!(needs_setting(s(10_000), s(9_000)));
        assert!(needs_setting(s(9_000), s(10_000)));
    }

    #[test]
    fn open_means_not_closed_and_nothing_unread() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut t = TrackerTcp::new(client, LazyBuffers::new(1024, 1024));
        assert!(t.is_open(), "a fresh idle connection is open");
        server.write_all(b"x").unwrap();
        server.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_open(), "unread bytes: not reusable");
        let mut one = [0u8; 1];
        (&t.stream.0).read_exact(&mut one).unwrap();
        assert!(t.is_open(), "read to its end: reusable again");
        drop(server);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_open(), "closed by the other end");
        // The check leaves the socket blocking: a read now returns the end of stream rather
        // than WouldBlock.
        assert_eq!((&t.stream.0).read(&mut one).unwrap(), 0);
    }

    #[test]
    fn shutdown_handle_shuts_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let t = TrackerTcp::new(client, LazyBuffers::new(1024, 1024));
        let handle = t.shutdown_handle();
        handle
            .upgrade()
            .expect("alive while the transport is")
            .shutdown();
        let mut one = [0u8; 1];
        assert_eq!(
            (&t.stream.0).read(&mut one).unwrap(),
            0,
            "reads end at once"
        );
        drop(t);
        assert!(
            handle.upgrade().is_none(),
            "the handle does not keep the socket"
        );
    }
}
