//! loglines: turns repository access logs into COUNTER usage events for the IRUS tracker.
//!
//! The binary in `main.rs` only calls [`app::main`]; everything else lives here so that tests
//! and benchmarks use exactly the code that runs in production. The modules are layers, each
//! using only those below it (docs/architecture.md draws the whole picture):
//!
//! ```text
//! app          process set-up: global options, configuration loading, logging, exit codes
//!  └ cli       the command line (clap types) and its dispatch
//!     └ commands   one module per command that is not a role: check, status, queue,
//!        │         test-plugin, run (every role as threads), supervisor
//!        └ roles   watch, broker, worker, filelog: one start-up path and one consume loop,
//!           │      whether a role runs as its own process or as a thread of `run`
//!           ├ queue    the Transport trait roles are written against; Redis and embedded
//!           ├ plugin   the Lua host and the `loglines` Lua library
//!           └ config   loglines.cfg: one INI parser, the key table, validation
//!              └ util  shutdown signal, counters, proxy, system calls, UTC time
//! ```

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod plugin;
pub mod queue;
pub mod roles;
pub mod util;
