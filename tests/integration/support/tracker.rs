//! A real HTTP/1.1 server on 127.0.0.1 standing in for the IRUS tracker in tests and benchmarks.
//!
//! Written with std only (no HTTP crate) so that it is small, fast and fully under the test's
//! control: a test can switch its behaviour at any moment (answer 200, fail with a status,
//! reject with a body, hang, refuse connections) and inspect every request it answered.
//! The same file is compiled into `examples/tracker.rs` for benchmarks, so it must not depend on
//! anything else in `tests/integration/support/`.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest request line or header line accepted by default; a longer request line is answered
/// 414 and a longer header line closes the connection, so a broken client cannot make the test
/// process allocate without bound. [`TrackerHandle::limit_request_line`] lowers it, as a
/// real server's limit (Apache's `LimitRequestLine`, 8,190 bytes) does.
const MAX_LINE: u64 = 64 * 1024;
/// Largest request body the server reads and discards (GET/HEAD normally have none).
const MAX_BODY: u64 = 16 * 1024 * 1024;
/// How long a mode switch waits for the accept thread to drop or re-bind the listener.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long Drop waits for connection threads to notice the shutdown.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// One request the tracker answered.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `HEAD`, ... as sent.
    pub method: String,
    /// The request target exactly as sent: path plus `?query` if any.
    pub target: String,
    /// When the request line arrived (for measuring retry intervals).
    pub at: Instant,
    /// The status the tracker answered.
    pub status: u16,
    /// Which connection carried it (numbered from 1 in accept order), to prove keep-alive.
    pub conn: u64,
}

impl Request {
    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The raw (still encoded) query string, empty if there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The decoded query parameters in order (repeated keys kept).
    pub fn params(&self) -> Vec<(String, String)> {
        parse_query(self.query())
    }

    /// The decoded value of the first parameter named `key`.
    pub fn param(&self, key: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Splits a form-urlencoded query string into decoded key/value pairs (`+` is a space, `%XX` a
/// byte; a key without `=` gets an empty value; empty pieces between `&`s are skipped).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// Decodes one form-urlencoded component. Malformed `%` escapes are kept literally (the tracker
/// must not reject what a real server would tolerate) and invalid UTF-8 becomes U+FFFD.
pub fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

/// What the tracker does with the next request (or, for `Refuse`, the next connection).
#[derive(Clone, Debug)]
enum Mode {
    /// Answer with this status and body (the body is shared so reading the mode is cheap), and
    /// a `Location` header when `location` is set (a redirect).
    Answer {
        status: u16,
        body: Arc<[u8]>,
        location: Option<Arc<str>>,
    },
    /// Read the request, answer nothing; the connection is closed when the mode changes.
    Hang,
    /// Start the answer (its status line and part of a header), then close the connection:
    /// a tracker or proxy dying mid-answer. Recorded with status 0.
    Cut,
    /// No listening socket at all, so connecting fails with "connection refused".
    Refuse,
}

/// Mode plus what the accept thread reports back, under one lock so switches can wait on it.
struct State {
    mode: Mode,
    /// True while the accept thread holds a bound listener.
    listening: bool,
    /// Set when re-binding the port failed after `refuse()`; the switch back reports it.
    bind_error: Option<String>,
}

struct Records {
    list: Vec<Request>,
    count: usize,
    /// When false only `count` grows: long benchmarks must not accumulate millions of records.
    recording: bool,
}

struct Shared {
    port: u16,
    state: Mutex<State>,
    state_cv: Condvar,
    records: Mutex<Records>,
    records_cv: Condvar,
    shutdown: AtomicBool,
    /// A clone of every open connection, so `refuse()` and Drop can close them from outside.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Connection threads still running (Drop waits for this to reach zero).
    active: AtomicUsize,
    /// Requests read while hanging, which by definition were never answered.
    unanswered: AtomicUsize,
    /// How long each answer is held back, in milliseconds (a slow but healthy tracker).
    delay_ms: AtomicU64,
    /// Requests being held back by the delay right now.
    delaying: AtomicUsize,
    /// The longest request line answered; a longer one gets 414.
    line_limit: AtomicU64,
}

/// Locks, ignoring poisoning: a panicking test thread must not turn every later call into a
/// second, misleading panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` for at most `d` (callers loop on their own condition and deadline).
fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>, d: Duration) -> MutexGuard<'a, T> {
    cv.wait_timeout(g, d).unwrap_or_else(|e| e.into_inner()).0
}

/// The running tracker. Stops (closing every connection and joining its accept thread) on Drop.
/// All control and inspection methods come from [`TrackerHandle`] through `Deref`.
pub struct Tracker {
    handle: TrackerHandle,
    acceptor: Option<JoinHandle<()>>,
}

/// A cloneable handle to control and inspect a running tracker from any thread.
#[derive(Clone)]
pub struct TrackerHandle(Arc<Shared>);

impl Tracker {
    /// Starts on a free port, answering 200.
    pub fn start() -> Tracker {
        Tracker::start_on(0).expect("tracker: cannot bind 127.0.0.1:0")
    }

