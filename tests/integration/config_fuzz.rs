//! Configuration files mutated at random, from the shipped example and the 2010 tool's file:
//! loading never panics, every problem is reported on one line as
//! `FILE[:LINE] [section] key: ...` (a key never without its line, a message never empty), a file that loads can be described and
//! checked, and the real binary's `check` ends with exit 0 or 2, never a panic. Bounded: a
//! fixed number of cases, each a few milliseconds in-process (a hundred go through the binary).

use crate::support;

use loglines::config::diag::Severity;
use loglines::config::Config;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use std::path::Path;

/// One change to a file's lines.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Replaces the value of line `.0` (after its first `=` or `:`) with `.1`.
    ReplaceValue(usize, String),
    /// Inserts `.1` before line `.0`.
    InsertLine(usize, String),
    /// Indents line `.0` (making it a continuation, or a comment's, or nothing).
    Indent(usize),
    /// Cuts line `.0` at byte `.1` (a char boundary at or before it).
    Truncate(usize, usize),
    UppercaseLine(usize),
}

/// Values and lines an administrator (or an attacker) might write.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("99999999999999999999".to_string()),
        Just("yes".to_string()),
        Just("[".to_string()),
        Just("[worker_x]".to_string()),
        Just("[redis_nowhere]".to_string()),
        Just("redis = nowhere".to_string()),
        Just("command = loglines worker".to_string()),
        Just("command = loglines nosuchrole".to_string()),
        Just("listento = a, b".to_string()),
        Just("%(here)s".to_string()),
        Just("redis://user:pw@[::1".to_string()),
        Just("HTTP://example.org/".to_string()),
        Just("\u{feff}".to_string()),
        Just("é\u{0}\u{7f}".to_string()),
        "[ -~]{0,40}",
        "\\PC{0,20}",
    ]
}

