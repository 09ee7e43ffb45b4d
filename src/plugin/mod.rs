//! The Lua plugin host: loads a repository plugin into a sandboxed VM and runs its two hooks on
//! each message, exactly as the 2010 contract defined them.
//!
//! A plugin defines `parseline(jmsg)` and `get_openurl_params(c, worker_section, pl)`, and may
//! define `init(c, worker_section)`, called once after loading so that a plugin can read and
//! check its settings before the first message (a bad setting then shows up in `loglines check`
//! instead of on the first log line). One [`Plugin`] is one VM; a worker thread owns one and
//! calls [`Plugin::process`] for each message. The hooks are looked up once, at load; `pl`
//! passes from `parseline` to `get_openurl_params` as a Lua value, never converted.
//!
//! When `parseline` returns `nil` (or `false`) the line is not eligible and
//! `get_openurl_params` is not called: that is the cheap way for a plugin to drop the many lines
//! that are not usage events. Either hook may return a second value, a short reason why the line
//! is not eligible, which `loglines test-plugin` shows.

mod config_object;
pub use config_object::SettingError;
mod convert;
pub mod library;
pub mod pattern;
mod raw;
pub(crate) mod sandbox;

pub use config_object::ConfigObject;

use crate::config::RawIni;
use crate::plugin::library::robots::{Robots, RobotsError};
use crate::util::shutdown::Shutdown;
use mlua::{AnyUserData, ChunkMode, Function, Lua, Value};
use sandbox::Budget;
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Sandbox limits for one plugin VM (a worker section's `plugin_memory_mb` and
/// `plugin_max_instructions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    pub memory_mb: usize,
    pub max_instructions: u64,
}

impl PluginLimits {
    /// The limits when the section sets none: room for a robots list and a metadata cache,
    /// and about a second of Lua per call on a slow machine.
    pub const DEFAULT: PluginLimits = PluginLimits {
        memory_mb: 64,
        max_instructions: 10_000_000,
    };
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits::DEFAULT
    }
}

/// Everything needed to load a plugin; kept by the plugin so that it can reload itself.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The plugin file.
    pub path: PathBuf,
    /// The configuration the `c` object shows (an empty one when there is no config file).
    pub config: Arc<RawIni>,
    /// The name of the worker section, passed to the hooks as `worker_section`.
    pub worker_section: String,
    pub limits: PluginLimits,
    /// A robots list replacing the bundled COUNTER list.
    pub robots_list: Option<PathBuf>,
    /// Ends the plugin's `http_get` look-ups in progress when triggered (a worker's stop);
    /// a fresh one, never triggered, elsewhere.
    pub stop: Shutdown,
}

impl PluginSpec {
    /// A spec with no configuration file: the plugin runs on its own defaults.
    pub fn standalone(path: &Path, worker_section: &str) -> PluginSpec {
        PluginSpec {
            path: path.to_path_buf(),
            config: Arc::new(RawIni::default()),
            worker_section: worker_section.to_string(),
            limits: PluginLimits::DEFAULT,
            robots_list: None,
            stop: Shutdown::new(),
        }
    }
}

/// What a message amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A usage event: the OpenURL parameters to send, in the order the plugin's table gave them
    /// (the OpenURL builder orders them).
    Eligible(Vec<(String, String)>),
    /// Not a usage event (not a download, a robot, ...).
    NotEligible,
}

/// The outcome of one message with what led to it, for `loglines test-plugin`. Computing it
/// renders `pl` as JSON, which costs time; workers use [`Plugin::process`].
#[derive(Debug)]
pub struct Explained {
    /// What `parseline` returned, as JSON (`null` for nil); None when `parseline` raised;
    /// `Some(Err(why))` when the value cannot be shown as JSON (a function in it, ...).
    pub parsed: Option<Result<serde_json::Value, String>>,
    /// The outcome, or the error either hook raised.
    pub outcome: Result<Outcome, PluginError>,
    /// The reason a hook gave (its second return value) for a line that is not eligible.
    pub reason: Option<String>,
}

/// Which part of the plugin was running when something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The file's top-level code.
    Load,
    Init,
    Parseline,
    GetOpenurlParams,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Load => "the top-level code",
            Stage::Init => "init",
            Stage::Parseline => "parseline",
            Stage::GetOpenurlParams => "get_openurl_params",
        })
    }
}

