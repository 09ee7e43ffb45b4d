//! The `loglines` Lua library: the Rust functions plugins call so that they stay short and fast.
//!
//! Everything a plugin does per line that is more than a few table look-ups belongs here, in
//! Rust: calling into Lua and building tables is the expensive part of a plugin, so a function
//! returns what the plugin needs in as few Lua values as it can. Each function is documented,
//! with an example that a test runs, in docs/plugins.md.

pub mod clf;
pub mod digest;
mod http;
pub mod logformat;
pub mod openurl;
pub mod proxies;
mod regex;
pub mod robots;

use crate::plugin::{convert, raw};
use mlua::{Lua, MultiValue, Table, Value, Variadic};
use robots::Robots;
use std::sync::Arc;

/// What the library needs to know about the plugin it serves.
pub(crate) struct LibraryContext {
    /// The plugin's name (its file name without `.lua`): the log target of `loglines.log`.
    pub name: String,
    pub robots: Arc<Robots>,
    /// The worker's stop signal: it ends an `http_get` in progress.
    pub stop: crate::util::shutdown::Shutdown,
}

/// Installs the global `loglines` table and `print` (which logs instead of writing to stdout,
/// where a dry-run worker prints its URLs).
pub(crate) fn install(lua: &Lua, ctx: LibraryContext) -> mlua::Result<()> {
    let l = lua.create_table()?;
    l.set("plugin_name", ctx.name.as_str())?;
    l.set("version", env!("CARGO_PKG_VERSION"))?;

    install_json(lua, &l)?;
    install_clf(lua, &l)?;

    let robots = ctx.robots.clone();
    l.set(
        "is_robot",
        lua.create_function(move |_, ua: Option<mlua::String>| {
            // A missing user agent is judged as the empty one: the COUNTER list itself decides
            // that an empty user agent is a robot.
            Ok(match ua {
                None => robots.is_robot(""),
                Some(s) => robots.is_robot(&s.to_string_lossy()),
            })
        })?,
    )?;

    l.set(
        "truncate",
        lua.create_function(|lua, (s, max): (mlua::String, i64)| {
            if max < 0 {
                return Err(mlua::Error::runtime(format!(
                    "loglines.truncate: the length must be 0 or more, not {max}"
                )));
            }
            let bytes = s.as_bytes();
            let end = crate::util::text::utf8_cut(&bytes, max as usize);
            if end == bytes.len() {
                return Ok(s);
            }
            lua.create_string(&bytes[..end])
        })?,
    )?;
    l.set(
        "urlencode",
        lua.create_function(|_, s: mlua::String| Ok(openurl::urlencode(s.as_bytes())))?,
    )?;
    l.set(
        "urldecode",
        lua.create_function(
            |lua, s: mlua::String| match openurl::urldecode_bytes(s.as_bytes()) {
                Ok(bytes) => Ok((Value::String(lua.create_string(bytes)?), Value::Nil)),
                Err(e) => Ok((
                    Value::Nil,
                    Value::String(lua.create_string(format!("urldecode: {e}"))?),
                )),
            },
        )?,
    )?;
    l.set(
        "md5",
        lua.create_function(|_, s: mlua::String| Ok(digest::md5_hex(s.as_bytes())))?,
    )?;
    l.set(
        "sha256",
        lua.create_function(|_, s: mlua::String| Ok(digest::sha256_hex(s.as_bytes())))?,
    )?;
    l.set(
        "hmac_sha256",
        lua.create_function(|_, (key, msg): (mlua::String, mlua::String)| {
            Ok(digest::hmac_sha256_hex(key.as_bytes(), msg.as_bytes()))
        })?,
    )?;

    regex::install(lua, &l)?;
    http::install(lua, &l, ctx.stop.clone())?;
    install_log(lua, &l, &ctx.name)?;

    lua.globals().set("loglines", l)
}

