//! Log lines mutated at random (truncated, spliced, bytes flipped, invalid UTF-8, NULs,
//! quotes, over-long) through the shipped plugins in-process and through the whole pipeline:
//! a plugin call never panics and says why when it fails; a `run --once` over such lines ends
//! (no stall), and every line read is accounted for as sent, not a usage event or
//! dead-lettered, with exactly the sent ones at the tracker. Bounded: fixed case counts.

use crate::support;

use loglines::plugin::{Plugin, PluginSpec};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use std::io::Write;
use std::time::Duration;
use support::pipeline::{data, Options, Pipeline};

/// Real lines to start from: the sample logs of both shipped plugins.
fn seeds() -> Vec<Vec<u8>> {
    ["combined.log", "ora-wsgi.log"]
        .iter()
        .flat_map(|f| {
            std::fs::read(data(f))
                .unwrap()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One change to a line's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Splice(usize, usize),
    Repeat(usize, usize),
}

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\x".to_vec()),
        Just(b"\0".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(vec![0xc3]),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b" - - ".to_vec()),
        Just(b"%".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"{\"logline\":".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), piece()).prop_map(|(i, p)| Edit::Insert(i, p)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Splice(a, b)),
        (any::<usize>(), 1..3000usize).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(line: &mut Vec<u8>, e: &Edit) {
    let n = line.len().max(1);
    match e {
        Edit::Truncate(i) => line.truncate(i % n),
        Edit::Flip(i, b) if !line.is_empty() => line[i % n] = *b,
        Edit::Flip(..) => {}
        Edit::Insert(i, p) => {
            let at = (i % n).min(line.len());
            line.splice(at..at, p.iter().copied());
        }
        Edit::Splice(a, b) => {
            let (a, b) = ((a % n).min(line.len()), (b % n).min(line.len()));
            let (a, b) = (a.min(b), a.max(b));
            line.drain(a..b);
        }
        Edit::Repeat(i, times) if !line.is_empty() => {
            let at = i % line.len();
            let c = line[at];
            line.splice(at..at, std::iter::repeat_n(c, *times));
        }
        Edit::Repeat(..) => {}
    }
}

fn fuzzed_line() -> impl Strategy<Value = (usize, Vec<Edit>)> {
    (any::<usize>(), proptest::collection::vec(edit(), 0..5))
}

/// The line `seed` edited; no newline inside (a newline would make it two lines).
fn make(seeds: &[Vec<u8>], (seed, edits): &(usize, Vec<Edit>)) -> Vec<u8> {
    let mut line = seeds[seed % seeds.len()].clone();
    for e in edits {
        apply(&mut line, e);
    }
    line.retain(|b| *b != b'\n');
    line
}

#[test]
fn fuzzed_lines_through_the_shipped_plugins_never_panic_and_failures_say_why() {
    let seeds = seeds();
    let root = support::crate_root();
    for plugin in ["irus.lua", "ora.lua"] {
        let spec = PluginSpec::standalone(&root.join("lua_plugins").join(plugin), "worker_pirus2");
        let p = std::cell::RefCell::new(Plugin::load(spec).unwrap());
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 1500,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        runner
            .run(&fuzzed_line(), |case| {
                let line = make(&seeds, &case);
                let text = String::from_utf8_lossy(&line);
                let msg = loglines::commands::test_plugin::wrap("repo.example.ac.uk", &text);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    p.borrow_mut().process(&msg)
                }));
                let Ok(outcome) = outcome else {
                    return Err(TestCaseError::fail(format!(
                        "{plugin} panicked on {text:?}"
                    )));
                };
                if let Err(e) = outcome {
                    prop_assert!(
                        !e.to_string().trim().is_empty(),
                        "{plugin}: an empty error on {text:?}"
                    );
                }
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn a_run_over_fuzzed_lines_ends_and_accounts_for_every_line() {
    let seeds = seeds();
    let p = Pipeline::embedded(Options {
        workers: 2,
        ..Options::default()
    });
    // Short over-long lines, so some are dead-lettered by the watcher.
    let cfg = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        cfg.replace(
            "start_at = beginning\n",
            "start_at = beginning\nmax_line_bytes = 2048\n",
        ),
    )
    .unwrap();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 1,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let lines = proptest::collection::vec(fuzzed_line(), 3000);
    let tree = lines.new_tree(&mut runner).unwrap();
    let file = p.path("fuzzed.log");
    let mut f = std::fs::File::create(&file).unwrap();
    let mut count = 0;
    for case in tree.current() {
        let line = make(&seeds, &case);
        f.write_all(&line).unwrap();
        f.write_all(b"\n").unwrap();
        count += 1;
    }
    drop(f);
    let out = support::bin::output_within(
        &p.config,
        &["run", "--once", file.to_str().unwrap()],
        Duration::from_secs(120),
    );
    let err = support::bin::text(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let summary = err
        .lines()
        .find(|l| l.contains("summary:"))
        .unwrap_or_else(|| panic!("no summary in\n{err}"));
    let number = |after: &str| -> u64 {
        let i = summary
            .find(after)
            .unwrap_or_else(|| panic!("{after} in {summary}"));
        summary[..i]
            .split_whitespace()
            .last()
            .and_then(|w| w.trim_start_matches(['(', ';', ',']).parse().ok())
            .unwrap_or_else(|| panic!("the number before {after:?} in {summary}"))
    };
    let read = number(" lines read");
    let sent = number(" sent to the tracker");
    let other = number(" not usage events");
    let dead = number(" dead-lettered");
    println!("{summary}");
    assert_eq!(read, count, "{summary}");
    assert_eq!(
        sent + other + dead,
        read,
        "a line is unaccounted for: {summary}"
    );
    assert_eq!(p.tracker.count() as u64, sent, "{summary}");
}
