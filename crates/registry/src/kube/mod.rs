//! The Kubernetes subnet manager (`flanneld --kube-subnet-mgr`).
//!
//! - [`annotations`]: the node annotations Flannel reads and writes, node → lease conversion,
//!   and the patch bodies flanneld sends for its own node. Pure code, no API client.
//! - [`client`]: the API client from `--kube-api-url` / `--kubeconfig-file` / in-cluster
//!   config, and our node's name.
//! - [`watch`]: every flannel node as a lease, as a [`crate::WatchBatch`] stream (full-object
//!   or metadata-only watch).
//! - [`objects`]: the Node and Pod types, cut down to the fields flanneld reads, and
//!   [`objects::node_info`].
//! - `step`: what a node event source (full watch, or `metawatch`) yields to the watch.
//! - [`netconf`]: the network config from `--net-config-path`.
//! - [`view`]: one look at every node as leases (`flannelctl status` and `doctor`).
//! - [`lease`]: our own lease (the node's podCIDR, our annotations, NetworkUnavailable) and
//!   the peer events the daemon follows.

pub mod annotations;
pub mod client;
pub mod lease;
mod metawatch;
pub mod netconf;
pub mod objects;
mod step;
pub mod view;
pub mod watch;

/// The API client type, re-exported so users need no direct `kube` dependency.
pub use ::kube::Client as KubeClient;
