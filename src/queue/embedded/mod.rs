//! The embedded transport: queues as bounded crossbeam channels inside one process
//! (`loglines run`), with the same take/ack/requeue/dead-letter semantics as Redis.
//!
//! Durability comes from [`Lineage`](super::Lineage), not from the queues: the watcher's
//! checkpoint moves past a line only when every message carrying its lineage is finished, so a
//! crash of the whole process loses nothing (the lines are read again). Within the process:
//! - every queue is bounded, so a slow consumer slows its producer instead of filling memory;
//! - a consumer keeps a copy of what it took; acked copies are dropped, and a consumer dropped
//!   without acking (its thread panicked) puts its messages back at the front of the queue;
//! - messages put back (requeue, a dropped consumer) sit in a small front list that consumers
//!   empty before the channel, so they are taken next and in order;
//! - dead letters are appended as JSON lines to `<dir>/<queue>.dead.jsonl` (flushed and synced),
//!   where `loglines queue ... --embedded` reads and requeues them. Requeued dead letters for a
//!   queue this process does not have go to `<dir>/<queue>.requeue.jsonl`, which the transport
//!   loads when it opens that queue and deletes once every message from it is finished.

mod files;

use super::{
    Admin, Consumer, ConsumerId, ConsumerInfo, DeadLetter, Lineage, Message, Producer, QResult,
    QueueError, QueueInfo, Transport,
};
use crate::util::shutdown::Shutdown;
use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};
use files::{append_dead, io_err, load_requeued, read_lines, write_lines, FileLock};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Blocking channel operations wake this often to notice shutdown.
const POLL: Duration = Duration::from_millis(250);

/// What travels through a channel: a message, or a nudge telling a blocked consumer to look at
/// the front list (where put-back messages wait).
enum Item {
    Msg(Message),
    Wake,
}

/// In-process queues by name.
#[derive(Clone)]
pub struct EmbeddedTransport {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    dir: PathBuf,
    shutdown: Shutdown,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

struct Queue {
    name: String,
    tx: Sender<Item>,
    rx: Receiver<Item>,
    /// Put-back messages, taken before anything in the channel.
    front: Mutex<VecDeque<Message>>,
    /// Wake-ups in the channel, so its length can be told without them.
    wakes: AtomicI64,
    /// Producers waiting for room in the full channel.
    waiting: AtomicUsize,
    /// Consumers waiting for a message in the empty queue.
    takers: AtomicUsize,
    /// Live consumers by name (weak: a dropped consumer disappears by itself).
    consumers: Mutex<Vec<(String, WeakHolding)>>,
}

/// What a consumer holds, shared with its queue's registry so `info` can count it.
type Holding = Arc<Mutex<Vec<Held>>>;
type WeakHolding = Weak<Mutex<Vec<Held>>>;

/// A message a consumer has taken and not finished.
struct Held {
    msg: Message,
    at: Instant,
}

/// Counts one in a gauge for as long as it lives, however the scope is left.
struct Decrement<'a>(&'a AtomicUsize);

