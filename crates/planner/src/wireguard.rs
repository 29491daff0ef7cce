//! The wireguard backend's decisions: its options (Flannel's names, defaults and refusals),
//! the devices it wants (`flannel-wg`, and `flannel-wg-v6` in the `separate` mode), the MTUs,
//! and each device's peers as plain data ([`DeviceConfig`]) with the diff that brings an
//! observed device to it ([`diff_device`]). Kernel and userspace implementations apply the
//! same [`DeviceOp`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use flannel_model::{gojson, Lease, SubnetKey, WgKey, WireguardLeaseData};
use ipnet::IpNet;
use serde_json::Value;

use crate::skipped::Skipped;

/// The IPv4 (or only) device.
pub const DEVICE: &str = "flannel-wg";
/// The IPv6 device of the `separate` mode.
pub const DEVICE_V6: &str = "flannel-wg-v6";
/// `ListenPort`'s default.
pub const DEFAULT_PORT: u16 = 51820;
/// `ListenPortV6`'s default.
pub const DEFAULT_PORT_V6: u16 = 51821;
/// What Flannel subtracts from the MTU for pods (`FLANNEL_MTU`), whatever the underlay: an
/// IPv6 outer header (40) + UDP (8) + WireGuard's header and tag (32).
pub const FLANNEL_OVERHEAD: u32 = 80;
/// What a packet on a device over an IPv4 underlay really costs: 20 + 8 + 32.
pub const OVERHEAD_V4: u32 = 60;
/// Over an IPv6 underlay: 40 + 8 + 32.
pub const OVERHEAD_V6: u32 = 80;

/// `Mode`: how the address families map to devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgMode {
    /// One device per family (`flannel-wg`, `flannel-wg-v6`), the default.
    Separate,
    /// One device; each peer's endpoint family chosen as Flannel does.
    Auto,
    /// One device; endpoints are the peers' `PublicIP`.
    Ipv4,
    /// One device; endpoints are the peers' `PublicIPv6`.
    Ipv6,
}

/// The `Backend` options of `"Type":"wireguard"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgOptions {
    /// `ListenPort`.
    pub listen_port: u16,
    /// `ListenPortV6`.
    pub listen_port_v6: u16,
    /// `MTU`: the underlay MTU to plan with (default: the external interface's).
    pub mtu: Option<u32>,
    /// `PSK`: a preshared key for every peer.
    pub psk: Option<WgKey>,
    /// `PersistentKeepaliveInterval` in seconds (0: off).
    pub keepalive: u16,
    /// `Mode`.
    pub mode: WgMode,
}

impl Default for WgOptions {
    fn default() -> Self {
        WgOptions {
            listen_port: DEFAULT_PORT,
            listen_port_v6: DEFAULT_PORT_V6,
            mtu: None,
            psk: None,
            keepalive: 0,
            mode: WgMode::Separate,
        }
    }
}

