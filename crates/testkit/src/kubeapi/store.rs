//! The fake apiserver's state: objects, the global resourceVersion, the bounded event history
//! watches replay from, request log and byte counters. All of it sits behind one `Mutex`;
//! every change also bumps a `tokio::sync::watch` tick so open watch streams wake up.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{json, Value};

use super::objects;
use super::patch::{self, PatchKind};
use super::{BytesSent, RequestRecord};

/// The first resourceVersion handed out (any value works; etcd's revisions start at 1).
const FIRST_RV: u64 = 100;
/// Events kept for watches to resume from; older resourceVersions get 410 Gone.
pub(crate) const DEFAULT_HISTORY: usize = 4096;

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of a node, with its serialized watch lines cached per shape.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) name: String,
    kind: EventType,
    object: Value,
    full: OnceLock<Bytes>,
    metadata: OnceLock<Bytes>,
}

impl Event {
    /// The JSON line a watch sends for this event (full object or metadata only).
    pub(crate) fn line(&self, metadata_only: bool) -> Bytes {
        let cell = if metadata_only {
            &self.metadata
        } else {
            &self.full
        };
        cell.get_or_init(|| event_line(self.kind.as_str(), &self.object, metadata_only))
            .clone()
    }
}

/// `{"type":T,"object":O}\n`, with `O` projected to metadata when asked.
pub(crate) fn event_line(kind: &str, object: &Value, metadata_only: bool) -> Bytes {
    let projected;
    let object = if metadata_only {
        projected = objects::partial_metadata(object);
        &projected
    } else {
        object
    };
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// Everything the server knows.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) rv: u64,
    pub(crate) nodes: BTreeMap<String, Value>,
    pub(crate) pods: BTreeMap<(String, String), Value>,
    pub(crate) history: VecDeque<Arc<Event>>,
    pub(crate) history_limit: usize,
    /// Watches and exact lists from a resourceVersion below this get 410 Gone.
    pub(crate) oldest_rv: u64,
    /// Bumped by `break_watches`: streams opened under an older value end.
    pub(crate) break_gen: u64,
    /// Bumped by `expire_history`: streams opened under an older value end with 410.
    pub(crate) expire_gen: u64,
    /// Bumped by `send_bookmarks`.
    pub(crate) bookmark_gen: u64,
    pub(crate) shutdown: bool,
    pub(crate) nodes_added: u64,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) bytes: BytesSent,
    pub(crate) bookmark_interval: Duration,
    /// Open watch streams: id → the resourceVersion up to which events were handed to the
    /// connection.
    pub(crate) watch_positions: BTreeMap<u64, u64>,
    pub(crate) next_watch_id: u64,
}

/// State plus the wake-up signal for watches.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) tick: tokio::sync::watch::Sender<u64>,
}

/// Why a request failed: HTTP code and the `Status` body.
pub(crate) type Failure = (u16, Value);

impl Shared {
    pub(crate) fn new() -> Shared {
        let (tick, _) = tokio::sync::watch::channel(0);
        Shared {
            state: Mutex::new(State {
                rv: FIRST_RV,
                nodes: BTreeMap::new(),
                pods: BTreeMap::new(),
                history: VecDeque::new(),
                history_limit: DEFAULT_HISTORY,
                oldest_rv: FIRST_RV,
                break_gen: 0,
                expire_gen: 0,
                bookmark_gen: 0,
                shutdown: false,
                nodes_added: 0,
                requests: Vec::new(),
                bytes: BytesSent::default(),
                bookmark_interval: Duration::from_secs(5),
                watch_positions: BTreeMap::new(),
                next_watch_id: 0,
            }),
            tick,
        }
    }

    /// The state, even if a panicking test thread poisoned the lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wake every open watch.
    pub(crate) fn notify(&self) {
        self.tick.send_modify(|t| *t = t.wrapping_add(1));
    }

    /// Run `f` on the state, then wake watches.
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.notify();
        r
    }
}

