//! For each peer: each entry the backend wants, and whether the kernel holds it, holds
//! something else in its place, or nothing.

use flannel_planner::state::KernelState;
use serde::Serialize;

use crate::finding::Kind;

/// One wanted entry and what the kernel has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryCheck {
    /// `route`, `neigh` or `fdb`.
    pub kind: Kind,
    /// The entry as `ip` would print it.
    pub want: String,
    /// What the kernel has.
    pub state: EntryState,
}

/// The kernel's side of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "have", rename_all = "snake_case")]
pub enum EntryState {
    /// Exactly as wanted.
    Ok,
    /// Nothing for that key.
    Missing,
    /// Something else for that key (shown).
    Wrong(String),
}

/// Compare `want` (one peer's entries) with `observed`.
pub fn compare(want: &KernelState, observed: &KernelState) -> Vec<EntryCheck> {
    let mut out = Vec::new();
    for r in &want.routes {
        let state = if observed.routes.contains(r) {
            EntryState::Ok
        } else if let Some(o) = observed.routes.iter().find(|o| o.dst == r.dst) {
            EntryState::Wrong(o.to_string())
        } else {
            EntryState::Missing
        };
        out.push(EntryCheck {
            kind: Kind::Route,
            want: r.to_string(),
            state,
        });
    }
    for n in &want.neighs {
        let state = if observed.neighs.contains(n) {
            EntryState::Ok
        } else if let Some(o) = observed
            .neighs
            .iter()
            .find(|o| o.ip == n.ip && o.dev == n.dev)
        {
            EntryState::Wrong(format!("{} lladdr {} dev {}", o.ip, o.mac, o.dev))
        } else {
            EntryState::Missing
        };
        out.push(EntryCheck {
            kind: Kind::Neigh,
            want: format!("{} lladdr {} dev {}", n.ip, n.mac, n.dev),
            state,
        });
    }
    for f in &want.fdb {
        let state = if observed.fdb.contains(f) {
            EntryState::Ok
        } else if let Some(o) = observed
            .fdb
            .iter()
            .find(|o| o.mac == f.mac && o.dev == f.dev)
        {
            EntryState::Wrong(format!("{} dst {} dev {}", o.mac, o.dst, o.dev))
        } else {
            EntryState::Missing
        };
        out.push(EntryCheck {
            kind: Kind::Fdb,
            want: format!("{} dst {} dev {}", f.mac, f.dst, f.dev),
            state,
        });
    }
    out
}

/// Entries on the backend's devices that no peer (and not the base state) wants: left over
/// from a peer that is gone, or added by hand.
pub fn stale(wanted: &KernelState, observed: &KernelState, devs: &[String]) -> Vec<String> {
    let on_ours = |dev: &str| devs.iter().any(|d| d == dev);
    let mut out = Vec::new();
    for r in &observed.routes {
        if on_ours(&r.dev) && !wanted.routes.contains(r) {
            out.push(format!("route {r}"));
        }
    }
    for n in &observed.neighs {
        if on_ours(&n.dev) && !wanted.neighs.contains(n) {
            out.push(format!("neigh {} lladdr {} dev {}", n.ip, n.mac, n.dev));
        }
    }
    for f in &observed.fdb {
        if on_ours(&f.dev) && !wanted.fdb.contains(f) {
            out.push(format!("fdb {} dst {} dev {}", f.mac, f.dst, f.dev));
        }
    }
    out
}
