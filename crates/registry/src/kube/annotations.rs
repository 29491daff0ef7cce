//! Flannel's node annotations in Kubernetes mode (Go `pkg/subnet/kube/{annotations,kube}.go`).
//!
//! This file owns, as pure functions over plain data (no API client):
//! - the `--kube-annotation-prefix` rules and the annotation names ([`AnnotationNames`]);
//! - turning a node into a peer lease ([`node_to_lease`]);
//! - the annotations flanneld writes on its own node ([`desired_annotations`],
//!   [`annotations_to_patch`]) and the JSON bodies of the two node-status patches
//!   ([`annotations_patch_body`], [`network_available_patch_body`]);
//! - our own lease's subnets from the node's PodCIDRs ([`own_pod_cidrs`], with the containment
//!   checks [`check_pod_cidr`] / [`check_pod_cidr_v6`]);
//! - restoring the VXLAN VTEP MAC from our `backend-data` annotation ([`restore_vtep_mac`]).
//!
//! Deviations from Flannel, on purpose:
//! - a `backend-data` annotation that is not valid JSON is an error in [`node_to_lease`] (Go
//!   keeps the bytes and fails later, in the backend);
//! - a missing PodCIDR of a required family is an error (Go dereferences a nil network);
//! - an IPv6-only lease's [`SubnetKey`] has the empty IPv4 part ([`SubnetKey::v6_only`]), as
//!   Go's zero `ip.IP4Net`; its `PublicIP` stays `0.0.0.0` and `public-ip` is not read;
//! - kube leases have no TTL, so [`node_to_lease`] sets `expiration: None`;
//! - flanneld patches only when [`annotations_to_patch`] is non-empty (Go sometimes sends an
//!   empty, no-op patch, e.g. on every restart of vxlan without backend data);
//! - the VTEP MAC is read by decoding the annotation as JSON (Go splits the text on `"`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use flannel_model::goip::{self, GoCidr, IpParseError};
use flannel_model::{gojson, IpStack, Lease, LeaseAttrs, NetworkConfig, RawJson, SubnetKey};
use ipnet::{Ipv4Net, Ipv6Net};
use regex::Regex;

/// Flannel's default `--kube-annotation-prefix`.
pub const DEFAULT_PREFIX: &str = "flannel.alpha.coreos.com";

/// The value of `kube-subnet-manager` that marks a node as managed by flannel.
pub const MANAGED_VALUE: &str = "true";

/// Flannel's prefix regex, searched unanchored at the start like Go's `regexp.MatchString`.
static PREFIX_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$")
        .expect("invariant: the annotation prefix regex is valid")
});

/// Errors of the Kubernetes subnet manager's pure parts; texts are Flannel's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    /// The prefix has more than one `/`.
    #[error("subnet/kube: prefix can contain at most single slash")]
    PrefixSlashes,
    /// The normalised prefix does not look like `fqdn/[name-]`.
    #[error("subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*")]
    PrefixFormat,
    /// The `public-ip` / `public-ipv6` annotation is not an address (Flannel's `ip.ParseIP4/6`).
    #[error("{source}")]
    PublicIp {
        /// The node's name.
        node: String,
        /// The annotation's name.
        annotation: String,
        /// Why it did not parse.
        source: IpParseError,
    },
    /// A PodCIDR that Go's `net.ParseCIDR` rejects.
    #[error("invalid CIDR address: {cidr}")]
    BadCidr {
        /// The node's name.
        node: String,
        /// The text that failed.
        cidr: String,
    },
    /// More than two `spec.podCIDRs`.
    #[error("node {0:?} pod cidrs should be IPv4/IPv6 only or dualstack")]
    TooManyPodCidrs(String),
    /// Our own node has no `spec.podCIDR` yet.
    #[error("node {0:?} pod cidr not assigned")]
    PodCidrNotAssigned(String),
    /// No PodCIDR of the family the config enables (Go would crash).
    #[error("node {node:?} has no {family} PodCIDR")]
    MissingPodCidr {
        /// The node's name.
        node: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// `backend-data` / `backend-v6-data` is not JSON.
    #[error("node {node:?}: annotation {annotation} is not valid JSON: {reason}")]
    BadBackendData {
        /// The node's name.
        node: String,
        /// The annotation's name.
        annotation: String,
        /// The decoder's reason.
        reason: String,
    },
    /// The IPv4 PodCIDR is outside `Network`.
    #[error("subnet {network:?} specified in the flannel net config doesn't contain {pod_cidr:?} PodCIDR of the {node:?} node")]
    PodCidrOutsideNetwork {
        /// The configured `Network`.
        network: String,
        /// The node's IPv4 PodCIDR.
        pod_cidr: String,
        /// The node's name.
        node: String,
    },
    /// An IPv6 PodCIDR while the config has no `IPv6Network`.
    #[error("subnet {pod_cidr:?} specified in the PodCIDR, but doesn't exist in the flannel net config of the {node:?} node")]
    Ipv6NetworkMissing {
        /// The node's IPv6 PodCIDR.
        pod_cidr: String,
        /// The node's name.
        node: String,
    },
    /// The IPv6 PodCIDR is outside `IPv6Network`.
    #[error("subnet {network:?} specified in the flannel net config doesn't contain {pod_cidr:?} IPv6 PodCIDR of the {node:?} node")]
    Ipv6PodCidrOutsideNetwork {
        /// The configured `IPv6Network`.
        network: String,
        /// The node's IPv6 PodCIDR.
        pod_cidr: String,
        /// The node's name.
        node: String,
    },
    /// Our `backend-data` annotation exists but holds no usable `VtepMAC`.
    #[error("annotation {annotation} has no valid VtepMAC: {reason}")]
    BadVtepMac {
        /// The annotation's name.
        annotation: String,
        /// What was wrong.
        reason: String,
    },
}

