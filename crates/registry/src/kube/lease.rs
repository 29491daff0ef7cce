//! Our own lease in Kubernetes mode, and the peers the daemon follows (Go
//! `kubeSubnetManager.{AcquireLease,CompleteLease,WatchLeases,GetStored*}`).
//!
//! This file owns the I/O sequence around the pure rules of [`super::annotations`]:
//! - [`KubeLeaseManager::own_node_facts`]: what a previous run (or the operator) stored on our
//!   node: the `node-public-ip(v6)` annotations (used as `--public-ip(v6)`) and the VTEP MACs
//!   in `backend(-v6)-data` (so a restarted vxlan device keeps its MAC and peers' ARP/FDB
//!   entries stay valid);
//! - [`KubeLeaseManager::acquire`]: wait for our node's podCIDR (logging what the operator
//!   must do, retried every few seconds, cancellable), check it lies inside
//!   `Network`/`IPv6Network` (Flannel's errors; fatal), and patch the annotations that differ
//!   on the node's **status** subresource (RBAC needs only `nodes/status: patch`);
//! - [`KubeLeaseManager::run`]: `--set-node-network-unavailable` (the `NetworkUnavailable=False`
//!   condition, retried until it works), and the node watch turned into
//!   [`ManagerEvent::Peers`] / [`ManagerEvent::Synced`] through [`PeerTracker`]. A node's
//!   podCIDR never changes once set, so there is no renewal; when someone removes or
//!   changes our annotations they are patched back, and if our node was re-created with
//!   another podCIDR, [`ManagerEvent::Reacquired`] tells the daemon.
//!
//! Deviations from Flannel: API failures while acquiring are retried with backoff instead of
//! failing after 30 s; a missing podCIDR is waited for indefinitely (Flannel gives up after
//! 30 s and exits); annotations removed while we run are restored (Flannel never looks).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use super::objects::Node;
use flannel_model::{goip, IpStack, Lease, LeaseAttrs, NetworkConfig};
use futures_util::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::annotations::{
    annotations_patch_body, annotations_to_patch, network_available_patch_body, node_to_lease,
    own_pod_cidrs, own_subnet, restore_vtep_mac, AnnotationNames, KubeError, NodeInfo,
};
use super::objects::node_info;
use super::watch::{lease_watch_stack, WatchMode};
use crate::events::{forward_batch, log_peers, ManagerEvent};
use crate::manager::sleep_until_opt;
use crate::peers::{OwnEvent, PeerTracker};

/// Settings of the Kubernetes lease manager.
#[derive(Debug, Clone)]
pub struct KubeLeaseConfig {
    /// Our node's name (`NODE_NAME`, or our pod's `spec.nodeName`).
    pub node_name: String,
    /// Annotation names for `--kube-annotation-prefix`.
    pub names: AnnotationNames,
    /// `--set-node-network-unavailable`: set `NetworkUnavailable=False` once running.
    pub set_node_network_unavailable: bool,
    /// How peers are watched.
    pub watch_mode: WatchMode,
    /// Wait between looks at our node while it has no podCIDR (Flannel: 3 s).
    pub poll_interval: Duration,
    /// Longest wait between retries of failed API calls.
    pub max_backoff: Duration,
}

