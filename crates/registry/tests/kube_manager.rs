//! The Kubernetes subnet manager against the in-process fake API server: acquisition and the
//! annotations written, peers seeing each other, podCIDR waits, deletes, watch resume and
//! re-list, and what a heartbeat costs in each watch mode.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flannel_model::{IpStack, Lease, LeaseAttrs, NetworkConfig, RawJson, SubnetKey};
use flannel_registry::kube::annotations::{AnnotationNames, DEFAULT_PREFIX};
use flannel_registry::kube::client::{self, ClientError, ClientOptions};
use flannel_registry::kube::lease::{KubeLeaseConfig, KubeLeaseError, KubeLeaseManager};
use flannel_registry::kube::watch::{lease_watch, lease_watch_stack, WatchMode};
use flannel_registry::kube::KubeClient;
use flannel_registry::{ManagerEvent, PeerEvent, WatchBatch, WatchEvent};
use flannel_testkit::kubeapi::FakeApiServer;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const NET: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
const WAIT: Duration = Duration::from_secs(10);

fn names() -> AnnotationNames {
    AnnotationNames::new(DEFAULT_PREFIX).expect("default prefix")
}

fn a(suffix: &str) -> String {
    format!("flannel.alpha.coreos.com/{suffix}")
}

fn vx_data(last: u8) -> String {
    format!(r#"{{"VNI":1,"VtepMAC":"0a:00:00:00:00:{last:02x}"}}"#)
}

fn attrs(last: u8) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Ipv4Addr::new(192, 0, 2, last),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: Some(RawJson::new(&vx_data(last)).expect("json")),
        backend_v6_data: None,
    }
}

fn key(cidr: &str) -> SubnetKey {
    SubnetKey {
        ipv4: cidr.parse().expect("cidr"),
        ipv6: None,
    }
}

async fn connect(api: &FakeApiServer) -> KubeClient {
    client::connect(&ClientOptions {
        api_url: Some(api.url()),
        kubeconfig: None,
    })
    .await
    .expect("client")
}

fn manager(client: KubeClient, node: &str, mode: WatchMode) -> KubeLeaseManager {
    let mut cfg = KubeLeaseConfig::new(node.to_owned(), names());
    cfg.poll_interval = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(200);
    cfg.watch_mode = mode;
    let network = NetworkConfig::parse(NET).expect("config");
    KubeLeaseManager::new(client, network, cfg).expect("manager")
}

/// Marks a node as a flannel node by hand (what another flanneld would have written).
fn make_managed(api: &FakeApiServer, node: &str, last: u8) {
    api.set_annotation(node, &a("backend-type"), Some("vxlan"));
    api.set_annotation(node, &a("backend-data"), Some(&vx_data(last)));
    api.set_annotation(node, &a("public-ip"), Some(&format!("192.0.2.{last}")));
    api.set_annotation(node, &a("kube-subnet-manager"), Some("true"));
}

fn annotations(api: &FakeApiServer, node: &str) -> BTreeMap<String, String> {
    let n = api.node(node).expect("node exists");
    n["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn flannel_annotations(api: &FakeApiServer, node: &str) -> BTreeMap<String, String> {
    annotations(api, node)
        .into_iter()
        .filter(|(k, _)| k.starts_with("flannel.alpha.coreos.com/"))
        .collect()
}

async fn next_batch<S: Stream<Item = WatchBatch> + Unpin>(s: &mut S) -> Result<WatchBatch> {
    tokio::time::timeout(WAIT, s.next())
        .await
        .context("no watch batch in time")?
        .context("watch stream ended")
}

/// Polls the stream for `d`, failing if it yields anything.
async fn expect_quiet<S: Stream<Item = WatchBatch> + Unpin>(s: &mut S, d: Duration) -> Result<()> {
    match tokio::time::timeout(d, s.next()).await {
        Err(_) => Ok(()),
        Ok(b) => bail!("expected no batch, got {b:?}"),
    }
}

async fn next_event(rx: &mut mpsc::Receiver<ManagerEvent>) -> Result<ManagerEvent> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .context("no manager event in time")?
        .context("manager stopped")
}

