//! The vxlan on-demand mode's runtime ([`RuntimeSpec::MissResponder`]): answering the kernel's
//! L2/L3 misses on the device from the lease set, and removing learned entries whose peer left
//! or changed. The decisions are `flannel_planner::ondemand`'s; the kernel calls go through
//! [`KernelApi`]. The datapath loop owns the responder: it shares the loop's kernel connection
//! and peer set, and its counters are part of the loop's "kernel state reconciled" line.
//!
//! [`RuntimeSpec::MissResponder`]: crate::backend::RuntimeSpec::MissResponder

use std::collections::BTreeMap;

use flannel_kernel::miss::{MissEvent, MissEvents};
use flannel_kernel::KernelApi;
use flannel_model::{Lease, SubnetKey};
use flannel_planner::ondemand;
use tracing::{debug, info, warn};

/// What the on-demand responder did since start (logged with every reconcile).
#[derive(Debug, Clone, Copy, Default)]
pub struct MissCounters {
    /// Neighbour entries installed (L3 misses answered).
    pub l3: u64,
    /// FDB entries installed (L2 misses answered).
    pub l2: u64,
    /// Misses no lease covers (ignored).
    pub unknown: u64,
    /// Answers the kernel refused.
    pub failed: u64,
    /// Learned entries removed because their peer left or changed.
    pub forgotten: u64,
}

/// The responder for one device.
#[derive(Debug)]
pub struct MissResponder {
    dev: String,
    /// The device's ifindex as last looked up.
    index: Option<u32>,
    /// The responder's view of the peers (rebuilt lazily after peer changes).
    table: Option<ondemand::PeerTable>,
    counters: MissCounters,
}

impl MissResponder {
    /// A responder for the misses of `dev`.
    pub fn new(dev: String) -> Self {
        MissResponder {
            dev,
            index: None,
            table: None,
            counters: MissCounters::default(),
        }
    }

    /// What it did so far.
    pub fn counters(&self) -> MissCounters {
        self.counters
    }

    /// The peer set changed: the next miss rebuilds the table.
    pub fn peers_changed(&mut self) {
        self.table = None;
    }

    /// Listen for misses (its own socket); `None`, with a warning, when that fails.
    pub fn subscribe(&self) -> Option<MissEvents> {
        match flannel_kernel::miss::subscribe_misses() {
            Ok(m) => {
                info!(dev = %self.dev, "vxlan on-demand mode: watching for L2/L3 misses");
                Some(m)
            }
            Err(e) => {
                warn!(error = %e, "cannot watch for misses; remote pods are unreachable");
                None
            }
        }
    }

    /// Keep `app_solicit` set and remove learned entries whose peer left or changed (the
    /// static diff never sees learned entries).
    pub async fn forget_stale<K: KernelApi>(
        &mut self,
        kernel: &K,
        peers: &BTreeMap<SubnetKey, Lease>,
    ) {
        let dev = &self.dev;
        match flannel_kernel::miss::ensure_app_solicit(dev) {
            Ok(true) => info!(dev = %dev, "set app_solicit=3"),
            Ok(false) => {}
            Err(e) => debug!(dev = %dev, error = %e, "cannot set app_solicit (device missing?)"),
        }
        let (table, _) = ondemand::PeerTable::from_leases(peers.values());
        let (neighs, fdb) = match kernel.learned(dev).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot list learned entries");
                return;
            }
        };
        let (stale_n, stale_f) = ondemand::stale_learned(&neighs, &fdb, &table);
        if stale_n.is_empty() && stale_f.is_empty() {
            return;
        }
        let errors = kernel.forget(&stale_n, &stale_f).await;
        for e in &errors {
            warn!(error = %e, "cannot remove a stale learned entry");
        }
        let removed = u64::try_from(stale_n.len() + stale_f.len()).unwrap_or(u64::MAX);
        self.counters.forgotten = self.counters.forgotten.saturating_add(removed);
        info!(
            neighbours = stale_n.len(),
            fdb = stale_f.len(),
            "removed entries learned from departed peers"
        );
    }

    /// Answer one kernel miss on the device.
    pub async fn answer<K: KernelApi>(
        &mut self,
        kernel: &K,
        peers: &BTreeMap<SubnetKey, Lease>,
        ev: MissEvent,
    ) {
        if self.index != Some(ev.index) {
            self.index = kernel.device_index(&self.dev).await.ok().flatten();
            if self.index != Some(ev.index) {
                return;
            }
        }
        // Built once per change of the peer set, not once per miss.
        let table = self
            .table
            .get_or_insert_with(|| ondemand::PeerTable::from_leases(peers.values()).0);
        let answer = ondemand::decide(ev.miss, table, &self.dev);
        let result = match answer {
            ondemand::Answer::Neigh(n) => {
                self.counters.l3 += 1;
                debug!(ip = %n.ip, mac = %n.mac, "L3 miss answered");
                kernel.answer_neigh(ev.index, &n).await
            }
            ondemand::Answer::Fdb(f) => {
                self.counters.l2 += 1;
                debug!(mac = %f.mac, dst = %f.dst, "L2 miss answered");
                kernel.answer_fdb(ev.index, &f).await
            }
            ondemand::Answer::Unknown => {
                self.counters.unknown += 1;
                debug!(miss = ?ev.miss, "miss for an address no lease covers; ignored");
                Ok(())
            }
        };
        if let Err(e) = result {
            self.counters.failed += 1;
            warn!(error = %e, "cannot install the answer to a miss");
        }
    }
}
