//! `loglines.re`: Rust regular expressions for plugins (Lua patterns have no alternation), with
//! compiled patterns cached so that a pattern written inline in a hook compiles once.
//!
//! Results follow Lua's `string.match`/`string.find` so they read naturally in plugin code: a
//! match returns the pattern's capture groups (a group that did not take part is `nil`), or the
//! whole match when the pattern has no groups; `find` returns the 1-based start and end byte
//! positions first. `re.set` tests many patterns in one pass over the text, which is how a
//! plugin classifies a request path against a list of URL patterns cheaply.

use crate::plugin::sandbox;
use mlua::{Lua, MultiValue, UserData, UserDataMethods, Value};
use regex::{Captures, Regex, RegexSet};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Patterns kept compiled. A plugin uses a handful; a plugin that builds patterns from data
/// would otherwise grow the cache without bound, so past this size it starts over.
const CACHE_SIZE: usize = 256;

/// Compiled regexes can be large; this bounds what one pattern may cost.
const SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// The per-VM cache of compiled patterns.
#[derive(Default)]
pub(crate) struct RegexCache {
    // Rc so that a lookup does not hold the RefCell borrow while Lua strings are created (which
    // can run a finalizer that calls back into `re`).
    map: RefCell<HashMap<Box<str>, Rc<Regex>>>,
}

impl RegexCache {
    pub(crate) fn get(&self, pattern: &str) -> mlua::Result<Rc<Regex>> {
        if let Some(re) = self.map.borrow().get(pattern) {
            return Ok(re.clone());
        }
        let re = Rc::new(compile(pattern)?);
        let mut map = self.map.borrow_mut();
        if map.len() >= CACHE_SIZE {
            map.clear();
        }
        map.insert(pattern.into(), re.clone());
        Ok(re)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.borrow().len()
    }
}

fn compile(pattern: &str) -> mlua::Result<Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| {
            mlua::Error::runtime(format!(
                "invalid regular expression `{pattern}`: {}; see the Rust regex syntax (https://docs.rs/regex/#syntax)",
                first_line(&e.to_string())
            ))
        })
}

fn first_line(s: &str) -> String {
    // The regex crate's messages draw the pattern with a caret over several lines; the last
    // line holds the reason.
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// The 1-based `init` argument as a byte offset into `s` (negative counts from the end, as in
/// `string.find`), or None when it is past the end.
fn start_offset(s: &str, init: Option<i64>) -> Option<usize> {
    let len = s.len() as i64;
    let i = match init.unwrap_or(1) {
        0 => 1,
        i if i < 0 => (len + i + 1).max(1),
        i => i,
    };
    if i > len + 1 {
        return None;
    }
    let mut off = (i - 1) as usize;
    // A start inside a multi-byte character moves to the next character boundary.
    while !s.is_char_boundary(off) {
        off += 1;
    }
    Some(off)
}

/// Pushes the captures the way string.match does.
fn push_captures(lua: &Lua, caps: &Captures, out: &mut MultiValue) -> mlua::Result<()> {
    if caps.len() == 1 {
        out.push_back(Value::String(lua.create_string(&caps[0])?));
        return Ok(());
    }
    for g in caps.iter().skip(1) {
        out.push_back(match g {
            Some(m) => Value::String(lua.create_string(m.as_str())?),
            None => Value::Nil,
        });
    }
    Ok(())
}

/// The captures of the first match at or after `init` (as `start_offset` reads it), or None.
fn captures_from<'s>(re: &Regex, s: &'s str, init: Option<i64>) -> Option<Captures<'s>> {
    re.captures_at(s, start_offset(s, init)?)
}

fn do_match(lua: &Lua, re: &Regex, s: &str, init: Option<i64>) -> mlua::Result<MultiValue> {
    let mut out = MultiValue::new();
    match captures_from(re, s, init) {
        Some(caps) => push_captures(lua, &caps, &mut out)?,
        None => out.push_back(Value::Nil),
    }
    Ok(out)
}

fn do_find(lua: &Lua, re: &Regex, s: &str, init: Option<i64>) -> mlua::Result<MultiValue> {
    let mut out = MultiValue::new();
    match captures_from(re, s, init) {
        Some(caps) => {
            let m = caps.get(0).expect("group 0 always takes part in a match");
            out.push_back(Value::Integer(m.start() as i64 + 1));
            out.push_back(Value::Integer(m.end() as i64));
            if caps.len() > 1 {
                push_captures(lua, &caps, &mut out)?;
            }
        }
        None => out.push_back(Value::Nil),
    }
    Ok(out)
}

/// A set of patterns tested together (`loglines.re.set{...}`).
pub(crate) struct PatternSet {
    set: RegexSet,
    each: Vec<Regex>,
}

