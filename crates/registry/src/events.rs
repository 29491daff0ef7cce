//! What a lease manager tells the daemon while it runs ([`ManagerEvent`]), and the one way
//! both managers (etcd: [`crate::manager`], Kubernetes: [`crate::kube::lease`]) turn a watch
//! batch into those events: apply it to the [`PeerTracker`], log the peer changes, send them.

use tokio::sync::mpsc;
use tracing::info;

use flannel_model::{Lease, SubnetKey};

use crate::peers::{OwnEvent, PeerEvent, PeerTracker};
use crate::store::WatchBatch;

/// What the daemon hears from the manager while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerEvent {
    /// Our lease was lost and acquired again (`previous` is the subnet we held before; it
    /// differs from the new one when that subnet was no longer free).
    Reacquired { lease: Lease, previous: SubnetKey },
    /// Peers appeared, changed or left.
    Peers(Vec<PeerEvent>),
    /// Sent once, right after the `Peers` of the first snapshot: the set of peers is now
    /// complete, so a backend may remove entries for hosts that are gone. (Before it, an empty
    /// peer set only means "not read yet".)
    Synced,
}

/// Apply one watch batch to `tracker` and tell the daemon: the peer changes (logged), and
/// `Synced` after the first batch (`what` names it in the log). Returns what changed for our
/// own lease, or `None` once the daemon has stopped listening.
pub(crate) async fn forward_batch(
    tracker: &mut PeerTracker,
    batch: WatchBatch,
    synced: &mut bool,
    events: &mpsc::Sender<ManagerEvent>,
    what: &str,
) -> Option<Vec<OwnEvent>> {
    let changes = tracker.apply(batch);
    if !changes.peers.is_empty() {
        log_peers(&changes.peers);
        events.send(ManagerEvent::Peers(changes.peers)).await.ok()?;
    }
    if !*synced {
        *synced = true;
        info!(peers = tracker.peer_count(), "{what} loaded");
        events.send(ManagerEvent::Synced).await.ok()?;
    }
    Some(changes.own)
}

/// Log each peer change at info level (the lines operators grep for).
pub(crate) fn log_peers(events: &[PeerEvent]) {
    for e in events {
        match e {
            PeerEvent::Added(l) => {
                info!(subnet = %l.subnet, public_ip = %l.attrs.public_ip, backend = %l.attrs.backend_type, "peer added")
            }
            PeerEvent::Removed(l) => {
                info!(subnet = %l.subnet, public_ip = %l.attrs.public_ip, "peer removed")
            }
        }
    }
}
