//! The fake Kubernetes API server driven by the real kube-rs client (what flanneld uses):
//! kubeconfig loading, paginated lists, `watcher` over full objects and metadata, resume
//! after `break_watches`, relist after `expire_history`, `get_metadata`, strategic-merge
//! `patch_status`, pods, and 404s as `kube::Error::Api`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use flannel_testkit::kubeapi::FakeApiServer;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

async fn client(server: &FakeApiServer) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = server.write_kubeconfig(dir.path()).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The next watcher event, failing after 10 s.
async fn next<S, K>(stream: &mut S) -> Event<K>
where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no watcher event within 10 s")
        .expect("watcher stream ended")
        .expect("watcher error")
}

fn list_requests(server: &FakeApiServer) -> usize {
    server
        .request_log()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/nodes" && !r.is_watch())
        .count()
}

#[tokio::test]
async fn kube_rs_lists_gets_patches_and_reads_pods() {
    let server = FakeApiServer::start().await;
    for i in 0..5 {
        server.add_node(&format!("node-{i}"), &[&format!("10.244.{i}.0/24")]);
    }
    server.add_pod("kube-flannel", "flannel-x", "node-3");
    let client = client(&server).await;
    let nodes: Api<Node> = Api::all(client.clone());

    let page = nodes.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = nodes
        .list(&ListParams::default().continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    let node = &rest.items[0];
    assert_eq!(node.metadata.name.as_deref(), Some("node-2"));
    assert_eq!(
        node.spec.as_ref().unwrap().pod_cidr.as_deref(),
        Some("10.244.2.0/24")
    );
    let status = node.status.as_ref().unwrap();
    assert_eq!(status.conditions.as_ref().unwrap().len(), 5);
    assert_eq!(status.images.as_ref().unwrap().len(), 30);

    let meta = nodes.get_metadata("node-1").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("node-1"));
    assert!(meta.metadata.managed_fields.is_some());

    let patch = json!({
        "metadata": {"annotations": {"flannel.alpha.coreos.com/kube-subnet-manager": "true"}},
        "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"}]},
    });
    let patched = nodes
        .patch_status("node-1", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let ann = patched.metadata.annotations.unwrap();
    assert_eq!(ann["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
    let conds = patched.status.unwrap().conditions.unwrap();
    assert_eq!(conds.len(), 6);
    assert_eq!(conds[5].type_, "NetworkUnavailable");
    assert!(server
        .requests()
        .contains(&"PATCH /api/v1/nodes/node-1/status".to_string()));

    match nodes.get("missing").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected a 404, got {other:?}"),
    }

    let pods: Api<Pod> = Api::namespaced(client, "kube-flannel");
    let pod = pods.get("flannel-x").await.unwrap();
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("node-3"));
}

#[tokio::test]
async fn kube_rs_watcher_resumes_and_relists() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &["10.244.0.0/24"]);
    server.add_node("b", &["10.244.1.0/24"]);
    let client = client(&server).await;
    let mut stream = watcher::watcher(Api::<Node>::all(client), watcher::Config::default()).boxed();

    assert!(matches!(next(&mut stream).await, Event::Init));
    for want in ["a", "b"] {
        match next(&mut stream).await {
            Event::InitApply(n) => assert_eq!(n.metadata.name.as_deref(), Some(want)),
            other => panic!("expected InitApply, got {other:?}"),
        }
    }
    assert!(matches!(next(&mut stream).await, Event::InitDone));
    assert_eq!(list_requests(&server), 1);

    server.heartbeat("a");
    match next(&mut stream).await {
        Event::Apply(n) => assert_eq!(n.metadata.name.as_deref(), Some("a")),
        other => panic!("expected Apply, got {other:?}"),
    }

    // A broken watch is resumed from the last resourceVersion: no relist, nothing missed.
    server.break_watches();
    server.delete_node("b");
    match next(&mut stream).await {
        Event::Delete(n) => assert_eq!(n.metadata.name.as_deref(), Some("b")),
        other => panic!("expected Delete, got {other:?}"),
    }
    assert_eq!(list_requests(&server), 1);

    // Expired history: 410 → the watcher relists.
    server.expire_history();
    server.add_node("c", &[]);
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
        {
            Ok(Event::Init) => seen.push("init".to_string()),
            Ok(Event::InitApply(n)) => seen.push(n.metadata.name.unwrap()),
            Ok(Event::InitDone) => break,
            Ok(other) => panic!("unexpected {other:?}"),
            // The 410 surfaces as one error before the relist.
            Err(e) => seen.push(format!("error: {e}")),
        }
    }
    let tail = &seen[seen.len() - 3..];
    assert_eq!(tail, ["init", "a", "c"], "{seen:?}");
    assert_eq!(list_requests(&server), 2);
}

#[tokio::test]
async fn kube_rs_metadata_watcher_gets_partial_objects() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &["10.244.0.0/24"]);
    let client = client(&server).await;
    let api: Api<PartialObjectMeta<Node>> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    assert!(matches!(next(&mut stream).await, Event::Init));
    match next(&mut stream).await {
        Event::InitApply(m) => assert_eq!(m.metadata.name.as_deref(), Some("a")),
        other => panic!("expected InitApply, got {other:?}"),
    }
    assert!(matches!(next(&mut stream).await, Event::InitDone));
    server.set_annotation("a", "k", Some("v"));
    match next(&mut stream).await {
        Event::Apply(m) => assert_eq!(m.metadata.annotations.unwrap()["k"], "v"),
        other => panic!("expected Apply, got {other:?}"),
    }
    let log = server.request_log();
    assert!(log
        .iter()
        .all(|r| r.accept.contains("as=PartialObjectMetadata")));
    let bytes = server.bytes_sent();
    assert!(bytes.metadata_only > 0);
    assert_eq!(bytes.full_objects, 0);
}
