//! `loglines supervisor list`: every program, available and enabled, with its processes'
//! states when supervisord answers.

use super::enabled::{self, Entry};
use super::live::{connect, process_states, ProcessState};
use super::rpc::{Endpoint, RpcError};
use super::{Layout, SupervisorError};
use std::collections::{BTreeMap, BTreeSet};

/// One row of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub available: bool,
    pub enabled: Entry,
    /// None when supervisord did not answer.
    pub processes: Option<Vec<ProcessState>>,
}

impl Row {
    /// The STATE column, one string per output line.
    pub fn state_lines(&self) -> Vec<String> {
        let Some(ps) = &self.processes else {
            return vec!["-".into()];
        };
        let mut lines: Vec<String> = match ps.as_slice() {
            [] if self.enabled.is_enabled() => {
                vec!["not loaded (apply to start it)".into()]
            }
            [] => vec!["-".into()],
            [p] if p.name == self.name => vec![p.state.clone()],
            many => many
                .iter()
                .map(|p| format!("{} {}", p.name, p.state))
                .collect(),
        };
        if !ps.is_empty() && !self.enabled.is_enabled() {
            lines[0].push_str(" (disabled: apply to stop it)");
        }
        lines
    }
}

/// Everything `list` shows, and how supervisord was (or was not) reached.
pub fn list(layout: &Layout) -> Result<(Vec<Row>, Result<Endpoint, RpcError>), SupervisorError> {
    if !layout.available.is_dir() {
        return Err(SupervisorError::NotGenerated {
            dir: layout.dir.clone(),
        });
    }
    let available: BTreeSet<String> = enabled::conf_names(&layout.available)
        .map_err(SupervisorError::io("read", &layout.available))?
        .into_iter()
        .collect();
    let enabled_names = enabled::conf_names(&layout.enabled)
        .map_err(SupervisorError::io("read", &layout.enabled))?;
    let live = connect(layout).and_then(|ep| process_states(&ep).map(|ps| (ep, ps)));
    let mut groups: BTreeMap<String, Vec<ProcessState>> = BTreeMap::new();
    if let Ok((_, ps)) = &live {
        for p in ps {
            groups.entry(p.group.clone()).or_default().push(p.clone());
        }
    }
    let mut names: BTreeSet<String> = available.clone();
    names.extend(enabled_names);
    names.extend(groups.keys().cloned());
    let rows = names
        .into_iter()
        .map(|name| Row {
            available: available.contains(&name),
            enabled: enabled::entry(&layout.enabled_file(&name)),
            processes: live
                .as_ref()
                .ok()
                .map(|_| groups.get(&name).cloned().unwrap_or_default()),
            name,
        })
        .collect();
    Ok((rows, live.map(|(ep, _)| ep)))
}

/// The `list` table.
pub fn format_list(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("PROGRAM".len());
    let mut out = format!(
        "{:<width$}  {:<9}  {:<11}  STATE\n",
        "PROGRAM", "AVAILABLE", "ENABLED"
    );
    for r in rows {
        let states = r.state_lines();
        out.push_str(&format!(
            "{:<width$}  {:<9}  {:<11}  {}\n",
            r.name,
            if r.available { "yes" } else { "no" },
            r.enabled.label(),
            states[0]
        ));
        for s in &states[1..] {
            out.push_str(&format!("{:<width$}  {:<9}  {:<11}  {s}\n", "", "", ""));
        }
    }
    out
}
