//! `loglines filelog` (the 2010 logfromqueue.py): appends each message's log line to a file.
//!
//! A batch is written, flushed and fsynced before it is acked, so a crash can repeat the lines
//! of the last batch but never lose one. The file is reopened when logrotate has moved it away
//! (checked at most once a second) or on SIGHUP.

use crate::config::{FileLogFormat, FileLogSettings, Section};
use crate::queue::{Consumer, Message, QueueError};
use crate::roles::notify::Notifier;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum FileLogError {
    Queue(QueueError),
    Io(String),
}

impl fmt::Display for FileLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileLogError::Queue(e) => write!(f, "{e}; check that the queue server is running"),
            FileLogError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FileLogError {}

/// The open log file and the identity it had when opened.
struct Output {
    file: File,
    ino: (u64, u64),
    checked: Instant,
}

fn open(path: &Path) -> Result<Output, FileLogError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            FileLogError::Io(format!(
                "cannot create the folder {}: {e}; check `logfile` and permissions",
                dir.display()
            ))
        })?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            FileLogError::Io(format!(
                "cannot open {} for appending: {e}; check `logfile` and permissions",
                path.display()
            ))
        })?;
    let m = file
        .metadata()
        .map_err(|e| FileLogError::Io(format!("cannot stat {}: {e}", path.display())))?;
    Ok(Output {
        file,
        ino: (m.dev(), m.ino()),
        checked: Instant::now(),
    })
}

/// True when `path` no longer names the file we hold open (moved away or deleted).
fn moved_away(path: &Path, ino: (u64, u64)) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => (m.dev(), m.ino()) != ino,
        Err(_) => true,
    }
}

/// The text to append for one message, or why the message is not one loglines can file.
pub fn render(format: FileLogFormat, body: &str) -> Result<String, String> {
    match format {
        FileLogFormat::Json => {
            if body.contains('\n') {
                // A message is one JSON text; a raw newline would split it over two lines.
                let v: serde_json::Value =
                    serde_json::from_str(body).map_err(|e| format!("not a JSON message: {e}"))?;
                Ok(v.to_string())
            } else {
                Ok(body.to_string())
            }
        }
        FileLogFormat::Line => {
            let v: serde_json::Value =
                serde_json::from_str(body).map_err(|e| format!("not a JSON message: {e}"))?;
            match v.get("logline") {
                Some(serde_json::Value::String(s)) => Ok(s.replace(['\n', '\r'], " ")),
                Some(_) => Err("its \"logline\" is not a string".into()),
                None => Err("it has no \"logline\" key".into()),
            }
        }
    }
}

/// Runs until `shutdown` is set; `hup` (set by SIGHUP) asks for the file to be reopened.
pub fn run(
    section: &Section,
    settings: &FileLogSettings,
    mut consumer: Box<dyn Consumer>,
    shutdown: &Shutdown,
    hup: Arc<AtomicBool>,
    notifier: &mut Notifier,
    stats: &Stats,
) -> Result<(), FileLogError> {
    let path = settings.logfile.as_path();
    let mut out = open(path)?;
    log::info!(
        "[{}] filelog: {} -> {}",
        section.name,
        settings.listento,
        path.display()
    );
    let mut buf = String::new();
    while !shutdown.is_set() {
        let batch = match consumer.take(section.batch_size, crate::roles::broker::TAKE_WAIT) {
            Ok(b) => b,
            Err(QueueError::ShuttingDown) => break,
            Err(e) => return Err(FileLogError::Queue(e)),
        };
        let reopen_asked = hup.swap(false, Ordering::Relaxed);
        if reopen_asked
            || (out.checked.elapsed() >= Duration::from_secs(1) && moved_away(path, out.ino))
        {
            log::info!(
                "[{}] reopening {} ({})",
                section.name,
                path.display(),
                if reopen_asked {
                    "SIGHUP"
                } else {
                    "it was moved away"
                }
            );
            out = open(path)?;
        }
        out.checked = Instant::now();
        if batch.is_empty() {
            continue;
        }
        buf.clear();
        let mut done: Vec<Message> = Vec::with_capacity(batch.len());
        for m in batch {
            match render(settings.format, &m.body) {
                Ok(line) => {
                    buf.push_str(&line);
                    buf.push('\n');
                    done.push(m);
                }
                Err(why) => {
                    let reason = format!("filelog cannot write this message: {why}");
                    notifier.dead_letter(&settings.listento, &reason, &m.body);
                    match consumer.dead_letter(m, &reason) {
                        Ok(()) => Stats::add(&stats.dead, 1),
                        Err(QueueError::ShuttingDown) => return Ok(()),
                        Err(e) => return Err(FileLogError::Queue(e)),
                    }
                }
            }
        }
        let n = done.len() as u64;
        out.file
            .write_all(buf.as_bytes())
            .and_then(|_| out.file.sync_data())
            .map_err(|e| {
                FileLogError::Io(format!(
                    "cannot write to {}: {e}; is the disk full?",
                    path.display()
                ))
            })?;
        match consumer.ack(done) {
            Ok(()) => Stats::add(&stats.written, n),
            Err(QueueError::ShuttingDown) => break,
            Err(e) => return Err(FileLogError::Queue(e)),
        }
    }
    log::info!("[{}] filelog stopped", section.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines_and_json() {
        let body = r#"{"service":"s","logline":"1.2.3.4 - - x"}"#;
        assert_eq!(render(FileLogFormat::Line, body).unwrap(), "1.2.3.4 - - x");
        assert_eq!(render(FileLogFormat::Json, body).unwrap(), body);
        assert!(render(FileLogFormat::Line, "not json")
            .unwrap_err()
            .starts_with("not a JSON message"));
        assert_eq!(
            render(FileLogFormat::Line, r#"{"service":"s"}"#).unwrap_err(),
            "it has no \"logline\" key"
        );
        assert_eq!(
            render(FileLogFormat::Json, "{\"a\":\n1}").unwrap(),
            "{\"a\":1}"
        );
    }
}
