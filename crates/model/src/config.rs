//! Network configuration: `<prefix>/config` in etcd or the `--net-config-path` file.
//!
//! Decoding follows Go's `encoding/json` (keys match case-insensitively, unknown keys are
//! ignored); defaults, validation and error texts follow Flannel's `pkg/subnet/config.go`.
//!
//! # Parsing ([`NetworkConfig::parse`], Go `ParseConfig`)
//!
//! - `EnableIPv4` defaults to `true`; `EnableIPv6`, `EnableNFTables` to `false`. A `null`
//!   leaves a bool or `SubnetLen` at its default; a top-level `null` document gives all
//!   defaults (and backend `udp`), as in Go.
//! - `Network` / `IPv6Network` are CIDR strings parsed like Go's `net.ParseCIDR` and stored as
//!   networks (host bits cleared: `10.244.1.5/16` → `10.244.0.0/16`). A bad one is an error
//!   even when its family is disabled: `invalid CIDR address: <text>` (the text is the raw
//!   JSON with its quotes removed, so `"Network":null` gives `invalid CIDR address: null`).
//! - `SubnetMin`/`SubnetMax` parse like Flannel's `ip.ParseIP4` (`invalid IP address format`,
//!   `invalid IPv4 address format`, also for `null`); `IPv6SubnetMin`/`Max` like `ip.ParseIP6`
//!   (an IPv4 text becomes the IPv4-mapped address; `null` means unset).
//! - Go treats the zero values `0`, `0.0.0.0` and `::` as "not set"; they are stored as `None`.
//!   A `SubnetLen` above 255 is stored as 255 (Go's `uint` keeps it; both are rejected by
//!   [`NetworkConfig::check`] with the same message when the family is enabled).
//! - Backend type: `"udp"` when `Backend` is absent; otherwise `Backend.Type` (decoded from
//!   the raw `Backend` value Go-style), lowercased as Flannel's backend manager does. `{}`,
//!   `null` or a `Backend` without `Type` give `""`, which
//!   [`NetworkConfig::check_backend_type`] refuses naming `Backend.Type` (Go fails later
//!   with `unknown backend type: `).
//!   A non-object `Backend` is `error decoding Backend property of config: json: cannot
//!   unmarshal string into Go value of type struct { Type string }`.
//! - Type mismatches give Go's `json: cannot unmarshal string into Go struct field
//!   Config.SubnetLen of type uint`; when several fields are wrong, Go's choice of error is
//!   reproduced (the first type mismatch, unless an address error comes anywhere).
//!
//! **Deviations** (configs Flannel accepts but cannot use): Go accepts an IPv4 CIDR as
//! `IPv6Network` (turning it into an IPv4-mapped network) and an IPv4-mapped IPv6 CIDR as
//! `Network` (with a prefix length above 32). Such a value is dropped when its family is
//! disabled and rejected with `invalid IPv6 CIDR format` / `invalid IPv4 CIDR format` when it
//! is enabled.
//!
//! Errors are Go's texts without the `error parsing subnet config: ` prefix that Flannel's
//! kube subnet manager adds around them (etcd mode logs them bare).
//!
//! # Checking ([`NetworkConfig::check`], Go `CheckNetworkConfig`, etcd mode only)
//!
//! For each enabled family, in Go's order: the network must be set (not `0.0.0.0/0`), the
//! subnet length is validated or defaulted (24 / 64 if the network is big enough, else
//! network prefix + 2), `SubnetMin` defaults to the second subnet and `SubnetMax` to the last,
//! both must lie in the network and on a subnet boundary. **Deviation:** Go does not check
//! `SubnetMin <= SubnetMax` (an empty range then means "out of subnets" forever); we refuse
//! an inverted range ([`ConfigError::SubnetRangeInverted`], and the IPv6 equivalent).
//! Enabling neither family is not a `check` error in Go either: flanneld fails later with
//! `none defined stack` — see [`NetworkConfig::ip_stack`].

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::value::RawValue;

use crate::goip::{self, GoCidr, IpParseError};
use crate::gojson::{self, FieldRef, GoInt, GoJsonError, Members, TopLevel};

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
    /// The whole `Backend` object as given (for backend-specific options); `Null` when the
    /// config has no `Backend`. Decode options with [`crate::gojson::get`] and friends.
    pub raw: serde_json::Value,
}

/// The decoded network configuration. Optional fields are `None` until [`NetworkConfig::check`]
/// fills in Flannel's defaults (that step runs in etcd mode only, as in Flannel).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// `EnableIPv4` (default `true`).
    pub enable_ipv4: bool,
    /// `EnableIPv6` (default `false`).
    pub enable_ipv6: bool,
    /// `EnableNFTables`: nftables instead of iptables (default `false`).
    pub enable_nftables: bool,
    /// `Network`, host bits cleared.
    pub network: Option<Ipv4Net>,
    /// `SubnetLen`; `None` when absent or 0.
    pub subnet_len: Option<u8>,
    /// `SubnetMin`; `None` when absent or `0.0.0.0`.
    pub subnet_min: Option<Ipv4Addr>,
    /// `SubnetMax`; `None` when absent or `0.0.0.0`.
    pub subnet_max: Option<Ipv4Addr>,
    /// `IPv6Network`, host bits cleared.
    pub ipv6_network: Option<Ipv6Net>,
    /// `IPv6SubnetLen`; `None` when absent or 0.
    pub ipv6_subnet_len: Option<u8>,
    /// `IPv6SubnetMin`; `None` when absent, `null` or `::`.
    pub ipv6_subnet_min: Option<Ipv6Addr>,
    /// `IPv6SubnetMax`; `None` when absent, `null` or `::`.
    pub ipv6_subnet_max: Option<Ipv6Addr>,
    /// `Backend`: type and raw options.
    pub backend: BackendConfig,
}

