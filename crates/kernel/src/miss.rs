//! The kernel side of the vxlan on-demand mode: listening for the kernel's L2/L3 misses on the
//! vxlan device and installing the answers; listing and removing what was learned.
//!
//! Misses arrive on the `RTNLGRP_NEIGH` multicast group as `RTM_GETNEIGH` messages (rtnetlink
//! shows them as `RouteNetlinkMessage::GetNeighbour`): an `AF_INET` one with the wanted IP
//! (from `app_solicit` or `l3miss`), an `AF_BRIDGE` one with the MAC the vxlan FDB has no
//! destination for (`l2miss`). Answers are installed with `NUD_REACHABLE`, as Flannel's first
//! vxlan design did, so the kernel ages them out when unused (neighbours go stale and are
//! garbage-collected, FDB entries expire after the device's `ageing` time).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;

use flannel_planner::ondemand::Miss;
use flannel_planner::state::{Fdb, Neigh};
use futures_util::{Stream, StreamExt};
use netlink_packet_core::{NetlinkPayload, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::AsyncSocket;
use rtnetlink::MulticastGroup;
use tokio::task::JoinHandle;

use crate::apply::{fdb_msg, neigh_msg};
use crate::decode::{is_permanent, lladdr, neigh_dst};
use crate::error::KernelError;
use crate::netlink::Kernel;

/// Receive buffer asked for the miss socket (a burst of first contacts can be large).
const MISS_RX_BUF_BYTES: usize = 4 << 20;

/// `app_solicit` value Flannel wrote: up to 3 user-space probes per resolution.
pub const APP_SOLICIT: &str = "3";

/// The `app_solicit` sysctl of `dev` (ARP requests go to user space as `RTM_GETNEIGH`).
pub fn app_solicit_key(dev: &str) -> String {
    format!("net/ipv4/neigh/{dev}/app_solicit")
}

/// Set `app_solicit` on `dev` unless it already has the value. `Ok(true)` when written.
pub fn ensure_app_solicit(dev: &str) -> std::io::Result<bool> {
    let key = app_solicit_key(dev);
    if crate::sysctl::read(&key)? == APP_SOLICIT {
        return Ok(false);
    }
    crate::sysctl::write(&key, APP_SOLICIT)?;
    Ok(true)
}

/// A miss reported on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissEvent {
    /// ifindex of the device the miss is about.
    pub index: u32,
    pub miss: Miss,
}

/// A stream of misses (on every device; the caller filters by ifindex). Dropping it closes the
/// socket.
pub struct MissEvents {
    inner: Pin<Box<dyn Stream<Item = MissEvent> + Send>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MissEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MissEvents").finish_non_exhaustive()
    }
}

impl Drop for MissEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for MissEvents {
    type Item = MissEvent;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<MissEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Subscribe to misses (own socket, spawned on the current tokio runtime).
pub fn subscribe_misses() -> Result<MissEvents, KernelError> {
    let (mut conn, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh])
            .map_err(KernelError::Connect)?;
    conn.socket_mut()
        .socket_mut()
        .set_rx_buf_sz(MISS_RX_BUF_BYTES)
        .map_err(KernelError::Connect)?;
    let task = tokio::spawn(conn);
    let inner = messages
        .filter_map(|(msg, _)| {
            let ev = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetNeighbour(n)) => {
                    miss_from_msg(&n)
                }
                _ => None,
            };
            async move { ev }
        })
        .boxed();
    Ok(MissEvents { inner, task })
}

