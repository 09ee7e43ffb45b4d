//! Typed reads of one section's keys, each checked against its [`Key`]: the default and the
//! valid range come from the key, and every problem is recorded as a diagnostic that names
//! file, line, section and key, so that one pass reports everything that is wrong.

use super::diag::Diagnostic;
use super::keys::{Default, Key, Kind};
use super::RawSection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads one section. A value that cannot be used records an error and reads as the key's
/// default, so that validation goes on and finds the file's other problems too.
pub struct Reader<'a> {
    /// The configuration file, for diagnostics.
    pub file: &'a Path,
    /// The folder relative paths are resolved against.
    pub dir: &'a Path,
    pub sec: &'a RawSection,
    pub diags: &'a mut Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    pub fn new(
        file: &'a Path,
        dir: &'a Path,
        sec: &'a RawSection,
        diags: &'a mut Vec<Diagnostic>,
    ) -> Self {
        Reader {
            file,
            dir,
            sec,
            diags,
        }
    }

    /// The section's name.
    pub fn section(&self) -> &'a str {
        &self.sec.name
    }

    /// The line of `key`, or of the section header when the key is not set.
    fn line(&self, key: &str) -> Option<usize> {
        self.sec.entry(key).map(|e| e.line).or(Some(self.sec.line))
    }

    /// Records an error at `key`.
    pub fn err(&mut self, key: &str, message: String) {
        let d = Diagnostic::error(self.file, self.line(key), message);
        self.diags.push(d.in_section(&self.sec.name).at_key(key));
    }

    /// Records an error about the section as a whole.
    pub fn err_section(&mut self, message: &str) {
        let d = Diagnostic::error(self.file, Some(self.sec.line), message);
        self.diags.push(d.in_section(&self.sec.name));
    }

    /// Records a warning at `key`.
    pub fn warn(&mut self, key: &str, message: String) {
        let d = Diagnostic::warning(self.file, self.line(key), message);
        self.diags.push(d.in_section(&self.sec.name).at_key(key));
    }

    /// True when the file sets `key`, even to an empty value.
    pub fn has(&self, key: &Key) -> bool {
        self.sec.entry(key.name).is_some()
    }

    /// The value as written, when set and not empty.
    pub fn opt(&self, key: &Key) -> Option<String> {
        self.sec
            .get(key.name)
            .map(str::to_string)
            .filter(|s| !s.is_empty())
    }

    /// The value, or an error saying what is expected when it is missing or empty.
    pub fn required(&mut self, key: &Key) -> Option<String> {
        let v = self.opt(key);
        if v.is_none() {
            let what = if self.has(key) {
                "is empty"
            } else {
                "is missing"
            };
            let expected = match key.default {
                Default::Required(e) => e,
                _ => key.meaning,
            };
            self.err(key.name, format!("{what}; expected {expected}"));
        }
        v
    }

    /// The value, or the key's default text.
    pub fn text(&self, key: &Key) -> String {
        self.opt(key)
            .unwrap_or_else(|| key.text_default().to_string())
    }

    /// A whole number within the key's range; the key's default when not set.
    pub fn int(&mut self, key: &Key) -> u64 {
        self.int_or(key, key.int_default())
    }

    /// A whole number within the key's range; `default` (a per-role default) when not set.
    pub fn int_or(&mut self, key: &Key, default: u64) -> u64 {
        let Kind::Int { min, max } = key.kind else {
            panic!("{} is not a whole number", key.name)
        };
        let Some(text) = self.opt(key) else {
            return default;
        };
        let expected = format!("expected a whole number from {min} to {max}");
        match text.parse::<i64>() {
            Ok(n) if n >= min as i64 && (n as u64) <= max => n as u64,
            Ok(n) => {
                self.err(key.name, format!("`{n}` is out of range; {expected}"));
                default
            }
            Err(_) => {
                self.err(key.name, format!("`{text}` is not a number; {expected}"));
                default
            }
        }
    }

    /// Seconds, possibly fractional (`ratelimit = 0.3`), within the key's range.
    pub fn secs(&mut self, key: &Key) -> Duration {
        let (Kind::Secs { min, max }, Default::Secs(default)) = (key.kind, key.default) else {
            panic!("{} is not a number of seconds with a default", key.name)
        };
        let default = Duration::from_secs_f64(default);
        let Some(text) = self.opt(key) else {
            return default;
        };
        let expected = format!("expected a number of seconds from {min} to {max}");
        let problem = match text.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= min && n <= max => {
                return Duration::from_secs_f64(n);
            }
            Ok(n) if n < 0.0 => "is negative",
            Ok(_) => "is out of range",
            Err(_) => "is not a number",
        };
        self.err(key.name, format!("`{text}` {problem}; {expected}"));
        default
    }

    /// ConfigParser's getboolean words; the key's default when not set.
    pub fn boolean(&mut self, key: &Key) -> bool {
        let default = key.bool_default();
        let Some(text) = self.opt(key) else {
            return default;
        };
        match parse_bool(&text) {
            Some(b) => b,
            None => {
                self.err(key.name, format!("`{text}` is not a yes/no value; expected true or false (also yes/no, on/off, 1/0)"));
                default
            }
        }
    }

    /// One of the key's words, in lower case; the default word when not set or not valid.
    pub fn choice(&mut self, key: &Key) -> String {
        let (Kind::Choice(choices), Default::Text(default)) = (key.kind, key.default) else {
            panic!("{} is not a choice with a default", key.name)
        };
        let default = default.to_ascii_lowercase();
        let Some(text) = self.opt(key) else {
            return default;
        };
        let lower = text.to_ascii_lowercase();
        if choices.contains(&lower.as_str()) {
            return lower;
        }
        let expected = choices.join(", ");
        self.err(
            key.name,
            format!("`{text}` is not valid; expected one of {expected}"),
        );
        default
    }

    /// A path resolved against the configuration file's folder, when set.
    pub fn path(&self, key: &Key) -> Option<PathBuf> {
        self.opt(key).map(|p| self.resolve(&p))
    }

    /// The path, or the key's default text resolved the same way.
    pub fn path_or_default(&self, key: &Key) -> PathBuf {
        self.path(key)
            .unwrap_or_else(|| self.resolve(&self.text(key)))
    }

    /// A required path: an error when missing.
    pub fn required_path(&mut self, key: &Key) -> Option<PathBuf> {
        self.required(key).map(|p| self.resolve(&p))
    }

    /// `p` relative to the configuration file's folder, with `~/` the home folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        self.dir.join(expand_home(p))
    }

    /// A queue name: non-empty, no white space (Redis keys may hold it, but a space is always
    /// a mistake in this file). Required when the key's default says so.
    pub fn queue(&mut self, key: &Key) -> Option<String> {
        let name = match key.default {
            Default::Required(_) => self.required(key)?,
            _ => self.opt(key)?,
        };
        if name.contains(char::is_whitespace) || name.contains(',') {
            self.err(key.name, format!("`{name}` is not one queue name; expected a single name without spaces or commas"));
            return None;
        }
        Some(name)
    }
}

impl Reader<'_> {
    /// Reports keys this section does not accept, with the nearest accepted key.
    pub fn unknown_keys(&mut self, scopes: &[super::keys::Scope], what: &str) {
        let accepted = super::keys::accepted(scopes);
        let sec = self.sec;
        for e in sec
            .entries
            .iter()
            .filter(|e| !accepted.contains(&e.key.as_str()))
        {
            let hint = match super::keys::suggest(&e.key, &accepted) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("see docs/configuration.md for the keys of {what}"),
            };
            self.err(&e.key, format!("unknown key for {what}; {hint}"));
        }
    }
}

/// ConfigParser's getboolean words (for this file's keys and a plugin's `c:getboolean`).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}
