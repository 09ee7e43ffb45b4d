//! The Lua VM a plugin runs in: which standard libraries it gets, `require` limited to the
//! plugin's folder, and the memory and per-call instruction limits.
//!
//! What a plugin can reach is decided here and nowhere else. It gets `string`, `table`, `math`,
//! `utf8`, `coroutine`, the harmless part of the base library, and `os.time`/`os.date`/
//! `os.clock`. It does not get `io`, the rest of `os`, `debug`, `package` (so no C modules),
//! `dofile`/`loadfile`, or a `load` that accepts bytecode (a crafted bytecode chunk can corrupt
//! the VM; text chunks cannot).

use super::raw::{self, Counted};
use mlua::{ChunkMode, Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Instructions between two checks of the budget. The count hook costs one call into Rust per
/// step, so a larger step is cheaper; a smaller one stops a runaway loop more precisely. 1000
/// keeps the overhead well under 1% and the overshoot negligible against any useful limit.
const STEP: u32 = 1000;

/// CPU time one plugin call may use, whatever its instruction count: instructions that copy
/// long strings, or C functions called in a loop, do far more work than an instruction's worth.
pub(crate) const MAX_CALL_CPU: Duration = Duration::from_secs(10);

/// The count hook reads the thread's CPU clock (a system call) every this many of its calls.
const CPU_CHECK_EVERY: u64 = 10;

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The instruction budget of the call in progress, shared between the host and the count hook.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    used: Cell<u64>,
    limit: Cell<u64>,
    /// The thread's CPU time when the call was first looked at by the clock check (not at its
    /// start: most calls end before the first check, and never read the clock).
    cpu_start: Cell<Option<Duration>>,
    /// Set when the limit was hit, so that a plugin that catches the error with `pcall` gets it
    /// raised again (see `PRELUDE`), and the host can report it as a limit, not a plugin bug.
    exceeded: Cell<bool>,
}

impl Budget {
    /// Starts a new call with a fresh budget.
    pub(crate) fn reset(&self) {
        self.used.set(0);
        self.exceeded.set(false);
        self.cpu_start.set(None);
    }

    /// Whether the call in progress has used more than [`MAX_CALL_CPU`] of CPU time (the bound
    /// on work that instructions do not measure: a loop of `..` on long strings does
    /// megabytes of copying per instruction). Marks the limit as reached if so.
    fn over_cpu(&self) -> bool {
        let now = thread_cpu();
        match self.cpu_start.get() {
            None => {
                self.cpu_start.set(Some(now));
                false
            }
            Some(start) if now.saturating_sub(start) > MAX_CALL_CPU => {
                self.used.set(self.limit.get().saturating_add(1));
                self.exceeded.set(true);
                true
            }
            Some(_) => false,
        }
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit.get()
    }

    /// What the call in progress may still run.
    pub(crate) fn left(&self) -> u64 {
        self.limit.get().saturating_sub(self.used.get())
    }

    /// Counts `n` instructions (or their worth of work in C); true when that passes the limit,
    /// which is then marked as reached.
    pub(crate) fn add(&self, n: u64) -> bool {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        if used > self.limit.get() {
            self.exceeded.set(true);
        }
        self.exceeded.get()
    }
}

/// The message of the error a runaway plugin gets. The host recognises the limit through
/// [`Budget::exceeded`], not through this text.
pub(crate) fn limit_message(limit: u64) -> String {
    LimitMessage(limit).to_string()
}

/// [`limit_message`] without an allocation, for code that may not own anything (raw.rs).
pub(crate) struct LimitMessage(pub u64);

impl std::fmt::Display for LimitMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "instruction limit reached: one call may run at most {} Lua instructions (and {} s of CPU time)",
            self.0,
            MAX_CALL_CPU.as_secs()
        )
    }
}

/// The chunk name of [`PRELUDE`], as tracebacks show it.
const SANDBOX_CHUNK: &str = "loglines sandbox";

