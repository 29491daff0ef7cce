//! Keeps the kernel matching the leases: observe → plan → diff → apply, on every peer change,
//! on every kernel event that touches what we own (a deleted `flannel.1`, a removed route,
//! neighbour, FDB entry or blackhole route), and every 10 s as a safety net (every
//! `--iptables-resync` seconds when that is shorter and `--ip-blackhole-route` is on, Flannel's
//! period for the blackhole check).
//!
//! With `--ip-blackhole-route` the desired state also holds a blackhole route per family of our
//! subnet; the blackholes of subnets we held before (the previous `subnet.env`, or a lease
//! re-acquired elsewhere while running) are ours to remove. This also runs for the `alloc`
//! backend, which otherwise programs nothing.
//!
//! Until the first complete lease snapshot has arrived only the devices, their addresses and
//! the blackhole routes are ensured, so a restart never removes entries for peers that simply
//! have not been read yet. On shutdown nothing is flushed: the kernel state stays, and traffic
//! with it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flannel_kernel::miss::{MissEvent, MissEvents};
use flannel_kernel::{KernelApi, KernelEvent, KernelEvents, ObserveScope};
use flannel_model::{Lease, SubnetKey};
use flannel_planner::blackhole;
use flannel_planner::diff::{diff, Op};
use flannel_planner::drift;
use flannel_planner::state::{KernelState, LinkSpec, Route};
use futures_util::StreamExt;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backend::{self, Backend, RuntimeSpec};
use crate::journal::RouteJournal;
use crate::metrics::Metrics;
use crate::ondemand::MissResponder;
use flannel_registry::PeerEvent;

/// How often the full reconcile pass runs even when nothing happened.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(10);

/// What the daemon tells the datapath.
#[derive(Debug)]
pub enum Command {
    /// Peers changed.
    Peers(Vec<PeerEvent>),
    /// The peer set is complete (first snapshot loaded).
    Synced,
    /// Our own lease changed subnet.
    Own(SubnetKey),
}

/// How the reconciler runs besides the backend's own needs.
#[derive(Debug, Clone)]
pub struct DatapathOptions {
    /// `--ip-blackhole-route`: keep a blackhole route for our subnet(s).
    pub blackhole: bool,
    /// Period of the full pass (at most [`RESYNC_PERIOD`]).
    pub resync: Duration,
    /// The subnet of the previous run (`subnet.env`), whose blackhole routes are ours too.
    pub previous: Option<SubnetKey>,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        DatapathOptions {
            blackhole: false,
            resync: RESYNC_PERIOD,
            previous: None,
        }
    }
}

/// The reconciler, over any [`KernelApi`] (netlink in flanneld, a fake in tests).
pub struct Datapath<K> {
    kernel: K,
    backend: Arc<dyn Backend>,
    own: SubnetKey,
    opts: DatapathOptions,
    /// Blackhole destinations of subnets we held before (ours to remove).
    retired_blackholes: BTreeSet<IpNet>,
    peers: BTreeMap<SubnetKey, Lease>,
    synced: bool,
    journal: RouteJournal,
    /// Peers already reported as unusable (logged once each).
    skipped_logged: HashSet<SubnetKey>,
    /// The vxlan on-demand mode's miss responder (the backend's `MissResponder` runtime).
    responder: Option<MissResponder>,
    /// Where passes, operations and repairs are counted.
    metrics: Metrics,
    /// The desired state of the last pass after the first snapshot (what drift is measured
    /// against).
    programmed: Option<KernelState>,
}

impl<K> std::fmt::Debug for Datapath<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("backend", &self.backend.name())
            .field("own", &self.own)
            .field("peers", &self.peers.len())
            .field("synced", &self.synced)
            .finish()
    }
}

