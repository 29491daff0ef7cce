//! Watching a namespace's kernel for the entries flanneld programs, through an rtnetlink
//! multicast subscription (IPv4 routes and neighbours; vxlan FDB entries arrive on the
//! neighbour group as `AF_BRIDGE`). Each notification is stamped with [`Instant::now`] the
//! moment `recv` returns it, so no polling error enters the measurement.
//!
//! The socket's receive buffer is forced to 128 MiB (`SO_RCVBUFFORCE`), far more than the
//! notifications of 5,000 peers need; an overflow (`ENOBUFS`) is still detected and reported
//! as [`Seen::Overrun`], and the benchmark then fails the run instead of guessing.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use ipnet::Ipv4Net;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::plan::Peer;

/// `RTMGRP_NEIGH`: neighbour and FDB notifications.
const RTMGRP_NEIGH: u32 = 0x4;
/// `RTMGRP_IPV4_ROUTE`.
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
/// Receive buffer forced on the socket.
const RX_BUF: usize = 128 << 20;
/// How often the monitor thread checks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A kernel entry that appeared (or a lost notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seen {
    /// A main-table IPv4 route to this destination.
    Route(Ipv4Net),
    /// A permanent IPv4 neighbour entry.
    Neigh(Ipv4Addr),
    /// An `AF_BRIDGE` FDB entry with a destination, for this MAC.
    Fdb([u8; 6]),
    /// The socket overflowed: notifications were lost.
    Overrun,
}

/// A running monitor; stops (and joins its thread) on drop or [`Monitor::stop`].
#[derive(Debug)]
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Monitor {
    /// Subscribe in namespace `ns` and call `handler` for every [`Seen`] entry (with its
    /// arrival time) until it returns `false`. Returns once the subscription is in place, so
    /// every change made after this call is seen.
    pub fn start<F>(ns: &str, mut handler: F) -> Result<Monitor>
    where
        F: FnMut(Seen, Instant) -> bool + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let ns = ns.to_owned();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nl-monitor".into())
            .spawn(move || -> Result<()> {
                let socket = match subscribe(&ns) {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let mut buf = vec![0u8; 1 << 16];
                while !stop2.load(Ordering::Relaxed) {
                    let mut slice: &mut [u8] = &mut buf[..];
                    let n = match socket.recv(&mut slice, 0) {
                        Ok(n) => n,
                        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                            if !handler(Seen::Overrun, Instant::now()) {
                                return Ok(());
                            }
                            continue;
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) =>
                        {
                            continue
                        }
                        Err(e) => return Err(e).context("receiving rtnetlink notifications"),
                    };
                    let at = Instant::now();
                    for seen in decode_all(&buf[..n.min(buf.len())]) {
                        if !handler(seen, at) {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })
            .context("starting the monitor thread")?;
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("the monitor did not start"))??;
        Ok(Monitor {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the thread and return its error, if it failed.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the monitor thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

fn subscribe(ns: &str) -> Result<Socket> {
    flannel_sandbox::netns::enter(ns)?;
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    setsockopt(&socket, sockopt::RcvBufForce, &RX_BUF).context("SO_RCVBUFFORCE")?;
    let timeout = TimeVal::new(0, i64::try_from(STOP_POLL.as_micros()).unwrap_or(50_000));
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).context("SO_RCVTIMEO")?;
    socket
        .bind(&SocketAddr::new(0, RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE))
        .context("joining the route and neighbour groups")?;
    Ok(socket)
}

/// Every [`Seen`] entry in one datagram of rtnetlink messages (other messages are skipped).
pub fn decode_all(mut buf: &[u8]) -> Vec<Seen> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]) {
            if let NetlinkPayload::InnerMessage(inner) = msg.payload {
                out.extend(seen_of(&inner));
            }
        }
        let step = (len + 3) & !3;
        buf = &buf[step.min(buf.len())..];
    }
    out
}

fn seen_of(msg: &RouteNetlinkMessage) -> Option<Seen> {
    match msg {
        RouteNetlinkMessage::NewRoute(m) => route_seen(m),
        RouteNetlinkMessage::NewNeighbour(m) => neigh_seen(m),
        _ => None,
    }
}

fn route_seen(m: &RouteMessage) -> Option<Seen> {
    if m.header.address_family != AddressFamily::Inet
        || m.header.table != RouteHeader::RT_TABLE_MAIN
    {
        return None;
    }
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Ipv4Net::new(*ip, m.header.destination_prefix_length)
                .ok()
                .map(Seen::Route)
        }
        _ => None,
    })
}

