//! Which subnet a host should hold: Flannel's acquisition algorithm as a pure function.
//!
//! Given the configured ranges, every lease in the store, our public IP and the subnet we held
//! before (from the previous `subnet.env`), [`decide`] returns what to do:
//! 1. a lease whose `PublicIP` is ours (`PublicIPv6` for an IPv6-only host, see
//!    [`HostId`]) and that fits the configuration is **reused** (a
//!    reservation — a key without TTL — is reused and keeps having no TTL);
//!    a non-reservation lease of ours that no longer fits is deleted first;
//! 2. else the **previous** subnet, if it fits and nobody holds anything overlapping it;
//! 3. else a **random one of the first 100 free** subnets between `SubnetMin` and `SubnetMax`
//!    (IPv6 chosen the same way, independently);
//! 4. else [`AllocError::OutOfSubnets`].
//!
//! An IPv6-only network has no IPv4 range: its subnets are `SubnetKey::v6_only` (the key
//! `0.0.0.0-0&<ipv6>-<len>` Flannel writes), chosen from the IPv6 range alone.
//!
//! Randomness comes from the caller's RNG so tests are deterministic.

use std::net::{Ipv4Addr, Ipv6Addr};

use flannel_model::{HostId, Lease, SubnetKey, SubnetRange};
use ipnet::{Ipv4Net, Ipv6Net};
use rand::Rng;

/// How many free subnets Flannel collects before picking one at random.
pub const FREE_CANDIDATES: usize = 100;

/// The configured ranges (after defaults): one per enabled family, at least one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    /// `None` in an IPv6-only network.
    pub v4: Option<SubnetRange<Ipv4Net>>,
    pub v6: Option<SubnetRange<Ipv6Net>>,
}

/// A lease in the store as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingLease {
    pub subnet: SubnetKey,
    /// Whose lease it is.
    pub host: HostId,
    /// A key without TTL: never handed to another host, never deleted by us.
    pub reservation: bool,
}

impl ExistingLease {
    /// Build from a store lease (a lease without expiration is a reservation).
    pub fn from_lease(lease: &Lease) -> Self {
        ExistingLease {
            subnet: lease.subnet,
            host: lease.attrs.host_id(),
            reservation: lease.expiration.is_none(),
        }
    }
}

/// What the lease manager should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep the lease that already names our public IP (rewrite it with our attributes).
    Reuse {
        subnet: SubnetKey,
        reservation: bool,
    },
    /// Create a new lease for this subnet. `stale` lists our own leases that no longer fit
    /// the configuration and must be deleted first.
    Create {
        subnet: SubnetKey,
        source: Source,
        stale: Vec<SubnetKey>,
    },
}

/// Why a new subnet was chosen (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The subnet from the previous `subnet.env`.
    Previous,
    /// A random free subnet.
    Random,
}

/// Acquisition failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("out of subnets: every subnet between SubnetMin {min} and SubnetMax {max} is leased")]
    OutOfSubnets { min: String, max: String },
    #[error("out of IPv6 subnets: every subnet between IPv6SubnetMin {min} and IPv6SubnetMax {max} is leased")]
    OutOfIpv6Subnets { min: String, max: String },
    #[error("neither IPv4 nor IPv6 has an allocation range")]
    NoFamily,
}

