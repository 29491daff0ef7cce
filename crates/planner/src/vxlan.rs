//! The vxlan backend's decisions: options from `Backend`, the lease's BackendData, the VTEP
//! MAC, and the desired kernel state for a set of peers (Flannel's current scheme: one route,
//! one permanent neighbour and one FDB entry per remote host).

use std::net::{IpAddr, Ipv4Addr};

use flannel_model::{gojson, Lease, RawJson, SubnetKey};
use ipnet::{IpNet, Ipv4Net};
use serde_json::Value;

use crate::state::{Addr, Fdb, KernelState, MacAddr, Neigh, Route, VxlanLink};

/// Bytes of vxlan encapsulation over an IPv4 underlay (outer IP 20 + UDP 8 + vxlan 8 +
/// inner Ethernet 14).
pub const VXLAN_OVERHEAD_V4: u32 = 50;

/// `Backend` options of the vxlan backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanOptions {
    /// `VNI` (default 1).
    pub vni: u32,
    /// `Port` (default 0: the kernel's 8472).
    pub port: u16,
    /// `GBP`.
    pub gbp: bool,
    /// `Learning`.
    pub learning: bool,
    /// `DirectRouting`: plain routes to peers on the same L2 segment.
    pub direct_routing: bool,
    /// `MTU`: desired MTU of outgoing packets (default: the external interface's).
    pub mtu: Option<u32>,
}

impl Default for VxlanOptions {
    fn default() -> Self {
        VxlanOptions {
            vni: 1,
            port: 0,
            gbp: false,
            learning: false,
            direct_routing: false,
            mtu: None,
        }
    }
}

/// A `Backend` block the vxlan backend cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error decoding VXLAN backend config: {0}")]
pub struct VxlanConfigError(pub String);

impl VxlanOptions {
    /// Read the options from the `Backend` object (keys case-insensitive, as in Go).
    pub fn from_backend(backend: &Value) -> Result<Self, VxlanConfigError> {
        let mut o = VxlanOptions::default();
        let Some(obj) = backend.as_object() else {
            return Ok(o);
        };
        let uint = |name: &str, max: u64| -> Result<Option<u64>, VxlanConfigError> {
            match gojson::get(obj, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match n.as_u64() {
                    Some(v) if v <= max => Ok(Some(v)),
                    _ => Err(VxlanConfigError(format!("{name}: {n} is out of range"))),
                },
                Some(other) => Err(VxlanConfigError(format!(
                    "{name}: expected a number, got {other}"
                ))),
            }
        };
        let boolean = |name: &str| -> Result<Option<bool>, VxlanConfigError> {
            match gojson::get(obj, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(other) => Err(VxlanConfigError(format!(
                    "{name}: expected true or false, got {other}"
                ))),
            }
        };
        if let Some(v) = uint("VNI", 0xff_ffff)? {
            o.vni = u32::try_from(v).map_err(|e| VxlanConfigError(e.to_string()))?;
        }
        if let Some(v) = uint("Port", 65535)? {
            o.port = u16::try_from(v).map_err(|e| VxlanConfigError(e.to_string()))?;
        }
        if let Some(v) = uint("MTU", 65535)? {
            o.mtu = (v > 0).then(|| u32::try_from(v).ok()).flatten();
        }
        o.gbp = boolean("GBP")?.unwrap_or(false);
        o.learning = boolean("Learning")?.unwrap_or(false);
        o.direct_routing = boolean("DirectRouting")?.unwrap_or(false);
        Ok(o)
    }

    /// `flannel.<VNI>`.
    pub fn device_name(&self) -> String {
        format!("flannel.{}", self.vni)
    }

    /// MTU of the vxlan device, which is also `FLANNEL_MTU`.
    pub fn device_mtu(&self, ext_mtu: u32) -> u32 {
        self.mtu
            .unwrap_or(ext_mtu)
            .saturating_sub(VXLAN_OVERHEAD_V4)
    }
}

/// The vxlan BackendData in a lease: `{"VNI":1,"VtepMAC":"0e:2a:…"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanLeaseData {
    pub vni: u32,
    pub vtep_mac: MacAddr,
}

impl VxlanLeaseData {
    /// JSON exactly as Flannel writes it.
    pub fn to_raw(&self) -> RawJson {
        RawJson::from_value(&serde_json::json!({
            "VNI": self.vni,
            "VtepMAC": self.vtep_mac.to_string(),
        }))
    }

    /// Read a peer's BackendData.
    pub fn from_raw(raw: &RawJson) -> Result<Self, String> {
        let value = raw.to_value().map_err(|e| e.to_string())?;
        let obj = value
            .as_object()
            .ok_or_else(|| format!("vxlan BackendData is not an object: {}", raw.as_str()))?;
        let vni = gojson::get(obj, "VNI")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        let mac = gojson::get(obj, "VtepMAC")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("vxlan BackendData has no VtepMAC: {}", raw.as_str()))?;
        let vtep_mac = mac.parse().map_err(|e| format!("{e}"))?;
        Ok(VxlanLeaseData { vni, vtep_mac })
    }
}