/// Why a plugin could not be loaded or could not handle a message.
#[derive(Debug)]
pub enum PluginError {
    /// The plugin file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The robots list named by `robots_list` could not be loaded.
    Robots(RobotsError),
    /// The file is not valid Lua.
    Syntax { message: String },
    /// A hook the contract requires is missing (or is not a function).
    MissingHook { plugin: String, hook: &'static str },
    /// Lua code raised an error.
    Lua { stage: Stage, message: String },
    /// The plugin found one of its settings wrong (`c:error_at`): reported at the key's line.
    Setting(config_object::SettingError),
    /// A call ran more instructions than `plugin_max_instructions`.
    InstructionLimit {
        stage: Stage,
        plugin: String,
        limit: u64,
    },
    /// The VM ran out of `plugin_memory_mb`.
    MemoryLimit {
        stage: Stage,
        plugin: String,
        limit_mb: usize,
    },
    /// A hook returned something that breaks the conversion rules.
    BadResult {
        stage: Stage,
        plugin: String,
        message: String,
    },
    /// The VM itself could not be set up (an internal problem, not the plugin's).
    Setup(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Read { path, source } => write!(
                f,
                "cannot read plugin {}: {source}; check repository_plugin",
                path.display()
            ),
            PluginError::Robots(e) => write!(f, "{e}"),
            PluginError::Syntax { message } => write!(f, "{message}; fix the Lua syntax"),
            PluginError::MissingHook { plugin, hook } => write!(
                f,
                "{plugin} does not define function {hook}; a plugin must define parseline(jmsg) and get_openurl_params(c, worker_section, pl)"
            ),
            PluginError::Lua { stage, message } => write!(f, "{message} (in {stage})"),
            PluginError::Setting(e) => write!(f, "{e}"),
            PluginError::InstructionLimit {
                stage,
                plugin,
                limit,
            } => write!(
                f,
                "{plugin}: {stage} ran more than {limit} Lua instructions (or {} s of CPU time) and was stopped; look for an endless loop or a string pattern that backtracks (each matching step counts as an instruction), or raise plugin_max_instructions",
                sandbox::MAX_CALL_CPU.as_secs()
            ),
            PluginError::MemoryLimit {
                stage,
                plugin,
                limit_mb,
            } => write!(
                f,
                "{plugin}: {stage} ran out of memory (limit {limit_mb} MiB); look for a table that keeps growing, or raise plugin_memory_mb"
            ),
            PluginError::BadResult {
                stage,
                plugin,
                message,
            } => write!(f, "{plugin}: {stage} {message}"),
            PluginError::Setup(m) => write!(f, "cannot set up the Lua VM: {m}"),
        }
    }
}

impl std::error::Error for PluginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PluginError::Read { source, .. } => Some(source),
            PluginError::Robots(e) => Some(e),
            _ => None,
        }
    }
}

/// A file's identity for change detection: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// How often [`Plugin::reload_if_changed`] looks at the disk, at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The files a plugin is made of, each with the stamp it had when read.
type Files = Rc<RefCell<Vec<(PathBuf, Stamp)>>>;

/// A loaded plugin: one Lua VM with its hooks.
pub struct Plugin {
    spec: PluginSpec,
    /// The name errors use: the path as the administrator wrote it, when possible.
    display: String,
    name: String,
    lua: Lua,
    parseline: Function,
    get_params: Function,
    c: AnyUserData,
    section: mlua::String,
    budget: Rc<Budget>,
    /// Every file the plugin consists of (itself and what it required), with its stamp at load.
    files: Files,
    last_check: Instant,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.spec.path)
            .field("worker_section", &self.spec.worker_section)
            .finish()
    }
}

/// A short, readable name for a path: relative to the current folder when it is inside it,
/// otherwise relative to the config file's folder, otherwise as given.
fn display_path(path: &Path, config: &RawIni) -> String {
    let cwd = std::env::current_dir().ok();
    let cfg_dir = config.path.parent().map(Path::to_path_buf);
    for base in [cwd, cfg_dir].into_iter().flatten() {
        if let Ok(rel) = path.strip_prefix(&base) {
            if !rel.as_os_str().is_empty() {
                return rel.display().to_string();
            }
        }
    }
    path.display().to_string()
}

/// A failure to set up the VM: not the plugin's fault, but shown the same way.
fn setup_error(e: mlua::Error) -> PluginError {
    PluginError::Setup(sandbox::error_message(&e))
}

fn missing_hook(display: &str, hook: &'static str) -> PluginError {
    PluginError::MissingHook {
        plugin: display.to_string(),
        hook,
    }
}

/// A sandboxed VM with the `loglines` library installed, and its instruction budget.
fn new_vm(spec: &PluginSpec, name: &str) -> Result<(Lua, Rc<Budget>), PluginError> {
    let robots = robots_for(spec)?;
    let (lua, budget) = sandbox::new_vm(spec.limits.memory_mb, spec.limits.max_instructions)
        .map_err(setup_error)?;
    let ctx = library::LibraryContext {
        name: name.to_string(),
        robots,
        stop: spec.stop.clone(),
    };
    library::install(&lua, ctx).map_err(setup_error)?;
    Ok((lua, budget))
}

