//! The one INI reader: sections, keys and values with their line numbers, by the rules of
//! Python 3's ConfigParser, which read the 2010 tool's files and reads supervisord's.
//!
//! One pass over the lines gives every key, value and line number, so that every later message
//! can say `FILE:LINE [section] key`. The rules (docs/configuration.md, "Syntax", says them for
//! administrators): a line whose first non-blank character is `#` or `;` is a comment, however
//! far it is indented, and neither ends a value nor adds to it; a line indented deeper than the
//! key above continues that key's value; an empty line inside a value is kept if the value goes
//! on after it; the first `=` or `:` splits key from value; keys are lower-cased, values
//! trimmed; a section or key written twice is an error. supervisord's dialect adds comments at
//! the end of a line (`;` or `#` after white space) and, like supervisord, lets a section or
//! key written again continue or replace the first.
//!
//! Why not the rust-ini crate (0.21), which this project started with: its model has no line
//! numbers (they had to come from a second scanner, matched to its values by position), and
//! none of its options (`enabled_quote`, `enabled_escape`, `enabled_indented_mutiline_value`,
//! `enabled_preserve_key_leading_whitespace`) gives ConfigParser's rules. With multi-line
//! values on, any indented line after a value continues it, so an indented comment becomes part
//! of the value (`servicename = repo.example.ac.uk` followed by `  # the repository's name` was
//! sent to the tracker with the comment in it) and of two keys indented alike the second joins
//! the first's value; an unindented comment between value lines ends the value; an indented
//! comment elsewhere is read as a key; `[ a ]` is trimmed to `a`; a section or key written
//! twice is kept twice without a word. Comments after a value are a compile-time feature of the
//! whole build, so it could not read loglines.cfg (no such comments) and supervisord's files
//! (with them) side by side. So loglines reads the file itself, once.

use super::diag::Diagnostic;
use std::path::{Path, PathBuf};

/// One `key = value` line (plus its continuation lines). Keys are lower-cased, as Python's
/// ConfigParser did, so `Endpoint_URL` and `endpoint_url` are the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// One `[section]` with its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSection {
    pub name: String,
    pub line: usize,
    pub entries: Vec<RawEntry>,
}

impl RawSection {
    /// The value of `key` (lower-case), if the section has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    pub fn entry(&self, key: &str) -> Option<&RawEntry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// The whole file. Sections keep file order; a duplicated section or key is reported as a
/// problem and only its first occurrence is kept.
#[derive(Debug, Clone, Default)]
pub struct RawIni {
    pub path: PathBuf,
    pub sections: Vec<RawSection>,
}

impl RawIni {
    pub fn section(&self, name: &str) -> Option<&RawSection> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.section(section)?.get(&key.to_ascii_lowercase())
    }

    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|s| s.name.as_str())
    }

    /// Reads and parses `path`. I/O problems and syntax problems all come back as diagnostics;
    /// the returned model holds whatever could be understood.
    pub fn load(path: &Path) -> Result<RawIni, Vec<Diagnostic>> {
        let text = read_text(path)?;
        parse(path, &text)
    }

    /// Like [`load`](Self::load), but goes on past syntax problems: the model of what could be
    /// read, and the problems. Err only when nothing could be read.
    pub fn load_lenient(path: &Path) -> Result<(RawIni, Vec<Diagnostic>), Vec<Diagnostic>> {
        let text = read_text(path)?;
        parse_lenient(path, &text)
    }
}

/// The file's text, or why it cannot be read (missing, unreadable, not UTF-8).
fn read_text(path: &Path) -> Result<String, Vec<Diagnostic>> {
    let text = std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied; check the file's owner and mode".to_string()
            }
            _ => format!("cannot read it: {e}"),
        };
        vec![Diagnostic::error(
            path,
            None,
            format!("{why}; expected a readable loglines.cfg (pass --config FILE, or write a starting one with `loglines init`)"),
        )]
    })?;
    String::from_utf8(text).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        vec![Diagnostic::error(
            path,
            Some(line),
            "the file is not valid UTF-8; save it as UTF-8",
        )]
    })
}

