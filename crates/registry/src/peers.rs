//! Turns store watch batches into peer events (pure; Flannel's `LeaseWatcher`).
//!
//! The tracker keeps every lease the store holds, ours included, and reports:
//! - peer leases added, changed or removed (our own subnet is filtered out);
//! - what happened to our own key (deleted, or rewritten by someone else), so the lease
//!   manager can recover it.
//!
//! A snapshot (first batch, and again after etcd compaction) is diffed against what was known,
//! so a consumer only ever sees added/removed events. A re-put of a peer with identical
//! attributes (Flannel renews by rewriting the key) produces no event.

use std::collections::BTreeMap;

use crate::store::{StoredLease, WatchBatch, WatchEvent};
use flannel_model::{Lease, SubnetKey};

/// A change in the set of peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A peer lease appeared or its attributes changed.
    Added(Lease),
    /// A peer lease is gone (carries the last known lease).
    Removed(Lease),
}

/// What the store did to our own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnEvent {
    /// Our key was written (by us, or by someone else).
    Written(StoredLease),
    /// Our key is gone: deleted by hand, or its TTL expired.
    Deleted,
    /// A snapshot came at a lower revision than the last batch: the store lost its data
    /// (etcd wiped or restored), so revisions seen before it mean nothing any more. Comes
    /// before the other events of that snapshot.
    StoreReset,
}

/// Everything one batch produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub peers: Vec<PeerEvent>,
    pub own: Vec<OwnEvent>,
}

/// The set of known leases, and which one is ours.
#[derive(Debug, Default)]
pub struct PeerTracker {
    known: BTreeMap<SubnetKey, StoredLease>,
    own: Option<SubnetKey>,
    revision: i64,
}

impl PeerTracker {
    /// A tracker for a host that holds `own` (None before the first acquisition).
    pub fn new(own: Option<SubnetKey>) -> Self {
        PeerTracker {
            known: BTreeMap::new(),
            own,
            revision: 0,
        }
    }

    /// Our subnet changed (re-acquired elsewhere). The old key, if someone else holds it now,
    /// becomes a peer; the new one stops being one.
    pub fn set_own(&mut self, own: SubnetKey) -> Vec<PeerEvent> {
        let old = self.own.replace(own);
        let mut events = Vec::new();
        if old == Some(own) {
            return events;
        }
        if let Some(peer) = self.known.get(&own) {
            events.push(PeerEvent::Removed(peer.lease.clone()));
        }
        if let Some(old) = old.and_then(|k| self.known.get(&k)) {
            events.push(PeerEvent::Added(old.lease.clone()));
        }
        events
    }

    /// Current peers (every known lease but ours), ordered by subnet.
    pub fn peers(&self) -> impl Iterator<Item = &Lease> {
        self.known
            .iter()
            .filter(|(k, _)| Some(**k) != self.own)
            .map(|(_, v)| &v.lease)
    }

    /// Number of known peers.
    pub fn peer_count(&self) -> usize {
        self.known.len() - usize::from(self.own.is_some_and(|k| self.known.contains_key(&k)))
    }

    /// Revision of the last batch applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Apply one watch batch.
    pub fn apply(&mut self, batch: WatchBatch) -> Changes {
        let mut changes = Changes::default();
        match batch {
            WatchBatch::Snapshot { leases, revision } => {
                if revision < self.revision {
                    changes.own.push(OwnEvent::StoreReset);
                }
                self.revision = revision;
                let fresh: BTreeMap<SubnetKey, StoredLease> =
                    leases.into_iter().map(|l| (l.lease.subnet, l)).collect();
                let gone: Vec<SubnetKey> = self
                    .known
                    .keys()
                    .filter(|k| !fresh.contains_key(k))
                    .copied()
                    .collect();
                for key in gone {
                    self.remove(key, &mut changes);
                }
                // Our key may be missing without ever having been seen (lost between
                // acquisition and the first snapshot).
                if let Some(own) = self.own {
                    if !fresh.contains_key(&own) && !changes.own.contains(&OwnEvent::Deleted) {
                        changes.own.push(OwnEvent::Deleted);
                    }
                }
                for (_, lease) in fresh {
                    self.put(lease, &mut changes);
                }
            }
            WatchBatch::Events { events, revision } => {
                self.revision = revision;
                for event in events {
                    match event {
                        WatchEvent::Put(lease) => self.put(lease, &mut changes),
                        WatchEvent::Delete(key) => self.remove(key, &mut changes),
                    }
                }
            }
        }
        changes
    }

    fn put(&mut self, lease: StoredLease, changes: &mut Changes) {
        let key = lease.lease.subnet;
        let previous = self.known.insert(key, lease.clone());
        if Some(key) == self.own {
            if previous.as_ref() != Some(&lease) {
                changes.own.push(OwnEvent::Written(lease));
            }
            return;
        }
        let same = previous.is_some_and(|p| p.lease.attrs == lease.lease.attrs);
        if !same {
            changes.peers.push(PeerEvent::Added(lease.lease));
        }
    }

