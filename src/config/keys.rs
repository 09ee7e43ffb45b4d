//! Every key `loglines.cfg` accepts: its section kind, how its value is read, its default and
//! its meaning, each written once.
//!
//! A key is a [`Key`] constant next to the code that uses it: the keys every program section
//! shares are here, each role's own keys are in its `settings` module
//! (`roles::worker::settings`, ...). The [`Reader`](super::read::Reader) takes the default
//! and the valid range from the constant when it reads the value, `loglines check` shows what
//! the reader gave, and a test holds docs/configuration.md to the same text
//! ([`Key::default_text`], [`Key::meaning`]). [`all`] is the whole table: the validator checks
//! unknown keys against it.

use crate::roles::RoleName;

/// Which sections a key belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `[supervisor]`
    Supervisor,
    /// `[redis]` and `[redis_NAME]`
    Redis,
    /// `[loglines]`
    General,
    /// every `process_*`, `worker_*` and `logger_*` section (how supervisord runs it)
    Program,
    /// every loglines role section (watch, broker, worker, filelog), not `process_*`
    Role,
    /// the sections of one role
    Only(RoleName),
}

/// How a value is read and what it may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Any text (an empty value counts as not set).
    Text,
    /// One queue name: no white space, no commas.
    Queue,
    /// A path, relative to the configuration file's folder; `~/` is the home folder.
    Path,
    /// A whole number within the range.
    Int { min: u64, max: u64 },
    /// A number of seconds, possibly fractional, within the range.
    Secs { min: f64, max: f64 },
    /// ConfigParser's yes/no words.
    Bool,
    /// One of these words, in any case (given here in lower case).
    Choice(&'static [&'static str]),
}

/// What a key is when the file does not set it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    /// It must be set; the text says what is expected (for the error message).
    Required(&'static str),
    /// Not set; the text says what that means (for the docs), e.g. `(none: no web UI)`.
    Unset(&'static str),
    Int(u64),
    Secs(f64),
    Bool(bool),
    /// Text, or for a [`Kind::Choice`] the word (as the docs write it).
    Text(&'static str),
    /// Set per role by the role's [`ProgramDefaults`]; the docs text is made from them.
    PerRole(PerRole),
    /// Worked out from other settings when the file is read; the text says how.
    Derived(&'static str),
}

/// The keys whose default each role sets in its [`ProgramDefaults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerRole {
    Numprocs,
    Priority,
    BatchSize,
}

/// The defaults a role (or a `process_*` section) gives the keys every program shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramDefaults {
    /// Processes of a role in a `logger_*` (or `process_*`) section.
    pub numprocs: u64,
    /// Processes of the role in a `worker_*` section (the 2010 workers ran three).
    pub numprocs_in_worker_section: u64,
    /// supervisord's start order, lower first.
    pub priority: u64,
    /// Messages per queue operation.
    pub batch_size: u64,
}

impl ProgramDefaults {
    pub fn get(&self, field: PerRole, in_worker_section: bool) -> u64 {
        match field {
            PerRole::Numprocs if in_worker_section => self.numprocs_in_worker_section,
            PerRole::Numprocs => self.numprocs,
            PerRole::Priority => self.priority,
            PerRole::BatchSize => self.batch_size,
        }
    }
}

/// A `process_*` section: any command under supervisord, started first.
pub const PROCESS_DEFAULTS: ProgramDefaults = ProgramDefaults {
    numprocs: 1,
    numprocs_in_worker_section: 1,
    priority: 10,
    batch_size: 1,
};

/// One accepted key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Key {
    pub name: &'static str,
    pub scope: Scope,
    pub kind: Kind,
    pub default: Default,
    pub meaning: &'static str,
}

/// A [`Key`], shorter to write in the tables.
pub const fn key(
    name: &'static str,
    scope: Scope,
    kind: Kind,
    default: Default,
    meaning: &'static str,
) -> Key {
    Key {
        name,
        scope,
        kind,
        default,
        meaning,
    }
}

impl Key {
    /// The default as docs/configuration.md writes it.
    pub fn default_text(&self) -> String {
        match self.default {
            Default::Required(_) => "(required)".into(),
            Default::Unset(t) | Default::Text(t) | Default::Derived(t) => t.into(),
            Default::Int(n) => n.to_string(),
            Default::Secs(s) => s.to_string(),
            Default::Bool(b) => b.to_string(),
            Default::PerRole(field) => per_role_text(field),
        }
    }