/// Decide which subnet we should hold. `exclude` lists subnets just lost in a create race, so
/// a retry picks another one even if the store has not shown the winner yet.
pub fn decide<R: Rng + ?Sized>(
    ranges: &Ranges,
    leases: &[ExistingLease],
    host: HostId,
    previous: Option<SubnetKey>,
    exclude: &[SubnetKey],
    rng: &mut R,
) -> Result<Decision, AllocError> {
    let mut stale = Vec::new();
    for lease in leases.iter().filter(|l| l.host == host) {
        if fits(ranges, &lease.subnet) {
            return Ok(Decision::Reuse {
                subnet: lease.subnet,
                reservation: lease.reservation,
            });
        }
        if !lease.reservation {
            stale.push(lease.subnet);
        }
    }
    // Leases we are about to delete no longer block anything.
    let others: Vec<&ExistingLease> = leases
        .iter()
        .filter(|l| !stale.contains(&l.subnet))
        .collect();

    if let Some(prev) = previous {
        let held = others.iter().any(|l| overlaps_key(&l.subnet, &prev));
        if fits(ranges, &prev) && !held && !exclude.contains(&prev) {
            return Ok(Decision::Create {
                subnet: prev,
                source: Source::Previous,
                stale,
            });
        }
    }

    let v4 = match &ranges.v4 {
        None => None,
        Some(r4) => {
            let taken_v4: Vec<Block> = others
                .iter()
                .filter_map(|l| l.subnet.ipv4_net().map(Block::v4))
                .chain(exclude.iter().filter_map(|k| k.ipv4_net().map(Block::v4)))
                .collect();
            Some(
                pick(&free_v4(r4, &taken_v4), rng).ok_or_else(|| AllocError::OutOfSubnets {
                    min: r4.min.addr().to_string(),
                    max: r4.max.addr().to_string(),
                })?,
            )
        }
    };
    let v6 = match &ranges.v6 {
        None => None,
        Some(r6) => {
            let taken_v6: Vec<Block> = others
                .iter()
                .filter_map(|l| l.subnet.ipv6.map(Block::v6))
                .chain(exclude.iter().filter_map(|k| k.ipv6.map(Block::v6)))
                .collect();
            Some(pick(&free_v6(r6, &taken_v6), rng).ok_or_else(|| {
                AllocError::OutOfIpv6Subnets {
                    min: r6.min.addr().to_string(),
                    max: r6.max.addr().to_string(),
                }
            })?)
        }
    };
    let subnet = match (v4, v6) {
        (Some(ipv4), ipv6) => SubnetKey { ipv4, ipv6 },
        (None, Some(ipv6)) => SubnetKey::v6_only(ipv6),
        (None, None) => return Err(AllocError::NoFamily),
    };
    Ok(Decision::Create {
        subnet,
        source: Source::Random,
        stale,
    })
}

/// Whether a subnet key fits the configured ranges (Flannel's `isSubnetConfigCompat`): right
/// prefix length, inside [min, max], and a part of a family exactly when it is enabled.
pub fn fits(ranges: &Ranges, key: &SubnetKey) -> bool {
    let v4_ok = match (&ranges.v4, key.ipv4_net()) {
        (None, None) => true,
        (Some(r), Some(k)) => fits_range(
            Block::v4(r.min),
            Block::v4(r.max),
            r.subnet_len,
            Block::v4(k),
        ),
        _ => false,
    };
    let v6_ok = match (&ranges.v6, &key.ipv6) {
        (None, None) => true,
        (Some(r), Some(k)) => fits_range(
            Block::v6(r.min),
            Block::v6(r.max),
            r.subnet_len,
            Block::v6(*k),
        ),
        _ => false,
    };
    v4_ok && v6_ok
}

/// True when two subnet keys overlap in either family (an IPv6-only key's empty IPv4 part
/// overlaps nothing).
pub fn overlaps_key(a: &SubnetKey, b: &SubnetKey) -> bool {
    matches!((a.ipv4_net(), b.ipv4_net()), (Some(x), Some(y)) if Block::v4(x).overlaps(&Block::v4(y)))
        || matches!((a.ipv6, b.ipv6), (Some(x), Some(y)) if Block::v6(x).overlaps(&Block::v6(y)))
}

fn fits_range(min: Block, max: Block, len: u8, subnet: Block) -> bool {
    subnet.len == len && subnet.start >= min.start && subnet.start <= max.start
}