/// Waits for a `Peers` event (skipping `Synced`) and returns it.
async fn next_peers(rx: &mut mpsc::Receiver<ManagerEvent>) -> Result<Vec<PeerEvent>> {
    loop {
        match next_event(rx).await? {
            ManagerEvent::Peers(p) => return Ok(p),
            ManagerEvent::Synced => continue,
            other => bail!("unexpected {other:?}"),
        }
    }
}

fn lease_of(last: u8, cidr: &str) -> Lease {
    Lease {
        subnet: key(cidr),
        attrs: attrs(last),
        expiration: None,
    }
}

async fn wait_until(mut f: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn patches(api: &FakeApiServer) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH"))
        .collect()
}

#[tokio::test]
async fn acquire_writes_flannels_annotations_on_the_status_subresource() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    let mut m = manager(connect(&api).await, "n1", WatchMode::MetadataThenGet);
    let cancel = CancellationToken::new();
    let lease = m.acquire(attrs(1), &cancel).await?;
    assert_eq!(lease, lease_of(1, "198.18.1.0/24"));
    assert_eq!(
        flannel_annotations(&api, "n1"),
        BTreeMap::from([
            (a("backend-data"), vx_data(1)),
            (a("backend-type"), "vxlan".to_owned()),
            (a("kube-subnet-manager"), "true".to_owned()),
            (a("public-ip"), "192.0.2.1".to_owned()),
        ])
    );
    // One patch, of the status subresource only (RBAC: nodes/status patch).
    assert_eq!(patches(&api), ["PATCH /api/v1/nodes/n1/status"]);

    // A restart with the same attributes patches nothing.
    let mut again = manager(connect(&api).await, "n1", WatchMode::MetadataThenGet);
    again.acquire(attrs(1), &cancel).await?;
    assert_eq!(patches(&api).len(), 1, "{:?}", api.requests());

    // A user's public-ip-overwrite is what peers get; the stored VTEP MAC is reported back.
    api.set_annotation("n1", &a("public-ip-overwrite"), Some("203.0.113.7"));
    let mut third = manager(connect(&api).await, "n1", WatchMode::MetadataThenGet);
    let facts = third.own_node_facts(&cancel).await?;
    assert_eq!(facts.vtep_mac, Some([0x0a, 0, 0, 0, 0, 1]));
    assert_eq!(facts.public_ip, None);
    third.acquire(attrs(1), &cancel).await?;
    assert_eq!(annotations(&api, "n1")[&a("public-ip")], "203.0.113.7");

    // run() sets NetworkUnavailable=False, reason FlannelIsUp.
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(third.run(tx, cancel.clone()));
    assert_eq!(next_event(&mut rx).await?, ManagerEvent::Synced);
    wait_until(
        || {
            api.node("n1").is_some_and(|n| {
                n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "NetworkUnavailable"
                            && c["status"] == "False"
                            && c["reason"] == "FlannelIsUp"
                            && c["message"] == "Flannel is running on this node"
                    })
                })
            })
        },
        "the NetworkUnavailable condition",
    )
    .await?;
    // The kubelet's conditions are still there (merged by type).
    let n = api.node("n1").expect("node");
    assert!(n["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .any(|c| c["type"] == "Ready"));
    assert!(patches(&api)
        .iter()
        .all(|p| p == "PATCH /api/v1/nodes/n1/status"));
    cancel.cancel();
    task.await?;
    Ok(())
}

#[tokio::test]
async fn node_public_ip_annotations_and_their_errors() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    api.set_annotation("n1", &a("node-public-ip"), Some("192.0.2.99"));
    let m = manager(connect(&api).await, "n1", WatchMode::MetadataThenGet);
    let cancel = CancellationToken::new();
    let facts = m.own_node_facts(&cancel).await?;
    assert_eq!(facts.public_ip, Some(Ipv4Addr::new(192, 0, 2, 99)));
    assert_eq!(facts.vtep_mac, None);
    api.set_annotation("n1", &a("node-public-ip"), Some("not-an-ip"));
    let e = m.own_node_facts(&cancel).await.expect_err("must fail");
    assert_eq!(
        e.to_string(),
        r#"annotation flannel.alpha.coreos.com/node-public-ip on node "n1" is not an IPv4 address: "not-an-ip""#
    );
    Ok(())
}

