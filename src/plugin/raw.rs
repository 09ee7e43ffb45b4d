//! The Lua C API, where the safe API costs too much or cannot reach: the tables the library
//! returns per log line, built directly on the Lua stack, and the counted wrappers around the
//! standard library's C loops.
//!
//! Why this exists: through mlua's safe API every string and every table field is a separate
//! registry reference and, while a memory limit is set, a separate protected call. For the two
//! tables a plugin gets per line (the decoded message and the parsed log line) that overhead was
//! larger than the parsing itself. Here the whole table is built inside one protected call
//! ([`Lua::exec_raw`]) with Lua's C API, so an allocation failing at the memory limit still
//! unwinds safely to a Lua error, and the cost is one call instead of dozens.
//!
//! Safety rules every function here follows:
//! - the closure passed to `exec_raw` leaves exactly one value on the stack;
//! - it reserves stack space with `lua_checkstack` before pushing (exec_raw guarantees three
//!   slots only);
//! - it owns nothing that needs dropping: a memory error longjmps out of it, so all owned data
//!   (the parsed JSON, the log record) lives outside the closure and is only borrowed.

use crate::plugin::library::clf::LogRecord;
use crate::plugin::pattern;
use crate::plugin::sandbox::{Budget, LimitMessage};
use mlua::{ffi, Function, Lua, Value};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::io::Write as _;

/// JSON nesting accepted by `json.decode` (serde_json refuses deeper input on its own at 128).
const MAX_JSON_DEPTH: c_int = 128;

/// Pushes a Rust string as a Lua string.
///
/// # Safety
/// `state` must be a valid Lua state with a free stack slot; may raise a Lua memory error.
unsafe fn push_str(state: *mut ffi::lua_State, s: &str) {
    ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
}

/// Sets `t[key] = <top of stack>` on the table just below the top, popping the value.
///
/// # Safety
/// As [`push_str`]; the value must be on top and the table right below it.
unsafe fn set_field(state: *mut ffi::lua_State, key: &CStr) {
    ffi::lua_setfield(state, -2, key.as_ptr());
}

/// The table `loglines.parse_combined` returns. Fields that are absent in the log (`-`) are
/// not set, so they read as nil.
pub(crate) fn clf_table(lua: &Lua, r: &LogRecord) -> mlua::Result<Value> {
    // SAFETY: see the module comment; the closure borrows `r` only and pushes one table.
    unsafe {
        lua.exec_raw::<Value>((), |state| {
            ffi::lua_createtable(state, 0, 12);
            let text: [(&CStr, &str); 7] = [
                (c"ip", r.ip),
                (c"ident", r.ident),
                (c"user", r.user),
                (c"time", r.time),
                (c"method", &r.method),
                (c"path", &r.path),
                (c"protocol", &r.protocol),
            ];
            for (k, v) in text {
                push_str(state, v);
                set_field(state, k);
            }
            let optional: [(&CStr, Option<&str>); 3] = [
                (c"query", r.query.as_deref()),
                (c"referer", r.referer.as_deref()),
                (c"useragent", r.useragent.as_deref()),
            ];
            for (k, v) in optional {
                if let Some(v) = v {
                    push_str(state, v);
                    set_field(state, k);
                }
            }
            ffi::lua_pushinteger(state, ffi::lua_Integer::from(r.status));
            set_field(state, c"status");
            if let Some(b) = r.bytes {
                ffi::lua_pushinteger(state, b.min(i64::MAX as u64) as ffi::lua_Integer);
                set_field(state, c"bytes");
            }
        })
    }
}

