//! workers_available/ and workers_enabled/, the Debian/Apache way (a2ensite/a2dissite): a
//! program is enabled while workers_enabled/NAME.conf exists, as a symlink to
//! ../workers_available/NAME.conf or, where no symlink can be made, as a copy.
//!
//! There is no separate state file: a program is disabled exactly when workers_available/ has
//! it and workers_enabled/ does not. `generate` reads that before it writes anything, which is
//! how it keeps disabled programs disabled and enables only programs it writes for the first
//! time.

use super::generate::create_dir;
use super::{Layout, SupervisorError};
use std::io;
use std::path::{Path, PathBuf};

/// What workers_enabled/NAME.conf is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A symlink whose target exists.
    Link,
    /// A regular file (the fallback where symlinks cannot be made).
    Copy,
    /// A symlink whose target is gone.
    BrokenLink,
    /// Nothing: the program is disabled (or was never available).
    Missing,
}

impl Entry {
    pub fn is_enabled(self) -> bool {
        matches!(self, Entry::Link | Entry::Copy)
    }

    /// How `list` shows it.
    pub fn label(self) -> &'static str {
        match self {
            Entry::Link => "yes",
            Entry::Copy => "yes (copy)",
            Entry::BrokenLink => "broken link",
            Entry::Missing => "no",
        }
    }
}

/// The state of one enabled entry.
pub fn entry(path: &Path) -> Entry {
    match std::fs::symlink_metadata(path) {
        Err(_) => Entry::Missing,
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::metadata(path).is_ok() {
                Entry::Link
            } else {
                Entry::BrokenLink
            }
        }
        Ok(_) => Entry::Copy,
    }
}

/// How an entry was made.
#[derive(Debug)]
pub enum Made {
    Link,
    /// The symlink failed for this reason and a copy stands in for it.
    Copy(io::Error),
}

/// Makes `link` point at `available` through the relative `target`, replacing whatever `link`
/// was, atomically (a temporary name, then a rename). Falls back to copying `available` when
/// the symlink cannot be made (file systems without symlinks, some network shares).
pub fn link_or_copy(available: &Path, target: &Path, link: &Path) -> io::Result<Made> {
    link_or_copy_with(available, target, link, |t, l| {
        std::os::unix::fs::symlink(t, l)
    })
}

/// [`link_or_copy`] with the symlink call passed in, so the fallback can be tested on a file
/// system that does support symlinks.
pub fn link_or_copy_with(
    available: &Path,
    target: &Path,
    link: &Path,
    symlink: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<Made> {
    let tmp = temp_name(link);
    remove_if_present(&tmp)?;
    let made = match symlink(target, &tmp) {
        Ok(()) => Made::Link,
        Err(why) => {
            remove_if_present(&tmp)?;
            std::fs::copy(available, &tmp)?;
            Made::Copy(why)
        }
    };
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(made)
}

/// A name in the same folder that supervisord's `*.conf` include does not match.
fn temp_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.tmp"))
}

