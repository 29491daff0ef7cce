//! Decoding rtnetlink messages into plain facts: links, addresses and default routes for
//! interface selection ([`crate::select`]), and the managed state — addresses, routes,
//! blackhole routes, permanent neighbours and FDB entries — for [`crate::observe`]. Pure: no
//! socket is touched here, so all of it is unit-tested with hand-built messages.

use std::collections::HashMap;
use std::net::IpAddr;

use flannel_planner::state::{Addr, Fdb, MacAddr, Neigh, Route};
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteType,
    RouteVia,
};
use netlink_packet_route::AddressFamily;

use crate::select::{AddrFacts, LinkFacts};

pub(crate) fn link_facts(msg: &LinkMessage) -> LinkFacts {
    let mut facts = LinkFacts {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => facts.name = n.clone(),
            LinkAttribute::Mtu(m) => facts.mtu = *m,
            _ => {}
        }
    }
    facts
}

pub(crate) fn addr_facts(msg: &AddressMessage) -> Option<AddrFacts> {
    let mut local = None;
    let mut address = None;
    // IFA_FLAGS (32 bit) supersedes the 8-bit header flags when present.
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    let addr = local.or(address)?;
    Some(AddrFacts {
        index: msg.header.index,
        addr,
        prefix_len: msg.header.prefix_len,
        permanent: flags.contains(AddressFlags::Permanent),
        deprecated: flags.contains(AddressFlags::Deprecated),
        // IFA_F_TEMPORARY has the same value as IFA_F_SECONDARY.
        temporary: flags.contains(AddressFlags::Secondary),
    })
}

/// Output interfaces of the main table's default routes, in dump order (cloned cache entries
/// skipped, as vishvananda/netlink's `RouteList` does).
pub(crate) fn default_route_oifs(routes: &[RouteMessage]) -> Vec<u32> {
    routes
        .iter()
        .filter(|r| !r.header.flags.contains(RouteFlags::Cloned))
        .filter(|r| route_table(r) == u32::from(RouteHeader::RT_TABLE_MAIN))
        .filter(|r| r.header.destination_prefix_length == 0)
        .map(|r| {
            r.attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                })
                .unwrap_or(0)
        })
        .collect()
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
}