/// The table a compiled `loglines.log_format` parser returns for one line: each field under its
/// name (a later field of the same name wins, as when set one by one).
pub(crate) fn record_table(
    lua: &Lua,
    r: &crate::plugin::library::logformat::Record,
) -> mlua::Result<Value> {
    use crate::plugin::library::logformat::Val;
    // SAFETY: see the module comment; the closure borrows `r` only, reserves its two slots per
    // field and leaves one table.
    unsafe {
        lua.exec_raw::<Value>((), |state| {
            ffi::lua_createtable(state, 0, c_int::try_from(r.len()).unwrap_or(0));
            ffi::lua_checkstack(state, 3);
            for (k, v) in r {
                push_str(state, k);
                match v {
                    Val::Text(t) => push_str(state, t),
                    Val::Int(n) => ffi::lua_pushinteger(state, *n),
                }
                ffi::lua_rawset(state, -3);
            }
        })
    }
}

/// A parsed JSON document whose strings borrow from the input when they hold no escapes.
#[derive(Debug)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Json::Float(v as f64), Json::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            v.push(item);
        }
        Ok(Json::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(k) = map.next_key::<JsonKey>()? {
            v.push((k.0, map.next_value()?));
        }
        Ok(Json::Object(v))
    }
}

/// An object key, borrowed when it holds no escapes.
struct JsonKey<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for JsonKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct K;
        impl<'de> Visitor<'de> for K {
            type Value = JsonKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonKey(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(K)
    }
}

/// Parses JSON text (the whole input must be one value).
pub(crate) fn parse_json(text: &[u8]) -> Result<Json<'_>, String> {
    serde_json::from_slice(text).map_err(|e| e.to_string())
}

/// Pushes a parsed document as Lua values: `null` becomes the light userdata `json.null`.
pub(crate) fn json_value(lua: &Lua, doc: &Json) -> mlua::Result<Value> {
    let mut ok = true;
    // SAFETY: see the module comment; `doc` is borrowed, the recursion owns nothing, and each
    // level checks the stack before pushing.
    let v = unsafe {
        lua.exec_raw::<Value>((), |state| {
            let top = ffi::lua_gettop(state);
            if !push_json(state, doc, 0) {
                ffi::lua_settop(state, top);
                ffi::lua_pushnil(state);
                ok = false;
            }
        })?
    };
    if !ok {
        return Err(mlua::Error::runtime(format!(
            "the document is nested more than {MAX_JSON_DEPTH} levels deep"
        )));
    }
    Ok(v)
}

/// Pushes one value; false when nesting or stack space ran out (the caller resets the stack).
///
/// # Safety
/// `state` must be a valid Lua state; may raise a Lua memory error.
unsafe fn push_json(state: *mut ffi::lua_State, v: &Json, depth: c_int) -> bool {
    if depth > MAX_JSON_DEPTH || ffi::lua_checkstack(state, 3) == 0 {
        return false;
    }
    match v {
        Json::Null => ffi::lua_pushlightuserdata(state, std::ptr::null_mut()),
        Json::Bool(b) => ffi::lua_pushboolean(state, c_int::from(*b)),
        Json::Int(i) => ffi::lua_pushinteger(state, *i),
        Json::Float(f) => ffi::lua_pushnumber(state, *f),
        Json::Str(s) => push_str(state, s),
        Json::Array(items) => {
            ffi::lua_createtable(state, c_int::try_from(items.len()).unwrap_or(c_int::MAX), 0);
            for (i, item) in items.iter().enumerate() {
                if !push_json(state, item, depth + 1) {
                    return false;
                }
                ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
            }
        }
        Json::Object(fields) => {
            ffi::lua_createtable(
                state,
                0,
                c_int::try_from(fields.len()).unwrap_or(c_int::MAX),
            );
            for (k, item) in fields {
                push_str(state, k);
                if !push_json(state, item, depth + 1) {
                    return false;
                }
                ffi::lua_rawset(state, -3);
            }
        }
    }
    true
}

/// A scalar of a flat object, with strings as ranges into [`FlatScratch::buf`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Str(usize, usize),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

/// Reusable buffers for [`parse_flat`]: a message is parsed without allocating once the
/// buffers have grown to the size of the largest message seen.
#[derive(Debug, Default)]
pub(crate) struct FlatScratch {
    buf: Vec<u8>,
    fields: Vec<((usize, usize), Scalar)>,
}