/// Which INI rules apply beyond ConfigParser's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// loglines.cfg: no comments after a value, so `#` and `;` in a value are kept (URLs,
    /// regexes).
    Loglines,
    /// supervisord's files: `;` or `#` after white space (or at the start) starts a comment,
    /// and, as supervisord reads them with `strict=False`, a section written again continues
    /// the first and a key written again replaces its value (no error): the values checked are
    /// the ones supervisord will use.
    Supervisord,
}

/// Parses a loglines.cfg. Returns the model, or every problem found when there is any.
pub fn parse(path: &Path, text: &str) -> Result<RawIni, Vec<Diagnostic>> {
    match parse_lenient(path, text)? {
        (ini, problems) if problems.is_empty() => Ok(ini),
        (_, problems) => Err(problems),
    }
}

/// Parses a loglines.cfg as far as it can be understood: the model of every line that could be
/// read, and the problems of the others, so that validation can go on and report everything
/// at once. Err only when there is nothing to go on (an empty file).
pub fn parse_lenient(
    path: &Path,
    text: &str,
) -> Result<(RawIni, Vec<Diagnostic>), Vec<Diagnostic>> {
    if text.trim().is_empty() {
        return Err(vec![Diagnostic::error(
            path,
            None,
            "the file is empty; expected sections such as [redis], [logger_logfilewatcher] and [worker_pirus2] (see the example loglines.cfg)",
        )]);
    }
    let (ini, problems) = read_dialect(path, text, Dialect::Loglines);
    if ini.sections.is_empty() && problems.is_empty() {
        return Err(vec![Diagnostic::error(
            path,
            None,
            "the file is empty (only comments); expected sections such as [redis], [logger_logfilewatcher] and [worker_pirus2] (see the example loglines.cfg)",
        )]);
    }
    Ok((ini, problems))
}

/// Parses INI text by ConfigParser's rules in the given dialect.
pub fn parse_dialect(path: &Path, text: &str, dialect: Dialect) -> Result<RawIni, Vec<Diagnostic>> {
    match read_dialect(path, text, dialect) {
        (ini, problems) if problems.is_empty() => Ok(ini),
        (_, problems) => Err(problems),
    }
}

/// Reads INI text by ConfigParser's rules in the given dialect: the model of what could be
/// read, and the problems of the rest.
fn read_dialect(path: &Path, text: &str, dialect: Dialect) -> (RawIni, Vec<Diagnostic>) {
    // A byte-order mark (some Windows editors write one) is not part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        path,
        dialect,
        sections: Vec::new(),
        dropped: None,
        current: Current::None,
        key_indent: 0,
        problems: Vec::new(),
    };
    for (idx, line) in text.lines().enumerate() {
        p.line(idx + 1, line);
    }
    let problems = p.problems;
    let mut sections = p.sections;
    for s in &mut sections {
        for e in &mut s.entries {
            // ConfigParser joins a value's lines with newlines and trims the end.
            e.value.truncate(e.value.trim_end().len());
        }
    }
    (
        RawIni {
            path: path.to_path_buf(),
            sections,
        },
        problems,
    )
}

/// Where the lines being read go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    /// Before the first section header.
    None,
    /// Into section `n`, after its header (no key yet).
    Section(usize),
    /// Into key `k` of section `n`: an indented line continues its value.
    Key(usize, usize),
    /// Into section `n` after a line that was refused: the lines that would continue it are
    /// passed over, so one mistake is reported once.
    Skip(usize),
}

