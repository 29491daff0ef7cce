//! The fake Kubernetes API server over real HTTP/1.1: list/watch with resourceVersions,
//! bookmarks, 410 Gone, metadata-only shapes, strategic-merge patches, pagination, stream
//! endings, and the byte accounting.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::Duration;

use flannel_testkit::kubeapi::FakeApiServer;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const META_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const SMP: &str = "application/strategic-merge-patch+json";

/// Send one request on a fresh connection; returns the status and the response body stream.
async fn send(
    server: &FakeApiServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Incoming) {
    let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", server.addr().to_string())
        .header("user-agent", "kubeapi-test/1.0");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = tx
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    (resp.status().as_u16(), resp.into_body())
}

/// A request whose whole JSON body is read.
async fn call(
    server: &FakeApiServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let (code, incoming) = send(server, method, path, headers, body).await;
    let bytes = incoming.collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

async fn get(server: &FakeApiServer, path: &str) -> (u16, Value) {
    call(server, "GET", path, &[], None).await
}

/// An open watch stream, read line by line.
struct WatchStream {
    body: Incoming,
    buf: Vec<u8>,
    lines: VecDeque<Value>,
    ended: bool,
}

impl WatchStream {
    async fn open(server: &FakeApiServer, query: &str, accept: Option<&str>) -> WatchStream {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let (code, body) = send(
            server,
            "GET",
            &format!("/api/v1/nodes?{query}"),
            &headers,
            None,
        )
        .await;
        assert_eq!(code, 200);
        WatchStream {
            body,
            buf: Vec::new(),
            lines: VecDeque::new(),
            ended: false,
        }
    }

    /// The next event, or `None` when the stream ended. Fails after 5 s without one.
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(Duration::from_secs(5), self.next_inner())
            .await
            .expect("no watch event within 5 s")
    }

    async fn next_inner(&mut self) -> Option<Value> {
        loop {
            if let Some(v) = self.lines.pop_front() {
                return Some(v);
            }
            if self.ended {
                return None;
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buf.extend_from_slice(&data);
                        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = self.buf.drain(..=pos).collect();
                            self.lines.push_back(serde_json::from_slice(&line).unwrap());
                        }
                    }
                }
                None => {
                    assert!(self.buf.is_empty(), "partial line at end of stream");
                    self.ended = true;
                }
            }
        }
    }

    /// The next event that is not a BOOKMARK.
    async fn next_change(&mut self) -> Option<Value> {
        loop {
            let ev = self.next().await?;
            if ev["type"] != "BOOKMARK" {
                return Some(ev);
            }
        }
    }
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn type_and_name(ev: &Value) -> (String, String) {
    (
        ev["type"].as_str().unwrap().to_string(),
        ev["object"]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[tokio::test]
async fn list_get_and_unknown_paths() {
    let server = FakeApiServer::start().await;
    server.add_node("n2", &["10.244.2.0/24"]);
    server.add_node("n1", &["10.244.1.0/24", "fd00:1::/64"]);
    server.add_pod("kube-flannel", "flannel-abc", "n1");

    let (code, list) = get(&server, "/api/v1/nodes").await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "NodeList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(rv_of(&list), server.resource_version());
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1", "n2"]);
    assert!(items[0].get("kind").is_none(), "list items carry no kind");
    assert_eq!(items[0]["spec"]["podCIDR"], "10.244.1.0/24");
    assert_eq!(
        items[0]["spec"]["podCIDRs"],
        json!(["10.244.1.0/24", "fd00:1::/64"])
    );
    assert!(list["metadata"].get("continue").is_none());

    let (code, node) = get(&server, "/api/v1/nodes/n2").await;
    assert_eq!(code, 200);
    assert_eq!(node["kind"], "Node");
    assert_eq!(node, server.node("n2").unwrap());
    let size = node.to_string().len();
    assert!(
        (8_000..=15_000).contains(&size),
        "node JSON is {size} bytes"
    );
    assert_eq!(node["status"]["conditions"].as_array().unwrap().len(), 5);
    assert_eq!(node["status"]["images"].as_array().unwrap().len(), 30);

    let (code, missing) = get(&server, "/api/v1/nodes/nope").await;
    assert_eq!(code, 404);
    assert_eq!(missing["kind"], "Status");
    assert_eq!(missing["reason"], "NotFound");
    assert_eq!(missing["message"], "nodes \"nope\" not found");
    assert_eq!(missing["code"], 404);

    let (code, pod) = get(&server, "/api/v1/namespaces/kube-flannel/pods/flannel-abc").await;
    assert_eq!(code, 200);
    assert_eq!(pod["spec"]["nodeName"], "n1");
    let (code, _) = get(&server, "/api/v1/namespaces/default/pods/flannel-abc").await;
    assert_eq!(code, 404);

    let (code, status) = get(&server, "/apis/coordination.k8s.io/v1/leases").await;
    assert_eq!(code, 404);
    assert_eq!(status["kind"], "Status");
    assert_eq!(
        server.requests(),
        [
            "GET /api/v1/nodes",
            "GET /api/v1/nodes/n2",
            "GET /api/v1/nodes/nope",
            "GET /api/v1/namespaces/kube-flannel/pods/flannel-abc",
            "GET /api/v1/namespaces/default/pods/flannel-abc",
            "GET /apis/coordination.k8s.io/v1/leases",
        ]
    );
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let server = FakeApiServer::start().await;
    for i in 0..5 {
        server.add_node(&format!("node-{i}"), &[]);
    }
    let (_, page1) = get(&server, "/api/v1/nodes?limit=2").await;
    let rv = rv_of(&page1);
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    server.heartbeat("node-0");
    let (_, page2) = get(&server, &format!("/api/v1/nodes?limit=2&continue={token}")).await;
    assert_eq!(
        rv_of(&page2),
        rv,
        "a continued list keeps the first page's resourceVersion"
    );
    let token2 = page2["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, page3) = get(&server, &format!("/api/v1/nodes?limit=2&continue={token2}")).await;
    assert!(page3["metadata"].get("continue").is_none());
    assert!(page3["metadata"].get("remainingItemCount").is_none());
    let names: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().iter())
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["node-0", "node-1", "node-2", "node-3", "node-4"]);

    // A token from before the history was forgotten is too old.
    server.expire_history();
    let (code, status) = get(&server, &format!("/api/v1/nodes?limit=2&continue={token}")).await;
    assert_eq!(code, 410);
    assert_eq!(status["reason"], "Expired");
    assert_eq!(status["code"], 410);
}

#[tokio::test]
async fn watch_replays_from_resource_version_in_order() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &["10.244.0.0/24"]);
    server.add_node("b", &["10.244.1.0/24"]);
    let (_, list) = get(&server, "/api/v1/nodes").await;
    let list_rv = rv_of(&list);

    // Changes made before the watch opens are replayed from the history.
    server.heartbeat("a");
    let before = server.node("a").unwrap();
    let mut w = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={list_rv}&timeoutSeconds=30"),
        None,
    )
    .await;
    let ev = w.next().await.unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"], before);
    assert_eq!(ev["object"]["kind"], "Node");
    assert_eq!(rv_of(&ev["object"]), list_rv + 1);

    server.set_annotation("b", "example.com/x", Some("1"));
    server.delete_node("a");
    server.add_node("c", &[]);
    let ev = w.next().await.unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(
        ev["object"]["metadata"]["annotations"]["example.com/x"],
        "1"
    );
    let ev = w.next().await.unwrap();
    assert_eq!(type_and_name(&ev), ("DELETED".into(), "a".into()));
    assert_eq!(rv_of(&ev["object"]), list_rv + 3);
    let ev = w.next().await.unwrap();
    assert_eq!(type_and_name(&ev), ("ADDED".into(), "c".into()));
    assert_eq!(rv_of(&ev["object"]), server.resource_version());

    // resourceVersion=0 (or none): synthetic ADDED for every current node, then changes.
    let mut w0 = WatchStream::open(&server, "watch=1&resourceVersion=0", None).await;
    let first = type_and_name(&w0.next().await.unwrap());
    let second = type_and_name(&w0.next().await.unwrap());
    assert_eq!(
        [first, second],
        [("ADDED".into(), "b".into()), ("ADDED".into(), "c".into())]
    );
    server.heartbeat("c");
    assert_eq!(w0.next().await.unwrap()["type"], "MODIFIED");
}

