//! Conversions between Lua values and the outside world: JSON text in and out of Lua, and the
//! table `get_openurl_params` returns into OpenURL parameters.
//!
//! The rules (also in docs/plugins.md):
//! - JSON to Lua: objects and arrays become tables (arrays indexed from 1), strings become
//!   strings, integers that fit 64 bits become Lua integers and other numbers floats, `true`/
//!   `false` booleans, and `null` the sentinel `loglines.json.null` (a Lua `nil` could not be
//!   stored in a table).
//! - Lua to JSON: a table whose keys are exactly 1..n is an array, a table whose keys are all
//!   strings is an object (keys sorted, so the output is stable), an empty table is `{}`. A table
//!   mixing the two, other key types, functions, userdata, NaN/infinity, invalid UTF-8 and cycles
//!   are errors that name the offending key.
//! - OpenURL parameters: `nil`, `false` or an empty table mean "not eligible"; strings are sent
//!   as they are; integers and booleans become their text, floats their shortest text (an
//!   integral float without `.0`); a nested table, a function, any other value, a non-string key
//!   or a mixed array/map are errors naming the key, never dropped silently.

use mlua::{Lua, Table, Value};

/// Nesting deeper than this is refused when converting Lua to JSON (and catches cycles).
const MAX_DEPTH: usize = 64;

/// Parses JSON text into Lua values (see [`super::raw`] for how they are built).
pub(crate) fn json_to_lua(lua: &Lua, text: &[u8]) -> Result<Value, String> {
    let doc = super::raw::parse_json(text)?;
    super::raw::json_value(lua, &doc).map_err(|e| super::sandbox::error_message(&e))
}

/// Where in a Lua value a conversion failed, for messages like `key "a.b[2]"`.
fn child_path(parent: &str, key: &Value) -> String {
    match key {
        Value::Integer(i) => format!("{parent}[{i}]"),
        Value::String(s) => {
            let s = s.to_string_lossy();
            if parent.is_empty() {
                s
            } else {
                format!("{parent}.{s}")
            }
        }
        other => format!("{parent}[{}]", other.type_name()),
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the value itself".to_string()
    } else {
        format!("key `{path}`")
    }
}

/// Converts a Lua value to JSON by the rules in the module comment.
pub(crate) fn lua_to_json(v: &Value) -> Result<serde_json::Value, String> {
    to_json(v, "", 0)
}

fn to_json(v: &Value, path: &str, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        Value::Nil => J::Null,
        v if *v == Value::NULL => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Number(n) => serde_json::Number::from_f64(*n)
            .map(J::Number)
            .ok_or_else(|| format!("{} is {n}, which JSON cannot represent", shown(path)))?,
        Value::String(s) => J::String(
            s.to_str()
                .map_err(|_| format!("{} is not valid UTF-8 text", shown(path)))?
                .to_string(),
        ),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(format!(
                    "{} is nested more than {MAX_DEPTH} levels deep (or the table contains itself)",
                    shown(path)
                ));
            }
            table_to_json(t, path, depth)?
        }
        other => {
            return Err(format!(
                "{} is a {}, which JSON cannot represent",
                shown(path),
                other.type_name()
            ))
        }
    })
}

