//! Carrying out the planner's [`Op`]s in the kernel, with the semantics of
//! [`flannel_planner::diff::simulate`].
//!
//! Ops run in phases, whatever their order in the slice: links (one at a time, in order) →
//! address removals → address additions → route removals → neighbour removals → FDB removals
//! → neighbour replaces → FDB replaces → route replaces. `diff` already emits this order
//! (except that it lists address additions before removals), so for its output the result is
//! the one `simulate` describes. Inside a phase the entries are independent and are sent in
//! batches of many netlink messages per `sendmsg`, several batches in flight; two ops on the
//! same kernel object in one phase go in successive waves, so the later one wins.
//!
//! "Already exists" for a create and "not found" for a delete count as success. A failing op
//! does not stop the others: every failure is returned with its op in [`ApplyReport`].
//!
//! What each op sends (the `ip` / `bridge` equivalent is [`command`]):
//! - `CreateLink`: `RTM_NEWLINK` vxlan with id, `dev`, `local` (`local6` for an IPv6 underlay),
//!   `dstport` (when not 0), `[no]learning`, `gbp`, `l2miss`/`l3miss` (when set), address, MTU
//!   and up. If a device of that name exists (a non-vxlan device, or a race), it is deleted and
//!   created again. Then `net/ipv6/conf/<dev>/accept_ra` is set to 0, as Flannel does (a
//!   failure there is only logged).
//! - `CreateLink` of an ipip device: a device of that name of another kind is not deleted;
//!   the op fails with Flannel's `flannel.ipip isn't an ipip mode device, please remove
//!   device and try again` (also for `RecreateLink`). The ipip device is created with
//!   `local`, `nopmtudisc` and `ttl inherit`, as Go's netlink library creates it.
//! - `RecreateLink`: delete, then create as above. `UpdateLink`: MTU, address and up/down.
//! - Routes: main table, `proto boot` (as Go's netlink library), scope universe (link when
//!   there is no gateway), `onlink` when asked; `NLM_F_CREATE | NLM_F_REPLACE`. Deletion
//!   matches destination, gateway and device, any protocol and scope.
//! - Neighbours: `NUD_PERMANENT`, `NLM_F_CREATE | NLM_F_REPLACE`.
//! - FDB: `AF_BRIDGE`, `NTF_SELF`, `NUD_PERMANENT`, with the destination (`NDA_DST`).
//! - Blackholes: `RTN_BLACKHOLE` in the main table, `proto boot`, metric
//!   [`BLACKHOLE_METRIC`], `NLM_F_CREATE | NLM_F_EXCL` (another route to the same destination
//!   and metric is never replaced: the add fails instead). Deletion matches type blackhole
//!   (IPv6: on `lo`, where the kernel puts IPv6 blackholes), so it never removes another route
//!   to the same destination.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flannel_planner::blackhole::BLACKHOLE_METRIC;
use flannel_planner::diff::Op;
use flannel_planner::state::{Addr, Fdb, LinkSpec, MacAddr, Neigh, Route};
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{AddressMessageBuilder, RouteMessageBuilder};

use crate::error::{source_errno, KernelError};
use crate::link;
use crate::netlink::Kernel;

/// Netlink messages per `sendmsg`. Their acknowledgements (a few hundred bytes of receive
/// buffer each) must fit in the socket's receive buffer until the connection reads them.
const BATCH: usize = 128;
/// Batches handed to the connection task at once, so it never waits for the next one.
const PIPELINE: usize = 4;

/// The outcome of [`Kernel::apply`].
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Ops that took effect (including creates of what existed and deletes of what was gone).
    pub applied: usize,
    /// Every op that failed, with why.
    pub errors: Vec<(Op, KernelError)>,
}

impl ApplyReport {
    /// No op failed.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Order of execution; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Link,
    DelAddr,
    AddAddr,
    DelRoute,
    DelNeigh,
    DelFdb,
    Neigh,
    Fdb,
    Route,
}

const ENTRY_PHASES: [Phase; 8] = [
    Phase::DelAddr,
    Phase::AddAddr,
    Phase::DelRoute,
    Phase::DelNeigh,
    Phase::DelFdb,
    Phase::Neigh,
    Phase::Fdb,
    Phase::Route,
];

