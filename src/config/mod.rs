//! `loglines.cfg`: the INI file shared with the 2010 tool, validated into typed settings.
//!
//! [`ini`] reads the file (one pass, ConfigParser's rules, line numbers); [`keys`] declares
//! every key a section may have with its default, range and meaning, and [`read`] reads a value
//! by its key; [`validate`] turns the whole file into a [`Config`], collecting every problem at
//! once ([`diag`]), with the redis sections in [`redis`] and each role's own keys read by that
//! role's settings module (`roles::worker::settings`, ...); [`graph`] checks the pipeline as a
//! whole (loops, logs read back, queues split across Redis servers). A section's role is stated
//! once, in its `command` (`command = loglines worker`), and everything else (the supervisord
//! generator, `loglines run`, `check`) reads it from [`Section::role`]. [`legacy`] knows what
//! the 2010 tool's files say in their own terms.

pub mod diag;
pub mod graph;
pub mod ini;
pub mod keys;
pub mod legacy;
pub mod read;
pub mod redis;
mod validate;

use crate::config::diag::Diagnostic;
use crate::roles::Role;
pub use ini::{RawEntry, RawIni, RawSection};
pub use redis::{read_pem, PemKind, RedisSettings, TlsClientFiles};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the file it came from.
    pub path: PathBuf,
    /// The folder relative paths are resolved against (the file's folder).
    pub dir: PathBuf,
    /// The raw file, for plugins (`c:get(section, key)`) and plugin-specific sections.
    pub raw: Arc<RawIni>,
    pub supervisor: SupervisorSettings,
    /// `[redis]` under the name `redis`, `[redis_test]` under `redis_test`, ...
    pub redis: BTreeMap<String, RedisSettings>,
    pub general: GeneralSettings,
    /// The role sections (`process_*`, `worker_*`, `logger_*`) in file order.
    pub sections: Vec<Section>,
    /// Problems that do not stop anything from running.
    pub warnings: Vec<Diagnostic>,
}

/// A syntax problem does not hide the rest: what could be read is validated too, and every
/// problem of both is reported at once.
fn with_syntax(
    syntax: Vec<Diagnostic>,
    validated: Result<Config, Vec<Diagnostic>>,
) -> Result<Config, Vec<Diagnostic>> {
    if syntax.is_empty() {
        return validated;
    }
    let rest = match validated {
        Ok(cfg) => cfg.warnings,
        Err(d) => d,
    };
    Err(syntax.into_iter().chain(rest).collect())
}

impl Config {
    /// Reads and validates `path`. On failure, every problem found (errors and warnings).
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        let (raw, syntax) = RawIni::load_lenient(path)?;
        with_syntax(syntax, validate::validate(raw))
    }

    /// Validates INI text as if it had been read from `path` (tests, generated configs).
    pub fn from_str(path: &Path, text: &str) -> Result<Config, Vec<Diagnostic>> {
        let (raw, syntax) = ini::parse_lenient(path, text)?;
        with_syntax(syntax, validate::validate(raw))
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The Redis settings a section uses (its `redis` key, or `[redis]`).
    pub fn redis_for(&self, section: &Section) -> &RedisSettings {
        &self.redis[&section.redis]
    }

    /// Every queue named anywhere, sorted, for `status` and `check`.
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self
            .sections
            .iter()
            .flat_map(|s| s.role.reads().into_iter().chain(s.role.writes()))
            .collect();
        q.sort();
        q.dedup();
        q
    }
}

/// The kind of section, from its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// `process_*`: any command under supervisord (e.g. redis-server).
    Process,
    /// `worker_*`: a broker or a tracker worker (default numprocs 3).
    Worker,
    /// `logger_*`: a watcher or a file logger (default numprocs 1).
    Logger,
}

/// One `process_*`, `worker_*` or `logger_*` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub kind: SectionKind,
    pub role: Role,
    pub program: ProgramSettings,
    /// Name of the Redis section it uses (`redis`, `redis_test`, ...).
    pub redis: String,
    pub notify: NotifySettings,
    /// Messages per take/push; defaults per role.
    pub batch_size: usize,
}

/// What a role's settings may depend on besides the role's own keys.
#[derive(Debug, Clone, Copy)]
pub struct RoleContext<'a> {
    /// The section's `numprocs`.
    pub numprocs: u32,
    pub general: &'a GeneralSettings,
}

/// How supervisord runs a section (the 2010 defaults, each overridable).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramSettings {
    /// The command as written in the file.
    pub command: String,
    pub numprocs: u32,
    /// supervisord's `process_name`, written as given (supervisord expands it).
    pub process_name: Option<String>,
    pub stdout_logfile: Option<PathBuf>,
    pub user: Option<String>,
    pub directory: Option<PathBuf>,
    pub environment: Option<String>,
    pub autostart: bool,
    pub autorestart: String,
    pub startsecs: u32,
    pub stopwaitsecs: u32,
    pub startretries: u32,
    pub priority: u32,
    pub redirect_stderr: bool,
}

/// Notifications on dead letters and long tracker outages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotifySettings {
    pub command: Option<String>,
    pub queue: Option<String>,
    pub after: Duration,
    pub interval: Duration,
    pub timeout: Duration,
}

/// `[supervisor]`: the web UI and supervisord's own files.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SupervisorSettings {
    /// `host:port` of the web UI, or None for no web UI.
    pub port: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub line: Option<usize>,
}

/// `[loglines]`: settings of the program as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneralSettings {
    /// Checkpoints and (embedded mode) dead-letter files.
    pub state_dir: PathBuf,
    /// The supervisor/ folder the generator writes into.
    pub supervisor_dir: PathBuf,
    /// Longest queue message a consuming role handles; longer ones are dead-lettered.
    pub max_message_bytes: usize,
}

impl GeneralSettings {
    /// The settings of a file without `[loglines]`, whose folder is `dir`.
    pub fn default_in(dir: &Path) -> Self {
        GeneralSettings {
            state_dir: dir.join(keys::STATE_DIR.text_default()),
            supervisor_dir: dir.join(keys::SUPERVISOR_DIR.text_default()),
            max_message_bytes: keys::MAX_MESSAGE_BYTES.int_default() as usize,
        }
    }

    /// Where `loglines run` files dead letters (`<queue>.dead.jsonl`) and where the `status`
    /// and `queue` commands look for them: one place, next to the checkpoints.
    pub fn dead_letter_dir(&self) -> PathBuf {
        self.state_dir.join("dead")
    }
}
