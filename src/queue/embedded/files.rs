//! The embedded transport's files: dead letters appended as JSON lines, dead letters requeued
//! by `loglines queue requeue-dead --embedded` for the next `loglines run`, and the lock that
//! lets another process edit them while `run` appends.

use crate::queue::{DeadLetter, Lineage, Message, QResult, QueueError};
use crate::util::private;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// An exclusive lock on a queue's dead-letter files, shared with other processes (the
/// `loglines queue` commands) through `flock` on `<queue>.dead.lock`.
pub(super) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(super) fn acquire(dir: &Path, queue: &str) -> QResult<FileLock> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "create the folder", e))?;
        let path = dir.join(format!("{queue}.dead.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, "open", e))?;
        // flock(2), released when the file is closed.
        f.lock().map_err(|e| io_err(&path, "lock", e))?;
        Ok(FileLock { _file: f })
    }
}

pub(super) fn io_err(path: &Path, what: &str, e: std::io::Error) -> QueueError {
    QueueError::Io(format!(
        "cannot {what} {}: {e}; check that the state folder exists and is writable",
        path.display()
    ))
}

pub(super) fn append_dead(dir: &Path, queue: &str, letter: &DeadLetter) -> QResult<()> {
    let _lock = FileLock::acquire(dir, queue)?;
    let path = dir.join(format!("{queue}.dead.jsonl"));
    let mut line = serde_json::to_string(letter)
        .map_err(|e| QueueError::Io(format!("cannot encode a dead letter: {e}")))?;
    line.push('\n');
    let mut f = private::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_err(&path, "open", e))?;
    f.write_all(line.as_bytes())
        .and_then(|_| f.flush())
        .and_then(|_| f.sync_data())
        .map_err(|e| io_err(&path, "write", e))
}

/// Non-empty lines of a file; a missing file has none.
pub(super) fn read_lines(path: &Path) -> QResult<Vec<String>> {
    match File::open(path) {
        Ok(f) => BufReader::new(f)
            .lines()
            .filter(|l| !l.as_ref().is_ok_and(|l| l.trim().is_empty()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err(path, "read", e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(path, "open", e)),
    }
}

/// Writes `lines` to `path` atomically (temp file, fsync, rename).
pub(super) fn write_lines(path: &Path, lines: &[String]) -> QResult<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = private::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, "create", e))?;
    for l in lines {
        f.write_all(l.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .map_err(|e| io_err(&tmp, "write", e))?;
    }
    f.sync_all().map_err(|e| io_err(&tmp, "sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, "replace", e))
}

/// Deletes a loaded requeue file once every message read from it is finished.
pub(super) struct RequeueFile(PathBuf);

impl Drop for RequeueFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            log::warn!("cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Loads requeued dead letters waiting for `queue` (also those of an earlier run that stopped
/// before finishing them). Each file is first renamed, so a `loglines queue requeue-dead`
/// running meanwhile writes a new one instead of appending to one that is about to go.
pub(super) fn load_requeued(dir: &Path, queue: &str) -> QResult<Vec<Message>> {
    let plain = format!("{queue}.requeue.jsonl");
    let loading_prefix = format!("{queue}.requeue.loading-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&loading_prefix) && name.ends_with(".jsonl") {
            files.push(e.path());
        }
    }
    files.sort();
    let _lock = FileLock::acquire(dir, queue)?;
    let src = dir.join(&plain);
    if src.exists() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dst = dir.join(format!("{loading_prefix}{nanos:020}.jsonl"));
        std::fs::rename(&src, &dst).map_err(|e| io_err(&src, "rename", e))?;
        files.push(dst);
    }
    let mut out = Vec::new();
    for f in files {
        let lines = read_lines(&f)?;
        let guard = Lineage::track(Arc::new(RequeueFile(f)));
        for l in lines {
            let body: String = serde_json::from_str(&l).unwrap_or(l);
            out.push(Message {
                body,
                lineage: guard.clone(),
                raw: None,
                attempts: 0,
            });
        }
    }
    Ok(out)
}
