//! The lease manager against the in-memory store, on paused tokio time (so a day passes in
//! milliseconds and timing is exact).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flannel_model::{Lease, LeaseAttrs, NetworkConfig, SubnetKey, SubnetRange};
use flannel_planner::allocator::Ranges;
use flannel_registry::memory::MemoryStore;
use flannel_registry::{
    ranges_for, AcquireError, LeaseManager, ManagerConfig, ManagerEvent, PeerEvent, StoreError,
    StoredLease, SubnetStore, WatchBatch,
};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

fn ranges() -> Ranges {
    Ranges {
        v4: Some(SubnetRange {
            network: "198.18.0.0/16".parse().expect("cidr"),
            subnet_len: 24,
            min: "198.18.1.0/24".parse().expect("cidr"),
            max: "198.18.255.0/24".parse().expect("cidr"),
        }),
        v6: None,
    }
}

fn attrs(host: u8) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Ipv4Addr::new(192, 0, 2, host),
        public_ipv6: None,
        backend_type: String::new(),
        backend_data: None,
        backend_v6_data: None,
    }
}

fn key(s: &str) -> SubnetKey {
    SubnetKey {
        ipv4: s.parse().expect("cidr"),
        ipv6: None,
    }
}

fn manager<S: SubnetStore>(store: S, host: u8) -> LeaseManager<S> {
    LeaseManager::new(store, ranges(), attrs(host), ManagerConfig::default()).with_seed(host.into())
}

/// The next event other than the one-time `Synced` marker.
async fn next_event(rx: &mut mpsc::Receiver<ManagerEvent>) -> ManagerEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(600), rx.recv())
            .await
            .expect("an event within 10 (virtual) minutes")
            .expect("manager alive");
        if ev != ManagerEvent::Synced {
            return ev;
        }
    }
}

/// Events queued now, without the `Synced` marker.
fn pending(rx: &mut mpsc::Receiver<ManagerEvent>) -> Vec<ManagerEvent> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|e| *e != ManagerEvent::Synced)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn acquires_a_24h_lease_and_reuses_it_after_restart_without_rewriting() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    let lease = m.acquire(None, &cancel).await.expect("acquire");
    let (id, ttl) = store.ttl_of(&lease.subnet).expect("key exists");
    assert_eq!(ttl, Some(24 * HOUR));
    let rev = m.current().expect("held").mod_revision;

    // "Restart": a new manager with the same public IP and attributes.
    tokio::time::advance(HOUR).await;
    let mut again = manager(store.clone(), 1);
    let lease2 = again.acquire(None, &cancel).await.expect("reacquire");
    assert_eq!(lease2.subnet, lease.subnet);
    let (id2, ttl2) = store.ttl_of(&lease.subnet).expect("key exists");
    assert_eq!(id2, id, "same etcd lease kept alive");
    assert_eq!(ttl2, Some(24 * HOUR), "TTL refreshed");
    assert_eq!(
        again.current().expect("held").mod_revision,
        rev,
        "key not rewritten"
    );
}

#[tokio::test(start_paused = true)]
async fn previous_subnet_is_taken_when_free() {
    let store = MemoryStore::new();
    let mut m = manager(store.clone(), 1);
    let lease = m
        .acquire(Some(key("198.18.77.0/24")), &CancellationToken::new())
        .await
        .expect("acquire");
    assert_eq!(lease.subnet, key("198.18.77.0/24"));
}

#[tokio::test(start_paused = true)]
async fn twenty_hosts_get_distinct_subnets() {
    let store = MemoryStore::new();
    let mut tasks = Vec::new();
    for host in 1..=20u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = manager(store, host);
            m.acquire(None, &CancellationToken::new()).await
        }));
    }
    let mut subnets = std::collections::BTreeSet::new();
    for t in tasks {
        let lease = t.await.expect("task").expect("acquire");
        assert!(subnets.insert(lease.subnet), "duplicate {}", lease.subnet);
    }
    assert_eq!(subnets.len(), 20);
    assert_eq!(store.list_leases().await.expect("list").0.len(), 20);
}

