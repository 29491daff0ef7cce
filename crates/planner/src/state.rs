//! The kernel state flanneld manages, as plain data. Desired and observed state share these
//! types, so a diff is a comparison of two values.
//!
//! Both address families live in the same sets: an IPv6 route, neighbour or FDB entry (on
//! `flannel-v6.<VNI>` or the external interface) is keyed exactly like an IPv4 one.
//!
//! Devices are named, not numbered: a re-created `flannel.1` gets a new ifindex, and the
//! applier resolves names when it talks netlink.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A MAC address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case (as Go's ParseMAC does for
    /// 6-byte addresses).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// A vxlan device as flanneld wants it (`ip link add flannel.1 type vxlan …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLink {
    pub name: String,
    pub vni: u32,
    /// ifindex of the underlay device (`dev`).
    pub underlay_index: u32,
    /// Underlay source address (`local`).
    pub local: IpAddr,
    /// UDP destination port; 0 lets the kernel use its default (8472).
    pub port: u16,
    pub gbp: bool,
    pub learning: bool,
    /// Kernel miss notifications (the on-demand vxlan mode).
    pub l2miss: bool,
    pub l3miss: bool,
    pub mtu: u32,
    pub mac: MacAddr,
    /// Administratively up (desired: always).
    pub up: bool,
}

impl VxlanLink {
    /// True when an existing device can be kept and only its MTU/MAC adjusted; false means it
    /// must be deleted and created again (Flannel's `vxlanLinksIncompat`).
    pub fn compatible_with(&self, observed: &VxlanLink) -> bool {
        self.vni == observed.vni
            && self.underlay_index == observed.underlay_index
            && self.local == observed.local
            && effective_port(self.port) == effective_port(observed.port)
            && self.gbp == observed.gbp
            && self.learning == observed.learning
            && self.l2miss == observed.l2miss
            && self.l3miss == observed.l3miss
    }
}

/// The kernel's default vxlan port when none is given.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;

fn effective_port(port: u16) -> u16 {
    if port == 0 {
        DEFAULT_VXLAN_PORT
    } else {
        port
    }
}

/// An address on a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub dev: String,
    pub net: IpNet,
}

/// A route in the main table, identified by its destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub dev: String,
    pub onlink: bool,
}

impl fmt::Display for Route {
    /// In `ip route` syntax: `198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev {}", self.dev)?;
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// A permanent neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neigh {
    pub dev: String,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// A permanent forwarding-database entry on a vxlan device (`bridge fdb … self permanent`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fdb {
    pub dev: String,
    pub mac: MacAddr,
    pub dst: IpAddr,
}

/// Everything flanneld manages on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    pub links: BTreeMap<String, VxlanLink>,
    pub addrs: BTreeSet<Addr>,
    pub routes: BTreeSet<Route>,
    pub neighs: BTreeSet<Neigh>,
    pub fdb: BTreeSet<Fdb>,
    /// Main-table blackhole routes, by destination (`ip route add blackhole <dst>`,
    /// `--ip-blackhole-route`). They have no device; any blackhole route for a destination
    /// counts, whatever its metric or protocol.
    pub blackholes: BTreeSet<IpNet>,
}

impl KernelState {
    /// Number of per-peer entries (routes + neighbours + FDB entries).
    pub fn entry_count(&self) -> usize {
        self.routes.len() + self.neighs.len() + self.fdb.len()
    }
}
