//! Cutting a TCP/IPv4 TSO super-packet into its segments *in place*, each one contiguous
//! plaintext for the cipher (pure, no I/O).
//!
//! [`flannel_udp::segment::Tso`] builds segment `i`'s header (lengths, ID, sequence number,
//! flags, complete checksums) into a buffer beside the super-packet; the udp backend sends
//! `[header i, payload i]` as two iovecs. WireGuard needs each inner packet as one slice to
//! encrypt, and boringtun copies that slice into the datagram while sealing it. So instead of
//! copying header and payload into a staging buffer first, [`Segments`] writes header `i`
//! into the super-packet right in front of payload `i` — over the last bytes of payload
//! `i − 1`, which the caller has encrypted by then — so segment `i` is
//! `pkt[payload(i).start − header_len .. payload(i).end]`, and the payload is copied only
//! once (by the cipher). The original header is kept aside, because segment 0's header takes
//! its place and every later header is built from it.
//!
//! Segments come out in order, one at a time: each call may overwrite bytes the previous
//! segment lay in. That needs `mss ≥ header_len` (a header must fit inside the payload in
//! front of its own), which holds for every real MSS; [`Segments::new`] refuses the rest.

use flannel_udp::segment::{Tso, MAX_HEADER_LEN};

/// The segments of one super-packet, made contiguous one after another.
#[derive(Debug)]
pub struct Segments<'a> {
    pkt: &'a mut [u8],
    tso: Tso,
    /// The super-packet's own header (segment 0's header overwrites it in `pkt`).
    orig: [u8; MAX_HEADER_LEN],
    /// Scratch for the header being built.
    head: [u8; MAX_HEADER_LEN],
    next: usize,
}

impl<'a> Segments<'a> {
    /// Prepares the in-place split of `pkt` (planned as `tso`). `None` when a header does not
    /// fit in front of its payload (`mss < header_len`) or is longer than any IPv4/TCP header.
    pub fn new(pkt: &'a mut [u8], tso: Tso) -> Option<Segments<'a>> {
        if tso.mss < tso.header_len
            || tso.header_len > MAX_HEADER_LEN
            || pkt.len() < tso.header_len + tso.payload_len
        {
            return None;
        }
        let mut orig = [0u8; MAX_HEADER_LEN];
        orig[..tso.header_len].copy_from_slice(&pkt[..tso.header_len]);
        Some(Segments {
            pkt,
            tso,
            orig,
            head: [0u8; MAX_HEADER_LEN],
            next: 0,
        })
    }

    /// The number of segments.
    pub fn len(&self) -> usize {
        self.tso.segments
    }

    /// Whether there are none (never, for a planned super-packet).
    pub fn is_empty(&self) -> bool {
        self.tso.segments == 0
    }

    /// The next segment as one complete IPv4/TCP packet, or `None` after the last. The slice
    /// is only valid until the next call (which may overwrite its tail).
    pub fn next_segment(&mut self) -> Option<&[u8]> {
        let i = self.next;
        if i >= self.tso.segments {
            return None;
        }
        self.next += 1;
        let hl = self.tso.header_len;
        if i == 1 {
            // Segment 0's header sits where the original was; later headers need the original.
            self.pkt[..hl].copy_from_slice(&self.orig[..hl]);
        }
        self.tso.write_header(self.pkt, i, &mut self.head);
        let payload = self.tso.payload(i);
        let at = payload.start - hl;
        self.pkt[at..payload.start].copy_from_slice(&self.head[..hl]);
        Some(&self.pkt[at..payload.end])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCP/IPv4 super-packet: IHL 5, `opts` TCP option bytes, sequence `seq`, `flags`.
    fn super_packet(seq: u32, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let doff = 20 + opts.len();
        let total = u16::try_from(20 + doff + payload.len()).unwrap_or(u16::MAX);
        let mut p = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 5, 198, 18, 1, 7,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.push(u8::try_from(doff / 4).unwrap() << 4);
        p.push(flags);
        p.extend_from_slice(&[0x01, 0xf5, 0xbe, 0xef, 0, 0]);
        p.extend_from_slice(opts);
        p.extend_from_slice(payload);
        p
    }

    /// The segments as the udp backend builds them: header beside, payload from the intact
    /// super-packet.
    fn reference(pkt: &[u8], tso: &Tso) -> Vec<Vec<u8>> {
        (0..tso.segments)
            .map(|i| {
                let mut h = [0u8; MAX_HEADER_LEN];
                tso.write_header(pkt, i, &mut h);
                let mut s = h[..tso.header_len].to_vec();
                s.extend_from_slice(&pkt[tso.payload(i)]);
                s
            })
            .collect()
    }

    fn in_place(mut pkt: Vec<u8>, tso: Tso) -> Vec<Vec<u8>> {
        let mut segs = Segments::new(&mut pkt, tso).unwrap();
        assert_eq!(segs.len(), tso.segments);
        let mut out = Vec::new();
        while let Some(s) = segs.next_segment() {
            out.push(s.to_vec());
        }
        assert!(segs.next_segment().is_none());
        out
    }

    #[test]
    fn three_segments_in_place_equal_the_side_built_ones() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let pkt = super_packet(0xffff_fc00, 0x10 | 0x08 | 0x80, &opts, &payload);
        let tso = Tso::plan(&pkt, 1388).unwrap();
        let got = in_place(pkt.clone(), tso);
        assert_eq!(got.len(), 3);
        assert_eq!(got, reference(&pkt, &tso));
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [1440, 1440, 276]
        );
        assert_eq!(got[2][33], 0x10 | 0x08, "PSH on the last only");
    }

    #[test]
    fn a_header_longer_than_the_mss_is_refused() {
        let mut pkt = super_packet(1, 0x10, &[], &[5; 100]);
        let tso = Tso::plan(&pkt, 30).unwrap();
        assert!(Segments::new(&mut pkt, tso).is_none());
        let tso = Tso::plan(&pkt, 40).unwrap();
        assert!(Segments::new(&mut pkt, tso).is_some());
    }

    proptest! {
        #[test]
        fn in_place_segments_equal_the_udp_backends(
            payload in proptest::collection::vec(any::<u8>(), 1..9000),
            mss in 100u16..1500,
            seq in any::<u32>(),
            flags in prop_oneof![Just(0x10u8), Just(0x18), Just(0x19), Just(0x90)],
            opt_words in 0usize..11,
        ) {
            let opts = vec![1u8; opt_words * 4];
            let pkt = super_packet(seq, flags, &opts, &payload);
            let tso = Tso::plan(&pkt, mss).unwrap();
            prop_assume!(tso.mss >= tso.header_len);
            prop_assert_eq!(in_place(pkt.clone(), tso), reference(&pkt, &tso));
        }
    }
}
