//! TUN → encrypt → UDP: one worker per TUN queue.
//!
//! A batch is what the queue holds (up to [`MAX_READS`] reads): each read is one packet, or,
//! with offload, a TCP super-packet of up to 64 KiB, cut into MTU-sized segments in place
//! ([`crate::segments`], complete checksums) or — UDP super-packets, IPv6 — split into slots
//! by the udp backend's copying split. Every inner packet goes to the peer whose allowed IPs
//! hold its destination and is sealed by that peer's `Tunn` straight into the batch's
//! ciphertext arena, one after another. The arena's datagrams are then grouped by
//! [`flannel_udp::batch::Grouper`] into runs of equal-size datagrams to one endpoint, each
//! run one `sendmsg` with UDP GSO (the run lies contiguous in the arena: no copy).
//!
//! Locks: the peer table is read once per batch (the route and endpoint of the batch's last
//! destination are remembered); a peer's `Tunn` mutex is held only while one packet is sealed,
//! so the workers of other queues, and the receive workers, interleave on the same peer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use flannel_udp::batch::{Grouper, Limits};
use flannel_udp::segment::Tso;
use flannel_udp::sgio::{is_tcp4_gso, split_other};
use nix::poll::PollFlags;
use quinn_udp::{Transmit, UdpSockRef};
use tracing::{debug, warn};
use tun_rs::{SyncDevice, VirtioNetHdr, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use crate::device::{lock, read};
use crate::peers::{Peer, PeerTable};
use crate::queues::{Sock, Stop, Wake};
use crate::segments::Segments;

/// Most TUN reads per batch.
pub const MAX_READS: usize = 64;

/// The ciphertext arena of one batch.
const ARENA: usize = 1 << 20;

/// Keep reading while the arena has room for a whole super-packet's datagrams.
const READ_ROOM: usize = 96 << 10;

/// boringtun's overhead per data message (header 16, tag 16) and its smallest output (a
/// handshake initiation).
pub const WG_OVERHEAD: usize = 32;
const MIN_OUT: usize = 148;

/// Pause after an unexpected I/O error, so a persistent one does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The datagrams of one batch: sealed one after another into `arena`.
struct Batch {
    arena: Vec<u8>,
    /// Bytes of `arena` in use.
    used: usize,
    /// `(offset, endpoint, length)` of each datagram, in arena order.
    dgrams: Vec<(usize, SocketAddr, usize)>,
    grouper: Grouper<SocketAddr>,
    staging: Vec<u8>,
    /// The last destination's peer and endpoint (valid for one batch).
    route: Option<(IpAddr, Arc<Peer>, Option<SocketAddr>)>,
}

/// One queue's TUN → UDP worker.
pub(crate) struct Outbound {
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
    /// Reads start with a virtio header.
    pub offload: bool,
    /// The TUN MTU (the slot size of the copying split).
    pub mtu: usize,
}

impl Outbound {
    /// Moves packets until the stop fires.
    pub fn run(self) {
        let slot = self.mtu.max(68);
        let mut raw = vec![0u8; VIRTIO_NET_HDR_LEN + 65_535];
        let mut slots = vec![0u8; IDEAL_BATCH_SIZE * slot];
        let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
        let mut b = Batch {
            arena: vec![0u8; ARENA],
            used: 0,
            dgrams: Vec::with_capacity(1024),
            grouper: Grouper::new(),
            staging: Vec::new(),
            route: None,
        };
        let mut warned = false;
        while !self.stop.stopped() {
            let mut idle = false;
            let mut reads = 0;
            b.route = None;
            while reads < MAX_READS && b.used + READ_ROOM <= ARENA {
                reads += 1;
                match self.tun.recv(&mut raw) {
                    Ok(len) => self.take(&mut raw[..len], &mut b, &mut slots, &mut sizes, slot),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        idle = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if !warned {
                            warn!(dev = %self.name, error = %e, "wireguard (userspace): reading the TUN device failed");
                            warned = true;
                        }
                        if b.dgrams.is_empty() {
                            std::thread::sleep(ERROR_PAUSE);
                        }
                        break;
                    }
                }
            }
            self.flush(&mut b);
            if idle && self.stop.wait(self.tun.as_fd(), PollFlags::POLLIN) == Wake::Stop {
                break;
            }
        }
    }

    /// One read: a packet, or a super-packet behind its virtio header.
    fn take(
        &self,
        raw: &mut [u8],
        b: &mut Batch,
        slots: &mut [u8],
        sizes: &mut [usize],
        slot: usize,
    ) {
        if !self.offload {
            self.seal(raw, b);
            return;
        }
        if raw.len() <= VIRTIO_NET_HDR_LEN {
            return;
        }
        let Ok(hdr) = VirtioNetHdr::decode(&raw[..VIRTIO_NET_HDR_LEN]) else {
            return;
        };
        let pkt = &mut raw[VIRTIO_NET_HDR_LEN..];
        if is_tcp4_gso(&hdr) {
            if let Ok(tso) = Tso::plan(pkt, hdr.gso_size) {
                if let Some(mut segs) = Segments::new(pkt, tso) {
                    while let Some(seg) = segs.next_segment() {
                        self.seal(seg, b);
                    }
                    return;
                }
            }
        }
        let mut bufs: Vec<&mut [u8]> = slots.chunks_mut(slot).collect();
        match split_other(hdr, pkt, &mut bufs, sizes) {
            Ok(n) => {
                for (buf, &len) in bufs.iter().zip(sizes.iter()).take(n) {
                    self.seal(&buf[..len], b);
                }
            }
            Err(e) => {
                debug!(dev = %self.name, error = %e, "wireguard (userspace): a TUN packet not split")
            }
        }
    }

    /// Seals one inner packet for its peer into the arena.
    fn seal(&self, pkt: &[u8], b: &mut Batch) {
        let Some(dst) = Tunn::dst_address(pkt) else {
            return;
        };
        let cached = matches!(&b.route, Some((d, _, _)) if *d == dst);
        if !cached {
            let Some(peer) = read(&self.table).route(dst) else {
                return; // no peer for it: dropped, as the kernel's device drops it
            };
            let ep = *lock(&peer.endpoint);
            b.route = Some((dst, peer, ep));
        }
        let Some((_, peer, ep)) = &b.route else {
            return;
        };
        let (peer, ep) = (Arc::clone(peer), *ep);
        let need = (pkt.len() + WG_OVERHEAD).max(MIN_OUT);
        if b.used + need > b.arena.len() {
            self.flush(b);
        }
        let at = b.used;
        let out = &mut b.arena[at..at + need];
        let len = match lock(&peer.tunn).encapsulate(pkt, out) {
            TunnResult::WriteToNetwork(d) => d.len(),
            TunnResult::Err(e) => {
                debug!(dev = %self.name, error = ?e, "wireguard (userspace): encrypting");
                return;
            }
            _ => return, // queued until the handshake completes
        };
        if let Some(ep) = ep {
            b.dgrams.push((at, ep, len));
            b.used += len;
        }
    }

    /// Sends the batch's datagrams: runs of equal size to one endpoint, one GSO send each.
    fn flush(&self, b: &mut Batch) {
        if b.dgrams.is_empty() {
            b.used = 0;
            return;
        }
        let limits = Limits::gso(self.sock.state.max_gso_segments());
        b.grouper.group(
            b.dgrams
                .iter()
                .enumerate()
                .map(|(i, &(_, to, len))| (i, to, len)),
            limits,
        );
        for send in b.grouper.sends() {
            let ids = b.grouper.packets(send);
            let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
                continue;
            };
            let contiguous = ids.windows(2).all(|w| w[1] == w[0] + 1);
            let contents: &[u8] = if contiguous {
                let start = b.dgrams[first].0;
                let end = b.dgrams[last].0 + b.dgrams[last].2;
                &b.arena[start..end]
            } else {
                b.staging.clear();
                for &i in ids {
                    let (at, _, len) = b.dgrams[i];
                    b.staging.extend_from_slice(&b.arena[at..at + len]);
                }
                &b.staging
            };
            let t = Transmit {
                destination: self.sock.dest(send.to),
                ecn: None,
                contents,
                segment_size: (send.count > 1).then_some(send.segment_size),
                src_ip: None,
            };
            if let Err(e) = self.send(&t) {
                debug!(dev = %self.name, to = %send.to, error = %e, "wireguard (userspace): sending failed");
            }
        }
        b.dgrams.clear();
        b.used = 0;
    }

    /// Sends one transmit, waiting for room in the socket buffer when it is full.
    fn send(&self, t: &Transmit<'_>) -> io::Result<()> {
        loop {
            match self
                .sock
                .state
                .try_send(UdpSockRef::from(&self.sock.sock), t)
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.stop.wait(self.sock.sock.as_fd(), PollFlags::POLLOUT) == Wake::Stop {
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }
}
