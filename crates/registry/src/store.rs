//! The storage operations the lease manager needs, implemented by etcd (and by an in-memory
//! fake for tests). Keys and values are Flannel's (see `flannel_model::lease`).

use std::future::Future;
use std::time::Duration;

use flannel_model::{Lease, LeaseAttrs, SubnetKey};
use futures_util::Stream;

/// A lease together with the store-level facts the manager needs to keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    pub lease: Lease,
    /// etcd lease id the key is attached to; 0 for a reservation (no TTL).
    pub lease_id: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A lease was created or rewritten.
    Put(StoredLease),
    /// A lease key was deleted (by hand, by a peer, or because its TTL expired).
    Delete(SubnetKey),
}

/// What a lease watch yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchBatch {
    /// The complete set of leases at `revision`: sent first, and again whenever the store had
    /// to re-list (after compaction). Consumers diff it against what they knew.
    Snapshot {
        leases: Vec<StoredLease>,
        revision: i64,
    },
    /// Changes in revision order, all from one store response.
    Events {
        events: Vec<WatchEvent>,
        revision: i64,
    },
}

/// Errors from a store. [`StoreError::is_transient`] tells retry loops what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key to create exists already (a lost race).
    #[error("subnet {0} is already leased")]
    AlreadyExists(String),
    /// No network configuration has been written yet; holds the key that was read.
    #[error(
        "flannel config not found in etcd store (key {key}). Did you create your config using etcdv3 API?"
    )]
    ConfigNotFound { key: String },
    /// The store could not be reached or did not answer in time.
    #[error("etcd unavailable ({endpoints}): {message}")]
    Unavailable { endpoints: String, message: String },
    /// Any other error returned by the store.
    #[error("etcd request {op} failed: {message}")]
    Request { op: &'static str, message: String },
    /// The client could not be set up (bad TLS files, bad endpoint URL).
    #[error("etcd client setup: {0}")]
    Setup(String),
}

impl StoreError {
    /// True when the same call may succeed later (etcd down, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. }
                | StoreError::Request { .. }
                | StoreError::ConfigNotFound { .. }
        )
    }
}

/// The storage operations behind the lease manager.
pub trait SubnetStore: Send + Sync + 'static {
    /// The raw network configuration JSON (`<prefix>/config`).
    fn get_network_config(&self) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// All leases under `<prefix>/subnets/` and the revision they were read at. Keys or values
    /// that are not leases are skipped with a warning.
    fn list_leases(
        &self,
    ) -> impl Future<Output = Result<(Vec<StoredLease>, i64), StoreError>> + Send;

    /// One lease, if present.
    fn get_lease(
        &self,
        key: &SubnetKey,
    ) -> impl Future<Output = Result<Option<StoredLease>, StoreError>> + Send;

    /// Create the key only if it does not exist, attached to a new store lease of `ttl`
    /// (`None`: no TTL). A lost race returns [`StoreError::AlreadyExists`].
    fn create_lease(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<StoredLease, StoreError>> + Send;

    /// Write the key unconditionally, attached to a new store lease of `ttl` (`None`: no TTL,
    /// as for a reservation).
    fn put_lease(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<StoredLease, StoreError>> + Send;

    /// Refresh a store lease to its full TTL. `Ok(None)` when the lease no longer exists.
    fn keep_alive(
        &self,
        lease_id: i64,
    ) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;

    /// Delete a lease key (no error if absent).
    fn delete_lease(&self, key: &SubnetKey) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Watch all leases: first a [`WatchBatch::Snapshot`], then changes after it. The stream
    /// never ends by itself: disconnects are retried with backoff (logged) and resumed from the
    /// last seen revision; a compacted revision causes a fresh snapshot.
    fn watch_leases(&self) -> impl Stream<Item = WatchBatch> + Send + 'static;
}
