//! Subnet leases as Flannel stores them in etcd.
//!
//! Key: `<prefix>/subnets/10.5.34.0-24` or, dual-stack, `10.5.34.0-24&fd00::-64`.
//! Value: `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{...}}`,
//! byte-identical to what Go's `json.Marshal(LeaseAttrs)` produces.
//!
//! # Keys ([`SubnetKey`])
//!
//! Written like Go's `MakeSubnetKey`: `a.b.c.d-len`, plus `&<ipv6>-len` when there is an IPv6
//! subnet, the IPv6 address printed like Flannel's `ip.IP6.String()`
//! ([`crate::goip::ipv6_to_string`]). An IPv6 subnet of `::/0` counts as "none", as in Go.
//!
//! An IPv6-only lease has Go's zero `ip.IP4Net` as its IPv4 part, `0.0.0.0/0`, so its key is
//! `0.0.0.0-0&2001:db8:100:1::-64` (what `MakeSubnetKey(ip.IP4Net{}, sn6)` writes).
//! [`SubnetKey::v6_only`] builds one, [`SubnetKey::ipv4_net`] is `None` for it, and
//! [`SubnetKey::overlaps`] never counts two empty IPv4 parts as overlapping (Go's `Overlaps`
//! does, which makes its allocator loop forever once one IPv6-only lease exists).
//!
//! Parsed like Go's `ParseSubnetKey`, which searches the text with the *unanchored* regex
//! `(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$` (the same regex, leftmost-first, is used
//! here). Consequences kept on purpose:
//! - anything may precede the key (`foo10.5.34.0-24` parses), nothing may follow it;
//! - the IPv6 part must be lower-case hex (`FD00::` fails), so does an IPv6 part in dotted form;
//! - the prefix length is parsed with `strconv.ParseUint(s, 10, 5)` / `(s, 10, 7)`, so `-32`
//!   and `-128` are rejected and leading zeros (`-024`) are accepted;
//! - when the optional IPv6 part fails the regex, the match may start later: in
//!   `10.5.34.0-24&1.2.3.0-24` the key found is `1.2.3.0-24`.
//!
//! **Deviation:** Go keeps a key's address as written (`10.5.34.1-24` becomes the "subnet"
//! 10.5.34.1/24, whose routes the kernel then refuses). Flannel never writes such keys; only a
//! hand-made reservation can contain one. We reject keys whose addresses have host bits set
//! ([`LeaseError::BadKey`]), so callers skip them like other unparsable keys, and every
//! [`SubnetKey`] we produce is canonical.
//!
//! # Values ([`LeaseAttrs`])
//!
//! [`LeaseAttrs::to_json`] reproduces `json.Marshal`: `PublicIP` always (`"0.0.0.0"` for an
//! IPv6-only host, whose Go `ip.IP4` stays zero), `PublicIPv6` as a
//! string or `null`, `BackendType`, `BackendData` and `BackendV6Data` only when non-empty
//! (`omitempty`). Strings are HTML-escaped as Go does; raw backend data is compacted and
//! HTML-escaped like a Go `json.RawMessage` ([`RawJson`]).
//!
//! [`LeaseAttrs::from_json`] accepts what `json.Unmarshal` accepts: keys in any case, unknown
//! keys ignored, later duplicates winning, `PublicIP` missing → `0.0.0.0`, a top-level `null`
//! → all defaults. A bad `PublicIP`/`PublicIPv6` is an error (`invalid IP address format`),
//! and, as in Go, `"PublicIP":null` is an error too while `"PublicIPv6":null` is not.
//! `"BackendData":null` is kept as the raw value `null`: Go's `RawMessage` then holds the 4
//! bytes `null`, which `omitempty` does not omit, so it is written back as
//! `"BackendData":null`. Invalid UTF-8 in a value is replaced by U+FFFD before decoding (Go
//! would carry the bytes through a `RawMessage` unchanged).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::SystemTime;

use ipnet::{Ipv4Net, Ipv6Net};
use regex::Regex;
use serde_json::Value;

use crate::goip;
use crate::gojson::{self, FieldRef, Members, TopLevel};

/// The subnet part of a lease key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubnetKey {
    /// The IPv4 subnet (always present in etcd keys); canonical (host bits zero). `0.0.0.0/0`
    /// (Go's empty `ip.IP4Net`) in an IPv6-only lease: use [`SubnetKey::ipv4_net`].
    pub ipv4: Ipv4Net,
    /// The IPv6 subnet of a dual-stack lease; canonical.
    pub ipv6: Option<Ipv6Net>,
}

/// A JSON value kept as compact text, exactly as Go's `json.RawMessage` re-encodes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawJson(String);

