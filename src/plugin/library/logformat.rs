//! `loglines.log_format(spec)`: a parser for the access log format a site actually writes,
//! compiled once from the server's own format string and run in Rust per line.
//!
//! A format is a sequence of literal text and fields. A line is read left to right: each
//! literal must be there, and a field runs up to the literal that follows it (to the end of the
//! line for the last one). A field between `"` and `"` is a quoted string as Apache and nginx
//! write them: it runs to the first `"` not escaped with a backslash, and `\"`, `\\` and `\xHH`
//! are undone. `-` means absent. The fields come out under the names `parse_combined` uses
//! (`ip`, `time`, `method`, `path`, `query`, `protocol`, `status`, `bytes`, `referer`,
//! `useragent`) and, for the rest, names of their own (`forwarded_for`, `vhost`,
//! `request_time`, `http_x_request_id`, ...).

use super::clf::{self, split_request};
use std::borrow::Cow;
use std::fmt;

/// A field's value as the plugin gets it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Text(Cow<'a, str>),
    Int(i64),
}

/// One parsed line: (name, value) pairs in format order; absent fields are left out.
pub type Record<'a> = Vec<(Cow<'static, str>, Val<'a>)>;

/// What a field holds, and so where its value goes.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A text field under this name.
    Text(Cow<'static, str>),
    /// A whole number under this name (kept as text if the log has something else there).
    Int(Cow<'static, str>),
    /// The status: a whole number, or the line is refused.
    Status,
    /// The request line: method, path, query and protocol.
    Request,
    /// A target with its query (`$request_uri`): path and query.
    Uri,
    /// A query string with its `?` (Apache's `%q`).
    QueryWithMark,
    /// The time as the log writes it.
    Time,
    /// The time as seconds (1), milliseconds (1000) or microseconds (1000000) since 1970.
    Epoch(u32),
    /// The time in an strftime format, converted to ISO 8601 where the format says enough.
    Strftime(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Field { target: Target, quoted: bool },
}

/// A compiled log format.
#[derive(Debug, Clone)]
pub struct LogFormat {
    /// The `combined`/`common` presets: the hand-written parser, which also reads lines with
    /// extra fields at the end.
    combined: bool,
    parts: Vec<Part>,
    /// `json`: each field's name and its path into the line's object.
    json: Option<Vec<(&'static str, Vec<String>)>>,
}

/// The fields a `json` format can take from a line's object.
const JSON_NAMES: &[&str] = &[
    "ip",
    "time",
    "method",
    "path",
    "request",
    "status",
    "referer",
    "useragent",
    "forwarded_for",
];

/// Why a format string cannot be used: where, and what.
#[derive(Debug, PartialEq)]
pub struct FormatError {
    pub position: usize,
    pub what: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.position == usize::MAX {
            write!(f, "{}", self.what)
        } else {
            write!(f, "at character {}: {}", self.position + 1, self.what)
        }
    }
}

/// The presets by name, as the servers define them.
const PRESETS: &[(&str, &str)] = &[
    (
        "vhost_combined",
        "%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"",
    ),
    (
        "nginx_main",
        "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$http_x_forwarded_for\"",
    ),
];

impl LogFormat {
    /// Compiles `spec`: a preset name (`combined`, `common`, `vhost_combined`, `nginx_main`),
    /// an Apache `LogFormat` string (`%h %l ...`) or an nginx `log_format` string
    /// (`$remote_addr ...`).
    pub fn compile(spec: &str) -> Result<LogFormat, FormatError> {
        let spec = spec.trim();
        if spec == "combined" || spec == "common" {
            return Ok(LogFormat {
                combined: true,
                parts: Vec::new(),
                json: None,
            });
        }
        if let Some((_, preset)) = PRESETS.iter().find(|(name, _)| *name == spec) {
            return LogFormat::compile(preset);
        }
        let is_nginx = spec
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'$' && (w[1].is_ascii_alphabetic() || w[1] == b'{' || w[1] == b'_'));
        let raw = if is_nginx {
            nginx_parts(spec)?
        } else if spec.contains('%') {
            apache_parts(spec)?
        } else {
            return Err(FormatError {
                position: usize::MAX,
                what: format!("`{spec}` is neither a preset (combined, common, vhost_combined, nginx_main), nor an Apache LogFormat (%h ...), nor an nginx log_format ($remote_addr ...)"),
            });
        };
        let parts = mark_quoted(raw);
        let has = |f: &dyn Fn(&Target) -> bool| {
            parts
                .iter()
                .any(|p| matches!(p, Part::Field { target, .. } if f(target)))
        };
        if !has(&|t| matches!(t, Target::Time | Target::Epoch(_) | Target::Strftime(_))) {
            return Err(FormatError {
                position: usize::MAX,
                what: "the format has no time (Apache %t or %{...}t, nginx $time_local, $time_iso8601 or $msec): an event needs one".into(),
            });
        }
        let request = has(&|t| *t == Target::Request)
            || (has(&|t| matches!(t, Target::Text(n) if n == "method"))
                && has(&|t| {
                    matches!(t, Target::Uri) || matches!(t, Target::Text(n) if n == "path")
                }));
        if !request {
            return Err(FormatError {
                position: usize::MAX,
                what: "the format has no request (Apache %r, or %m with %U; nginx $request, or $request_method with $request_uri or $uri): an event needs the path".into(),
            });
        }
        Ok(LogFormat {
            combined: false,
            parts,
            json: None,
        })
    }

    /// A format for lines that are each one JSON object (nginx with `escape=json`, Caddy,
    /// Traefik): `fields` maps names to dotted paths into the object, whitespace-separated
    /// `name:path` pairs, numbers in a path indexing arrays
    /// (`ip:request.remote_ip time:ts useragent:request.headers.User-Agent.0`).
    pub fn compile_json(fields: &str) -> Result<LogFormat, FormatError> {
        let mut map = Vec::new();
        let mut at = 0;
        for pair in fields.split_whitespace() {
            let position = fields[at..].find(pair).map_or(at, |p| at + p);
            at = position + pair.len();
            let err = |what: String| FormatError { position, what };
            let (name, path) = pair
                .split_once(':')
                .ok_or_else(|| err(format!("`{pair}` is not `name:path`")))?;
            let name = JSON_NAMES.iter().find(|n| **n == name).ok_or_else(|| {
                err(format!(
                    "`{name}` is not a field a JSON log gives; expected one of {}",
                    JSON_NAMES.join(", ")
                ))
            })?;
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(err(format!(
                    "`{path}` is not a dotted path (e.g. request.remote_ip)"
                )));
            }
            map.push((*name, path.split('.').map(str::to_string).collect()));
        }
        let has = |n: &str| map.iter().any(|(k, _)| *k == n);
        if !has("time") {
            return Err(FormatError {
                position: usize::MAX,
                what: "the JSON fields have no `time`: an event needs one".into(),
            });
        }
        if !has("request") && !has("path") {
            return Err(FormatError {
                position: usize::MAX,
                what: "the JSON fields have neither `path` nor `request`: an event needs the path"
                    .into(),
            });
        }
        Ok(LogFormat {
            combined: false,
            parts: Vec::new(),
            json: Some(map),
        })
    }

    fn parse_json<'a>(
        &self,
        map: &[(&'static str, Vec<String>)],
        line: &str,
        out: &mut Record<'a>,
    ) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).map_err(|e| format!("not a JSON object: {e}"))?;
        if !v.is_object() {
            return Err("not a JSON object".into());
        }
        for (name, path) in map {
            let mut cur = &v;
            let mut found = true;
            for seg in path {
                let next = match cur {
                    serde_json::Value::Object(o) => o.get(seg),
                    serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                match next {
                    Some(n) => cur = n,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            let text = match (found, cur) {
                (false, _) | (_, serde_json::Value::Null) => continue,
                (_, serde_json::Value::String(t)) => t.clone(),
                (_, serde_json::Value::Number(n)) => n.to_string(),
                (_, serde_json::Value::Bool(b)) => b.to_string(),
                (_, other) => {
                    return Err(format!(
                        "`{}` is {other}, not a single value",
                        path.join(".")
                    ))
                }
            };
            let target = match *name {
                "request" => Target::Request,
                "path" => Target::Uri,
                "status" => Target::Status,
                "time" => Target::Time,
                n => Target::Text(Cow::Borrowed(n)),
            };
            emit(&target, Cow::Owned(text), out)?;
        }
        Ok(())
    }

    /// The fields of `line`, or why it does not have this format.
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, String> {
        let mut out = Vec::with_capacity(self.parts.len().max(12));
        self.parse_into(line, &mut out)?;
        Ok(out)
    }

    /// [`LogFormat::parse`] into `out` (emptied first), whose allocation a caller parsing many
    /// lines keeps from one line to the next (see [`recycle`]).
    pub fn parse_into<'a>(&self, line: &'a str, out: &mut Record<'a>) -> Result<(), String> {
        out.clear();
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(map) = &self.json {
            return self.parse_json(map, line, out);
        }
        if self.combined {
            let r = clf::parse_combined(line)
                .ok_or_else(|| "not a combined or common log line".to_string())?;
            for (k, v) in [("ip", r.ip), ("ident", r.ident), ("user", r.user)] {
                out.push((k.into(), Val::Text(Cow::Borrowed(v))));
            }
            out.push(("time".into(), Val::Text(Cow::Borrowed(r.time))));
            out.push(("method".into(), Val::Text(r.method)));
            out.push(("path".into(), Val::Text(r.path)));
            if let Some(q) = r.query {
                out.push(("query".into(), Val::Text(q)));
            }
            out.push(("protocol".into(), Val::Text(r.protocol)));
            out.push(("status".into(), Val::Int(i64::from(r.status))));
            if let Some(b) = r.bytes {
                out.push(("bytes".into(), Val::Int(b.min(i64::MAX as u64) as i64)));
            }
            if let Some(v) = r.referer {
                out.push(("referer".into(), Val::Text(v)));
            }
            if let Some(v) = r.useragent {
                out.push(("useragent".into(), Val::Text(v)));
            }
            return Ok(());
        }
        let mut pos = 0;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Lit(l) => {
                    if !line[pos..].starts_with(l.as_str()) {
                        return Err(format!(
                            "expected `{}` at character {}",
                            l.escape_debug(),
                            pos + 1
                        ));
                    }
                    pos += l.len();
                }
                Part::Field { target, quoted } => {
                    let (value, end) = if *quoted {
                        clf::quoted_at(line, pos).ok_or_else(|| {
                            format!("a quoted field at character {} never ends", pos + 1)
                        })?
                    } else {
                        match self.parts.get(i + 1) {
                            // `%U%q`: this field ends where the query's `?` is, if there is one
                            // before the literal after the query.
                            Some(Part::Field {
                                target: Target::QueryWithMark,
                                ..
                            }) => {
                                let both = match self.parts.get(i + 2) {
                                    Some(Part::Lit(next)) => line[pos..]
                                        .find(next.as_str())
                                        .map_or(line.len(), |a| pos + a),
                                    _ => line.len(),
                                };
                                let end = line[pos..both].find('?').map_or(both, |q| pos + q);
                                (Cow::Borrowed(&line[pos..end]), end)
                            }
                            Some(Part::Lit(next)) => {
                                let at = find(&line[pos..], next).ok_or_else(|| {
                                    format!(
                                        "expected `{}` after character {}",
                                        next.escape_debug(),
                                        pos
                                    )
                                })?;
                                (Cow::Borrowed(&line[pos..pos + at]), pos + at)
                            }
                            // Two fields in a row cannot be told apart; the compiler refuses
                            // that, so this is the last field: the rest of the line.
                            _ => (Cow::Borrowed(line[pos..].trim_end()), line.len()),
                        }
                    };
                    pos = end;
                    emit(target, value, out)?;
                }
            }
        }
        Ok(())
    }
}

