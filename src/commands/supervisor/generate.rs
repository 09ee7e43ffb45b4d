//! `loglines supervisor generate`: supervisord.conf from the base template, one program file
//! per section in workers_available/, new programs enabled, programs of removed sections
//! removed (only files this generator wrote).

use super::enabled::{self, Entry};
use super::render::{self, MARKER};
use super::{Layout, SupervisorError};
use crate::config::{Config, Section};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Options of `generate`.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    pub base: Option<PathBuf>,
    /// The binary the programs run; None means the one running now.
    pub loglines_bin: Option<PathBuf>,
}

/// What `generate` did, one line per file or program, and what it warns about.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

/// The binary the programs run: the given one (made absolute), or this one, canonicalized so
/// that a relative or symlinked invocation still gives a path supervisord can run from anywhere.
fn loglines_binary(given: Option<&Path>) -> Result<PathBuf, SupervisorError> {
    match given {
        Some(p) if p.is_absolute() => Ok(p.to_path_buf()),
        Some(p) => std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(SupervisorError::NoBinary),
        None => std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(SupervisorError::NoBinary),
    }
}

/// Writes `content` to `path` unless it already holds exactly that; true if it wrote. Writes go
/// to a temporary file renamed into place, so supervisord never reads half a file. The file
/// gets permissions `mode`, from its creation on (an existing file with other permissions gets
/// them too, even when its content is unchanged).
fn write_if_changed(path: &Path, content: &str, mode: u32) -> Result<bool, SupervisorError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Ok(old) = std::fs::read(path) {
        if old == content.as_bytes() {
            let perms = std::fs::metadata(path).map_err(SupervisorError::io("read", path))?;
            if perms.permissions().mode() & 0o777 != mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(SupervisorError::io("set the permissions of", path))?;
            }
            return Ok(false);
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    // A stale temporary file from an interrupted run would keep its old permissions.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(SupervisorError::io("write", &tmp))?;
    f.write_all(content.as_bytes())
        .map_err(SupervisorError::io("write", &tmp))?;
    // The umask may have taken bits away from `mode`; never adds any.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(SupervisorError::io("set the permissions of", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(SupervisorError::io("write", path))?;
    Ok(true)
}

/// supervisord.conf can hold the web UI's username and password (and `[supervisorctl]`'s):
/// readable by its owner only, who runs supervisord and supervisorctl.
const CONF_MODE: u32 = 0o600;
/// Program files hold commands and log paths, no secrets.
const PROGRAM_MODE: u32 = 0o644;

pub(super) fn create_dir(p: &Path) -> Result<(), SupervisorError> {
    std::fs::create_dir_all(p).map_err(SupervisorError::io("create the folder", p))
}

fn is_generated(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(MARKER))
}

/// `loglines supervisor generate`. Everything is rendered and checked before the first file
/// is written, so a refused configuration leaves the folder as it was.
pub fn generate(cfg: &Config, opts: &GenerateOptions) -> Result<Generated, SupervisorError> {
    let layout = Layout::of(cfg);
    let bin = loglines_binary(opts.loglines_bin.as_deref())?;
    let mut out = Generated::default();
    let web = render::web_ui(cfg)?;
    out.warnings
        .extend(web.warnings.iter().map(ToString::to_string));
    if !bin.is_file() {
        out.warnings.push(format!(
            "warning: the loglines binary {} does not exist on this machine; the programs will not start until it does",
            bin.display()
        ));
    }
    let (base_text, base_path) = read_base(opts, &layout)?;
    let conf = render::supervisord_conf(&base_text, &base_path, &layout, cfg, &web)?;
    let mut sections: Vec<&Section> = cfg.sections.iter().collect();
    sections.sort_by(|a, b| a.name.cmp(&b.name));
    let mut programs = Vec::new();
    for s in &sections {
        programs.push((*s, render::program_file(cfg, s, &bin)?));
    }

    create_folders(&layout, &sections)?;
    let wrote = write_if_changed(&layout.conf, &conf, CONF_MODE)?;
    out.lines.push(format!(
        "{}: {}",
        layout.conf.display(),
        if wrote { "written" } else { "unchanged" }
    ));
    for (s, text) in &programs {
        out.lines.push(write_program(&layout, s, text)?);
    }
    let names: BTreeSet<&str> = sections.iter().map(|s| s.name.as_str()).collect();
    out.lines.extend(remove_gone(&layout, &names)?);
    Ok(out)
}

