//! The watcher's checkpoint: which file it was reading (device, inode, fingerprints) and how far
//! its lines are safely handed over, stored so that a crash at any instant leaves a usable copy.
//!
//! Format: one JSON object, e.g.
//! `{"version":1,"logfile":"/var/log/apache2/access.log","dev":2049,"ino":1311,"offset":52133,
//!   "head_len":1024,"head_sha256":"…","tail_len":1024,"tail_sha256":"…"}`
//! where `head_*` fingerprint the first `head_len` bytes of the file and `tail_*` the `tail_len`
//! bytes just before `offset`. Both are needed: the head tells a replaced file from the same
//! one, the tail tells a file that was truncated and refilled beyond the offset. For a while
//! after a rotation a `"rotated":{"until":…,"dev":…,"ino":…,"offset":…,…}` object records the
//! same for the old file, which is still read for lines its writers add late.
//!
//! Writing comes in two strengths, so that a crash re-sends little without an fsync per batch:
//! - [`store_unsynced`], after every batch the transport acknowledged: the new copy goes to
//!   `NAME.tmp` and takes the place of `NAME` atomically, without fsync. A killed process loses nothing the
//!   kernel already has, so after kill -9 `NAME` is at most one batch behind what was sent.
//!   `NAME.prev` is left alone: a copy that was never synced may be empty or garbage after a
//!   power loss, and the fallback must not be such a copy.
//! - [`store`], at most once a second and at shutdown: the new copy goes to `NAME.tmp` and is
//!   fsynced; the current `NAME` is fsynced too (it may have been written unsynced) and renamed
//!   to `NAME.prev`; the new copy is renamed into place and the folder fsynced. So `NAME.prev`
//!   is always a synced copy, about one to two seconds old. (A `NAME` that cannot be loaded is
//!   not rotated over a good `NAME.prev`; and while there is no `NAME.prev` yet, on a section's
//!   first start, the unsynced write is a synced one instead.)
//!
//! After a kill at any instant of either sequence `NAME` or `NAME.prev` is complete, and after
//! a power loss `NAME.prev` is; every copy ever written describes lines already acknowledged,
//! so none is ahead of the queue. [`load`] falls back to `NAME.prev` when `NAME` is missing or
//! unreadable, which at worst re-sends the lines of the last second or two.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many bytes of the file's start and of what precedes the offset are fingerprinted.
pub const FINGERPRINT_BYTES: u64 = 1024;

const VERSION: u32 = 1;

/// A place in a particular file: the file's identity and fingerprints, and a byte offset that
/// is always just after a line end (or 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    pub head_len: u64,
    pub head_sha256: String,
    pub tail_len: u64,
    pub tail_sha256: String,
}

/// The file before the last rotation, while it is still read for lines its writers add late:
/// how far those are handed over, and until when (Unix seconds) it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    pub until: u64,
    #[serde(flatten)]
    pub position: Position,
}

/// The stored form: a [`Position`] in the followed file, the rotated file if one is still
/// read, a format version and, for people reading it, the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub logfile: String,
    #[serde(flatten)]
    pub position: Position,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated: Option<Rotated>,
}

