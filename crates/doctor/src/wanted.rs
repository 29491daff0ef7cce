//! What the backend wants in the kernel for each peer, from the planner's own desired-state
//! functions (the ones flanneld programs from): [`Backend::desired`] for routes, neighbours
//! and FDB entries, [`wireguard::desired_device`] for the peers of the WireGuard devices,
//! [`ipsec::tunnel_policies`] for the XFRM policies. Also what status and doctor cannot check
//! for a backend ([`not_checked`]).

use std::net::IpAddr;

use flannel_model::Lease;
use flannel_planner::backend::{Backend, RuntimeSpec};
use flannel_planner::ipsec;
use flannel_planner::state::KernelState;
use flannel_planner::wireguard::{self, Implementation};

use crate::facts::PeerFacts;

/// The kernel state the backend wants with no peer at all (its devices and addresses).
pub fn base(b: &dyn Backend, own: &Lease) -> KernelState {
    b.desired(&own.subnet, &mut std::iter::empty(), &|_| false)
        .0
}

/// For each peer the backend can use, what it wants for that peer alone. `on_link` answers
/// for the addresses [`Backend::on_link_queries`] names. Peers the backend skips (another
/// backend type, unreadable data) are left out, as flanneld leaves them out.
pub fn peer_facts(
    b: &dyn Backend,
    own: &Lease,
    peers: &[Lease],
    on_link: &dyn Fn(IpAddr) -> bool,
) -> Vec<PeerFacts> {
    let base = base(b, own);
    let runtime = b.runtime();
    let mut out = Vec::new();
    for peer in peers {
        let (one, skipped) = b.desired(&own.subnet, &mut std::iter::once(peer), on_link);
        if !skipped.is_empty() {
            continue;
        }
        let want = KernelState {
            routes: one.routes.difference(&base.routes).cloned().collect(),
            neighs: one.neighs.difference(&base.neighs).cloned().collect(),
            fdb: one.fdb.difference(&base.fdb).cloned().collect(),
            ..KernelState::default()
        };
        let mut facts = PeerFacts {
            lease: peer.clone(),
            want,
            wg: Vec::new(),
            xfrm: Vec::new(),
        };
        match &runtime {
            Some(RuntimeSpec::Wireguard(rt)) if rt.implementation == Implementation::Kernel => {
                for dev in &rt.devices {
                    let (cfg, skipped) = wireguard::desired_device(
                        dev,
                        &rt.opts,
                        &rt.local,
                        &own.subnet,
                        &mut std::iter::once(peer),
                    );
                    if !skipped.is_empty() {
                        continue;
                    }
                    facts
                        .wg
                        .extend(cfg.peers.into_values().map(|p| (dev.name.clone(), p)));
                }
                if facts.wg.is_empty() {
                    continue;
                }
            }
            Some(RuntimeSpec::Ipsec { public_ip, .. }) => {
                let local = ipsec::Local {
                    subnet: own.subnet.ipv4,
                    public_ip: *public_ip,
                };
                if !ipsec::is_peer(&local, peer) {
                    continue;
                }
                facts.xfrm =
                    ipsec::tunnel_policies(&local, peer.subnet.ipv4, peer.attrs.public_ip).to_vec();
            }
            _ => {}
        }
        out.push(facts);
    }
    out
}

/// What status and doctor cannot see for this backend, as sentences for the output.
pub fn not_checked(b: &dyn Backend) -> Vec<String> {
    match b.runtime() {
        Some(RuntimeSpec::Wireguard(rt)) if rt.implementation == Implementation::Userspace => {
            let devs: Vec<String> = rt.devices.iter().map(|d| d.name.clone()).collect();
            vec![format!(
                "wireguard runs inside flanneld (userspace implementation): its peers (keys, endpoints, allowed IPs) are in flanneld's memory, not in the kernel, so only the routes via {} were checked.",
                devs.join(", ")
            )]
        }
        Some(RuntimeSpec::Extension(_)) => vec![
            "extension: what the backend's commands set up is unknown to flannelctl; only the lease, subnet.env and the pod MTUs were checked.".to_owned(),
        ],
        _ => Vec::new(),
    }
}
