//! Pieces of the Kubernetes subnet manager (`flanneld --kube-subnet-mgr`).
//!
//! - [`annotations`]: the node annotations Flannel reads and writes, node → lease conversion,
//!   and the patch bodies flanneld sends for its own node. Pure code, no API client.

pub mod annotations;
