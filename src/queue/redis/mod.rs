//! The Redis transport: at-least-once queues on Redis lists, shared by any number of processes
//! on any number of machines.
//!
//! Key names (`Q` is the queue name; `C` a consumer id `host:section:process`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `Q` | list | the queue: producers LPUSH, consumers take from the right |
//! | `Q:inflight:C` | list | what consumer C has taken and not finished, newest at the left |
//! | `Q:alive:C` | string with TTL | C's heartbeat; when it expires C counts as gone |
//! | `Q:since` | hash C → unix time | when C's in-flight list last became non-empty |
//! | `Q:ops` | hash C → operation id | the last commit C applied (makes retries idempotent) |
//! | `Q:dead` | list | dead letters as JSON, oldest at the left |
//! | `Q:producer:T` | string with TTL | the last batch producer T pushed (idempotent retries) |
//!
//! `docs/queues.md` explains the guarantees and how to repair things by hand.

mod link;
mod scripts;

use super::{
    Admin, ConsumerId, ConsumerInfo, DeadLetter, Message, Producer, QResult, QueueError, QueueInfo,
    Transport,
};
use crate::config::{read_pem, PemKind, RedisSettings};
use crate::util::shutdown::Shutdown;
use link::{Fail, Link, COMMAND_TIMEOUT};
use redis::{Client, ClientTlsConfig, Script, TlsCertificates};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Redis 6.2 brought BLMOVE, which the single take relies on.
const MIN_VERSION: (u32, u32) = (6, 2);
/// Batch takes move at most this many messages (below Lua's unpack limit of about 8,000).
pub const MAX_TAKE: usize = 7_500;
/// How often a producer above the high-water mark looks at the queue length again.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(200);
/// Producer batch records live this long: far longer than any reconnect takes.
const PRODUCER_RECORD_TTL: u64 = 3_600;
/// A blocking take wakes at least this often to refresh its heartbeat and notice shutdown.
const MAX_BLOCK: Duration = Duration::from_secs(2);

/// The key names of one queue.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub queue: String,
    pub dead: String,
    pub since: String,
    pub ops: String,
}

impl Keys {
    pub(crate) fn new(queue: &str) -> Self {
        Keys {
            queue: queue.to_string(),
            dead: format!("{queue}:dead"),
            since: format!("{queue}:since"),
            ops: format!("{queue}:ops"),
        }
    }

    pub(crate) fn inflight(&self, consumer: &str) -> String {
        format!("{}:inflight:{consumer}", self.queue)
    }

    pub(crate) fn alive(&self, consumer: &str) -> String {
        format!("{}:alive:{consumer}", self.queue)
    }

    /// SCAN pattern for every in-flight list of this queue.
    fn inflight_pattern(&self) -> String {
        format!("{}:inflight:*", glob_escape(&self.queue))
    }

    fn alive_pattern(&self) -> String {
        format!("{}:alive:*", glob_escape(&self.queue))
    }
}

/// Escapes SCAN/KEYS glob characters so a queue name matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

struct Scripts {
    take: Script,
    commit: Script,
    recover: Script,
    requeue_dead: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| Scripts {
        take: Script::new(scripts::TAKE),
        commit: Script::new(scripts::COMMIT),
        recover: Script::new(scripts::RECOVER),
        requeue_dead: Script::new(scripts::REQUEUE_DEAD),
    })
}

/// A unique-enough token for this process: pid and start time. Producers and consumers add a
/// counter, so operation ids never repeat across restarts.
fn process_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{:x}-{n}", std::process::id(), nanos)
}

/// The Redis transport for one `[redis]` section.
#[derive(Clone)]
pub struct RedisTransport {
    client: Client,
    settings: RedisSettings,
    shutdown: Shutdown,
    version: String,
}

impl RedisTransport {
    /// Connects once (failing fast with a message that says what to check), verifies that the
    /// server is Redis 6.2 or later, and returns a transport whose handles reconnect by
    /// themselves afterwards.
    pub fn connect(settings: &RedisSettings, shutdown: Shutdown) -> QResult<RedisTransport> {
        Self::connect_within(settings, shutdown, link::CONNECT_TIMEOUT)
    }