fn neigh_seen(m: &NeighbourMessage) -> Option<Seen> {
    match m.header.family {
        AddressFamily::Inet if m.header.state == NeighbourState::Permanent => {
            m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                    Some(Seen::Neigh(*ip))
                }
                _ => None,
            })
        }
        AddressFamily::Bridge => {
            let has_dst = m
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::Destination(_)));
            let mac = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
                _ => None,
            })?;
            has_dst.then_some(Seen::Fdb(mac))
        }
        _ => None,
    }
}

/// The entries still missing before the kernel holds every peer's route, neighbour and FDB
/// entry (pure bookkeeping for the programming benchmark).
#[derive(Debug, Clone)]
pub struct Pending {
    missing: HashSet<Seen>,
    total: usize,
}

impl Pending {
    /// Everything the peers need.
    pub fn for_peers(peers: &[Peer]) -> Pending {
        let mut missing = HashSet::with_capacity(peers.len() * 3);
        for p in peers {
            missing.insert(Seen::Route(p.subnet));
            missing.insert(Seen::Neigh(p.subnet.network()));
            missing.insert(Seen::Fdb(p.mac));
        }
        Pending {
            total: missing.len(),
            missing,
        }
    }

    /// Tick off `seen`; true when nothing is missing any more.
    pub fn see(&mut self, seen: Seen) -> bool {
        self.missing.remove(&seen);
        self.missing.is_empty()
    }

    /// Entries not seen yet.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    /// Entries expected in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::neighbour::NeighbourFlags;

    fn frame(inner: RouteNetlinkMessage) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(inner));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    #[test]
    fn decodes_routes_neighbours_and_fdb_entries_in_one_datagram() {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.destination_prefix_length = 29;
        route
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(198, 18, 0, 8),
            )));
        let mut neigh = NeighbourMessage::default();
        neigh.header.family = AddressFamily::Inet;
        neigh.header.state = NeighbourState::Permanent;
        neigh
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                Ipv4Addr::new(198, 18, 0, 8),
            )));
        let mut stale = neigh.clone();
        stale.header.state = NeighbourState::Stale;
        let mut fdb = NeighbourMessage::default();
        fdb.header.family = AddressFamily::Bridge;
        fdb.header.flags = NeighbourFlags::Own;
        fdb.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![
                0x0e, 0x62, 0x65, 0, 0, 1,
            ]));
        fdb.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                Ipv4Addr::new(198, 19, 0, 2),
            )));
        let mut fdb_no_dst = fdb.clone();
        fdb_no_dst.attributes.truncate(1);
        let mut local_table = route.clone();
        local_table.header.table = 255;

        let mut datagram = Vec::new();
        for m in [
            RouteNetlinkMessage::NewRoute(route),
            RouteNetlinkMessage::NewRoute(local_table),
            RouteNetlinkMessage::NewNeighbour(stale),
            RouteNetlinkMessage::NewNeighbour(neigh),
            RouteNetlinkMessage::NewNeighbour(fdb_no_dst),
            RouteNetlinkMessage::NewNeighbour(fdb),
        ] {
            datagram.extend(frame(m));
        }
        assert_eq!(
            decode_all(&datagram),
            vec![
                Seen::Route("198.18.0.8/29".parse().expect("net")),
                Seen::Neigh(Ipv4Addr::new(198, 18, 0, 8)),
                Seen::Fdb([0x0e, 0x62, 0x65, 0, 0, 1]),
            ]
        );
        assert_eq!(decode_all(&datagram[..datagram.len() - 3]).len(), 2);
    }

    #[test]
    fn pending_completes_only_when_every_entry_was_seen() {
        let plan = Plan::new(2).expect("plan");
        let mut pending = Pending::for_peers(&plan.peers);
        assert_eq!(pending.total(), 6);
        let p = plan.peers[0];
        let q = plan.peers[1];
        assert!(!pending.see(Seen::Route(p.subnet)));
        assert!(!pending.see(Seen::Route(p.subnet)));
        assert!(!pending.see(Seen::Neigh(p.subnet.network())));
        assert!(!pending.see(Seen::Fdb(p.mac)));
        assert!(!pending.see(Seen::Neigh(Ipv4Addr::new(198, 18, 9, 0))));
        assert_eq!(pending.missing(), 3);
        assert!(!pending.see(Seen::Fdb(q.mac)));
        assert!(!pending.see(Seen::Route(q.subnet)));
        assert!(pending.see(Seen::Neigh(q.subnet.network())));
    }
}
