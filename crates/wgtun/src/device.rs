//! A userspace WireGuard device: a TUN device of the backend's name, UDP sockets on its
//! listen port, and the workers between them. Outgoing: a packet read from the TUN device goes
//! to the peer whose allowed IPs hold its destination, encrypted (boringtun queues it and
//! starts a handshake when there is no session yet). Incoming: a datagram is matched to its
//! peer by session index (or, for a handshake initiation, by the sender's static key), and a
//! decrypted packet reaches the TUN device only when its source lies in that peer's allowed
//! IPs. The timers (rekey, keepalive, retransmits) run every 100 ms.
//!
//! The datapath is the udp backend's engine (`flannel_udp`'s segmenting, grouping,
//! coalescing and scatter-gather writes) with encryption in between: the TUN device is
//! multi-queue with `IFF_VNET_HDR` offloads ([`crate::queues`]), each queue has its own UDP
//! socket (`SO_REUSEPORT`, UDP GSO/GRO) and its own pair of OS threads
//! ([`crate::outbound`], [`crate::inbound`]), so the encryption and decryption of different
//! flows run on different cores.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use boringtun::noise::TunnResult;
use flannel_planner::wireguard::{DeviceConfig, DeviceOp};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tun_rs::SyncDevice;

use crate::inbound::Inbound;
use crate::outbound::Outbound;
use crate::peers::PeerTable;
use crate::queues::{bind_sockets, default_queues, open_tun, Features, Sock, Stop};

/// Room for the largest packet plus WireGuard's overhead.
const BUF: usize = 65_535 + 64;
/// How often boringtun's timers are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Why the device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The TUN device.
    #[error("opening the TUN device {name}: {cause}")]
    Tun {
        /// Its name.
        name: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The UDP socket.
    #[error("binding UDP {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        cause: std::io::Error,
    },
}