/// Why a network configuration was rejected. Display texts are Flannel's (without the
/// `error parsing subnet config: ` prefix Flannel's kube mode adds).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not JSON, or a field of the wrong JSON type (Go `encoding/json` text).
    #[error("{0}")]
    Json(String),
    /// `Network` / `IPv6Network` is not a CIDR (Go `net.ParseCIDR`); holds the text.
    #[error("invalid CIDR address: {0}")]
    InvalidCidr(String),
    /// `Network` is a CIDR but not an IPv4 one.
    #[error("invalid IPv4 CIDR format")]
    NotIpv4Cidr,
    /// `IPv6Network` is an IPv4 CIDR (our check; Go silently maps it into IPv6).
    #[error("invalid IPv6 CIDR format")]
    NotIpv6Cidr,
    /// `SubnetMin`/`SubnetMax`/`IPv6SubnetMin`/`IPv6SubnetMax` is not an IP address.
    #[error("invalid IP address format")]
    InvalidIp,
    /// `SubnetMin`/`SubnetMax` is an IPv6 address.
    #[error("invalid IPv4 address format")]
    NotIpv4Address,
    /// `Backend` could not be decoded.
    #[error("error decoding Backend property of config: {0}")]
    Backend(String),
    /// IPv4 is enabled but `Network` is missing or `0.0.0.0/0`.
    #[error("please define a correct Network parameter in the flannel config")]
    MissingNetwork,
    /// IPv6 is enabled but `IPv6Network` is missing or `::/0`.
    #[error("please define a correct IPv6Network parameter in the flannel config")]
    MissingIpv6Network,
    /// `SubnetLen` > 30.
    #[error("SubnetLen must be less than /31")]
    SubnetLenTooLong,
    /// `IPv6SubnetLen` > 126.
    #[error("SubnetLen must be less than /127")]
    Ipv6SubnetLenTooLong,
    /// `SubnetLen` < network prefix + 2.
    #[error("network must be able to accommodate at least four subnets")]
    TooFewSubnets,
    /// `IPv6SubnetLen` < IPv6 network prefix + 2 (same text as Go).
    #[error("network must be able to accommodate at least four subnets")]
    Ipv6TooFewSubnets,
    /// No `SubnetLen` and the network is smaller than /28.
    #[error("network is too small. Minimum useful network prefix is /28")]
    NetworkTooSmall,
    /// No `IPv6SubnetLen` and the IPv6 network is smaller than /124.
    #[error("IPv6Network is too small. Minimum useful network prefix is /124")]
    Ipv6NetworkTooSmall,
    /// `SubnetMin` outside `Network`.
    #[error("SubnetMin is not in the range of the Network")]
    SubnetMinOutOfRange,
    /// `SubnetMax` outside `Network`.
    #[error("SubnetMax is not in the range of the Network")]
    SubnetMaxOutOfRange,
    /// `SubnetMin` has bits set below `SubnetLen`.
    #[error("SubnetMin is not on a SubnetLen boundary: {0}")]
    SubnetMinUnaligned(Ipv4Addr),
    /// `SubnetMax` has bits set below `SubnetLen`.
    #[error("SubnetMax is not on a SubnetLen boundary: {0}")]
    SubnetMaxUnaligned(Ipv4Addr),
    /// `IPv6SubnetMin` outside `IPv6Network`.
    #[error("IPv6SubnetMin is not in the range of the IPv6Network")]
    Ipv6SubnetMinOutOfRange,
    /// `IPv6SubnetMax` outside `IPv6Network`.
    #[error("IPv6SubnetMax is not in the range of the IPv6Network")]
    Ipv6SubnetMaxOutOfRange,
    /// `IPv6SubnetMin` has bits set below `IPv6SubnetLen`.
    #[error("IPv6SubnetMin is not on a SubnetLen boundary: {}", goip::ipv6_to_string(*.0))]
    Ipv6SubnetMinUnaligned(Ipv6Addr),
    /// `IPv6SubnetMax` has bits set below `IPv6SubnetLen`.
    #[error("IPv6SubnetMax is not on a SubnetLen boundary: {}", goip::ipv6_to_string(*.0))]
    Ipv6SubnetMaxUnaligned(Ipv6Addr),
    /// `SubnetMin` above `SubnetMax` (our check; Go accepts it and then finds no subnet).
    #[error("SubnetMin {min} is above SubnetMax {max}: no subnet could ever be leased")]
    SubnetRangeInverted { min: Ipv4Addr, max: Ipv4Addr },
    /// `IPv6SubnetMin` above `IPv6SubnetMax` (our check, as for IPv4).
    #[error(
        "IPv6SubnetMin {} is above IPv6SubnetMax {}: no subnet could ever be leased",
        goip::ipv6_to_string(*min),
        goip::ipv6_to_string(*max)
    )]
    Ipv6SubnetRangeInverted { min: Ipv6Addr, max: Ipv6Addr },
    /// `Backend` is given without a `Type` (our check; Go fails later with
    /// `unknown backend type: `).
    #[error(
        "Backend.Type is missing: name the backend, e.g. \"Backend\": {{\"Type\": \"vxlan\"}}"
    )]
    MissingBackendType,
    /// Neither `EnableIPv4` nor `EnableIPv6` (flanneld's `GetIPFamily`).
    #[error("none defined stack")]
    NoStack,
}

impl From<GoJsonError> for ConfigError {
    fn from(e: GoJsonError) -> Self {
        ConfigError::Json(e.to_string())
    }
}

impl From<IpParseError> for ConfigError {
    fn from(e: IpParseError) -> Self {
        match e {
            IpParseError::Invalid => ConfigError::InvalidIp,
            IpParseError::NotIpv4 => ConfigError::NotIpv4Address,
        }
    }
}

/// Which address families flanneld runs (Go `ipmatch.GetIPFamily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpStack {
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Both.
    Dual,
}

/// Go's field names of `subnet.Config` that JSON decodes (`BackendType` is `json:"-"`).
const FIELDS: [&str; 12] = [
    "EnableIPv4",
    "EnableIPv6",
    "EnableNFTables",
    "Network",
    "IPv6Network",
    "SubnetMin",
    "SubnetMax",
    "IPv6SubnetMin",
    "IPv6SubnetMax",
    "SubnetLen",
    "IPv6SubnetLen",
    "Backend",
];

/// A decoded `Network`/`IPv6Network` that Go accepts but that has the wrong family.
#[derive(Debug, Clone, Copy)]
enum WrongFamily {
    None,
    Set,
}