fn install_json(lua: &Lua, l: &Table) -> mlua::Result<()> {
    let json = lua.create_table()?;
    json.set("null", Value::NULL)?;
    let scratch = std::cell::RefCell::new(raw::FlatScratch::default());
    json.set(
        "decode",
        lua.create_function(move |lua, s: mlua::String| {
            let text = s.as_bytes();
            // A finalizer running during the push could call json.decode again; it then gets
            // its own scratch instead of a borrow panic.
            if let Ok(mut scratch) = scratch.try_borrow_mut() {
                if raw::parse_flat(&text, &mut scratch) {
                    return raw::flat_table(lua, &scratch);
                }
            }
            convert::json_to_lua(lua, &text)
                .map_err(|e| mlua::Error::runtime(format!("json.decode: {e}")))
        })?,
    )?;
    json.set(
        "encode",
        lua.create_function(|_, v: Value| {
            let j = convert::lua_to_json(&v)
                .map_err(|e| mlua::Error::runtime(format!("json.encode: {e}")))?;
            Ok(j.to_string())
        })?,
    )?;
    l.set("json", json)
}

fn install_clf(lua: &Lua, l: &Table) -> mlua::Result<()> {
    l.set(
        "parse_combined",
        lua.create_function(|lua, line: mlua::String| {
            let bytes = line.as_bytes();
            // Log lines are nearly always UTF-8; the lossy path only runs for the rare one that
            // is not.
            let text = match std::str::from_utf8(&bytes) {
                Ok(s) => std::borrow::Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(&bytes),
            };
            match clf::parse_combined(&text) {
                Some(r) => raw::clf_table(lua, &r),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    l.set(
        "trusted_proxies",
        lua.create_function(|_, list: mlua::String| {
            proxies::Networks::parse(&list.to_string_lossy())
                .map(Proxies)
                .map_err(|e| mlua::Error::runtime(format!("trusted_proxies: {e}")))
        })?,
    )?;
    l.set(
        "log_format",
        lua.create_function(|lua, (spec, options): (mlua::String, Value)| {
            let spec = spec.to_string_lossy();
            let options = FormatOptions::from_lua(options)?;
            let compiled = match (spec.trim(), &options.fields) {
                ("json", Some(f)) => logformat::LogFormat::compile_json(f),
                ("json", None) => {
                    return Err(mlua::Error::runtime(
                        "log_format: `json` needs its fields: loglines.log_format(\"json\", \"ip:remote_ip time:ts request:request ...\")",
                    ))
                }
                (s, _) => logformat::LogFormat::compile(s),
            };
            let format =
                compiled.map_err(|e| mlua::Error::runtime(format!("log_format: {e}")))?;
            parser_table(lua, format, options.trusted, options.only)
        })?,
    )?;
    l.set(
        "to_iso8601_utc",
        lua.create_function(|_, s: mlua::String| Ok(clf::to_iso8601_utc(&s.to_string_lossy())))?,
    )
}

/// `loglines.trusted_proxies(list)`, as the plugin holds it: `proxies:client(ip, forwarded_for)`.
struct Proxies(proxies::Networks);

impl mlua::UserData for Proxies {
    fn add_methods<M: mlua::UserDataMethods<Self>>(m: &mut M) {
        m.add_method(
            "client",
            |_, this, (ip, xff): (mlua::String, Option<mlua::String>)| {
                let xff = xff.map(|x| x.to_string_lossy());
                Ok(this.0.client(&ip.to_string_lossy(), xff.as_deref()))
            },
        );
    }
}

/// The second argument of `loglines.log_format`: the `json` field map as a string, or a table
/// `{fields = ..., trusted_proxies = ...}`.
struct FormatOptions {
    fields: Option<String>,
    trusted: Option<proxies::Networks>,
    /// `only`: the fields the table gets (every one when absent). A field costs a Lua string
    /// per line whether or not the plugin reads it.
    only: Option<Vec<String>>,
}

impl FormatOptions {
    fn from_lua(v: Value) -> mlua::Result<FormatOptions> {
        let text = |v: Value, what: &str| -> mlua::Result<Option<String>> {
            match v {
                Value::Nil => Ok(None),
                Value::String(s) => Ok(Some(s.to_string_lossy())),
                other => Err(mlua::Error::runtime(format!(
                    "log_format: {what} must be a string, got {}",
                    other.type_name()
                ))),
            }
        };
        match v {
            Value::Table(t) => {
                let trusted = match text(t.get("trusted_proxies")?, "trusted_proxies")? {
                    Some(list) => Some(
                        proxies::Networks::parse(&list)
                            .map_err(|e| mlua::Error::runtime(format!("trusted_proxies: {e}")))?,
                    ),
                    None => None,
                };
                let only = text(t.get("only")?, "only")?.map(|list| {
                    list.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect()
                });
                Ok(FormatOptions {
                    fields: text(t.get("fields")?, "fields")?,
                    trusted,
                    only,
                })
            }
            other => Ok(FormatOptions {
                fields: text(
                    other,
                    "the second argument (the json fields, or a table of options)",
                )?,
                trusted: None,
                only: None,
            }),
        }
    }
}

/// A compiled `loglines.log_format` as the plugin holds it: a table whose `parse` is a plain
/// function (`parser:parse(line)` passes the table as its first argument, which it ignores).
/// Why not userdata with a method: a userdata method call costs a metatable look-up and a
/// borrow per line, about a third of the parse itself. With trusted proxies, `ip` is the
/// client's address from X-Forwarded-For, worked out here: in Lua, the call and the new string
/// cost a tenth of a plugin's time per line.
fn parser_table(
    lua: &Lua,
    format: logformat::LogFormat,
    trusted: Option<proxies::Networks>,
    only: Option<Vec<String>>,
) -> mlua::Result<Table> {
    // The record's allocation, kept from one line to the next.
    let scratch: std::cell::Cell<logformat::Record<'static>> = Default::default();
    let parse = lua.create_function(move |lua, (_this, line): (Value, mlua::String)| {
        let bytes = line.as_bytes();
        let text = match std::str::from_utf8(&bytes) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&bytes),
        };
        let mut r = logformat::recycle(scratch.take());
        let result = match format.parse_into(&text, &mut r) {
            Ok(()) => {
                if let Some(nets) = &trusted {
                    logformat::resolve_client(nets, &mut r);
                }
                if let Some(names) = &only {
                    r.retain(|(k, _)| names.iter().any(|n| n == k));
                }
                raw::record_table(lua, &r).map(|t| (t, Value::Nil))
            }
            Err(why) => lua
                .create_string(why)
                .map(|w| (Value::Nil, Value::String(w))),
        };
        scratch.set(logformat::recycle(r));
        result
    })?;
    let t = lua.create_table()?;
    t.set("parse", parse)?;
    Ok(t)
}

/// Joins arguments the way `print` does (tostring of each, tab-separated).
fn join_args(args: &MultiValue) -> mlua::Result<String> {
    let mut out = String::new();
    for (i, v) in args.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        out.push_str(&v.to_string()?);
    }
    Ok(out)
}

fn install_log(lua: &Lua, l: &Table, name: &str) -> mlua::Result<()> {
    let log = lua.create_table()?;
    let levels = [
        ("debug", log::Level::Debug),
        ("info", log::Level::Info),
        ("warn", log::Level::Warn),
        ("error", log::Level::Error),
    ];
    for (fname, level) in levels {
        let target = name.to_string();
        log.set(
            fname,
            lua.create_function(move |_, args: Variadic<Value>| {
                if log::log_enabled!(target: &target, level) {
                    let msg = join_args(&args.into_iter().collect())?;
                    log::log!(target: &target, level, "{msg}");
                }
                Ok(())
            })?,
        )?;
    }
    l.set("log", log)?;
    let target = name.to_string();
    lua.globals().set(
        "print",
        lua.create_function(move |_, args: MultiValue| {
            if log::log_enabled!(target: &target, log::Level::Info) {
                let msg = join_args(&args)?;
                log::info!(target: &target, "{msg}");
            }
            Ok(())
        })?,
    )
}
