//! The vxlan on-demand mode (`"Mode": "on-demand"`), Flannel's first vxlan design: nothing is
//! programmed per peer in advance. The device has `l2miss`/`l3miss`, its neighbour table asks
//! user space (`app_solicit`), and one route sends the whole network to it. When the kernel
//! needs the MAC of a remote pod IP (an L3 miss) flanneld answers with the VTEP MAC of the host
//! whose lease holds that IP; when it needs the underlay address of a VTEP MAC (an L2 miss)
//! flanneld answers with that host's public IP. The answers are ordinary (not permanent)
//! entries, so the kernel ages them out when unused, as Flannel's did.
//!
//! This module owns the pure parts: the mode's static kernel state, the "miss → answer"
//! decision against the current lease set, and which learned entries are stale once leases
//! change. IPv4 only (Flannel's first design predates IPv6 support).

use std::net::{IpAddr, Ipv4Addr};

use flannel_model::{Lease, SubnetKey};
use ipnet::{IpNet, Ipv4Net};

use crate::state::{Addr, Fdb, KernelState, LinkSpec, MacAddr, Neigh, Route};
use flannel_model::VxlanLeaseData;

use crate::ext_iface::ExtIface;
use crate::skipped::Skipped;
use crate::vxlan::{host_net, link, VxlanOptions};

/// The mode's static kernel state: the device (with `l2miss` and `l3miss`, no learning), our
/// own address (`<subnet>.0/32`, as in the default mode) and one route
/// `<Network> dev flannel.<VNI>` (Flannel v0.8 installed the same route; its kernel-made twin
/// came from putting the address on with the network's prefix). No per-peer entry.
pub fn desired_state(
    opts: &VxlanOptions,
    ext: &ExtIface,
    own: &SubnetKey,
    mac: MacAddr,
    network: Ipv4Net,
) -> KernelState {
    let dev = opts.device_name();
    let mut l = link(
        opts,
        ext,
        &dev,
        IpAddr::V4(ext.addr),
        opts.device_mtu(ext.mtu),
        mac,
    );
    l.learning = false;
    l.l2miss = true;
    l.l3miss = true;
    let mut state = KernelState::default();
    state.links.insert(dev.clone(), LinkSpec::Vxlan(l));
    state.addrs.insert(Addr {
        dev: dev.clone(),
        net: IpNet::V4(host_net(own.ipv4)),
    });
    state.routes.insert(Route {
        dst: IpNet::V4(network.trunc()),
        gateway: None,
        dev,
        onlink: false,
    });
    state
}

/// What the responder knows about one remote host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub vtep_mac: MacAddr,
    pub public_ip: Ipv4Addr,
}

/// The remote hosts the responder answers for, built from the lease set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTable {
    peers: Vec<Peer>,
}

impl PeerTable {
    /// The usable vxlan peers among `leases` (our own lease must not be among them), and the
    /// leases skipped with the reason.
    pub fn from_leases<'a>(leases: impl IntoIterator<Item = &'a Lease>) -> (Self, Vec<Skipped>) {
        let mut peers = Vec::new();
        let mut skipped = Vec::new();
        for lease in leases {
            if let Err(s) = Skipped::unless_backend(lease, "vxlan") {
                skipped.push(s);
                continue;
            }
            let data = match lease.attrs.backend_data.as_ref() {
                None => Err("no BackendData".to_owned()),
                Some(raw) => VxlanLeaseData::from_raw(raw).map_err(|e| e.to_string()),
            };
            match data {
                Ok(d) => peers.push(Peer {
                    subnet: lease.subnet.ipv4,
                    vtep_mac: d.vtep_mac,
                    public_ip: lease.attrs.public_ip,
                }),
                Err(reason) => skipped.push(Skipped {
                    subnet: lease.subnet,
                    reason,
                }),
            }
        }
        (PeerTable { peers }, skipped)
    }

    /// The peers.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    fn by_ip(&self, ip: Ipv4Addr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.subnet.contains(&ip))
    }

    fn by_mac(&self, mac: MacAddr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.vtep_mac == mac)
    }
}

/// A miss the kernel reported on the on-demand device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The neighbour table wants the MAC of this (remote pod) IP.
    L3(Ipv4Addr),
    /// The vxlan FDB has no underlay destination for this MAC.
    L2(MacAddr),
}