/// The lease value (Go `lease.LeaseAttrs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAttrs {
    /// Always present; `0.0.0.0` when unset.
    pub public_ip: Ipv4Addr,
    /// `null` when absent.
    pub public_ipv6: Option<Ipv6Addr>,
    /// Omitted from JSON when empty (udp and alloc write none).
    pub backend_type: String,
    /// Omitted from JSON when `None`.
    pub backend_data: Option<RawJson>,
    /// Omitted from JSON when `None`.
    pub backend_v6_data: Option<RawJson>,
}

/// A lease as read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased subnet(s), from the key.
    pub subnet: SubnetKey,
    /// The decoded value.
    pub attrs: LeaseAttrs,
    /// `None` for a reservation (a key written without a TTL).
    pub expiration: Option<SystemTime>,
}

/// A key or value that is not a Flannel lease.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    /// The key (or key path) does not name a subnet; holds the offending text.
    #[error("not a subnet key: {0:?}")]
    BadKey(String),
    /// The value is not valid lease JSON; holds Go's (or serde_json's) reason.
    #[error("invalid lease value: {0}")]
    BadValue(String),
}

// ---------------------------------------------------------------------------------------------
// Subnet keys
// ---------------------------------------------------------------------------------------------

/// Flannel's `subnetRegex`, with `\d` spelled `[0-9]` (Go's `\d` is ASCII-only, Rust's is not).
static KEY_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"([0-9]+\.[0-9]+.[0-9]+.[0-9]+)-([0-9]+)(?:&([a-f0-9:]+)-([0-9]+))?$")
        .expect("invariant: the subnet key regex is valid")
});

/// Go `strconv.ParseUint(s, 10, bits)`: ASCII digits only, value below `2^bits`.
fn parse_go_uint(s: &str, bits: u32) -> Option<u8> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = s.trim_start_matches('0');
    if significant.len() > 3 {
        return None;
    }
    let n: u32 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    if n >= 1 << bits {
        return None;
    }
    u8::try_from(n).ok()
}

impl SubnetKey {
    /// A key for an IPv4-only lease.
    pub fn v4(ipv4: Ipv4Net) -> SubnetKey {
        SubnetKey { ipv4, ipv6: None }
    }

    /// A key for an IPv6-only lease: the IPv4 part is Go's empty `ip.IP4Net` (`0.0.0.0/0`).
    pub fn v6_only(ipv6: Ipv6Net) -> SubnetKey {
        SubnetKey {
            ipv4: EMPTY_V4,
            ipv6: Some(ipv6),
        }
    }

    /// The IPv4 subnet, `None` for an IPv6-only lease (Go's `IP4Net.Empty()`).
    pub fn ipv4_net(&self) -> Option<Ipv4Net> {
        (self.ipv4 != EMPTY_V4).then_some(self.ipv4)
    }

    /// The etcd key of this lease: Go's `path.Join(prefix, "subnets", key)`.
    pub fn key_path(&self, prefix: &str) -> String {
        go_path_join(&[prefix, "subnets", &self.to_string()])
    }

    /// Parses `<prefix>/subnets/<key>` (the prefix cleaned like Go's `path.Join`). The part
    /// after `subnets/` is parsed with [`SubnetKey::from_str`], i.e. with Go's regex.
    ///
    /// Go applies its regex to the whole etcd key; since no key can match across the literal
    /// `/subnets/`, checking the prefix first only rejects keys outside `<prefix>/subnets/`
    /// (which an etcd prefix watch on `<prefix>/subnets` can also deliver, e.g.
    /// `<prefix>/subnets2/…`; Go would treat those as leases).
    pub fn from_key_path(path: &str, prefix: &str) -> Result<SubnetKey, LeaseError> {
        let dir = go_path_join(&[prefix, "subnets"]);
        let rest = path
            .strip_prefix(dir.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| LeaseError::BadKey(path.to_string()))?;
        rest.parse()
    }

    /// Whether `other` overlaps this key in either family (an absent part — no IPv6 subnet,
    /// or the empty IPv4 part of an IPv6-only lease — never overlaps).
    pub fn overlaps(&self, other: &SubnetKey) -> bool {
        let v4 = match (self.ipv4_net(), other.ipv4_net()) {
            (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
            _ => false,
        };
        let v6 = match (self.ipv6, other.ipv6) {
            (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
            _ => false,
        };
        v4 || v6
    }
}

impl fmt::Display for SubnetKey {
    /// Go's `MakeSubnetKey`: `10.5.34.0-24` or `10.5.34.0-24&fd00::-64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ipv4.addr(), self.ipv4.prefix_len())?;
        if let Some(v6) = self.ipv6.filter(|n| !is_empty_v6(n)) {
            write!(
                f,
                "&{}-{}",
                goip::ipv6_to_string(v6.addr()),
                v6.prefix_len()
            )?;
        }
        Ok(())
    }
}

/// Go's empty `ip.IP4Net`: the IPv4 part of an IPv6-only lease.
const EMPTY_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);