fn pick<T: Copy, R: Rng + ?Sized>(candidates: &[T], rng: &mut R) -> Option<T> {
    if candidates.is_empty() {
        None
    } else {
        Some(candidates[rng.random_range(0..candidates.len())])
    }
}

fn free_v4(range: &SubnetRange<Ipv4Net>, taken: &[Block]) -> Vec<Ipv4Net> {
    free_blocks(
        Block::v4(range.min),
        Block::v4(range.max),
        range.subnet_len,
        taken,
    )
    .into_iter()
    .filter_map(|b| {
        let addr = Ipv4Addr::from(u32::try_from(b.start).ok()?);
        Ipv4Net::new(addr, b.len).ok()
    })
    .collect()
}

fn free_v6(range: &SubnetRange<Ipv6Net>, taken: &[Block]) -> Vec<Ipv6Net> {
    free_blocks(
        Block::v6(range.min),
        Block::v6(range.max),
        range.subnet_len,
        taken,
    )
    .into_iter()
    .filter_map(|b| Ipv6Net::new(Ipv6Addr::from(b.start), b.len).ok())
    .collect()
}

/// The first [`FREE_CANDIDATES`] subnets of length `len` from `min` to `max` (inclusive) that
/// overlap nothing in `taken`.
fn free_blocks(min: Block, max: Block, len: u8, taken: &[Block]) -> Vec<Block> {
    let mut taken: Vec<(u128, u128)> = taken.iter().map(|b| (b.start, b.end())).collect();
    taken.sort_unstable();
    // max_end[i]: the furthest end among the first i+1 blocks (sorted by start), so one binary
    // search tells whether anything starting at or before a candidate's end reaches into it.
    let max_end: Vec<u128> = taken
        .iter()
        .scan(0u128, |m, &(_, e)| {
            *m = (*m).max(e);
            Some(*m)
        })
        .collect();
    let step = Block::size(min.bits, len);
    let mut out = Vec::new();
    let mut start = min.start;
    while start <= max.start && out.len() < FREE_CANDIDATES {
        let candidate = Block {
            start,
            len,
            bits: min.bits,
        };
        let end = candidate.end();
        let idx = taken.partition_point(|&(s, _)| s <= end);
        let reach = idx.checked_sub(1).map(|i| max_end[i]);
        match reach {
            Some(e) if e >= start => {
                // Taken: continue at the first aligned subnet past the blocking block(s).
                let next = e.saturating_add(1).div_ceil(step).saturating_mul(step);
                if next <= start {
                    break;
                }
                start = next;
            }
            _ => {
                out.push(candidate);
                match start.checked_add(step) {
                    Some(next) => start = next,
                    None => break,
                }
            }
        }
    }
    out
}

/// An address block as integers, so IPv4 and IPv6 share one implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    start: u128,
    len: u8,
    bits: u8,
}

impl Block {
    fn v4(net: Ipv4Net) -> Self {
        Block {
            start: u128::from(u32::from(net.network())),
            len: net.prefix_len(),
            bits: 32,
        }
    }

    fn v6(net: Ipv6Net) -> Self {
        Block {
            start: u128::from(net.network()),
            len: net.prefix_len(),
            bits: 128,
        }
    }

    fn size(bits: u8, len: u8) -> u128 {
        let host_bits = u32::from(bits.saturating_sub(len));
        1u128.checked_shl(host_bits).unwrap_or(0).max(1)
    }

    fn end(&self) -> u128 {
        self.start
            .saturating_add(Self::size(self.bits, self.len).saturating_sub(1))
    }

    fn overlaps(&self, other: &Block) -> bool {
        self.start <= other.end() && other.start <= self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().expect("test cidr")
    }

    fn ranges(network: &str, len: u8, min: &str, max: &str) -> Ranges {
        Ranges {
            v4: Some(SubnetRange {
                network: v4(network),
                subnet_len: len,
                min: v4(min),
                max: v4(max),
            }),
            v6: None,
        }
    }