/// An emptied record with `r`'s allocation, for another line: the values borrowed from a line
/// must not outlive it, and an empty vector holds none. (Collecting an emptied vector's
/// `into_iter` into one of a type of the same size reuses its buffer; the closure never runs.)
pub fn recycle<'b>(mut r: Record<'_>) -> Record<'b> {
    r.clear();
    r.into_iter().map(|_| unreachable!("emptied")).collect()
}

/// Behind trusted proxies: sets `ip` to the client's address found in `forwarded_for`, when the
/// connecting address is one of `nets` (see `proxies.rs`). The address is the header entry's
/// text, so a line read without escapes gets it without a copy.
pub fn resolve_client(nets: &super::proxies::Networks, r: &mut Record<'_>) {
    let text = |name: &str, r: &Record<'_>| {
        r.iter()
            .rposition(|(k, v)| k == name && matches!(v, Val::Text(_)))
    };
    let (Some(ip_at), Some(xff_at)) = (text("ip", r), text("forwarded_for", r)) else {
        return;
    };
    let (Val::Text(addr), Val::Text(xff)) = (&r[ip_at].1, &r[xff_at].1) else {
        return;
    };
    let client = match xff {
        Cow::Borrowed(x) => nets.forwarded_entry(addr, x).map(|(_, t)| Cow::Borrowed(t)),
        Cow::Owned(x) => nets
            .forwarded_entry(addr, x)
            .map(|(_, t)| Cow::Owned(t.to_string())),
    };
    if let Some(c) = client {
        r[ip_at].1 = Val::Text(c);
    }
}

