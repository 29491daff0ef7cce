//! The ipsec backend's plan: for our lease and the peers', the XFRM policies the kernel should
//! hold and the IKE connections and shared keys charon should have, and the diffs that get
//! there from what is observed. Pure: the daemon's ipsec runtime reads the kernel and charon,
//! calls these functions and carries out the result.
//!
//! As Flannel (`pkg/backend/ipsec`): per peer lease of `BackendType` `ipsec` (our own lease
//! excluded) three policies with one ESP tunnel template between the public IPs and reqid 11
//! (`out`: our subnet → theirs; `in` and `fwd`: theirs → ours), one IKEv2 connection
//! `<ourPublicIP>-<ourSubnet>-<theirSubnet>-<theirPublicIP>` with one child
//! `<ourSubnet>-<theirSubnet>`, and the PSK loaded for the peer's public IP (and ours).
//!
//! Unlike Flannel, what is not desired is removed: every policy with a reqid-11 ESP template
//! (Flannel's marker; nothing else uses it here) that no peer wants, and the SAs with reqid 11
//! between public IPs that no peer pair wants.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use flannel_model::Lease;
use ipnet::Ipv4Net;

/// The `BackendType` of ipsec leases.
pub const BACKEND_TYPE: &str = "ipsec";

/// Flannel's request id of every template and child SA (`defaultReqID`).
pub const REQID: u32 = 11;

/// Flannel's IKE proposal.
pub const IKE_PROPOSAL: &str = "aes256-sha256-modp4096";

/// Flannel's default `ESPProposal`.
pub const DEFAULT_ESP_PROPOSAL: &str = "aes128gcm16-sha256-prfsha256-ecp256";

/// Flannel's shortest accepted `PSK`.
pub const MIN_PSK_LEN: usize = 96;

/// What ESP in tunnel mode adds (Flannel's `ipsecOverhead`).
pub const IPSEC_OVERHEAD: u32 = 77;

/// What `UDPEncap` adds on top (Flannel's `udpEncapOverhead`).
pub const UDP_ENCAP_OVERHEAD: u32 = 8;

/// The pod MTU for an interface MTU: `mtu − 77`, `− 8` more with UDP encapsulation.
pub fn pod_mtu(iface_mtu: u32, udp_encap: bool) -> u32 {
    let overhead = IPSEC_OVERHEAD + if udp_encap { UDP_ENCAP_OVERHEAD } else { 0 };
    iface_mtu.saturating_sub(overhead)
}

/// A policy's direction (`XFRM_POLICY_IN/OUT/FWD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// Received for this host.
    In,
    /// Sent by this host.
    Out,
    /// Forwarded by this host.
    Fwd,
}

impl Dir {
    /// As `ip xfrm policy` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
            Dir::Fwd => "fwd",
        }
    }
}

/// One XFRM policy as Flannel installs it: selector `src` → `dst` (any protocol), one ESP
/// tunnel-mode template `tmpl_src` → `tmpl_dst` with `reqid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Policy {
    /// Direction (part of the key).
    pub dir: Dir,
    /// Selector source (part of the key).
    pub src: Ipv4Net,
    /// Selector destination (part of the key).
    pub dst: Ipv4Net,
    /// Tunnel source (outer header).
    pub tmpl_src: Ipv4Addr,
    /// Tunnel destination (outer header).
    pub tmpl_dst: Ipv4Addr,
    /// Request id binding it to charon's child SA.
    pub reqid: u32,
}

impl Policy {
    /// What identifies a policy in the kernel: direction and selector.
    pub fn key(&self) -> (Dir, Ipv4Net, Ipv4Net) {
        (self.dir, self.src, self.dst)
    }
}

impl fmt::Display for Policy {
    /// In `ip xfrm policy` syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "src {} dst {} dir {} tmpl src {} dst {} proto esp reqid {} mode tunnel",
            self.src,
            self.dst,
            self.dir.as_str(),
            self.tmpl_src,
            self.tmpl_dst,
            self.reqid
        )
    }
}

/// This host's side of every tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Our leased subnet.
    pub subnet: Ipv4Net,
    /// Our lease's `PublicIP`.
    pub public_ip: Ipv4Addr,
}