/// Applies Flannel's `--kube-annotation-prefix` rules and returns the normalised prefix
/// (ending in `/` or `-`), to which the annotation names are appended.
pub fn normalize_prefix(prefix: &str) -> Result<String, KubeError> {
    let slashes = prefix.matches('/').count();
    if slashes > 1 {
        return Err(KubeError::PrefixSlashes);
    }
    let mut p = prefix.to_owned();
    if slashes == 0 {
        p.push('/');
    }
    if !p.ends_with('/') && !p.ends_with('-') {
        p.push('-');
    }
    if !PREFIX_RE.is_match(&p) {
        return Err(KubeError::PrefixFormat);
    }
    Ok(p)
}

/// The full names of Flannel's node annotations for one prefix (Go `annotations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationNames {
    /// `kube-subnet-manager`: `"true"` marks a flannel node.
    pub kube_subnet_manager: String,
    /// `backend-type`.
    pub backend_type: String,
    /// `backend-data`: JSON text of the IPv4 backend data.
    pub backend_data: String,
    /// `backend-v6-data`: JSON text of the IPv6 backend data.
    pub backend_v6_data: String,
    /// `public-ip`.
    pub public_ip: String,
    /// `public-ipv6`.
    pub public_ipv6: String,
    /// `public-ip-overwrite` (set by users; copied into `public-ip`).
    pub public_ip_overwrite: String,
    /// `public-ipv6-overwrite` (set by users; copied into `public-ipv6`).
    pub public_ipv6_overwrite: String,
    /// `node-public-ip` (set by users; used as `--public-ip`).
    pub node_public_ip: String,
    /// `node-public-ipv6` (set by users; used as `--public-ipv6`).
    pub node_public_ipv6: String,
}

impl AnnotationNames {
    /// Names for `prefix` after [`normalize_prefix`].
    pub fn new(prefix: &str) -> Result<AnnotationNames, KubeError> {
        let p = normalize_prefix(prefix)?;
        let n = |s: &str| format!("{p}{s}");
        Ok(AnnotationNames {
            kube_subnet_manager: n("kube-subnet-manager"),
            backend_type: n("backend-type"),
            backend_data: n("backend-data"),
            backend_v6_data: n("backend-v6-data"),
            public_ip: n("public-ip"),
            public_ipv6: n("public-ipv6"),
            public_ip_overwrite: n("public-ip-overwrite"),
            public_ipv6_overwrite: n("public-ipv6-overwrite"),
            node_public_ip: n("node-public-ip"),
            node_public_ipv6: n("node-public-ipv6"),
        })
    }
}

/// The fields of a Kubernetes `Node` that flannel uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.podCIDR` (empty when unassigned).
    pub pod_cidr: String,
    /// `spec.podCIDRs`.
    pub pod_cidrs: Vec<String>,
}

impl NodeInfo {
    fn annotation(&self, name: &str) -> &str {
        self.annotations.get(name).map(String::as_str).unwrap_or("")
    }

    /// Whether the node carries `kube-subnet-manager: "true"` (others are ignored).
    pub fn is_managed(&self, names: &AnnotationNames) -> bool {
        self.annotation(&names.kube_subnet_manager) == MANAGED_VALUE
    }
}

fn parse_pod_cidr(node: &str, text: &str) -> Result<GoCidr, KubeError> {
    goip::parse_cidr(text).ok_or_else(|| KubeError::BadCidr {
        node: node.to_owned(),
        cidr: text.to_owned(),
    })
}

fn v4_net(addr: Ipv4Addr, len: u8) -> Option<Ipv4Net> {
    Ipv4Net::new(addr, len).ok().map(|n| n.trunc())
}

fn v6_net(addr: Ipv6Addr, len: u8) -> Option<Ipv6Net> {
    Ipv6Net::new(addr, len).ok().map(|n| n.trunc())
}

/// The node's PodCIDRs the way Go's `nodeToLease` picks them: with `spec.podCIDRs` empty, the
/// single `spec.podCIDR`; with one or two entries, the *first* of each family (all entries
/// must parse); more than two → error.
fn peer_pod_cidrs(node: &NodeInfo) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>), KubeError> {
    let texts: Vec<&str> = match node.pod_cidrs.len() {
        0 => vec![node.pod_cidr.as_str()],
        1 | 2 => node.pod_cidrs.iter().map(String::as_str).collect(),
        _ => return Err(KubeError::TooManyPodCidrs(node.name.clone())),
    };
    let (mut v4, mut v6) = (None, None);
    for t in texts {
        match parse_pod_cidr(&node.name, t)? {
            GoCidr::V4(a, l) => v4 = v4.or_else(|| v4_net(a, l)),
            GoCidr::V6(a, l) => v6 = v6.or_else(|| v6_net(a, l)),
        }
    }
    Ok((v4, v6))
}

fn backend_json(node: &NodeInfo, annotation: &str) -> Result<Option<RawJson>, KubeError> {
    let text = node.annotation(annotation);
    if text.is_empty() {
        return Ok(None);
    }
    RawJson::new(text)
        .map(Some)
        .map_err(|e| KubeError::BadBackendData {
            node: node.name.clone(),
            annotation: annotation.to_owned(),
            reason: e.to_string(),
        })
}