    fn remove(&mut self, key: SubnetKey, changes: &mut Changes) {
        let Some(previous) = self.known.remove(&key) else {
            if Some(key) == self.own {
                changes.own.push(OwnEvent::Deleted);
            }
            return;
        };
        if Some(key) == self.own {
            changes.own.push(OwnEvent::Deleted);
        } else {
            changes.peers.push(PeerEvent::Removed(previous.lease));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_model::LeaseAttrs;
    use std::net::Ipv4Addr;

    fn stored(subnet: &str, ip: u8) -> StoredLease {
        StoredLease {
            lease: Lease {
                subnet: SubnetKey {
                    ipv4: subnet.parse().expect("cidr"),
                    ipv6: None,
                },
                attrs: LeaseAttrs {
                    public_ip: Ipv4Addr::new(192, 0, 2, ip),
                    public_ipv6: None,
                    backend_type: String::new(),
                    backend_data: None,
                    backend_v6_data: None,
                },
                expiration: None,
            },
            lease_id: 7,
            mod_revision: 1,
        }
    }

    fn key(s: &str) -> SubnetKey {
        SubnetKey {
            ipv4: s.parse().expect("cidr"),
            ipv6: None,
        }
    }

    #[test]
    fn snapshot_then_events_filter_own_subnet() {
        let mut t = PeerTracker::new(Some(key("198.18.1.0/24")));
        let c = t.apply(WatchBatch::Snapshot {
            leases: vec![stored("198.18.1.0/24", 1), stored("198.18.2.0/24", 2)],
            revision: 5,
        });
        assert_eq!(
            c.peers,
            vec![PeerEvent::Added(stored("198.18.2.0/24", 2).lease)]
        );
        assert_eq!(c.own, vec![OwnEvent::Written(stored("198.18.1.0/24", 1))]);
        assert_eq!(t.peer_count(), 1);

        let c = t.apply(WatchBatch::Events {
            events: vec![
                WatchEvent::Put(stored("198.18.3.0/24", 3)),
                WatchEvent::Delete(key("198.18.2.0/24")),
                WatchEvent::Delete(key("198.18.1.0/24")),
            ],
            revision: 9,
        });
        assert_eq!(
            c.peers,
            vec![
                PeerEvent::Added(stored("198.18.3.0/24", 3).lease),
                PeerEvent::Removed(stored("198.18.2.0/24", 2).lease),
            ]
        );
        assert_eq!(c.own, vec![OwnEvent::Deleted]);
        assert_eq!(t.revision(), 9);
    }

    #[test]
    fn identical_reput_is_silent_but_changed_attrs_are_not() {
        let mut t = PeerTracker::new(None);
        t.apply(WatchBatch::Snapshot {
            leases: vec![stored("198.18.2.0/24", 2)],
            revision: 1,
        });
        let mut renewed = stored("198.18.2.0/24", 2);
        renewed.lease_id = 99;
        let c = t.apply(WatchBatch::Events {
            events: vec![WatchEvent::Put(renewed)],
            revision: 2,
        });
        assert!(c.peers.is_empty());
        let moved = stored("198.18.2.0/24", 42);
        let c = t.apply(WatchBatch::Events {
            events: vec![WatchEvent::Put(moved.clone())],
            revision: 3,
        });
        assert_eq!(c.peers, vec![PeerEvent::Added(moved.lease)]);
    }

    #[test]
    fn resnapshot_emits_the_difference() {
        let mut t = PeerTracker::new(Some(key("198.18.1.0/24")));
        t.apply(WatchBatch::Snapshot {
            leases: vec![
                stored("198.18.1.0/24", 1),
                stored("198.18.2.0/24", 2),
                stored("198.18.3.0/24", 3),
            ],
            revision: 1,
        });
        // After compaction: .2 gone, .4 new, .3 unchanged, our own key gone.
        let c = t.apply(WatchBatch::Snapshot {
            leases: vec![stored("198.18.3.0/24", 3), stored("198.18.4.0/24", 4)],
            revision: 50,
        });
        assert_eq!(
            c.peers,
            vec![
                PeerEvent::Removed(stored("198.18.2.0/24", 2).lease),
                PeerEvent::Added(stored("198.18.4.0/24", 4).lease),
            ]
        );
        assert_eq!(c.own, vec![OwnEvent::Deleted]);
        let peers: Vec<_> = t.peers().map(|l| l.subnet).collect();
        assert_eq!(peers, vec![key("198.18.3.0/24"), key("198.18.4.0/24")]);
    }

    #[test]
    fn a_snapshot_at_a_lower_revision_is_a_store_reset() {
        let mut t = PeerTracker::new(Some(key("198.18.1.0/24")));
        t.apply(WatchBatch::Snapshot {
            leases: vec![stored("198.18.1.0/24", 1), stored("198.18.2.0/24", 2)],
            revision: 40,
        });
        // etcd wiped: only a config was written again.
        let c = t.apply(WatchBatch::Snapshot {
            leases: vec![],
            revision: 2,
        });
        assert_eq!(c.own, vec![OwnEvent::StoreReset, OwnEvent::Deleted]);
        assert_eq!(
            c.peers,
            vec![PeerEvent::Removed(stored("198.18.2.0/24", 2).lease)]
        );
        assert_eq!(t.revision(), 2);
        // A later snapshot at a higher revision is no reset.
        let c = t.apply(WatchBatch::Snapshot {
            leases: vec![stored("198.18.1.0/24", 1)],
            revision: 5,
        });
        assert!(!c.own.contains(&OwnEvent::StoreReset), "{:?}", c.own);
    }

    #[test]
    fn moving_own_subnet_turns_old_key_into_peer() {
        let mut t = PeerTracker::new(Some(key("198.18.1.0/24")));
        t.apply(WatchBatch::Snapshot {
            leases: vec![stored("198.18.1.0/24", 9), stored("198.18.2.0/24", 2)],
            revision: 1,
        });
        let ev = t.set_own(key("198.18.5.0/24"));
        assert_eq!(ev, vec![PeerEvent::Added(stored("198.18.1.0/24", 9).lease)]);
        assert_eq!(t.peer_count(), 2);
    }
}
