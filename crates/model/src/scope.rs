//! Which lease keys belong to a network config (pure).
//!
//! A lease is a host's subnet: a `/SubnetLen` inside `Network` (and, when the key has an IPv6
//! part and IPv6 is enabled, a `/IPv6SubnetLen` inside `IPv6Network`). Anything else in
//! `<prefix>/subnets/` was written by hand or for another config: `198.16.0.0-12` (larger than
//! the whole network) or `203.0.113.0-24` (outside it). Go Flannel routes such keys and counts
//! them when allocating, so one of them can take over the network; flanneld ignores every key
//! [`LeaseScope::check`] refuses (see `flannel_registry`'s lease filter).
//!
//! A key without an IPv6 part is accepted in a dual-stack network (a host that has not
//! enabled IPv6 yet still gets its IPv4 routes); in an IPv6-only network it is refused.

use ipnet::{Ipv4Net, Ipv6Net};

use crate::config::{NetworkConfig, SubnetRange};
use crate::goip;
use crate::lease::SubnetKey;

/// The shape every lease key of one network config must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseScope {
    /// `Network` and `SubnetLen`, when IPv4 is enabled.
    v4: Option<(Ipv4Net, u8)>,
    /// `IPv6Network` and `IPv6SubnetLen`, when IPv6 is enabled.
    v6: Option<(Ipv6Net, u8)>,
}

/// Why a lease key does not belong to the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfScope {
    /// The IPv4 part is not a `/SubnetLen` inside `Network`.
    #[error("{subnet} is not a /{subnet_len} inside Network {network}")]
    V4 {
        subnet: Ipv4Net,
        network: Ipv4Net,
        subnet_len: u8,
    },
    /// The IPv6 part is not a `/IPv6SubnetLen` inside `IPv6Network`.
    #[error(
        "{}/{} is not a /{subnet_len} inside IPv6Network {}/{}",
        goip::ipv6_to_string(subnet.addr()),
        subnet.prefix_len(),
        goip::ipv6_to_string(network.addr()),
        network.prefix_len()
    )]
    V6 {
        subnet: Ipv6Net,
        network: Ipv6Net,
        subnet_len: u8,
    },
    /// The network is IPv6-only and the key has no IPv6 part.
    #[error("it has no IPv6 subnet and the network is IPv6-only")]
    NoIpv6,
}

impl LeaseScope {
    /// A scope from `(network, subnet length)` per enabled family.
    pub fn new(v4: Option<(Ipv4Net, u8)>, v6: Option<(Ipv6Net, u8)>) -> LeaseScope {
        LeaseScope { v4, v6 }
    }

    /// The scope of the allocation ranges (their `network` and `subnet_len`).
    pub fn of_ranges(
        v4: Option<&SubnetRange<Ipv4Net>>,
        v6: Option<&SubnetRange<Ipv6Net>>,
    ) -> LeaseScope {
        LeaseScope {
            v4: v4.map(|r| (r.network, r.subnet_len)),
            v6: v6.map(|r| (r.network, r.subnet_len)),
        }
    }

    /// The scope of a checked config ([`NetworkConfig::check`] filled in the lengths).
    pub fn of_config(config: &NetworkConfig) -> LeaseScope {
        LeaseScope::of_ranges(config.ipv4_range().as_ref(), config.ipv6_range().as_ref())
    }

    /// Whether `key` is a subnet of this network (module docs).
    pub fn check(&self, key: &SubnetKey) -> Result<(), OutOfScope> {
        if let Some((network, subnet_len)) = self.v4 {
            let subnet = key.ipv4;
            if subnet.prefix_len() != subnet_len || !network.contains(&subnet) {
                return Err(OutOfScope::V4 {
                    subnet,
                    network,
                    subnet_len,
                });
            }
        }
        if let Some((network, subnet_len)) = self.v6 {
            match key.ipv6 {
                Some(subnet) if subnet.prefix_len() != subnet_len || !network.contains(&subnet) => {
                    return Err(OutOfScope::V6 {
                        subnet,
                        network,
                        subnet_len,
                    });
                }
                Some(_) => {}
                None if self.v4.is_none() => return Err(OutOfScope::NoIpv6),
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(s: &str) -> SubnetKey {
        s.parse().unwrap()
    }

    fn v4_scope() -> LeaseScope {
        LeaseScope::new(Some(("198.18.0.0/16".parse().unwrap(), 24)), None)
    }

    #[test]
    fn keys_of_another_shape_or_place_are_refused() {
        let scope = v4_scope();
        scope.check(&key("198.18.7.0-24")).unwrap();
        scope.check(&key("198.18.0.0-24")).unwrap();
        assert_eq!(
            scope.check(&key("198.16.0.0-12")).unwrap_err().to_string(),
            "198.16.0.0/12 is not a /24 inside Network 198.18.0.0/16"
        );
        assert_eq!(
            scope.check(&key("203.0.113.0-24")).unwrap_err().to_string(),
            "203.0.113.0/24 is not a /24 inside Network 198.18.0.0/16"
        );
        // Right place, wrong length (smaller and larger).
        assert!(scope.check(&key("198.18.7.0-25")).is_err());
        assert!(scope.check(&key("198.18.0.0-16")).is_err());
    }

    #[test]
    fn ipv6_parts_are_checked_when_ipv6_is_enabled() {
        let dual = LeaseScope::new(
            Some(("198.18.0.0/16".parse().unwrap(), 24)),
            Some(("2001:db8::/48".parse().unwrap(), 64)),
        );
        dual.check(&key("198.18.1.0-24&2001:db8:0:1::-64")).unwrap();
        dual.check(&key("198.18.1.0-24")).unwrap();
        assert_eq!(
            dual.check(&key("198.18.1.0-24&2001:db9::-64"))
                .unwrap_err()
                .to_string(),
            "2001:db9::/64 is not a /64 inside IPv6Network 2001:db8::/48"
        );
        assert!(dual.check(&key("198.18.1.0-24&2001:db8::-56")).is_err());
        // IPv6 disabled: an IPv6 part is not looked at.
        v4_scope()
            .check(&key("198.18.1.0-24&2001:db9::-56"))
            .unwrap();
        // IPv6-only: the IPv4 part is not looked at, the IPv6 part is required.
        let v6_only = LeaseScope::new(None, Some(("2001:db8::/48".parse().unwrap(), 64)));
        v6_only.check(&key("0.0.0.0-0&2001:db8:0:1::-64")).unwrap();
        assert_eq!(
            v6_only.check(&key("198.18.1.0-24")).unwrap_err(),
            OutOfScope::NoIpv6
        );
    }

    #[test]
    fn scope_of_a_checked_config() {
        let mut c = NetworkConfig::parse(r#"{"Network":"198.18.0.0/16","SubnetLen":26}"#).unwrap();
        c.check().unwrap();
        let scope = LeaseScope::of_config(&c);
        scope.check(&key("198.18.3.64-26")).unwrap();
        assert!(scope.check(&key("198.18.3.0-24")).is_err());
    }
}
