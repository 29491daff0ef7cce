//! The addressing plan of every benchmark (pure): which pod subnets, public IPs and VTEP MACs
//! the synthetic peers get, the etcd keys and values that announce them, and the `ip -batch` /
//! `bridge -batch` text that loads the same entries for the iproute2 floor.
//!
//! - Pod network: `198.18.0.0/16` (benchmark range, RFC 2544). `SubnetLen` is the smallest of
//!   /24…/29 that leaves room for the peers, flanneld's own lease and some slack.
//! - Peer `i` (0-based) holds subnet number `i + 1` (Flannel's `SubnetMin` is the second
//!   subnet), public IP `198.19.<i / 254>.<i % 254 + 1>` and VTEP MAC `0e:62:65:<i as 24 bits>`
//!   (locally administered, unicast). `198.19.0.0/16` is inside the same benchmark range and
//!   routed nowhere: the namespaces have no route out, and nothing is ever sent.
//! - The host under test has `eth0` = `192.0.2.1/24`; etcd listens on `192.0.2.254:2379`
//!   (documentation range, inside the lab's namespaces only).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use ipnet::Ipv4Net;

/// Flannel's default etcd prefix.
pub const ETCD_PREFIX: &str = "/coreos.com/network";
/// The pod network.
pub const POD_NETWORK: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 16) {
    Ok(n) => n,
    Err(_) => panic!("constant network"),
};
/// First public IP block of the peers (`198.19.0.0/16`).
pub const PUBLIC_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
/// The address of the host under test (flanneld or the floor), on `eth0`.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Prefix length of the lab's underlay.
pub const UNDERLAY_LEN: u8 = 24;
/// Where etcd listens for the host under test.
pub const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The vxlan device flanneld creates for VNI 1.
pub const VXLAN_DEV: &str = "flannel.1";
/// MTU of the floor's vxlan device (veth 1500 − 50, as flanneld computes it).
pub const VXLAN_MTU: u32 = 1450;
/// The floor device's MAC (any locally administered unicast address will do).
pub const FLOOR_MAC: [u8; 6] = [0x0e, 0x00, 0x5e, 0x00, 0x00, 0x01];
/// Free subnets kept beyond the peers and flanneld's own.
const SLACK: usize = 16;
/// Peers the public-IP scheme can address (254 per /24 of 198.19.0.0/16).
pub const MAX_PEERS: usize = 254 * 256;

/// One synthetic peer host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its pod subnet.
    pub subnet: Ipv4Net,
    /// Its `PublicIP` (the vxlan FDB destination).
    pub public_ip: Ipv4Addr,
    /// Its VTEP MAC (`BackendData.VtepMAC`).
    pub mac: [u8; 6],
}

/// The network config and the peers of one benchmark setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `SubnetLen` of the network config.
    pub subnet_len: u8,
    /// The peers, in subnet order.
    pub peers: Vec<Peer>,
}

/// The smallest `SubnetLen` in /24…/29 whose usable subnets (all but the first) hold `n`
/// peers, flanneld's own lease and some slack; `None` when even /29 is too small.
pub fn subnet_len_for(n: usize) -> Option<u8> {
    (24u8..=29).find(|len| {
        let usable = (1usize << (len - POD_NETWORK.prefix_len())) - 1;
        usable >= n + 1 + SLACK
    })
}

impl Plan {
    /// A plan for `n` peers (subnets `1..=n`).
    pub fn new(n: usize) -> Result<Plan> {
        let Some(subnet_len) = subnet_len_for(n) else {
            bail!("{n} peers do not fit in {POD_NETWORK} with /29 subnets");
        };
        if n > MAX_PEERS {
            bail!("at most {MAX_PEERS} peers have distinct public IPs in 198.19.0.0/16");
        }
        let mut plan = Plan {
            subnet_len,
            peers: Vec::with_capacity(n),
        };
        for i in 0..n {
            plan.peers.push(plan.peer(i));
        }
        Ok(plan)
    }