impl State {
    /// Allocate the next resourceVersion.
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Record an event for `obj` (whose resourceVersion is already `rv`) in the history.
    fn record(&mut self, kind: EventType, name: &str, obj: Value, rv: u64) {
        self.history.push_back(Arc::new(Event {
            rv,
            name: name.to_string(),
            kind,
            object: obj,
            full: OnceLock::new(),
            metadata: OnceLock::new(),
        }));
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.oldest_rv = self.oldest_rv.max(old.rv);
            }
        }
    }

    /// Store `node` under a new resourceVersion and emit `kind`.
    fn commit_node(&mut self, kind: EventType, name: &str, mut node: Value) -> Value {
        let rv = self.next_rv();
        set_rv(&mut node, rv);
        self.nodes.insert(name.to_string(), node.clone());
        self.record(kind, name, node.clone(), rv);
        node
    }

    /// Add (or replace) a realistic node.
    pub(crate) fn add_node(&mut self, name: &str, pod_cidrs: &[&str]) {
        self.nodes_added += 1;
        let index = self.nodes_added;
        let kind = if self.nodes.contains_key(name) {
            EventType::Modified
        } else {
            EventType::Added
        };
        let node = objects::node(name, index, pod_cidrs, self.rv + 1);
        self.commit_node(kind, name, node);
    }

    /// Apply `edit` to an existing node and commit it as MODIFIED (no-op when absent).
    pub(crate) fn edit_node(&mut self, name: &str, edit: impl FnOnce(&mut Value, &str)) {
        let Some(mut node) = self.nodes.get(name).cloned() else {
            return;
        };
        let now = objects::timestamp(self.rv + 1);
        edit(&mut node, &now);
        self.commit_node(EventType::Modified, name, node);
    }

    pub(crate) fn delete_node(&mut self, name: &str) {
        let Some(mut node) = self.nodes.remove(name) else {
            return;
        };
        let rv = self.next_rv();
        set_rv(&mut node, rv);
        self.record(EventType::Deleted, name, node, rv);
    }

    pub(crate) fn add_pod(&mut self, namespace: &str, name: &str, node_name: &str) {
        let rv = self.next_rv();
        self.pods.insert(
            (namespace.to_string(), name.to_string()),
            objects::pod(namespace, name, node_name, rv),
        );
    }

    /// Forget the history: watches and exact lists from any resourceVersion before now get
    /// 410 Gone, and open watch streams end with a 410 `ERROR` event. The resourceVersion
    /// advances (as if something else was written), so a fresh list can be watched from.
    pub(crate) fn expire_history(&mut self) {
        let rv = self.next_rv();
        self.history.clear();
        self.oldest_rv = rv;
        self.expire_gen += 1;
    }

    /// Apply a PATCH to a node (main resource or `status` subresource).
    pub(crate) fn patch_node(
        &mut self,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status_subresource: bool,
        manager: &str,
    ) -> Result<Value, Failure> {
        let Some(old) = self.nodes.get(name).cloned() else {
            return Err((404, objects::not_found("nodes", name)));
        };
        if !body.is_object() {
            return Err((
                400,
                objects::status(400, "BadRequest", "the patch must be a JSON object", None),
            ));
        }
        if let Some(want) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if Some(want)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
            {
                let msg = format!(
                    "Operation cannot be fulfilled on nodes \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again"
                );
                return Err((
                    409,
                    objects::status(
                        409,
                        "Conflict",
                        &msg,
                        Some(json!({"name": name, "kind": "nodes"})),
                    ),
                ));
            }
        }
        let mut new = old.clone();
        patch::apply(kind, &mut new, body);
        // What the apiserver does not let a patch change: identity, and the part of the
        // object the other endpoint owns (spec through /status, status through the node).
        for key in ["kind", "apiVersion"] {
            restore(&mut new, &old, &[key]);
        }
        for key in [
            "name",
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "managedFields",
        ] {
            restore(&mut new, &old, &["metadata", key]);
        }
        restore(
            &mut new,
            &old,
            &[if status_subresource { "spec" } else { "status" }],
        );
        if new == old {
            return Ok(old);
        }
        let now = objects::timestamp(self.rv + 1);
        let sub = status_subresource.then_some("status");
        objects::touch_managed_fields(&mut new, manager, sub, &now);
        Ok(self.commit_node(EventType::Modified, name, new))
    }
}

/// Set `metadata.resourceVersion`.
fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

/// Make `path` in `new` what it is in `old` (absent if absent there).
fn restore(new: &mut Value, old: &Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut old_parent = Some(old);
    for p in parents {
        old_parent = old_parent.and_then(|v| v.get(*p));
    }
    let old_value = old_parent.and_then(|v| v.get(*last)).cloned();
    let mut cur = new;
    for p in parents {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        cur = obj.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    if let Some(obj) = cur.as_object_mut() {
        match old_value {
            Some(v) => {
                obj.insert(last.to_string(), v);
            }
            None => {
                obj.remove(*last);
            }
        }
    }
}
