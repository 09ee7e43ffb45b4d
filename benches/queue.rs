//! Throughput of the Redis transport: batched push, and batched take+ack by one consumer.
//!
//! Uses the redis-server on `LOGLINES_BENCH_REDIS_PORT` when set (scripts/bench-queue.sh starts
//! one and runs redis-benchmark against it too), else starts its own with the tests' harness (a
//! free port in a temp dir). Never touches the Redis on 6379.

// The tests' harness, so the benchmark starts redis-server the same careful way (port races,
// making sure it is our server that answers) instead of with a copy of its own.
#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code)]
mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use loglines::config::RedisSettings;
use loglines::queue::redis::RedisTransport;
use loglines::queue::{ConsumerId, Message, Transport};
use loglines::util::shutdown::Shutdown;
use std::time::{Duration, Instant};
use support::redis::RedisServer;

/// A typical message: a combined-log line wrapped as the watcher sends it (about 280 bytes).
fn message(i: u64) -> Message {
    Message::new(format!(
        r#"{{"service":"repo.example.ac.uk","logline":"192.0.2.{} - - [17/Oct/2010:03:04:42 +0100] \"GET /download/{i}/thesis.pdf HTTP/1.1\" 200 183412 \"https://www.google.com/\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\""}}"#,
        i % 250
    ))
}

/// The port of the server the benchmark uses, and the server itself if the benchmark started
/// it (dropping it stops the server).
fn server() -> (u16, Option<RedisServer>) {
    if let Some(port) = std::env::var("LOGLINES_BENCH_REDIS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        return (port, None);
    }
    let own = RedisServer::start();
    (own.port(), Some(own))
}

fn del(port: u16, key: &str) {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("DEL").arg(key).query::<()>(&mut c).unwrap();
}

fn bench(c: &mut Criterion) {
    let (port, _own) = server();
    let settings = RedisSettings {
        port,
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
                del(port, "bench:push");
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