/// Go's `IP6Net.Empty()`: address `::` and prefix 0.
fn is_empty_v6(n: &Ipv6Net) -> bool {
    n.addr().is_unspecified() && n.prefix_len() == 0
}

impl FromStr for SubnetKey {
    type Err = LeaseError;

    /// Go's `ParseSubnetKey` (see the module docs), plus the canonical-address check.
    fn from_str(s: &str) -> Result<SubnetKey, LeaseError> {
        let bad = || LeaseError::BadKey(s.to_string());
        let caps = KEY_RE.captures(s).ok_or_else(bad)?;
        let group = |i: usize| caps.get(i).map(|m| m.as_str()).unwrap_or("");
        let addr4: Ipv4Addr = group(1).parse().map_err(|_| bad())?;
        let len4 = parse_go_uint(group(2), 5).ok_or_else(bad)?;
        let ipv4 = Ipv4Net::new(addr4, len4).map_err(|_| bad())?;
        if ipv4.trunc() != ipv4 {
            return Err(bad());
        }
        let ipv6 = if group(3).is_empty() {
            None
        } else {
            let addr6: Ipv6Addr = group(3).parse().map_err(|_| bad())?;
            let len6 = parse_go_uint(group(4), 7).ok_or_else(bad)?;
            let net = Ipv6Net::new(addr6, len6).map_err(|_| bad())?;
            if net.trunc() != net {
                return Err(bad());
            }
            // Go: `EnableIPv6: !sn6.Empty()`.
            (!is_empty_v6(&net)).then_some(net)
        };
        Ok(SubnetKey { ipv4, ipv6 })
    }
}

/// Go's `path.Join`: non-empty elements joined with `/`, then [`go_path_clean`]ed.
pub fn go_path_join(elems: &[&str]) -> String {
    let parts: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if parts.is_empty() {
        return String::new();
    }
    go_path_clean(&parts.join("/"))
}

/// Go's `path.Clean`: collapse `//`, drop `.`, resolve `..`, no trailing `/` (except root).
pub fn go_path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

// ---------------------------------------------------------------------------------------------
// RawJson
// ---------------------------------------------------------------------------------------------

impl RawJson {
    /// Validates `text` as one JSON value and stores it as Go's `json.Marshal` would write a
    /// `json.RawMessage` holding it: whitespace outside strings removed, `<`, `>`, `&`,
    /// U+2028, U+2029 in strings escaped, everything else byte for byte.
    pub fn new(text: &str) -> Result<RawJson, LeaseError> {
        gojson::compact(text)
            .map(RawJson)
            .map_err(|e| LeaseError::BadValue(e.to_string()))
    }

    /// The compact JSON text, as it appears inside the lease value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Encodes a parsed value the way Go's `json.Marshal` would encode the same data: strings
    /// HTML-escaped, integers as written. Object members come out in the `Map`'s order
    /// (sorted by key), *not* in a Go struct's field order; use [`RawJson::from_serialize`]
    /// with a struct to control the order. Floats are printed by serde_json, which can
    /// differ from Go's spelling for very large or small magnitudes.
    pub fn from_value(value: &Value) -> RawJson {
        let mut out = String::new();
        write_value(&mut out, value);
        RawJson(out)
    }

    /// Serializes `value` with serde (struct fields in declaration order, like Go) and stores
    /// it like [`RawJson::new`].
    pub fn from_serialize<T: serde::Serialize + ?Sized>(value: &T) -> Result<RawJson, LeaseError> {
        let text = serde_json::to_string(value).map_err(|e| LeaseError::BadValue(e.to_string()))?;
        RawJson::new(&text)
    }

    /// Parses the text into a `serde_json::Value`. Fails only for JSON that Go accepts but
    /// serde_json cannot represent (lone UTF-16 surrogate escapes, numbers beyond `f64`).
    pub fn to_value(&self) -> Result<Value, LeaseError> {
        serde_json::from_str(&self.0).map_err(|e| LeaseError::BadValue(e.to_string()))
    }

