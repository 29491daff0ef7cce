//! Network configuration: `<prefix>/config` in etcd or the `--net-config-path` file.
//!
//! Decoding follows Go's `encoding/json` (keys match case-insensitively, unknown keys are
//! ignored); defaults, validation and error texts follow Flannel's `pkg/subnet/config.go`.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// The range a subnet allocator hands subnets out of, after defaults were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetRange<N> {
    /// The whole pod network (`Network` / `IPv6Network`).
    pub network: N,
    /// Prefix length of one host's subnet (`SubnetLen` / `IPv6SubnetLen`).
    pub subnet_len: u8,
    /// First subnet that may be handed out (`SubnetMin`), as a network.
    pub min: N,
    /// Last subnet that may be handed out (`SubnetMax`), as a network.
    pub max: N,
}

/// The `Backend` object: its lowercased `Type` plus the raw JSON given to the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// `Backend.Type`, lowercased; `"udp"` when `Backend` is absent, `""` when `Type` is missing.
    pub backend_type: String,
    /// The whole `Backend` object as given (for backend-specific options).
    pub raw: serde_json::Value,
}

/// The decoded network configuration. Optional fields are `None` until [`NetworkConfig::check`]
/// fills in Flannel's defaults (that step runs in etcd mode only, as in Flannel).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub enable_ipv4: bool,
    pub enable_ipv6: bool,
    pub enable_nftables: bool,
    pub network: Option<Ipv4Net>,
    pub subnet_len: Option<u8>,
    pub subnet_min: Option<Ipv4Addr>,
    pub subnet_max: Option<Ipv4Addr>,
    pub ipv6_network: Option<Ipv6Net>,
    pub ipv6_subnet_len: Option<u8>,
    pub ipv6_subnet_min: Option<Ipv6Addr>,
    pub ipv6_subnet_max: Option<Ipv6Addr>,
    pub backend: BackendConfig,
}

/// Why a network configuration was rejected. Display texts are Flannel's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("error parsing subnet config: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
}
