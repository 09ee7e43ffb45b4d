//! Notifications: tell a person when a message was dead-lettered or the tracker stayed down.
//!
//! The 2010 README promised "optional notifications"; here a section's `notify_command` runs
//! (the event in `LOGLINES_*` environment variables and as JSON on stdin, killed after
//! `notify_timeout`) and/or a JSON notice goes to `notify_queue`. At most one notice per kind per
//! `notify_interval`, so a flood of bad lines sends one mail, not thousands; the notice counts
//! what was held back since the last one.

use crate::config::NotifySettings;
use crate::queue::{utc_iso8601, Message, Producer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The kinds of notice; the interval is kept per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    DeadLetter,
    TrackerDown,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::DeadLetter => "dead_letter",
            Kind::TrackerDown => "tracker_down",
        }
    }
}

/// Sends notices for one section.
pub struct Notifier {
    section: String,
    settings: NotifySettings,
    queue: Option<Box<dyn Producer>>,
    last: HashMap<Kind, Instant>,
    held_back: HashMap<Kind, u64>,
    /// Commands still running; joined on drop so a stopping role does not cut a notice off.
    running: Vec<std::thread::JoinHandle<bool>>,
}

impl Notifier {
    /// `queue` is the producer for `notify_queue`, when one is configured.
    pub fn new(section: &str, settings: NotifySettings, queue: Option<Box<dyn Producer>>) -> Self {
        Notifier {
            section: section.to_string(),
            settings,
            queue,
            last: HashMap::new(),
            held_back: HashMap::new(),
            running: Vec::new(),
        }
    }

    /// The notifier of a role section, with a producer for its `notify_queue` when one is set.
    /// Every role, as a process or as a thread of `loglines run`, is built with this.
    pub fn for_section(
        sec: &crate::config::Section,
        transport: &dyn crate::queue::Transport,
    ) -> crate::queue::QResult<Self> {
        let queue = match &sec.notify.queue {
            Some(q) => Some(transport.producer(q)?),
            None => None,
        };
        Ok(Notifier::new(&sec.name, sec.notify.clone(), queue))
    }

    /// A notifier that never notifies (no command, no queue).
    pub fn disabled(section: &str) -> Self {
        Notifier::new(section, NotifySettings::default(), None)
    }

    fn enabled(&self) -> bool {
        self.settings.command.is_some() || self.queue.is_some()
    }

    /// A message was filed in `<queue>:dead`.
    pub fn dead_letter(&mut self, queue: &str, reason: &str, message: &str) {
        let fields = json!({
            "queue": queue,
            "reason": reason,
            "message": message,
        });
        self.notify(Kind::DeadLetter, fields);
    }

    /// The tracker has failed since `since`; a notice goes out once it has been down for
    /// `notify_after`.
    pub fn tracker_down(&mut self, since: SystemTime, last_error: &str) {
        let down = SystemTime::now().duration_since(since).unwrap_or_default();
        if down < self.settings.after {
            return;
        }
        let fields = json!({
            "since": utc_iso8601(since),
            "down_seconds": down.as_secs(),
            "reason": last_error,
        });
        self.notify(Kind::TrackerDown, fields);
    }

    fn notify(&mut self, kind: Kind, fields: Value) {
        if !self.enabled() {
            return;
        }
        if let Some(t) = self.last.get(&kind) {
            if t.elapsed() < self.settings.interval {
                *self.held_back.entry(kind).or_default() += 1;
                return;
            }
        }
        self.last.insert(kind, Instant::now());
        let held = self.held_back.remove(&kind).unwrap_or(0);
        let mut notice = json!({
            "event": kind.name(),
            "section": self.section,
            "at": utc_iso8601(SystemTime::now()),
            "held_back": held,
        });
        if let (Value::Object(n), Value::Object(f)) = (&mut notice, fields) {
            n.extend(f);
        }
        if let Some(q) = &mut self.queue {
            if let Err(e) = q.push(vec![Message::new(notice.to_string())]) {
                log::warn!(
                    "[{}] could not push a {} notice to notify_queue: {e}",
                    self.section,
                    kind.name()
                );
            }
        }
        if let Some(cmd) = self.settings.command.clone() {
            let timeout = self.settings.timeout;
            let section = self.section.clone();
            // A slow mail command must not stall the role: run it on its own thread.
            self.running.retain(|h| !h.is_finished());
            self.running.push(std::thread::spawn(move || {
                run_command(&section, &cmd, &notice, timeout)
            }));
        }
    }
}

impl Drop for Notifier {
    /// Waits for notify commands still running (each is killed after `notify_timeout`), so
    /// the notice of the last dead letter before a shutdown still goes out.
    fn drop(&mut self) {
        for h in self.running.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs `cmd` with `sh -c`, the notice in environment variables and on stdin; kills it after
/// `timeout`. Returns whether it exited 0 (for tests); failures are logged.
pub fn run_command(section: &str, cmd: &str, notice: &Value, timeout: Duration) -> bool {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Value::Object(map) = notice {
        for (k, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            command.env(format!("LOGLINES_{}", k.to_ascii_uppercase()), value);
        }
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            log::warn!("[{section}] notify_command `{cmd}` could not start: {e}");
            return false;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read stdin closes it early; that is not an error.
        let _ = stdin.write_all(notice.to_string().as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return true,
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                log::warn!(
                    "[{section}] notify_command `{cmd}` failed ({status}): {}",
                    err.trim()
                );
                return false;
            }
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                log::warn!("[{section}] notify_command `{cmd}` ran longer than notify_timeout ({}s) and was killed", timeout.as_secs_f64());
                return false;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                log::warn!("[{section}] notify_command `{cmd}`: {e}");
                return false;
            }
        }
    }
}
