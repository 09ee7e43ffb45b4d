//! The keys of a `loglines worker` section (2010: pirus2.py), their defaults, and the typed
//! settings the worker runs with.

use crate::config::keys::{declare_keys, Default as D, Kind as K, ProgramDefaults, Scope};
use crate::config::legacy;
use crate::config::read::Reader;
use crate::config::Config;
use crate::plugin::{PluginLimits, PluginSpec};
use crate::roles::Role;
use crate::roles::RoleName;
use crate::util::shutdown::Shutdown;
use std::path::PathBuf;
use std::time::Duration;

const SCOPE: Scope = Scope::Only(RoleName::Worker);

declare_keys! { KEYS {
    LISTENTO = "listento", SCOPE, K::Queue, D::Required("a queue name such as `loglines`"), "queue to take messages from";
    REPOSITORY_PLUGIN = "repository_plugin", SCOPE, K::Path, D::Required("the Lua plugin file, e.g. `lua_plugins/irus.lua`"), "the Lua plugin file, e.g. `lua_plugins/irus.lua`";
    ENDPOINT_URL = "endpoint_url", SCOPE, K::Text, D::Required("the tracker URL, e.g. `https://irus.jisc.ac.uk/counter/test/`, or `-` for a dry run"), "the tracker, e.g. `https://irus.jisc.ac.uk/counter/test/`; `-` prints the URLs instead of sending";
    URL_VER = "url_ver", SCOPE, K::Text, D::Text("Z39.88-2004"), "OpenURL version sent as url_ver";
    RFR_ID = "rfr_id", SCOPE, K::Text, D::Unset("(none)"), "repository host name, offered to the plugin";
    SUCCESS = "success", SCOPE, K::Int { min: 100, max: 599 }, D::Int(200), "HTTP status that means the tracker accepted the event";
    TIMEOUT = "timeout", SCOPE, K::Secs { min: 0.001, max: 86_400.0 }, D::Secs(60.0), "seconds to wait for the tracker's answer";
    CONNECT_TIMEOUT = "connect_timeout", SCOPE, K::Secs { min: 0.001, max: 86_400.0 }, D::Secs(10.0), "seconds to wait for a connection to the tracker";
    PAUSEONFAIL = "pauseonfail", SCOPE, K::Secs { min: 1.0, max: 7.0 * 86_400.0 }, D::Secs(3600.0), "longest wait between retries while the tracker is unavailable (backoff starts at 1 s)";
    RATELIMIT = "ratelimit", SCOPE, K::Secs { min: 0.0, max: 3600.0 }, D::Secs(0.0), "minimum seconds between requests of one process (of all its requests in flight together)";
    CONCURRENCY = "concurrency", SCOPE, K::Int { min: 1, max: 256 }, D::Int(1), "requests one worker process keeps in flight, each on a keep-alive connection of its own: raise it for a tracker far away (at most `batch_size` are in flight)";
    SUCCESS_QUEUE = "success_queue", SCOPE, K::Queue, D::Unset("(none)"), "queue that receives each message the tracker accepted";
    OTHER_QUEUE = "other_queue", SCOPE, K::Queue, D::Unset("(none)"), "queue that receives each message that is not a usage event";
    DEBUG = "debug", SCOPE, K::Bool, D::Bool(false), "log every OpenURL at info level";
    METHOD = "method", SCOPE, K::Choice(&["get", "head"]), D::Text("GET"), "`GET` or `HEAD`";
    PLUGIN_MEMORY_MB = "plugin_memory_mb", SCOPE, K::Int { min: 4, max: 4096 }, D::Int(PluginLimits::DEFAULT.memory_mb as u64), "memory limit of the plugin's Lua VM, in MiB";
    PLUGIN_MAX_INSTRUCTIONS = "plugin_max_instructions", SCOPE, K::Int { min: 1000, max: u64::MAX >> 1 }, D::Int(PluginLimits::DEFAULT.max_instructions), "Lua instructions one plugin call may run before it is stopped";
    ROBOTS_LIST = "robots_list", SCOPE, K::Path, D::Unset("(bundled COUNTER list)"), "a newer COUNTER robots list (JSON or one pattern a line)";
} }

/// Three processes in a `worker_*` section, as the 2010 workers ran; batches small enough
/// that a stop hands back little (each message waits on the tracker).
pub const DEFAULTS: ProgramDefaults = ProgramDefaults {
    numprocs: 1,
    numprocs_in_worker_section: 3,
    priority: 200,
    batch_size: 100,
};

/// Where a worker sends its OpenURLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Url(String),
    /// `endpoint_url = -`: print the URLs on stdout instead of sending them.
    DryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    pub listento: String,
    pub plugin: PathBuf,
    pub endpoint: Endpoint,
    pub url_ver: String,
    pub rfr_id: Option<String>,
    pub success: u16,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pauseonfail: Duration,
    pub ratelimit: Duration,
    /// Requests in flight at once (`concurrency`).
    pub concurrency: usize,
    pub success_queue: Option<String>,
    pub other_queue: Option<String>,
    pub debug: bool,
    pub method: HttpMethod,
    pub limits: PluginLimits,
    /// A COUNTER robots list (JSON or one pattern a line) replacing the bundled one.
    pub robots_list: Option<PathBuf>,
}

