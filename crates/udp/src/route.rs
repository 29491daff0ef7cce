//! The udp backend's peer table: leased subnet → the peer's UDP endpoint.
//!
//! Flannel's C proxy keeps a linear array with move-to-front and takes the first entry whose
//! subnet contains the destination. Here entries are grouped by prefix length (normally a
//! single group, since every lease of a network has the same `SubnetLen`), each group a vector
//! sorted by network address; a lookup masks the address and binary-searches each group from
//! the longest prefix to the shortest, so it costs O(k log n) for k distinct prefix lengths and
//! is a longest-prefix match even if leases overlap (Flannel's pick would be arbitrary).
//!
//! A udp lease carries only `PublicIP`; the UDP port is the backend's `Port` option (default
//! [`DEFAULT_PORT`]), the same for every node of the network.

use std::net::{Ipv4Addr, SocketAddrV4};

use flannel_model::lease::Lease;
use ipnet::Ipv4Net;

/// Flannel's default udp backend port.
pub const DEFAULT_PORT: u16 = 8285;

/// One remote node: its leased IPv4 subnet and the UDP endpoint its proxy listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The leased subnet (canonical: host bits zero).
    pub subnet: Ipv4Net,
    /// `PublicIP:Port` of the peer.
    pub endpoint: SocketAddrV4,
}

/// All entries of one prefix length, sorted by network address.
#[derive(Debug, Clone, Default)]
struct LenGroup {
    prefix_len: u8,
    mask: u32,
    /// `(network address, endpoint)`, sorted by network address, unique.
    entries: Vec<(u32, SocketAddrV4)>,
}

/// Leased subnet → peer endpoint, with fast lookups by destination and by endpoint.
///
/// The caller keeps its own lease out of the table (Flannel's lease watcher never reports it).
#[derive(Debug, Clone, Default)]
pub struct PeerTable {
    /// Sorted by prefix length, longest first; no group is empty.
    groups: Vec<LenGroup>,
    /// Every endpoint in the table, sorted, with duplicates (one per subnet).
    endpoints: Vec<SocketAddrV4>,
}

