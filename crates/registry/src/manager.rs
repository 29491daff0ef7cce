//! Acquire, keep and recover this host's subnet lease; watch everyone else's.
//!
//! Flannel's behaviour with its known failures fixed:
//! - a lost creation race is retried with another subnet (Flannel exits 1);
//! - a reservation (key without TTL) stays without TTL (Flannel turns it into a 24 h lease);
//! - renewal refreshes the existing etcd lease (one keep-alive, no rewrite of the key, so peers
//!   see no event), falling back to a fresh lease when it is gone; failures retry every minute;
//! - when our key is deleted or expires while we run, we re-acquire (the same subnet when it is
//!   still free), tell the daemon so it rewrites `subnet.env`, and keep running (Flannel exits).
//!
//! Decisions come from [`flannel_planner::allocator::decide`]; this module only sequences store
//! calls, timers and logs.

use std::time::Duration;

use flannel_model::{HostId, Lease, LeaseAttrs, LeaseScope, NetworkConfig, SubnetKey};
use flannel_planner::allocator::{decide, AllocError, Decision, ExistingLease, Ranges, Source};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::events::{forward_batch, log_peers, ManagerEvent};
use crate::filter::LeaseFilter;
use crate::peers::{OwnEvent, PeerTracker};
use crate::store::{StoreError, StoredLease, SubnetStore};

/// Timing and retry knobs. [`ManagerConfig::default`] is Flannel's.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// TTL of a lease (Flannel: 24 h).
    pub ttl: Duration,
    /// Renew this long before expiry (`--subnet-lease-renew-margin`, default 60 min). Capped at
    /// half the TTL so short test TTLs still renew in time.
    pub renew_margin: Duration,
    /// Wait between failed renewals (Flannel: 1 min) and between `out of subnets` retries.
    pub retry_interval: Duration,
    /// Creation races lost in a row before backing off (Flannel: 10, then exits).
    pub race_retries: u32,
    /// Longest wait between attempts while the store is unreachable.
    pub max_backoff: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            ttl: Duration::from_secs(24 * 3600),
            renew_margin: Duration::from_secs(60 * 60),
            retry_interval: Duration::from_secs(60),
            race_retries: 10,
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Why one acquisition attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("lost the race for a free subnet {0} times in a row")]
    Races(u32),
    #[error("shutting down")]
    Cancelled,
}

/// Why a network config gives no allocation ranges for etcd mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangesError {
    #[error("IPv4 is enabled but no IPv4 range is configured")]
    NoIpv4,
    #[error("IPv6 is enabled but no IPv6 range is configured")]
    NoIpv6,
}

/// The allocation ranges of a checked network config ([`NetworkConfig::parse_checked`]).
pub fn ranges_for(network: &NetworkConfig) -> Result<Ranges, RangesError> {
    let v4 = if network.enable_ipv4 {
        Some(network.ipv4_range().ok_or(RangesError::NoIpv4)?)
    } else {
        None
    };
    let v6 = if network.enable_ipv6 {
        Some(network.ipv6_range().ok_or(RangesError::NoIpv6)?)
    } else {
        None
    };
    Ok(Ranges { v4, v6 })
}

/// Keeps one host's lease. Create with [`LeaseManager::new`], call [`LeaseManager::acquire`],
/// then hand it to [`LeaseManager::run`].
#[derive(Debug)]
pub struct LeaseManager<S> {
    store: S,
    ranges: Ranges,
    attrs: LeaseAttrs,
    cfg: ManagerConfig,
    /// Leases that are not subnets of the network never reach the allocator or the tracker.
    filter: LeaseFilter,
    /// The network config the daemon runs with, when the manager should re-read the store's
    /// config before each `out of subnets` retry ([`LeaseManager::with_network_config`]).
    network: Option<NetworkConfig>,
    current: Option<StoredLease>,
    renew_at: Option<Instant>,
    rng: StdRng,
    observer: std::sync::Arc<dyn crate::observer::ManagerObserver>,
}