/// Errors of reading and writing checkpoints; messages say what to fix.
#[derive(Debug)]
pub enum CheckpointError {
    Write { path: PathBuf, source: io::Error },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Write { path, source } => write!(
                f,
                "cannot write the checkpoint {}: {source}; make its folder writable for this user (or set `checkpoint` / `state_dir` elsewhere)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// What [`load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// A usable checkpoint; `fallback` is true when it came from `NAME.prev` (the reason the
    /// main copy was not used is in `why`).
    Found {
        checkpoint: Box<Checkpoint>,
        fallback: Option<String>,
    },
    /// Neither copy exists: the first start of this section.
    Missing,
    /// A checkpoint exists but neither copy can be used; the reasons.
    Unreadable(String),
}

/// `NAME.prev`, the previous copy.
pub fn prev_path(path: &Path) -> PathBuf {
    with_suffix(path, ".prev")
}

fn tmp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".tmp")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads the checkpoint at `path`, falling back to `NAME.prev`.
pub fn load(path: &Path) -> Loaded {
    let main = read_one(path);
    let main_why = match main {
        Ok(Some(c)) => {
            return Loaded::Found {
                checkpoint: Box::new(c),
                fallback: None,
            }
        }
        Ok(None) => None,
        Err(why) => Some(why),
    };
    let prev = prev_path(path);
    match (read_one(&prev), main_why) {
        (Ok(Some(c)), why) => Loaded::Found {
            checkpoint: Box::new(c),
            fallback: Some(why.unwrap_or_else(|| format!("{} is missing", path.display()))),
        },
        (Ok(None), None) => Loaded::Missing,
        (Ok(None), Some(why)) => Loaded::Unreadable(format!(
            "{why}, and there is no previous copy {}",
            prev.display()
        )),
        (Err(prev_why), Some(why)) => Loaded::Unreadable(format!("{why}; {prev_why}")),
        (Err(prev_why), None) => {
            Loaded::Unreadable(format!("{} is missing; {prev_why}", path.display()))
        }
    }
}

/// Ok(None) when the file does not exist; Err(why) when it exists but cannot be used.
fn read_one(path: &Path) -> Result<Option<Checkpoint>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let c: Checkpoint = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a valid checkpoint ({e})", path.display()))?;
    let p = &c.position;
    let sane = c.version == VERSION
        && plausible(p)
        && c.rotated.as_ref().is_none_or(|r| plausible(&r.position));
    if !sane {
        return Err(format!(
            "{} has inconsistent values (version {}, offset {}, head_len {}, tail_len {})",
            path.display(),
            c.version,
            p.offset,
            p.head_len,
            p.tail_len
        ));
    }
    Ok(Some(c))
}

fn plausible(p: &Position) -> bool {
    p.head_len <= FINGERPRINT_BYTES.min(p.offset)
        && p.tail_len <= FINGERPRINT_BYTES.min(p.offset)
        && is_sha256_hex(&p.head_sha256)
        && is_sha256_hex(&p.tail_sha256)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `position` (and `rotated`) for `logfile` to `path` durably, keeping the copy it
/// replaces as `NAME.prev` (see the module text for the sequence). For once a second and
/// shutdown; after each batch, [`store_unsynced`].
pub fn store(
    path: &Path,
    logfile: &Path,
    position: &Position,
    rotated: Option<&Rotated>,
) -> Result<(), CheckpointError> {
    let err = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    write_tmp(path, logfile, position, rotated, true).map_err(err)?;
    // The copy being replaced becomes the fallback, so it must be synced (it may come from
    // `store_unsynced`) and loadable: an unreadable one (a power loss hit it) is not rotated
    // over a good `NAME.prev`, it is simply replaced below.
    if let Ok(Some(_)) = read_one(path) {
        File::open(path).and_then(|f| f.sync_all()).map_err(err)?;
        std::fs::rename(path, prev_path(path)).map_err(err)?;
    }
    std::fs::rename(tmp_path(path), path).map_err(err)?;
    // The renames are durable only once the folder itself is synced.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}

/// Writes `position` (and `rotated`) for `logfile` to `path` without fsync, leaving
/// `NAME.prev` alone: cheap enough for every acknowledged batch. It survives a kill of the
/// process, not necessarily a power loss; for that [`store`] keeps a synced `NAME.prev`. Until
/// there is one (a section's first writes) this writes durably instead, so that a power loss
/// never leaves an unsynced `NAME` as the only copy.
pub fn store_unsynced(
    path: &Path,
    logfile: &Path,
    position: &Position,
    rotated: Option<&Rotated>,
) -> Result<(), CheckpointError> {
    if !prev_path(path).exists() {
        return store(path, logfile, position, rotated);
    }
    let err = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    write_tmp(path, logfile, position, rotated, false).map_err(err)?;
    swap_into_place(&tmp_path(path), path).map_err(err)
}

/// Puts `tmp` in place of `path`, atomically. A plain rename over an existing file costs
/// about 90 µs on ext4, whose `auto_da_alloc` starts writing the new file to disk to make the
/// rename safe against a power loss; an unsynced write does not need that (`NAME.prev` covers
/// a power loss), so `tmp` and `path` are exchanged instead (renameat2 RENAME_EXCHANGE, about
/// 20 µs, nothing sent to the disk) and the replaced copy, now `tmp`, deleted. Where exchange
/// is unsupported (filesystem, kernel), or `path` does not exist, it is a plain rename.
fn swap_into_place(tmp: &Path, path: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    // CWD makes relative paths mean what they mean to std::fs.
    if renameat_with(CWD, tmp, CWD, path, RenameFlags::EXCHANGE).is_err() {
        return std::fs::rename(tmp, path);
    }
    // Only tidying: an older copy left here by a crash is never read, and the next write
    // truncates it.
    let _ = std::fs::remove_file(tmp);
    Ok(())
}

/// Writes the checkpoint text to `NAME.tmp`, synced or not. The file is created afresh (a
/// leftover of a crash is truncated), never written in place.
fn write_tmp(
    path: &Path,
    logfile: &Path,
    position: &Position,
    rotated: Option<&Rotated>,
    sync: bool,
) -> io::Result<()> {
    let c = Checkpoint {
        version: VERSION,
        logfile: logfile.display().to_string(),
        position: position.clone(),
        rotated: rotated.cloned(),
    };
    let mut text = serde_json::to_vec(&c).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut f = crate::util::private::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp_path(path))?;
    f.write_all(&text)?;
    if sync {
        f.sync_all()?;
    }
    Ok(())
}

/// sha256 of `len` bytes of `file` at `at`, hex; Ok(None) when the file has fewer bytes there.
pub(crate) fn hash_range(file: &File, at: u64, len: u64) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; len as usize];
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(format!("{:x}", Sha256::digest(&buf))))
}