fn mutation(lines: usize) -> impl Strategy<Value = Mutation> {
    let l = 0..lines.max(1);
    prop_oneof![
        l.clone().prop_map(Mutation::DeleteLine),
        l.clone().prop_map(Mutation::DuplicateLine),
        (l.clone(), l.clone()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (l.clone(), text()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        (l.clone(), text()).prop_map(|(i, v)| Mutation::InsertLine(i, v)),
        l.clone().prop_map(Mutation::Indent),
        (l.clone(), 0..80usize).prop_map(|(i, n)| Mutation::Truncate(i, n)),
        l.prop_map(Mutation::UppercaseLine),
    ]
}

fn apply(lines: &mut Vec<String>, m: &Mutation) {
    if lines.is_empty() {
        return;
    }
    let n = lines.len();
    match m {
        Mutation::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Mutation::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        Mutation::ReplaceValue(i, v) => {
            let l = &mut lines[i % n];
            if let Some(at) = l.find(['=', ':']) {
                l.truncate(at + 1);
                l.push(' ');
                l.push_str(v);
            }
        }
        Mutation::InsertLine(i, v) => lines.insert(i % n, v.clone()),
        Mutation::Indent(i) => lines[i % n].insert_str(0, "  "),
        Mutation::Truncate(i, at) => {
            let l = &mut lines[i % n];
            let mut at = (*at).min(l.len());
            while !l.is_char_boundary(at) {
                at -= 1;
            }
            l.truncate(at);
        }
        Mutation::UppercaseLine(i) => lines[i % n] = lines[i % n].to_uppercase(),
    }
}

/// The base files, as lines, with the plugins they name present in `dir`.
fn bases(dir: &Path) -> Vec<Vec<String>> {
    let root = support::crate_root();
    std::fs::create_dir_all(dir.join("lua_plugins")).unwrap();
    for p in ["irus.lua", "ora.lua"] {
        std::fs::copy(
            root.join("lua_plugins").join(p),
            dir.join("lua_plugins").join(p),
        )
        .unwrap();
    }
    let shipped = std::fs::read_to_string(root.join("loglines.cfg")).unwrap();
    let original = support::configs::modernised_original("lua_plugins/ora.lua");
    let unchanged_2010 = std::fs::read_to_string(root.join("tests/data/loglines-original.cfg"));
    [shipped, original, unchanged_2010.unwrap()]
        .iter()
        .map(|t| t.lines().map(str::to_string).collect())
        .collect()
}

/// Loads `text` in-process and checks the invariants; Err says which one broke.
fn check_in_process(path: &Path, text: &str) -> Result<bool, String> {
    std::fs::write(path, text).unwrap();
    let loaded = std::panic::catch_unwind(|| Config::load(path))
        .map_err(|_| "Config::load panicked".to_string())?;
    match loaded {
        Ok(cfg) => {
            std::panic::catch_unwind(|| {
                loglines::commands::check::describe(&cfg);
                loglines::commands::check::queue_warnings(&cfg);
            })
            .map_err(|_| "describing a loaded configuration panicked".to_string())?;
            Ok(true)
        }
        Err(diags) => {
            if !diags.iter().any(|d| d.severity == Severity::Error) {
                return Err("refused without an error".into());
            }
            for d in &diags {
                let shown = d.to_string();
                if d.file != path {
                    return Err(format!("names another file: {shown}"));
                }
                // A key outside any section has no section to name, but always a line.
                if d.key.is_some() && d.line.is_none() {
                    return Err(format!("a key without its line: {shown}"));
                }
                if shown.contains('\n') {
                    return Err(format!("more than one line: {shown}"));
                }
                if d.message.trim().is_empty() {
                    return Err(format!("an empty message: {shown}"));
                }
                if d.section.is_some() && d.line.is_none() {
                    return Err(format!("a section's problem without a line: {shown}"));
                }
            }
            Ok(false)
        }
    }
}

/// Runs `cases` mutated files (each base file with up to `most` mutations) through `check`,
/// which gets the file's path and text, in a folder holding the plugins they name.
fn for_mutated_files(
    cases: u32,
    most: usize,
    check: impl Fn(&Path, &str) -> Result<(), TestCaseError>,
) {
    let dir = support::temp_dir();
    let bases = bases(dir.path());
    let path = dir.path().join("loglines.cfg");
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let longest = bases.iter().map(Vec::len).max().unwrap();
    let strategy = (
        0..bases.len(),
        proptest::collection::vec(mutation(longest), 1..most + 1),
    );
    runner
        .run(&strategy, |(base, mutations)| {
            let mut lines = bases[base].clone();
            for m in &mutations {
                apply(&mut lines, m);
            }
            check(&path, &lines.join("\n"))
        })
        .unwrap();
}

#[test]
fn mutated_configurations_never_panic_and_every_error_says_where() {
    let (loaded, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    for_mutated_files(600, 5, |path, text| {
        match check_in_process(path, text) {
            Ok(true) => loaded.set(loaded.get() + 1),
            Ok(false) => refused.set(refused.get() + 1),
            Err(why) => return Err(TestCaseError::fail(format!("{why}\n--- file:\n{text}"))),
        }
        Ok(())
    });
    // Both outcomes happen, or the mutations test less than they seem to.
    let (loaded, refused) = (loaded.get(), refused.get());
    println!("{loaded} loaded, {refused} refused");
    assert!(
        loaded > 0 && refused > 0,
        "{loaded} loaded, {refused} refused"
    );
}

#[test]
fn the_binary_checks_mutated_configurations_with_exit_0_or_2() {
    for_mutated_files(100, 3, |path, text| {
        std::fs::write(path, text).unwrap();
        // check reports a Redis server it cannot reach as a warning, not an error.
        let out = support::bin::output_within(path, &["check"], std::time::Duration::from_secs(30));
        let err = support::bin::text(&out.stderr);
        let code = out.status.code();
        prop_assert!(
            code == Some(0) || code == Some(2),
            "exit {code:?}\n{err}\n--- file:\n{text}"
        );
        prop_assert!(!err.contains("panicked"), "{err}");
        if code == Some(2) {
            // Every error line names the file.
            for l in err.lines().filter(|l| l.starts_with("loglines: ")) {
                prop_assert!(
                    l.contains("loglines.cfg"),
                    "an error without its file: {l}\n--- file:\n{text}"
                );
            }
        }
        Ok(())
    });
}
