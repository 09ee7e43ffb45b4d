//! The `c` object plugins receive: `loglines.cfg` read through the methods of Python's
//! ConfigParser that the 2010 plugins used.
//!
//! Semantics follow ConfigParser so that plugins ported from Python behave the same: keys are
//! case-insensitive, section names are not; `get` and the typed getters raise an error for a
//! missing section or key unless a fallback is passed (a passed `nil` counts as a fallback, so
//! `c:get(s, k, nil)` is the Lua way to say "nil when absent"); `getboolean` accepts
//! 1/yes/true/on and 0/no/false/off in any case. Values are returned as written, without
//! ConfigParser's `%(name)s` interpolation, which loglines.cfg never used.

use crate::config::read::parse_bool;
use crate::config::RawIni;
use mlua::{Lua, MultiValue, UserData, UserDataMethods, Value};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A plugin's own setting found wrong, raised by `c:error_at(section, key, message)`: it keeps
/// where the key is written, so that `loglines check` reports it on that line of the file, as
/// it reports loglines' own keys, and a worker failing to start names the line too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub path: PathBuf,
    pub section: String,
    pub key: String,
    /// The key's line, or the section's when the key is not written (a required key missing).
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, section, key) = (self.path.display(), &self.section, &self.key);
        match self.line {
            Some(n) => write!(f, "{path}:{n} [{section}] {key}: {}", self.message),
            None => write!(f, "{path} [{section}] {key}: {}", self.message),
        }
    }
}

impl std::error::Error for SettingError {}

/// The [`SettingError`] a Lua error carries, through the callbacks and contexts it went through.
pub fn setting_error(e: &mlua::Error) -> Option<&SettingError> {
    match e {
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            setting_error(cause)
        }
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<SettingError>(),
        _ => None,
    }
}

/// The userdata behind `c`.
#[derive(Debug, Clone)]
pub struct ConfigObject {
    raw: Arc<RawIni>,
}

impl ConfigObject {
    pub fn new(raw: Arc<RawIni>) -> Self {
        ConfigObject { raw }
    }
}

/// The arguments of a getter: section, key, and whether a fallback was passed (and which).
struct GetArgs {
    section: String,
    key: String,
    fallback: Option<Value>,
}

fn get_args(method: &str, args: MultiValue) -> mlua::Result<GetArgs> {
    let mut it = args.into_iter();
    let mut text = |what: &str| -> mlua::Result<String> {
        match it.next() {
            Some(Value::String(s)) => Ok(s.to_str()?.to_string()),
            Some(Value::Integer(i)) => Ok(i.to_string()),
            other => Err(mlua::Error::runtime(format!(
                "c:{method}: the {what} must be a string, got {}; call it as c:{method}(section, key[, fallback])",
                other.map_or("nothing", |v| v.type_name())
            ))),
        }
    };
    let section = text("section name")?;
    let key = text("key")?;
    Ok(GetArgs {
        section,
        key,
        fallback: it.next(),
    })
}

impl ConfigObject {
    /// The raw value, or the fallback, or an error saying what is missing.
    fn lookup(&self, method: &str, a: &GetArgs) -> mlua::Result<Result<String, Value>> {
        match self.raw.section(&a.section) {
            None => match &a.fallback {
                Some(f) => Ok(Err(f.clone())),
                None => Err(mlua::Error::runtime(format!(
                    "c:{method}: no section [{}] in {}; add it, or pass a fallback: c:{method}(\"{}\", \"{}\", default)",
                    a.section,
                    self.file(),
                    a.section,
                    a.key
                ))),
            },
            Some(sec) => match sec.get(&a.key.to_ascii_lowercase()) {
                Some(v) => Ok(Ok(v.to_string())),
                None => match &a.fallback {
                    Some(f) => Ok(Err(f.clone())),
                    None => Err(mlua::Error::runtime(format!(
                        "c:{method}: no key `{}` in section [{}] of {}; add it, or pass a fallback: c:{method}(\"{}\", \"{}\", default)",
                        a.key.to_ascii_lowercase(),
                        a.section,
                        self.file(),
                        a.section,
                        a.key
                    ))),
                },
            },
        }
    }

    fn file(&self) -> String {
        if self.raw.path.as_os_str().is_empty() {
            "the configuration (none was given)".to_string()
        } else {
            self.raw.path.display().to_string()
        }
    }
}