/// One userspace WireGuard device.
#[derive(Clone)]
pub struct Device {
    name: String,
    mtu: u16,
    features: Features,
    /// The TUN queues, until [`Device::run`] hands them to its workers.
    queues: Arc<Mutex<Vec<SyncDevice>>>,
    /// One socket per queue; the first also carries the timers' messages.
    socks: Arc<Vec<Arc<Sock>>>,
    table: Arc<RwLock<PeerTable>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Open TUN device `name` (up, `mtu`, with `addr4/32` and/or `addr6/128`; multi-queue
    /// with offloads where the kernel allows) and bind UDP `port` on every address
    /// (`v6_socket`: `[::]`, dual-stack — IPv4 alone where the kernel has no IPv6 —, else
    /// `0.0.0.0`), one socket per queue, as the kernel's device does. Must run inside a tokio
    /// runtime.
    pub async fn open(
        name: &str,
        mtu: u16,
        addr4: Option<Ipv4Addr>,
        addr6: Option<Ipv6Addr>,
        port: u16,
        v6_socket: bool,
        private_key: [u8; 32],
    ) -> Result<Device, DeviceError> {
        let (mut queues, tun_offload) = open_tun(name, mtu, addr4, addr6, default_queues())?;
        let bind = if v6_socket {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
        };
        let mut socks = match bind_sockets(bind, queues.len()) {
            // A kernel without IPv6: the IPv4 socket is all there can be.
            Err(DeviceError::Bind { cause, .. })
                if v6_socket && cause.raw_os_error() == Some(nix::libc::EAFNOSUPPORT) =>
            {
                warn!(
                    dev = name,
                    "wireguard (userspace): no IPv6 in this kernel; listening on IPv4 only"
                );
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                bind_sockets(v4, queues.len())?
            }
            r => r?,
        };
        let n = queues.len().min(socks.len());
        queues.truncate(n);
        socks.truncate(n);
        let features = Features {
            queues: n,
            tun_offload,
            udp_gso_segments: socks
                .iter()
                .map(|s| s.state.max_gso_segments())
                .min()
                .unwrap_or(1),
            udp_gro: socks.iter().all(|s| s.state.gro_segments() > 1),
        };
        info!(dev = name, "wireguard (userspace) fast path: {features}");
        Ok(Device {
            name: name.to_owned(),
            mtu,
            features,
            queues: Arc::new(Mutex::new(queues)),
            socks: Arc::new(socks.into_iter().map(Arc::new).collect()),
            table: Arc::new(RwLock::new(PeerTable::new(private_key, port))),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the datapath runs with.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The configuration, as the planner's diff reads it.
    pub fn config(&self) -> DeviceConfig {
        read(&self.table).config(&self.name)
    }

    /// Apply the planner's ops.
    pub fn apply(&self, ops: &[DeviceOp]) {
        match self.table.write() {
            Ok(mut t) => t.apply(ops),
            Err(p) => p.into_inner().apply(ops),
        }
    }

    /// Move packets until `cancel` fires: per queue (at most `workers` of them) one thread
    /// each way, and the timers. A second call finds the queues taken and only waits.
    pub async fn run(self, workers: usize, cancel: CancellationToken) {
        let queues = std::mem::take(&mut *lock(&self.queues));
        if queues.is_empty() {
            warn!(dev = %self.name, "wireguard (userspace): the device's workers already run");
            cancel.cancelled().await;
            return;
        }
        let stop = match Stop::new(crate::queues::LABEL) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                warn!(dev = %self.name, error = %e, "wireguard (userspace): no stop eventfd; not forwarding");
                cancel.cancelled().await;
                return;
            }
        };
        let mut threads = Vec::new();
        for (i, (tun, sock)) in queues
            .into_iter()
            .zip(self.socks.iter())
            .take(workers.max(1))
            .enumerate()
        {
            let tun = Arc::new(tun);
            let out = Outbound {
                name: self.name.clone(),
                tun: Arc::clone(&tun),
                sock: Arc::clone(sock),
                table: Arc::clone(&self.table),
                stop: Arc::clone(&stop),
                offload: self.features.tun_offload,
                mtu: usize::from(self.mtu),
            };
            let inb = Inbound {
                name: self.name.clone(),
                tun,
                sock: Arc::clone(sock),
                table: Arc::clone(&self.table),
                stop: Arc::clone(&stop),
                offload: self.features.tun_offload,
            };
            for (what, spawned) in [
                (
                    "tx",
                    std::thread::Builder::new()
                        .name(format!("wg-tx{i}"))
                        .spawn(move || out.run()),
                ),
                (
                    "rx",
                    std::thread::Builder::new()
                        .name(format!("wg-rx{i}"))
                        .spawn(move || inb.run()),
                ),
            ] {
                match spawned {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        warn!(dev = %self.name, worker = what, error = %e, "wireguard (userspace): cannot start a worker");
                    }
                }
            }
        }
        self.timers(cancel).await;
        stop.fire();
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    warn!("wireguard (userspace): a worker panicked");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            warn!(error = %e, "wireguard (userspace): joining the workers failed");
        }
    }

    /// Rekeys, keepalives, handshake retransmits, until `cancel` fires.
    async fn timers(&self, cancel: CancellationToken) {
        let mut out = vec![0u8; BUF];
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let peers = read(&self.table).all();
            for peer in peers {
                let len = match lock(&peer.tunn).update_timers(&mut out) {
                    TunnResult::WriteToNetwork(b) => b.len(),
                    _ => continue,
                };
                let to = *lock(&peer.endpoint);
                if let (Some(to), Some(sock)) = (to, self.socks.first()) {
                    if let Err(e) = sock.sock.send_to(&out[..len], sock.dest(to)) {
                        debug!(dev = %self.name, %to, error = %e, "wireguard (userspace): sending failed");
                    }
                }
            }
        }
    }
}

/// The table for reading, whether or not a writer panicked.
pub(crate) fn read(t: &RwLock<PeerTable>) -> RwLockReadGuard<'_, PeerTable> {
    match t.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A mutex's contents, whether or not a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