/// Installs `require` for modules beside the plugin, and returns the list of files the plugin
/// is made of (the plugin, then every module it requires), each with the stamp it was read
/// with, so that a change to any of them reloads the plugin.
fn install_require(lua: &Lua, spec: &PluginSpec, display: &str) -> Result<Files, PluginError> {
    let files = Rc::new(RefCell::new(vec![(spec.path.clone(), stamp(&spec.path))]));
    let dir = spec
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let display_dir = Path::new(display)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let seen = files.clone();
    let record = Rc::new(move |p: &Path| seen.borrow_mut().push((p.to_path_buf(), stamp(p))));
    sandbox::install_require(lua, &dir, &display_dir, record).map_err(setup_error)?;
    Ok(files)
}

/// The hooks `parseline`, `get_openurl_params` and `init`, each None when the plugin does not
/// define it; an error when a global of that name is not a function.
fn hooks(lua: &Lua, display: &str) -> Result<[Option<Function>; 3], PluginError> {
    let g = lua.globals();
    let hook = |name: &'static str| match g.get::<Value>(name).map_err(setup_error)? {
        Value::Function(f) => Ok(Some(f)),
        Value::Nil => Ok(None),
        _ => Err(missing_hook(display, name)),
    };
    Ok([
        hook("parseline")?,
        hook("get_openurl_params")?,
        hook("init")?,
    ])
}
/// The robots list for a spec; the bundled one is compiled once per process.
fn robots_for(spec: &PluginSpec) -> Result<Arc<Robots>, PluginError> {
    match &spec.robots_list {
        None => Ok(Arc::new(Robots::bundled().clone())),
        Some(p) => Robots::from_file(p)
            .map(Arc::new)
            .map_err(PluginError::Robots),
    }
}

impl Plugin {
    /// Loads the plugin: reads the file, sets up the sandbox and the library, runs the file's
    /// top-level code, finds the hooks, and calls `init` when the plugin defines it.
    pub fn load(spec: PluginSpec) -> Result<Plugin, PluginError> {
        let src = std::fs::read(&spec.path).map_err(|source| PluginError::Read {
            path: spec.path.clone(),
            source,
        })?;
        let display = display_path(&spec.path, &spec.config);
        let name = spec
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_string());
        let (lua, budget) = new_vm(&spec, &name)?;
        let files = install_require(&lua, &spec, &display)?;

        let chunk = lua
            .load(&src[..])
            .set_name(format!("@{display}"))
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(|e| PluginError::Syntax {
                message: sandbox::error_message(&e),
            })?;
        budget.reset();
        chunk
            .call::<()>(())
            .map_err(|e| classify(&e, Stage::Load, &display, &budget, spec.limits))?;