#[tokio::test]
async fn pod_cidr_missing_then_assigned_and_outside_the_network() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &[]);
    let client = connect(&api).await;
    let cancel = CancellationToken::new();
    let mut m = manager(client.clone(), "n1", WatchMode::MetadataThenGet);
    let c = cancel.clone();
    let task = tokio::spawn(async move { m.acquire(attrs(1), &c).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "acquire must wait for the podCIDR");
    assert!(
        patches(&api).is_empty(),
        "nothing is written before the podCIDR exists"
    );
    api.set_pod_cidrs("n1", &["198.18.5.0/24"]);
    let lease = tokio::time::timeout(WAIT, task).await???;
    assert_eq!(lease.subnet, key("198.18.5.0/24"));

    // Waiting is cancellable.
    api.add_node("n2", &[]);
    let mut m2 = manager(client.clone(), "n2", WatchMode::MetadataThenGet);
    let c2 = CancellationToken::new();
    let c = c2.clone();
    let task = tokio::spawn(async move { m2.acquire(attrs(2), &c).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    c2.cancel();
    let r = tokio::time::timeout(WAIT, task).await??;
    assert!(matches!(r, Err(KubeLeaseError::Cancelled)), "{r:?}");

    // A PodCIDR outside Network is fatal, with Flannel's text.
    api.add_node("n3", &["203.0.113.0/24"]);
    let mut m3 = manager(client, "n3", WatchMode::MetadataThenGet);
    let e = m3.acquire(attrs(3), &cancel).await.expect_err("must fail");
    assert_eq!(
        e.to_string(),
        r#"subnet "198.18.0.0/16" specified in the flannel net config doesn't contain "203.0.113.0/24" PodCIDR of the "n3" node"#
    );
    Ok(())
}

async fn two_nodes(mode: WatchMode) -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    api.add_node("n2", &["198.18.2.0/24"]);
    api.add_node("other", &["198.18.9.0/24"]); // not a flannel node: ignored
    let cancel = CancellationToken::new();
    let mut m1 = manager(connect(&api).await, "n1", mode);
    let mut m2 = manager(connect(&api).await, "n2", mode);
    m1.acquire(attrs(1), &cancel).await?;
    let (tx1, mut rx1) = mpsc::channel(16);
    let t1 = tokio::spawn(m1.run(tx1, cancel.clone()));
    // n1 alone: the first snapshot is empty of peers, then Synced.
    assert_eq!(next_event(&mut rx1).await?, ManagerEvent::Synced);

    // n2's manager gets its own token: it is stopped before n2's annotation is changed by hand
    // below, since a running manager restores its node's annotations, and a metadata watch
    // that fetches n2 only after that restore would see no change at all.
    let cancel2 = cancel.child_token();
    m2.acquire(attrs(2), &cancel2).await?;
    let (tx2, mut rx2) = mpsc::channel(16);
    let t2 = tokio::spawn(m2.run(tx2, cancel2.clone()));
    assert_eq!(
        next_event(&mut rx2).await?,
        ManagerEvent::Peers(vec![PeerEvent::Added(lease_of(1, "198.18.1.0/24"))])
    );
    assert_eq!(next_event(&mut rx2).await?, ManagerEvent::Synced);
    assert_eq!(
        next_peers(&mut rx1).await?,
        vec![PeerEvent::Added(lease_of(2, "198.18.2.0/24"))]
    );

    // A peer's public IP changes through its annotation (n2's flanneld is gone meanwhile).
    cancel2.cancel();
    t2.await?;
    api.set_annotation("n2", &a("public-ip"), Some("192.0.2.22"));
    let mut changed = lease_of(2, "198.18.2.0/24");
    changed.attrs.public_ip = Ipv4Addr::new(192, 0, 2, 22);
    assert_eq!(
        next_peers(&mut rx1).await?,
        vec![PeerEvent::Added(changed.clone())]
    );

    // Node deleted → peer removed.
    api.delete_node("n2");
    assert_eq!(
        next_peers(&mut rx1).await?,
        vec![PeerEvent::Removed(changed)]
    );
    cancel.cancel();
    t1.await?;
    Ok(())
}

#[tokio::test]
async fn two_nodes_see_each_other_metadata_watch() -> Result<()> {
    two_nodes(WatchMode::MetadataThenGet).await
}

#[tokio::test]
async fn two_nodes_see_each_other_full_watch() -> Result<()> {
    two_nodes(WatchMode::FullObjects).await
}

fn puts(batch: &WatchBatch) -> Vec<SubnetKey> {
    match batch {
        WatchBatch::Snapshot { leases, .. } => leases.iter().map(|l| l.lease.subnet).collect(),
        WatchBatch::Events { events, .. } => events
            .iter()
            .filter_map(|e| match e {
                WatchEvent::Put(l) => Some(l.lease.subnet),
                WatchEvent::Delete(_) => None,
            })
            .collect(),
    }
}

fn is_snapshot(b: &WatchBatch) -> bool {
    matches!(b, WatchBatch::Snapshot { .. })
}

fn lists(api: &FakeApiServer) -> usize {
    api.request_log()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/nodes" && !r.is_watch())
        .count()
}

async fn resume_and_relist(mode: WatchMode) -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    make_managed(&api, "n1", 1);
    api.add_node("n2", &["198.18.2.0/24"]);
    let mut w = Box::pin(lease_watch(connect(&api).await, names(), mode));
    let first = next_batch(&mut w).await?;
    assert!(is_snapshot(&first));
    assert_eq!(puts(&first), [key("198.18.1.0/24")]);
    let lists_before = lists(&api);

    // Interrupted watch: resumed from the last resourceVersion, no re-list, nothing lost.
    api.break_watches();
    make_managed(&api, "n2", 2);
    let b = next_batch(&mut w).await?;
    assert!(!is_snapshot(&b), "{b:?}");
    assert_eq!(puts(&b), [key("198.18.2.0/24")]);
    assert_eq!(lists(&api), lists_before, "a resumed watch does not list");
    let resumed = api
        .request_log()
        .into_iter()
        .rev()
        .find(|r| r.is_watch())
        .context("a watch")?;
    assert!(
        resumed.query.contains("resourceVersion="),
        "{}",
        resumed.query
    );

    // History expired: a fresh snapshot of the current state (n1 gone meanwhile).
    api.expire_history();
    api.delete_node("n1");
    api.break_watches();
    let mut b = next_batch(&mut w).await?;
    // The delete may be seen as an event before the stream hits the 410.
    while !is_snapshot(&b) {
        b = next_batch(&mut w).await?;
    }
    assert_eq!(puts(&b), [key("198.18.2.0/24")]);
    assert!(lists(&api) > lists_before, "a 410 leads to a re-list");
    Ok(())
}

