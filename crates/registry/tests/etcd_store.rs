//! `EtcdStore` against a real etcd (testkit fixture): keys and values, create races, TTLs,
//! keep-alive, garbage tolerance, the reconnecting watch (restart, compaction) and behaviour
//! when etcd cannot be reached.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant, SystemTime};

use flannel_model::SubnetKey;
use flannel_registry::etcd::{EtcdConfig, EtcdStore};
use flannel_registry::{StoreError, StoredLease, SubnetStore, WatchBatch, WatchEvent};
use flannel_testkit::etcd::EtcdServer;

mod common;
use common::{attrs, eventually, key, next_batch, within, PREFIX};
use futures_util::StreamExt;

fn store_for(endpoints: Vec<String>, timeout: Duration) -> EtcdStore {
    EtcdStore::connect(EtcdConfig {
        endpoints,
        prefix: PREFIX.into(),
        request_timeout: timeout,
        ..EtcdConfig::default()
    })
    .unwrap()
}

fn store(etcd: &EtcdServer) -> EtcdStore {
    store_for(vec![etcd.endpoint()], Duration::from_secs(10))
}

fn path(cidr: &str) -> String {
    format!("{PREFIX}/subnets/{}", cidr.replace('/', "-"))
}

/// Current etcd revision, read with etcdctl.
fn revision(etcd: &EtcdServer) -> i64 {
    let out = etcd
        .etcdctl(&["endpoint", "status", "--write-out=json"])
        .unwrap();
    let marker = "\"revision\":";
    let start = out.find(marker).unwrap() + marker.len();
    let digits: String = out[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

/// A free loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn assert_expires_in(lease: &StoredLease, ttl: Duration) {
    let exp = lease.lease.expiration.expect("a lease with a TTL expires");
    let left = exp.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        left <= ttl + Duration::from_secs(1) && left + Duration::from_secs(15) >= ttl,
        "expires in {left:?}, expected about {ttl:?}"
    );
}