/// Lua code run once in every new VM, after the Rust-side set-up. It receives the real `pcall`,
/// `xpcall`, `coroutine.resume`, `coroutine.close` and `load` and a guard function, and replaces
/// them with versions that keep the sandbox's promises:
/// - an instruction-limit error cannot be swallowed: after a protected call the guard raises it
///   again while the budget is exhausted, up to the host;
/// - `load` compiles text only, whatever mode the plugin asks for.
const PRELUDE: &str = r##"
local guard, rawpcall, rawxpcall, rawresume, rawclose, rawload = ...
pcall = function(...) return guard(rawpcall(...)) end
xpcall = function(...) return guard(rawxpcall(...)) end
coroutine.resume = function(...) return guard(rawresume(...)) end
coroutine.close = function(...) return guard(rawclose(...)) end
load = function(chunk, name, mode, ...)
  if mode ~= nil and mode ~= "t" then
    error("load: only text chunks can be loaded in a plugin (mode \"t\"); bytecode is not allowed", 2)
  end
  if select("#", ...) > 0 then
    return rawload(chunk, name, "t", ...)
  end
  return rawload(chunk, name, "t")
end
"##;

/// Creates a sandboxed VM with the given limits. Returns the VM and the budget the host resets
/// before each call.
pub(crate) fn new_vm(memory_mb: usize, max_instructions: u64) -> mlua::Result<(Lua, Rc<Budget>)> {
    let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
    // OS is loaded only to take three functions from it; the table itself is replaced below.
    let lua = Lua::new_with(libs | StdLib::OS, LuaOptions::default())?;
    let g = lua.globals();

    let os: Table = g.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["time", "date", "clock"] {
        safe_os.set(name, os.get::<Function>(name)?)?;
    }
    g.set("os", safe_os)?;

    // Base-library functions that reach the file system or defeat the limits.
    for name in ["dofile", "loadfile"] {
        g.set(name, Value::Nil)?;
    }
    // Bytecode is useless without a binary `load`, and refusing to produce it makes the rule
    // plain.
    let string: Table = g.get("string")?;
    string.set("dump", Value::Nil)?;
    // A bounded `collectgarbage`: reading memory use and collecting are harmless; stopping the
    // collector or changing its mode would let memory grow to the limit for no reason.
    g.set(
        "collectgarbage",
        lua.create_function(|lua, (opt,): (Option<String>,)| {
            match opt.as_deref().unwrap_or("collect") {
                "count" => Ok(Value::Number(lua.used_memory() as f64 / 1024.0)),
                "collect" => {
                    lua.gc_collect()?;
                    Ok(Value::Integer(0))
                }
                other => Err(mlua::Error::runtime(format!(
                    "collectgarbage(\"{other}\") is not allowed in a plugin; only \"count\" and \"collect\" are"
                ))),
            }
        })?,
    )?;

    // A `__gc` finalizer runs when the collector decides, outside any hook call's budget: a
    // looping one would spin the worker for good. Lua marks a table for finalization only if
    // its metatable has `__gc` when `setmetatable` is called, so refusing it there is enough.
    lua.load(
        r#"
local raw_setmetatable, rawget, error, type = setmetatable, rawget, error, type
setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc finalizers are not allowed in a plugin (they would run outside its instruction limit)", 2)
  end
  return raw_setmetatable(t, mt)
end
"#,
    )
    .set_name("=loglines sandbox")
    .exec()?;

    let budget = Rc::new(Budget::default());
    budget.limit.set(max_instructions);
    install_hook(&lua, &budget)?;

    install_counted_library(&lua, &budget)?;

    let coroutine: Table = g.get("coroutine")?;
    let guard_budget = budget.clone();
    let guard = lua.create_function(move |lua, mut args: mlua::MultiValue| {
        if guard_budget.exceeded() {
            return Err(mlua::Error::runtime(limit_message(guard_budget.limit())));
        }
        // An error raised by a Rust function reaches Lua as an error object; a plugin that
        // catches it expects the message text, as with errors raised in Lua.
        if let (Some(Value::Boolean(false)), Some(Value::Error(e))) = (args.front(), args.get(1)) {
            let text = lua.create_string(error_message(e))?;
            args[1] = Value::String(text);
        }
        Ok(args)
    })?;
    lua.load(PRELUDE)
        .set_name(format!("={SANDBOX_CHUNK}"))
        .set_mode(ChunkMode::Text)
        .call::<()>((
            guard,
            g.get::<Function>("pcall")?,
            g.get::<Function>("xpcall")?,
            coroutine.get::<Function>("resume")?,
            coroutine.get::<Function>("close")?,
            g.get::<Function>("load")?,
        ))?;

    // The limit covers the plugin, not the libraries loaded above.
    lua.set_memory_limit(memory_mb.saturating_mul(1024 * 1024))?;
    Ok((lua, budget))
}

