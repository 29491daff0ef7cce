//! Backends: how packets reach other hosts. Each decides what this host advertises in its
//! lease (`BackendType`, `BackendData`, `BackendV6Data`, `PublicIPv6`), the MTU pods get, and —
//! through the planner — what the kernel should hold for a set of peers, for IPv4 and, with
//! `EnableIPv6`, IPv6.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use anyhow::{bail, Context, Result};
use flannel_kernel::iface::ExternalInterface;
use flannel_model::VxlanLeaseData;
use flannel_model::{Lease, NetworkConfig, RawJson, SubnetKey};
use flannel_planner::diff::Scope;
use flannel_planner::ext_iface::ExtIface;
use flannel_planner::hostgw;
use flannel_planner::ondemand;
use flannel_planner::skipped::Skipped;
use flannel_planner::state::{KernelState, MacAddr, Route};
use flannel_planner::vxlan::{self, VtepMacs, VxlanMode, VxlanOptions};
use ipnet::{IpNet, Ipv4Net};

/// Backend types Flannel knows that this build does not provide yet.
const NOT_YET: &[&str] = &["ipip", "wireguard", "ipsec", "extension", "tencent-vpc"];

/// The configured backend.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `alloc`: lease only, no data path.
    Alloc { mtu: u32 },
    /// `vxlan`, current scheme: route + neighbour + FDB entry per peer (and `flannel-v6.<VNI>`
    /// with its own entries when IPv6 is enabled: `ext.addr_v6` is set).
    Vxlan {
        opts: VxlanOptions,
        macs: VtepMacs,
        ext: ExtIface,
        /// `Network` (the on-demand mode routes all of it to the device).
        network: Option<Ipv4Net>,
    },
    /// `host-gw`: one route per peer via its public IP.
    HostGw { ext: ExtIface },
    /// `udp`: TUN `flannel0` and a userspace proxy (`flannel-udp`); the kernel holds only the
    /// route of the whole network through the device. IPv4 only.
    Udp {
        ext: ExtIface,
        /// `Backend.Port`: the UDP port every node's proxy listens on.
        port: u16,
        /// `Network`, routed to `flannel0`.
        network: Ipv4Net,
    },
}

/// Reads the udp backend's `Port` option (default 8285).
fn udp_port(raw: &serde_json::Value) -> Result<u16> {
    let Some(obj) = raw.as_object() else {
        return Ok(flannel_udp::DEFAULT_PORT);
    };
    match flannel_model::gojson::get(obj, "Port") {
        None | Some(serde_json::Value::Null) => Ok(flannel_udp::DEFAULT_PORT),
        Some(serde_json::Value::Number(n)) => match n.as_u64().map(u16::try_from) {
            Some(Ok(p)) if p != 0 => Ok(p),
            _ => bail!("udp backend: Port {n} is not a usable UDP port"),
        },
        Some(other) => bail!("udp backend: Port: expected a number, got {other}"),
    }
}

impl Backend {
    /// Pick and configure the backend for the network config.
    pub fn new(network: &NetworkConfig, ext: &ExternalInterface) -> Result<Self> {
        let ext_facts = || -> Result<ExtIface> {
            let addr_v6 =
                if network.enable_ipv6 {
                    Some(ext.iface_v6_addr.context(
                        "IPv6 is enabled but the external interface has no IPv6 address",
                    )?)
                } else {
                    None
                };
            Ok(ExtIface {
                name: ext.name.clone(),
                index: ext.index,
                mtu: ext.mtu,
                addr: ext
                    .iface_addr
                    .context("the external interface has no IPv4 address")?,
                addr_v6,
            })
        };
        match network.backend_type() {
            "alloc" => Ok(Backend::Alloc { mtu: ext.mtu }),
            "vxlan" => {
                let opts = VxlanOptions::from_backend(&network.backend.raw)?;
                let facts = ext_facts()?;
                if opts.mode == VxlanMode::OnDemand {
                    if facts.addr_v6.is_some() {
                        bail!("the vxlan on-demand mode is IPv4-only; disable EnableIPv6 or use the default mode");
                    }
                    if network.network.is_none() {
                        bail!("the vxlan on-demand mode needs an IPv4 Network");
                    }
                }
                // The public IP identifies this host in etcd; the MAC follows it (the IPv6
                // device's MAC follows the public IPv6 address).
                let public_ip = ext.ext_addr.unwrap_or(facts.addr);
                let macs = VtepMacs {
                    v4: vxlan::derive_vtep_mac(opts.vni, public_ip),
                    v6: facts
                        .addr_v6
                        .map(|a| vxlan::derive_vtep_mac(opts.vni, ext.ext_v6_addr.unwrap_or(a))),
                };
                Ok(Backend::Vxlan {
                    opts,
                    macs,
                    ext: facts,
                    network: network.network,
                })
            }
            "host-gw" => {
                let facts = ext_facts()?;
                let public = ext.ext_addr.unwrap_or(facts.addr);
                hostgw::check_not_nat(public, facts.addr).map_err(anyhow::Error::msg)?;
                Ok(Backend::HostGw { ext: facts })
            }
            "udp" => {
                if network.enable_ipv6 {
                    bail!("the udp backend is IPv4-only; disable EnableIPv6");
                }
                let net = network
                    .network
                    .context("the udp backend needs an IPv4 Network")?;
                let port = udp_port(&network.backend.raw)?;
                let facts = ext_facts()?;
                flannel_udp::device::tun_mtu(facts.mtu)?;
                Ok(Backend::Udp {
                    ext: facts,
                    port,
                    network: net,
                })
            }
            t if NOT_YET.contains(&t) => bail!(
                "backend type {t:?} is not available in this build of flannel-rs yet \
                 (available: vxlan, host-gw, udp, alloc)"
            ),
            t => bail!("unknown backend type: {t}"),
        }
    }

