//! Grouping a batch of decided outbound packets into UDP sends (pure, no I/O).
//!
//! With UDP GSO (`UDP_SEGMENT`) one `sendmsg` carries a run of datagrams to one peer: every
//! datagram of the run has the run's segment size except the last, which may be shorter, and
//! the kernel cuts the buffer at segment boundaries. Each datagram is still exactly one inner
//! IPv4 packet (Flannel's wire format); GSO only saves system calls.
//!
//! [`Grouper::group`] takes the packets of a batch in the order they were read (already
//! decided: destination and length) and forms sends:
//!
//! - a packet joins the open send of its destination when it is not longer than that send's
//!   segment size, the send is not closed (a shorter packet closes it: it must be the last),
//!   and the send stays within [`Limits`]; otherwise it opens a new send for its destination;
//! - sends come out in the order they were opened, so the packets of one destination leave in
//!   the order they were read (packets to *different* peers may be reordered among each
//!   other, which nothing can observe).
//!
//! The grouper keeps its vectors between batches: grouping does not allocate once warm.

use std::net::SocketAddrV4;

/// The largest UDP payload of one IPv4 `sendmsg` (65535 − 20 − 8): the kernel refuses a GSO
/// buffer beyond it.
pub const GSO_MAX_BYTES: usize = 65_507;

/// The kernel's limit on segments in one GSO send (`UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// How large one send may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most datagrams in one send (1 = no GSO: every packet its own send).
    pub max_segments: usize,
    /// Most payload bytes in one send.
    pub max_bytes: usize,
}

impl Limits {
    /// The limits for a socket that takes up to `max_segments` segments per send (as the
    /// socket reports it; capped at [`GSO_MAX_SEGMENTS`], at least 1).
    pub fn gso(max_segments: usize) -> Limits {
        Limits {
            max_segments: max_segments.clamp(1, GSO_MAX_SEGMENTS),
            max_bytes: GSO_MAX_BYTES,
        }
    }
}

/// One send: the packets `Grouper::packets(send)` to `to` (the peer's endpoint: a
/// `SocketAddrV4` for the udp backend, any `Copy + Eq` destination for other users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send<D = SocketAddrV4> {
    /// The peer's endpoint.
    pub to: D,
    /// The length of every packet of the send but the last (which is not longer).
    pub segment_size: usize,
    /// Number of packets.
    pub count: usize,
    /// Sum of the packets' lengths.
    pub bytes: usize,
    /// Where its packets start in the grouper's order.
    start: usize,
    /// A shorter packet was added: nothing may follow it.
    closed: bool,
}

/// Groups batches of packets into sends; reused from batch to batch.
#[derive(Debug)]
pub struct Grouper<D = SocketAddrV4> {
    sends: Vec<Send<D>>,
    /// Packet ids, grouped by send.
    order: Vec<usize>,
    /// `(packet id, send index)` in input order (scratch).
    assigned: Vec<(usize, usize)>,
    /// `(destination, index of its open send)` (scratch; few peers per batch).
    open: Vec<(D, usize)>,
    /// Per send, where its next packet goes in `order` (scratch).
    cursor: Vec<usize>,
}

impl<D> Default for Grouper<D> {
    fn default() -> Self {
        Grouper {
            sends: Vec::new(),
            order: Vec::new(),
            assigned: Vec::new(),
            open: Vec::new(),
            cursor: Vec::new(),
        }
    }
}

impl<D: Copy + Eq> Grouper<D> {
    /// An empty grouper.
    pub fn new() -> Grouper<D> {
        Grouper::default()
    }

    /// Groups `packets` — `(id, destination, length)` in the order they were read; the id is
    /// the caller's (e.g. a buffer slot) and comes back from [`Grouper::packets`] — replacing
    /// the previous batch's sends.
    pub fn group(&mut self, packets: impl IntoIterator<Item = (usize, D, usize)>, limits: Limits) {
        self.sends.clear();
        self.order.clear();
        self.assigned.clear();
        self.open.clear();
        let max_segments = limits.max_segments.max(1);
        for (id, to, len) in packets {
            let open = self.open.iter().position(|(d, _)| *d == to);
            let joined = open.and_then(|o| {
                let si = self.open[o].1;
                let s = &mut self.sends[si];
                let fits = !s.closed
                    && len <= s.segment_size
                    && s.count < max_segments
                    && s.bytes.saturating_add(len) <= limits.max_bytes;
                if !fits {
                    return None;
                }
                s.count += 1;
                s.bytes += len;
                s.closed = len < s.segment_size;
                Some(si)
            });
            let si = match joined {
                Some(si) => si,
                None => {
                    let si = self.sends.len();
                    self.sends.push(Send {
                        to,
                        segment_size: len,
                        count: 1,
                        bytes: len,
                        start: 0,
                        closed: false,
                    });
                    match open {
                        Some(o) => self.open[o].1 = si,
                        None => self.open.push((to, si)),
                    }
                    si
                }
            };
            self.assigned.push((id, si));
        }
        // Lay the packets out send by send, each send's packets in input order.
        let mut next = 0;
        self.cursor.clear();
        for s in &mut self.sends {
            s.start = next;
            self.cursor.push(next);
            next += s.count;
        }
        self.order.resize(next, 0);
        for &(id, si) in &self.assigned {
            let at = &mut self.cursor[si];
            self.order[*at] = id;
            *at += 1;
        }
    }

    /// The sends of the last batch, in order.
    pub fn sends(&self) -> &[Send<D>] {
        &self.sends
    }

