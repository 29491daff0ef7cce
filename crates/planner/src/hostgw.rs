//! The host-gw backend's decisions: no encapsulation, one route per peer via its public IP on
//! the external interface (hosts must share an L2 segment).

use std::net::{IpAddr, Ipv4Addr};

use flannel_model::Lease;
use ipnet::IpNet;

use crate::state::{KernelState, Route};
use crate::vxlan::{ExtIface, Skipped};

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

/// Desired routes: `<peer subnet> via <peer PublicIP> dev <ext>` for every host-gw peer.
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
        state.routes.insert(Route {
            dst: IpNet::V4(lease.subnet.ipv4),
            gateway: Some(IpAddr::V4(lease.attrs.public_ip)),
            dev: ext.name.clone(),
            onlink: false,
        });
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
}
