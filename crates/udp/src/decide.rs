//! Per-packet decisions of the udp proxy, in the style of boringtun: the caller does the I/O,
//! these functions say what to do with one packet and patch it in place.
//!
//! - [`outbound`] (TUN → UDP): validate the header; find the peer whose subnet holds the
//!   destination — none: reply with ICMP net-unreachable to the TUN (as Flannel does, before
//!   looking at the TTL, but sourced from the unreachable destination so the kernel delivers
//!   it), or drop when Flannel would send none; decrement the TTL (drop at
//!   0/1); send `pkt[..len]` to the peer's endpoint.
//! - [`inbound`] (UDP → TUN): validate the header; **beyond Flannel** (whose proxy writes any
//!   datagram to the TUN), accept it only when the sender's address *and* port are a current
//!   peer's endpoint and the inner source address lies in that same peer's leased subnet, and
//!   the inner destination lies in our own subnet (so a peer cannot use us as a relay);
//!   decrement the TTL; deliver `pkt[..len]`.
//!
//! Bytes after the IPv4 total length are ignored (Flannel would forward them too).
//! [`Counters`] tallies the outcomes.

use std::net::SocketAddrV4;

use ipnet::Ipv4Net;

use crate::packet::{self, HeaderError, IcmpUnreachable};
use crate::route::PeerTable;

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an IPv4 header.
    Truncated,
    /// Version is not 4.
    NotIpv4,
    /// IHL below 5 or beyond the buffer.
    BadHeaderLength,
    /// Total length below the header length or beyond the buffer.
    BadTotalLength,
    /// TTL was 0 or 1.
    TtlExpired,
    /// Outbound: no peer for the destination, and no ICMP reply allowed (the packet is ICMP,
    /// a non-first fragment, or has a 60-byte header).
    NoRoute,
    /// Inbound: the sender is not any current peer's endpoint.
    UnknownPeer,
    /// Inbound: the sender is a peer, but the inner source is not in its leased subnet.
    SpoofedSource,
    /// Inbound: the inner destination is not in our own subnet (we are not a relay).
    ForeignDestination,
}

impl From<HeaderError> for DropReason {
    fn from(e: HeaderError) -> DropReason {
        match e {
            HeaderError::Truncated(_) => DropReason::Truncated,
            HeaderError::NotIpv4(_) => DropReason::NotIpv4,
            HeaderError::BadHeaderLength(_) => DropReason::BadHeaderLength,
            HeaderError::BadTotalLength(_) => DropReason::BadTotalLength,
        }
    }
}

/// What to do with a packet read from the TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Send `pkt[..len]` (TTL already decremented) as one UDP datagram to `to`.
    SendTo {
        /// The peer's endpoint.
        to: SocketAddrV4,
        /// The IPv4 total length.
        len: usize,
    },
    /// Write this ICMP net-unreachable to the TUN device; drop the packet.
    Reply(IcmpUnreachable),
    /// Drop the packet.
    Drop(DropReason),
}

/// What to do with a datagram received on the UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Write `pkt[..len]` (TTL already decremented) to the TUN device.
    Deliver {
        /// The IPv4 total length.
        len: usize,
    },
    /// Drop the datagram.
    Drop(DropReason),
}

/// Decides the fate of `pkt`, read from the TUN device.
///
/// A destination no lease covers is answered with ICMP net-unreachable sent *from that
/// destination*. Flannel sends it from the TUN device's own address, which the kernel drops on
/// arrival as a martian (a packet coming in with one of the host's own addresses as its
/// source), so Flannel's replies never reach the sender; ours do.
pub fn outbound(pkt: &mut [u8], table: &PeerTable) -> Outbound {
    let hdr = match packet::parse_ipv4(pkt) {
        Ok(h) => h,
        Err(e) => return Outbound::Drop(e.into()),
    };
    let Some(peer) = table.lookup(hdr.dst) else {
        return match packet::net_unreachable(pkt, &hdr, hdr.dst) {
            Some(icmp) => Outbound::Reply(icmp),
            None => Outbound::Drop(DropReason::NoRoute),
        };
    };
    if !packet::decrement_ttl(pkt) {
        return Outbound::Drop(DropReason::TtlExpired);
    }
    Outbound::SendTo {
        to: peer.endpoint,
        len: hdr.total_len,
    }
}