#[tokio::test]
async fn field_selector_limits_a_watch_to_one_node() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &[]);
    server.add_node("b", &[]);
    let rv = server.resource_version();
    let mut w = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Db"),
        None,
    )
    .await;
    server.heartbeat("a");
    server.heartbeat("b");
    let ev = w.next().await.unwrap();
    assert_eq!(ev["object"]["metadata"]["name"], "b");
    let (_, list) = get(&server, "/api/v1/nodes?fieldSelector=metadata.name%3Da").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bookmarks_on_request_and_periodically() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &[]);
    let rv = server.resource_version();
    let mut w = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={rv}&allowWatchBookmarks=true"),
        None,
    )
    .await;
    // Without allowWatchBookmarks a watch never gets one.
    let mut plain = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        None,
    )
    .await;
    server.heartbeat("a");
    assert_eq!(w.next().await.unwrap()["type"], "MODIFIED");
    server.send_bookmarks();
    let bm = w.next().await.unwrap();
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(bm["object"]["kind"], "Node");
    assert_eq!(bm["object"]["apiVersion"], "v1");
    assert_eq!(rv_of(&bm["object"]), server.resource_version());

    assert_eq!(plain.next().await.unwrap()["type"], "MODIFIED");
    assert!(
        plain.next().await.is_none(),
        "timeoutSeconds=1 ends the stream, no bookmark"
    );

    server.set_bookmark_interval(Duration::from_millis(100));
    let rv = server.resource_version();
    let mut fast = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={rv}&allowWatchBookmarks=true"),
        Some(META),
    )
    .await;
    for _ in 0..3 {
        let bm = fast.next().await.unwrap();
        assert_eq!(bm["type"], "BOOKMARK");
        assert_eq!(bm["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(rv_of(&bm["object"]), rv);
    }
}

#[tokio::test]
async fn initial_events_stream_ends_with_a_marked_bookmark() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &[]);
    let mut w = WatchStream::open(
        &server,
        "watch=true&allowWatchBookmarks=true&sendInitialEvents=true\
         &resourceVersionMatch=NotOlderThan&resourceVersion=0",
        None,
    )
    .await;
    assert_eq!(w.next().await.unwrap()["type"], "ADDED");
    let bm = w.next().await.unwrap();
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(
        bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(rv_of(&bm["object"]), server.resource_version());
}

