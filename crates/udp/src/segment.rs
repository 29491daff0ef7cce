//! Cutting a TCP/IPv4 TSO super-packet into MTU-sized packets without copying its payload
//! (pure, no I/O).
//!
//! The TUN device hands the fast path TCP super-packets of up to 64 KiB
//! (`VIRTIO_NET_HDR_GSO_TCPV4`): one IPv4 + TCP header, then `gso_size` (the MSS) bytes per
//! segment, the last segment possibly shorter, and the TCP checksum field holding only the
//! pseudo-header sum (`CHECKSUM_PARTIAL`). The wire format wants one complete IPv4 packet per
//! datagram, so each segment needs its own header; its payload, though, is already in place.
//! [`Tso::write_header`] builds segment `i`'s header (IP total length, IP ID + i, IP header
//! checksum, TCP sequence number, flags, and the complete TCP checksum over header and
//! payload) into a small buffer of the caller's; the caller then hands the kernel
//! `[header 0, payload 0, header 1, payload 1, …]` as the iovecs of one UDP GSO send with
//! segment size `header + MSS`: the payload bytes are read once (for the checksum) and never
//! copied in userspace.
//!
//! What the kernel's own TSO does is what we do: the ID increments per segment, CWR stays only
//! on the first segment, FIN and PSH only on the last.

use std::ops::Range;

use crate::checksum::{fold, sum};

/// The longest IPv4 + TCP header (60 + 60 bytes).
pub const MAX_HEADER_LEN: usize = 120;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a super-packet cannot be cut here (the caller falls back to the copying path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Not an IPv4/TCP packet with complete IPv4 and TCP headers.
    #[error("not a TCP/IPv4 packet with complete headers")]
    NotTcp4,
    /// A fragment (MF set or a non-zero offset).
    #[error("an IPv4 fragment")]
    Fragment,
    /// `gso_size` is 0, or a segment would not fit an IPv4 total length.
    #[error("bad segment size {0}")]
    BadSegmentSize(u16),
    /// No payload beyond the headers.
    #[error("no payload")]
    Empty,
}

/// How one TSO super-packet splits: headers, MSS, segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tso {
    /// IPv4 header length (IHL × 4).
    pub ip_header_len: usize,
    /// IPv4 + TCP header length.
    pub header_len: usize,
    /// Payload bytes per segment (the last may have fewer).
    pub mss: usize,
    /// Payload bytes in all.
    pub payload_len: usize,
    /// Number of segments.
    pub segments: usize,
}

impl Tso {
    /// Plans the split of `pkt` (the super-packet: headers and payload, without the virtio
    /// header; its end is the IPv4 total length) into segments of `gso_size` payload bytes.
    pub fn plan(pkt: &[u8], gso_size: u16) -> Result<Tso, SegmentError> {
        let first = *pkt.first().ok_or(SegmentError::NotTcp4)?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || pkt.len() < ihl + 20 || pkt[9] != 6 {
            return Err(SegmentError::NotTcp4);
        }
        if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0 {
            return Err(SegmentError::Fragment);
        }
        // The virtio header's hdr_len is not trusted (a TUN reports the skb's linear part):
        // the TCP data offset says where the payload starts.
        let doff = usize::from(pkt[ihl + 12] >> 4) * 4;
        let header_len = ihl + doff;
        if doff < 20 || header_len > pkt.len() {
            return Err(SegmentError::NotTcp4);
        }
        let mss = usize::from(gso_size);
        if mss == 0 || header_len + mss > usize::from(u16::MAX) {
            return Err(SegmentError::BadSegmentSize(gso_size));
        }
        let payload_len = pkt.len() - header_len;
        if payload_len == 0 {
            return Err(SegmentError::Empty);
        }
        Ok(Tso {
            ip_header_len: ihl,
            header_len,
            mss,
            payload_len,
            segments: payload_len.div_ceil(mss),
        })
    }

    /// Where segment `i`'s payload lies in the super-packet.
    pub fn payload(&self, i: usize) -> Range<usize> {
        let start = self.header_len + i * self.mss;
        start..(start + self.mss).min(self.header_len + self.payload_len)
    }