impl<K: KernelApi + 'static> Datapath<K> {
    /// The reconciler for our lease `own`, with the route journal loaded.
    pub fn new(
        kernel: K,
        backend: Arc<dyn Backend>,
        own: SubnetKey,
        journal: RouteJournal,
        opts: DatapathOptions,
    ) -> Self {
        let mut retired_blackholes = BTreeSet::new();
        if let Some(previous) = opts.previous {
            retire(&mut retired_blackholes, &previous, &own);
        }
        // The backend's miss-responder runtime (vxlan on-demand) runs inside this loop.
        let responder = match backend.runtime() {
            Some(RuntimeSpec::MissResponder { dev }) => Some(MissResponder::new(dev)),
            _ => None,
        };
        Datapath {
            kernel,
            backend,
            own,
            opts,
            retired_blackholes,
            peers: BTreeMap::new(),
            synced: false,
            journal,
            skipped_logged: HashSet::new(),
            responder,
            metrics: Metrics::new(),
            programmed: None,
        }
    }

    /// Count into `metrics` (flanneld's `/metrics`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn observe_scope(&self) -> ObserveScope {
        ObserveScope {
            devs: self.backend.owned_devs(),
            route_devs: self.backend.route_devs(),
            blackholes: self.opts.blackhole,
        }
    }

    /// The blackhole routes wanted now.
    fn desired_blackholes(&self) -> BTreeSet<IpNet> {
        if self.opts.blackhole {
            blackhole::desired(&self.own)
        } else {
            BTreeSet::new()
        }
    }

    /// The blackhole routes we may remove or must keep: ours now and before.
    fn owned_blackholes(&self) -> BTreeSet<IpNet> {
        if !self.opts.blackhole {
            return BTreeSet::new();
        }
        let mut out = self.desired_blackholes();
        out.extend(self.retired_blackholes.iter().copied());
        out
    }

    /// One pass. Returns the number of operations applied.
    pub async fn reconcile(&mut self, why: &str) -> Result<usize> {
        let started = Instant::now();
        let observed = self
            .kernel
            .observe(&self.observe_scope())
            .await
            .context("reading the kernel state")?;
        let on_link = self.on_link_peers().await;
        let (mut desired, skipped) =
            self.backend
                .desired(&self.own, &mut self.peers.values(), &|ip| {
                    on_link.contains(&ip)
                });
        desired.blackholes = self.desired_blackholes();
        self.metrics.set_peers(
            self.backend.name(),
            self.peers.len().saturating_sub(skipped.len()),
        );
        for s in skipped {
            if self.skipped_logged.insert(s.subnet) {
                warn!(subnet = %s.subnet, reason = %s.reason, "ignoring a peer lease this backend cannot use");
            }
        }
        let scope = backend::scope(
            &*self.backend,
            self.journal.routes(),
            self.owned_blackholes(),
        );
        let mut ops = diff(&desired, &observed, &scope);
        if !self.synced {
            // Peers not read yet: only make sure the devices, their addresses and our
            // blackhole routes are right.
            ops.retain(|op| {
                matches!(
                    op,
                    Op::CreateLink(_)
                        | Op::RecreateLink(_)
                        | Op::UpdateLink(_)
                        | Op::AddAddr(_)
                        | Op::DelAddr(_)
                        | Op::AddBlackhole(_)
                        | Op::DelBlackhole(_)
                )
            });
        }
        if let (true, Some(r)) = (self.synced, self.responder.as_mut()) {
            r.forget_stale(&self.kernel, &self.peers).await;
        }
        if ops.is_empty() {
            debug!(why, "kernel state already matches");
            self.metrics.reconciled(started.elapsed());
            if self.synced {
                self.programmed = Some(desired);
            }
            return Ok(0);
        }
        let owned_devs = self.backend.owned_devs();
        let foreign = |r: &Route| !owned_devs.contains(&r.dev);
        // Record routes we are about to add on foreign devices before adding them, so a crash
        // in between never leaves a route of ours that we would not recognise later.
        let mut journal: BTreeSet<Route> = self.journal.routes().clone();
        journal.extend(desired.routes.iter().filter(|r| foreign(r)).cloned());
        self.journal.store(journal)?;

        log_ops(&ops, why);
        let report = self.kernel.apply(&ops).await;
        self.count(&ops, &report.errors);
        let mut failed_deletes = BTreeSet::new();
        for (op, err) in &report.errors {
            warn!(error = %err, "kernel operation failed; the next pass retries");
            if let Op::DelRoute(r) = op {
                failed_deletes.insert(r.clone());
            }
        }
        let mut journal: BTreeSet<Route> = desired
            .routes
            .iter()
            .filter(|r| foreign(r))
            .cloned()
            .collect();
        journal.extend(failed_deletes);
        if !self.synced {
            // Nothing was removed yet: keep what we knew.
            journal.extend(self.journal.routes().iter().cloned());
        }
        self.journal.store(journal)?;
        let m = self
            .responder
            .as_ref()
            .map(MissResponder::counters)
            .unwrap_or_default();
        info!(
            why,
            ops = ops.len(),
            failed = report.errors.len(),
            peers = self.peers.len(),
            miss_l3 = m.l3,
            miss_l2 = m.l2,
            miss_unknown = m.unknown,
            miss_failed = m.failed,
            forgotten = m.forgotten,
            took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "kernel state reconciled"
        );
        self.metrics.reconciled(started.elapsed());
        if self.synced {
            self.programmed = Some(desired);
        }
        Ok(ops.len())
    }

    /// Count the pass's operations by result, and the repairs among those that took effect.
    fn count<E>(&self, ops: &[Op], errors: &[(Op, E)]) {
        let mut by_op: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for op in ops {
            let failed = errors.iter().any(|(o, _)| o == op);
            let result = if failed { "error" } else { "ok" };
            *by_op.entry((drift::op_name(op), result)).or_default() += 1;
            if let (false, Some(before)) = (failed, self.programmed.as_ref()) {
                if let Some(kind) = drift::repair_kind(op, before) {
                    self.metrics.repaired(kind.as_str());
                }
            }
        }
        for ((op, result), n) in by_op {
            self.metrics.kernel_ops(op, result, n);
        }
    }

    /// The peer addresses the backend asked about that are on our L2 segment (vxlan
    /// DirectRouting asks about peers' public IPs).
    async fn on_link_peers(&self) -> HashSet<IpAddr> {
        let mut out = HashSet::new();
        for lease in self.peers.values() {
            for ip in self.backend.on_link_queries(lease) {
                match self.kernel.route_get(ip).await {
                    Ok(answer) if answer.gateway.is_none() => {
                        out.insert(ip);
                    }
                    Ok(_) => {}
                    Err(e) => debug!(peer = %ip, error = %e, "route lookup failed; using vxlan"),
                }
            }
        }
        out
    }

    async fn subscribe(&self) -> Option<KernelEvents> {
        match self.kernel.events().await {
            Ok(ev) => Some(ev),
            Err(e) => {
                warn!(error = %e, "cannot watch kernel events; relying on the periodic pass");
                None
            }
        }
    }

    pub(crate) fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Peers(events) => {
                if let Some(r) = self.responder.as_mut() {
                    r.peers_changed();
                }
                for e in events {
                    match e {
                        PeerEvent::Added(l) => {
                            self.skipped_logged.remove(&l.subnet);
                            self.peers.insert(l.subnet, l);
                        }
                        PeerEvent::Removed(l) => {
                            self.peers.remove(&l.subnet);
                        }
                    }
                }
            }
            Command::Synced => self.synced = true,
            Command::Own(own) => {
                retire(&mut self.retired_blackholes, &self.own, &own);
                self.own = own;
            }
        }
    }

    /// Run until `cancel` fires or the command channel closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, cancel: CancellationToken) {
        let relevant: Vec<String> = self
            .backend
            .owned_devs()
            .into_iter()
            .chain(self.backend.route_devs())
            .collect();
        let mut events = self.subscribe().await;
        let mut misses = self.responder.as_ref().and_then(MissResponder::subscribe);
        let period = self
            .opts
            .resync
            .clamp(Duration::from_secs(1), RESYNC_PERIOD);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = cancel.cancelled() => return,
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    self.handle(cmd);
                    // Batch everything already queued into one pass.
                    while let Ok(cmd) = commands.try_recv() {
                        self.handle(cmd);
                    }
                    "lease change"
                }
                ev = next_event(&mut events) => {
                    let Some(ev) = ev else {
                        warn!("kernel event stream ended; re-subscribing (the periodic pass covers the gap)");
                        events = self.subscribe().await;
                        continue;
                    };
                    if !concerns(&ev, &relevant, &self.owned_blackholes()) {
                        continue;
                    }
                    debug!(event = ?ev, "kernel changed under us");
                    // Coalesce the burst (our own deletions echo back, too).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Some(ev) = events.as_mut() {
                        while futures_util::FutureExt::now_or_never(ev.next()).flatten().is_some() {}
                    }
                    "kernel change"
                }
                miss = next_miss(&mut misses) => {
                    match (miss, self.responder.as_mut()) {
                        (Some(ev), Some(r)) => r.answer(&self.kernel, &self.peers, ev).await,
                        _ => {
                            warn!("miss stream ended; re-subscribing");
                            misses = flannel_kernel::miss::subscribe_misses().ok();
                        }
                    }
                    continue;
                }
                _ = tick.tick() => "periodic check",
            };
            if let Err(e) = self.reconcile(why).await {
                warn!(
                    error = crate::logging::error_text(&e),
                    "reconcile failed; retrying on the next event or in {period:?}"
                );
            }
        }
    }
}