impl UserData for ConfigObject {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("get", |lua, this, args: MultiValue| {
            let a = get_args("get", args)?;
            match this.lookup("get", &a)? {
                Ok(v) => lua.create_string(v).map(Value::String),
                Err(fallback) => Ok(fallback),
            }
        });
        m.add_method("getint", |_, this, args: MultiValue| {
            let a = get_args("getint", args)?;
            match this.lookup("getint", &a)? {
                Ok(v) => v.trim().parse::<i64>().map(Value::Integer).map_err(|_| {
                    this.setting_error(
                        &a.section,
                        &a.key,
                        format!("`{v}` is not a whole number; fix the value in the configuration"),
                    )
                }),
                Err(fallback) => Ok(fallback),
            }
        });
        m.add_method("getfloat", |_, this, args: MultiValue| {
            let a = get_args("getfloat", args)?;
            match this.lookup("getfloat", &a)? {
                Ok(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Value::Number)
                    .ok_or_else(|| {
                        this.setting_error(
                            &a.section,
                            &a.key,
                            format!("`{v}` is not a number; fix the value in the configuration"),
                        )
                    }),
                Err(fallback) => Ok(fallback),
            }
        });
        m.add_method("getboolean", |_, this, args: MultiValue| {
            let a = get_args("getboolean", args)?;
            match this.lookup("getboolean", &a)? {
                Ok(v) => parse_bool(&v).map(Value::Boolean).ok_or_else(|| {
                    this.setting_error(
                        &a.section,
                        &a.key,
                        format!("`{v}` is not a boolean; write true/false, yes/no, on/off or 1/0"),
                    )
                }),
                Err(fallback) => Ok(fallback),
            }
        });
        m.add_method("has_option", |_, this, (section, key): (String, String)| {
            Ok(this
                .raw
                .section(&section)
                .is_some_and(|s| s.get(&key.to_ascii_lowercase()).is_some()))
        });
        m.add_method("has_section", |_, this, section: String| {
            Ok(this.raw.section(&section).is_some())
        });
        m.add_method("sections", |lua: &Lua, this, ()| {
            lua.create_sequence_from(this.raw.section_names())
        });
        m.add_method("options", |lua, this, section: String| {
            let sec = this.section_or_error("options", &section)?;
            lua.create_sequence_from(sec.entries.iter().map(|e| e.key.as_str()))
        });
        m.add_method("items", |lua, this, section: String| {
            let sec = this.section_or_error("items", &section)?;
            let t = lua.create_table_with_capacity(0, sec.entries.len())?;
            for e in &sec.entries {
                t.raw_set(e.key.as_str(), e.value.as_str())?;
            }
            Ok(t)
        });
        m.add_method(
            "error_at",
            |_, this, (section, key, message): (String, String, String)| -> mlua::Result<()> {
                Err(this.setting_error(&section, &key, message))
            },
        );
        m.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("loglines configuration ({})", this.file()))
        });
    }
}

impl ConfigObject {
    /// The error for a wrong value of `[section] key`, at the key's line (the section's when
    /// the key is not written).
    fn setting_error(&self, section: &str, key: &str, message: String) -> mlua::Error {
        let key = key.to_ascii_lowercase();
        let sec = self.raw.section(section);
        let line = sec
            .and_then(|s| s.entry(&key))
            .map(|e| e.line)
            .or(sec.map(|s| s.line));
        mlua::Error::external(SettingError {
            path: self.raw.path.clone(),
            section: section.to_string(),
            key,
            line,
            message,
        })
    }

