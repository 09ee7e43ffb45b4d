//! loglines: turns repository access logs into COUNTER usage events for the IRUS tracker.
//!
//! The binary in `main.rs` is a thin shell around [`cli::main`]; everything else lives here so
//! that tests and benchmarks use exactly the code that runs in production.

pub mod check;
pub mod cli;
pub mod config;
pub mod diag;
pub mod push;
pub mod queue;
pub mod queuecmd;
pub mod shutdown;
pub mod status;
pub mod watch;
