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
//! A device named in [`ObserveScope::devs`] that exists but is not a vxlan device is left out
//! too (with a warning), together with everything on it: the diff then asks for it to be
//! created, and the applier replaces the device in the way (as Flannel deletes and re-creates
//! an incompatible link, whatever its type).
//!
//! The vxlan `port` is stored as the kernel reports it: a device created without `dstport`
//! reports the kernel's default (8472), which `VxlanLink::compatible_with` equates with 0.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use flannel_planner::state::{Addr, Fdb, KernelState, MacAddr, Neigh, Route, VxlanLink};
use futures_util::future::join_all;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteType,
    RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::KernelError;
use crate::netlink::Kernel;

/// Which devices to look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObserveScope {
    /// vxlan devices flanneld manages (e.g. `flannel.1`): the link itself, its addresses,
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
                match vxlan_from_link(name, &link) {
                    Some(v) => {
                        state.links.insert((*name).to_owned(), v);
                        vxlan_devs.insert(index, (*name).to_owned());
                        route_devs.insert(index, (*name).to_owned());
                    }
                    None => tracing::warn!(
                        dev = %name,
                        kind = %link_kind(&link),
                        "device exists but is not a vxlan device; it will be replaced"
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

/// The link's kind (`vxlan`, `veth`, …) for messages; empty when it has none.
fn link_kind(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

/// A vxlan link as [`VxlanLink`]; `None` when the link is not a vxlan device.
pub(crate) fn vxlan_from_link(name: &str, link: &LinkMessage) -> Option<VxlanLink> {
    let mut is_vxlan = false;
    let mut data: &[InfoVxlan] = &[];
    let mut v = VxlanLink {
        name: name.to_owned(),
        vni: 0,
        underlay_index: 0,
        local: IpAddr::from([0, 0, 0, 0]),
        port: 0,
        gbp: false,
        learning: false,
        l2miss: false,
        l3miss: false,
        mtu: 0,
        mac: MacAddr([0; 6]),
        up: link.header.flags.contains(LinkFlags::Up),
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Mtu(m) => v.mtu = *m,
            LinkAttribute::Address(a) => {
                if let Ok(b) = <[u8; 6]>::try_from(a.as_slice()) {
                    v.mac = MacAddr(b);
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Vxlan) => is_vxlan = true,
                        LinkInfo::Data(InfoData::Vxlan(d)) => data = d,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !is_vxlan {
        return None;
    }
    for d in data {
        match d {
            InfoVxlan::Id(id) => v.vni = *id,
            InfoVxlan::Link(i) => v.underlay_index = *i,
            InfoVxlan::Local(a) => v.local = IpAddr::V4(*a),
            InfoVxlan::Local6(a) => v.local = IpAddr::V6(*a),
            InfoVxlan::Port(p) => v.port = *p,
            InfoVxlan::Learning(b) => v.learning = *b,
            InfoVxlan::Gbp => v.gbp = true,
            InfoVxlan::L2Miss(b) => v.l2miss = *b,
            InfoVxlan::L3Miss(b) => v.l3miss = *b,
            _ => {}
        }
    }
    Some(v)
}

/// A global-scope address on one of `devs`.
pub(crate) fn addr_from_msg(a: &AddressMessage, devs: &HashMap<u32, String>) -> Option<Addr> {
    let dev = devs.get(&a.header.index)?;
    if a.header.scope != AddressScope::Universe {
        return None;
    }
    let mut local = None;
    let mut address = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    let net = IpNet::new(ip, a.header.prefix_len).ok()?;
    Some(Addr {
        dev: dev.clone(),
        net,
    })
}

/// The table a route is in (`RTA_TABLE` when present: ids above 255 only travel there).
pub(crate) fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// The destination of a route message (the default route has no `RTA_DST`).
fn route_dst(r: &RouteMessage) -> Option<IpNet> {
    let dst = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(a) => route_ip(a),
        _ => None,
    });
    let dst = match (dst, r.header.address_family) {
        (Some(ip), _) => ip,
        (None, AddressFamily::Inet6) => IpAddr::from([0u16; 8]),
        (None, _) => IpAddr::from([0u8; 4]),
    };
    IpNet::new(dst, r.header.destination_prefix_length).ok()
}

/// A main-table blackhole route's destination (any protocol and metric).
pub(crate) fn blackhole_from_msg(r: &RouteMessage) -> Option<IpNet> {
    if r.header.kind != RouteType::BlackHole
        || route_table(r) != u32::from(RouteHeader::RT_TABLE_MAIN)
    {
        return None;
    }
    route_dst(r)
}

/// A route attribute's address as an `IpAddr` (other families: `None`).
pub(crate) fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A main-table unicast route, not made by the kernel, whose device is one of `devs`.
pub(crate) fn route_from_msg(r: &RouteMessage, devs: &HashMap<u32, String>) -> Option<Route> {
    let h = &r.header;
    if h.kind != RouteType::Unicast
        || h.protocol == RouteProtocol::Kernel
        || h.flags.contains(RouteFlags::Cloned)
    {
        return None;
    }
    let mut oif = None;
    let mut gateway = None;
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = route_ip(a),
            RouteAttribute::Via(RouteVia::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
            _ => {}
        }
    }
    if route_table(r) != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let dev = devs.get(&oif?)?;
    Some(Route {
        dst: route_dst(r)?,
        gateway,
        dev: dev.clone(),
        onlink: h.flags.contains(RouteFlags::Onlink),
    })
}

pub(crate) fn lladdr(attrs: &[NeighbourAttribute]) -> Option<MacAddr> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => {
            <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
        }
        _ => None,
    })
}