fn phase(op: &Op) -> Phase {
    match op {
        Op::CreateLink(_) | Op::RecreateLink(_) | Op::UpdateLink(_) => Phase::Link,
        Op::DelAddr(_) => Phase::DelAddr,
        Op::AddAddr(_) => Phase::AddAddr,
        Op::DelRoute(_) | Op::DelBlackhole(_) => Phase::DelRoute,
        Op::DelNeigh(_) => Phase::DelNeigh,
        Op::DelFdb(_) => Phase::DelFdb,
        Op::ReplaceNeigh(_) => Phase::Neigh,
        Op::ReplaceFdb(_) => Phase::Fdb,
        Op::ReplaceRoute(_) | Op::AddBlackhole(_) => Phase::Route,
    }
}

/// How the kernel identifies the object an op touches (two ops with the same key must not
/// race).
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key<'a> {
    Link(&'a str),
    Addr(&'a str, IpNet),
    Route(IpNet),
    Neigh(&'a str, IpAddr),
    Fdb(&'a str, MacAddr),
}

fn key(op: &Op) -> Key<'_> {
    match op {
        Op::CreateLink(l) | Op::RecreateLink(l) | Op::UpdateLink(l) => Key::Link(l.name()),
        Op::AddAddr(a) | Op::DelAddr(a) => Key::Addr(&a.dev, a.net),
        Op::DelRoute(r) | Op::ReplaceRoute(r) => Key::Route(r.dst),
        Op::AddBlackhole(dst) | Op::DelBlackhole(dst) => Key::Route(*dst),
        Op::DelNeigh(n) | Op::ReplaceNeigh(n) => Key::Neigh(&n.dev, n.ip),
        Op::DelFdb(f) | Op::ReplaceFdb(f) => Key::Fdb(&f.dev, f.mac),
    }
}

/// The device an op is about (`None`: blackhole routes have none).
fn dev(op: &Op) -> Option<&str> {
    match op {
        Op::CreateLink(l) | Op::RecreateLink(l) | Op::UpdateLink(l) => Some(l.name()),
        Op::AddAddr(a) | Op::DelAddr(a) => Some(&a.dev),
        Op::DelRoute(r) | Op::ReplaceRoute(r) => Some(&r.dev),
        Op::DelNeigh(n) | Op::ReplaceNeigh(n) => Some(&n.dev),
        Op::DelFdb(f) | Op::ReplaceFdb(f) => Some(&f.dev),
        Op::AddBlackhole(_) | Op::DelBlackhole(_) => None,
    }
}

fn is_delete(op: &Op) -> bool {
    matches!(
        op,
        Op::DelAddr(_) | Op::DelRoute(_) | Op::DelNeigh(_) | Op::DelFdb(_) | Op::DelBlackhole(_)
    )
}

/// Whether a kernel error means the op's goal holds anyway.
fn tolerated(op: &Op, e: &KernelError) -> bool {
    match op {
        Op::AddAddr(_) => e.is_exists(),
        _ if is_delete(op) => e.is_not_found(),
        _ => false,
    }
}

/// Split one phase's ops into waves: an op goes one wave after the previous op on the same
/// kernel object, so ops within a wave are independent and the last op on an object wins.
fn waves<'a>(ops: &[&'a Op]) -> Vec<Vec<&'a Op>> {
    let mut seen: HashMap<Key<'a>, usize> = HashMap::new();
    let mut out: Vec<Vec<&'a Op>> = Vec::new();
    for op in ops {
        let slot = seen.entry(key(op)).or_insert(0);
        if out.len() <= *slot {
            out.push(Vec::new());
        }
        out[*slot].push(op);
        *slot += 1;
    }
    out
}