/// One IKE connection as Flannel loads it into charon.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Connection {
    /// `<localPublicIP>-<localSubnet>-<remoteSubnet>-<remotePublicIP>`.
    pub name: String,
    /// `<localSubnet>-<remoteSubnet>`.
    pub child: String,
    /// Our public IP (`local_addrs`).
    pub local_addr: Ipv4Addr,
    /// The peer's (`remote_addrs`).
    pub remote_addr: Ipv4Addr,
    /// Our subnet (`local_ts`).
    pub local_ts: Ipv4Net,
    /// The peer's subnet (`remote_ts`).
    pub remote_ts: Ipv4Net,
}

impl Connection {
    /// Flannel's connection and child names for a tunnel.
    pub fn new(local: &Local, remote_subnet: Ipv4Net, remote_ip: Ipv4Addr) -> Connection {
        Connection {
            name: format!(
                "{}-{}-{}-{}",
                local.public_ip, local.subnet, remote_subnet, remote_ip
            ),
            child: format!("{}-{}", local.subnet, remote_subnet),
            local_addr: local.public_ip,
            remote_addr: remote_ip,
            local_ts: local.subnet,
            remote_ts: remote_subnet,
        }
    }
}

/// What this host should have for a set of peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// The kernel's policies, by key.
    pub policies: BTreeMap<(Dir, Ipv4Net, Ipv4Net), Policy>,
    /// charon's connections, by name.
    pub connections: BTreeMap<String, Connection>,
    /// The owners the PSK is loaded for (our public IP and every peer's).
    pub key_owners: BTreeSet<Ipv4Addr>,
}

impl Desired {
    /// Whether an SA between `src` and `dst` (outer addresses) belongs to a wanted tunnel.
    pub fn wants_sa(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.connections.values().any(|c| {
            (c.local_addr == src && c.remote_addr == dst)
                || (c.local_addr == dst && c.remote_addr == src)
        })
    }
}

/// The three policies of one tunnel (Flannel's `AddIPSECPolicies`).
pub fn tunnel_policies(local: &Local, remote_subnet: Ipv4Net, remote_ip: Ipv4Addr) -> [Policy; 3] {
    let out = Policy {
        dir: Dir::Out,
        src: local.subnet,
        dst: remote_subnet,
        tmpl_src: local.public_ip,
        tmpl_dst: remote_ip,
        reqid: REQID,
    };
    let inbound = Policy {
        dir: Dir::In,
        src: remote_subnet,
        dst: local.subnet,
        tmpl_src: remote_ip,
        tmpl_dst: local.public_ip,
        reqid: REQID,
    };
    [
        out,
        inbound,
        Policy {
            dir: Dir::Fwd,
            ..inbound
        },
    ]
}

/// Whether Flannel's ipsec backend sets up a tunnel to this lease: an `ipsec` lease that is
/// not ours.
pub fn is_peer(local: &Local, lease: &Lease) -> bool {
    lease.attrs.backend_type == BACKEND_TYPE && lease.subnet.ipv4 != local.subnet
}

/// The desired state for our lease and these leases (others than ipsec peers are ignored).
pub fn desired<'a>(local: &Local, leases: impl IntoIterator<Item = &'a Lease>) -> Desired {
    let mut d = Desired::default();
    d.key_owners.insert(local.public_ip);
    for lease in leases {
        if !is_peer(local, lease) {
            continue;
        }
        let (subnet, ip) = (lease.subnet.ipv4, lease.attrs.public_ip);
        for p in tunnel_policies(local, subnet, ip) {
            d.policies.insert(p.key(), p);
        }
        let c = Connection::new(local, subnet, ip);
        d.connections.insert(c.name.clone(), c);
        d.key_owners.insert(ip);
    }
    d
}

/// Whether an observed policy is one this backend manages: a reqid-11 template.
pub fn is_managed(p: &Policy) -> bool {
    p.reqid == REQID
}

/// What to change in the kernel's policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyOps {
    /// Add or replace (`XFRM_MSG_UPDPOLICY`).
    pub update: Vec<Policy>,
    /// Delete (by key).
    pub delete: Vec<Policy>,
}

impl PolicyOps {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.update.is_empty() && self.delete.is_empty()
    }
}