        let [parseline, get_params, init] = hooks(&lua, &display)?;
        let (parseline, get_params) = match (parseline, get_params) {
            (Some(p), Some(g)) => (p, g),
            (None, _) => return Err(missing_hook(&display, "parseline")),
            (_, None) => return Err(missing_hook(&display, "get_openurl_params")),
        };
        let c = lua
            .create_userdata(ConfigObject::new(spec.config.clone()))
            .map_err(setup_error)?;
        let section = lua
            .create_string(&spec.worker_section)
            .map_err(setup_error)?;
        if let Some(init) = init {
            budget.reset();
            init.call::<()>((&c, &section))
                .map_err(|e| classify(&e, Stage::Init, &display, &budget, spec.limits))?;
        }
        Ok(Plugin {
            spec,
            display,
            name,
            lua,
            parseline,
            get_params,
            c,
            section,
            budget,
            files,
            last_check: Instant::now(),
        })
    }

    /// The plugin's name: its file name without `.lua` (also the name of its settings section
    /// by convention, and the log target of `loglines.log`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path as errors show it.
    pub fn display_path(&self) -> &str {
        &self.display
    }

    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// Runs both hooks on one message (the JSON text a worker takes from its queue).
    pub fn process(&mut self, jmsg: &str) -> Result<Outcome, PluginError> {
        self.budget.reset();
        let msg = sandbox::without_memory_limit(&self.lua, || self.lua.create_string(jmsg))
            .map_err(|e| self.fail(&e, Stage::Parseline))?;
        let pl: Value = self
            .parseline
            .call(msg)
            .map_err(|e| self.fail(&e, Stage::Parseline))?;
        if matches!(pl, Value::Nil | Value::Boolean(false)) {
            return Ok(Outcome::NotEligible);
        }
        let result: Value = self
            .get_params
            .call((&self.c, &self.section, pl))
            .map_err(|e| self.fail(&e, Stage::GetOpenurlParams))?;
        self.outcome(&result)
    }

    /// Like [`Plugin::process`], but also renders what `parseline` returned and keeps the
    /// reason a hook gave for a line that is not eligible.
    pub fn explain(&mut self, jmsg: &str) -> Explained {
        self.budget.reset();
        let first = sandbox::without_memory_limit(&self.lua, || self.lua.create_string(jmsg))
            .and_then(|msg| self.parseline.call::<(Value, Value)>(msg));
        let (pl, why) = match first {
            Ok(v) => v,
            Err(e) => {
                return Explained {
                    parsed: None,
                    outcome: Err(self.fail(&e, Stage::Parseline)),
                    reason: None,
                }
            }
        };
        let parsed = Some(convert::lua_to_json(&pl));
        if matches!(pl, Value::Nil | Value::Boolean(false)) {
            return Explained {
                parsed,
                outcome: Ok(Outcome::NotEligible),
                reason: Some(reason_text(&why).unwrap_or_else(|| "parseline returned nil".into())),
            };
        }
        // Rendering ran outside the budget's purpose; the second hook gets a fresh one, as it
        // would in `process` where nothing runs in between.
        self.budget.reset();
        match self
            .get_params
            .call::<(Value, Value)>((&self.c, &self.section, pl))
        {
            Err(e) => Explained {
                parsed,
                outcome: Err(self.fail(&e, Stage::GetOpenurlParams)),
                reason: None,
            },
            Ok((result, why)) => {
                let outcome = self.outcome(&result);
                let reason = match &outcome {
                    Ok(Outcome::NotEligible) => Some(
                        reason_text(&why)
                            .unwrap_or_else(|| "get_openurl_params returned no parameters".into()),
                    ),
                    _ => None,
                };
                Explained {
                    parsed,
                    outcome,
                    reason,
                }
            }
        }
    }

    fn outcome(&self, result: &Value) -> Result<Outcome, PluginError> {
        match convert::params_from_lua(result) {
            Ok(Some(params)) => Ok(Outcome::Eligible(params)),
            Ok(None) => Ok(Outcome::NotEligible),
            Err(message) => Err(PluginError::BadResult {
                stage: Stage::GetOpenurlParams,
                plugin: self.display.clone(),
                message,
            }),
        }
    }

    fn fail(&self, e: &mlua::Error, stage: Stage) -> PluginError {
        classify(e, stage, &self.display, &self.budget, self.spec.limits)
    }

    /// Whether the plugin file, or a module it required, changed on disk since it was loaded.
    pub fn modified_since_load(&self) -> bool {
        self.files
            .borrow()
            .iter()
            .any(|(path, at_load)| stamp(path) != *at_load)
    }

    /// Reloads the plugin when its files changed, looking at the disk at most once a second.
    /// On success the new plugin replaces this one and `Ok(true)` is returned. When the new
    /// version fails to load, this plugin stays as it was (the worker keeps running on the old
    /// code), the error is returned, and the same broken version is not tried again: the next
    /// attempt happens when the files change once more.
    pub fn reload_if_changed(&mut self) -> Result<bool, PluginError> {
        if self.last_check.elapsed() < RELOAD_CHECK_INTERVAL {
            return Ok(false);
        }
        self.last_check = Instant::now();
        if !self.modified_since_load() {
            return Ok(false);
        }
        match Plugin::load(self.spec.clone()) {
            Ok(new) => {
                *self = new;
                Ok(true)
            }
            Err(e) => {
                // Remember the broken version's stamps so it is not loaded again and again.
                for (path, at) in self.files.borrow_mut().iter_mut() {
                    *at = stamp(path);
                }
                Err(e)
            }
        }
    }

    /// Forces the next [`Plugin::reload_if_changed`] to look at the disk (tests, and a worker
    /// told to reload by a signal).
    pub fn check_now(&mut self) {
        self.last_check = Instant::now() - RELOAD_CHECK_INTERVAL;
    }

    /// Memory the VM uses now, in bytes.
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }
}

fn reason_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string_lossy()),
        Value::Nil => None,
        other => other.to_string().ok(),
    }
}

fn classify(
    e: &mlua::Error,
    stage: Stage,
    plugin: &str,
    budget: &Budget,
    limits: PluginLimits,
) -> PluginError {
    if budget.exceeded() {
        return PluginError::InstructionLimit {
            stage,
            plugin: plugin.to_string(),
            limit: limits.max_instructions,
        };
    }
    if sandbox::is_memory_error(e) {
        return PluginError::MemoryLimit {
            stage,
            plugin: plugin.to_string(),
            limit_mb: limits.memory_mb,
        };
    }
    if let Some(setting) = config_object::setting_error(e) {
        return PluginError::Setting(setting.clone());
    }
    PluginError::Lua {
        stage,
        message: sandbox::error_message(e),
    }
}
