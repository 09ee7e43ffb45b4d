//! The plugin sandbox and limits: every way out of the sandbox fails with a clear error, each
//! limit fires, and the VM keeps working for the next message afterwards.

use crate::support::plugin as plugin_util;

use loglines::plugin::{Outcome, Plugin, PluginError, Stage};
use plugin_util::{load, msg, plugin, spec_with, Dir, NO_HOOKS};

/// Runs `code` at the top level of a plugin and returns the load error's text.
fn load_error(code: &str) -> String {
    let (_d, r) = load(&format!("{NO_HOOKS}\n{code}"));
    match r {
        Ok(_) => panic!("expected `{code}` to fail"),
        Err(e) => e.to_string(),
    }
}

/// Evaluates `expr` at the top level and asserts it is true.
fn holds(expr: &str) {
    let (_d, r) = load(&format!("{NO_HOOKS}\nassert({expr}, [[{expr}]])"));
    if let Err(e) = r {
        panic!("{expr}: {e}");
    }
}

/// A `__gc` finalizer would run outside the instruction limit (a looping one spun the worker
/// for good): it is refused where it would be set; metatables without one work as ever.
#[test]
fn gc_finalizers_are_refused() {
    let e = load_error("setmetatable({}, {__gc = function() while true do end end})");
    assert!(
        e.contains("__gc finalizers are not allowed in a plugin"),
        "{e}"
    );
    holds("getmetatable(setmetatable({}, {__index = {x = 1}})).__index.x == 1");
    holds("setmetatable({}, {__index = function() return 7 end}).y == 7");
}

#[test]
fn only_safe_libraries_are_there() {
    for absent in [
        "io",
        "debug",
        "package",
        "dofile",
        "loadfile",
        "os.execute",
        "os.remove",
        "os.rename",
        "os.exit",
        "os.getenv",
        "os.tmpname",
        "string.dump",
    ] {
        holds(&format!("{absent} == nil"));
    }
    for present in [
        "string.format",
        "table.concat",
        "math.floor",
        "utf8.char",
        "coroutine.wrap",
        "os.time",
        "os.date",
        "os.clock",
    ] {
        holds(&format!("type({present}) == 'function'"));
    }
    holds("os.date('!%Y', 0) == '1970'");
}

#[test]
fn escape_attempts_fail_with_clear_errors() {
    let e = load_error("io.open('/etc/passwd')");
    assert!(e.contains("p.lua:5:") && e.contains("global 'io'"), "{e}");
    let e = load_error("os.execute('true')");
    assert!(
        e.contains("p.lua:5:") && e.contains("field 'execute'"),
        "{e}"
    );
    let e = load_error("package.loadlib('libc.so.6', 'system')");
    assert!(e.contains("global 'package'"), "{e}");
    let e = load_error("require('os')");
    assert!(
        e.contains("require(\"os\"): there is no")
            && e.contains("os.lua; plugins can only require"),
        "{e}"
    );
    let e = load_error("require('../../etc/passwd')");
    assert!(e.contains("not a module name"), "{e}");
    let e = load_error("require('/etc/passwd')");
    assert!(e.contains("not a module name"), "{e}");
    let e = load_error("collectgarbage('stop')");
    assert!(e.contains("collectgarbage(\"stop\") is not allowed"), "{e}");
    holds("collectgarbage('count') > 0");
}

