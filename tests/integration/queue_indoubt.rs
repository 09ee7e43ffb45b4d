//! Commands whose answer is lost: the server ran them, the connection broke before the reply
//! arrived. Retries must neither repeat them (a duplicate push, a second copy acked, a fan-out
//! twice) nor lose what they moved (a take).
//!
//! A small TCP proxy between the client and a real redis-server cuts the connection right after
//! the server has answered, throwing the answer away.

use crate::support;

use loglines::queue::redis::RedisTransport;
use loglines::queue::{ConsumerId, Transport};
use loglines::util::shutdown::Shutdown;
use std::io::{Read, Write};
use std::net::{Shutdown as NetShutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::queue::{bodies, msgs};
use support::redis::RedisServer;
use support::wait_until;

/// Forwards 127.0.0.1:port() to the redis port; `cut_next_reply` makes it swallow the next
/// reply of the server and close that connection.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (c2, n2) = (cut.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c_read, s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || copy(c_read, s_write));
                let (cut, cuts) = (c2.clone(), n2.clone());
                std::thread::spawn(move || replies(server, client, cut, cuts));
            }
        });
        Proxy { port, cut, cuts }
    }

    /// Arms the cut and returns how many cuts have happened so far.
    fn cut_next_reply(&self) -> usize {
        let before = self.cuts.load(Ordering::SeqCst);
        self.cut.store(true, Ordering::SeqCst);
        before
    }

    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(NetShutdown::Both);
    let _ = from.shutdown(NetShutdown::Both);
}

fn replies(
    mut server: TcpStream,
    mut client: TcpStream,
    cut: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        if cut.swap(false, Ordering::SeqCst) {
            // The server has done it; the client never hears so.
            cuts.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(NetShutdown::Both);
    let _ = server.shutdown(NetShutdown::Both);
}

#[test]
fn lost_answers_are_neither_repeated_nor_lost() {
    let r = RedisServer::start();
    let proxy = Proxy::start(r.port());
    let mut settings = r.settings(30);
    settings.port = proxy.port;
    let t = RedisTransport::connect(&settings, Shutdown::new()).unwrap();
    let mut p = t.producer("q").unwrap();
    let mut c = t
        .consumer("q", &ConsumerId::new("h", "worker_x", 1))
        .unwrap();
    // Warm up: scripts loaded, connections open, so each cut below hits the command under test.
    p.push(msgs(&["warm"])).unwrap();
    let w = c.take(1, Duration::from_secs(5)).unwrap();
    c.ack(w).unwrap();

    // A push whose answer is lost is stored exactly once.
    let n = proxy.cut_next_reply();
    p.push(msgs(&["A", "A", "B"])).unwrap();
    assert_eq!(proxy.cuts(), n + 1, "the cut happened");
    assert_eq!(r.lrange("q"), ["B", "A", "A"]);

    // A batch take whose answer is lost: the moved messages are still handed out, in order.
    let n = proxy.cut_next_reply();
    let got = c.take(10, Duration::from_secs(5)).unwrap();
    assert_eq!(proxy.cuts(), n + 1);
    assert_eq!(bodies(&got), ["A", "A", "B"]);
    assert!(r.lrange("q").is_empty());

    // An ack of one of two identical messages, answer lost: the retry removes no second copy.
    let n = proxy.cut_next_reply();
    c.ack(msgs(&["A"])).unwrap();
    assert_eq!(proxy.cuts(), n + 1);
    let mut left = r.lrange("q:inflight:h:worker_x:1");
    left.sort();
    assert_eq!(left, ["A", "B"]);

    // A forward whose answer is lost fans out once.
    let n = proxy.cut_next_reply();
    c.forward(
        msgs(&["A", "B"]),
        vec![("out".into(), msgs(&["a-out", "b-out"]))],
    )
    .unwrap();
    assert_eq!(proxy.cuts(), n + 1);
    assert_eq!(r.lrange("out"), ["b-out", "a-out"]);
    assert!(r.lrange("q:inflight:h:worker_x:1").is_empty());

    // A blocking take (BLMOVE) whose answer is lost: the message is not stranded in flight.
    // The cut is armed while the consumer blocks, so it hits BLMOVE's answer; the pusher goes
    // straight to the server.
    let t2 = RedisTransport::connect(&r.settings(30), Shutdown::new()).unwrap();
    let cut = proxy.cut.clone();
    let n = proxy.cuts();
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            assert!(wait_until(Duration::from_secs(10), || r.blocked_clients() >= 1));
            cut.store(true, Ordering::SeqCst);
            t2.producer("q").unwrap().push(msgs(&["late"])).unwrap();
        });
        c.take(1, Duration::from_secs(5)).unwrap()
    });
    assert_eq!(proxy.cuts(), n + 1);
    assert_eq!(bodies(&got), ["late"]);
    c.ack(got).unwrap();
    assert!(r.lrange("q:inflight:h:worker_x:1").is_empty());
}