#[tokio::test(start_paused = true)]
async fn reservation_is_used_and_keeps_no_ttl() {
    let store = MemoryStore::new();
    let reserved = key("198.18.42.0/24");
    store
        .put_lease(&reserved, &attrs(1), None)
        .await
        .expect("reserve");
    // Another host never gets it.
    for host in 2..=30u8 {
        let lease = manager(store.clone(), host)
            .acquire(None, &CancellationToken::new())
            .await
            .expect("acquire");
        assert_ne!(lease.subnet, reserved);
    }
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    let lease = m.acquire(None, &cancel).await.expect("acquire");
    assert_eq!(lease.subnet, reserved);
    assert_eq!(lease.expiration, None);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    tokio::time::advance(72 * HOUR).await;
    tokio::task::yield_now().await;
    assert_eq!(
        store.ttl_of(&reserved),
        Some((0, None)),
        "still a reservation"
    );
    for ev in pending(&mut rx) {
        assert!(
            !matches!(ev, ManagerEvent::Reacquired { .. }),
            "unexpected {ev:?}"
        );
    }
    cancel.cancel();
    run.await.expect("run");
}

#[tokio::test(start_paused = true)]
async fn renews_before_expiry_for_days() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    let lease = m.acquire(None, &cancel).await.expect("acquire");
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    for _ in 0..(5 * 24) {
        tokio::time::advance(HOUR).await;
        tokio::task::yield_now().await;
        let (_, ttl) = store.ttl_of(&lease.subnet).expect("never expires");
        assert!(ttl.expect("has ttl") > Duration::ZERO);
    }
    assert_eq!(pending(&mut rx), vec![], "no re-acquisition was needed");
    cancel.cancel();
    run.await.expect("run");
}

#[tokio::test(start_paused = true)]
async fn renewal_failures_retry_every_minute() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    let lease = m.acquire(None, &cancel).await.expect("acquire");
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    // The store goes away just before renewal time (23 h) and comes back 30 minutes later.
    tokio::time::advance(22 * HOUR + 50 * 60 * Duration::from_secs(1)).await;
    store.set_unavailable(true);
    tokio::time::advance(40 * 60 * Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    store.set_unavailable(false);
    // Within one retry interval the lease is renewed: TTL back near 24 h.
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::task::yield_now().await;
    let (_, ttl) = store.ttl_of(&lease.subnet).expect("still leased");
    assert!(ttl.expect("ttl") > 23 * HOUR, "renewed: {ttl:?}");
    assert_eq!(pending(&mut rx), vec![]);
    cancel.cancel();
    run.await.expect("run");
}

#[tokio::test(start_paused = true)]
async fn deleted_lease_is_reacquired_with_the_same_subnet() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    let lease = m.acquire(None, &cancel).await.expect("acquire");
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    store.delete_lease(&lease.subnet).await.expect("delete");
    match next_event(&mut rx).await {
        ManagerEvent::Reacquired {
            lease: again,
            previous,
        } => {
            assert_eq!(previous, lease.subnet);
            assert_eq!(again.subnet, lease.subnet);
        }
        other => panic!("expected Reacquired, got {other:?}"),
    }
    assert!(store.ttl_of(&lease.subnet).is_some(), "key is back");
    cancel.cancel();
    run.await.expect("run");
}

#[tokio::test(start_paused = true)]
async fn lost_subnet_taken_by_another_host_moves_us_elsewhere() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    let lease = m.acquire(None, &cancel).await.expect("acquire");
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Our key expires while we are partitioned and another host takes the subnet at once:
    // simulate with a single overwrite by host 9.
    store
        .put_lease(&lease.subnet, &attrs(9), Some(24 * HOUR))
        .await
        .expect("overwrite");
    let mut reacquired = None;
    for _ in 0..3 {
        match next_event(&mut rx).await {
            ManagerEvent::Reacquired { lease, previous } => {
                reacquired = Some((lease, previous));
                break;
            }
            ManagerEvent::Peers(_) | ManagerEvent::Synced => {}
        }
    }
    let (new, previous) = reacquired.expect("re-acquired");
    assert_eq!(previous, lease.subnet);
    assert_ne!(new.subnet, lease.subnet);
    cancel.cancel();
    run.await.expect("run");
}

