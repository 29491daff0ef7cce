//! Opening the device's I/O with the udp backend's engine (`flannel_udp::queues`): a
//! multi-queue TUN device with `IFF_VNET_HDR` offloads and one UDP socket per queue; here the
//! device may carry an IPv6 address and the sockets may be IPv6. Each feature is dropped if
//! the kernel refuses it: offload, then multi-queue (one queue), then `SO_REUSEPORT` (one
//! socket). [`Features`] says what is in use.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use flannel_udp::queues::{self, TunSpec};
pub use flannel_udp::queues::{default_queues, Sock, Stop, Wake};
use tun_rs::SyncDevice;

use crate::device::DeviceError;

/// The datapath's name in the engine's log lines.
pub const LABEL: &str = "wireguard (userspace)";

/// What the device runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// TUN queues = UDP sockets = worker pairs.
    pub queues: usize,
    /// `IFF_VNET_HDR` with TSO4/TSO6/CSUM.
    pub tun_offload: bool,
    /// Most datagrams per UDP send (1: no UDP GSO).
    pub udp_gso_segments: usize,
    /// UDP GRO on receive.
    pub udp_gro: bool,
}

impl std::fmt::Display for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "queues={} tun_offload={} udp_gso={} udp_gro={}",
            self.queues,
            on(self.tun_offload),
            on(self.udp_gso_segments > 1),
            on(self.udp_gro)
        )
    }
}

/// Opens TUN device `name` with up to `want` queues (non-blocking); returns them and whether
/// offload is on.
pub fn open_tun(
    name: &str,
    mtu: u16,
    addr4: Option<Ipv4Addr>,
    addr6: Option<Ipv6Addr>,
    want: usize,
) -> Result<(Vec<SyncDevice>, bool), DeviceError> {
    let spec = TunSpec {
        name,
        mtu,
        addr4,
        addr6,
    };
    let tun = queues::open_tun(&spec, want, LABEL).map_err(|cause| DeviceError::Tun {
        name: name.to_owned(),
        cause,
    })?;
    Ok((tun.queues, tun.tso))
}

/// Binds up to `want` sockets on `addr` (`SO_REUSEPORT` when more than one).
pub fn bind_sockets(addr: SocketAddr, want: usize) -> Result<Vec<Sock>, DeviceError> {
    queues::bind_sockets(addr, want, LABEL).map_err(|cause| DeviceError::Bind { addr, cause })
}
