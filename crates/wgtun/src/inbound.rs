//! UDP → decrypt → TUN: one worker per UDP socket (`SO_REUSEPORT`: the kernel spreads the
//! peers' flows over the sockets).
//!
//! A batch is one `recvmmsg` with UDP GRO (runs of equal-size datagrams arrive as one buffer,
//! cut again at the stride the kernel reports). Each datagram is matched to its peer by
//! session index (a handshake initiation by the sender's static key) and opened by that
//! peer's `Tunn` into the batch's plaintext arena, one after another; a packet whose source
//! lies outside that peer's allowed IPs is dropped there (WireGuard's cryptokey routing).
//! The plaintexts then go to the TUN device as the udp backend delivers its own:
//! [`flannel_udp::coalesce::Coalescer`] groups the TCP segments the kernel's GRO would merge
//! and [`flannel_udp::sgio::write_group`] writes each group as one super-packet (`writev`
//! with iovecs into the arena: no copy); everything else goes alone behind an empty virtio
//! header. Without offload each packet is one write.
//!
//! Handshake messages and cookie replies are answered at once (boringtun's
//! `WriteToNetwork`), followed by the packets it had queued for the new session.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use flannel_model::WgKey;
use flannel_udp::coalesce::Coalescer;
use flannel_udp::sgio::write_group;
use nix::poll::PollFlags;
use quinn_udp::{RecvMeta, UdpSockRef};
use tracing::{debug, warn};
use tun_rs::SyncDevice;

use crate::device::{lock, read};
use crate::peers::{Peer, PeerTable};
use crate::queues::{Sock, Stop, Wake};

/// UDP receive buffers per `recvmmsg`, each large enough for a GRO super-datagram.
const RX_BUFS: usize = 16;
const RX_BUF_LEN: usize = 65_536;

/// Room for one handshake answer or queued packet.
const REPLY_BUF: usize = 65_535 + 64;

/// Pause after an unexpected I/O error, so a persistent one does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// One queue's UDP → TUN worker.
pub(crate) struct Inbound {
    /// Device name (logs).
    pub name: String,
    /// Its TUN queue.
    pub tun: Arc<SyncDevice>,
    /// Its UDP socket.
    pub sock: Arc<Sock>,
    /// The peers.
    pub table: Arc<RwLock<PeerTable>>,
    /// The stop signal.
    pub stop: Arc<Stop>,
    /// Writes start with a virtio header (and may be coalesced).
    pub offload: bool,
}

impl Inbound {
    /// Moves packets until the stop fires.
    pub fn run(self) {
        let mut bufs: Vec<Vec<u8>> = (0..RX_BUFS).map(|_| vec![0u8; RX_BUF_LEN]).collect();
        let mut metas = vec![RecvMeta::default(); RX_BUFS];
        // Every plaintext is shorter than its datagram: the receive buffers' total suffices.
        let mut arena = vec![0u8; RX_BUFS * RX_BUF_LEN];
        let mut reply = vec![0u8; REPLY_BUF];
        let mut plain: Vec<(usize, usize)> = Vec::with_capacity(RX_BUFS * 64);
        let mut coalescer = Coalescer::new();
        let mut warned = false;
        while !self.stop.stopped() {
            let r = {
                let mut iovs: Vec<IoSliceMut<'_>> =
                    bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                self.sock
                    .state
                    .recv(UdpSockRef::from(&self.sock.sock), &mut iovs, &mut metas)
            };
            let m = match r {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.stop.wait(self.sock.sock.as_fd(), PollFlags::POLLIN) == Wake::Stop {
                        break;
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if !warned {
                        warn!(dev = %self.name, error = %e, "wireguard (userspace): receiving failed");
                        warned = true;
                    }
                    std::thread::sleep(ERROR_PAUSE);
                    continue;
                }
            };
            plain.clear();
            let mut used = 0usize;
            {
                let table = read(&self.table);
                let mut last: Option<(Arc<Peer>, SocketAddr)> = None;
                for (buf, meta) in bufs.iter().zip(&metas).take(m) {
                    let from = canonical(meta.addr);
                    let len = meta.len.min(buf.len());
                    let stride = if meta.stride == 0 { len } else { meta.stride };
                    for dgram in buf[..len].chunks(stride.max(1)) {
                        let Some(peer) = peer_of(&table, dgram) else {
                            continue;
                        };
                        let out = &mut arena[used..used + dgram.len()];
                        let res = lock(&peer.tunn).decapsulate(Some(from.ip()), dgram, out);
                        let authentic = matches!(
                            res,
                            TunnResult::WriteToTunnelV4(..)
                                | TunnResult::WriteToTunnelV6(..)
                                | TunnResult::WriteToNetwork(_)
                        );
                        // Only an authentic message moves the peer's endpoint (roaming).
                        if authentic
                            && !matches!(&last, Some((p, f)) if Arc::ptr_eq(p, &peer) && *f == from)
                        {
                            remember(&peer, from);
                            last = Some((Arc::clone(&peer), from));
                        }
                        match res {
                            TunnResult::WriteToTunnelV4(p, src) => {
                                let n = p.len();
                                if peer.allows(IpAddr::V4(src)) {
                                    plain.push((used, n));
                                    used += n;
                                }
                            }
                            TunnResult::WriteToTunnelV6(p, src) => {
                                let n = p.len();
                                if peer.allows(IpAddr::V6(src)) {
                                    plain.push((used, n));
                                    used += n;
                                }
                            }
                            TunnResult::WriteToNetwork(answer) => {
                                let n = answer.len();
                                reply[..n].copy_from_slice(answer);
                                self.answer(&peer, from, &reply[..n], &mut arena[used..]);
                            }
                            TunnResult::Done => {}
                            TunnResult::Err(e) => {
                                debug!(dev = %self.name, %from, error = ?e, "wireguard (userspace): decrypting");
                            }
                        }
                    }
                }
            }
            self.deliver(&arena, &plain, &mut coalescer);
        }
    }