/// Runs `f` with the VM's memory limit lifted, for host code that builds a bounded number of
/// Lua values (one log line's fields, one message).
///
/// Why: while a limit is set, mlua makes every string it pushes and every table field it sets
/// a protected call, so that an allocation failing at the limit can unwind safely. For the
/// dozen values a library function returns per log line that protection costs more than the
/// rest of the work together. What is allocated meanwhile is bounded by the input (one line),
/// and the limit applies again to everything the plugin's own code does, so a runaway plugin is
/// still stopped.
pub(crate) fn without_memory_limit<R>(
    lua: &Lua,
    f: impl FnOnce() -> mlua::Result<R>,
) -> mlua::Result<R> {
    struct Restore<'a>(&'a Lua, usize);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            // The VM was created with memory control, so setting the limit cannot fail.
            let _ = self.0.set_memory_limit(self.1);
        }
    }
    let previous = lua.set_memory_limit(0)?;
    let _restore = Restore(lua, previous);
    f()
}

/// The library functions whose loops run in C, where the count hook does not fire, each put
/// behind a charge to the instruction budget (see [`raw::Counted`]): a backtracking pattern or
/// a loop over a length the plugin made up is stopped like any runaway Lua loop.
fn install_counted_library(lua: &Lua, budget: &Rc<Budget>) -> mlua::Result<()> {
    // The wrappers hold a plain pointer to the budget: the VM keeps it alive as long as itself.
    lua.set_app_data(budget.clone());
    let g = lua.globals();
    for (lib, name, kind) in [
        ("string", "find", Counted::Find),
        ("string", "match", Counted::Match),
        ("string", "gmatch", Counted::Gmatch),
        ("string", "gsub", Counted::Gsub),
        ("string", "rep", Counted::Rep),
        ("table", "insert", Counted::Insert),
        ("table", "remove", Counted::Remove),
        ("table", "move", Counted::Move),
    ] {
        let t: Table = g.get(lib)?;
        let original: Function = t.get(name)?;
        t.set(name, raw::counted(lua, original, kind, Rc::as_ptr(budget))?)?;
    }
    Ok(())
}

/// Installs the count hook that enforces the instruction budget. It is a global hook so that
/// coroutines the plugin creates are counted too: Lua copies the hook into new threads, and only
/// the global variant finds its callback from any thread.
fn install_hook(lua: &Lua, budget: &Rc<Budget>) -> mlua::Result<()> {
    let step = STEP.min(u32::try_from(budget.limit().max(1)).unwrap_or(STEP));
    let b = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(step),
        move |_, _| {
            let over = b.add(u64::from(step))
                || ((b.used.get() / u64::from(step)).is_multiple_of(CPU_CHECK_EVERY)
                    && b.over_cpu());
            if over {
                return Err(mlua::Error::runtime(limit_message(b.limit())));
            }
            Ok(VmState::Continue)
        },
    )
}

