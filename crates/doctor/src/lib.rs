//! What `flannelctl status` and `flannelctl doctor` conclude about one node. Pure: the
//! gathering (etcd, netlink, files, `/readyz`, `ethtool`, `iptables-save`) lives in
//! flannelctl (`crates/flannelctl/src/node.rs`); this crate only reads the facts it gathered.
//!
//! - [`facts`]: everything gathered about the node, as plain data ([`NodeFacts`]).
//! - [`entries`]: for each peer, what the kernel holds against what the backend wants.
//! - [`checks`]: one function per problem; [`checks::diagnose`] runs them all.
//! - [`finding`]: a [`Finding`]: its kind, the evidence, the fix, in short sentences.
//!
//! The vxlan checksum-offload decision flanneld applies itself is in
//! [`flannel_planner::offload`]; the doctor reports the same condition.

pub mod checks;
pub mod entries;
pub mod facts;
pub mod finding;

pub use checks::diagnose;
pub use facts::NodeFacts;
pub use finding::{Finding, Kind};
