//! Throughput of the shipped `lua_plugins/irus.lua` over a generated combined log, through the
//! same `Plugin::process` a worker calls: the figure to hold against the 200,000 lines/s target.
//!
//! The log is a realistic mix for a repository web server: mostly page furniture (stylesheets,
//! scripts, images), searches and browse pages, some errors and HEAD requests, item pages, and
//! about 5% file downloads, a share of them by robots. Lines are wrapped as the watcher wraps
//! them. `LOGLINES_BENCH_LINES` sets the number of lines (default 1,000,000).
//!
//! It is measured twice: in wall time, and in the CPU time of the benchmark thread (the cost on
//! one core, unaffected by other processes competing for it on a shared machine).
//!
//! The same log is also measured as a site behind a load balancer writes it: a custom nginx
//! `log_format` with X-Forwarded-For and `$request_time`, read by irus.lua's `log_format` and
//! `trusted_proxies` settings.
//!
//! Run: `cargo bench --bench plugin`.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loglines::plugin::{Outcome, Plugin, PluginSpec};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A small deterministic generator (64-bit LCG), so every run measures the same log.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
];
const ROBOTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "python-requests/2.32.3",
];
const FURNITURE: &[&str] = &[
    "/style/auto.css",
    "/javascript/auto.js",
    "/images/logo.png",
    "/images/sidebar.jpg",
    "/favicon.ico",
    "/style/print.css",
];

/// One generated line; `i` is its position (for the timestamp).
fn line(rng: &mut Lcg, i: u64) -> String {
    let ip = format!(
        "{}.{}.{}.{}",
        1 + rng.below(223),
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    );
    let robot = rng.below(100) < 15;
    let ua = if robot {
        ROBOTS[rng.below(ROBOTS.len() as u64) as usize]
    } else {
        BROWSERS[rng.below(BROWSERS.len() as u64) as usize]
    };
    let item = 1 + rng.below(20_000);
    let roll = rng.below(1000);
    let (method, path, status) = match roll {
        0..=49 => (
            "GET",
            format!("/id/eprint/{item}/1/paper-{item}.pdf"),
            if rng.below(10) == 0 { 206 } else { 200 },
        ),
        50..=129 => ("GET", format!("/id/eprint/{item}/"), 200),
        130..=579 => (
            "GET",
            FURNITURE[rng.below(FURNITURE.len() as u64) as usize].to_string(),
            if rng.below(4) == 0 { 304 } else { 200 },
        ),
        580..=759 => ("GET", format!("/cgi/search/simple?q=topic{item}"), 200),
        760..=859 => ("GET", format!("/view/year/{}.html", 1990 + item % 35), 200),
        860..=919 => ("GET", format!("/id/eprint/{item}/9/missing.pdf"), 404),
        920..=949 => ("HEAD", format!("/id/eprint/{item}/1/paper-{item}.pdf"), 200),
        950..=979 => ("POST", "/cgi/users/login".to_string(), 302),
        _ => (
            "GET",
            format!("/cgi/export/eprint/{item}/BibTeX/repo-eprint-{item}.bib"),
            200,
        ),
    };
    let sec = i % 60;
    let min = (i / 60) % 60;
    let referer = if rng.below(3) == 0 {
        "\"-\"".to_string()
    } else {
        format!("\"https://repo.example.ac.uk/id/eprint/{item}/\"")
    };
    format!(
        "{ip} - - [27/Nov/2026:10:{min:02}:{sec:02} +0000] \"{method} {path} HTTP/1.1\" {status} {} {referer} \"{ua}\"",
        1000 + rng.below(900_000)
    )
}

fn messages(n: u64) -> Vec<String> {
    let mut rng = Lcg(0x5eed);
    (0..n)
        .map(|i| {
            serde_json::json!({"service": "repo.example.ac.uk", "logline": line(&mut rng, i)})
                .to_string()
        })
        .collect()
}

/// The generated messages, made once for both measurements.
fn messages_once() -> &'static [String] {
    static MSGS: OnceLock<Vec<String>> = OnceLock::new();
    MSGS.get_or_init(|| {
        let n: u64 = std::env::var("LOGLINES_BENCH_LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        messages(n)
    })
}

/// The nginx format of the second measurement, as irus.lua's `log_format` setting.
const NGINX_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$http_x_forwarded_for\" $request_time";

/// The generated messages as the load balancer's nginx logs them: the balancer's address first,
/// the client in X-Forwarded-For, and the request time at the end.
fn nginx_messages_once() -> &'static [String] {
    static MSGS: OnceLock<Vec<String>> = OnceLock::new();
    MSGS.get_or_init(|| {
        messages_once()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let v: serde_json::Value = serde_json::from_str(m).unwrap();
                let line = v["logline"].as_str().unwrap();
                let (client, rest) = line.split_once(' ').unwrap();
                let logline = format!(
                    "10.0.0.{} {rest} \"{client}, 10.0.0.2\" 0.{:03}",
                    1 + i % 4,
                    i % 1000
                );
                serde_json::json!({"service": "repo.example.ac.uk", "logline": logline}).to_string()
            })
            .collect()
    })
}

/// CPU time of the calling thread. On a shared machine wall time also counts the time other
/// processes held the core; CPU time is the cost on one core, which is what the target is
/// about. Both are reported.
struct ThreadCpuTime {
    wall: WallTime,
}

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds either way, so wall time's formatting fits.
        self.wall.formatter()
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>, label: &str) {
    let msgs = messages_once();
    let n = msgs.len() as u64;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua_plugins/irus.lua");
    let mut plugin = Plugin::load(PluginSpec::standalone(&path, "worker_pirus2"))
        .unwrap_or_else(|e| panic!("{e}"));

    // Report the mix once, so the figure can be read against what was measured.
    let mut eligible = 0u64;
    for m in msgs {
        if let Outcome::Eligible(_) = plugin.process(m).unwrap_or_else(|e| panic!("{e}")) {
            eligible += 1;
        }
    }
    eprintln!(
        "irus.lua bench: {n} lines, {eligible} eligible ({:.1}%)",
        eligible as f64 * 100.0 / n as f64
    );

    let mut group = c.benchmark_group("plugin");
    group.throughput(Throughput::Elements(n));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(format!("irus.lua combined log ({label})"), |b| {
        b.iter(|| sent(&mut plugin, msgs))
    });

    let msgs = nginx_messages_once();
    let mut spec = PluginSpec::standalone(&path, "worker_pirus2");
    let cfg = format!(
        "[irus]\nrepository = repo.example.ac.uk\nlog_format = {NGINX_FORMAT}\ntrusted_proxies = 10.0.0.0/8\n"
    );
    spec.config = Arc::new(
        loglines::config::ini::parse(Path::new("bench.cfg"), &cfg)
            .unwrap_or_else(|e| panic!("{e:?}")),
    );
    let mut plugin = Plugin::load(spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sent(&mut plugin, msgs),
        eligible,
        "the nginx lines give the same events"
    );
    group.bench_function(
        format!("irus.lua nginx format behind trusted proxies ({label})"),
        |b| b.iter(|| sent(&mut plugin, msgs)),
    );
    group.finish();
}

/// Runs every message through the plugin as a worker would; how many were events.
fn sent(plugin: &mut Plugin, msgs: &[String]) -> u64 {
    msgs.iter()
        .filter(|m| matches!(plugin.process(m), Ok(Outcome::Eligible(_))))
        .count() as u64
}

fn wall(c: &mut Criterion) {
    bench(c, "wall time");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "thread CPU time");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