/// The fingerprints of `file` for `offset`: the head (up to [`FINGERPRINT_BYTES`], never past
/// `offset`, so only bytes already read are covered) and the bytes just before `offset`.
pub(crate) fn position_in(file: &File, offset: u64) -> io::Result<Position> {
    let meta = file.metadata()?;
    let head_len = FINGERPRINT_BYTES.min(offset);
    let tail_len = FINGERPRINT_BYTES.min(offset);
    let missing = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file is shorter than {offset} bytes"),
        )
    };
    let head_sha256 = hash_range(file, 0, head_len)?.ok_or_else(missing)?;
    let tail_sha256 = hash_range(file, offset - tail_len, tail_len)?.ok_or_else(missing)?;
    Ok(Position {
        dev: meta.dev(),
        ino: meta.ino(),
        offset,
        head_len,
        head_sha256,
        tail_len,
        tail_sha256,
    })
}

/// Why `file` does not hold `p`'s content (None when it does): shorter than the offset, or
/// different bytes at the start or before the offset.
pub(crate) fn mismatch(file: &File, p: &Position) -> io::Result<Option<String>> {
    let size = file.metadata()?.len();
    if size < p.offset {
        return Ok(Some(format!(
            "it is {size} bytes long, shorter than the checkpoint offset {}",
            p.offset
        )));
    }
    if hash_range(file, 0, p.head_len)?.as_deref() != Some(p.head_sha256.as_str()) {
        return Ok(Some(format!(
            "its first {} bytes differ from those recorded",
            p.head_len
        )));
    }
    let at = p.offset - p.tail_len;
    if hash_range(file, at, p.tail_len)?.as_deref() != Some(p.tail_sha256.as_str()) {
        return Ok(Some(format!(
            "the {} bytes before offset {} differ from those recorded",
            p.tail_len, p.offset
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> (PathBuf, Position) {
        let log = dir.join("access.log");
        std::fs::write(&log, "first line\nsecond line\n").unwrap();
        let f = File::open(&log).unwrap();
        (log, position_in(&f, 11).unwrap())
    }

    #[test]
    fn store_then_load_round_trips_and_keeps_the_previous_copy() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, p) = sample(dir.path());
        assert_eq!(load(&ck), Loaded::Missing);
        store(&ck, &log, &p, None).unwrap();
        let mut p2 = p.clone();
        p2.offset = 23;
        let f = File::open(&log).unwrap();
        p2 = position_in(&f, p2.offset).unwrap();
        store(&ck, &log, &p2, None).unwrap();
        match load(&ck) {
            Loaded::Found {
                checkpoint,
                fallback: None,
            } => assert_eq!(checkpoint.position, p2),
            other => panic!("{other:?}"),
        }
        let prev: Checkpoint =
            serde_json::from_slice(&std::fs::read(prev_path(&ck)).unwrap()).unwrap();
        assert_eq!(prev.position, p);
        assert!(!tmp_path(&ck).exists());
    }

    #[test]
    fn a_corrupt_main_copy_falls_back_to_prev() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, p) = sample(dir.path());
        store(&ck, &log, &p, None).unwrap();
        store(&ck, &log, &p, None).unwrap();
        // A torn write (as a filesystem without ordered renames could leave): half the text.
        let text = std::fs::read(&ck).unwrap();
        std::fs::write(&ck, &text[..text.len() / 2]).unwrap();
        match load(&ck) {
            Loaded::Found {
                checkpoint,
                fallback: Some(why),
            } => {
                assert_eq!(checkpoint.position, p);
                assert!(why.contains("not a valid checkpoint"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Both corrupt: unreadable, with both reasons.
        std::fs::write(prev_path(&ck), b"{}").unwrap();
        match load(&ck) {
            Loaded::Unreadable(why) => assert!(why.matches("not a valid").count() == 2, "{why}"),
            other => panic!("{other:?}"),
        }
        // Main missing (crash between the two renames): prev is used.
        std::fs::remove_file(&ck).unwrap();
        store(&prev_path(&ck), &log, &p, None).unwrap();
        assert!(matches!(
            load(&ck),
            Loaded::Found {
                fallback: Some(_),
                ..
            }
        ));
    }

    /// Positions 0, 11 and 23 (the line ends) of `sample`'s file.
    fn three(dir: &Path) -> (PathBuf, [Position; 3]) {
        let (log, _) = sample(dir);
        let f = File::open(&log).unwrap();
        let at = |o| position_in(&f, o).unwrap();
        (log, [at(0), at(11), at(23)])
    }

    fn loaded(ck: &Path) -> (Position, Option<String>) {
        match load(ck) {
            Loaded::Found {
                checkpoint,
                fallback,
            } => (checkpoint.position, fallback),
            other => panic!("{other:?}"),
        }
    }

    fn prev_of(ck: &Path) -> Position {
        let c: Checkpoint = serde_json::from_slice(&std::fs::read(prev_path(ck)).unwrap()).unwrap();
        c.position
    }

    #[test]
    fn an_unsynced_write_then_load_gives_the_new_position() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, [p0, p1, p2]) = three(dir.path());
        store(&ck, &log, &p0, None).unwrap();
        store_unsynced(&ck, &log, &p1, None).unwrap();
        assert_eq!(loaded(&ck), (p1.clone(), None));
        store_unsynced(&ck, &log, &p2, None).unwrap();
        assert_eq!(loaded(&ck), (p2, None));
        assert!(!tmp_path(&ck).exists());
        // With `NAME` missing (a kill between the renames of a synced write) there is nothing
        // to exchange with: a plain rename puts the new copy in place.
        std::fs::remove_file(&ck).unwrap();
        store_unsynced(&ck, &log, &p1, None).unwrap();
        assert_eq!(loaded(&ck), (p1, None));
        assert!(!tmp_path(&ck).exists());
        assert_eq!(prev_of(&ck), p0);
    }

    #[test]
    fn an_unsynced_write_leaves_prev_alone() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, [p0, p1, p2]) = three(dir.path());
        store(&ck, &log, &p0, None).unwrap();
        store(&ck, &log, &p1, None).unwrap();
        let before = std::fs::metadata(prev_path(&ck)).unwrap();
        let text = std::fs::read(prev_path(&ck)).unwrap();
        store_unsynced(&ck, &log, &p2, None).unwrap();
        store_unsynced(&ck, &log, &p1, None).unwrap();
        let after = std::fs::metadata(prev_path(&ck)).unwrap();
        // The same file (not a new one renamed into place) with the same bytes.
        assert_eq!(before.ino(), after.ino());
        assert_eq!(std::fs::read(prev_path(&ck)).unwrap(), text);
        assert_eq!(prev_of(&ck), p0);
    }

    #[test]
    fn a_garbage_name_after_an_unsynced_write_falls_back_to_the_synced_prev() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, [p0, p1, p2]) = three(dir.path());
        store(&ck, &log, &p0, None).unwrap();
        store(&ck, &log, &p1, None).unwrap();
        store_unsynced(&ck, &log, &p2, None).unwrap();
        // What a power loss can leave of a copy that was never synced: nothing, or garbage.
        for damage in [
            &b""[..],
            &b"\0\0\0\0\0\0"[..],
            &b"{\"version\":1,\"logf"[..],
        ] {
            std::fs::write(&ck, damage).unwrap();
            let (p, why) = loaded(&ck);
            assert_eq!(p, p0, "the synced copy, behind what was acknowledged");
            assert!(why.unwrap().contains("not a valid checkpoint"));
        }
    }

    #[test]
    fn a_synced_write_makes_the_copy_it_replaces_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, [p0, p1, p2]) = three(dir.path());
        store(&ck, &log, &p0, None).unwrap();
        store(&ck, &log, &p0, None).unwrap();
        store_unsynced(&ck, &log, &p1, None).unwrap();
        store(&ck, &log, &p2, None).unwrap();
        assert_eq!(loaded(&ck), (p2.clone(), None));
        assert_eq!(prev_of(&ck), p1);
        // A main copy that cannot be loaded is not rotated over the good fallback.
        std::fs::write(&ck, b"garbage").unwrap();
        store(&ck, &log, &p0, None).unwrap();
        assert_eq!(loaded(&ck), (p0, None));
        assert_eq!(prev_of(&ck), p1);
    }

    #[test]
    fn without_a_fallback_yet_an_unsynced_write_is_synced_and_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, [p0, p1, _]) = three(dir.path());
        store(&ck, &log, &p0, None).unwrap();
        assert!(!prev_path(&ck).exists());
        store_unsynced(&ck, &log, &p1, None).unwrap();
        assert_eq!(prev_of(&ck), p0);
        assert_eq!(loaded(&ck), (p1, None));
    }

    #[test]
    fn values_that_cannot_be_right_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("w.checkpoint");
        let (log, mut p) = sample(dir.path());
        p.tail_len = 500; // more than the offset (11)
        store(&ck, &log, &p, None).unwrap();
        assert!(matches!(load(&ck), Loaded::Unreadable(_)));
    }

    #[test]
    fn mismatch_tells_truncated_rewritten_and_same_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (log, p) = sample(dir.path());
        let same = File::open(&log).unwrap();
        assert_eq!(mismatch(&same, &p).unwrap(), None);
        std::fs::write(&log, "first").unwrap();
        let why = mismatch(&File::open(&log).unwrap(), &p).unwrap().unwrap();
        assert!(why.contains("shorter"), "{why}");
        std::fs::write(&log, "FIRST LINE\nsecond line\n").unwrap();
        let why = mismatch(&File::open(&log).unwrap(), &p).unwrap().unwrap();
        assert!(why.contains("first 11 bytes differ"), "{why}");
    }
}
