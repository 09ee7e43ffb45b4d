//! Which files a watcher section follows: `logfile` names one file, or several, one per line,
//! each a path or a glob (`/var/log/apache2/*access.log`). Every file gets a follower of its
//! own with a checkpoint of its own (see `many.rs`); this file reads the list, matches the
//! globs and names the checkpoints.
//!
//! A glob matches regular files only, and never a rotation of another match: with
//! `/var/log/apache2/*access.log*` the name `access.log.1` is the file `access.log`'s follower
//! finishes after a rotation, and following it as well would send its lines twice. Compressed
//! names (`.gz`, ...) are never followed either: they are backfills for `loglines run --once`.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One line of `logfile`.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A path, followed whether or not the file exists yet (the follower waits for it).
    File(PathBuf),
    /// A glob, matched again while the watcher runs: a new file that matches is followed.
    Glob {
        text: PathBuf,
        pattern: glob::Pattern,
    },
}

/// The `logfile` list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogFiles {
    pub entries: Vec<Entry>,
}

/// A match left out, and why (for `loglines check` and the watcher's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: String,
}

/// What the list names now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    /// The files to follow, sorted: every plain path, and what the globs match.
    pub files: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
}

/// Matching a path against a glob as `glob::glob` walks folders: `*` stays within a folder.
const AS_FOLDERS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// The characters that make a `logfile` line a glob.
fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

impl LogFiles {
    /// Reads the value of `logfile`: one entry per non-empty line, each resolved with
    /// `resolve` (relative to the configuration file's folder). An error names the line and
    /// what is wrong with it.
    pub fn parse(value: &str, resolve: impl Fn(&str) -> PathBuf) -> Result<LogFiles, String> {
        let mut entries = Vec::new();
        for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let path = resolve(line);
            if !is_glob(line) {
                entries.push(Entry::File(path));
                continue;
            }
            let text = path.to_string_lossy().into_owned();
            match glob::Pattern::new(&text) {
                Ok(pattern) => entries.push(Entry::Glob {
                    text: path,
                    pattern,
                }),
                Err(e) => {
                    return Err(format!(
                        "`{line}` is not a valid glob: {} at character {} of {text}; expected `*`, `?`, `[abc]`, `[!abc]` or `**` (write `[*]` for a literal `*`)",
                        e.msg,
                        e.pos + 1
                    ))
                }
            }
        }
        Ok(LogFiles { entries })
    }

    /// The one file of a list that names exactly one file and no glob: followed as before
    /// lists existed, with the section's checkpoint file itself.
    pub fn single(&self) -> Option<&Path> {
        match self.entries.as_slice() {
            [Entry::File(p)] => Some(p),
            _ => None,
        }
    }

    /// The first entry as written (a path or a glob), for messages and the dry run.
    pub fn first(&self) -> Option<&Path> {
        self.entries.first().map(Entry::path)
    }

    /// Whether `path` is one of the files named or matches one of the globs.
    pub fn covers(&self, path: &Path) -> bool {
        self.entries.iter().any(|e| e.names(path))
    }

    /// The files to follow now: every plain path, and the regular files the globs match,
    /// less rotated and compressed names.
    pub fn matching(&self) -> Matches {
        self.matching_beside(&BTreeSet::new())
    }

    /// [`LogFiles::matching`], where a rotation of one of `followed` is left out too: the
    /// names the watcher follows already, one of which may be missing for a moment between
    /// a rotation's rename and the new file's creation.
    pub fn matching_beside(&self, followed: &BTreeSet<PathBuf>) -> Matches {
        let mut found = BTreeSet::new();
        for e in &self.entries {
            match e {
                Entry::File(p) => {
                    found.insert(p.clone());
                }
                Entry::Glob { text, .. } => {
                    found.extend(glob_files(text));
                }
            }
        }
        let mut m = Matches::default();
        let bases: BTreeSet<PathBuf> = found.iter().chain(followed).cloned().collect();
        for path in &found {
            match left_out(path, &bases) {
                Some(why) if !self.is_plain(path) => m.skipped.push(Skipped {
                    path: path.clone(),
                    why,
                }),
                _ => m.files.push(path.clone()),
            }
        }
        m
    }

    fn is_plain(&self, path: &Path) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::File(p) if p == path))
    }
}