impl<'a> Decrement<'a> {
    fn count(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::SeqCst);
        Decrement(gauge)
    }
}

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks, ignoring poisoning: the data under these locks stays consistent at every step, and a
/// panicking consumer thread must not stop the others.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EmbeddedTransport {
    /// Queues of at most `capacity_per_queue` messages; dead letters in `dead_letter_dir`.
    pub fn new(capacity_per_queue: usize, dead_letter_dir: PathBuf) -> Self {
        Self::with_shutdown(capacity_per_queue, dead_letter_dir, Shutdown::new())
    }

    /// The same, with a shutdown flag that makes blocked pushes and takes give up.
    pub fn with_shutdown(capacity_per_queue: usize, dead_letter_dir: PathBuf, s: Shutdown) -> Self {
        EmbeddedTransport {
            inner: Arc::new(Inner {
                capacity: capacity_per_queue.max(1),
                dir: dead_letter_dir,
                shutdown: s,
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Messages waiting in `queue` (not counting in-flight ones); 0 for an unknown queue.
    pub fn len(&self, queue: &str) -> usize {
        lock(&self.inner.queues)
            .get(queue)
            .map(|q| q.len())
            .unwrap_or(0)
    }

    /// Producers waiting for room in `queue`, which is full.
    pub fn waiting_producers(&self, queue: &str) -> usize {
        lock(&self.inner.queues)
            .get(queue)
            .map(|q| q.waiting.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Consumers waiting for a message in `queue`, which is empty.
    pub fn waiting_consumers(&self, queue: &str) -> usize {
        lock(&self.inner.queues)
            .get(queue)
            .map(|q| q.takers.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// True when `queue` has nothing waiting.
    pub fn is_empty(&self, queue: &str) -> bool {
        self.len(queue) == 0
    }
}

impl Inner {
    fn queue(&self, name: &str) -> QResult<Arc<Queue>> {
        let mut map = lock(&self.queues);
        if let Some(q) = map.get(name) {
            return Ok(q.clone());
        }
        let (tx, rx) = bounded(self.capacity);
        let q = Arc::new(Queue {
            name: name.to_string(),
            tx,
            rx,
            front: Mutex::new(VecDeque::new()),
            wakes: AtomicI64::new(0),
            waiting: AtomicUsize::new(0),
            takers: AtomicUsize::new(0),
            consumers: Mutex::new(Vec::new()),
        });
        let loaded = load_requeued(&self.dir, name)?;
        if !loaded.is_empty() {
            log::info!(
                "queue `{name}`: {} requeued dead letters loaded from {}",
                loaded.len(),
                self.dir.display()
            );
            lock(&q.front).extend(loaded);
        }
        map.insert(name.to_string(), q.clone());
        Ok(q)
    }

    fn live(&self, name: &str) -> Option<Arc<Queue>> {
        lock(&self.queues).get(name).cloned()
    }

    fn dead_path(&self, queue: &str) -> PathBuf {
        self.dir.join(format!("{queue}.dead.jsonl"))
    }

    fn requeue_path(&self, queue: &str) -> PathBuf {
        self.dir.join(format!("{queue}.requeue.jsonl"))
    }
}

impl Queue {
    fn len(&self) -> usize {
        let in_channel = self.rx.len() as i64 - self.wakes.load(Ordering::Relaxed);
        in_channel.max(0) as usize + lock(&self.front).len()
    }

    /// Sends one message, waiting while the channel is full.
    fn send(&self, msg: Message, shutdown: &Shutdown) -> QResult<()> {
        let mut item = match self.tx.try_send(Item::Msg(msg)) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(back)) => back,
            Err(TrySendError::Disconnected(_)) => {
                return Err(QueueError::Io(format!("queue `{}` is closed", self.name)))
            }
        };
        let _waiting = Decrement::count(&self.waiting);
        loop {
            match self.tx.send_timeout(item, POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(back)) => {
                    if shutdown.is_set() {
                        return Err(QueueError::ShuttingDown);
                    }
                    item = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    // Unreachable: the queue holds its own receiver.
                    return Err(QueueError::Io(format!("queue `{}` is closed", self.name)));
                }
            }
        }
    }

    /// Puts messages back so they are taken next, first one first.
    fn put_back(&self, items: Vec<Message>) {
        if items.is_empty() {
            return;
        }
        {
            let mut front = lock(&self.front);
            for m in items.into_iter().rev() {
                front.push_front(m);
            }
        }
        self.wake();
    }

    /// Wakes one blocked consumer; if the channel is full nobody is blocked on it.
    fn wake(&self) {
        if self.tx.try_send(Item::Wake).is_ok() {
            self.wakes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Receives one item without blocking past `timeout`; wake-ups are counted off.
    fn recv(&self, timeout: Duration) -> Result<Option<Message>, RecvTimeoutError> {
        match self.rx.recv_timeout(timeout)? {
            Item::Msg(m) => Ok(Some(m)),
            Item::Wake => {
                self.wakes.fetch_sub(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Moves up to `max - out.len()` messages into `out` without blocking, front list first.
    fn fill(&self, max: usize, out: &mut Vec<Message>) {
        {
            let mut front = lock(&self.front);
            while out.len() < max {
                match front.pop_front() {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
        }
        while out.len() < max {
            match self.recv(Duration::ZERO) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => continue,
                Err(_) => break,
            }
        }
    }

    fn drain(&self) -> u64 {
        let mut n = 0;
        n += lock(&self.front).drain(..).count() as u64;
        while let Ok(item) = self.recv(Duration::ZERO) {
            n += u64::from(item.is_some());
        }
        n
    }
}

impl Transport for EmbeddedTransport {
    fn producer(&self, queue: &str) -> QResult<Box<dyn Producer>> {
        Ok(Box::new(EmbeddedProducer {
            q: self.inner.queue(queue)?,
            dir: self.inner.dir.clone(),
            shutdown: self.inner.shutdown.clone(),
        }))
    }

    fn consumer(&self, queue: &str, id: &ConsumerId) -> QResult<Box<dyn Consumer>> {
        Ok(Box::new(self.embedded_consumer(queue, id)?))
    }

    fn admin(&self) -> QResult<Box<dyn Admin>> {
        Ok(Box::new(EmbeddedAdmin {
            inner: self.inner.clone(),
        }))
    }
}

impl EmbeddedTransport {
    /// A consumer with the concrete type (tests read its in-flight count).
    pub fn embedded_consumer(&self, queue: &str, id: &ConsumerId) -> QResult<EmbeddedConsumer> {
        let q = self.inner.queue(queue)?;
        let held: Holding = Arc::new(Mutex::new(Vec::new()));
        let name = id.to_string();
        lock(&q.consumers).push((name.clone(), Arc::downgrade(&held)));
        Ok(EmbeddedConsumer {
            q,
            inner: self.inner.clone(),
            name,
            section: id.section.clone(),
            held,
        })
    }
}

/// Pushes into one in-process queue.
pub struct EmbeddedProducer {
    q: Arc<Queue>,
    dir: PathBuf,
    shutdown: Shutdown,
}

impl Producer for EmbeddedProducer {
    fn push(&mut self, batch: Vec<Message>) -> QResult<()> {
        for m in batch {
            self.q.send(m, &self.shutdown)?;
        }
        Ok(())
    }

    fn dead_letter(&mut self, item: Message, reason: &str, section: &str) -> QResult<()> {
        let letter = DeadLetter::from_producer(item.body.clone(), reason, section);
        append_dead(&self.dir, &self.q.name, &letter)?;
        // Filed for good: dropping the message now completes its line.
        drop(item);
        Ok(())
    }

    fn tracks_completion(&self) -> bool {
        true
    }
}

/// Takes from one in-process queue; dropping it returns what it holds.
pub struct EmbeddedConsumer {
    q: Arc<Queue>,
    inner: Arc<Inner>,
    name: String,
    section: String,
    held: Holding,
}

impl EmbeddedConsumer {
    /// Messages taken and not yet finished.
    pub fn in_flight(&self) -> usize {
        lock(&self.held).len()
    }

    /// Removes the held copies matching `items` (same text, preferring the same lineage, so
    /// two identical lines from the log stay apart) and returns the matched ones.
    fn release(&self, items: Vec<Message>) -> Vec<Message> {
        let mut held = lock(&self.held);
        let mut taken = vec![false; held.len()];
        let mut matched = Vec::with_capacity(items.len());
        // Acks usually come in the order of the takes: start each search after the last match.
        let mut hint = 0;
        for m in items {
            let n = held.len();
            let find = |pred: &dyn Fn(&Held) -> bool| {
                (0..n)
                    .map(|k| (hint + k) % n)
                    .find(|&i| !taken[i] && pred(&held[i]))
            };
            let i = find(&|h: &Held| h.msg.body == m.body && h.msg.lineage.same_as(&m.lineage))
                .or_else(|| find(&|h: &Held| h.msg.body == m.body));
            if let Some(i) = i {
                taken[i] = true;
                hint = i + 1;
                matched.push(m);
            }
        }
        let mut i = 0;
        held.retain(|_| {
            let keep = !taken[i];
            i += 1;
            keep
        });
        matched
    }
}

impl Consumer for EmbeddedConsumer {
    fn take(&mut self, max: usize, timeout: Duration) -> QResult<Vec<Message>> {
        let max = max.max(1);
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut blocked = None;
        loop {
            self.q.fill(max, &mut out);
            let now = Instant::now();
            if !out.is_empty() || now >= deadline || self.inner.shutdown.is_set() {
                break;
            }
            blocked.get_or_insert_with(|| Decrement::count(&self.q.takers));
            match self.q.recv((deadline - now).min(POLL)) {
                Ok(Some(m)) => out.push(m),
                Ok(None) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let now = Instant::now();
        lock(&self.held).extend(out.iter().map(|m| Held {
            msg: m.clone(),
            at: now,
        }));
        Ok(out)
    }

    fn ack(&mut self, done: Vec<Message>) -> QResult<()> {
        // Dropping the matched messages (and the held copies) releases their lineage.
        drop(self.release(done));
        Ok(())
    }

    fn forward(&mut self, done: Vec<Message>, out: Vec<(String, Vec<Message>)>) -> QResult<()> {
        // Outgoing messages without lineage inherit the batch's, so the watcher's line is done
        // only when every branch of the fan-out is.
        let merged = Lineage::merge(done.iter().map(|m| &m.lineage));
        for (queue, msgs) in out {
            let q = self.inner.queue(&queue)?;
            for mut m in msgs {
                if !m.lineage.is_tracked() {
                    m.lineage = merged.clone();
                }
                // On shutdown midway the batch stays in flight: the process is ending and the
                // watcher re-reads every line whose lineage was not completed.
                q.send(m, &self.inner.shutdown)?;
            }
        }
        drop(merged);
        self.ack(done)
    }

    fn requeue(&mut self, items: Vec<Message>) -> QResult<()> {
        let back = self.release(items);
        self.q.put_back(back);
        Ok(())
    }

    fn dead_letter(&mut self, item: Message, reason: &str) -> QResult<()> {
        let held = lock(&self.held).iter().any(|h| h.msg.body == item.body);
        if !held {
            return Ok(());
        }
        let letter =
            DeadLetter::filed_now(item.body.clone(), reason, &self.section, self.name.clone());
        append_dead(&self.inner.dir, &self.q.name, &letter)?;
        drop(self.release(vec![item]));
        Ok(())
    }

    fn heartbeat(&mut self) -> QResult<()> {
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        let held: Vec<Message> = lock(&self.held).drain(..).map(|h| h.msg).collect();
        if !held.is_empty() {
            log::warn!(
                "consumer {} of queue `{}` stopped with {} messages in flight; they go back to the front of the queue",
                self.name,
                self.q.name,
                held.len()
            );
            self.q.put_back(held);
        }
        let me = Arc::downgrade(&self.held);
        lock(&self.q.consumers).retain(|(_, w)| !w.ptr_eq(&me));
    }
}

/// Inspection and repair of embedded queues: live queues of this process, and the dead-letter
/// files (which is all another process, such as `loglines queue --embedded`, can see).
pub struct EmbeddedAdmin {
    inner: Arc<Inner>,
}

impl Admin for EmbeddedAdmin {
    fn info(&mut self, queue: &str) -> QResult<QueueInfo> {
        let dead = read_lines(&self.inner.dead_path(queue))?.len() as u64;
        let waiting = read_lines(&self.inner.requeue_path(queue))?.len() as u64;
        let mut info = QueueInfo {
            queue: queue.to_string(),
            length: waiting,
            dead,
            consumers: Vec::new(),
        };
        if let Some(q) = self.inner.live(queue) {
            info.length += q.len() as u64;
            for (name, w) in lock(&q.consumers).iter() {
                if let Some(h) = w.upgrade() {
                    let held = lock(&h);
                    info.consumers.push(ConsumerInfo {
                        consumer: name.clone(),
                        in_flight: held.len() as u64,
                        oldest_age_secs: held.iter().map(|h| h.at.elapsed().as_secs()).max(),
                        alive: true,
                        tracker: None,
                    });
                }
            }
        }
        Ok(info)
    }

    fn peek(&mut self, queue: &str, n: usize) -> QResult<Vec<String>> {
        let waiting = read_lines(&self.inner.requeue_path(queue))?;
        if self.inner.live(queue).is_some() || waiting.is_empty() {
            return Err(QueueError::Unsupported(format!(
                "the embedded transport cannot show the messages of queue `{queue}`: they live inside the running `loglines run` process (dead letters are in {})",
                self.inner.dead_path(queue).display()
            )));
        }
        Ok(waiting
            .into_iter()
            .take(n)
            .map(|l| serde_json::from_str(&l).unwrap_or(l))
            .collect())
    }

    fn dead_letters(&mut self, queue: &str, n: usize) -> QResult<Vec<DeadLetter>> {
        Ok(read_lines(&self.inner.dead_path(queue))?
            .iter()
            .take(n)
            .map(|l| super::redis::parse_dead_letter(l.as_bytes()))
            .collect())
    }

    fn requeue_dead(&mut self, queue: &str, reason: Option<&str>) -> QResult<u64> {
        let _lock = FileLock::acquire(&self.inner.dir, queue)?;
        let path = self.inner.dead_path(queue);
        let mut keep = Vec::new();
        let mut back = Vec::new();
        for line in read_lines(&path)? {
            match serde_json::from_str::<DeadLetter>(&line) {
                Ok(d) if reason.is_none_or(|r| d.reason.contains(r)) => back.push(d.message),
                _ => keep.push(line),
            }
        }
        if back.is_empty() {
            return Ok(0);
        }
        let n = back.len() as u64;
        if let Some(q) = self.inner.live(queue) {
            let mut front = lock(&q.front);
            front.extend(back.into_iter().map(Message::new));
            drop(front);
            q.wake();
        } else {
            // For the process that runs the queue: loaded when it opens the queue.
            let rq = self.inner.requeue_path(queue);
            let mut f = crate::util::private::options()
                .create(true)
                .append(true)
                .open(&rq)
                .map_err(|e| io_err(&rq, "open", e))?;
            let mut text = String::new();
            for b in &back {
                text.push_str(&serde_json::Value::String(b.clone()).to_string());
                text.push('\n');
            }
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_data())
                .map_err(|e| io_err(&rq, "write", e))?;
        }
        // Only now are they gone from the dead letters: a crash before this line leaves them
        // in both places (a duplicate), never in neither.
        write_lines(&path, &keep)?;
        Ok(n)
    }

    fn purge(&mut self, queue: &str) -> QResult<u64> {
        let mut n = 0;
        if let Some(q) = self.inner.live(queue) {
            n += q.drain();
        }
        let _lock = FileLock::acquire(&self.inner.dir, queue)?;
        let rq = self.inner.requeue_path(queue);
        let waiting = read_lines(&rq)?.len() as u64;
        if waiting > 0 {
            std::fs::remove_file(&rq).map_err(|e| io_err(&rq, "remove", e))?;
            n += waiting;
        }
        Ok(n)
    }

    fn describe(&mut self) -> QResult<String> {
        Ok(format!(
            "embedded queues (dead letters in {})",
            self.inner.dir.display()
        ))
    }
}