/// Where `lit` first occurs in `hay`. Literals are short (a space, `" "`, `] "`): a memchr for
/// their first byte and a comparison beats setting up a substring search per field.
fn find(hay: &str, lit: &str) -> Option<usize> {
    let (h, l) = (hay.as_bytes(), lit.as_bytes());
    let (&first, rest) = l.split_first()?;
    let mut at = 0;
    while let Some(i) = memchr::memchr(first, &h[at..]) {
        let start = at + i;
        if h[start + 1..].starts_with(rest) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// Puts a field's value in the record under its name(s).
fn emit<'a>(target: &Target, value: Cow<'a, str>, out: &mut Record<'a>) -> Result<(), String> {
    if value == "-" || value.is_empty() && !matches!(target, Target::Text(_)) {
        return Ok(());
    }
    let text = |name: &'static str, v: Cow<'a, str>, out: &mut Record<'a>| {
        out.push((Cow::Borrowed(name), Val::Text(v)));
    };
    match target {
        Target::Text(name) => out.push((name.clone(), Val::Text(value))),
        Target::Int(name) => match digits(&value) {
            Some(n) => out.push((name.clone(), Val::Int(n))),
            None => out.push((name.clone(), Val::Text(value))),
        },
        Target::Status => {
            let n =
                digits(&value).ok_or_else(|| format!("the status `{value}` is not a number"))?;
            out.push(("status".into(), Val::Int(n)));
        }
        Target::Request => {
            let parts = split_request(&value);
            if parts.method.is_empty() {
                // A request line the server could not read (`-` is handled above): kept whole.
                text("request", value.clone(), out);
                return Ok(());
            }
            text("method", parts.method, out);
            text("path", parts.path, out);
            if let Some(q) = parts.query {
                text("query", q, out);
            }
            if !parts.protocol.is_empty() {
                text("protocol", parts.protocol, out);
            }
        }
        Target::Uri => match value.find('?') {
            Some(q) => {
                text("path", clf::sub(&value, 0..q), out);
                text("query", clf::sub(&value, q + 1..value.len()), out);
            }
            None => text("path", value, out),
        },
        Target::QueryWithMark => {
            let q = value.strip_prefix('?').unwrap_or(&value).to_string();
            if !q.is_empty() {
                text("query", Cow::Owned(q), out);
            }
        }
        Target::Time => text("time", value, out),
        Target::Epoch(per_sec) => {
            let n = digits(&value).ok_or_else(|| format!("the time `{value}` is not a number"))?;
            let per = i64::from(*per_sec);
            let t = match per {
                1 => n.to_string(),
                1000 => format!("{}.{:03}", n / per, n % per),
                _ => format!("{}.{:06}", n / per, n % per),
            };
            text("time", Cow::Owned(t), out);
        }
        Target::Strftime(f) => {
            let t = strptime_iso(f, &value).map_or(value, Cow::Owned);
            text("time", t, out);
        }
    }
    Ok(())
}

