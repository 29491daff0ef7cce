//! The udp backend's runtime side: opening `flannel0` and the UDP socket, running the proxy,
//! and feeding it peer changes. The per-packet decisions live in `flannel_udp`.

use anyhow::Result;
use flannel_model::Lease;
use flannel_planner::vxlan::ExtIface;
use flannel_registry::PeerEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The proxy, ready to run.
pub struct UdpBackend {
    proxy: flannel_udp::Proxy,
    peers: PeerFeed,
}

/// Where lease events go once the proxy runs.
pub struct PeerFeed {
    table: watch::Sender<flannel_udp::PeerTable>,
    port: u16,
}

impl UdpBackend {
    /// Opens `flannel0` with our subnet's address and binds `<iface addr>:<port>`.
    pub async fn open(ext: &ExtIface, port: u16, lease: &Lease) -> Result<Self> {
        let tun_addr = lease.subnet.ipv4.network();
        let mtu = flannel_udp::device::tun_mtu(ext.mtu)?;
        let tun = flannel_udp::device::open_tun(flannel_udp::TUN_NAME, tun_addr, mtu)?;
        let sock =
            flannel_udp::device::bind_udp(std::net::SocketAddrV4::new(ext.addr, port)).await?;
        info!(
            dev = flannel_udp::TUN_NAME,
            addr = %tun_addr,
            mtu,
            listen = %format!("{}:{port}", ext.addr),
            "udp backend: TUN device open"
        );
        let (table, rx) = watch::channel(flannel_udp::PeerTable::new());
        Ok(UdpBackend {
            proxy: flannel_udp::Proxy::new(tun, sock, tun_addr, rx),
            peers: PeerFeed { table, port },
        })
    }

    /// Start forwarding until `cancel` fires; returns the peer feed and the task (which ends
    /// with the counters, after closing the TUN).
    pub fn spawn(
        self,
        cancel: CancellationToken,
    ) -> (PeerFeed, JoinHandle<flannel_udp::ProxyCounters>) {
        (self.peers, tokio::spawn(self.proxy.run(cancel)))
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
