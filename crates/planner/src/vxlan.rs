//! The vxlan backend's decisions: options from `Backend`, the lease's BackendData, the VTEP
//! MACs, and the desired kernel state for a set of peers (Flannel's current scheme: one route,
//! one permanent neighbour and one FDB entry per remote host and address family).
//!
//! With `EnableIPv6` a second device, `flannel-v6.<VNI>`, carries the IPv6 pod traffic over
//! the IPv6 underlay (`local` = the external interface's IPv6 address), with its own MAC
//! (advertised in `BackendV6Data`) and its own per-peer entries built from the peer's IPv6
//! subnet, `PublicIPv6` and `BackendV6Data`. A peer lease without an IPv6 part is an IPv4-only
//! peer; one whose IPv6 part cannot be used keeps its IPv4 entries (Flannel drops the whole
//! lease when its `BackendV6Data` does not decode).

use std::net::IpAddr;

use flannel_model::{gojson, Lease, RawJson, SubnetKey, VxlanLeaseData};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::Value;

use crate::ext_iface::ExtIface;
use crate::skipped::Skipped;
use crate::state::{Addr, Fdb, KernelState, LinkSpec, MacAddr, Neigh, Route, VxlanLink};

/// Bytes of vxlan encapsulation over an IPv4 underlay (outer IP 20 + UDP 8 + vxlan 8 +
/// inner Ethernet 14).
pub const VXLAN_OVERHEAD_V4: u32 = 50;

/// Bytes of vxlan encapsulation over an IPv6 underlay (outer IPv6 40 + UDP 8 + vxlan 8 +
/// inner Ethernet 14). Flannel subtracts 50 here too, which lets full-size packets exceed the
/// underlay MTU.
pub const VXLAN_OVERHEAD_V6: u32 = 70;

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
    /// `Mode`: how peers are programmed (default: pre-programmed per peer).
    pub mode: VxlanMode,
}

/// How the vxlan backend programs peers (`Backend.Mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VxlanMode {
    /// Flannel's current scheme: a route, a permanent neighbour and a permanent FDB entry per
    /// remote host (`"Mode": "default"` or no `Mode`).
    #[default]
    Preprogrammed,
    /// Flannel's first design (`"Mode": "on-demand"`): `l2miss`/`l3miss` on the device, one
    /// route for the whole network, and entries learned from the kernel's misses (see
    /// [`crate::ondemand`]).
    OnDemand,
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
            mode: VxlanMode::Preprogrammed,
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
        o.mode = match gojson::get(obj, "Mode") {
            None | Some(Value::Null) => VxlanMode::Preprogrammed,
            Some(Value::String(m)) => match m.to_ascii_lowercase().as_str() {
                "" | "default" => VxlanMode::Preprogrammed,
                "on-demand" => VxlanMode::OnDemand,
                _ => {
                    return Err(VxlanConfigError(format!(
                        "Mode: unknown vxlan mode {m:?} (expected \"default\" or \"on-demand\")"
                    )))
                }
            },
            Some(other) => {
                return Err(VxlanConfigError(format!(
                    "Mode: expected a string, got {other}"
                )))
            }
        };
        if o.mode == VxlanMode::OnDemand && o.direct_routing {
            return Err(VxlanConfigError(
                "Mode \"on-demand\" cannot be combined with DirectRouting".into(),
            ));
        }
        Ok(o)
    }

    /// `flannel.<VNI>`.
    pub fn device_name(&self) -> String {
        format!("flannel.{}", self.vni)
    }

    /// `flannel-v6.<VNI>`.
    pub fn device_name_v6(&self) -> String {
        format!("flannel-v6.{}", self.vni)
    }

    /// MTU of `flannel.<VNI>` (IPv4 underlay): `MTU` (default: the external interface's) − 50.
    pub fn device_mtu(&self, ext_mtu: u32) -> u32 {
        self.mtu
            .unwrap_or(ext_mtu)
            .saturating_sub(VXLAN_OVERHEAD_V4)
    }

    /// MTU of `flannel-v6.<VNI>` (IPv6 underlay): `MTU` (default: the external interface's) − 70.
    pub fn device_mtu_v6(&self, ext_mtu: u32) -> u32 {
        self.mtu
            .unwrap_or(ext_mtu)
            .saturating_sub(VXLAN_OVERHEAD_V6)
    }

    /// `FLANNEL_MTU`: the MTU of the smallest device pods' traffic may cross — the IPv4 device,
    /// and with IPv6 (`dual_stack`) the IPv6 one as well.
    pub fn pod_mtu(&self, ext_mtu: u32, dual_stack: bool) -> u32 {
        let v4 = self.device_mtu(ext_mtu);
        if dual_stack {
            v4.min(self.device_mtu_v6(ext_mtu))
        } else {
            v4
        }
    }
}