fn table_to_json(t: &Table, path: &str, depth: usize) -> Result<serde_json::Value, String> {
    let mut ints: Vec<(i64, Value)> = Vec::new();
    let mut strs: Vec<(String, Value)> = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| crate::plugin::sandbox::error_message(&e))?;
        match &k {
            Value::Integer(i) => ints.push((*i, v)),
            Value::String(s) => match s.to_str() {
                Ok(s) => strs.push((s.to_string(), v)),
                Err(_) => {
                    return Err(format!(
                        "{} has a key that is not valid UTF-8 text",
                        shown(path)
                    ))
                }
            },
            other => {
                return Err(format!(
                    "{} has a {} key; JSON keys must be strings (or 1..n for an array)",
                    shown(path),
                    other.type_name()
                ))
            }
        }
    }
    if !ints.is_empty() && !strs.is_empty() {
        let key = child_path(path, &Value::Integer(ints[0].0));
        return Err(format!(
            "{} mixes array entries ({}) with named keys; use one or the other",
            shown(path),
            key
        ));
    }
    if !ints.is_empty() {
        ints.sort_by_key(|(i, _)| *i);
        if ints
            .iter()
            .enumerate()
            .any(|(n, (i, _))| *i != n as i64 + 1)
        {
            return Err(format!(
                "{} is an array with holes or keys not counting from 1; JSON arrays cannot have gaps",
                shown(path)
            ));
        }
        let items = ints
            .iter()
            .map(|(i, v)| to_json(v, &child_path(path, &Value::Integer(*i)), depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(serde_json::Value::Array(items));
    }
    strs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut map = serde_json::Map::new();
    for (k, v) in strs {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        map.insert(k, to_json(&v, &p, depth + 1)?);
    }
    Ok(serde_json::Value::Object(map))
}

/// What `get_openurl_params` returned, as parameters. `Ok(None)` means not eligible.
pub(crate) fn params_from_lua(v: &Value) -> Result<Option<Vec<(String, String)>>, String> {
    let t = match v {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Table(t) => t,
        other => {
            return Err(format!(
                "returned {}; return a table of OpenURL parameters, or nil when the line is not an event",
                a_or_an(other.type_name())
            ))
        }
    };
    let mut out = Vec::with_capacity(12);
    let mut int_key = None;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| crate::plugin::sandbox::error_message(&e))?;
        let key = match &k {
            Value::String(s) => s
                .to_str()
                .map_err(|_| "returned a parameter name that is not valid UTF-8".to_string())?
                .to_string(),
            Value::Integer(i) => {
                int_key = Some(*i);
                continue;
            }
            other => {
                return Err(format!(
                    "returned a table with a {} key; parameter names must be strings",
                    other.type_name()
                ))
            }
        };
        if key.is_empty() {
            return Err("returned a parameter with an empty name".to_string());
        }
        let value = param_value(&key, &v)?;
        out.push((key, value));
    }
    if let Some(i) = int_key {
        return Err(if out.is_empty() {
            format!("returned an array (key [{i}]); return a table of parameter names to values, e.g. {{url_ver = \"Z39.88-2004\"}}")
        } else {
            format!("returned a table mixing array entries (key [{i}]) with named parameters; return only named parameters")
        });
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(out))
}

fn param_value(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| format!("returned parameter `{key}` that is not valid UTF-8 text")),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => number_text(*n)
            .ok_or_else(|| format!("returned parameter `{key}` = {n}, which is not a finite number")),
        Value::Boolean(b) => Ok(b.to_string()),
        v if *v == Value::NULL => Err(format!(
            "returned parameter `{key}` = json.null; leave the key out instead"
        )),
        Value::Table(_) => Err(format!(
            "returned parameter `{key}` as a nested table; parameter values must be strings, numbers or booleans"
        )),
        other => Err(format!(
            "returned parameter `{key}` as a {}; parameter values must be strings, numbers or booleans",
            other.type_name()
        )),
    }
}

/// "a string", "an integer": for messages naming a Lua type.
fn a_or_an(type_name: &str) -> String {
    let article = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {type_name}")
}

