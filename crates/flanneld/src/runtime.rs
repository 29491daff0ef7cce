//! Backend runtimes: the userspace part a backend may need next to the kernel state it asks
//! for (`RuntimeSpec`). The daemon prepares whatever the backend names, starts it once
//! flanneld is ready, tells it about peer and subnet changes, and stops it on shutdown; it
//! never asks which backend it runs. `crate::backend::prepare_runtime` makes the runtime a
//! spec names.
//!
//! - `UdpProxy`: the udp backend's TUN device and proxy ([`crate::udp`]).
//! - `Ipsec`: charon, its keys and connections, and the XFRM policies ([`crate::ipsec`]).
//! - `Extension`: the extension backend's commands ([`crate::extension`]); its
//!   `PreStartupCommand` runs before the lease (`crate::backend::lease_data`).
//! - `Wireguard`: the wireguard devices' keys and peers ([`crate::wireguard`]).
//! - `MissResponder`: the vxlan on-demand mode's answers to kernel misses; the datapath loop
//!   runs it, since it shares the loop's kernel connection and peer set.

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;
use flannel_model::Lease;
use flannel_registry::PeerEvent;
use tokio_util::sync::CancellationToken;

/// What [`BackendRuntime::stop`] returns: the end of the runtime, once it has wound down.
pub type Stopped = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A backend's userspace part.
pub trait BackendRuntime: Send {
    /// Start working (flanneld is ready); runs until `cancel` fires.
    fn start(&mut self, cancel: CancellationToken);

    /// Peers changed (every lease event, as the registry reports it).
    fn peers_changed(&mut self, events: &[PeerEvent]);

    /// The first complete lease snapshot has arrived: peers not in it are stale.
    fn synced(&mut self) {}

    /// Our lease was re-acquired with another subnet.
    fn subnet_changed(&mut self, _lease: &Lease) {}

    /// The datapath's live counters, for `/metrics` (the udp backend's).
    fn datapath_stats(&self) -> Option<flannel_udp::Stats> {
        None
    }

    /// Wait until it has ended (after `cancel` fired) and report what it did.
    fn stop(self: Box<Self>) -> Stopped;
}