/// Options Flannel refuses; the texts are Flannel's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WgConfigError {
    /// A field of the wrong JSON type or range (Go's `json: cannot unmarshal …`).
    #[error("error decoding backend config: {0}")]
    Decode(#[from] gojson::GoJsonError),
    /// `Mode` is none of the four.
    #[error("no valid Mode configured")]
    Mode,
    /// `PSK` is no key.
    #[error("could not parse psk: {0}")]
    Psk(String),
    /// A listen port of 0 (Flannel would let the kernel pick one, and then publish 0).
    #[error("{0} must be a UDP port between 1 and 65535")]
    Port(&'static str),
}

impl WgOptions {
    /// Read the options from the `Backend` object, as Go's `json.Unmarshal` into Flannel's
    /// config struct does (keys case-insensitive, `null` leaves the default).
    pub fn from_backend(backend: &Value) -> Result<Self, WgConfigError> {
        use gojson::{FieldRef, GoInt};
        let mut o = WgOptions::default();
        let Some(obj) = backend.as_object() else {
            return Ok(o);
        };
        let int = |name: &'static str, ty: GoInt| gojson::get_int(obj, FieldRef::new("", name), ty);
        let port = |name: &'static str, v: Option<i128>, default: u16| match v {
            None => Ok(default),
            Some(p) => u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or(WgConfigError::Port(name)),
        };
        o.listen_port = port("ListenPort", int("ListenPort", GoInt::Int)?, o.listen_port)?;
        o.listen_port_v6 = port(
            "ListenPortV6",
            int("ListenPortV6", GoInt::Int)?,
            o.listen_port_v6,
        )?;
        o.mtu = int("MTU", GoInt::Int)?
            .filter(|m| *m > 0)
            .and_then(|m| u32::try_from(m).ok());
        // time.Duration in seconds; negative or huge values mean "off" to the kernel as well.
        o.keepalive = int("PersistentKeepaliveInterval", GoInt::Int64)?
            .and_then(|k| u16::try_from(k).ok())
            .unwrap_or(0);
        if let Some(psk) = gojson::get_string(obj, FieldRef::new("", "PSK"))? {
            if !psk.is_empty() {
                o.psk = Some(
                    psk.parse()
                        .map_err(|e| WgConfigError::Psk(format!("{e}")))?,
                );
            }
        }
        if let Some(mode) = gojson::get_string(obj, FieldRef::new("", "Mode"))? {
            o.mode = match mode.as_str() {
                "separate" => WgMode::Separate,
                "auto" => WgMode::Auto,
                "ipv4" => WgMode::Ipv4,
                "ipv6" => WgMode::Ipv6,
                _ => return Err(WgConfigError::Mode),
            };
        }
        Ok(o)
    }
}

/// Which address families a device carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

/// One WireGuard device the backend wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgDevice {
    /// `flannel-wg` or `flannel-wg-v6`.
    pub name: String,
    /// Its UDP listen port.
    pub listen_port: u16,
    /// Its MTU.
    pub mtu: u32,
    /// The families whose subnets and networks it carries.
    pub families: Families,
    /// The underlay family of its endpoints, for the separate mode (`None`: per peer, mode
    /// `auto`).
    pub endpoint_family: Option<EndpointFamily>,
}

/// Which of a peer's public addresses its endpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointFamily {
    V4,
    V6,
}

/// The devices for a config: `separate` gives one per enabled family, the other modes one
/// device for both. `base_mtu` is the `MTU` option or the external interface's MTU.
pub fn devices(opts: &WgOptions, enable_v4: bool, enable_v6: bool, base_mtu: u32) -> Vec<WgDevice> {
    let v4_mtu = base_mtu.saturating_sub(OVERHEAD_V4);
    let v6_mtu = base_mtu.saturating_sub(OVERHEAD_V6);
    match opts.mode {
        WgMode::Separate => {
            let mut devs = Vec::new();
            if enable_v4 {
                devs.push(WgDevice {
                    name: DEVICE.into(),
                    listen_port: opts.listen_port,
                    mtu: v4_mtu,
                    families: Families {
                        v4: true,
                        v6: false,
                    },
                    endpoint_family: Some(EndpointFamily::V4),
                });
            }
            if enable_v6 {
                devs.push(WgDevice {
                    name: DEVICE_V6.into(),
                    listen_port: opts.listen_port_v6,
                    mtu: v6_mtu,
                    families: Families {
                        v4: false,
                        v6: true,
                    },
                    endpoint_family: Some(EndpointFamily::V6),
                });
            }
            devs
        }
        mode => {
            let (mtu, endpoint_family) = match mode {
                WgMode::Ipv4 => (v4_mtu, Some(EndpointFamily::V4)),
                WgMode::Ipv6 => (v6_mtu, Some(EndpointFamily::V6)),
                // Either family may carry a peer: the smaller MTU fits both.
                _ => (v6_mtu, None),
            };
            vec![WgDevice {
                name: DEVICE.into(),
                listen_port: opts.listen_port,
                mtu,
                families: Families {
                    v4: enable_v4,
                    v6: enable_v6,
                },
                endpoint_family,
            }]
        }
    }
}

