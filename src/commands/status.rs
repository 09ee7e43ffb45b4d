//! `loglines status`: every queue of the configuration at a glance (waiting, in flight per
//! consumer with the age of its oldest message, dead letters, live consumers), as a table or JSON.

use crate::app::{load_config, print, Failure, Global};
use crate::config::Config;
use crate::queue::embedded::EmbeddedTransport;
use crate::queue::redis::RedisTransport;
use crate::queue::{Admin, QueueInfo, Transport};
use crate::util::shutdown::Shutdown;
use clap::Args;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// How long `status` waits for a Redis server before reporting it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Print JSON (one document per refresh) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
    /// Show the embedded transport (`loglines run`): its dead-letter files in the state folder.
    #[arg(long)]
    pub embedded: bool,
}

/// The state of the queues on one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerStatus {
    /// The config section (`redis`, `redis_test`) or `embedded`.
    pub name: String,
    /// What the server said about itself, e.g. `redis 7.0.15 at redis://127.0.0.1:6379 db 0`.
    pub server: Option<String>,
    /// Why it could not be asked, when it could not.
    pub error: Option<String>,
    pub queues: Vec<QueueInfo>,
}

/// Which queues live on which Redis section, from the sections that read or write them.
pub fn queues_by_redis(cfg: &Config) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &cfg.sections {
        for q in s.role.reads().into_iter().chain(s.role.writes()) {
            let list = map.entry(s.redis.clone()).or_default();
            if !list.contains(&q) {
                list.push(q);
            }
        }
    }
    for list in map.values_mut() {
        list.sort();
    }
    map
}

fn ask(admin: &mut dyn Admin, name: &str, queues: &[String]) -> ServerStatus {
    let mut st = ServerStatus {
        name: name.to_string(),
        server: None,
        error: None,
        queues: Vec::new(),
    };
    let result = admin.describe().and_then(|d| {
        st.server = Some(d);
        queues.iter().map(|q| admin.info(q)).collect()
    });
    match result {
        Ok(qs) => st.queues = qs,
        Err(e) => st.error = Some(e.to_string()),
    }
    st
}

/// Asks every server the configuration uses about its queues.
pub fn collect(cfg: &Config, embedded: bool) -> Vec<ServerStatus> {
    if embedded {
        let t = EmbeddedTransport::new(1, cfg.general.dead_letter_dir());
        let queues = cfg.queues();
        return vec![match t.admin() {
            Ok(mut a) => ask(a.as_mut(), "embedded", &queues),
            Err(e) => ServerStatus {
                name: "embedded".into(),
                server: None,
                error: Some(e.to_string()),
                queues: Vec::new(),
            },
        }];
    }
    queues_by_redis(cfg)
        .into_iter()
        .map(|(name, queues)| {
            let connected = cfg
                .redis
                .get(&name)
                .ok_or_else(|| format!("no [{name}] section in the configuration"))
                .and_then(|s| {
                    RedisTransport::connect_within(s, Shutdown::new(), CONNECT_TIMEOUT)
                        .and_then(|t| t.admin())
                        .map_err(|e| e.to_string())
                });
            match connected {
                Ok(mut admin) => ask(admin.as_mut(), &name, &queues),
                Err(e) => ServerStatus {
                    name,
                    server: None,
                    error: Some(e),
                    queues: Vec::new(),
                },
            }
        })
        .collect()
}

fn age(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// The table a person reads at a glance.
pub fn render(servers: &[ServerStatus]) -> String {
    let mut out = String::new();
    for s in servers {
        match (&s.server, &s.error) {
            (_, Some(e)) => {
                let _ = writeln!(out, "[{}] UNREACHABLE: {e}", s.name);
                continue;
            }
            (Some(d), None) => {
                let _ = writeln!(out, "[{}] {d}", s.name);
            }
            (None, None) => {
                let _ = writeln!(out, "[{}]", s.name);
            }
        }
        let width = s
            .queues
            .iter()
            .map(|q| q.queue.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "  {:<width$}  {:>9}  {:>9}  {:>6}  {:>7}  CONSUMERS",
            "QUEUE", "WAITING", "IN FLIGHT", "OLDEST", "DEAD"
        );
        for q in &s.queues {
            let in_flight: u64 = q.consumers.iter().map(|c| c.in_flight).sum();
            let oldest = q.consumers.iter().filter_map(|c| c.oldest_age_secs).max();
            let alive = q.consumers.iter().filter(|c| c.alive).count();
            let gone = q.consumers.len() - alive;
            let mut who = format!("{alive} alive");
            if gone > 0 {
                let _ = write!(who, ", {gone} gone");
            }
            let dead_mark = if q.dead > 0 { " !" } else { "" };
            let _ = writeln!(
                out,
                "  {:<width$}  {:>9}  {:>9}  {:>6}  {:>7}  {who}{dead_mark}",
                q.queue,
                q.length,
                in_flight,
                age(oldest),
                q.dead
            );
            for c in &q.consumers {
                // A worker's requests to the tracker, while it is alive to vouch for them.
                let tracker = match (&c.tracker, c.alive) {
                    (Some(t), true) => format!(
                        "; tracker: {} requests in flight, answers in {}",
                        t.requests_in_flight,
                        t.latency_ms
                            .map_or("(none yet)".into(), |ms| format!("{ms} ms"))
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "      {:<40} {:>6} in flight, oldest {:>4}, {}{tracker}",
                    c.consumer,
                    c.in_flight,
                    age(c.oldest_age_secs),
                    if c.alive {
                        "alive"
                    } else {
                        "GONE (heartbeat expired)"
                    }
                );
            }
        }
    }
    out
}

fn print_once(cfg: &Config, args: &StatusArgs, clear: bool) -> Result<bool, Failure> {
    let servers = collect(cfg, args.embedded);
    let ok = servers.iter().all(|s| s.error.is_none());
    if args.json {
        let doc = serde_json::json!({ "servers": servers });
        print(&format!("{doc}\n"))?;
    } else {
        let clear = if clear { "\x1b[2J\x1b[H" } else { "" };
        print(&format!("{clear}{}", render(&servers)))?;
    }
    Ok(ok)
}

/// `loglines status`. Exit code 1 when a server could not be asked (monitoring can alert).
pub fn run(global: &Global, args: &StatusArgs) -> Result<i32, Failure> {
    let cfg = load_config(global)?;
    let Some(every) = args.watch else {
        return Ok(if print_once(&cfg, args, false)? { 0 } else { 1 });
    };
    let shutdown = Shutdown::on_signals()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    loop {
        print_once(&cfg, args, true)?;
        if shutdown.sleep(Duration::from_secs(every.max(1))) {
            return Ok(0);
        }
    }
}