#[tokio::test]
async fn expired_history_gives_410_and_a_fresh_list_recovers() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &[]);
    let old_rv = server.resource_version();
    let mut open = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={old_rv}"),
        None,
    )
    .await;
    while server.open_watches() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.expire_history();

    // The open stream gets a 410 ERROR and ends.
    let ev = open.next().await.unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert!(open.next().await.is_none());

    // A new watch from the old resourceVersion: the same.
    let mut again = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={old_rv}"),
        None,
    )
    .await;
    let ev = again.next().await.unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert!(again.next().await.is_none());

    // An exact list at the old resourceVersion is Gone too.
    let (code, status) = get(
        &server,
        &format!("/api/v1/nodes?resourceVersion={old_rv}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (410, Some("Expired")));

    // Relist, then watch from the list's resourceVersion: works.
    let (_, list) = get(&server, "/api/v1/nodes").await;
    assert!(rv_of(&list) > old_rv);
    let mut w = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={}", rv_of(&list)),
        None,
    )
    .await;
    server.heartbeat("a");
    assert_eq!(w.next().await.unwrap()["type"], "MODIFIED");
}

#[tokio::test]
async fn a_bounded_history_expires_old_resource_versions() {
    let server = FakeApiServer::start().await;
    server.set_history_limit(3);
    server.add_node("a", &[]);
    let rv = server.resource_version();
    for _ in 0..3 {
        server.heartbeat("a");
    }
    // rv+1..rv+3 are kept: watching from rv still sees every change.
    let mut ok =
        WatchStream::open(&server, &format!("watch=true&resourceVersion={rv}"), None).await;
    assert_eq!(rv_of(&ok.next().await.unwrap()["object"]), rv + 1);
    server.heartbeat("a");
    let mut gone =
        WatchStream::open(&server, &format!("watch=true&resourceVersion={rv}"), None).await;
    assert_eq!(gone.next().await.unwrap()["object"]["code"], 410);
}