/// A stable VTEP MAC for this host: locally administered, unicast, derived from the VNI and
/// the public IP (a host's identity in etcd mode: its lease is found again by that IP). The
/// same host gets the same MAC after a restart, a re-created device or a reboot, so peers'
/// neighbour and FDB entries stay valid with no state on disk (Flannel in etcd mode draws a
/// random MAC whenever the device is new).
///
/// `flannel.<VNI>` takes the MAC of the public IPv4 address, `flannel-v6.<VNI>` the MAC of the
/// public IPv6 address; the family is part of the hashed input, so the two never coincide.
pub fn derive_vtep_mac(vni: u32, public_ip: impl Into<IpAddr>) -> MacAddr {
    // FNV-1a: tiny, and stable across Rust versions (unlike std's DefaultHasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match public_ip.into() {
        // Unchanged since the first release: peers hold entries for these MACs.
        IpAddr::V4(ip) => {
            feed(b"flannel-rs vtep");
            feed(&vni.to_be_bytes());
            feed(&ip.octets());
        }
        IpAddr::V6(ip) => {
            feed(b"flannel-rs vtep ipv6");
            feed(&vni.to_be_bytes());
            feed(&ip.octets());
        }
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

/// The MACs of this host's vxlan devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtepMacs {
    /// `flannel.<VNI>`.
    pub v4: MacAddr,
    /// `flannel-v6.<VNI>` (with IPv6 enabled).
    pub v6: Option<MacAddr>,
}

