//! The node watch of the Kubernetes subnet manager: every flannel-managed node as a lease, as
//! the same [`WatchBatch`] stream the etcd store yields (so [`crate::PeerTracker`] and every
//! backend work unchanged).
//!
//! The stream is built on kube-rs's `watcher` (paginated initial list, resume from the last
//! resourceVersion with bookmarks, re-list after `410 Gone`). On top of it this file owns:
//! - turning nodes into leases ([`node_to_lease`]), keeping only nodes marked
//!   `kube-subnet-manager: "true"` with valid annotations and a usable podCIDR;
//! - batching: each (re-)list becomes one [`WatchBatch::Snapshot`], each watch event that
//!   changes a lease one [`WatchBatch::Events`]; events that change no lease (heartbeats)
//!   yield nothing;
//! - backoff on errors (100 ms doubling to 5 s, one warning per outage);
//! - [`WatchMode::MetadataThenGet`]: watching only object metadata and fetching a node's spec
//!   when it matters (below).
//!
//! # Revisions
//! The `revision` of a batch is a local counter (1 for the first batch, +1 per batch), not the
//! API server's resourceVersion: resourceVersions are opaque strings by contract. A lease's
//! `mod_revision` is the counter value of the batch in which that lease last changed, and its
//! `lease_id` is always 0 (Kubernetes leases have no TTL).
//!
//! # The metadata-only watch
//! A full-object node watch receives every kubelet status heartbeat (~10 KB per node every
//! 10 s, Flannel issue #2215). With [`WatchMode::MetadataThenGet`] the watch carries only
//! `PartialObjectMetadata` (a heartbeat is one small event and costs no request), and the full
//! node is fetched only when a managed node appears, when its annotations change, or while it
//! is managed but has no podCIDR yet (`spec.podCIDR` only ever changes from empty to set, and
//! that update is itself a metadata event, so podCIDR assignment is noticed — Flannel never
//! notices podCIDR changes). A (re-)list fetches the nodes that need it with one full LIST
//! when there are several, else with single GETs. Public-IP changes travel in annotations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::objects::Node;
use flannel_model::{IpStack, Lease};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{debug, info, warn};

use super::annotations::{node_to_lease, AnnotationNames, NodeInfo, MANAGED_VALUE};
use super::metawatch::{list_full, MetaWatch};
use super::objects::node_info;
use super::step::{Seen, Step};
use crate::observer::{ManagerObserver, NoObserver};
use crate::store::{StoredLease, WatchBatch, WatchEvent};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A (re-)list needing more fetches than this uses one full LIST instead of GETs.
const LIST_INSTEAD_OF_GETS: usize = 3;

/// What the node watch receives from the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatchMode {
    /// Whole Node objects, as Flannel's informer does (every heartbeat arrives in full).
    FullObjects,
    /// Object metadata only, plus a GET of the node when its lease may have changed (module
    /// docs). flanneld's default.
    #[default]
    MetadataThenGet,
}

/// Watch every flannel-managed node as a lease, IPv4 only (see [`lease_watch_stack`]).
pub fn lease_watch(
    client: Client,
    names: AnnotationNames,
    mode: WatchMode,
) -> impl Stream<Item = WatchBatch> + Send + 'static {
    lease_watch_stack(client, names, mode, IpStack::Ipv4)
}

/// Watch every flannel-managed node as a lease for the address families of `stack`: first a
/// [`WatchBatch::Snapshot`] of all of them, then changes; a fresh snapshot after every re-list.
/// The stream never ends by itself; API errors are logged and retried with backoff.
pub fn lease_watch_stack(
    client: Client,
    names: AnnotationNames,
    mode: WatchMode,
    stack: IpStack,
) -> impl Stream<Item = WatchBatch> + Send + 'static {
    lease_watch_observed(client, names, mode, stack, Arc::new(NoObserver))
}

/// [`lease_watch_stack`], telling `observer` about every failed API call: `watch` (the node
/// watch or its list failed; a `410 Gone` re-list is no failure), `get_node` (fetching one
/// node), `list_nodes` (a full re-list of the metadata-only watch).
pub fn lease_watch_observed(
    client: Client,
    names: AnnotationNames,
    mode: WatchMode,
    stack: IpStack,
    observer: Arc<dyn ManagerObserver>,
) -> impl Stream<Item = WatchBatch> + Send + 'static {
    let state = NodeWatch {
        observer,
        api: Api::all(client.clone()),
        source: Source::start(&client, mode),
        client,
        names,
        stack,
        nodes: BTreeMap::new(),
        init: None,
        retry: BTreeSet::new(),
        revision: 0,
        backoff: BACKOFF_START,
        in_outage: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let batch = state.next_batch().await;
        Some((batch, state))
    })
}

