//! The host-gw backend's decisions: no encapsulation, one route per peer via its public IP on
//! the external interface (hosts must share an L2 segment). With IPv6 enabled, a peer's IPv6
//! subnet gets its own route via the peer's `PublicIPv6`.

use std::net::{IpAddr, Ipv4Addr};

use flannel_model::Lease;
use ipnet::IpNet;

use crate::ext_iface::ExtIface;
use crate::skipped::Skipped;
use crate::state::{KernelState, Route};

/// Flannel's refusal to run behind NAT.
pub const NAT_ERROR: &str = "your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend";

/// host-gw needs peers to reach us at our interface address.
pub fn check_not_nat(public_ip: Ipv4Addr, iface_addr: Ipv4Addr) -> Result<(), &'static str> {
    if public_ip == iface_addr {
        Ok(())
    } else {
        Err(NAT_ERROR)
    }
}

/// Desired routes: `<peer subnet> via <peer PublicIP> dev <ext>` for every host-gw peer (when
/// IPv4 is on: `ext` has an IPv4 address and the peer an IPv4 subnet), and,
/// when IPv6 is on (`ext.addr_v6` is set), `<peer IPv6 subnet> via <peer PublicIPv6> dev <ext>`
/// for peers that have both.
pub fn desired_state<'a>(
    ext: &ExtIface,
    peers: impl IntoIterator<Item = &'a Lease>,
) -> (KernelState, Vec<Skipped>) {
    let mut state = KernelState::default();
    let mut skipped = Vec::new();
    for lease in peers {
        if lease.attrs.backend_type != "host-gw" {
            skipped.push(Skipped {
                subnet: lease.subnet,
                reason: format!("backend type {:?} is not host-gw", lease.attrs.backend_type),
            });
            continue;
        }
        if let (Some(_), Some(subnet4)) = (ext.v4(), lease.subnet.ipv4_net()) {
            state.routes.insert(Route {
                dst: IpNet::V4(subnet4),
                gateway: Some(IpAddr::V4(lease.attrs.public_ip)),
                dev: ext.name.clone(),
                onlink: false,
            });
        }
        if ext.addr_v6.is_none() {
            continue;
        }
        match (lease.subnet.ipv6, lease.attrs.public_ipv6) {
            (Some(subnet6), Some(gw6)) => {
                state.routes.insert(Route {
                    dst: IpNet::V6(subnet6),
                    gateway: Some(IpAddr::V6(gw6)),
                    dev: ext.name.clone(),
                    onlink: false,
                });
            }
            (Some(_), None) => skipped.push(Skipped {
                subnet: lease.subnet,
                reason: "IPv6 part: no PublicIPv6".into(),
            }),
            (None, _) => {}
        }
    }
    (state, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_model::{LeaseAttrs, SubnetKey};

    fn peer(subnet: &str, ip: u8, backend: &str) -> Lease {
        Lease {
            subnet: SubnetKey {
                ipv4: subnet.parse().expect("cidr"),
                ipv6: None,
            },
            attrs: LeaseAttrs {
                public_ip: Ipv4Addr::new(192, 0, 2, ip),
                public_ipv6: None,
                backend_type: backend.into(),
                backend_data: None,
                backend_v6_data: None,
            },
            expiration: None,
        }
    }

    #[test]
    fn one_route_per_host_gw_peer_via_its_public_ip() {
        let ext = ExtIface {
            name: "eth0".into(),
            index: 2,
            mtu: 1500,
            addr: Ipv4Addr::new(192, 0, 2, 1),
            addr_v6: None,
        };
        let peers = [
            peer("198.18.2.0/24", 2, "host-gw"),
            peer("198.18.3.0/24", 3, "vxlan"),
        ];
        let (s, skipped) = desired_state(&ext, &peers);
        let routes: Vec<String> = s
            .routes
            .iter()
            .map(|r| format!("{} via {:?} dev {}", r.dst, r.gateway, r.dev))
            .collect();
        assert_eq!(routes, ["198.18.2.0/24 via Some(192.0.2.2) dev eth0"]);
        assert_eq!(skipped.len(), 1);
        assert!(s.links.is_empty() && s.neighs.is_empty() && s.fdb.is_empty());
    }

    #[test]
    fn nat_is_refused_with_flannels_message() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(check_not_nat(a, a), Ok(()));
        assert_eq!(
            check_not_nat(Ipv4Addr::new(203, 0, 113, 9), a),
            Err(NAT_ERROR)
        );
    }

    #[test]
    fn dual_stack_peers_get_a_v6_route_via_their_public_ipv6() {
        let ext = ExtIface {
            name: "eth0".into(),
            index: 2,
            mtu: 1500,
            addr: Ipv4Addr::new(192, 0, 2, 1),
            addr_v6: Some("2001:db8:1::1".parse().expect("ip")),
        };
        let mut dual = peer("198.18.2.0/24", 2, "host-gw");
        dual.subnet.ipv6 = Some("2001:db8:f000:2::/64".parse().expect("cidr"));
        dual.attrs.public_ipv6 = Some("2001:db8:1::2".parse().expect("ip"));
        let v4_only = peer("198.18.3.0/24", 3, "host-gw");
        let mut no_public_v6 = peer("198.18.4.0/24", 4, "host-gw");
        no_public_v6.subnet.ipv6 = Some("2001:db8:f000:4::/64".parse().expect("cidr"));
        let peers = [dual.clone(), v4_only, no_public_v6];
        let (s, skipped) = desired_state(&ext, &peers);
        let routes: Vec<String> = s
            .routes
            .iter()
            .map(|r| format!("{} via {:?} dev {}", r.dst, r.gateway, r.dev))
            .collect();
        assert_eq!(
            routes,
            [
                "198.18.2.0/24 via Some(192.0.2.2) dev eth0",
                "198.18.3.0/24 via Some(192.0.2.3) dev eth0",
                "198.18.4.0/24 via Some(192.0.2.4) dev eth0",
                "2001:db8:f000:2::/64 via Some(2001:db8:1::2) dev eth0",
            ]
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].reason, "IPv6 part: no PublicIPv6");
        // An IPv4-only host ignores the IPv6 parts.
        let v4_ext = ExtIface {
            addr_v6: None,
            ..ext
        };
        let (s, skipped) = desired_state(&v4_ext, &[dual]);
        assert_eq!(s.routes.len(), 1);
        assert!(skipped.is_empty());
    }
}
