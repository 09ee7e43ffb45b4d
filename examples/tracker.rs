//! A stand-alone stand-in tracker for benchmarks and manual runs: the test harness's HTTP
//! server, answering every GET/HEAD with one status until stopped.
//!
//! Usage: `cargo run --release --example tracker -- [--port N] [--status N] [--delay-ms N]`
//! (`--delay-ms`: every answer that late, as from a tracker far away).
//! Prints `listening on http://127.0.0.1:PORT/`, then on SIGTERM, Ctrl-C or end of stdin (when
//! stdin is a terminal or a pipe) prints `served N requests` and exits.

#[allow(dead_code)] // the tests use more of the harness than this binary does
#[path = "../tests/integration/support/tracker.rs"]
mod tracker;

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn usage(msg: &str) -> ! {
    eprintln!(
        "tracker: {msg}\nusage: tracker [--port N (0 = free port)] [--status N (default 200)] [--delay-ms N (default 0)]"
    );
    std::process::exit(2)
}

fn parse_args() -> (u16, u16, u16) {
    let (mut port, mut status, mut delay) = (0u16, 200u16, 0u16);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> u16 {
            let v = args
                .next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")));
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{name}: not a number: {v}")))
        };
        match a.as_str() {
            "--port" => port = value("--port"),
            "--status" => status = value("--status"),
            "--delay-ms" => delay = value("--delay-ms"),
            "-h" | "--help" => usage("a stand-in IRUS tracker"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !(100..=999).contains(&status) {
        usage(&format!("--status {status} is not an HTTP status"));
    }
    (port, status, delay)
}

/// True when stdin is a pipe or a terminal: then its end means "stop" (the parent went away
/// or the user pressed Ctrl-D). For /dev/null or a file, as for `tracker &` in a script, end of
/// input means nothing and the tracker keeps running until signalled.
fn stdin_signals_stop() -> bool {
    use std::os::unix::fs::FileTypeExt;
    let stdin = std::io::stdin();
    stdin.is_terminal()
        || std::fs::metadata("/dev/stdin")
            .is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_socket())
}

fn main() {
    let (port, status, delay) = parse_args();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).expect("cannot install signal handler");
    }
    if stdin_signals_stop() {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            stop.store(true, Ordering::SeqCst);
        });
    }

    let t = tracker::Tracker::start_on(port).unwrap_or_else(|e| {
        eprintln!("tracker: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    // Only the count is printed, so storing every request would just grow memory.
    t.set_recording(false);
    if status != 200 {
        t.fail(status);
    }
    t.delay(Duration::from_millis(u64::from(delay)));
    println!("listening on {}", t.base_url());
    let _ = std::io::stdout().flush();

    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let served = t.count();
    drop(t);
    println!("served {served} requests");
}