/// The `ip` / `bridge` command with the same effect as `op` (for logs and errors).
pub fn command(op: &Op) -> String {
    match op {
        Op::CreateLink(l) => link::add_command(l),
        Op::RecreateLink(l) => format!("ip link del {} && {}", l.name(), link::add_command(l)),
        Op::UpdateLink(l) => {
            let mut s = format!("ip link set {} mtu {}", l.name(), l.mtu());
            if let Some(mac) = l.mac() {
                s.push_str(&format!(" address {mac}"));
            }
            s.push_str(if l.up() { " up" } else { " down" });
            s
        }
        Op::AddAddr(a) => format!("ip addr add {} dev {}", a.net, a.dev),
        Op::DelAddr(a) => format!("ip addr del {} dev {}", a.net, a.dev),
        Op::ReplaceRoute(r) => format!("ip route replace {r} proto boot"),
        Op::DelRoute(r) => format!("ip route del {r}"),
        Op::ReplaceNeigh(n) => format!(
            "ip neigh replace {} lladdr {} dev {} nud permanent",
            n.ip, n.mac, n.dev
        ),
        Op::DelNeigh(n) => format!("ip neigh del {} dev {}", n.ip, n.dev),
        Op::ReplaceFdb(f) => format!(
            "bridge fdb replace {} dev {} dst {} self permanent",
            f.mac, f.dev, f.dst
        ),
        Op::DelFdb(f) => format!("bridge fdb del {} dev {} dst {} self", f.mac, f.dev, f.dst),
        Op::AddBlackhole(dst) => {
            format!("ip route add blackhole {dst} metric {BLACKHOLE_METRIC} proto boot")
        }
        Op::DelBlackhole(dst) => format!("ip route del blackhole {dst}"),
    }
}

pub(crate) fn addr_msg(index: u32, a: &Addr) -> AddressMessage {
    match a.net {
        IpNet::V4(n) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(n.addr(), n.prefix_len())
            .build(),
        IpNet::V6(n) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(n.addr(), n.prefix_len())
            .build(),
    }
}

/// A route message for replacing (`delete == false`) or deleting `r` on device `index`.
pub(crate) fn route_msg(index: u32, r: &Route, delete: bool) -> Result<RouteMessage, String> {
    let mut msg = match (r.dst, r.gateway) {
        (IpNet::V4(dst), gw) => {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len());
            match gw {
                Some(IpAddr::V4(g)) => b = b.gateway(g),
                Some(IpAddr::V6(g)) => b = b.via(g),
                None => b = b.scope(RouteScope::Link),
            }
            b.output_interface(index).build()
        }
        (IpNet::V6(dst), gw) => {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len());
            match gw {
                Some(IpAddr::V6(g)) => b = b.gateway(g),
                Some(IpAddr::V4(g)) => {
                    return Err(format!("an IPv6 route cannot go via IPv4 gateway {g}"))
                }
                None => {}
            }
            b.output_interface(index).build()
        }
    };
    if delete {
        // Like `ip route del`: match any protocol, scope and type.
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        msg.header.kind = RouteType::Unspec;
    } else {
        msg.header.protocol = RouteProtocol::Boot;
        if r.onlink {
            msg.header.flags.insert(RouteFlags::Onlink);
        }
    }
    Ok(msg)
}

/// The ifindex of `lo` in every network namespace (the kernel's `LOOPBACK_IFINDEX`), where
/// IPv6 blackhole routes live.
const LOOPBACK_IFINDEX: u32 = 1;

/// A main-table blackhole route to `dst`, for adding (`delete == false`) or deleting.
pub(crate) fn blackhole_msg(dst: IpNet, delete: bool) -> RouteMessage {
    let mut msg = match dst {
        IpNet::V4(d) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(d.addr(), d.prefix_len())
            .build(),
        IpNet::V6(d) => {
            let b =
                RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            if delete {
                b.output_interface(LOOPBACK_IFINDEX).build()
            } else {
                b.build()
            }
        }
    };
    msg.header.kind = RouteType::BlackHole;
    if delete {
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
    } else {
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.attributes
            .push(RouteAttribute::Priority(BLACKHOLE_METRIC));
    }
    msg
}

/// An ARP/NDP message: with a MAC for a permanent replace, without for a delete.
pub(crate) fn neigh_msg(index: u32, n: &Neigh, replace: bool) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match n.ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(n.ip.into()));
    if replace {
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(n.mac.0.to_vec()));
    }
    msg
}

/// A vxlan FDB message (`AF_BRIDGE`, `NTF_SELF`, MAC and destination).
pub(crate) fn fdb_msg(index: u32, f: &Fdb, replace: bool) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.flags = NeighbourFlags::Own;
    if replace {
        msg.header.state = NeighbourState::Permanent;
    }
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(f.mac.0.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(f.dst.into()));
    msg
}

