//! Pure IPv4 packet handling for the udp backend: header validation, TTL decrement with an
//! RFC 1624 incremental checksum update, and the ICMP net-unreachable reply.
//!
//! Everything works on byte slices the caller owns; nothing allocates.
//!
//! The ICMP reply is built as Flannel's C proxy (`send_net_unreachable`) builds it: an IPv4
//! header (IHL 5, TOS 0, ID 0, no flags, TTL 8, protocol ICMP, source = the TUN address,
//! destination = the offender's source), an ICMP header (type 3 code 0, the 4 "unused" bytes
//! zero), then the offender's IP header (options included) and the first 8 bytes of its
//! payload. No reply is built for ICMP packets, for fragments other than the first, or when
//! the offender's header is 60 bytes long (IHL 15: Flannel's buffer holds at most 56).
//! **Deviation:** when the offender carries fewer than 8 payload bytes, Flannel copies whatever
//! stale bytes follow it in its buffer; we copy the packet and pad with zeros (same length).

use std::net::Ipv4Addr;

/// Length of an IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// Length of an ICMP header.
pub const ICMP_HEADER_LEN: usize = 8;
/// Largest offender header Flannel quotes (its buffer is 20 + `MAX_IPOPTLEN` bytes and it
/// refuses headers that fill it).
pub const MAX_QUOTED_HEADER_LEN: usize = 56;
/// Largest ICMP unreachable we build: IP header + ICMP header + quoted header + 8 bytes.
pub const MAX_ICMP_LEN: usize = IPV4_MIN_HEADER_LEN + ICMP_HEADER_LEN + MAX_QUOTED_HEADER_LEN + 8;
/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// TTL Flannel puts in the ICMP replies it generates.
pub const ICMP_REPLY_TTL: u8 = 8;

/// Why a buffer is not an acceptable IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than a minimal IPv4 header (20 bytes).
    #[error("packet of {0} bytes is shorter than an IPv4 header")]
    Truncated(usize),
    /// The version nibble is not 4.
    #[error("IP version {0} is not 4")]
    NotIpv4(u8),
    /// IHL below 5, or the header is longer than the buffer.
    #[error("bad IPv4 header length {0} bytes")]
    BadHeaderLength(usize),
    /// Total length below the header length or above the buffer length.
    #[error("bad IPv4 total length {0}")]
    BadTotalLength(usize),
}

/// The fields of a validated IPv4 header that the backend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Header length in bytes (IHL × 4), ≥ 20 and ≤ the buffer length.
    pub header_len: usize,
    /// Total length in bytes, ≥ `header_len` and ≤ the buffer length.
    pub total_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Upper-layer protocol number.
    pub protocol: u8,
    /// Fragment offset in 8-byte units (flags masked off).
    pub fragment_offset: u16,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
}

/// Validates and parses the IPv4 header at the start of `pkt`. The header checksum is not
/// checked (the kernel checks it on the TUN side; the proxy, like Flannel's, only patches it).
pub fn parse_ipv4(pkt: &[u8]) -> Result<Ipv4Header, HeaderError> {
    let Some(h) = pkt.first_chunk::<IPV4_MIN_HEADER_LEN>() else {
        return Err(HeaderError::Truncated(pkt.len()));
    };
    let version = h[0] >> 4;
    if version != 4 {
        return Err(HeaderError::NotIpv4(version));
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN || header_len > pkt.len() {
        return Err(HeaderError::BadHeaderLength(header_len));
    }
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total_len < header_len || total_len > pkt.len() {
        return Err(HeaderError::BadTotalLength(total_len));
    }
    Ok(Ipv4Header {
        header_len,
        total_len,
        ttl: h[8],
        protocol: h[9],
        fragment_offset: u16::from_be_bytes([h[6], h[7]]) & 0x1fff,
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
    })
}

/// Adds 16-bit big-endian words of `data` (an odd last byte padded with zero) to `sum`
/// without folding.
fn sum_words(data: &[u8], mut sum: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a wide sum into a 16-bit one's complement sum (end-around carry).
#[allow(clippy::cast_possible_truncation)] // the loop leaves sum ≤ 0xffff
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves sum ≤ 0xffff.
    sum as u16
}

/// The Internet checksum (RFC 1071) of `data`: the complement of its one's complement sum.
/// Over a header whose checksum field holds the right value the result is 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

/// Whether the IPv4 header at the start of `pkt` (IHL × 4 bytes) has a correct checksum.
/// `false` when the buffer does not hold a whole header.
pub fn ipv4_checksum_ok(pkt: &[u8]) -> bool {
    let Some(&first) = pkt.first() else {
        return false;
    };
    let len = usize::from(first & 0x0f) * 4;
    match pkt.get(..len) {
        Some(h) if len >= IPV4_MIN_HEADER_LEN => internet_checksum(h) == 0,
        _ => false,
    }
}

/// RFC 1624 eqn. 3: the checksum `check` after one covered 16-bit word changes from `old`
/// to `new`: `HC' = ~(~HC + ~m + m')`.
pub fn checksum_update(check: u16, old: u16, new: u16) -> u16 {
    let sum = u64::from(!check) + u64::from(!old) + u64::from(new);
    !fold(sum)
}

/// Decrements the TTL of the IPv4 header at the start of `pkt` and patches its checksum
/// incrementally. Returns `false`, leaving the packet untouched, when the TTL is 0 or 1 (the
/// packet must be dropped: a router never forwards with TTL 0) or the buffer is shorter than
/// 20 bytes. **Deviation:** Flannel's proxy decrements a TTL of 0 to 255 and forwards it.
pub fn decrement_ttl(pkt: &mut [u8]) -> bool {
    let Some(h) = pkt.first_chunk_mut::<IPV4_MIN_HEADER_LEN>() else {
        return false;
    };
    let ttl = h[8];
    if ttl <= 1 {
        return false;
    }
    let proto = h[9];
    let old = u16::from_be_bytes([ttl, proto]);
    let new = u16::from_be_bytes([ttl - 1, proto]);
    let check = checksum_update(u16::from_be_bytes([h[10], h[11]]), old, new);
    h[8] = ttl - 1;
    h[10..12].copy_from_slice(&check.to_be_bytes());
    true
}

/// An ICMP destination-unreachable packet, held inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IcmpUnreachable {
    buf: [u8; MAX_ICMP_LEN],
    len: u8,
}

