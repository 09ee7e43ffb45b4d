//! Talking to a running supervisord over XML-RPC: finding it, asking for its processes, and
//! `--apply` (what `supervisorctl reread` + `update` do).

use super::facts::ConfFacts;
use super::rpc::{self, Endpoint, RpcError, Value};
use super::Layout;
use std::fmt;
use std::time::Duration;

/// How long a quick question to supervisord (its state, its processes) may take.
const QUICK: Duration = Duration::from_secs(5);

/// The ways to reach the supervisord of a generated configuration: its unix socket first (no
/// password needed), then its web UI port when the configuration holds a usable password.
pub fn endpoints(layout: &Layout) -> Vec<Endpoint> {
    let facts = std::fs::read_to_string(&layout.conf)
        .ok()
        .and_then(|t| ConfFacts::parse(&t).ok());
    match facts {
        Some(f) => {
            let mut v = vec![Endpoint::Unix(f.socket)];
            if let Some((addr, auth)) = f.inet {
                v.push(Endpoint::Inet { addr, auth });
            }
            v
        }
        None => vec![Endpoint::Unix(layout.socket.clone())],
    }
}

/// The first endpoint where supervisord answers. When none does, the most telling error: a
/// refusal (permissions, credentials) rather than "not running".
pub fn connect(layout: &Layout) -> Result<Endpoint, RpcError> {
    let mut first_err: Option<RpcError> = None;
    for ep in endpoints(layout) {
        match rpc::call(&ep, "supervisor.getState", &[], QUICK) {
            Ok(_) => return Ok(ep),
            Err(e) => {
                let better = match (&first_err, &e) {
                    (None, _) => true,
                    (Some(RpcError::NotRunning { .. }), RpcError::NotRunning { .. }) => false,
                    (Some(RpcError::NotRunning { .. }), _) => true,
                    _ => false,
                };
                if better {
                    first_err = Some(e);
                }
            }
        }
    }
    Err(first_err.unwrap_or(RpcError::NotRunning {
        endpoint: layout.socket.display().to_string(),
    }))
}

/// One process as supervisord reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    pub group: String,
    pub name: String,
    pub state: String,
    pub pid: i64,
    pub description: String,
}

/// `supervisor.getAllProcessInfo`.
pub fn process_states(ep: &Endpoint) -> Result<Vec<ProcessState>, RpcError> {
    let v = rpc::call(ep, "supervisor.getAllProcessInfo", &[], QUICK)?;
    let items = v.as_array().ok_or_else(|| RpcError::Malformed {
        endpoint: ep.to_string(),
        why: "getAllProcessInfo did not return an array".into(),
    })?;
    let s = |p: &Value, k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Ok(items
        .iter()
        .map(|p| ProcessState {
            group: s(p, "group"),
            name: s(p, "name"),
            state: s(p, "statename"),
            pid: p.get("pid").and_then(Value::as_int).unwrap_or(0),
            description: s(p, "description"),
        })
        .collect())
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Groups that could not be stopped and so were not removed.
    pub problems: Vec<String>,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty() {
            return write!(f, "supervisord already runs this configuration");
        }
        let mut parts = Vec::new();
        for (what, v) in [
            ("started", &self.added),
            ("restarted with the new settings", &self.changed),
            ("stopped and removed", &self.removed),
        ] {
            if !v.is_empty() {
                parts.push(format!("{what}: {}", v.join(", ")));
            }
        }
        write!(f, "applied: {}", parts.join("; "))
    }
}

/// Does what `supervisorctl reread` + `update` do: reload the configuration, stop and remove
/// programs that are gone, restart changed ones, add new ones. `stop_wait` bounds one stop.
pub fn apply(ep: &Endpoint, stop_wait: Duration) -> Result<Applied, RpcError> {
    let names = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    let r = rpc::call(ep, "supervisor.reloadConfig", &[], QUICK)?;
    let lists = r
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_array)
        .ok_or_else(|| RpcError::Malformed {
            endpoint: ep.to_string(),
            why: "reloadConfig did not return [[added, changed, removed]]".into(),
        })?;
    let mut out = Applied {
        added: names(lists.first()),
        changed: names(lists.get(1)),
        removed: names(lists.get(2)),
        problems: Vec::new(),
    };
    let stop = |g: &str| -> Result<bool, RpcError> {
        let r = rpc::call(
            ep,
            "supervisor.stopProcessGroup",
            &[Value::Str(g.into()), Value::Bool(true)],
            stop_wait,
        )?;
        Ok(!r
            .as_array()
            .unwrap_or(&[])
            .iter()
            .any(|x| x.get("status").and_then(Value::as_int) == Some(rpc::FAULT_FAILED)))
    };
    let group_arg = |g: &str| [Value::Str(g.to_string())];
    for g in &out.removed.clone() {
        if stop(g)? {
            rpc::call(ep, "supervisor.removeProcessGroup", &group_arg(g), QUICK)?;
        } else {
            out.problems
                .push(format!("{g}: could not be stopped, so it was not removed"));
        }
    }
    for g in &out.changed {
        stop(g)?;
        rpc::call(ep, "supervisor.removeProcessGroup", &group_arg(g), QUICK)?;
        rpc::call(ep, "supervisor.addProcessGroup", &group_arg(g), QUICK)?;
    }
    for g in &out.added {
        rpc::call(ep, "supervisor.addProcessGroup", &group_arg(g), QUICK)?;
    }
    Ok(out)
}