/// Installs `require`, which finds `NAME.lua` (dots for subfolders) in `dir` only. Modules are
/// loaded once and kept, like Lua's own `package.loaded`. `on_load` hears about every file read,
/// so the host can reload the plugin when one of them changes.
pub(crate) fn install_require(
    lua: &Lua,
    dir: &Path,
    display_dir: &str,
    on_load: Rc<dyn Fn(&Path)>,
) -> mlua::Result<()> {
    let loaded = lua.create_table()?;
    let dir = dir.to_path_buf();
    let display_dir = display_dir.to_string();
    let require = lua.create_function(move |lua, name: String| {
        if let Some(v) = loaded.raw_get::<Option<Value>>(name.as_str())? {
            if v == Value::Boolean(false) {
                return Err(mlua::Error::runtime(format!(
                    "require(\"{name}\"): the module requires itself (directly or through another module); break the cycle"
                )));
            }
            return Ok(v);
        }
        let rel = module_path(&name).ok_or_else(|| {
            mlua::Error::runtime(format!(
                "require(\"{name}\"): not a module name; plugins can only require Lua files next to them, by a name like \"mylib\" or \"sub.mylib\""
            ))
        })?;
        let path: PathBuf = dir.join(&rel);
        let shown = if display_dir.is_empty() {
            rel.clone()
        } else {
            format!("{display_dir}/{rel}")
        };
        // The name cannot leave the folder, but a symbolic link in it could: where the file
        // really is must be inside the folder too.
        if let (Ok(real), Ok(real_dir)) = (path.canonicalize(), dir.canonicalize()) {
            if !real.starts_with(&real_dir) {
                return Err(mlua::Error::runtime(format!(
                    "require(\"{name}\"): {shown} is a link to {}, outside the plugin's folder; plugins can only require .lua files in their own folder",
                    real.display()
                )));
            }
        }
        let src = std::fs::read(&path).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                format!("there is no {shown}")
            } else {
                format!("cannot read {shown}: {e}")
            };
            mlua::Error::runtime(format!(
                "require(\"{name}\"): {why}; plugins can only require .lua files in their own folder"
            ))
        })?;
        on_load(&path);
        loaded.raw_set(name.as_str(), false)?;
        let result = lua
            .load(src)
            .set_name(format!("@{shown}"))
            .set_mode(ChunkMode::Text)
            .call::<Value>(name.as_str());
        let v = match result {
            Ok(Value::Nil) => Value::Boolean(true),
            Ok(v) => v,
            Err(e) => {
                loaded.raw_set(name.as_str(), Value::Nil)?;
                return Err(e);
            }
        };
        loaded.raw_set(name.as_str(), &v)?;
        Ok(v)
    })?;
    lua.globals().set("require", require)
}

/// `sub.mylib` -> `sub/mylib.lua`; None for anything that could leave the folder or is not a
/// plain name.
fn module_path(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    ok.then(|| format!("{}.lua", name.replace('.', "/")))
}

/// The message of a Lua error as an administrator should read it: `file:line: what`, without
/// mlua's wrapping and without the stack traceback.
pub(crate) fn error_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => strip_traceback(m).to_string(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::MemoryError(m) => strip_traceback(m).to_string(),
        mlua::Error::CallbackError { traceback, cause } => {
            let inner = error_message(cause);
            // Errors raised by Rust functions carry no position; the traceback tells where the
            // plugin called them from.
            match caller_position(traceback) {
                Some(pos) if !inner.starts_with(&pos) => format!("{pos}: {inner}"),
                _ => inner,
            }
        }
        mlua::Error::WithContext { context, cause } => {
            format!("{context}: {}", error_message(cause))
        }
        mlua::Error::BadArgument {
            to,
            pos,
            name,
            cause,
            ..
        } => {
            let func = to.as_deref().unwrap_or("a function");
            let arg = name.clone().unwrap_or_else(|| format!("#{pos}"));
            format!("bad argument {arg} to {func}: {}", error_message(cause))
        }
        other => strip_traceback(&other.to_string()).to_string(),
    }
}

fn strip_traceback(m: &str) -> &str {
    m.split("\nstack traceback:").next().unwrap_or(m).trim_end()
}

/// The first `file:line` of Lua code in a traceback (lines of `[C]` frames are skipped).
fn caller_position(traceback: &str) -> Option<String> {
    traceback.lines().skip(1).find_map(|l| {
        let l = l.trim_start();
        // C functions, and the sandbox's own wrappers (pcall, load), are not where the plugin
        // made the call.
        if l.starts_with('[') || l.starts_with(SANDBOX_CHUNK) {
            return None;
        }
        let mut parts = l.splitn(3, ':');
        let file = parts.next()?;
        let line = parts.next()?;
        (!file.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) && !line.is_empty())
            .then(|| format!("{file}:{line}"))
    })
}

