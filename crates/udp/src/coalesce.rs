//! Coalescing the TCP/IPv4 packets of one receive batch into super-packets for the TUN device
//! (pure, no I/O): the receive side's counterpart of [`crate::segment`].
//!
//! Every datagram carries one IPv4 packet (the wire format), so a TCP stream arrives as
//! MTU-sized segments. Written one by one, each would climb the kernel's receive path alone.
//! [`Coalescer::coalesce`] groups, in arrival order, the segments that the kernel's own GRO
//! would merge: same addresses, ports, TOS, TTL, IP flags and options, same ACK number,
//! window and TCP options, consecutive sequence numbers, flags ACK (PSH allowed on the last),
//! every payload as long as the first except the last (which may be shorter), at most
//! 65,535 bytes in all. A group of several is written as one packet behind a virtio header
//! (`VIRTIO_NET_HDR_GSO_TCPV4`, `NEEDS_CSUM`): [`Group::write_header`] builds that header and
//! the merged IPv4/TCP header, and the caller hands the kernel
//! `[virtio + header, payload 1, payload 2, …]` as the iovecs of one `writev`, so the payload
//! bytes are never copied in userspace.
//!
//! The inner TCP checksums are not re-verified: each datagram's UDP checksum, which the kernel
//! checked before we received it, covers the whole inner packet; the merged packet goes up as
//! `CHECKSUM_PARTIAL`, the pseudo-header sum in its checksum field, as a TSO packet a local
//! socket sent would.
//!
//! Any other TCP packet of a flow (a pure ACK, SYN, FIN, RST, a gap in the sequence) closes
//! that flow's open group and is written alone, after it, so no flow is reordered.

use tun_rs::{VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_LEN};

use crate::checksum::{fold, sum};
use crate::segment::{pseudo_header, MAX_HEADER_LEN};

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

/// Room [`Group::write_header`] needs: the virtio header and the longest IPv4/TCP header.
pub const HEADER_ROOM: usize = VIRTIO_NET_HDR_LEN + MAX_HEADER_LEN;

/// The largest IPv4 packet.
const MAX_TOTAL_LEN: usize = 65_535;

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// The fields of a mergeable TCP/IPv4 segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    ip_header_len: usize,
    header_len: usize,
    seq: u32,
    payload_len: usize,
    psh: bool,
}

/// A TCP/IPv4 data segment the kernel's GRO would consider: no fragment, flags ACK or
/// ACK|PSH, some payload. `pkt` ends at its IPv4 total length.
fn mergeable(pkt: &[u8]) -> Option<Seg> {
    let first = *pkt.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || pkt.len() < ihl + 20 || pkt[9] != 6 {
        return None;
    }
    if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0 {
        return None;
    }
    let header_len = ihl + usize::from(pkt[ihl + 12] >> 4) * 4;
    if header_len < ihl + 20 || header_len >= pkt.len() {
        return None;
    }
    let flags = pkt[ihl + 13];
    if flags & !TCP_PSH != TCP_ACK {
        return None;
    }
    Some(Seg {
        ip_header_len: ihl,
        header_len,
        seq: u32::from_be_bytes([pkt[ihl + 4], pkt[ihl + 5], pkt[ihl + 6], pkt[ihl + 7]]),
        payload_len: pkt.len() - header_len,
        psh: flags & TCP_PSH != 0,
    })
}

/// Addresses and ports of a TCP/IPv4 packet (with enough bytes for them).
fn flow(pkt: &[u8]) -> Option<[u8; 12]> {
    let first = *pkt.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || pkt.len() < ihl + 4 || pkt[9] != 6 {
        return None;
    }
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&pkt[12..20]);
    k[8..].copy_from_slice(&pkt[ihl..ihl + 4]);
    Some(k)
}

/// Whether segment `b` may follow `a` in one super-packet as far as their headers go:
/// everything equal but the IPv4 total length, ID and checksum, and the TCP sequence number,
/// PSH and checksum.
fn same_headers(a: &[u8], b: &[u8], ihl: usize, hl: usize) -> bool {
    a[0..2] == b[0..2]
        && a[6..10] == b[6..10]
        && a[12..ihl + 4] == b[12..ihl + 4]
        && a[ihl + 8..ihl + 13] == b[ihl + 8..ihl + 13]
        && (a[ihl + 13] & !TCP_PSH) == (b[ihl + 13] & !TCP_PSH)
        && a[ihl + 14..ihl + 16] == b[ihl + 14..ihl + 16]
        && a[ihl + 18..hl] == b[ihl + 18..hl]
}