type Watched<T> = BoxStream<'static, Result<watcher::Event<T>, watcher::Error>>;

enum Source {
    Full(Watched<Node>),
    /// Full list first, then metadata only ([`MetaWatch`]).
    Meta(Box<MetaWatch>),
}

impl Source {
    fn start(client: &Client, mode: WatchMode) -> Source {
        let config = watcher::Config::default();
        match mode {
            WatchMode::FullObjects => {
                Source::Full(watcher::watcher(Api::<Node>::all(client.clone()), config).boxed())
            }
            WatchMode::MetadataThenGet => {
                Source::Meta(Box::new(MetaWatch::new(Api::all(client.clone()))))
            }
        }
    }

    fn mode(&self) -> WatchMode {
        match self {
            Source::Full(_) => WatchMode::FullObjects,
            Source::Meta(_) => WatchMode::MetadataThenGet,
        }
    }

    async fn next(&mut self) -> Step {
        fn map<T>(
            item: Option<Result<watcher::Event<T>, watcher::Error>>,
            f: impl Fn(T) -> Seen,
        ) -> Step {
            match item {
                None => Step::Ended,
                Some(Err(e)) => Step::Error(e),
                Some(Ok(watcher::Event::Init)) => Step::Init,
                Some(Ok(watcher::Event::InitApply(o))) => Step::InitItem(f(o)),
                Some(Ok(watcher::Event::InitDone)) => Step::InitDone,
                Some(Ok(watcher::Event::Apply(o))) => Step::Apply(f(o)),
                Some(Ok(watcher::Event::Delete(o))) => Step::Delete(f(o).name().to_owned()),
            }
        }
        match self {
            Source::Full(s) => map(s.next().await, |n| Seen::Full(node_info(&n))),
            Source::Meta(m) => m.next().await,
        }
    }
}

/// What we know of one node.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// Annotations when last seen (metadata mode compares them to decide on a GET).
    annotations: BTreeMap<String, String>,
    /// The lease last reported for it (`None`: not a usable flannel node).
    lease: Option<StoredLease>,
    /// Metadata mode: fetch the node on its next event (no podCIDR yet, or a fetch failed).
    needs_fetch: bool,
    /// The last reason it was not usable, logged once per change.
    problem: Option<String>,
}

struct NodeWatch {
    /// Told about failed API calls.
    observer: Arc<dyn ManagerObserver>,
    client: Client,
    /// Full-object GETs and LISTs.
    api: Api<Node>,
    names: AnnotationNames,
    stack: IpStack,
    source: Source,
    nodes: BTreeMap<String, Entry>,
    /// Nodes of a (re-)list in progress.
    init: Option<Vec<Seen>>,
    /// Metadata mode: nodes whose fetch failed, retried after a backoff.
    retry: BTreeSet<String>,
    revision: i64,
    backoff: Duration,
    in_outage: bool,
}

fn is_managed(names: &AnnotationNames, annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(&names.kube_subnet_manager)
        .is_some_and(|v| v == MANAGED_VALUE)
}

fn has_pod_cidr(node: &NodeInfo) -> bool {
    !node.pod_cidr.is_empty() || !node.pod_cidrs.is_empty()
}

impl NodeWatch {
    async fn next_batch(&mut self) -> WatchBatch {
        loop {
            let step = if self.retry.is_empty() {
                self.source.next().await
            } else {
                tokio::select! {
                    step = self.source.next() => step,
                    _ = tokio::time::sleep(self.backoff) => {
                        if let Some(batch) = self.retry_fetches().await {
                            return batch;
                        }
                        continue;
                    }
                }
            };
            let batch = match step {
                Step::Init => {
                    self.init = Some(Vec::new());
                    None
                }
                Step::InitItem(seen) => {
                    self.init.get_or_insert_with(Vec::new).push(seen);
                    None
                }
                Step::InitDone => {
                    self.recovered();
                    let seen = self.init.take().unwrap_or_default();
                    Some(self.snapshot(seen).await)
                }
                Step::Apply(seen) => {
                    self.recovered();
                    self.apply(seen).await
                }
                Step::Delete(name) => {
                    self.recovered();
                    self.delete(&name)
                }
                Step::Error(e) => {
                    self.failed(&e);
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    None
                }
                Step::Ended => {
                    // kube-rs's watcher never ends; should it, start over with a re-list.
                    warn!("node watch ended; starting it again");
                    self.source = Source::start(&self.client, self.source.mode());
                    tokio::time::sleep(self.backoff).await;
                    None
                }
            };
            if let Some(batch) = batch {
                return batch;
            }
        }
    }