/// A peer's lease from its node (Go `nodeToLease`), or `None` when the node is not managed by
/// flannel (`kube-subnet-manager` is not `"true"`; such nodes are ignored silently).
///
/// For IPv4 (when enabled): `public-ip` must parse (`ip.ParseIP4`), `backend-data` becomes the
/// backend data, the subnet is the first IPv4 PodCIDR. For IPv6 (when enabled): `public-ipv6`
/// must parse and `backend-v6-data` and the first IPv6 PodCIDR are used. `backend-type` is
/// copied as is. IPv6-only: `PublicIP` stays `0.0.0.0` and the key is [`SubnetKey::v6_only`].
pub fn node_to_lease(
    node: &NodeInfo,
    names: &AnnotationNames,
    stack: IpStack,
) -> Result<Option<Lease>, KubeError> {
    if !node.is_managed(names) {
        return Ok(None);
    }
    let missing = |family| KubeError::MissingPodCidr {
        node: node.name.clone(),
        family,
    };
    let mut attrs = LeaseAttrs {
        backend_type: node.annotation(&names.backend_type).to_owned(),
        ..LeaseAttrs::default()
    };
    let mut ipv4 = None;
    if stack != IpStack::Ipv6 {
        attrs.public_ip = goip::parse_ip4(node.annotation(&names.public_ip)).map_err(|source| {
            KubeError::PublicIp {
                node: node.name.clone(),
                annotation: names.public_ip.clone(),
                source,
            }
        })?;
        attrs.backend_data = backend_json(node, &names.backend_data)?;
        ipv4 = Some(peer_pod_cidrs(node)?.0.ok_or_else(|| missing("IPv4"))?);
    }
    let mut ipv6 = None;
    if stack != IpStack::Ipv4 {
        let addr = goip::parse_ip6(node.annotation(&names.public_ipv6)).map_err(|source| {
            KubeError::PublicIp {
                node: node.name.clone(),
                annotation: names.public_ipv6.clone(),
                source,
            }
        })?;
        attrs.public_ipv6 = Some(addr);
        attrs.backend_v6_data = backend_json(node, &names.backend_v6_data)?;
        ipv6 = Some(peer_pod_cidrs(node)?.1.ok_or_else(|| missing("IPv6"))?);
    }
    let subnet = match (ipv4, ipv6) {
        (Some(ipv4), ipv6) => SubnetKey { ipv4, ipv6 },
        (None, Some(ipv6)) => SubnetKey::v6_only(ipv6),
        (None, None) => return Err(missing("IPv4")),
    };
    Ok(Some(Lease {
        subnet,
        attrs,
        expiration: None,
    }))
}

fn raw_or_null(raw: Option<&RawJson>) -> &str {
    raw.map(RawJson::as_str).unwrap_or("null")
}

/// The annotations flanneld writes on its own node for `attrs`, given the node's `current`
/// annotations (for the user's `*-overwrite` values). Go `AcquireLease` rules:
/// - `backend-type` and `kube-subnet-manager: "true"` always;
/// - `backend-data` and `public-ip` unless the type is `vxlan` with `null` backend data;
///   `public-ip` is `public-ip-overwrite` when that is set;
/// - `backend-v6-data` and `public-ipv6` for vxlan with non-null v6 data, wireguard with
///   non-null v6 data and an IPv6 address, host-gw with an IPv6 address; `public-ipv6` is
///   `public-ipv6-overwrite` when set (and omitted when neither it nor an address exists).
///
/// Missing backend data is written as `null`, as Go's `RawMessage(nil).MarshalJSON()` does.
pub fn desired_annotations(
    names: &AnnotationNames,
    current: &BTreeMap<String, String>,
    attrs: &LeaseAttrs,
) -> BTreeMap<String, String> {
    let get = |k: &str| current.get(k).map(String::as_str).unwrap_or("");
    let bt = attrs.backend_type.as_str();
    let bd = raw_or_null(attrs.backend_data.as_ref());
    let v6bd = raw_or_null(attrs.backend_v6_data.as_ref());
    let mut out = BTreeMap::new();
    out.insert(names.backend_type.clone(), bt.to_owned());
    if !(bt == "vxlan" && bd == "null") {
        out.insert(names.backend_data.clone(), bd.to_owned());
        let overwrite = get(&names.public_ip_overwrite);
        let ip = if overwrite.is_empty() {
            attrs.public_ip.to_string()
        } else {
            overwrite.to_owned()
        };
        out.insert(names.public_ip.clone(), ip);
    }
    let has_v6 = attrs.public_ipv6.is_some();
    let write_v6 = (bt == "vxlan" && v6bd != "null")
        || (bt == "wireguard" && v6bd != "null" && has_v6)
        || (bt == "host-gw" && has_v6);
    if write_v6 {
        out.insert(names.backend_v6_data.clone(), v6bd.to_owned());
        let overwrite = get(&names.public_ipv6_overwrite);
        let ip = if overwrite.is_empty() {
            attrs.public_ipv6.map(goip::ipv6_to_string)
        } else {
            Some(overwrite.to_owned())
        };
        if let Some(ip) = ip {
            out.insert(names.public_ipv6.clone(), ip);
        }
    }
    out.insert(names.kube_subnet_manager.clone(), MANAGED_VALUE.to_owned());
    out
}

/// The subset of [`desired_annotations`] whose value differs from (or is missing in)
/// `current`; empty means the node needs no patch.
pub fn annotations_to_patch(
    names: &AnnotationNames,
    current: &BTreeMap<String, String>,
    attrs: &LeaseAttrs,
) -> BTreeMap<String, String> {
    desired_annotations(names, current, attrs)
        .into_iter()
        .filter(|(k, v)| current.get(k) != Some(v))
        .collect()
}

/// The strategic-merge patch body Flannel sends to the node's `status` subresource when
/// annotations change: `{"metadata":{"annotations":{...}}}`, keys sorted and strings encoded
/// as Go's `json.Marshal` does (what `CreateTwoWayMergePatch` yields when only annotations
/// were added or changed).
pub fn annotations_patch_body(changed: &BTreeMap<String, String>) -> String {
    let members: Vec<String> = changed
        .iter()
        .map(|(k, v)| format!("{}:{}", gojson::quote(k), gojson::quote(v)))
        .collect();
    format!(
        r#"{{"metadata":{{"annotations":{{{}}}}}}}"#,
        members.join(",")
    )
}

/// The patch Flannel's `CompleteLease` sends to the node's `status` subresource with
/// `--set-node-network-unavailable`: a `NetworkUnavailable=False` condition, fields in
/// `v1.NodeCondition` order, both timestamps `now` (RFC 3339, UTC, whole seconds).
pub fn network_available_patch_body(now: SystemTime) -> String {
    let t = rfc3339_utc(now);
    format!(
        concat!(
            r#"{{"status":{{"conditions":[{{"type":"NetworkUnavailable","status":"False","#,
            r#""lastHeartbeatTime":"{t}","lastTransitionTime":"{t}","#,
            r#""reason":"FlannelIsUp","message":"Flannel is running on this node"}}]}}}}"#
        ),
        t = t
    )
}