fn digits(s: &str) -> Option<i64> {
    clf::parse_digits(s).and_then(|n| i64::try_from(n).ok())
}

/// A field followed by another field with nothing between cannot be split; a field between `"`
/// and `"` is quoted. Marks each field, merging adjacent literals.
fn mark_quoted(raw: Vec<Part>) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::with_capacity(raw.len());
    for p in raw {
        match (parts.last_mut(), p) {
            (Some(Part::Lit(a)), Part::Lit(b)) => a.push_str(&b),
            (_, p) => parts.push(p),
        }
    }
    let n = parts.len();
    for i in 0..n {
        let before = i.checked_sub(1).and_then(|j| match &parts[j] {
            Part::Lit(l) => Some(l.ends_with('"')),
            _ => None,
        });
        let after = match parts.get(i + 1) {
            Some(Part::Lit(l)) => Some(l.starts_with('"')),
            _ => None,
        };
        if let Part::Field { quoted, .. } = &mut parts[i] {
            *quoted = before == Some(true) && after == Some(true);
        }
    }
    parts
}

/// Literal text of a format, with the backslash escapes a server's config file takes (`\"`,
/// `\\`, `\t`, `\n`), so a format pasted from the config with its escapes reads the same.
fn unescape_format(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Adds the character at byte `i` of `spec` to the literal being built; its length.
fn take_char(spec: &str, i: usize, lit: &mut String) -> usize {
    let ch = spec[i..].chars().next().unwrap_or(' ');
    lit.push(ch);
    ch.len_utf8()
}

/// Adds a field (from character `start` of the format) after the literal text before it.
/// Two fields with nothing between them cannot be split, except `%U%q`: the query starts at
/// the `?`.
fn push_field(
    parts: &mut Vec<Part>,
    lit: &mut String,
    part: Part,
    start: usize,
) -> Result<(), FormatError> {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit)));
    }
    let query = matches!(
        part,
        Part::Field {
            target: Target::QueryWithMark,
            ..
        }
    );
    if matches!(parts.last(), Some(Part::Field { .. })) && !query {
        return Err(FormatError {
            position: start,
            what: "two fields with nothing between them cannot be told apart in a line".into(),
        });
    }
    parts.push(part);
    Ok(())
}