    /// The text default of a key that has one (empty for keys that are unset by default).
    pub fn text_default(&self) -> &'static str {
        match self.default {
            Default::Text(t) => t,
            _ => "",
        }
    }

    /// The whole-number default of a key that has one.
    pub fn int_default(&self) -> u64 {
        match self.default {
            Default::Int(n) => n,
            _ => panic!("{} has no whole-number default", self.name),
        }
    }

    /// The yes/no default of a key that has one.
    pub fn bool_default(&self) -> bool {
        match self.default {
            Default::Bool(b) => b,
            _ => panic!("{} has no yes/no default", self.name),
        }
    }

    /// The default of a [`Default::PerRole`] key for a section of this role (None: a
    /// `process_*` section).
    pub fn per_role(&self, role: Option<RoleName>, in_worker_section: bool) -> u64 {
        let Default::PerRole(field) = self.default else {
            panic!("{} has no per-role default", self.name)
        };
        let defaults = role.map_or(&PROCESS_DEFAULTS, |r| r.defaults());
        defaults.get(field, in_worker_section)
    }
}

/// `watch 500, broker 500, worker 100, filelog 500`, from the roles' own defaults.
fn per_role_text(field: PerRole) -> String {
    let value = |r: RoleName, worker_section| r.defaults().get(field, worker_section);
    match field {
        PerRole::BatchSize => RoleName::ALL
            .iter()
            .map(|r| format!("{} {}", r.as_str(), value(*r, false)))
            .collect::<Vec<_>>()
            .join(", "),
        PerRole::Priority => {
            let mut all: Vec<(u64, &str)> = vec![(PROCESS_DEFAULTS.priority, "process")];
            all.extend(RoleName::ALL.iter().map(|r| (value(*r, false), r.as_str())));
            all.sort();
            let all: Vec<String> = all.iter().map(|(p, n)| format!("{p} {n}")).collect();
            all.join(", ")
        }
        PerRole::Numprocs => {
            let more: Vec<&str> = RoleName::ALL
                .iter()
                .filter(|r| value(**r, true) != value(**r, false))
                .map(|r| r.as_str())
                .collect();
            let n = RoleName::ALL.iter().map(|r| value(*r, true)).max();
            format!(
                "{} for {} in worker_* sections, {} otherwise",
                n.unwrap_or(1),
                more.join(" and "),
                PROCESS_DEFAULTS.numprocs
            )
        }
    }
}

/// Declares key constants (`pub const NAME: Key`) and the table `TABLE` of them, in the order
/// the docs give them, so that no key is declared without being in its table.
macro_rules! declare_keys {
    ($table:ident { $( $name:ident = $key:literal, $scope:expr, $kind:expr, $default:expr, $meaning:literal; )* }) => {
        $(
            #[doc = $meaning]
            pub const $name: $crate::config::keys::Key =
                $crate::config::keys::key($key, $scope, $kind, $default, $meaning);
        )*
        /// The keys declared here, in the order docs/configuration.md gives them.
        pub const $table: &[$crate::config::keys::Key] = &[$($name),*];
    };
}
pub(crate) use declare_keys;

use self::Default as D;
use self::Kind as K;
use Scope::{General, Program, Redis, Supervisor};

/// Largest batch: Redis cannot unpack more than about 8,000 values into one command.
pub const MAX_BATCH: u64 = 7999;

