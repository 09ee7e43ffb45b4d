//! Where the watcher starts: from its checkpoint (the file it was reading, or the file that was
//! rotated or replaced while it was stopped), or, the first time, at the beginning or the end.

use super::checkpoint::{self, Loaded, Position, Rotated};
use super::progress::{Committed, End, Progress};
use super::{
    first_time, unix_now, Flow, Retired, StartAt, Tail, WatchError, Watcher, LINE_START_SCAN,
};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

impl Watcher<'_> {
    /// Decides where to start: from the checkpoint, or `start_at` on a first start.
    pub(super) fn start(&mut self) -> Result<(), Flow> {
        let ck = &self.settings.checkpoint;
        if let Some(dir) = ck.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| WatchError::StateDir {
                path: dir.to_path_buf(),
                error: source,
            })?;
        }
        match checkpoint::load(ck) {
            Loaded::Found {
                checkpoint,
                fallback,
            } => {
                if let Some(why) = fallback {
                    log::warn!(
                        "checkpoint: {why}; using the previous copy {} (lines handed over in the second or two before it was written may be sent again)",
                        checkpoint::prev_path(ck).display()
                    );
                }
                self.resume(*checkpoint)
            }
            Loaded::Missing => self.first_start(self.settings.start_at),
            Loaded::Unreadable(why) => {
                log::warn!(
                    "checkpoint unusable: {why}; reading {} from its beginning so that no line is lost (lines sent before will be sent again)",
                    self.path().display()
                );
                self.first_start(StartAt::Beginning)
            }
        }
    }

    pub(super) fn first_start(&mut self, start_at: StartAt) -> Result<(), Flow> {
        let path = self.path().to_path_buf();
        match self.open_tail(&path) {
            Ok(mut t) => {
                let at = match start_at {
                    StartAt::Beginning => 0,
                    StartAt::End => {
                        line_start_before_end(&t.file).map_err(|source| WatchError::Read {
                            path: path.clone(),
                            error: source,
                        })?
                    }
                };
                t.pos = at;
                log::info!(
                    "no checkpoint yet: reading {} from byte {at} (start_at = {})",
                    path.display(),
                    if start_at == StartAt::End {
                        "end"
                    } else {
                        "beginning"
                    }
                );
                let p =
                    checkpoint::position_in(&t.file, at).map_err(|source| WatchError::Read {
                        path: path.clone(),
                        error: source,
                    })?;
                self.out.progress = Progress::new(Committed {
                    main: Some(p),
                    rotated: None,
                });
                self.current = Some(t);
                // Written now, so that a crash before the first line still resumes here
                // instead of starting at the (by then later) end again.
                self.write_checkpoint_or_fail()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Everything in the file when it appears was written after this start.
                self.say_waiting();
                Ok(())
            }
            Err(source) => Err(WatchError::Open {
                path,
                error: source,
            }
            .into()),
        }
    }

    pub(super) fn resume(&mut self, c: checkpoint::Checkpoint) -> Result<(), Flow> {
        self.out.progress = Progress::new(Committed {
            main: Some(c.position.clone()),
            rotated: c.rotated.clone(),
        });
        self.resume_main(c.position)?;
        match c.rotated {
            Some(r) => self.resume_rotated(r),
            None => Ok(()),
        }
    }

    /// The file before the last rotation was still being read for late lines when the
    /// watcher stopped: it is read again from where that got to, for the rest of its time.
    pub(super) fn resume_rotated(&mut self, r: Rotated) -> Result<(), Flow> {
        let p = &r.position;
        let found = find_rotated(self.path(), p).filter(|(_, f)| {
            // Not the file being followed (it would be read twice).
            let same = |t: &Tail| {
                f.metadata()
                    .is_ok_and(|m| (m.dev(), m.ino()) == (t.dev, t.ino))
            };
            !self.current.as_ref().is_some_and(same)
        });
        let Some((path, f)) = found else {
            log::warn!(
                "the rotated file (device {} inode {}) is no longer in the folder of {}; lines its writers added after byte {} while the watcher was stopped were not read",
                p.dev,
                p.ino,
                self.path().display(),
                p.offset
            );
            self.out.mark(End::RotatedClosed);
            return Ok(());
        };
        let left = r.until.saturating_sub(unix_now());
        log::info!(
            "reading the rotated file {} from byte {} for lines added late, for {left} more seconds",
            path.display(),
            p.offset
        );
        let mut tail = self.tail_from(f, path);
        tail.pos = p.offset;
        self.retired = Some(Retired {
            tail,
            until: Instant::now() + Duration::from_secs(left),
            until_unix: r.until,
        });
        Ok(())
    }

    pub(super) fn resume_main(&mut self, p: Position) -> Result<(), Flow> {
        let path = self.path().to_path_buf();
        let read_err = |source| WatchError::Read {
            path: path.clone(),
            error: source,
        };
        let mut file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(WatchError::Open {
                    path,
                    error: source,
                }
                .into())
            }
        };
        let mut now_at = None;
        if let Some(f) = &file {
            let m = f.metadata().map_err(read_err)?;
            now_at = Some((m.dev(), m.ino()));
            if m.ino() == p.ino {
                let why = checkpoint::mismatch(f, &p).map_err(read_err)?;
                let Some(f) = file.take() else {
                    return Ok(());
                };
                let t = self.tail_from(f, path.clone());
                match why {
                    None => {
                        if m.dev() != p.dev {
                            log::info!(
                                "{}: device number changed ({} to {}) but the content matches the checkpoint; resuming",
                                path.display(),
                                p.dev,
                                m.dev()
                            );
                        }
                        log::info!("resuming {} at byte {}", path.display(), p.offset);
                        return self.begin_at(t, p.offset, false);
                    }
                    Some(why) => {
                        // Truncated in place while the watcher was stopped (logrotate's
                        // copytruncate): the lines after the checkpoint are in the copy, which
                        // is finished first; the switch to the truncated file then happens as
                        // for a rotation while running.
                        if let Some((copy_path, copy)) = find_copy(&path, &p, m.ino()) {
                            log::info!(
                                "{} was truncated while the watcher was stopped (copytruncate); finishing its copy {} from byte {} first",
                                path.display(),
                                copy_path.display(),
                                p.offset
                            );
                            warn_later_rotations(&path, &copy_path);
                            let mut t = self.tail_from(copy, copy_path);
                            t.copy = true;
                            return self.begin_at(t, p.offset, false);
                        }
                        log::warn!(
                            "{} is not the file the checkpoint describes: {why}; it was truncated or rewritten while the watcher was stopped, and no file beside it (uncompressed) holds its old content, so what was written after byte {} before that is lost; reading it from its start",
                            path.display(),
                            p.offset
                        );
                        return self.begin_at(t, 0, true);
                    }
                }
            }
        }
        // Another file (or none) has the name now. If the checkpointed one is still in the
        // folder under another name (rotated while stopped), its unread lines come first;
        // the switch to the new file then happens as for a rotation while running.
        if let Some((old_path, old)) = find_rotated(&path, &p) {
            log::info!(
                "{} was rotated while the watcher was stopped; finishing the old file, now {}, from byte {} first",
                path.display(),
                old_path.display(),
                p.offset
            );
            warn_later_rotations(&path, &old_path);
            let t = self.tail_from(old, old_path);
            return self.begin_at(t, p.offset, false);
        }
        match (file, now_at) {
            (Some(f), Some((dev, ino))) => {
                log::warn!(
                    "{} was replaced while the watcher was stopped (it was device {} inode {}, now device {dev} inode {ino}, and the old file is not in its folder); reading the new file from its start",
                    path.display(),
                    p.dev,
                    p.ino
                );
                let t = self.tail_from(f, path);
                self.begin_at(t, 0, true)
            }
            _ => {
                self.say_waiting();
                Ok(())
            }
        }
    }

    /// Makes `t` the current file at `at`; with `mark`, the checkpoint moves there at once
    /// (so a restart does not repeat the decision that led here).
    pub(super) fn begin_at(&mut self, mut t: Tail, at: u64, mark: bool) -> Result<(), Flow> {
        t.pos = at;
        if mark {
            self.mark(&t.file, at);
        }
        self.current = Some(t);
        Ok(())
    }

    pub(super) fn say_waiting(&mut self) {
        if first_time(&mut self.said_waiting) {
            log::warn!(
                "{} does not exist (yet); waiting for it to appear",
                self.path().display()
            );
        }
    }
}