/// The base template: `--base`, else the one in the supervisor folder, else the shipped one.
fn read_base(
    opts: &GenerateOptions,
    layout: &Layout,
) -> Result<(String, PathBuf), SupervisorError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(SupervisorError::io("read the base template", p))
    };
    Ok(match &opts.base {
        Some(p) => (read(p)?, p.clone()),
        None if layout.base.is_file() => (read(&layout.base)?, layout.base.clone()),
        None => (
            render::BUILTIN_BASE.to_string(),
            PathBuf::from("(shipped supervisord.conf.base)"),
        ),
    })
}

/// The supervisor folder and its subfolders, and each program's log folder: supervisord
/// refuses to start a program whose log folder does not exist.
fn create_folders(layout: &Layout, sections: &[&Section]) -> Result<(), SupervisorError> {
    for dir in [
        &layout.dir,
        &layout.available,
        &layout.enabled,
        &layout.childlogdir,
    ] {
        create_dir(dir)?;
    }
    for s in sections {
        if let Some(parent) = s.program.stdout_logfile.as_deref().and_then(Path::parent) {
            create_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes one program file into workers_available/ and enables a new one; a program that was
/// there already keeps its state (enabled or disabled). Returns the line to show.
fn write_program(layout: &Layout, s: &Section, text: &str) -> Result<String, SupervisorError> {
    let avail = layout.available_file(&s.name);
    let link = layout.enabled_file(&s.name);
    // Decided before writing: a program workers_available/ already has keeps its state.
    let is_new = std::fs::symlink_metadata(&avail).is_err();
    let wrote = write_if_changed(&avail, text, PROGRAM_MODE)?;
    let state = enabled::entry(&link);
    let mut what = if is_new {
        "new".to_string()
    } else if wrote {
        "updated".to_string()
    } else {
        "unchanged".to_string()
    };
    let enable = is_new
        || state == Entry::BrokenLink
        || (state == Entry::Copy && std::fs::read(&link).ok().as_deref() != Some(text.as_bytes()));
    if enable {
        let made = enabled::link_or_copy(&avail, &Layout::link_target(&s.name), &link)
            .map_err(SupervisorError::io("enable", &link))?;
        match made {
            enabled::Made::Link => what.push_str(", enabled"),
            enabled::Made::Copy(why) => {
                what.push_str(&format!(", enabled as a copy (no symlink: {why})"))
            }
        }
    } else if state == Entry::Missing {
        what.push_str(", disabled (kept disabled)");
    } else {
        what.push_str(", enabled");
    }
    Ok(format!("{}: {what}", s.name))
}

/// Removes the programs of sections that are gone: only files this generator wrote.
fn remove_gone(layout: &Layout, names: &BTreeSet<&str>) -> Result<Vec<String>, SupervisorError> {
    let mut gone = BTreeSet::new();
    for dir in [&layout.available, &layout.enabled] {
        for name in enabled::conf_names(dir).map_err(SupervisorError::io("read", dir))? {
            if !names.contains(name.as_str()) {
                gone.insert(name);
            }
        }
    }
    let mut lines = Vec::new();
    for name in gone {
        let avail = layout.available_file(&name);
        let link = layout.enabled_file(&name);
        let generated = is_generated(&avail);
        let link_state = enabled::entry(&link);
        let mut removed = false;
        if generated {
            enabled::remove_if_present(&avail).map_err(SupervisorError::io("remove", &avail))?;
            removed = true;
        }
        let link_is_ours = match link_state {
            Entry::Copy => is_generated(&link),
            Entry::Link | Entry::BrokenLink => {
                std::fs::read_link(&link).ok() == Some(Layout::link_target(&name))
                    && (generated || link_state == Entry::BrokenLink)
            }
            Entry::Missing => false,
        };
        if link_is_ours {
            enabled::remove_if_present(&link).map_err(SupervisorError::io("remove", &link))?;
            removed = true;
        }
        if removed {
            lines.push(format!(
                "{name}: removed (no longer a section of the configuration)"
            ));
        }
    }
    Ok(lines)
}
