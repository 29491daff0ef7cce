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

use ipnet::IpNet;

pub use crate::link::{IpipLink, LinkSpec, VxlanLink, DEFAULT_VXLAN_PORT};
pub use flannel_model::backend_data::MacAddr;

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
    /// Devices flanneld creates, by name.
    pub links: BTreeMap<String, LinkSpec>,
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
