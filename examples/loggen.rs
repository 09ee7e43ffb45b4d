//! Writes N generated combined-log lines to a file, for the end-to-end benchmark
//! (`scripts/bench-e2e.sh`): the same lines the end-to-end tests use (tests/integration/support/loggen.rs).
//!
//! Usage: `cargo run --release --example loggen -- FILE N [EVERY]` writes lines 0..N, one in
//! EVERY a download (default 20, the realistic 5% mix), replacing FILE.

#[allow(dead_code)] // the tests use more of the generator than this binary does
#[path = "../tests/integration/support/loggen.rs"]
mod loggen;

use std::io::{BufWriter, Write};

fn usage(msg: &str) -> ! {
    eprintln!("loggen: {msg}\nusage: loggen FILE N [EVERY (default 20)]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (file, n, every) = match args.as_slice() {
        [f, n] => (f, n, "20"),
        [f, n, e] => (f, n, e.as_str()),
        _ => usage("expected FILE N [EVERY]"),
    };
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| usage(&format!("N: not a number: {n}")));
    let every: u64 = every
        .parse()
        .ok()
        .filter(|e| *e > 0)
        .unwrap_or_else(|| usage(&format!("EVERY: not a positive number: {every}")));
    let out = std::fs::File::create(file)
        .unwrap_or_else(|e| usage(&format!("cannot create {file}: {e}")));
    let mut w = BufWriter::with_capacity(1 << 20, out);
    const CHUNK: u64 = 10_000;
    let mut from = 0;
    while from < n {
        let to = (from + CHUNK).min(n);
        w.write_all(loggen::lines(from, to, every).as_bytes())
            .unwrap_or_else(|e| usage(&format!("cannot write {file}: {e}")));
        from = to;
    }
    w.flush()
        .unwrap_or_else(|e| usage(&format!("cannot write {file}: {e}")));
}