    /// Sends a handshake answer, then whatever boringtun queued for the new session.
    fn answer(&self, peer: &Peer, to: SocketAddr, first: &[u8], scratch: &mut [u8]) {
        self.send_one(to, first);
        // boringtun hands out what it queued one call at a time.
        for _ in 0..1024 {
            match lock(&peer.tunn).decapsulate(None, &[], scratch) {
                TunnResult::WriteToNetwork(b) => self.send_one(to, b),
                _ => break,
            }
        }
    }

    fn send_one(&self, to: SocketAddr, bytes: &[u8]) {
        if let Err(e) = self.sock.sock.send_to(bytes, self.sock.dest(to)) {
            debug!(dev = %self.name, %to, error = %e, "wireguard (userspace): sending failed");
        }
    }

    /// Writes the batch's plaintexts to the TUN device.
    fn deliver(&self, arena: &[u8], plain: &[(usize, usize)], coalescer: &mut Coalescer) {
        if plain.is_empty() {
            return;
        }
        let views: Vec<&[u8]> = plain.iter().map(|&(at, n)| &arena[at..at + n]).collect();
        if !self.offload {
            for p in &views {
                if let Err(e) = self.tun.send(p) {
                    debug!(dev = %self.name, error = %e, "wireguard (userspace): writing to the TUN device failed");
                }
            }
            return;
        }
        coalescer.coalesce(&views);
        for g in coalescer.groups() {
            if let Err(e) = write_group(&self.tun, g, coalescer.packets(g), &views) {
                debug!(dev = %self.name, error = %e, "wireguard (userspace): writing to the TUN device failed");
            }
        }
    }
}

/// An address as the peer table knows it (a v4-mapped address of an IPv6 socket as IPv4).
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The peer a datagram belongs to.
pub(crate) fn peer_of(t: &PeerTable, dgram: &[u8]) -> Option<Arc<Peer>> {
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

/// Where the peer's packets go from now on (it may have roamed).
fn remember(peer: &Peer, from: SocketAddr) {
    let mut e = lock(&peer.endpoint);
    if *e != Some(from) {
        *e = Some(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v4_mapped_sender_is_known_by_its_ipv4_address() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:51820".parse().expect("addr");
        assert_eq!(
            canonical(mapped),
            "192.0.2.7:51820".parse::<SocketAddr>().expect("addr")
        );
        let v6: SocketAddr = "[2001:db8::7]:51821".parse().expect("addr");
        assert_eq!(canonical(v6), v6);
    }
}