/// Desired vs observed policies. `observed` are the managed policies the kernel holds (see
/// [`is_managed`]); one of them with a wanted key but another template is updated, one with
/// no wanted key is deleted. Deletions come first.
pub fn diff_policies(desired: &Desired, observed: &[Policy]) -> PolicyOps {
    let mut ops = PolicyOps::default();
    let mut seen = BTreeSet::new();
    for p in observed.iter().filter(|p| is_managed(p)) {
        match desired.policies.get(&p.key()) {
            Some(want) if want == p => {
                seen.insert(p.key());
            }
            Some(_) => {}
            None => ops.delete.push(*p),
        }
    }
    ops.update = desired
        .policies
        .values()
        .filter(|p| !seen.contains(&p.key()))
        .copied()
        .collect();
    ops
}

/// An SA as observed: its outer addresses, SPI and request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sa {
    /// Outer source.
    pub src: Ipv4Addr,
    /// Outer destination (part of the kernel's key).
    pub dst: Ipv4Addr,
    /// Security parameter index, as a number (part of the key).
    pub spi: u32,
    /// Request id.
    pub reqid: u32,
}

/// The observed reqid-11 SAs that belong to no wanted tunnel (a gone peer's).
pub fn stale_sas(desired: &Desired, observed: &[Sa]) -> Vec<Sa> {
    observed
        .iter()
        .filter(|sa| sa.reqid == REQID && !desired.wants_sa(sa.src, sa.dst))
        .copied()
        .collect()
}

/// What to change in charon's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOps {
    /// Load (new, or changed since loaded).
    pub load: Vec<Connection>,
    /// Unload and terminate (by name).
    pub unload: Vec<String>,
}

/// Desired connections vs those loaded into the running charon.
pub fn diff_connections(desired: &Desired, loaded: &BTreeMap<String, Connection>) -> ConnectionOps {
    ConnectionOps {
        load: desired
            .connections
            .values()
            .filter(|c| loaded.get(&c.name) != Some(c))
            .cloned()
            .collect(),
        unload: loaded
            .keys()
            .filter(|n| !desired.connections.contains_key(*n))
            .cloned()
            .collect(),
    }
}