    fn recovered(&mut self) {
        if self.in_outage {
            info!("node watch working again");
            self.in_outage = false;
        }
        if self.retry.is_empty() {
            self.backoff = BACKOFF_START;
        }
    }

    fn failed(&mut self, e: &watcher::Error) {
        let gone = matches!(e, watcher::Error::WatchError(s) if s.code == 410);
        if !gone {
            self.observer.store_error("watch");
        }
        if gone {
            info!("node watch history expired (410 Gone); listing nodes again");
        } else if !self.in_outage {
            warn!(error = %e, "node watch failed; retrying with backoff");
            self.in_outage = true;
        } else {
            debug!(error = %e, "node watch still failing");
        }
    }

    /// The revision the next delivered batch gets (taken by [`Self::events_batch`] or a
    /// snapshot; batches that are not delivered use no number).
    fn next_revision(&self) -> i64 {
        self.revision + 1
    }

    /// The lease of a fully known node, logging (once per change) why it has none.
    fn lease_of(
        &self,
        node: &NodeInfo,
        previous: Option<&Entry>,
    ) -> (Option<Lease>, Option<String>) {
        match node_to_lease(node, &self.names, self.stack) {
            Ok(lease) => (lease, None),
            Err(e) => {
                let problem = e.to_string();
                if previous.and_then(|p| p.problem.as_deref()) != Some(problem.as_str()) {
                    warn!(node = %node.name, error = %problem, "ignoring node: it has no usable lease");
                }
                (None, Some(problem))
            }
        }
    }

    /// A new entry for a fully known node; `stored` keeps the old `mod_revision` when the
    /// lease did not change.
    fn entry_for(&self, node: &NodeInfo, previous: Option<&Entry>, revision: i64) -> Entry {
        let (lease, problem) = self.lease_of(node, previous);
        let lease = lease.map(|lease| match previous.and_then(|p| p.lease.as_ref()) {
            Some(old) if old.lease == lease => old.clone(),
            _ => StoredLease {
                lease,
                lease_id: 0,
                mod_revision: revision,
            },
        });
        let managed = is_managed(&self.names, &node.annotations);
        Entry {
            annotations: node.annotations.clone(),
            lease,
            needs_fetch: managed && !has_pod_cidr(node),
            problem,
        }
    }

    /// Replace the entry of `name` and report the lease change as watch events.
    fn replace(&mut self, name: &str, entry: Entry, events: &mut Vec<WatchEvent>) {
        let old = self
            .nodes
            .insert(name.to_owned(), entry.clone())
            .and_then(|e| e.lease);
        match (old, entry.lease) {
            (Some(o), Some(n)) if o.lease == n.lease => {}
            (old, new) => {
                if let Some(o) = old {
                    if new.as_ref().map(|n| n.lease.subnet) != Some(o.lease.subnet) {
                        events.push(WatchEvent::Delete(o.lease.subnet));
                    }
                }
                if let Some(n) = new {
                    events.push(WatchEvent::Put(n));
                }
            }
        }
    }

    fn events_batch(&mut self, events: Vec<WatchEvent>, revision: i64) -> Option<WatchBatch> {
        if events.is_empty() {
            return None;
        }
        self.revision = revision;
        Some(WatchBatch::Events { events, revision })
    }