/// The parts of an Apache `LogFormat` string.
fn apache_parts(spec: &str) -> Result<Vec<Part>, FormatError> {
    let spec = unescape_format(spec);
    let b = spec.as_bytes();
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let field = |target: Target| Part::Field {
        target,
        quoted: false,
    };
    while i < b.len() {
        if b[i] != b'%' {
            i += take_char(&spec, i, &mut lit);
            continue;
        }
        let start = i;
        i += 1;
        // Conditions (`%400,501{User-agent}i`, `%!200i`) and `<`/`>` (original or final
        // request) are accepted and, for reading a log, make no difference.
        while i < b.len() && matches!(b[i], b'<' | b'>' | b'!' | b',' | b'0'..=b'9') {
            i += 1;
        }
        let mut param = None;
        if b.get(i) == Some(&b'{') {
            let close = spec[i..].find('}').ok_or(FormatError {
                position: start,
                what: "`%{` is not closed with `}`".into(),
            })?;
            param = Some(spec[i + 1..i + close].to_string());
            i += close + 1;
        }
        let Some(&letter) = b.get(i) else {
            return Err(FormatError {
                position: start,
                what: "the format ends with `%`; write `%%` for a percent sign".into(),
            });
        };
        i += 1;
        let p = param.as_deref();
        let part = match letter {
            b'%' => {
                lit.push('%');
                continue;
            }
            // Settled below, once it is known whether `%a` is there too.
            b'h' => field(Target::Text("%h".into())),
            b'a' if p == Some("c") => field(Target::Text("peer_ip".into())),
            b'a' => field(Target::Text("ip".into())),
            b'A' => field(Target::Text("server_ip".into())),
            b'l' => field(Target::Text("ident".into())),
            b'u' => field(Target::Text("user".into())),
            b't' => match p {
                None => {
                    // `%t` is `[27/Nov/2026:09:00:01 +0000]`, brackets included.
                    lit.push('[');
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                    parts.push(field(Target::Time));
                    lit.push(']');
                    continue;
                }
                Some("sec") => field(Target::Epoch(1)),
                Some("msec") => field(Target::Epoch(1000)),
                Some("usec") => field(Target::Epoch(1_000_000)),
                Some("msec_frac") | Some("usec_frac") => field(Target::Text("time_frac".into())),
                Some(f) => {
                    let f = f
                        .trim_start_matches("begin:")
                        .trim_start_matches("end:")
                        .to_string();
                    field(Target::Strftime(f))
                }
            },
            b'r' => field(Target::Request),
            b'm' => field(Target::Text("method".into())),
            b'U' => field(Target::Text("path".into())),
            b'q' => field(Target::QueryWithMark),
            b'H' => field(Target::Text("protocol".into())),
            b's' => field(Target::Status),
            b'b' | b'B' => field(Target::Int("bytes".into())),
            b'O' => field(Target::Int("bytes_sent".into())),
            b'I' => field(Target::Int("bytes_received".into())),
            b'S' => field(Target::Int("bytes_transferred".into())),
            b'D' => field(Target::Int("request_time_us".into())),
            b'T' => match p {
                Some("ms") => field(Target::Int("request_time_ms".into())),
                Some("us") => field(Target::Int("request_time_us".into())),
                _ => field(Target::Int("request_time".into())),
            },
            b'v' => field(Target::Text("vhost".into())),
            b'V' => field(Target::Text("server_name".into())),
            b'p' => field(Target::Int("port".into())),
            b'P' => field(Target::Int("pid".into())),
            b'k' => field(Target::Int("keepalive_requests".into())),
            b'L' => field(Target::Text("log_id".into())),
            b'R' => field(Target::Text("handler".into())),
            b'X' => field(Target::Text("connection_status".into())),
            b'f' => field(Target::Text("filename".into())),
            b'i' | b'o' | b'e' | b'n' | b'C' => {
                let Some(name) = p else {
                    return Err(FormatError {
                        position: start,
                        what: format!(
                            "`%{}` needs a name: `%{{Name}}{}`",
                            letter as char, letter as char
                        ),
                    });
                };
                let prefix = match letter {
                    b'i' => "http_",
                    b'o' => "sent_http_",
                    b'e' => "env_",
                    b'n' => "note_",
                    _ => "cookie_",
                };
                field(Target::Text(if letter == b'i' {
                    header_field(name)
                } else {
                    Cow::Owned(format!("{prefix}{}", snake(name)))
                }))
            }
            other => {
                return Err(FormatError {
                    position: start,
                    what: format!(
                        "`%{}` is not an Apache log directive loglines knows (see docs/plugins.md for the list)",
                        other as char
                    ),
                })
            }
        };
        push_field(&mut parts, &mut lit, part, start)?;
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    // `%h` is the client unless `%a` (the client address, which mod_remoteip takes from
    // X-Forwarded-For) is there too; then it is the connecting host.
    let has_a = has_ip(&parts);
    for p in &mut parts {
        if let Part::Field {
            target: Target::Text(n),
            ..
        } = p
        {
            if n == "%h" {
                *n = if has_a { "host" } else { "ip" }.into();
            }
        }
    }
    Ok(parts)
}

/// The name a request header's field gets: the well-known ones as `parse_combined` names them.
/// (Static where it can be: a name is copied into every parsed line's record.)
fn header_field(name: &str) -> Cow<'static, str> {
    match name.to_ascii_lowercase().as_str() {
        "referer" | "referrer" => "referer".into(),
        "user-agent" => "useragent".into(),
        "x-forwarded-for" => "forwarded_for".into(),
        "host" => "vhost".into(),
        other => Cow::Owned(format!("http_{}", snake(other))),
    }
}

