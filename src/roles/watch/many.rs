//! A watcher section whose `logfile` names several files or a glob: one follower per file, each
//! a thread running the same code as a single-file watcher, with a producer, a notifier and a
//! checkpoint of its own (in the folder `CHECKPOINT.d`, see `files.rs`), so each file keeps
//! every guarantee of a single one. The globs are matched again every second and a new file
//! that matches gets a follower; a file rotated out of the glob (`access.log.1`) is finished by
//! the follower of the name it had.
//!
//! Where a file without a checkpoint starts: on the section's first start (no checkpoint at
//! all yet) where `start_at` says, like a single file; afterwards at its beginning, because a
//! file that appeared later, while the watcher ran or was stopped, has only lines nobody sent.

use super::checkpoint::{self, Loaded};
use super::files::{checkpoint_folder, checkpoint_in};
use super::{follow, StartAt, WatchError, WatchSettings, WatchStats, LOOK_EVERY};
use crate::config::Section;
use crate::queue::Transport;
use crate::roles::notify::Notifier;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::thread::ScopedJoinHandle;

type Follower<'s> = ScopedJoinHandle<'s, Result<WatchStats, WatchError>>;

/// Follows every file `settings.logfiles` names, and those that come to match its globs, until
/// `shutdown` (or, with `until_eof`, until each file found at the start is read to its end and
/// its lines finished). A follower that fails stops the others; its error is returned.
pub(super) fn run(
    section: &Section,
    settings: &WatchSettings,
    transport: &dyn Transport,
    shutdown: &Shutdown,
    stats: &Stats,
    until_eof: bool,
) -> Result<WatchStats, WatchError> {
    let folder = checkpoint_folder(&settings.checkpoint);
    std::fs::create_dir_all(&folder).map_err(|error| WatchError::StateDir {
        path: folder.clone(),
        error,
    })?;
    let now = settings.logfiles.matching();
    adopt_single_checkpoint(settings, &folder, &now.files);
    let first_start = is_empty(&folder);
    // The followers stop on this one: set by the section's shutdown, or when one of them fails.
    let stop = Shutdown::new();
    {
        let stop = stop.clone();
        shutdown.on_trigger(move || stop.trigger());
    }
    let list: Vec<String> = settings
        .logfiles
        .entries
        .iter()
        .map(|e| e.path().display().to_string())
        .collect();
    log::info!(
        "watching {} (section {}): {} files now, each with its checkpoint in {}",
        list.join(", "),
        section.name,
        now.files.len(),
        folder.display()
    );
    std::thread::scope(|scope| {
        let mut running: BTreeMap<PathBuf, Follower<'_>> = BTreeMap::new();
        let mut said_skipped = BTreeSet::new();
        let mut said_none = false;
        let mut matches = now;
        let mut first_round = true;
        loop {
            for s in &matches.skipped {
                if said_skipped.insert(s.path.clone()) {
                    log::info!("not following {}: {}", s.path.display(), s.why);
                }
            }
            if matches.files.is_empty() && !std::mem::replace(&mut said_none, true) {
                log::warn!("no file matches {} yet; waiting for one", list.join(", "));
            }
            for file in matches.files {
                if running.contains_key(&file) {
                    continue;
                }
                let start_at = match first_round && first_start {
                    true => settings.start_at,
                    false => StartAt::Beginning,
                };
                let own = WatchSettings {
                    logfile: file.clone(),
                    checkpoint: checkpoint_in(&folder, &file),
                    start_at,
                    ..settings.clone()
                };
                if !first_round {
                    log::info!(
                        "{} matches now: following it from its beginning",
                        file.display()
                    );
                }
                let stop = &stop;
                let spawned = std::thread::Builder::new()
                    .name(thread_name(&file))
                    .spawn_scoped(scope, move || {
                        let producer =
                            transport.producer(&own.pushto).map_err(WatchError::Queue)?;
                        let mut notifier =
                            Notifier::for_section(section, transport).map_err(WatchError::Queue)?;
                        follow(
                            section,
                            &own,
                            producer,
                            stop,
                            &mut notifier,
                            stats,
                            until_eof,
                        )
                    });
                match spawned {
                    Ok(handle) => {
                        running.insert(file, handle);
                    }
                    Err(e) => {
                        log::error!(
                            "cannot start a thread to follow {}: {e}; retrying in a second",
                            file.display()
                        );
                    }
                }
            }
            first_round = false;
            if until_eof {
                break;
            }
            if stop.sleep(LOOK_EVERY) || running.values().any(|h| h.is_finished()) {
                break;
            }
            let followed = running.keys().cloned().collect();
            matches = settings.logfiles.matching_beside(&followed);
        }
        if !until_eof {
            stop.trigger();
        }
        let mut total = WatchStats::default();
        let mut failure = None;
        for (file, handle) in running {
            match handle.join() {
                Ok(Ok(s)) => total.add(&s),
                // The first failure ended the others (above); with `until_eof` they read on to
                // their ends, and it is reported then.
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(WatchError::Panicked(file));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(total),
        }
    })
}

/// A thread name with the file's name in it, for `top -H` and panics (at most 15 bytes are
/// shown by the kernel).
fn thread_name(file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("watch {name}")
}

fn is_empty(folder: &Path) -> bool {
    std::fs::read_dir(folder).map_or(true, |mut d| d.next().is_none())
}

/// A section that followed one file and now names a list (or a glob) including it goes on
/// from that file's checkpoint: it is moved into the folder, with its previous copy, unless the
/// file already has a checkpoint there.
fn adopt_single_checkpoint(settings: &WatchSettings, folder: &Path, files: &[PathBuf]) {
    let single = &settings.checkpoint;
    let Loaded::Found { checkpoint, .. } = checkpoint::load(single) else {
        return;
    };
    let file = PathBuf::from(&checkpoint.logfile);
    if !files.contains(&file) {
        return;
    }
    let target = checkpoint_in(folder, &file);
    if target.exists() || checkpoint::prev_path(&target).exists() {
        return;
    }
    let moves = [
        (single.clone(), target.clone()),
        (
            checkpoint::prev_path(single),
            checkpoint::prev_path(&target),
        ),
    ];
    for (from, to) in moves {
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                log::warn!(
                    "cannot move the checkpoint {} to {}: {e}; {} is read from its beginning",
                    from.display(),
                    to.display(),
                    file.display()
                );
                return;
            }
        }
    }
    log::info!(
        "the watcher now follows a list of files: the checkpoint of {} moved to {}",
        file.display(),
        target.display()
    );
}
