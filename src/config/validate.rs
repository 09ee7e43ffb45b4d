//! Turns a [`RawIni`] into a typed [`Config`], reporting every problem at once.

use super::keys::{self, Scope};
use super::*;
use crate::config::diag::Diagnostic;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The subcommands a `command` line may name, and the 2010 programs they replace.
const ROLES: &[(&str, &str)] = &[
    ("watch", "logfilewatcher.py"),
    ("broker", "broker.py"),
    ("worker", "pirus2.py"),
    ("filelog", "logfromqueue.py"),
];

/// Largest batch: Redis cannot unpack more than about 8,000 values into one command.
const MAX_BATCH: u64 = 7999;

pub(super) fn validate(raw: RawIni) -> Result<Config, Vec<Diagnostic>> {
    let file = raw.path.clone();
    let abs = absolute(&file);
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut v = Validator {
        file: &file,
        dir: &dir,
        diags: Vec::new(),
    };

    // Plugin settings sections are named after a worker's plugin file (`[irus]` for
    // lua_plugins/irus.lua); collect those names first so they are not unknown sections.
    let plugin_sections: HashSet<String> = raw
        .sections
        .iter()
        .filter_map(|s| s.get("repository_plugin"))
        .filter_map(|p| {
            Path::new(p)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();

    let mut supervisor = SupervisorSettings {
        port: None,
        username: None,
        password: None,
        line: None,
    };
    let mut redis = BTreeMap::new();
    let mut general = GeneralSettings {
        state_dir: dir.join("state"),
        supervisor_dir: dir.join("supervisor"),
    };
    let mut pending = Vec::new();

    for sec in &raw.sections {
        let name = sec.name.as_str();
        if name == "supervisor" {
            supervisor = v.supervisor(sec);
        } else if name == "redis" || name.starts_with("redis_") {
            if let Some(r) = v.redis(sec) {
                redis.insert(name.to_string(), r);
            }
        } else if name == "loglines" {
            general = v.general(sec);
        } else if let Some(kind) = kind_of(name) {
            pending.push((sec, kind));
        } else if !plugin_sections.contains(name) {
            v.diags.push(
                Diagnostic::error(
                    v.file,
                    Some(sec.line),
                    "unknown section; expected [supervisor], [redis], [redis_NAME], [loglines], \
                     [process_NAME], [worker_NAME], [logger_NAME], or a plugin's own section named \
                     after its file (e.g. [irus] for lua_plugins/irus.lua)",
                )
                .in_section(name),
            );
        }
    }
    redis
        .entry("redis".to_string())
        .or_insert_with(RedisSettings::default);

    let mut sections: Vec<Section> = Vec::new();
    for (sec, kind) in pending {
        if let Some(s) = v.role_section(sec, kind, &redis, &general) {
            sections.push(s);
        }
    }
    if let Some(sup) = raw.section("supervisor") {
        v.supervisor_warnings(sup, &supervisor);
    }

    let diags = std::mem::take(&mut v.diags);
    drop(v);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    Ok(Config {
        path: abs,
        dir,
        raw: Arc::new(raw),
        supervisor,
        redis,
        general,
        sections,
        warnings: diags,
    })
}

fn kind_of(name: &str) -> Option<SectionKind> {
    if name.starts_with("process_") {
        Some(SectionKind::Process)
    } else if name.starts_with("worker_") {
        Some(SectionKind::Worker)
    } else if name.starts_with("logger_") {
        Some(SectionKind::Logger)
    } else {
        None
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

struct Validator<'a> {
    file: &'a Path,
    dir: &'a Path,
    diags: Vec<Diagnostic>,
}

/// Typed reads from one section; each failed read records a diagnostic and yields a default.
struct Reader<'a, 'v> {
    v: &'v mut Validator<'a>,
    sec: &'a RawSection,
}

impl<'a, 'v> Reader<'a, 'v> {
    fn err(&mut self, key: &str, message: String) {
        let line = self.sec.entry(key).map(|e| e.line).or(Some(self.sec.line));
        self.v.diags.push(
            Diagnostic::error(self.v.file, line, message)
                .in_section(&self.sec.name)
                .at_key(key),
        );
    }

    fn warn(&mut self, key: &str, message: String) {
        let line = self.sec.entry(key).map(|e| e.line).or(Some(self.sec.line));
        self.v.diags.push(
            Diagnostic::warning(self.v.file, line, message)
                .in_section(&self.sec.name)
                .at_key(key),
        );
    }

    fn opt(&self, key: &str) -> Option<String> {
        self.sec
            .get(key)
            .map(str::to_string)
            .filter(|s| !s.is_empty())
    }

    fn required(&mut self, key: &str, expected: &str) -> Option<String> {
        let v = self.opt(key);
        if v.is_none() {
            let what = if self.sec.entry(key).is_some() {
                "is empty"
            } else {
                "is missing"
            };
            self.err(key, format!("{what}; expected {expected}"));
        }
        v
    }

    fn int(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(text) = self.opt(key) else {
            return default;
        };
        match text.parse::<i64>() {
            Ok(n) if n >= min as i64 && (n as u64) <= max => n as u64,
            Ok(n) => {
                self.err(
                    key,
                    format!("`{n}` is out of range; expected a whole number from {min} to {max}"),
                );
                default
            }
            Err(_) => {
                self.err(
                    key,
                    format!(
                        "`{text}` is not a number; expected a whole number from {min} to {max}"
                    ),
                );
                default
            }
        }
    }

    /// Seconds, possibly fractional (`ratelimit = 0.3`), within `[min, max]`.
    fn secs(&mut self, key: &str, default: f64, min: f64, max: f64) -> Duration {
        let Some(text) = self.opt(key) else {
            return Duration::from_secs_f64(default);
        };
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= min && n <= max => Duration::from_secs_f64(n),
            Ok(n) if n < 0.0 => {
                self.err(
                    key,
                    format!(
                        "`{text}` is negative; expected a number of seconds from {min} to {max}"
                    ),
                );
                Duration::from_secs_f64(default)
            }
            Ok(_) => {
                self.err(key, format!("`{text}` is out of range; expected a number of seconds from {min} to {max}"));
                Duration::from_secs_f64(default)
            }
            Err(_) => {
                self.err(key, format!("`{text}` is not a number; expected a number of seconds from {min} to {max}"));
                Duration::from_secs_f64(default)
            }
        }
    }

    /// ConfigParser's getboolean words.
    fn boolean(&mut self, key: &str, default: bool) -> bool {
        let Some(text) = self.opt(key) else {
            return default;
        };
        match parse_bool(&text) {
            Some(b) => b,
            None => {
                self.err(key, format!("`{text}` is not a yes/no value; expected true or false (also yes/no, on/off, 1/0)"));
                default
            }
        }
    }

    fn choice(&mut self, key: &str, choices: &[&str]) -> Option<String> {
        let text = self.opt(key)?;
        let lower = text.to_ascii_lowercase();
        if choices.contains(&lower.as_str()) {
            Some(lower)
        } else {
            self.err(
                key,
                format!(
                    "`{text}` is not valid; expected one of {}",
                    choices.join(", ")
                ),
            );
            None
        }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.opt(key).map(|p| self.v.dir.join(expand_home(&p)))
    }

    /// A queue name: non-empty, no white space (Redis keys may hold it, but a space is always a
    /// mistake in this file).
    fn queue(&mut self, key: &str, required: bool) -> Option<String> {
        let name = if required {
            self.required(key, "a queue name such as `loglines`")?
        } else {
            self.opt(key)?
        };
        if name.contains(char::is_whitespace) || name.contains(',') {
            self.err(key, format!("`{name}` is not one queue name; expected a single name without spaces or commas"));
            return None;
        }
        Some(name)
    }

    /// `tls_ca_file`, `tls_cert_file` and `tls_key_file` of a redis section: only with TLS, the
    /// last two together, each naming a readable PEM file of the right kind.
    fn tls_files(&mut self, s: &mut RedisSettings) {
        const FILES: [(&str, PemKind, &str); 3] = [
            (
                "tls_ca_file",
                PemKind::Certificates,
                "the PEM file of the CA that signed the Redis server's certificate",
            ),
            (
                "tls_cert_file",
                PemKind::Certificates,
                "the PEM file of the client certificate (signed by a CA the Redis server trusts)",
            ),
            (
                "tls_key_file",
                PemKind::PrivateKey,
                "the PEM file of the client certificate's private key, unencrypted",
            ),
        ];
        let mut found: [Option<PathBuf>; 3] = [None, None, None];
        for (slot, (key, kind, expected)) in found.iter_mut().zip(FILES) {
            let Some(path) = self.path(key) else {
                continue;
            };
            if !s.tls {
                // Without TLS the file would be ignored silently, and the administrator would
                // believe the connection is protected.
                self.err(key, "is set, but this connection does not use TLS; expected `url = rediss://...` or `tls = true` in this section (or remove the key)".into());
                continue;
            }
            match read_pem(&path, kind) {
                Ok(_) => *slot = Some(path),
                Err(why) => self.err(key, format!("{why}; expected {expected}")),
            }
        }
        let [ca, cert, key] = found;
        s.tls_ca_file = ca;
        let has = |k: &str| self.opt(k).is_some();
        match (has("tls_cert_file"), has("tls_key_file")) {
            (true, false) => self.err("tls_cert_file", "is set without `tls_key_file`; expected both (the client certificate and its private key) or neither".into()),
            (false, true) => self.err("tls_key_file", "is set without `tls_cert_file`; expected both (the client certificate and its private key) or neither".into()),
            _ => {}
        }
        if let (Some(cert_file), Some(key_file)) = (cert, key) {
            s.tls_client = Some(TlsClientFiles {
                cert_file,
                key_file,
            });
        }
    }

    /// Reports keys this section does not accept, with the nearest accepted key.
    fn unknown_keys(&mut self, scopes: &[Scope], what: &str) {
        let accepted = keys::accepted(scopes);
        let unknown: Vec<String> = self
            .sec
            .entries
            .iter()
            .map(|e| e.key.clone())
            .filter(|k| !accepted.contains(&k.as_str()))
            .collect();
        for key in unknown {
            let hint = match keys::suggest(&key, &accepted) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("see docs/configuration.md for the keys of {what}"),
            };
            self.err(&key, format!("unknown key for {what}; {hint}"));
        }
    }
}

pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

impl<'a> Validator<'a> {
    fn reader<'v>(&'v mut self, sec: &'a RawSection) -> Reader<'a, 'v> {
        Reader { v: self, sec }
    }

    fn supervisor(&mut self, sec: &'a RawSection) -> SupervisorSettings {
        let mut r = self.reader(sec);
        r.unknown_keys(&[Scope::Supervisor], "[supervisor]");
        let port = r.opt("port");
        if let Some(p) = &port {
            let port_part = p.rsplit(':').next().unwrap_or(p);
            if port_part.parse::<u16>().map(|n| n == 0).unwrap_or(true) {
                r.err("port", format!("`{p}` is not an address; expected `127.0.0.1:9001` or a port number such as `9001`"));
            }
        }
        SupervisorSettings {
            port,
            username: r.opt("username"),
            password: r.opt("password"),
            line: Some(sec.line),
        }
    }

    fn supervisor_warnings(&mut self, sec: &'a RawSection, s: &SupervisorSettings) {
        let mut r = self.reader(sec);
        if s.port.is_some()
            && s.username.as_deref() == Some("guest")
            && s.password.as_deref() == Some("guest")
        {
            r.warn(
                "password",
                "the web UI still has the default guest/guest credentials; set your own username and password".into(),
            );
        }
        if s.port.is_some() && (s.username.is_none() || s.password.is_none()) {
            r.warn("port", "the web UI has no username or password; anyone who can reach it controls the workers".into());
        }
    }

    fn general(&mut self, sec: &'a RawSection) -> GeneralSettings {
        let mut r = self.reader(sec);
        r.unknown_keys(&[Scope::General], "[loglines]");
        GeneralSettings {
            state_dir: r.path("state_dir").unwrap_or_else(|| r.v.dir.join("state")),
            supervisor_dir: r
                .path("supervisor_dir")
                .unwrap_or_else(|| r.v.dir.join("supervisor")),
        }
    }

    fn redis(&mut self, sec: &'a RawSection) -> Option<RedisSettings> {
        let mut r = self.reader(sec);
        r.unknown_keys(&[Scope::Redis], "a [redis] section");
        let mut s = RedisSettings {
            name: sec.name.clone(),
            ..RedisSettings::default()
        };
        if let Some(url) = r.opt("url") {
            for k in ["host", "port", "db"] {
                if sec.entry(k).is_some() {
                    r.err(
                        k,
                        "is set together with `url`; expected either `url` or host/port/db".into(),
                    );
                }
            }
            if sec.entry("tls").is_some() {
                r.err(
                    "tls",
                    "is set together with `url`; expected `url = rediss://...` for TLS, or host/port/db with `tls = true`".into(),
                );
            }
            match parse_redis_url(&url) {
                Ok(u) => s = RedisSettings { name: s.name, ..u },
                Err(why) => {
                    r.err("url", format!("`{url}` {why}; expected `redis://[user:password@]host:port/db` or `rediss://...`"));
                    return None;
                }
            }
        } else {
            if let Some(h) = r.opt("host") {
                s.host = h;
            }
            s.port = r.int("port", 6379, 1, 65535) as u16;
            s.db = r.int("db", 0, 0, 1_000_000) as i64;
            s.tls = r.boolean("tls", false);
        }
        r.tls_files(&mut s);
        if let Some(u) = r.opt("username") {
            s.username = Some(u);
        }
        if let Some(p) = r.opt("password") {
            s.password = Some(p);
        }
        s.max_queue_length = r.int("max_queue_length", 1_000_000, 1, u64::MAX >> 1);
        s.heartbeat_ttl = r.int("heartbeat_ttl", 30, 2, 86_400);
        Some(s)
    }

    fn role_section(
        &mut self,
        sec: &'a RawSection,
        kind: SectionKind,
        redis: &BTreeMap<String, RedisSettings>,
        general: &GeneralSettings,
    ) -> Option<Section> {
        let dir = self.dir.to_path_buf();
        let mut r = self.reader(sec);
        let command = r.required(
            "command",
            if kind == SectionKind::Process {
                "the command supervisord runs, e.g. `/usr/bin/redis-server`"
            } else {
                "`loglines watch`, `loglines broker`, `loglines worker` or `loglines filelog`"
            },
        )?;
        let role_name = if kind == SectionKind::Process {
            "process"
        } else {
            role_of(&mut r, &command)?
        };

        let (default_procs, default_priority, default_batch) = match role_name {
            "process" => (1, 10, 1),
            "filelog" => (1, 100, 500),
            "worker" => (if kind == SectionKind::Worker { 3 } else { 1 }, 200, 100),
            "broker" => (if kind == SectionKind::Worker { 3 } else { 1 }, 300, 500),
            _ => (1, 400, 500),
        };
        let mut scopes = vec![Scope::Program];
        let program = ProgramSettings {
            command,
            numprocs: r.int("numprocs", default_procs, 1, 256) as u32,
            stdout_logfile: r.path("stdout_logfile"),
            user: r.opt("user"),
            directory: r.path("directory"),
            environment: r.opt("environment"),
            autostart: r.boolean("autostart", true),
            autorestart: r
                .choice("autorestart", &["true", "false", "unexpected"])
                .unwrap_or_else(|| "true".into()),
            startsecs: r.int("startsecs", 3, 0, 3600) as u32,
            stopwaitsecs: r.int("stopwaitsecs", 10, 1, 3600) as u32,
            startretries: r.int("startretries", 10, 0, 1000) as u32,
            priority: r.int("priority", default_priority, 0, 999) as u32,
            redirect_stderr: r.boolean("redirect_stderr", true),
        };

        if role_name == "process" {
            r.unknown_keys(&scopes, "a process_* section");
            return Some(Section {
                name: sec.name.clone(),
                line: sec.line,
                kind,
                role: Role::Process,
                program,
                redis: "redis".into(),
                notify: NotifySettings::default(),
                batch_size: 1,
            });
        }

        scopes.push(Scope::Role);
        let redis_name = match r.opt("redis") {
            None => "redis".to_string(),
            Some(n) => {
                let full = if n.starts_with("redis") {
                    n.clone()
                } else {
                    format!("redis_{n}")
                };
                if redis.contains_key(&full) {
                    full
                } else {
                    let known: Vec<String> = redis.keys().map(|k| format!("[{k}]")).collect();
                    r.err(
                        "redis",
                        format!(
                            "names [{full}], which is not in the file; expected one of {}",
                            known.join(", ")
                        ),
                    );
                    "redis".to_string()
                }
            }
        };
        let batch_size = r.int("batch_size", default_batch, 1, MAX_BATCH) as usize;
        let notify = NotifySettings {
            command: r.opt("notify_command"),
            queue: r.queue("notify_queue", false),
            after: r.secs("notify_after", 600.0, 0.0, 1e9),
            interval: r.secs("notify_interval", 3600.0, 0.0, 1e9),
            timeout: r.secs("notify_timeout", 30.0, 0.1, 3600.0),
        };

        let role = match role_name {
            "watch" => {
                scopes.push(Scope::Watch);
                if program.numprocs != 1 {
                    r.err("numprocs", format!("is {}; a watcher must run as 1 process (two would send every line twice)", program.numprocs));
                }
                let logfile = r
                    .required("logfile", "the path of the access log to follow")
                    .map(|p| dir.join(expand_home(&p)));
                if let Some(lf) = &logfile {
                    if let Some(parent) = lf.parent() {
                        if !parent.is_dir() {
                            r.warn(
                                "logfile",
                                format!(
                                    "the folder {} does not exist on this machine; expected an existing folder (fine if the watcher runs on another machine; it waits for the file)",
                                    parent.display()
                                ),
                            );
                        }
                    }
                }
                let pushto = r.queue("pushto", true);
                let servicename = r.required(
                    "servicename",
                    "your repository's unique name, e.g. `ora.bodleian.ox.ac.uk`",
                );
                let start_at = match r.choice("start_at", &["end", "beginning"]).as_deref() {
                    Some("beginning") => StartAt::Beginning,
                    _ => StartAt::End,
                };
                let max_line_bytes = r.int("max_line_bytes", 1 << 20, 256, 512 << 20) as usize;
                let checkpoint = r
                    .path("checkpoint")
                    .unwrap_or_else(|| general.state_dir.join(format!("{}.checkpoint", sec.name)));
                Role::Watch(WatchSettings {
                    logfile: logfile.unwrap_or_default(),
                    pushto: pushto.unwrap_or_default(),
                    servicename: servicename.unwrap_or_default(),
                    start_at,
                    max_line_bytes,
                    checkpoint,
                })
            }
            "broker" => {
                scopes.push(Scope::Broker);
                let listento = r.queue("listento", true);
                let fanout: Vec<String> = r
                    .required(
                        "fanout",
                        "one or more queue names separated by commas or spaces",
                    )
                    .map(|f| {
                        f.split([',', ' ', '\t', '\n'])
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let mut seen = HashSet::new();
                for q in &fanout {
                    if !seen.insert(q) {
                        r.err("fanout", format!("names `{q}` twice; expected each queue once (it would get every message twice)"));
                    }
                }
                if let Some(l) = &listento {
                    if fanout.contains(l) {
                        r.err("fanout", format!("includes `{l}`, the queue this broker listens to; that would loop forever"));
                    }
                }
                Role::Broker(BrokerSettings {
                    listento: listento.unwrap_or_default(),
                    fanout,
                })
            }
            "worker" => {
                scopes.push(Scope::Worker);
                let listento = r.queue("listento", true);
                let plugin = r.required(
                    "repository_plugin",
                    "the Lua plugin file, e.g. `lua_plugins/irus.lua`",
                );
                let plugin = plugin.and_then(|p| {
                    if !p.ends_with(".lua") {
                        r.err(
                            "repository_plugin",
                            format!("`{p}` is not a Lua file; the Python plugins of 2010 are replaced by Lua plugins, expected e.g. `lua_plugins/irus.lua`"),
                        );
                        return None;
                    }
                    let path = dir.join(expand_home(&p));
                    if !path.is_file() {
                        r.err("repository_plugin", format!("{} does not exist; expected a Lua plugin file (shipped ones are in lua_plugins/)", path.display()));
                        return None;
                    }
                    Some(path)
                });
                let endpoint = match r.required("endpoint_url", "the tracker URL, e.g. `https://irus.jisc.ac.uk/counter/test/`, or `-` for a dry run") {
                    Some(u) if u == "-" => Endpoint::DryRun,
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => Endpoint::Url(u),
                    Some(u) => {
                        r.err("endpoint_url", format!("`{u}` is not an http(s) URL; expected e.g. `https://irus.jisc.ac.uk/counter/test/`, or `-` for a dry run"));
                        Endpoint::DryRun
                    }
                    None => Endpoint::DryRun,
                };
                let success = r.int("success", 200, 100, 599) as u16;
                let timeout = r.secs("timeout", 60.0, 0.001, 86_400.0);
                let connect_timeout = r.secs("connect_timeout", 10.0, 0.001, 86_400.0);
                let pauseonfail = r.secs("pauseonfail", 3600.0, 1.0, 7.0 * 86_400.0);
                let ratelimit = r.secs("ratelimit", 0.0, 0.0, 3600.0);
                let success_queue = r.queue("success_queue", false);
                let other_queue = r.queue("other_queue", false);
                let debug = r.boolean("debug", false);
                let method = match r.choice("method", &["get", "head"]).as_deref() {
                    Some("head") => HttpMethod::Head,
                    _ => HttpMethod::Get,
                };
                let limits = PluginLimits {
                    memory_mb: r.int("plugin_memory_mb", 64, 4, 4096) as usize,
                    max_instructions: r.int(
                        "plugin_max_instructions",
                        10_000_000,
                        1000,
                        u64::MAX >> 1,
                    ),
                };
                let robots_list = r.path("robots_list");
                if let Some(p) = &robots_list {
                    if !p.is_file() {
                        r.err("robots_list", format!("{} does not exist; expected a COUNTER robots list file (JSON or one pattern a line)", p.display()));
                    }
                }
                Role::Worker(WorkerSettings {
                    listento: listento.unwrap_or_default(),
                    plugin: plugin.unwrap_or_default(),
                    endpoint,
                    url_ver: r.opt("url_ver").unwrap_or_else(|| "Z39.88-2004".into()),
                    rfr_id: r.opt("rfr_id"),
                    success,
                    timeout,
                    connect_timeout,
                    pauseonfail,
                    ratelimit,
                    success_queue,
                    other_queue,
                    debug,
                    method,
                    limits,
                    robots_list,
                })
            }
            _ => {
                scopes.push(Scope::FileLog);
                let listento = r.queue("listento", true);
                let logfile = r.required(
                    "logfile",
                    "the file to append log lines to, e.g. `logs/articles.log`",
                );
                let format = match r.choice("format", &["line", "json"]).as_deref() {
                    Some("json") => FileLogFormat::Json,
                    _ => FileLogFormat::Line,
                };
                Role::FileLog(FileLogSettings {
                    listento: listento.unwrap_or_default(),
                    logfile: logfile
                        .map(|p| dir.join(expand_home(&p)))
                        .unwrap_or_default(),
                    format,
                })
            }
        };
        r.unknown_keys(&scopes, &format!("a `loglines {role_name}` section"));
        Some(Section {
            name: sec.name.clone(),
            line: sec.line,
            kind,
            role,
            program,
            redis: redis_name,
            notify,
            batch_size,
        })
    }
}

/// Reads the role from `command = loglines ROLE`, explaining 2010 program names.
fn role_of(r: &mut Reader<'_, '_>, command: &str) -> Option<&'static str> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let program = words
        .first()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .unwrap_or("");
    let expected =
        "expected `loglines watch`, `loglines broker`, `loglines worker` or `loglines filelog`";
    if let Some((role, _)) = ROLES.iter().find(|(_, old)| *old == program) {
        r.err("command", format!("`{command}` is a program of the 2010 tool; write `command = loglines {role}` instead"));
        return None;
    }
    if program != "loglines" {
        r.err("command", format!("`{command}` does not run loglines; {expected} (use a process_* section for other programs)"));
        return None;
    }
    let Some(role) = words
        .get(1)
        .and_then(|w| ROLES.iter().find(|(name, _)| name == w))
        .map(|(n, _)| *n)
    else {
        r.err("command", format!("`{command}` names no role; {expected}"));
        return None;
    };
    if words.len() > 2 {
        r.err(
            "command",
            format!("`{command}` has extra arguments; expected just `loglines {role}` (--config, --section and --process-num are added when it runs)"),
        );
        return None;
    }
    Some(role)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or("has a `%` not followed by two hex digits")?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .map_err(|_| "has a `%` not followed by two hex digits")?,
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "decodes to invalid UTF-8".to_string())
}

