//! Helpers shared by the plugin tests: plugins written into a temporary folder, loaded with
//! chosen limits, and messages wrapped as the watcher wraps log lines.

#![allow(dead_code)] // each test crate uses a different subset

use loglines::config::PluginLimits;
use loglines::plugin::{Plugin, PluginError, PluginSpec};
use std::path::{Path, PathBuf};

/// A folder holding plugin files for one test.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    /// Writes `name` (e.g. `p.lua`) with `code` and returns its path.
    pub fn write(&self, name: &str, code: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, code).unwrap();
        p
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

/// Hooks appended to snippets that only test top-level behaviour.
pub const NO_HOOKS: &str =
    "\nfunction parseline(jmsg) return nil end\nfunction get_openurl_params(c, s, pl) return nil end\n";

pub fn spec(path: &Path) -> PluginSpec {
    PluginSpec::standalone(path, "worker_test")
}

pub fn spec_with(path: &Path, memory_mb: usize, max_instructions: u64) -> PluginSpec {
    PluginSpec {
        limits: PluginLimits {
            memory_mb,
            max_instructions,
        },
        ..spec(path)
    }
}

/// Loads `code` as `p.lua` in a fresh folder.
pub fn load(code: &str) -> (Dir, Result<Plugin, PluginError>) {
    let d = Dir::new();
    let p = d.write("p.lua", code);
    let r = Plugin::load(spec(&p));
    (d, r)
}

/// Loads `code`, which must load.
pub fn plugin(code: &str) -> (Dir, Plugin) {
    let (d, r) = load(code);
    (
        d,
        r.unwrap_or_else(|e| panic!("the plugin should load: {e}")),
    )
}

/// A message as the watcher sends it.
pub fn msg(line: &str) -> String {
    serde_json::json!({"service": "repo.example.ac.uk", "logline": line}).to_string()
}