    fn section_or_error(
        &self,
        method: &str,
        section: &str,
    ) -> mlua::Result<&crate::config::RawSection> {
        self.raw.section(section).ok_or_else(|| {
            mlua::Error::runtime(format!(
                "c:{method}: no section [{section}] in {}; check with c:has_section(\"{section}\") first",
                self.file()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn lua_with(text: &str) -> Lua {
        let raw = crate::config::ini::parse(Path::new("t.cfg"), text).unwrap();
        let lua = Lua::new();
        lua.globals()
            .set("c", ConfigObject::new(Arc::new(raw)))
            .unwrap();
        lua
    }

    fn eval<T: mlua::FromLua>(lua: &Lua, code: &str) -> T {
        lua.load(code).eval().unwrap()
    }

    fn err(lua: &Lua, code: &str) -> String {
        crate::plugin::sandbox::error_message(&lua.load(code).exec().unwrap_err())
    }

    const CFG: &str = "[irus]\nRepository = repo.example.ac.uk\nport = 8080\nratio = 0.25\nflag = Yes\noff = off\nbad = maybe\n[other]\n";

    #[test]
    fn get_is_case_insensitive_in_keys_only() {
        let lua = lua_with(CFG);
        assert_eq!(
            eval::<String>(&lua, "return c:get('irus', 'REPOSITORY')"),
            "repo.example.ac.uk"
        );
        assert!(err(&lua, "c:get('IRUS', 'repository')").contains("no section [IRUS]"));
    }

    #[test]
    fn missing_values_raise_unless_a_fallback_is_given() {
        let lua = lua_with(CFG);
        let e = err(&lua, "c:get('irus', 'nope')");
        assert!(
            e.contains("no key `nope` in section [irus] of t.cfg"),
            "{e}"
        );
        assert!(e.contains("pass a fallback"), "{e}");
        assert_eq!(
            eval::<String>(&lua, "return c:get('irus', 'nope', 'd')"),
            "d"
        );
        assert_eq!(eval::<String>(&lua, "return c:get('none', 'x', 'd')"), "d");
        assert!(eval::<bool>(
            &lua,
            "return c:get('irus', 'nope', nil) == nil"
        ));
        assert_eq!(eval::<i64>(&lua, "return c:getint('irus', 'nope', 7)"), 7);
    }

    #[test]
    fn typed_getters_follow_configparser() {
        let lua = lua_with(CFG);
        assert_eq!(eval::<i64>(&lua, "return c:getint('irus', 'port')"), 8080);
        assert!(eval::<bool>(
            &lua,
            "return math.type(c:getint('irus', 'port')) == 'integer'"
        ));
        assert_eq!(
            eval::<f64>(&lua, "return c:getfloat('irus', 'ratio')"),
            0.25
        );
        assert!(eval::<bool>(&lua, "return c:getboolean('irus', 'flag')"));
        assert!(!eval::<bool>(&lua, "return c:getboolean('irus', 'off')"));
        let e = err(&lua, "c:getboolean('irus', 'bad')");
        assert!(e.contains("`maybe` is not a boolean"), "{e}");
        let e = err(&lua, "c:getint('irus', 'ratio')");
        assert!(e.contains("`0.25` is not a whole number"), "{e}");
        let e = err(&lua, "c:getfloat('irus', 'repository')");
        assert!(e.contains("is not a number"), "{e}");
    }

    #[test]
    fn error_at_names_the_line_of_the_key_or_of_its_section() {
        let lua = lua_with(CFG);
        let caught = |code: &str| -> SettingError {
            let e = lua.load(code).exec().unwrap_err();
            setting_error(&e).cloned().unwrap_or_else(|| panic!("{e}"))
        };
        let e = caught("c:error_at('irus', 'Port', 'too high')");
        assert_eq!(e.to_string(), "t.cfg:3 [irus] port: too high");
        // A key not written: the section's line. A wrong type from a getter: the same error.
        assert_eq!(
            caught("c:error_at('irus', 'absent', 'needed')").line,
            Some(1)
        );
        let e = caught("c:getboolean('irus', 'bad')");
        assert_eq!((e.key.as_str(), e.line), ("bad", Some(7)));
        // A plugin may catch it and read it as text.
        let text: String = lua
            .load("local ok, e = pcall(c.error_at, c, 'irus', 'flag', 'no'); return tostring(e)")
            .eval()
            .unwrap();
        assert!(text.contains("[irus] flag: no"), "{text}");
    }

    #[test]
    fn sections_items_and_has() {
        let lua = lua_with(CFG);
        assert_eq!(
            eval::<Vec<String>>(&lua, "return c:sections()"),
            vec!["irus", "other"]
        );
        assert!(eval::<bool>(&lua, "return c:has_section('other')"));
        assert!(!eval::<bool>(&lua, "return c:has_section('Other')"));
        assert!(eval::<bool>(&lua, "return c:has_option('irus', 'Port')"));
        assert!(!eval::<bool>(&lua, "return c:has_option('irus', 'nope')"));
        assert!(!eval::<bool>(&lua, "return c:has_option('nope', 'port')"));
        assert_eq!(eval::<String>(&lua, "return c:items('irus').port"), "8080");
        assert_eq!(
            eval::<Vec<String>>(&lua, "return c:options('irus')"),
            vec!["repository", "port", "ratio", "flag", "off", "bad"]
        );
        assert!(err(&lua, "c:items('nope')").contains("no section [nope]"));
    }

    #[test]
    fn wrong_arguments_say_how_to_call() {
        let lua = lua_with(CFG);
        let e = err(&lua, "c:get({}, 'x')");
        assert!(e.contains("c:get(section, key[, fallback])"), "{e}");
    }
}