    /// [`connect`](Self::connect) with a chosen timeout (`loglines check` keeps it short).
    pub fn connect_within(
        settings: &RedisSettings,
        shutdown: Shutdown,
        timeout: Duration,
    ) -> QResult<RedisTransport> {
        let label = settings.display();
        let client = client(settings)?;
        let mut conn = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| link::connect_error(&label, &e))?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| link::connect_error(&label, &e))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .map_err(|e| match link::tls_problem(&label, &e) {
                Some(tls) => tls,
                None => QueueError::Unavailable(format!("{label} did not answer INFO: {e}")),
            })?;
        let version = parse_version(&info).ok_or_else(|| {
            QueueError::Server(format!(
                "{label} did not report redis_version in INFO; is it a Redis server?"
            ))
        })?;
        check_version(&label, &version)?;
        Ok(RedisTransport {
            client,
            settings: settings.clone(),
            shutdown,
            version,
        })
    }

    /// The server's version, as reported at connect time.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn link(&self, persistent: bool) -> Link {
        Link::new(
            self.client.clone(),
            self.settings.display(),
            self.shutdown.clone(),
            persistent,
        )
    }

    /// A consumer with the concrete type (tests use it to read its internal state).
    pub fn redis_consumer(&self, queue: &str, id: &ConsumerId) -> QResult<RedisConsumer> {
        RedisConsumer::open(self, queue, id)
    }
}

/// Builds the redis client for `settings`. Everything that talks to Redis gets its client from
/// here (through [`RedisTransport`]), so producers, consumers, `status`, `check` and the queue
/// commands all trust the same CA and present the same client certificate.
///
/// With TLS, the certificate files are read now, once per transport: the handles that reconnect
/// later reuse the client, so a file replaced on disk takes effect at the next restart, and a
/// file deleted under a running process does not break its reconnects.
pub fn client(settings: &RedisSettings) -> QResult<Client> {
    let label = settings.display();
    let invalid = |e: redis::RedisError| {
        QueueError::Server(format!("invalid redis settings for {label}: {e}"))
    };
    if !settings.tls {
        return Client::open(settings.url()).map_err(invalid);
    }
    // rustls needs a process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Validation checked these files, but they may have changed since (or the settings were
    // built in code): the same check again, naming the key to fix.
    let read = |key: &str, path: &std::path::Path, kind: PemKind| {
        read_pem(path, kind).map_err(|why| {
            QueueError::Io(format!(
                "{key} of [{}]: {why}; fix the file or the key in the configuration",
                settings.name
            ))
        })
    };
    let root_cert = match &settings.tls_ca_file {
        Some(p) => Some(read("tls_ca_file", p, PemKind::Certificates)?),
        // None keeps the crate's default trust store: the public web roots.
        None => None,
    };
    let client_tls = match &settings.tls_client {
        Some(files) => Some(ClientTlsConfig {
            client_cert: read("tls_cert_file", &files.cert_file, PemKind::Certificates)?,
            client_key: read("tls_key_file", &files.key_file, PemKind::PrivateKey)?,
        }),
        None => None,
    };
    Client::build_with_tls(
        settings.url(),
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(invalid)
}

fn parse_version(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
}

fn check_version(label: &str, version: &str) -> QResult<()> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        return Err(QueueError::Server(format!(
            "{label} runs redis {version}, but loglines needs redis {}.{} or later (for BLMOVE); upgrade the server",
            MIN_VERSION.0, MIN_VERSION.1
        )));
    }
    Ok(())
}

impl Transport for RedisTransport {
    fn producer(&self, queue: &str) -> QResult<Box<dyn Producer>> {
        Ok(Box::new(RedisProducer {
            link: self.link(true),
            queue: queue.to_string(),
            record: format!("{queue}:producer:{}", process_token()),
            seq: 0,
            max_len: self.settings.max_queue_length,
            last_len: 0,
        }))
    }

    fn consumer(&self, queue: &str, id: &ConsumerId) -> QResult<Box<dyn super::Consumer>> {
        Ok(Box::new(RedisConsumer::open(self, queue, id)?))
    }

    fn admin(&self) -> QResult<Box<dyn Admin>> {
        Ok(Box::new(RedisAdmin {
            link: self.link(false),
            version: self.version.clone(),
            label: self.settings.display(),
        }))
    }
}