#[tokio::test]
async fn watch_resumes_and_relists_metadata_mode() -> Result<()> {
    resume_and_relist(WatchMode::MetadataThenGet).await
}

#[tokio::test]
async fn watch_resumes_and_relists_full_mode() -> Result<()> {
    resume_and_relist(WatchMode::FullObjects).await
}

#[tokio::test]
async fn a_relist_is_diffed_into_peer_events() -> Result<()> {
    let api = FakeApiServer::start().await;
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        let last = u8::try_from(i + 1)?;
        api.add_node(n, &[&format!("198.18.{last}.0/24")]);
        make_managed(&api, n, last);
    }
    let cancel = CancellationToken::new();
    let mut m = manager(connect(&api).await, "n1", WatchMode::MetadataThenGet);
    m.acquire(attrs(1), &cancel).await?;
    let (tx, mut rx) = mpsc::channel(16);
    let t = tokio::spawn(m.run(tx, cancel.clone()));
    let first = next_peers(&mut rx).await?;
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(next_event(&mut rx).await?, ManagerEvent::Synced);

    // While the watch is down and its history expired: n3 leaves, n4 joins.
    api.expire_history();
    api.delete_node("n3");
    api.add_node("n4", &["198.18.4.0/24"]);
    make_managed(&api, "n4", 4);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(next_peers(&mut rx).await?);
    }
    assert!(
        seen.contains(&PeerEvent::Removed(lease_of(3, "198.18.3.0/24"))),
        "{seen:?}"
    );
    assert!(
        seen.contains(&PeerEvent::Added(lease_of(4, "198.18.4.0/24"))),
        "{seen:?}"
    );
    cancel.cancel();
    t.await?;
    Ok(())
}

