//! Kernel change notifications that should trigger a reconcile: a multicast rtnetlink socket
//! on the link, IPv4/IPv6 address, IPv4/IPv6 route and neighbour groups, turned into
//! [`KernelEvent`]s.
//!
//! Events are not filtered: the caller decides which devices matter (names are resolved
//! through a cache of ifindex → name kept from a link dump and later link messages, so an
//! entry removed together with its device may still carry the name). flanneld's own changes
//! are reported too. When the socket overflows, [`KernelEvent::Overrun`] says events were
//! lost and a full reconcile is needed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use flannel_planner::state::MacAddr;
use futures_util::{Stream, StreamExt, TryStreamExt};
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::AsyncSocket;
use rtnetlink::MulticastGroup;
use tokio::task::JoinHandle;

use crate::error::KernelError;
use crate::netlink::Kernel;

/// Receive buffer asked for the multicast socket (capped by `net.core.rmem_max`).
const MONITOR_RX_BUF_BYTES: usize = 4 << 20;

/// A change in the kernel that may undo flanneld's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A device was deleted (`RTM_DELLINK`).
    LinkRemoved { index: u32, name: String },
    /// A device was created or changed: state, MTU, address… (`RTM_NEWLINK`).
    LinkChanged { index: u32, name: String },
    /// An address was removed (`RTM_DELADDR`).
    AddrRemoved { dev: Option<String>, net: IpNet },
    /// A main-table unicast route was removed (`RTM_DELROUTE`).
    RouteRemoved {
        dst: IpNet,
        gateway: Option<IpAddr>,
        dev: Option<String>,
    },
    /// A main-table blackhole route was removed (`RTM_DELROUTE`, `RTN_BLACKHOLE`).
    BlackholeRemoved { dst: IpNet },
    /// An ARP/NDP entry was removed (`RTM_DELNEIGH`).
    NeighRemoved { dev: Option<String>, ip: IpAddr },
    /// A bridge/vxlan FDB entry was removed (`RTM_DELNEIGH`, `AF_BRIDGE`).
    FdbRemoved {
        dev: Option<String>,
        mac: MacAddr,
        dst: Option<IpAddr>,
    },
    /// The socket overflowed and events were lost: reconcile everything.
    Overrun,
}

/// A stream of [`KernelEvent`]s; dropping it closes the socket.
pub struct KernelEvents {
    inner: Pin<Box<dyn Stream<Item = KernelEvent> + Send>>,
    /// The socket task (none for events that do not come from a socket).
    task: Option<JoinHandle<()>>,
}

impl KernelEvents {
    /// Events from any stream (a fake kernel's, in tests).
    pub fn from_stream(events: impl Stream<Item = KernelEvent> + Send + 'static) -> Self {
        KernelEvents {
            inner: events.boxed(),
            task: None,
        }
    }
}

impl std::fmt::Debug for KernelEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelEvents").finish_non_exhaustive()
    }
}

impl Drop for KernelEvents {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Stream for KernelEvents {
    type Item = KernelEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<KernelEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Kernel {
    /// Subscribe to kernel changes (own socket, spawned on the current tokio runtime). Events
    /// start with changes made after this returns.
    pub async fn events(&self) -> Result<KernelEvents, KernelError> {
        subscribe().await
    }
}

/// See [`Kernel::events`].
pub async fn subscribe() -> Result<KernelEvents, KernelError> {
    let (mut conn, handle, messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Neigh,
    ])
    .map_err(KernelError::Connect)?;
    conn.socket_mut()
        .socket_mut()
        .set_rx_buf_sz(MONITOR_RX_BUF_BYTES)
        .map_err(KernelError::Connect)?;
    let task = tokio::spawn(conn);

    // Seed the name cache; later link messages keep it current.
    let links: Vec<LinkMessage> = match handle.link().get().execute().try_collect().await {
        Ok(l) => l,
        Err(source) => {
            task.abort();
            return Err(KernelError::Dump {
                what: "links",
                source,
            });
        }
    };
    let mut names: HashMap<u32, String> = links
        .iter()
        .filter_map(|l| Some((l.header.index, link_name(l)?)))
        .collect();

