//! Every pure decoder of this crate behind one entry point, for the fuzz targets in `fuzz/`
//! (the daemon does not use it): one rtnetlink message, as a dump or a notification delivers
//! it, run through each decoder that could meet a message of its type.

use std::collections::HashMap;

use flannel_planner::link::LinkSpec;
use flannel_planner::state::{Addr, Fdb, Neigh, Route};
use ipnet::IpNet;
use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::RouteNetlinkMessage;

use crate::decode::{
    addr_from_msg, blackhole_from_msg, fdb_from_msg, neigh_from_msg, route_from_msg,
};
use crate::miss::{learned_fdb, learned_neigh, miss_from_msg, MissEvent};
use crate::monitor::{event, KernelEvent};

/// What each decoder made of one message (`None`: not for that decoder, or rejected).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The monitor's event ([`crate::monitor`]); updates the name cache passed in.
    pub event: Option<KernelEvent>,
    /// The on-demand miss ([`crate::miss`]), for any neighbour message.
    pub miss: Option<MissEvent>,
    /// A learned neighbour / FDB entry on the message's device, as the miss cleanup lists them.
    pub learned_neigh: Option<Neigh>,
    /// See `learned_neigh`.
    pub learned_fdb: Option<Fdb>,
    /// The observer's view ([`crate::observe`]): a link of a kind we manage (`crate::link`),
    /// named by the name cache.
    pub link: Option<LinkSpec>,
    /// An address on a device of the name cache.
    pub addr: Option<Addr>,
    /// A managed route on a device of the name cache.
    pub route: Option<Route>,
    /// A main-table blackhole route.
    pub blackhole: Option<IpNet>,
    /// A permanent neighbour on a device of the name cache.
    pub neigh: Option<Neigh>,
    /// A permanent FDB entry on a device of the name cache.
    pub fdb: Option<Fdb>,
}

/// Runs every decoder over `msg`; `names` is the ifindex → name cache (the monitor's, also
/// used as the observer's device set) and is updated as the monitor would.
pub fn decode(
    msg: &NetlinkMessage<RouteNetlinkMessage>,
    names: &mut HashMap<u32, String>,
) -> Decoded {
    use netlink_packet_core::NetlinkPayload::InnerMessage;
    use RouteNetlinkMessage as M;

    let mut out = Decoded::default();
    match &msg.payload {
        InnerMessage(M::NewLink(l) | M::DelLink(l) | M::GetLink(l) | M::SetLink(l)) => {
            if let Some(name) = names.get(&l.header.index) {
                out.link = crate::link::decode(name, l);
            }
        }
        InnerMessage(M::NewAddress(a) | M::DelAddress(a) | M::GetAddress(a)) => {
            out.addr = addr_from_msg(a, names);
        }
        InnerMessage(M::NewRoute(r) | M::DelRoute(r) | M::GetRoute(r)) => {
            out.route = route_from_msg(r, names);
            out.blackhole = blackhole_from_msg(r);
        }
        InnerMessage(M::NewNeighbour(n) | M::DelNeighbour(n) | M::GetNeighbour(n)) => {
            out.miss = miss_from_msg(n);
            out.neigh = neigh_from_msg(n, names);
            out.fdb = fdb_from_msg(n, names);
            if let Some(dev) = names.get(&n.header.ifindex) {
                out.learned_neigh = learned_neigh(n, n.header.ifindex, dev);
                out.learned_fdb = learned_fdb(n, n.header.ifindex, dev);
            }
        }
        _ => {}
    }
    out.event = event(names, msg.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
    use netlink_packet_route::AddressFamily;

    #[test]
    fn a_removed_route_is_decoded_by_the_observer_and_the_monitor_alike() {
        let mut names: HashMap<u32, String> = [(3, "flannel.1".to_string())].into();
        let mut r = netlink_packet_route::route::RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.kind = RouteType::Unicast;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.destination_prefix_length = 24;
        let gw = std::net::Ipv4Addr::new(198, 18, 2, 0);
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(gw)));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        r.attributes.push(RouteAttribute::Oif(3));
        let msg = NetlinkMessage::from(RouteNetlinkMessage::DelRoute(r));

        let d = decode(&msg, &mut names);
        let dst: IpNet = "198.18.2.0/24".parse().expect("net");
        assert_eq!(
            d.route,
            Some(Route {
                dst,
                gateway: Some(gw.into()),
                dev: "flannel.1".into(),
                onlink: false,
            })
        );
        assert_eq!(
            d.event,
            Some(KernelEvent::RouteRemoved {
                dst,
                gateway: Some(gw.into()),
                dev: Some("flannel.1".into()),
            })
        );
        assert_eq!((d.blackhole, d.miss, d.neigh), (None, None, None));
    }
}
