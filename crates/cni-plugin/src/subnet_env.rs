//! `subnet.env` as the CNI plugin reads it (flannel-io/cni-plugin `loadFlannelSubnetEnv`).
//!
//! This is deliberately not flanneld's reader ([`flannel_model::SubnetEnv::parse`], which
//! follows `godotenv`): the plugin has its own, stricter line format, and pods must get the
//! same configuration from either plugin for the same file.
//!
//! - The text is split into lines at `\n` (a trailing `\r` is dropped); each line is split at
//!   its first `=` into key and value. Nothing is trimmed, quoted values are not unquoted, and
//!   comments, blank lines and unknown keys are ignored (they simply do not match a key).
//! - `FLANNEL_NETWORK` / `FLANNEL_IPV6_NETWORK`: a comma-separated list of CIDRs, each reduced
//!   to its network; duplicates are dropped, order is kept.
//! - `FLANNEL_SUBNET` / `FLANNEL_IPV6_SUBNET`: one CIDR, reduced to its network.
//! - `FLANNEL_MTU`: decimal digits, at most `u32::MAX` (Go `strconv.ParseUint(v, 10, 32)`).
//! - `FLANNEL_IPMASQ`: `true` exactly when the value is `true`.
//! - A later line for the same key replaces the earlier one. A bad value fails the whole file
//!   with Go's error text (`invalid CIDR address: …`, `strconv.ParseUint: parsing …`).
//! - Required: a network (either family), a subnet (either family), the MTU and IPMASQ;
//!   otherwise `<file> is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, …`.
//!
//! One difference: a known key on a line without `=` makes the Go plugin panic (index out of
//! range, no CNI error JSON); here it is a normal error.

use std::path::{Path, PathBuf};

use crate::goip::GoIpNet;

/// The values the plugin takes from `subnet.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`: the cluster's IPv4 network(s), de-duplicated, in file order.
    pub networks: Vec<GoIpNet>,
    /// `FLANNEL_SUBNET`: this node's IPv4 pod subnet (network address).
    pub subnet: Option<GoIpNet>,
    /// `FLANNEL_IPV6_NETWORK`: the cluster's IPv6 network(s), de-duplicated, in file order.
    pub ipv6_networks: Vec<GoIpNet>,
    /// `FLANNEL_IPV6_SUBNET`: this node's IPv6 pod subnet (network address).
    pub ipv6_subnet: Option<GoIpNet>,
    /// `FLANNEL_MTU`.
    pub mtu: u32,
    /// `FLANNEL_IPMASQ`: whether flanneld masquerades pod traffic itself.
    pub ipmasq: bool,
}

/// Why `subnet.env` could not be used. The texts follow the Go plugin's (Go's `os` and
/// `strconv` wording); callers add the operator hint.
#[derive(Debug, thiserror::Error)]
pub enum SubnetEnvError {
    /// The file could not be opened (`open /run/flannel/subnet.env: no such file or directory`).
    #[error("open {}: {}", path.display(), go_io_text(source))]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be read (e.g. it is a directory).
    #[error("read {}: {}", path.display(), go_io_text(source))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A network or subnet value is not a CIDR.
    #[error("invalid CIDR address: {value} (in {key} of {})", path.display())]
    InvalidCidr {
        /// The file.
        path: PathBuf,
        /// The key whose value is bad.
        key: &'static str,
        /// The bad piece of the value.
        value: String,
    },
    /// `FLANNEL_MTU` is not a decimal `u32`.
    #[error("strconv.ParseUint: parsing {value:?}: {} (in FLANNEL_MTU of {})",
        if *out_of_range { "value out of range" } else { "invalid syntax" }, path.display())]
    InvalidMtu {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// Digits only, but larger than `u32::MAX`.
        out_of_range: bool,
    },
    /// A known key without `=` (the Go plugin panics on this).
    #[error("{}: line {line:?} has no value (expected {key}=<value>)", path.display())]
    NoValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The whole line.
        line: String,
    },
    /// Required keys are absent.
    #[error("{} is missing {missing}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The absent keys, comma-separated, in the Go plugin's order.
        missing: String,
    },
}