/// Whether an error (or what caused it) is the VM running out of its memory limit.
pub(crate) fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        mlua::Error::BadArgument { cause, .. } => is_memory_error(cause),
        mlua::Error::RuntimeError(m) => m.starts_with("not enough memory"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates each expression in `vm`, giving what it returned or the error it raised, as
    /// text.
    fn outcomes(vm: &Lua, exprs: &[&str]) -> Vec<String> {
        let show = vm
            .load(
                r#"local f = ...
                local r = table.pack(pcall(f))
                for i = 1, r.n do r[i] = tostring(r[i]) end
                return table.concat(r, "|", 1, r.n)"#,
            )
            .into_function()
            .unwrap();
        exprs
            .iter()
            .map(|e| {
                let f = vm.load(*e).set_name("=t").into_function().unwrap();
                show.call::<String>(f).unwrap()
            })
            .collect()
    }

    /// The counted wrappers change what a call costs, never what it returns or raises.
    #[test]
    fn counted_library_functions_answer_as_lua_does() {
        let exprs = [
            r#"return string.find("hello world", "o w")"#,
            r#"return string.find("hello world", "(o)(%s)()")"#,
            r#"return string.find("a.b", ".", 1, true)"#,
            r#"return string.find("abc", "b", -1)"#,
            r#"return string.find("abc", "", 10)"#,
            r#"return ("x=1, y=22"):find("(%a)=(%d+)", 3)"#,
            r#"return string.match("key = value", "^(%w+)%s*=%s*(.-)%s*$")"#,
            r#"return string.match("[[x]]", "%b[]")"#,
            r#"return string.match("THE (quick) fox", "%f[%a]%a+", 5)"#,
            r#"return string.match("abcabc", "(a(b)c)%1")"#,
            r#"return string.match(12345, "3(%d)")"#,
            r#"local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, ";")"#,
            r#"local t = {} for w in ("one two  three"):gmatch("%a*") do t[#t+1] = "<" .. w .. ">" end return table.concat(t)"#,
            r#"return string.gsub("hello world", "o", "0")"#,
            r#"return string.gsub("hello world", "(%w+)", "<%1>", 1)"#,
            r#"return string.gsub("abc", "", "-")"#,
            r#"return string.gsub("$1 and $2", "%$(%d)", {["1"] = "one"})"#,
            r#"return string.gsub("x y", "%w", function(c) return c:upper() end)"#,
            r#"return string.gsub("^^a", "^%^", "")"#,
            r#"return string.rep("ab", 3, ",")"#,
            r#"return string.rep("", 5)"#,
            r#"return string.rep("x", 0)"#,
            r#"local t = {1, 2, 3} table.insert(t, 1, 0) table.insert(t, 9) return table.concat(t, ",")"#,
            r#"local t = {1, 2, 3} return table.remove(t, 1), table.remove(t), table.concat(t, ",")"#,
            r#"return table.concat(table.move({1, 2, 3}, 1, 3, 2), ",")"#,
            r#"return table.concat(table.move({1, 2, 3}, 1, 2, 1, {9, 9, 9}), ",")"#,
            // Errors are Lua's own.
            r#"return string.find(nil, "x")"#,
            r#"return string.find("x", "[a")"#,
            r#"return string.match("x", "%")"#,
            r#"return string.gsub("x", "(", "")"#,
            r#"return string.match("x", "%1")"#,
            r#"return string.find("x", "x", "y")"#,
            r#"return string.rep("x", "many")"#,
            r#"return table.insert({}, 5, 1)"#,
            r#"return table.insert({}, 1, 2, 3)"#,
            r#"return table.move({}, 1, 2)"#,
        ];
        let stock = Lua::new();
        let (sandboxed, _) = new_vm(64, 10_000_000).unwrap();
        let (want, got) = (outcomes(&stock, &exprs), outcomes(&sandboxed, &exprs));
        for ((e, w), g) in exprs.iter().zip(&want).zip(&got) {
            assert_eq!(g, w, "{e}");
        }
    }

    #[test]
    fn module_names_cannot_leave_the_folder() {
        assert_eq!(module_path("mylib").as_deref(), Some("mylib.lua"));
        assert_eq!(module_path("sub.my_lib").as_deref(), Some("sub/my_lib.lua"));
        for bad in [
            "",
            "../x",
            "a..b",
            "/etc/passwd",
            "a/b",
            ".x",
            "x.",
            "a\\b",
            "x y",
        ] {
            assert_eq!(module_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn caller_position_skips_c_frames() {
        let tb = "stack traceback:\n\t[C]: in method 'get'\n\tlua_plugins/irus.lua:12: in function 'get_openurl_params'";
        assert_eq!(
            caller_position(tb).as_deref(),
            Some("lua_plugins/irus.lua:12")
        );
        assert_eq!(caller_position("stack traceback:\n\t[C]: in ?"), None);
        let through_pcall = "stack traceback:\n\t[C]: in function 'json.decode'\n\t[C]: in function 'rawpcall'\n\tloglines sandbox:3: in function 'pcall'\n\tp.lua:7: in main chunk";
        assert_eq!(caller_position(through_pcall).as_deref(), Some("p.lua:7"));
    }
}