/// A float as parameter text: integral values without a fraction (`3.0` -> `3`), others in the
/// shortest form that reads back the same.
fn number_text(n: f64) -> Option<String> {
    if !n.is_finite() {
        return None;
    }
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        return Some(format!("{}", n as i64));
    }
    // Debug formatting is the shortest round-trip form and switches to exponent notation for
    // very large or small values, where Display would write hundreds of digits.
    Some(format!("{n:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(lua: &Lua, code: &str) -> Value {
        lua.load(code).eval().unwrap()
    }

    #[test]
    fn numbers_become_text_without_surprises() {
        assert_eq!(number_text(3.0).as_deref(), Some("3"));
        assert_eq!(number_text(-0.5).as_deref(), Some("-0.5"));
        assert_eq!(number_text(1e300).as_deref(), Some("1e300"));
        assert_eq!(number_text(f64::NAN), None);
        assert_eq!(number_text(f64::INFINITY), None);
    }

    #[test]
    fn json_round_trips_through_lua() {
        let lua = Lua::new();
        let text = r#"{"a":[1,2.5,"x",null,true],"b":{"c":-3},"big":18446744073709551615}"#;
        let v = json_to_lua(&lua, text.as_bytes()).unwrap();
        lua.globals().set("v", v.clone()).unwrap();
        let checks = eval(
            &lua,
            "return math.type(v.a[1]) == 'integer' and v.a[2] == 2.5 and v.a[3] == 'x' and type(v.a[4]) == 'userdata' and v.a[5] == true and v.b.c == -3 and math.type(v.big) == 'float'",
        );
        assert_eq!(checks, Value::Boolean(true));
        let back = lua_to_json(&v).unwrap();
        assert_eq!(
            back.to_string(),
            r#"{"a":[1,2.5,"x",null,true],"b":{"c":-3},"big":1.8446744073709552e+19}"#
        );
    }

    #[test]
    fn bad_json_is_an_error_with_position() {
        let lua = Lua::new();
        let e = json_to_lua(&lua, b"{\"a\": }").unwrap_err();
        assert!(e.contains("line 1 column 7"), "{e}");
        assert!(json_to_lua(&lua, b"{} x").is_err());
    }

    #[test]
    fn lua_to_json_names_the_bad_key() {
        let lua = Lua::new();
        let cases = [
            ("return {a = {1, 2, x = 3}}", "key `a` mixes array entries"),
            ("return {a = {b = print}}", "key `a.b` is a function"),
            ("return {[1] = 1, [3] = 3}", "array with holes"),
            ("return {f = 0/0}", "key `f` is"),
            ("local t = {}; t.t = t; return t", "nested more than 64"),
            ("return {[true] = 1}", "has a boolean key"),
        ];
        for (code, want) in cases {
            let e = lua_to_json(&eval(&lua, code)).unwrap_err();
            assert!(e.contains(want), "{code}: {e}");
        }
        assert_eq!(
            lua_to_json(&eval(&lua, "return {}")).unwrap().to_string(),
            "{}"
        );
    }

    #[test]
    fn params_follow_the_conversion_rules() {
        let lua = Lua::new();
        for code in ["return nil", "return false", "return {}"] {
            assert_eq!(params_from_lua(&eval(&lua, code)).unwrap(), None, "{code}");
        }
        let mut p = params_from_lua(&eval(
            &lua,
            "return {s = 'x y', i = 42, f = 2.0, g = 0.5, t = true, n = false}",
        ))
        .unwrap()
        .unwrap();
        p.sort();
        let want: Vec<(String, String)> = [
            ("f", "2"),
            ("g", "0.5"),
            ("i", "42"),
            ("n", "false"),
            ("s", "x y"),
            ("t", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(p, want);
    }

    #[test]
    fn bad_params_are_errors_naming_the_key() {
        let lua = Lua::new();
        let cases = [
            (
                "return {a = 'x', nested = {1}}",
                "parameter `nested` as a nested table",
            ),
            (
                "return {a = 'x', fn = print}",
                "parameter `fn` as a function",
            ),
            (
                "return {a = 'x', 'positional'}",
                "mixing array entries (key [1])",
            ),
            ("return {'only', 'array'}", "returned an array"),
            ("return 'text'", "returned a string"),
            ("return 12", "returned an integer"),
            ("return {a = 0/0}", "parameter `a` = "),
            ("return {a = loglines_null}", "json.null"),
            ("return {[true] = 'x'}", "boolean key"),
            ("return {[''] = 'x'}", "empty name"),
        ];
        lua.globals().set("loglines_null", Value::NULL).unwrap();
        for (code, want) in cases {
            let e = params_from_lua(&eval(&lua, code)).unwrap_err();
            assert!(e.contains(want), "{code}: {e}");
        }
    }
}
