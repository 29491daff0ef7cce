//! Go's and Flannel's IP text forms: parsing like `net.ParseIP` / `net.ParseCIDR` and
//! Flannel's `ip.ParseIP4` / `ip.ParseIP6`, printing like Flannel's `ip.IP6.String()`.
//!
//! Go's parser (`netip.ParseAddr`) and Rust's `std::net` parsers accept the same texts for the
//! cases that matter here (dotted quads without leading zeros, RFC 4291 IPv6 with optional
//! embedded IPv4, no zones), so the std parsers are used directly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Flannel's `ip.ParseIP4` / `ip.ParseIP6` error texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpParseError {
    /// Not an IP address at all.
    #[error("invalid IP address format")]
    Invalid,
    /// An IPv6 address where an IPv4 one is required.
    #[error("invalid IPv4 address format")]
    NotIpv4,
}

/// Go `net.ParseIP`: an IPv4 or IPv6 address (no zone).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

/// Flannel `ip.ParseIP4`: IPv4, or an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), which Go's
/// `To4()` turns into the IPv4 address.
pub fn parse_ip4(s: &str) -> Result<Ipv4Addr, IpParseError> {
    match parse_ip(s) {
        None => Err(IpParseError::Invalid),
        Some(IpAddr::V4(a)) => Ok(a),
        Some(IpAddr::V6(a)) => a.to_ipv4_mapped().ok_or(IpParseError::NotIpv4),
    }
}

/// Flannel `ip.ParseIP6`: IPv6, or IPv4 which Go stores as the IPv4-mapped IPv6 address.
pub fn parse_ip6(s: &str) -> Result<Ipv6Addr, IpParseError> {
    match parse_ip(s) {
        None => Err(IpParseError::Invalid),
        Some(IpAddr::V4(a)) => Ok(a.to_ipv6_mapped()),
        Some(IpAddr::V6(a)) => Ok(a),
    }
}

/// The result of Go's `net.ParseCIDR`: the address *as written* and the prefix length.
/// Go's network (`IPNet`) is the address with host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoCidr {
    /// `a.b.c.d/n`, `n <= 32`.
    V4(Ipv4Addr, u8),
    /// An IPv6 address (including IPv4-mapped ones) with `n <= 128`.
    V6(Ipv6Addr, u8),
}

/// Go `net.ParseCIDR`: `addr/len` where `len` is decimal digits (leading zeros allowed).
pub fn parse_cidr(s: &str) -> Option<GoCidr> {
    let (addr, len) = s.split_once('/')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are fine (Go's dtoi); anything with more than 3 significant digits is
    // out of range for a prefix length.
    let significant = len.trim_start_matches('0');
    if significant.len() > 3 {
        return None;
    }
    let n: u32 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    match parse_ip(addr)? {
        IpAddr::V4(a) if n <= 32 => Some(GoCidr::V4(a, u8::try_from(n).ok()?)),
        IpAddr::V6(a) if n <= 128 => Some(GoCidr::V6(a, u8::try_from(n).ok()?)),
        _ => None,
    }
}

/// Flannel's `ip.IP6.String()`, used for subnet keys, `subnet.env` and the lease JSON.
///
/// It is Go's `net.IP.String()` (RFC 5952: lower-case, longest run of two or more zero groups
/// compressed, leftmost on ties) with two Go quirks kept:
/// - IPv4-mapped addresses (`::ffff:a.b.c.d`) print as plain `a.b.c.d`;
/// - Flannel stores IPv6 addresses as `big.Int`, and a value in `[2^24, 2^32)` (`::100:0` to
///   `::ffff:ffff`) has a 4-byte big-endian form that Go then prints as an IPv4 address.
pub fn ipv6_to_string(addr: Ipv6Addr) -> String {
    let v = u128::from(addr);
    if let Ok(v4) = u32::try_from(v) {
        if v4 >= 1 << 24 {
            return Ipv4Addr::from(v4).to_string();
        }
    }
    if let Some(v4) = addr.to_ipv4_mapped() {
        return v4.to_string();
    }
    addr.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_ip4_like_flannel() {
        assert_eq!(parse_ip4("10.1.2.3"), Ok(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(parse_ip4("::ffff:10.1.2.3"), Ok(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(parse_ip4("fd00::1"), Err(IpParseError::NotIpv4));
        assert_eq!(parse_ip4("010.1.2.3"), Err(IpParseError::Invalid));
        assert_eq!(parse_ip4("null"), Err(IpParseError::Invalid));
        assert_eq!(parse_ip4(""), Err(IpParseError::Invalid));
        assert_eq!(parse_ip4("fe80::1%eth0"), Err(IpParseError::Invalid));
        assert_eq!(
            IpParseError::Invalid.to_string(),
            "invalid IP address format"
        );
        assert_eq!(
            IpParseError::NotIpv4.to_string(),
            "invalid IPv4 address format"
        );
    }

    #[test]
    fn parse_ip6_like_flannel() {
        assert_eq!(parse_ip6("FD00::1"), Ok("fd00::1".parse().unwrap()));
        assert_eq!(
            parse_ip6("10.1.2.3"),
            Ok("::ffff:10.1.2.3".parse().unwrap())
        );
        assert_eq!(parse_ip6("fd00:::1"), Err(IpParseError::Invalid));
    }

    #[test]
    fn parse_cidr_like_go() {
        assert_eq!(
            parse_cidr("10.244.1.5/16"),
            Some(GoCidr::V4(Ipv4Addr::new(10, 244, 1, 5), 16))
        );
        assert_eq!(
            parse_cidr("10.244.0.0/016"),
            Some(GoCidr::V4(Ipv4Addr::new(10, 244, 0, 0), 16))
        );
        assert_eq!(
            parse_cidr("10.244.0.0/00016"),
            Some(GoCidr::V4(Ipv4Addr::new(10, 244, 0, 0), 16))
        );
        assert_eq!(
            parse_cidr("fd00::/8"),
            Some(GoCidr::V6("fd00::".parse().unwrap(), 8))
        );
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104"),
            Some(GoCidr::V6("::ffff:10.0.0.0".parse().unwrap(), 104))
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/8 ",
            " 10.0.0.0/8",
            "fd00::/129",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/1000",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn ipv6_string_like_flannel() {
        let s = |a: &str| ipv6_to_string(a.parse().unwrap());
        assert_eq!(s("fd00:12:13::"), "fd00:12:13::");
        assert_eq!(s("2001:cafe:42:0:0:0:0:1"), "2001:cafe:42::1");
        assert_eq!(s("1:0:0:1:0:0:0:1"), "1:0:0:1::1");
        assert_eq!(s("1:0:1:0:1:0:1:0"), "1:0:1:0:1:0:1:0");
        assert_eq!(s("::"), "::");
        assert_eq!(s("::1"), "::1");
        // ::ffff:0:1 is ::ffff:0.0.0.1, IPv4-mapped.
        assert_eq!(s("::ffff:0:1"), "0.0.0.1");
        assert_eq!(s("::fffe:0:1"), "::fffe:0:1");
        assert_eq!(s("::ffff:10.0.0.1"), "10.0.0.1");
        // big.Int quirk: 4 significant bytes print as IPv4.
        assert_eq!(s("::1.2.3.4"), "1.2.3.4");
        assert_eq!(s("::ff:ffff"), "::ff:ffff");
        assert_eq!(s("::1:0:0"), "::1:0:0");
    }
}
