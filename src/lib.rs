//! loglines: turns repository access logs into COUNTER usage events for the IRUS tracker.
//!
//! The binary in `main.rs` is a thin shell around [`cli::main`]; everything else lives here so
//! that tests and benchmarks use exactly the code that runs in production.

pub mod broker;
pub mod check;
pub mod clf;
pub mod cli;
pub mod config;
pub mod diag;
pub mod digest;
pub mod filelog;
pub mod notify;
pub mod openurl;
pub mod plugin;
pub mod proxy;
pub mod push;
pub mod queue;
pub mod queuecmd;
pub mod robots;
pub mod roles;
pub mod run;
pub mod shutdown;
pub mod stats;
pub mod status;
pub mod supervisor;
pub mod testplugin;
pub mod time;
pub mod tracker;
pub mod watch;
pub mod worker;
