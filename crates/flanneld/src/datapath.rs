//! Keeps the kernel matching the leases: observe → plan → diff → apply, on every peer change,
//! on every kernel event that touches what we own (a deleted `flannel.1`, a removed route,
//! neighbour or FDB entry), and every 10 s as a safety net.
//!
//! Until the first complete lease snapshot has arrived only the device and its address are
//! ensured, so a restart never removes entries for peers that simply have not been read yet.
//! On shutdown nothing is flushed: the kernel state stays, and traffic with it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flannel_kernel::{Kernel, KernelEvent, KernelEvents, ObserveScope};
use flannel_model::{Lease, SubnetKey};
use flannel_planner::diff::{diff, Op};
use flannel_planner::state::Route;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backend::Backend;
use crate::journal::RouteJournal;
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

/// The reconciler.
pub struct Datapath {
    kernel: Kernel,
    backend: Backend,
    own: SubnetKey,
    peers: BTreeMap<SubnetKey, Lease>,
    synced: bool,
    journal: RouteJournal,
    /// Peers already reported as unusable (logged once each).
    skipped_logged: HashSet<SubnetKey>,
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("backend", &self.backend.name())
            .field("own", &self.own)
            .field("peers", &self.peers.len())
            .field("synced", &self.synced)
            .finish()
    }
}

impl Datapath {
    /// Connect to the kernel and load our route journal.
    pub async fn new(backend: Backend, own: SubnetKey, journal: RouteJournal) -> Result<Self> {
        let kernel = Kernel::connect().context("opening the rtnetlink connection")?;
        Ok(Datapath {
            kernel,
            backend,
            own,
            peers: BTreeMap::new(),
            synced: false,
            journal,
            skipped_logged: HashSet::new(),
        })
    }

    fn observe_scope(&self) -> ObserveScope {
        ObserveScope {
            devs: self.backend.owned_devs(),
            route_devs: self.backend.route_devs(),
        }
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
        let (desired, skipped) = self
            .backend
            .desired(&self.own, self.peers.values(), &|ip| on_link.contains(&ip));
        for s in skipped {
            if self.skipped_logged.insert(s.subnet) {
                warn!(subnet = %s.subnet, reason = %s.reason, "ignoring a peer lease this backend cannot use");
            }
        }
        let scope = self.backend.scope(self.journal.routes());
        let mut ops = diff(&desired, &observed, &scope);
        if !self.synced {
            // Peers not read yet: only make sure the device and its address exist.
            ops.retain(|op| {
                matches!(
                    op,
                    Op::CreateLink(_)
                        | Op::RecreateLink(_)
                        | Op::UpdateLink(_)
                        | Op::AddAddr(_)
                        | Op::DelAddr(_)
                )
            });
        }
        if ops.is_empty() {
            debug!(why, "kernel state already matches");
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
        let mut failed_deletes = BTreeSet::new();
        for (op, err) in &report.errors {
            warn!(op = ?op, error = %err, "kernel operation failed; the next pass retries");
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
        info!(
            why,
            ops = ops.len(),
            failed = report.errors.len(),
            peers = self.peers.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "kernel state reconciled"
        );
        Ok(ops.len())
    }

    /// Peers whose public IP is on our L2 segment (only needed for vxlan DirectRouting).
    async fn on_link_peers(&self) -> HashSet<Ipv4Addr> {
        let Backend::Vxlan { opts, .. } = &self.backend else {
            return HashSet::new();
        };
        if !opts.direct_routing {
            return HashSet::new();
        }
        let mut out = HashSet::new();
        for lease in self.peers.values() {
            let ip = lease.attrs.public_ip;
            match self.kernel.route_get(IpAddr::V4(ip)).await {
                Ok(answer) if answer.gateway.is_none() => {
                    out.insert(ip);
                }
                Ok(_) => {}
                Err(e) => debug!(peer = %ip, error = %e, "route lookup failed; using vxlan"),
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

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Peers(events) => {
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
            Command::Own(own) => self.own = own,
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
        let mut tick = tokio::time::interval(RESYNC_PERIOD);
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
                    if !concerns(&ev, &relevant) {
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
                _ = tick.tick() => "periodic check",
            };
            if let Err(e) = self.reconcile(why).await {
                warn!(
                    error = format!("{e:#}"),
                    "reconcile failed; retrying on the next event or in 10s"
                );
            }
        }
    }
}

fn concerns(ev: &KernelEvent, devs: &[String]) -> bool {
    let dev = match ev {
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

async fn next_event(events: &mut Option<KernelEvents>) -> Option<KernelEvent> {
    match events {
        Some(ev) => ev.next().await,
        None => std::future::pending().await,
    }
}

fn log_ops(ops: &[Op], why: &str) {
    // One line per link change; per-peer entries summarised (there may be thousands).
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        match op {
            Op::CreateLink(l) => {
                info!(why, dev = %l.name, mtu = l.mtu, mac = %l.mac, "creating vxlan device")
            }
            Op::RecreateLink(l) => {
                warn!(why, dev = %l.name, "re-creating vxlan device with incompatible settings")
            }
            Op::UpdateLink(l) => {
                info!(why, dev = %l.name, mtu = l.mtu, mac = %l.mac, "updating vxlan device")
            }
            Op::AddAddr(a) => info!(why, dev = %a.dev, addr = %a.net, "adding address"),
            Op::DelAddr(a) => info!(why, dev = %a.dev, addr = %a.net, "removing address"),
            Op::DelRoute(_) => *counts.entry("routes removed").or_default() += 1,
            Op::DelNeigh(_) => *counts.entry("neighbours removed").or_default() += 1,
            Op::DelFdb(_) => *counts.entry("fdb entries removed").or_default() += 1,
            Op::ReplaceRoute(_) => *counts.entry("routes set").or_default() += 1,
            Op::ReplaceNeigh(_) => *counts.entry("neighbours set").or_default() += 1,
            Op::ReplaceFdb(_) => *counts.entry("fdb entries set").or_default() += 1,
        }
    }
    if !counts.is_empty() {
        info!(why, changes = ?counts, "programming peers");
    }
    for op in ops {
        debug!(?op, "kernel op");
    }
}