/// One packet to write: a single packet as it arrived, or several segments merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// Number of packets (1: written alone, as it is).
    pub count: usize,
    /// Payload bytes of every member but the last (which has at most as many).
    pub gso_size: usize,
    /// IPv4 + TCP header length (of every member; 0 for a lone non-mergeable packet).
    pub header_len: usize,
    /// IPv4 header length.
    ip_header_len: usize,
    /// Payload bytes of all members.
    payload_len: usize,
    /// A member had PSH (only the last can).
    psh: bool,
    /// Sequence number the next member must have.
    next_seq: u32,
    /// No member may join any more.
    closed: bool,
    /// Where its members start in the coalescer's order.
    start: usize,
}

impl Group {
    /// The length of the merged packet (headers + all payloads).
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }

    /// For a group of several: writes the virtio header and the merged IPv4/TCP header
    /// (built from `head`, the group's first packet) into `out`, which must hold
    /// [`HEADER_ROOM`] bytes; returns the bytes written. The members' payloads
    /// (`pkt[header_len..]` of each) follow it on the wire.
    #[allow(clippy::cast_possible_truncation)] // lengths ≤ 65,535 (checked while grouping)
    pub fn write_header(&self, head: &[u8], out: &mut [u8]) -> usize {
        let ihl = self.ip_header_len;
        let hl = self.header_len;
        let vnet = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: hl as u16,
            gso_size: self.gso_size as u16,
            csum_start: ihl as u16,
            csum_offset: 16,
        };
        // Encoding into a 10-byte slice cannot fail.
        let _ = vnet.encode(&mut out[..VIRTIO_NET_HDR_LEN]);
        let h = &mut out[VIRTIO_NET_HDR_LEN..VIRTIO_NET_HDR_LEN + hl];
        h.copy_from_slice(&head[..hl]);
        let total = self.total_len();
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[10..12].fill(0);
        let ip_check = !fold(sum(&h[..ihl], 0));
        h[10..12].copy_from_slice(&ip_check.to_be_bytes());
        if self.psh {
            h[ihl + 13] |= TCP_PSH;
        }
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented.
        let partial = fold(pseudo_header(&h[12..16], &h[16..20], (total - ihl) as u16));
        h[ihl + 16..ihl + 18].copy_from_slice(&partial.to_be_bytes());
        VIRTIO_NET_HDR_LEN + hl
    }
}

/// Groups the TCP packets of a batch; reused from batch to batch (no allocation once warm).
#[derive(Debug, Default)]
pub struct Coalescer {
    groups: Vec<Group>,
    /// Packet indices, grouped by group.
    order: Vec<usize>,
    /// `(packet, group)` in input order (scratch).
    assigned: Vec<(usize, usize)>,
    /// `(flow, group index)` of the groups still open (scratch).
    open: Vec<([u8; 12], usize)>,
    /// Per group, where its next packet goes in `order` (scratch).
    cursor: Vec<usize>,
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Coalescer {
        Coalescer::default()
    }

