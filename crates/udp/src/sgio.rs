//! The fast path's scatter-gather I/O: a TSO super-packet from the TUN device goes out as
//! UDP GSO sends whose iovecs point at its payload ([`TsoSender`]), and coalesced TCP segments
//! go to the TUN device as one `writev` whose iovecs point at the received datagrams
//! ([`write_group`]). The pure halves are [`crate::segment`] and [`crate::coalesce`]; this file
//! only builds iovecs and makes the system calls.

use std::io::{self, IoSlice};
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrIn};
use tun_rs::{
    gso_split, SyncDevice, VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4, VIRTIO_NET_HDR_LEN,
};

use crate::batch::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::checksum::{fold, sum};
use crate::coalesce::{Group, HEADER_ROOM};
use crate::segment::{Tso, MAX_HEADER_LEN};

/// Most segments of one super-packet sent without copying (more: the copying path).
pub const MAX_TSO_SEGMENTS: usize = 256;

/// Most UDP messages (GSO sends) per `sendmmsg`.
const MAX_MESSAGES: usize = 16;

/// `VIRTIO_NET_HDR_GSO_ECN`: the flag bit of `gso_type`.
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const NEEDS_CSUM: u8 = 1;

/// Header room per segment (the longest IPv4/TCP header, rounded up).
const HEAD_STRIDE: usize = 128;

/// Whether a virtio header announces a TCP/IPv4 super-packet.
pub fn is_tcp4_gso(hdr: &VirtioNetHdr) -> bool {
    hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN == VIRTIO_NET_HDR_GSO_TCPV4
}

/// Sends TSO super-packets as UDP GSO sends, one datagram per segment, the payload never
/// copied: its buffers are kept from send to send.
pub struct TsoSender {
    heads: Vec<u8>,
    headers: MultiHeaders<SockaddrIn>,
    addrs: Vec<Option<SockaddrIn>>,
}

impl std::fmt::Debug for TsoSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsoSender").finish_non_exhaustive()
    }
}

/// What [`TsoSender::send`] did.
#[derive(Debug)]
pub enum Sent {
    /// All segments went out (their number).
    All(usize),
    /// The socket buffer is full: wait for `POLLOUT` and call again with `from`, the first
    /// message not sent.
    WouldBlock {
        /// The first message not yet sent.
        from: usize,
    },
}

impl Default for TsoSender {
    fn default() -> Self {
        TsoSender::new()
    }
}

impl TsoSender {
    /// Buffers for up to [`MAX_TSO_SEGMENTS`] segments.
    pub fn new() -> TsoSender {
        TsoSender {
            heads: vec![0u8; MAX_TSO_SEGMENTS * HEAD_STRIDE],
            headers: MultiHeaders::preallocate(MAX_MESSAGES, Some(nix::cmsg_space!(u16))),
            addrs: Vec::with_capacity(MAX_MESSAGES),
        }
    }

    /// Builds every segment's header of `pkt` (planned as `tso`) into the header buffer.
    /// `false` when the super-packet has too many segments for it.
    pub fn prepare(&mut self, pkt: &[u8], tso: &Tso) -> bool {
        if tso.segments > MAX_TSO_SEGMENTS || tso.header_len > MAX_HEADER_LEN {
            return false;
        }
        for i in 0..tso.segments {
            tso.write_header(
                pkt,
                i,
                &mut self.heads[i * HEAD_STRIDE..(i + 1) * HEAD_STRIDE],
            );
        }
        true
    }

