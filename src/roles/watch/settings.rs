//! The keys of a `loglines watch` section (2010: logfilewatcher.py), their defaults, and the
//! typed settings the watcher runs with.

use crate::config::keys::{declare_keys, Default as D, Kind as K, ProgramDefaults, Scope};
use crate::config::read::Reader;
use crate::config::RoleContext;
use crate::roles::RoleName;
use std::path::PathBuf;

pub use super::files::LogFiles;

const SCOPE: Scope = Scope::Only(RoleName::Watch);

declare_keys! { KEYS {
    LOGFILE = "logfile", SCOPE, K::Path, D::Required("the path of the access log to follow"), "the access log to follow; or several, one per line (indented), each a path or a glob such as `/var/log/apache2/*access.log`, each file with its own checkpoint";
    PUSHTO = "pushto", SCOPE, K::Queue, D::Required("a queue name such as `loglines`"), "queue the wrapped lines go to";
    SERVICENAME = "servicename", SCOPE, K::Text, D::Required("your repository's unique name, e.g. `ora.bodleian.ox.ac.uk`"), "the `service` of every message, e.g. your repository's host name";
    START_AT = "start_at", SCOPE, K::Choice(&["end", "beginning"]), D::Text("end"), "on first start: `end` (only new lines, the 2010 behaviour) or `beginning`";
    MAX_LINE_BYTES = "max_line_bytes", SCOPE, K::Int { min: 256, max: 512 << 20 }, D::Int(1 << 20), "a longer line is dead-lettered, not split";
    CHECKPOINT = "checkpoint", SCOPE, K::Path, D::Derived("STATE_DIR/SECTION.checkpoint"), "file recording how far the log has been read (with several files or a glob, the folder `CHECKPOINT.d` holds one per file)";
} }

/// One watcher per file: a second would send every line twice.
pub const DEFAULTS: ProgramDefaults = ProgramDefaults {
    numprocs: 1,
    numprocs_in_worker_section: 1,
    priority: 400,
    batch_size: 500,
};

/// Where a watcher starts reading a file it has never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    End,
    Beginning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchSettings {
    /// What `logfile` names: one file, or several paths and globs.
    pub logfiles: LogFiles,
    /// The file one follower reads: the one file of `logfiles`, or for a list, each of its
    /// files in turn (the section's own value is then the first entry, for messages).
    pub logfile: PathBuf,
    pub pushto: String,
    pub servicename: String,
    pub start_at: StartAt,
    pub max_line_bytes: usize,
    /// Checkpoint file of this section (`<state_dir>/<section>.checkpoint` by default), or of
    /// the one file a follower reads (in the folder `<checkpoint>.d` for a list).
    pub checkpoint: PathBuf,
}

/// Reads and checks a watcher section's own keys.
pub fn read(r: &mut Reader<'_>, ctx: &RoleContext<'_>) -> WatchSettings {
    if ctx.numprocs != 1 {
        let n = ctx.numprocs;
        r.err(
            "numprocs",
            format!("is {n}; a watcher must run as 1 process (two would send every line twice)"),
        );
    }
    let logfiles = match r
        .required(&LOGFILE)
        .map(|v| LogFiles::parse(&v, |p| r.resolve(p)))
    {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            r.err(LOGFILE.name, e);
            LogFiles::default()
        }
        None => LogFiles::default(),
    };
    // Matched once: every role process reads the whole file at start.
    let now = logfiles.matching();
    for entry in &logfiles.entries {
        if let Some(dir) = entry.folder().filter(|d| !d.is_dir()) {
            r.warn(
                LOGFILE.name,
                format!(
                    "the folder {} does not exist on this machine; expected an existing folder (fine if the watcher runs on another machine; it waits for the file)",
                    dir.display()
                ),
            );
        } else if matches!(entry, super::files::Entry::Glob { .. }) && entry.of(&now).is_empty() {
            r.warn(
                LOGFILE.name,
                format!(
                    "`{}` matches no file now; the watcher follows the files that appear and match it",
                    entry.path().display()
                ),
            );
        }
    }
    let start_at = match r.choice(&START_AT).as_str() {
        "beginning" => StartAt::Beginning,
        _ => StartAt::End,
    };
    let checkpoint = r.path(&CHECKPOINT).unwrap_or_else(|| {
        ctx.general
            .state_dir
            .join(format!("{}.checkpoint", r.section()))
    });
    WatchSettings {
        logfile: logfiles.first().map(PathBuf::from).unwrap_or_default(),
        logfiles,
        pushto: r.queue(&PUSHTO).unwrap_or_default(),
        servicename: r.required(&SERVICENAME).unwrap_or_default(),
        start_at,
        max_line_bytes: r.int(&MAX_LINE_BYTES) as usize,
        checkpoint,
    }
}