impl Entry {
    /// Of the files a list matches now, those this entry names or matches.
    pub fn of<'m>(&self, now: &'m Matches) -> Vec<&'m PathBuf> {
        now.files.iter().filter(|p| self.names(p)).collect()
    }

    /// Whether this entry is `path`, or a glob matching it (`*` within one folder).
    pub fn names(&self, path: &Path) -> bool {
        match self {
            Entry::File(f) => f == path,
            Entry::Glob { pattern, .. } => pattern.matches_path_with(path, AS_FOLDERS),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Entry::File(p) => p,
            Entry::Glob { text, .. } => text,
        }
    }

    /// The folder the entry's files are in (for a glob, the part before its first wildcard):
    /// `check` warns when it does not exist.
    pub fn folder(&self) -> Option<PathBuf> {
        match self {
            Entry::File(p) => p.parent().map(Path::to_path_buf),
            Entry::Glob { text, .. } => {
                let mut dir = PathBuf::new();
                for part in text.components() {
                    if is_glob(&part.as_os_str().to_string_lossy()) {
                        break;
                    }
                    dir.push(part);
                }
                (dir != *text).then_some(dir)
            }
        }
    }
}

/// The regular files (symbolic links followed) a glob matches; unreadable folders are passed
/// over, as `ls` would.
fn glob_files(text: &Path) -> Vec<PathBuf> {
    let Ok(paths) = glob::glob(&text.to_string_lossy()) else {
        return Vec::new();
    };
    paths
        .flatten()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect()
}

/// Extensions of compressed files, which a watcher never follows.
const COMPRESSED: [&str; 6] = [".gz", ".bz2", ".xz", ".zst", ".Z", ".lz4"];

/// Why a match is not followed: a compressed file, or a rotation of another match in the same
/// folder (its name is the other's name and a rotation suffix).
fn left_out(path: &Path, all: &BTreeSet<PathBuf>) -> Option<String> {
    let name = path.file_name()?.to_string_lossy();
    if let Some(ext) = COMPRESSED.iter().find(|x| name.ends_with(*x)) {
        return Some(format!(
            "compressed ({ext}); rotated logs are sent with `loglines run --once FILE...`"
        ));
    }
    let of = all.iter().find(|other| {
        other.parent() == path.parent()
            && other.file_name().is_some_and(|o| {
                let o = o.to_string_lossy();
                name.strip_prefix(o.as_ref())
                    .is_some_and(|rest| !rest.is_empty() && is_rotation_suffix(rest))
            })
    })?;
    Some(format!(
        "a rotation of {} (its follower reads it to the end after a rotation)",
        of.display()
    ))
}