    /// The packet ids of `send`, in the order they were read.
    pub fn packets(&self, send: &Send<D>) -> &[usize] {
        &self.order[send.start..send.start + send.count]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn peer(n: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, n), 8285)
    }

    /// `(to, segment size, packet ids)` of each send.
    fn grouped(
        packets: &[(SocketAddrV4, usize)],
        limits: Limits,
    ) -> Vec<(SocketAddrV4, usize, Vec<usize>)> {
        let mut g = Grouper::new();
        g.group(
            packets
                .iter()
                .enumerate()
                .map(|(i, (to, len))| (i, *to, *len)),
            limits,
        );
        g.sends()
            .iter()
            .map(|s| (s.to, s.segment_size, g.packets(s).to_vec()))
            .collect()
    }

    #[test]
    fn a_split_super_packet_fills_sends_up_to_the_byte_limit() {
        // 64 KiB of TCP at MTU 1472: 44 full segments fit 65,507 bytes, the rest goes next.
        let mut pkts = vec![(peer(1), 1472); 45];
        pkts.push((peer(1), 600));
        let s = grouped(&pkts, Limits::gso(64));
        assert_eq!(
            s,
            vec![
                (peer(1), 1472, (0..44).collect()),
                (peer(1), 1472, vec![44, 45]),
            ]
        );
    }

    #[test]
    fn interleaved_peers_get_one_send_each_in_their_order() {
        let pkts = [
            (peer(1), 100),
            (peer(2), 100),
            (peer(1), 100),
            (peer(2), 60),
            (peer(1), 100),
        ];
        assert_eq!(
            grouped(&pkts, Limits::gso(64)),
            vec![(peer(1), 100, vec![0, 2, 4]), (peer(2), 100, vec![1, 3])]
        );
    }

    #[test]
    fn a_shorter_packet_ends_its_send_and_a_longer_one_starts_a_new_one() {
        let pkts = [
            (peer(1), 1000),
            (peer(1), 500),
            (peer(1), 1000),
            (peer(1), 1200),
        ];
        assert_eq!(
            grouped(&pkts, Limits::gso(64)),
            vec![
                (peer(1), 1000, vec![0, 1]),
                (peer(1), 1000, vec![2]),
                (peer(1), 1200, vec![3]),
            ]
        );
    }

    #[test]
    fn without_gso_every_packet_is_its_own_send() {
        let pkts = [(peer(1), 100), (peer(1), 100), (peer(2), 100)];
        assert_eq!(
            grouped(&pkts, Limits::gso(1)),
            vec![
                (peer(1), 100, vec![0]),
                (peer(1), 100, vec![1]),
                (peer(2), 100, vec![2]),
            ]
        );
        assert_eq!(Limits::gso(0).max_segments, 1);
        assert_eq!(Limits::gso(1000).max_segments, GSO_MAX_SEGMENTS);
    }

    #[test]
    fn the_grouper_forgets_the_previous_batch() {
        let mut g = Grouper::new();
        g.group([(0, peer(1), 10), (1, peer(1), 10)], Limits::gso(64));
        g.group([(7, peer(2), 20)], Limits::gso(64));
        assert_eq!(g.sends().len(), 1);
        assert_eq!(g.packets(&g.sends()[0]), &[7]);
        g.group(std::iter::empty(), Limits::gso(64));
        assert!(g.sends().is_empty());
    }

    fn batches() -> impl Strategy<Value = Vec<(SocketAddrV4, usize)>> {
        let len = prop_oneof![
            6 => Just(1472usize),
            2 => Just(52usize),
            2 => 20usize..1473,
        ];
        proptest::collection::vec((1u8..4, len).prop_map(|(p, l)| (peer(p), l)), 0..300)
    }

    proptest! {
        #[test]
        fn grouping_keeps_every_packet_once_in_order_within_limits(
            pkts in batches(),
            max_segments in 1usize..70,
            small_bytes in any::<bool>(),
        ) {
            let limits = Limits {
                max_segments: max_segments.min(GSO_MAX_SEGMENTS),
                max_bytes: if small_bytes { 4000 } else { GSO_MAX_BYTES },
            };
            let sends = grouped(&pkts, limits);
            // Every packet exactly once.
            let mut all: Vec<usize> = sends.iter().flat_map(|s| s.2.iter().copied()).collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..pkts.len()).collect::<Vec<_>>());
            // Per destination, the order read.
            for p in 1u8..4 {
                let sent: Vec<usize> = sends
                    .iter()
                    .filter(|s| s.0 == peer(p))
                    .flat_map(|s| s.2.iter().copied())
                    .collect();
                let read: Vec<usize> = (0..pkts.len()).filter(|&i| pkts[i].0 == peer(p)).collect();
                prop_assert_eq!(sent, read);
            }
            for (to, seg, ids) in &sends {
                prop_assert!(!ids.is_empty());
                prop_assert!(ids.len() <= limits.max_segments);
                let bytes: usize = ids.iter().map(|&i| pkts[i].1).sum();
                prop_assert!(bytes <= limits.max_bytes || ids.len() == 1);
                let (last, init) = ids.split_last().unwrap();
                for &i in init {
                    prop_assert_eq!(pkts[i].1, *seg, "equal-size segments");
                }
                prop_assert!(pkts[*last].1 <= *seg, "the last may be shorter");
                for &i in ids {
                    prop_assert_eq!(pkts[i].0, *to);
                }
            }
        }
    }
}
