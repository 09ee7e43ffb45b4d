//! The integration tests, as one test binary: each module is one area (its file says what it
//! covers), `support` the harnesses they share: a real redis-server, a real HTTP server
//! standing in for the tracker, a real supervisord, the built binary and project folders to
//! run it on. One binary links the crate once, instead of once per area.
//!
//! Run one area with `cargo test --test integration config::`, one test by (part of) its
//! name.

mod support;

mod command_line;
mod config;
mod config_fuzz;
mod docs_examples;
mod message_fuzz;
mod pipeline_redis;
mod plugin_library;
mod plugin_sandbox;
mod queue_bad_messages;
mod queue_claims;
mod queue_commands;
mod queue_crash;
mod queue_embedded;
mod queue_indoubt;
mod queue_redis;
mod redis_tls;
mod run_embedded;
mod shipped_plugins;
mod supervisor;
mod supervisor_live;
mod supervisor_pipeline;
mod support_selftest;
mod test_plugin_cli;
mod tracker_answers;
mod watch_crash;
mod watch_many;
mod watch_redis;
mod worker_behaviour;
mod worker_window;
