//! The pipeline as a whole: what no single section can tell. A loop in the queue graph (a
//! worker whose `success_queue` is its own `listento`, brokers feeding each other, a
//! notification queue read back into the pipeline) sends a message round for ever; a file
//! logger writing the log a watcher follows feeds its own output back in; a queue written on
//! one Redis and read on another never reaches its reader. Each is an error naming the sections.

use super::diag::Diagnostic;
use super::Section;
use crate::roles::watch::files::Entry;
use crate::roles::Role;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every problem of the whole pipeline in `sections` of `file`.
pub(super) fn check(file: &Path, sections: &[Section]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    out.extend(loops(file, sections));
    out.extend(logs_read_back(file, sections));
    out.extend(split_targets(file, sections));
    out
}

/// Who writes and who reads one queue, as indices into the sections; a writer is marked when
/// the queue is its notifications' (`notify_queue`).
#[derive(Debug, Default)]
pub struct QueueUse {
    pub writers: Vec<(usize, bool)>,
    pub readers: Vec<usize>,
}

/// Every queue the sections name, with its writers and readers.
pub fn queue_use(sections: &[Section]) -> BTreeMap<String, QueueUse> {
    let mut map: BTreeMap<String, QueueUse> = BTreeMap::new();
    for (i, s) in sections.iter().enumerate() {
        for q in s.role.writes() {
            map.entry(q).or_default().writers.push((i, false));
        }
        if let Some(q) = &s.notify.queue {
            map.entry(q.clone()).or_default().writers.push((i, true));
        }
        for q in s.role.reads() {
            map.entry(q).or_default().readers.push(i);
        }
    }
    map
}

/// One error per loop: the sections and queues in it, in order.
fn loops(file: &Path, sections: &[Section]) -> Vec<Diagnostic> {
    // Section i -> (queue, section j) when i pushes to a queue j reads.
    let mut edges: Vec<Vec<(String, usize)>> = vec![Vec::new(); sections.len()];
    for (q, u) in queue_use(sections) {
        for &(w, _) in &u.writers {
            for &r in &u.readers {
                edges[w].push((q.clone(), r));
            }
        }
    }
    let mut found: Vec<Vec<usize>> = Vec::new();
    let mut out = Vec::new();
    for start in 0..sections.len() {
        let mut path = vec![(start, String::new())];
        walk(
            &edges, start, &mut path, &mut found, &mut out, sections, file,
        );
    }
    out
}

/// Depth-first from the last section of `path`, reporting a loop back to `path[0]` that goes
/// only through sections numbered above it (so each loop is reported once, from its lowest).
fn walk(
    edges: &[Vec<(String, usize)>],
    start: usize,
    path: &mut Vec<(usize, String)>,
    found: &mut Vec<Vec<usize>>,
    out: &mut Vec<Diagnostic>,
    sections: &[Section],
    file: &Path,
) {
    let at = path.last().map(|(s, _)| *s).unwrap_or(start);
    for (q, next) in &edges[at] {
        if *next == start {
            let members: Vec<usize> = path.iter().map(|(s, _)| *s).collect();
            if found.contains(&members) {
                continue;
            }
            found.push(members);
            let mut shown = String::new();
            for (i, (s, _)) in path.iter().enumerate() {
                let via = path.get(i + 1).map_or(q.as_str(), |(_, q)| q.as_str());
                shown.push_str(&format!("[{}] -> `{via}` -> ", sections[*s].name));
            }
            shown.push_str(&format!("[{}]", sections[start].name));
            out.push(
                Diagnostic::error(
                    file,
                    Some(sections[start].line),
                    format!("the queues form a loop: {shown}; every message would go round for ever. Send the output elsewhere (a `success_queue`, `other_queue`, `fanout` or `notify_queue` must not lead back)"),
                )
                .in_section(&sections[start].name),
            );
        } else if *next > start && !path.iter().any(|(s, _)| s == next) {
            path.push((*next, q.clone()));
            walk(edges, start, path, found, out, sections, file);
            path.pop();
        }
    }
}

/// A path as it will be opened: absolute, and through symbolic links where it exists.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (
        p.parent().and_then(|d| d.canonicalize().ok()),
        p.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => p.to_path_buf(),
    }
}

/// A file logger whose output is a log a watcher follows (named, or matched by a glob).
fn logs_read_back(file: &Path, sections: &[Section]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for f in sections {
        let Role::FileLog(fl) = &f.role else { continue };
        let written = resolved(&fl.logfile);
        for w in sections {
            let Role::Watch(ws) = &w.role else { continue };
            let reads_back = ws.logfiles.entries.iter().any(|e| match e {
                Entry::File(p) => resolved(p) == written,
                Entry::Glob { .. } => {
                    ws.logfiles.covers(&fl.logfile) || ws.logfiles.covers(&written)
                }
            });
            if reads_back {
                out.push(
                    Diagnostic::error(
                        file,
                        Some(f.line),
                        format!(
                            "{} is the log [{}] follows: every line written would be read and sent round again; write to another file",
                            fl.logfile.display(),
                            w.name
                        ),
                    )
                    .in_section(&f.name)
                    .at_key("logfile"),
                );
            }
        }
    }
    out
}

/// A queue written on one Redis and read on another.
fn split_targets(file: &Path, sections: &[Section]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (q, u) in queue_use(sections) {
        for &(w, _) in &u.writers {
            for &r in &u.readers {
                let (w, r) = (&sections[w], &sections[r]);
                if w.redis == r.redis {
                    continue;
                }
                out.push(
                    Diagnostic::error(
                        file,
                        Some(r.line),
                        format!(
                            "reads `{q}` on [{}], but [{}] writes it on [{}]: the messages would never meet. Name the same Redis section (`redis = ...`) in both",
                            r.redis, w.name, w.redis
                        ),
                    )
                    .in_section(&r.name)
                    .at_key("redis"),
                );
            }
        }
    }
    out
}
