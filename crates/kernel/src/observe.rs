//! Reading the kernel state flanneld manages into a [`KernelState`]: the vxlan devices it
//! names, their addresses, permanent neighbours and FDB entries, the IPv4 and IPv6 main-table
//! routes on those devices and on the other devices the caller names, and (when asked) the
//! main-table blackhole routes.
//!
//! What is left out, so that the diff never touches it:
//! - routes the kernel made itself (`proto kernel`: connected routes of addresses, IPv6
//!   link-local prefixes), routes of other tables, non-unicast routes other than blackholes,
//!   cached routes, multipath routes (no single device);
//! - addresses that are not of global scope (the IPv6 link-local address every device gets);
//! - neighbours and FDB entries without `NUD_PERMANENT` (learned or resolved by the kernel).
//!
//! A device named in [`ObserveScope::devs`] that exists but is not of a kind flanneld manages
//! (vxlan, ipip) is left out too (with a warning), together with everything on it: the diff
//! then asks for it to be created, and the applier replaces the device in the way (as Flannel
//! deletes and re-creates an incompatible vxlan link, whatever its type) or, for
//! `flannel.ipip`, refuses to (as Flannel does).
//!
//! The vxlan `port` is stored as the kernel reports it: a device created without `dstport`
//! reports the kernel's default (8472), which `VxlanLink::compatible_with` equates with 0.
//!
//! Links are decoded by their kind's file in [`crate::link`].

use std::collections::{BTreeSet, HashMap};

use flannel_planner::state::KernelState;
use futures_util::future::join_all;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::decode::{
    addr_from_msg, blackhole_from_msg, fdb_from_msg, neigh_from_msg, route_from_msg,
};
use crate::error::KernelError;
use crate::link::{self, link_kind};
use crate::netlink::Kernel;

/// Which devices to look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObserveScope {
    /// Devices flanneld manages (e.g. `flannel.1`, `flannel.ipip`): the link itself, its addresses,
    /// routes, permanent neighbours and FDB entries.
    pub devs: Vec<String>,
    /// Other devices whose main-table routes (IPv4 and IPv6) matter (e.g. the external
    /// interface, for host-gw and DirectRouting routes).
    pub route_devs: Vec<String>,
    /// Report the main-table blackhole routes (both families) in `KernelState::blackholes`.
    pub blackholes: bool,
}

impl Kernel {
    /// Read the state within `scope`. Devices that do not exist are simply absent.
    pub async fn observe(&self, scope: &ObserveScope) -> Result<KernelState, KernelError> {
        let mut state = KernelState::default();
        // ifindex → name of the vxlan devices, and of every device whose routes we report.
        let mut vxlan_devs: HashMap<u32, String> = HashMap::new();
        let mut route_devs: HashMap<u32, String> = HashMap::new();

        let names: BTreeSet<&str> = scope
            .devs
            .iter()
            .chain(&scope.route_devs)
            .map(String::as_str)
            .collect();
        let links = join_all(names.iter().map(|n| self.get_link(n))).await;
        for (name, link) in names.iter().zip(links) {
            let Some(link) = link? else { continue };
            let index = link.header.index;
            if scope.devs.iter().any(|d| d == name) {
                match link::decode(name, &link) {
                    Some(v) => {
                        state.links.insert((*name).to_owned(), v);
                        vxlan_devs.insert(index, (*name).to_owned());
                        route_devs.insert(index, (*name).to_owned());
                    }
                    None => tracing::warn!(
                        dev = %name,
                        kind = %link_kind(&link),
                        "device exists but is not a {} device",
                        link::KINDS
                    ),
                }
            } else {
                route_devs.insert(index, (*name).to_owned());
            }
        }

        let want_entries = !vxlan_devs.is_empty();
        let want_routes = !route_devs.is_empty() || scope.blackholes;
        // One dump at a time: the kernel allows a single dump in progress per netlink socket
        // and answers a concurrent one with EBUSY.
        let addrs = if want_entries {
            self.dump(
                "addresses",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            )
            .await?
        } else {
            Vec::new()
        };
        let mut routes = Vec::new();
        if want_routes {
            for (what, family) in [
                ("IPv4 routes", AddressFamily::Inet),
                ("IPv6 routes", AddressFamily::Inet6),
            ] {
                let mut msg = RouteMessage::default();
                msg.header.address_family = family;
                routes.extend(self.dump(what, RouteNetlinkMessage::GetRoute(msg)).await?);
            }
        }
        let (neighs, fdb) = if want_entries {
            // AF_UNSPEC: the ARP and NDP tables.
            let neighs = self
                .dump(
                    "neighbours",
                    RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
                )
                .await?;
            let mut msg = NeighbourMessage::default();
            msg.header.family = AddressFamily::Bridge;
            let fdb = self
                .dump("FDB", RouteNetlinkMessage::GetNeighbour(msg))
                .await?;
            (neighs, fdb)
        } else {
            (Vec::new(), Vec::new())
        };

        for m in &addrs {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                state.addrs.extend(addr_from_msg(a, &vxlan_devs));
            }
        }
        for m in &routes {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                state.routes.extend(route_from_msg(r, &route_devs));
                if scope.blackholes {
                    state.blackholes.extend(blackhole_from_msg(r));
                }
            }
        }
        for m in &neighs {
            if let RouteNetlinkMessage::NewNeighbour(n) = m {
                state.neighs.extend(neigh_from_msg(n, &vxlan_devs));
            }
        }
        for m in &fdb {
            if let RouteNetlinkMessage::NewNeighbour(n) = m {
                state.fdb.extend(fdb_from_msg(n, &vxlan_devs));
            }
        }
        Ok(state)
    }
}