/// Waits while `queue` holds more than `max` messages, saying so once. `beat` runs on every
/// look (a consumer refreshes its heartbeat there).
fn wait_for_room(
    link: &mut Link,
    queue: &str,
    max: u64,
    mut beat: impl FnMut(&mut Link) -> QResult<()>,
) -> QResult<()> {
    let mut since: Option<Instant> = None;
    loop {
        let len: u64 = link.idempotent(|c| redis::cmd("LLEN").arg(queue).query(c))?;
        if len <= max {
            if let Some(t) = since {
                log::info!(
                    "queue `{queue}` is below max_queue_length again ({len} messages); resuming after {:.1}s",
                    t.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if since.is_none() {
            since = Some(Instant::now());
            log::warn!(
                "queue `{queue}` on {} holds {len} messages, more than max_queue_length {max}; waiting for its consumers",
                link.label()
            );
        }
        beat(link)?;
        if link.shutdown().sleep(BACKPRESSURE_POLL) {
            return Err(QueueError::ShuttingDown);
        }
    }
}

/// Pushes batches with one LPUSH each.
pub struct RedisProducer {
    link: Link,
    queue: String,
    /// Key recording the last applied batch number of this producer.
    record: String,
    seq: u64,
    max_len: u64,
    /// Queue length after the last push: above `max_len`, the next push waits first.
    last_len: u64,
}

impl RedisProducer {
    /// Runs `cmd` (an LPUSH or RPUSH of a batch) once, whatever happens to the connection: it
    /// goes in a MULTI/EXEC with a record of its batch number, and after a lost answer the
    /// record tells whether it ran. Returns the list length after the push.
    fn store(&mut self, cmd: redis::Cmd) -> QResult<u64> {
        self.seq += 1;
        let seq = self.seq.to_string();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .add_command(cmd)
            .cmd("SET")
            .arg(&self.record)
            .arg(&seq)
            .arg("EX")
            .arg(PRODUCER_RECORD_TTL)
            .ignore();
        let mut in_doubt = false;
        loop {
            if in_doubt {
                let rec: Option<String> = match self.link.attempt(COMMAND_TIMEOUT, |c| {
                    redis::cmd("GET").arg(&self.record).query(c)
                }) {
                    Ok(v) => v,
                    Err(Fail::Lost) => continue,
                    Err(Fail::Err(e)) => return Err(e),
                };
                if rec.as_deref() == Some(seq.as_str()) {
                    // Stored before the connection broke; the length is not known, so the
                    // next push checks the high-water mark again.
                    return Ok(self.max_len.saturating_add(1));
                }
            }
            match self
                .link
                .attempt(COMMAND_TIMEOUT, |c| pipe.query::<(u64,)>(c))
            {
                Ok((len,)) => return Ok(len),
                Err(Fail::Lost) => in_doubt = true,
                Err(Fail::Err(e)) => return Err(e),
            }
        }
    }
}

impl Producer for RedisProducer {
    fn push(&mut self, batch: Vec<Message>) -> QResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.last_len > self.max_len {
            wait_for_room(&mut self.link, &self.queue, self.max_len, |_| Ok(()))?;
        }
        let mut cmd = redis::cmd("LPUSH");
        cmd.arg(&self.queue)
            .arg(batch.iter().map(|m| m.body.as_str()).collect::<Vec<_>>());
        self.last_len = self.store(cmd)?;
        Ok(())
    }

    fn dead_letter(&mut self, item: Message, reason: &str, section: &str) -> QResult<()> {
        let json = encode_dead_letter(&DeadLetter::from_producer(item.body, reason, section))?;
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(Keys::new(&self.queue).dead).arg(json);
        self.store(cmd).map(|_| ())
    }

    fn tracks_completion(&self) -> bool {
        false
    }
}

/// What a commit does besides removing acked messages from the in-flight list.
enum Commit {
    Ack,
    /// Push to other queues (producer end) in one step with the ack.
    Forward(Vec<(String, Vec<String>)>),
    /// Back to the consumer end of this queue, in the order given (first is taken next).
    Requeue,
    /// To the dead-letter list, with this reason.
    Dead(String),
}

/// A consumer of one queue with its own in-flight list.
///
/// It keeps a local account of what it holds: `delivered` (handed to the caller, still in the
/// in-flight list) and `pending` (in the list from before a restart or a lost connection, not
/// yet handed out). The account matches the list whenever the heartbeat is alive and the
/// connection unbroken; after either event it is rebuilt from the list ([`Self::resync`]).
pub struct RedisConsumer {
    link: Link,
    name: String,
    section: String,
    keys: Keys,
    inflight: String,
    alive: String,
    alive_value: String,
    ttl: u64,
    max_len: u64,
    delivered: HashMap<String, usize>,
    delivered_len: usize,
    pending: VecDeque<String>,
    last_scan: Option<Instant>,
    op_prefix: String,
    op_seq: u64,
}

impl RedisConsumer {
    fn open(t: &RedisTransport, queue: &str, id: &ConsumerId) -> QResult<RedisConsumer> {
        let keys = Keys::new(queue);
        let name = id.to_string();
        let mut c = RedisConsumer {
            link: t.link(true),
            inflight: keys.inflight(&name),
            alive: keys.alive(&name),
            alive_value: format!("pid {} since {}", std::process::id(), now_secs()),
            name,
            section: id.section.clone(),
            keys,
            ttl: t.settings.heartbeat_ttl.max(1),
            max_len: t.settings.max_queue_length,
            delivered: HashMap::new(),
            delivered_len: 0,
            pending: VecDeque::new(),
            last_scan: None,
            op_prefix: process_token(),
            op_seq: 0,
        };
        // Alive first, so nobody recovers our list while we read it.
        c.set_alive()?;
        c.resync()?;
        if !c.pending.is_empty() {
            log::info!(
                "{}: {} messages were in flight when this consumer last stopped; they come first",
                c.inflight,
                c.pending.len()
            );
        }
        c.maybe_recover()?;
        Ok(c)
    }

    /// Messages handed out and not yet acked (tests).
    pub fn delivered_len(&self) -> usize {
        self.delivered_len
    }

    /// Messages from an earlier run not yet handed out again (tests).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn set_alive(&mut self) -> QResult<()> {
        let (key, val, ttl) = (&self.alive, &self.alive_value, self.ttl);
        self.link.idempotent(|c| {
            redis::cmd("SET")
                .arg(key)
                .arg(val)
                .arg("EX")
                .arg(ttl)
                .query::<()>(c)
        })
    }

    /// Refreshes the heartbeat; if it had expired, our list may have been given back to the
    /// queue by another consumer, so the local account is rebuilt first.
    fn beat(&mut self) -> QResult<()> {
        if !refresh_heartbeat(&mut self.link, &self.alive, &self.alive_value, self.ttl)? {
            self.expired()?;
        }
        Ok(())
    }

    fn expired(&mut self) -> QResult<()> {
        log::warn!(
            "{}: heartbeat expired (no take, ack or heartbeat for over {}s); what this consumer held may have gone back to the queue and be processed again",
            self.name,
            self.ttl
        );
        self.set_alive()?;
        self.resync()
    }

    /// Rebuilds `delivered` and `pending` from the in-flight list: delivered keeps what is
    /// still there; anything else in the list (restart, a take whose answer was lost) becomes
    /// pending, oldest first.
    fn resync(&mut self) -> QResult<()> {
        let key = self.inflight.clone();
        let list: Vec<String> = self
            .link
            .idempotent(|c| redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c))?;
        let mut avail: HashMap<&str, usize> = HashMap::new();
        for item in &list {
            *avail.entry(item.as_str()).or_default() += 1;
        }
        let mut delivered = HashMap::new();
        let mut delivered_len = 0;
        for (item, n) in &self.delivered {
            let a = avail.get_mut(item.as_str()).map(|a| {
                let keep = (*a).min(*n);
                *a -= keep;
                keep
            });
            if let Some(keep) = a.filter(|k| *k > 0) {
                delivered.insert(item.clone(), keep);
                delivered_len += keep;
            }
        }
        let mut pending = VecDeque::new();
        for item in list.iter().rev() {
            if let Some(a) = avail.get_mut(item.as_str()).filter(|a| **a > 0) {
                *a -= 1;
                pending.push_back(item.clone());
            }
        }
        self.delivered = delivered;
        self.delivered_len = delivered_len;
        self.pending = pending;
        Ok(())
    }

    /// At start and then at most once per heartbeat ttl: returns in-flight lists of consumers
    /// whose heartbeat expired to the queue.
    fn maybe_recover(&mut self) -> QResult<()> {
        if self
            .last_scan
            .is_some_and(|t| t.elapsed() < Duration::from_secs(self.ttl))
        {
            return Ok(());
        }
        self.last_scan = Some(Instant::now());
        let pattern = self.keys.inflight_pattern();
        let lists = scan(&mut self.link, &pattern)?;
        let prefix = format!("{}:inflight:", self.keys.queue);
        for list in lists {
            let Some(other) = list.strip_prefix(&prefix) else {
                continue;
            };
            if other == self.name {
                continue;
            }
            let (alive, queue, since) = (
                self.keys.alive(other),
                self.keys.queue.clone(),
                self.keys.since.clone(),
            );
            let moved: i64 = self.link.idempotent(|c| {
                scripts()
                    .recover
                    .key(&list)
                    .key(&alive)
                    .key(&queue)
                    .key(&since)
                    .arg(other)
                    .invoke(c)
            })?;
            if moved > 0 {
                log::warn!(
                    "consumer {other} of queue `{queue}` stopped with {moved} messages in flight (heartbeat expired); returned them to the queue"
                );
            }
        }
        Ok(())
    }

    fn deliver(&mut self, items: impl IntoIterator<Item = String>, out: &mut Vec<Message>) {
        for item in items {
            *self.delivered.entry(item.clone()).or_default() += 1;
            self.delivered_len += 1;
            out.push(Message::new(item));
        }
    }

    /// Runs the take script for up to `max` messages; handles an expired heartbeat.
    fn take_now(&mut self, max: usize, out: &mut Vec<Message>) -> QResult<()> {
        let keys = [
            self.keys.queue.as_str(),
            self.inflight.as_str(),
            self.alive.as_str(),
            self.keys.since.as_str(),
        ];
        let (val, ttl, name) = (&self.alive_value, self.ttl, &self.name);
        let r = self.link.attempt(COMMAND_TIMEOUT, |c| {
            scripts()
                .take
                .key(&keys[..])
                .arg(max.min(MAX_TAKE))
                .arg(ttl)
                .arg(val)
                .arg(name)
                .invoke::<(i64, Vec<String>)>(c)
        });
        match r {
            Ok((1, mut items)) => {
                items.reverse();
                self.deliver(items, out);
                Ok(())
            }
            Ok(_) => {
                self.expired()?;
                self.deliver_pending(out.len() + max, out)
            }
            // The move may have happened with the answer lost: the list tells.
            Err(Fail::Lost) => {
                self.resync()?;
                self.deliver_pending(out.len() + max, out)
            }
            Err(Fail::Err(e)) => Err(e),
        }
    }

    fn deliver_pending(&mut self, max: usize, out: &mut Vec<Message>) -> QResult<()> {
        let n = self.pending.len().min(max.saturating_sub(out.len()));
        let items: Vec<String> = self.pending.drain(..n).collect();
        self.deliver(items, out);
        Ok(())
    }

    /// Blocks up to `block` for one message with BLMOVE.
    fn take_blocking(
        &mut self,
        block: Duration,
        max: usize,
        out: &mut Vec<Message>,
    ) -> QResult<()> {
        let (q, inflight) = (self.keys.queue.clone(), self.inflight.clone());
        let secs = block.as_secs_f64().max(0.01);
        let r = self.link.attempt(COMMAND_TIMEOUT + block, |c| {
            redis::cmd("BLMOVE")
                .arg(&q)
                .arg(&inflight)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(format!("{secs:.3}"))
                .query::<Option<String>>(c)
        });
        match r {
            Ok(Some(item)) => {
                self.deliver([item], out);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(Fail::Lost) => {
                self.resync()?;
                self.deliver_pending(max, out)
            }
            Err(Fail::Err(e)) => Err(e),
        }
    }

    fn next_op(&mut self) -> String {
        self.op_seq += 1;
        format!("{}-{}", self.op_prefix, self.op_seq)
    }

    /// The acked items that this consumer still holds (all of them unless its list was
    /// recovered by another consumer), and whether that is everything it holds.
    fn present(&self, done: &[String]) -> (Vec<String>, bool) {
        let mut left = self.delivered.clone();
        let mut present = Vec::with_capacity(done.len());
        for d in done {
            if let Some(n) = left.get_mut(d).filter(|n| **n > 0) {
                *n -= 1;
                present.push(d.clone());
            }
        }
        let all = present.len() == self.delivered_len && self.pending.is_empty();
        (present, all)
    }

    fn forget(&mut self, acked: &[String]) {
        for a in acked {
            if let Some(n) = self.delivered.get_mut(a) {
                *n -= 1;
                self.delivered_len -= 1;
                if *n == 0 {
                    self.delivered.remove(a);
                }
            }
        }
    }

    /// Removes `done` from the in-flight list and does `what`, atomically and at most once.
    fn commit(&mut self, done: Vec<String>, what: Commit) -> QResult<()> {
        if let Commit::Forward(out) = &what {
            for (q, items) in out {
                if !items.is_empty() {
                    self.wait_for_room(q)?;
                }
            }
        }
        let op = self.next_op();
        let mut resynced = false;
        loop {
            let (present, all) = self.present(&done);
            let mut dests: Vec<(String, &'static str, Vec<String>)> = Vec::new();
            match &what {
                Commit::Ack => {}
                Commit::Forward(out) if present.len() == done.len() => {
                    for (q, items) in out {
                        if !items.is_empty() {
                            dests.push((q.clone(), "L", items.clone()));
                        }
                    }
                }
                Commit::Forward(_) => {
                    // Part of the batch went back to the queue when our heartbeat expired and
                    // will be processed again; forwarding now would fan it out twice. Return
                    // the rest too, so the whole batch is redone once.
                    log::warn!(
                        "{}: {} of {} messages being forwarded were returned to the queue meanwhile; returning the rest too instead of forwarding",
                        self.name,
                        done.len() - present.len(),
                        done.len()
                    );
                    dests.push((self.keys.queue.clone(), "R", rev(&present)));
                }
                Commit::Requeue => dests.push((self.keys.queue.clone(), "R", rev(&present))),
                Commit::Dead(json) if !present.is_empty() => {
                    dests.push((self.keys.dead.clone(), "R", vec![json.clone()]))
                }
                Commit::Dead(_) => {}
            }
            dests.retain(|(_, _, items)| !items.is_empty());
            if present.is_empty() && dests.is_empty() {
                return Ok(());
            }
            let r = self.run_commit(&op, &present, all, &dests);
            match r {
                Ok(1) | Ok(2) => {
                    self.forget(&present);
                    return Ok(());
                }
                Ok(-1) => self.expired()?,
                Ok(code) => {
                    if resynced {
                        return Err(QueueError::Server(format!(
                            "in-flight list {} changes under this consumer (code {code}): another process uses the same consumer id {}; give each process its own host name or process number",
                            self.inflight, self.name
                        )));
                    }
                    resynced = true;
                    self.resync()?;
                }
                // Retried with the same operation id: applied at most once.
                Err(Fail::Lost) => {}
                Err(Fail::Err(e)) => return Err(e),
            }
        }
    }

    fn run_commit(
        &mut self,
        op: &str,
        present: &[String],
        all: bool,
        dests: &[(String, &'static str, Vec<String>)],
    ) -> Result<i64, Fail> {
        let mut inv = scripts().commit.prepare_invoke();
        inv.key(&self.inflight)
            .key(&self.alive)
            .key(&self.keys.since)
            .key(&self.keys.ops);
        for (q, _, _) in dests {
            inv.key(q);
        }
        inv.arg(&self.name)
            .arg(op)
            .arg(self.ttl)
            .arg(&self.alive_value);
        if all {
            inv.arg("all").arg(self.delivered_len).arg(0);
        } else {
            inv.arg("some").arg(0).arg(present.len()).arg(present);
        }
        for (_, dir, items) in dests {
            inv.arg(*dir).arg(items.len()).arg(items);
        }
        self.link.attempt(COMMAND_TIMEOUT, |c| inv.invoke::<i64>(c))
    }

    fn wait_for_room(&mut self, queue: &str) -> QResult<()> {
        let (alive, val, ttl) = (&self.alive, &self.alive_value, self.ttl);
        let mut expired = false;
        wait_for_room(&mut self.link, queue, self.max_len, |link| {
            expired |= !refresh_heartbeat(link, alive, val, ttl)?;
            Ok(())
        })?;
        if expired {
            self.expired()?;
        }
        Ok(())
    }
}

/// Extends a consumer's heartbeat key by `ttl` seconds if it still exists (`SET XX`); false if
/// it had expired, when other consumers may already have taken back what it held.
fn refresh_heartbeat(link: &mut Link, key: &str, val: &str, ttl: u64) -> QResult<bool> {
    let ok: Option<String> = link.idempotent(|c| {
        redis::cmd("SET")
            .arg(key)
            .arg(val)
            .arg("XX")
            .arg("EX")
            .arg(ttl)
            .query(c)
    })?;
    Ok(ok.is_some())
}

/// Reversed copy: RPUSH of the reversed list leaves the first item at the right end.
fn rev(items: &[String]) -> Vec<String> {
    items.iter().rev().cloned().collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn scan(link: &mut Link, pattern: &str) -> QResult<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = link.idempotent(|c| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(c)
        })?;
        out.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl super::Consumer for RedisConsumer {
    fn take(&mut self, max: usize, timeout: Duration) -> QResult<Vec<Message>> {
        let max = max.clamp(1, MAX_TAKE);
        let mut out = Vec::new();
        self.maybe_recover()?;
        if !self.pending.is_empty() {
            self.beat()?;
            self.deliver_pending(max, &mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
        }
        let deadline = Instant::now() + timeout;
        self.take_now(max, &mut out)?;
        while out.is_empty() {
            let now = Instant::now();
            if now >= deadline || self.link.shutdown().is_set() {
                return Ok(out);
            }
            let block = (deadline - now)
                .min(MAX_BLOCK)
                .min(Duration::from_secs(self.ttl) / 3);
            self.take_blocking(block, max, &mut out)?;
            if out.is_empty() {
                self.maybe_recover()?;
                self.beat()?;
                // Recovered lists (ours after an expiry, or others') may be waiting.
                self.deliver_pending(max, &mut out)?;
            } else if out.len() < max {
                // One came: take what else is there without blocking (and mark the list's
                // start time, which BLMOVE does not).
                self.take_now(max - out.len(), &mut out)?;
            } else {
                self.take_now(0, &mut out)?;
            }
        }
        Ok(out)
    }

    fn ack(&mut self, done: Vec<Message>) -> QResult<()> {
        self.commit(done.into_iter().map(|m| m.body).collect(), Commit::Ack)
    }

    fn forward(&mut self, done: Vec<Message>, out: Vec<(String, Vec<Message>)>) -> QResult<()> {
        let out = out
            .into_iter()
            .map(|(q, ms)| (q, ms.into_iter().map(|m| m.body).collect()))
            .collect();
        self.commit(
            done.into_iter().map(|m| m.body).collect(),
            Commit::Forward(out),
        )
    }

    fn requeue(&mut self, items: Vec<Message>) -> QResult<()> {
        self.commit(items.into_iter().map(|m| m.body).collect(), Commit::Requeue)
    }

    fn dead_letter(&mut self, item: Message, reason: &str) -> QResult<()> {
        let letter =
            DeadLetter::filed_now(item.body.clone(), reason, &self.section, self.name.clone());
        let json = encode_dead_letter(&letter)?;
        self.commit(vec![item.body], Commit::Dead(json))
    }

    fn heartbeat(&mut self) -> QResult<()> {
        self.beat()?;
        self.maybe_recover()
    }
}

/// Inspection and repair; one attempt per command (no reconnect loop), for the commands.
pub struct RedisAdmin {
    link: Link,
    version: String,
    label: String,
}

impl RedisAdmin {
    fn once<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> QResult<T> {
        match self.link.attempt(COMMAND_TIMEOUT, f) {
            Ok(v) => Ok(v),
            Err(Fail::Lost) => Err(QueueError::Unavailable(format!(
                "lost the connection to {}",
                self.label
            ))),
            Err(Fail::Err(e)) => Err(e),
        }
    }

    fn scan_suffixes(&mut self, pattern: &str, prefix: &str) -> QResult<Vec<String>> {
        Ok(scan(&mut self.link, pattern)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect())
    }
}

impl Admin for RedisAdmin {
    fn info(&mut self, queue: &str) -> QResult<QueueInfo> {
        let keys = Keys::new(queue);
        let mut names =
            self.scan_suffixes(&keys.inflight_pattern(), &format!("{queue}:inflight:"))?;
        let alive = self.scan_suffixes(&keys.alive_pattern(), &format!("{queue}:alive:"))?;
        names.extend(alive.iter().cloned());
        names.sort();
        names.dedup();
        let mut pipe = redis::pipe();
        pipe.cmd("LLEN").arg(&keys.queue);
        pipe.cmd("LLEN").arg(&keys.dead);
        pipe.cmd("TIME");
        pipe.cmd("HGETALL").arg(&keys.since);
        for n in &names {
            pipe.cmd("LLEN").arg(keys.inflight(n));
        }
        let v: Vec<redis::Value> = self.once(|c| pipe.query(c))?;
        let conv = |v: &redis::Value| -> QResult<u64> {
            redis::from_redis_value_ref(v)
                .map_err(|e| QueueError::Server(format!("unexpected answer from redis: {e}")))
        };
        let length = conv(&v[0])?;
        let dead = conv(&v[1])?;
        let (now, _): (u64, u64) = redis::from_redis_value_ref(&v[2])
            .map_err(|e| QueueError::Server(format!("unexpected TIME answer: {e}")))?;
        let since: HashMap<String, u64> = redis::from_redis_value_ref(&v[3]).unwrap_or_default();
        let mut consumers = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let in_flight = conv(&v[4 + i])?;
            consumers.push(ConsumerInfo {
                consumer: n.clone(),
                in_flight,
                oldest_age_secs: since
                    .get(n)
                    .filter(|_| in_flight > 0)
                    .map(|s| now.saturating_sub(*s)),
                alive: alive.contains(n),
            });
        }
        Ok(QueueInfo {
            queue: queue.to_string(),
            length,
            dead,
            consumers,
        })
    }

    fn peek(&mut self, queue: &str, n: usize) -> QResult<Vec<String>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut v: Vec<String> = self.once(|c| {
            redis::cmd("LRANGE")
                .arg(queue)
                .arg(-(n as i64))
                .arg(-1)
                .query(c)
        })?;
        v.reverse();
        Ok(v)
    }

    fn dead_letters(&mut self, queue: &str, n: usize) -> QResult<Vec<DeadLetter>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let key = Keys::new(queue).dead;
        let raw: Vec<String> = self.once(|c| {
            redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(n as i64 - 1)
                .query(c)
        })?;
        Ok(raw.iter().map(|r| parse_dead_letter(r)).collect())
    }

    fn requeue_dead(&mut self, queue: &str, reason: Option<&str>) -> QResult<u64> {
        let keys = Keys::new(queue);
        self.once(|c| {
            scripts()
                .requeue_dead
                .key(&keys.dead)
                .key(&keys.queue)
                .arg(reason.unwrap_or(""))
                .invoke(c)
        })
    }

    fn purge(&mut self, queue: &str) -> QResult<u64> {
        let (n, _): (u64, u64) = self.once(|c| {
            redis::pipe()
                .atomic()
                .cmd("LLEN")
                .arg(queue)
                .cmd("DEL")
                .arg(queue)
                .query(c)
        })?;
        Ok(n)
    }

    fn describe(&mut self) -> QResult<String> {
        Ok(format!("redis {} at {}", self.version, self.label))
    }
}

/// A dead letter as stored in the `Q:dead` list.
fn encode_dead_letter(letter: &DeadLetter) -> QResult<String> {
    serde_json::to_string(letter)
        .map_err(|e| QueueError::Server(format!("cannot encode a dead letter: {e}")))
}

/// A stored dead letter; an entry that is not our JSON is shown whole as the message.
pub(crate) fn parse_dead_letter(raw: &str) -> DeadLetter {
    serde_json::from_str(raw).unwrap_or_else(|_| DeadLetter {
        message: raw.to_string(),
        reason: "(not a loglines dead letter)".into(),
        section: String::new(),
        consumer: String::new(),
        at: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_check_names_the_version_found() {
        assert!(check_version("x", "6.2.0").is_ok());
        assert!(check_version("x", "7.0.15").is_ok());
        let e = check_version("redis://h:1 db 0", "5.0.7")
            .unwrap_err()
            .to_string();
        assert!(e.contains("5.0.7") && e.contains("6.2"), "{e}");
        assert_eq!(
            parse_version("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"),
            Some("7.0.15".into())
        );
    }

    #[test]
    fn glob_characters_in_queue_names_are_escaped() {
        assert_eq!(Keys::new("a*b").inflight_pattern(), "a\\*b:inflight:*");
    }
}
