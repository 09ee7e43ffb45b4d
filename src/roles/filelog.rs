//! `loglines filelog` (the 2010 logfromqueue.py): appends each message's log line to a file.
//!
//! A batch is written, flushed and fsynced before it is acked, so a crash can repeat the lines
//! of the last batch but never lose one. The file is reopened when logrotate has moved it away
//! (checked at most once a second) or on SIGHUP.

use crate::config::keys::{declare_keys, Default as D, Kind as K, ProgramDefaults, Scope};
use crate::config::read::Reader;
use crate::queue::Message;
use crate::roles::consume::{Batch, Consume, Handler, Next};
use crate::roles::{RoleError, RoleName};
use crate::util::stats::Stats;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCOPE: Scope = Scope::Only(RoleName::FileLog);

declare_keys! { KEYS {
    LISTENTO = "listento", SCOPE, K::Queue, D::Required("a queue name such as `loglines`"), "queue to take messages from";
    LOGFILE = "logfile", SCOPE, K::Path, D::Required("the file to append log lines to, e.g. `logs/articles.log`"), "file the log lines are appended to";
    FORMAT = "format", SCOPE, K::Choice(&["line", "json"]), D::Text("line"), "`line` (the raw log line) or `json` (the whole message)";
} }

/// One process: two appending to one file would interleave their batches. Started early, so
/// that the queues it reads are drained from the start.
pub const DEFAULTS: ProgramDefaults = ProgramDefaults {
    numprocs: 1,
    numprocs_in_worker_section: 1,
    priority: 100,
    batch_size: 500,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLogFormat {
    /// The message's `logline` only, as the 2010 logfromqueue.py wrote it.
    Line,
    /// The whole message JSON, one per line.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileLogSettings {
    pub listento: String,
    pub logfile: PathBuf,
    pub format: FileLogFormat,
}

/// Reads and checks a file logger section's own keys.
pub fn read(r: &mut Reader<'_>) -> FileLogSettings {
    FileLogSettings {
        listento: r.queue(&LISTENTO).unwrap_or_default(),
        logfile: r.required_path(&LOGFILE).unwrap_or_default(),
        format: match r.choice(&FORMAT).as_str() {
            "json" => FileLogFormat::Json,
            _ => FileLogFormat::Line,
        },
    }
}

/// The open log file and the identity it had when opened.
struct Output {
    file: File,
    ino: (u64, u64),
    checked: Instant,
}

fn open(path: &Path) -> Result<Output, RoleError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            RoleError::Io(format!(
                "cannot create the folder {}: {e}; check `logfile` and permissions",
                dir.display()
            ))
        })?;
    }
    // The lines hold client addresses: not for every user of the machine.
    let file = crate::util::private::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            RoleError::Io(format!(
                "cannot open {} for appending: {e}; check `logfile` and permissions",
                path.display()
            ))
        })?;
    let m = file
        .metadata()
        .map_err(|e| RoleError::Io(format!("cannot stat {}: {e}", path.display())))?;
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

/// Appends each batch to the file, reopening it when it was moved away or on SIGHUP.
struct Appender<'a> {
    section: &'a str,
    settings: &'a FileLogSettings,
    out: Output,
    hup: Arc<AtomicBool>,
    buf: String,
    stats: &'a Stats,
}

impl Appender<'_> {
    fn path(&self) -> &Path {
        &self.settings.logfile
    }
}

impl Handler for Appender<'_> {
    fn after_take(&mut self) -> Result<(), RoleError> {
        let reopen_asked = self.hup.swap(false, Ordering::Relaxed);
        let moved = !reopen_asked
            && self.out.checked.elapsed() >= Duration::from_secs(1)
            && moved_away(self.path(), self.out.ino);
        if reopen_asked || moved {
            let why = if reopen_asked {
                "SIGHUP"
            } else {
                "it was moved away"
            };
            let path = self.path().display();
            log::info!("[{}] reopening {path} ({why})", self.section);
            self.out = open(self.path())?;
        }
        self.out.checked = Instant::now();
        Ok(())
    }

    /// Written, flushed and fsynced before the ack: a crash can repeat the lines of the last
    /// batch but never lose one.
    fn handle(&mut self, batch: Vec<Message>, out: &mut Batch<'_, '_>) -> Result<Next, RoleError> {
        self.buf.clear();
        for m in batch {
            match render(self.settings.format, &m.body) {
                Ok(line) => {
                    self.buf.push_str(&line);
                    self.buf.push('\n');
                    out.done(m);
                }
                Err(why) => {
                    out.dead_letter(m, &format!("filelog cannot write this message: {why}"))?
                }
            }
        }
        if !self.buf.is_empty() {
            self.out
                .file
                .write_all(self.buf.as_bytes())
                .and_then(|_| self.out.file.sync_data())
                .map_err(|e| {
                    let path = self.settings.logfile.display();
                    RoleError::Io(format!("cannot write to {path}: {e}; is the disk full?"))
                })?;
        }
        let n = out.commit()?;
        Stats::add(&self.stats.written, n as u64);
        Ok(Next::Continue)
    }
}

/// Runs until the consume loop's shutdown is set; `hup` (set by SIGHUP) asks for the file to
/// be reopened.
pub fn run(
    settings: &FileLogSettings,
    hup: Arc<AtomicBool>,
    consume: Consume<'_>,
) -> Result<(), RoleError> {
    let path = settings.logfile.as_path();
    let section = consume.section.name.clone();
    let announce = consume.announce;
    announce.log(
        module_path!(),
        &section,
        &format!("filelog: {} -> {}", settings.listento, path.display()),
    );
    let mut appender = Appender {
        section: &section,
        settings,
        out: open(path)?,
        hup,
        buf: String::new(),
        stats: consume.stats,
    };
    consume.run(&mut appender)?;
    announce.log(module_path!(), &section, "filelog stopped");
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