/// The message and extra `NLM_F_*` flags for a per-entry op on device `index` (ignored for
/// blackhole routes, which have no device).
pub(crate) fn entry_request(op: &Op, index: u32) -> Result<(RouteNetlinkMessage, u16), String> {
    let replace = NLM_F_CREATE | NLM_F_REPLACE;
    Ok(match op {
        Op::AddAddr(a) => (
            RouteNetlinkMessage::NewAddress(addr_msg(index, a)),
            NLM_F_CREATE | NLM_F_EXCL,
        ),
        Op::DelAddr(a) => (RouteNetlinkMessage::DelAddress(addr_msg(index, a)), 0),
        Op::DelRoute(r) => (RouteNetlinkMessage::DelRoute(route_msg(index, r, true)?), 0),
        Op::ReplaceRoute(r) => (
            RouteNetlinkMessage::NewRoute(route_msg(index, r, false)?),
            replace,
        ),
        Op::DelNeigh(n) => (
            RouteNetlinkMessage::DelNeighbour(neigh_msg(index, n, false)),
            0,
        ),
        Op::ReplaceNeigh(n) => (
            RouteNetlinkMessage::NewNeighbour(neigh_msg(index, n, true)),
            replace,
        ),
        Op::DelFdb(f) => (
            RouteNetlinkMessage::DelNeighbour(fdb_msg(index, f, false)),
            0,
        ),
        Op::ReplaceFdb(f) => (
            RouteNetlinkMessage::NewNeighbour(fdb_msg(index, f, true)),
            replace,
        ),
        Op::AddBlackhole(dst) => (
            RouteNetlinkMessage::NewRoute(blackhole_msg(*dst, false)),
            NLM_F_CREATE | NLM_F_EXCL,
        ),
        Op::DelBlackhole(dst) => (RouteNetlinkMessage::DelRoute(blackhole_msg(*dst, true)), 0),
        Op::CreateLink(_) | Op::RecreateLink(_) | Op::UpdateLink(_) => {
            return Err("a link op is not a per-entry op".into())
        }
    })
}

impl Kernel {
    /// Carry out `ops` (see the module docs for order, batching and what counts as success).
    pub async fn apply(&self, ops: &[Op]) -> ApplyReport {
        let mut report = ApplyReport::default();

        for op in ops.iter().filter(|o| phase(o) == Phase::Link) {
            match self.apply_link(op).await {
                Ok(()) => report.applied += 1,
                Err(e) => report.errors.push((op.clone(), e)),
            }
        }

        let entries: Vec<&Op> = ops.iter().filter(|o| phase(o) != Phase::Link).collect();
        if !entries.is_empty() {
            // Device names → ifindex, once (after the links were created).
            let names: Vec<&str> = entries
                .iter()
                .filter_map(|o| dev(o))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let found = join_all(names.iter().map(|n| self.get_link_raw(n))).await;
            let index: HashMap<&str, Result<Option<u32>, rtnetlink::Error>> = names
                .into_iter()
                .zip(found)
                .map(|(n, r)| (n, r.map(|l| l.map(|l| l.header.index))))
                .collect();

            for p in ENTRY_PHASES {
                let in_phase: Vec<&Op> =
                    entries.iter().copied().filter(|o| phase(o) == p).collect();
                for wave in waves(&in_phase) {
                    self.apply_wave(&wave, &index, &mut report).await;
                }
            }
        }

        tracing::debug!(
            ops = ops.len(),
            applied = report.applied,
            errors = report.errors.len(),
            "applied kernel ops"
        );
        report
    }