    /// Groups `packets` (each ending at its IPv4 total length, in arrival order), replacing
    /// the previous batch's groups.
    pub fn coalesce(&mut self, packets: &[&[u8]]) {
        self.groups.clear();
        self.order.clear();
        self.assigned.clear();
        self.open.clear();
        for (i, pkt) in packets.iter().enumerate() {
            let key = flow(pkt);
            let open = key.and_then(|k| self.open.iter().position(|(f, _)| *f == k));
            let seg = mergeable(pkt);
            let joined = match (seg, open) {
                (Some(s), Some(o)) => {
                    let gi = self.open[o].1;
                    let head = packets[self.order_head(gi)];
                    let g = &mut self.groups[gi];
                    let fits = !g.closed
                        && s.header_len == g.header_len
                        && s.ip_header_len == g.ip_header_len
                        && s.seq == g.next_seq
                        && s.payload_len <= g.gso_size
                        && g.total_len() + s.payload_len <= MAX_TOTAL_LEN
                        && same_headers(head, pkt, s.ip_header_len, s.header_len);
                    fits.then(|| {
                        g.count += 1;
                        g.payload_len += s.payload_len;
                        g.next_seq = s
                            .seq
                            .wrapping_add(u32::try_from(s.payload_len).unwrap_or(0));
                        g.psh |= s.psh;
                        g.closed = s.psh || s.payload_len < g.gso_size;
                        gi
                    })
                }
                _ => None,
            };
            let gi = match joined {
                Some(gi) => gi,
                None => {
                    let gi = self.groups.len();
                    let g = match seg {
                        Some(s) => Group {
                            count: 1,
                            gso_size: s.payload_len,
                            header_len: s.header_len,
                            ip_header_len: s.ip_header_len,
                            payload_len: s.payload_len,
                            psh: s.psh,
                            next_seq: s
                                .seq
                                .wrapping_add(u32::try_from(s.payload_len).unwrap_or(0)),
                            closed: s.psh,
                            start: 0,
                        },
                        None => Group {
                            count: 1,
                            gso_size: 0,
                            header_len: 0,
                            ip_header_len: 0,
                            payload_len: pkt.len(),
                            psh: false,
                            next_seq: 0,
                            closed: true,
                            start: 0,
                        },
                    };
                    self.groups.push(g);
                    // The flow's open group is now this one (or none, for a packet that
                    // cannot be merged: later segments must not overtake it).
                    match (key, open) {
                        (Some(_), Some(o)) if seg.is_some() => self.open[o].1 = gi,
                        (Some(_), Some(o)) => {
                            self.open.swap_remove(o);
                        }
                        (Some(k), None) if seg.is_some() => self.open.push((k, gi)),
                        _ => {}
                    }
                    gi
                }
            };
            self.assigned.push((i, gi));
            // Remember each group's first packet for header comparisons.
            if self.groups[gi].count == 1 {
                self.groups[gi].start = i;
            }
        }
        // Lay the packets out group by group, each group's packets in arrival order.
        let mut next = 0;
        self.cursor.clear();
        for g in &mut self.groups {
            g.start = next;
            self.cursor.push(next);
            next += g.count;
        }
        self.order.resize(next, 0);
        for &(p, gi) in &self.assigned {
            let at = &mut self.cursor[gi];
            self.order[*at] = p;
            *at += 1;
        }
    }

    /// While grouping, `start` holds the group's first packet index.
    fn order_head(&self, gi: usize) -> usize {
        self.groups[gi].start
    }

    /// The groups of the last batch, in the order to write them.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The packet indices of `group`, in arrival order.
    pub fn packets(&self, group: &Group) -> &[usize] {
        &self.order[group.start..group.start + group.count]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::segment::tests::{checksums_ok, cut, super_packet};
    use proptest::prelude::*;
    use tun_rs::VirtioNetHdr;

    /// What the kernel gets for each group: (virtio header, packet bytes).
    fn written(packets: &[Vec<u8>]) -> Vec<(Option<VirtioNetHdr>, Vec<u8>)> {
        let views: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut c = Coalescer::new();
        c.coalesce(&views);
        c.groups()
            .iter()
            .map(|g| {
                let ids = c.packets(g);
                if g.count == 1 {
                    return (None, packets[ids[0]].clone());
                }
                let mut out = [0u8; HEADER_ROOM];
                let n = g.write_header(&packets[ids[0]], &mut out);
                let hdr = VirtioNetHdr::decode(&out[..VIRTIO_NET_HDR_LEN]).unwrap();
                let mut p = out[VIRTIO_NET_HDR_LEN..n].to_vec();
                for &i in ids {
                    p.extend_from_slice(&packets[i][g.header_len..]);
                }
                assert_eq!(p.len(), g.total_len());
                (Some(hdr), p)
            })
            .collect()
    }

    /// A merged packet with its checksum completed as the kernel would (`NEEDS_CSUM`).
    fn complete(hdr: &VirtioNetHdr, mut p: Vec<u8>) -> Vec<u8> {
        let at = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset);
        let start = usize::from(hdr.csum_start);
        let c = !fold(sum(&p[start..], 0));
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn segments_of_one_super_packet_merge_back_into_it() {
        let payload: Vec<u8> = (0..5000u32)
            .map(|i| u8::try_from(i * 7 % 256).unwrap())
            .collect();
        let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let pkt = super_packet(77, 3, 0x18, &opts, &payload);
        let segs = cut(&pkt, 1400);
        let out = written(&segs);
        assert_eq!(out.len(), 1);
        let (hdr, p) = &out[0];
        let hdr = hdr.unwrap();
        assert_eq!(hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(hdr.gso_size, 1400);
        assert_eq!(hdr.hdr_len, 52);
        assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 16));
        assert_eq!(&p[52..], &payload[..]);
        assert!(checksums_ok(&complete(&hdr, p.clone())));
        assert_eq!(p[33], 0x18, "PSH of the last segment kept");
    }