impl NetworkConfig {
    /// Decodes a network configuration like Go's `ParseConfig` (see the module docs).
    pub fn parse(json: &str) -> Result<NetworkConfig, ConfigError> {
        let mut cfg = NetworkConfig {
            enable_ipv4: true,
            enable_ipv6: false,
            enable_nftables: false,
            network: None,
            subnet_len: None,
            subnet_min: None,
            subnet_max: None,
            ipv6_network: None,
            ipv6_subnet_len: None,
            ipv6_subnet_min: None,
            ipv6_subnet_max: None,
            backend: BackendConfig {
                backend_type: String::new(),
                raw: serde_json::Value::Null,
            },
        };
        let mut backend_raw: Option<&RawValue> = None;
        let mut wrong_v4 = WrongFamily::None;
        let mut wrong_v6 = WrongFamily::None;
        let mut type_error: Option<GoJsonError> = None;

        if let TopLevel::Object(members) = Members::parse(json, "subnet.Config")? {
            for (key, raw) in members.iter() {
                let Some(i) = gojson::match_field(&FIELDS, key) else {
                    continue;
                };
                let field = FieldRef::new("Config", FIELDS[i]);
                // Type mismatches are remembered and decoding goes on (Go's saveError).
                let mut soft = |r: Result<(), GoJsonError>| {
                    if let Err(e) = r {
                        type_error.get_or_insert(e);
                    }
                };
                match FIELDS[i] {
                    "EnableIPv4" => soft(set(gojson::raw_bool(raw, field), &mut cfg.enable_ipv4)),
                    "EnableIPv6" => soft(set(gojson::raw_bool(raw, field), &mut cfg.enable_ipv6)),
                    "EnableNFTables" => {
                        soft(set(gojson::raw_bool(raw, field), &mut cfg.enable_nftables))
                    }
                    "SubnetLen" => soft(set_len(raw, field, &mut cfg.subnet_len)),
                    "IPv6SubnetLen" => soft(set_len(raw, field, &mut cfg.ipv6_subnet_len)),
                    "Network" => {
                        let text = gojson::trim_quotes(raw);
                        match goip::parse_cidr(text) {
                            None => return Err(ConfigError::InvalidCidr(text.to_string())),
                            Some(GoCidr::V4(a, len)) => {
                                cfg.network = Ipv4Net::new(a, len).ok().map(|n| n.trunc());
                                wrong_v4 = WrongFamily::None;
                            }
                            Some(GoCidr::V6(a, len)) => {
                                // Go: IPv4-mapped with a prefix of 96+ "works", else rejected.
                                if a.to_ipv4_mapped().is_none() || len < 96 {
                                    return Err(ConfigError::NotIpv4Cidr);
                                }
                                cfg.network = None;
                                wrong_v4 = WrongFamily::Set;
                            }
                        }
                    }
                    "IPv6Network" => {
                        let text = gojson::trim_quotes(raw);
                        match goip::parse_cidr(text) {
                            None => return Err(ConfigError::InvalidCidr(text.to_string())),
                            Some(GoCidr::V6(a, len)) => {
                                cfg.ipv6_network = Ipv6Net::new(a, len).ok().map(|n| n.trunc());
                                wrong_v6 = WrongFamily::None;
                            }
                            Some(GoCidr::V4(..)) => {
                                cfg.ipv6_network = None;
                                wrong_v6 = WrongFamily::Set;
                            }
                        }
                    }
                    "SubnetMin" => {
                        let a = goip::parse_ip4(gojson::trim_quotes(raw))?;
                        cfg.subnet_min = (!a.is_unspecified()).then_some(a);
                    }
                    "SubnetMax" => {
                        let a = goip::parse_ip4(gojson::trim_quotes(raw))?;
                        cfg.subnet_max = (!a.is_unspecified()).then_some(a);
                    }
                    "IPv6SubnetMin" => cfg.ipv6_subnet_min = parse_ip6_field(raw)?,
                    "IPv6SubnetMax" => cfg.ipv6_subnet_max = parse_ip6_field(raw)?,
                    _ => backend_raw = Some(raw),
                }
            }
        }
        if let Some(e) = type_error {
            return Err(e.into());
        }
        if matches!(wrong_v4, WrongFamily::Set) && cfg.enable_ipv4 {
            return Err(ConfigError::NotIpv4Cidr);
        }
        if matches!(wrong_v6, WrongFamily::Set) && cfg.enable_ipv6 {
            return Err(ConfigError::NotIpv6Cidr);
        }
        cfg.backend = parse_backend(backend_raw)?;
        Ok(cfg)
    }

    /// Validates the configuration and fills in defaults like Go's `CheckNetworkConfig`
    /// (see the module docs). Idempotent: a checked config checks again unchanged.
    pub fn check(&mut self) -> Result<(), ConfigError> {
        if self.enable_ipv4 {
            self.check_v4()?;
        }
        if self.enable_ipv6 {
            self.check_v6()?;
        }
        Ok(())
    }

    fn check_v4(&mut self) -> Result<(), ConfigError> {
        let net = match self.network {
            Some(n) if !(n.addr().is_unspecified() && n.prefix_len() == 0) => n,
            _ => return Err(ConfigError::MissingNetwork),
        };
        let prefix = net.prefix_len();
        let len = match self.subnet_len.filter(|l| *l > 0) {
            Some(l) => {
                if l > 30 {
                    return Err(ConfigError::SubnetLenTooLong);
                }
                if l < prefix + 2 {
                    return Err(ConfigError::TooFewSubnets);
                }
                l
            }
            None if prefix > 28 => return Err(ConfigError::NetworkTooSmall),
            None if prefix <= 22 => 24,
            None => prefix + 2,
        };
        self.subnet_len = Some(len);

        let base = u64::from(u32::from(net.addr()));
        let size = 1u64 << (32 - len);
        let block = 1u64 << (32 - prefix);
        let to_addr = |v: u64| Ipv4Addr::from(u32::try_from(v & 0xffff_ffff).unwrap_or(0));
        let net_mask = u32::try_from((0xffff_ffffu64 << (32 - prefix)) & 0xffff_ffff).unwrap_or(0);
        let contains = |a: Ipv4Addr| u32::from(a) & net_mask == u32::from(net.addr()) & net_mask;

        let min = match self.subnet_min.filter(|a| !a.is_unspecified()) {
            None => to_addr(base + size),
            Some(a) if !contains(a) => return Err(ConfigError::SubnetMinOutOfRange),
            Some(a) => a,
        };
        self.subnet_min = Some(min);
        let max = match self.subnet_max.filter(|a| !a.is_unspecified()) {
            None => to_addr(base + block - size),
            Some(a) if !contains(a) => return Err(ConfigError::SubnetMaxOutOfRange),
            Some(a) => a,
        };
        self.subnet_max = Some(max);

        let sub_mask = u32::MAX << (32 - len);
        if u32::from(min) & sub_mask != u32::from(min) {
            return Err(ConfigError::SubnetMinUnaligned(min));
        }
        if u32::from(max) & sub_mask != u32::from(max) {
            return Err(ConfigError::SubnetMaxUnaligned(max));
        }
        if min > max {
            return Err(ConfigError::SubnetRangeInverted { min, max });
        }
        Ok(())
    }