    /// Starts on `port` (0 picks a free one), answering 200.
    pub fn start_on(port: u16) -> io::Result<Tracker> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            port,
            state: Mutex::new(State {
                mode: Mode::Answer {
                    status: 200,
                    body: Arc::from(&b"OK\n"[..]),
                    location: None,
                },
                listening: true,
                bind_error: None,
            }),
            state_cv: Condvar::new(),
            records: Mutex::new(Records {
                list: Vec::new(),
                count: 0,
                recording: true,
            }),
            records_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            unanswered: AtomicUsize::new(0),
            delay_ms: AtomicU64::new(0),
            delaying: AtomicUsize::new(0),
            line_limit: AtomicU64::new(MAX_LINE),
        });
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("tracker-accept-{port}"))
            .spawn(move || accept_loop(s, Some(listener)))?;
        Ok(Tracker {
            handle: TrackerHandle(shared),
            acceptor: Some(acceptor),
        })
    }

    /// A cloneable handle, e.g. to switch modes from another thread.
    pub fn handle(&self) -> TrackerHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for Tracker {
    type Target = TrackerHandle;
    fn deref(&self) -> &TrackerHandle {
        &self.handle
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let sh = &self.handle.0;
        sh.shutdown.store(true, Ordering::SeqCst);
        // Wake threads waiting on the mode: hanging requests and an accept thread in refuse mode.
        drop(lock(&sh.state));
        sh.state_cv.notify_all();
        self.handle.close_connections();
        // A blocked accept() only returns when something connects.
        self.handle.poke_listener();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        // Connection threads are not joined (their handles are not kept, to keep accepting
        // cheap); they see the closed socket or the flag within milliseconds.
        let end = Instant::now() + DROP_TIMEOUT;
        while sh.active.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl TrackerHandle {
    /// Answer every request 200 with a small body (the default).
    pub fn ok(&self) {
        self.set_mode(Mode::Answer {
            status: 200,
            body: Arc::from(&b"OK\n"[..]),
            location: None,
        });
    }

    /// Answer every request with `status` (500, 429, 408, ...) and a short body.
    pub fn fail(&self, status: u16) {
        self.set_mode(Mode::Answer {
            status,
            body: Arc::from(&b"error\n"[..]),
            location: None,
        });
    }

    /// Answer every request with `status` and `body` (e.g. 400 and the tracker's complaint).
    pub fn reject(&self, status: u16, body: &str) {
        self.set_mode(Mode::Answer {
            status,
            body: Arc::from(body.as_bytes()),
            location: None,
        });
    }

    /// Answer every request with a redirect: `status` (301, 302, 307, ...) and `Location:
    /// location`, as a tracker behind a maintenance page does.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn redirect(&self, status: u16, location: &str) {
        self.set_mode(Mode::Answer {
            status,
            body: Arc::from(&b"moved\n"[..]),
            location: Some(Arc::from(location)),
        });
    }

    /// Accept connections and read requests but never answer them. Switching to any other mode
    /// closes the hanging connections (their clients have usually timed out by then).
    pub fn hang(&self) {
        self.set_mode(Mode::Hang);
    }

    /// Start every answer and close the connection in the middle of it.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn cut(&self) {
        self.set_mode(Mode::Cut);
    }

    /// Hold every answer back by `d` before giving it (in any answering mode): a tracker that
    /// is slow but answers. `Duration::ZERO` answers at once again.
    pub fn delay(&self, d: Duration) {
        self.0
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answer 414 (URI Too Long) to a request line longer than `bytes` (without its CRLF),
    /// as Apache does above `LimitRequestLine`. At most the default, 64 KiB.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn limit_request_line(&self, bytes: u64) {
        self.0
            .line_limit
            .store(bytes.min(MAX_LINE), Ordering::SeqCst);
    }

    /// Requests whose answer is being held back by [`TrackerHandle::delay`] right now.
    pub fn delaying(&self) -> usize {
        self.0.delaying.load(Ordering::SeqCst)
    }

    /// Stop listening and close every open connection, so connecting fails with "connection
    /// refused". Switching to any other mode listens on the same port again.
    pub fn refuse(&self) {
        self.set_mode(Mode::Refuse);
    }

    /// With `false`, requests are only counted, not stored (for long benchmarks).
    pub fn set_recording(&self, on: bool) {
        lock(&self.0.records).recording = on;
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.0.port))
    }

    /// The endpoint to configure as `endpoint_url`, shaped like the real test tracker's.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/counter/test/", self.0.port)
    }

    /// `http://127.0.0.1:PORT/`.
    #[allow(dead_code)] // for examples/tracker.rs, which includes this file
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.0.port)
    }

    /// A snapshot of the requests answered so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.0.records).list.clone()
    }

    /// How many requests were answered (with any status) so far.
    pub fn count(&self) -> usize {
        lock(&self.0.records).count
    }

    /// Forgets the requests recorded so far (the count restarts at zero).
    pub fn clear(&self) {
        let mut r = lock(&self.0.records);
        r.list.clear();
        r.count = 0;
    }

    /// Waits until at least `n` requests were answered; false if `timeout` passed first.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut r = lock(&self.0.records);
        loop {
            if r.count >= n {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            r = wait(&self.0.records_cv, r, end - now);
        }
    }

    /// Requests read while hanging (never answered, not in `requests()`).
    pub fn unanswered(&self) -> usize {
        self.0.unanswered.load(Ordering::SeqCst)
    }

    /// Connections currently open (to check that nothing leaks).
    pub fn open_connections(&self) -> usize {
        lock(&self.0.conns).len()
    }

    fn set_mode(&self, mode: Mode) {
        let refuse = matches!(mode, Mode::Refuse);
        {
            let mut st = lock(&self.0.state);
            st.mode = mode;
            st.bind_error = None;
        }
        self.0.state_cv.notify_all();
        if refuse {
            // Established keep-alive connections would otherwise keep working.
            self.close_connections();
            self.poke_listener();
        }
        // Return only once the switch is in effect, so a test can act right after it.
        let end = Instant::now() + SWITCH_TIMEOUT;
        let mut st = lock(&self.0.state);
        while st.listening == refuse {
            if let Some(e) = &st.bind_error {
                panic!("tracker: cannot listen on port {} again: {e}", self.0.port);
            }
            let now = Instant::now();
            if now >= end {
                panic!("tracker: accept thread did not switch within {SWITCH_TIMEOUT:?}");
            }
            st = wait(&self.0.state_cv, st, end - now);
        }
    }

    fn close_connections(&self) {
        for s in lock(&self.0.conns).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Connects once so that a thread blocked in accept() wakes up and re-reads the state.
    fn poke_listener(&self) {
        let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1));
    }
}