    #[test]
    fn a_gap_a_pure_ack_or_another_flow_are_not_merged_and_nothing_is_reordered() {
        let a = cut(&super_packet(1000, 1, 0x10, &[], &[1; 300]), 100);
        let b = cut(&super_packet(5000, 1, 0x10, &[], &[2; 200]), 100);
        let mut other = super_packet(1300, 1, 0x10, &[], &[3; 100]);
        other[23] = 0x52; // another source port
        let ack = super_packet(1300, 1, 0x10, &[], &[]);
        // a0 a1 | other | a2 | ack | b0 b1 (gap after a2: b starts at 5000)
        let pkts = [
            a[0].clone(),
            a[1].clone(),
            other.clone(),
            a[2].clone(),
            ack.clone(),
            b[0].clone(),
            b[1].clone(),
        ];
        let views: Vec<&[u8]> = pkts.iter().map(Vec::as_slice).collect();
        let mut c = Coalescer::new();
        c.coalesce(&views);
        let groups: Vec<Vec<usize>> = c.groups().iter().map(|g| c.packets(g).to_vec()).collect();
        assert_eq!(groups, vec![vec![0, 1, 3], vec![2], vec![4], vec![5, 6]]);
    }

    #[test]
    fn a_shorter_segment_or_psh_ends_a_group_and_64_kib_is_the_limit() {
        let short = cut(&super_packet(0, 1, 0x10, &[], &[1; 250]), 100); // 100, 100, 50
        let more = cut(&super_packet(250, 1, 0x10, &[], &[1; 100]), 100);
        let mut pkts = short.clone();
        pkts.extend(more);
        let views: Vec<&[u8]> = pkts.iter().map(Vec::as_slice).collect();
        let mut c = Coalescer::new();
        c.coalesce(&views);
        let counts: Vec<usize> = c.groups().iter().map(|g| g.count).collect();
        assert_eq!(counts, vec![3, 1]);

        let big = cut(&super_packet(0, 1, 0x10, &[], &vec![9; 70_000]), 1400);
        let views: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
        c.coalesce(&views);
        for g in c.groups() {
            assert!(g.total_len() <= MAX_TOTAL_LEN);
        }
        assert_eq!(c.groups().len(), 2);
        assert_eq!(c.groups()[0].count, 46);
    }

    proptest! {
        #[test]
        fn segment_then_coalesce_gives_back_the_stream_with_valid_checksums(
            sizes in proptest::collection::vec(1usize..9000, 1..5),
            mss in 500u16..1461,
            seq in any::<u32>(),
            psh in any::<bool>(),
        ) {
            // Consecutive super-packets of one flow, as a TCP sender emits them.
            let mut pkts = Vec::new();
            let mut stream = Vec::new();
            let mut s = seq;
            for (k, n) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..*n).map(|i| u8::try_from((i * 31 + k) % 256).unwrap()).collect();
                let flags = if psh { 0x18 } else { 0x10 };
                pkts.extend(cut(&super_packet(s, 1, flags, &[], &payload), mss));
                s = s.wrapping_add(u32::try_from(*n).unwrap());
                stream.extend_from_slice(&payload);
            }
            let out = written(&pkts);
            let mut got = Vec::new();
            let mut expect_seq = seq;
            for (hdr, p) in &out {
                let full = match hdr {
                    Some(h) => {
                        prop_assert_eq!(h.csum_start, 20);
                        prop_assert!(p.len() <= MAX_TOTAL_LEN);
                        prop_assert!(p.len() - 40 > usize::from(h.gso_size));
                        complete(h, p.clone())
                    }
                    None => p.clone(),
                };
                prop_assert!(checksums_ok(&full));
                prop_assert_eq!(usize::from(u16::from_be_bytes([full[2], full[3]])), full.len());
                let seq_here = u32::from_be_bytes([full[24], full[25], full[26], full[27]]);
                prop_assert_eq!(seq_here, expect_seq);
                expect_seq = expect_seq.wrapping_add(u32::try_from(full.len() - 40).unwrap());
                got.extend_from_slice(&full[40..]);
            }
            prop_assert_eq!(got, stream);
            // Without PSH and with full segments, nothing is left unmerged needlessly.
            if !psh && sizes.len() == 1 && sizes[0] <= 60_000 {
                prop_assert_eq!(out.len(), 1);
            }
        }
    }
}