    fn check_v6(&mut self) -> Result<(), ConfigError> {
        let net = match self.ipv6_network {
            Some(n) if !(n.addr().is_unspecified() && n.prefix_len() == 0) => n,
            _ => return Err(ConfigError::MissingIpv6Network),
        };
        let prefix = net.prefix_len();
        let len = match self.ipv6_subnet_len.filter(|l| *l > 0) {
            Some(l) => {
                if l > 126 {
                    return Err(ConfigError::Ipv6SubnetLenTooLong);
                }
                if l < prefix + 2 {
                    return Err(ConfigError::Ipv6TooFewSubnets);
                }
                l
            }
            None if prefix > 124 => return Err(ConfigError::Ipv6NetworkTooSmall),
            None if prefix <= 62 => 64,
            None => prefix + 2,
        };
        self.ipv6_subnet_len = Some(len);

        let base = u128::from(net.addr());
        let size = 1u128 << (128 - u32::from(len));
        // Next().IP - size, i.e. base + 2^(128-prefix) - size, without overflowing at /0.
        let block_minus_size = if prefix == 0 {
            u128::MAX - size + 1
        } else {
            (1u128 << (128 - u32::from(prefix))) - size
        };
        let net_mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        };
        let contains = |a: Ipv6Addr| u128::from(a) & net_mask == base & net_mask;

        let min = match self.ipv6_subnet_min.filter(|a| !a.is_unspecified()) {
            None => Ipv6Addr::from(base.wrapping_add(size)),
            Some(a) if !contains(a) => return Err(ConfigError::Ipv6SubnetMinOutOfRange),
            Some(a) => a,
        };
        self.ipv6_subnet_min = Some(min);
        let max = match self.ipv6_subnet_max.filter(|a| !a.is_unspecified()) {
            None => Ipv6Addr::from(base.wrapping_add(block_minus_size)),
            Some(a) if !contains(a) => return Err(ConfigError::Ipv6SubnetMaxOutOfRange),
            Some(a) => a,
        };
        self.ipv6_subnet_max = Some(max);

        let sub_mask = u128::MAX << (128 - u32::from(len));
        if u128::from(min) & sub_mask != u128::from(min) {
            return Err(ConfigError::Ipv6SubnetMinUnaligned(min));
        }
        if u128::from(max) & sub_mask != u128::from(max) {
            return Err(ConfigError::Ipv6SubnetMaxUnaligned(max));
        }
        if min > max {
            return Err(ConfigError::Ipv6SubnetRangeInverted { min, max });
        }
        Ok(())
    }

    /// The IPv4 allocation range: `Some` when IPv4 is enabled and `Network`, `SubnetLen`,
    /// `SubnetMin` and `SubnetMax` are all set — i.e. after a successful [`check`](Self::check)
    /// (or when the config spelled them all out). `min`/`max` are `/SubnetLen` networks.
    pub fn ipv4_range(&self) -> Option<SubnetRange<Ipv4Net>> {
        if !self.enable_ipv4 {
            return None;
        }
        let len = self.subnet_len.filter(|l| *l > 0)?;
        Some(SubnetRange {
            network: self.network?,
            subnet_len: len,
            min: Ipv4Net::new(self.subnet_min?, len).ok()?,
            max: Ipv4Net::new(self.subnet_max?, len).ok()?,
        })
    }

    /// The IPv6 allocation range, like [`ipv4_range`](Self::ipv4_range).
    pub fn ipv6_range(&self) -> Option<SubnetRange<Ipv6Net>> {
        if !self.enable_ipv6 {
            return None;
        }
        let len = self.ipv6_subnet_len.filter(|l| *l > 0)?;
        Some(SubnetRange {
            network: self.ipv6_network?,
            subnet_len: len,
            min: Ipv6Net::new(self.ipv6_subnet_min?, len).ok()?,
            max: Ipv6Net::new(self.ipv6_subnet_max?, len).ok()?,
        })
    }

    /// The backend type (lowercased `Backend.Type`; `udp` when `Backend` is absent).
    pub fn backend_type(&self) -> &str {
        &self.backend.backend_type
    }

    /// What etcd mode accepts as `<prefix>/config`: [`parse`](Self::parse), then
    /// [`check`](Self::check), [`ip_stack`](Self::ip_stack) and
    /// [`check_backend_type`](Self::check_backend_type).
    pub fn parse_checked(json: &str) -> Result<NetworkConfig, ConfigError> {
        let mut config = NetworkConfig::parse(json)?;
        config.check()?;
        config.ip_stack()?;
        config.check_backend_type()?;
        Ok(config)
    }

    /// Whether `other` differs from this config only in what the subnet allocator uses
    /// (`SubnetLen`, `SubnetMin`, `SubnetMax` and their IPv6 equivalents): such a change can
    /// be taken over by a running flanneld that has no lease yet.
    pub fn same_except_allocation(&self, other: &NetworkConfig) -> bool {
        fn strip(c: &NetworkConfig) -> NetworkConfig {
            NetworkConfig {
                subnet_len: None,
                subnet_min: None,
                subnet_max: None,
                ipv6_subnet_len: None,
                ipv6_subnet_min: None,
                ipv6_subnet_max: None,
                ..c.clone()
            }
        }
        strip(self) == strip(other)
    }

    /// Refuses a `Backend` object without `Type` ([`ConfigError::MissingBackendType`]); a
    /// config without `Backend` (which means `udp`) passes. flanneld applies this to the
    /// config from etcd and to `net-conf.json`.
    pub fn check_backend_type(&self) -> Result<(), ConfigError> {
        if self.backend.backend_type.is_empty() {
            return Err(ConfigError::MissingBackendType);
        }
        Ok(())
    }

    /// The address families to run, or `none defined stack` when neither is enabled
    /// (where flanneld fails, after the config was fetched and checked).
    pub fn ip_stack(&self) -> Result<IpStack, ConfigError> {
        match (self.enable_ipv4, self.enable_ipv6) {
            (true, false) => Ok(IpStack::Ipv4),
            (false, true) => Ok(IpStack::Ipv6),
            (true, true) => Ok(IpStack::Dual),
            (false, false) => Err(ConfigError::NoStack),
        }
    }
}