fn node_gets(api: &FakeApiServer) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /api/v1/nodes/"))
        .collect()
}

#[tokio::test]
async fn a_heartbeat_costs_no_get_in_metadata_mode() -> Result<()> {
    let api = FakeApiServer::start().await;
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        let last = u8::try_from(i + 1)?;
        api.add_node(n, &[&format!("198.18.{last}.0/24")]);
        make_managed(&api, n, last);
    }
    api.add_node("plain", &["198.18.9.0/24"]);
    let mut w = Box::pin(lease_watch(
        connect(&api).await,
        names(),
        WatchMode::MetadataThenGet,
    ));
    assert_eq!(puts(&next_batch(&mut w).await?).len(), 3);
    // The watch opens while the stream is polled.
    expect_quiet(&mut w, Duration::from_millis(300)).await?;
    assert_eq!(api.open_watches(), 1);
    api.reset_counters();

    for _ in 0..3 {
        for n in ["n1", "n2", "n3", "plain"] {
            api.heartbeat(n);
        }
    }
    // Heartbeats change no lease: no batch, and no request but the open watch.
    expect_quiet(&mut w, Duration::from_millis(500)).await?;
    assert_eq!(api.requests(), Vec::<String>::new());
    let bytes = api.bytes_sent();
    assert!(bytes.metadata_only > 0, "{bytes:?}");
    assert_eq!((bytes.full_objects, bytes.gets), (0, 0), "{bytes:?}");

    // An annotation change costs one GET and yields the new lease.
    api.set_annotation("n2", &a("public-ip"), Some("192.0.2.22"));
    let b = next_batch(&mut w).await?;
    assert_eq!(puts(&b), [key("198.18.2.0/24")]);
    assert_eq!(node_gets(&api), ["GET /api/v1/nodes/n2"]);

    // A managed node without a podCIDR is fetched until it has one, and then noticed.
    api.add_node("n5", &[]);
    make_managed(&api, "n5", 5);
    api.set_pod_cidrs("n5", &["198.18.5.0/24"]);
    let b = next_batch(&mut w).await?;
    assert_eq!(puts(&b), [key("198.18.5.0/24")]);
    let gets = node_gets(&api).len();
    api.heartbeat("n5");
    expect_quiet(&mut w, Duration::from_millis(300)).await?;
    assert_eq!(
        node_gets(&api).len(),
        gets,
        "no GET once the podCIDR is known"
    );
    Ok(())
}

#[tokio::test]
async fn a_heartbeat_yields_nothing_in_full_mode_either() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    make_managed(&api, "n1", 1);
    let mut w = Box::pin(lease_watch(
        connect(&api).await,
        names(),
        WatchMode::FullObjects,
    ));
    assert_eq!(puts(&next_batch(&mut w).await?), [key("198.18.1.0/24")]);
    // The watch opens while the stream is polled.
    expect_quiet(&mut w, Duration::from_millis(300)).await?;
    assert_eq!(api.open_watches(), 1);
    api.reset_counters();
    api.heartbeat("n1");
    expect_quiet(&mut w, Duration::from_millis(300)).await?;
    assert!(api.bytes_sent().full_objects > 0);
    // A podCIDR assigned later is noticed here too.
    api.add_node("n2", &[]);
    make_managed(&api, "n2", 2);
    api.set_pod_cidrs("n2", &["198.18.2.0/24"]);
    let b = next_batch(&mut w).await?;
    assert_eq!(puts(&b), [key("198.18.2.0/24")]);
    Ok(())
}