/// With `start_at = end`: the end of the file, or the start of the line being written there
/// (a line without its newline yet is new, and is read whole once finished).
fn line_start_before_end(file: &File) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let from = size.saturating_sub(LINE_START_SCAN);
    let mut buf = vec![0u8; (size - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    Ok(match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => from + i as u64 + 1,
        // No line end in the whole (short) file: it is one unfinished line.
        None if from == 0 => 0,
        // An unfinished line longer than the scan: start at the end, as asked.
        None => size,
    })
}

/// The other files in the log's folder.
fn beside(logfile: &Path) -> Vec<PathBuf> {
    let dir = match logfile.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|path| path != logfile)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The first of `paths` that is a regular file `keep` accepts and whose content matches the
/// checkpoint up to its offset, opened.
fn first_matching(
    paths: Vec<PathBuf>,
    p: &Position,
    keep: impl Fn(&std::fs::Metadata) -> bool,
) -> Option<(PathBuf, File)> {
    for path in paths {
        let Ok(m) = std::fs::metadata(&path) else {
            continue;
        };
        if !m.is_file() || !keep(&m) {
            continue;
        }
        let Ok(f) = File::open(&path) else {
            continue;
        };
        if let Ok(None) = checkpoint::mismatch(&f, p) {
            return Some((path, f));
        }
    }
    None
}