    /// Whether this is the JSON literal `null`.
    pub fn is_null(&self) -> bool {
        self.0 == "null"
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RawJson {
    type Err = LeaseError;

    fn from_str(s: &str) -> Result<RawJson, LeaseError> {
        RawJson::new(s)
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&gojson::quote(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&gojson::quote(k));
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LeaseAttrs
// ---------------------------------------------------------------------------------------------

impl Default for LeaseAttrs {
    /// Go's zero value: `PublicIP` 0.0.0.0, everything else empty.
    fn default() -> Self {
        LeaseAttrs {
            public_ip: Ipv4Addr::UNSPECIFIED,
            public_ipv6: None,
            backend_type: String::new(),
            backend_data: None,
            backend_v6_data: None,
        }
    }
}

/// Go's field names of `lease.LeaseAttrs`, in declaration order.
const LEASE_FIELDS: [&str; 5] = [
    "PublicIP",
    "PublicIPv6",
    "BackendType",
    "BackendData",
    "BackendV6Data",
];

/// The address that tells whose lease a lease is: `PublicIP`, or `PublicIPv6` for an IPv6-only
/// host (whose `PublicIP` is `0.0.0.0`, shared by every IPv6-only host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostId {
    /// `PublicIP`.
    V4(Ipv4Addr),
    /// `PublicIPv6` of a lease whose `PublicIP` is unset.
    V6(Ipv6Addr),
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostId::V4(a) => write!(f, "{a}"),
            HostId::V6(a) => f.write_str(&goip::ipv6_to_string(*a)),
        }
    }
}

impl LeaseAttrs {
    /// Whose lease this is ([`HostId`]): `PublicIP` unless it is `0.0.0.0` and `PublicIPv6`
    /// is set. Go matches `PublicIP` alone, so all its IPv6-only hosts claim the same lease.
    pub fn host_id(&self) -> HostId {
        match self.public_ipv6 {
            Some(v6) if self.public_ip.is_unspecified() => HostId::V6(v6),
            _ => HostId::V4(self.public_ip),
        }
    }

    /// The lease value exactly as Go's `json.Marshal(LeaseAttrs)` writes it.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str("{\"PublicIP\":\"");
        out.push_str(&self.public_ip.to_string());
        out.push_str("\",\"PublicIPv6\":");
        match self.public_ipv6 {
            Some(a) => {
                out.push('"');
                out.push_str(&goip::ipv6_to_string(a));
                out.push('"');
            }
            None => out.push_str("null"),
        }
        if !self.backend_type.is_empty() {
            out.push_str(",\"BackendType\":");
            out.push_str(&gojson::quote(&self.backend_type));
        }
        if let Some(d) = &self.backend_data {
            out.push_str(",\"BackendData\":");
            out.push_str(d.as_str());
        }
        if let Some(d) = &self.backend_v6_data {
            out.push_str(",\"BackendV6Data\":");
            out.push_str(d.as_str());
        }
        out.push('}');
        out
    }