/// Parses `redis://[user[:password]@]host[:port][/db]` (and `rediss://`).
pub(crate) fn parse_redis_url(url: &str) -> Result<RedisSettings, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("redis://") {
        (false, r)
    } else {
        return Err("does not start with redis:// or rediss://".into());
    };
    let (auth, hostpart) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut s = RedisSettings {
        tls,
        ..RedisSettings::default()
    };
    if let Some(auth) = auth {
        let (u, p) = match auth.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (auth, None),
        };
        s.username = if u.is_empty() {
            None
        } else {
            Some(percent_decode(u)?)
        };
        s.password = p.map(percent_decode).transpose()?;
    }
    let (hostport, db) = match hostpart.split_once('/') {
        Some((hp, db)) => (hp, db),
        None => (hostpart, ""),
    };
    if !db.is_empty() {
        s.db = db
            .parse()
            .map_err(|_| format!("has database `{db}`, not a number"))?;
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("has an IPv6 address without its closing `]`")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    s.host = host.to_string();
    if let Some(p) = port {
        s.port = p
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("has port `{p}`, not a number from 1 to 65535"))?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let s = parse_redis_url("rediss://bob:p%40ss@cache.example.org:6380/2").unwrap();
        assert!(s.tls);
        assert_eq!(
            (s.username.as_deref(), s.password.as_deref()),
            (Some("bob"), Some("p@ss"))
        );
        assert_eq!(
            (s.host.as_str(), s.port, s.db),
            ("cache.example.org", 6380, 2)
        );
        assert_eq!(s.url(), "rediss://bob:p%40ss@cache.example.org:6380/2");
        let s = parse_redis_url("redis://:secret@[::1]").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.password.as_deref()),
            ("::1", 6379, Some("secret"))
        );
        assert_eq!(s.url(), "redis://:secret@[::1]:6379/0");
        assert!(parse_redis_url("http://x").is_err());
        assert!(parse_redis_url("redis://h:99999").is_err());
        assert!(parse_redis_url("redis://h/x").is_err());
    }
}
