//! A userspace WireGuard device: a TUN device of the backend's name, a UDP socket on its
//! listen port, and the tasks between them. Outgoing: a packet read from the TUN device goes
//! to the peer whose allowed IPs hold its destination, encrypted (boringtun queues it and
//! starts a handshake when there is no session yet). Incoming: a datagram is matched to its
//! peer by session index (or, for a handshake initiation, by the sender's static key), and a
//! decrypted packet reaches the TUN device only when its source lies in that peer's allowed
//! IPs. The timers (rekey, keepalive, retransmits) run every 100 ms.
//!
//! The workers run on the tokio runtime's threads: each direction is its own task, and
//! `readers` tasks per direction share the device and socket, so encryption and decryption
//! spread over the cores.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use flannel_model::WgKey;
use flannel_planner::wireguard::{DeviceConfig, DeviceOp};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use tun_rs::{AsyncDevice, DeviceBuilder};

use crate::peers::{Peer, PeerTable};

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
    tun: Arc<AsyncDevice>,
    sock: Arc<UdpSocket>,
    table: Arc<RwLock<PeerTable>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("name", &self.name).finish()
    }
}

impl Device {
    /// Open TUN device `name` (up, `mtu`, with `addr4/32` and/or `addr6/128`) and bind UDP
    /// `port` on every address of the family (`v6_socket`: `[::]`, else `0.0.0.0`), as the
    /// kernel's device does. Must run inside a tokio runtime.
    pub async fn open(
        name: &str,
        mtu: u16,
        addr4: Option<Ipv4Addr>,
        addr6: Option<Ipv6Addr>,
        port: u16,
        v6_socket: bool,
        private_key: [u8; 32],
    ) -> Result<Device, DeviceError> {
        let mut b = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .packet_information(false);
        if let Some(a) = addr4 {
            b = b.ipv4(a, 32u8, None);
        }
        if let Some(a) = addr6 {
            b = b.ipv6(a, 128u8);
        }
        let tun = b
            .enable(true)
            .build_async()
            .map_err(|cause| DeviceError::Tun {
                name: name.to_owned(),
                cause,
            })?;
        let bind = if v6_socket {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|cause| DeviceError::Bind { addr: bind, cause })?;
        Ok(Device {
            name: name.to_owned(),
            tun: Arc::new(tun),
            sock: Arc::new(sock),
            table: Arc::new(RwLock::new(PeerTable::new(private_key, port))),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
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

    /// Move packets until `cancel` fires: `workers` tasks per direction and the timers.
    pub async fn run(self, workers: usize, cancel: CancellationToken) {
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            tasks.push(tokio::spawn(self.clone().outbound(cancel.clone())));
            tasks.push(tokio::spawn(self.clone().inbound(cancel.clone())));
        }
        tasks.push(tokio::spawn(self.clone().timers(cancel.clone())));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// TUN → encrypt → UDP.
    async fn outbound(self, cancel: CancellationToken) {
        let mut pkt = vec![0u8; BUF];
        let mut out = vec![0u8; BUF];
        loop {
            let n = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.tun.recv(&mut pkt) => match r {
                    Ok(n) => n,
                    Err(e) => { warn!(dev = %self.name, error = %e, "reading the TUN device"); continue; }
                },
            };
            let packet = &pkt[..n];
            let Some(dst) = Tunn::dst_address(packet) else {
                continue;
            };
            let Some(peer) = read(&self.table).route(dst) else {
                continue; // no peer for it: dropped, as the kernel's device drops it
            };
            let len = match lock(&peer).encapsulate(packet, &mut out) {
                TunnResult::WriteToNetwork(b) => b.len(),
                TunnResult::Err(e) => {
                    debug!(dev = %self.name, error = ?e, "encrypting");
                    continue;
                }
                _ => continue, // queued until the handshake completes
            };
            self.send(&peer, &out[..len]).await;
        }
    }

    /// UDP → decrypt → TUN.
    async fn inbound(self, cancel: CancellationToken) {
        let mut dgram = vec![0u8; BUF];
        let mut out = vec![0u8; BUF];
        loop {
            let (n, from) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.sock.recv_from(&mut dgram) => match r {
                    Ok(v) => v,
                    Err(e) => { debug!(dev = %self.name, error = %e, "receiving"); continue; }
                },
            };
            let Some(peer) = self.peer_of(&dgram[..n]) else {
                continue;
            };
            let mut first = true;
            loop {
                let datagram: &[u8] = if first { &dgram[..n] } else { &[] };
                let src = first.then_some(from.ip());
                first = false;
                let action = match lock(&peer).decapsulate(src, datagram, &mut out) {
                    TunnResult::WriteToNetwork(b) => Action::Network(b.len()),
                    TunnResult::WriteToTunnelV4(b, s) => Action::Tunnel(b.len(), IpAddr::V4(s)),
                    TunnResult::WriteToTunnelV6(b, s) => Action::Tunnel(b.len(), IpAddr::V6(s)),
                    TunnResult::Done => Action::Done,
                    TunnResult::Err(e) => {
                        debug!(dev = %self.name, %from, error = ?e, "decrypting");
                        Action::Done
                    }
                };
                match action {
                    Action::Network(len) => {
                        // A handshake answer or a queued packet: then ask again (boringtun
                        // hands out what it queued one call at a time).
                        self.remember(&peer, from);
                        let _ = self.sock.send_to(&out[..len], from).await;
                    }
                    Action::Tunnel(len, src) => {
                        self.remember(&peer, from);
                        if peer.allows(src) && len > 0 {
                            let _ = self.tun.send(&out[..len]).await;
                        }
                        break;
                    }
                    Action::Done => break,
                }
            }
        }
    }

    /// Rekeys, keepalives, handshake retransmits.
    async fn timers(self, cancel: CancellationToken) {
        let mut out = vec![0u8; BUF];
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let peers = read(&self.table).all();
            for peer in peers {
                let len = match lock(&peer).update_timers(&mut out) {
                    TunnResult::WriteToNetwork(b) => b.len(),
                    _ => continue,
                };
                self.send(&peer, &out[..len]).await;
            }
        }
    }