/// `metav1.Time` JSON text: `YYYY-MM-DDTHH:MM:SSZ` in UTC (times before 1970 clamp to it).
fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Go `containsCIDR`: `inner` is inside `outer` (no shorter prefix, first address inside).
fn contains_v4(outer: Ipv4Net, inner: Ipv4Net) -> bool {
    outer.prefix_len() <= inner.prefix_len() && outer.contains(&inner.network())
}

fn contains_v6(outer: Ipv6Net, inner: Ipv6Net) -> bool {
    outer.prefix_len() <= inner.prefix_len() && outer.contains(&inner.network())
}

/// Our IPv4 PodCIDR must lie inside the configured `Network`.
pub fn check_pod_cidr(network: Ipv4Net, pod_cidr: Ipv4Net, node: &str) -> Result<(), KubeError> {
    if contains_v4(network, pod_cidr) {
        return Ok(());
    }
    Err(KubeError::PodCidrOutsideNetwork {
        network: network.to_string(),
        pod_cidr: pod_cidr.to_string(),
        node: node.to_owned(),
    })
}

/// Our IPv6 PodCIDR must lie inside the configured `IPv6Network`, which must exist.
pub fn check_pod_cidr_v6(
    network: Option<Ipv6Net>,
    pod_cidr: Ipv6Net,
    node: &str,
) -> Result<(), KubeError> {
    let Some(network) = network else {
        return Err(KubeError::Ipv6NetworkMissing {
            pod_cidr: goip_net6(pod_cidr),
            node: node.to_owned(),
        });
    };
    if contains_v6(network, pod_cidr) {
        return Ok(());
    }
    Err(KubeError::Ipv6PodCidrOutsideNetwork {
        network: goip_net6(network),
        pod_cidr: goip_net6(pod_cidr),
        node: node.to_owned(),
    })
}

fn goip_net6(n: Ipv6Net) -> String {
    format!("{}/{}", goip::ipv6_to_string(n.network()), n.prefix_len())
}

/// Our own lease's subnets from our node, as Go's `AcquireLease` derives them: `spec.podCIDR`
/// must be set (`node %q pod cidr not assigned`); with `spec.podCIDRs` empty the single
/// PodCIDR is used, with one or two entries the *last* of each family (Go's loop has no
/// `break` here, unlike `nodeToLease`), more than two → error. The IPv4 PodCIDR must be inside
/// `Network` when IPv4 is enabled (otherwise it is dropped, as in Go); an IPv6 PodCIDR must be
/// inside `IPv6Network`.
pub fn own_pod_cidrs(
    node: &NodeInfo,
    config: &NetworkConfig,
) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>), KubeError> {
    if node.pod_cidr.is_empty() {
        return Err(KubeError::PodCidrNotAssigned(node.name.clone()));
    }
    let texts: Vec<&str> = match node.pod_cidrs.len() {
        0 => vec![node.pod_cidr.as_str()],
        1 | 2 => node.pod_cidrs.iter().map(String::as_str).collect(),
        _ => return Err(KubeError::TooManyPodCidrs(node.name.clone())),
    };
    let (mut v4, mut v6) = (None, None);
    for t in texts {
        match parse_pod_cidr(&node.name, t)? {
            GoCidr::V4(a, l) => v4 = v4_net(a, l).or(v4),
            GoCidr::V6(a, l) => v6 = v6_net(a, l).or(v6),
        }
    }
    let mut out4 = None;
    if let (Some(cidr), true) = (v4, config.enable_ipv4) {
        let network = config.network.unwrap_or_default();
        check_pod_cidr(network, cidr, &node.name)?;
        out4 = Some(cidr);
    }
    if let Some(cidr) = v6 {
        check_pod_cidr_v6(config.ipv6_network, cidr, &node.name)?;
    }
    Ok((out4, v6))
}

/// Our lease's subnet key from our node for the enabled families ([`own_pod_cidrs`]): the
/// IPv4 PodCIDR when IPv4 is enabled, the IPv6 one when IPv6 is; IPv6-only gives
/// [`SubnetKey::v6_only`]. A missing PodCIDR of an enabled family is an error.
pub fn own_subnet(node: &NodeInfo, config: &NetworkConfig) -> Result<SubnetKey, KubeError> {
    let (v4, v6) = own_pod_cidrs(node, config)?;
    let missing = |family| KubeError::MissingPodCidr {
        node: node.name.clone(),
        family,
    };
    let ipv6 = if config.enable_ipv6 {
        Some(v6.ok_or_else(|| missing("IPv6"))?)
    } else {
        None
    };
    match (config.enable_ipv4, ipv6) {
        (true, ipv6) => Ok(SubnetKey {
            ipv4: v4.ok_or_else(|| missing("IPv4"))?,
            ipv6,
        }),
        (false, Some(ipv6)) => Ok(SubnetKey::v6_only(ipv6)),
        (false, None) => Err(missing("IPv6")),
    }
}