fn set<T>(r: Result<Option<T>, GoJsonError>, slot: &mut T) -> Result<(), GoJsonError> {
    if let Some(v) = r? {
        *slot = v;
    }
    Ok(())
}

/// `SubnetLen` / `IPv6SubnetLen` (Go `uint`): 0 means unset, above 255 saturates.
fn set_len(raw: &RawValue, field: FieldRef<'_>, slot: &mut Option<u8>) -> Result<(), GoJsonError> {
    if let Some(n) = gojson::raw_int(raw, field, GoInt::Uint)? {
        *slot = match n {
            0 => None,
            n => Some(u8::try_from(n).unwrap_or(u8::MAX)),
        };
    }
    Ok(())
}

/// `IPv6SubnetMin` / `IPv6SubnetMax` (Go `*ip.IP6`): `null` and `::` mean unset.
fn parse_ip6_field(raw: &RawValue) -> Result<Option<Ipv6Addr>, ConfigError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    let a = goip::parse_ip6(gojson::trim_quotes(raw))?;
    Ok((!a.is_unspecified()).then_some(a))
}

/// Go's `parseBackendType` plus the lowercasing done by the backend manager.
fn parse_backend(raw: Option<&RawValue>) -> Result<BackendConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(BackendConfig {
            backend_type: "udp".to_string(),
            raw: serde_json::Value::Null,
        });
    };
    let backend_err = |e: GoJsonError| ConfigError::Backend(e.to_string());
    let mut ty = String::new();
    match Members::from_raw(raw, "struct { Type string }").map_err(backend_err)? {
        TopLevel::Null => {}
        TopLevel::Object(members) => {
            let mut type_error = None;
            for (key, value) in members.iter() {
                if gojson::match_field(&["Type"], key).is_none() {
                    continue;
                }
                match gojson::raw_string(value, FieldRef::new("", "Type")) {
                    Ok(Some(s)) => ty = s,
                    Ok(None) => {}
                    Err(e) => {
                        type_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = type_error {
                return Err(backend_err(e));
            }
        }
    }
    let value = serde_json::from_str(raw.get()).map_err(|e| ConfigError::Backend(e.to_string()))?;
    Ok(BackendConfig {
        backend_type: go_to_lower(&ty),
        raw: value,
    })
}

/// Go's `strings.ToLower` (per-character simple lower-case mapping).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_ascii_lowercase()
            } else {
                c.to_lowercase().next().unwrap_or(c)
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> NetworkConfig {
        NetworkConfig::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn checked(s: &str) -> NetworkConfig {
        let mut c = parse(s);
        c.check().unwrap_or_else(|e| panic!("{s}: {e}"));
        c
    }

    fn parse_err(s: &str) -> String {
        NetworkConfig::parse(s).expect_err(s).to_string()
    }

    fn check_err(s: &str) -> String {
        parse(s).check().expect_err(s).to_string()
    }

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn parse_defaults() {
        let c = parse(r#"{"Network":"10.244.0.0/16"}"#);
        assert!(c.enable_ipv4);
        assert!(!c.enable_ipv6);
        assert!(!c.enable_nftables);
        assert_eq!(c.network, Some(v4("10.244.0.0/16")));
        assert_eq!(c.subnet_len, None);
        assert_eq!(c.subnet_min, None);
        assert_eq!(c.subnet_max, None);
        assert_eq!(c.ipv6_network, None);
        assert_eq!(c.backend_type(), "udp");
        assert_eq!(c.backend.raw, serde_json::Value::Null);
        assert_eq!(c.ipv4_range(), None, "not checked yet");
    }

    #[test]
    fn reference_examples_parse() {
        // Documentation example.
        let c = checked(
            r#"{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.99.0.0","Backend":{"Type":"udp","Port":7890}}"#,
        );
        assert_eq!(c.backend_type(), "udp");
        assert_eq!(
            gojson::get(c.backend.raw.as_object().unwrap(), "port"),
            Some(&serde_json::json!(7890))
        );
        assert_eq!(
            c.ipv4_range().unwrap(),
            SubnetRange {
                network: v4("10.0.0.0/8"),
                subnet_len: 20,
                min: v4("10.10.0.0/20"),
                max: v4("10.99.0.0/20"),
            }
        );
        // Default manifest.
        let c = checked(
            r#"{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"vxlan"}}"#,
        );
        assert_eq!(c.backend_type(), "vxlan");
        assert!(!c.enable_nftables);
        assert_eq!(
            c.ipv4_range().unwrap(),
            SubnetRange {
                network: v4("10.244.0.0/16"),
                subnet_len: 24,
                min: v4("10.244.1.0/24"),
                max: v4("10.244.255.0/24"),
            }
        );
        assert_eq!(c.ipv6_range(), None);
        // Dual-stack manifest variant.
        let c = checked(
            r#"{"EnableIPv6": true, "Network": "10.244.0.0/16", "IPv6Network": "2001:cafe:42::/56",
                "Backend": {"Type": "vxlan"}}"#,
        );
        assert_eq!(
            c.ipv6_range().unwrap(),
            SubnetRange {
                network: v6("2001:cafe:42::/56"),
                subnet_len: 64,
                min: v6("2001:cafe:42:1::/64"),
                max: v6("2001:cafe:42:ff::/64"),
            }
        );
        assert_eq!(c.ip_stack(), Ok(IpStack::Dual));
    }

    #[test]
    fn flannel_config_tests() {
        // pkg/subnet/config_test.go equivalents.
        let c = checked(r#"{ "network": "10.3.0.0/16" }"#);
        assert_eq!(c.subnet_min, Some(Ipv4Addr::new(10, 3, 1, 0)));
        assert_eq!(c.subnet_max, Some(Ipv4Addr::new(10, 3, 255, 0)));
        assert_eq!(c.subnet_len, Some(24));

        let c =
            checked(r#"{ "enableIPv6": true, "ipv6Network": "fc00::/48", "enableIPv4": false }"#);
        assert_eq!(c.ipv6_subnet_min, Some("fc00:0:0:1::".parse().unwrap()));
        assert_eq!(c.ipv6_subnet_max, Some("fc00:0:0:ffff::".parse().unwrap()));
        assert_eq!(c.ipv6_subnet_len, Some(64));
        assert_eq!(c.ipv4_range(), None);
        assert_eq!(c.ip_stack(), Ok(IpStack::Ipv6));

        let c = checked(
            r#"{ "Network": "10.3.0.0/16", "SubnetMin": "10.3.5.0", "SubnetMax": "10.3.8.0", "SubnetLen": 28 }"#,
        );
        assert_eq!(c.subnet_min, Some(Ipv4Addr::new(10, 3, 5, 0)));
        assert_eq!(c.subnet_max, Some(Ipv4Addr::new(10, 3, 8, 0)));
        assert_eq!(c.subnet_len, Some(28));

        let c = checked(
            r#"{ "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetMin": "fc00:0:0:1::", "IPv6SubnetMax": "fc00:0:0:f::", "IPv6SubnetLen": 124, "enableIPv4": false }"#,
        );
        assert_eq!(c.ipv6_subnet_min, Some("fc00:0:0:1::".parse().unwrap()));
        assert_eq!(c.ipv6_subnet_max, Some("fc00:0:0:f::".parse().unwrap()));
        assert_eq!(c.ipv6_subnet_len, Some(124));
    }

    #[test]
    fn subnet_len_defaults() {
        for (net, len, min, max) in [
            ("10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"),
            ("10.0.0.0/22", 24, "10.0.1.0", "10.0.3.0"),
            ("10.0.0.0/23", 25, "10.0.0.128", "10.0.1.128"),
            ("10.0.0.0/26", 28, "10.0.0.16", "10.0.0.48"),
            ("10.0.0.0/28", 30, "10.0.0.4", "10.0.0.12"),
            ("255.255.255.0/24", 26, "255.255.255.64", "255.255.255.192"),
            ("128.0.0.0/1", 24, "128.0.1.0", "255.255.255.0"),
        ] {
            let c = checked(&format!(r#"{{"Network":"{net}"}}"#));
            assert_eq!(c.subnet_len, Some(len), "{net}");
            assert_eq!(c.subnet_min, Some(min.parse().unwrap()), "{net}");
            assert_eq!(c.subnet_max, Some(max.parse().unwrap()), "{net}");
        }
        for (net, len, min, max) in [
            ("fd00::/48", 64, "fd00:0:0:1::", "fd00:0:0:ffff::"),
            ("fd00::/62", 64, "fd00:0:0:1::", "fd00:0:0:3::"),
            ("fd00::/63", 65, "fd00:0:0:0:8000::", "fd00:0:0:1:8000::"),
            ("fd00::/124", 126, "fd00::4", "fd00::c"),
            ("ffff::/16", 64, "ffff:0:0:1::", "ffff:ffff:ffff:ffff::"),
            ("8000::/1", 64, "8000:0:0:1::", "ffff:ffff:ffff:ffff::"),
        ] {
            let c = checked(&format!(
                r#"{{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"{net}"}}"#
            ));
            assert_eq!(c.ipv6_subnet_len, Some(len), "{net}");
            assert_eq!(c.ipv6_subnet_min, Some(min.parse().unwrap()), "{net}");
            assert_eq!(c.ipv6_subnet_max, Some(max.parse().unwrap()), "{net}");
        }
    }

    #[test]
    fn check_is_idempotent() {
        let mut c =
            checked(r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56"}"#);
        let before = c.clone();
        c.check().unwrap();
        assert_eq!(c, before);
    }

    #[test]
    fn check_error_texts() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{}"#,
                "please define a correct Network parameter in the flannel config",
            ),
            (
                r#"{"Network":"0.0.0.0/0"}"#,
                "please define a correct Network parameter in the flannel config",
            ),
            (
                r#"{"EnableIPv6":true,"Network":"10.0.0.0/8"}"#,
                "please define a correct IPv6Network parameter in the flannel config",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"::/0"}"#,
                "please define a correct IPv6Network parameter in the flannel config",
            ),
            (
                r#"{"Network":"10.0.0.0/8","SubnetLen":31}"#,
                "SubnetLen must be less than /31",
            ),
            (
                r#"{"Network":"10.0.0.0/8","SubnetLen":256}"#,
                "SubnetLen must be less than /31",
            ),
            (
                r#"{"Network":"10.0.0.0/16","SubnetLen":17}"#,
                "network must be able to accommodate at least four subnets",
            ),
            (
                r#"{"Network":"10.0.0.0/29"}"#,
                "network is too small. Minimum useful network prefix is /28",
            ),
            (
                r#"{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}"#,
                "SubnetMin is not in the range of the Network",
            ),
            (
                r#"{"Network":"10.0.0.0/16","SubnetMax":"10.1.0.0"}"#,
                "SubnetMax is not in the range of the Network",
            ),
            (
                r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.1"}"#,
                "SubnetMin is not on a SubnetLen boundary: 10.0.1.1",
            ),
            (
                r#"{"Network":"10.0.0.0/16","SubnetMax":"10.0.255.128"}"#,
                "SubnetMax is not on a SubnetLen boundary: 10.0.255.128",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":127}"#,
                "SubnetLen must be less than /127",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":49}"#,
                "network must be able to accommodate at least four subnets",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/125"}"#,
                "IPv6Network is too small. Minimum useful network prefix is /124",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMin":"fd01::"}"#,
                "IPv6SubnetMin is not in the range of the IPv6Network",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMin":"10.0.0.0"}"#,
                "IPv6SubnetMin is not in the range of the IPv6Network",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMax":"fd01::"}"#,
                "IPv6SubnetMax is not in the range of the IPv6Network",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMin":"fd00:0:0:1::1"}"#,
                "IPv6SubnetMin is not on a SubnetLen boundary: fd00:0:0:1::1",
            ),
            (
                r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMax":"fd00:0:0:ff:8000::"}"#,
                "IPv6SubnetMax is not on a SubnetLen boundary: fd00:0:0:ff:8000::",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(check_err(json), *want, "{json}");
        }
        // IPv4 errors come before IPv6 ones.
        assert_eq!(
            check_err(r#"{"EnableIPv6":true,"Network":"10.0.0.0/29"}"#),
            "network is too small. Minimum useful network prefix is /28"
        );
        // Range checks come before alignment checks.
        assert_eq!(
            check_err(r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.1","SubnetMax":"10.1.0.0"}"#),
            "SubnetMax is not in the range of the Network"
        );
    }

    #[test]
    fn inverted_range_is_refused_with_both_bounds() {
        assert_eq!(
            check_err(
                r#"{"Network":"198.18.0.0/16","SubnetMin":"198.18.200.0","SubnetMax":"198.18.10.0"}"#
            ),
            "SubnetMin 198.18.200.0 is above SubnetMax 198.18.10.0: no subnet could ever be leased"
        );
        assert_eq!(
            check_err(
                r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetMin":"2001:db8:0:ff::","IPv6SubnetMax":"2001:db8:0:10::"}"#
            ),
            "IPv6SubnetMin 2001:db8:0:ff:: is above IPv6SubnetMax 2001:db8:0:10::: no subnet could ever be leased"
        );
        // A one-subnet range is fine.
        let c = checked(
            r#"{"Network":"198.18.0.0/16","SubnetMin":"198.18.7.0","SubnetMax":"198.18.7.0"}"#,
        );
        let r = c.ipv4_range().unwrap();
        assert_eq!(r.min, r.max);
    }

    #[test]
    fn backend_without_type_is_refused_naming_the_field() {
        for json in [
            r#"{"Network":"198.18.0.0/16","Backend":{}}"#,
            r#"{"Network":"198.18.0.0/16","Backend":null}"#,
            r#"{"Network":"198.18.0.0/16","Backend":{"VNI":1}}"#,
        ] {
            let err = parse(json)
                .check_backend_type()
                .expect_err(json)
                .to_string();
            assert!(err.starts_with("Backend.Type is missing"), "{json}: {err}");
        }
        parse(r#"{"Network":"198.18.0.0/16"}"#)
            .check_backend_type()
            .unwrap();
        parse(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#)
            .check_backend_type()
            .unwrap();
    }

    #[test]
    fn allocation_only_changes_are_told_apart() {
        let a = checked(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let b = checked(
            r#"{"Network":"198.18.0.0/16","SubnetLen":25,"SubnetMin":"198.18.4.0","Backend":{"Type":"vxlan"}}"#,
        );
        assert!(a.same_except_allocation(&b));
        let c = checked(r#"{"Network":"198.18.0.0/15","Backend":{"Type":"vxlan"}}"#);
        assert!(!a.same_except_allocation(&c));
        let d = checked(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#);
        assert!(!a.same_except_allocation(&d));
        assert_eq!(
            NetworkConfig::parse_checked(r#"{"Network":"198.18.0.0/16","Backend":{}}"#),
            Err(ConfigError::MissingBackendType)
        );
        assert_eq!(
            NetworkConfig::parse_checked(r#"{"Network":"198.18.0.0/16"}"#),
            Ok(checked(r#"{"Network":"198.18.0.0/16"}"#))
        );
    }

    #[test]
    fn no_stack() {
        let mut c = parse(r#"{"EnableIPv4":false}"#);
        // Go's CheckNetworkConfig has nothing to check; flanneld fails in GetIPFamily.
        c.check().unwrap();
        assert_eq!(c.ip_stack().unwrap_err().to_string(), "none defined stack");
        assert_eq!(c.ipv4_range(), None);
        assert_eq!(
            parse(r#"{"Network":"10.0.0.0/8"}"#).ip_stack(),
            Ok(IpStack::Ipv4)
        );
    }

    #[test]
    fn parse_error_texts() {
        let cases: &[(&str, &str)] = &[
            (r#"{"Network":"10.0.0.0"}"#, "invalid CIDR address: 10.0.0.0"),
            (r#"{"Network":"10.0.0.0/33"}"#, "invalid CIDR address: 10.0.0.0/33"),
            (r#"{"Network":null}"#, "invalid CIDR address: null"),
            (r#"{"Network":8}"#, "invalid CIDR address: 8"),
            (r#"{"Network":"fd00::/8"}"#, "invalid IPv4 CIDR format"),
            (r#"{"Network":"::ffff:10.0.0.0/8"}"#, "invalid IPv4 CIDR format"),
            (r#"{"IPv6Network":"fd00::"}"#, "invalid CIDR address: fd00::"),
            (r#"{"IPv6Network":null}"#, "invalid CIDR address: null"),
            (r#"{"EnableIPv6":true,"IPv6Network":"10.0.0.0/8"}"#, "invalid IPv6 CIDR format"),
            (r#"{"Network":"::ffff:10.0.0.0/104"}"#, "invalid IPv4 CIDR format"),
            (r#"{"SubnetMin":"10.0.0"}"#, "invalid IP address format"),
            (r#"{"SubnetMax":"fd00::"}"#, "invalid IPv4 address format"),
            (r#"{"SubnetMin":null}"#, "invalid IP address format"),
            (r#"{"IPv6SubnetMin":"fd00:::"}"#, "invalid IP address format"),
            (
                r#"{"SubnetLen":"24"}"#,
                "json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint",
            ),
            (
                r#"{"SubnetLen":-1}"#,
                "json: cannot unmarshal number -1 into Go struct field Config.SubnetLen of type uint",
            ),
            (
                r#"{"IPv6SubnetLen":64.5}"#,
                "json: cannot unmarshal number 64.5 into Go struct field Config.IPv6SubnetLen of type uint",
            ),
            (
                r#"{"EnableIPv6":"true"}"#,
                "json: cannot unmarshal string into Go struct field Config.EnableIPv6 of type bool",
            ),
            (
                r#"{"enablenftables":1}"#,
                "json: cannot unmarshal number into Go struct field Config.EnableNFTables of type bool",
            ),
            ("[]", "json: cannot unmarshal array into Go value of type subnet.Config"),
            ("\"x\"", "json: cannot unmarshal string into Go value of type subnet.Config"),
            ("", "unexpected end of JSON input"),
            ("{\"Network\":", "unexpected end of JSON input"),
            (
                r#"{"Backend":"vxlan"}"#,
                "error decoding Backend property of config: json: cannot unmarshal string into Go value of type struct { Type string }",
            ),
            (
                r#"{"Backend":{"Type":1}}"#,
                "error decoding Backend property of config: json: cannot unmarshal number into Go struct field .Type of type string",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(parse_err(json), *want, "{json}");
        }
        // First type error wins; an address error wins over any type error.
        assert_eq!(
            parse_err(r#"{"SubnetLen":"x","EnableIPv6":"y"}"#),
            "json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint"
        );
        assert_eq!(
            parse_err(r#"{"SubnetLen":"x","Network":"bad"}"#),
            "invalid CIDR address: bad"
        );
        assert!(matches!(
            NetworkConfig::parse("{"),
            Err(ConfigError::Json(_))
        ));
        assert!(matches!(
            NetworkConfig::parse("{} {}"),
            Err(ConfigError::Json(_))
        ));
    }

    #[test]
    fn wrong_family_dropped_when_disabled() {
        // Go accepts these; harmless while the family is off.
        let c = parse(r#"{"Network":"10.0.0.0/8","IPv6Network":"10.1.0.0/16"}"#);
        assert_eq!(c.ipv6_network, None);
        let c = parse(
            r#"{"EnableIPv4":false,"Network":"::ffff:10.0.0.0/104","EnableIPv6":true,"IPv6Network":"fd00::/48"}"#,
        );
        assert_eq!(c.network, None);
    }

    #[test]
    fn case_insensitive_and_unknown_keys() {
        let c = parse(
            r#"{"NETWORK":"10.1.0.0/16","subnetlen":26,"SubNetMin":"10.1.0.64","SUBNETMAX":"10.1.255.0",
                "enableipv6":true,"ipv6network":"FD00::/48","ipv6subnetlen":80,
                "IPV6SUBNETMIN":"fd00:0:0:1::","ipv6subnetmax":"fd00:0:0:2::",
                "enablenftables":true,"backend":{"type":"VXLAN","vni":4},
                "BackendType":"host-gw","Unknown":{"x":[1,2,3]},"Comment":"hi"}"#,
        );
        assert_eq!(c.network, Some(v4("10.1.0.0/16")));
        assert_eq!(c.subnet_len, Some(26));
        assert_eq!(c.subnet_min, Some(Ipv4Addr::new(10, 1, 0, 64)));
        assert_eq!(c.subnet_max, Some(Ipv4Addr::new(10, 1, 255, 0)));
        assert!(c.enable_ipv6);
        assert_eq!(c.ipv6_network, Some(v6("fd00::/48")));
        assert_eq!(c.ipv6_subnet_len, Some(80));
        assert_eq!(c.ipv6_subnet_min, Some("fd00:0:0:1::".parse().unwrap()));
        assert_eq!(c.ipv6_subnet_max, Some("fd00:0:0:2::".parse().unwrap()));
        assert!(c.enable_nftables);
        // BackendType is json:"-" in Go: ignored; Backend.type is lowercased.
        assert_eq!(c.backend_type(), "vxlan");
        assert_eq!(c.backend.raw, serde_json::json!({"type":"VXLAN","vni":4}));
        // Go's Unicode folding: KELVIN SIGN matches k.
        assert_eq!(
            parse("{\"Networ\u{212A}\":\"10.0.0.0/8\"}").network,
            Some(v4("10.0.0.0/8"))
        );
        // Later duplicates win, whatever their case.
        assert_eq!(
            parse(r#"{"Network":"10.0.0.0/8","network":"10.1.0.0/16"}"#).network,
            Some(v4("10.1.0.0/16"))
        );
    }

    #[test]
    fn nulls_and_zero_values() {
        let c = parse(
            r#"{"Network":"10.0.0.0/8","EnableIPv4":null,"SubnetLen":null,"IPv6SubnetMin":null,
                "IPv6SubnetMax":"::","SubnetMin":"0.0.0.0","IPv6SubnetLen":0}"#,
        );
        assert!(c.enable_ipv4);
        assert_eq!(c.subnet_len, None);
        assert_eq!(c.subnet_min, None);
        assert_eq!(c.ipv6_subnet_min, None);
        assert_eq!(c.ipv6_subnet_max, None);
        assert_eq!(c.ipv6_subnet_len, None);
        // Zero SubnetLen means "use the default".
        assert_eq!(
            checked(r#"{"Network":"10.0.0.0/8","SubnetLen":0}"#).subnet_len,
            Some(24)
        );
        // Top-level null: all defaults, udp.
        let c = parse("null");
        assert!(c.enable_ipv4);
        assert_eq!(c.network, None);
        assert_eq!(c.backend_type(), "udp");
        // SubnetLen above 255 saturates (still rejected by check).
        assert_eq!(parse(r#"{"SubnetLen":4294967296}"#).subnet_len, Some(255));
        // Host bits in Network are cleared like Go's ParseCIDR.
        assert_eq!(
            parse(r#"{"Network":"10.244.1.5/16"}"#).network,
            Some(v4("10.244.0.0/16"))
        );
        // IPv4-mapped SubnetMin is accepted by ip.ParseIP4.
        assert_eq!(
            parse(r#"{"SubnetMin":"::ffff:10.0.1.0"}"#).subnet_min,
            Some(Ipv4Addr::new(10, 0, 1, 0))
        );
    }

    #[test]
    fn backend_type_rules() {
        assert_eq!(parse(r#"{"Network":"10.0.0.0/8"}"#).backend_type(), "udp");
        assert_eq!(parse(r#"{"Backend":{}}"#).backend_type(), "");
        assert_eq!(parse(r#"{"Backend":null}"#).backend_type(), "");
        assert_eq!(parse(r#"{"Backend":{"Type":null}}"#).backend_type(), "");
        assert_eq!(parse(r#"{"Backend":{"Port":1}}"#).backend_type(), "");
        assert_eq!(
            parse(r#"{"Backend":{"Type":"Host-GW"}}"#).backend_type(),
            "host-gw"
        );
        assert_eq!(
            parse(r#"{"Backend":{"TYPE":"ipip","type":"wireguard"}}"#).backend_type(),
            "wireguard"
        );
        assert_eq!(
            parse(r#"{"Backend":{"Type":"V\u0058LAN"}}"#).backend_type(),
            "vxlan"
        );
        let c =
            parse(r#"{"Backend":{"Type":"vxlan","VNI":4096,"Port":4789,"DirectRouting":true}}"#);
        let obj = c.backend.raw.as_object().unwrap();
        let f = |n| FieldRef::new("backendConfig", n);
        assert_eq!(
            gojson::get_int(obj, f("vni"), GoInt::Int).unwrap(),
            Some(4096)
        );
        assert_eq!(
            gojson::get_bool(obj, f("directrouting")).unwrap(),
            Some(true)
        );
    }
}