/// Reads and checks a worker section's own keys.
pub fn read(r: &mut Reader<'_>) -> WorkerSettings {
    let listento = r.queue(&LISTENTO);
    let plugin = plugin_file(r);
    let endpoint = endpoint(r);
    let robots_list = r.path(&ROBOTS_LIST);
    if let Some(p) = robots_list.as_deref().filter(|p| !p.is_file()) {
        r.err(ROBOTS_LIST.name, format!("{} does not exist; expected a COUNTER robots list file (JSON or one pattern a line)", p.display()));
    }
    WorkerSettings {
        listento: listento.unwrap_or_default(),
        plugin: plugin.unwrap_or_default(),
        endpoint,
        url_ver: r.text(&URL_VER),
        rfr_id: r.opt(&RFR_ID),
        success: r.int(&SUCCESS) as u16,
        timeout: r.secs(&TIMEOUT),
        connect_timeout: r.secs(&CONNECT_TIMEOUT),
        pauseonfail: r.secs(&PAUSEONFAIL),
        ratelimit: r.secs(&RATELIMIT),
        concurrency: r.int(&CONCURRENCY) as usize,
        success_queue: r.queue(&SUCCESS_QUEUE),
        other_queue: r.queue(&OTHER_QUEUE),
        debug: r.boolean(&DEBUG),
        method: match r.choice(&METHOD).as_str() {
            "head" => HttpMethod::Head,
            _ => HttpMethod::Get,
        },
        limits: PluginLimits {
            memory_mb: r.int(&PLUGIN_MEMORY_MB) as usize,
            max_instructions: r.int(&PLUGIN_MAX_INSTRUCTIONS),
        },
        robots_list,
    }
}

/// `repository_plugin`: an existing `.lua` file (the 2010 Python plugins are gone). A 2010
/// plugin module with a shipped Lua port (`plugins.ora_utils`) is read as that port, with a
/// warning saying what to write.
fn plugin_file(r: &mut Reader<'_>) -> Option<PathBuf> {
    let mut p = r.required(&REPOSITORY_PLUGIN)?;
    if let Some(port) = legacy::plugin_for_module(&p) {
        r.warn(
            REPOSITORY_PLUGIN.name,
            format!("`{p}` is a 2010 Python plugin; loglines runs its Lua port, write `repository_plugin = {port}` (`loglines migrate` rewrites the whole file)"),
        );
        p = port.to_string();
    }
    if !p.ends_with(".lua") {
        r.err(
            REPOSITORY_PLUGIN.name,
            format!("`{p}` is not a Lua file; the Python plugins of 2010 are replaced by Lua plugins, expected e.g. `lua_plugins/irus.lua`"),
        );
        return None;
    }
    let path = r.resolve(&p);
    if !path.is_file() {
        r.err(
            REPOSITORY_PLUGIN.name,
            format!(
                "{} does not exist; expected a Lua plugin file (shipped ones are in lua_plugins/)",
                path.display()
            ),
        );
        return None;
    }
    Some(path)
}

/// `endpoint_url`: an http(s) URL, or `-` for a dry run. The scheme is matched without regard
/// to case, as URLs are (`HTTPS://` is written as `https://`), and the whole URL must be one
/// the worker's HTTP client can send to.
fn endpoint(r: &mut Reader<'_>) -> Endpoint {
    let url = match r.required(&ENDPOINT_URL) {
        Some(u) if u == "-" => return Endpoint::DryRun,
        Some(u) => u,
        None => return Endpoint::DryRun,
    };
    let scheme = ["http://", "https://"].into_iter().find(|s| {
        url.get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    });
    let Some(scheme) = scheme else {
        r.err(ENDPOINT_URL.name, format!("`{url}` is not an http(s) URL; expected e.g. `https://irus.jisc.ac.uk/counter/test/`, or `-` for a dry run"));
        return Endpoint::DryRun;
    };
    let url = format!("{scheme}{}", &url[scheme.len()..]);
    if legacy::is_pirus2_endpoint(&url) {
        r.warn(ENDPOINT_URL.name, legacy::pirus2_advice(&url));
    }
    match ureq::http::Uri::try_from(url.as_str()) {
        // With a scheme, a URL the http crate parses has a host.
        Ok(_) => Endpoint::Url(url),
        Err(e) => {
            r.err(ENDPOINT_URL.name, format!("`{url}` is not a valid URL ({e}); expected e.g. `https://irus.jisc.ac.uk/counter/test/`"));
            Endpoint::DryRun
        }
    }
}

/// The spec of the plugin a worker section of `cfg` names; None if `section` is not a worker
/// section.
pub fn plugin_spec(cfg: &Config, section: &str) -> Option<PluginSpec> {
    let s = cfg.section(section)?;
    let Role::Worker(w) = &s.role else {
        return None;
    };
    Some(PluginSpec {
        path: w.plugin.clone(),
        config: cfg.raw.clone(),
        worker_section: s.name.clone(),
        limits: w.limits,
        robots_list: w.robots_list.clone(),
        stop: Shutdown::new(),
    })
}
