//! IP text forms as the Go plugin prints them (`net.IP.String`, `net.IPNet.String`).
//!
//! Parsing is shared with flanneld ([`flannel_model::goip::parse_cidr`], Go's
//! `net.ParseCIDR` rules). Printing differs from Rust's `Display` only for IPv4-mapped IPv6
//! addresses, which Go prints in dotted IPv4 form (and, for a prefix, with the prefix length
//! taken from the last 32 bits of the mask).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flannel_model::goip::{parse_cidr, GoCidr};

/// An address with a prefix length, printed like Go's `net.IPNet.String()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoIpNet {
    /// The address (host bits kept as given; see [`GoIpNet::network`]).
    pub addr: IpAddr,
    /// The prefix length (`<= 32` for IPv4, `<= 128` for IPv6).
    pub prefix: u8,
}

impl GoIpNet {
    /// Go's `types.ParseCIDR` (CNI): the address as written with its prefix length.
    /// `None` when `s` is not a CIDR in Go's syntax.
    pub fn parse(s: &str) -> Option<GoIpNet> {
        match parse_cidr(s)? {
            GoCidr::V4(a, p) => Some(GoIpNet {
                addr: IpAddr::V4(a),
                prefix: p,
            }),
            GoCidr::V6(a, p) => Some(GoIpNet {
                addr: IpAddr::V6(a),
                prefix: p,
            }),
        }
    }

    /// The same prefix with the host bits cleared (what Go's `net.ParseCIDR` returns as the
    /// network).
    pub fn network(self) -> GoIpNet {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        GoIpNet {
            addr,
            prefix: self.prefix,
        }
    }

    /// Whether this is an IPv4 prefix (an IPv4-mapped IPv6 prefix counts as IPv6 here).
    pub fn is_ipv4(self) -> bool {
        self.addr.is_ipv4()
    }
}

impl fmt::Display for GoIpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}/{}", self.prefix),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => write!(f, "{v4}/{}", self.prefix.saturating_sub(96)),
                None => write!(f, "{a}/{}", self.prefix),
            },
        }
    }
}

/// Go's `net.IP.String()`: IPv4-mapped IPv6 addresses print as plain IPv4.
pub fn ip_string(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a.to_string(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_host_bits_and_network_clears_them() {
        let n = GoIpNet::parse("10.1.17.1/24").unwrap();
        assert_eq!(n.to_string(), "10.1.17.1/24");
        assert_eq!(n.network().to_string(), "10.1.17.0/24");
        let n = GoIpNet::parse("FC00::1/64").unwrap();
        assert_eq!(n.network().to_string(), "fc00::/64");
        assert_eq!(
            GoIpNet::parse("0.0.0.0/0").unwrap().network().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            GoIpNet::parse("10.1.2.3/32").unwrap().network().to_string(),
            "10.1.2.3/32"
        );
        assert!(GoIpNet::parse("10.1.2.3").is_none());
        assert!(GoIpNet::parse("10.1.2.3/33").is_none());
        assert!(GoIpNet::parse(" 10.1.2.3/8").is_none());
    }

    #[test]
    fn mapped_addresses_print_as_ipv4() {
        let n = GoIpNet::parse("::ffff:10.1.0.0/112").unwrap();
        assert_eq!(n.network().to_string(), "10.1.0.0/16");
        assert_eq!(
            ip_string("::ffff:10.1.17.20".parse().unwrap()),
            "10.1.17.20"
        );
        assert_eq!(ip_string("fc00::1".parse().unwrap()), "fc00::1");
    }
}