    async fn snapshot(&mut self, seen: Vec<Seen>) -> WatchBatch {
        let revision = self.next_revision();
        self.revision = revision;
        let old = std::mem::take(&mut self.nodes);
        self.retry.clear();
        let mut full: BTreeMap<String, NodeInfo> = BTreeMap::new();
        let mut metas: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        for s in seen {
            match s {
                Seen::Full(n) => {
                    full.insert(n.name.clone(), n);
                }
                Seen::Meta { name, annotations } => metas.push((name, annotations)),
            }
        }
        // Metadata mode: decide which nodes need their spec, and fetch those.
        let mut pending: BTreeMap<String, Entry> = BTreeMap::new();
        let want: Vec<String> = metas
            .iter()
            .filter(|(name, ann)| {
                is_managed(&self.names, ann)
                    && old
                        .get(name)
                        .is_none_or(|e| e.needs_fetch || &e.annotations != ann)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let fetched = fetch_many(&self.api, &want, &*self.observer).await;
        for (name, annotations) in metas {
            let previous = old.get(&name);
            let entry = if !is_managed(&self.names, &annotations) {
                Entry {
                    annotations,
                    ..Entry::default()
                }
            } else if let Some(node) = fetched.get(&name) {
                self.entry_for(node, previous, revision)
            } else if want.contains(&name) {
                // The fetch failed (or the node vanished meanwhile): keep what we had, retry.
                self.retry.insert(name.clone());
                let mut e = previous.cloned().unwrap_or_default();
                e.needs_fetch = true;
                e
            } else {
                // Unchanged since we last fetched it.
                previous.cloned().unwrap_or_default()
            };
            pending.insert(name, entry);
        }
        for (name, node) in full {
            let entry = self.entry_for(&node, old.get(&name), revision);
            pending.insert(name, entry);
        }
        self.nodes = pending;
        let leases: Vec<StoredLease> = self
            .nodes
            .values()
            .filter_map(|e| e.lease.clone())
            .collect();
        debug!(
            nodes = self.nodes.len(),
            leases = leases.len(),
            "node list loaded"
        );
        WatchBatch::Snapshot { leases, revision }
    }

    async fn apply(&mut self, seen: Seen) -> Option<WatchBatch> {
        let revision = self.next_revision();
        let mut events = Vec::new();
        match seen {
            Seen::Full(node) => {
                let entry = self.entry_for(&node, self.nodes.get(&node.name), revision);
                self.replace(&node.name.clone(), entry, &mut events);
            }
            Seen::Meta { name, annotations } => {
                let previous = self.nodes.get(&name);
                let managed = is_managed(&self.names, &annotations);
                let fetch = managed
                    && previous.is_none_or(|p| p.needs_fetch || p.annotations != annotations);
                if !managed {
                    let entry = Entry {
                        annotations,
                        ..Entry::default()
                    };
                    self.replace(&name, entry, &mut events);
                } else if fetch {
                    self.fetch_into(&name, revision, &mut events).await;
                } else {
                    // A heartbeat or another change flannel does not care about.
                    return self.events_batch(events, revision);
                }
            }
        }
        self.events_batch(events, revision)
    }

    fn delete(&mut self, name: &str) -> Option<WatchBatch> {
        self.retry.remove(name);
        let old = self.nodes.remove(name)?;
        let lease = old.lease?;
        let revision = self.next_revision();
        self.events_batch(vec![WatchEvent::Delete(lease.lease.subnet)], revision)
    }

    /// GET one node and update its entry; a failed GET is retried later.
    async fn fetch_into(&mut self, name: &str, revision: i64, events: &mut Vec<WatchEvent>) {
        match self.api.get_opt(name).await {
            Ok(Some(node)) => {
                self.retry.remove(name);
                let info = node_info(&node);
                let entry = self.entry_for(&info, self.nodes.get(name), revision);
                self.replace(name, entry, events);
            }
            Ok(None) => {
                // Deleted meanwhile: its DELETED event follows.
                self.retry.remove(name);
            }
            Err(e) => {
                self.observer.store_error("get_node");
                warn!(node = %name, error = %e, "fetching node failed; retrying");
                self.retry.insert(name.to_owned());
                let entry = self.nodes.entry(name.to_owned()).or_default();
                entry.needs_fetch = true;
            }
        }
    }

    /// Retry the fetches that failed; a batch when a lease changed.
    async fn retry_fetches(&mut self) -> Option<WatchBatch> {
        let revision = self.next_revision();
        let mut events = Vec::new();
        let names: Vec<String> = self.retry.iter().cloned().collect();
        for name in names {
            self.fetch_into(&name, revision, &mut events).await;
        }
        if !self.retry.is_empty() {
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        } else {
            self.backoff = BACKOFF_START;
        }
        self.events_batch(events, revision)
    }
}

/// Full nodes for `names`: one paginated LIST when there are many, else GETs. Nodes that
/// could not be read are missing from the result.
async fn fetch_many(
    api: &Api<Node>,
    names: &[String],
    observer: &dyn ManagerObserver,
) -> BTreeMap<String, NodeInfo> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return out;
    }
    if names.len() > LIST_INSTEAD_OF_GETS {
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        match list_full(api).await {
            Ok((nodes, _)) => {
                for node in &nodes {
                    let info = node_info(node);
                    if wanted.contains(info.name.as_str()) {
                        out.insert(info.name.clone(), info);
                    }
                }
            }
            Err(e) => {
                observer.store_error("list_nodes");
                warn!(error = %e, "listing nodes failed; fetching them one by one later");
            }
        }
        return out;
    }
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(node)) => {
                out.insert(name.clone(), node_info(&node));
            }
            Ok(None) => {}
            Err(e) => {
                observer.store_error("get_node");
                warn!(node = %name, error = %e, "fetching node failed; retrying");
            }
        }
    }
    out
}