/// The miss an `RTM_GETNEIGH` notification reports, if it is one this mode answers.
pub(crate) fn miss_from_msg(n: &NeighbourMessage) -> Option<MissEvent> {
    let h = &n.header;
    // An L3 miss names the IP it wants (NDA_DST). An L2 miss names only the MAC (NDA_LLADDR,
    // no NDA_DST); the vxlan driver sends it with family AF_INET on current kernels (seen on
    // 6.18), AF_BRIDGE on others, so the attributes decide, not the family.
    let miss = match (h.family, neigh_dst(&n.attributes)) {
        (AddressFamily::Inet, Some(IpAddr::V4(ip))) => Miss::L3(ip),
        (AddressFamily::Inet | AddressFamily::Bridge, None) => Miss::L2(lladdr(&n.attributes)?),
        _ => return None,
    };
    Some(MissEvent {
        index: h.ifindex,
        miss,
    })
}

/// A learned (non-permanent) neighbour on device `index`.
pub(crate) fn learned_neigh(n: &NeighbourMessage, index: u32, dev: &str) -> Option<Neigh> {
    let h = &n.header;
    if h.ifindex != index || h.family != AddressFamily::Inet || is_permanent(h.state) {
        return None;
    }
    Some(Neigh {
        dev: dev.to_owned(),
        ip: neigh_dst(&n.attributes)?,
        mac: lladdr(&n.attributes)?,
    })
}

/// A learned (non-permanent, `self`) FDB entry on device `index`.
pub(crate) fn learned_fdb(n: &NeighbourMessage, index: u32, dev: &str) -> Option<Fdb> {
    let h = &n.header;
    if h.ifindex != index
        || h.family != AddressFamily::Bridge
        || is_permanent(h.state)
        || !h.flags.contains(NeighbourFlags::Own)
    {
        return None;
    }
    Some(Fdb {
        dev: dev.to_owned(),
        mac: lladdr(&n.attributes)?,
        dst: neigh_dst(&n.attributes)?,
    })
}

impl Kernel {
    /// The ifindex of `dev`, or `None` when there is no such device.
    pub async fn device_index(&self, dev: &str) -> Result<Option<u32>, KernelError> {
        self.link_index(dev).await
    }