fn mask_of(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl PeerTable {
    /// An empty table.
    pub fn new() -> PeerTable {
        PeerTable::default()
    }

    /// Builds the table from leases: `subnet.ipv4` → `attrs.public_ip:port`.
    ///
    /// Leases whose `PublicIP` is `0.0.0.0` (unset) are skipped: there is nowhere to send to.
    /// When two leases name the same subnet, the later one wins.
    pub fn from_leases<'a>(leases: impl IntoIterator<Item = &'a Lease>, port: u16) -> PeerTable {
        let mut table = PeerTable::new();
        for lease in leases {
            table.insert_unindexed(lease_peer(lease, port));
        }
        table.reindex_endpoints();
        table
    }

    /// Adds or replaces the peer for a lease (a lease-added event). Returns `false` (and changes
    /// nothing) when the lease has no usable `PublicIP`.
    pub fn apply_lease(&mut self, lease: &Lease, port: u16) -> bool {
        match lease_peer(lease, port) {
            Some(peer) => {
                self.upsert(peer.subnet, peer.endpoint);
                true
            }
            None => false,
        }
    }

    /// Adds `subnet → endpoint`, replacing any entry for the same subnet. Host bits of `subnet`
    /// are ignored.
    pub fn upsert(&mut self, subnet: Ipv4Net, endpoint: SocketAddrV4) {
        self.insert_unindexed(Some(Peer { subnet, endpoint }));
        self.reindex_endpoints();
    }

    /// Removes the entry for `subnet` (a lease-removed event); `true` if there was one.
    pub fn remove(&mut self, subnet: Ipv4Net) -> bool {
        let subnet = subnet.trunc();
        let len = subnet.prefix_len();
        let net = u32::from(subnet.network());
        let Some(gi) = self.groups.iter().position(|g| g.prefix_len == len) else {
            return false;
        };
        let group = &mut self.groups[gi];
        let Ok(i) = group.entries.binary_search_by_key(&net, |e| e.0) else {
            return false;
        };
        group.entries.remove(i);
        if group.entries.is_empty() {
            self.groups.remove(gi);
        }
        self.reindex_endpoints();
        true
    }

    /// The peer whose subnet contains `addr` (longest prefix wins).
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<Peer> {
        let a = u32::from(addr);
        self.groups.iter().find_map(|g| {
            let net = a & g.mask;
            g.entries
                .binary_search_by_key(&net, |e| e.0)
                .ok()
                .map(|i| Peer {
                    subnet: Ipv4Net::new_assert(Ipv4Addr::from(net), g.prefix_len),
                    endpoint: g.entries[i].1,
                })
        })
    }

    /// Whether some peer in the table uses `endpoint` (address and port).
    pub fn has_endpoint(&self, endpoint: SocketAddrV4) -> bool {
        self.endpoints.binary_search(&endpoint).is_ok()
    }

    /// Number of subnets in the table.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.entries.len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// All peers, longest prefix first, then by network address.
    pub fn iter(&self) -> impl Iterator<Item = Peer> + '_ {
        self.groups.iter().flat_map(|g| {
            g.entries.iter().map(move |&(net, endpoint)| Peer {
                subnet: Ipv4Net::new_assert(Ipv4Addr::from(net), g.prefix_len),
                endpoint,
            })
        })
    }

    fn insert_unindexed(&mut self, peer: Option<Peer>) {
        let Some(peer) = peer else { return };
        let subnet = peer.subnet.trunc();
        let len = subnet.prefix_len();
        let net = u32::from(subnet.network());
        let gi = match self.groups.binary_search_by(|g| len.cmp(&g.prefix_len)) {
            Ok(gi) => gi,
            Err(gi) => {
                self.groups.insert(
                    gi,
                    LenGroup {
                        prefix_len: len,
                        mask: mask_of(len),
                        entries: Vec::new(),
                    },
                );
                gi
            }
        };
        let entries = &mut self.groups[gi].entries;
        match entries.binary_search_by_key(&net, |e| e.0) {
            Ok(i) => entries[i].1 = peer.endpoint,
            Err(i) => entries.insert(i, (net, peer.endpoint)),
        }
    }

    fn reindex_endpoints(&mut self) {
        self.endpoints.clear();
        self.endpoints.extend(
            self.groups
                .iter()
                .flat_map(|g| g.entries.iter().map(|e| e.1)),
        );
        self.endpoints.sort_unstable();
    }
}