#[tokio::test]
async fn invalid_nodes_are_skipped_and_unmarking_removes_the_lease() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    make_managed(&api, "n1", 1);
    api.add_node("bad", &["198.18.2.0/24"]);
    make_managed(&api, "bad", 2);
    api.set_annotation("bad", &a("public-ip"), Some("nonsense"));
    let mut w = Box::pin(lease_watch_stack(
        connect(&api).await,
        names(),
        WatchMode::MetadataThenGet,
        IpStack::Ipv4,
    ));
    assert_eq!(puts(&next_batch(&mut w).await?), [key("198.18.1.0/24")]);
    // Fixed → appears; unmarked → removed.
    api.set_annotation("bad", &a("public-ip"), Some("192.0.2.2"));
    assert_eq!(puts(&next_batch(&mut w).await?), [key("198.18.2.0/24")]);
    api.set_annotation("bad", &a("kube-subnet-manager"), None);
    let b = next_batch(&mut w).await?;
    assert!(
        matches!(&b, WatchBatch::Events { events, .. } if events == &[WatchEvent::Delete(key("198.18.2.0/24"))]),
        "{b:?}"
    );
    Ok(())
}

#[tokio::test]
async fn removed_annotations_are_restored() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    let cancel = CancellationToken::new();
    let mut m = manager(connect(&api).await, "n1", WatchMode::MetadataThenGet);
    m.acquire(attrs(1), &cancel).await?;
    let (tx, mut rx) = mpsc::channel(16);
    let t = tokio::spawn(m.run(tx, cancel.clone()));
    assert_eq!(next_event(&mut rx).await?, ManagerEvent::Synced);
    let want = flannel_annotations(&api, "n1");
    api.set_annotation("n1", &a("kube-subnet-manager"), None);
    api.set_annotation("n1", &a("backend-data"), None);
    wait_until(
        || flannel_annotations(&api, "n1") == want,
        "restored annotations",
    )
    .await?;
    cancel.cancel();
    t.await?;
    Ok(())
}

#[tokio::test]
async fn node_name_from_the_environment_or_our_pod() -> Result<()> {
    let api = FakeApiServer::start().await;
    let dir = tempfile::tempdir()?;
    // Through a kubeconfig file this time.
    let c = client::connect(&ClientOptions {
        api_url: None,
        kubeconfig: Some(api.write_kubeconfig(dir.path())?),
    })
    .await?;
    api.add_pod("kube-flannel", "kube-flannel-ds-x1", "n7");
    assert_eq!(
        client::node_name_from(&c, Some("n1"), None, None).await?,
        "n1"
    );
    assert_eq!(
        client::node_name_from(
            &c,
            Some(""),
            Some("kube-flannel-ds-x1"),
            Some("kube-flannel")
        )
        .await?,
        "n7"
    );
    let e = client::node_name_from(&c, None, Some("p"), None)
        .await
        .expect_err("must fail");
    assert!(matches!(e, ClientError::PodEnv));
    assert_eq!(
        e.to_string(),
        "env variables POD_NAME and POD_NAMESPACE must be set"
    );
    let e = client::node_name_from(&c, None, Some("missing"), Some("kube-flannel"))
        .await
        .expect_err("must fail");
    assert!(
        e.to_string()
            .starts_with("error retrieving pod spec for 'kube-flannel/missing': "),
        "{e}"
    );
    // --kube-api-url overrides the kubeconfig's server.
    let cfg = client::client_config(&ClientOptions {
        api_url: Some("http://192.0.2.1:6443".into()),
        kubeconfig: Some(dir.path().join("kubeconfig")),
    })
    .await?;
    assert_eq!(cfg.cluster_url.to_string(), "http://192.0.2.1:6443/");
    let e = client::client_config(&ClientOptions {
        api_url: None,
        kubeconfig: Some(dir.path().join("nope")),
    })
    .await
    .expect_err("must fail");
    assert!(
        e.to_string().starts_with("failed to load kubeconfig"),
        "{e}"
    );
    Ok(())
}

const NET_DUAL: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}"#;

