//! A temporary project folder for the `loglines supervisor` tests: a loglines.cfg, stub plugin
//! files for configs that name them, and the binary run on it.

use super::bin::{loglines, text};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The folder, removed when dropped. Test files add their own methods in `impl Project` blocks.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A folder with `cfg` as its loglines.cfg and lua_plugins/{irus,ora,p}.lua (comments only:
    /// generating supervisord files checks that plugins exist, not what they do).
    pub fn new(cfg: &str) -> Project {
        let dir = super::temp_dir();
        std::fs::create_dir_all(dir.path().join("lua_plugins")).unwrap();
        for p in ["irus.lua", "ora.lua", "p.lua"] {
            std::fs::write(dir.path().join("lua_plugins").join(p), "-- a plugin\n").unwrap();
        }
        let p = Project { dir };
        p.write_config(cfg);
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// DIR/loglines.cfg
    pub fn cfg(&self) -> PathBuf {
        self.path().join("loglines.cfg")
    }

    /// DIR/supervisor, where `generate` writes.
    pub fn sv(&self) -> PathBuf {
        self.path().join("supervisor")
    }

    /// DIR/supervisor/supervisord.conf
    pub fn conf(&self) -> PathBuf {
        self.sv().join("supervisord.conf")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.cfg(), text).unwrap();
    }

    /// `loglines --config DIR/loglines.cfg supervisor ARGS...`, run in DIR.
    pub fn run(&self, args: &[&str]) -> Output {
        loglines()
            .arg("--config")
            .arg(self.cfg())
            .arg("supervisor")
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "loglines supervisor {args:?} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}