    /// Send one wave of independent per-entry ops in pipelined batches.
    async fn apply_wave(
        &self,
        wave: &[&Op],
        index: &HashMap<&str, Result<Option<u32>, rtnetlink::Error>>,
        report: &mut ApplyReport,
    ) {
        let mut sent: Vec<&Op> = Vec::with_capacity(wave.len());
        let mut msgs: Vec<(RouteNetlinkMessage, u16)> = Vec::with_capacity(wave.len());
        for &op in wave {
            let Some(name) = dev(op) else {
                match entry_request(op, 0) {
                    Ok(m) => {
                        sent.push(op);
                        msgs.push(m);
                    }
                    Err(reason) => report.errors.push((
                        op.clone(),
                        KernelError::Invalid {
                            cmd: command(op),
                            reason,
                        },
                    )),
                }
                continue;
            };
            match index.get(name) {
                Some(Ok(Some(i))) => match entry_request(op, *i) {
                    Ok(m) => {
                        sent.push(op);
                        msgs.push(m);
                    }
                    Err(reason) => report.errors.push((
                        op.clone(),
                        KernelError::Invalid {
                            cmd: command(op),
                            reason,
                        },
                    )),
                },
                // Deleting from a device that is gone: nothing is left to delete.
                Some(Ok(None)) | None if is_delete(op) => report.applied += 1,
                Some(Ok(None)) | None => report.errors.push((
                    op.clone(),
                    KernelError::NoSuchDevice {
                        cmd: command(op),
                        dev: name.to_owned(),
                    },
                )),
                Some(Err(e)) => report.errors.push((
                    op.clone(),
                    KernelError::LinkLookup {
                        name: name.to_owned(),
                        source: e.clone(),
                    },
                )),
            }
        }

        let mut batches: Vec<Vec<(RouteNetlinkMessage, u16)>> = Vec::new();
        let mut rest = msgs.into_iter().peekable();
        while rest.peek().is_some() {
            batches.push(rest.by_ref().take(BATCH).collect());
        }
        let results: Vec<Vec<Result<(), rtnetlink::Error>>> = stream::iter(batches)
            .map(|b| self.batch(b))
            .buffered(PIPELINE)
            .collect()
            .await;

        for (op, result) in sent.into_iter().zip(results.into_iter().flatten()) {
            match result {
                Ok(()) => report.applied += 1,
                Err(source) => {
                    let e = KernelError::Op {
                        cmd: command(op),
                        source,
                    };
                    if tolerated(op, &e) {
                        report.applied += 1;
                    } else {
                        report.errors.push((op.clone(), e));
                    }
                }
            }
        }
    }

    async fn apply_link(&self, op: &Op) -> Result<(), KernelError> {
        let fail = |source| KernelError::Op {
            cmd: command(op),
            source,
        };
        match op {
            Op::CreateLink(l) => {
                match self.create_link(l).await {
                    Err(e) if source_errno(&e) == Some(libc::EEXIST) => {
                        self.refuse_foreign(l).await?;
                        tracing::warn!(
                            dev = %l.name(),
                            "a device of this name already exists; deleting and creating it again"
                        );
                        self.delete_link(l.name()).await?;
                        self.create_link(l).await.map_err(fail)?;
                    }
                    r => r.map_err(fail)?,
                }
                refuse_router_advertisements(l);
                Ok(())
            }
            Op::RecreateLink(l) => {
                self.refuse_foreign(l).await?;
                self.delete_link(l.name()).await?;
                self.create_link(l).await.map_err(fail)?;
                refuse_router_advertisements(l);
                Ok(())
            }
            Op::UpdateLink(l) => {
                let index =
                    self.link_index(l.name())
                        .await?
                        .ok_or_else(|| KernelError::NoSuchDevice {
                            cmd: command(op),
                            dev: l.name().to_owned(),
                        })?;
                self.ack(RouteNetlinkMessage::SetLink(link::update_msg(index, l)), 0)
                    .await
                    .map_err(fail)
            }
            _ => Ok(()),
        }
    }