    /// Sends the prepared segments of `pkt` to `to`, starting at message `from` (0 the first
    /// time), in messages of at most `max_segments` datagrams (the socket's GSO limit).
    pub fn send(
        &mut self,
        sock: BorrowedFd<'_>,
        pkt: &[u8],
        tso: &Tso,
        to: SocketAddrV4,
        max_segments: usize,
        from: usize,
    ) -> io::Result<Sent> {
        let seg_len = tso.header_len + tso.mss;
        let per_msg = max_segments
            .min(GSO_MAX_SEGMENTS)
            .min(GSO_MAX_BYTES / seg_len)
            .max(1);
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(2 * tso.segments);
        for i in 0..tso.segments {
            let at = i * HEAD_STRIDE;
            iov.push(IoSlice::new(&self.heads[at..at + tso.header_len]));
            iov.push(IoSlice::new(&pkt[tso.payload(i)]));
        }
        let msgs: Vec<&[IoSlice<'_>]> = iov.chunks(2 * per_msg).collect();
        let seg = u16::try_from(seg_len).map_err(|_| io::Error::other("segment too long"))?;
        let mut done = from;
        while done < msgs.len() {
            let n = (msgs.len() - done).min(MAX_MESSAGES);
            self.addrs.clear();
            self.addrs.resize(n, Some(SockaddrIn::from(to)));
            let cmsgs = [ControlMessage::UdpGsoSegments(&seg)];
            match sendmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                msgs[done..done + n].iter(),
                &self.addrs,
                cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(r) => done += r.count().max(1),
                Err(Errno::EAGAIN) => return Ok(Sent::WouldBlock { from: done }),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Ok(Sent::All(tso.segments))
    }
}

/// Writes `group` (its packets `ids` of `packets`) to the TUN device: a lone packet behind an
/// empty virtio header, several as one super-packet behind [`Group::write_header`]'s headers.
pub fn write_group(
    tun: &SyncDevice,
    group: &Group,
    ids: &[usize],
    packets: &[&[u8]],
) -> io::Result<usize> {
    let Some(&first) = ids.first() else {
        return Ok(0);
    };
    if group.count == 1 {
        let hdr = [0u8; VIRTIO_NET_HDR_LEN];
        return tun.send_vectored(&[IoSlice::new(&hdr), IoSlice::new(packets[first])]);
    }
    let mut head = [0u8; HEADER_ROOM];
    let n = group.write_header(packets[first], &mut head);
    let mut v: Vec<IoSlice<'_>> = Vec::with_capacity(ids.len() + 1);
    v.push(IoSlice::new(&head[..n]));
    for &i in ids {
        v.push(IoSlice::new(&packets[i][group.header_len..]));
    }
    tun.send_vectored(&v)
}

/// The copying path for what [`TsoSender`] does not take: splits the packet behind `hdr` into
/// `bufs` (complete checksums), as tun-rs's `recv_multiple` would. Returns the packets.
pub fn split_other<B: AsRef<[u8]> + AsMut<[u8]>>(
    mut hdr: VirtioNetHdr,
    pkt: &mut [u8],
    bufs: &mut [B],
    sizes: &mut [usize],
) -> io::Result<usize> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_owned());
    let len = pkt.len();
    if hdr.gso_type == 0 {
        if hdr.flags & NEEDS_CSUM != 0 {
            let start = usize::from(hdr.csum_start);
            let at = start + usize::from(hdr.csum_offset);
            if at + 2 > len || start > len {
                return Err(invalid("checksum field beyond the packet"));
            }
            // The field holds the pseudo-header sum; the checksum covers it and the rest.
            let c = !fold(sum(&pkt[start..], 0));
            pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        let (Some(buf), Some(size)) = (bufs.first_mut(), sizes.first_mut()) else {
            return Err(invalid("no buffer"));
        };
        let out = buf.as_mut();
        if out.len() < len {
            return Err(invalid("packet longer than a slot"));
        }
        out[..len].copy_from_slice(pkt);
        *size = len;
        return Ok(1);
    }
    let is_v6 = pkt.first().is_some_and(|b| b >> 4 == 6);
    let base = hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN;
    // As tun-rs does: the kernel's hdr_len may cover the whole first segment; the transport
    // header says where the payload starts.
    if base == VIRTIO_NET_HDR_GSO_UDP_L4 {
        hdr.hdr_len = hdr.csum_start.saturating_add(8);
    } else if base == VIRTIO_NET_HDR_GSO_TCPV4 || base == VIRTIO_NET_HDR_GSO_TCPV6 {
        let at = usize::from(hdr.csum_start) + 12;
        let doff = pkt
            .get(at)
            .map(|b| u16::from(b >> 4) * 4)
            .ok_or_else(|| invalid("packet too short"))?;
        if !(20..=60).contains(&doff) {
            return Err(invalid("bad TCP header length"));
        }
        hdr.hdr_len = hdr.csum_start.saturating_add(doff);
    }
    if len < usize::from(hdr.hdr_len)
        || hdr.hdr_len < hdr.csum_start
        || usize::from(hdr.csum_start) + usize::from(hdr.csum_offset) + 2 > len
    {
        return Err(invalid("bad virtio header"));
    }
    gso_split(pkt, hdr, bufs, sizes, 0, is_v6)
}
