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

use crate::util::shutdown::Shutdown;
use crate::util::sys;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    RustlsConnector, ShutdownHandle, Transport,
};
use ureq::Error;

/// How far a socket timeout may be from the time actually left before it is set again. Also the
/// finest the timeouts get: a request's time left below it is still given in full.
pub const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// The connector chain for the tracker: CONNECT proxy (when configured), this TCP transport,
/// then TLS for `https://`. A connection attempt gives up at once when `stop` is set.
pub fn connector(stop: Shutdown) -> impl Connector<()> {
    ().chain(ConnectProxyConnector::default())
        .chain(TrackerTcpConnector { stop })
        .chain(RustlsConnector::default())
}

/// How often a connection attempt looks at the stop flag.
const CONNECT_STEP: Duration = Duration::from_millis(100);

/// Opens [`TrackerTcp`] connections.
#[derive(Debug)]
pub struct TrackerTcpConnector {
    /// ureq's shutdown does not reach a connect in progress, and `connect_timeout` (default
    /// 10 s) is as long as supervisord waits for a stopping worker.
    stop: Shutdown,
}

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
        let started = Instant::now();
        let deadline = details.timeout.not_zero().map(|t| started + *t);
        let addrs: Vec<_> = details.addrs.iter().copied().collect();
        let mut last_err = None;
        for (i, addr) in addrs.iter().enumerate() {
            // The time left is shared out evenly among the addresses not yet tried, so one
            // that swallows packets cannot use up the whole connect timeout.
            let until = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout(details.timeout.reason));
                    }
                    let share = left / (addrs.len() - i) as u32;
                    Some(Instant::now() + share.max(Duration::from_millis(10)))
                }
            };
            match connect_until(addr, until, &self.stop) {
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
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e.into()),
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

/// Connects to `addr`, giving up at `until` (TimedOut) or as soon as `stop` is set
/// (Interrupted): a non-blocking connect, waited for in steps of [`CONNECT_STEP`].
fn connect_until(
    addr: &SocketAddr,
    until: Option<Instant>,
    stop: &Shutdown,
) -> io::Result<TcpStream> {
    if stop.is_set() {
        return Err(stopping());
    }
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let sock = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
    match rustix::net::connect(&sock, addr) {
        Ok(()) => {}
        Err(Errno::INPROGRESS) => {
            wait_connected(&sock, until, stop)?;
            // The outcome of a non-blocking connect is the socket's pending error.
            rustix::net::sockopt::socket_error(&sock)??;
        }
        Err(e) => return Err(e.into()),
    }
    let stream = TcpStream::from(sock);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Waits for a connect in progress on `sock` to finish (either way), in steps of
/// [`CONNECT_STEP`] so that a stop is seen.
fn wait_connected(sock: &OwnedFd, until: Option<Instant>, stop: &Shutdown) -> io::Result<()> {
    loop {
        if stop.is_set() {
            return Err(stopping());
        }
        let step = match until {
            None => CONNECT_STEP,
            Some(u) => {
                let left = u.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                left.min(CONNECT_STEP)
            }
        };
        if !sys::wait_for(sock, sys::Ready::OUT, step)?.is_empty() {
            return Ok(());
        }
    }
}

fn stopping() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "the worker is stopping; connection attempt abandoned",
    )
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
    /// A transport over a connected stream (the connector makes them; tests too).
    pub fn new(stream: TcpStream, buffers: LazyBuffers) -> Self {
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
        let _ = self.0.shutdown(std::net::Shutdown::Both);
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
        let started = Instant::now();
        let input = self.buffers.input_append_buf();
        let amount = loop {
            // A signal (SIGHUP from logrotate, say) interrupts a read that has a timeout even
            // under SA_RESTART. The read is made again with only the time that is left, so
            // signals cannot stretch the wait beyond the timeout.
            match (&self.stream.0).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(total) = wanted {
                        let left = total.saturating_sub(started.elapsed());
                        if left.is_zero() {
                            return Err(Error::Timeout(t.reason));
                        }
                        self.stream.0.set_read_timeout(Some(left))?;
                        self.read_timeout = Some(left);
                    }
                }
                r => break r.map_err(|e| timed_out(e, t))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// Open means: not closed by the tracker and nothing unread on it. Bytes nobody asked for
    /// mean the previous answer was not read to its end, so the connection is not reused.
    fn is_open(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
        matches!(
            rustix::net::recv(&self.stream.0, &mut byte, flags),
            Err(Errno::WOULDBLOCK)
        )
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

    /// A listener whose accept queue is full, so a further connection attempt gets no answer
    /// at all (its SYNs are dropped), as with a tracker behind a firewall that drops packets.
    fn black_hole() -> (std::net::TcpListener, SocketAddr, Vec<TcpStream>) {
        // std's listeners take a backlog of 128; this one takes (almost) none.
        let owned = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        rustix::net::bind(&owned, &any).unwrap();
        rustix::net::listen(&owned, 0).unwrap();
        let listener = std::net::TcpListener::from(owned);
        let addr = listener.local_addr().unwrap();
        // Fill the queue (a backlog of 0 still takes one or two); connections beyond it hang.
        let mut fillers = Vec::new();
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        (listener, addr, fillers)
    }

    #[test]
    fn a_connection_attempt_ends_when_the_worker_stops() {
        let (_l, addr, _fillers) = black_hole();
        let stop = Shutdown::new();
        let trigger = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            trigger.trigger();
        });
        let started = Instant::now();
        let e = connect_until(&addr, Some(Instant::now() + Duration::from_secs(30)), &stop)
            .unwrap_err();
        t.join().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "{e}");
        // Bounded by the 100 ms steps, not by the 30 s timeout.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        // Once stopping, no attempt is made at all.
        let e = connect_until(&addr, None, &stop).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn a_connection_attempt_times_out_and_a_refusal_is_reported() {
        let (_l, addr, _fillers) = black_hole();
        let stop = Shutdown::new();
        let e = connect_until(
            &addr,
            Some(Instant::now() + Duration::from_millis(300)),
            &stop,
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        // A port nobody listens on: refused at once.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = connect_until(&free, None, &stop).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        // And a listening one connects, blocking afterwards.
        let l = std::net::TcpListener::bind("[::1]:0")
            .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let s = connect_until(&l.local_addr().unwrap(), None, &stop).unwrap();
        assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
        let (mut server, _) = l.accept().unwrap();
        server.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        (&s).read_exact(&mut one).unwrap();
    }
}