impl UserData for PatternSet {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // set:match(s) -> index of the first pattern (in list order) that matches, then its
        // captures; nil when none matches.
        m.add_method(
            "match",
            |lua, this, s: mlua::String| -> mlua::Result<MultiValue> {
                let s = s.to_str()?;
                let mut out = MultiValue::new();
                let Some(i) = this.set.matches(&s).iter().next() else {
                    out.push_back(Value::Nil);
                    return Ok(out);
                };
                out.push_back(Value::Integer(i as i64 + 1));
                if let Some(caps) = this.each[i].captures(&s) {
                    // Captures are bounded by the subject string (see without_memory_limit).
                    sandbox::without_memory_limit(lua, || push_captures(lua, &caps, &mut out))?;
                }
                Ok(out)
            },
        );
        m.add_method("len", |_, this, ()| Ok(this.each.len()));
    }
}

/// `re.match` or `re.find`: `(pattern, s [, init])` with the pattern from the cache, answered
/// by `answer`.
fn pattern_function(
    lua: &Lua,
    cache: Rc<RegexCache>,
    answer: fn(&Lua, &Regex, &str, Option<i64>) -> mlua::Result<MultiValue>,
) -> mlua::Result<mlua::Function> {
    lua.create_function(
        move |lua, (pattern, s, init): (mlua::String, mlua::String, Option<i64>)| {
            let regex = cache.get(&pattern.to_str()?)?;
            let s = s.to_str()?;
            sandbox::without_memory_limit(lua, || answer(lua, &regex, &s, init))
        },
    )
}

/// Builds the `loglines.re` table.
pub(crate) fn install(lua: &Lua, into: &mlua::Table) -> mlua::Result<()> {
    let cache = Rc::new(RegexCache::default());
    let re = lua.create_table()?;

    re.set("match", pattern_function(lua, cache.clone(), do_match)?)?;
    re.set("find", pattern_function(lua, cache, do_find)?)?;
    re.set(
        "set",
        lua.create_function(|_, patterns: Vec<String>| {
            if patterns.is_empty() {
                return Err(mlua::Error::runtime(
                    "re.set: the list of patterns is empty; pass at least one pattern",
                ));
            }
            let each = patterns
                .iter()
                .map(|p| compile(p))
                .collect::<mlua::Result<Vec<_>>>()?;
            let set = regex::RegexSetBuilder::new(&patterns)
                .size_limit(SIZE_LIMIT * 4)
                .build()
                .map_err(|e| {
                    mlua::Error::runtime(format!("re.set: {}", first_line(&e.to_string())))
                })?;
            Ok(PatternSet { set, each })
        })?,
    )?;
    into.set("re", re)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = Lua::new();
        let t = lua.create_table().unwrap();
        install(&lua, &t).unwrap();
        lua.globals()
            .set("re", t.get::<mlua::Table>("re").unwrap())
            .unwrap();
        lua
    }

    /// Runs a script whose Lua `assert`s are the checks; it must get to its `return true`.
    fn check(script: &str) {
        let ok: bool = lua().load(script).eval().unwrap();
        assert!(ok);
    }

    #[test]
    fn match_returns_groups_or_the_whole_match() {
        check(
            r#"
            local a, b = re.match([[^/id/eprint/(\d+)/(\d+)?]], "/id/eprint/12/")
            assert(a == "12" and b == nil)
            assert(re.match([[\d+]], "ab123c") == "123")
            assert(re.match("(?i)^(get|head)$", "GET") == "GET")
            assert(re.match("x", "abc") == nil)
            assert(re.match("b", "abcb", 3) == "b")
            assert(re.match("b", "abc", 10) == nil)
            return true
        "#,
        );
    }

    #[test]
    fn find_returns_positions_like_string_find() {
        check(
            r#"
            local s, e = re.find("b+", "abbbc")
            assert(s == 2 and e == 4, tostring(s) .. " " .. tostring(e))
            local s2, e2, cap = re.find("(c)", "abc")
            assert(s2 == 3 and e2 == 3 and cap == "c")
            assert(re.find("z", "abc") == nil)
            local s3 = re.find("a", "aXa", -1)
            assert(s3 == 3)
            return true
        "#,
        );
    }

    #[test]
    fn set_reports_the_first_matching_pattern_and_its_captures() {
        check(
            r#"
            local s = re.set{ [[^/files/(\d+)$]], [[^/(\d+)/?$]], [[^/(\d+)]] }
            local i, id = s:match("/17/")
            assert(i == 2 and id == "17")
            local j, id2 = s:match("/files/9")
            assert(j == 1 and id2 == "9")
            assert(s:match("/about") == nil)
            assert(s:len() == 3)
            return true
        "#,
        );
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let lua = lua();
        let e = lua.load("re.match('(', 'x')").exec().unwrap_err();
        let msg = crate::plugin::sandbox::error_message(&e);
        assert!(msg.contains("invalid regular expression `(`"), "{msg}");
        assert!(msg.contains("unclosed group"), "{msg}");
        let e = lua.load("re.set{}").exec().unwrap_err();
        assert!(crate::plugin::sandbox::error_message(&e).contains("empty"));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = RegexCache::default();
        for i in 0..(CACHE_SIZE + 10) {
            cache.get(&format!("a{i}")).unwrap();
        }
        assert!(cache.len() <= CACHE_SIZE);
        let a = cache.get("same").unwrap();
        let b = cache.get("same").unwrap();
        assert!(Rc::ptr_eq(&a, &b), "a cached pattern is compiled once");
    }
}