    async fn create_link(&self, l: &LinkSpec) -> Result<(), rtnetlink::Error> {
        self.ack(
            RouteNetlinkMessage::NewLink(link::create_msg(l)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
    }

    /// For a kind that leaves other devices alone ([`LinkSpec::refuses_foreign`]: ipip), an
    /// error when a device of `l`'s name exists with another kind. Flannel refuses to delete
    /// a user's device named `flannel.ipip`; the daemon keeps reporting it until it is gone.
    async fn refuse_foreign(&self, l: &LinkSpec) -> Result<(), KernelError> {
        if !l.refuses_foreign() {
            return Ok(());
        }
        let Some(existing) = self.get_link(l.name()).await? else {
            return Ok(());
        };
        let found = link::link_kind(&existing);
        if found == l.kind() {
            return Ok(());
        }
        Err(KernelError::Foreign {
            dev: l.name().to_owned(),
            kind: l.kind(),
            found,
        })
    }

    /// `ip link del <name>`; a device that is not there is fine.
    async fn delete_link(&self, name: &str) -> Result<(), KernelError> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0).await {
            Err(e) if source_errno(&e) != Some(libc::ENODEV) => Err(KernelError::Op {
                cmd: format!("ip link del {name}"),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// `net/ipv6/conf/<dev>/accept_ra = 0` on a device just created (Flannel does it for every
/// vxlan device). Best effort: without IPv6 in the kernel there is nothing to refuse.
fn refuse_router_advertisements(l: &LinkSpec) {
    let key = crate::sysctl::accept_ra_key(l.name());
    match crate::sysctl::write(&key, "0") {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && link::ipv6_optional(l) => {
            tracing::debug!(dev = %l.name(), "no IPv6 sysctls for the device; accept_ra left alone")
        }
        Err(e) => tracing::warn!(dev = %l.name(), error = %e, "cannot set accept_ra=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::vxlan::create_msg as vxlan_create_msg;
    use flannel_planner::state::VxlanLink;
    use netlink_packet_route::neighbour::NeighbourAddress;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};

    fn link() -> VxlanLink {
        VxlanLink {
            name: "flannel.1".into(),
            vni: 1,
            underlay_index: 2,
            local: "192.0.2.1".parse().expect("ip"),
            port: 0,
            gbp: false,
            learning: false,
            l2miss: false,
            l3miss: false,
            mtu: 1450,
            mac: MacAddr([0x0e, 0, 0, 0, 0, 1]),
            up: true,
        }
    }

    fn route(dev: &str, onlink: bool) -> Route {
        Route {
            dst: "198.18.2.0/24".parse().expect("net"),
            gateway: Some("198.18.2.0".parse().expect("ip")),
            dev: dev.into(),
            onlink,
        }
    }

    #[test]
    fn routes_are_proto_boot_main_table_and_onlink() {
        let msg = route_msg(7, &route("flannel.1", true), false).expect("msg");
        assert_eq!(msg.header.protocol, RouteProtocol::Boot);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert_eq!(msg.header.kind, RouteType::Unicast);
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_MAIN);
        assert!(msg.header.flags.contains(RouteFlags::Onlink));
        assert!(msg.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(msg
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                198, 18, 2, 0
            )))));
        let del = route_msg(7, &route("flannel.1", true), true).expect("msg");
        assert_eq!(del.header.protocol, RouteProtocol::Unspec);
        assert_eq!(del.header.scope, RouteScope::NoWhere);
        let mut direct = route("eth0", false);
        direct.gateway = None;
        let msg = route_msg(2, &direct, false).expect("msg");
        assert_eq!(msg.header.scope, RouteScope::Link);
        assert!(!msg.header.flags.contains(RouteFlags::Onlink));
        let mut bad = route("eth0", false);
        bad.dst = "2001:db8::/64".parse().expect("net");
        assert!(route_msg(2, &bad, false).is_err());
    }

    #[test]
    fn fdb_is_bridge_self_permanent_with_destination() {
        let f = Fdb {
            dev: "flannel.1".into(),
            mac: MacAddr([0x0e, 0, 0, 0, 0, 2]),
            dst: "192.0.2.2".parse().expect("ip"),
        };
        let msg = fdb_msg(4, &f, true);
        assert_eq!(msg.header.family, AddressFamily::Bridge);
        assert_eq!(msg.header.flags, NeighbourFlags::Own);
        assert_eq!(msg.header.state, NeighbourState::Permanent);
        assert_eq!(
            msg.attributes,
            vec![
                NeighbourAttribute::LinkLayerAddress(vec![0x0e, 0, 0, 0, 0, 2]),
                NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(
                    192, 0, 2, 2
                ))),
            ]
        );
        let (_, flags) = entry_request(&Op::ReplaceFdb(f.clone()), 4).expect("req");
        assert_eq!(flags, NLM_F_CREATE | NLM_F_REPLACE);
        let (_, flags) = entry_request(&Op::DelFdb(f), 4).expect("req");
        assert_eq!(flags, 0);
    }

