//! The raw INI file as written: sections, keys and values with their line numbers.
//!
//! rust-ini does the parsing (with backslash escapes and quote handling turned off, so Windows
//! paths and regexes survive as written), but it does not report line numbers and it silently
//! merges duplicate sections. A small line scanner runs first: it rejects lines that are neither
//! blank, a comment, a section header, a `key = value` / `key: value` pair nor an indented
//! continuation, records where every section and key stands, and finds duplicates, so that every
//! later message can say `FILE:LINE [section] key`.

use crate::config::diag::Diagnostic;
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
                format!("{why}; expected a readable loglines.cfg (pass --config FILE)"),
            )]
        })?;
        let text = String::from_utf8(text).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            vec![Diagnostic::error(
                path,
                Some(line),
                "the file is not valid UTF-8; save it as UTF-8",
            )]
        })?;
        parse(path, &text)
    }
}

/// What one physical line is, as the scanner sees it.
enum LineKind<'a> {
    Blank,
    Header(&'a str),
    Pair(&'a str),
    Continuation,
    Bad(&'static str),
}

fn classify(line: &str) -> LineKind<'_> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
        return LineKind::Blank;
    }
    if line.starts_with([' ', '\t']) {
        return LineKind::Continuation;
    }
    if let Some(rest) = trimmed.strip_prefix('[') {
        return match rest.strip_suffix(']') {
            Some(name) if !name.trim().is_empty() => LineKind::Header(name.trim()),
            Some(_) => LineKind::Bad("empty section name; expected `[name]`"),
            None => LineKind::Bad("section header without closing `]`; expected `[name]`"),
        };
    }
    match trimmed.find(['=', ':']) {
        Some(0) => LineKind::Bad("a value without a key; expected `key = value`"),
        Some(pos) => LineKind::Pair(trimmed[..pos].trim()),
        None => LineKind::Bad(
            "not a `key = value` line, a `[section]` header or a comment; expected `key = value`",
        ),
    }
}

/// The (lower-cased key, line) pairs of one section occurrence.
type KeyLines = Vec<(String, usize)>;

/// Parses INI text. Returns the model, or every problem found when there is any error.
pub fn parse(path: &Path, text: &str) -> Result<RawIni, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    if text.trim().is_empty() {
        problems.push(Diagnostic::error(
            path,
            None,
            "the file is empty; expected sections such as [redis], [logger_logfilewatcher] and [worker_pirus2] (see the example loglines.cfg)",
        ));
        return Err(problems);
    }

    // Pass 1: positions: each section's name, header line, and (key, line) pairs in file order.
    let mut sections: Vec<(String, usize, KeyLines)> = Vec::new();
    let mut after_pair = false;
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        match classify(line) {
            LineKind::Blank => {}
            LineKind::Continuation if after_pair => {}
            LineKind::Continuation => problems.push(Diagnostic::error(
                path,
                Some(lineno),
                "an indented line that continues nothing; remove the indentation or the line",
            )),
            LineKind::Header(name) => {
                after_pair = false;
                if let Some((_, first, _)) = sections.iter().find(|(n, _, _)| n == name) {
                    problems.push(
                        Diagnostic::error(
                            path,
                            Some(lineno),
                            format!("duplicate section, first defined at line {first}; merge the two into one"),
                        )
                        .in_section(name),
                    );
                }
                sections.push((name.to_string(), lineno, Vec::new()));
            }
            LineKind::Pair(key) => {
                let key = key.to_ascii_lowercase();
                match sections.last_mut() {
                    None => problems.push(
                        Diagnostic::error(
                            path,
                            Some(lineno),
                            "a key outside any section; put it under a `[section]` header",
                        )
                        .at_key(&key),
                    ),
                    Some((name, _, keys)) => {
                        if let Some((_, first)) = keys.iter().find(|(k, _)| *k == key) {
                            problems.push(
                                Diagnostic::error(
                                    path,
                                    Some(lineno),
                                    format!("duplicate key, first set at line {first}; keep one of the two"),
                                )
                                .in_section(name)
                                .at_key(&key),
                            );
                        }
                        keys.push((key, lineno));
                    }
                }
                after_pair = true;
            }
            LineKind::Bad(why) => {
                after_pair = false;
                problems.push(Diagnostic::error(path, Some(lineno), why));
            }
        }
    }
    if sections.is_empty() && problems.is_empty() {
        problems.push(Diagnostic::error(
            path,
            None,
            "the file is empty (only comments); expected sections such as [redis], [logger_logfilewatcher] and [worker_pirus2] (see the example loglines.cfg)",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    // Pass 2: values, from rust-ini. Its properties come in file order, duplicate sections
    // merged, so walking them in step with pass 1 pairs every value with its line.
    let opt = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        ..Default::default()
    };
    let parsed = ini::Ini::load_from_str_opt(text, opt).map_err(|e| {
        vec![Diagnostic::error(
            path,
            Some(e.line),
            format!("cannot parse: {}", e.msg),
        )]
    })?;
    let mut out = RawIni {
        path: path.to_path_buf(),
        sections: Vec::new(),
    };
    for (name, line, _) in &sections {
        if out.section(name).is_some() {
            continue; // a duplicate, already reported
        }
        let mut values = parsed
            .section_all(Some(name.as_str()))
            .flat_map(|props| props.iter().map(|(_, v)| v.to_string()))
            .collect::<Vec<_>>()
            .into_iter();
        // Keys of every occurrence of this section, in file order, matching rust-ini's merge.
        let mut entries: Vec<RawEntry> = Vec::new();
        for (_, _, ks) in sections.iter().filter(|(n, _, _)| n == name) {
            for (key, kline) in ks {
                let value = values.next().unwrap_or_default();
                if entries.iter().all(|e| e.key != *key) {
                    entries.push(RawEntry {
                        key: key.clone(),
                        value: value.trim().to_string(),
                        line: *kline,
                    });
                }
            }
        }
        out.sections.push(RawSection {
            name: name.clone(),
            line: *line,
            entries,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<RawIni, Vec<Diagnostic>> {
        parse(Path::new("t.cfg"), text)
    }

    #[test]
    fn values_keep_backslashes_and_keys_are_lowercased() {
        let ini = p("[a]\nPath = C:\\logs\\new.log\nre = ^\\d+$\n").unwrap();
        assert_eq!(ini.get("a", "path"), Some("C:\\logs\\new.log"));
        assert_eq!(ini.get("a", "re"), Some("^\\d+$"));
        assert_eq!(ini.section("a").unwrap().entries[1].line, 3);
    }

    #[test]
    fn continuation_lines_join_the_value() {
        let ini = p("[a]\nx = one\n  two\ny: 2\n").unwrap();
        assert_eq!(ini.get("a", "x"), Some("one\ntwo"));
        assert_eq!(ini.get("a", "y"), Some("2"));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let ini = p("# top\n[a]\n; c\n\nx = 1\n").unwrap();
        assert_eq!(ini.section("a").unwrap().entries.len(), 1);
        assert_eq!(ini.section("a").unwrap().entries[0].line, 5);
    }

    #[test]
    fn duplicates_and_stray_keys_are_reported_with_lines() {
        let errs = p("x = 1\n[a]\ny = 1\ny = 2\n[a]\n").unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
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
    fn garbage_lines_are_reported() {
        let errs = p("[a]\njust words\n[b\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, Some(2));
        assert_eq!(errs[1].line, Some(3));
    }

    #[test]
    fn empty_file_is_an_error() {
        let errs = p("  \n").unwrap_err();
        assert!(errs[0].message.contains("the file is empty"));
    }
}
