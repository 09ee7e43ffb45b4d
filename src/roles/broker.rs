//! `loglines broker` (the 2010 broker.py): copies every message to each queue in `fanout`.
//!
//! Each batch is forwarded with one atomic [`Consumer::forward`](crate::queue::Consumer::forward): the messages leave the
//! broker's in-flight list and enter every fan-out queue together, so no fan-out queue gets a
//! message twice or misses it, whatever is killed when. The 2010 broker's status queue and idle
//! sleep are gone: takes block.

use crate::config::keys::{declare_keys, Default as D, Kind as K, ProgramDefaults, Scope};
use crate::config::read::Reader;
use crate::queue::Message;
use crate::roles::consume::{Batch, Consume, Handler, Next};
use crate::roles::{RoleError, RoleName};
use crate::util::stats::Stats;
use std::collections::HashSet;

const SCOPE: Scope = Scope::Only(RoleName::Broker);

declare_keys! { KEYS {
    LISTENTO = "listento", SCOPE, K::Queue, D::Required("a queue name such as `loglines`"), "queue to take messages from";
    FANOUT = "fanout", SCOPE, K::Text, D::Required("one or more queue names separated by commas or spaces"), "queues every message is copied to, separated by commas or spaces";
    FANOUT_STATUS_QUEUE = "fanout_status_queue", SCOPE, K::Text, D::Unset("(none)"), "accepted for 2010 files; no longer needed (fan-out is atomic)";
    IDLETIME = "idletime", SCOPE, K::Text, D::Unset("(none)"), "accepted for 2010 files; no longer needed (takes block instead of sleeping)";
} }

/// Three processes in a `worker_*` section, as the 2010 brokers ran; started last but the
/// watcher, so that the queues it fills are already being read.
pub const DEFAULTS: ProgramDefaults = ProgramDefaults {
    numprocs: 1,
    numprocs_in_worker_section: 3,
    priority: 300,
    batch_size: 500,
};

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSettings {
    pub listento: String,
    pub fanout: Vec<String>,
}

/// Reads and checks a broker section's own keys: each fan-out queue once, and not the queue
/// the broker listens to (that would loop forever).
pub fn read(r: &mut Reader<'_>) -> BrokerSettings {
    let listento = r.queue(&LISTENTO);
    let fanout: Vec<String> = r
        .required(&FANOUT)
        .map(|f| {
            f.split([',', ' ', '\t', '\n'])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut seen = HashSet::new();
    for q in &fanout {
        if !seen.insert(q) {
            r.err(FANOUT.name, format!("names `{q}` twice; expected each queue once (it would get every message twice)"));
        }
    }
    if let Some(l) = listento.as_ref().filter(|l| fanout.contains(l)) {
        r.err(
            FANOUT.name,
            format!("includes `{l}`, the queue this broker listens to; that would loop forever"),
        );
    }
    BrokerSettings {
        listento: listento.unwrap_or_default(),
        fanout,
    }
}

/// Forwards each batch to every fan-out queue with one atomic commit.
struct Fanout<'a> {
    settings: &'a BrokerSettings,
    stats: &'a Stats,
}

impl Handler for Fanout<'_> {
    fn handle(&mut self, batch: Vec<Message>, out: &mut Batch<'_, '_>) -> Result<Next, RoleError> {
        for m in batch {
            for q in &self.settings.fanout {
                out.forward(q, m.derive(m.body.clone()));
            }
            out.done(m);
        }
        // Not committed (stopping): the batch stays in flight and comes back on restart.
        let n = out.commit()?;
        Stats::add(&self.stats.fanned_out, n as u64);
        Ok(Next::Continue)
    }
}

/// Runs until the consume loop's shutdown is set. A batch taken is forwarded whole before the
/// loop looks at the flag again, so nothing is left half done.
pub fn run(settings: &BrokerSettings, consume: Consume<'_>) -> Result<(), RoleError> {
    let name = &consume.section.name;
    let fanout = settings.fanout.join(", ");
    let announce = consume.announce;
    announce.log(
        module_path!(),
        name,
        &format!("broker: {} -> {fanout}", settings.listento),
    );
    let name = name.clone();
    let stats = consume.stats;
    consume.run(&mut Fanout { settings, stats })?;
    announce.log(module_path!(), &name, "broker stopped");
    Ok(())
}