#[tokio::test]
async fn metadata_only_shapes_and_byte_accounting() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &["10.244.0.0/24"]);
    server.add_node("b", &["10.244.1.0/24"]);

    let (code, list) = call(
        &server,
        "GET",
        "/api/v1/nodes?limit=500",
        &[("accept", META_LIST)],
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(rv_of(&list), server.resource_version());
    for item in list["items"].as_array().unwrap() {
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["metadata"]);
        assert!(item["metadata"]["managedFields"].as_array().unwrap().len() >= 4);
    }

    let (code, meta) = call(&server, "GET", "/api/v1/nodes/a", &[("accept", META)], None).await;
    assert_eq!(code, 200);
    assert_eq!(
        meta,
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": server.node("a").unwrap()["metadata"],
        })
    );

    let after_lists = server.bytes_sent();
    assert!(after_lists.metadata_only > 0);
    assert_eq!(after_lists.full_objects, 0);
    assert!(after_lists.gets > 0);

    let rv = server.resource_version();
    let mut mw = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={rv}"),
        Some(META),
    )
    .await;
    let mut fw =
        WatchStream::open(&server, &format!("watch=true&resourceVersion={rv}"), None).await;
    server.reset_counters();
    server.heartbeat("b");
    let m = mw.next_change().await.unwrap();
    let f = fw.next_change().await.unwrap();
    assert_eq!(m["type"], "MODIFIED");
    assert_eq!(
        m["object"],
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": f["object"]["metadata"],
        })
    );
    let bytes = server.bytes_sent();
    let meta_line = m.to_string().len() as u64 + 1;
    let full_line = f.to_string().len() as u64 + 1;
    assert_eq!(bytes.metadata_only, meta_line);
    assert_eq!(bytes.full_objects, full_line);
    assert_eq!(bytes.gets + bytes.other, 0);
    assert_eq!(bytes.total(), meta_line + full_line);
    assert!(
        full_line > 3 * meta_line,
        "full {full_line} vs metadata {meta_line}"
    );
}

