//! Turns a [`RawIni`] into a typed [`Config`], reporting every problem at once.
//!
//! The sections every program shares are read here ([supervisor], [loglines], the program keys
//! of each role section), the redis sections in `redis.rs`; a role section's own keys are read
//! by its role's settings module, which [`role_settings`] calls.

use super::keys::{self, Scope};
use super::read::Reader;
use super::*;
use crate::roles::{broker, filelog, watch, worker, Role, RoleName};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub(super) fn validate(raw: RawIni) -> Result<Config, Vec<Diagnostic>> {
    let file = raw.path.clone();
    let abs = absolute(&file);
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut diags = Vec::new();
    let plugins = plugin_sections(&raw);
    let mut supervisor = SupervisorSettings::default();
    let mut redis = BTreeMap::new();
    let mut general = None;
    let mut programs = Vec::new();
    for sec in &raw.sections {
        let name = sec.name.as_str();
        let mut r = Reader::new(&file, &dir, sec, &mut diags);
        if name == "supervisor" {
            supervisor = read_supervisor(&mut r);
        } else if name == "redis" || name.starts_with("redis_") {
            if let Some(s) = redis::read(&mut r) {
                redis.insert(name.to_string(), s);
            }
        } else if name == "loglines" {
            general = Some(read_general(&mut r));
        } else if name == "DEFAULT" {
            r.err_section("[DEFAULT] is not supported (ConfigParser copies its keys into every section, which here would give every role keys it does not accept); write the keys in the sections they apply to");
        } else if let Some(kind) = kind_of(name) {
            programs.push((sec, kind));
        } else if !plugins.contains(name) {
            r.err_section(
                "unknown section; expected [supervisor], [redis], [redis_NAME], [loglines], \
                 [process_NAME], [worker_NAME], [logger_NAME], or a plugin's own section named \
                 after its file (e.g. [irus] for lua_plugins/irus.lua)",
            );
        }
    }
    redis
        .entry("redis".to_string())
        .or_insert_with(RedisSettings::default);
    // Role sections last: their defaults (the checkpoint's folder) come from [loglines],
    // wherever it stands in the file.
    let general = general.unwrap_or_else(|| GeneralSettings::default_in(&dir));
    let sections: Vec<Section> = programs
        .into_iter()
        .filter_map(|(sec, kind)| {
            let mut r = Reader::new(&file, &dir, sec, &mut diags);
            read_program_section(&mut r, kind, &redis, &general)
        })
        .collect();
    diags.extend(super::graph::check(&file, &sections));
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

/// Plugin settings sections are named after a worker's plugin file (`[irus]` for
/// lua_plugins/irus.lua): their names, so that they are not unknown sections.
fn plugin_sections(raw: &RawIni) -> HashSet<String> {
    raw.sections
        .iter()
        .filter_map(|s| s.get(worker::settings::REPOSITORY_PLUGIN.name))
        .filter_map(|p| Path::new(p).file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
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

/// `[supervisor]`, with warnings about a web UI that anyone could use.
fn read_supervisor(r: &mut Reader<'_>) -> SupervisorSettings {
    use keys::{SUPERVISOR_PASSWORD, SUPERVISOR_PORT, SUPERVISOR_USERNAME};
    r.unknown_keys(&[Scope::Supervisor], "[supervisor]");
    let port = r.opt(&SUPERVISOR_PORT);
    if let Some(p) = &port {
        let port_part = p.rsplit(':').next().unwrap_or(p);
        if port_part.parse::<u16>().map(|n| n == 0).unwrap_or(true) {
            r.err(SUPERVISOR_PORT.name, format!("`{p}` is not an address; expected `127.0.0.1:9001` or a port number such as `9001`"));
        }
    }
    let s = SupervisorSettings {
        port,
        username: r.opt(&SUPERVISOR_USERNAME),
        password: r.opt(&SUPERVISOR_PASSWORD),
        line: Some(r.sec.line),
    };
    if s.port.is_some()
        && s.username.as_deref() == Some("guest")
        && s.password.as_deref() == Some("guest")
    {
        r.warn(SUPERVISOR_PASSWORD.name, "the web UI still has the default guest/guest credentials; set your own username and password".into());
    }
    if s.port.is_some() && (s.username.is_none() || s.password.is_none()) {
        r.warn(
            SUPERVISOR_PORT.name,
            "the web UI has no username or password; anyone who can reach it controls the workers"
                .into(),
        );
    }
    s
}

/// `[loglines]`.
fn read_general(r: &mut Reader<'_>) -> GeneralSettings {
    r.unknown_keys(&[Scope::General], "[loglines]");
    GeneralSettings {
        state_dir: r.path_or_default(&keys::STATE_DIR),
        supervisor_dir: r.path_or_default(&keys::SUPERVISOR_DIR),
        max_message_bytes: r.int(&keys::MAX_MESSAGE_BYTES) as usize,
    }
}

/// A `process_*`, `worker_*` or `logger_*` section: its command (and so its role), how
/// supervisord runs it, and for a loglines role its queue server, notifications and settings.
fn read_program_section(
    r: &mut Reader<'_>,
    kind: SectionKind,
    redis: &BTreeMap<String, RedisSettings>,
    general: &GeneralSettings,
) -> Option<Section> {
    let command = r.required(&keys::COMMAND)?;
    let role = match kind {
        SectionKind::Process => None,
        _ => Some(role_of(r, &command)?),
    };
    let program = read_program(r, command, role, kind);
    let mut section = Section {
        name: r.section().to_string(),
        line: r.sec.line,
        kind,
        role: Role::Process,
        program,
        redis: "redis".into(),
        notify: NotifySettings::default(),
        batch_size: keys::PROCESS_DEFAULTS.batch_size as usize,
    };
    let Some(role) = role else {
        r.unknown_keys(&[Scope::Program], "a process_* section");
        if let Some(why) = missing_program(&section.program.command) {
            r.warn(keys::COMMAND.name, why);
        }
        return Some(section);
    };
    section.redis = redis_section(r, redis);
    section.batch_size = r.int_or(&keys::BATCH_SIZE, role.defaults().batch_size) as usize;
    section.notify = read_notify(r);
    let ctx = RoleContext {
        numprocs: section.program.numprocs,
        general,
    };
    section.role = role_settings(r, role, &ctx);
    let scopes = [Scope::Program, Scope::Role, Scope::Only(role)];
    r.unknown_keys(&scopes, &format!("a `loglines {role}` section"));
    Some(section)
}

/// Why the program a `process_*` command runs cannot be started on this machine, if it
/// cannot: supervisord would report it only as FATAL. A warning, since the section may run on
/// another machine.
fn missing_program(command: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let program = command.split_whitespace().next()?;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = Path::new(program);
        if !p.is_absolute() {
            return Some(format!("`{program}` is a relative path, which supervisord resolves against its own working folder; write it absolute"));
        }
        if !executable(p) {
            let what = if p.exists() {
                "is not an executable file"
            } else {
                "does not exist"
            };
            return Some(format!(
                "{program} {what} on this machine (fine if this section runs on another)"
            ));
        }
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(program))) {
        return None;
    }
    Some(format!("`{program}` is not a program found in PATH on this machine (fine if this section runs on another); write its absolute path"))
}

/// The role's own keys, read by the role's settings module.
fn role_settings(r: &mut Reader<'_>, role: RoleName, ctx: &RoleContext<'_>) -> Role {
    match role {
        RoleName::Watch => Role::Watch(watch::settings::read(r, ctx)),
        RoleName::Broker => Role::Broker(broker::read(r)),
        RoleName::Worker => Role::Worker(worker::settings::read(r)),
        RoleName::FileLog => Role::FileLog(filelog::read(r)),
    }
}

/// How supervisord runs the section (the 2010 defaults, each overridable).
fn read_program(
    r: &mut Reader<'_>,
    command: String,
    role: Option<RoleName>,
    kind: SectionKind,
) -> ProgramSettings {
    use keys::*;
    let in_worker_section = kind == SectionKind::Worker;
    let per_role = |key: &Key| key.per_role(role, in_worker_section);
    let numprocs = r.int_or(&NUMPROCS, per_role(&NUMPROCS)) as u32;
    let process_name = r.opt(&PROCESS_NAME);
    if let Some(n) = &process_name {
        // supervisord refuses a group whose processes would all have one name.
        if numprocs > 1 && !n.contains("%(process_num)") {
            r.err(PROCESS_NAME.name, format!("`{n}` names all {numprocs} processes alike; expected it to contain `%(process_num)`, e.g. `%(program_name)s_%(process_num)02d` (or leave it out)"));
        }
    }
    ProgramSettings {
        command,
        numprocs,
        process_name,
        stdout_logfile: r.path(&STDOUT_LOGFILE),
        user: r.opt(&USER),
        directory: r.path(&DIRECTORY),
        environment: r.opt(&ENVIRONMENT),
        autostart: r.boolean(&AUTOSTART),
        autorestart: r.choice(&AUTORESTART),
        startsecs: r.int(&STARTSECS) as u32,
        stopwaitsecs: r.int(&STOPWAITSECS) as u32,
        startretries: r.int(&STARTRETRIES) as u32,
        priority: r.int_or(&PRIORITY, per_role(&PRIORITY)) as u32,
        redirect_stderr: r.boolean(&REDIRECT_STDERR),
    }
}

/// The Redis section a role uses: `redis = test` or `redis = redis_test` names [redis_test].
fn redis_section(r: &mut Reader<'_>, redis: &BTreeMap<String, RedisSettings>) -> String {
    let Some(n) = r.opt(&keys::REDIS) else {
        return keys::REDIS.text_default().to_string();
    };
    let full = if n.starts_with("redis") {
        n
    } else {
        format!("redis_{n}")
    };
    if redis.contains_key(&full) {
        return full;
    }
    let known: Vec<String> = redis.keys().map(|k| format!("[{k}]")).collect();
    let known = known.join(", ");
    r.err(
        keys::REDIS.name,
        format!("names [{full}], which is not in the file; expected one of {known}"),
    );
    keys::REDIS.text_default().to_string()
}

fn read_notify(r: &mut Reader<'_>) -> NotifySettings {
    use keys::{NOTIFY_AFTER, NOTIFY_COMMAND, NOTIFY_INTERVAL, NOTIFY_QUEUE, NOTIFY_TIMEOUT};
    NotifySettings {
        command: r.opt(&NOTIFY_COMMAND),
        queue: r.queue(&NOTIFY_QUEUE),
        after: r.secs(&NOTIFY_AFTER),
        interval: r.secs(&NOTIFY_INTERVAL),
        timeout: r.secs(&NOTIFY_TIMEOUT),
    }
}

/// Reads the role from `command = loglines ROLE`, explaining 2010 program names.
fn role_of(r: &mut Reader<'_>, command: &str) -> Option<RoleName> {
    let key = keys::COMMAND.name;
    let words: Vec<&str> = command.split_whitespace().collect();
    let program = words
        .first()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .unwrap_or("");
    let expected =
        "expected `loglines watch`, `loglines broker`, `loglines worker` or `loglines filelog`";
    // The 2010 file runs unchanged: its programs are the roles that replace them.
    if let Some(role) = legacy::program_role(command) {
        r.warn(key, format!("`{command}` is a program of the 2010 tool, run as `loglines {role}`; write `command = loglines {role}` (`loglines migrate` rewrites the whole file)"));
        return Some(role);
    }
    // With a command it cannot use, the section is still checked as the role it most likely
    // is, so that one pass shows every problem (the error says so).
    let guess = likely_role(r, &words);
    let checked_as = match guess {
        Some(g) => format!("; its other keys were checked as those of a `loglines {g}` section"),
        None => String::new(),
    };
    if program != "loglines" {
        r.err(key, format!("`{command}` does not run loglines; {expected} (use a process_* section for other programs){checked_as}"));
        return guess;
    }
    let Some(role) = words.get(1).and_then(|w| RoleName::from_word(w)) else {
        r.err(
            key,
            format!("`{command}` names no role; {expected}{checked_as}"),
        );
        return guess;
    };
    if words.len() > 2 {
        r.err(
            key,
            format!("`{command}` has extra arguments; expected just `loglines {role}` (--config, --section and --process-num are added when it runs)"),
        );
    }
    Some(role)
}

/// The role a section whose command names none most likely is: a word of the command close to
/// a role's name (`loglines wacth`), else the one role whose own keys the section uses most
/// (`endpoint_url` is a worker's).
fn likely_role(r: &Reader<'_>, words: &[&str]) -> Option<RoleName> {
    let near = |w: &str| {
        RoleName::ALL
            .into_iter()
            .find(|role| strsim::levenshtein(w, role.as_str()) <= 2)
    };
    if let Some(role) = words.iter().find_map(|w| near(w)) {
        return Some(role);
    }
    let uses = |role: RoleName| {
        let own = keys::accepted(&[keys::Scope::Only(role)]);
        r.sec
            .entries
            .iter()
            .filter(|e| own.contains(&e.key.as_str()))
            .count()
    };
    let mut ranked: Vec<(usize, RoleName)> = RoleName::ALL
        .into_iter()
        .map(|role| (uses(role), role))
        .collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    match ranked.as_slice() {
        [(best, role), (next, _), ..] if *best > 0 && best > next => Some(*role),
        _ => None,
    }
}