// The keys every section shares; the roles' own are in their settings modules.
declare_keys! { SHARED {
    SUPERVISOR_PORT = "port", Supervisor, K::Text, D::Unset("(none: no web UI)"), "address of supervisord's web UI, `127.0.0.1:9001`; a bare `9001` means 127.0.0.1:9001, `*:9001` every interface (needs a password of your own)";
    SUPERVISOR_USERNAME = "username", Supervisor, K::Text, D::Unset("(none)"), "web UI user name";
    SUPERVISOR_PASSWORD = "password", Supervisor, K::Text, D::Unset("(none)"), "web UI password, plain or `{SHA}` followed by the SHA-1 hex digest";
    REDIS_HOST = "host", Redis, K::Text, D::Text("127.0.0.1"), "Redis server host name or address";
    REDIS_PORT = "port", Redis, K::Int { min: 1, max: 65535 }, D::Int(6379), "Redis server port";
    REDIS_DB = "db", Redis, K::Int { min: 0, max: 1_000_000 }, D::Int(0), "Redis database number";
    REDIS_URL = "url", Redis, K::Text, D::Unset("(none)"), "instead of host/port/db: `redis://[user:password@]host:port/db`, or `rediss://...` for TLS";
    REDIS_TLS = "tls", Redis, K::Bool, D::Bool(false), "with host/port/db: connect with TLS (the same as a `rediss://` url)";
    REDIS_TLS_CA_FILE = "tls_ca_file", Redis, K::Path, D::Unset("(the public web roots)"), "TLS only: PEM file of the CA that signed the server's certificate; needed for a private CA (the usual case for a self-hosted Redis)";
    REDIS_TLS_CERT_FILE = "tls_cert_file", Redis, K::Path, D::Unset("(none)"), "TLS only: PEM file of a client certificate, for a server with `tls-auth-clients yes`; needs `tls_key_file`";
    REDIS_TLS_KEY_FILE = "tls_key_file", Redis, K::Path, D::Unset("(none)"), "TLS only: PEM file of the client certificate's private key (unencrypted); needs `tls_cert_file`";
    REDIS_USERNAME = "username", Redis, K::Text, D::Unset("(none)"), "Redis ACL user name (Redis 6 or later)";
    REDIS_PASSWORD = "password", Redis, K::Text, D::Unset("(none)"), "Redis password (AUTH)";
    REDIS_MAX_QUEUE_LENGTH = "max_queue_length", Redis, K::Int { min: 1, max: u64::MAX >> 1 }, D::Int(1_000_000), "producers wait while a queue holds more messages than this";
    REDIS_HEARTBEAT_TTL = "heartbeat_ttl", Redis, K::Int { min: 2, max: 86_400 }, D::Int(30), "seconds a consumer stays alive without a heartbeat; its in-flight messages then go back to the queue";
    STATE_DIR = "state_dir", General, K::Path, D::Text("state"), "folder for watcher checkpoints and (in `loglines run`) dead-letter files";
    MAX_MESSAGE_BYTES = "max_message_bytes", General, K::Int { min: 1024, max: 1 << 30 }, D::Int(8 << 20), "a queue message longer than this many bytes is dead-lettered unread by broker, worker and file logger (its plugin never sees it), so one huge message cannot take a process's memory";
    SUPERVISOR_DIR = "supervisor_dir", General, K::Path, D::Text("supervisor"), "folder `loglines supervisor generate` writes supervisord files into";
    COMMAND = "command", Program, K::Text, D::Required("`loglines watch`, `loglines broker`, `loglines worker` or `loglines filelog`"), "`loglines watch`, `loglines broker`, `loglines worker` or `loglines filelog` (states the role); in `process_*` any command";
    NUMPROCS = "numprocs", Program, K::Int { min: 1, max: 256 }, D::PerRole(PerRole::Numprocs), "how many processes (threads in `loglines run`)";
    STDOUT_LOGFILE = "stdout_logfile", Program, K::Path, D::Unset("(supervisord's default)"), "where supervisord writes the program's output; with numprocs above 1, one file per process (`pirus2_00.log`, ...)";
    PROCESS_NAME = "process_name", Program, K::Text, D::Unset("`%(program_name)s_%(process_num)02d` when numprocs is above 1"), "supervisord's name for each process (the 2010 files set it); with numprocs above 1 it must contain `%(process_num)`";
    USER = "user", Program, K::Text, D::Unset("(supervisord's user)"), "run the program as this Unix user";
    DIRECTORY = "directory", Program, K::Path, D::Unset("(the config file's folder)"), "working directory of the program";
    ENVIRONMENT = "environment", Program, K::Text, D::Unset("(none)"), "extra environment, supervisord syntax `KEY=\"value\",KEY2=\"value\"`";
    AUTOSTART = "autostart", Program, K::Bool, D::Bool(true), "start with supervisord";
    AUTORESTART = "autorestart", Program, K::Choice(&["true", "false", "unexpected"]), D::Text("true"), "`true`, `false` or `unexpected`: restart when it exits";
    STARTSECS = "startsecs", Program, K::Int { min: 0, max: 3600 }, D::Int(3), "seconds a program must stay up to count as started";
    STOPWAITSECS = "stopwaitsecs", Program, K::Int { min: 1, max: 3600 }, D::Int(10), "seconds supervisord waits after SIGTERM before SIGKILL";
    STARTRETRIES = "startretries", Program, K::Int { min: 0, max: 1000 }, D::Int(10), "start attempts before supervisord marks the program FATAL";
    PRIORITY = "priority", Program, K::Int { min: 0, max: 999 }, D::PerRole(PerRole::Priority), "start order, lower first";
    REDIRECT_STDERR = "redirect_stderr", Program, K::Bool, D::Bool(true), "send stderr to stdout_logfile";
    REDIS = "redis", Scope::Role, K::Text, D::Text("redis"), "which Redis section to use: `test` or `redis_test` selects `[redis_test]`";
    BATCH_SIZE = "batch_size", Scope::Role, K::Int { min: 1, max: MAX_BATCH }, D::PerRole(PerRole::BatchSize), "messages per queue operation (1 to 7999)";
    NOTIFY_COMMAND = "notify_command", Scope::Role, K::Text, D::Unset("(none)"), "command run on a dead letter or a long tracker outage; the event is in LOGLINES_* variables and as JSON on stdin";
    NOTIFY_QUEUE = "notify_queue", Scope::Role, K::Queue, D::Unset("(none)"), "queue that receives a JSON notice on a dead letter or a long tracker outage";
    NOTIFY_AFTER = "notify_after", Scope::Role, K::Secs { min: 0.0, max: 1e9 }, D::Secs(600.0), "seconds the tracker must be unreachable before a notice";
    NOTIFY_INTERVAL = "notify_interval", Scope::Role, K::Secs { min: 0.0, max: 1e9 }, D::Secs(3600.0), "at most one notice of each kind per this many seconds";
    NOTIFY_TIMEOUT = "notify_timeout", Scope::Role, K::Secs { min: 0.1, max: 3600.0 }, D::Secs(30.0), "seconds notify_command may run before it is killed";
} }