fn is_refusing(sh: &Shared) -> bool {
    matches!(lock(&sh.state).mode, Mode::Refuse)
}

/// Owns the listener: accepts while not refusing; in refuse mode drops it and waits to re-bind.
fn accept_loop(sh: Arc<Shared>, mut first: Option<TcpListener>) {
    loop {
        let listener = match first.take() {
            Some(l) => l,
            None => match wait_and_rebind(&sh) {
                Some(l) => l,
                None => return,
            },
        };
        {
            let mut st = lock(&sh.state);
            st.listening = true;
        }
        sh.state_cv.notify_all();
        for conn in listener.incoming() {
            if sh.shutdown.load(Ordering::SeqCst) || is_refusing(&sh) {
                break;
            }
            match conn {
                Ok(stream) => spawn_connection(&sh, stream),
                // E.g. too many open files: back off briefly instead of spinning.
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
        drop(listener);
        lock(&sh.state).listening = false;
        sh.state_cv.notify_all();
        if sh.shutdown.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Waits until the mode is no longer `Refuse`, then binds the same port again. None on shutdown
/// or when binding keeps failing (the error is left in the state for the switch to report).
fn wait_and_rebind(sh: &Shared) -> Option<TcpListener> {
    {
        let mut st = lock(&sh.state);
        while matches!(st.mode, Mode::Refuse) {
            if sh.shutdown.load(Ordering::SeqCst) {
                return None;
            }
            // The timeout only bounds how long a missed wake-up could delay shutdown.
            st = wait(&sh.state_cv, st, Duration::from_millis(200));
        }
    }
    // std sets SO_REUSEADDR, so connections we just closed (TIME_WAIT) do not block the bind;
    // retry briefly anyway in case the kernel has not finished releasing the old socket.
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpListener::bind(("127.0.0.1", sh.port)) {
            Ok(l) => return Some(l),
            Err(e) if Instant::now() >= end || sh.shutdown.load(Ordering::SeqCst) => {
                lock(&sh.state).bind_error = Some(e.to_string());
                sh.state_cv.notify_all();
                return None;
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn spawn_connection(sh: &Arc<Shared>, stream: TcpStream) {
    let id = sh.next_conn.fetch_add(1, Ordering::SeqCst);
    // Counted before the thread exists so Drop never misses a thread that is just starting.
    sh.active.fetch_add(1, Ordering::SeqCst);
    let s = sh.clone();
    let spawned = thread::Builder::new()
        .name(format!("tracker-conn-{id}"))
        .spawn(move || {
            if let Ok(clone) = stream.try_clone() {
                lock(&s.conns).insert(id, clone);
            }
            // Checked after registering: Drop sets the flag before closing registered connections,
            // so either Drop closes this one or this thread sees the flag.
            if !s.shutdown.load(Ordering::SeqCst) {
                let _ = serve(&s, stream, id);
            }
            lock(&s.conns).remove(&id);
            s.active.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        sh.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads one line (ending in `\n`) into `buf`; Ok(0) at end of stream.
fn read_line(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>, limit: u64) -> io::Result<usize> {
    buf.clear();
    let n = r.by_ref().take(limit).read_until(b'\n', buf)?;
    if n as u64 == limit && buf.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(n)
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Serves one connection: many requests (keep-alive) until the client closes, asks to close,
/// sends something unparseable, or the tracker hangs, refuses or shuts down.
fn serve(sh: &Shared, stream: TcpStream, id: u64) -> io::Result<()> {
    // Without this, a response written right after the previous one can wait for the delayed
    // ACK (40 ms), capping a keep-alive connection at ~25 requests per second.
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(16 * 1024, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(16 * 1024, stream);
    // Reused for every request: no allocation per request unless recording.
    let mut req_line = Vec::with_capacity(1024);
    let mut hdr = Vec::with_capacity(256);
    loop {
        // Room for the CRLF on top of the limit, which counts the line without it.
        let limit = sh.line_limit.load(Ordering::SeqCst) + 2;
        match read_line(&mut reader, &mut req_line, limit) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // The rest of the request is read first: closing a socket with unread data
                // sends a reset, which could reach the client before the answer does.
                drain_head(&mut reader)?;
                record(
                    sh,
                    b"GET",
                    b"(request line over the limit)",
                    Instant::now(),
                    414,
                    id,
                );
                return bad_request(&mut writer, 414);
            }
            Err(e) => return Err(e),
        }
        let line = trim(&req_line);
        if line.is_empty() {
            continue; // tolerated stray CRLF between requests (RFC 9112 section 2.2)
        }
        let at = Instant::now();
        let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
        let (method, target, version) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(m), Some(t), Some(v), None) if v.starts_with(b"HTTP/1.") => (m, t, v),
                _ => return bad_request(&mut writer, 400),
            };
        let mut keep_alive = version == b"HTTP/1.1";
        let mut content_length: u64 = 0;
        loop {
            if read_line(&mut reader, &mut hdr, MAX_LINE)? == 0 {
                return Ok(());
            }
            let h = trim(&hdr);
            if h.is_empty() {
                break;
            }
            let Some(colon) = h.iter().position(|&b| b == b':') else {
                return bad_request(&mut writer, 400);
            };
            let (name, value) = (trim(&h[..colon]), trim(&h[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    Some(n) if n <= MAX_BODY => content_length = n,
                    _ => return bad_request(&mut writer, 400),
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // GET and HEAD have no body; chunked uploads are not worth supporting here.
                return bad_request(&mut writer, 501);
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        if content_length > 0 {
            let got = io::copy(&mut reader.by_ref().take(content_length), &mut io::sink())?;
            if got < content_length {
                return Ok(());
            }
        }
        if sh.shutdown.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mode = lock(&sh.state).mode.clone();
        let (status, body, location): (u16, &[u8], Option<&str>) = match &mode {
            Mode::Refuse => return Ok(()),
            Mode::Hang => {
                sh.unanswered.fetch_add(1, Ordering::SeqCst);
                let mut st = lock(&sh.state);
                while matches!(st.mode, Mode::Hang) && !sh.shutdown.load(Ordering::SeqCst) {
                    st = wait(&sh.state_cv, st, Duration::from_millis(200));
                }
                // Returning drops the stream: the hung connection is closed, never leaked.
                return Ok(());
            }
            Mode::Cut => {
                record(sh, method, target, at, 0, id);
                writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Ty")?;
                writer.flush()?;
                // Returning drops the stream: closed in the middle of the answer.
                return Ok(());
            }
            Mode::Answer {
                status,
                body,
                location,
            } if method == b"GET" || method == b"HEAD" => (*status, &body[..], location.as_deref()),
            Mode::Answer { .. } => (405, b"method not allowed\n", None),
        };
        let delay = sh.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            sh.delaying.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(delay));
            sh.delaying.fetch_sub(1, Ordering::SeqCst);
        }
        // Recorded before writing, so a client that has read its response always finds its
        // request recorded.
        record(sh, method, target, at, status, id);
        let connection = match (keep_alive, version == b"HTTP/1.1") {
            (false, _) => "Connection: close\r\n",
            (true, false) => "Connection: keep-alive\r\n",
            (true, true) => "",
        };
        write!(
            writer,
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}{}",
            reason(status),
            body.len(),
            if status == 405 { "Allow: GET, HEAD\r\n" } else { "" },
        )?;
        if let Some(l) = location {
            write!(writer, "Location: {l}\r\n")?;
        }
        writer.write_all(b"\r\n")?;
        if method != b"HEAD" {
            writer.write_all(body)?;
        }
        // One flush, so headers and body leave in a single write.
        writer.flush()?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Reads and discards up to the blank line that ends a request's head (at most `MAX_BODY`).
fn drain_head(r: &mut BufReader<TcpStream>) -> io::Result<()> {
    let mut last = [0u8; 4];
    for byte in r.by_ref().take(MAX_BODY).bytes() {
        last.rotate_left(1);
        last[3] = byte?;
        if &last == b"\r\n\r\n" || last[2..] == *b"\n\n" {
            break;
        }
    }
    Ok(())
}

/// Counts (and, when recording, keeps) one answered request.
fn record(sh: &Shared, method: &[u8], target: &[u8], at: Instant, status: u16, conn: u64) {
    {
        let mut r = lock(&sh.records);
        r.count += 1;
        if r.recording {
            r.list.push(Request {
                method: String::from_utf8_lossy(method).into_owned(),
                target: String::from_utf8_lossy(target).into_owned(),
                at,
                status,
                conn,
            });
        }
    }
    sh.records_cv.notify_all();
}

/// Answers a request the tracker cannot parse and closes the connection (not recorded).
fn bad_request(w: &mut BufWriter<TcpStream>, status: u16) -> io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        reason(status)
    )?;
    w.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