/// The fast path of `json.decode` for the shape nearly every message has: one object whose
/// values are strings, numbers, booleans or null. Returns false for anything else (nesting,
/// invalid JSON, invalid UTF-8), and the caller falls back to the general parser, which also
/// words the error messages.
pub(crate) fn parse_flat(text: &[u8], s: &mut FlatScratch) -> bool {
    s.buf.clear();
    s.fields.clear();
    if std::str::from_utf8(text).is_err() {
        return false;
    }
    let mut p = Flat { t: text, i: 0 };
    p.ws();
    if !p.eat(b'{') {
        return false;
    }
    p.ws();
    if p.eat(b'}') {
        p.ws();
        return p.i == text.len();
    }
    loop {
        p.ws();
        let Some(key) = p.string(&mut s.buf) else {
            return false;
        };
        p.ws();
        if !p.eat(b':') {
            return false;
        }
        p.ws();
        let Some(value) = p.scalar(&mut s.buf) else {
            return false;
        };
        s.fields.push((key, value));
        p.ws();
        if p.eat(b',') {
            continue;
        }
        if p.eat(b'}') {
            break;
        }
        return false;
    }
    p.ws();
    p.i == text.len()
}

/// A cursor over JSON text for [`parse_flat`].
struct Flat<'a> {
    t: &'a [u8],
    i: usize,
}

impl Flat<'_> {
    fn ws(&mut self) {
        while matches!(self.t.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.t.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.t.get(self.i..self.i + 4)?;
        self.i += 4;
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }

    /// A string, unescaped and appended to `buf`; returns its range there.
    fn string(&mut self, buf: &mut Vec<u8>) -> Option<(usize, usize)> {
        if !self.eat(b'"') {
            return None;
        }
        let start = buf.len();
        loop {
            // Copy the run up to the next quote or backslash at once; a raw control character
            // inside it makes the text invalid JSON.
            let rest = &self.t[self.i..];
            let n = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[..n].iter().any(|&b| b < 0x20) {
                return None;
            }
            buf.extend_from_slice(&rest[..n]);
            self.i += n;
            match self.t[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some((start, buf.len()));
                }
                b'\\' => {
                    self.i += 1;
                    let e = *self.t.get(self.i)?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                // A surrogate pair: the low half must follow.
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return None;
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
                _ => unreachable!("memchr2 stops only at a quote or a backslash"),
            }
        }
    }

    fn scalar(&mut self, buf: &mut Vec<u8>) -> Option<Scalar> {
        match *self.t.get(self.i)? {
            b'"' => self.string(buf).map(|(a, b)| Scalar::Str(a, b)),
            b't' => self.word(b"true", Scalar::Bool(true)),
            b'f' => self.word(b"false", Scalar::Bool(false)),
            b'n' => self.word(b"null", Scalar::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, w: &[u8], v: Scalar) -> Option<Scalar> {
        if self.t[self.i..].starts_with(w) {
            self.i += w.len();
            Some(v)
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while matches!(self.t.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - s
    }

    /// A number by JSON's grammar; integers that fit 64 bits stay integers.
    fn number(&mut self) -> Option<Scalar> {
        let start = self.i;
        self.eat(b'-');
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.t[int_start] == b'0') {
            return None;
        }
        let mut float = false;
        if self.eat(b'.') {
            float = true;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.t.get(self.i), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.t[start..self.i]).ok()?;
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Some(Scalar::Int(i));
            }
        }
        text.parse::<f64>().ok().map(Scalar::Float)
    }
}

/// Pushes what [`parse_flat`] found as one Lua table.
pub(crate) fn flat_table(lua: &Lua, s: &FlatScratch) -> mlua::Result<Value> {
    // SAFETY: see the module comment; the closure only borrows `s`.
    unsafe {
        lua.exec_raw::<Value>((), |state| {
            ffi::lua_createtable(state, 0, c_int::try_from(s.fields.len()).unwrap_or(0));
            for &((ka, kb), v) in &s.fields {
                ffi::lua_pushlstring(state, s.buf[ka..kb].as_ptr().cast(), kb - ka);
                match v {
                    Scalar::Str(a, b) => {
                        ffi::lua_pushlstring(state, s.buf[a..b].as_ptr().cast(), b - a);
                    }
                    Scalar::Int(i) => ffi::lua_pushinteger(state, i),
                    Scalar::Float(f) => ffi::lua_pushnumber(state, f),
                    Scalar::Bool(b) => ffi::lua_pushboolean(state, c_int::from(b)),
                    Scalar::Null => ffi::lua_pushlightuserdata(state, std::ptr::null_mut()),
                }
                ffi::lua_rawset(state, -3);
            }
        })
    }
}

/// A standard library function whose work is a loop in C, which the instruction count hook
/// cannot see, and what decides the loop's length.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counted {
    /// `string.find/match/gmatch/gsub`: the pattern's matching steps ([`pattern::cost`]).
    Find = 1,
    Match,
    Gmatch,
    Gsub,
    /// `string.rep("", n)`: n rounds that allocate nothing, so the memory limit cannot stop them.
    Rep,
    /// `table.insert(t, pos, v)` and `table.remove(t, pos)`: as many shifts as `#t`, which
    /// `__len` may make up.
    Insert,
    Remove,
    /// `table.move(a, f, e, t)`: e - f + 1 moves.
    Move,
}