    /// Subnet number `k` (0 is the network's first, never handed out).
    pub fn subnet(&self, k: usize) -> Ipv4Net {
        let base = u32::from(POD_NETWORK.network());
        let step = 1u32 << (32 - u32::from(self.subnet_len));
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        let addr = Ipv4Addr::from(base.wrapping_add(k.wrapping_mul(step)));
        Ipv4Net::new(addr, self.subnet_len).unwrap_or(POD_NETWORK)
    }

    /// How many subnets the network has (including number 0).
    pub fn subnet_count(&self) -> usize {
        1usize << (self.subnet_len - POD_NETWORK.prefix_len())
    }

    /// Peer number `i` (it need not be in `self.peers`: the propagation benchmark adds more).
    pub fn peer(&self, i: usize) -> Peer {
        let octets = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
        let public =
            u32::from(PUBLIC_BASE) + u32::try_from(((i / 254) << 8) | (i % 254 + 1)).unwrap_or(0);
        Peer {
            subnet: self.subnet(i + 1),
            public_ip: Ipv4Addr::from(public),
            mac: [0x0e, 0x62, 0x65, octets[1], octets[2], octets[3]],
        }
    }

    /// A subnet no peer of the plan holds (the floor's own address).
    pub fn own_subnet(&self) -> Ipv4Net {
        self.subnet(self.peers.len() + 1)
    }

    /// `/coreos.com/network/config` for this plan (vxlan, VNI 1).
    pub fn config_json(&self) -> String {
        format!(
            r#"{{"Network":"{POD_NETWORK}","SubnetLen":{},"Backend":{{"Type":"vxlan"}}}}"#,
            self.subnet_len
        )
    }

    /// The `ip -batch` text of the floor: the vxlan device as flanneld creates it, its
    /// address, then every peer's neighbour and route.
    pub fn ip_batch(&self) -> String {
        let mut s = String::with_capacity(self.peers.len() * 140 + 256);
        let _ = writeln!(
            s,
            "link add {VXLAN_DEV} address {} mtu {VXLAN_MTU} type vxlan id 1 dev eth0 local {HOST_IP} nolearning",
            mac_str(&FLOOR_MAC)
        );
        let _ = writeln!(s, "link set {VXLAN_DEV} up");
        let _ = writeln!(
            s,
            "addr add {}/32 dev {VXLAN_DEV}",
            self.own_subnet().network()
        );
        for p in &self.peers {
            let _ = writeln!(
                s,
                "neigh replace {} lladdr {} dev {VXLAN_DEV} nud permanent",
                p.subnet.network(),
                mac_str(&p.mac)
            );
        }
        for p in &self.peers {
            let _ = writeln!(
                s,
                "route replace {} via {} dev {VXLAN_DEV} onlink proto boot",
                p.subnet,
                p.subnet.network()
            );
        }
        s
    }

    /// The `bridge -batch` text of the floor: every peer's FDB entry.
    pub fn bridge_batch(&self) -> String {
        let mut s = String::with_capacity(self.peers.len() * 80);
        for p in &self.peers {
            let _ = writeln!(
                s,
                "fdb replace {} dev {VXLAN_DEV} dst {} self permanent",
                mac_str(&p.mac),
                p.public_ip
            );
        }
        s
    }
}

/// The etcd key of a lease on `subnet`: `/coreos.com/network/subnets/198.18.0.8-29`.
pub fn lease_key(subnet: Ipv4Net) -> String {
    format!(
        "{ETCD_PREFIX}/subnets/{}-{}",
        subnet.network(),
        subnet.prefix_len()
    )
}

/// The lease value Flannel writes for a vxlan host.
pub fn lease_value(peer: &Peer) -> String {
    format!(
        r#"{{"PublicIP":"{}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
        peer.public_ip,
        mac_str(&peer.mac)
    )
}

