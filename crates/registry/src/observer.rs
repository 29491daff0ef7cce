//! What a lease manager reports besides its events: renewals (the new expiry) and failed calls
//! to the store. flanneld counts them into its metrics; the default observer ignores them.

use std::fmt;
use std::time::SystemTime;

/// Told about renewals and store failures while the manager runs.
pub trait ManagerObserver: fmt::Debug + Send + Sync {
    /// Our lease was renewed and now expires at `expiration`.
    fn lease_renewed(&self, _expiration: SystemTime) {}

    /// A call to the store failed (`op`: `renew`, `put_lease`, `watch`).
    fn store_error(&self, _op: &'static str) {}
}

/// Ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl ManagerObserver for NoObserver {}