/// `original` (a C function of the standard library) behind a charge to `budget`: each call
/// first works out what the C loop will cost and charges it; over the limit it raises the
/// instruction-limit error instead of running. Otherwise `original` runs in the same C call
/// frame, so its results, and its error messages (which name the function and the plugin's
/// line by inspecting that frame), are exactly Lua's own.
///
/// `budget` must outlive the VM's functions: the caller keeps it in the VM's app data.
pub(crate) fn counted(
    lua: &Lua,
    original: Function,
    kind: Counted,
    budget: *const Budget,
) -> mlua::Result<Function> {
    // SAFETY: the closure pushes one value from the two arguments and one light userdata
    // (three slots, which exec_raw guarantees), leaving exactly the closure.
    unsafe {
        lua.exec_raw::<Function>((original, kind as i64), |state| {
            ffi::lua_pushlightuserdata(state, budget.cast_mut().cast::<c_void>());
            ffi::lua_pushcclosure(state, counted_call, 3);
        })
    }
}

/// The C function [`counted`] makes: upvalues are the original function, the [`Counted`] kind
/// and the budget.
///
/// Nothing with a destructor may be alive where Lua can raise an error (a longjmp): the cost
/// is worked out on borrowed slices and integers only, and the limit's message is formatted
/// into a buffer on the stack.
unsafe extern "C-unwind" fn counted_call(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: upvalue 3 is the pointer [`counted`] stored, kept alive by the VM's app data.
    let budget = &*(ffi::lua_touserdata(state, ffi::lua_upvalueindex(3)) as *const Budget);
    let kind = ffi::lua_tointeger(state, ffi::lua_upvalueindex(2));
    let n = match loop_cost(state, kind, budget.left()) {
        Ok(n) => n,
        Err(refused) => {
            ffi::luaL_where(state, 1);
            ffi::lua_pushstring(state, refused.as_ptr());
            ffi::lua_concat(state, 2);
            ffi::lua_error(state);
        }
    };
    if budget.add(n) {
        let mut buf = [0u8; 128];
        let len = {
            let mut w: &mut [u8] = &mut buf;
            let _ = write!(w, "{}", LimitMessage(budget.limit()));
            128 - w.len()
        };
        // As luaL_error: the message names the plugin's line that made the call.
        ffi::luaL_where(state, 1);
        ffi::lua_pushlstring(state, buf.as_ptr().cast(), len);
        ffi::lua_concat(state, 2);
        ffi::lua_error(state);
    }
    match ffi::lua_tocfunction(state, ffi::lua_upvalueindex(1)) {
        Some(original) => original(state),
        None => 0,
    }
}