    /// The length of segment `i` on the wire (header + payload).
    pub fn segment_len(&self, i: usize) -> usize {
        self.header_len + self.payload(i).len()
    }

    /// Writes segment `i`'s complete header into `out[..header_len]` (which must hold it):
    /// the super-packet's header with its own total length, ID, sequence number, flags and
    /// both checksums (the TCP one over `pkt`'s payload bytes of the segment). Returns the
    /// segment's length.
    #[allow(clippy::cast_possible_truncation)] // lengths ≤ u16::MAX (checked in `plan`); seq wraps mod 2³²
    pub fn write_header(&self, pkt: &[u8], i: usize, out: &mut [u8]) -> usize {
        let ihl = self.ip_header_len;
        let hl = self.header_len;
        let payload = self.payload(i);
        let total = hl + payload.len();
        let h = &mut out[..hl];
        h.copy_from_slice(&pkt[..hl]);
        // IPv4: total length, ID, header checksum.
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let id = u16::from_be_bytes([h[4], h[5]]).wrapping_add(i as u16);
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[10..12].fill(0);
        let ip_check = !fold(sum(&h[..ihl], 0));
        h[10..12].copy_from_slice(&ip_check.to_be_bytes());
        // TCP: sequence number, flags, checksum.
        let seq = u32::from_be_bytes([h[ihl + 4], h[ihl + 5], h[ihl + 6], h[ihl + 7]])
            .wrapping_add((i * self.mss) as u32);
        h[ihl + 4..ihl + 8].copy_from_slice(&seq.to_be_bytes());
        if i > 0 {
            h[ihl + 13] &= !TCP_CWR;
        }
        if i + 1 < self.segments {
            h[ihl + 13] &= !(TCP_FIN | TCP_PSH);
        }
        h[ihl + 16..ihl + 18].fill(0);
        let tcp_len = (total - ihl) as u16;
        let pseudo = pseudo_header(&h[12..16], &h[16..20], tcp_len);
        // The header part has an even length (a multiple of 4), so the payload's words line
        // up when summed separately.
        let s = sum(&pkt[payload], sum(&h[ihl..], pseudo));
        let tcp_check = !fold(s);
        h[ihl + 16..ihl + 18].copy_from_slice(&tcp_check.to_be_bytes());
        total
    }
}

