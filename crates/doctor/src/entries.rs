//! For each peer: each entry the backend wants, and whether the kernel holds it, holds
//! something else in its place, or nothing.

use flannel_planner::ipsec::{self, Policy};
use flannel_planner::state::KernelState;
use flannel_planner::wireguard::WgPeer;
use serde::Serialize;

use crate::facts::{PeerFacts, TunnelState};
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

/// Every entry of one peer: its routes, neighbours and FDB entries ([`compare`]), its
/// WireGuard peers ([`compare_wg`]) and its IPsec policies and SA ([`compare_xfrm`]).
pub fn compare_peer(
    p: &PeerFacts,
    observed: &KernelState,
    tunnels: &TunnelState,
) -> Vec<EntryCheck> {
    let mut out = compare(&p.want, observed);
    out.extend(compare_wg(&p.wg, tunnels));
    if !p.xfrm.is_empty() {
        out.extend(compare_xfrm(&p.xfrm, tunnels));
    }
    out
}

/// A WireGuard peer as `wg show` would describe it.
pub fn wg_peer_text(dev: &str, p: &WgPeer) -> String {
    let allowed: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
    let endpoint = p
        .endpoint
        .map_or_else(|| "(none)".to_owned(), |e| e.to_string());
    format!(
        "peer {} endpoint {endpoint} allowed-ips {} dev {dev}",
        p.public_key,
        allowed.join(",")
    )
}

/// Each wanted WireGuard peer (by device) against what the device holds. A peer is right when
/// the device holds exactly what flanneld would set (the same equality its runtime uses).
pub fn compare_wg(want: &[(String, WgPeer)], tunnels: &TunnelState) -> Vec<EntryCheck> {
    want.iter()
        .map(|(dev, w)| {
            let state = match tunnels.wg_devices.get(dev) {
                Some(Some(cfg)) => match cfg.peers.get(&w.public_key) {
                    Some(have) if have == w => EntryState::Ok,
                    Some(have) => EntryState::Wrong(wg_peer_text(dev, have)),
                    None => EntryState::Missing,
                },
                // No such device: the peer is missing with it (the link check names the device).
                Some(None) | None => EntryState::Missing,
            };
            EntryCheck {
                kind: Kind::Wireguard,
                want: wg_peer_text(dev, w),
                state,
            }
        })
        .collect()
}

/// One tunnel's XFRM policies against the kernel's, and whether charon negotiated an SA to the
/// peer (an SA from us to it and one back). Nothing when the policies could not be read.
pub fn compare_xfrm(want: &[Policy], tunnels: &TunnelState) -> Vec<EntryCheck> {
    let Some(observed) = &tunnels.xfrm_policies else {
        return Vec::new();
    };
    let mut out: Vec<EntryCheck> = want
        .iter()
        .map(|w| {
            let state = if observed.contains(w) {
                EntryState::Ok
            } else if let Some(o) = observed.iter().find(|o| o.key() == w.key()) {
                EntryState::Wrong(o.to_string())
            } else {
                EntryState::Missing
            };
            EntryCheck {
                kind: Kind::Xfrm,
                want: format!("policy {w}"),
                state,
            }
        })
        .collect();
    if let (Some(out_policy), Some(sas)) = (
        want.iter().find(|p| p.dir == ipsec::Dir::Out),
        &tunnels.xfrm_sas,
    ) {
        let (us, them) = (out_policy.tmpl_src, out_policy.tmpl_dst);
        let has = |src, dst| sas.iter().any(|sa| sa.src == src && sa.dst == dst);
        let state = match (has(us, them), has(them, us)) {
            (true, true) => EntryState::Ok,
            (false, false) => EntryState::Missing,
            (true, false) => EntryState::Wrong(format!("only {us} → {them}")),
            (false, true) => EntryState::Wrong(format!("only {them} → {us}")),
        };
        out.push(EntryCheck {
            kind: Kind::Xfrm,
            want: format!("SAs {us} ⇄ {them} (negotiated by charon)"),
            state,
        });
    }
    out
}

/// WireGuard peers no lease wants and flannel-managed (reqid 11) XFRM policies of no wanted
/// tunnel: left from a peer that is gone, or added by hand.
pub fn stale_tunnels(peers: &[PeerFacts], tunnels: &TunnelState) -> Vec<String> {
    let mut out = Vec::new();
    for (dev, cfg) in &tunnels.wg_devices {
        let Some(cfg) = cfg else { continue };
        for (key, have) in &cfg.peers {
            let wanted = peers
                .iter()
                .any(|p| p.wg.iter().any(|(d, w)| d == dev && w.public_key == *key));
            if !wanted {
                out.push(wg_peer_text(dev, have));
            }
        }
    }
    if let Some(policies) = &tunnels.xfrm_policies {
        for o in policies.iter().filter(|o| ipsec::is_managed(o)) {
            if !peers
                .iter()
                .any(|p| p.xfrm.iter().any(|w| w.key() == o.key()))
            {
                out.push(format!("xfrm policy {o}"));
            }
        }
    }
    out
}
