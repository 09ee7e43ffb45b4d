//! `loglines init [DIR]`: writes a starting `loglines.cfg` and the shipped plugins
//! (`lua_plugins/`) into DIR, so that a `loglines` installed without its source tree (`cargo
//! install`) has what it needs. The files are the ones in the source tree, built into the
//! binary; a test checks they are byte for byte the same.
//!
//! Nothing is overwritten unless `--force` is given: an administrator's edited config or plugin
//! is never replaced by surprise. Nothing is asked either, so a script can run it.

use crate::app::Failure;
use anyhow::anyhow;
use std::path::{Path, PathBuf};

/// The files `init` writes: their path under DIR and their text.
pub const FILES: &[(&str, &str)] = &[
    ("loglines.cfg", include_str!("../../loglines.cfg")),
    (
        "lua_plugins/irus.lua",
        include_str!("../../lua_plugins/irus.lua"),
    ),
    (
        "lua_plugins/ora.lua",
        include_str!("../../lua_plugins/ora.lua"),
    ),
    (
        "lua_plugins/template.lua",
        include_str!("../../lua_plugins/template.lua"),
    ),
];

#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// The folder to write into (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Replace files that exist already (by default they are left as they are).
    #[arg(long)]
    pub force: bool,
}

/// What became of one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    Replaced,
    /// It existed and `--force` was not given.
    Kept,
}

/// Writes the files into `dir`; what became of each.
pub fn write_files(dir: &Path, force: bool) -> Result<Vec<(PathBuf, Written)>, Failure> {
    let mut out = Vec::new();
    for (rel, text) in FILES {
        let path = dir.join(rel);
        let exists = path.exists();
        if exists && !force {
            out.push((path, Written::Kept));
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Failure::Runtime(anyhow!(
                    "cannot create the folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Failure::Runtime(anyhow!("cannot write {}: {e}", path.display())))?;
        out.push((
            path,
            if exists {
                Written::Replaced
            } else {
                Written::Created
            },
        ));
    }
    Ok(out)
}

pub fn run(args: &InitArgs) -> Result<i32, Failure> {
    let done = write_files(&args.dir, args.force)?;
    let kept = done.iter().filter(|(_, w)| *w == Written::Kept).count();
    for (path, w) in &done {
        let what = match w {
            Written::Created => "created",
            Written::Replaced => "replaced",
            Written::Kept => "exists, left as it is",
        };
        println!("{}: {what}", path.display());
    }
    let cfg = args.dir.join("loglines.cfg");
    println!(
        "next: edit {} (servicename, logfile, repository), then `loglines check --config {}`",
        cfg.display(),
        cfg.display()
    );
    if kept > 0 {
        println!("({kept} existing files were kept; `loglines init --force` replaces them)");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_are_the_source_trees_byte_for_byte() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (rel, text) in FILES {
            let on_disk = std::fs::read_to_string(root.join(rel)).unwrap();
            assert!(on_disk == *text, "{rel} differs from the one built in");
        }
        // Every shipped plugin is built in.
        let shipped = std::fs::read_dir(root.join("lua_plugins")).unwrap().count();
        assert_eq!(shipped, FILES.len() - 1);
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let d = tempfile::tempdir().unwrap();
        let first = write_files(d.path(), false).unwrap();
        assert!(first.iter().all(|(_, w)| *w == Written::Created));
        std::fs::write(d.path().join("loglines.cfg"), "# mine\n").unwrap();
        let again = write_files(d.path(), false).unwrap();
        assert!(again.iter().all(|(_, w)| *w == Written::Kept));
        assert_eq!(
            std::fs::read_to_string(d.path().join("loglines.cfg")).unwrap(),
            "# mine\n"
        );
        let forced = write_files(d.path(), true).unwrap();
        assert!(forced.iter().all(|(_, w)| *w == Written::Replaced));
        assert_eq!(
            std::fs::read_to_string(d.path().join("loglines.cfg")).unwrap(),
            FILES[0].1
        );
    }
}