/// `.1`, `-20261201`, `.2026-12-01`, `_3`: what logrotate and its kin append to a rotated name.
fn is_rotation_suffix(rest: &str) -> bool {
    let mut chars = rest.chars();
    matches!(chars.next(), Some('.' | '-' | '_'))
        && rest.chars().any(|c| c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

/// The checkpoint of `path` in a section's checkpoint folder: the file's name (for people
/// looking) and a hash of its whole path (two folders may each hold an `access.log`).
pub fn checkpoint_in(folder: &Path, path: &Path) -> PathBuf {
    let hash = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "log".into());
    folder.join(format!("{name}-{hex}.checkpoint"))
}

/// The folder of a section's per-file checkpoints: the section's checkpoint path with `.d`
/// added (`state/logger.checkpoint.d/`), so that the single-file checkpoint beside it is not
/// in the way and can be taken over (see `many.rs`).
pub fn checkpoint_folder(checkpoint: &Path) -> PathBuf {
    let mut s = checkpoint.as_os_str().to_owned();
    s.push(".d");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dir: &Path, text: &str) -> LogFiles {
        LogFiles::parse(text, |p| dir.join(p)).unwrap()
    }

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            let p = dir.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x\n").unwrap();
        }
    }

    fn names(dir: &Path, paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn one_path_is_a_single_file_and_a_list_or_glob_is_not() {
        let d = Path::new("/etc/x");
        assert_eq!(
            parse(d, "/var/log/access.log").single(),
            Some(Path::new("/var/log/access.log"))
        );
        assert_eq!(
            parse(d, "\n  logs/a.log  \n\n").single(),
            Some(d.join("logs/a.log").as_path())
        );
        assert_eq!(parse(d, "a.log\nb.log").single(), None);
        assert_eq!(parse(d, "*.log").single(), None);
        assert_eq!(parse(d, "a.log\nb.log").entries.len(), 2);
    }

    #[test]
    fn a_bad_glob_is_an_error_naming_the_line_and_the_position() {
        let e = LogFiles::parse("/var/log/[abc.log", |p| PathBuf::from(p)).unwrap_err();
        assert!(e.contains("`/var/log/[abc.log` is not a valid glob"), "{e}");
        assert!(e.contains("at character 10"), "{e}");
    }

    #[test]
    fn globs_match_regular_files_less_rotations_and_compressed_ones() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        touch(
            d,
            &[
                "a_access.log",
                "a_access.log.1",
                "a_access.log.2.gz",
                "b_access.log",
                "b_access.log-20261201",
                "error.log",
                "old_access.log.gz",
                "sub/c_access.log",
            ],
        );
        std::fs::create_dir(d.join("dir_access.log")).unwrap();
        let m = parse(d, "*access.log*").matching();
        assert_eq!(names(d, &m.files), ["a_access.log", "b_access.log"]);
        let skipped: Vec<String> = m.skipped.iter().map(|s| s.why.clone()).collect();
        assert_eq!(m.skipped.len(), 4, "{skipped:?}");
        assert!(skipped[0].starts_with("a rotation of"), "{skipped:?}");
        assert!(skipped[1].starts_with("compressed (.gz)"), "{skipped:?}");
        // Two entries naming the same file follow it once; `**` goes into sub-folders.
        let m = parse(d, "a_access.log\n*_access.log\n**/c_*.log").matching();
        assert_eq!(
            names(d, &m.files),
            ["a_access.log", "b_access.log", "sub/c_access.log"]
        );
        // A plain path is followed even when it does not exist yet, or looks rotated.
        let m = parse(d, "later.log\na_access.log.1").matching();
        assert_eq!(names(d, &m.files), ["a_access.log.1", "later.log"]);
    }

    #[test]
    fn a_rotation_of_a_followed_name_is_left_out_while_the_name_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        // Between logrotate's rename and the new file's creation only `.1` exists.
        touch(d, &["a.log.1"]);
        let l = parse(d, "*.log*");
        assert_eq!(names(d, &l.matching().files), ["a.log.1"]);
        let followed = BTreeSet::from([d.join("a.log")]);
        let m = l.matching_beside(&followed);
        assert!(m.files.is_empty(), "{m:?}");
        assert!(m.skipped[0].why.starts_with("a rotation of"), "{m:?}");
    }

    #[test]
    fn rotation_suffixes() {
        for yes in [".1", "-20261201", ".2026-12-01", "_3", ".1.2"] {
            assert!(is_rotation_suffix(yes), "{yes}");
        }
        for no in ["", ".old", "x1", "-", ".log", "_bak2x"] {
            assert!(!is_rotation_suffix(no), "{no}");
        }
    }

    #[test]
    fn the_folder_of_an_entry_is_what_comes_before_the_wildcards() {
        let f = |s: &str| parse(Path::new("/"), s).entries[0].folder();
        assert_eq!(
            f("/var/log/apache2/*access.log"),
            Some("/var/log/apache2".into())
        );
        assert_eq!(f("/srv/*/logs/access.log"), Some("/srv".into()));
        assert_eq!(f("/var/log/a.log"), Some("/var/log".into()));
    }

    #[test]
    fn checkpoints_of_files_with_one_name_in_two_folders_differ() {
        let f = Path::new("/state/w.checkpoint.d");
        let a = checkpoint_in(f, Path::new("/srv/a/access.log"));
        let b = checkpoint_in(f, Path::new("/srv/b/access.log"));
        assert_ne!(a, b);
        assert!(a.starts_with(f));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("access.log-") && name.ends_with(".checkpoint"),
            "{name}"
        );
        assert_eq!(
            checkpoint_folder(Path::new("/state/w.checkpoint")),
            Path::new("/state/w.checkpoint.d")
        );
    }

    #[test]
    fn covers_names_and_globs() {
        let l = parse(Path::new("/"), "/var/log/x.log\n/var/log/apache2/*.log");
        assert!(l.covers(Path::new("/var/log/x.log")));
        assert!(l.covers(Path::new("/var/log/apache2/site.log")));
        assert!(!l.covers(Path::new("/var/log/y.log")));
        assert!(!l.covers(Path::new("/var/log/apache2/old/site.log")));
    }
}