/// Our subnet moved from `old` to `new`: the old subnet's blackhole routes become ours to
/// remove, the new one's are wanted (no longer retired).
fn retire(retired: &mut BTreeSet<IpNet>, old: &SubnetKey, new: &SubnetKey) {
    if old == new {
        return;
    }
    retired.extend(blackhole::desired(old));
    for b in blackhole::desired(new) {
        retired.remove(&b);
    }
}

/// Whether a kernel event may have undone our work: it is about one of `devs`, about one of our
/// `blackholes`, or events were lost.
fn concerns(ev: &KernelEvent, devs: &[String], blackholes: &BTreeSet<IpNet>) -> bool {
    let dev = match ev {
        KernelEvent::BlackholeRemoved { dst } => return blackholes.contains(dst),
        KernelEvent::LinkRemoved { name, .. } | KernelEvent::LinkChanged { name, .. } => {
            Some(name.as_str())
        }
        KernelEvent::AddrRemoved { dev, .. }
        | KernelEvent::RouteRemoved { dev, .. }
        | KernelEvent::NeighRemoved { dev, .. }
        | KernelEvent::FdbRemoved { dev, .. } => dev.as_deref(),
        KernelEvent::Overrun => None,
    };
    dev.is_none_or(|d| devs.iter().any(|x| x == d))
}