    /// Decodes a lease value the way Go's `json.Unmarshal` into `LeaseAttrs` does.
    pub fn from_json(bytes: &[u8]) -> Result<LeaseAttrs, LeaseError> {
        let text = String::from_utf8_lossy(bytes);
        let bad = |e: gojson::GoJsonError| LeaseError::BadValue(e.to_string());
        let mut attrs = LeaseAttrs::default();
        let members = match Members::parse(&text, "lease.LeaseAttrs").map_err(bad)? {
            TopLevel::Null => return Ok(attrs),
            TopLevel::Object(m) => m,
        };
        // Go keeps decoding after a type mismatch and reports the first one at the end; an
        // error from a field's own UnmarshalJSON (the IP types) stops decoding at once.
        let mut type_error = None;
        for (key, raw) in members.iter() {
            let Some(i) = gojson::match_field(&LEASE_FIELDS, key) else {
                continue;
            };
            let field = FieldRef::new("LeaseAttrs", LEASE_FIELDS[i]);
            match i {
                0 => {
                    attrs.public_ip = goip::parse_ip4(gojson::trim_quotes(raw))
                        .map_err(|e| LeaseError::BadValue(e.to_string()))?;
                }
                1 => {
                    attrs.public_ipv6 = if raw.get() == "null" {
                        None
                    } else {
                        Some(
                            goip::parse_ip6(gojson::trim_quotes(raw))
                                .map_err(|e| LeaseError::BadValue(e.to_string()))?,
                        )
                    };
                }
                2 => match gojson::raw_string(raw, field) {
                    Ok(Some(s)) => attrs.backend_type = s,
                    Ok(None) => {}
                    Err(e) => {
                        type_error.get_or_insert(e);
                    }
                },
                3 => attrs.backend_data = Some(RawJson::new(raw.get())?),
                _ => attrs.backend_v6_data = Some(RawJson::new(raw.get())?),
            }
        }
        match type_error {
            Some(e) => Err(bad(e)),
            None => Ok(attrs),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(s: &str) -> Result<SubnetKey, LeaseError> {
        s.parse()
    }

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn key_display_golden() {
        assert_eq!(
            SubnetKey::v4(v4("10.5.34.0/24")).to_string(),
            "10.5.34.0-24"
        );
        let dual = SubnetKey {
            ipv4: v4("10.5.34.0/24"),
            ipv6: Some(v6("fd00::/64")),
        };
        assert_eq!(dual.to_string(), "10.5.34.0-24&fd00::-64");
        let dual = SubnetKey {
            ipv4: v4("10.12.13.0/24"),
            ipv6: Some(v6("fd00:12:13::/56")),
        };
        assert_eq!(dual.to_string(), "10.12.13.0-24&fd00:12:13::-56");
        let dual = SubnetKey {
            ipv4: v4("10.0.0.0/30"),
            ipv6: Some(v6("2001:DB8:0:0:1::/80")),
        };
        assert_eq!(dual.to_string(), "10.0.0.0-30&2001:db8:0:0:1::-80");
        // Go omits an empty (::/0) IPv6 part.
        let empty = SubnetKey {
            ipv4: v4("10.0.0.0/30"),
            ipv6: Some(v6("::/0")),
        };
        assert_eq!(empty.to_string(), "10.0.0.0-30");
    }

    /// IPv6-only keys as Go writes them: `MakeSubnetKey(ip.IP4Net{}, sn6)` prints the zero
    /// `IP4Net` with `StringSep(".", "-")` as `0.0.0.0-0` (pkg/subnet/subnet.go, pkg/ip/ipnet.go),
    /// and `ParseSubnetKey` reads it back as the zero `IP4Net` plus the IPv6 subnet.
    #[test]
    fn ipv6_only_key_golden() {
        let k = SubnetKey::v6_only(v6("2001:db8:100:1::/64"));
        assert_eq!(k.to_string(), "0.0.0.0-0&2001:db8:100:1::-64");
        assert_eq!(
            k.key_path("/coreos.com/network"),
            "/coreos.com/network/subnets/0.0.0.0-0&2001:db8:100:1::-64"
        );
        assert_eq!(key("0.0.0.0-0&2001:db8:100:1::-64"), Ok(k));
        assert_eq!(k.ipv4_net(), None);
        assert_eq!(k.ipv6, Some(v6("2001:db8:100:1::/64")));
        assert_eq!(
            SubnetKey::v4(v4("10.5.34.0/24")).ipv4_net(),
            Some(v4("10.5.34.0/24"))
        );
        // Two IPv6-only leases overlap only in their IPv6 parts.
        let other = SubnetKey::v6_only(v6("2001:db8:100:2::/64"));
        assert!(!k.overlaps(&other));
        assert!(k.overlaps(&k));
        assert!(!k.overlaps(&SubnetKey::v4(v4("10.5.34.0/24"))));
    }

    /// The lease value of an IPv6-only vxlan host: Go's `newSubnetAttrs` leaves `PublicIP`
    /// (an `ip.IP4`, marshalled by `IP4.MarshalJSON` as a dotted string) at zero and
    /// `BackendData` nil (omitted by `omitempty`); pkg/backend/vxlan/vxlan.go, pkg/lease/lease.go.
    /// host-gw (pkg/backend/hostgw/hostgw.go) sets only `PublicIPv6` and `BackendType`.
    #[test]
    fn ipv6_only_lease_json_golden() {
        let vxlan = LeaseAttrs {
            public_ip: Ipv4Addr::UNSPECIFIED,
            public_ipv6: Some("2001:db8::1".parse().unwrap()),
            backend_type: "vxlan".into(),
            backend_data: None,
            backend_v6_data: Some(
                RawJson::new(r#"{"VNI":1,"VtepMAC":"ce:1d:4a:0e:55:01"}"#).unwrap(),
            ),
        };
        let json = vxlan.to_json();
        assert_eq!(
            json,
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"ce:1d:4a:0e:55:01"}}"#
        );
        assert_eq!(LeaseAttrs::from_json(json.as_bytes()), Ok(vxlan.clone()));
        let hostgw = LeaseAttrs {
            backend_type: "host-gw".into(),
            backend_v6_data: None,
            ..vxlan.clone()
        };
        assert_eq!(
            hostgw.to_json(),
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::1","BackendType":"host-gw"}"#
        );
        // Whose lease: PublicIPv6 when PublicIP is unset, PublicIP otherwise.
        assert_eq!(vxlan.host_id(), HostId::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(vxlan.host_id().to_string(), "2001:db8::1");
        let dual = LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 0, 2, 1),
            ..vxlan
        };
        assert_eq!(dual.host_id(), HostId::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(
            LeaseAttrs::default().host_id(),
            HostId::V4(Ipv4Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn key_parse_golden() {
        assert_eq!(
            key("10.5.34.0-24").unwrap(),
            SubnetKey::v4(v4("10.5.34.0/24"))
        );
        assert_eq!(
            key("10.12.13.0-24&fd00:12:13::-56").unwrap(),
            SubnetKey {
                ipv4: v4("10.12.13.0/24"),
                ipv6: Some(v6("fd00:12:13::/56"))
            }
        );
        // Unanchored start, like Go.
        assert_eq!(
            key("foo10.5.34.0-24").unwrap(),
            SubnetKey::v4(v4("10.5.34.0/24"))
        );
        assert_eq!(
            key("/coreos.com/network/subnets/10.5.34.0-24")
                .unwrap()
                .to_string(),
            "10.5.34.0-24"
        );
        // Leading zeros in the prefix length: strconv.ParseUint accepts them.
        assert_eq!(
            key("10.5.34.0-024").unwrap(),
            SubnetKey::v4(v4("10.5.34.0/24"))
        );
        // The optional IPv6 group fails on '.', the match starts later.
        assert_eq!(
            key("10.5.34.0-24&1.2.3.0-24").unwrap(),
            SubnetKey::v4(v4("1.2.3.0/24"))
        );
        assert_eq!(key("0.0.0.0-0").unwrap(), SubnetKey::v4(v4("0.0.0.0/0")));
        // ::/0 is Go's "no IPv6".
        assert_eq!(
            key("10.5.34.0-24&::-0").unwrap(),
            SubnetKey::v4(v4("10.5.34.0/24"))
        );
    }

    #[test]
    fn key_parse_rejects() {
        for bad in [
            // Flannel's own invalid-key test table.
            "10",
            "10.12.13.0",
            "10.12.13-24",
            "10.12.13.300-24",
            "10.12.13.0-24hi",
            "&2001::-56",
            "10.12.13.0-24&:12:13:-56",
            "10.12.13.0-24&20011::-56",
            "10.12.13.0-24&2001-56",
            "10.12.13.0-24&2001::",
            "10.12.13.0-24&2001::-56hi",
            // More.
            "",
            "garbage",
            "10.5.34.0-24\n",
            "10.5.34.0-24 ",
            "10.5.34.0-24&FD00::-64",
            "10.5.34.0-24&fd00::-129",
            "10.5.34.0-24&fd00::-128",
            "255.255.255.255-32",
            "10.5.34.0-33",
            "010.5.34.0-24",
            "10x5y34z0-24",
            "10.5.34.0-",
            "10.5.34.0-+24",
            "10.5.34.0-99999999999999999999",
            "10.5.34.0/24",
            "١٠.5.34.0-24",
            // Host bits set (Go would accept these; see module docs).
            "10.5.34.1-24",
            "10.5.34.0-24&fd00::1-64",
        ] {
            assert!(
                matches!(key(bad), Err(LeaseError::BadKey(ref k)) if k == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_paths() {
        let k = SubnetKey {
            ipv4: v4("10.5.34.0/24"),
            ipv6: Some(v6("fd00::/64")),
        };
        assert_eq!(
            k.key_path("/coreos.com/network"),
            "/coreos.com/network/subnets/10.5.34.0-24&fd00::-64"
        );
        assert_eq!(
            k.key_path("/coreos.com/network/"),
            "/coreos.com/network/subnets/10.5.34.0-24&fd00::-64"
        );
        assert_eq!(
            k.key_path("//a/./b/../c"),
            "/a/c/subnets/10.5.34.0-24&fd00::-64"
        );
        assert_eq!(k.key_path(""), "subnets/10.5.34.0-24&fd00::-64");
        assert_eq!(k.key_path("/"), "/subnets/10.5.34.0-24&fd00::-64");
        for prefix in [
            "/coreos.com/network",
            "/coreos.com/network/",
            "",
            "/",
            "x/y",
        ] {
            assert_eq!(
                SubnetKey::from_key_path(&k.key_path(prefix), prefix).unwrap(),
                k,
                "{prefix}"
            );
        }
        assert_eq!(
            SubnetKey::from_key_path(
                "/coreos.com/network/subnets/10.5.34.0-24",
                "/coreos.com/network"
            )
            .unwrap(),
            SubnetKey::v4(v4("10.5.34.0/24"))
        );
        for bad in [
            "/coreos.com/network/config",
            "/coreos.com/network/subnets2/10.5.34.0-24",
            "/other/subnets/10.5.34.0-24",
            "/coreos.com/network/subnets/",
            "/coreos.com/network/subnets/x",
        ] {
            assert!(
                matches!(
                    SubnetKey::from_key_path(bad, "/coreos.com/network"),
                    Err(LeaseError::BadKey(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_clean_like_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("./a/./b", "a/b"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("../../a/..", "../.."),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(go_path_clean(input), want, "{input}");
        }
        assert_eq!(go_path_join(&["", ""]), "");
    }

    #[test]
    fn overlaps() {
        let a = SubnetKey::v4(v4("10.5.0.0/16"));
        let b = SubnetKey::v4(v4("10.5.34.0/24"));
        let c = SubnetKey {
            ipv4: v4("10.6.0.0/24"),
            ipv6: Some(v6("fd00::/64")),
        };
        let d = SubnetKey {
            ipv4: v4("10.7.0.0/24"),
            ipv6: Some(v6("fd00::/48")),
        };
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(c.overlaps(&d));
    }

    #[test]
    fn lease_json_golden() {
        let vxlan = LeaseAttrs {
            public_ip: "192.0.2.1".parse().unwrap(),
            public_ipv6: None,
            backend_type: "vxlan".into(),
            backend_data: Some(
                RawJson::new(r#"{"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}"#).unwrap(),
            ),
            backend_v6_data: None,
        };
        assert_eq!(
            vxlan.to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#
        );

        let dual = LeaseAttrs {
            public_ip: "192.0.2.1".parse().unwrap(),
            public_ipv6: Some("2001:DB8::1".parse().unwrap()),
            backend_type: "vxlan".into(),
            backend_data: Some(RawJson::new(r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#).unwrap()),
            backend_v6_data: Some(
                RawJson::new(r#"{"VNI":1,"VtepMAC":"ae:1c:0b:2a:3e:77"}"#).unwrap(),
            ),
        };
        assert_eq!(
            dual.to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"BackendV6Data":{"VNI":1,"VtepMAC":"ae:1c:0b:2a:3e:77"}}"#
        );

        let hostgw = LeaseAttrs {
            public_ip: "198.51.100.7".parse().unwrap(),
            backend_type: "host-gw".into(),
            ..LeaseAttrs::default()
        };
        assert_eq!(
            hostgw.to_json(),
            r#"{"PublicIP":"198.51.100.7","PublicIPv6":null,"BackendType":"host-gw"}"#
        );

        let udp = LeaseAttrs {
            public_ip: "203.0.113.9".parse().unwrap(),
            ..LeaseAttrs::default()
        };
        assert_eq!(
            udp.to_json(),
            r#"{"PublicIP":"203.0.113.9","PublicIPv6":null}"#
        );

        assert_eq!(
            LeaseAttrs::default().to_json(),
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":null}"#
        );

        // Go's HTML escaping in strings and raw messages; IPv4-mapped IPv6 printed dotted.
        let odd = LeaseAttrs {
            public_ip: "192.0.2.1".parse().unwrap(),
            public_ipv6: Some("::ffff:192.0.2.1".parse().unwrap()),
            backend_type: "a<b>&\"c\"\n".into(),
            backend_data: Some(RawJson::new(r#"{"x":"<&>"}"#).unwrap()),
            backend_v6_data: Some(RawJson::new("null").unwrap()),
        };
        assert_eq!(
            odd.to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":"192.0.2.1","BackendType":"a\u003cb\u003e\u0026\"c\"\n","BackendData":{"x":"\u003c\u0026\u003e"},"BackendV6Data":null}"#
        );
    }

    #[test]
    fn lease_json_decode() {
        let text = br#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;
        let a = LeaseAttrs::from_json(text).unwrap();
        assert_eq!(a.public_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(a.public_ipv6, None);
        assert_eq!(a.backend_type, "vxlan");
        assert_eq!(
            a.backend_data.as_ref().unwrap().as_str(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#
        );
        assert_eq!(a.backend_v6_data, None);
        assert_eq!(a.to_json().as_bytes(), text);

        // Case-insensitive keys, unknown keys, whitespace, later duplicates win.
        let a = LeaseAttrs::from_json(
            br#" { "publicip" : "192.0.2.1", "PUBLICIPV6": "2001:db8::1", "Extra": [1,2],
                  "backendtype": "host-gw", "BackendType": "vxlan",
                  "backenddata": { "VNI" : 2 }, "BACKENDV6DATA": {"VNI": 3} } "#,
        )
        .unwrap();
        assert_eq!(a.public_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(a.public_ipv6, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(a.backend_type, "vxlan");
        assert_eq!(a.backend_data.unwrap().as_str(), r#"{"VNI":2}"#);
        assert_eq!(a.backend_v6_data.unwrap().as_str(), r#"{"VNI":3}"#);

        // Missing PublicIP → 0.0.0.0; top-level null → defaults.
        assert_eq!(LeaseAttrs::from_json(b"{}").unwrap(), LeaseAttrs::default());
        assert_eq!(
            LeaseAttrs::from_json(b"null").unwrap(),
            LeaseAttrs::default()
        );
        // PublicIPv6 given as IPv4 → IPv4-mapped (Go's ParseIP6).
        let a =
            LeaseAttrs::from_json(br#"{"PublicIP":"::ffff:192.0.2.1","PublicIPv6":"192.0.2.1"}"#)
                .unwrap();
        assert_eq!(a.public_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(a.public_ipv6, Some("::ffff:192.0.2.1".parse().unwrap()));
        // BackendData null is kept (Go's RawMessage "null" is not omitted).
        let a = LeaseAttrs::from_json(br#"{"PublicIP":"192.0.2.1","BackendData":null}"#).unwrap();
        assert!(a.backend_data.as_ref().unwrap().is_null());
        assert_eq!(
            a.to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendData":null}"#
        );
        // BackendType null leaves it empty.
        assert_eq!(
            LeaseAttrs::from_json(br#"{"BackendType":null}"#)
                .unwrap()
                .backend_type,
            ""
        );
        // Escapes in BackendType are decoded.
        assert_eq!(
            LeaseAttrs::from_json(br#"{"BackendType":"v\u0078lan"}"#)
                .unwrap()
                .backend_type,
            "vxlan"
        );
    }

    #[test]
    fn lease_json_errors() {
        let err = |t: &[u8]| match LeaseAttrs::from_json(t) {
            Err(LeaseError::BadValue(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(br#"{"PublicIP":"192.0.2"}"#),
            "invalid IP address format"
        );
        assert_eq!(
            err(br#"{"PublicIP":"fd00::1"}"#),
            "invalid IPv4 address format"
        );
        assert_eq!(err(br#"{"PublicIP":null}"#), "invalid IP address format");
        assert_eq!(err(br#"{"PublicIP":1}"#), "invalid IP address format");
        assert_eq!(err(br#"{"PublicIPv6":"x"}"#), "invalid IP address format");
        assert_eq!(
            err(br#"{"BackendType":1}"#),
            "json: cannot unmarshal number into Go struct field LeaseAttrs.BackendType of type string"
        );
        // A hard (UnmarshalJSON) error wins over an earlier type error.
        assert_eq!(
            err(br#"{"BackendType":1,"PublicIP":"x"}"#),
            "invalid IP address format"
        );
        assert_eq!(
            err(b"[]"),
            "json: cannot unmarshal array into Go value of type lease.LeaseAttrs"
        );
        assert_eq!(err(b""), "unexpected end of JSON input");
        assert_eq!(
            err(br#"{"PublicIP":"192.0.2.1""#),
            "unexpected end of JSON input"
        );
        assert!(LeaseAttrs::from_json(br#"{"PublicIP":"192.0.2.1"} x"#).is_err());
        assert_eq!(
            LeaseError::BadValue("invalid IP address format".into()).to_string(),
            "invalid lease value: invalid IP address format"
        );
    }

    #[test]
    fn lease_json_invalid_utf8_is_replaced() {
        let a = LeaseAttrs::from_json(b"{\"BackendType\":\"v\xffx\"}").unwrap();
        assert_eq!(a.backend_type, "v\u{FFFD}x");
    }

    #[test]
    fn raw_json() {
        let r = RawJson::new(" [ 1 , {\"a\" : \"<\"} ] ").unwrap();
        assert_eq!(r.as_str(), r#"[1,{"a":"\u003c"}]"#);
        assert_eq!(r.to_string(), r.as_str());
        assert_eq!(r.to_value().unwrap(), serde_json::json!([1, {"a": "<"}]));
        assert!(matches!(RawJson::new("{"), Err(LeaseError::BadValue(_))));
        assert!(matches!(RawJson::new(""), Err(LeaseError::BadValue(_))));

        let v = serde_json::json!({"VtepMAC": "c6:d2:32:6f:8f:44", "VNI": 1, "s": "a&b\u{2028}"});
        assert_eq!(
            RawJson::from_value(&v).as_str(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44","s":"a\u0026b\u2028"}"#
        );

        #[derive(serde::Serialize)]
        struct Vx {
            #[serde(rename = "VNI")]
            vni: u32,
            #[serde(rename = "VtepMAC")]
            mac: &'static str,
        }
        assert_eq!(
            RawJson::from_serialize(&Vx {
                vni: 1,
                mac: "c6:d2:32:6f:8f:44"
            })
            .unwrap()
            .as_str(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#
        );
    }
}