impl SubnetEnvError {
    /// Whether the file does not exist (flanneld has not written it yet).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SubnetEnvError::Open { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// An I/O error in Go's wording: the C library's message with a lower-case first letter and
/// no `(os error N)` suffix (`no such file or directory`, `permission denied`).
pub fn go_io_text(err: &std::io::Error) -> String {
    let text = match err.raw_os_error() {
        Some(code) => {
            let full = std::io::Error::from_raw_os_error(code).to_string();
            match full.rfind(" (os error ") {
                Some(i) => full[..i].to_string(),
                None => full,
            }
        }
        None => err.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

const NETWORK: &str = "FLANNEL_NETWORK";
const SUBNET: &str = "FLANNEL_SUBNET";
const IPV6_NETWORK: &str = "FLANNEL_IPV6_NETWORK";
const IPV6_SUBNET: &str = "FLANNEL_IPV6_SUBNET";
const MTU: &str = "FLANNEL_MTU";
const IPMASQ: &str = "FLANNEL_IPMASQ";

impl SubnetEnv {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<SubnetEnv, SubnetEnvError> {
        // Go opens first, then reads: keep the two error texts apart.
        let mut file = std::fs::File::open(path).map_err(|source| SubnetEnvError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|source| {
            SubnetEnvError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        SubnetEnv::parse(&String::from_utf8_lossy(&bytes), path)
    }

    /// Parses the file text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<SubnetEnv, SubnetEnvError> {
        let mut networks: Option<Vec<GoIpNet>> = None;
        let mut ipv6_networks: Option<Vec<GoIpNet>> = None;
        let mut subnet = None;
        let mut ipv6_subnet = None;
        let mut mtu = None;
        let mut ipmasq = None;

        let cidr = |key: &'static str, value: &str| {
            GoIpNet::parse(value)
                .map(GoIpNet::network)
                .ok_or_else(|| SubnetEnvError::InvalidCidr {
                    path: path.to_path_buf(),
                    key,
                    value: value.to_string(),
                })
        };
        let list = |key: &'static str, value: &str| -> Result<Vec<GoIpNet>, SubnetEnvError> {
            let mut out: Vec<GoIpNet> = Vec::new();
            for piece in value.split(',') {
                let net = cidr(key, piece)?;
                if !out.contains(&net) {
                    out.push(net);
                }
            }
            Ok(out)
        };

        for line in lines(text) {
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (line, None),
            };
            let key: &'static str = match key {
                NETWORK => NETWORK,
                SUBNET => SUBNET,
                IPV6_NETWORK => IPV6_NETWORK,
                IPV6_SUBNET => IPV6_SUBNET,
                MTU => MTU,
                IPMASQ => IPMASQ,
                _ => continue,
            };
            let Some(value) = value else {
                return Err(SubnetEnvError::NoValue {
                    path: path.to_path_buf(),
                    key,
                    line: line.to_string(),
                });
            };
            match key {
                NETWORK => networks = Some(list(key, value)?),
                IPV6_NETWORK => ipv6_networks = Some(list(key, value)?),
                SUBNET => subnet = Some(cidr(key, value)?),
                IPV6_SUBNET => ipv6_subnet = Some(cidr(key, value)?),
                MTU => mtu = Some(parse_mtu(value, path)?),
                _ => ipmasq = Some(value == "true"),
            }
        }

        let networks = networks.unwrap_or_default();
        let ipv6_networks = ipv6_networks.unwrap_or_default();
        let mut missing: Vec<&str> = Vec::new();
        if networks.is_empty() && ipv6_networks.is_empty() {
            missing.extend([NETWORK, IPV6_NETWORK]);
        }
        if subnet.is_none() && ipv6_subnet.is_none() {
            missing.extend([SUBNET, IPV6_SUBNET]);
        }
        if mtu.is_none() {
            missing.push(MTU);
        }
        if ipmasq.is_none() {
            missing.push(IPMASQ);
        }
        match (mtu, ipmasq) {
            (Some(mtu), Some(ipmasq)) if missing.is_empty() => Ok(SubnetEnv {
                networks,
                subnet,
                ipv6_networks,
                ipv6_subnet,
                mtu,
                ipmasq,
            }),
            _ => Err(SubnetEnvError::Missing {
                path: path.to_path_buf(),
                missing: missing.join(", "),
            }),
        }
    }
}

/// Go `bufio.ScanLines`: split at `\n`, drop one trailing `\r`, no empty token after a final
/// newline.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    body.split('\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