/// Desired kernel state for the vxlan backend.
///
/// `flannel.<VNI>` and the IPv4 entries when IPv4 is on (the external interface has an IPv4
/// address, [`ExtIface::v4`], and our lease an IPv4 subnet); `flannel-v6.<VNI>` and the IPv6
/// entries when IPv6 is on: our lease has an IPv6 subnet, the external interface an IPv6
/// address (`ext.addr_v6`) and `macs.v6` is given.
///
/// `on_link` says whether a peer's public IP (v4 or v6) is on our L2 segment (only asked when
/// DirectRouting is on); such peers get `<subnet> via <PublicIP> dev <ext>` instead.
pub fn desired_state<'a>(
    opts: &VxlanOptions,
    ext: &ExtIface,
    own: &SubnetKey,
    macs: VtepMacs,
    peers: impl IntoIterator<Item = &'a Lease>,
    on_link: &dyn Fn(IpAddr) -> bool,
) -> (KernelState, Vec<Skipped>) {
    let mut state = KernelState::default();
    let v4_dev = match (ext.v4(), own.ipv4_net()) {
        (Some(local), Some(own4)) => {
            let dev = opts.device_name();
            state.links.insert(
                dev.clone(),
                LinkSpec::Vxlan(link(
                    opts,
                    ext,
                    &dev,
                    IpAddr::V4(local),
                    opts.device_mtu(ext.mtu),
                    macs.v4,
                )),
            );
            state.addrs.insert(Addr {
                dev: dev.clone(),
                net: IpNet::V4(host_net(own4)),
            });
            Some(dev)
        }
        _ => None,
    };
    let v6 = match (own.ipv6, ext.addr_v6, macs.v6) {
        (Some(own6), Some(local6), Some(mac6)) => {
            let dev6 = opts.device_name_v6();
            state.links.insert(
                dev6.clone(),
                LinkSpec::Vxlan(link(
                    opts,
                    ext,
                    &dev6,
                    IpAddr::V6(local6),
                    opts.device_mtu_v6(ext.mtu),
                    mac6,
                )),
            );
            state.addrs.insert(Addr {
                dev: dev6.clone(),
                net: IpNet::V6(host_net_v6(own6)),
            });
            Some(dev6)
        }
        _ => None,
    };
    let mut skipped = Vec::new();
    for lease in peers {
        if lease.attrs.backend_type != "vxlan" {
            skipped.push(Skipped {
                subnet: lease.subnet,
                reason: format!("backend type {:?} is not vxlan", lease.attrs.backend_type),
            });
            continue;
        }
        if let (Some(dev), Some(subnet4)) = (&v4_dev, lease.subnet.ipv4_net()) {
            let v4 = Family {
                subnet: IpNet::V4(subnet4),
                public_ip: Some(IpAddr::V4(lease.attrs.public_ip)),
                data: lease.attrs.backend_data.as_ref(),
                dev,
                what: "BackendData",
            };
            if let Err(reason) = v4.plan(opts, ext, &mut state, on_link) {
                skipped.push(Skipped {
                    subnet: lease.subnet,
                    reason,
                });
            }
        }
        let (Some(dev6), Some(subnet6)) = (&v6, lease.subnet.ipv6) else {
            continue;
        };
        let v6 = Family {
            subnet: IpNet::V6(subnet6),
            public_ip: lease.attrs.public_ipv6.map(IpAddr::V6),
            data: lease.attrs.backend_v6_data.as_ref(),
            dev: dev6,
            what: "BackendV6Data",
        };
        if let Err(reason) = v6.plan(opts, ext, &mut state, on_link) {
            skipped.push(Skipped {
                subnet: lease.subnet,
                reason: format!("IPv6 part: {reason}"),
            });
        }
    }
    (state, skipped)
}

pub(crate) fn link(
    opts: &VxlanOptions,
    ext: &ExtIface,
    name: &str,
    local: IpAddr,
    mtu: u32,
    mac: MacAddr,
) -> VxlanLink {
    VxlanLink {
        name: name.to_owned(),
        vni: opts.vni,
        underlay_index: ext.index,
        local,
        port: opts.port,
        gbp: opts.gbp,
        learning: opts.learning,
        l2miss: false,
        l3miss: false,
        mtu,
        mac,
        up: true,
    }
}

/// One address family of a peer lease.
struct Family<'a> {
    subnet: IpNet,
    public_ip: Option<IpAddr>,
    data: Option<&'a RawJson>,
    dev: &'a str,
    /// The lease field the data comes from, for messages.
    what: &'static str,
}

impl Family<'_> {
    /// Add this family's entries for the peer, or say why it cannot be programmed.
    fn plan(
        &self,
        opts: &VxlanOptions,
        ext: &ExtIface,
        state: &mut KernelState,
        on_link: &dyn Fn(IpAddr) -> bool,
    ) -> Result<(), String> {
        let data = self.data.ok_or_else(|| format!("no {}", self.what))?;
        let data = VxlanLeaseData::from_raw(data).map_err(|e| e.to_string())?;
        let public_ip = self.public_ip.ok_or("no PublicIPv6")?;
        if opts.direct_routing && on_link(public_ip) {
            state.routes.insert(Route {
                dst: self.subnet,
                gateway: Some(public_ip),
                dev: ext.name.clone(),
                onlink: false,
            });
            return Ok(());
        }
        let gw = self.subnet.network();
        state.neighs.insert(Neigh {
            dev: self.dev.to_owned(),
            ip: gw,
            mac: data.vtep_mac,
        });
        state.fdb.insert(Fdb {
            dev: self.dev.to_owned(),
            mac: data.vtep_mac,
            dst: public_ip,
        });
        state.routes.insert(Route {
            dst: self.subnet,
            gateway: Some(gw),
            dev: self.dev.to_owned(),
            onlink: true,
        });
        Ok(())
    }
}