/// A stable VTEP MAC for this host: locally administered, unicast, derived from the VNI and
/// the public IP (a host's identity in etcd mode: its lease is found again by that IP). The
/// same host gets the same MAC after a restart, a re-created device or a reboot, so peers'
/// neighbour and FDB entries stay valid with no state on disk (Flannel in etcd mode draws a
/// random MAC whenever the device is new).
pub fn derive_vtep_mac(vni: u32, public_ip: Ipv4Addr) -> MacAddr {
    // FNV-1a: tiny, and stable across Rust versions (unlike std's DefaultHasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"flannel-rs vtep"
        .iter()
        .chain(&vni.to_be_bytes())
        .chain(&public_ip.octets())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV alone barely mixes the last input bytes (IPs differing in the last octet would
    // differ in one MAC byte); a 64-bit finalizer spreads every input bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let b = h.to_be_bytes();
    // 0x02: locally administered; bit 0 clear: unicast.
    MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// Facts about the external interface the planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtIface {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    pub addr: Ipv4Addr,
}

/// A peer lease the backend cannot program, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub subnet: SubnetKey,
    pub reason: String,
}

/// Desired kernel state for the vxlan backend.
///
/// `on_link` says whether a peer's public IP is on our L2 segment (only asked when
/// DirectRouting is on); such peers get `<subnet> via <PublicIP> dev <ext>` instead.
pub fn desired_state<'a>(
    opts: &VxlanOptions,
    ext: &ExtIface,
    own: &SubnetKey,
    mac: MacAddr,
    peers: impl IntoIterator<Item = &'a Lease>,
    on_link: &dyn Fn(Ipv4Addr) -> bool,
) -> (KernelState, Vec<Skipped>) {
    let dev = opts.device_name();
    let mut state = KernelState::default();
    state.links.insert(
        dev.clone(),
        VxlanLink {
            name: dev.clone(),
            vni: opts.vni,
            underlay_index: ext.index,
            local: IpAddr::V4(ext.addr),
            port: opts.port,
            gbp: opts.gbp,
            learning: opts.learning,
            l2miss: false,
            l3miss: false,
            mtu: opts.device_mtu(ext.mtu),
            mac,
            up: true,
        },
    );
    state.addrs.insert(Addr {
        dev: dev.clone(),
        net: IpNet::V4(host_net(own.ipv4)),
    });
    let mut skipped = Vec::new();
    for lease in peers {
        if lease.attrs.backend_type != "vxlan" {
            skipped.push(Skipped {
                subnet: lease.subnet,
                reason: format!("backend type {:?} is not vxlan", lease.attrs.backend_type),
            });
            continue;
        }
        let Some(data) = &lease.attrs.backend_data else {
            skipped.push(Skipped {
                subnet: lease.subnet,
                reason: "no BackendData".into(),
            });
            continue;
        };
        let data = match VxlanLeaseData::from_raw(data) {
            Ok(d) => d,
            Err(reason) => {
                skipped.push(Skipped {
                    subnet: lease.subnet,
                    reason,
                });
                continue;
            }
        };
        let subnet = lease.subnet.ipv4;
        let public_ip = lease.attrs.public_ip;
        if opts.direct_routing && on_link(public_ip) {
            state.routes.insert(Route {
                dst: IpNet::V4(subnet),
                gateway: Some(IpAddr::V4(public_ip)),
                dev: ext.name.clone(),
                onlink: false,
            });
            continue;
        }
        let gw = IpAddr::V4(subnet.network());
        state.neighs.insert(Neigh {
            dev: dev.clone(),
            ip: gw,
            mac: data.vtep_mac,
        });
        state.fdb.insert(Fdb {
            dev: dev.clone(),
            mac: data.vtep_mac,
            dst: IpAddr::V4(public_ip),
        });
        state.routes.insert(Route {
            dst: IpNet::V4(subnet),
            gateway: Some(gw),
            dev: dev.clone(),
            onlink: true,
        });
    }
    (state, skipped)
}