fn parse_mtu(value: &str, path: &Path) -> Result<u32, SubnetEnvError> {
    let err = |out_of_range| SubnetEnvError::InvalidMtu {
        path: path.to_path_buf(),
        value: value.to_string(),
        out_of_range,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(false));
    }
    value.parse::<u32>().map_err(|_| err(true))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SubnetEnv, SubnetEnvError> {
        SubnetEnv::parse(text, Path::new("/run/flannel/subnet.env"))
    }

    fn nets(v: &[GoIpNet]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn flanneld_output_v4() {
        let env = parse(
            "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
        )
        .unwrap();
        assert_eq!(nets(&env.networks), ["10.1.0.0/16"]);
        assert_eq!(env.subnet.unwrap().to_string(), "10.1.17.0/24");
        assert!(env.ipv6_networks.is_empty());
        assert_eq!(env.ipv6_subnet, None);
        assert_eq!(env.mtu, 1472);
        assert!(env.ipmasq);
    }

    #[test]
    fn dual_stack_multiple_networks_deduplicated() {
        let env = parse(
            "FLANNEL_NETWORK=10.1.0.0/16,192.168.0.0/16,10.1.9.9/16\r\n\
             FLANNEL_SUBNET=10.1.17.1/24\r\n\
             FLANNEL_IPV6_NETWORK=fc00::/48,FC00:0::/48\r\n\
             FLANNEL_IPV6_SUBNET=fc00::1/64\r\n\
             FLANNEL_MTU=1450\r\n\
             FLANNEL_IPMASQ=false",
        )
        .unwrap();
        assert_eq!(nets(&env.networks), ["10.1.0.0/16", "192.168.0.0/16"]);
        assert_eq!(nets(&env.ipv6_networks), ["fc00::/48"]);
        assert_eq!(env.ipv6_subnet.unwrap().to_string(), "fc00::/64");
        assert!(!env.ipmasq);
    }

    #[test]
    fn ipv6_only_is_enough() {
        let env = parse(
            "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
        )
        .unwrap();
        assert!(env.networks.is_empty());
        assert_eq!(env.subnet, None);
        assert_eq!(nets(&env.ipv6_networks), ["fc00::/48"]);
    }

    #[test]
    fn later_lines_win_and_unknown_lines_are_ignored() {
        let env = parse(
            "# written by flanneld\nexport FLANNEL_MTU=9000\nFLANNEL_NETWORK=10.0.0.0/8\n\
             FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1500\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=TRUE\nFLANNEL_MTU =1\n",
        )
        .unwrap();
        assert_eq!(nets(&env.networks), ["10.1.0.0/16"]);
        assert_eq!(env.mtu, 1450);
        // Only the exact text `true` enables it.
        assert!(!env.ipmasq);
    }

    #[test]
    fn missing_keys_listed_in_go_order() {
        let err = parse("foo=bar").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/run/flannel/subnet.env is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, \
             FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ"
        );
        let err =
            parse("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1450\n")
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/run/flannel/subnet.env is missing FLANNEL_IPMASQ"
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn bad_values_use_go_wording() {
        let err = parse("FLANNEL_NETWORK=10.1.0.0/16, 10.2.0.0/16\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CIDR address:  10.2.0.0/16 (in FLANNEL_NETWORK of /run/flannel/subnet.env)"
        );
        let err = parse("FLANNEL_SUBNET=\"10.1.1.1/24\"\n").unwrap_err();
        assert!(matches!(
            err,
            SubnetEnvError::InvalidCidr {
                key: "FLANNEL_SUBNET",
                ..
            }
        ));
        let err = parse("FLANNEL_MTU=+1450\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "strconv.ParseUint: parsing \"+1450\": invalid syntax (in FLANNEL_MTU of /run/flannel/subnet.env)"
        );
        let err = parse("FLANNEL_MTU=4294967296\n").unwrap_err();
        assert!(err.to_string().contains("value out of range"));
        assert_eq!(
            parse("FLANNEL_MTU=4294967295\nFLANNEL_IPMASQ=true\nFLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.0.0.1/24")
                .unwrap()
                .mtu,
            u32::MAX
        );
        let err = parse("FLANNEL_SUBNET\n").unwrap_err();
        assert!(matches!(
            err,
            SubnetEnvError::NoValue {
                key: "FLANNEL_SUBNET",
                ..
            }
        ));
    }

    #[test]
    fn missing_file_reads_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        let err = SubnetEnv::load(&path).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            format!("open {}: no such file or directory", path.display())
        );
        let err = SubnetEnv::load(dir.path()).unwrap_err();
        assert!(!err.is_not_found());
        assert_eq!(
            err.to_string(),
            format!("read {}: is a directory", dir.path().display())
        );
    }
}