impl KubeLeaseConfig {
    /// Flannel's timing for `node_name` and `names`.
    pub fn new(node_name: String, names: AnnotationNames) -> Self {
        KubeLeaseConfig {
            node_name,
            names,
            set_node_network_unavailable: true,
            watch_mode: WatchMode::default(),
            poll_interval: Duration::from_secs(3),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Why the Kubernetes lease manager stopped.
#[derive(Debug, thiserror::Error)]
pub enum KubeLeaseError {
    /// Our node's facts contradict the config (PodCIDR outside `Network`, bad CIDRs, …).
    #[error(transparent)]
    Node(#[from] KubeError),
    /// A `node-public-ip(v6)` annotation on our node is not an address.
    #[error("annotation {annotation} on node {node:?} is not an IP{family} address: {value:?}")]
    BadNodePublicIp {
        /// The node's name.
        node: String,
        /// The annotation's name.
        annotation: String,
        /// `v4` or `v6`.
        family: &'static str,
        /// Its value.
        value: String,
    },
    /// The network config enables no address family.
    #[error("none defined stack")]
    NoStack,
    /// `cancel` fired first.
    #[error("shutting down")]
    Cancelled,
}

/// What our node already holds, read once at start-up (Go `GetStoredPublicIP`,
/// `GetStoredMacAddresses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnNodeFacts {
    /// `node-public-ip`: use as `--public-ip`.
    pub public_ip: Option<Ipv4Addr>,
    /// `node-public-ipv6`: use as `--public-ipv6`.
    pub public_ipv6: Option<Ipv6Addr>,
    /// `VtepMAC` of our `backend-data` (written by a previous flanneld).
    pub vtep_mac: Option<[u8; 6]>,
    /// `VtepMAC` of our `backend-v6-data`.
    pub vtep_mac_v6: Option<[u8; 6]>,
}

/// The `node-public-ip(v6)` annotations of `node` (empty values count as unset).
pub fn node_public_ips(
    names: &AnnotationNames,
    node: &NodeInfo,
) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), KubeLeaseError> {
    let bad = |annotation: &str, family, value: &str| KubeLeaseError::BadNodePublicIp {
        node: node.name.clone(),
        annotation: annotation.to_owned(),
        family,
        value: value.to_owned(),
    };
    let get = |k: &str| node.annotations.get(k).filter(|v| !v.is_empty());
    let v4 = match get(&names.node_public_ip) {
        Some(v) => Some(goip::parse_ip4(v).map_err(|_| bad(&names.node_public_ip, "v4", v))?),
        None => None,
    };
    let v6 = match get(&names.node_public_ipv6) {
        Some(v) => Some(goip::parse_ip6(v).map_err(|_| bad(&names.node_public_ipv6, "v6", v))?),
        None => None,
    };
    Ok((v4, v6))
}

/// The VTEP MACs stored in our `backend-data` / `backend-v6-data`; an unusable value is
/// logged and ignored (a new MAC is derived instead).
pub fn stored_vtep_macs(
    names: &AnnotationNames,
    annotations: &BTreeMap<String, String>,
) -> (Option<[u8; 6]>, Option<[u8; 6]>) {
    let read = |names: &AnnotationNames| match restore_vtep_mac(names, annotations) {
        Ok(mac) => mac,
        Err(e) => {
            warn!(error = %e, "not reusing the stored VTEP MAC");
            None
        }
    };
    let v4 = read(names);
    let v6_names = AnnotationNames {
        backend_data: names.backend_v6_data.clone(),
        ..names.clone()
    };
    (v4, read(&v6_names))
}

/// Keeps this node's lease in Kubernetes mode. Create with [`KubeLeaseManager::new`], call
/// [`KubeLeaseManager::acquire`], then hand it to [`KubeLeaseManager::run`].
pub struct KubeLeaseManager {
    client: Client,
    nodes: Api<Node>,
    network: NetworkConfig,
    stack: IpStack,
    cfg: KubeLeaseConfig,
    /// Our lease, once acquired.
    current: Option<Lease>,
    /// Our attributes (what we advertise).
    attrs: Option<LeaseAttrs>,
    /// Our lease as peers read it from our annotations right after we patched them.
    advertised: Option<Lease>,
}

impl std::fmt::Debug for KubeLeaseManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLeaseManager")
            .field("node", &self.cfg.node_name)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl KubeLeaseManager {
    /// A manager for our node in `network` (the config from `--net-config-path`).
    pub fn new(
        client: Client,
        network: NetworkConfig,
        cfg: KubeLeaseConfig,
    ) -> Result<Self, KubeLeaseError> {
        let stack = match network.ip_stack() {
            Ok(s) => s,
            Err(_) => return Err(KubeLeaseError::NoStack),
        };
        Ok(KubeLeaseManager {
            nodes: Api::all(client.clone()),
            client,
            network,
            stack,
            cfg,
            current: None,
            attrs: None,
            advertised: None,
        })
    }

    /// The lease we hold, if any.
    pub fn current(&self) -> Option<&Lease> {
        self.current.as_ref()
    }

    /// Our node, retrying API failures with backoff (a node not there yet is waited for).
    async fn get_own_node(&self, cancel: &CancellationToken) -> Result<NodeInfo, KubeLeaseError> {
        let mut backoff = Duration::from_millis(500);
        loop {
            let wait = match self.nodes.get_opt(&self.cfg.node_name).await {
                Ok(Some(node)) => return Ok(node_info(&node)),
                Ok(None) => {
                    warn!(node = %self.cfg.node_name, "our node does not exist (yet); waiting for it (check NODE_NAME)");
                    self.cfg.poll_interval
                }
                Err(e) => {
                    warn!(node = %self.cfg.node_name, error = %e, retry_in = ?backoff, "failed to get our node from the Kubernetes API; retrying");
                    let w = backoff;
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                    w
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Err(KubeLeaseError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// What our node already stores: `node-public-ip(v6)` and the VTEP MACs.
    pub async fn own_node_facts(
        &self,
        cancel: &CancellationToken,
    ) -> Result<OwnNodeFacts, KubeLeaseError> {
        let node = self.get_own_node(cancel).await?;
        debug!(node = %node.name, annotations = ?node.annotations, "our node's annotations");
        let (public_ip, public_ipv6) = node_public_ips(&self.cfg.names, &node)?;
        let (vtep_mac, vtep_mac_v6) = stored_vtep_macs(&self.cfg.names, &node.annotations);
        Ok(OwnNodeFacts {
            public_ip,
            public_ipv6,
            vtep_mac,
            vtep_mac_v6,
        })
    }

    /// Our lease: the node's podCIDR(s) (waited for), with our annotations written. Fails
    /// only for configuration errors (PodCIDR outside the network) or when cancelled.
    pub async fn acquire(
        &mut self,
        attrs: LeaseAttrs,
        cancel: &CancellationToken,
    ) -> Result<Lease, KubeLeaseError> {
        let mut announced = false;
        let node = loop {
            let node = self.get_own_node(cancel).await?;
            match own_pod_cidrs(&node, &self.network) {
                Ok(_) => break node,
                Err(KubeError::PodCidrNotAssigned(name)) => {
                    let message = KubeError::PodCidrNotAssigned(name).to_string();
                    if !announced {
                        warn!(
                            retry_every = ?self.cfg.poll_interval,
                            "{message}: the node has no spec.podCIDR yet. Kubernetes assigns one when \
                             kube-controller-manager runs with --allocate-node-cidrs=true and \
                             --cluster-cidr set to the flannel Network (kubeadm: --pod-network-cidr); \
                             otherwise set spec.podCIDR on the node. Waiting for it"
                        );
                        announced = true;
                    } else {
                        debug!("{message}; still waiting");
                    }
                }
                Err(e) => return Err(e.into()),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(KubeLeaseError::Cancelled),
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
            }
        };
        let subnet = own_subnet(&node, &self.network)?;
        let annotations = self.patch_annotations(&node, &attrs, cancel).await?;
        let lease = Lease {
            subnet,
            attrs: attrs.clone(),
            expiration: None,
        };
        self.advertised = self.peer_view(&node.name, &node, annotations);
        self.attrs = Some(attrs);
        self.current = Some(lease.clone());
        info!(node = %node.name, subnet = %subnet, "acquired the node's podCIDR as our lease");
        Ok(lease)
    }

    /// How peers will read our node once `annotations` are on it.
    fn peer_view(
        &self,
        name: &str,
        node: &NodeInfo,
        annotations: BTreeMap<String, String>,
    ) -> Option<Lease> {
        let view = NodeInfo {
            name: name.to_owned(),
            annotations,
            ..node.clone()
        };
        node_to_lease(&view, &self.cfg.names, self.stack)
            .ok()
            .flatten()
    }

    /// Patch the annotations of `node` that differ from what `attrs` needs, retrying until it
    /// works. Returns the node's annotations as they are afterwards.
    async fn patch_annotations(
        &self,
        node: &NodeInfo,
        attrs: &LeaseAttrs,
        cancel: &CancellationToken,
    ) -> Result<BTreeMap<String, String>, KubeLeaseError> {
        let changed = annotations_to_patch(&self.cfg.names, &node.annotations, attrs);
        let mut after = node.annotations.clone();
        if changed.is_empty() {
            info!(node = %node.name, "node annotations are up to date");
            return Ok(after);
        }
        let body = annotations_patch_body(&changed);
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.patch_status(&body).await {
                Ok(()) => {
                    info!(node = %node.name, annotations = ?changed, "updated the node's flannel annotations");
                    after.extend(changed);
                    return Ok(after);
                }
                Err(e) => {
                    warn!(node = %node.name, error = %e, retry_in = ?backoff, "failed to patch node {:?}; retrying", node.name);
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(KubeLeaseError::Cancelled),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
    }

    /// One strategic-merge patch of our node's `status` subresource.
    async fn patch_status(&self, body: &str) -> Result<(), kube::Error> {
        let raw = RawValue::from_string(body.to_owned()).map_err(kube::Error::SerdeError)?;
        let patch = Patch::Strategic(raw);
        self.nodes
            .patch_status(&self.cfg.node_name, &PatchParams::default(), &patch)
            .await
            .map(|_| ())
    }

    /// Follow peers until `cancel` fires (module docs). Nothing is undone on exit.
    pub async fn run(mut self, events: mpsc::Sender<ManagerEvent>, cancel: CancellationToken) {
        let own = self.current.as_ref().map(|l| l.subnet);
        let mut tracker = PeerTracker::new(own);
        let watch = lease_watch_stack(
            self.client.clone(),
            self.cfg.names.clone(),
            self.cfg.watch_mode,
            self.stack,
        );
        tokio::pin!(watch);
        let mut condition_at = self.cfg.set_node_network_unavailable.then(Instant::now);
        let mut condition_backoff = Duration::from_millis(500);
        let mut check_own_at: Option<Instant> = None;
        let mut check_backoff = Duration::from_millis(500);
        let mut synced = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                batch = watch.next() => {
                    let Some(batch) = batch else {
                        warn!("node watch ended unexpectedly; restarting it");
                        watch.set(lease_watch_stack(
                            self.client.clone(),
                            self.cfg.names.clone(),
                            self.cfg.watch_mode,
                            self.stack,
                        ));
                        continue;
                    };
                    let Some(own) = forward_batch(&mut tracker, batch, &mut synced, &events, "initial node list").await else {
                        return;
                    };
                    if own.iter().any(|e| self.own_event_needs_check(e)) && check_own_at.is_none() {
                        check_own_at = Some(Instant::now());
                    }
                }
                _ = sleep_until_opt(condition_at) => {
                    let body = network_available_patch_body(SystemTime::now());
                    match self.patch_status(&body).await {
                        Ok(()) => {
                            info!(node = %self.cfg.node_name, "set the node condition NetworkUnavailable=False (FlannelIsUp)");
                            condition_at = None;
                        }
                        Err(e) => {
                            warn!(node = %self.cfg.node_name, error = %e, retry_in = ?condition_backoff, "failed to set the NetworkUnavailable condition; retrying");
                            condition_at = Some(Instant::now() + condition_backoff);
                            condition_backoff = (condition_backoff * 2).min(self.cfg.max_backoff);
                        }
                    }
                }
                _ = sleep_until_opt(check_own_at) => {
                    match self.check_own(&mut tracker, &events).await {
                        Ok(true) => {
                            check_own_at = None;
                            check_backoff = Duration::from_millis(500);
                        }
                        Ok(false) => return,
                        Err(e) => {
                            warn!(node = %self.cfg.node_name, error = %e, retry_in = ?check_backoff, "failed to restore our node's annotations; retrying");
                            check_own_at = Some(Instant::now() + check_backoff);
                            check_backoff = (check_backoff * 2).min(self.cfg.max_backoff);
                        }
                    }
                }
            }
        }
    }

    /// Whether a change of our own lease as peers see it needs a look at our node.
    fn own_event_needs_check(&self, event: &OwnEvent) -> bool {
        match event {
            OwnEvent::Deleted => true,
            OwnEvent::Written(stored) => self.advertised.as_ref() != Some(&stored.lease),
            // The node watch's revisions only grow; should one go back, look at our node.
            OwnEvent::StoreReset => true,
        }
    }

    /// Our annotations were removed or changed, or our node changed: re-read it, restore our
    /// annotations, and report a new podCIDR. `Ok(false)` when the daemon is gone.
    async fn check_own(
        &mut self,
        tracker: &mut PeerTracker,
        events: &mpsc::Sender<ManagerEvent>,
    ) -> Result<bool, kube::Error> {
        let (Some(attrs), Some(current)) = (self.attrs.clone(), self.current.clone()) else {
            return Ok(true);
        };
        let Some(node) = self.nodes.get_opt(&self.cfg.node_name).await? else {
            warn!(node = %self.cfg.node_name, "our node was deleted; waiting for it to come back");
            return Ok(true);
        };
        let node = node_info(&node);
        let changed = annotations_to_patch(&self.cfg.names, &node.annotations, &attrs);
        let mut after = node.annotations.clone();
        if !changed.is_empty() {
            warn!(node = %node.name, annotations = ?changed, "our flannel annotations were removed or changed; restoring them");
            self.patch_status(&annotations_patch_body(&changed)).await?;
            after.extend(changed);
        }
        self.advertised = self.peer_view(&node.name, &node, after);
        let subnet = match own_subnet(&node, &self.network) {
            Ok(subnet) => subnet,
            Err(_) => {
                warn!(node = %node.name, "our node has no usable podCIDR now; keeping the lease we had");
                return Ok(true);
            }
        };
        if subnet == current.subnet {
            return Ok(true);
        }
        warn!(old = %current.subnet, new = %subnet, "our node's podCIDR changed (node re-created?); pods on this host need new addresses");
        let lease = Lease {
            subnet,
            attrs,
            expiration: None,
        };
        self.current = Some(lease.clone());
        let moved = tracker.set_own(subnet);
        if !moved.is_empty() {
            log_peers(&moved);
            if events.send(ManagerEvent::Peers(moved)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(events
            .send(ManagerEvent::Reacquired {
                lease,
                previous: current.subnet,
            })
            .await
            .is_ok())
    }
}
