//! Every key `loglines.cfg` accepts, by section kind, with its default and meaning.
//!
//! This table is the single list the validator checks unknown keys against, `check` explains
//! from, and `docs/configuration.md` is tested against (a key accepted here but missing from
//! that page fails a test).

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
    Watch,
    Broker,
    Worker,
    FileLog,
}

/// One accepted key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: &'static str,
    pub scope: Scope,
    pub default: &'static str,
    pub meaning: &'static str,
}

const fn k(
    key: &'static str,
    scope: Scope,
    default: &'static str,
    meaning: &'static str,
) -> KeySpec {
    KeySpec {
        key,
        scope,
        default,
        meaning,
    }
}

use Scope::*;

/// The table. Order is the order `docs/configuration.md` presents them in.
pub const KEYS: &[KeySpec] = &[
    k("port", Supervisor, "(none: no web UI)", "address of supervisord's web UI, `127.0.0.1:9001`; a bare `9001` means 127.0.0.1:9001, `*:9001` every interface (needs a password of your own)"),
    k("username", Supervisor, "(none)", "web UI user name"),
    k("password", Supervisor, "(none)", "web UI password, plain or `{SHA}` followed by the SHA-1 hex digest"),
    k("host", Redis, "127.0.0.1", "Redis server host name or address"),
    k("port", Redis, "6379", "Redis server port"),
    k("db", Redis, "0", "Redis database number"),
    k("url", Redis, "(none)", "instead of host/port/db: `redis://[user:password@]host:port/db`, or `rediss://...` for TLS"),
    k("tls", Redis, "false", "with host/port/db: connect with TLS (the same as a `rediss://` url)"),
    k("tls_ca_file", Redis, "(the public web roots)", "TLS only: PEM file of the CA that signed the server's certificate; needed for a private CA (the usual case for a self-hosted Redis)"),
    k("tls_cert_file", Redis, "(none)", "TLS only: PEM file of a client certificate, for a server with `tls-auth-clients yes`; needs `tls_key_file`"),
    k("tls_key_file", Redis, "(none)", "TLS only: PEM file of the client certificate's private key (unencrypted); needs `tls_cert_file`"),
    k("username", Redis, "(none)", "Redis ACL user name (Redis 6 or later)"),
    k("password", Redis, "(none)", "Redis password (AUTH)"),
    k("max_queue_length", Redis, "1000000", "producers wait while a queue holds more messages than this"),
    k("heartbeat_ttl", Redis, "30", "seconds a consumer stays alive without a heartbeat; its in-flight messages then go back to the queue"),
    k("state_dir", General, "state", "folder for watcher checkpoints and (in `loglines run`) dead-letter files"),
    k("supervisor_dir", General, "supervisor", "folder `loglines supervisor generate` writes supervisord files into"),
    k("command", Program, "(required)", "`loglines watch`, `loglines broker`, `loglines worker` or `loglines filelog` (states the role); in `process_*` any command"),
    k("numprocs", Program, "3 for worker_*, 1 otherwise", "how many processes (threads in `loglines run`)"),
    k("stdout_logfile", Program, "(supervisord's default)", "where supervisord writes the program's output; with numprocs above 1, one file per process (`pirus2_00.log`, ...)"),
    k("user", Program, "(supervisord's user)", "run the program as this Unix user"),
    k("directory", Program, "(the config file's folder)", "working directory of the program"),
    k("environment", Program, "(none)", "extra environment, supervisord syntax `KEY=\"value\",KEY2=\"value\"`"),
    k("autostart", Program, "true", "start with supervisord"),
    k("autorestart", Program, "true", "`true`, `false` or `unexpected`: restart when it exits"),
    k("startsecs", Program, "3", "seconds a program must stay up to count as started"),
    k("stopwaitsecs", Program, "10", "seconds supervisord waits after SIGTERM before SIGKILL"),
    k("startretries", Program, "10", "start attempts before supervisord marks the program FATAL"),
    k("priority", Program, "10 process, 100 filelog, 200 worker, 300 broker, 400 watch", "start order, lower first"),
    k("redirect_stderr", Program, "true", "send stderr to stdout_logfile"),
    k("redis", Role, "redis", "which Redis section to use: `test` or `redis_test` selects `[redis_test]`"),
    k("batch_size", Role, "watch 500, broker 500, worker 100, filelog 500", "messages per queue operation (1 to 7999)"),
    k("notify_command", Role, "(none)", "command run on a dead letter or a long tracker outage; the event is in LOGLINES_* variables and as JSON on stdin"),
    k("notify_queue", Role, "(none)", "queue that receives a JSON notice on a dead letter or a long tracker outage"),
    k("notify_after", Role, "600", "seconds the tracker must be unreachable before a notice"),
    k("notify_interval", Role, "3600", "at most one notice of each kind per this many seconds"),
    k("notify_timeout", Role, "30", "seconds notify_command may run before it is killed"),
    k("logfile", Watch, "(required)", "the access log to follow"),
    k("pushto", Watch, "(required)", "queue the wrapped lines go to"),
    k("servicename", Watch, "(required)", "the `service` of every message, e.g. your repository's host name"),
    k("start_at", Watch, "end", "on first start: `end` (only new lines, the 2010 behaviour) or `beginning`"),
    k("max_line_bytes", Watch, "1048576", "a longer line is dead-lettered, not split"),
    k("checkpoint", Watch, "STATE_DIR/SECTION.checkpoint", "file recording how far the log has been read"),
    k("listento", Broker, "(required)", "queue to take messages from"),
    k("fanout", Broker, "(required)", "queues every message is copied to, separated by commas or spaces"),
    k("fanout_status_queue", Broker, "(none)", "accepted for 2010 files; no longer needed (fan-out is atomic)"),
    k("idletime", Broker, "(none)", "accepted for 2010 files; no longer needed (takes block instead of sleeping)"),
    k("listento", Worker, "(required)", "queue to take messages from"),
    k("repository_plugin", Worker, "(required)", "the Lua plugin file, e.g. `lua_plugins/irus.lua`"),
    k("endpoint_url", Worker, "(required)", "the tracker, e.g. `https://irus.jisc.ac.uk/counter/test/`; `-` prints the URLs instead of sending"),
    k("url_ver", Worker, "Z39.88-2004", "OpenURL version sent as url_ver"),
    k("rfr_id", Worker, "(none)", "repository host name, offered to the plugin"),
    k("success", Worker, "200", "HTTP status that means the tracker accepted the event"),
    k("timeout", Worker, "60", "seconds to wait for the tracker's answer"),
    k("connect_timeout", Worker, "10", "seconds to wait for a connection to the tracker"),
    k("pauseonfail", Worker, "3600", "longest wait between retries while the tracker is unavailable (backoff starts at 1 s)"),
    k("ratelimit", Worker, "0", "minimum seconds between requests of one process"),
    k("success_queue", Worker, "(none)", "queue that receives each message the tracker accepted"),
    k("other_queue", Worker, "(none)", "queue that receives each message that is not a usage event"),
    k("debug", Worker, "false", "log every OpenURL at info level"),
    k("method", Worker, "GET", "`GET` or `HEAD`"),
    k("plugin_memory_mb", Worker, "64", "memory limit of the plugin's Lua VM, in MiB"),
    k("plugin_max_instructions", Worker, "10000000", "Lua instructions one plugin call may run before it is stopped"),
    k("robots_list", Worker, "(bundled COUNTER list)", "a newer COUNTER robots list (JSON or one pattern a line)"),
    k("listento", FileLog, "(required)", "queue to take messages from"),
    k("logfile", FileLog, "(required)", "file the log lines are appended to"),
    k("format", FileLog, "line", "`line` (the raw log line) or `json` (the whole message)"),
];