    /// The peer a datagram belongs to.
    fn peer_of(&self, dgram: &[u8]) -> Option<Arc<Peer>> {
        let t = read(&self.table);
        match Tunn::parse_incoming_packet(dgram).ok()? {
            Packet::HandshakeInit(init) => {
                let (private, public) = t.static_keys();
                let half = parse_handshake_anon(private, public, &init).ok()?;
                t.by_key(&WgKey(half.peer_static_public))
            }
            Packet::HandshakeResponse(p) => t.by_session(p.receiver_idx),
            Packet::PacketCookieReply(p) => t.by_session(p.receiver_idx),
            Packet::PacketData(p) => t.by_session(p.receiver_idx),
        }
    }

    fn remember(&self, peer: &Peer, from: SocketAddr) {
        let mut e = match peer.endpoint.lock() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        if *e != Some(from) {
            *e = Some(from);
        }
    }

    async fn send(&self, peer: &Peer, bytes: &[u8]) {
        let to = match peer.endpoint.lock() {
            Ok(e) => *e,
            Err(p) => *p.into_inner(),
        };
        if let Some(to) = to {
            if let Err(e) = self.sock.send_to(bytes, to).await {
                debug!(dev = %self.name, %to, error = %e, "sending");
            }
        }
    }
}

enum Action {
    Network(usize),
    Tunnel(usize, IpAddr),
    Done,
}

fn read(t: &RwLock<PeerTable>) -> std::sync::RwLockReadGuard<'_, PeerTable> {
    match t.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn lock(p: &Peer) -> std::sync::MutexGuard<'_, Tunn> {
    match p.tunn.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}