/// What to do about a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Install this neighbour entry (`NUD_REACHABLE`: it ages out when unused).
    Neigh(Neigh),
    /// Install this FDB entry (`self`, not permanent: it ages out when unused).
    Fdb(Fdb),
    /// No lease covers the address: ignore (and count) it.
    Unknown,
}

/// The answer to `miss` on device `dev`, from the current peers. Pure.
pub fn decide(miss: Miss, peers: &PeerTable, dev: &str) -> Answer {
    match miss {
        Miss::L3(ip) => match peers.by_ip(ip) {
            Some(p) => Answer::Neigh(Neigh {
                dev: dev.to_owned(),
                ip: IpAddr::V4(ip),
                mac: p.vtep_mac,
            }),
            None => Answer::Unknown,
        },
        Miss::L2(mac) => match peers.by_mac(mac) {
            Some(p) => Answer::Fdb(Fdb {
                dev: dev.to_owned(),
                mac,
                dst: IpAddr::V4(p.public_ip),
            }),
            None => Answer::Unknown,
        },
    }
}

/// Learned entries that no longer match the peers (the peer left, or its lease now names
/// another VTEP MAC or public IP): these are removed. A learned entry still matching is kept,
/// whatever its age (the kernel ages it).
pub fn stale_learned<'a>(
    neighs: impl IntoIterator<Item = &'a Neigh>,
    fdb: impl IntoIterator<Item = &'a Fdb>,
    peers: &PeerTable,
) -> (Vec<Neigh>, Vec<Fdb>) {
    let stale_neighs = neighs
        .into_iter()
        .filter(|n| match n.ip {
            IpAddr::V4(ip) => peers.by_ip(ip).is_none_or(|p| p.vtep_mac != n.mac),
            IpAddr::V6(_) => false,
        })
        .cloned()
        .collect();
    let stale_fdb = fdb
        .into_iter()
        .filter(|f| {
            peers
                .by_mac(f.mac)
                .is_none_or(|p| f.dst != IpAddr::V4(p.public_ip))
        })
        .cloned()
        .collect();
    (stale_neighs, stale_fdb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{diff, Scope};
    use crate::vxlan::tests::vxlan_peer as lease;
    use crate::vxlan::{VxlanMode, VxlanOptions};
    use flannel_model::RawJson;

    fn table() -> PeerTable {
        let (t, skipped) = PeerTable::from_leases(&[
            lease("198.18.2.0/24", 2, "0e:00:00:00:00:02"),
            lease("198.18.3.0/24", 3, "0e:00:00:00:00:03"),
        ]);
        assert!(skipped.is_empty());
        t
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("mac")
    }

    fn ext() -> ExtIface {
        ExtIface {
            name: "eth0".into(),
            index: 2,
            mtu: 1500,
            addr: Ipv4Addr::new(192, 0, 2, 1),
            addr_v6: None,
        }
    }

    #[test]
    fn l3_miss_answers_the_vtep_mac_of_the_lease_holding_the_ip() {
        assert_eq!(
            decide(
                Miss::L3(Ipv4Addr::new(198, 18, 3, 7)),
                &table(),
                "flannel.1"
            ),
            Answer::Neigh(Neigh {
                dev: "flannel.1".into(),
                ip: "198.18.3.7".parse().expect("ip"),
                mac: mac("0e:00:00:00:00:03"),
            })
        );
    }

    #[test]
    fn l2_miss_answers_the_public_ip_of_the_host_with_that_mac() {
        assert_eq!(
            decide(Miss::L2(mac("0e:00:00:00:00:02")), &table(), "flannel.1"),
            Answer::Fdb(Fdb {
                dev: "flannel.1".into(),
                mac: mac("0e:00:00:00:00:02"),
                dst: "192.0.2.2".parse().expect("ip"),
            })
        );
    }

    #[test]
    fn misses_no_lease_covers_are_unknown() {
        let t = table();
        // Our own subnet (not a peer), outside the network, an unknown MAC.
        assert_eq!(
            decide(Miss::L3(Ipv4Addr::new(198, 18, 1, 5)), &t, "flannel.1"),
            Answer::Unknown
        );
        assert_eq!(
            decide(Miss::L3(Ipv4Addr::new(203, 0, 113, 9)), &t, "flannel.1"),
            Answer::Unknown
        );
        assert_eq!(
            decide(Miss::L2(mac("0e:00:00:00:00:99")), &t, "flannel.1"),
            Answer::Unknown
        );
        assert_eq!(
            decide(
                Miss::L3(Ipv4Addr::new(198, 18, 2, 5)),
                &PeerTable::default(),
                "x"
            ),
            Answer::Unknown
        );
    }

    #[test]
    fn unusable_leases_are_skipped() {
        let mut hostgw = lease("198.18.4.0/24", 4, "0e:00:00:00:00:04");
        hostgw.attrs.backend_type = "host-gw".into();
        let mut garbage = lease("198.18.5.0/24", 5, "0e:00:00:00:00:05");
        garbage.attrs.backend_data = Some(RawJson::new(r#"{"VNI":1}"#).expect("json"));
        let (t, skipped) = PeerTable::from_leases(&[hostgw, garbage]);
        assert!(t.peers().is_empty());
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn stale_entries_are_those_of_departed_or_changed_peers() {
        let t = table();
        let neigh = |ip: &str, m: &str| Neigh {
            dev: "flannel.1".into(),
            ip: ip.parse().expect("ip"),
            mac: mac(m),
        };
        let fdb = |m: &str, dst: &str| Fdb {
            dev: "flannel.1".into(),
            mac: mac(m),
            dst: dst.parse().expect("ip"),
        };
        let neighs = [
            neigh("198.18.2.9", "0e:00:00:00:00:02"), // current
            neigh("198.18.3.9", "0e:00:00:00:00:02"), // lease 3 has another MAC
            neigh("198.18.4.9", "0e:00:00:00:00:04"), // peer gone
        ];
        let fdbs = [
            fdb("0e:00:00:00:00:03", "192.0.2.3"), // current
            fdb("0e:00:00:00:00:02", "192.0.2.9"), // moved
            fdb("0e:00:00:00:00:04", "192.0.2.4"), // gone
        ];
        let (n, f) = stale_learned(&neighs, &fdbs, &t);
        assert_eq!(n, [neighs[1].clone(), neighs[2].clone()]);
        assert_eq!(f, [fdbs[1].clone(), fdbs[2].clone()]);
    }

    #[test]
    fn static_state_is_one_device_one_address_one_route() {
        let opts = VxlanOptions {
            mode: VxlanMode::OnDemand,
            ..VxlanOptions::default()
        };
        let own = SubnetKey {
            ipv4: "198.18.1.0/24".parse().expect("cidr"),
            ipv6: None,
        };
        let s = desired_state(
            &opts,
            &ext(),
            &own,
            mac("0e:00:00:00:00:01"),
            "198.18.0.0/16".parse().expect("net"),
        );
        let l = s.links["flannel.1"].as_vxlan().expect("vxlan");
        assert!(l.l2miss && l.l3miss && !l.learning);
        assert_eq!(l.mtu, 1450);
        let addrs: Vec<String> = s.addrs.iter().map(|a| a.to_string_for_test()).collect();
        assert_eq!(addrs, ["198.18.1.0/32 dev flannel.1"]);
        let routes: Vec<String> = s.routes.iter().map(ToString::to_string).collect();
        assert_eq!(routes, ["198.18.0.0/16 dev flannel.1"]);
        assert!(s.neighs.is_empty() && s.fdb.is_empty());
        // Learned (non-permanent) entries are never observed, so the diff never touches them;
        // observed permanent per-peer entries left by the default mode are removed.
        let mut observed = s.clone();
        observed.neighs.insert(Neigh {
            dev: "flannel.1".into(),
            ip: "198.18.2.0".parse().expect("ip"),
            mac: mac("0e:00:00:00:00:02"),
        });
        let scope = Scope {
            owned_devs: ["flannel.1".to_string()].into(),
            ..Scope::default()
        };
        assert_eq!(diff(&s, &observed, &scope).len(), 1);
        assert!(diff(&s, &s, &scope).is_empty());
    }

    trait ForTest {
        fn to_string_for_test(&self) -> String;
    }

    impl ForTest for Addr {
        fn to_string_for_test(&self) -> String {
            format!("{} dev {}", self.net, self.dev)
        }
    }
}