fn lease_peer(lease: &Lease, port: u16) -> Option<Peer> {
    let ip = lease.attrs.public_ip;
    if ip.is_unspecified() {
        return None;
    }
    Some(Peer {
        subnet: lease.subnet.ipv4,
        endpoint: SocketAddrV4::new(ip, port),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flannel_model::lease::{LeaseAttrs, SubnetKey};
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn lease(subnet: &str, public_ip: &str) -> Lease {
        Lease {
            subnet: SubnetKey::v4(net(subnet)),
            attrs: LeaseAttrs {
                public_ip: public_ip.parse().unwrap(),
                public_ipv6: None,
                backend_type: String::new(),
                backend_data: None,
                backend_v6_data: None,
            },
            expiration: None,
        }
    }

    #[test]
    fn from_leases_uses_public_ip_and_port_and_skips_unset_ip() {
        let leases = [
            lease("198.18.1.0/24", "192.0.2.1"),
            lease("198.18.2.0/24", "192.0.2.2"),
            lease("198.18.3.0/24", "0.0.0.0"),
        ];
        let t = PeerTable::from_leases(&leases, DEFAULT_PORT);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.lookup("198.18.2.77".parse().unwrap()),
            Some(Peer {
                subnet: net("198.18.2.0/24"),
                endpoint: ep("192.0.2.2:8285")
            })
        );
        assert_eq!(t.lookup("198.18.3.1".parse().unwrap()), None);
        assert_eq!(t.lookup("198.18.0.255".parse().unwrap()), None);
        assert!(t.has_endpoint(ep("192.0.2.1:8285")));
        assert!(!t.has_endpoint(ep("192.0.2.1:8286")));
        assert!(!t.has_endpoint(ep("0.0.0.0:8285")));

        let t = PeerTable::from_leases(&leases, 9000);
        assert_eq!(
            t.lookup("198.18.1.1".parse().unwrap()).unwrap().endpoint,
            ep("192.0.2.1:9000")
        );
    }

    #[test]
    fn upsert_replaces_and_remove_deletes() {
        let mut t = PeerTable::new();
        assert!(t.is_empty());
        t.upsert(net("198.18.1.0/24"), ep("192.0.2.1:8285"));
        t.upsert(net("198.18.1.0/24"), ep("192.0.2.9:8285"));
        assert_eq!(t.len(), 1);
        assert!(!t.has_endpoint(ep("192.0.2.1:8285")));
        assert_eq!(
            t.lookup("198.18.1.5".parse().unwrap()).unwrap().endpoint,
            ep("192.0.2.9:8285")
        );
        assert!(!t.remove(net("198.18.2.0/24")));
        assert!(!t.remove(net("198.18.0.0/16")));
        assert!(t.remove(net("198.18.1.0/24")));
        assert!(t.is_empty());
        assert!(!t.has_endpoint(ep("192.0.2.9:8285")));
        assert_eq!(t.lookup("198.18.1.5".parse().unwrap()), None);
    }

    #[test]
    fn host_bits_are_ignored() {
        let mut t = PeerTable::new();
        t.upsert(net("198.18.1.7/24"), ep("192.0.2.1:8285"));
        assert_eq!(t.iter().next().unwrap().subnet, net("198.18.1.0/24"));
        assert!(t.remove(net("198.18.1.200/24")));
    }

    #[test]
    fn longest_prefix_wins_and_zero_prefix_works() {
        let mut t = PeerTable::new();
        t.upsert(net("0.0.0.0/0"), ep("192.0.2.100:1"));
        t.upsert(net("198.18.0.0/16"), ep("192.0.2.16:1"));
        t.upsert(net("198.18.1.0/24"), ep("192.0.2.24:1"));
        t.upsert(net("198.18.1.1/32"), ep("192.0.2.32:1"));
        let at = |a: &str| t.lookup(a.parse().unwrap()).unwrap().endpoint;
        assert_eq!(at("198.18.1.1"), ep("192.0.2.32:1"));
        assert_eq!(at("198.18.1.2"), ep("192.0.2.24:1"));
        assert_eq!(at("198.18.2.2"), ep("192.0.2.16:1"));
        assert_eq!(at("203.0.113.1"), ep("192.0.2.100:1"));
        let lens: Vec<u8> = t.iter().map(|p| p.subnet.prefix_len()).collect();
        assert_eq!(lens, [32, 24, 16, 0]);
    }

    #[test]
    fn apply_lease_reports_unusable_leases() {
        let mut t = PeerTable::new();
        assert!(!t.apply_lease(&lease("198.18.1.0/24", "0.0.0.0"), 8285));
        assert!(t.apply_lease(&lease("198.18.1.0/24", "192.0.2.1"), 8285));
        assert_eq!(t.len(), 1);
    }

    proptest! {
        /// The table agrees with a linear scan for longest-prefix match over arbitrary entries.
        #[test]
        fn lookup_matches_linear_scan(
            entries in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<u16>()), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut t = PeerTable::new();
            let mut model: Vec<(Ipv4Net, SocketAddrV4)> = Vec::new();
            for (a, len, port) in entries {
                let n = Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
                let e = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), port);
                t.upsert(n, e);
                model.retain(|m| m.0 != n);
                model.push((n, e));
            }
            prop_assert_eq!(t.len(), model.len());
            for p in probes.into_iter().chain(model.iter().map(|m| u32::from(m.0.network()))) {
                let addr = Ipv4Addr::from(p);
                let want = model
                    .iter()
                    .filter(|m| m.0.contains(&addr))
                    .max_by_key(|m| m.0.prefix_len())
                    .map(|m| Peer { subnet: m.0, endpoint: m.1 });
                prop_assert_eq!(t.lookup(addr), want);
            }
        }
    }
}
