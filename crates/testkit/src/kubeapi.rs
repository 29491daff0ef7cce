//! An in-process fake Kubernetes API server (core/v1 nodes and pods) for the kube subnet
//! manager's tests and the node-watch benchmark.
//!
//! [`FakeApiServer`] speaks real HTTP/1.1 + JSON, as kube-rs sends it: node list (with
//! `limit`/`continue` pagination), node watch (`resourceVersion` replay from a bounded
//! history, bookmarks, `410 Gone` as an `ERROR` event, `timeoutSeconds`), metadata-only
//! list/watch/get (`Accept: …;as=PartialObjectMetadata(List);g=meta.k8s.io;v=v1`), GET of a
//! node or a pod, and strategic-merge / JSON-merge PATCH of a node or its `status`
//! subresource. Anything else is a 404 `Status` and shows up in [`FakeApiServer::requests`].
//!
//! Nodes are realistic (~12 KB of JSON each: labels, annotations, managedFields, conditions, 30 images) so that byte counts
//! ([`FakeApiServer::bytes_sent`]) resemble a real cluster's. Tests drive the cluster with
//! sync methods (a `Mutex` inside) callable from any thread; every change bumps a global
//! resourceVersion (a decimal u64 string, like etcd's revision) and wakes open watches.
//!
//! Simplifications: label selectors are ignored (a `metadata.name=` field selector is
//! honoured), a continued list shows the current objects after the last name rather than a
//! snapshot, and `expire_history` also ends open watch streams with a 410 `ERROR` event (as
//! the apiserver does to a watcher that fell behind its window).

mod http;
mod objects;
mod patch;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use store::Shared;

/// Response body bytes the server sent, by kind of request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BytesSent {
    /// Full-object node lists and watch streams.
    pub full_objects: u64,
    /// Metadata-only (`PartialObjectMetadata`) node lists and watch streams.
    pub metadata_only: u64,
    /// Single-object GETs (nodes, pods; 404s included).
    pub gets: u64,
    /// Everything else: PATCH responses, unknown paths, errors.
    pub other: u64,
}

impl BytesSent {
    /// All bytes sent.
    pub fn total(&self) -> u64 {
        self.full_objects + self.metadata_only + self.gets + self.other
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path without the query, e.g. `/api/v1/nodes/n1/status`.
    pub path: String,
    /// Raw query string (empty when none).
    pub query: String,
    /// The `Accept` header (empty when none).
    pub accept: String,
}

impl RequestRecord {
    /// Whether this was a watch (`watch=true` or `watch=1` in the query).
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// The fake API server. Serves until dropped (dropping ends open watch streams too).
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApiServer {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime (a spawned task).
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start() -> FakeApiServer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .expect("fake apiserver: bind 127.0.0.1:0");
        Self::from_listener(listener).await
    }