/// The unfolded one's-complement sum of the TCP/IPv4 pseudo-header.
pub fn pseudo_header(src: &[u8], dst: &[u8], tcp_len: u16) -> u64 {
    sum(src, sum(dst, 6 + u64::from(tcp_len)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::packet::internet_checksum;
    use proptest::prelude::*;

    /// A TSO super-packet as a TUN hands it over: IPv4 (IHL 5, DF, ID `id`) + TCP with
    /// `opts` option bytes, `flags`, sequence `seq`, `payload`; checksum fields as the kernel
    /// leaves them do not matter here (we overwrite them), so they hold junk.
    pub(crate) fn super_packet(
        seq: u32,
        id: u16,
        flags: u8,
        opts: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let doff = 20 + opts.len();
        let total = 20 + doff + payload.len();
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0xde, 0xad, 198, 18, 0, 5, 198, 18, 1, 7,
        ];
        let total16 = u16::try_from(total).unwrap_or(u16::MAX);
        p[2..4].copy_from_slice(&total16.to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]); // ports 40000 → 5201
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes()); // ack
        p.push(u8::try_from(doff / 4).unwrap() << 4);
        p.push(flags);
        p.extend_from_slice(&[0x01, 0xf5, 0xbe, 0xef, 0, 0]); // window, junk checksum, urg
        p.extend_from_slice(opts);
        p.extend_from_slice(payload);
        p
    }

    /// Whether `seg` (a whole IPv4/TCP packet) has correct IPv4 and TCP checksums.
    pub(crate) fn checksums_ok(seg: &[u8]) -> bool {
        let ihl = usize::from(seg[0] & 0x0f) * 4;
        let mut v = Vec::new();
        v.extend_from_slice(&seg[12..20]);
        v.extend_from_slice(&[0, 6]);
        v.extend_from_slice(&u16::try_from(seg.len() - ihl).unwrap().to_be_bytes());
        v.extend_from_slice(&seg[ihl..]);
        internet_checksum(&seg[..ihl]) == 0 && internet_checksum(&v) == 0
    }

    /// Every segment of `pkt` as a whole packet.
    pub(crate) fn cut(pkt: &[u8], mss: u16) -> Vec<Vec<u8>> {
        let t = Tso::plan(pkt, mss).unwrap();
        (0..t.segments)
            .map(|i| {
                let mut h = [0u8; MAX_HEADER_LEN];
                let len = t.write_header(pkt, i, &mut h);
                let mut s = h[..t.header_len].to_vec();
                s.extend_from_slice(&pkt[t.payload(i)]);
                assert_eq!(s.len(), len);
                s
            })
            .collect()
    }

    #[test]
    fn a_super_packet_becomes_mss_sized_segments_with_kernel_tso_fields() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        // ACK|PSH|CWR, one 12-byte timestamp option block.
        let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let pkt = super_packet(0xffff_fc00, 0xfffe, 0x10 | 0x08 | 0x80, &opts, &payload);
        let segs = cut(&pkt, 1400);
        assert_eq!(segs.len(), 3);
        assert_eq!(
            segs.iter().map(Vec::len).collect::<Vec<_>>(),
            [1452, 1452, 252]
        );
        for (i, s) in segs.iter().enumerate() {
            assert!(checksums_ok(s), "segment {i}");
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            let id = u16::from_be_bytes([s[4], s[5]]);
            assert_eq!(id, 0xfffeu16.wrapping_add(u16::try_from(i).unwrap()));
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(
                seq,
                0xffff_fc00u32.wrapping_add(1400 * u32::try_from(i).unwrap())
            );
            assert_eq!(&s[40..52], &opts);
        }
        assert_eq!(segs[0][33], 0x10 | 0x80, "CWR on the first, PSH not");
        assert_eq!(segs[1][33], 0x10);
        assert_eq!(segs[2][33], 0x10 | 0x08, "PSH on the last only");
    }

    #[test]
    fn what_is_not_a_tcp4_super_packet_is_refused() {
        let pkt = super_packet(1, 1, 0x10, &[], &[1; 100]);
        assert_eq!(Tso::plan(&pkt, 0), Err(SegmentError::BadSegmentSize(0)));
        assert_eq!(Tso::plan(&pkt[..30], 10), Err(SegmentError::NotTcp4));
        assert_eq!(Tso::plan(&pkt[..40], 10), Err(SegmentError::Empty));
        assert_eq!(Tso::plan(&[], 10), Err(SegmentError::NotTcp4));
        let mut udp = pkt.clone();
        udp[9] = 17;
        assert_eq!(Tso::plan(&udp, 10), Err(SegmentError::NotTcp4));
        let mut frag = pkt.clone();
        frag[6] = 0x20;
        assert_eq!(Tso::plan(&frag, 10), Err(SegmentError::Fragment));
        let mut v6 = pkt;
        v6[0] = 0x65;
        assert_eq!(Tso::plan(&v6, 10), Err(SegmentError::NotTcp4));
    }

    proptest! {
        #[test]
        fn segments_carry_the_payload_in_order_with_correct_checksums(
            payload in proptest::collection::vec(any::<u8>(), 1..6000),
            mss in 1u16..2000,
            seq in any::<u32>(),
            opt_words in 0usize..11,
        ) {
            let opts = vec![1u8; opt_words * 4];
            let pkt = super_packet(seq, 9, 0x18, &opts, &payload);
            let segs = cut(&pkt, mss);
            let t = Tso::plan(&pkt, mss).unwrap();
            prop_assert_eq!(segs.len(), payload.len().div_ceil(usize::from(mss)));
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                prop_assert!(checksums_ok(s));
                prop_assert!(s.len() - t.header_len <= usize::from(mss));
                if i + 1 < segs.len() {
                    prop_assert_eq!(s.len() - t.header_len, usize::from(mss));
                }
                joined.extend_from_slice(&s[t.header_len..]);
            }
            prop_assert_eq!(joined, payload);
        }
    }
}