/// Decides the fate of the UDP payload `pkt` received from `from`, on the node whose leased
/// subnet is `local`.
pub fn inbound(pkt: &mut [u8], from: SocketAddrV4, table: &PeerTable, local: Ipv4Net) -> Inbound {
    let hdr = match packet::parse_ipv4(pkt) {
        Ok(h) => h,
        Err(e) => return Inbound::Drop(e.into()),
    };
    match table.lookup(hdr.src) {
        Some(peer) if peer.endpoint == from => {}
        _ if table.has_endpoint(from) => return Inbound::Drop(DropReason::SpoofedSource),
        _ => return Inbound::Drop(DropReason::UnknownPeer),
    }
    if !local.contains(&hdr.dst) {
        return Inbound::Drop(DropReason::ForeignDestination);
    }
    if !packet::decrement_ttl(pkt) {
        return Inbound::Drop(DropReason::TtlExpired);
    }
    Inbound::Deliver { len: hdr.total_len }
}

/// Packet counters: one per outcome and per drop reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Outbound packets sent to a peer.
    pub forwarded: u64,
    /// Inbound packets written to the TUN device.
    pub delivered: u64,
    /// ICMP net-unreachable replies generated.
    pub unreachable_replies: u64,
    /// Drops: [`DropReason::Truncated`].
    pub truncated: u64,
    /// Drops: [`DropReason::NotIpv4`].
    pub not_ipv4: u64,
    /// Drops: [`DropReason::BadHeaderLength`].
    pub bad_header_length: u64,
    /// Drops: [`DropReason::BadTotalLength`].
    pub bad_total_length: u64,
    /// Drops: [`DropReason::TtlExpired`].
    pub ttl_expired: u64,
    /// Drops: [`DropReason::NoRoute`].
    pub no_route: u64,
    /// Drops: [`DropReason::UnknownPeer`].
    pub unknown_peer: u64,
    /// Drops: [`DropReason::SpoofedSource`].
    pub spoofed_source: u64,
    /// Drops: [`DropReason::ForeignDestination`].
    pub foreign_destination: u64,
}

impl std::ops::AddAssign for Counters {
    /// Adds another worker's counts (wrapping, like the counters themselves).
    fn add_assign(&mut self, o: Counters) {
        let Counters {
            forwarded,
            delivered,
            unreachable_replies,
            truncated,
            not_ipv4,
            bad_header_length,
            bad_total_length,
            ttl_expired,
            no_route,
            unknown_peer,
            spoofed_source,
            foreign_destination,
        } = o;
        for (a, b) in [
            (&mut self.forwarded, forwarded),
            (&mut self.delivered, delivered),
            (&mut self.unreachable_replies, unreachable_replies),
            (&mut self.truncated, truncated),
            (&mut self.not_ipv4, not_ipv4),
            (&mut self.bad_header_length, bad_header_length),
            (&mut self.bad_total_length, bad_total_length),
            (&mut self.ttl_expired, ttl_expired),
            (&mut self.no_route, no_route),
            (&mut self.unknown_peer, unknown_peer),
            (&mut self.spoofed_source, spoofed_source),
            (&mut self.foreign_destination, foreign_destination),
        ] {
            *a = a.wrapping_add(b);
        }
    }
}

