//! Where leases live and how flanneld keeps its own.
//!
//! - [`store`]: the [`SubnetStore`] trait, the storage operations the lease manager needs.
//! - [`etcd`]: the etcd v3 store (keys and values compatible with Flannel).
//! - [`memory`]: an in-memory store for component tests.
//! - [`manager`]: acquire / renew / recover our own lease and report peers.
//! - [`filter`]: leases that are not subnets of the network are ignored.
//! - [`events`]: what a lease manager tells the daemon ([`ManagerEvent`]).
//! - [`peers`]: turns store watch batches into peer added/removed events.

pub mod error_text;
pub mod etcd;
pub mod events;
pub mod filter;
pub mod kube;
pub mod manager;
pub mod memory;
pub mod observer;
pub mod peers;
pub mod store;

pub use events::ManagerEvent;
pub use manager::{ranges_for, AcquireError, LeaseManager, ManagerConfig, RangesError};
pub use observer::{ManagerObserver, NoObserver};
pub use peers::{PeerEvent, PeerTracker};
pub use store::{StoreError, StoredLease, SubnetStore, WatchBatch, WatchEvent};