/// One peer as a device holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    pub public_key: WgKey,
    /// `None` only when observed without one (a peer that never sent us a packet).
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: BTreeSet<IpNet>,
    /// Seconds; 0 is off.
    pub keepalive: u16,
    pub psk: Option<WgKey>,
}

/// A device's WireGuard configuration: its key (public half), port, and peers by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub name: String,
    /// The public key of the device's private key (`None`: none set).
    pub public_key: Option<WgKey>,
    pub listen_port: u16,
    pub peers: BTreeMap<WgKey, WgPeer>,
}

/// One change to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOp {
    /// Set the private key (the applier holds it) and the listen port.
    SetDevice { listen_port: u16 },
    /// Add or update a peer, replacing its allowed IPs.
    SetPeer(WgPeer),
    /// Remove a peer.
    RemovePeer(WgKey),
}

/// How the devices are made: the kernel module, or a TUN device and WireGuard in flanneld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Implementation {
    /// `ip link add … type wireguard`, configured over generic netlink.
    Kernel,
    /// A TUN device carrying the same protocol from userspace.
    Userspace,
}

impl Implementation {
    /// As the flag names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Implementation::Kernel => "kernel",
            Implementation::Userspace => "userspace",
        }
    }
}

/// What flanneld settles before the wireguard backend is built: the key (its public half
/// goes into the lease) and the implementation (`--wireguard-implementation`, resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireguardHost {
    /// The public key of the node's private key.
    pub public_key: WgKey,
    /// Kernel or userspace.
    pub implementation: Implementation,
}

/// What this host knows when it plans peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Our public key (the lease's `PublicKey`).
    pub public_key: WgKey,
    /// Our advertised IPv4 address (Go's `ExtAddr`), for the `auto` endpoint choice.
    pub public_ip: Option<Ipv4Addr>,
    /// Our advertised IPv6 address (Go's `ExtV6Addr`).
    pub public_ipv6: Option<Ipv6Addr>,
}