/// `10.244.1.0/24` → `10.244.1.0/32`: the address Flannel puts on the vxlan device.
pub fn host_net(subnet: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new(subnet.network(), 32).unwrap_or(subnet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_model::LeaseAttrs;
    use serde_json::json;

    fn key(s: &str) -> SubnetKey {
        SubnetKey {
            ipv4: s.parse().expect("cidr"),
            ipv6: None,
        }
    }

    fn ext() -> ExtIface {
        ExtIface {
            name: "eth0".into(),
            index: 2,
            mtu: 1500,
            addr: Ipv4Addr::new(192, 0, 2, 1),
        }
    }

    fn vxlan_peer(subnet: &str, ip: u8, mac: &str) -> Lease {
        Lease {
            subnet: key(subnet),
            attrs: LeaseAttrs {
                public_ip: Ipv4Addr::new(192, 0, 2, ip),
                public_ipv6: None,
                backend_type: "vxlan".into(),
                backend_data: Some(
                    RawJson::new(&format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#)).expect("json"),
                ),
                backend_v6_data: None,
            },
            expiration: None,
        }
    }

    #[test]
    fn options_defaults_and_case_insensitive_keys() {
        let o = VxlanOptions::from_backend(&json!({"Type": "vxlan"})).expect("ok");
        assert_eq!(o, VxlanOptions::default());
        assert_eq!(o.device_name(), "flannel.1");
        assert_eq!(o.device_mtu(1500), 1450);
        let o = VxlanOptions::from_backend(
            &json!({"type": "vxlan", "vni": 42, "PORT": 4789, "directrouting": true, "MTU": 9000, "gbp": true}),
        )
        .expect("ok");
        assert_eq!(o.vni, 42);
        assert_eq!(o.port, 4789);
        assert!(o.direct_routing && o.gbp && !o.learning);
        assert_eq!(o.device_mtu(1500), 8950);
        let err = VxlanOptions::from_backend(&json!({"VNI": "one"})).expect_err("bad");
        assert_eq!(
            err.to_string(),
            "error decoding VXLAN backend config: VNI: expected a number, got \"one\""
        );
    }

    #[test]
    fn lease_data_is_flannels_json() {
        let d = VxlanLeaseData {
            vni: 1,
            vtep_mac: "c6:d2:32:6f:8f:44".parse().expect("mac"),
        };
        assert_eq!(
            d.to_raw().as_str(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#
        );
        assert_eq!(VxlanLeaseData::from_raw(&d.to_raw()), Ok(d));
    }

    #[test]
    fn derived_mac_is_stable_local_unicast_and_distinct() {
        let a = derive_vtep_mac(1, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(a, derive_vtep_mac(1, Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(a.0[0] & 0x03, 0x02, "locally administered unicast: {a}");
        assert_ne!(a, derive_vtep_mac(1, Ipv4Addr::new(192, 0, 2, 2)));
        assert_ne!(a, derive_vtep_mac(2, Ipv4Addr::new(192, 0, 2, 1)));
        // Pinned: peers keep entries for this MAC across our upgrades.
        assert_eq!(a.to_string(), "8e:48:a5:41:a0:5a");
    }

    #[test]
    fn one_route_neigh_fdb_per_vxlan_peer() {
        let mac: MacAddr = "0e:00:00:00:00:01".parse().expect("mac");
        let peers = [
            vxlan_peer("198.18.2.0/24", 2, "0e:00:00:00:00:02"),
            vxlan_peer("198.18.3.0/24", 3, "0e:00:00:00:00:03"),
        ];
        let (s, skipped) = desired_state(
            &VxlanOptions::default(),
            &ext(),
            &key("198.18.1.0/24"),
            mac,
            &peers,
            &|_| false,
        );
        assert!(skipped.is_empty());
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.neighs.len(), 2);
        assert_eq!(s.fdb.len(), 2);
        let r = s.routes.iter().next().expect("route");
        assert_eq!(r.dst.to_string(), "198.18.2.0/24");
        assert_eq!(r.gateway, Some("198.18.2.0".parse().expect("ip")));
        assert!(r.onlink);
        assert_eq!(r.dev, "flannel.1");
        let f = s.fdb.iter().next().expect("fdb");
        assert_eq!(f.dst, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        let a = s.addrs.iter().next().expect("addr");
        assert_eq!(a.net.to_string(), "198.18.1.0/32");
        assert_eq!(s.links["flannel.1"].mtu, 1450);
    }

    #[test]
    fn direct_routing_uses_plain_routes_for_on_link_peers() {
        let opts = VxlanOptions {
            direct_routing: true,
            ..VxlanOptions::default()
        };
        let peers = [
            vxlan_peer("198.18.2.0/24", 2, "0e:00:00:00:00:02"),
            vxlan_peer("198.18.3.0/24", 3, "0e:00:00:00:00:03"),
        ];
        let (s, _) = desired_state(
            &opts,
            &ext(),
            &key("198.18.1.0/24"),
            MacAddr([2, 0, 0, 0, 0, 1]),
            &peers,
            &|ip| ip == Ipv4Addr::new(192, 0, 2, 2),
        );
        let direct: Vec<_> = s.routes.iter().filter(|r| r.dev == "eth0").collect();
        assert_eq!(direct.len(), 1);
        assert_eq!(
            direct[0].gateway,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))
        );
        assert_eq!(s.neighs.len(), 1);
    }

    #[test]
    fn other_backends_and_garbage_are_skipped() {
        let mut hostgw = vxlan_peer("198.18.4.0/24", 4, "0e:00:00:00:00:04");
        hostgw.attrs.backend_type = "host-gw".into();
        hostgw.attrs.backend_data = None;
        let mut garbage = vxlan_peer("198.18.5.0/24", 5, "0e:00:00:00:00:05");
        garbage.attrs.backend_data = Some(RawJson::new(r#"{"VNI":1}"#).expect("json"));
        let (s, skipped) = desired_state(
            &VxlanOptions::default(),
            &ext(),
            &key("198.18.1.0/24"),
            MacAddr([2, 0, 0, 0, 0, 1]),
            &[hostgw, garbage],
            &|_| false,
        );
        assert_eq!(s.entry_count(), 0);
        assert_eq!(skipped.len(), 2);
    }
}