/// Says so when, besides the file being finished (`found`), other files named like the log were
/// written after it: the log was rotated more than once while the watcher was stopped. The
/// watcher goes from `found` straight to the log, so their lines are not read; the warning
/// names them and how to send them.
fn warn_later_rotations(logfile: &Path, found: &Path) {
    let later = later_rotations(logfile, found);
    if later.is_empty() {
        return;
    }
    let names: Vec<String> = later.iter().map(|p| p.display().to_string()).collect();
    log::warn!(
        "{} was rotated more than once while the watcher was stopped: besides {}, {} written since, which the watcher does not read: {}; send {} with `loglines run --once FILE...` (or `loglines push`), oldest first",
        logfile.display(),
        found.display(),
        if later.len() == 1 { "this file was" } else { "these files were" },
        names.join(", "),
        if later.len() == 1 { "its lines" } else { "their lines" },
    );
}

/// Files beside `logfile` named like it (`access.log.1`, `access.log-20261201.gz`), other than
/// the log and `found`, last written after `found`: rotations between the two. Oldest first.
fn later_rotations(logfile: &Path, found: &Path) -> Vec<PathBuf> {
    let Some(since) = std::fs::metadata(found).and_then(|m| m.modified()).ok() else {
        return Vec::new();
    };
    named_like(logfile)
        .into_iter()
        .filter(|(t, path)| *t > since && path != found && path.is_file())
        .map(|(_, path)| path)
        .collect()
}

/// The files beside `logfile` whose names start with its name (`access.log.1`,
/// `access.log-20261201.gz`), with when each was last written, oldest first.
fn named_like(logfile: &Path) -> Vec<(std::time::SystemTime, PathBuf)> {
    let Some(stem) = logfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return Vec::new();
    };
    let mut files: Vec<_> = beside(logfile)
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&stem))
        })
        .map(|path| {
            let t = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, path)
        })
        .collect();
    files.sort();
    files
}

/// A copy of the checkpointed file beside `logfile` (`access.log.1` made by copytruncate, not
/// compressed yet): a file named like the log, other than the log itself (inode `now_ino`),
/// whose content matches the checkpoint. The most recently modified is tried first.
fn find_copy(logfile: &Path, p: &Position, now_ino: u64) -> Option<(PathBuf, File)> {
    let newest_first = named_like(logfile).into_iter().rev().map(|(_, path)| path);
    first_matching(newest_first.collect(), p, |m| m.ino() != now_ino)
}

/// The checkpointed file itself under another name in the log's folder (renamed by a
/// rotation while the watcher was stopped), recognised by device, inode and fingerprints.
fn find_rotated(logfile: &Path, p: &Position) -> Option<(PathBuf, File)> {
    first_matching(beside(logfile), p, |m| m.ino() == p.ino && m.dev() == p.dev)
}