#[test]
fn bytecode_cannot_be_loaded() {
    // A binary chunk starts with ESC "Lua"; the sandbox's load compiles text only, whatever
    // mode is asked for.
    let e = load_error(r#"assert(load("\27Lua\x54\x00", "x", "b"))"#);
    assert!(e.contains("bytecode is not allowed"), "{e}");
    let e = load_error(r#"assert(load("\27Lua\x54\x00"))"#);
    assert!(e.contains("attempt to load a binary chunk"), "{e}");
    let e = load_error(r#"assert(load("\27Lua\x54\x00", "x", "bt"))"#);
    assert!(e.contains("bytecode is not allowed"), "{e}");
    // Text still loads, with or without an environment.
    holds("load('return 1 + 1')() == 2");
    holds("load('return x', 'chunk', 't', {x = 5})() == 5");
}

#[test]
fn require_finds_lua_files_next_to_the_plugin_only() {
    let d = Dir::new();
    d.write(
        "helpers.lua",
        "count = (count or 0) + 1\nreturn { twice = function(x) return 2 * x end }",
    );
    d.write("sub/deep.lua", "return 'deep'");
    let p = d.write(
        "p.lua",
        &format!(
            "{NO_HOOKS}\nlocal h = require('helpers')\nlocal h2 = require('helpers')\n\
             assert(h.twice(21) == 42)\nassert(h == h2 and count == 1, 'modules load once')\n\
             assert(require('sub.deep') == 'deep')"
        ),
    );
    Plugin::load(plugin_util::spec(&p)).unwrap_or_else(|e| panic!("{e}"));

    // A module's errors name the module's file and line.
    d.write("bad.lua", "local x = nil\nreturn x.y");
    let p = d.write("q.lua", &format!("{NO_HOOKS}\nrequire('bad')"));
    let e = Plugin::load(plugin_util::spec(&p)).unwrap_err().to_string();
    assert!(e.contains("bad.lua:2:"), "{e}");

    // A module that requires itself is reported, not looped on.
    d.write("loop.lua", "return require('loop')");
    let p = d.write("r.lua", &format!("{NO_HOOKS}\nrequire('loop')"));
    let e = Plugin::load(plugin_util::spec(&p)).unwrap_err().to_string();
    assert!(e.contains("requires itself"), "{e}");

    // A symbolic link in the folder does not lead out of it.
    let outside = crate::support::temp_dir();
    std::fs::write(outside.path().join("secret.lua"), "return 'outside'").unwrap();
    let link = p.parent().unwrap().join("leak.lua");
    std::os::unix::fs::symlink(outside.path().join("secret.lua"), &link).unwrap();
    let p = d.write("s.lua", &format!("{NO_HOOKS}\nrequire('leak')"));
    let e = Plugin::load(plugin_util::spec(&p)).unwrap_err().to_string();
    assert!(e.contains("outside the plugin's folder"), "{e}");
    // A link that stays inside is fine.
    std::os::unix::fs::symlink(
        p.parent().unwrap().join("helpers.lua"),
        p.parent().unwrap().join("alias.lua"),
    )
    .unwrap();
    let p = d.write(
        "t.lua",
        &format!("{NO_HOOKS}\nassert(require('alias').twice(2) == 4)"),
    );
    Plugin::load(plugin_util::spec(&p)).unwrap_or_else(|e| panic!("{e}"));
}

const RUNAWAY: &str = r#"
function parseline(jmsg)
  if jmsg:find("loop", 1, true) then
    while true do end
  elseif jmsg:find("catch", 1, true) then
    -- A plugin trying to swallow the limit with pcall does not get away with it.
    while true do pcall(function() while true do end end) end
  elseif jmsg:find("coroutine", 1, true) then
    local co = coroutine.wrap(function() while true do end end)
    co()
  elseif jmsg:find("resume", 1, true) then
    local co = coroutine.create(function() while true do end end)
    while true do coroutine.resume(co) end
  elseif jmsg:find("grow", 1, true) then
    local t = {}
    for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end
  end
  return {ok = true}
end
function get_openurl_params(c, s, pl) return {url_ver = "Z39.88-2004", n = 1} end
"#;

#[test]
fn the_instruction_limit_stops_runaway_code_and_the_vm_stays_usable() {
    let d = Dir::new();
    let p = d.write("runaway.lua", RUNAWAY);
    let mut plugin = Plugin::load(spec_with(&p, 64, 100_000)).unwrap();
    for kind in ["loop", "catch", "coroutine", "resume"] {
        match plugin.process(&msg(kind)) {
            Err(PluginError::InstructionLimit {
                stage: Stage::Parseline,
                limit: 100_000,
                ..
            }) => {}
            other => panic!("{kind}: expected the instruction limit, got {other:?}"),
        }
        // The next message is handled normally.
        let ok = plugin.process(&msg("fine")).unwrap();
        assert!(matches!(ok, Outcome::Eligible(_)), "{kind}: {ok:?}");
    }
    let e = plugin.process(&msg("loop")).unwrap_err().to_string();
    assert!(
        e.contains("runaway.lua: parseline ran more than 100000 Lua instructions"),
        "{e}"
    );
    assert!(e.contains("raise plugin_max_instructions"), "{e}");
}

/// Work the standard library does in C loops, where the count hook does not fire, counts
/// against the limit too: each of these ran for hours (or for ever) before. The line's text is
/// the Lua code to run, so the corpus reads as what a hostile plugin would write.
#[test]
fn work_in_the_libraries_c_loops_counts_against_the_limit() {
    let d = Dir::new();
    let p = d.write(
        "hostile.lua",
        "function parseline(j)\n  local code = loglines.json.decode(j).logline\n  assert(load(code))()\n  return {ok = true}\nend\n\
         function get_openurl_params(c, s, pl) return {url_ver = \"Z39.88-2004\", n = 1} end\n",
    );
    let mut plugin = Plugin::load(spec_with(&p, 64, 10_000_000)).unwrap();
    let hostile = [
        // Backtracking patterns, through each function and as a method.
        r#"string.find(string.rep("a", 3000), ".-.-.-.-.-.-b")"#,
        r#"string.match(string.rep("a", 3000), "(.-)(.-)(.-)(.-)(.-)b")"#,
        r#"for _ in string.gmatch(string.rep("a", 3000), ".-.-.-.-b") do end"#,
        r#"string.gsub(string.rep("a", 3000), ".-.-.-.-b", "")"#,
        r#"(string.rep("a", 3000)):find(".*.*.*.*.*b")"#,
        r#"string.find(string.rep("a", 2000), "(a*)(a*)(a*)%1%2%3b")"#,
        r#"string.find(string.rep("(", 100000), "%b()%b()%b()")"#,
        // A plain search whose every candidate almost matches.
        r#"string.find(string.rep("a", 200000), string.rep("a", 20000) .. "b", 1, true)"#,
        // A huge class tested at every position.
        r#"string.find(string.rep("a", 100000), "[" .. string.rep("b", 50000) .. "]")"#,
        // Caught with pcall: the limit is raised again.
        r#"pcall(string.find, string.rep("a", 3000), ".-.-.-.-.-.-b")"#,
        // Loops that allocate nothing, or run as long as the plugin says.
        r#"string.rep("", 1e15)"#,
        r#"string.rep("", 2^62, "")"#,
        r#"table.move({}, 1, 1e15, 2)"#,
        r#"table.move({}, math.mininteger // 2, math.maxinteger // 2, 1)"#,
        // A replacement string Lua walks once per (empty) match: nothing allocated.
        r#"string.gsub(string.rep("a", 20000), "", string.rep("%0", 20000))"#,
        // An iterator called again after it found nothing searches again each time: each
        // call is cheap in instructions, so the CPU-time bound of a call stops it.
        r#"local it = string.rep("a", 200000):gmatch("b") for i = 1, 1e9 do it() end"#,
    ];
    for code in hostile {
        let t = std::time::Instant::now();
        match plugin.process(&msg(code)) {
            Err(PluginError::InstructionLimit {
                stage: Stage::Parseline,
                ..
            }) => {}
            other => panic!("{code}: expected the instruction limit, got {other:?}"),
        }
        // Not a timing assertion on the code under test: a guard that names the case which
        // escaped, rather than a suite that hangs.
        assert!(t.elapsed().as_secs() < 60, "{code} took {:?}", t.elapsed());
        let ok = plugin.process(&msg("local x = 1")).unwrap();
        assert!(matches!(ok, Outcome::Eligible(_)), "after {code}: {ok:?}");
    }
    // Shifting a table whose __len could lie between counting and shifting is refused.
    for code in [
        r#"table.insert(setmetatable({}, {__len = function() return 2^50 end}), 1, "x")"#,
        r#"local n = 0 table.remove(setmetatable({}, {__len = function() n = n + 1 return n == 1 and 0 or 3e8 end}), 1)"#,
    ] {
        let e = plugin.process(&msg(code)).unwrap_err().to_string();
        assert!(
            e.contains("not allowed on a table with __len"),
            "{code}: {e}"
        );
    }
    // The same functions on ordinary input are not stopped.
    for code in [
        r#"assert(string.find(string.rep("a", 100000) .. "b", "a-b") == 1)"#,
        r#"assert(select(2, string.gsub(string.rep("ab", 50000), "b", "c")) == 50000)"#,
        r#"assert(#string.rep("", 1000) == 0)"#,
        r#"local t = {} for i = 1, 1000 do table.insert(t, 1, i) end assert(#t == 1000)"#,
        r#"assert(#table.move({1, 2, 3}, 1, 3, 1, {}) == 3)"#,
    ] {
        let r = plugin.process(&msg(code));
        assert!(matches!(r, Ok(Outcome::Eligible(_))), "{code}: {r:?}");
    }
}

#[test]
fn the_limit_is_per_call_not_cumulative() {
    // 500 messages of about 2,000 instructions each stay far below a 50,000 limit per call,
    // though together they run twenty times the limit.
    let d = Dir::new();
    let path = d.write(
        "p.lua",
        "function parseline(j) local s = 0 for i = 1, 500 do s = s + i end return {s = s} end\n\
         function get_openurl_params(c, w, pl) return {s = pl.s} end",
    );
    let mut p = Plugin::load(spec_with(&path, 64, 50_000)).unwrap();
    for _ in 0..500 {
        assert!(matches!(p.process("{}").unwrap(), Outcome::Eligible(_)));
    }
}

#[test]
fn the_memory_limit_stops_a_growing_table_and_the_vm_stays_usable() {
    let d = Dir::new();
    let p = d.write("runaway.lua", RUNAWAY);
    let mut plugin = Plugin::load(spec_with(&p, 16, u64::MAX >> 1)).unwrap();
    match plugin.process(&msg("grow")) {
        Err(PluginError::MemoryLimit {
            stage: Stage::Parseline,
            limit_mb: 16,
            ..
        }) => {}
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert!(matches!(
        plugin.process(&msg("fine")).unwrap(),
        Outcome::Eligible(_)
    ));
    assert!(
        plugin.used_memory() < 16 * 1024 * 1024,
        "the garbage of the failed call is collectable"
    );
    let e = plugin.process(&msg("grow")).unwrap_err().to_string();
    assert!(e.contains("ran out of memory (limit 16 MiB)"), "{e}");
    assert!(e.contains("raise plugin_memory_mb"), "{e}");
}

#[test]
fn top_level_code_is_limited_too() {
    let d = Dir::new();
    let p = d.write("p.lua", &format!("{NO_HOOKS}\nwhile true do end"));
    match Plugin::load(spec_with(&p, 64, 10_000)) {
        Err(PluginError::InstructionLimit {
            stage: Stage::Load, ..
        }) => {}
        other => panic!("expected the instruction limit at load, got {other:?}"),
    }
}

#[test]
fn errors_name_the_plugin_file_and_line() {
    let (_d, r) = load("function parseline(jmsg)\n  return {\nend");
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("p.lua:3:") && e.contains("fix the Lua syntax"),
        "{e}"
    );

    let (_d, mut p) = plugin(
        "function parseline(jmsg)\n  local t = nil\n  return t.x\nend\nfunction get_openurl_params() end",
    );
    let e = p.process("{}").unwrap_err().to_string();
    assert!(
        e.contains("p.lua:3: attempt to index a nil value (local 't') (in parseline)"),
        "{e}"
    );

    // An error raised by a library function carries the position of the plugin's call.
    let (_d, mut p) = plugin(
        "function parseline(jmsg) return {} end\nfunction get_openurl_params(c, s, pl)\n  return {x = c:get('nope', 'key')}\nend",
    );
    let e = p.process("{}").unwrap_err().to_string();
    assert!(
        e.contains("p.lua:3: c:get: no section [nope]") && e.contains("(in get_openurl_params)"),
        "{e}"
    );

    // Caught with pcall, an error from a library function is text, as Lua's own errors are.
    holds("select(2, pcall(loglines.json.decode, '{')):find('p.lua:5: json.decode: EOF', 1, true) ~= nil");
    holds("type(select(2, pcall(loglines.re.match, '(', 'x'))) == 'string'");

    let (_d, r) = load("function parseline(jmsg) return nil end");
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            PluginError::MissingHook {
                hook: "get_openurl_params",
                ..
            }
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains("p.lua does not define function get_openurl_params"));
}

#[test]
fn init_sees_the_configuration_and_its_errors_fail_the_load() {
    let (_d, mut p) = plugin(
        "local seen\nfunction init(c, section) seen = section .. ':' .. tostring(c:has_section('x')) end\n\
         function parseline(j) return {seen = seen} end\n\
         function get_openurl_params(c, s, pl) return {seen = pl.seen} end",
    );
    assert_eq!(
        p.process("{}").unwrap(),
        Outcome::Eligible(vec![("seen".into(), "worker_test:false".into())])
    );
    let (_d, r) = load(&format!(
        "{NO_HOOKS}\nfunction init(c, s) error('[p] secret is missing; set it', 0) end"
    ));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("[p] secret is missing; set it (in init)"), "{e}");
}

#[test]
fn a_changed_plugin_is_reloaded_and_a_broken_one_is_not_used() {
    let d = Dir::new();
    let v1 =
        "function parseline(j) return {} end\nfunction get_openurl_params() return {v = 1} end";
    let p = d.write("p.lua", v1);
    let mut plugin = Plugin::load(plugin_util::spec(&p)).unwrap();
    assert!(!plugin.modified_since_load());
    plugin.check_now();
    assert!(!plugin.reload_if_changed().unwrap());

    // A new version (a different length, so the change is seen even within one mtime tick).
    d.write(
        "p.lua",
        "function parseline(j) return {} end\nfunction get_openurl_params() return {v = 22} end",
    );
    assert!(plugin.modified_since_load());
    plugin.check_now();
    assert!(plugin.reload_if_changed().unwrap());
    assert_eq!(
        plugin.process("{}").unwrap(),
        Outcome::Eligible(vec![("v".into(), "22".into())])
    );

    // A broken version: the error is returned once, the working plugin stays.
    d.write(
        "p.lua",
        "function parseline(j) return {} end\nthis is not lua",
    );
    plugin.check_now();
    assert!(plugin.reload_if_changed().is_err());
    plugin.check_now();
    assert!(
        !plugin.reload_if_changed().unwrap(),
        "not retried until changed again"
    );
    assert_eq!(
        plugin.process("{}").unwrap(),
        Outcome::Eligible(vec![("v".into(), "22".into())])
    );

    // A module the plugin requires counts as part of it.
    d.write("m.lua", "return 1");
    d.write(
        "p.lua",
        "local m = require('m')\nfunction parseline(j) return {} end\nfunction get_openurl_params() return {m = m} end",
    );
    plugin.check_now();
    assert!(plugin.reload_if_changed().unwrap());
    d.write("m.lua", "return 333");
    assert!(plugin.modified_since_load());
    plugin.check_now();
    assert!(plugin.reload_if_changed().unwrap());
    assert_eq!(
        plugin.process("{}").unwrap(),
        Outcome::Eligible(vec![("m".into(), "333".into())])
    );
}

#[test]
fn result_conversion_rules_hold_end_to_end() {
    let (_d, mut p) = plugin(
        r#"
function parseline(jmsg) return {kind = jmsg} end
function get_openurl_params(c, s, pl)
  local k = pl.kind
  if k == '"nil"' then return nil
  elseif k == '"empty"' then return {}
  elseif k == '"scalars"' then return {a = "x", i = 7, f = 1.5, b = true}
  elseif k == '"nested"' then return {url_ver = "Z39.88-2004", extra = {1, 2}}
  elseif k == '"function"' then return {url_ver = "Z39.88-2004", cb = print}
  elseif k == '"mixed"' then return {url_ver = "Z39.88-2004", "stray"}
  end
end
"#,
    );
    assert_eq!(p.process(r#""nil""#).unwrap(), Outcome::NotEligible);
    assert_eq!(p.process(r#""empty""#).unwrap(), Outcome::NotEligible);
    let Outcome::Eligible(mut params) = p.process(r#""scalars""#).unwrap() else {
        panic!("scalars are eligible")
    };
    params.sort();
    assert_eq!(
        params,
        [("a", "x"), ("b", "true"), ("f", "1.5"), ("i", "7")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    for (kind, want) in [
        ("nested", "parameter `extra` as a nested table"),
        ("function", "parameter `cb` as a function"),
        ("mixed", "mixing array entries (key [1])"),
    ] {
        let e = p.process(&format!("\"{kind}\"")).unwrap_err();
        assert!(matches!(e, PluginError::BadResult { .. }), "{kind}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains(want) && text.contains("p.lua: get_openurl_params returned"),
            "{kind}: {text}"
        );
    }
}

#[test]
fn a_nil_from_parseline_skips_get_openurl_params() {
    let (_d, mut p) = plugin(
        "calls = 0\nfunction parseline(j) return nil, 'not mine' end\n\
         function get_openurl_params() calls = calls + 1 error('must not run') end",
    );
    assert_eq!(p.process("{}").unwrap(), Outcome::NotEligible);
    let ex = p.explain("{}");
    assert_eq!(ex.parsed, Some(Ok(serde_json::Value::Null)));
    assert_eq!(ex.reason.as_deref(), Some("not mine"));
    assert!(matches!(ex.outcome, Ok(Outcome::NotEligible)));
}

#[test]
fn explain_shows_what_parseline_returned_even_when_the_second_hook_fails() {
    let (_d, mut p) = plugin(
        "function parseline(jmsg)\n  if jmsg == '\"fn\"' then return {f = print} end\n  return {n = 1, s = 'x'}\nend\n\
         function get_openurl_params(c, s, pl) return {bad = {}} end",
    );
    let ex = p.explain("{}");
    assert_eq!(ex.parsed, Some(Ok(serde_json::json!({"n": 1, "s": "x"}))));
    let e = ex.outcome.unwrap_err().to_string();
    assert!(e.contains("parameter `bad` as a nested table"), "{e}");
    // A value JSON cannot show is described instead of failing the line.
    let ex = p.explain("\"fn\"");
    match ex.parsed {
        Some(Err(why)) => assert!(why.contains("key `f` is a function"), "{why}"),
        other => panic!("expected a description, got {other:?}"),
    }
}
