//! The commands that are not roles: each module is one `loglines` subcommand, with its
//! arguments (clap types) and a `run` that returns the exit code or a [`Failure`].
//!
//! [`Failure`]: crate::app::Failure

pub mod check;
pub mod init;
pub mod migrate;
pub mod queue;
pub mod run;
pub mod status;
pub mod supervisor;
pub mod test_plugin;