#[tokio::test(start_paused = true)]
async fn peers_are_reported_and_own_subnet_is_not() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    let own = m.acquire(None, &cancel).await.expect("acquire");
    let other = manager(store.clone(), 2)
        .acquire(None, &cancel)
        .await
        .expect("peer before watch");
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    // Expiration is wall-clock derived; compare what identifies a peer.
    let summary = |ev: ManagerEvent| match ev {
        ManagerEvent::Peers(p) => p
            .into_iter()
            .map(|e| match e {
                PeerEvent::Added(l) => ("added", l.subnet, l.attrs),
                PeerEvent::Removed(l) => ("removed", l.subnet, l.attrs),
            })
            .collect::<Vec<_>>(),
        other => panic!("expected peers, got {other:?}"),
    };
    assert_eq!(
        summary(next_event(&mut rx).await),
        vec![("added", other.subnet, other.attrs.clone())]
    );
    let third = manager(store.clone(), 3)
        .acquire(None, &cancel)
        .await
        .expect("peer after watch");
    assert_eq!(
        summary(next_event(&mut rx).await),
        vec![("added", third.subnet, third.attrs.clone())]
    );
    store.delete_lease(&other.subnet).await.expect("delete");
    assert_eq!(
        summary(next_event(&mut rx).await),
        vec![("removed", other.subnet, other.attrs.clone())]
    );
    // A compaction-style re-snapshot with nothing changed emits nothing.
    store.force_resnapshot();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pending(&mut rx), vec![]);
    assert_ne!(own.subnet, third.subnet);
    cancel.cancel();
    run.await.expect("run");
}

#[tokio::test(start_paused = true)]
async fn out_of_subnets_is_reported_clearly() {
    let store = MemoryStore::new();
    let small = Ranges {
        v4: Some(SubnetRange {
            network: "198.18.0.0/28".parse().expect("cidr"),
            subnet_len: 30,
            min: "198.18.0.4/30".parse().expect("cidr"),
            max: "198.18.0.8/30".parse().expect("cidr"),
        }),
        v6: None,
    };
    for host in 1..=2u8 {
        LeaseManager::new(store.clone(), small, attrs(host), ManagerConfig::default())
            .acquire_once(None, &[])
            .await
            .expect("room for two");
    }
    let err = LeaseManager::new(store.clone(), small, attrs(3), ManagerConfig::default())
        .acquire_once(None, &[])
        .await
        .expect_err("exhausted");
    assert!(matches!(err, AcquireError::Alloc(_)));
    assert_eq!(
        err.to_string(),
        "out of subnets: every subnet between SubnetMin 198.18.0.4 and SubnetMax 198.18.0.8 is leased"
    );
}

/// A store where another host wins the race for the first subnet we try to create.
#[derive(Clone)]
struct RacingStore {
    inner: MemoryStore,
    raced: Arc<AtomicBool>,
}

impl SubnetStore for RacingStore {
    async fn get_network_config(&self) -> Result<String, StoreError> {
        self.inner.get_network_config().await
    }
    async fn list_leases(&self) -> Result<(Vec<StoredLease>, i64), StoreError> {
        self.inner.list_leases().await
    }
    async fn get_lease(&self, key: &SubnetKey) -> Result<Option<StoredLease>, StoreError> {
        self.inner.get_lease(key).await
    }
    async fn create_lease(
        &self,
        key: &SubnetKey,
        a: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<StoredLease, StoreError> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            self.inner.create_lease(key, &attrs(200), ttl).await?;
        }
        self.inner.create_lease(key, a, ttl).await
    }
    async fn put_lease(
        &self,
        key: &SubnetKey,
        a: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<StoredLease, StoreError> {
        self.inner.put_lease(key, a, ttl).await
    }
    async fn keep_alive(&self, id: i64) -> Result<Option<Duration>, StoreError> {
        self.inner.keep_alive(id).await
    }
    async fn delete_lease(&self, key: &SubnetKey) -> Result<(), StoreError> {
        self.inner.delete_lease(key).await
    }
    fn watch_leases(&self) -> impl Stream<Item = WatchBatch> + Send + 'static {
        self.inner.watch_leases()
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_race_is_retried_with_another_subnet() {
    let inner = MemoryStore::new();
    let store = RacingStore {
        inner: inner.clone(),
        raced: Arc::new(AtomicBool::new(false)),
    };
    let wanted = key("198.18.9.0/24");
    let lease: Lease = manager(store, 1)
        .acquire_once(Some(wanted), &[])
        .await
        .expect("second try wins");
    assert_ne!(lease.subnet, wanted);
    let winner = inner
        .get_lease(&wanted)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(winner.lease.attrs.public_ip, Ipv4Addr::new(192, 0, 2, 200));
}

#[tokio::test(start_paused = true)]
async fn synced_is_sent_once_after_the_first_snapshot_even_without_peers() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    let mut m = manager(store.clone(), 1);
    m.acquire(None, &cancel).await.expect("acquire");
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("in time");
    assert_eq!(first, Some(ManagerEvent::Synced));
    store.force_resnapshot();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(rx.try_recv().is_err(), "Synced only once");
    cancel.cancel();
    run.await.expect("run");
}