    /// Install the answer to an L3 miss: `ip neigh replace <ip> lladdr <mac> dev <dev>
    /// nud reachable`.
    pub async fn answer_neigh(&self, index: u32, n: &Neigh) -> Result<(), KernelError> {
        let mut msg = neigh_msg(index, n, true);
        msg.header.state = NeighbourState::Reachable;
        msg.header.kind = RouteType::Unicast;
        self.ack(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map_err(|source| KernelError::Op {
            cmd: format!(
                "ip neigh replace {} lladdr {} dev {} nud reachable",
                n.ip, n.mac, n.dev
            ),
            source,
        })
    }

    /// Install the answer to an L2 miss: `bridge fdb replace <mac> dev <dev> dst <ip> self`
    /// (not permanent: it ages out).
    pub async fn answer_fdb(&self, index: u32, f: &Fdb) -> Result<(), KernelError> {
        let mut msg = fdb_msg(index, f, true);
        msg.header.state = NeighbourState::Reachable;
        self.ack(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map_err(|source| KernelError::Op {
            cmd: format!(
                "bridge fdb replace {} dev {} dst {} self",
                f.mac, f.dev, f.dst
            ),
            source,
        })
    }

    /// The learned (non-permanent) IPv4 neighbours and FDB entries on `dev`; empty when the
    /// device does not exist.
    pub async fn learned(&self, dev: &str) -> Result<(Vec<Neigh>, Vec<Fdb>), KernelError> {
        let Some(index) = self.link_index(dev).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        let neighs = self
            .dump("neighbours", RouteNetlinkMessage::GetNeighbour(msg))
            .await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        let fdb = self
            .dump("FDB", RouteNetlinkMessage::GetNeighbour(msg))
            .await?;
        let neighs = neighs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => learned_neigh(n, index, dev),
                _ => None,
            })
            .collect();
        let fdb = fdb
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => learned_fdb(n, index, dev),
                _ => None,
            })
            .collect();
        Ok((neighs, fdb))
    }

    /// Remove learned entries (stale ones: their peer left or changed). Returns the errors;
    /// an entry already gone is not an error.
    pub async fn forget(&self, neighs: &[Neigh], fdb: &[Fdb]) -> Vec<KernelError> {
        let mut indexes: HashMap<String, Option<u32>> = HashMap::new();
        let mut errors = Vec::new();
        let mut msgs = Vec::new();
        let mut cmds = Vec::new();
        let devs = neighs
            .iter()
            .map(|n| n.dev.clone())
            .chain(fdb.iter().map(|f| f.dev.clone()));
        for dev in devs {
            if let std::collections::hash_map::Entry::Vacant(slot) = indexes.entry(dev) {
                match self.link_index(slot.key()).await {
                    Ok(i) => {
                        slot.insert(i);
                    }
                    Err(e) => {
                        errors.push(e);
                        slot.insert(None);
                    }
                }
            }
        }
        for n in neighs {
            if let Some(Some(i)) = indexes.get(&n.dev) {
                msgs.push((
                    RouteNetlinkMessage::DelNeighbour(neigh_msg(*i, n, false)),
                    0,
                ));
                cmds.push(format!("ip neigh del {} dev {}", n.ip, n.dev));
            }
        }
        for f in fdb {
            if let Some(Some(i)) = indexes.get(&f.dev) {
                msgs.push((RouteNetlinkMessage::DelNeighbour(fdb_msg(*i, f, false)), 0));
                cmds.push(format!(
                    "bridge fdb del {} dev {} dst {} self",
                    f.mac, f.dev, f.dst
                ));
            }
        }
        if msgs.is_empty() {
            return errors;
        }
        for (cmd, res) in cmds.into_iter().zip(self.batch(msgs).await) {
            if let Err(source) = res {
                let e = KernelError::Op { cmd, source };
                if !e.is_not_found() {
                    errors.push(e);
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_planner::state::MacAddr;
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
    use std::net::Ipv4Addr;

    #[test]
    fn inet_getneigh_is_an_l3_miss_and_bridge_getneigh_an_l2_miss() {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = 7;
        n.header.state = NeighbourState::Incomplete;
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                Ipv4Addr::new(198, 18, 2, 5),
            )));
        assert_eq!(
            miss_from_msg(&n),
            Some(MissEvent {
                index: 7,
                miss: Miss::L3(Ipv4Addr::new(198, 18, 2, 5)),
            })
        );
        let mut b = NeighbourMessage::default();
        b.header.family = AddressFamily::Bridge;
        b.header.ifindex = 7;
        b.header.state = NeighbourState::Stale;
        b.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            0x0e, 0, 0, 0, 0, 2,
        ]));
        assert_eq!(
            miss_from_msg(&b),
            Some(MissEvent {
                index: 7,
                miss: Miss::L2(MacAddr([0x0e, 0, 0, 0, 0, 2])),
            })
        );
        // What kernel 6.18's vxlan driver really sends for an FDB miss (captured): family
        // AF_INET, the MAC, a VNI of 0, cache info, and no destination.
        let mut k = NeighbourMessage::default();
        k.header.family = AddressFamily::Inet;
        k.header.ifindex = 4;
        k.header.state = NeighbourState::Stale;
        k.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            0x0e, 0, 0, 0, 0, 2,
        ]));
        k.attributes.push(NeighbourAttribute::Vni(0));
        assert_eq!(
            miss_from_msg(&k),
            Some(MissEvent {
                index: 4,
                miss: Miss::L2(MacAddr([0x0e, 0, 0, 0, 0, 2])),
            })
        );
        let mut v6 = NeighbourMessage::default();
        v6.header.family = AddressFamily::Inet6;
        assert_eq!(miss_from_msg(&v6), None);
    }

    #[test]
    fn app_solicit_key_keeps_dots() {
        assert_eq!(
            crate::sysctl::path(&app_solicit_key("flannel.1")),
            std::path::PathBuf::from("/proc/sys/net/ipv4/neigh/flannel.1/app_solicit")
        );
    }
}