/// The VXLAN VTEP MAC to reuse, from our own node's `backend-data` annotation (so peers' ARP
/// and FDB entries stay valid across restarts). `Ok(None)` when the annotation is absent or
/// empty; an error when it is present but has no `VtepMAC` (matched case-insensitively, as
/// Go decodes) of the form `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`.
pub fn restore_vtep_mac(
    names: &AnnotationNames,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<[u8; 6]>, KubeError> {
    let text = match annotations.get(&names.backend_data) {
        Some(t) if !t.is_empty() => t,
        _ => return Ok(None),
    };
    let bad = |reason: &str| KubeError::BadVtepMac {
        annotation: names.backend_data.clone(),
        reason: reason.to_owned(),
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let obj = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mac = gojson::get(obj, "VtepMAC")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("no VtepMAC string"))?;
    mac.parse::<flannel_model::MacAddr>()
        .map(|m| Some(m.0))
        .map_err(|_| bad(&format!("{mac:?} is not a MAC address")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names() -> AnnotationNames {
        AnnotationNames::new(DEFAULT_PREFIX).unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const P: &str = "flannel.alpha.coreos.com/";

    fn a(name: &str) -> String {
        format!("{P}{name}")
    }

    #[test]
    fn prefix_normalisation() {
        assert_eq!(normalize_prefix(DEFAULT_PREFIX).unwrap(), P);
        assert_eq!(normalize_prefix("example.com/").unwrap(), "example.com/");
        assert_eq!(
            normalize_prefix("example.com/foo").unwrap(),
            "example.com/foo-"
        );
        assert_eq!(
            normalize_prefix("example.com/foo-").unwrap(),
            "example.com/foo-"
        );
        assert_eq!(normalize_prefix("a_b.c-d/x_y").unwrap(), "a_b.c-d/x_y-");
        // Go's regexp.MatchString is unanchored at the start: junk before an fqdn passes.
        assert_eq!(
            normalize_prefix("Bad.example.com").unwrap(),
            "Bad.example.com/"
        );
    }

    #[test]
    fn prefix_errors() {
        assert_eq!(normalize_prefix("a.b/c/d"), Err(KubeError::PrefixSlashes));
        assert_eq!(
            KubeError::PrefixSlashes.to_string(),
            "subnet/kube: prefix can contain at most single slash"
        );
        for bad in [
            "example",
            "example/foo",
            "Example.COM",
            "example.com/Foo",
            "a.b/c.d",
            "",
        ] {
            assert_eq!(normalize_prefix(bad), Err(KubeError::PrefixFormat), "{bad}");
        }
        assert_eq!(
            KubeError::PrefixFormat.to_string(),
            "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"
        );
        assert_eq!(AnnotationNames::new("x/y/z"), Err(KubeError::PrefixSlashes));
    }

    #[test]
    fn annotation_names() {
        let n = names();
        assert_eq!(n.kube_subnet_manager, a("kube-subnet-manager"));
        assert_eq!(n.backend_type, a("backend-type"));
        assert_eq!(n.backend_data, a("backend-data"));
        assert_eq!(n.backend_v6_data, a("backend-v6-data"));
        assert_eq!(n.public_ip, a("public-ip"));
        assert_eq!(n.public_ipv6, a("public-ipv6"));
        assert_eq!(n.public_ip_overwrite, a("public-ip-overwrite"));
        assert_eq!(n.public_ipv6_overwrite, a("public-ipv6-overwrite"));
        assert_eq!(n.node_public_ip, a("node-public-ip"));
        assert_eq!(n.node_public_ipv6, a("node-public-ipv6"));
        let custom = AnnotationNames::new("example.com/foo").unwrap();
        assert_eq!(custom.backend_data, "example.com/foo-backend-data");
    }

    fn peer(extra: &[(&str, &str)]) -> NodeInfo {
        let mut annotations = map(&[
            (&a("kube-subnet-manager"), "true"),
            (&a("public-ip"), "192.0.2.7"),
            (&a("backend-type"), "vxlan"),
            (
                &a("backend-data"),
                r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}"#,
            ),
        ]);
        annotations.extend(map(extra));
        NodeInfo {
            name: "n1".into(),
            annotations,
            pod_cidr: "198.18.3.0/24".into(),
            pod_cidrs: vec![],
        }
    }

    #[test]
    fn node_to_lease_ipv4() {
        let l = node_to_lease(&peer(&[]), &names(), IpStack::Ipv4)
            .unwrap()
            .unwrap();
        assert_eq!(l.subnet, SubnetKey::v4("198.18.3.0/24".parse().unwrap()));
        assert_eq!(l.attrs.public_ip, Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(l.attrs.public_ipv6, None);
        assert_eq!(l.attrs.backend_type, "vxlan");
        assert_eq!(
            l.attrs.backend_data.unwrap().as_str(),
            r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}"#
        );
        assert_eq!(l.expiration, None);
    }

    #[test]
    fn node_to_lease_requires_managed_true() {
        let mut n = peer(&[]);
        n.annotations
            .insert(a("kube-subnet-manager"), "True".into());
        assert_eq!(node_to_lease(&n, &names(), IpStack::Ipv4).unwrap(), None);
        n.annotations.remove(&a("kube-subnet-manager"));
        assert_eq!(node_to_lease(&n, &names(), IpStack::Ipv4).unwrap(), None);
    }

    #[test]
    fn node_to_lease_public_ip_errors() {
        let n = peer(&[(&a("public-ip"), "nope")]);
        let e = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap_err();
        assert_eq!(e.to_string(), "invalid IP address format");
        let n = peer(&[(&a("public-ip"), "fd00::1")]);
        let e = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap_err();
        assert_eq!(e.to_string(), "invalid IPv4 address format");
        // Dual-stack needs public-ipv6 too.
        let mut n = peer(&[]);
        n.pod_cidrs = vec!["198.18.3.0/24".into(), "fd00:1:2:3::/64".into()];
        let e = node_to_lease(&n, &names(), IpStack::Dual).unwrap_err();
        assert!(
            matches!(e, KubeError::PublicIp { ref annotation, .. } if *annotation == a("public-ipv6"))
        );
    }

    #[test]
    fn node_to_lease_dual_stack_first_of_each_family() {
        let mut n = peer(&[
            (&a("public-ipv6"), "2001:db8::7"),
            (
                &a("backend-v6-data"),
                r#"{ "VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff" }"#,
            ),
        ]);
        n.pod_cidrs = vec!["fd00:1:2:3::/64".into(), "198.18.4.0/24".into()];
        let l = node_to_lease(&n, &names(), IpStack::Dual).unwrap().unwrap();
        assert_eq!(l.subnet.ipv4, "198.18.4.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(l.subnet.ipv6, Some("fd00:1:2:3::/64".parse().unwrap()));
        assert_eq!(l.attrs.public_ipv6, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(
            l.attrs.backend_v6_data.unwrap().as_str(),
            r#"{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}"#
        );
        // IPv4-only stack ignores the v6 fields; podCIDRs win over podCIDR.
        let l = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap().unwrap();
        assert_eq!(l.subnet, SubnetKey::v4("198.18.4.0/24".parse().unwrap()));
        assert_eq!(l.attrs.backend_v6_data, None);
        // Two IPv4 entries: the first one is taken.
        n.pod_cidrs = vec!["198.18.5.0/24".into(), "198.18.6.0/24".into()];
        let l = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap().unwrap();
        assert_eq!(l.subnet.ipv4, "198.18.5.0/24".parse::<Ipv4Net>().unwrap());
    }

    #[test]
    fn node_to_lease_cidr_errors() {
        let mut n = peer(&[]);
        n.pod_cidrs = vec![
            "198.18.1.0/24".into(),
            "fd00::/64".into(),
            "fd01::/64".into(),
        ];
        let e = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"node "n1" pod cidrs should be IPv4/IPv6 only or dualstack"#
        );
        n.pod_cidrs = vec![];
        n.pod_cidr = String::new();
        let e = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap_err();
        assert_eq!(e.to_string(), "invalid CIDR address: ");
        n.pod_cidrs = vec!["198.18.1.0/33".into()];
        let e = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap_err();
        assert_eq!(e.to_string(), "invalid CIDR address: 198.18.1.0/33");
        n.pod_cidrs = vec!["fd00::/64".into()];
        let e = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap_err();
        assert_eq!(e.to_string(), r#"node "n1" has no IPv4 PodCIDR"#);
        n.pod_cidrs = vec!["198.18.1.0/24".into()];
        n.annotations.insert(a("public-ipv6"), "2001:db8::1".into());
        let e = node_to_lease(&n, &names(), IpStack::Dual).unwrap_err();
        assert_eq!(e.to_string(), r#"node "n1" has no IPv6 PodCIDR"#);
        let e = node_to_lease(&n, &names(), IpStack::Ipv6).unwrap_err();
        assert_eq!(e.to_string(), r#"node "n1" has no IPv6 PodCIDR"#);
    }

    /// An IPv6-only peer as Go's vxlan writes it: no `public-ip`/`backend-data` (vxlan with
    /// null BackendData skips them), a single IPv6 podCIDR.
    #[test]
    fn node_to_lease_ipv6_only() {
        let n = NodeInfo {
            name: "n2".into(),
            annotations: map(&[
                (&a("kube-subnet-manager"), "true"),
                (&a("backend-type"), "vxlan"),
                (&a("public-ipv6"), "2001:db8::2"),
                (
                    &a("backend-v6-data"),
                    r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}"#,
                ),
            ]),
            pod_cidr: "2001:db8:100:2::/64".into(),
            pod_cidrs: vec!["2001:db8:100:2::/64".into()],
        };
        let l = node_to_lease(&n, &names(), IpStack::Ipv6).unwrap().unwrap();
        assert_eq!(
            l.subnet,
            SubnetKey::v6_only("2001:db8:100:2::/64".parse().unwrap())
        );
        assert_eq!(l.attrs.public_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(l.attrs.public_ipv6, Some("2001:db8::2".parse().unwrap()));
        assert_eq!(l.attrs.backend_data, None);
        assert_eq!(
            l.attrs.backend_v6_data.unwrap().as_str(),
            r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}"#
        );
    }

    /// What Go's `AcquireLease` writes for IPv6-only hosts: vxlan (BackendData nil → "null")
    /// skips `backend-data`/`public-ip`; host-gw (type is not vxlan) writes `backend-data:
    /// null` and `public-ip: 0.0.0.0` (the zero `ip.IP4`), plus the IPv6 pair.
    #[test]
    fn desired_annotations_ipv6_only() {
        let v6 = "2001:db8::1";
        let vx = LeaseAttrs {
            public_ip: Ipv4Addr::UNSPECIFIED,
            public_ipv6: Some(v6.parse().unwrap()),
            backend_type: "vxlan".into(),
            backend_data: None,
            backend_v6_data: Some(
                RawJson::new(r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}"#).unwrap(),
            ),
        };
        assert_eq!(
            desired_annotations(&names(), &BTreeMap::new(), &vx),
            map(&[
                (&a("backend-type"), "vxlan"),
                (
                    &a("backend-v6-data"),
                    r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}"#
                ),
                (&a("public-ipv6"), v6),
                (&a("kube-subnet-manager"), "true"),
            ])
        );
        let hg = LeaseAttrs {
            backend_type: "host-gw".into(),
            backend_v6_data: None,
            ..vx
        };
        assert_eq!(
            desired_annotations(&names(), &BTreeMap::new(), &hg),
            map(&[
                (&a("backend-type"), "host-gw"),
                (&a("backend-data"), "null"),
                (&a("public-ip"), "0.0.0.0"),
                (&a("backend-v6-data"), "null"),
                (&a("public-ipv6"), v6),
                (&a("kube-subnet-manager"), "true"),
            ])
        );
    }

    #[test]
    fn own_subnet_ipv6_only() {
        let cfg = NetworkConfig::parse(
            r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48"}"#,
        )
        .unwrap();
        let mut n = NodeInfo {
            name: "me".into(),
            pod_cidr: "2001:db8:100:1::/64".into(),
            ..NodeInfo::default()
        };
        assert_eq!(
            own_subnet(&n, &cfg).unwrap(),
            SubnetKey::v6_only("2001:db8:100:1::/64".parse().unwrap())
        );
        n.pod_cidr = "198.18.1.0/24".into();
        assert_eq!(
            own_subnet(&n, &cfg).unwrap_err().to_string(),
            r#"node "me" has no IPv6 PodCIDR"#
        );
        n.pod_cidr = "2001:db8:200:1::/64".into();
        assert_eq!(
            own_subnet(&n, &cfg).unwrap_err().to_string(),
            r#"subnet "2001:db8:100::/48" specified in the flannel net config doesn't contain "2001:db8:200:1::/64" IPv6 PodCIDR of the "me" node"#
        );
    }

    #[test]
    fn node_to_lease_backend_data() {
        // Host bits in the PodCIDR are cleared like Go's ParseCIDR network.
        let mut n = peer(&[(&a("backend-data"), "")]);
        n.pod_cidr = "198.18.3.9/24".into();
        let l = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap().unwrap();
        assert_eq!(l.attrs.backend_data, None);
        assert_eq!(l.subnet.ipv4.to_string(), "198.18.3.0/24");
        let n = peer(&[(&a("backend-data"), "null")]);
        let l = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap().unwrap();
        assert!(l.attrs.backend_data.unwrap().is_null());
        let n = peer(&[(&a("backend-data"), "{oops")]);
        let e = node_to_lease(&n, &names(), IpStack::Ipv4).unwrap_err();
        assert!(matches!(e, KubeError::BadBackendData { .. }), "{e}");
    }

    fn attrs(bt: &str, bd: Option<&str>, v6: Option<&str>, v6bd: Option<&str>) -> LeaseAttrs {
        LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 0, 2, 1),
            public_ipv6: v6.map(|s| s.parse().unwrap()),
            backend_type: bt.into(),
            backend_data: bd.map(|s| RawJson::new(s).unwrap()),
            backend_v6_data: v6bd.map(|s| RawJson::new(s).unwrap()),
        }
    }

    const VX: &str = r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}"#;

    #[test]
    fn desired_vxlan_ipv4() {
        let d = desired_annotations(
            &names(),
            &BTreeMap::new(),
            &attrs("vxlan", Some(VX), None, None),
        );
        assert_eq!(
            d,
            map(&[
                (&a("backend-type"), "vxlan"),
                (&a("backend-data"), VX),
                (&a("public-ip"), "192.0.2.1"),
                (&a("kube-subnet-manager"), "true"),
            ])
        );
    }

    #[test]
    fn desired_vxlan_null_data_skips_v4() {
        let d = desired_annotations(
            &names(),
            &BTreeMap::new(),
            &attrs("vxlan", None, None, None),
        );
        assert_eq!(
            d,
            map(&[
                (&a("backend-type"), "vxlan"),
                (&a("kube-subnet-manager"), "true")
            ])
        );
    }

    #[test]
    fn desired_other_types_always_write_v4() {
        for bt in ["host-gw", "wireguard", "udp", ""] {
            let d = desired_annotations(&names(), &BTreeMap::new(), &attrs(bt, None, None, None));
            assert_eq!(
                d.get(&a("backend-data")).map(String::as_str),
                Some("null"),
                "{bt}"
            );
            assert_eq!(
                d.get(&a("public-ip")).map(String::as_str),
                Some("192.0.2.1"),
                "{bt}"
            );
            assert_eq!(d.get(&a("backend-type")).map(String::as_str), Some(bt));
            assert!(!d.contains_key(&a("backend-v6-data")), "{bt}");
        }
    }

    #[test]
    fn desired_v6_rules() {
        let n = names();
        let none = BTreeMap::new();
        let has_v6 = |at: &LeaseAttrs| {
            desired_annotations(&n, &none, at).contains_key(&a("backend-v6-data"))
        };
        // vxlan: v6 data non-null is enough.
        assert!(has_v6(&attrs(
            "vxlan",
            Some(VX),
            Some("2001:db8::1"),
            Some(VX)
        )));
        assert!(!has_v6(&attrs(
            "vxlan",
            Some(VX),
            Some("2001:db8::1"),
            None
        )));
        // wireguard: non-null data and an address.
        assert!(has_v6(&attrs(
            "wireguard",
            None,
            Some("2001:db8::1"),
            Some("{}")
        )));
        assert!(!has_v6(&attrs("wireguard", None, None, Some("{}"))));
        assert!(!has_v6(&attrs(
            "wireguard",
            None,
            Some("2001:db8::1"),
            None
        )));
        // host-gw: an address is enough (data written as null).
        let d = desired_annotations(
            &n,
            &none,
            &attrs("host-gw", None, Some("2001:db8::1"), None),
        );
        assert_eq!(d[&a("backend-v6-data")], "null");
        assert_eq!(d[&a("public-ipv6")], "2001:db8::1");
        assert!(!has_v6(&attrs("host-gw", None, None, None)));
        // udp never writes v6.
        assert!(!has_v6(&attrs(
            "udp",
            None,
            Some("2001:db8::1"),
            Some("{}")
        )));
        // vxlan with v6 data but no address: data only.
        let d = desired_annotations(&n, &none, &attrs("vxlan", Some(VX), None, Some(VX)));
        assert_eq!(d[&a("backend-v6-data")], VX);
        assert!(!d.contains_key(&a("public-ipv6")));
    }

    #[test]
    fn desired_honours_overwrite() {
        let cur = map(&[
            (&a("public-ip-overwrite"), "203.0.113.9"),
            (&a("public-ipv6-overwrite"), "2001:db8::99"),
        ]);
        let d = desired_annotations(
            &names(),
            &cur,
            &attrs("vxlan", Some(VX), Some("2001:db8::1"), Some(VX)),
        );
        assert_eq!(d[&a("public-ip")], "203.0.113.9");
        assert_eq!(d[&a("public-ipv6")], "2001:db8::99");
        // The overwrite annotations themselves are never written.
        assert!(!d.contains_key(&a("public-ip-overwrite")));
    }

    #[test]
    fn patch_only_differences() {
        let n = names();
        let at = attrs("vxlan", Some(VX), None, None);
        let current = desired_annotations(&n, &BTreeMap::new(), &at);
        assert!(annotations_to_patch(&n, &current, &at).is_empty());
        let mut stale = current.clone();
        stale.insert(a("public-ip"), "192.0.2.200".into());
        stale.insert("other/annotation".into(), "kept".into());
        assert_eq!(
            annotations_to_patch(&n, &stale, &at),
            map(&[(&a("public-ip"), "192.0.2.1")])
        );
        let mut over = current;
        over.insert(a("public-ip-overwrite"), "203.0.113.9".into());
        assert_eq!(
            annotations_to_patch(&n, &over, &at),
            map(&[(&a("public-ip"), "203.0.113.9")])
        );
    }

    #[test]
    fn annotations_patch_golden() {
        let n = names();
        let changed =
            annotations_to_patch(&n, &BTreeMap::new(), &attrs("vxlan", Some(VX), None, None));
        assert_eq!(
            annotations_patch_body(&changed),
            concat!(
                r#"{"metadata":{"annotations":{"#,
                r#""flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"12:c6:65:89:b4:e3\"}","#,
                r#""flannel.alpha.coreos.com/backend-type":"vxlan","#,
                r#""flannel.alpha.coreos.com/kube-subnet-manager":"true","#,
                r#""flannel.alpha.coreos.com/public-ip":"192.0.2.1"}}}"#
            )
        );
        // Go's json.Marshal HTML-escapes.
        let odd = map(&[("k", "<&>")]);
        assert_eq!(
            annotations_patch_body(&odd),
            r#"{"metadata":{"annotations":{"k":"\u003c\u0026\u003e"}}}"#
        );
        let parsed: serde_json::Value =
            serde_json::from_str(&annotations_patch_body(&changed)).unwrap();
        assert_eq!(parsed["metadata"]["annotations"][a("backend-data")], VX);
    }

    #[test]
    fn network_available_patch_golden() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_678_044) + Duration::from_millis(999);
        assert_eq!(
            network_available_patch_body(t),
            concat!(
                r#"{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","#,
                r#""lastHeartbeatTime":"2026-11-26T07:27:24Z","lastTransitionTime":"2026-11-26T07:27:24Z","#,
                r#""reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}"#
            )
        );
    }

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn containment() {
        let net: Ipv4Net = "198.18.0.0/16".parse().unwrap();
        check_pod_cidr(net, "198.18.7.0/24".parse().unwrap(), "n1").unwrap();
        check_pod_cidr(net, net, "n1").unwrap();
        let e = check_pod_cidr(net, "198.19.7.0/24".parse().unwrap(), "n1").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"subnet "198.18.0.0/16" specified in the flannel net config doesn't contain "198.19.7.0/24" PodCIDR of the "n1" node"#
        );
        // A wider PodCIDR is not contained even though its address is inside.
        let e = check_pod_cidr(net, "198.18.0.0/15".parse().unwrap(), "n1").unwrap_err();
        assert!(matches!(e, KubeError::PodCidrOutsideNetwork { .. }));

        let net6: Ipv6Net = "fd00:1::/48".parse().unwrap();
        check_pod_cidr_v6(Some(net6), "fd00:1:0:5::/64".parse().unwrap(), "n1").unwrap();
        let e = check_pod_cidr_v6(Some(net6), "fd00:2::/64".parse().unwrap(), "n1").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"subnet "fd00:1::/48" specified in the flannel net config doesn't contain "fd00:2::/64" IPv6 PodCIDR of the "n1" node"#
        );
        let e = check_pod_cidr_v6(None, "fd00:2::/64".parse().unwrap(), "n1").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"subnet "fd00:2::/64" specified in the PodCIDR, but doesn't exist in the flannel net config of the "n1" node"#
        );
    }

    #[test]
    fn own_pod_cidrs_rules() {
        let cfg = NetworkConfig::parse(
            r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:1::/48"}"#,
        )
        .unwrap();
        let mut n = NodeInfo {
            name: "me".into(),
            ..NodeInfo::default()
        };
        let e = own_pod_cidrs(&n, &cfg).unwrap_err();
        assert_eq!(e.to_string(), r#"node "me" pod cidr not assigned"#);
        n.pod_cidr = "198.18.1.0/24".into();
        assert_eq!(
            own_pod_cidrs(&n, &cfg).unwrap(),
            (Some("198.18.1.0/24".parse().unwrap()), None)
        );
        // podCIDRs: last of each family.
        n.pod_cidrs = vec!["198.18.1.0/24".into(), "198.18.2.0/24".into()];
        assert_eq!(
            own_pod_cidrs(&n, &cfg).unwrap().0,
            Some("198.18.2.0/24".parse().unwrap())
        );
        n.pod_cidrs = vec!["198.18.1.0/24".into(), "fd00:1:0:1::/64".into()];
        assert_eq!(
            own_pod_cidrs(&n, &cfg).unwrap(),
            (
                Some("198.18.1.0/24".parse().unwrap()),
                Some("fd00:1:0:1::/64".parse().unwrap())
            )
        );
        n.pod_cidrs.push("198.18.3.0/24".into());
        assert!(matches!(
            own_pod_cidrs(&n, &cfg),
            Err(KubeError::TooManyPodCidrs(_))
        ));
        n.pod_cidrs = vec!["203.0.113.0/24".into()];
        assert!(matches!(
            own_pod_cidrs(&n, &cfg),
            Err(KubeError::PodCidrOutsideNetwork { .. })
        ));
        n.pod_cidrs = vec!["fd00:9::/64".into()];
        assert!(matches!(
            own_pod_cidrs(&n, &cfg),
            Err(KubeError::Ipv6PodCidrOutsideNetwork { .. })
        ));
        n.pod_cidrs = vec!["bogus".into()];
        assert_eq!(
            own_pod_cidrs(&n, &cfg).unwrap_err().to_string(),
            "invalid CIDR address: bogus"
        );
    }

    #[test]
    fn vtep_mac_restore() {
        let n = names();
        let with = |v: &str| map(&[(&a("backend-data"), v)]);
        assert_eq!(restore_vtep_mac(&n, &BTreeMap::new()).unwrap(), None);
        assert_eq!(restore_vtep_mac(&n, &with("")).unwrap(), None);
        let mac = [0x12, 0xc6, 0x65, 0x89, 0xb4, 0xe3];
        assert_eq!(restore_vtep_mac(&n, &with(VX)).unwrap(), Some(mac));
        // Order, spacing and key case do not matter (Flannel's string split would fail).
        let v = r#"{ "vtepmac" : "12-C6-65-89-B4-E3", "VNI": 4 }"#;
        assert_eq!(restore_vtep_mac(&n, &with(v)).unwrap(), Some(mac));
        for bad in [
            "null",
            "{oops",
            r#"{"VNI":1}"#,
            r#"{"VtepMAC":7}"#,
            r#"{"VtepMAC":"12:c6:65:89:b4"}"#,
            r#"{"VtepMAC":"12:c6:65:89:b4:e3:00"}"#,
            r#"{"VtepMAC":"12:c6:65:89:b4:zz"}"#,
            r#"{"VtepMAC":"1:c6:65:89:b4:e3"}"#,
        ] {
            assert!(
                matches!(
                    restore_vtep_mac(&n, &with(bad)),
                    Err(KubeError::BadVtepMac { .. })
                ),
                "{bad}"
            );
        }
    }
}