impl Counters {
    /// Counts one drop.
    pub fn record_drop(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Truncated => &mut self.truncated,
            DropReason::NotIpv4 => &mut self.not_ipv4,
            DropReason::BadHeaderLength => &mut self.bad_header_length,
            DropReason::BadTotalLength => &mut self.bad_total_length,
            DropReason::TtlExpired => &mut self.ttl_expired,
            DropReason::NoRoute => &mut self.no_route,
            DropReason::UnknownPeer => &mut self.unknown_peer,
            DropReason::SpoofedSource => &mut self.spoofed_source,
            DropReason::ForeignDestination => &mut self.foreign_destination,
        };
        *c = c.wrapping_add(1);
    }

    /// Counts one [`outbound`] decision.
    pub fn record_outbound(&mut self, decision: &Outbound) {
        match decision {
            Outbound::SendTo { .. } => self.forwarded = self.forwarded.wrapping_add(1),
            Outbound::Reply(_) => {
                self.unreachable_replies = self.unreachable_replies.wrapping_add(1)
            }
            Outbound::Drop(r) => self.record_drop(*r),
        }
    }

    /// Counts one [`inbound`] decision.
    pub fn record_inbound(&mut self, decision: &Inbound) {
        match decision {
            Inbound::Deliver { .. } => self.delivered = self.delivered.wrapping_add(1),
            Inbound::Drop(r) => self.record_drop(*r),
        }
    }

    /// Drops per reason, named as the fields are (the order of [`DropReason`]).
    pub fn drops(&self) -> [(&'static str, u64); 9] {
        [
            ("truncated", self.truncated),
            ("not_ipv4", self.not_ipv4),
            ("bad_header_length", self.bad_header_length),
            ("bad_total_length", self.bad_total_length),
            ("ttl_expired", self.ttl_expired),
            ("no_route", self.no_route),
            ("unknown_peer", self.unknown_peer),
            ("spoofed_source", self.spoofed_source),
            ("foreign_destination", self.foreign_destination),
        ]
    }

    /// Total drops over all reasons.
    pub fn dropped(&self) -> u64 {
        [
            self.truncated,
            self.not_ipv4,
            self.bad_header_length,
            self.bad_total_length,
            self.ttl_expired,
            self.no_route,
            self.unknown_peer,
            self.spoofed_source,
            self.foreign_destination,
        ]
        .iter()
        .fold(0u64, |a, b| a.wrapping_add(*b))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::packet::{internet_checksum, ipv4_checksum_ok};
    use ipnet::Ipv4Net;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const PEER1: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 8285);
    const PEER2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 8285);

    /// Our own lease (TUN's subnet).
    fn local() -> Ipv4Net {
        "198.18.0.0/24".parse().unwrap()
    }

    fn table() -> PeerTable {
        let mut t = PeerTable::new();
        t.upsert("198.18.1.0/24".parse::<Ipv4Net>().unwrap(), PEER1);
        t.upsert("198.18.2.0/24".parse::<Ipv4Net>().unwrap(), PEER2);
        t
    }

    /// A valid IPv4/UDP packet with 8 payload bytes (plus `extra` trailing junk bytes).
    fn pkt(src: [u8; 4], dst: [u8; 4], ttl: u8, proto: u8, extra: usize) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 36, 0, 1, 0, 0, ttl, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0x00, 0x10, 0x00, 0x00]);
        p.extend_from_slice(b"payload!");
        let c = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend(std::iter::repeat_n(0xee, extra));
        p
    }

    #[test]
    fn outbound_sends_to_peer_with_ttl_decremented() {
        let t = table();
        let mut p = pkt([198, 18, 0, 5], [198, 18, 2, 9], 64, 17, 3);
        let d = outbound(&mut p, &t);
        assert_eq!(d, Outbound::SendTo { to: PEER2, len: 36 });
        assert_eq!(p[8], 63);
        assert!(ipv4_checksum_ok(&p));
        assert_eq!(&p[36..], &[0xee; 3]);
    }

    #[test]
    fn outbound_replies_unreachable_for_unknown_destination() {
        let t = table();
        let mut p = pkt([198, 18, 0, 5], [198, 18, 3, 9], 64, 17, 0);
        let before = p.clone();
        let Outbound::Reply(icmp) = outbound(&mut p, &t) else {
            panic!("expected a reply");
        };
        assert_eq!(p, before, "the offender is not modified");
        let b = icmp.as_bytes();
        assert_eq!(
            &b[12..16],
            &[198, 18, 3, 9],
            "from the unreachable destination"
        );
        assert_eq!(&b[16..20], &[198, 18, 0, 5]);
        assert_eq!(&b[20..22], &[3, 0]);
        assert_eq!(&b[28..], &before[..28]);
    }

    #[test]
    fn outbound_unknown_destination_ignores_ttl_like_flannel() {
        let mut p = pkt([198, 18, 0, 5], [203, 0, 113, 1], 1, 6, 0);
        assert!(matches!(outbound(&mut p, &table()), Outbound::Reply(_)));
    }

    #[test]
    fn outbound_no_reply_for_icmp_or_later_fragment() {
        let t = table();
        let mut p = pkt([198, 18, 0, 5], [198, 18, 3, 9], 64, 1, 0);
        assert_eq!(outbound(&mut p, &t), Outbound::Drop(DropReason::NoRoute));
        let mut p = pkt([198, 18, 0, 5], [198, 18, 3, 9], 64, 17, 0);
        p[6] = 0x20;
        p[7] = 0x10;
        assert_eq!(outbound(&mut p, &t), Outbound::Drop(DropReason::NoRoute));
    }

    #[test]
    fn outbound_drops_expired_ttl_unchanged() {
        for ttl in [0, 1] {
            let mut p = pkt([198, 18, 0, 5], [198, 18, 1, 9], ttl, 17, 0);
            let before = p.clone();
            assert_eq!(
                outbound(&mut p, &table()),
                Outbound::Drop(DropReason::TtlExpired)
            );
            assert_eq!(p, before);
        }
    }

    #[test]
    fn malformed_packets_are_dropped_with_their_reason() {
        let t = table();
        let good = pkt([198, 18, 1, 5], [198, 18, 0, 9], 64, 17, 0);
        let cases: [(Vec<u8>, DropReason); 4] = [
            (good[..19].to_vec(), DropReason::Truncated),
            (
                {
                    let mut p = good.clone();
                    p[0] = 0x60;
                    p
                },
                DropReason::NotIpv4,
            ),
            (
                {
                    let mut p = good.clone();
                    p[0] = 0x43;
                    p
                },
                DropReason::BadHeaderLength,
            ),
            (
                {
                    let mut p = good.clone();
                    p[3] = 37;
                    p
                },
                DropReason::BadTotalLength,
            ),
        ];
        for (p, reason) in cases {
            let mut a = p.clone();
            assert_eq!(outbound(&mut a, &t), Outbound::Drop(reason));
            let mut b = p.clone();
            assert_eq!(inbound(&mut b, PEER1, &t, local()), Inbound::Drop(reason));
            assert_eq!((a, b), (p.clone(), p), "dropped packets are not modified");
        }
    }

    #[test]
    fn inbound_delivers_from_the_owning_peer() {
        let mut p = pkt([198, 18, 1, 5], [198, 18, 0, 9], 64, 17, 2);
        assert_eq!(
            inbound(&mut p, PEER1, &table(), local()),
            Inbound::Deliver { len: 36 }
        );
        assert_eq!(p[8], 63);
        assert!(ipv4_checksum_ok(&p));
    }

    #[test]
    fn inbound_rejects_unknown_senders_and_spoofed_sources() {
        let t = table();
        let p = pkt([198, 18, 1, 5], [198, 18, 0, 9], 64, 17, 0);
        // Right IP, wrong port; unknown IP.
        for from in [
            SocketAddrV4::new(*PEER1.ip(), 8286),
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 8285),
        ] {
            let mut q = p.clone();
            assert_eq!(
                inbound(&mut q, from, &t, local()),
                Inbound::Drop(DropReason::UnknownPeer)
            );
            assert_eq!(q, p);
        }
        // A peer sending with another peer's source address, or an address nobody leases.
        let mut q = p.clone();
        assert_eq!(
            inbound(&mut q, PEER2, &t, local()),
            Inbound::Drop(DropReason::SpoofedSource)
        );
        let mut q = pkt([10, 0, 0, 1], [198, 18, 0, 9], 64, 17, 0);
        assert_eq!(
            inbound(&mut q, PEER2, &t, local()),
            Inbound::Drop(DropReason::SpoofedSource)
        );
    }

    #[test]
    fn inbound_refuses_to_relay_to_foreign_destinations() {
        let t = table();
        // From the right peer with its own source, but addressed to another peer's pod, to an
        // address outside the network, or to the neighbouring /24 of ours.
        for dst in [
            [198, 18, 2, 9],
            [203, 0, 113, 1],
            [198, 18, 1, 7],
            [198, 19, 0, 9],
        ] {
            let p = pkt([198, 18, 1, 5], dst, 64, 17, 0);
            let mut q = p.clone();
            assert_eq!(
                inbound(&mut q, PEER1, &t, local()),
                Inbound::Drop(DropReason::ForeignDestination),
                "{dst:?}"
            );
            assert_eq!(q, p, "dropped packets are not modified");
        }
        // Both ends of our own subnet are ours.
        for dst in [[198, 18, 0, 0], [198, 18, 0, 255]] {
            let mut q = pkt([198, 18, 1, 5], dst, 64, 17, 0);
            assert_eq!(
                inbound(&mut q, PEER1, &t, local()),
                Inbound::Deliver { len: 36 }
            );
        }
    }

    #[test]
    fn inbound_drops_expired_ttl() {
        let mut p = pkt([198, 18, 1, 5], [198, 18, 0, 9], 1, 17, 0);
        assert_eq!(
            inbound(&mut p, PEER1, &table(), local()),
            Inbound::Drop(DropReason::TtlExpired)
        );
    }

    #[test]
    fn counters_tally_each_outcome() {
        let mut c = Counters::default();
        c.record_outbound(&Outbound::SendTo { to: PEER1, len: 20 });
        let mut p = pkt([198, 18, 0, 5], [198, 18, 3, 9], 64, 17, 0);
        c.record_outbound(&outbound(&mut p, &table()));
        c.record_inbound(&Inbound::Deliver { len: 20 });
        let reasons = [
            DropReason::Truncated,
            DropReason::NotIpv4,
            DropReason::BadHeaderLength,
            DropReason::BadTotalLength,
            DropReason::TtlExpired,
            DropReason::NoRoute,
            DropReason::UnknownPeer,
            DropReason::SpoofedSource,
            DropReason::ForeignDestination,
        ];
        for (i, r) in reasons.iter().enumerate() {
            for _ in 0..=i {
                c.record_inbound(&Inbound::Drop(*r));
            }
        }
        c.record_outbound(&Outbound::Drop(DropReason::NoRoute));
        assert_eq!(
            c,
            Counters {
                forwarded: 1,
                delivered: 1,
                unreachable_replies: 1,
                truncated: 1,
                not_ipv4: 2,
                bad_header_length: 3,
                bad_total_length: 4,
                ttl_expired: 5,
                no_route: 7,
                unknown_peer: 7,
                spoofed_source: 8,
                foreign_destination: 9,
            }
        );
        assert_eq!(c.dropped(), 46);
    }

    /// Bytes that are often almost-valid IPv4 packets, with addresses near the table's.
    fn packetish() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            (
                proptest::collection::vec(any::<u8>(), 20..80),
                0u8..16,
                0u8..4,
                0u8..4
            )
                .prop_map(|(mut p, ihl, s, d)| {
                    p[0] = 0x40 | ihl;
                    let len = u16::try_from(p.len()).unwrap();
                    p[2..4].copy_from_slice(&len.to_be_bytes());
                    p[12..16].copy_from_slice(&[198, 18, s, 5]);
                    p[16..20].copy_from_slice(&[198, 18, d, 9]);
                    p
                }),
        ]
    }

    proptest! {
        #[test]
        fn decisions_never_panic_and_stay_in_bounds(
            bytes in packetish(),
            port in prop_oneof![Just(8285u16), any::<u16>()],
            peer in 1u8..4,
        ) {
            let t = table();
            let mut a = bytes.clone();
            match outbound(&mut a, &t) {
                Outbound::SendTo { len, .. } => {
                    prop_assert!(len <= a.len());
                    prop_assert!(ipv4_checksum_ok(&bytes) <= ipv4_checksum_ok(&a));
                }
                Outbound::Reply(r) => {
                    prop_assert!(ipv4_checksum_ok(r.as_bytes()));
                    prop_assert_eq!(a, bytes.clone());
                }
                Outbound::Drop(_) => prop_assert_eq!(a, bytes.clone()),
            }
            let from = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, peer), port);
            let mut b = bytes.clone();
            match inbound(&mut b, from, &t, local()) {
                Inbound::Deliver { len } => {
                    prop_assert!(len <= b.len());
                    prop_assert_eq!(t.lookup(Ipv4Addr::new(b[12], b[13], b[14], b[15])).map(|p| p.endpoint), Some(from));
                    prop_assert!(local().contains(&Ipv4Addr::new(b[16], b[17], b[18], b[19])));
                    prop_assert!(ipv4_checksum_ok(&bytes) <= ipv4_checksum_ok(&b));
                }
                Inbound::Drop(_) => prop_assert_eq!(b, bytes),
            }
        }
    }
}