fn sorted_keys(leases: &[StoredLease]) -> Vec<SubnetKey> {
    let mut keys: Vec<SubnetKey> = leases.iter().map(|l| l.lease.subnet).collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_config_get_and_missing() {
    let Some(etcd) = EtcdServer::start_or_skip("network_config_get_and_missing") else {
        return;
    };
    let store = store(&etcd);
    match store.get_network_config().await {
        Err(e @ StoreError::ConfigNotFound { .. }) => assert_eq!(
            e.to_string(),
            format!("flannel config not found in etcd store (key {PREFIX}/config). Did you create your config using etcdv3 API?")
        ),
        other => panic!("expected ConfigNotFound, got {other:?}"),
    }
    let config = r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}"#;
    etcd.etcdctl(&["put", &format!("{PREFIX}/config"), config])
        .unwrap();
    assert_eq!(store.get_network_config().await.unwrap(), config);

    // A trailing slash in the prefix means the same keys (Flannel uses path.Join).
    let slashed = EtcdStore::connect(EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: format!("{PREFIX}/"),
        ..EtcdConfig::default()
    })
    .unwrap();
    assert_eq!(slashed.get_network_config().await.unwrap(), config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_exclusive_and_loser_lease_is_revoked() {
    let Some(etcd) = EtcdServer::start_or_skip("create_is_exclusive_and_loser_lease_is_revoked")
    else {
        return;
    };
    let store = store(&etcd);
    let k = key("10.5.34.0/24");
    let a = attrs("192.0.2.1");
    let created = store
        .create_lease(&k, &a, Some(Duration::from_secs(600)))
        .await
        .unwrap();
    assert_ne!(created.lease_id, 0);
    assert_eq!(created.lease.subnet, k);
    assert_eq!(created.lease.attrs, a);
    assert!(created.mod_revision > 0);
    assert_expires_in(&created, Duration::from_secs(600));

    // The value is Flannel's JSON, byte for byte.
    let raw = etcd
        .etcdctl(&["get", &path("10.5.34.0/24"), "--print-value-only"])
        .unwrap();
    assert_eq!(raw.trim_end(), a.to_json());

    match store
        .create_lease(&k, &attrs("192.0.2.2"), Some(Duration::from_secs(600)))
        .await
    {
        Err(StoreError::AlreadyExists(msg)) => assert!(msg.contains("10.5.34.0-24"), "{msg}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The loser's etcd lease was revoked: only the winner's remains.
    let leases = etcd.etcdctl(&["lease", "list"]).unwrap();
    assert!(leases.contains("found 1 leases"), "{leases}");
    assert!(
        leases.contains(&format!("{:x}", created.lease_id)),
        "{leases}"
    );

    // The stored lease is unchanged.
    let got = store.get_lease(&k).await.unwrap().unwrap();
    assert_eq!(got.lease.attrs, a);
    assert_eq!(got.lease_id, created.lease_id);
    assert_eq!(got.mod_revision, created.mod_revision);

    // Creating without a TTL makes a reservation.
    let r = store
        .create_lease(&key("10.5.35.0/24"), &a, None)
        .await
        .unwrap();
    assert_eq!((r.lease_id, r.lease.expiration), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_and_without_ttl() {
    let Some(etcd) = EtcdServer::start_or_skip("put_with_and_without_ttl") else {
        return;
    };
    let store = store(&etcd);
    let k = key("10.5.40.0/24");

    let reserved = store
        .put_lease(&k, &attrs("192.0.2.1"), None)
        .await
        .unwrap();
    assert_eq!(reserved.lease_id, 0);
    assert_eq!(reserved.lease.expiration, None);
    let got = store.get_lease(&k).await.unwrap().unwrap();
    assert_eq!(got, reserved);

    // Put overwrites (renewal): new attrs, a new etcd lease with the TTL.
    let renewed = store
        .put_lease(&k, &attrs("192.0.2.9"), Some(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_ne!(renewed.lease_id, 0);
    assert!(renewed.mod_revision > reserved.mod_revision);
    assert_expires_in(&renewed, Duration::from_secs(120));
    let got = store.get_lease(&k).await.unwrap().unwrap();
    assert_eq!(got.lease_id, renewed.lease_id);
    assert_eq!(got.mod_revision, renewed.mod_revision);
    assert_eq!(got.lease.attrs, attrs("192.0.2.9"));
    assert_expires_in(&got, Duration::from_secs(120));

    assert_eq!(store.get_lease(&key("10.5.41.0/24")).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_skips_garbage_keys_and_values() {
    let Some(etcd) = EtcdServer::start_or_skip("list_skips_garbage_keys_and_values") else {
        return;
    };
    let store = store(&etcd);
    let with_ttl = store
        .create_lease(
            &key("10.5.1.0/24"),
            &attrs("192.0.2.1"),
            Some(Duration::from_secs(300)),
        )
        .await
        .unwrap();
    let reservation = store
        .put_lease(&key("10.5.2.0/24"), &attrs("192.0.2.2"), None)
        .await
        .unwrap();
    let dual = SubnetKey {
        ipv4: "10.5.3.0/24".parse().unwrap(),
        ipv6: Some("fd00:12:13::/56".parse().unwrap()),
    };
    let dual_lease = store
        .put_lease(&dual, &attrs("192.0.2.3"), Some(Duration::from_secs(300)))
        .await
        .unwrap();

    let good_value = attrs("192.0.2.4").to_json();
    etcd.etcdctl(&[
        "put",
        &format!("{PREFIX}/subnets/not-a-subnet"),
        &good_value,
    ])
    .unwrap();
    etcd.etcdctl(&["put", &path("10.5.4.0/24"), "this is not json"])
        .unwrap();
    etcd.etcdctl(&["put", &path("10.5.5.0/24"), "[1,2,3]"])
        .unwrap();
    // Outside `<prefix>/subnets/`: not listed at all.
    etcd.etcdctl(&[
        "put",
        &format!("{PREFIX}/subnetsX/10.5.6.0-24"),
        &good_value,
    ])
    .unwrap();
    etcd.etcdctl(&["put", &format!("{PREFIX}/config"), "{}"])
        .unwrap();
    let rev_after_writes = revision(&etcd);

    let (leases, rev) = store.list_leases().await.unwrap();
    assert_eq!(rev, rev_after_writes);
    assert_eq!(
        sorted_keys(&leases),
        vec![key("10.5.1.0/24"), key("10.5.2.0/24"), dual]
    );
    let find = |k: SubnetKey| leases.iter().find(|l| l.lease.subnet == k).unwrap();
    let l1 = find(key("10.5.1.0/24"));
    assert_eq!(
        (l1.lease_id, l1.mod_revision),
        (with_ttl.lease_id, with_ttl.mod_revision)
    );
    assert_expires_in(l1, Duration::from_secs(300));
    assert_eq!(find(key("10.5.2.0/24")), &reservation);
    let l3 = find(dual);
    assert_eq!(l3.lease.attrs, dual_lease.lease.attrs);
    assert_expires_in(l3, Duration::from_secs(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_refreshes_and_reports_gone_leases() {
    let Some(etcd) = EtcdServer::start_or_skip("keep_alive_refreshes_and_reports_gone_leases")
    else {
        return;
    };
    let store = store(&etcd);
    let k = key("10.5.7.0/24");
    let ttl = Duration::from_secs(4);
    let lease = store
        .create_lease(&k, &attrs("192.0.2.1"), Some(ttl))
        .await
        .unwrap();

    // Refresh every second for twice the TTL: the key must survive.
    let start = Instant::now();
    while start.elapsed() < 2 * ttl {
        let left = store.keep_alive(lease.lease_id).await.unwrap();
        assert_eq!(left, Some(ttl));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        store.get_lease(&k).await.unwrap().is_some(),
        "kept-alive lease expired"
    );

    // A revoked lease is gone (and its key with it).
    etcd.etcdctl(&["lease", "revoke", &format!("{:x}", lease.lease_id)])
        .unwrap();
    assert_eq!(store.keep_alive(lease.lease_id).await.unwrap(), None);
    assert_eq!(store.get_lease(&k).await.unwrap(), None);
    // Unknown ids and reservations (id 0) have nothing to keep alive.
    assert_eq!(store.keep_alive(0x7777_1234).await.unwrap(), None);
    assert_eq!(store.keep_alive(0).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_key_and_ignores_absent() {
    let Some(etcd) = EtcdServer::start_or_skip("delete_removes_key_and_ignores_absent") else {
        return;
    };
    let store = store(&etcd);
    let k = key("10.5.8.0/24");
    store
        .put_lease(&k, &attrs("192.0.2.1"), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    store
        .put_lease(&key("10.5.9.0/24"), &attrs("192.0.2.2"), None)
        .await
        .unwrap();
    store.delete_lease(&k).await.unwrap();
    assert_eq!(store.get_lease(&k).await.unwrap(), None);
    store.delete_lease(&k).await.unwrap();
    let (leases, _) = store.list_leases().await.unwrap();
    assert_eq!(sorted_keys(&leases), vec![key("10.5.9.0/24")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_snapshot_then_events() {
    let Some(etcd) = EtcdServer::start_or_skip("watch_snapshot_then_events") else {
        return;
    };
    let store = store(&etcd);
    let first = store
        .create_lease(
            &key("10.5.10.0/24"),
            &attrs("192.0.2.1"),
            Some(Duration::from_secs(300)),
        )
        .await
        .unwrap();
    etcd.etcdctl(&["put", &format!("{PREFIX}/subnets/garbage"), "{}"])
        .unwrap();

    let mut watch = Box::pin(store.watch_leases());
    match next_batch(&mut watch, "snapshot").await {
        WatchBatch::Snapshot { leases, revision } => {
            let [got] = leases.as_slice() else {
                panic!("expected one lease: {leases:?}")
            };
            assert_eq!(got.lease.subnet, first.lease.subnet);
            assert_eq!(got.lease.attrs, first.lease.attrs);
            assert_eq!(
                (got.lease_id, got.mod_revision),
                (first.lease_id, first.mod_revision)
            );
            assert_expires_in(got, Duration::from_secs(300));
            assert_eq!(revision, revision_now(&etcd));
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }

    let second = store
        .put_lease(
            &key("10.5.11.0/24"),
            &attrs("192.0.2.2"),
            Some(Duration::from_secs(200)),
        )
        .await
        .unwrap();
    match next_batch(&mut watch, "put event").await {
        WatchBatch::Events { events, revision } => {
            assert_eq!(revision, second.mod_revision);
            let [WatchEvent::Put(got)] = events.as_slice() else {
                panic!("expected one put: {events:?}")
            };
            assert_eq!(got.lease.subnet, second.lease.subnet);
            assert_eq!(got.lease.attrs, second.lease.attrs);
            assert_eq!(
                (got.lease_id, got.mod_revision),
                (second.lease_id, second.mod_revision)
            );
            assert_expires_in(got, Duration::from_secs(200));
        }
        other => panic!("expected events, got {other:?}"),
    }

    // Garbage is skipped: the next batch is the valid change after it.
    etcd.etcdctl(&["put", &format!("{PREFIX}/subnets/garbage"), "{\"x\":1}"])
        .unwrap();
    etcd.etcdctl(&["put", &path("10.5.12.0/24"), "not json"])
        .unwrap();
    etcd.etcdctl(&["del", &format!("{PREFIX}/subnets/garbage")])
        .unwrap();
    let reservation = store
        .put_lease(&key("10.5.13.0/24"), &attrs("192.0.2.3"), None)
        .await
        .unwrap();
    match next_batch(&mut watch, "reservation event").await {
        WatchBatch::Events { events, .. } => assert_eq!(events, vec![WatchEvent::Put(reservation)]),
        other => panic!("expected events, got {other:?}"),
    }

    store.delete_lease(&key("10.5.10.0/24")).await.unwrap();
    match next_batch(&mut watch, "delete event").await {
        WatchBatch::Events { events, .. } => {
            assert_eq!(events, vec![WatchEvent::Delete(key("10.5.10.0/24"))])
        }
        other => panic!("expected events, got {other:?}"),
    }

    // One etcd response with several events is one batch, in revision order.
    store
        .put_lease(&key("10.7.1.0/24"), &attrs("192.0.2.4"), None)
        .await
        .unwrap();
    store
        .put_lease(&key("10.7.2.0/24"), &attrs("192.0.2.5"), None)
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            next_batch(&mut watch, "put event").await,
            WatchBatch::Events { .. }
        ));
    }
    etcd.etcdctl(&["del", "--prefix", &format!("{PREFIX}/subnets/10.7.")])
        .unwrap();
    match next_batch(&mut watch, "multi-delete events").await {
        WatchBatch::Events { events, .. } => assert_eq!(
            events,
            vec![
                WatchEvent::Delete(key("10.7.1.0/24")),
                WatchEvent::Delete(key("10.7.2.0/24"))
            ]
        ),
        other => panic!("expected events, got {other:?}"),
    }
}

fn revision_now(etcd: &EtcdServer) -> i64 {
    revision(etcd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_outlives_the_request_timeout() {
    // The request timeout bounds requests; an idle watch keeps delivering after it.
    let Some(etcd) = EtcdServer::start_or_skip("watch_outlives_the_request_timeout") else {
        return;
    };
    let store = store_for(vec![etcd.endpoint()], Duration::from_secs(1));
    let mut watch = Box::pin(store.watch_leases());
    assert!(matches!(
        next_batch(&mut watch, "snapshot").await,
        WatchBatch::Snapshot { .. }
    ));
    // Idle for longer than the timeout, with the watch open (it is polled meanwhile).
    assert!(tokio::time::timeout(Duration::from_secs(3), watch.next())
        .await
        .is_err());
    let a = store
        .put_lease(&key("10.5.25.0/24"), &attrs("192.0.2.1"), None)
        .await
        .unwrap();
    match next_batch(&mut watch, "event after idling").await {
        WatchBatch::Events { events, .. } => assert_eq!(events, vec![WatchEvent::Put(a)]),
        other => panic!("expected the put, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_etcd_restart() {
    let Some(mut etcd) = EtcdServer::start_or_skip("watch_survives_etcd_restart") else {
        return;
    };
    let store = store(&etcd);

    // Part 1: a consumer polling all the time; etcd goes away and comes back.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer = {
        let watch = store.watch_leases();
        tokio::spawn(async move {
            let mut watch = Box::pin(watch);
            while let Some(batch) = watch.next().await {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        })
    };
    let snapshot = within("snapshot", rx.recv()).await.unwrap();
    assert!(
        matches!(snapshot, WatchBatch::Snapshot { ref leases, .. } if leases.is_empty()),
        "{snapshot:?}"
    );

    tokio::task::block_in_place(|| etcd.stop()).unwrap();
    // Let the watcher notice and start backing off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| etcd.restart()).unwrap();
    let (k20, a1) = (key("10.5.20.0/24"), attrs("192.0.2.1"));
    let a = eventually("put after restart", || store.put_lease(&k20, &a1, None)).await;
    match within("event after restart", rx.recv()).await.unwrap() {
        WatchBatch::Events { events, .. } => assert_eq!(events, vec![WatchEvent::Put(a.clone())]),
        other => panic!("expected the put, got {other:?}"),
    }
    consumer.abort();

    // Part 2: a watcher that is not being polled while etcd restarts and a change is made:
    // when polled again it reconnects from its revision and the change is not lost.
    let mut watch = Box::pin(store.watch_leases());
    match next_batch(&mut watch, "second snapshot").await {
        WatchBatch::Snapshot { leases, .. } => assert_eq!(leases, vec![a]),
        other => panic!("expected a snapshot, got {other:?}"),
    }
    tokio::task::block_in_place(|| etcd.restart()).unwrap();
    etcd.etcdctl(&["put", &path("10.5.21.0/24"), &attrs("192.0.2.2").to_json()])
        .unwrap();
    match next_batch(&mut watch, "event made while disconnected").await {
        WatchBatch::Events { events, .. } => match events.as_slice() {
            [WatchEvent::Put(l)] => assert_eq!(l.lease.subnet, key("10.5.21.0/24")),
            other => panic!("expected the put, got {other:?}"),
        },
        other => panic!("expected the put, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resnapshots_after_compaction() {
    let Some(mut etcd) = EtcdServer::start_or_skip("watch_resnapshots_after_compaction") else {
        return;
    };
    let store = store(&etcd);
    store
        .put_lease(&key("10.5.30.0/24"), &attrs("192.0.2.1"), None)
        .await
        .unwrap();

    let mut watch = Box::pin(store.watch_leases());
    assert!(matches!(
        next_batch(&mut watch, "snapshot").await,
        WatchBatch::Snapshot { .. }
    ));
    let b = store
        .put_lease(&key("10.5.31.0/24"), &attrs("192.0.2.2"), None)
        .await
        .unwrap();
    assert!(matches!(
        next_batch(&mut watch, "put B").await,
        WatchBatch::Events { .. }
    ));

    // While the watcher is cut off (not polled, etcd restarted), leases change and the history
    // is compacted past the watcher's revision.
    tokio::task::block_in_place(|| etcd.restart()).unwrap();
    let (k32, a3) = (key("10.5.32.0/24"), attrs("192.0.2.3"));
    let c = eventually("put C", || store.put_lease(&k32, &a3, None)).await;
    store.delete_lease(&key("10.5.30.0/24")).await.unwrap();
    let rev = revision(&etcd);
    etcd.etcdctl(&["compaction", &rev.to_string()]).unwrap();

    match next_batch(&mut watch, "snapshot after compaction").await {
        WatchBatch::Snapshot { leases, revision } => {
            assert_eq!(revision, rev);
            let mut leases = leases;
            leases.sort_by_key(|l| l.lease.subnet);
            assert_eq!(leases, vec![b, c]);
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    // And it goes on from there.
    store.delete_lease(&key("10.5.31.0/24")).await.unwrap();
    match next_batch(&mut watch, "event after re-snapshot").await {
        WatchBatch::Events { events, .. } => {
            assert_eq!(events, vec![WatchEvent::Delete(key("10.5.31.0/24"))])
        }
        other => panic!("expected events, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_gives_unavailable_within_timeout() {
    let port = closed_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let timeout = Duration::from_secs(2);
    // Connecting does not contact etcd.
    let start = Instant::now();
    let store = store_for(vec![endpoint.clone()], timeout);
    assert!(start.elapsed() < Duration::from_secs(1));

    let check = |what: &str, result: Result<(), StoreError>, started: Instant| {
        let elapsed = started.elapsed();
        match result {
            Err(e @ StoreError::Unavailable { .. }) => {
                assert!(e.to_string().contains(&endpoint), "{what}: {e}");
                assert!(e.is_transient());
            }
            other => panic!("{what}: expected Unavailable, got {other:?}"),
        }
        assert!(
            elapsed < timeout + Duration::from_secs(5),
            "{what} took {elapsed:?}"
        );
    };
    let t = Instant::now();
    check(
        "get config",
        store.get_network_config().await.map(|_| ()),
        t,
    );
    let t = Instant::now();
    check("list", store.list_leases().await.map(|_| ()), t);
    let t = Instant::now();
    check(
        "create",
        store
            .create_lease(
                &key("10.5.1.0/24"),
                &attrs("192.0.2.1"),
                Some(Duration::from_secs(60)),
            )
            .await
            .map(|_| ()),
        t,
    );
    let t = Instant::now();
    check(
        "put",
        store
            .put_lease(&key("10.5.1.0/24"), &attrs("192.0.2.1"), None)
            .await
            .map(|_| ()),
        t,
    );
    let t = Instant::now();
    check("keep alive", store.keep_alive(0x1234).await.map(|_| ()), t);
    let t = Instant::now();
    check("delete", store.delete_lease(&key("10.5.1.0/24")).await, t);

    // The watch neither ends nor yields anything while etcd is unreachable.
    let mut watch = Box::pin(store.watch_leases());
    assert!(tokio::time::timeout(Duration::from_secs(3), watch.next())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoint_times_out() {
    // Accepts TCP connections (kernel backlog) but never speaks: only the timeout can end it.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let timeout = Duration::from_secs(2);
    let store = store_for(vec![endpoint.clone()], timeout);
    let start = Instant::now();
    match store.get_network_config().await {
        Err(e @ StoreError::Unavailable { .. }) => {
            assert!(e.to_string().contains(&endpoint), "{e}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= timeout - Duration::from_millis(100)
            && elapsed < timeout + Duration::from_secs(5),
        "{elapsed:?}"
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_first_endpoint_is_bypassed() {
    // Flannel's default endpoint list starts with one that is usually dead (:4001).
    let Some(etcd) = EtcdServer::start_or_skip("dead_first_endpoint_is_bypassed") else {
        return;
    };
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let store = store_for(vec![dead, etcd.endpoint()], Duration::from_secs(10));
    for i in 0..5 {
        let k = key(&format!("10.5.{}.0/24", 50 + i));
        store
            .put_lease(&k, &attrs("192.0.2.1"), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(store.get_lease(&k).await.unwrap().is_some());
    }
    let (leases, _) = store.list_leases().await.unwrap();
    assert_eq!(leases.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_recover_after_etcd_restart() {
    let Some(mut etcd) = EtcdServer::start_or_skip("operations_recover_after_etcd_restart") else {
        return;
    };
    let store = store_for(vec![etcd.endpoint()], Duration::from_secs(3));
    store
        .put_lease(&key("10.5.60.0/24"), &attrs("192.0.2.1"), None)
        .await
        .unwrap();
    tokio::task::block_in_place(|| etcd.stop()).unwrap();
    match store.get_lease(&key("10.5.60.0/24")).await {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable while etcd is down, got {other:?}"),
    }
    tokio::task::block_in_place(|| etcd.restart()).unwrap();
    let k60 = key("10.5.60.0/24");
    let got = eventually("get after restart", || store.get_lease(&k60)).await;
    assert!(got.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password() {
    let Some(etcd) = EtcdServer::start_or_skip("username_and_password") else {
        return;
    };
    etcd.etcdctl(&["user", "add", "root:s3cret-pw"]).unwrap();
    etcd.etcdctl(&["auth", "enable"]).unwrap();
    let with_user = |password: &str| {
        EtcdStore::connect(EtcdConfig {
            endpoints: vec![etcd.endpoint()],
            prefix: PREFIX.into(),
            username: Some("root".into()),
            password: Some(password.into()),
            request_timeout: Duration::from_secs(10),
            ..EtcdConfig::default()
        })
        .unwrap()
    };
    let good = with_user("s3cret-pw");
    good.put_lease(
        &key("10.5.70.0/24"),
        &attrs("192.0.2.1"),
        Some(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let (leases, _) = good.list_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert!(!format!("{good:?}").contains("s3cret-pw"));

    // Wrong password: etcd answers (not "unavailable"), and the password is not in the error.
    match with_user("wrong-pw").list_leases().await {
        Err(e @ StoreError::Request { .. }) => assert!(!e.to_string().contains("wrong-pw"), "{e}"),
        other => panic!("expected an authentication error, got {other:?}"),
    }
    // Without credentials: refused.
    assert!(store(&etcd).list_leases().await.is_err());
}

#[test]
fn config_debug_hides_password() {
    let cfg = EtcdConfig {
        username: Some("flannel".into()),
        password: Some("hunter2".into()),
        ..EtcdConfig::default()
    };
    let text = format!("{cfg:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("***") && text.contains("flannel"), "{text}");
}

#[test]
fn bad_setup_is_rejected() {
    let setup = |cfg: EtcdConfig| match EtcdStore::connect(cfg) {
        Err(StoreError::Setup(msg)) => msg,
        other => panic!("expected a setup error, got {other:?}"),
    };
    setup(EtcdConfig {
        endpoints: vec![],
        ..EtcdConfig::default()
    });
    setup(EtcdConfig {
        endpoints: vec!["unix:///run/etcd.sock".into()],
        ..EtcdConfig::default()
    });
    let msg = setup(EtcdConfig {
        endpoints: vec!["https://127.0.0.1:2379".into()],
        cafile: Some("/nonexistent/ca.pem".into()),
        ..EtcdConfig::default()
    });
    assert!(msg.contains("/nonexistent/ca.pem"), "{msg}");
    setup(EtcdConfig {
        endpoints: vec![
            "https://127.0.0.1:2379".into(),
            "http://127.0.0.1:4001".into(),
        ],
        ..EtcdConfig::default()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificate() {
    let Some(etcd) = EtcdServer::start_tls_or_skip("tls_with_client_certificate") else {
        return;
    };
    let tls = etcd.tls().unwrap().clone();
    let tls_store = |keyfile, certfile, cafile| {
        EtcdStore::connect(EtcdConfig {
            endpoints: vec![etcd.endpoint()],
            prefix: PREFIX.into(),
            keyfile,
            certfile,
            cafile,
            request_timeout: Duration::from_secs(5),
            ..EtcdConfig::default()
        })
        .unwrap()
    };
    let store = tls_store(
        Some(tls.client_key.clone()),
        Some(tls.client_cert.clone()),
        Some(tls.ca.clone()),
    );
    let lease = store
        .create_lease(
            &key("10.5.90.0/24"),
            &attrs("192.0.2.1"),
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let mut watch = Box::pin(store.watch_leases());
    match next_batch(&mut watch, "snapshot over TLS").await {
        WatchBatch::Snapshot { leases, .. } => {
            assert_eq!(leases.len(), 1);
            assert_eq!(leases[0].lease_id, lease.lease_id);
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    assert_eq!(
        store.keep_alive(lease.lease_id).await.unwrap(),
        Some(Duration::from_secs(60))
    );

    // Only the key or only the certificate: no client certificate is sent, and this server
    // requires one.
    let half = tls_store(None, Some(tls.client_cert.clone()), Some(tls.ca.clone()));
    // (Under TLS 1.3 the refusal may surface as a bad-certificate alert or a closed
    // connection, depending on timing.)
    match half.list_leases().await {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected the server to refuse us, got {other:?}"),
    }
    // Without the CA the server certificate is not trusted.
    let untrusted = tls_store(
        Some(tls.client_key.clone()),
        Some(tls.client_cert.clone()),
        None,
    );
    let e = untrusted.list_leases().await.unwrap_err().to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

/// Issue 16.3: etcd is wiped and restarted and the config put back. The watch must notice
/// (the revision went backwards) instead of waiting for a revision the new store has not
/// reached, and the manager must write our lease again with the same subnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_restores_its_lease_after_etcd_lost_its_data() {
    use flannel_model::SubnetRange;
    use flannel_planner::allocator::Ranges;
    use flannel_registry::{LeaseManager, ManagerConfig, ManagerEvent};

    let Some(mut etcd) =
        EtcdServer::start_or_skip("manager_restores_its_lease_after_etcd_lost_its_data")
    else {
        return;
    };
    let config = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
    let config_key = format!("{PREFIX}/config");
    etcd.etcdctl(&["put", &config_key, config]).unwrap();
    let store = store(&etcd);
    let ranges = Ranges {
        v4: Some(SubnetRange {
            network: "198.18.0.0/16".parse().unwrap(),
            subnet_len: 24,
            min: "198.18.1.0/24".parse().unwrap(),
            max: "198.18.255.0/24".parse().unwrap(),
        }),
        v6: None,
    };
    let cfg = ManagerConfig {
        max_backoff: Duration::from_secs(1),
        ..ManagerConfig::default()
    };
    let mut m = LeaseManager::new(store.clone(), ranges, attrs("192.0.2.1"), cfg).with_seed(1);
    let cancel = tokio_util::sync::CancellationToken::new();
    let lease = m.acquire(None, &cancel).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let run = tokio::spawn(m.run(tx, cancel.clone()));
    loop {
        if within("synced", rx.recv()).await.unwrap() == ManagerEvent::Synced {
            break;
        }
    }
    // Move the revision well past what the wiped store will have.
    let peer = key("198.18.200.0/24");
    for i in 0..30u8 {
        store
            .put_lease(&peer, &attrs(&format!("192.0.2.{}", 100 + i)), None)
            .await
            .unwrap();
    }

    tokio::task::block_in_place(|| {
        etcd.stop().unwrap();
        std::fs::remove_dir_all(etcd.data_dir().join("data")).unwrap();
        etcd.restart().unwrap();
    });
    assert!(revision(&etcd) < 5, "the store starts over");
    etcd.etcdctl(&["put", &config_key, config]).unwrap();

    let restored = within("our lease written again", async {
        loop {
            match rx.recv().await.expect("manager alive") {
                ManagerEvent::Reacquired { lease, previous } => return (lease, previous),
                _ => continue,
            }
        }
    })
    .await;
    assert_eq!(restored.0.subnet, lease.subnet, "same subnet kept");
    assert_eq!(restored.1, lease.subnet);
    let stored = eventually("read our lease", || store.get_lease(&lease.subnet))
        .await
        .expect("our lease is in etcd again");
    assert_eq!(stored.lease.attrs, attrs("192.0.2.1"));
    assert!(stored.lease_id != 0, "with a TTL again");
    cancel.cancel();
    run.await.unwrap();
}