impl IcmpUnreachable {
    /// The packet bytes, ready to be written to the TUN device.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for IcmpUnreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcmpUnreachable")
            .field("bytes", &self.as_bytes())
            .finish()
    }
}

/// Builds the ICMP net-unreachable (type 3, code 0) reply to `offender`, whose header `hdr`
/// was parsed from it by [`parse_ipv4`], sent from `from` to the offender's source.
/// `None` when Flannel sends none: the offender is ICMP, a non-first fragment, or has a
/// 60-byte header.
pub fn net_unreachable(
    offender: &[u8],
    hdr: &Ipv4Header,
    from: Ipv4Addr,
) -> Option<IcmpUnreachable> {
    if hdr.header_len > MAX_QUOTED_HEADER_LEN
        || hdr.protocol == IPPROTO_ICMP
        || hdr.fragment_offset != 0
    {
        return None;
    }
    let quoted_len = hdr.header_len + 8;
    let len = IPV4_MIN_HEADER_LEN + ICMP_HEADER_LEN + quoted_len;
    let mut buf = [0u8; MAX_ICMP_LEN];
    let total = u16::try_from(len).ok()?;

    let (ip, rest) = buf.split_at_mut(IPV4_MIN_HEADER_LEN);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = ICMP_REPLY_TTL;
    ip[9] = IPPROTO_ICMP;
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&hdr.src.octets());
    let check = internet_checksum(ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());

    let icmp = &mut rest[..ICMP_HEADER_LEN + quoted_len];
    icmp[0] = 3; // destination unreachable
    icmp[1] = 0; // net unreachable
    let avail = quoted_len.min(hdr.total_len).min(offender.len());
    icmp[ICMP_HEADER_LEN..ICMP_HEADER_LEN + avail].copy_from_slice(&offender[..avail]);
    let check = internet_checksum(icmp);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());

    Some(IcmpUnreachable {
        buf,
        len: u8::try_from(len).ok()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid IPv4/UDP packet 198.18.1.2:1000 → 198.19.9.9:53 with 4 payload bytes.
    fn udp_packet(ttl: u8) -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, ttl, 17, 0, 0, 198, 18, 1, 2, 198, 19,
            9, 9, // IP
            0x03, 0xe8, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, // UDP
            b'a', b'b', b'c', b'd',
        ];
        let c = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn parse_accepts_valid_packet() {
        let p = udp_packet(64);
        let h = parse_ipv4(&p).unwrap();
        assert_eq!(
            h,
            Ipv4Header {
                header_len: 20,
                total_len: 32,
                ttl: 64,
                protocol: 17,
                fragment_offset: 0,
                src: Ipv4Addr::new(198, 18, 1, 2),
                dst: Ipv4Addr::new(198, 19, 9, 9),
            }
        );
        assert!(ipv4_checksum_ok(&p));
    }

    #[test]
    fn parse_rejects_each_malformation() {
        let p = udp_packet(64);
        assert_eq!(parse_ipv4(&p[..19]), Err(HeaderError::Truncated(19)));
        assert_eq!(parse_ipv4(&[]), Err(HeaderError::Truncated(0)));

        let mut q = p.clone();
        q[0] = 0x65;
        assert_eq!(parse_ipv4(&q), Err(HeaderError::NotIpv4(6)));

        q = p.clone();
        q[0] = 0x44;
        assert_eq!(parse_ipv4(&q), Err(HeaderError::BadHeaderLength(16)));
        q[0] = 0x49; // 36-byte header in a 32-byte buffer
        assert_eq!(parse_ipv4(&q), Err(HeaderError::BadHeaderLength(36)));

        q = p.clone();
        q[2..4].copy_from_slice(&33u16.to_be_bytes());
        assert_eq!(parse_ipv4(&q), Err(HeaderError::BadTotalLength(33)));
        q[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(parse_ipv4(&q), Err(HeaderError::BadTotalLength(19)));

        // A buffer longer than the packet is fine (total length wins).
        q = p.clone();
        q.extend_from_slice(&[0; 8]);
        assert_eq!(parse_ipv4(&q).unwrap().total_len, 32);
    }

    #[test]
    fn fragment_offset_masks_flags() {
        let mut p = udp_packet(64);
        p[6] = 0xe0; // all three flag bits, offset 0
        p[7] = 0;
        assert_eq!(parse_ipv4(&p).unwrap().fragment_offset, 0);
        p[6] = 0x20;
        p[7] = 0x01;
        assert_eq!(parse_ipv4(&p).unwrap().fragment_offset, 1);
    }

    #[test]
    fn checksum_known_vector() {
        // RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 → sum ddf2, checksum 220d.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // Odd length pads with a zero byte.
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
    }

    #[test]
    fn decrement_ttl_patches_checksum() {
        let mut p = udp_packet(64);
        assert!(decrement_ttl(&mut p));
        assert_eq!(p[8], 63);
        assert!(ipv4_checksum_ok(&p));
        assert_eq!(p, udp_packet(63));
    }

    #[test]
    fn decrement_ttl_refuses_ttl_0_and_1_and_short_buffers() {
        for ttl in [0, 1] {
            let mut p = udp_packet(ttl);
            let before = p.clone();
            assert!(!decrement_ttl(&mut p));
            assert_eq!(p, before);
        }
        let mut p = udp_packet(2);
        assert!(decrement_ttl(&mut p));
        assert_eq!(p[8], 1);
        assert!(!decrement_ttl(&mut p[..19]));
    }

    /// Golden bytes: the reply to `udp_packet(64)` from TUN address 198.18.0.0 (checksums
    /// computed independently).
    #[test]
    fn net_unreachable_golden() {
        let p = udp_packet(64);
        let h = parse_ipv4(&p).unwrap();
        let r = net_unreachable(&p, &h, Ipv4Addr::new(198, 18, 0, 0)).unwrap();
        #[rustfmt::skip]
        let expect: [u8; 56] = [
            // IP: v4 IHL5, tos 0, len 56, id 0, frag 0, ttl 8, ICMP, checksum, src, dst
            0x45, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x00, 0x08, 0x01, 0x25, 0x9f,
            198, 18, 0, 0, 198, 18, 1, 2,
            // ICMP: type 3 code 0, checksum, unused
            0x03, 0x00, 0xf8, 0xd6, 0x00, 0x00, 0x00, 0x00,
            // offender header + 8 bytes
            0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x92, 0x68,
            198, 18, 1, 2, 198, 19, 9, 9,
            0x03, 0xe8, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00,
        ];
        assert_eq!(r.as_bytes(), &expect);
        assert!(ipv4_checksum_ok(r.as_bytes()));
        assert_eq!(internet_checksum(&r.as_bytes()[20..]), 0);
    }

    #[test]
    fn net_unreachable_quotes_options_and_pads_short_payload() {
        // 24-byte header (one 4-byte option), 2 payload bytes.
        let mut p = vec![
            0x46, 0, 0, 26, 0, 0, 0, 0, 9, 6, 0, 0, 198, 18, 1, 2, 198, 19, 9, 9, 1, 1, 1, 0, 0xaa,
            0xbb,
        ];
        let c = internet_checksum(&p[..24]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&[0xee; 10]); // bytes beyond the packet are not quoted
        let h = parse_ipv4(&p).unwrap();
        let r = net_unreachable(&p, &h, Ipv4Addr::new(198, 18, 1, 0)).unwrap();
        let b = r.as_bytes();
        assert_eq!(b.len(), 20 + 8 + 24 + 8);
        assert_eq!(&b[2..4], &60u16.to_be_bytes());
        assert_eq!(&b[28..54], &p[..26]);
        assert_eq!(&b[54..], &[0; 6]);
        assert!(ipv4_checksum_ok(b));
        assert_eq!(internet_checksum(&b[20..]), 0);
    }

    #[test]
    fn no_net_unreachable_for_icmp_fragments_or_60_byte_headers() {
        let tun = Ipv4Addr::new(198, 18, 0, 0);
        let mut p = udp_packet(64);
        p[9] = IPPROTO_ICMP;
        assert!(net_unreachable(&p, &parse_ipv4(&p).unwrap(), tun).is_none());

        let mut p = udp_packet(64);
        p[6] = 0x00;
        p[7] = 0x03;
        assert!(net_unreachable(&p, &parse_ipv4(&p).unwrap(), tun).is_none());

        let mut p = vec![0u8; 80];
        p[0] = 0x4f;
        p[2..4].copy_from_slice(&80u16.to_be_bytes());
        p[9] = 17;
        assert!(net_unreachable(&p, &parse_ipv4(&p).unwrap(), tun).is_none());
        // 56-byte header is still quoted (the largest Flannel accepts).
        p[0] = 0x4e;
        let r = net_unreachable(&p, &parse_ipv4(&p).unwrap(), tun).unwrap();
        assert_eq!(r.as_bytes().len(), MAX_ICMP_LEN);
    }

    /// A random 20..=60-byte IPv4 header with a correct checksum.
    fn valid_header() -> impl Strategy<Value = Vec<u8>> {
        (5u8..=15).prop_flat_map(|ihl| {
            proptest::collection::vec(any::<u8>(), usize::from(ihl) * 4).prop_map(move |mut h| {
                h[0] = 0x40 | ihl;
                h[10] = 0;
                h[11] = 0;
                let c = internet_checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                h
            })
        })
    }

    proptest! {
        /// RFC 1624 update == full recomputation, for any header and any word change.
        #[test]
        fn incremental_checksum_equals_recomputation(
            mut h in valid_header(),
            word in 0usize..10,
            new in any::<u16>(),
        ) {
            prop_assume!(word != 5); // the checksum field itself
            let old = u16::from_be_bytes([h[2 * word], h[2 * word + 1]]);
            let check = u16::from_be_bytes([h[10], h[11]]);
            let updated = checksum_update(check, old, new);
            h[2 * word..2 * word + 2].copy_from_slice(&new.to_be_bytes());
            h[10] = 0;
            h[11] = 0;
            let full = internet_checksum(&h);
            // One's complement has two zeros; both encodings verify, and both yield the
            // same value unless the covered data sums to zero.
            h[10..12].copy_from_slice(&updated.to_be_bytes());
            prop_assert_eq!(internet_checksum(&h), 0);
            prop_assert_eq!(updated, full);
        }

        /// TTL decrement keeps a valid checksum valid and only touches TTL and checksum.
        #[test]
        fn ttl_decrement_keeps_checksum_valid(mut h in valid_header()) {
            let before = h.clone();
            let ttl = h[8];
            let done = decrement_ttl(&mut h);
            prop_assert_eq!(done, ttl > 1);
            prop_assert!(ipv4_checksum_ok(&h));
            if done {
                prop_assert_eq!(h[8], ttl - 1);
            }
            for (i, (a, b)) in before.iter().zip(&h).enumerate() {
                if !matches!(i, 8 | 10 | 11) {
                    prop_assert_eq!(a, b);
                }
            }
        }

        /// Every reply has valid IP and ICMP checksums and quotes the offender.
        #[test]
        fn net_unreachable_always_well_formed(
            h in valid_header(),
            payload in proptest::collection::vec(any::<u8>(), 0..16),
            tun in any::<u32>(),
        ) {
            let mut p = h.clone();
            p.extend_from_slice(&payload);
            let total = u16::try_from(p.len()).unwrap();
            p[2..4].copy_from_slice(&total.to_be_bytes());
            let hdr = parse_ipv4(&p).unwrap();
            if let Some(r) = net_unreachable(&p, &hdr, Ipv4Addr::from(tun)) {
                let b = r.as_bytes();
                prop_assert_eq!(b.len(), 28 + hdr.header_len + 8);
                prop_assert!(ipv4_checksum_ok(b));
                prop_assert_eq!(internet_checksum(&b[20..]), 0);
                prop_assert_eq!(&b[16..20], &p[12..16]);
                let n = (hdr.header_len + 8).min(p.len());
                prop_assert_eq!(&b[28..28 + n], &p[..n]);
            } else {
                prop_assert!(hdr.header_len == 60 || hdr.protocol == 1 || hdr.fragment_offset != 0);
            }
        }
    }
}