/// Flannel's private-address test for the `auto` choice (RFC 1918 for IPv4, ULA fc00::/7 for
/// IPv6, as Go's `net.IP.IsPrivate`).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_private(),
        IpAddr::V6(a) => (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The endpoint family Flannel's `auto` mode picks for a peer with these public addresses.
pub fn auto_endpoint(
    local: &Local,
    peer_v4: Ipv4Addr,
    peer_v6: Option<Ipv6Addr>,
) -> EndpointFamily {
    let Some(v6) = peer_v6 else {
        return EndpointFamily::V4;
    };
    if !is_private(IpAddr::V4(peer_v4)) && local.public_ip.is_some() {
        return EndpointFamily::V4;
    }
    if !is_private(IpAddr::V6(v6))
        && local
            .public_ipv6
            .is_some_and(|a| !is_private(IpAddr::V6(a)))
    {
        return EndpointFamily::V6;
    }
    EndpointFamily::V4
}

/// The peers `dev` should hold for these leases, and the leases it cannot use (wrong backend
/// type, unreadable data, missing addresses). Our own lease and our own key never become
/// peers.
pub fn desired_device(
    dev: &WgDevice,
    opts: &WgOptions,
    local: &Local,
    own: &SubnetKey,
    peers: &mut dyn Iterator<Item = &Lease>,
) -> (DeviceConfig, Vec<Skipped>) {
    let mut cfg = DeviceConfig {
        name: dev.name.clone(),
        public_key: Some(local.public_key),
        listen_port: dev.listen_port,
        peers: BTreeMap::new(),
    };
    let mut skipped = Vec::new();
    for lease in peers {
        if lease.subnet == *own {
            continue;
        }
        let skip = |reason: String| Skipped {
            subnet: lease.subnet,
            reason,
        };
        if lease.attrs.backend_type != "wireguard" {
            skipped.push(skip(format!(
                "backend type {:?} is not wireguard",
                lease.attrs.backend_type
            )));
            continue;
        }
        // Go reads BackendV6Data when the peer has an IPv6 subnet in the single-device modes
        // (it wins over BackendData), and each device's own data in the separate mode.
        let use_v6_data = if opts.mode == WgMode::Separate {
            dev.families.v6
        } else {
            dev.families.v6 && lease.subnet.ipv6.is_some()
        };
        let raw = if use_v6_data {
            lease.attrs.backend_v6_data.as_ref()
        } else {
            lease.attrs.backend_data.as_ref()
        };
        let data = match raw.map(WireguardLeaseData::from_raw) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                skipped.push(skip(e.to_string()));
                continue;
            }
            None => {
                skipped.push(skip(format!(
                    "no {} in its lease",
                    if use_v6_data {
                        "BackendV6Data"
                    } else {
                        "BackendData"
                    }
                )));
                continue;
            }
        };
        if data.public_key == local.public_key {
            skipped.push(skip("it publishes our own public key".into()));
            continue;
        }
        let mut allowed = BTreeSet::new();
        if dev.families.v4 {
            allowed.insert(IpNet::V4(lease.subnet.ipv4));
        }
        if dev.families.v6 {
            if let Some(v6) = lease.subnet.ipv6 {
                allowed.insert(IpNet::V6(v6));
            }
        }
        if allowed.is_empty() {
            // A v4-only peer on the IPv6 device: nothing to carry.
            continue;
        }
        let family = dev.endpoint_family.unwrap_or_else(|| {
            auto_endpoint(local, lease.attrs.public_ip, lease.attrs.public_ipv6)
        });
        let port = if data.port == 0 {
            dev.listen_port
        } else {
            data.port
        };
        let ip = match family {
            EndpointFamily::V4 => IpAddr::V4(lease.attrs.public_ip),
            EndpointFamily::V6 => match lease.attrs.public_ipv6 {
                Some(a) => IpAddr::V6(a),
                None => {
                    skipped.push(skip("no PublicIPv6 for an IPv6 endpoint".into()));
                    continue;
                }
            },
        };
        cfg.peers.insert(
            data.public_key,
            WgPeer {
                public_key: data.public_key,
                endpoint: Some(SocketAddr::new(ip, port)),
                allowed_ips: allowed,
                keepalive: opts.keepalive,
                psk: opts.psk,
            },
        );
    }
    (cfg, skipped)
}

/// The changes that turn `observed` into `desired`: the key and port first, then peer
/// removals (stale peers, whether or not a Removed event was seen), then additions and
/// updates. With `prune` false (before the first complete lease snapshot) no peer is removed.
pub fn diff_device(desired: &DeviceConfig, observed: &DeviceConfig, prune: bool) -> Vec<DeviceOp> {
    let mut ops = Vec::new();
    if desired.public_key != observed.public_key || desired.listen_port != observed.listen_port {
        ops.push(DeviceOp::SetDevice {
            listen_port: desired.listen_port,
        });
    }
    if prune {
        for key in observed.peers.keys() {
            if !desired.peers.contains_key(key) {
                ops.push(DeviceOp::RemovePeer(*key));
            }
        }
    }
    for (key, want) in &desired.peers {
        if observed.peers.get(key) != Some(want) {
            ops.push(DeviceOp::SetPeer(want.clone()));
        }
    }
    ops
}

/// [`diff_device`]'s ops carried out on plain data (what an applier does to a device), for
/// tests: after it, the device equals the desired config.
pub fn simulate(observed: &mut DeviceConfig, desired_key: Option<WgKey>, ops: &[DeviceOp]) {
    for op in ops {
        match op {
            DeviceOp::SetDevice { listen_port } => {
                observed.public_key = desired_key;
                observed.listen_port = *listen_port;
            }
            DeviceOp::SetPeer(p) => {
                observed.peers.insert(p.public_key, p.clone());
            }
            DeviceOp::RemovePeer(k) => {
                observed.peers.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests;