/// What the call on the stack will cost; more than `left` when it is over the budget; or why
/// it is refused. Arguments the original function will refuse cost nothing here: it raises its
/// own error at once.
unsafe fn loop_cost(
    state: *mut ffi::lua_State,
    kind: ffi::lua_Integer,
    left: u64,
) -> Result<u64, &'static CStr> {
    Ok(match kind {
        k if k == Counted::Insert as i64 || k == Counted::Remove as i64 => {
            let shifts = (k == Counted::Insert as i64 && ffi::lua_gettop(state) == 3)
                || (k == Counted::Remove as i64 && ffi::lua_type(state, 2) > ffi::LUA_TNIL);
            if !shifts || ffi::lua_type(state, 1) != ffi::LUA_TTABLE {
                return Ok(0);
            }
            // A `__len` could answer one length here and another to the original, which reads
            // it again: the loop would not be the one counted.
            if ffi::luaL_getmetafield(state, 1, c"__len".as_ptr()) != ffi::LUA_TNIL {
                ffi::lua_pop(state, 1);
                return Err(c"table.insert and table.remove at a position are not allowed on a table with __len in a plugin (the shifting could not be counted against the instruction limit); move the elements with a loop");
            }
            u64::try_from(ffi::lua_rawlen(state, 1)).unwrap_or(0)
        }
        _ => other_cost(state, kind, left),
    })
}

/// [`loop_cost`] of the functions whose arguments say their cost.
unsafe fn other_cost(state: *mut ffi::lua_State, kind: ffi::lua_Integer, left: u64) -> u64 {
    let call = |c| {
        let (Some(s), Some(p)) = (string_arg(state, 1), string_arg(state, 2)) else {
            return 0;
        };
        pattern::cost(c, s, p, left).unwrap_or(u64::MAX)
    };
    // Each argument as the original reads it; None where it will raise an error.
    let int = |idx| opt_integer(state, idx);
    match kind {
        k if k == Counted::Find as i64 => match int(3) {
            Some(init) => call(pattern::Call::Find {
                init,
                plain: ffi::lua_toboolean(state, 4) != 0,
            }),
            None => 0,
        },
        k if k == Counted::Match as i64 => {
            int(3).map_or(0, |init| call(pattern::Call::Match { init }))
        }
        k if k == Counted::Gmatch as i64 => {
            int(3).map_or(0, |init| call(pattern::Call::Gmatch { init }))
        }
        k if k == Counted::Gsub as i64 => {
            // A string (or number) replacement is walked once per match.
            let repl_len = if ffi::lua_type(state, 3) == ffi::LUA_TSTRING {
                string_arg(state, 3).map_or(0, <[u8]>::len)
            } else {
                0
            };
            int(4).map_or(0, |max| call(pattern::Call::Gsub { max, repl_len }))
        }
        k if k == Counted::Rep as i64 => {
            let sep = string_arg(state, 3).unwrap_or(b"");
            match (string_arg(state, 1), int(2)) {
                (Some(b""), Some(Some(n))) if sep.is_empty() && n > 0 => n as u64,
                _ => 0,
            }
        }
        k if k == Counted::Move as i64 => match (int(2), int(3)) {
            (Some(Some(f)), Some(Some(e))) => {
                u64::try_from(i128::from(e) - i128::from(f) + 1).unwrap_or(0)
            }
            _ => 0,
        },
        _ => 0,
    }
}

/// Argument `idx` as the string Lua's function will read (a number is converted in place, as
/// `luaL_checklstring` does); None for anything else.
unsafe fn string_arg<'a>(state: *mut ffi::lua_State, idx: c_int) -> Option<&'a [u8]> {
    if !matches!(
        ffi::lua_type(state, idx),
        ffi::LUA_TSTRING | ffi::LUA_TNUMBER
    ) {
        return None;
    }
    let mut len = 0;
    let ptr = ffi::lua_tolstring(state, idx, &mut len);
    // SAFETY: the string stays on the stack, unchanged, for the rest of the call.
    (!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr.cast::<u8>(), len))
}

