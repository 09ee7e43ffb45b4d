//! Throughput of the Redis transport: batched push, and batched take+ack by one consumer.
//!
//! Uses the redis-server on `LOGLINES_BENCH_REDIS_PORT` when set (scripts/bench-queue.sh starts
//! one and runs redis-benchmark against it too), else starts its own on a free port in a temp
//! dir. Never touches the Redis on 6379.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use loglines::config::RedisSettings;
use loglines::queue::redis::RedisTransport;
use loglines::queue::{ConsumerId, Message, Transport};
use loglines::shutdown::Shutdown;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A typical message: a combined-log line wrapped as the watcher sends it (about 280 bytes).
fn message(i: u64) -> Message {
    Message::new(format!(
        r#"{{"service":"repo.example.ac.uk","logline":"192.0.2.{} - - [17/Oct/2010:03:04:42 +0100] \"GET /download/{i}/thesis.pdf HTTP/1.1\" 200 183412 \"https://www.google.com/\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\""}}"#,
        i % 250
    ))
}

/// The server the benchmark uses; killed at the end if the benchmark started it.
struct Server {
    port: u16,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn server() -> Server {
    if let Some(port) = std::env::var("LOGLINES_BENCH_REDIS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        return Server {
            port,
            child: None,
            _dir: None,
        };
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server not found on PATH: install it with 'apt-get install redis-server'");
    let s = Server {
        port,
        child: Some(child),
        _dir: Some(dir),
    };
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

fn del(port: u16, key: &str) {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("DEL").arg(key).query::<()>(&mut c).unwrap();
}

fn bench(c: &mut Criterion) {
    let srv = server();
    let settings = RedisSettings {
        port: srv.port,
        max_queue_length: u64::MAX,
        heartbeat_ttl: 60,
        ..RedisSettings::default()
    };
    let t = RedisTransport::connect(&settings, Shutdown::new()).expect("connect");

    let mut g = c.benchmark_group("push");
    g.measurement_time(Duration::from_secs(4)).sample_size(10);
    for batch in [100u64, 1000] {
        g.throughput(Throughput::Elements(batch));
        let msgs: Vec<Message> = (0..batch).map(message).collect();
        let mut p = t.producer("bench:push").unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    p.push(msgs.clone()).unwrap();
                }
                let took = start.elapsed();
                del(srv.port, "bench:push");
                took
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("take+ack");
    g.measurement_time(Duration::from_secs(4)).sample_size(10);
    for batch in [100u64, 1000] {
        g.throughput(Throughput::Elements(batch));
        let msgs: Vec<Message> = (0..batch).map(message).collect();
        let mut p = t.producer("bench:take").unwrap();
        let mut cons = t
            .consumer("bench:take", &ConsumerId::new("bench", "worker_bench", 1))
            .unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter_custom(|iters| {
                // Fill (not timed), then time taking and acking it all.
                for _ in 0..iters {
                    p.push(msgs.clone()).unwrap();
                }
                let start = Instant::now();
                for _ in 0..iters {
                    let got = cons.take(batch as usize, Duration::from_secs(5)).unwrap();
                    assert_eq!(got.len() as u64, batch);
                    cons.ack(got).unwrap();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