/// The `## ` heading of docs/configuration.md that documents keys of this scope.
pub fn doc_heading(scope: Scope) -> &'static str {
    match scope {
        Supervisor => "[supervisor]",
        Redis => "[redis] and [redis_NAME]",
        General => "[loglines]",
        Program => "Every process_*, worker_* and logger_* section",
        Role => "Every loglines role section",
        Watch => "loglines watch",
        Broker => "loglines broker",
        Worker => "loglines worker",
        FileLog => "loglines filelog",
    }
}

/// Keys accepted in a section of the given scopes.
pub fn accepted(scopes: &[Scope]) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|s| scopes.contains(&s.scope))
        .map(|s| s.key)
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
        let acc = accepted(&[Worker, Program, Role]);
        assert_eq!(suggest("pauseonfial", &acc), Some("pauseonfail"));
        assert_eq!(suggest("listen_to", &acc), Some("listento"));
        assert_eq!(suggest("endpoint", &acc), Some("endpoint_url"));
        assert_eq!(suggest("zzzzzzzz", &acc), None);
    }

    #[test]
    fn no_key_is_listed_twice_in_one_scope() {
        for (i, a) in KEYS.iter().enumerate() {
            for b in &KEYS[i + 1..] {
                assert!(!(a.key == b.key && a.scope == b.scope), "{} twice", a.key);
            }
        }
    }
}
