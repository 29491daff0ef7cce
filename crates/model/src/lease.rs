//! Subnet leases as Flannel stores them in etcd.
//!
//! Key: `<prefix>/subnets/10.5.34.0-24` or, dual-stack, `10.5.34.0-24&fd00::-64`.
//! Value: `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{...}}`,
//! byte-identical to what Go's `json.Marshal(LeaseAttrs)` produces.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use ipnet::{Ipv4Net, Ipv6Net};

/// The subnet part of a lease key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubnetKey {
    pub ipv4: Ipv4Net,
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
    pub subnet: SubnetKey,
    pub attrs: LeaseAttrs,
    /// `None` for a reservation (a key written without a TTL).
    pub expiration: Option<SystemTime>,
}

/// A key or value that is not a Flannel lease.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    #[error("not a subnet key: {0:?}")]
    BadKey(String),
    #[error("invalid lease value: {0}")]
    BadValue(String),
}