    /// vxlan: use the VTEP MACs stored on our node by a previous flanneld (Kubernetes mode's
    /// `backend-data` / `backend-v6-data`) instead of the derived ones, so peers' neighbour
    /// and FDB entries for us stay valid across a restart (or a switch from Go flannel).
    /// Other backends are returned unchanged.
    pub fn with_stored_macs(mut self, v4: Option<[u8; 6]>, v6: Option<[u8; 6]>) -> Self {
        if let Backend::Vxlan { macs, .. } = &mut self {
            if let Some(mac) = v4 {
                macs.v4 = MacAddr(mac);
            }
            if let (Some(slot), Some(mac)) = (macs.v6.as_mut(), v6) {
                *slot = MacAddr(mac);
            }
        }
        self
    }

    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Alloc { .. } => "alloc",
            Backend::Vxlan { .. } => "vxlan",
            Backend::HostGw { .. } => "host-gw",
            Backend::Udp { .. } => "udp",
        }
    }

    /// `BackendType` written in our lease (empty for alloc and udp, as Flannel writes it).
    pub fn lease_type(&self) -> &'static str {
        match self {
            Backend::Alloc { .. } | Backend::Udp { .. } => "",
            Backend::Vxlan { .. } => "vxlan",
            Backend::HostGw { .. } => "host-gw",
        }
    }

    /// `BackendData` written in our lease.
    pub fn backend_data(&self) -> Option<RawJson> {
        match self {
            Backend::Alloc { .. } | Backend::HostGw { .. } | Backend::Udp { .. } => None,
            Backend::Vxlan { opts, macs, .. } => Some(
                VxlanLeaseData {
                    vni: opts.vni,
                    vtep_mac: macs.v4,
                }
                .to_raw(),
            ),
        }
    }

    /// `BackendV6Data` written in our lease: vxlan with IPv6, the IPv6 device's MAC.
    pub fn backend_v6_data(&self) -> Option<RawJson> {
        match self {
            Backend::Vxlan { opts, macs, .. } => macs.v6.map(|mac| {
                VxlanLeaseData {
                    vni: opts.vni,
                    vtep_mac: mac,
                }
                .to_raw()
            }),
            Backend::Alloc { .. } | Backend::HostGw { .. } | Backend::Udp { .. } => None,
        }
    }

    /// `PublicIPv6` written in our lease: with IPv6 enabled, the advertised IPv6 address
    /// (`--public-ipv6`, else the interface's); Flannel's alloc backend never writes one.
    pub fn public_ipv6(&self, ext: &ExternalInterface) -> Option<Ipv6Addr> {
        match self {
            Backend::Vxlan { ext: facts, .. } | Backend::HostGw { ext: facts } => {
                facts.addr_v6.map(|a| ext.ext_v6_addr.unwrap_or(a))
            }
            Backend::Alloc { .. } | Backend::Udp { .. } => None,
        }
    }

    /// MTU for pods (`FLANNEL_MTU`). vxlan: the smaller of the two devices' MTUs when both
    /// exist (Flannel subtracts 50 for both, see `VXLAN_OVERHEAD_V6`).
    pub fn mtu(&self) -> u32 {
        match self {
            Backend::Alloc { mtu } => *mtu,
            Backend::Vxlan { opts, ext, .. } => opts.pod_mtu(ext.mtu, ext.addr_v6.is_some()),
            Backend::HostGw { ext } => ext.mtu,
            Backend::Udp { ext, .. } => ext.mtu.saturating_sub(flannel_udp::ENCAP_OVERHEAD),
        }
    }

    /// Whether this backend programs the kernel at all.
    pub fn has_datapath(&self) -> bool {
        !matches!(self, Backend::Alloc { .. })
    }

    /// Devices flanneld owns wholly (every entry on them is ours).
    pub fn owned_devs(&self) -> Vec<String> {
        match self {
            Backend::Vxlan { opts, ext, .. } => {
                let mut devs = vec![opts.device_name()];
                if ext.addr_v6.is_some() {
                    devs.push(opts.device_name_v6());
                }
                devs
            }
            _ => Vec::new(),
        }
    }

    /// Other devices whose routes we program (and observe).
    pub fn route_devs(&self) -> Vec<String> {
        match self {
            Backend::Vxlan { ext, .. } | Backend::HostGw { ext } => vec![ext.name.clone()],
            Backend::Udp { .. } => vec![flannel_udp::TUN_NAME.to_owned()],
            Backend::Alloc { .. } => Vec::new(),
        }
    }

    /// What the kernel should hold for our lease and these peers.
    pub fn desired<'a>(
        &self,
        own: &SubnetKey,
        peers: impl IntoIterator<Item = &'a Lease>,
        on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        match self {
            Backend::Alloc { .. } => (KernelState::default(), Vec::new()),
            Backend::Vxlan {
                opts,
                macs,
                ext,
                network,
            } => match (opts.mode, network) {
                (VxlanMode::OnDemand, Some(net)) => (
                    ondemand::desired_state(opts, ext, own, macs.v4, *net),
                    Vec::new(),
                ),
                _ => vxlan::desired_state(opts, ext, own, *macs, peers, on_link),
            },
            Backend::HostGw { ext } => hostgw::desired_state(ext, peers),
            Backend::Udp { network, .. } => {
                // Peers live in the proxy's table, not in the kernel.
                let mut state = KernelState::default();
                state.routes.insert(Route {
                    dst: IpNet::V4(*network),
                    gateway: None,
                    dev: flannel_udp::TUN_NAME.to_owned(),
                    onlink: false,
                });
                (state, Vec::new())
            }
        }
    }

    /// The device whose misses flanneld answers (vxlan on-demand mode only).
    pub fn on_demand_dev(&self) -> Option<String> {
        match self {
            Backend::Vxlan { opts, .. } if opts.mode == VxlanMode::OnDemand => {
                Some(opts.device_name())
            }
            _ => None,
        }
    }

    /// The ownership scope for diffs, given the routes our journal says we installed and the
    /// blackhole routes we manage.
    pub fn scope(&self, journal: &BTreeSet<Route>, blackholes: BTreeSet<IpNet>) -> Scope {
        Scope {
            owned_devs: self.owned_devs().into_iter().collect(),
            owned_routes: journal.clone(),
            owned_blackholes: blackholes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(json: &str) -> NetworkConfig {
        let mut n = NetworkConfig::parse(json).expect("config");
        n.check().expect("valid config");
        n
    }

    fn ext(v6: bool) -> ExternalInterface {
        ExternalInterface {
            index: 2,
            name: "eth0".into(),
            mtu: 1500,
            iface_addr: Some("192.0.2.1".parse().expect("ip")),
            iface_v6_addr: v6.then(|| "2001:db8:1::1".parse().expect("ip")),
            ext_addr: Some("192.0.2.1".parse().expect("ip")),
            ext_v6_addr: v6.then(|| "2001:db8:1::1".parse().expect("ip")),
        }
    }

    const DUAL: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}"#;

    #[test]
    fn dual_stack_vxlan_advertises_both_devices() {
        let b = Backend::new(&network(DUAL), &ext(true)).expect("backend");
        assert_eq!(b.owned_devs(), ["flannel.1", "flannel-v6.1"]);
        assert_eq!(b.mtu(), 1430, "the IPv6 device's MTU is the smaller one");
        let v4 = b.backend_data().expect("data");
        let v6 = b.backend_v6_data().expect("v6 data");
        let mac4 =
            vxlan::derive_vtep_mac(1, "192.0.2.1".parse::<std::net::Ipv4Addr>().expect("ip"));
        let mac6 = vxlan::derive_vtep_mac(1, "2001:db8:1::1".parse::<Ipv6Addr>().expect("ip"));
        assert_eq!(v4.as_str(), format!(r#"{{"VNI":1,"VtepMAC":"{mac4}"}}"#));
        assert_eq!(v6.as_str(), format!(r#"{{"VNI":1,"VtepMAC":"{mac6}"}}"#));
        assert_eq!(
            b.public_ipv6(&ext(true)),
            Some("2001:db8:1::1".parse().expect("ip"))
        );
    }

    #[test]
    fn stored_vtep_macs_replace_the_derived_ones() {
        let stored = [0x12, 0xc6, 0x65, 0x89, 0xb4, 0xe3];
        let stored6 = [0x0a, 0x00, 0x00, 0x00, 0x00, 0x06];
        let b = Backend::new(&network(DUAL), &ext(true))
            .expect("backend")
            .with_stored_macs(Some(stored), Some(stored6));
        assert_eq!(
            b.backend_data().expect("data").as_str(),
            r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}"#
        );
        assert_eq!(
            b.backend_v6_data().expect("v6 data").as_str(),
            r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:06"}"#
        );
        // Only the v4 MAC stored: the v6 one stays derived.
        let b = Backend::new(&network(DUAL), &ext(true))
            .expect("backend")
            .with_stored_macs(Some(stored), None);
        let mac6 = vxlan::derive_vtep_mac(1, "2001:db8:1::1".parse::<Ipv6Addr>().expect("ip"));
        assert_eq!(
            b.backend_v6_data().expect("v6 data").as_str(),
            format!(r#"{{"VNI":1,"VtepMAC":"{mac6}"}}"#)
        );
        // Other backends ignore it.
        let hg = network(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#);
        let b = Backend::new(&hg, &ext(false))
            .expect("backend")
            .with_stored_macs(Some(stored), None);
        assert_eq!(b.backend_data(), None);
    }

    #[test]
    fn ipv4_only_networks_advertise_no_ipv6() {
        let v4 = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
        // Even when the interface has an IPv6 address (or --public-ipv6 was given).
        let b = Backend::new(&network(v4), &ext(true)).expect("backend");
        assert_eq!(b.owned_devs(), ["flannel.1"]);
        assert_eq!(b.mtu(), 1450);
        assert_eq!(b.backend_v6_data(), None);
        assert_eq!(b.public_ipv6(&ext(true)), None);
        let alloc = network(
            r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","Backend":{"Type":"alloc"}}"#,
        );
        let b = Backend::new(&alloc, &ext(true)).expect("backend");
        assert_eq!(
            b.public_ipv6(&ext(true)),
            None,
            "Flannel's alloc writes only PublicIP"
        );
    }

    #[test]
    fn host_gw_dual_stack_and_missing_ipv6_address() {
        let hostgw = DUAL.replace("vxlan", "host-gw");
        let b = Backend::new(&network(&hostgw), &ext(true)).expect("backend");
        assert_eq!(b.mtu(), 1500);
        assert_eq!(b.backend_v6_data(), None);
        assert!(b.public_ipv6(&ext(true)).is_some());
        let err = Backend::new(&network(&hostgw), &ext(false)).expect_err("no v6 address");
        assert_eq!(
            err.to_string(),
            "IPv6 is enabled but the external interface has no IPv6 address"
        );
    }

    #[test]
    fn udp_is_the_default_and_advertises_no_backend_type() {
        for json in [
            r#"{"Network":"198.18.0.0/16"}"#,
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}"#,
        ] {
            let b = Backend::new(&network(json), &ext(false)).expect("backend");
            assert_eq!(b.name(), "udp");
            assert_eq!(b.lease_type(), "");
            assert_eq!(b.backend_data(), None);
            assert_eq!(b.mtu(), 1472);
            assert_eq!(b.route_devs(), ["flannel0"]);
            assert!(b.owned_devs().is_empty());
            let Backend::Udp { port, .. } = &b else {
                panic!("not udp: {b:?}");
            };
            assert_eq!(*port, 8285);
            let own = SubnetKey {
                ipv4: "198.18.1.0/24".parse().expect("net"),
                ipv6: None,
            };
            let (state, skipped) = b.desired(&own, [], &|_| false);
            assert!(skipped.is_empty());
            assert_eq!(
                state.routes.into_iter().collect::<Vec<_>>(),
                [Route {
                    dst: "198.18.0.0/16".parse().expect("net"),
                    gateway: None,
                    dev: "flannel0".into(),
                    onlink: false,
                }]
            );
        }
    }

    #[test]
    fn udp_port_option_and_its_errors() {
        let with = |port: &str| {
            let json = format!(
                r#"{{"Network":"198.18.0.0/16","Backend":{{"Type":"udp","port":{port}}}}}"#
            );
            Backend::new(&network(&json), &ext(false))
        };
        let b = with("9000").expect("backend");
        assert!(matches!(b, Backend::Udp { port: 9000, .. }), "{b:?}");
        let b = with("null").expect("backend");
        assert!(matches!(b, Backend::Udp { port: 8285, .. }), "{b:?}");
        for bad in ["0", "70000", "-1", "\"x\""] {
            assert!(with(bad).is_err(), "Port {bad} must be refused");
        }
        let err =
            Backend::new(&network(&DUAL.replace("vxlan", "udp")), &ext(true)).expect_err("IPv6");
        assert_eq!(
            err.to_string(),
            "the udp backend is IPv4-only; disable EnableIPv6"
        );
    }
}
