//! The udp backend's datapath: one packet per system call, in two tokio tasks.
//!
//! - TUN → [`outbound`] → `send_to` the peer (or write the ICMP net-unreachable back to the
//!   TUN device);
//! - UDP → [`inbound`] → write to the TUN device.
//!
//! The peer table is published through a [`watch`] channel; each packet borrows the current
//! table for the length of one decision (never across an `await`). [`Proxy::run`] returns when
//! cancelled, dropping the device (which makes `flannel0` disappear, as Flannel's does).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use tun_rs::AsyncDevice;

use crate::decide::{inbound, outbound, Counters, Inbound, Outbound};
use crate::route::PeerTable;
use crate::stats::{ProxyCounters, Slot, Stats};

/// Receive buffer size: any IPv4 packet fits, so nothing is cut short.
const BUF_LEN: usize = 65_536;

/// Pause after a failed read, so a persistent error does not spin a core.
const READ_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The running datapath's parts.
pub struct Proxy {
    tun: Arc<AsyncDevice>,
    sock: Arc<UdpSocket>,
    local: Ipv4Net,
    peers: watch::Receiver<PeerTable>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local", &self.local)
            .field("sock", &self.sock)
            .field("peers", &self.peers.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy between `tun` (whose address is the network address of our lease `local`) and
    /// `sock`, forwarding to the peers published on `peers`.
    pub fn new(
        tun: AsyncDevice,
        sock: UdpSocket,
        local: Ipv4Net,
        peers: watch::Receiver<PeerTable>,
    ) -> Proxy {
        Proxy {
            tun: Arc::new(tun),
            sock: Arc::new(sock),
            local,
            peers,
        }
    }

    /// Forwards packets both ways until `cancel` fires, then closes the device and the socket.
    /// The running totals are published to `stats` after every packet.
    pub async fn run(self, stats: Stats, cancel: CancellationToken) -> ProxyCounters {
        let out = tokio::spawn(tun_to_udp(
            Arc::clone(&self.tun),
            Arc::clone(&self.sock),
            self.peers.clone(),
            stats.slot(),
            cancel.clone(),
        ));
        let inb = tokio::spawn(udp_to_tun(
            Arc::clone(&self.tun),
            Arc::clone(&self.sock),
            self.local,
            self.peers.clone(),
            stats.slot(),
            cancel.clone(),
        ));
        let mut total = ProxyCounters::default();
        match out.await {
            Ok((c, e)) => {
                total.outbound = c;
                total.io_errors = total.io_errors.wrapping_add(e);
            }
            Err(e) => warn!(error = %e, "udp proxy: the TUN reader task failed"),
        }
        match inb.await {
            Ok((c, e)) => {
                total.inbound = c;
                total.io_errors = total.io_errors.wrapping_add(e);
            }
            Err(e) => warn!(error = %e, "udp proxy: the UDP reader task failed"),
        }
        total
    }
}

async fn read_failed(what: &str, e: io::Error) {
    warn!(error = %e, "udp proxy: reading from the {what} failed");
    tokio::time::sleep(READ_ERROR_PAUSE).await;
}

/// TUN → UDP. Returns the counters and the number of failed writes.
async fn tun_to_udp(
    tun: Arc<AsyncDevice>,
    sock: Arc<UdpSocket>,
    peers: watch::Receiver<PeerTable>,
    slot: Slot,
    cancel: CancellationToken,
) -> (Counters, u64) {
    let mut buf = vec![0u8; BUF_LEN];
    let mut counters = Counters::default();
    let mut io_errors = 0u64;
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tun.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    read_failed("TUN device", e).await;
                    continue;
                }
            },
        };
        let pkt = &mut buf[..n];
        let decision = {
            let table = peers.borrow();
            outbound(pkt, &table)
        };
        counters.record_outbound(&decision);
        let result = match decision {
            Outbound::SendTo { to, len } => sock.send_to(&pkt[..len], to).await.map(drop),
            Outbound::Reply(icmp) => tun.send(icmp.as_bytes()).await.map(drop),
            Outbound::Drop(reason) => {
                debug!(?reason, "udp proxy: dropped an outbound packet");
                Ok(())
            }
        };
        if let Err(e) = result {
            io_errors = io_errors.wrapping_add(1);
            debug!(error = %e, "udp proxy: sending an outbound packet failed");
        }
        slot.publish(ProxyCounters {
            outbound: counters,
            io_errors,
            ..ProxyCounters::default()
        });
    }
    (counters, io_errors)
}

/// UDP → TUN. Returns the counters and the number of failed writes.
async fn udp_to_tun(
    tun: Arc<AsyncDevice>,
    sock: Arc<UdpSocket>,
    local: Ipv4Net,
    peers: watch::Receiver<PeerTable>,
    slot: Slot,
    cancel: CancellationToken,
) -> (Counters, u64) {
    let mut buf = vec![0u8; BUF_LEN];
    let mut counters = Counters::default();
    let mut io_errors = 0u64;
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    read_failed("UDP socket", e).await;
                    continue;
                }
            },
        };
        let SocketAddr::V4(from) = from else {
            continue;
        };
        let pkt = &mut buf[..n];
        let decision = {
            let table = peers.borrow();
            inbound(pkt, from, &table, local)
        };
        counters.record_inbound(&decision);
        match decision {
            Inbound::Deliver { len } => {
                if let Err(e) = tun.send(&pkt[..len]).await {
                    io_errors = io_errors.wrapping_add(1);
                    debug!(error = %e, "udp proxy: writing to the TUN device failed");
                }
            }
            Inbound::Drop(reason) => {
                debug!(?reason, %from, "udp proxy: dropped an inbound datagram");
            }
        }
        slot.publish(ProxyCounters {
            inbound: counters,
            io_errors,
            ..ProxyCounters::default()
        });
    }
    (counters, io_errors)
}

/// The local UDP address the proxy binds: the external interface address and the port.
pub fn bind_addr(iface_addr: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(iface_addr, port)
}