fn vx6_data(last: u8) -> String {
    format!(r#"{{"VNI":1,"VtepMAC":"0a:00:00:00:06:{last:02x}"}}"#)
}

fn attrs_dual(last: u8) -> LeaseAttrs {
    LeaseAttrs {
        public_ipv6: Some(format!("2001:db8::{last}").parse().expect("v6")),
        backend_v6_data: Some(RawJson::new(&vx6_data(last)).expect("json")),
        ..attrs(last)
    }
}

/// Dual-stack: the lease takes both podCIDRs, the IPv6 annotations are written as Flannel
/// writes them, and a dual-stack peer arrives with both parts.
#[tokio::test]
async fn dual_stack_leases_and_annotations() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24", "2001:db8:f000:1::/64"]);
    api.add_node("n2", &["198.18.2.0/24", "2001:db8:f000:2::/64"]);
    let mut cfg = KubeLeaseConfig::new("n1".to_owned(), names());
    cfg.poll_interval = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(200);
    let network = NetworkConfig::parse(NET_DUAL).expect("config");
    let mut m = KubeLeaseManager::new(connect(&api).await, network, cfg).expect("manager");
    let cancel = CancellationToken::new();

    let lease = m.acquire(attrs_dual(1), &cancel).await?;
    assert_eq!(lease.subnet.ipv4, "198.18.1.0/24".parse()?);
    assert_eq!(lease.subnet.ipv6, Some("2001:db8:f000:1::/64".parse()?));
    assert_eq!(
        flannel_annotations(&api, "n1"),
        BTreeMap::from([
            (a("backend-data"), vx_data(1)),
            (a("backend-type"), "vxlan".to_owned()),
            (a("backend-v6-data"), vx6_data(1)),
            (a("kube-subnet-manager"), "true".to_owned()),
            (a("public-ip"), "192.0.2.1".to_owned()),
            (a("public-ipv6"), "2001:db8::1".to_owned()),
        ])
    );

    // n2, annotated by its own (dual-stack) flanneld.
    make_managed(&api, "n2", 2);
    api.set_annotation("n2", &a("backend-v6-data"), Some(&vx6_data(2)));
    api.set_annotation("n2", &a("public-ipv6"), Some("2001:db8::2"));
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(m.run(tx, cancel.clone()));
    let peers = next_peers(&mut rx).await?;
    let [PeerEvent::Added(peer)] = peers.as_slice() else {
        bail!("expected n2 added, got {peers:?}");
    };
    assert_eq!(peer.subnet.ipv4, "198.18.2.0/24".parse()?);
    assert_eq!(peer.subnet.ipv6, Some("2001:db8:f000:2::/64".parse()?));
    assert_eq!(peer.attrs.public_ipv6, Some("2001:db8::2".parse()?));
    assert_eq!(
        peer.attrs
            .backend_v6_data
            .as_ref()
            .map(|d| d.as_str().to_owned()),
        Some(vx6_data(2))
    );
    cancel.cancel();
    task.await?;
    Ok(())
}

/// Counts the failed calls a manager reports, by op.
#[derive(Debug, Default)]
struct CountingObserver(std::sync::Mutex<BTreeMap<&'static str, u32>>);

impl flannel_registry::ManagerObserver for CountingObserver {
    fn store_error(&self, op: &'static str) {
        *self.0.lock().expect("observer lock").entry(op).or_default() += 1;
    }
}

impl CountingObserver {
    fn count(&self, op: &str) -> u32 {
        self.0
            .lock()
            .expect("observer lock")
            .get(op)
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn api_errors_are_reported_by_op() -> Result<()> {
    let api = FakeApiServer::start().await;
    api.add_node("n1", &["198.18.1.0/24"]);
    let client = connect(&api).await;
    let counts = std::sync::Arc::new(CountingObserver::default());
    let mut m = manager(client, "n1", WatchMode::MetadataThenGet).with_observer(counts.clone());
    let cancel = CancellationToken::new();
    m.acquire(attrs(1), &cancel).await?;
    assert_eq!(counts.count("watch"), 0);
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(m.run(tx, cancel.clone()));
    next_event(&mut rx).await?; // synced against the live server
                                // The API server goes away: the watch fails.
    drop(api);
    wait_until(|| counts.count("watch") > 0, "a watch error is counted").await?;
    cancel.cancel();
    task.await?;
    assert_eq!(counts.count("renew"), 0, "no etcd op names in kube mode");
    Ok(())
}