struct Parser<'a> {
    path: &'a Path,
    dialect: Dialect,
    sections: Vec<RawSection>,
    /// The body of a section written twice: parsed (its lines may have problems too) but not
    /// kept, since only the first occurrence counts.
    dropped: Option<RawSection>,
    current: Current,
    /// The indentation of the last key or header line: a deeper line continues the value.
    key_indent: usize,
    problems: Vec<Diagnostic>,
}

impl Parser<'_> {
    fn line(&mut self, lineno: usize, line: &str) {
        let content = self.content(line);
        if content.is_empty() {
            // An empty line inside a value is kept if the value goes on after it; a comment
            // line is neither kept nor ends the value.
            if line.trim().is_empty() {
                if let Some(v) = self.value_mut() {
                    v.push('\n');
                }
            }
            return;
        }
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if matches!(self.current, Current::Key(..) | Current::Skip(_)) && indent > self.key_indent {
            if let Some(v) = self.value_mut() {
                v.push('\n');
                v.push_str(content);
            }
            return;
        }
        self.key_indent = indent;
        match header(content) {
            Header::Name(name) => self.header(lineno, name),
            Header::Empty => self.refuse(lineno, "empty section name; expected `[name]`"),
            Header::NotOne => self.pair(lineno, content),
        }
    }

    /// Reports a line that cannot be read, and passes over what would continue it.
    fn refuse(&mut self, lineno: usize, why: &str) {
        self.problems
            .push(Diagnostic::error(self.path, Some(lineno), why));
        if let Current::Section(n) | Current::Key(n, _) = self.current {
            self.current = Current::Skip(n);
        }
    }

    /// The line without comment and surrounding white space.
    fn content<'l>(&self, line: &'l str) -> &'l str {
        let trimmed = line.trim();
        if trimmed.starts_with(['#', ';']) {
            return "";
        }
        match self.dialect {
            Dialect::Loglines => trimmed,
            Dialect::Supervisord => strip_inline_comment(trimmed),
        }
    }

    fn section_mut(&mut self, n: usize) -> &mut RawSection {
        match self.dropped.as_mut() {
            Some(d) if n == usize::MAX => d,
            _ => &mut self.sections[n],
        }
    }

    fn value_mut(&mut self) -> Option<&mut String> {
        let Current::Key(n, k) = self.current else {
            return None;
        };
        Some(&mut self.section_mut(n).entries[k].value)
    }

    fn header(&mut self, lineno: usize, name: &str) {
        if let Some(n) = self.sections.iter().position(|s| s.name == name) {
            if self.dialect == Dialect::Supervisord {
                // supervisord reads with `strict=False`: the section goes on where it left off.
                self.current = Current::Section(n);
                return;
            }
            let first = self.sections[n].line;
            self.problems.push(
                Diagnostic::error(
                    self.path,
                    Some(lineno),
                    format!(
                        "duplicate section, first defined at line {first}; merge the two into one"
                    ),
                )
                .in_section(name),
            );
            self.dropped = Some(RawSection {
                name: name.to_string(),
                line: lineno,
                entries: Vec::new(),
            });
            self.current = Current::Section(usize::MAX);
            return;
        }
        self.sections.push(RawSection {
            name: name.to_string(),
            line: lineno,
            entries: Vec::new(),
        });
        self.current = Current::Section(self.sections.len() - 1);
    }

    fn pair(&mut self, lineno: usize, content: &str) {
        let n = match self.current {
            Current::None => {
                let problem = match content.find(['=', ':']) {
                    Some(i) => Diagnostic::error(self.path, Some(lineno), "a key outside any section; put it under a `[section]` header")
                        .at_key(&content[..i].trim().to_lowercase()),
                    None => Diagnostic::error(self.path, Some(lineno), "not a `[section]` header, a `key = value` line or a comment; the file must start with a `[section]` header"),
                };
                self.problems.push(problem);
                return;
            }
            Current::Section(n) | Current::Key(n, _) | Current::Skip(n) => n,
        };
        let Some(i) = content.find(['=', ':']) else {
            let why = if content.starts_with('[') {
                "section header without closing `]`; expected `[name]`"
            } else {
                "not a `key = value` line, a `[section]` header or a comment; expected `key = value`"
            };
            return self.refuse(lineno, why);
        };
        let key = content[..i].trim().to_lowercase();
        if key.is_empty() {
            return self.refuse(lineno, "a value without a key; expected `key = value`");
        }
        let value = content[i + 1..].trim().to_string();
        let (path, dialect) = (self.path, self.dialect);
        let section = self.section_mut(n);
        if let Some(k) = section.entries.iter().position(|e| e.key == key) {
            if dialect == Dialect::Supervisord {
                // `strict=False` again: the later value is the one supervisord uses.
                section.entries[k].value = value;
                section.entries[k].line = lineno;
                self.current = Current::Key(n, k);
                return;
            }
            let first = section.entries[k].line;
            let problem = Diagnostic::error(
                path,
                Some(lineno),
                format!("duplicate key, first set at line {first}; keep one of the two"),
            );
            let problem = problem.in_section(&section.name).at_key(&key);
            self.problems.push(problem);
            self.current = Current::Skip(n);
            return;
        }
        section.entries.push(RawEntry {
            key,
            value,
            line: lineno,
        });
        self.current = Current::Key(n, section.entries.len() - 1);
    }
}

