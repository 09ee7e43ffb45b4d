//! The four roles of a pipeline and what they share: how a role starts, and the loop that
//! consumes a queue.
//!
//! | role | reads | writes | 2010 program |
//! |---|---|---|---|
//! | [`watch`] | a log file (tail -F) or standard input | its `pushto` queue | logfilewatcher.py |
//! | [`broker`] | `listento` | every queue in `fanout`, atomically | broker.py |
//! | [`worker`] | `listento` | the tracker (Lua plugin); `success_queue`, `other_queue` | pirus2.py |
//! | [`filelog`] | `listento` | appends to `logfile` | logfromqueue.py |
//!
//! Each role has one module, holding its settings (keys, defaults, validation) and its entry
//! point. A role starts the same way whether it runs as its own process over Redis
//! (`loglines worker --section NAME`) or as a thread of `loglines run` over the embedded
//! transport ([`start`]), and broker, worker and filelog plug into one consume loop
//! ([`consume`]): take a batch, handle it, commit what became of each message. No role names
//! a transport: they see only the traits of [`crate::queue`].

pub mod broker;
pub mod consume;
pub mod filelog;
pub mod notify;
pub mod start;
pub mod watch;
pub mod worker;

pub use start::{find_section, run_process, RoleError, Source, StartError, Starter};

use crate::config::keys::{Key, ProgramDefaults};
use std::fmt;

/// The name of a role, as `command = loglines NAME` and the subcommand write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleName {
    Watch,
    Broker,
    Worker,
    FileLog,
}

impl RoleName {
    /// Every role, in the order the docs present them.
    pub const ALL: [RoleName; 4] = [
        RoleName::Watch,
        RoleName::Broker,
        RoleName::Worker,
        RoleName::FileLog,
    ];

    /// The subcommand: `watch`, `broker`, `worker`, `filelog`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Watch => "watch",
            RoleName::Broker => "broker",
            RoleName::Worker => "worker",
            RoleName::FileLog => "filelog",
        }
    }

    /// The role named by a `command` word (`worker`), if any.
    pub fn from_word(word: &str) -> Option<RoleName> {
        RoleName::ALL.into_iter().find(|r| r.as_str() == word)
    }

    /// The 2010 program this role replaces, as a `command` line of an old file names it.
    pub fn replaces(self) -> &'static str {
        match self {
            RoleName::Watch => "logfilewatcher.py",
            RoleName::Broker => "broker.py",
            RoleName::Worker => "pirus2.py",
            RoleName::FileLog => "logfromqueue.py",
        }
    }

    /// The role's own keys (beyond those every role section accepts).
    pub fn keys(self) -> &'static [Key] {
        match self {
            RoleName::Watch => watch::settings::KEYS,
            RoleName::Broker => broker::KEYS,
            RoleName::Worker => worker::settings::KEYS,
            RoleName::FileLog => filelog::KEYS,
        }
    }

    /// The defaults the role gives numprocs, priority and batch_size.
    pub fn defaults(self) -> &'static ProgramDefaults {
        match self {
            RoleName::Watch => &watch::settings::DEFAULTS,
            RoleName::Broker => &broker::DEFAULTS,
            RoleName::Worker => &worker::settings::DEFAULTS,
            RoleName::FileLog => &filelog::DEFAULTS,
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a program section runs, with the role's settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Watch(watch::WatchSettings),
    Broker(broker::BrokerSettings),
    Worker(worker::WorkerSettings),
    FileLog(filelog::FileLogSettings),
    /// A `process_*` section: its command runs as written.
    Process,
}

impl Role {
    /// The role's name; None for a `process_*` section.
    pub fn kind(&self) -> Option<RoleName> {
        match self {
            Role::Watch(_) => Some(RoleName::Watch),
            Role::Broker(_) => Some(RoleName::Broker),
            Role::Worker(_) => Some(RoleName::Worker),
            Role::FileLog(_) => Some(RoleName::FileLog),
            Role::Process => None,
        }
    }

    /// The subcommand name (`watch`, `broker`, `worker`, `filelog`), or `process`.
    pub fn name(&self) -> &'static str {
        self.kind().map_or("process", RoleName::as_str)
    }

    /// The queue a consuming role takes from (broker, worker, filelog).
    pub fn listento(&self) -> Option<&str> {
        match self {
            Role::Broker(b) => Some(&b.listento),
            Role::Worker(w) => Some(&w.listento),
            Role::FileLog(f) => Some(&f.listento),
            Role::Watch(_) | Role::Process => None,
        }
    }

    /// Queues this role takes from.
    pub fn reads(&self) -> Vec<String> {
        self.listento().map(str::to_string).into_iter().collect()
    }

    /// Queues this role pushes to.
    pub fn writes(&self) -> Vec<String> {
        match self {
            Role::Watch(w) => vec![w.pushto.clone()],
            Role::Broker(b) => b.fanout.clone(),
            Role::Worker(w) => w
                .success_queue
                .iter()
                .chain(&w.other_queue)
                .cloned()
                .collect(),
            Role::FileLog(_) | Role::Process => vec![],
        }
    }
}
