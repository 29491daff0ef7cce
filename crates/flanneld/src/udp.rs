//! The udp backend's runtime side: opening `flannel0` and the UDP socket, running the proxy,
//! and feeding it peer changes. The per-packet decisions live in `flannel_udp`.

use std::time::Duration;

use anyhow::{Context, Result};
use flannel_model::Lease;
use flannel_planner::ext_iface::ExtIface;
use flannel_registry::PeerEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::runtime::{BackendRuntime, Stopped};

/// The datapath, ready to run.
pub struct UdpBackend {
    datapath: Datapath,
    peers: PeerFeed,
}

enum Datapath {
    /// One packet per system call (`--udp-fast-path=false`, or the fast path failed to open).
    Simple(flannel_udp::Proxy),
    /// Batched, offloaded, one worker thread per queue (both directions).
    Fast(
        flannel_udp::FastPath,
        watch::Receiver<flannel_udp::PeerTable>,
    ),
}

/// Where lease events go once the proxy runs.
pub struct PeerFeed {
    table: watch::Sender<flannel_udp::PeerTable>,
    port: u16,
}

impl UdpBackend {
    /// Opens `flannel0` with our subnet's address and binds `<iface addr>:<port>`; with
    /// `fast_path`, as the multi-queue offloaded fast path (falling back to the simple proxy
    /// if even its most basic form cannot be opened).
    pub async fn open(ext: &ExtIface, port: u16, lease: &Lease, fast_path: bool) -> Result<Self> {
        let local = lease.subnet.ipv4.trunc();
        let tun_addr = local.network();
        let mtu = flannel_udp::device::tun_mtu(ext.mtu)?;
        let bind = std::net::SocketAddrV4::new(ext.addr, port);
        let (table, rx) = watch::channel(flannel_udp::PeerTable::new());
        let fast = if fast_path {
            let queues = flannel_udp::fastpath::default_queues();
            match flannel_udp::FastPath::open(flannel_udp::TUN_NAME, local, mtu, bind, queues) {
                Ok(f) => {
                    info!("udp fast path: {}", f.features());
                    Some(f)
                }
                Err(e) => {
                    warn!(error = %e, "udp fast path unavailable, using the simple proxy");
                    None
                }
            }
        } else {
            info!("udp fast path: off (--udp-fast-path=false), one packet per system call");
            None
        };
        let datapath = match fast {
            Some(f) => Datapath::Fast(f, rx),
            None => {
                let tun = flannel_udp::device::open_tun(flannel_udp::TUN_NAME, tun_addr, mtu)?;
                let sock = flannel_udp::device::bind_udp(bind).await?;
                Datapath::Simple(flannel_udp::Proxy::new(tun, sock, local, rx))
            }
        };
        info!(
            dev = flannel_udp::TUN_NAME,
            addr = %tun_addr,
            mtu,
            listen = %bind,
            "udp backend: TUN device open"
        );
        Ok(UdpBackend {
            datapath,
            peers: PeerFeed { table, port },
        })
    }

    /// Start forwarding until `cancel` fires; returns the peer feed and the task (which ends
    /// with the counters, after closing the TUN). Drops are reported every
    /// [`DROP_REPORT_INTERVAL`] while it runs.
    pub fn spawn(
        self,
        stats: flannel_udp::Stats,
        cancel: CancellationToken,
    ) -> (PeerFeed, JoinHandle<flannel_udp::ProxyCounters>) {
        tokio::spawn(report_drops(stats.clone(), cancel.clone()));
        let task = match self.datapath {
            Datapath::Simple(p) => tokio::spawn(p.run(stats, cancel)),
            Datapath::Fast(f, rx) => tokio::spawn(f.run(rx, stats, cancel)),
        };
        (self.peers, task)
    }
}

/// The udp backend as a [`BackendRuntime`]: opened before the datapath's first pass,
/// forwarding from `start` on.
pub struct UdpRuntime {
    state: RuntimeState,
    /// The datapath's live counters (also exported as metrics).
    stats: flannel_udp::Stats,
}

