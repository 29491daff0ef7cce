//! The lease watch of the etcd store: a snapshot, then the changes after it, forever.
//!
//! The stream is a state machine driven by its consumer's polls (no spawned task): dropping
//! the stream cancels everything. States: list leases (→ `Snapshot`), open a watch from the
//! next revision, read watch responses (→ `Events`). Failures (etcd down, watch cancelled,
//! stream ended) are logged once per outage and retried with exponential backoff
//! (100 ms doubling to 5 s), resuming from the revision after the last one delivered so no
//! change is lost; a compacted revision leads to a fresh `Snapshot`.
//!
//! When etcd lost its data (wiped and restarted, or restored from a backup: its cluster ID
//! changed, or its revision is below the last one delivered), resuming would wait for a
//! revision the new store may take ages to reach and miss everything until then: the watch
//! warns and sends a fresh `Snapshot` instead (whose lower revision tells the lease manager
//! to write our lease again).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{EventType, WatchOptions, WatchResponse, WatchStream};
use futures_util::Stream;

use super::{decode, Shared};
use crate::store::{StoreError, WatchBatch, WatchEvent};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The stream behind [`crate::SubnetStore::watch_leases`] for etcd.
pub(super) fn lease_watch(shared: Arc<Shared>) -> impl Stream<Item = WatchBatch> + Send + 'static {
    let state = WatchState {
        shared,
        phase: Phase::NeedSnapshot,
        backoff: BACKOFF_START,
        in_outage: false,
        cluster: None,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let batch = state.next_batch().await;
        Some((batch, state))
    })
}

enum Phase {
    /// List everything and send a snapshot.
    NeedSnapshot,
    /// Open a watch starting at `next_rev`.
    Resume { next_rev: i64 },
    /// Reading a watch opened at (or advanced to) `next_rev`.
    Streaming {
        stream: Box<WatchStream>,
        next_rev: i64,
    },
}

struct WatchState {
    shared: Arc<Shared>,
    phase: Phase,
    backoff: Duration,
    /// A failure was logged and no success has been seen since.
    in_outage: bool,
    /// etcd's cluster ID, from the first watch response.
    cluster: Option<u64>,
}

/// What went wrong with a watch response.
enum Trouble {
    /// The revision we asked for was compacted: re-list.
    Compacted(String),
    /// etcd lost its data (the reason): re-list.
    DataLost(String),
    /// Anything else: back off and resume.
    Failed(String),
}

impl WatchState {
    /// Run the state machine until it has a batch to deliver.
    async fn next_batch(&mut self) -> WatchBatch {
        loop {
            match std::mem::replace(&mut self.phase, Phase::NeedSnapshot) {
                Phase::NeedSnapshot => match self.shared.list().await {
                    Ok((leases, revision)) => {
                        self.recovered();
                        self.phase = Phase::Resume {
                            next_rev: revision + 1,
                        };
                        return WatchBatch::Snapshot { leases, revision };
                    }
                    Err(e) => {
                        self.failed(&format!("listing leases: {e}"));
                        self.phase = Phase::NeedSnapshot;
                        self.sleep().await;
                    }
                },
                Phase::Resume { next_rev } => match self.open(next_rev).await {
                    Ok(stream) => {
                        self.phase = Phase::Streaming {
                            stream: Box::new(stream),
                            next_rev,
                        }
                    }
                    Err(Trouble::Compacted(msg)) => self.compacted(next_rev, &msg),
                    Err(Trouble::DataLost(msg)) => self.data_lost(&msg),
                    Err(Trouble::Failed(msg)) => {
                        self.failed(&msg);
                        self.phase = Phase::Resume { next_rev };
                        self.sleep().await;
                    }
                },
                Phase::Streaming {
                    mut stream,
                    next_rev,
                } => match self.read(&mut stream, next_rev).await {
                    Ok((batch, next_rev)) => {
                        self.phase = Phase::Streaming { stream, next_rev };
                        if let Some(batch) = batch {
                            return batch;
                        }
                    }
                    Err(Trouble::Compacted(msg)) => self.compacted(next_rev, &msg),
                    Err(Trouble::DataLost(msg)) => self.data_lost(&msg),
                    Err(Trouble::Failed(msg)) => {
                        self.failed(&msg);
                        self.phase = Phase::Resume { next_rev };
                        self.sleep().await;
                    }
                },
            }
        }
    }

    /// Open a prefix watch on `<prefix>/subnets/` from `next_rev`.
    async fn open(&self, next_rev: i64) -> Result<WatchStream, Trouble> {
        let dir = self.shared.subnets_dir.clone();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(next_rev);
        self.shared
            .run("watch leases", |mut client| {
                let (dir, options) = (dir.clone(), options.clone());
                async move { client.watch(dir, Some(options)).await }
            })
            .await
            .map_err(|e| store_trouble(&e))
    }