/// An optional integer argument as `luaL_optinteger` reads it: Some(None) when absent or nil,
/// None when it is not an integer (the original function will say so).
unsafe fn opt_integer(state: *mut ffi::lua_State, idx: c_int) -> Option<Option<i64>> {
    if ffi::lua_type(state, idx) <= ffi::LUA_TNIL {
        return Some(None);
    }
    let mut ok = 0;
    let v = ffi::lua_tointegerx(state, idx, &mut ok);
    (ok != 0).then_some(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_borrow_unless_escaped() {
        let doc = parse_json(br#"{"a":"plain","b":"q\"uote"}"#).unwrap();
        let Json::Object(fields) = doc else {
            panic!("not an object")
        };
        assert!(matches!(fields[0].1, Json::Str(Cow::Borrowed("plain"))));
        assert!(matches!(&fields[1].1, Json::Str(Cow::Owned(s)) if s == "q\"uote"));
    }

    fn flat(text: &str) -> Option<Vec<(String, Scalar)>> {
        let mut s = FlatScratch::default();
        parse_flat(text.as_bytes(), &mut s).then(|| {
            s.fields
                .iter()
                .map(|&((a, b), v)| (String::from_utf8(s.buf[a..b].to_vec()).unwrap(), v))
                .collect()
        })
    }

    #[test]
    fn the_flat_fast_path_agrees_with_serde_json() {
        let text = r#" {"service": "repo", "logline": "a \"q\" \\ \/ \u00e9 \ud83d\ude00\t", "n": -12, "f": 2.5e1, "t": true, "z": null} "#;
        let want: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut s = FlatScratch::default();
        assert!(parse_flat(text.as_bytes(), &mut s));
        let keys: Vec<&str> = s
            .fields
            .iter()
            .map(|&((a, b), _)| std::str::from_utf8(&s.buf[a..b]).unwrap())
            .collect();
        assert_eq!(keys, ["service", "logline", "n", "f", "t", "z"]);
        for (i, key) in ["service", "logline"].iter().enumerate() {
            let Scalar::Str(a, b) = s.fields[i].1 else {
                panic!("{key} is not a string")
            };
            assert_eq!(
                std::str::from_utf8(&s.buf[a..b]).unwrap(),
                want[key].as_str().unwrap()
            );
        }
        let values: Vec<Scalar> = s.fields[2..].iter().map(|f| f.1).collect();
        assert_eq!(
            values,
            [
                Scalar::Int(-12),
                Scalar::Float(25.0),
                Scalar::Bool(true),
                Scalar::Null
            ]
        );
    }

    #[test]
    fn the_flat_fast_path_declines_what_it_does_not_handle() {
        for text in [
            r#"{"a": {"b": 1}}"#,
            r#"{"a": [1]}"#,
            r#"[1, 2]"#,
            r#"{"a": 01}"#,
            r#"{"a": "x"} trailing"#,
            r#"{"a": "unterminated}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": "\ud800"}"#,
            "{\"a\": \"raw\tcontrol\"}",
            r#"{"a" 1}"#,
            r#"{"a": 1,}"#,
            r#"{"a": -}"#,
            r#"{"a": 1.}"#,
        ] {
            assert!(flat(text).is_none(), "{text}");
        }
        assert_eq!(flat("{}").map(|f| f.len()), Some(0));
        assert_eq!(
            flat(r#"{"big": 99999999999999999999}"#).unwrap()[0].1,
            Scalar::Float(1e20)
        );
    }

    #[test]
    fn too_deep_documents_are_refused_not_crashed() {
        let lua = Lua::new();
        // serde_json stops at 128 levels itself; build a deeper tree by hand.
        let mut doc = Json::Null;
        for _ in 0..200 {
            doc = Json::Array(vec![doc]);
        }
        let e = json_value(&lua, &doc).unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
        // The VM is unharmed.
        assert_eq!(lua.load("return 1 + 1").eval::<i64>().unwrap(), 2);
    }
}