fn snake(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The parts of an nginx `log_format` string.
fn nginx_parts(spec: &str) -> Result<Vec<Part>, FormatError> {
    let spec = unescape_format(spec);
    let b = spec.as_bytes();
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        let named = b[i] == b'$'
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'{');
        if !named {
            i += take_char(&spec, i, &mut lit);
            continue;
        }
        let start = i;
        i += 1;
        let name = if b[i] == b'{' {
            let close = spec[i..].find('}').ok_or(FormatError {
                position: start,
                what: "`${` is not closed with `}`".into(),
            })?;
            let n = spec[i + 1..i + close].to_string();
            i += close + 1;
            n
        } else {
            let n = spec[i..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            let name = spec[i..i + n].to_string();
            i += n;
            name
        };
        let target = match name.as_str() {
            "remote_addr" | "realip_remote_addr" if !has_ip(&parts) => Target::Text("ip".into()),
            "remote_user" => Target::Text("user".into()),
            "time_local" | "time_iso8601" => Target::Time,
            // Seconds since 1970 with milliseconds, which `to_iso8601_utc` reads as they are.
            "msec" => Target::Time,
            "request" => Target::Request,
            "request_method" => Target::Text("method".into()),
            "request_uri" => Target::Uri,
            "uri" | "document_uri" => Target::Text("path".into()),
            "args" | "query_string" => Target::Text("query".into()),
            "server_protocol" => Target::Text("protocol".into()),
            "status" => Target::Status,
            "body_bytes_sent" => Target::Int("bytes".into()),
            "bytes_sent" => Target::Int("bytes_sent".into()),
            "request_length" => Target::Int("bytes_received".into()),
            "request_time" => Target::Text("request_time".into()),
            "host" => Target::Text("vhost".into()),
            "server_port" => Target::Int("port".into()),
            other => match other.strip_prefix("http_") {
                Some(h) => Target::Text(header_field(&h.replace('_', "-"))),
                None => Target::Text(Cow::Owned(other.to_string())),
            },
        };
        let part = Part::Field {
            target,
            quoted: false,
        };
        push_field(&mut parts, &mut lit, part, start)?;
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

fn has_ip(parts: &[Part]) -> bool {
    parts
        .iter()
        .any(|p| matches!(p, Part::Field { target: Target::Text(n), .. } if n == "ip"))
}

/// `value` read with the strftime format `f`, as ISO 8601 with its zone, when `f` has a full
/// date, the time of day and a numeric zone (`%z`); otherwise `None` (kept as logged).
fn strptime_iso(f: &str, value: &str) -> Option<String> {
    let (mut y, mut mo, mut d, mut h, mut mi, mut s) = (None, None, None, None, None, None);
    let mut zone: Option<(char, u32, u32)> = None;
    let v = value.as_bytes();
    let mut vi = 0;
    let num = |vi: &mut usize, max: usize| -> Option<u32> {
        while *vi < v.len() && v[*vi] == b' ' && max > 0 {
            *vi += 1;
        }
        let n = v[*vi..]
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 {
            return None;
        }
        let r = std::str::from_utf8(&v[*vi..*vi + n]).ok()?.parse().ok();
        *vi += n;
        r
    };
    let expanded = f.replace("%T", "%H:%M:%S").replace("%F", "%Y-%m-%d");
    let fb = expanded.as_bytes();
    let mut fi = 0;
    while fi < fb.len() {
        if fb[fi] != b'%' {
            if v.get(vi) != Some(&fb[fi]) {
                return None;
            }
            vi += 1;
            fi += 1;
            continue;
        }
        let c = *fb.get(fi + 1)?;
        fi += 2;
        match c {
            b'Y' => y = Some(num(&mut vi, 4)?),
            b'm' => mo = Some(num(&mut vi, 2)?),
            b'd' | b'e' => d = Some(num(&mut vi, 2)?),
            b'H' => h = Some(num(&mut vi, 2)?),
            b'M' => mi = Some(num(&mut vi, 2)?),
            b'S' => s = Some(num(&mut vi, 2)?),
            b'b' | b'h' => {
                const M: [&str; 12] = [
                    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                    "dec",
                ];
                let word = value.get(vi..vi + 3)?.to_ascii_lowercase();
                mo = Some(M.iter().position(|m| *m == word)? as u32 + 1);
                vi += 3;
            }
            b'z' => {
                let sign = *v.get(vi)? as char;
                if sign != '+' && sign != '-' {
                    return None;
                }
                vi += 1;
                let hh = num(&mut vi, 2)?;
                if v.get(vi) == Some(&b':') {
                    vi += 1;
                }
                let mm = num(&mut vi, 2)?;
                zone = Some((sign, hh, mm));
            }
            b'%' => {
                if v.get(vi) != Some(&b'%') {
                    return None;
                }
                vi += 1;
            }
            _ => return None,
        }
    }
    let (sign, zh, zm) = zone?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{zh:02}:{zm:02}",
        y?, mo?, d?, h?, mi?, s?
    ))
}

#[cfg(test)]
mod tests;