async fn next_miss(misses: &mut Option<MissEvents>) -> Option<MissEvent> {
    match misses {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

async fn next_event(events: &mut Option<KernelEvents>) -> Option<KernelEvent> {
    match events {
        Some(ev) => ev.next().await,
        None => std::future::pending().await,
    }
}

/// A device's MAC for logs (left out for kinds without one, e.g. ipip).
fn mac(l: &LinkSpec) -> Option<tracing::field::DisplayValue<flannel_model::MacAddr>> {
    l.mac().map(tracing::field::display)
}

fn log_ops(ops: &[Op], why: &str) {
    // One line per link change; per-peer entries summarised (there may be thousands).
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        match op {
            Op::CreateLink(l) => {
                info!(why, dev = %l.name(), mtu = l.mtu(), mac = mac(l), "creating {} device", l.kind())
            }
            Op::RecreateLink(l) => {
                warn!(why, dev = %l.name(), "re-creating {} device with incompatible settings", l.kind())
            }
            Op::UpdateLink(l) => {
                info!(why, dev = %l.name(), mtu = l.mtu(), mac = mac(l), "updating {} device", l.kind())
            }
            Op::AddAddr(a) => info!(why, dev = %a.dev, addr = %a.net, "adding address"),
            Op::DelAddr(a) => info!(why, dev = %a.dev, addr = %a.net, "removing address"),
            Op::DelRoute(_) => *counts.entry("routes removed").or_default() += 1,
            Op::DelNeigh(_) => *counts.entry("neighbours removed").or_default() += 1,
            Op::DelFdb(_) => *counts.entry("fdb entries removed").or_default() += 1,
            Op::ReplaceRoute(_) => *counts.entry("routes set").or_default() += 1,
            Op::ReplaceNeigh(_) => *counts.entry("neighbours set").or_default() += 1,
            Op::ReplaceFdb(_) => *counts.entry("fdb entries set").or_default() += 1,
            Op::AddBlackhole(dst) => info!(why, dst = %dst, "adding blackhole route"),
            Op::DelBlackhole(dst) => info!(why, dst = %dst, "removing blackhole route"),
        }
    }
    if !counts.is_empty() {
        let changes: Vec<String> = counts
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        info!(why, changes = %changes.join(", "), "programming peers");
    }
    for op in ops {
        debug!(?op, "kernel op");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v4: &str, v6: &str) -> SubnetKey {
        SubnetKey {
            ipv4: v4.parse().expect("net"),
            ipv6: Some(v6.parse().expect("net")),
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn a_moved_subnet_retires_its_blackholes() {
        let a = key("198.18.1.0/24", "2001:db8:f000:1::/64");
        let b = key("198.18.2.0/24", "2001:db8:f000:2::/64");
        let mut retired = BTreeSet::new();
        retire(&mut retired, &a, &a);
        assert!(retired.is_empty());
        retire(&mut retired, &a, &b);
        assert_eq!(
            retired,
            BTreeSet::from([net("198.18.1.0/24"), net("2001:db8:f000:1::/64")])
        );
        // Moving back: a's blackholes are wanted again, b's retired.
        retire(&mut retired, &b, &a);
        assert_eq!(
            retired,
            BTreeSet::from([net("198.18.2.0/24"), net("2001:db8:f000:2::/64")])
        );
    }

    #[test]
    fn only_our_blackholes_and_devices_concern_us() {
        let devs = vec!["flannel.1".to_string(), "flannel-v6.1".to_string()];
        let ours = BTreeSet::from([net("198.18.1.0/24")]);
        let removed = |dst: &str| KernelEvent::BlackholeRemoved { dst: net(dst) };
        assert!(concerns(&removed("198.18.1.0/24"), &devs, &ours));
        assert!(!concerns(&removed("203.0.113.0/24"), &devs, &ours));
        let route = |dev: &str| KernelEvent::RouteRemoved {
            dst: net("2001:db8:f000:2::/64"),
            gateway: None,
            dev: Some(dev.into()),
        };
        assert!(concerns(&route("flannel-v6.1"), &devs, &ours));
        assert!(!concerns(&route("eth1"), &devs, &ours));
        assert!(concerns(&KernelEvent::Overrun, &devs, &ours));
    }

    // The loop's decisions against a fake kernel (no root): what happens before and after the
    // first full lease snapshot, the route journal on foreign devices, blackholes.

    use crate::backend;
    use flannel_kernel::iface::ExternalInterface;
    use flannel_model::{LeaseAttrs, NetworkConfig, RawJson};
    use flannel_testkit::fake_kernel::FakeKernel;
    use std::path::Path;

    fn ext() -> ExternalInterface {
        ExternalInterface {
            index: 2,
            name: "eth0".into(),
            mtu: 1500,
            iface_addr: Some("192.0.2.1".parse().expect("ip")),
            iface_v6_addr: None,
            ext_addr: Some("192.0.2.1".parse().expect("ip")),
            ext_v6_addr: None,
        }
    }

    fn configured(backend_json: &str) -> Arc<dyn Backend> {
        let mut n = NetworkConfig::parse(&format!(
            r#"{{"Network":"198.18.0.0/16","Backend":{backend_json}}}"#
        ))
        .expect("config");
        n.check().expect("valid");
        backend::configure(
            &n,
            &ext(),
            None,
            None,
            crate::cli::WgImplementationFlag::Auto,
        )
        .expect("backend")
        .into()
    }

    fn own(s: &str) -> SubnetKey {
        SubnetKey {
            ipv4: s.parse().expect("net"),
            ipv6: None,
        }
    }

    /// Host `i`'s lease: 198.18.i.0/24 at 192.0.2.i, vxlan data when `ty` is vxlan.
    fn peer(i: u8, ty: &str) -> Lease {
        Lease {
            subnet: own(&format!("198.18.{i}.0/24")),
            attrs: LeaseAttrs {
                public_ip: std::net::Ipv4Addr::new(192, 0, 2, i),
                public_ipv6: None,
                backend_type: ty.into(),
                backend_data: (ty == "vxlan").then(|| {
                    RawJson::new(&format!(
                        r#"{{"VNI":1,"VtepMAC":"0e:00:00:00:00:{i:02x}"}}"#
                    ))
                    .expect("json")
                }),
                backend_v6_data: None,
            },
            expiration: None,
        }
    }

    fn datapath(
        kernel: &FakeKernel,
        backend: Arc<dyn Backend>,
        dir: &Path,
        opts: DatapathOptions,
    ) -> Datapath<FakeKernel> {
        let journal = RouteJournal::load(dir.join("subnet.env.routes"));
        Datapath::new(kernel.clone(), backend, own("198.18.1.0/24"), journal, opts)
    }

    fn routes(k: &FakeKernel) -> Vec<String> {
        k.state().routes.iter().map(ToString::to_string).collect()
    }

    #[tokio::test]
    async fn peers_entries_are_removed_only_after_the_first_full_snapshot() {
        let vx = configured(r#"{"Type":"vxlan"}"#);
        // What a previous run left: the device and the entries of host 9, now gone.
        let (before, _) = vx.desired(
            &own("198.18.1.0/24"),
            &mut [peer(9, "vxlan")].iter(),
            &|_| false,
        );
        let kernel = FakeKernel::new(before);
        let dir = tempfile::tempdir().expect("tmp");
        let mut dp = datapath(&kernel, vx, dir.path(), DatapathOptions::default());
        assert_eq!(dp.reconcile("start-up").await.expect("pass"), 0);
        dp.handle(Command::Peers(vec![PeerEvent::Added(peer(2, "vxlan"))]));
        assert_eq!(dp.reconcile("lease change").await.expect("pass"), 0);
        assert_eq!(
            routes(&kernel),
            ["198.18.9.0/24 via 198.18.9.0 dev flannel.1 onlink"],
            "nothing removed or added before the snapshot is complete"
        );
        dp.handle(Command::Synced);
        assert_eq!(dp.reconcile("lease change").await.expect("pass"), 6);
        assert_eq!(
            routes(&kernel),
            ["198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink"]
        );
        let s = kernel.state();
        assert_eq!((s.neighs.len(), s.fdb.len()), (1, 1));
        assert_eq!(dp.reconcile("periodic check").await.expect("pass"), 0);
    }

    #[tokio::test]
    async fn a_route_deleted_by_hand_counts_as_a_repair() {
        let kernel = FakeKernel::default();
        let dir = tempfile::tempdir().expect("tmp");
        let metrics = Metrics::new();
        let mut dp = datapath(
            &kernel,
            configured(r#"{"Type":"vxlan"}"#),
            dir.path(),
            DatapathOptions::default(),
        )
        .with_metrics(metrics.clone());
        dp.handle(Command::Peers(vec![PeerEvent::Added(peer(2, "vxlan"))]));
        dp.handle(Command::Synced);
        dp.reconcile("lease change").await.expect("pass");
        let text = metrics.encode();
        assert!(
            text.contains("flannel_peers{backend=\"vxlan\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("flannel_kernel_repairs_total{"), "{text}");
        kernel.edit(|s| s.routes.clear());
        assert_eq!(dp.reconcile("kernel change").await.expect("pass"), 1);
        let text = metrics.encode();
        assert!(
            text.contains("flannel_kernel_repairs_total{kind=\"route\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("flannel_kernel_ops_total{op=\"replace_route\",result=\"ok\"} 2\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn devices_are_made_before_the_snapshot_and_peers_after() {
        let kernel = FakeKernel::default();
        let dir = tempfile::tempdir().expect("tmp");
        let mut dp = datapath(
            &kernel,
            configured(r#"{"Type":"vxlan"}"#),
            dir.path(),
            DatapathOptions::default(),
        );
        dp.handle(Command::Peers(vec![PeerEvent::Added(peer(2, "vxlan"))]));
        dp.reconcile("start-up").await.expect("pass");
        let s = kernel.state();
        assert_eq!(s.links.keys().collect::<Vec<_>>(), ["flannel.1"]);
        assert_eq!(s.addrs.len(), 1);
        assert_eq!(s.entry_count(), 0);
        dp.handle(Command::Synced);
        dp.reconcile("lease change").await.expect("pass");
        assert_eq!(kernel.state().entry_count(), 3);
    }

    #[tokio::test]
    async fn the_journal_decides_which_foreign_routes_are_ours() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("subnet.env.routes");
        // Ours from a previous run, recorded; an operator's inside the network, and outside.
        std::fs::write(&path, "198.18.9.0/24 via 192.0.2.9 dev eth0\n").expect("write");
        let route = |dst: &str, gw: &str| Route {
            dst: dst.parse().expect("net"),
            gateway: Some(gw.parse().expect("ip")),
            dev: "eth0".into(),
            onlink: false,
        };
        let start = flannel_planner::state::KernelState {
            routes: [
                route("198.18.9.0/24", "192.0.2.9"),
                route("198.18.200.0/24", "192.0.2.200"),
                route("203.0.113.0/24", "192.0.2.254"),
            ]
            .into(),
            ..Default::default()
        };
        let kernel = FakeKernel::new(start);
        let mut dp = datapath(
            &kernel,
            configured(r#"{"Type":"host-gw"}"#),
            dir.path(),
            DatapathOptions::default(),
        );
        dp.handle(Command::Peers(vec![PeerEvent::Added(peer(2, "host-gw"))]));
        dp.reconcile("start-up").await.expect("pass");
        assert_eq!(routes(&kernel).len(), 3, "nothing added or removed yet");
        assert_eq!(
            std::fs::read_to_string(&path).expect("journal"),
            "198.18.9.0/24 via 192.0.2.9 dev eth0\n",
            "what we knew is kept until the snapshot"
        );
        dp.handle(Command::Synced);
        dp.reconcile("lease change").await.expect("pass");
        assert_eq!(
            routes(&kernel),
            [
                "198.18.2.0/24 via 192.0.2.2 dev eth0",
                "198.18.200.0/24 via 192.0.2.200 dev eth0",
                "203.0.113.0/24 via 192.0.2.254 dev eth0",
            ],
            "our stale route is gone, the operator's stay"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("journal"),
            "198.18.2.0/24 via 192.0.2.2 dev eth0\n"
        );
    }

    #[tokio::test]
    async fn direct_routing_asks_the_kernel_and_journals_the_route() {
        let kernel = FakeKernel::default();
        kernel.set_on_link(["192.0.2.2".parse().expect("ip")]);
        let dir = tempfile::tempdir().expect("tmp");
        let mut dp = datapath(
            &kernel,
            configured(r#"{"Type":"vxlan","DirectRouting":true}"#),
            dir.path(),
            DatapathOptions::default(),
        );
        dp.handle(Command::Peers(vec![
            PeerEvent::Added(peer(2, "vxlan")),
            PeerEvent::Added(peer(3, "vxlan")),
        ]));
        dp.handle(Command::Synced);
        dp.reconcile("lease change").await.expect("pass");
        assert_eq!(
            routes(&kernel),
            [
                "198.18.2.0/24 via 192.0.2.2 dev eth0",
                "198.18.3.0/24 via 198.18.3.0 dev flannel.1 onlink",
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("subnet.env.routes")).expect("journal"),
            "198.18.2.0/24 via 192.0.2.2 dev eth0\n"
        );
    }

    #[tokio::test]
    async fn blackholes_follow_our_subnet_and_spare_the_operators() {
        let start = flannel_planner::state::KernelState {
            blackholes: [net("198.18.7.0/24"), net("203.0.113.0/24")].into(),
            ..Default::default()
        };
        let kernel = FakeKernel::new(start);
        let dir = tempfile::tempdir().expect("tmp");
        let opts = DatapathOptions {
            blackhole: true,
            previous: Some(own("198.18.7.0/24")),
            ..DatapathOptions::default()
        };
        let mut dp = datapath(&kernel, configured(r#"{"Type":"alloc"}"#), dir.path(), opts);
        // Before the snapshot too: blackholes do not depend on peers.
        dp.reconcile("start-up").await.expect("pass");
        assert_eq!(
            kernel.state().blackholes,
            [net("198.18.1.0/24"), net("203.0.113.0/24")].into()
        );
        dp.handle(Command::Own(own("198.18.3.0/24")));
        dp.reconcile("lease change").await.expect("pass");
        assert_eq!(
            kernel.state().blackholes,
            [net("198.18.3.0/24"), net("203.0.113.0/24")].into()
        );
        // Removed behind our back: put back on the next pass.
        kernel.edit(|s| {
            s.blackholes.remove(&net("198.18.3.0/24"));
        });
        assert_eq!(dp.reconcile("kernel change").await.expect("pass"), 1);
        assert!(kernel.state().blackholes.contains(&net("198.18.3.0/24")));
    }
}
