//! The gate every etcd lease passes before flanneld uses it: a key that is not a subnet of
//! the network ([`LeaseScope::check`]: a `/SubnetLen` inside `Network`, IPv6 likewise) is
//! ignored — never routed, never counted when allocating — with one warning per key.
//!
//! The lease manager owns one [`LeaseFilter`] and puts both entry points through it: the
//! lease list the allocator decides on, and the watch batches peer tracking applies. A key
//! that was warned about is warned about again only after it was deleted and written anew.

use std::collections::BTreeSet;

use flannel_model::{LeaseScope, SubnetKey};
use tracing::warn;

use crate::store::{StoredLease, WatchBatch, WatchEvent};

/// Drops leases outside the network's scope (module docs).
#[derive(Debug)]
pub struct LeaseFilter {
    scope: LeaseScope,
    /// Keys already warned about.
    warned: BTreeSet<SubnetKey>,
}

impl LeaseFilter {
    /// A filter admitting exactly the keys `scope` accepts.
    pub fn new(scope: LeaseScope) -> LeaseFilter {
        LeaseFilter {
            scope,
            warned: BTreeSet::new(),
        }
    }

    /// Use another scope (the network config changed); keys are warned about afresh.
    pub fn set_scope(&mut self, scope: LeaseScope) {
        if scope != self.scope {
            self.scope = scope;
            self.warned.clear();
        }
    }

    /// Whether `lease` may be used; warns the first time a key is refused.
    pub fn admit(&mut self, lease: &StoredLease) -> bool {
        let key = lease.lease.subnet;
        match self.scope.check(&key) {
            Ok(()) => true,
            Err(reason) => {
                if self.warned.insert(key) {
                    warn!(
                        key = %key,
                        public_ip = %lease.lease.attrs.public_ip,
                        "ignoring lease {key}: {reason}; it is neither routed nor counted when allocating (delete the key if it was written by hand)"
                    );
                }
                false
            }
        }
    }

    /// `batch` without the leases [`LeaseFilter::admit`] refuses. Deletes pass (a consumer
    /// ignores deletes of keys it never saw).
    pub fn batch(&mut self, batch: WatchBatch) -> WatchBatch {
        match batch {
            WatchBatch::Snapshot { leases, revision } => {
                let present: BTreeSet<SubnetKey> = leases.iter().map(|l| l.lease.subnet).collect();
                self.warned.retain(|k| present.contains(k));
                let leases = leases.into_iter().filter(|l| self.admit(l)).collect();
                WatchBatch::Snapshot { leases, revision }
            }
            WatchBatch::Events { events, revision } => {
                let events = events
                    .into_iter()
                    .filter(|e| match e {
                        WatchEvent::Put(l) => self.admit(l),
                        WatchEvent::Delete(k) => {
                            self.warned.remove(k);
                            true
                        }
                    })
                    .collect();
                WatchBatch::Events { events, revision }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flannel_model::{Lease, LeaseAttrs};

    fn stored(key: &str) -> StoredLease {
        StoredLease {
            lease: Lease {
                subnet: key.parse().unwrap(),
                attrs: LeaseAttrs::default(),
                expiration: None,
            },
            lease_id: 0,
            mod_revision: 1,
        }
    }

    fn filter() -> LeaseFilter {
        LeaseFilter::new(LeaseScope::new(
            Some(("198.18.0.0/16".parse().unwrap(), 24)),
            None,
        ))
    }

    fn keys(batch: &WatchBatch) -> Vec<String> {
        match batch {
            WatchBatch::Snapshot { leases, .. } => {
                leases.iter().map(|l| l.lease.subnet.to_string()).collect()
            }
            WatchBatch::Events { events, .. } => events
                .iter()
                .map(|e| match e {
                    WatchEvent::Put(l) => format!("put {}", l.lease.subnet),
                    WatchEvent::Delete(k) => format!("delete {k}"),
                })
                .collect(),
        }
    }

    #[test]
    fn foreign_keys_are_dropped_from_snapshots_and_events() {
        let mut f = filter();
        let snap = f.batch(WatchBatch::Snapshot {
            leases: vec![
                stored("198.16.0.0-12"),
                stored("198.18.3.0-24"),
                stored("203.0.113.0-24"),
            ],
            revision: 4,
        });
        assert_eq!(keys(&snap), vec!["198.18.3.0-24"]);
        let ev = f.batch(WatchBatch::Events {
            events: vec![
                WatchEvent::Put(stored("198.16.0.0-12")),
                WatchEvent::Put(stored("198.18.4.0-24")),
                WatchEvent::Delete("203.0.113.0-24".parse().unwrap()),
            ],
            revision: 5,
        });
        assert_eq!(
            keys(&ev),
            vec!["put 198.18.4.0-24", "delete 203.0.113.0-24"]
        );
    }

    #[test]
    fn each_key_is_warned_about_once_until_deleted() {
        let mut f = filter();
        assert!(!f.admit(&stored("198.16.0.0-12")));
        assert!(!f.admit(&stored("198.16.0.0-12")));
        assert_eq!(f.warned.len(), 1);
        f.batch(WatchBatch::Events {
            events: vec![WatchEvent::Delete("198.16.0.0-12".parse().unwrap())],
            revision: 2,
        });
        assert!(
            f.warned.is_empty(),
            "a re-created key is warned about again"
        );
        assert!(f.admit(&stored("198.18.9.0-24")));
        assert!(f.warned.is_empty());
    }
}