/// `0e:62:65:00:00:01`.
pub fn mac_str(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_len_leaves_room_for_peers_own_lease_and_slack() {
        assert_eq!(subnet_len_for(3), Some(24));
        assert_eq!(subnet_len_for(203), Some(24));
        assert_eq!(subnet_len_for(255 - 17), Some(24));
        assert_eq!(subnet_len_for(255 - 16), Some(25));
        assert_eq!(subnet_len_for(1000), Some(26));
        assert_eq!(subnet_len_for(5000), Some(29));
        assert_eq!(subnet_len_for(8191 - 17), Some(29));
        assert_eq!(subnet_len_for(8191 - 16), None);
        assert!(Plan::new(9000).is_err());
    }

    #[test]
    fn peers_get_distinct_subnets_ips_and_macs() {
        let plan = Plan::new(1000).expect("plan");
        assert_eq!(plan.subnet_len, 26);
        assert_eq!(plan.subnet_count(), 1024);
        let p0 = plan.peers[0];
        assert_eq!(p0.subnet.to_string(), "198.18.0.64/26");
        assert_eq!(p0.public_ip, Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(mac_str(&p0.mac), "0e:62:65:00:00:00");
        let p = plan.peers[254];
        assert_eq!(p.public_ip, Ipv4Addr::new(198, 19, 1, 1));
        assert_eq!(mac_str(&p.mac), "0e:62:65:00:00:fe");
        assert_eq!(plan.peers[999].subnet.to_string(), "198.18.250.0/26");
        assert_eq!(plan.own_subnet().to_string(), "198.18.250.64/26");
        let mut subnets: Vec<_> = plan.peers.iter().map(|p| p.subnet).collect();
        let mut ips: Vec<_> = plan.peers.iter().map(|p| p.public_ip).collect();
        let mut macs: Vec<_> = plan.peers.iter().map(|p| p.mac).collect();
        for v in [subnets.len(), ips.len(), macs.len()] {
            assert_eq!(v, 1000);
        }
        subnets.dedup();
        ips.sort();
        ips.dedup();
        macs.sort();
        macs.dedup();
        assert_eq!((subnets.len(), ips.len(), macs.len()), (1000, 1000, 1000));
        assert!(plan.peers.iter().all(|p| POD_NETWORK.contains(&p.subnet)
            && p.subnet.prefix_len() == 26
            && !POD_NETWORK.contains(&p.public_ip)));
    }

    #[test]
    fn last_peer_of_a_full_plan_fits() {
        let plan = Plan::new(5000).expect("plan");
        let last = plan.peers[4999];
        assert_eq!(last.subnet.to_string(), "198.18.156.64/29");
        assert_eq!(last.public_ip, Ipv4Addr::new(198, 19, 19, 174));
        assert!(plan.own_subnet().network() > last.subnet.network());
    }

    #[test]
    fn etcd_key_value_and_config_are_flannels() {
        let plan = Plan::new(2).expect("plan");
        assert_eq!(
            plan.config_json(),
            r#"{"Network":"198.18.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#
        );
        assert_eq!(
            lease_key(plan.peers[1].subnet),
            "/coreos.com/network/subnets/198.18.2.0-24"
        );
        assert_eq!(
            lease_value(&plan.peers[1]),
            r#"{"PublicIP":"198.19.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:62:65:00:00:01"}}"#
        );
    }

    #[test]
    fn batch_files_load_the_same_entries_flanneld_programs() {
        let plan = Plan::new(2).expect("plan");
        assert_eq!(
            plan.ip_batch(),
            "link add flannel.1 address 0e:00:5e:00:00:01 mtu 1450 type vxlan id 1 dev eth0 \
             local 192.0.2.1 nolearning\n\
             link set flannel.1 up\n\
             addr add 198.18.3.0/32 dev flannel.1\n\
             neigh replace 198.18.1.0 lladdr 0e:62:65:00:00:00 dev flannel.1 nud permanent\n\
             neigh replace 198.18.2.0 lladdr 0e:62:65:00:00:01 dev flannel.1 nud permanent\n\
             route replace 198.18.1.0/24 via 198.18.1.0 dev flannel.1 onlink proto boot\n\
             route replace 198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink proto boot\n"
        );
        assert_eq!(
            plan.bridge_batch(),
            "fdb replace 0e:62:65:00:00:00 dev flannel.1 dst 198.19.0.1 self permanent\n\
             fdb replace 0e:62:65:00:00:01 dev flannel.1 dst 198.19.0.2 self permanent\n"
        );
    }
}