    /// Read one watch response. Returns the batch to deliver (if any) and the new resume
    /// revision.
    async fn read(
        &mut self,
        stream: &mut WatchStream,
        next_rev: i64,
    ) -> Result<(Option<WatchBatch>, i64), Trouble> {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Err(Trouble::Failed("etcd closed the watch stream".into())),
            Err(e) => {
                let msg = decode::error_text(&e);
                return Err(if decode::is_compacted(&msg) {
                    Trouble::Compacted(msg)
                } else {
                    Trouble::Failed(msg)
                });
            }
        };
        if resp.compact_revision() != 0
            || (resp.canceled() && decode::is_compacted(resp.cancel_reason()))
        {
            return Err(Trouble::Compacted(format!(
                "compacted at revision {} ({})",
                resp.compact_revision(),
                resp.cancel_reason()
            )));
        }
        if let Some(header) = resp.header() {
            if let Some(reason) = decode::data_lost(
                self.cluster,
                header.cluster_id(),
                next_rev - 1,
                header.revision(),
            ) {
                self.cluster = Some(header.cluster_id());
                return Err(Trouble::DataLost(reason));
            }
            self.cluster = Some(header.cluster_id());
        }
        if resp.canceled() {
            return Err(Trouble::Failed(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            )));
        }
        // The watch works (the first response is the `created` one).
        self.recovered();
        if resp.events().is_empty() {
            return Ok((None, next_rev));
        }
        self.events(&resp, next_rev).await
    }

    /// Turn a response with events into a batch. A failed TTL lookup fails the whole response
    /// (it is read again after resuming), so nothing is skipped silently.
    async fn events(
        &self,
        resp: &WatchResponse,
        next_rev: i64,
    ) -> Result<(Option<WatchBatch>, i64), Trouble> {
        let put_leases = resp
            .events()
            .iter()
            .filter(|ev| ev.event_type() == EventType::Put)
            .filter_map(|ev| ev.kv().map(|kv| kv.lease()))
            .collect();
        let ttls = self
            .shared
            .ttls("watch leases (lease TTLs)", put_leases)
            .await
            .map_err(|e| Trouble::Failed(e.to_string()))?;
        let now = SystemTime::now();
        let prefix = &self.shared.prefix;
        let mut events = Vec::with_capacity(resp.events().len());
        let mut last_rev = next_rev - 1;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            last_rev = last_rev.max(kv.mod_revision());
            match ev.event_type() {
                EventType::Put => {
                    let ttl = ttls.get(&kv.lease()).copied();
                    match decode::stored_lease(
                        prefix,
                        kv.key(),
                        kv.value(),
                        kv.lease(),
                        kv.mod_revision(),
                        ttl,
                        now,
                    ) {
                        Ok(lease) => events.push(WatchEvent::Put(lease)),
                        Err(e) => tracing::warn!("Ignoring bad subnet node: {e}"),
                    }
                }
                EventType::Delete => match decode::subnet_key(prefix, kv.key()) {
                    Ok(key) => events.push(WatchEvent::Delete(key)),
                    Err(e) => tracing::warn!("Ignoring deletion of bad subnet node: {e}"),
                },
            }
        }
        let batch = (!events.is_empty()).then_some(WatchBatch::Events {
            events,
            revision: last_rev,
        });
        Ok((batch, last_rev + 1))
    }

    fn compacted(&mut self, next_rev: i64, msg: &str) {
        tracing::warn!(
            "etcd watch of {} fell behind compaction (wanted revision {next_rev}: {msg}), re-listing",
            self.shared.subnets_dir
        );
        self.phase = Phase::NeedSnapshot;
    }

    fn data_lost(&mut self, reason: &str) {
        tracing::warn!(
            "etcd lost its data ({reason}; etcd endpoints {}): listing {} again",
            self.shared.endpoints_label,
            self.shared.subnets_dir
        );
        self.recovered();
        self.phase = Phase::NeedSnapshot;
    }

    /// Log a failure: a warning for the first one of an outage, debug for the rest.
    fn failed(&mut self, msg: &str) {
        if self.in_outage {
            tracing::debug!(
                "etcd watch of {} still failing: {msg}",
                self.shared.subnets_dir
            );
        } else {
            tracing::warn!(
                "etcd watch of {} failed ({msg}); retrying with backoff (etcd endpoints {})",
                self.shared.subnets_dir,
                self.shared.endpoints_label
            );
            self.in_outage = true;
        }
    }

    fn recovered(&mut self) {
        if self.in_outage {
            tracing::info!("etcd watch of {} resumed", self.shared.subnets_dir);
            self.in_outage = false;
        }
        self.backoff = BACKOFF_START;
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

fn store_trouble(err: &StoreError) -> Trouble {
    let msg = err.to_string();
    if decode::is_compacted(&msg) {
        Trouble::Compacted(msg)
    } else {
        Trouble::Failed(msg)
    }
}
