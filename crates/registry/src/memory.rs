//! An in-memory [`SubnetStore`] for component tests: TTLs run on tokio time (so tests can
//! `tokio::time::pause()` and jump a day ahead), expired keys produce delete events as in etcd,
//! and faults can be injected (unavailability, forced re-snapshot as after a compaction).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use flannel_model::{Lease, LeaseAttrs, SubnetKey};
use futures_util::Stream;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use crate::store::{StoreError, StoredLease, SubnetStore, WatchBatch, WatchEvent};

#[derive(Debug)]
struct Entry {
    attrs: LeaseAttrs,
    lease_id: i64,
    mod_revision: i64,
}

#[derive(Debug)]
struct Grant {
    ttl: Duration,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    config: Option<String>,
    keys: BTreeMap<SubnetKey, Entry>,
    grants: HashMap<i64, Grant>,
    revision: i64,
    next_grant: i64,
    unavailable: bool,
}

/// The in-memory store. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<WatchBatch>,
    wake: Arc<Notify>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store. Must be called inside a tokio runtime (it spawns the TTL reaper).
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        let store = MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                next_grant: 1000,
                ..Inner::default()
            })),
            events,
            wake: Arc::new(Notify::new()),
        };
        let reaper = store.clone();
        tokio::spawn(async move { reaper.reap().await });
        store
    }

    /// Set the network configuration JSON.
    pub fn set_config(&self, json: &str) {
        self.lock().config = Some(json.to_owned());
    }

    /// Make every operation fail with [`StoreError::Unavailable`] (watches stay silent).
    pub fn set_unavailable(&self, down: bool) {
        self.lock().unavailable = down;
    }

    /// Send every watcher a fresh snapshot, as etcd watchers get after a compaction.
    pub fn force_resnapshot(&self) {
        let batch = {
            let inner = self.lock();
            Self::snapshot(&inner)
        };
        // No receivers is fine.
        let _ = self.events.send(batch);
    }

    /// The lease id and remaining TTL of a key, for assertions.
    pub fn ttl_of(&self, key: &SubnetKey) -> Option<(i64, Option<Duration>)> {
        let inner = self.lock();
        let entry = inner.keys.get(key)?;
        let remaining = inner
            .grants
            .get(&entry.lease_id)
            .map(|g| g.expires.saturating_duration_since(Instant::now()));
        Some((entry.lease_id, remaining))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a test panicked elsewhere; the data is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(inner: &Inner) -> Result<(), StoreError> {
        if inner.unavailable {
            return Err(StoreError::Unavailable {
                endpoints: "memory".into(),
                message: "injected outage".into(),
            });
        }
        Ok(())
    }

    fn stored(inner: &Inner, key: &SubnetKey, entry: &Entry) -> StoredLease {
        let expiration = inner
            .grants
            .get(&entry.lease_id)
            .map(|g| SystemTime::now() + g.expires.saturating_duration_since(Instant::now()));
        StoredLease {
            lease: Lease {
                subnet: *key,
                attrs: entry.attrs.clone(),
                expiration,
            },
            lease_id: entry.lease_id,
            mod_revision: entry.mod_revision,
        }
    }

    fn snapshot(inner: &Inner) -> WatchBatch {
        WatchBatch::Snapshot {
            leases: inner
                .keys
                .iter()
                .map(|(k, e)| Self::stored(inner, k, e))
                .collect(),
            revision: inner.revision,
        }
    }

    fn write(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
        only_if_absent: bool,
    ) -> Result<StoredLease, StoreError> {
        let (stored, batch) = {
            let mut inner = self.lock();
            Self::check(&inner)?;
            if only_if_absent && inner.keys.contains_key(key) {
                return Err(StoreError::AlreadyExists(key.to_string()));
            }
            let lease_id = match ttl {
                Some(ttl) => {
                    inner.next_grant += 1;
                    let id = inner.next_grant;
                    inner.grants.insert(
                        id,
                        Grant {
                            ttl,
                            expires: Instant::now() + ttl,
                        },
                    );
                    id
                }
                None => 0,
            };
            inner.revision += 1;
            let entry = Entry {
                attrs: attrs.clone(),
                lease_id,
                mod_revision: inner.revision,
            };
            let stored = Self::stored(&inner, key, &entry);
            inner.keys.insert(*key, entry);
            let batch = WatchBatch::Events {
                events: vec![WatchEvent::Put(stored.clone())],
                revision: inner.revision,
            };
            (stored, batch)
        };
        let _ = self.events.send(batch);
        self.wake.notify_one();
        Ok(stored)
    }

    fn delete_where(&self, pred: impl Fn(&SubnetKey, &Entry) -> bool) {
        let batch = {
            let mut inner = self.lock();
            let doomed: Vec<SubnetKey> = inner
                .keys
                .iter()
                .filter(|(k, e)| pred(k, e))
                .map(|(k, _)| *k)
                .collect();
            if doomed.is_empty() {
                return;
            }
            inner.revision += 1;
            for k in &doomed {
                inner.keys.remove(k);
            }
            WatchBatch::Events {
                events: doomed.into_iter().map(WatchEvent::Delete).collect(),
                revision: inner.revision,
            }
        };
        let _ = self.events.send(batch);
    }

    async fn reap(self) {
        loop {
            let next = {
                let mut inner = self.lock();
                let now = Instant::now();
                let expired: Vec<i64> = inner
                    .grants
                    .iter()
                    .filter(|(_, g)| g.expires <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in &expired {
                    inner.grants.remove(id);
                }
                drop(inner);
                if !expired.is_empty() {
                    self.delete_where(|_, e| expired.contains(&e.lease_id));
                }
                self.lock().grants.values().map(|g| g.expires).min()
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
            if Arc::strong_count(&self.inner) == 1 {
                return;
            }
        }
    }
}

impl SubnetStore for MemoryStore {
    async fn get_network_config(&self) -> Result<String, StoreError> {
        let inner = self.lock();
        Self::check(&inner)?;
        inner
            .config
            .clone()
            .ok_or_else(|| StoreError::ConfigNotFound {
                key: "<memory>/config".into(),
            })
    }

    async fn list_leases(&self) -> Result<(Vec<StoredLease>, i64), StoreError> {
        let inner = self.lock();
        Self::check(&inner)?;
        match Self::snapshot(&inner) {
            WatchBatch::Snapshot { leases, revision } => Ok((leases, revision)),
            WatchBatch::Events { .. } => unreachable!("snapshot() builds a snapshot"),
        }
    }

    async fn get_lease(&self, key: &SubnetKey) -> Result<Option<StoredLease>, StoreError> {
        let inner = self.lock();
        Self::check(&inner)?;
        Ok(inner.keys.get(key).map(|e| Self::stored(&inner, key, e)))
    }

    async fn create_lease(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<StoredLease, StoreError> {
        self.write(key, attrs, ttl, true)
    }

    async fn put_lease(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<StoredLease, StoreError> {
        self.write(key, attrs, ttl, false)
    }

    async fn keep_alive(&self, lease_id: i64) -> Result<Option<Duration>, StoreError> {
        let mut inner = self.lock();
        Self::check(&inner)?;
        let out = inner.grants.get_mut(&lease_id).map(|g| {
            g.expires = Instant::now() + g.ttl;
            g.ttl
        });
        drop(inner);
        self.wake.notify_one();
        Ok(out)
    }

    async fn delete_lease(&self, key: &SubnetKey) -> Result<(), StoreError> {
        Self::check(&self.lock())?;
        self.delete_where(|k, _| k == key);
        Ok(())
    }

    fn watch_leases(&self) -> impl Stream<Item = WatchBatch> + Send + 'static {
        // Subscribe before the snapshot so nothing falls between them; drop older events.
        let rx = self.events.subscribe();
        let first = Self::snapshot(&self.lock());
        let since = match &first {
            WatchBatch::Snapshot { revision, .. } => *revision,
            WatchBatch::Events { revision, .. } => *revision,
        };
        let inner = Arc::clone(&self.inner);
        futures_util::stream::unfold(
            (Some(first), rx, since, inner),
            |(first, mut rx, since, inner)| async move {
                if let Some(first) = first {
                    return Some((first, (None, rx, since, inner)));
                }
                loop {
                    match rx.recv().await {
                        Ok(WatchBatch::Events { revision, .. }) if revision <= since => continue,
                        Ok(batch) => {
                            // An outage hides events; the watcher resumes when it ends, as the
                            // etcd store's reconnect would.
                            while inner.lock().map(|i| i.unavailable).unwrap_or(false) {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            return Some((batch, (None, rx, since, inner)));
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )
    }
}