    fn key(s: &str) -> SubnetKey {
        SubnetKey {
            ipv4: v4(s),
            ipv6: None,
        }
    }

    fn lease(s: &str, ip: [u8; 4], reservation: bool) -> ExistingLease {
        ExistingLease {
            subnet: key(s),
            host: HostId::V4(Ipv4Addr::from(ip)),
            reservation,
        }
    }

    const ME: HostId = HostId::V4(Ipv4Addr::new(192, 0, 2, 10));

    fn default_ranges() -> Ranges {
        ranges("198.18.0.0/16", 24, "198.18.1.0/24", "198.18.255.0/24")
    }

    #[test]
    fn reuses_the_lease_naming_our_ip() {
        let leases = [
            lease("198.18.3.0/24", [192, 0, 2, 11], false),
            lease("198.18.7.0/24", [192, 0, 2, 10], false),
        ];
        let d = decide(
            &default_ranges(),
            &leases,
            ME,
            Some(key("198.18.9.0/24")),
            &[],
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(
            d,
            Ok(Decision::Reuse {
                subnet: key("198.18.7.0/24"),
                reservation: false
            })
        );
    }

    #[test]
    fn reservation_is_reused_as_reservation() {
        let leases = [lease("198.18.7.0/24", [192, 0, 2, 10], true)];
        let d = decide(
            &default_ranges(),
            &leases,
            ME,
            None,
            &[],
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(
            d,
            Ok(Decision::Reuse {
                subnet: key("198.18.7.0/24"),
                reservation: true
            })
        );
    }

    #[test]
    fn incompatible_own_lease_is_deleted_but_reservation_is_kept() {
        // Our old lease has the wrong length; a reservation of ours is outside SubnetMax.
        let r = ranges("198.18.0.0/16", 24, "198.18.1.0/24", "198.18.10.0/24");
        let leases = [
            lease("198.18.4.0/25", [192, 0, 2, 10], false),
            lease("198.18.200.0/24", [192, 0, 2, 10], true),
        ];
        let d =
            decide(&r, &leases, ME, None, &[], &mut StdRng::seed_from_u64(3)).expect("decision");
        match d {
            Decision::Create { subnet, stale, .. } => {
                assert_eq!(stale, vec![key("198.18.4.0/25")]);
                assert!(fits(&r, &subnet));
            }
            other => panic!("expected Create, got {other:?}"),
        }
    }

    #[test]
    fn previous_subnet_used_when_free_and_skipped_when_held() {
        let prev = key("198.18.9.0/24");
        let free = decide(
            &default_ranges(),
            &[],
            ME,
            Some(prev),
            &[],
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(
            free,
            Ok(Decision::Create {
                subnet: prev,
                source: Source::Previous,
                stale: vec![]
            })
        );
        // Issue #1289: another host holds it now; we must not take it back.
        let held = [lease("198.18.9.0/24", [192, 0, 2, 99], false)];
        let d = decide(
            &default_ranges(),
            &held,
            ME,
            Some(prev),
            &[],
            &mut StdRng::seed_from_u64(1),
        )
        .expect("decision");
        match d {
            Decision::Create { subnet, source, .. } => {
                assert_eq!(source, Source::Random);
                assert_ne!(subnet, prev);
            }
            other => panic!("expected Create, got {other:?}"),
        }
    }

    #[test]
    fn picks_among_first_100_free() {
        let r = default_ranges();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let d =
                decide(&r, &[], ME, None, &[], &mut StdRng::seed_from_u64(seed)).expect("decision");
            let Decision::Create { subnet, .. } = d else {
                panic!("expected Create")
            };
            seen.insert(subnet.ipv4);
        }
        let first = v4("198.18.1.0/24");
        let hundredth = v4("198.18.100.0/24");
        assert!(
            seen.iter().all(|s| *s >= first && *s <= hundredth),
            "{seen:?}"
        );
        assert!(
            seen.len() > 50,
            "random choice should spread: {}",
            seen.len()
        );
    }

    #[test]
    fn out_of_subnets_is_a_clear_error() {
        let r = ranges("198.18.0.0/28", 30, "198.18.0.4/30", "198.18.0.12/30");
        let leases = [
            lease("198.18.0.4/30", [192, 0, 2, 1], false),
            lease("198.18.0.8/30", [192, 0, 2, 2], false),
            lease("198.18.0.12/30", [192, 0, 2, 3], true),
        ];
        let err = decide(&r, &leases, ME, None, &[], &mut StdRng::seed_from_u64(1))
            .expect_err("must be exhausted");
        assert_eq!(
            err.to_string(),
            "out of subnets: every subnet between SubnetMin 198.18.0.4 and SubnetMax 198.18.0.12 is leased"
        );
    }

    #[test]
    fn excluded_subnets_are_not_chosen() {
        let r = ranges("198.18.0.0/28", 30, "198.18.0.4/30", "198.18.0.8/30");
        let d = decide(
            &r,
            &[],
            ME,
            Some(key("198.18.0.4/30")),
            &[key("198.18.0.4/30")],
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(
            d,
            Ok(Decision::Create {
                subnet: key("198.18.0.8/30"),
                source: Source::Random,
                stale: vec![]
            })
        );
    }

    #[test]
    fn larger_foreign_block_is_skipped() {
        // A /20 lease written by an older config covers 16 of our /24s.
        let r = ranges("198.18.0.0/16", 24, "198.18.0.0/24", "198.18.31.0/24");
        let leases = [lease("198.18.0.0/20", [192, 0, 2, 1], false)];
        let free = free_v4(&r.v4.expect("v4"), &[Block::v4(leases[0].subnet.ipv4)]);
        assert_eq!(free.first(), Some(&v4("198.18.16.0/24")));
        assert_eq!(free.len(), 16);
    }

    #[test]
    fn dual_stack_picks_both_families() {
        let mut r = default_ranges();
        r.v6 = Some(SubnetRange {
            network: "2001:db8:1::/56".parse().expect("v6"),
            subnet_len: 64,
            min: "2001:db8:1:1::/64".parse().expect("v6"),
            max: "2001:db8:1:ff::/64".parse().expect("v6"),
        });
        let d = decide(&r, &[], ME, None, &[], &mut StdRng::seed_from_u64(5)).expect("ok");
        let Decision::Create { subnet, .. } = d else {
            panic!("expected Create")
        };
        assert!(subnet.ipv6.is_some());
        assert!(fits(&r, &subnet));
        // A v4-only key does not fit a dual-stack config.
        assert!(!fits(&r, &key("198.18.4.0/24")));
    }

    fn v6_only_ranges(network: &str, len: u8, min: &str, max: &str) -> Ranges {
        Ranges {
            v4: None,
            v6: Some(SubnetRange {
                network: network.parse().expect("v6"),
                subnet_len: len,
                min: min.parse().expect("v6"),
                max: max.parse().expect("v6"),
            }),
        }
    }

    fn v6_host(last: u16) -> HostId {
        HostId::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
    }

    #[test]
    fn v6_only_allocates_v6_only_keys_and_recognises_hosts_by_public_ipv6() {
        let r = v6_only_ranges(
            "2001:db8:100::/48",
            64,
            "2001:db8:100:1::/64",
            "2001:db8:100:ffff::/64",
        );
        let d = decide(
            &r,
            &[],
            v6_host(1),
            None,
            &[],
            &mut StdRng::seed_from_u64(7),
        )
        .expect("decision");
        let Decision::Create { subnet, .. } = d else {
            panic!("expected Create, got {d:?}")
        };
        assert_eq!(subnet.ipv4_net(), None);
        assert!(
            subnet.to_string().starts_with("0.0.0.0-0&2001:db8:100:"),
            "{subnet}"
        );
        assert!(fits(&r, &subnet));
        // A dual-stack key does not fit an IPv6-only config.
        let dual = SubnetKey {
            ipv4: v4("198.18.1.0/24"),
            ipv6: subnet.ipv6,
        };
        assert!(!fits(&r, &dual));
        // A second host (same PublicIP 0.0.0.0, other PublicIPv6) gets another subnet...
        let first = ExistingLease {
            subnet,
            host: v6_host(1),
            reservation: false,
        };
        let d = decide(
            &r,
            std::slice::from_ref(&first),
            v6_host(2),
            None,
            &[],
            &mut StdRng::seed_from_u64(7),
        )
        .expect("decision");
        let Decision::Create { subnet: second, .. } = d else {
            panic!("expected Create, got {d:?}")
        };
        assert!(!overlaps_key(&second, &subnet));
        // ...and the first host, restarting, gets its own back.
        assert_eq!(
            decide(
                &r,
                &[first],
                v6_host(1),
                None,
                &[],
                &mut StdRng::seed_from_u64(1)
            ),
            Ok(Decision::Reuse {
                subnet,
                reservation: false
            })
        );
    }

    #[test]
    fn v6_only_out_of_subnets() {
        let r = v6_only_ranges(
            "2001:db8:100::/62",
            64,
            "2001:db8:100:1::/64",
            "2001:db8:100:2::/64",
        );
        let leases: Vec<ExistingLease> = ["2001:db8:100:1::/64", "2001:db8:100:2::/64"]
            .iter()
            .zip(1..)
            .map(|(n, h)| ExistingLease {
                subnet: SubnetKey::v6_only(n.parse().expect("v6")),
                host: v6_host(h),
                reservation: false,
            })
            .collect();
        let err = decide(
            &r,
            &leases,
            v6_host(9),
            None,
            &[],
            &mut StdRng::seed_from_u64(1),
        )
        .expect_err("exhausted");
        assert_eq!(
            err.to_string(),
            "out of IPv6 subnets: every subnet between IPv6SubnetMin 2001:db8:100:1:: and \
             IPv6SubnetMax 2001:db8:100:2:: is leased"
        );
    }

    fn arb_v6_only_ranges() -> impl Strategy<Value = Ranges> {
        (32u8..=60, 2u8..=8, any::<u64>(), any::<u8>(), any::<u8>()).prop_map(
            |(net_len, extra, base, a, b)| {
                let len = net_len + extra;
                let network = Ipv6Net::new(Ipv6Addr::from(u128::from(base) << 64), net_len)
                    .expect("len")
                    .trunc();
                let count = 1u128 << (len - net_len);
                let (lo, hi) = (u128::from(a) % count, u128::from(b) % count);
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                let at = |i: u128| {
                    Ipv6Net::new(
                        Ipv6Addr::from(u128::from(network.network()) + (i << (128 - len))),
                        len,
                    )
                    .expect("len")
                };
                Ranges {
                    v4: None,
                    v6: Some(SubnetRange {
                        network,
                        subnet_len: len,
                        min: at(lo),
                        max: at(hi),
                    }),
                }
            },
        )
    }

    fn arb_ranges() -> impl Strategy<Value = Ranges> {
        (8u8..=24, 2u8..=8, any::<u32>(), any::<u16>(), any::<u16>()).prop_map(
            |(net_len, extra, base, a, b)| {
                let len = (net_len + extra).min(30);
                let network = Ipv4Net::new(Ipv4Addr::from(base), net_len)
                    .expect("len")
                    .trunc();
                let count = 1u32 << (len - net_len);
                let (lo, hi) = (u32::from(a) % count, u32::from(b) % count);
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                let at = |i: u32| {
                    Ipv4Net::new(
                        Ipv4Addr::from(u32::from(network.network()) + (i << (32 - len))),
                        len,
                    )
                    .expect("len")
                };
                Ranges {
                    v4: Some(SubnetRange {
                        network,
                        subnet_len: len,
                        min: at(lo),
                        max: at(hi),
                    }),
                    v6: None,
                }
            },
        )
    }

    proptest! {
        /// Hosts acquiring one after another never overlap and never leave [min, max].
        #[test]
        fn sequential_hosts_never_overlap(r in arb_ranges(), seed in any::<u64>(), hosts in 1usize..40) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut leases: Vec<ExistingLease> = Vec::new();
            let r4 = r.v4.expect("v4 range");
            for h in 0..hosts {
                let ip = HostId::V4(Ipv4Addr::from(0xC000_0200u32 + u32::try_from(h).expect("small")));
                match decide(&r, &leases, ip, None, &[], &mut rng) {
                    Ok(Decision::Create { subnet, .. }) => {
                        prop_assert!(fits(&r, &subnet));
                        prop_assert!(r4.network.contains(&subnet.ipv4));
                        for l in &leases {
                            prop_assert!(!overlaps_key(&l.subnet, &subnet));
                        }
                        leases.push(ExistingLease { subnet, host: ip, reservation: false });
                    }
                    Ok(Decision::Reuse { .. }) => prop_assert!(false, "new host cannot reuse"),
                    Err(AllocError::OutOfSubnets { .. }) => {
                        let count = (u32::from(r4.max.network()) - u32::from(r4.min.network()))
                            / (1u32 << (32 - r4.subnet_len)) + 1;
                        prop_assert_eq!(leases.len(), count as usize);
                        break;
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
        }

        /// IPv6-only: hosts acquiring one after another get IPv6-only keys inside [min, max]
        /// that never overlap, until the range is exhausted; each gets its own back.
        #[test]
        fn v6_only_sequential_hosts_never_overlap(r in arb_v6_only_ranges(), seed in any::<u64>(), hosts in 1u16..40) {
            let mut rng = StdRng::seed_from_u64(seed);
            let r6 = r.v6.expect("v6 range");
            let mut leases: Vec<ExistingLease> = Vec::new();
            for h in 0..hosts {
                match decide(&r, &leases, v6_host(h), None, &[], &mut rng) {
                    Ok(Decision::Create { subnet, .. }) => {
                        prop_assert!(fits(&r, &subnet));
                        prop_assert_eq!(subnet.ipv4_net(), None);
                        let sn6 = subnet.ipv6.expect("v6 part");
                        prop_assert!(r6.network.contains(&sn6));
                        prop_assert!(sn6.network() >= r6.min.network() && sn6.network() <= r6.max.network());
                        for l in &leases {
                            prop_assert!(!overlaps_key(&l.subnet, &subnet));
                        }
                        leases.push(ExistingLease { subnet, host: v6_host(h), reservation: false });
                    }
                    Ok(Decision::Reuse { .. }) => prop_assert!(false, "new host cannot reuse"),
                    Err(AllocError::OutOfIpv6Subnets { .. }) => {
                        let count = (u128::from(r6.max.network()) - u128::from(r6.min.network()))
                            / (1u128 << (128 - r6.subnet_len)) + 1;
                        prop_assert_eq!(leases.len() as u128, count);
                        break;
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            for l in &leases {
                prop_assert_eq!(
                    decide(&r, &leases, l.host, None, &[], &mut rng),
                    Ok(Decision::Reuse { subnet: l.subnet, reservation: false })
                );
            }
        }

        /// A host that already holds a fitting lease always gets the same one back.
        #[test]
        fn restart_reuses(r in arb_ranges(), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let first = decide(&r, &[], ME, None, &[], &mut rng).expect("empty store");
            let Decision::Create { subnet, .. } = first else { panic!("create") };
            let leases = [ExistingLease { subnet, host: ME, reservation: false }];
            prop_assert_eq!(
                decide(&r, &leases, ME, None, &[], &mut rng),
                Ok(Decision::Reuse { subnet, reservation: false })
            );
        }
    }
}