/// `10.244.1.0/24` → `10.244.1.0/32`: the address Flannel puts on the vxlan device.
pub fn host_net(subnet: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new(subnet.network(), 32).unwrap_or(subnet)
}

/// `2001:db8:f000:1::/64` → `2001:db8:f000:1::/128`: the address on `flannel-v6.<VNI>`.
pub fn host_net_v6(subnet: Ipv6Net) -> Ipv6Net {
    Ipv6Net::new(subnet.network(), 128).unwrap_or(subnet)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flannel_model::LeaseAttrs;
    use serde_json::json;
    use std::net::{Ipv4Addr, Ipv6Addr};

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
            addr_v6: None,
        }
    }

    fn macs(v4: MacAddr) -> VtepMacs {
        VtepMacs { v4, v6: None }
    }

    /// A vxlan peer lease (VNI 1) at `192.0.2.<ip>` with VTEP MAC `mac`.
    pub(crate) fn vxlan_peer(subnet: &str, ip: u8, mac: &str) -> Lease {
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
        assert_eq!(o.device_name_v6(), "flannel-v6.42");
        assert_eq!(o.device_mtu_v6(1500), 8930);
        assert_eq!(o.mode, VxlanMode::Preprogrammed);
        let o =
            VxlanOptions::from_backend(&json!({"Type": "vxlan", "mode": "On-Demand"})).expect("ok");
        assert_eq!(o.mode, VxlanMode::OnDemand);
        let o = VxlanOptions::from_backend(&json!({"Mode": "default"})).expect("ok");
        assert_eq!(o.mode, VxlanMode::Preprogrammed);
        let err = VxlanOptions::from_backend(&json!({"Mode": "lazy"})).expect_err("bad");
        assert_eq!(
            err.to_string(),
            "error decoding VXLAN backend config: Mode: unknown vxlan mode \"lazy\" \
             (expected \"default\" or \"on-demand\")"
        );
        let err = VxlanOptions::from_backend(&json!({"Mode": "on-demand", "DirectRouting": true}))
            .expect_err("bad");
        assert!(err.to_string().contains("DirectRouting"), "{err}");
        let err = VxlanOptions::from_backend(&json!({"VNI": "one"})).expect_err("bad");
        assert_eq!(
            err.to_string(),
            "error decoding VXLAN backend config: VNI: expected a number, got \"one\""
        );
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
        // The IPv6 device's MAC comes from the IPv6 address, with the family in the hash.
        let v6: Ipv6Addr = "2001:db8:1::1".parse().expect("ip");
        let b = derive_vtep_mac(1, v6);
        assert_eq!(b, derive_vtep_mac(1, v6));
        assert_eq!(b.0[0] & 0x03, 0x02, "locally administered unicast: {b}");
        assert_ne!(b, a);
        assert_ne!(
            b,
            derive_vtep_mac(1, "2001:db8:1::2".parse::<Ipv6Addr>().expect("ip"))
        );
        // An IPv4-mapped IPv6 address is not the IPv4 address.
        assert_ne!(
            derive_vtep_mac(1, Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
            a
        );
        assert_eq!(b.to_string(), "6a:60:67:c5:73:af");
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
            macs(mac),
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
        assert_eq!(s.links["flannel.1"].mtu(), 1450);
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
            macs(MacAddr([2, 0, 0, 0, 0, 1])),
            &peers,
            &|ip| ip == IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
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
            macs(MacAddr([2, 0, 0, 0, 0, 1])),
            &[hostgw, garbage],
            &|_| false,
        );
        assert_eq!(s.entry_count(), 0);
        assert_eq!(skipped.len(), 2);
    }

    fn dual_ext() -> ExtIface {
        ExtIface {
            addr_v6: Some("2001:db8:1::1".parse().expect("ip")),
            ..ext()
        }
    }

    fn dual_key(v4: &str, v6: &str) -> SubnetKey {
        SubnetKey {
            ipv4: v4.parse().expect("cidr"),
            ipv6: Some(v6.parse().expect("cidr")),
        }
    }

    /// A dual-stack vxlan peer `i`: 198.18.i.0/24 + 2001:db8:f000:i::/64, public IPs
    /// 192.0.2.i and 2001:db8:1::i, MACs 0e:..:04:i (v4) and 0e:..:06:i (v6).
    fn dual_peer(i: u8) -> Lease {
        let mut l = vxlan_peer(
            &format!("198.18.{i}.0/24"),
            i,
            &format!("0e:00:00:00:04:{i:02x}"),
        );
        l.subnet.ipv6 = Some(format!("2001:db8:f000:{i:x}::/64").parse().expect("cidr"));
        l.attrs.public_ipv6 = Some(format!("2001:db8:1::{i:x}").parse().expect("ip"));
        l.attrs.backend_v6_data = Some(
            RawJson::new(&format!(
                r#"{{"VNI":1,"VtepMAC":"0e:00:00:00:06:{i:02x}"}}"#
            ))
            .expect("json"),
        );
        l
    }

    fn dual_macs() -> VtepMacs {
        VtepMacs {
            v4: "0e:00:00:00:04:01".parse().expect("mac"),
            v6: Some("0e:00:00:00:06:01".parse().expect("mac")),
        }
    }

    fn lines(s: &KernelState) -> Vec<String> {
        let mut out = Vec::new();
        for l in s.links.values().filter_map(LinkSpec::as_vxlan) {
            out.push(format!(
                "link {} vni {} local {} mtu {} mac {}",
                l.name, l.vni, l.local, l.mtu, l.mac
            ));
        }
        for a in &s.addrs {
            out.push(format!("addr {} dev {}", a.net, a.dev));
        }
        for n in &s.neighs {
            out.push(format!("neigh {} lladdr {} dev {}", n.ip, n.mac, n.dev));
        }
        for f in &s.fdb {
            out.push(format!("fdb {} dst {} dev {}", f.mac, f.dst, f.dev));
        }
        for r in &s.routes {
            out.push(format!(
                "route {} via {:?} dev {}{}",
                r.dst,
                r.gateway,
                r.dev,
                if r.onlink { " onlink" } else { "" }
            ));
        }
        out
    }

    #[test]
    fn dual_stack_adds_the_v6_device_and_v6_entries_per_peer() {
        let (s, skipped) = desired_state(
            &VxlanOptions::default(),
            &dual_ext(),
            &dual_key("198.18.1.0/24", "2001:db8:f000:1::/64"),
            dual_macs(),
            &[dual_peer(2)],
            &|_| false,
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            lines(&s),
            [
                "link flannel-v6.1 vni 1 local 2001:db8:1::1 mtu 1430 mac 0e:00:00:00:06:01",
                "link flannel.1 vni 1 local 192.0.2.1 mtu 1450 mac 0e:00:00:00:04:01",
                "addr 2001:db8:f000:1::/128 dev flannel-v6.1",
                "addr 198.18.1.0/32 dev flannel.1",
                "neigh 2001:db8:f000:2:: lladdr 0e:00:00:00:06:02 dev flannel-v6.1",
                "neigh 198.18.2.0 lladdr 0e:00:00:00:04:02 dev flannel.1",
                "fdb 0e:00:00:00:06:02 dst 2001:db8:1::2 dev flannel-v6.1",
                "fdb 0e:00:00:00:04:02 dst 192.0.2.2 dev flannel.1",
                "route 198.18.2.0/24 via Some(198.18.2.0) dev flannel.1 onlink",
                "route 2001:db8:f000:2::/64 via Some(2001:db8:f000:2::) dev flannel-v6.1 onlink",
            ]
        );
        let v6 = s.links["flannel-v6.1"].as_vxlan().expect("vxlan");
        let v4 = s.links["flannel.1"].as_vxlan().expect("vxlan");
        assert_eq!(
            (v6.underlay_index, v6.port, v6.learning, v6.gbp),
            (v4.underlay_index, v4.port, v4.learning, v4.gbp),
            "same VNI/port options on both devices"
        );
    }

    #[test]
    fn v4_only_peers_and_unusable_v6_parts_in_a_dual_stack_network() {
        let v4_only = vxlan_peer("198.18.3.0/24", 3, "0e:00:00:00:04:03");
        let mut no_v6_data = dual_peer(4);
        no_v6_data.attrs.backend_v6_data = None;
        let mut no_public_v6 = dual_peer(5);
        no_public_v6.attrs.public_ipv6 = None;
        let (s, skipped) = desired_state(
            &VxlanOptions::default(),
            &dual_ext(),
            &dual_key("198.18.1.0/24", "2001:db8:f000:1::/64"),
            dual_macs(),
            &[v4_only, no_v6_data, no_public_v6],
            &|_| false,
        );
        // Every peer keeps its IPv4 entries; no IPv6 entry is made for any of them.
        assert_eq!(s.routes.len(), 3);
        assert!(s.routes.iter().all(|r| r.dst.addr().is_ipv4()));
        assert!(s.neighs.iter().all(|n| n.ip.is_ipv4()));
        assert!(s.fdb.iter().all(|f| f.dst.is_ipv4()));
        let reasons: Vec<String> = skipped
            .iter()
            .map(|s| format!("{}: {}", s.subnet.ipv4, s.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "198.18.4.0/24: IPv6 part: no BackendV6Data",
                "198.18.5.0/24: IPv6 part: no PublicIPv6",
            ]
        );
    }

    #[test]
    fn ipv4_only_host_ignores_peers_v6_parts() {
        let (s, skipped) = desired_state(
            &VxlanOptions::default(),
            &ext(),
            &key("198.18.1.0/24"),
            macs(MacAddr([2, 0, 0, 0, 0, 1])),
            &[dual_peer(2)],
            &|_| false,
        );
        assert!(skipped.is_empty());
        assert_eq!(s.links.keys().collect::<Vec<_>>(), ["flannel.1"]);
        assert_eq!(s.entry_count(), 3);
    }

    #[test]
    fn v6_direct_routing_uses_the_peers_public_ipv6() {
        let opts = VxlanOptions {
            direct_routing: true,
            ..VxlanOptions::default()
        };
        let (s, _) = desired_state(
            &opts,
            &dual_ext(),
            &dual_key("198.18.1.0/24", "2001:db8:f000:1::/64"),
            dual_macs(),
            &[dual_peer(2)],
            &|ip| ip.is_ipv6(),
        );
        let direct: Vec<String> = s
            .routes
            .iter()
            .filter(|r| r.dev == "eth0")
            .map(|r| format!("{} via {:?}", r.dst, r.gateway))
            .collect();
        assert_eq!(direct, ["2001:db8:f000:2::/64 via Some(2001:db8:1::2)"]);
        assert!(s.neighs.iter().all(|n| n.ip.is_ipv4()));
    }

    #[test]
    fn pod_mtu_is_the_smaller_device_mtu() {
        let o = VxlanOptions::default();
        assert_eq!(o.device_mtu(1500), 1450);
        assert_eq!(o.device_mtu_v6(1500), 1430);
        assert_eq!(o.pod_mtu(1500, false), 1450);
        assert_eq!(o.pod_mtu(1500, true), 1430);
        let jumbo = VxlanOptions {
            mtu: Some(9000),
            ..VxlanOptions::default()
        };
        assert_eq!(jumbo.pod_mtu(1500, true), 8930);
        assert_eq!(o.device_mtu_v6(40), 0, "never underflows");
    }
}