/// Removes a file or symlink; a missing one is fine.
pub fn remove_if_present(p: &Path) -> io::Result<bool> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Names of the `*.conf` files (and symlinks) in `dir`, without the extension, sorted. A
/// missing folder has none.
pub fn conf_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e),
    };
    for e in rd {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".conf") {
            if !stem.is_empty() && !stem.starts_with('.') {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// `loglines supervisor enable`/`disable`: the change per name. Every name is checked before
/// anything changes.
pub fn set_enabled(
    layout: &Layout,
    names: &[String],
    enable: bool,
) -> Result<Vec<String>, SupervisorError> {
    if !layout.available.is_dir() {
        return Err(SupervisorError::NotGenerated {
            dir: layout.dir.clone(),
        });
    }
    let available =
        conf_names(&layout.available).map_err(SupervisorError::io("read", &layout.available))?;
    for name in names {
        let known = available.contains(name)
            || (!enable && entry(&layout.enabled_file(name)) != Entry::Missing);
        if !known {
            return Err(SupervisorError::UnknownProgram {
                name: name.clone(),
                available: available.clone(),
            });
        }
    }
    let mut lines = Vec::new();
    create_dir(&layout.enabled)?;
    for name in names {
        let link = layout.enabled_file(name);
        let state = entry(&link);
        let line = if enable {
            if state == Entry::Link {
                format!("{name}: already enabled")
            } else {
                let made = link_or_copy(
                    &layout.available_file(name),
                    &Layout::link_target(name),
                    &link,
                )
                .map_err(SupervisorError::io("enable", &link))?;
                match made {
                    Made::Link => format!("{name}: enabled"),
                    Made::Copy(why) => {
                        format!("{name}: enabled as a copy (no symlink: {why})")
                    }
                }
            }
        } else if remove_if_present(&link).map_err(SupervisorError::io("remove", &link))? {
            format!("{name}: disabled")
        } else {
            format!("{name}: already disabled")
        };
        lines.push(line);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("workers_available")).unwrap();
        std::fs::create_dir(d.path().join("workers_enabled")).unwrap();
        let avail = d.path().join("workers_available/w.conf");
        std::fs::write(&avail, "[program:w]\ncommand=sleep 1\n").unwrap();
        let link = d.path().join("workers_enabled/w.conf");
        (d, avail, link)
    }

    const TARGET: &str = "../workers_available/w.conf";

    #[test]
    fn a_symlink_when_possible() {
        let (_d, avail, link) = setup();
        let made = link_or_copy(&avail, Path::new(TARGET), &link).unwrap();
        assert!(matches!(made, Made::Link));
        assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from(TARGET));
        assert_eq!(entry(&link), Entry::Link);
    }

    #[test]
    fn a_copy_when_the_symlink_fails() {
        let (_d, avail, link) = setup();
        let made = link_or_copy_with(&avail, Path::new(TARGET), &link, |_, _| {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no symlinks on this file system",
            ))
        })
        .unwrap();
        match made {
            Made::Copy(why) => assert_eq!(why.kind(), io::ErrorKind::Unsupported),
            Made::Link => panic!("expected a copy"),
        }
        assert_eq!(entry(&link), Entry::Copy);
        assert_eq!(
            std::fs::read(&link).unwrap(),
            std::fs::read(&avail).unwrap()
        );
        // No temporary file is left behind for supervisord's include to trip over.
        assert_eq!(
            std::fs::read_dir(link.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_stale_copy_is_replaced_by_a_link() {
        let (_d, avail, link) = setup();
        std::fs::write(&link, "old text").unwrap();
        assert_eq!(entry(&link), Entry::Copy);
        link_or_copy(&avail, Path::new(TARGET), &link).unwrap();
        assert_eq!(entry(&link), Entry::Link);
        assert_eq!(
            std::fs::read(&link).unwrap(),
            std::fs::read(&avail).unwrap()
        );
    }

    #[test]
    fn when_the_copy_fails_too_the_error_says_so() {
        let (d, _avail, link) = setup();
        let missing = d.path().join("workers_available/none.conf");
        let e = link_or_copy_with(&missing, Path::new(TARGET), &link, |_, _| {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(entry(&link), Entry::Missing);
    }

    #[test]
    fn broken_links_and_names() {
        let (d, avail, link) = setup();
        link_or_copy(&avail, Path::new(TARGET), &link).unwrap();
        std::fs::remove_file(&avail).unwrap();
        assert_eq!(entry(&link), Entry::BrokenLink);
        std::fs::write(d.path().join("workers_enabled/.x.conf.tmp"), "").unwrap();
        std::fs::write(d.path().join("workers_enabled/notes.txt"), "").unwrap();
        std::fs::write(d.path().join("workers_enabled/a.conf"), "").unwrap();
        assert_eq!(
            conf_names(&d.path().join("workers_enabled")).unwrap(),
            vec!["a".to_string(), "w".to_string()]
        );
        assert!(conf_names(&d.path().join("nowhere")).unwrap().is_empty());
    }
}
