//! Files that hold client IP addresses (personal data under the GDPR): the file loggers'
//! output, dead letters, requeued messages and checkpoints are created readable by their owner
//! and group only, and `check` warns about such files that every user can read.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The permissions such a file is created with: the owner writes, the group (an `adm`-style
/// group of administrators) reads, others nothing. An existing file keeps its own.
pub const MODE: u32 = 0o640;

/// `OpenOptions` that create a file with [`MODE`] (less what the umask takes away).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(MODE);
    o
}

/// Whether `path` exists and every user of the machine may read it.
pub fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn created_for_owner_and_group_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let mut f = options().create(true).append(true).open(&p).unwrap();
        f.write_all(b"192.0.2.1\n").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !MODE, 0, "{mode:o}");
        assert!(!readable_by_others(&p));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&p));
        assert!(!readable_by_others(&d.path().join("missing")));
    }
}
