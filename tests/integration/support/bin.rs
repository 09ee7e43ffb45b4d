//! Running the built `loglines` binary from the integration tests.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built binary as a `Command`, without the environment variables that would change what it
/// does (LOGLINES_CONFIG names another config, RUST_LOG adds log lines to stderr), so the
/// developer's shell cannot change a test's result.
pub fn loglines() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loglines"));
    cmd.env_remove("LOGLINES_CONFIG").env_remove("RUST_LOG");
    cmd
}

/// Output bytes as text (invalid UTF-8 replaced), for assertions and failure messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `loglines -c CFG ARGS...` with no input and its output captured, failing the test if it
/// does not finish within `limit` (a hung handshake or connection must fail, not stall). The
/// output is read while the command runs, so a command printing more than a pipe holds cannot
/// block on it.
pub fn output_within(cfg: &std::path::Path, args: &[&str], limit: Duration) -> Output {
    let mut child = loglines()
        .arg("-c")
        .arg(cfg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("loglines {args:?} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Asserts that a finished command exited with `code`, showing its stderr when it did not.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
}