impl<S: SubnetStore> LeaseManager<S> {
    /// A manager that will lease a subnet from `ranges` advertising `attrs`.
    pub fn new(store: S, ranges: Ranges, attrs: LeaseAttrs, cfg: ManagerConfig) -> Self {
        LeaseManager {
            store,
            filter: LeaseFilter::new(scope_of(&ranges)),
            ranges,
            attrs,
            cfg,
            network: None,
            current: None,
            renew_at: None,
            rng: StdRng::from_os_rng(),
            observer: std::sync::Arc::new(crate::observer::NoObserver),
        }
    }

    /// Report renewals and store failures to `observer` (metrics).
    pub fn with_observer(
        mut self,
        observer: std::sync::Arc<dyn crate::observer::ManagerObserver>,
    ) -> Self {
        self.observer = observer;
        self
    }

    /// Use a fixed RNG seed (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// Re-read the network config from the store before every retry after `out of subnets`
    /// (`network` is the config in use). A change of `SubnetLen`/`SubnetMin`/`SubnetMax` (or
    /// the IPv6 ones) is taken over; any other change needs a restart and is logged as such.
    pub fn with_network_config(mut self, network: NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    /// The allocation ranges in use.
    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }

    /// The lease we hold, if any.
    pub fn current(&self) -> Option<&StoredLease> {
        self.current.as_ref()
    }

    /// Whose leases are ours: `PublicIP`, or `PublicIPv6` for an IPv6-only host.
    fn public_ip(&self) -> HostId {
        self.attrs.host_id()
    }