#[tokio::test]
async fn strategic_merge_patch_of_status_annotations_and_conditions() {
    let server = FakeApiServer::start().await;
    server.add_node("n1", &["10.244.1.0/24"]);
    server.set_annotation("n1", "flannel.alpha.coreos.com/stale", Some("x"));
    let rv0 = server.resource_version();
    let mut w =
        WatchStream::open(&server, &format!("watch=true&resourceVersion={rv0}"), None).await;

    let patch = json!({
        "metadata": {"annotations": {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"12:c6:65:89:b4:e3\"}",
            "flannel.alpha.coreos.com/stale": null,
        }},
        // Through /status the spec cannot change.
        "spec": {"podCIDR": "10.99.0.0/24"},
    });
    let (code, node) = call(
        &server,
        "PATCH",
        "/api/v1/nodes/n1/status?fieldManager=flanneld",
        &[("content-type", SMP)],
        Some(patch.clone()),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(node, server.node("n1").unwrap());
    let ann = &node["metadata"]["annotations"];
    assert_eq!(ann["flannel.alpha.coreos.com/backend-type"], "vxlan");
    assert_eq!(
        ann["flannel.alpha.coreos.com/backend-data"],
        "{\"VNI\":1,\"VtepMAC\":\"12:c6:65:89:b4:e3\"}"
    );
    assert!(ann.get("flannel.alpha.coreos.com/stale").is_none());
    assert_eq!(
        ann["kubeadm.alpha.kubernetes.io/cri-socket"],
        "unix:///var/run/containerd/containerd.sock"
    );
    assert_eq!(node["spec"]["podCIDR"], "10.244.1.0/24");
    assert_eq!(rv_of(&node), rv0 + 1);
    let managers: Vec<(&str, Option<&str>)> = node["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["manager"].as_str().unwrap(), f["subresource"].as_str()))
        .collect();
    assert!(
        managers.contains(&("flanneld", Some("status"))),
        "{managers:?}"
    );
    let ev = w.next().await.unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"], node);

    // The same patch again changes nothing: no new resourceVersion, no event.
    let (code, same) = call(
        &server,
        "PATCH",
        "/api/v1/nodes/n1/status",
        &[("content-type", SMP)],
        Some(patch),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(rv_of(&same), rv0 + 1);
    assert_eq!(server.resource_version(), rv0 + 1);

    // NetworkUnavailable merges into the conditions by type.
    let cond = json!({"status": {"conditions": [{
        "type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp",
        "message": "Flannel is running on this node",
        "lastTransitionTime": "2025-01-01T00:00:00Z", "lastHeartbeatTime": "2025-01-01T00:00:00Z",
    }]}});
    let (code, node) = call(
        &server,
        "PATCH",
        "/api/v1/nodes/n1/status",
        &[("content-type", SMP)],
        Some(cond.clone()),
    )
    .await;
    assert_eq!(code, 200);
    let conds = node["status"]["conditions"].as_array().unwrap();
    let types: Vec<&str> = conds.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "KernelDeadlock",
            "MemoryPressure",
            "DiskPressure",
            "PIDPressure",
            "Ready",
            "NetworkUnavailable"
        ]
    );
    assert_eq!(conds[5], cond["status"]["conditions"][0]);
    assert_eq!(conds[4]["reason"], "KubeletReady");
    assert_eq!(w.next().await.unwrap()["object"], node);

    // A heartbeat leaves NetworkUnavailable's heartbeat alone.
    server.heartbeat("n1");
    let hb = server.node("n1").unwrap();
    assert_eq!(
        hb["status"]["conditions"][5]["lastHeartbeatTime"],
        "2025-01-01T00:00:00Z"
    );
    assert_ne!(
        hb["status"]["conditions"][4]["lastHeartbeatTime"],
        conds[4]["lastHeartbeatTime"]
    );

    // Through the main resource, status is not changed but metadata is (merge patch).
    let (code, node) = call(
        &server,
        "PATCH",
        "/api/v1/nodes/n1",
        &[("content-type", "application/merge-patch+json")],
        Some(json!({"metadata": {"labels": {"x": "y"}}, "status": {"conditions": []}})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(node["metadata"]["labels"]["x"], "y");
    assert_eq!(node["status"]["conditions"].as_array().unwrap().len(), 6);

    // Errors: unsupported content type, missing node, stale resourceVersion precondition.
    let (code, st) = call(
        &server,
        "PATCH",
        "/api/v1/nodes/n1",
        &[("content-type", "application/json-patch+json")],
        Some(json!([])),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let (code, st) = call(
        &server,
        "PATCH",
        "/api/v1/nodes/zz/status",
        &[("content-type", SMP)],
        Some(json!({})),
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (404, Some("NotFound")));
    let (code, st) = call(
        &server,
        "PATCH",
        "/api/v1/nodes/n1",
        &[("content-type", SMP)],
        Some(json!({"metadata": {"resourceVersion": "1", "labels": {"z": "1"}}})),
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    assert!(server
        .requests()
        .contains(&"PATCH /api/v1/nodes/n1/status".to_string()));
}

#[tokio::test]
async fn break_watches_and_timeouts_end_streams() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &[]);
    let rv = server.resource_version();
    let mut w1 = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={rv}&allowWatchBookmarks=true"),
        None,
    )
    .await;
    let mut w2 = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={rv}"),
        Some(META),
    )
    .await;
    server.heartbeat("a");
    assert_eq!(w1.next_change().await.unwrap()["type"], "MODIFIED");
    assert_eq!(w2.next_change().await.unwrap()["type"], "MODIFIED");
    assert_eq!(server.open_watches(), 2);
    server.break_watches();
    assert!(w1.next_change().await.is_none());
    assert!(w2.next_change().await.is_none());
    for _ in 0..100 {
        if server.open_watches() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.open_watches(), 0);

    // The client resumes from its last resourceVersion and misses nothing.
    server.heartbeat("a");
    let mut resumed = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={}", rv + 1),
        None,
    )
    .await;
    assert_eq!(rv_of(&resumed.next().await.unwrap()["object"]), rv + 2);

    let started = std::time::Instant::now();
    let mut short = WatchStream::open(
        &server,
        &format!("watch=true&resourceVersion={}&timeoutSeconds=1", rv + 2),
        None,
    )
    .await;
    assert!(short.next().await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn kubeconfig_and_listener() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = FakeApiServer::from_listener(listener).await;
    assert_eq!(server.url(), format!("http://{addr}"));
    let dir = tempfile::tempdir().unwrap();
    let path = server.write_kubeconfig(dir.path()).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(&format!("    server: http://{addr}\n")),
        "{text}"
    );
    assert!(text.contains("current-context: fake\n"));
    server.add_node("a", &[]);
    let (code, _) = get(&server, "/api/v1/nodes/a").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn watch_positions_follow_delivery_and_annotations_change_in_one_event() {
    let server = FakeApiServer::start().await;
    server.add_node("a", &[]);
    let rv = server.resource_version();
    assert!(server.watch_positions().is_empty());
    let mut w = WatchStream::open(&server, &format!("watch=true&resourceVersion={rv}"), None).await;
    server.set_annotations("a", &[("k1", Some("1")), ("k2", Some("2"))]);
    server.set_annotations("a", &[("k1", None)]);
    assert_eq!(
        server.resource_version(),
        rv + 2,
        "one resourceVersion per call"
    );
    let first = w.next().await.unwrap();
    assert_eq!(first["object"]["metadata"]["annotations"]["k2"], "2");
    assert_eq!(first["object"]["metadata"]["annotations"]["k1"], "1");
    let second = w.next().await.unwrap();
    assert!(second["object"]["metadata"]["annotations"]
        .get("k1")
        .is_none());
    for _ in 0..200 {
        if server.watch_positions() == [rv + 2] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.watch_positions(), [rv + 2]);
    drop(w);
    for _ in 0..200 {
        if server.watch_positions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        server.watch_positions().is_empty(),
        "a closed connection ends its watch"
    );
}