    /// Serves on an already-bound listener (e.g. one bound inside a network namespace).
    ///
    /// # Panics
    /// If the listener cannot be handed to tokio.
    pub async fn from_listener(listener: std::net::TcpListener) -> FakeApiServer {
        listener
            .set_nonblocking(true)
            .expect("fake apiserver: set listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("fake apiserver: listener address");
        let listener = tokio::net::TcpListener::from_std(listener)
            .expect("fake apiserver: register listener with tokio");
        let shared = Arc::new(Shared::new());
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Errors here mean the listener broke; requests then fail visibly in the test.
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { shared, addr, task }
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig (no authentication, server = [`FakeApiServer::url`]) named
    /// `kubeconfig` into `dir` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n\
             users:\n\
             - name: fake\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Adds a realistic node (kubelet labels, annotations, managedFields, five conditions,
    /// 30 images; `spec.podCIDR(s)` from `pod_cidrs`, none when empty). Replaces (MODIFIED)
    /// a node of the same name.
    pub fn add_node(&self, name: &str, pod_cidrs: &[&str]) {
        self.shared.mutate(|st| st.add_node(name, pod_cidrs));
    }

    /// Sets `spec.podCIDR` to the first entry and `spec.podCIDRs` to all (removes both when
    /// empty), as kube-controller-manager does.
    pub fn set_pod_cidrs(&self, name: &str, pod_cidrs: &[&str]) {
        self.shared.mutate(|st| {
            st.edit_node(name, |node, _| objects::set_pod_cidrs(node, pod_cidrs));
        });
    }

    /// Sets (`Some`) or removes (`None`) one annotation of a node.
    pub fn set_annotation(&self, name: &str, key: &str, value: Option<&str>) {
        self.set_annotations(name, &[(key, value)]);
    }

    /// Sets (`Some`) or removes (`None`) several annotations of a node in one update (one
    /// MODIFIED event), as a single PATCH would.
    pub fn set_annotations(&self, name: &str, changes: &[(&str, Option<&str>)]) {
        self.shared.mutate(|st| {
            st.edit_node(name, |node, _| {
                for (key, value) in changes {
                    objects::set_annotation(node, key, *value);
                }
            });
        });
    }

    /// Deletes a node (watchers get DELETED).
    pub fn delete_node(&self, name: &str) {
        self.shared.mutate(|st| st.delete_node(name));
    }

    /// The node's current JSON, as a full GET would return it.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.shared.lock().nodes.get(name).cloned()
    }

    /// Names of all nodes, sorted.
    pub fn node_names(&self) -> Vec<String> {
        self.shared.lock().nodes.keys().cloned().collect()
    }

    /// Adds a pod in `namespace` scheduled on `node_name` (for node-name discovery).
    pub fn add_pod(&self, namespace: &str, name: &str, node_name: &str) {
        self.shared
            .mutate(|st| st.add_pod(namespace, name, node_name));
    }

    /// A kubelet status update: the conditions' `lastHeartbeatTime` and the kubelet's status
    /// managedFields time move to now; the resourceVersion changes (watchers get MODIFIED).
    pub fn heartbeat(&self, name: &str) {
        self.shared.mutate(|st| {
            st.edit_node(name, objects::heartbeat);
        });
    }

    /// Ends every open watch stream (clients resume from their last resourceVersion).
    pub fn break_watches(&self) {
        self.shared.mutate(|st| st.break_gen += 1);
    }

    /// Forgets the event history: any watch or exact list from an older resourceVersion gets
    /// 410 Gone (reason `Expired`), and open watch streams end with a 410 `ERROR` event, so
    /// clients must relist.
    pub fn expire_history(&self) {
        self.shared.mutate(|st| st.expire_history());
    }

    /// Sends a BOOKMARK (current resourceVersion) on every open watch that asked for them.
    pub fn send_bookmarks(&self) {
        self.shared.mutate(|st| st.bookmark_gen += 1);
    }

    /// How often open watches get a BOOKMARK (default 5 s); applies to watches opened later.
    pub fn set_bookmark_interval(&self, every: Duration) {
        self.shared.lock().bookmark_interval = every;
    }

    /// How many events are kept for watches to resume from (default 4096).
    pub fn set_history_limit(&self, events: usize) {
        self.shared.mutate(|st| {
            st.history_limit = events.max(1);
            while st.history.len() > st.history_limit {
                if let Some(old) = st.history.pop_front() {
                    st.oldest_rv = st.oldest_rv.max(old.rv);
                }
            }
        });
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Number of watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.lock().watch_positions.len()
    }

    /// For each open watch stream, the resourceVersion up to which it has handed events to
    /// its connection (equal to [`FakeApiServer::resource_version`] once it has caught up).
    pub fn watch_positions(&self) -> Vec<u64> {
        self.shared
            .lock()
            .watch_positions
            .values()
            .copied()
            .collect()
    }

    /// Requests received so far, as `"METHOD /path"` (no query), in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .lock()
            .requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Requests received so far with their query and `Accept` header, in order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Response body bytes sent since start (or the last [`FakeApiServer::reset_counters`]).
    pub fn bytes_sent(&self) -> BytesSent {
        self.shared.lock().bytes
    }

    /// Clears the byte counters and the request log.
    pub fn reset_counters(&self) {
        let mut st = self.shared.lock();
        st.bytes = BytesSent::default();
        st.requests.clear();
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.mutate(|st| st.shutdown = true);
        self.task.abort();
    }
}
