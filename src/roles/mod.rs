//! Starting one role section as its own process (under supervisord, or by hand) over Redis.
//!
//! `loglines broker|worker|filelog --section NAME [--process-num N]` land here: the section is
//! looked up and checked to have that role, the Redis transport is connected, and the role's
//! entry point runs until SIGTERM/SIGINT. Start-up failures (configuration, plugin, Redis) end
//! the process with one clear line so that supervisord's log shows why.

pub mod broker;
pub mod filelog;
pub mod notify;
pub mod watch;
pub mod worker;

use crate::app::{load_config, Failure, Global};
use crate::config::{Config, Role, Section};
use crate::plugin::PluginSpec;
use crate::queue::redis::RedisTransport;
use crate::queue::{ConsumerId, Transport};
use crate::roles::notify::Notifier;
use crate::roles::worker::prepare::Preparer;
use crate::util::shutdown::Shutdown;
use crate::util::stats::Stats;
use anyhow::anyhow;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Finds `name` in the configuration and checks it has `role`.
pub fn find_section<'c>(cfg: &'c Config, name: &str, role: &str) -> Result<&'c Section, Failure> {
    let with_role: Vec<String> = cfg
        .sections
        .iter()
        .filter(|s| s.role.name() == role)
        .map(|s| format!("[{}]", s.name))
        .collect();
    let Some(sec) = cfg.section(name) else {
        let hint = if with_role.is_empty() {
            format!("the file has no `loglines {role}` section")
        } else {
            format!(
                "its `loglines {role}` sections are {}",
                with_role.join(", ")
            )
        };
        return Err(Failure::Config(vec![format!(
            "{}: there is no section [{name}]; {hint}",
            cfg.path.display()
        )]));
    };
    if sec.role.name() != role {
        return Err(Failure::Config(vec![format!(
            "{}:{} [{name}] is a `{}` section, not `loglines {role}`; run `loglines {} --section {name}`",
            cfg.path.display(),
            sec.line,
            sec.role.name(),
            sec.role.name()
        )]));
    }
    Ok(sec)
}

/// The section's notifier (see [`Notifier::for_section`]), as a start-up failure if its
/// `notify_queue` cannot be opened.
pub fn notifier_for(sec: &Section, transport: &dyn Transport) -> Result<Notifier, Failure> {
    Notifier::for_section(sec, transport).map_err(|e| Failure::Runtime(anyhow!("{e}")))
}

/// Connects to the Redis a section uses.
pub fn connect(
    cfg: &Config,
    sec: &Section,
    shutdown: &Shutdown,
) -> Result<RedisTransport, Failure> {
    let r = cfg.redis_for(sec);
    RedisTransport::connect(r, shutdown.clone()).map_err(|e| {
        Failure::Runtime(anyhow!(
            "cannot use Redis at {} ([{}]): {e}",
            r.display(),
            r.name
        ))
    })
}

/// Runs a consumer role (`broker`, `worker`, `filelog`) as this process.
pub fn run_consumer_role(
    g: &Global,
    role: &str,
    section: &str,
    process_num: u32,
) -> Result<i32, Failure> {
    let cfg = load_config(g)?;
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let sec = find_section(&cfg, section, role)?;
    let shutdown = Shutdown::on_signals()
        .map_err(|e| Failure::Runtime(anyhow!("cannot install signal handlers: {e}")))?;
    // Load the plugin before connecting, so a broken plugin is reported as such even when
    // Redis is down too.
    let plugin = match &sec.role {
        Role::Worker(w) => {
            let spec = PluginSpec::for_worker(&cfg, section).expect("worker section has a plugin");
            Some(
                Preparer::start(spec, w.clone(), &shutdown)
                    .map_err(|e| Failure::Config(vec![e]))?,
            )
        }
        _ => None,
    };
    let transport = connect(&cfg, sec, &shutdown)?;
    let id = ConsumerId::new(&ConsumerId::local_host(), section, process_num);
    let mut notifier = notifier_for(sec, &transport)?;
    let stats = Stats::new();
    let consumer = |queue: &str| {
        transport
            .consumer(queue, &id)
            .map_err(|e| Failure::Runtime(anyhow!("{e}")))
    };
    let result = match &sec.role {
        Role::Broker(b) => {
            crate::roles::broker::run(sec, b, consumer(&b.listento)?, &shutdown, &stats)
                .map_err(|e| anyhow!(e))
        }
        Role::Worker(w) => crate::roles::worker::run(
            sec,
            w,
            plugin.expect("loaded above"),
            consumer(&w.listento)?,
            &shutdown,
            &mut notifier,
            &stats,
        )
        .map_err(|e| anyhow!(e)),
        Role::FileLog(f) => {
            let hup = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
                .map_err(|e| Failure::Runtime(anyhow!("cannot install the SIGHUP handler: {e}")))?;
            crate::roles::filelog::run(
                sec,
                f,
                consumer(&f.listento)?,
                &shutdown,
                hup,
                &mut notifier,
                &stats,
            )
            .map_err(|e| anyhow!(e))
        }
        Role::Watch(_) | Role::Process => unreachable!("find_section checked the role"),
    };
    result.map_err(Failure::Runtime)?;
    Ok(0)
}

/// `loglines watch --section NAME` (follow the section's log file), or with `stdin`
/// `loglines push --section NAME` (read lines from standard input instead).
pub fn run_watch(g: &Global, section: &str, stdin: bool) -> Result<i32, Failure> {
    let cfg = load_config(g)?;
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let sec = find_section(&cfg, section, "watch")?;
    let Role::Watch(settings) = &sec.role else {
        unreachable!("find_section checked the role")
    };
    let shutdown = Shutdown::on_signals()
        .map_err(|e| Failure::Runtime(anyhow!("cannot install signal handlers: {e}")))?;
    let transport = connect(&cfg, sec, &shutdown)?;
    let producer = transport
        .producer(&settings.pushto)
        .map_err(|e| Failure::Runtime(anyhow!("{e}")))?;
    let mut notifier = notifier_for(sec, &transport)?;
    let stats = Stats::new();
    let fail = |e: &dyn std::fmt::Display| Failure::Runtime(anyhow!("section [{section}]: {e}"));
    if stdin {
        // A descriptor of our own, read directly: Stdin's buffer would hide waiting input from
        // the readiness checks that decide when to push a partial batch.
        let input = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| Failure::Runtime(anyhow!("cannot use standard input: {e}")))?;
        crate::roles::watch::push::run(
            sec,
            settings,
            producer,
            input,
            &shutdown,
            &mut notifier,
            &stats,
        )
        .map_err(|e| fail(&e))?;
    } else {
        crate::roles::watch::run(sec, settings, producer, &shutdown, &mut notifier, &stats)
            .map_err(|e| fail(&e))?;
    }
    Ok(0)
}