enum RuntimeState {
    Opened(UdpBackend),
    Running(PeerFeed, JoinHandle<flannel_udp::ProxyCounters>),
    Gone,
}

impl UdpRuntime {
    /// See [`UdpBackend::open`].
    pub async fn open(ext: &ExtIface, port: u16, lease: &Lease, fast_path: bool) -> Result<Self> {
        Ok(UdpRuntime {
            state: RuntimeState::Opened(UdpBackend::open(ext, port, lease, fast_path).await?),
            stats: flannel_udp::Stats::new(),
        })
    }
}

impl BackendRuntime for UdpRuntime {
    fn start(&mut self, cancel: CancellationToken) {
        if let RuntimeState::Opened(udp) = std::mem::replace(&mut self.state, RuntimeState::Gone) {
            let (feed, task) = udp.spawn(self.stats.clone(), cancel);
            self.state = RuntimeState::Running(feed, task);
        }
    }

    fn datapath_stats(&self) -> Option<flannel_udp::Stats> {
        Some(self.stats.clone())
    }

    fn peers_changed(&mut self, events: &[PeerEvent]) {
        if let RuntimeState::Running(feed, _) = &self.state {
            feed.apply(events);
        }
    }

    fn subnet_changed(&mut self, lease: &Lease) {
        warn!(
            subnet = %lease.subnet,
            "the subnet changed: flannel0 keeps the old address until flanneld restarts"
        );
    }

    fn stop(self: Box<Self>) -> Stopped {
        Box::pin(async move {
            let RuntimeState::Running(_, task) = self.state else {
                return Ok(());
            };
            let c = task.await.context("udp proxy task")?;
            info!(
                forwarded = c.outbound.forwarded,
                delivered = c.inbound.delivered,
                unreachable_replies = c.outbound.unreachable_replies,
                dropped_out = c.outbound.dropped(),
                dropped_in = c.inbound.dropped(),
                io_errors = c.io_errors,
                "udp proxy stopped; {} closed",
                flannel_udp::TUN_NAME
            );
            Ok(())
        })
    }
}

/// How often dropped packets are reported (one line per interval with drops, none without).
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Log, once per interval, the drop reasons that grew: a datagram from a host that holds no
/// lease, a spoofed inner source, a packet to an address no lease covers, ... An operator sees
/// them while flanneld runs, not only in its last words.
async fn report_drops(stats: flannel_udp::Stats, cancel: CancellationToken) {
    let mut before = stats.snapshot();
    let mut tick = tokio::time::interval(DROP_REPORT_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = stats.snapshot();
        let forwarded = now
            .outbound
            .forwarded
            .wrapping_sub(before.outbound.forwarded);
        let delivered = now.inbound.delivered.wrapping_sub(before.inbound.delivered);
        match flannel_udp::drop_report(&before, &now) {
            Some(drops) => warn!(
                forwarded,
                delivered,
                "udp: dropped packets in the last {} s: {drops}",
                DROP_REPORT_INTERVAL.as_secs()
            ),
            None => debug!(forwarded, delivered, "udp: no packets dropped"),
        }
        before = now;
    }
}

impl PeerFeed {
    /// Apply lease events to the proxy's peer table (not filtered by backend type, as in
    /// Flannel).
    pub fn apply(&self, events: &[PeerEvent]) {
        let port = self.port;
        self.table.send_modify(|t| {
            for e in events {
                match e {
                    PeerEvent::Added(l) => {
                        if t.apply_lease(l, port) {
                            info!(subnet = %l.subnet, public_ip = %l.attrs.public_ip, "udp: subnet added");
                        } else {
                            warn!(subnet = %l.subnet, "udp: ignoring a lease without a public IP");
                        }
                    }
                    PeerEvent::Removed(l) => {
                        t.remove(l.subnet.ipv4);
                        info!(subnet = %l.subnet, "udp: subnet removed");
                    }
                }
            }
        });
    }
}