/// Issue 16.1: hand-written keys larger than the network or outside it are neither counted
/// when allocating nor reported as peers.
#[tokio::test(start_paused = true)]
async fn leases_that_are_not_subnets_of_the_network_are_ignored() {
    let store = MemoryStore::new();
    let cancel = CancellationToken::new();
    for foreign in ["198.16.0.0/12", "203.0.113.0/24", "198.18.7.0/25"] {
        store
            .put_lease(&key(foreign), &attrs(9), None)
            .await
            .expect("hand-written lease");
    }
    let peer = manager(store.clone(), 2)
        .acquire_once(None, &[])
        .await
        .expect("a /12 covering the network must not count as taken");
    let mut m = manager(store.clone(), 1);
    let own = m.acquire(None, &cancel).await.expect("acquire");
    assert_ne!(own.subnet, peer.subnet);
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    let subnets = |ev: ManagerEvent| match ev {
        ManagerEvent::Peers(p) => p
            .into_iter()
            .map(|e| match e {
                PeerEvent::Added(l) => ("added", l.subnet),
                PeerEvent::Removed(l) => ("removed", l.subnet),
            })
            .collect::<Vec<_>>(),
        other => panic!("expected peers, got {other:?}"),
    };
    assert_eq!(
        subnets(next_event(&mut rx).await),
        vec![("added", peer.subnet)]
    );
    // Written while we run: still ignored; a real peer after it is reported.
    store
        .put_lease(&key("198.18.0.0/16"), &attrs(8), None)
        .await
        .expect("hand-written lease");
    let third = manager(store.clone(), 3)
        .acquire(None, &cancel)
        .await
        .expect("third host");
    assert_eq!(
        subnets(next_event(&mut rx).await),
        vec![("added", third.subnet)]
    );
    store
        .delete_lease(&key("198.16.0.0/12"))
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pending(&mut rx), vec![]);
    cancel.cancel();
    run.await.expect("run");
}

/// Issue 16.2: the `out of subnets` retry re-reads the config, so fixing SubnetMin/SubnetMax
/// in the store is enough; other changes (here `Network`) and invalid configs are not taken
/// over while running.
#[tokio::test(start_paused = true)]
async fn a_config_fixed_in_the_store_is_used_on_the_next_retry() {
    let config = |network: &str, max: &str| {
        format!(
            r#"{{"Network":"{network}","SubnetMin":"198.18.5.0","SubnetMax":"{max}","Backend":{{"Type":"vxlan"}}}}"#
        )
    };
    let store = MemoryStore::new();
    let tight = config("198.18.0.0/16", "198.18.5.0");
    store.set_config(&tight);
    let network = NetworkConfig::parse_checked(&tight).expect("config");
    let ranges = ranges_for(&network).expect("ranges");
    LeaseManager::new(store.clone(), ranges, attrs(2), ManagerConfig::default())
        .acquire_once(None, &[])
        .await
        .expect("host 2 takes the only subnet");
    let mut m = LeaseManager::new(store.clone(), ranges, attrs(1), ManagerConfig::default())
        .with_network_config(network)
        .with_seed(1);
    let cancel = CancellationToken::new();
    let task = {
        let cancel = cancel.clone();
        tokio::spawn(async move { m.acquire(None, &cancel).await.map(|l| l.subnet) })
    };
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert!(!task.is_finished(), "out of subnets");

    store.set_config("{not json");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!task.is_finished(), "an invalid config is not used");
    store.set_config(&config("198.18.0.0/15", "198.18.6.0"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!task.is_finished(), "a new Network needs a restart");

    store.set_config(&config("198.18.0.0/16", "198.18.6.0"));
    let subnet = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("acquired within two retries of the fix")
        .expect("task")
        .expect("acquire");
    assert_eq!(subnet, key("198.18.6.0/24"));
}