    #[test]
    fn waves_separate_ops_on_the_same_object() {
        let n = |mac: u8| {
            Op::ReplaceNeigh(Neigh {
                dev: "flannel.1".into(),
                ip: "198.18.2.0".parse().expect("ip"),
                mac: MacAddr([0x0e, 0, 0, 0, 0, mac]),
            })
        };
        let other = Op::ReplaceNeigh(Neigh {
            dev: "flannel.1".into(),
            ip: "198.18.3.0".parse().expect("ip"),
            mac: MacAddr([0x0e, 0, 0, 0, 0, 3]),
        });
        let (a, b) = (n(1), n(2));
        let ops = [&a, &other, &b];
        let w = waves(&ops);
        assert_eq!(w, vec![vec![&a, &other], vec![&b]]);
    }

    #[test]
    fn phases_put_deletes_before_replaces_and_links_first() {
        let r = route("flannel.1", true);
        let mut ops = [
            Op::ReplaceRoute(r.clone()),
            Op::DelRoute(r),
            Op::UpdateLink(LinkSpec::Vxlan(link())),
        ];
        ops.sort_by_key(phase);
        assert!(matches!(
            ops,
            [Op::UpdateLink(_), Op::DelRoute(_), Op::ReplaceRoute(_)]
        ));
    }

    #[test]
    fn blackholes_are_exclusive_adds_and_typed_deletes() {
        let v4: IpNet = "198.18.1.0/24".parse().expect("net");
        let add = blackhole_msg(v4, false);
        assert_eq!(add.header.kind, RouteType::BlackHole);
        assert_eq!(add.header.protocol, RouteProtocol::Boot);
        assert_eq!(add.header.scope, RouteScope::Universe);
        assert_eq!(add.header.table, RouteHeader::RT_TABLE_MAIN);
        assert!(add.attributes.contains(&RouteAttribute::Priority(1024)));
        assert!(!add
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(_))));
        let (_, flags) = entry_request(&Op::AddBlackhole(v4), 0).expect("req");
        assert_eq!(flags, NLM_F_CREATE | NLM_F_EXCL);
        let del = blackhole_msg(v4, true);
        assert_eq!(del.header.kind, RouteType::BlackHole);
        assert_eq!(del.header.protocol, RouteProtocol::Unspec);
        let v6: IpNet = "2001:db8:f000:1::/64".parse().expect("net");
        let del6 = blackhole_msg(v6, true);
        assert_eq!(del6.header.address_family, AddressFamily::Inet6);
        assert!(del6.attributes.contains(&RouteAttribute::Oif(1)), "on lo");
        assert_eq!(
            command(&Op::AddBlackhole(v6)),
            "ip route add blackhole 2001:db8:f000:1::/64 metric 1024 proto boot"
        );
        assert_eq!(
            command(&Op::DelBlackhole(v4)),
            "ip route del blackhole 198.18.1.0/24"
        );
    }

    #[test]
    fn ipv6_underlay_device_uses_local6() {
        let mut l = link();
        l.name = "flannel-v6.1".into();
        l.local = "2001:db8:1::1".parse().expect("ip");
        l.mtu = 1430;
        let text = format!("{:?}", vxlan_create_msg(&l));
        assert!(text.contains("Local6(2001:db8:1::1)"), "{text}");
        assert!(!text.contains("Local("), "{text}");
        assert_eq!(
            command(&Op::CreateLink(LinkSpec::Vxlan(l))),
            "ip link add flannel-v6.1 address 0e:00:00:00:00:01 mtu 1430 type vxlan id 1 dev #2 \
             local 2001:db8:1::1 nolearning && ip link set flannel-v6.1 up"
        );
    }

    #[test]
    fn commands_read_like_iproute2() {
        assert_eq!(
            command(&Op::ReplaceRoute(route("flannel.1", true))),
            "ip route replace 198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink proto boot"
        );
        assert_eq!(
            command(&Op::ReplaceFdb(Fdb {
                dev: "flannel.1".into(),
                mac: MacAddr([0x0e, 0, 0, 0, 0, 2]),
                dst: "192.0.2.2".parse().expect("ip"),
            })),
            "bridge fdb replace 0e:00:00:00:00:02 dev flannel.1 dst 192.0.2.2 self permanent"
        );
        assert_eq!(
            command(&Op::CreateLink(LinkSpec::Vxlan(link()))),
            "ip link add flannel.1 address 0e:00:00:00:00:01 mtu 1450 type vxlan id 1 dev #2 \
             local 192.0.2.1 nolearning && ip link set flannel.1 up"
        );
    }
}