/// The key owners to load the PSK for, given those loaded into the running charon.
pub fn keys_to_load(desired: &Desired, loaded: &BTreeSet<Ipv4Addr>) -> Vec<Ipv4Addr> {
    desired.key_owners.difference(loaded).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_model::{LeaseAttrs, SubnetKey};
    use proptest::prelude::*;

    fn local() -> Local {
        Local {
            subnet: "198.18.1.0/24".parse().expect("net"),
            public_ip: Ipv4Addr::new(192, 0, 2, 1),
        }
    }

    fn lease(subnet: &str, ip: [u8; 4], backend: &str) -> Lease {
        Lease {
            subnet: SubnetKey {
                ipv4: subnet.parse().expect("net"),
                ipv6: None,
            },
            attrs: LeaseAttrs {
                public_ip: Ipv4Addr::from(ip),
                public_ipv6: None,
                backend_type: backend.to_owned(),
                backend_data: None,
                backend_v6_data: None,
            },
            expiration: None,
        }
    }

    #[test]
    fn one_peer_gets_flannels_three_policies_and_connection() {
        let peers = [
            lease("198.18.2.0/24", [192, 0, 2, 2], "ipsec"),
            lease("198.18.1.0/24", [192, 0, 2, 1], "ipsec"),
            lease("198.18.3.0/24", [192, 0, 2, 3], "vxlan"),
        ];
        let d = desired(&local(), &peers);
        let text: Vec<String> = d.policies.values().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "src 198.18.2.0/24 dst 198.18.1.0/24 dir in tmpl src 192.0.2.2 dst 192.0.2.1 proto esp reqid 11 mode tunnel",
                "src 198.18.1.0/24 dst 198.18.2.0/24 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 11 mode tunnel",
                "src 198.18.2.0/24 dst 198.18.1.0/24 dir fwd tmpl src 192.0.2.2 dst 192.0.2.1 proto esp reqid 11 mode tunnel",
            ]
        );
        let names: Vec<(&str, &str)> = d
            .connections
            .values()
            .map(|c| (c.name.as_str(), c.child.as_str()))
            .collect();
        assert_eq!(
            names,
            [(
                "192.0.2.1-198.18.1.0/24-198.18.2.0/24-192.0.2.2",
                "198.18.1.0/24-198.18.2.0/24"
            )]
        );
        assert_eq!(
            d.key_owners.iter().copied().collect::<Vec<_>>(),
            [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
    }

    #[test]
    fn mtu_is_flannels() {
        assert_eq!(pod_mtu(1500, false), 1423);
        assert_eq!(pod_mtu(1500, true), 1415);
        assert_eq!(pod_mtu(9001, false), 8924);
        assert_eq!(pod_mtu(50, false), 0);
    }

    #[test]
    fn a_gone_peers_policies_sas_and_connection_are_removed() {
        let l = local();
        let two = [lease("198.18.2.0/24", [192, 0, 2, 2], "ipsec")];
        let before = desired(&l, &[]);
        let now = desired(&l, &two);
        let observed: Vec<Policy> = now.policies.values().copied().collect();
        let ops = diff_policies(&before, &observed);
        assert!(ops.update.is_empty());
        assert_eq!(ops.delete, observed);
        let sas = [
            Sa {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(192, 0, 2, 2),
                spi: 7,
                reqid: REQID,
            },
            Sa {
                src: Ipv4Addr::new(192, 0, 2, 9),
                dst: Ipv4Addr::new(192, 0, 2, 1),
                spi: 8,
                reqid: 3,
            },
        ];
        assert_eq!(stale_sas(&before, &sas), [sas[0]]);
        assert!(stale_sas(&now, &sas).is_empty(), "wanted or not ours");
        let ops = diff_connections(&before, &now.connections);
        assert_eq!(
            ops.unload,
            ["192.0.2.1-198.18.1.0/24-198.18.2.0/24-192.0.2.2"]
        );
        assert!(ops.load.is_empty());
    }

    #[test]
    fn a_moved_peer_gets_its_policies_updated_and_others_are_left_alone() {
        let l = local();
        let moved = desired(&l, &[lease("198.18.2.0/24", [192, 0, 2, 7], "ipsec")]);
        let old = desired(&l, &[lease("198.18.2.0/24", [192, 0, 2, 2], "ipsec")]);
        let mut observed: Vec<Policy> = old.policies.values().copied().collect();
        let foreign = Policy {
            reqid: 1,
            ..observed[0]
        };
        observed.push(foreign);
        let ops = diff_policies(&moved, &observed);
        assert!(ops.delete.is_empty(), "same keys: replaced, not deleted");
        assert_eq!(ops.update.len(), 3);
        assert!(ops
            .update
            .iter()
            .all(|p| p.tmpl_src == Ipv4Addr::new(192, 0, 2, 7)
                || p.tmpl_dst == Ipv4Addr::new(192, 0, 2, 7)));
        let c = diff_connections(&moved, &old.connections);
        assert_eq!(
            c.unload,
            ["192.0.2.1-198.18.1.0/24-198.18.2.0/24-192.0.2.2"]
        );
        assert_eq!(
            c.load[0].name,
            "192.0.2.1-198.18.1.0/24-198.18.2.0/24-192.0.2.7"
        );
        assert_eq!(
            keys_to_load(&moved, &old.key_owners),
            [Ipv4Addr::new(192, 0, 2, 7)]
        );
    }

    proptest! {
        /// Applying the diff to what was observed gives exactly the desired managed policies,
        /// and a second diff is empty.
        #[test]
        fn diff_converges(
            want in proptest::collection::btree_set(2u8..40, 0..8),
            have in proptest::collection::btree_set((2u8..40, 1u8..5), 0..8),
        ) {
            let l = local();
            let leases: Vec<Lease> = want
                .iter()
                .map(|n| lease(&format!("198.18.{n}.0/24"), [192, 0, 2, *n], "ipsec"))
                .collect();
            let d = desired(&l, &leases);
            let mut kernel: BTreeMap<_, Policy> = BTreeMap::new();
            for (n, ip) in &have {
                for p in tunnel_policies(&l, format!("198.18.{n}.0/24").parse().expect("net"), Ipv4Addr::new(192, 0, 2, *ip)) {
                    kernel.insert(p.key(), p);
                }
            }
            let observed: Vec<Policy> = kernel.values().copied().collect();
            let ops = diff_policies(&d, &observed);
            for p in &ops.delete {
                kernel.remove(&p.key());
            }
            for p in &ops.update {
                kernel.insert(p.key(), *p);
            }
            prop_assert_eq!(&kernel, &d.policies);
            let again: Vec<Policy> = kernel.values().copied().collect();
            prop_assert!(diff_policies(&d, &again).is_empty());
        }
    }
}
