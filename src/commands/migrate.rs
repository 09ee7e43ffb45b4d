//! `loglines migrate OLD.cfg > NEW.cfg`: the 2010 tool's configuration file rewritten for
//! loglines, line for line, comments kept. Each change is marked with a comment saying what
//! the line was, and said once on standard error; what cannot be changed for the
//! administrator (a Python plugin with no Lua port, the PIRUS2 tracker that no longer exists)
//! is said there too, so nothing is silently different.

use crate::app::{print, Failure, Global};
use crate::config::keys::Key;
use crate::config::legacy;
use crate::config::RawIni;
use crate::roles::RoleName;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// The 2010 loglines.cfg to read (it is not changed; the new file goes to standard output).
    pub old: PathBuf,
}

/// What migrating one line does: the lines that replace it, and what to tell the administrator.
struct Change {
    lines: Vec<String>,
    note: String,
}

/// `line` with its value replaced by `value`, keeping the key as written and its separator.
fn with_value(line: &str, value: &str) -> String {
    let sep = line
        .find(['=', ':'])
        .unwrap_or(line.len().saturating_sub(1));
    format!("{} {value}", line[..=sep].trim_end())
}

/// The role of a section, from its `command`, in the 2010 or the modern form.
fn role_of(command: Option<&str>) -> Option<RoleName> {
    let command = command?;
    legacy::program_role(command).or_else(|| {
        let mut w = command.split_whitespace();
        (w.next() == Some("loglines"))
            .then(|| w.next().and_then(RoleName::from_word))
            .flatten()
    })
}

/// The changes to make, by line number (1-based), for the file whose lines are `lines`.
fn changes(ini: &RawIni, lines: &[&str]) -> BTreeMap<usize, Change> {
    let mut out = BTreeMap::new();
    for s in &ini.sections {
        let program = s.name.starts_with("process_");
        let role = if program {
            None
        } else {
            role_of(s.get("command"))
        };
        let obsolete: &[Key] = role.map_or(&[], RoleName::keys);
        for e in s.entries.iter().filter(|e| !e.value.contains('\n')) {
            let Some(line) = lines.get(e.line - 1) else {
                continue;
            };
            let at = format!("{}:{} [{}]", ini.path.display(), e.line, s.name);
            let change = match e.key.as_str() {
                "command" if !program => legacy::program_role(&e.value).map(|r| Change {
                    lines: vec![
                        format!("# (2010: {})", line.trim()),
                        with_value(line, &format!("loglines {r}")),
                    ],
                    note: format!("{at} command: `{}` is now `loglines {r}`", e.value),
                }),
                "repository_plugin" => match legacy::plugin_for_module(&e.value) {
                    Some(p) => Some(Change {
                        lines: vec![
                            format!("# (2010: {})", line.trim()),
                            with_value(line, p),
                        ],
                        note: format!(
                            "{at} repository_plugin: the 2010 plugin `{}` is the shipped {p}",
                            e.value
                        ),
                    }),
                    None if legacy::is_python_module(&e.value) => Some(Change {
                        lines: vec![
                            format!("# loglines runs Lua plugins: port the 2010 Python plugin `{}` to Lua (docs/plugins.md; lua_plugins/template.lua is a start) and name its file here", e.value),
                            line.to_string(),
                        ],
                        note: format!(
                            "warning: {at} repository_plugin: `{}` is a 2010 Python plugin with no Lua port shipped; write one (docs/plugins.md) before running this section",
                            e.value
                        ),
                    }),
                    None => None,
                },
                "endpoint_url" if legacy::is_pirus2_endpoint(&e.value) => Some(Change {
                    lines: vec![
                        format!(
                            "# (2010: {}: the PIRUS2 tracker, which no longer exists. This is IRUS's test endpoint: once the test events look right, use {}, or the IRUS service your repository registered with.)",
                            line.trim(),
                            legacy::IRUS_ENDPOINT
                        ),
                        with_value(line, legacy::IRUS_TEST_ENDPOINT),
                    ],
                    note: format!(
                        "warning: {at} endpoint_url: {}; the new file sends to {}",
                        legacy::pirus2_advice(&e.value),
                        legacy::IRUS_TEST_ENDPOINT
                    ),
                }),
                key => obsolete
                    .iter()
                    .find(|k| k.name == key)
                    .and_then(|k| k.meaning.strip_prefix("accepted for 2010 files; "))
                    .map(|why| Change {
                        lines: vec![format!("# {}  (loglines: {why})", line.trim())],
                        note: format!("{at} {key}: commented out ({why})"),
                    }),
            };
            if let Some(c) = change {
                out.insert(e.line, c);
            }
        }
    }
    out
}

/// `loglines migrate`.
pub fn run(_g: &Global, args: &MigrateArgs) -> Result<i32, Failure> {
    let ini = RawIni::load(&args.old)
        .map_err(|d| Failure::Config(d.iter().map(ToString::to_string).collect::<Vec<_>>()))?;
    let text = std::fs::read_to_string(&args.old)
        .map_err(|e| Failure::Config(vec![format!("cannot read {}: {e}", args.old.display())]))?;
    let lines: Vec<&str> = text.lines().collect();
    let changes = changes(&ini, &lines);
    let mut out = String::with_capacity(text.len() + 1024);
    for (i, line) in lines.iter().enumerate() {
        match changes.get(&(i + 1)) {
            Some(c) => {
                for l in &c.lines {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    print(&out)?;
    for c in changes.values() {
        eprintln!("loglines migrate: {}", c.note);
    }
    eprintln!(
        "loglines migrate: {} line(s) changed; check the new file with `loglines check --config NEW.cfg`",
        changes.len()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_replaced_keeping_key_and_separator() {
        assert_eq!(
            with_value("command = ./pirus2.py", "loglines worker"),
            "command = loglines worker"
        );
        assert_eq!(with_value("Command: ./x.py", "y"), "Command: y");
    }
}