    let inner = messages
        .filter_map(move |(msg, _)| {
            let ev = event(&mut names, msg);
            async move { ev }
        })
        .boxed();
    Ok(KernelEvents {
        inner,
        task: Some(task),
    })
}

fn link_name(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// One notification as an event (updating the name cache); `None` for those that cannot
/// undo flanneld's work.
pub(crate) fn event(
    names: &mut HashMap<u32, String>,
    msg: NetlinkMessage<RouteNetlinkMessage>,
) -> Option<KernelEvent> {
    let inner = match msg.payload {
        NetlinkPayload::InnerMessage(m) => m,
        NetlinkPayload::Overrun(_) => return Some(KernelEvent::Overrun),
        _ => return None,
    };
    match inner {
        RouteNetlinkMessage::NewLink(l) => {
            let index = l.header.index;
            let name = link_name(&l).or_else(|| names.get(&index).cloned())?;
            names.insert(index, name.clone());
            Some(KernelEvent::LinkChanged { index, name })
        }
        RouteNetlinkMessage::DelLink(l) => {
            let index = l.header.index;
            let cached = names.remove(&index);
            let name = link_name(&l).or(cached)?;
            Some(KernelEvent::LinkRemoved { index, name })
        }
        RouteNetlinkMessage::DelAddress(a) => addr_removed(names, &a),
        RouteNetlinkMessage::DelRoute(r) => route_removed(names, &r),
        RouteNetlinkMessage::DelNeighbour(n) => neigh_removed(names, &n),
        _ => None,
    }
}

fn addr_removed(names: &HashMap<u32, String>, a: &AddressMessage) -> Option<KernelEvent> {
    let ip = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let ip = ip.or_else(|| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(KernelEvent::AddrRemoved {
        dev: names.get(&a.header.index).cloned(),
        net: IpNet::new(ip, a.header.prefix_len).ok()?,
    })
}

fn route_removed(names: &HashMap<u32, String>, r: &RouteMessage) -> Option<KernelEvent> {
    if !matches!(r.header.kind, RouteType::Unicast | RouteType::BlackHole) {
        return None;
    }
    let mut table = u32::from(r.header.table);
    let (mut dst, mut gateway, mut oif) = (None, None, None);
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = route_ip(a),
            RouteAttribute::Gateway(a) => gateway = route_ip(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let dst = match (dst, r.header.address_family) {
        (Some(ip), _) => ip,
        (None, AddressFamily::Inet6) => IpAddr::from([0u16; 8]),
        (None, _) => IpAddr::from([0u8; 4]),
    };
    let dst = IpNet::new(dst, r.header.destination_prefix_length).ok()?;
    if r.header.kind == RouteType::BlackHole {
        return Some(KernelEvent::BlackholeRemoved { dst });
    }
    Some(KernelEvent::RouteRemoved {
        dst,
        gateway,
        dev: oif.and_then(|i| names.get(&i).cloned()),
    })
}

fn route_ip(a: &netlink_packet_route::route::RouteAddress) -> Option<IpAddr> {
    use netlink_packet_route::route::RouteAddress;
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn neigh_removed(names: &HashMap<u32, String>, n: &NeighbourMessage) -> Option<KernelEvent> {
    use netlink_packet_route::neighbour::NeighbourAddress;
    let dev = names.get(&n.header.ifindex).cloned();
    let dst = n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    });
    match n.header.family {
        AddressFamily::Bridge => {
            let mac = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(b) => {
                    <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
                }
                _ => None,
            })?;
            Some(KernelEvent::FdbRemoved { dev, mac, dst })
        }
        AddressFamily::Inet | AddressFamily::Inet6 => {
            Some(KernelEvent::NeighRemoved { dev, ip: dst? })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::neighbour::NeighbourAddress;
    use std::net::Ipv4Addr;

    #[test]
    fn dellink_uses_the_cached_name_and_forgets_it() {
        let mut names: HashMap<u32, String> = [(4, "flannel.1".to_string())].into();
        let mut l = LinkMessage::default();
        l.header.index = 4;
        let ev = event(
            &mut names,
            NetlinkMessage::from(RouteNetlinkMessage::DelLink(l)),
        );
        assert_eq!(
            ev,
            Some(KernelEvent::LinkRemoved {
                index: 4,
                name: "flannel.1".into()
            })
        );
        assert!(names.is_empty());
    }

    #[test]
    fn bridge_delneigh_is_an_fdb_event() {
        let names: HashMap<u32, String> = [(4, "flannel.1".to_string())].into();
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Bridge;
        n.header.ifindex = 4;
        n.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            0x0e, 0, 0, 0, 0, 2,
        ]));
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Other(
                vec![192, 0, 2, 2],
            )));
        assert_eq!(
            neigh_removed(&names, &n),
            Some(KernelEvent::FdbRemoved {
                dev: Some("flannel.1".into()),
                mac: MacAddr([0x0e, 0, 0, 0, 0, 2]),
                dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))),
            })
        );
    }

    #[test]
    fn blackhole_delroute_is_a_blackhole_event() {
        use netlink_packet_route::route::RouteAddress;
        let names: HashMap<u32, String> = [(1, "lo".to_string())].into();
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet6;
        r.header.kind = RouteType::BlackHole;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.destination_prefix_length = 64;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(
                "2001:db8:f000:1::".parse().expect("ip"),
            )));
        r.attributes.push(RouteAttribute::Oif(1));
        assert_eq!(
            route_removed(&names, &r),
            Some(KernelEvent::BlackholeRemoved {
                dst: "2001:db8:f000:1::/64".parse().expect("net")
            })
        );
        r.header.kind = RouteType::Unreachable;
        assert_eq!(route_removed(&names, &r), None);
    }
}