/// Every accepted key: the shared ones, then each role's own.
pub fn all() -> impl Iterator<Item = &'static Key> {
    SHARED
        .iter()
        .chain(RoleName::ALL.iter().flat_map(|r| r.keys().iter()))
}

/// The `## ` heading of docs/configuration.md that documents keys of this scope.
pub fn doc_heading(scope: Scope) -> String {
    match scope {
        Supervisor => "[supervisor]".into(),
        Redis => "[redis] and [redis_NAME]".into(),
        General => "[loglines]".into(),
        Program => "Every process_*, worker_* and logger_* section".into(),
        Scope::Role => "Every loglines role section".into(),
        Scope::Only(r) => format!("loglines {}", r.as_str()),
    }
}

/// Keys accepted in a section of the given scopes.
pub fn accepted(scopes: &[Scope]) -> Vec<&'static str> {
    all()
        .filter(|s| scopes.contains(&s.scope))
        .map(|s| s.name)
        .collect()
}

/// The accepted key nearest to `key`, when it is close enough to be a likely typo.
pub fn suggest<'a>(key: &str, accepted: &[&'a str]) -> Option<&'a str> {
    accepted
        .iter()
        .map(|a| (strsim::levenshtein(key, a), *a))
        .filter(|(d, a)| *d <= (a.len() / 3).max(2))
        .min()
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_keys_only() {
        let acc = accepted(&[Scope::Only(RoleName::Worker), Program, Scope::Role]);
        assert_eq!(suggest("pauseonfial", &acc), Some("pauseonfail"));
        assert_eq!(suggest("listen_to", &acc), Some("listento"));
        assert_eq!(suggest("endpoint", &acc), Some("endpoint_url"));
        assert_eq!(suggest("zzzzzzzz", &acc), None);
    }

    #[test]
    fn no_key_is_listed_twice_in_one_scope() {
        let keys: Vec<&Key> = all().collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert!(
                    !(a.name == b.name && a.scope == b.scope),
                    "{} twice",
                    a.name
                );
            }
        }
    }

    /// A default the reader could not use would only show when the key is left out.
    #[test]
    fn every_default_fits_its_kind() {
        for k in all() {
            let fits = match (k.kind, k.default) {
                (_, D::Required(_) | D::Unset(_) | D::Derived(_)) => true,
                (K::Int { min, max }, D::Int(n)) => (min..=max).contains(&n),
                (K::Int { .. }, D::PerRole(_)) => true,
                (K::Secs { min, max }, D::Secs(s)) => (min..=max).contains(&s),
                (K::Bool, D::Bool(_)) => true,
                (K::Choice(words), D::Text(t)) => words.contains(&t.to_ascii_lowercase().as_str()),
                (K::Text | K::Path, D::Text(_)) => true,
                _ => false,
            };
            assert!(
                fits,
                "{}: default {:?} does not fit {:?}",
                k.name, k.default, k.kind
            );
        }
    }

    #[test]
    fn per_role_defaults_are_described_from_the_roles() {
        assert_eq!(
            BATCH_SIZE.default_text(),
            "watch 500, broker 500, worker 100, filelog 500"
        );
        assert_eq!(
            PRIORITY.default_text(),
            "10 process, 100 filelog, 200 worker, 300 broker, 400 watch"
        );
        assert_eq!(
            NUMPROCS.default_text(),
            "3 for broker and worker in worker_* sections, 1 otherwise"
        );
    }
}
