//! `loglines queue ...`: look into one queue and repair it (peek, dead letters, requeue dead
//! letters, purge), on the Redis the configuration names for it or on the embedded files.

use crate::app::{load_config, print, Failure, Global};
use crate::commands::status::queues_by_redis;
use crate::config::Config;
use crate::queue::embedded::EmbeddedTransport;
use crate::queue::redis::RedisTransport;
use crate::queue::{Admin, QueueError, Transport};
use crate::util::shutdown::Shutdown;
use clap::{Args, Subcommand};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Args, Debug, Clone)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub action: QueueAction,
}

/// Where the queue is.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// The Redis section to use (`test` or `redis_test` for [redis_test]); needed only for a
    /// queue the configuration does not name.
    #[arg(long, value_name = "NAME")]
    pub redis: Option<String>,
    /// The embedded transport (`loglines run`): its files in the state folder.
    #[arg(long, conflicts_with = "redis")]
    pub embedded: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum QueueAction {
    /// Show the next messages a consumer would take, without taking them.
    Peek {
        queue: String,
        /// How many.
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Show the oldest dead letters with their reasons.
    Dead {
        queue: String,
        /// How many.
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Put dead letters back onto their queue (all, or those whose reason contains TEXT).
    RequeueDead {
        queue: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete every message waiting in the queue (not in-flight ones, not dead letters).
    Purge {
        queue: String,
        /// Really do it.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Errors of the queue commands, each saying what to do.
#[derive(Debug)]
pub enum QueueCmdError {
    UnknownQueue {
        queue: String,
        known: Vec<String>,
    },
    AmbiguousRedis {
        queue: String,
        sections: Vec<String>,
    },
    UnknownRedis {
        name: String,
        known: Vec<String>,
    },
    NeedsYes {
        queue: String,
        waiting: u64,
    },
}

impl std::fmt::Display for QueueCmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueCmdError::UnknownQueue { queue, known } => write!(
                f,
                "queue `{queue}` is not named in the configuration (its queues: {}); check the name, or pass --redis NAME to use it anyway",
                known.join(", ")
            ),
            QueueCmdError::AmbiguousRedis { queue, sections } => write!(
                f,
                "queue `{queue}` is used with several redis sections ({}); pass --redis NAME to choose one",
                sections.join(", ")
            ),
            QueueCmdError::UnknownRedis { name, known } => write!(
                f,
                "no redis section `{name}` in the configuration (it has: {})",
                known.join(", ")
            ),
            QueueCmdError::NeedsYes { queue, waiting } => write!(
                f,
                "purge deletes the {waiting} messages waiting in queue `{queue}` for good; add --yes to do it"
            ),
        }
    }
}

impl std::error::Error for QueueCmdError {}

fn config_error(e: QueueCmdError) -> Failure {
    Failure::Config(vec![e.to_string()])
}

fn runtime(e: QueueError) -> Failure {
    Failure::Runtime(anyhow::Error::new(e))
}

/// The Redis section name for `queue`: `--redis`, or the one its sections use.
pub fn redis_section_for(
    cfg: &Config,
    queue: &str,
    chosen: Option<&str>,
) -> Result<String, QueueCmdError> {
    if let Some(name) = chosen {
        let full = if name == "redis" || name.starts_with("redis_") {
            name.to_string()
        } else {
            format!("redis_{name}")
        };
        if !cfg.redis.contains_key(&full) {
            return Err(QueueCmdError::UnknownRedis {
                name: name.to_string(),
                known: cfg.redis.keys().cloned().collect(),
            });
        }
        return Ok(full);
    }
    let sections: Vec<String> = queues_by_redis(cfg)
        .into_iter()
        .filter(|(_, qs)| qs.iter().any(|q| q == queue))
        .map(|(r, _)| r)
        .collect();
    match sections.len() {
        0 => Err(QueueCmdError::UnknownQueue {
            queue: queue.to_string(),
            known: cfg.queues(),
        }),
        1 => Ok(sections[0].clone()),
        _ => Err(QueueCmdError::AmbiguousRedis {
            queue: queue.to_string(),
            sections,
        }),
    }
}

fn admin_for(cfg: &Config, queue: &str, target: &Target) -> Result<Box<dyn Admin>, Failure> {
    if target.embedded {
        return EmbeddedTransport::new(1, cfg.general.dead_letter_dir())
            .admin()
            .map_err(runtime);
    }
    let name = redis_section_for(cfg, queue, target.redis.as_deref()).map_err(config_error)?;
    let settings = &cfg.redis[&name];
    RedisTransport::connect_within(settings, Shutdown::new(), CONNECT_TIMEOUT)
        .and_then(|t| t.admin())
        .map_err(runtime)
}

/// `loglines queue ...`.
pub fn run(global: &Global, args: &QueueArgs) -> Result<i32, Failure> {
    let cfg = load_config(global)?;
    match &args.action {
        QueueAction::Peek { queue, n, target } => {
            let mut admin = admin_for(&cfg, queue, target)?;
            let msgs = admin.peek(queue, *n).map_err(runtime)?;
            if msgs.is_empty() {
                eprintln!("queue `{queue}` is empty");
            }
            for m in msgs {
                print(&format!("{m}\n"))?;
            }
        }
        QueueAction::Dead { queue, n, target } => {
            let mut admin = admin_for(&cfg, queue, target)?;
            let letters = admin.dead_letters(queue, *n).map_err(runtime)?;
            if letters.is_empty() {
                eprintln!("queue `{queue}` has no dead letters");
            }
            for d in letters {
                print(&format!(
                    "{} [{}] {}: {}\n    {}\n",
                    d.at, d.section, d.consumer, d.reason, d.message
                ))?;
            }
        }
        QueueAction::RequeueDead {
            queue,
            reason,
            target,
        } => {
            let mut admin = admin_for(&cfg, queue, target)?;
            let n = admin
                .requeue_dead(queue, reason.as_deref())
                .map_err(runtime)?;
            print(&format!(
                "moved {n} dead letters back onto queue `{queue}`\n"
            ))?;
        }
        QueueAction::Purge { queue, yes, target } => {
            let mut admin = admin_for(&cfg, queue, target)?;
            if !yes {
                let waiting = admin.info(queue).map_err(runtime)?.length;
                return Err(config_error(QueueCmdError::NeedsYes {
                    queue: queue.clone(),
                    waiting,
                }));
            }
            let n = admin.purge(queue).map_err(runtime)?;
            print(&format!("deleted {n} messages from queue `{queue}`\n"))?;
        }
    }
    Ok(0)
}