/// What a line is, as a section header.
enum Header<'a> {
    /// `[name]`: the name as ConfigParser takes it, everything between the first `[` and the
    /// last `]`, spaces included (what follows the `]` is ignored, as ConfigParser does).
    Name(&'a str),
    /// `[]`
    Empty,
    /// Not a header (a key line, or a `[` without `]`).
    NotOne,
}

fn header(content: &str) -> Header<'_> {
    let Some(inner) = content.strip_prefix('[') else {
        return Header::NotOne;
    };
    match inner.rfind(']') {
        Some(0) => Header::Empty,
        Some(end) => Header::Name(&inner[..end]),
        None => Header::NotOne,
    }
}

/// supervisord's comments after a value: `;` or `#` preceded by white space (any white space
/// Python's `isspace` sees, so not only ASCII).
fn strip_inline_comment(s: &str) -> &str {
    let mut after_space = false;
    for (i, c) in s.char_indices() {
        if after_space && (c == ';' || c == '#') {
            return s[..i].trim_end();
        }
        after_space = c.is_whitespace();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<RawIni, Vec<Diagnostic>> {
        parse(Path::new("t.cfg"), text)
    }

    /// The sections and values as (section, [(key, value)]) pairs.
    fn values(text: &str) -> Vec<(String, Vec<(String, String)>)> {
        let ini = p(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        ini.sections
            .iter()
            .map(|s| {
                let kv = s.entries.iter().map(|e| (e.key.clone(), e.value.clone()));
                (s.name.clone(), kv.collect())
            })
            .collect()
    }

    fn one(section: &str, kv: &[(&str, &str)]) -> Vec<(String, Vec<(String, String)>)> {
        let kv = kv.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        vec![(section.to_string(), kv.collect())]
    }

    // The expectations below are what Python 3.11's configparser.RawConfigParser gives for
    // the same text (checked when they were written).

    #[test]
    fn an_indented_comment_is_a_comment_not_part_of_the_value() {
        let text = "[logger_logfilewatcher]\nservicename = repo.example.ac.uk\n  # the repository's name\n";
        assert_eq!(
            values(text),
            one(
                "logger_logfilewatcher",
                &[("servicename", "repo.example.ac.uk")]
            )
        );
    }

    #[test]
    fn the_indented_comment_case_end_to_end() {
        let text = "[logger_logfilewatcher]\ncommand = loglines watch\nlogfile = /tmp/access.log\npushto = loglines\nservicename = repo.example.ac.uk\n  # the repository's name\n";
        let cfg = crate::config::Config::from_str(Path::new("/tmp/t.cfg"), text).unwrap();
        let crate::roles::Role::Watch(w) = &cfg.sections[0].role else {
            panic!("a watcher section")
        };
        assert_eq!(w.servicename, "repo.example.ac.uk");
    }

    #[test]
    fn comment_lines_inside_a_value_neither_end_it_nor_join_it() {
        let text = "[a]\nfanout = one\n  # not this\n  two\n; nor this\n  three\n";
        assert_eq!(values(text), one("a", &[("fanout", "one\ntwo\nthree")]));
    }

    #[test]
    fn empty_lines_inside_a_value_are_kept_trailing_ones_are_not() {
        let text = "[a]\nx = one\n\n  two\n\ny = 3\n";
        assert_eq!(values(text), one("a", &[("x", "one\n\ntwo"), ("y", "3")]));
        let text = "[a]\nx = one\n\n\n[b]\ny = 2\n";
        let mut want = one("a", &[("x", "one")]);
        want.extend(one("b", &[("y", "2")]));
        assert_eq!(values(text), want);
    }

    #[test]
    fn a_deeper_line_continues_the_key_above_an_equally_deep_one_is_a_key() {
        assert_eq!(
            values("[a]\n  x = 1\n  y = 2\n"),
            one("a", &[("x", "1"), ("y", "2")])
        );
        assert_eq!(
            values("[a]\nx = 1\n   y = 2\n"),
            one("a", &[("x", "1\ny = 2")])
        );
        assert_eq!(values("[a]\nx = 1\n\ttwo\n"), one("a", &[("x", "1\ntwo")]));
        assert_eq!(values("[a]\nx = 1\n  [b]\n"), one("a", &[("x", "1\n[b]")]));
    }

    #[test]
    fn the_first_equals_or_colon_splits_key_from_value() {
        let text = "[a]\nk1 = v=1\nk2: v=2\nk3 = v:3\nk4:v4\n";
        let want = [("k1", "v=1"), ("k2", "v=2"), ("k3", "v:3"), ("k4", "v4")];
        assert_eq!(values(text), one("a", &want));
    }

    #[test]
    fn keys_are_lower_cased_section_names_are_kept_as_written() {
        assert_eq!(values("[a]\nMy Key = V\n"), one("a", &[("my key", "V")]));
        assert_eq!(values("[ a ]\nx = 1\n"), one(" a ", &[("x", "1")]));
        assert_eq!(values("[a] trailing\nx = 1\n"), one("a", &[("x", "1")]));
    }

    #[test]
    fn values_are_trimmed_and_taken_as_written() {
        assert_eq!(values("[a]\nx = 1   \n"), one("a", &[("x", "1")]));
        assert_eq!(
            values("[a]\nx =\ny = 2\n"),
            one("a", &[("x", ""), ("y", "2")])
        );
        let text = "[a]\nx = http://h/#frag ; not a comment\n";
        assert_eq!(
            values(text),
            one("a", &[("x", "http://h/#frag ; not a comment")])
        );
        let ini = p("[a]\nPath = C:\\logs\\new.log\nre = ^\\d+$\n").unwrap();
        assert_eq!(ini.get("a", "path"), Some("C:\\logs\\new.log"));
        assert_eq!(ini.get("a", "re"), Some("^\\d+$"));
        assert_eq!(ini.section("a").unwrap().entries[1].line, 3);
        // No `%` interpolation, as RawConfigParser.
        let ini = p("[a]\nx = 100%\ny = %(x)s and %%\n").unwrap();
        assert_eq!(ini.get("a", "x"), Some("100%"));
        assert_eq!(ini.get("a", "y"), Some("%(x)s and %%"));
    }

    #[test]
    fn crlf_line_ends_and_a_byte_order_mark_are_read_as_plain_lines() {
        assert_eq!(
            values("\u{feff}[a]\r\nx = 1\r\n  two\r\n"),
            one("a", &[("x", "1\ntwo")])
        );
    }

    #[test]
    fn line_numbers_skip_comments_and_blank_lines() {
        let ini = p("# top\n[a]\n; c\n\nx = 1\n").unwrap();
        assert_eq!(ini.section("a").unwrap().line, 2);
        assert_eq!(ini.section("a").unwrap().entries[0].line, 5);
    }

    #[test]
    fn duplicates_and_stray_keys_are_reported_with_lines() {
        let errs = p("x = 1\n[a]\ny = 1\ny = 2\n[a]\n").unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("t.cfg:1 x: a key outside any section"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("t.cfg:4 [a] y: duplicate key, first set at line 3"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("t.cfg:5 [a]: duplicate section, first defined at line 2"),
            "{text:?}"
        );
    }

    #[test]
    fn a_refused_line_is_reported_once_with_what_would_continue_it() {
        let errs = p("[a]\njust words\n  more words\n[b\n[]\n= 1\n").unwrap_err();
        let lines: Vec<Option<usize>> = errs.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![Some(2), Some(4), Some(5), Some(6)], "{errs:?}");
        assert!(errs[0].message.starts_with("not a `key = value` line"));
        assert!(errs[1].message.contains("without closing `]`"));
        assert!(errs[2].message.starts_with("empty section name"));
        assert!(errs[3].message.starts_with("a value without a key"));
    }

    #[test]
    fn a_default_section_is_refused_with_a_reason() {
        let e = crate::config::Config::from_str(Path::new("/tmp/t.cfg"), "[DEFAULT]\nx = 1\n")
            .unwrap_err();
        assert!(
            e[0].to_string().contains("[DEFAULT] is not supported"),
            "{e:?}"
        );
    }

    #[test]
    fn empty_files_are_errors() {
        assert!(p("  \n").unwrap_err()[0]
            .message
            .contains("the file is empty"));
        assert!(p("# only\n; comments\n").unwrap_err()[0]
            .message
            .contains("only comments"));
    }

    #[test]
    fn supervisords_dialect_ends_a_value_at_a_comment_after_white_space() {
        let text = "[unix_http_server]\nfile=/run/s.sock ; the socket\nchmod=0700#not a comment\n[include]\nfiles = a/*.conf  # enabled\n";
        let ini = parse_dialect(Path::new("s.conf"), text, Dialect::Supervisord).unwrap();
        assert_eq!(ini.get("unix_http_server", "file"), Some("/run/s.sock"));
        assert_eq!(
            ini.get("unix_http_server", "chmod"),
            Some("0700#not a comment")
        );
        assert_eq!(ini.get("include", "files"), Some("a/*.conf"));
    }

    #[test]
    fn supervisords_dialect_lets_a_later_section_or_key_continue_or_replace_the_first() {
        // What Python gives with supervisord's `strict=False`: no error, the later value wins
        // where the first key stood, and the second `[a]` goes on with the first.
        let text = "[a]\nx = 1\ny = 2\n[b]\nz = 3\n[a]\nx = 4\n  five ; note\nw = 6\n";
        let ini = parse_dialect(Path::new("s.conf"), text, Dialect::Supervisord).unwrap();
        let a = ini.section("a").unwrap();
        let kv: Vec<(&str, &str, usize)> = a
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(kv, vec![("x", "4\nfive", 7), ("y", "2", 3), ("w", "6", 9)]);
        assert_eq!(ini.section_names().collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn supervisords_comment_may_follow_any_white_space() {
        let text = "[a]\nx = one\u{a0}; no-break space\ny = two\u{2003}# em space\n";
        let ini = parse_dialect(Path::new("s.conf"), text, Dialect::Supervisord).unwrap();
        assert_eq!(ini.get("a", "x"), Some("one"));
        assert_eq!(ini.get("a", "y"), Some("two"));
    }
}