pub(crate) fn neigh_dst(attrs: &[NeighbourAttribute]) -> Option<IpAddr> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(d) => match d {
            NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
            NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
            // AF_BRIDGE messages carry NDA_DST as raw bytes.
            NeighbourAddress::Other(b) => match b.len() {
                4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}

/// `NUD_PERMANENT` is set (`bridge fdb … permanent` also sets `NUD_NOARP`).
pub(crate) fn is_permanent(state: NeighbourState) -> bool {
    u16::from(state) & u16::from(NeighbourState::Permanent) != 0
}

/// A permanent ARP/NDP entry on one of `devs`.
pub(crate) fn neigh_from_msg(n: &NeighbourMessage, devs: &HashMap<u32, String>) -> Option<Neigh> {
    let h = &n.header;
    if !matches!(h.family, AddressFamily::Inet | AddressFamily::Inet6)
        || !is_permanent(h.state)
        || h.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    Some(Neigh {
        dev: devs.get(&h.ifindex)?.clone(),
        ip: neigh_dst(&n.attributes)?,
        mac: lladdr(&n.attributes)?,
    })
}

/// A permanent vxlan FDB entry (`self`, with a destination) on one of `devs`.
pub(crate) fn fdb_from_msg(n: &NeighbourMessage, devs: &HashMap<u32, String>) -> Option<Fdb> {
    let h = &n.header;
    if h.family != AddressFamily::Bridge
        || !is_permanent(h.state)
        || !h.flags.contains(NeighbourFlags::Own)
    {
        return None;
    }
    Some(Fdb {
        dev: devs.get(&h.ifindex)?.clone(),
        mac: lladdr(&n.attributes)?,
        dst: neigh_dst(&n.attributes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn devs() -> HashMap<u32, String> {
        [(4, "flannel.1".to_string()), (2, "eth0".to_string())].into()
    }

    fn route(proto: RouteProtocol, table: u8, oif: u32) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = 24;
        r.header.table = table;
        r.header.protocol = proto;
        r.header.kind = RouteType::Unicast;
        r.header.flags = RouteFlags::Onlink;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(198, 18, 2, 0),
            )));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                198, 18, 2, 0,
            ))));
        r.attributes.push(RouteAttribute::Oif(oif));
        r
    }

    #[test]
    fn routes_keep_main_table_non_kernel_routes_on_named_devices() {
        let main = RouteHeader::RT_TABLE_MAIN;
        let got = route_from_msg(&route(RouteProtocol::Boot, main, 4), &devs());
        assert_eq!(
            got,
            Some(Route {
                dst: "198.18.2.0/24".parse().expect("net"),
                gateway: Some("198.18.2.0".parse().expect("ip")),
                dev: "flannel.1".into(),
                onlink: true,
            })
        );
        assert_eq!(
            route_from_msg(&route(RouteProtocol::Kernel, main, 4), &devs()),
            None
        );
        assert_eq!(
            route_from_msg(&route(RouteProtocol::Boot, 255, 4), &devs()),
            None,
            "local table"
        );
        assert_eq!(
            route_from_msg(&route(RouteProtocol::Boot, main, 9), &devs()),
            None,
            "other device"
        );
        // A table id above 255 travels in RTA_TABLE.
        let mut big = route(RouteProtocol::Boot, 252, 4);
        big.attributes.push(RouteAttribute::Table(1000));
        assert_eq!(route_from_msg(&big, &devs()), None);
    }

    #[test]
    fn neighbours_must_be_permanent_and_fdb_self() {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = 4;
        n.header.state = NeighbourState::Permanent;
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                Ipv4Addr::new(198, 18, 2, 0),
            )));
        n.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            0x0e, 0, 0, 0, 0, 2,
        ]));
        assert_eq!(
            neigh_from_msg(&n, &devs()).map(|x| x.mac.to_string()),
            Some("0e:00:00:00:00:02".into())
        );
        n.header.state = NeighbourState::Reachable;
        assert_eq!(neigh_from_msg(&n, &devs()), None);

        let mut f = NeighbourMessage::default();
        f.header.family = AddressFamily::Bridge;
        f.header.ifindex = 4;
        f.header.state = NeighbourState::Permanent;
        f.header.flags = NeighbourFlags::Own;
        f.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            0x0e, 0, 0, 0, 0, 2,
        ]));
        f.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Other(
                vec![192, 0, 2, 2],
            )));
        assert_eq!(
            fdb_from_msg(&f, &devs()),
            Some(Fdb {
                dev: "flannel.1".into(),
                mac: MacAddr([0x0e, 0, 0, 0, 0, 2]),
                dst: "192.0.2.2".parse().expect("ip"),
            })
        );
        // What `bridge fdb replace … self permanent` makes: NUD_NOARP | NUD_PERMANENT.
        f.header.state = NeighbourState::Other(0xc0);
        assert!(fdb_from_msg(&f, &devs()).is_some());
        f.header.state = NeighbourState::Reachable;
        assert_eq!(fdb_from_msg(&f, &devs()), None, "learned");
        f.header.state = NeighbourState::Permanent;
        f.header.flags = NeighbourFlags::empty();
        assert_eq!(fdb_from_msg(&f, &devs()), None, "not NTF_SELF");
    }

    #[test]
    fn ipv6_routes_and_blackholes_are_read() {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet6;
        r.header.destination_prefix_length = 64;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.protocol = RouteProtocol::Boot;
        r.header.kind = RouteType::Unicast;
        r.header.flags = RouteFlags::Onlink;
        let net: std::net::Ipv6Addr = "2001:db8:f000:2::".parse().expect("ip");
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(net)));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(net)));
        r.attributes.push(RouteAttribute::Oif(4));
        assert_eq!(
            route_from_msg(&r, &devs()),
            Some(Route {
                dst: "2001:db8:f000:2::/64".parse().expect("net"),
                gateway: Some(IpAddr::V6(net)),
                dev: "flannel.1".into(),
                onlink: true,
            })
        );
        assert_eq!(blackhole_from_msg(&r), None, "not a blackhole");

        // `ip -6 route add blackhole …` (the kernel puts it on lo) and `ip route add blackhole …`.
        r.header.kind = RouteType::BlackHole;
        r.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet6(net)),
            RouteAttribute::Oif(1),
        ];
        assert_eq!(route_from_msg(&r, &devs()), None);
        assert_eq!(
            blackhole_from_msg(&r),
            Some("2001:db8:f000:2::/64".parse().expect("net"))
        );
        let mut b = route(RouteProtocol::Static, RouteHeader::RT_TABLE_MAIN, 4);
        b.header.kind = RouteType::BlackHole;
        b.attributes
            .retain(|a| matches!(a, RouteAttribute::Destination(_)));
        assert_eq!(
            blackhole_from_msg(&b),
            Some("198.18.2.0/24".parse().expect("net"))
        );
        b.attributes.push(RouteAttribute::Table(1000));
        assert_eq!(blackhole_from_msg(&b), None, "other table");
    }

    #[test]
    fn non_vxlan_links_are_not_vxlan() {
        let mut l = LinkMessage::default();
        l.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Veth,
            )]));
        assert_eq!(vxlan_from_link("flannel.1", &l), None);
        l.attributes = vec![
            LinkAttribute::Mtu(1450),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(1),
                    InfoVxlan::Port(8472),
                    InfoVxlan::Learning(false),
                    InfoVxlan::Gbp,
                ])),
            ]),
        ];
        let v = vxlan_from_link("flannel.1", &l).expect("vxlan");
        assert_eq!(
            (v.vni, v.port, v.mtu, v.gbp, v.learning),
            (1, 8472, 1450, true, false)
        );
    }
}
