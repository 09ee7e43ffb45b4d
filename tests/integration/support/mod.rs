//! Test harnesses shared by the integration tests: real Redis, a real HTTP tracker, a real
//! supervisord, the built binary and project folders to run it on, plugins in a temporary
//! folder, queue message builders, and small helpers (free ports, temp dirs, bounded polling).
//! benches/queue.rs borrows the Redis harness from here too.

pub mod bin;
pub mod configs;
pub mod loggen;
pub mod pipeline;
pub mod plugin;
pub mod project;
pub mod queue;
pub mod redis;
pub mod supervisord;
pub mod tracker;

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
/// Another process could take it before the caller binds it; harnesses that start servers on it
/// retry with a new port when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
        .port()
}

/// A fresh temporary directory, removed when the returned value is dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("loglines-test-")
        .tempdir()
        .expect("cannot create a temporary directory")
}

/// Polls `cond` (about every 10 ms) until it is true or `timeout` has passed; returns its last
/// value, so `assert!(wait_until(..))` fails instead of hanging when the condition never holds.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The crate root (where Cargo.toml is), whatever directory the test runs in.
pub fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Looks `name` up in the directories of a PATH-style list, then in `extra_dirs`. Takes the
/// list as an argument so the "not installed" paths can be tested without uninstalling anything.
pub fn find_executable(
    name: &str,
    path_var: Option<&OsStr>,
    extra_dirs: &[PathBuf],
) -> Option<PathBuf> {
    let from_path = path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .iter()
        .chain(extra_dirs)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Sends `sig` to process `pid` (ignoring "no such process": it is already gone).
pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; pid is a child we started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Sends SIGTERM to `child` and asserts that it exits 0 within 5 s. Polls rather than waits, so a
/// child that hangs fails the test instead of blocking it.
pub fn sigterm_exits_0_within_5s(child: &mut std::process::Child) {
    let started = Instant::now();
    send_signal(child.id(), libc::SIGTERM);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a child: `sig` (SIGTERM normally), then SIGKILL if it has not exited within `grace`.
/// Always reaps it, so no zombie is left behind.
pub fn stop_child(
    child: &mut std::process::Child,
    sig: i32,
    grace: Duration,
) -> std::process::ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    send_signal(child.id(), sig);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait().expect("cannot wait for a killed child")
}

/// True while a process with this pid exists and is not a zombie (reads /proc; Linux only).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// `src` compressed with the system's gzip (as logrotate compresses rotated logs) into `dest`;
/// with `twice`, two gzip members one after the other (two compressed files concatenated).
#[allow(dead_code)] // not every area uses it
pub fn gzip(src: &Path, dest: &Path, twice: bool) {
    let one = std::process::Command::new("gzip")
        .arg("-c")
        .arg(src)
        .output()
        .expect("gzip is needed (apt-get install gzip)");
    assert!(one.status.success());
    let mut bytes = one.stdout.clone();
    if twice {
        bytes.extend(&one.stdout);
    }
    std::fs::write(dest, bytes).unwrap();
}