    /// Acquire a lease, retrying until it works or `cancel` fires. Store outages are retried
    /// with backoff, `out of subnets` every `retry_interval`; each failure is logged.
    pub async fn acquire(
        &mut self,
        previous: Option<SubnetKey>,
        cancel: &CancellationToken,
    ) -> Result<Lease, AcquireError> {
        let mut backoff = Duration::from_millis(500);
        loop {
            let mut out_of_subnets = false;
            let wait = match self.acquire_once(previous, &[]).await {
                Ok(lease) => return Ok(lease),
                Err(AcquireError::Store(e)) if e.is_transient() => {
                    warn!(error = %e, retry_in = ?backoff, "cannot reach the subnet store to acquire a lease; retrying");
                    let w = backoff;
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                    w
                }
                Err(AcquireError::Races(n)) => {
                    warn!(races = n, "lost every race for a free subnet; retrying");
                    backoff
                }
                Err(AcquireError::Alloc(e)) => {
                    error!(error = %e, retry_in = ?self.cfg.retry_interval, "cannot acquire a subnet lease; retrying (free a subnet or widen SubnetMin/SubnetMax)");
                    out_of_subnets = true;
                    self.cfg.retry_interval
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                _ = cancel.cancelled() => return Err(AcquireError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
            if out_of_subnets {
                self.reload_config().await;
            }
        }
    }

    /// Before an `out of subnets` retry: take over new allocation ranges from the store's
    /// config (see [`LeaseManager::with_network_config`]). Problems are logged; the ranges in
    /// use stay.
    async fn reload_config(&mut self) {
        let Some(running) = &self.network else {
            return;
        };
        let text = match self.store.get_network_config().await {
            Ok(text) => text,
            Err(e) => {
                warn!(error = %e, "cannot re-read the network config; retrying with the one in use");
                return;
            }
        };
        let fresh = match NetworkConfig::parse_checked(&text) {
            Ok(fresh) => fresh,
            Err(e) => {
                error!(error = %e, "the network config in the store is invalid; retrying with the one in use");
                return;
            }
        };
        if &fresh == running {
            return;
        }
        if !running.same_except_allocation(&fresh) {
            error!("the network config in the store changed beyond SubnetLen/SubnetMin/SubnetMax; restart flanneld to use it (retrying with the one in use)");
            return;
        }
        let ranges = match ranges_for(&fresh) {
            Ok(ranges) => ranges,
            Err(e) => {
                error!(error = %e, "the network config in the store has no usable ranges; retrying with the one in use");
                return;
            }
        };
        info!(
            subnet_len = ranges.v4.map(|r| r.subnet_len),
            subnet_min = ranges.v4.map(|r| tracing::field::display(r.min.addr())),
            subnet_max = ranges.v4.map(|r| tracing::field::display(r.max.addr())),
            ipv6_subnet_len = ranges.v6.map(|r| r.subnet_len),
            ipv6_subnet_min = ranges.v6.map(|r| tracing::field::display(r.min.addr())),
            ipv6_subnet_max = ranges.v6.map(|r| tracing::field::display(r.max.addr())),
            "the network config in the store changed; allocating with its ranges"
        );
        self.filter.set_scope(scope_of(&ranges));
        self.ranges = ranges;
        self.network = Some(fresh);
    }

    /// One acquisition attempt (lost creation races are retried inside it, up to
    /// `race_retries`). `exclude` lists subnets that must not be chosen.
    pub async fn acquire_once(
        &mut self,
        previous: Option<SubnetKey>,
        exclude: &[SubnetKey],
    ) -> Result<Lease, AcquireError> {
        let mut exclude = exclude.to_vec();
        for _ in 0..self.cfg.race_retries.max(1) {
            let (mut leases, _) = self.store.list_leases().await?;
            let ours = self.public_ip();
            // Our own (non-reservation) leases pass even when they no longer fit: the
            // allocator deletes those as stale and counts them for nothing.
            leases.retain(|l| {
                (l.lease.attrs.host_id() == ours && l.lease.expiration.is_some())
                    || self.filter.admit(l)
            });
            let existing: Vec<ExistingLease> = leases
                .iter()
                .map(|l| ExistingLease::from_lease(&l.lease))
                .collect();
            let decision = decide(
                &self.ranges,
                &existing,
                self.public_ip(),
                previous,
                &exclude,
                &mut self.rng,
            )?;
            match decision {
                Decision::Reuse {
                    subnet,
                    reservation,
                } => {
                    let held = leases.iter().find(|l| l.lease.subnet == subnet);
                    let stored = self.reuse(subnet, reservation, held).await?;
                    return Ok(self.hold(stored, reservation));
                }
                Decision::Create {
                    subnet,
                    source,
                    stale,
                } => {
                    for key in stale {
                        info!(subnet = %key, "deleting our old lease: it no longer fits the network config");
                        self.store.delete_lease(&key).await?;
                    }
                    match self
                        .store
                        .create_lease(&subnet, &self.attrs, Some(self.cfg.ttl))
                        .await
                    {
                        Ok(stored) => {
                            let how = match source {
                                Source::Previous => "the subnet from the previous subnet file",
                                Source::Random => "a free subnet",
                            };
                            info!(subnet = %subnet, public_ip = %self.public_ip(), "acquired {how}");
                            return Ok(self.hold(stored, false));
                        }
                        Err(StoreError::AlreadyExists(_)) => {
                            info!(subnet = %subnet, "another host leased this subnet first; choosing another");
                            exclude.push(subnet);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(AcquireError::Races(self.cfg.race_retries))
    }

    /// Take back the lease that names our public IP. A live lease with our exact attributes is
    /// kept with one keep-alive (peers see no change); otherwise the key is rewritten.
    async fn reuse(
        &mut self,
        subnet: SubnetKey,
        reservation: bool,
        held: Option<&StoredLease>,
    ) -> Result<StoredLease, StoreError> {
        if reservation {
            info!(subnet = %subnet, "using the subnet reserved for this host (no TTL)");
            if let Some(h) = held.filter(|h| h.lease.attrs == self.attrs) {
                return Ok(h.clone());
            }
            return self.store.put_lease(&subnet, &self.attrs, None).await;
        }
        if let Some(h) = held.filter(|h| h.lease.attrs == self.attrs && h.lease_id != 0) {
            if let Some(ttl) = self.store.keep_alive(h.lease_id).await? {
                info!(subnet = %subnet, "found our existing lease; keeping it");
                let mut kept = h.clone();
                kept.lease.expiration = Some(std::time::SystemTime::now() + ttl);
                return Ok(kept);
            }
        }
        info!(subnet = %subnet, "found our existing lease; rewriting it with current attributes");
        self.store
            .put_lease(&subnet, &self.attrs, Some(self.cfg.ttl))
            .await
    }

    fn hold(&mut self, stored: StoredLease, reservation: bool) -> Lease {
        let lease = stored.lease.clone();
        self.renew_at = if reservation || stored.lease_id == 0 {
            None
        } else {
            Some(self.renewal_deadline(self.cfg.ttl))
        };
        self.current = Some(stored);
        lease
    }

    fn renewal_deadline(&self, ttl: Duration) -> Instant {
        let margin = self.cfg.renew_margin.min(ttl / 2);
        Instant::now() + ttl.saturating_sub(margin)
    }

    /// Keep the lease and watch peers until `cancel` fires. Peer changes and re-acquisitions
    /// are sent on `events`. Nothing is deleted on exit: the lease stays for the next start.
    pub async fn run(mut self, events: mpsc::Sender<ManagerEvent>, cancel: CancellationToken) {
        let own = self.current.as_ref().map(|c| c.lease.subnet);
        let mut tracker = PeerTracker::new(own);
        let watch = self.store.watch_leases();
        tokio::pin!(watch);
        let mut synced = false;
        loop {
            let renew_at = self.renew_at;
            tokio::select! {
                _ = cancel.cancelled() => return,
                batch = watch.next() => {
                    let Some(batch) = batch else {
                        error!("lease watch ended unexpectedly; restarting it");
                        self.observer.store_error("watch");
                        watch.set(self.store.watch_leases());
                        continue;
                    };
                    let batch = self.filter.batch(batch);
                    let Some(own_events) = forward_batch(&mut tracker, batch, &mut synced, &events, "initial lease snapshot").await else {
                        return;
                    };
                    for own in own_events {
                        if !self.on_own_event(own, &mut tracker, &events, &cancel).await {
                            return;
                        }
                    }
                }
                _ = sleep_until_opt(renew_at) => {
                    if !self.renew(&mut tracker, &events, &cancel).await {
                        return;
                    }
                }
            }
        }
    }

    /// React to a change of our own key. Returns false when the daemon is gone or stopping.
    async fn on_own_event(
        &mut self,
        event: OwnEvent,
        tracker: &mut PeerTracker,
        events: &mpsc::Sender<ManagerEvent>,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(current) = self.current.clone() else {
            return true;
        };
        match event {
            OwnEvent::StoreReset => {
                warn!(subnet = %current.lease.subnet, "the subnet store lost its data (etcd wiped or restored); writing our lease again if it is gone");
                // Revisions of the old store say nothing about the new one.
                if let Some(c) = self.current.as_mut() {
                    c.mod_revision = 0;
                }
                true
            }
            OwnEvent::Deleted => {
                if current.mod_revision > tracker.revision() {
                    debug!("ignoring a delete of our key older than our last write");
                    return true;
                }
                warn!(subnet = %current.lease.subnet, "our lease was deleted or expired; re-acquiring");
                self.recover(&[], tracker, events, cancel).await
            }
            OwnEvent::Written(stored) => {
                if stored.lease.attrs == self.attrs {
                    if stored.mod_revision >= current.mod_revision {
                        let reservation = stored.lease_id == 0;
                        self.current = Some(stored);
                        if reservation {
                            self.renew_at = None;
                        }
                    }
                    return true;
                }
                if stored.lease.attrs.host_id() != self.public_ip() {
                    warn!(
                        subnet = %current.lease.subnet,
                        holder = %stored.lease.attrs.host_id(),
                        "our subnet was taken over by another host; acquiring another one"
                    );
                    let taken = [current.lease.subnet];
                    return self.recover(&taken, tracker, events, cancel).await;
                }
                warn!(subnet = %current.lease.subnet, "our lease was rewritten with other attributes; restoring ours");
                let ttl = (current.lease_id != 0).then_some(self.cfg.ttl);
                match self
                    .store
                    .put_lease(&current.lease.subnet, &self.attrs, ttl)
                    .await
                {
                    Ok(stored) => {
                        let reservation = stored.lease_id == 0;
                        self.hold(stored, reservation);
                    }
                    Err(e) => {
                        self.observer.store_error("put_lease");
                        warn!(error = %e, "restoring our lease failed; the next renewal retries")
                    }
                }
                true
            }
        }
    }

    /// Renew the lease (keep-alive); on loss, recover. Returns false when stopping.
    async fn renew(
        &mut self,
        tracker: &mut PeerTracker,
        events: &mpsc::Sender<ManagerEvent>,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(current) = self.current.clone() else {
            self.renew_at = None;
            return true;
        };
        match self.store.keep_alive(current.lease_id).await {
            Ok(Some(ttl)) => {
                self.renew_at = Some(self.renewal_deadline(ttl));
                self.observer
                    .lease_renewed(std::time::SystemTime::now() + ttl);
                info!(subnet = %current.lease.subnet, valid_for = ?ttl, "renewed lease");
                true
            }
            Ok(None) => {
                warn!(subnet = %current.lease.subnet, "our lease expired before it could be renewed; re-acquiring");
                self.recover(&[], tracker, events, cancel).await
            }
            Err(e) => {
                self.observer.store_error("renew");
                warn!(error = %e, subnet = %current.lease.subnet, "Error renewing lease (trying again in {:?})", self.cfg.retry_interval);
                self.renew_at = Some(Instant::now() + self.cfg.retry_interval);
                true
            }
        }
    }

    /// Acquire again after losing our lease, preferring the subnet we had.
    async fn recover(
        &mut self,
        exclude: &[SubnetKey],
        tracker: &mut PeerTracker,
        events: &mpsc::Sender<ManagerEvent>,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(previous) = self.current.as_ref().map(|c| c.lease.subnet) else {
            return true;
        };
        let prefer = (!exclude.contains(&previous)).then_some(previous);
        let mut backoff = Duration::from_millis(200);
        let lease = loop {
            match self.acquire_once(prefer, exclude).await {
                Ok(lease) => break lease,
                Err(e) => {
                    let alloc = matches!(e, AcquireError::Alloc(_));
                    let wait = if alloc {
                        self.cfg.retry_interval
                    } else {
                        backoff
                    };
                    warn!(error = %e, retry_in = ?wait, "re-acquiring our lease failed; retrying");
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    if alloc {
                        self.reload_config().await;
                    }
                }
            }
        };
        if lease.subnet == previous {
            info!(subnet = %lease.subnet, "re-acquired the same subnet");
        } else {
            warn!(old = %previous, new = %lease.subnet, "re-acquired a different subnet; pods on this host need new addresses");
        }
        let moved = tracker.set_own(lease.subnet);
        if !moved.is_empty() {
            log_peers(&moved);
            if events.send(ManagerEvent::Peers(moved)).await.is_err() {
                return false;
            }
        }
        events
            .send(ManagerEvent::Reacquired { lease, previous })
            .await
            .is_ok()
    }
}

/// The lease keys that belong to the network of `ranges`.
fn scope_of(ranges: &Ranges) -> LeaseScope {
    LeaseScope::of_ranges(ranges.v4.as_ref(), ranges.v6.as_ref())
}

/// Sleep until `at`, or forever when there is nothing to wait for.
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
