//! The configured backend: the external interface's facts handed to the planner's backend
//! registry ([`flannel_planner::backend`]), which picks the backend the config's `Type` names.
//! The daemon only talks to the [`Backend`] trait, and gets the backend's runtime (if any) from
//! [`prepare_runtime`]; nothing else in flanneld knows one backend from another.

use std::collections::BTreeSet;

use anyhow::Result;
use flannel_kernel::iface::ExternalInterface;
use flannel_model::Lease;
use flannel_model::{MacAddr, NetworkConfig};
pub use flannel_planner::backend::{Backend, LeaseData, RuntimeSpec};
use flannel_planner::backend::{Inputs, Stored};
use flannel_planner::diff::Scope;
use flannel_planner::state::Route;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use crate::cli::WgImplementationFlag;
use crate::extension::{self, ExtensionRuntime};
use crate::ipsec::IpsecRuntime;
use crate::runtime::BackendRuntime;
use crate::udp::UdpRuntime;
use crate::wireguard::WireguardRuntime;

/// Pick and configure the backend for the network config. `vtep_mac`/`vtep_mac_v6` are the
/// MACs a previous flanneld stored on our node (Kubernetes mode), reused so peers' entries for
/// us stay valid across a restart (or a switch from Go flannel). The wireguard backend's key
/// and implementation are settled here, when the config names it (`wg_impl`: the flag).
pub fn configure(
    network: &NetworkConfig,
    ext: &ExternalInterface,
    vtep_mac: Option<[u8; 6]>,
    vtep_mac_v6: Option<[u8; 6]>,
    wg_impl: WgImplementationFlag,
) -> Result<Box<dyn Backend>> {
    let underlay = ext.underlay();
    let wireguard = if network.backend_type() == "wireguard" {
        Some(crate::wireguard::host(wg_impl)?)
    } else {
        None
    };
    let inputs = Inputs {
        network,
        underlay: &underlay,
        stored: Stored {
            vtep_mac: vtep_mac.map(MacAddr),
            vtep_mac_v6: vtep_mac_v6.map(MacAddr),
        },
        wireguard,
    };
    Ok(flannel_planner::backend::build(&inputs)?)
}

/// What we publish in our lease: the backend's lease data, completed by what its runtime
/// must produce before the lease exists (the extension backend's `PreStartupCommand` output
/// as `BackendData`, run until it succeeds). `None` when cancelled first.
pub async fn lease_data(backend: &dyn Backend, cancel: &CancellationToken) -> Option<LeaseData> {
    let mut data = backend.lease_data();
    if let Some(RuntimeSpec::Extension(spec)) = backend.runtime() {
        if let Some(out) = extension::pre_startup(&spec, cancel).await? {
            data.backend_data = Some(out);
        }
    }
    Some(data)
}

/// Open what `spec` needs before the datapath's first pass (the udp device exists before the
/// route through it is added). `None` when the backend needs no runtime of its own.
pub async fn prepare_runtime(
    spec: Option<RuntimeSpec>,
    lease: &Lease,
    udp_fast_path: bool,
) -> Result<Option<Box<dyn BackendRuntime>>> {
    Ok(match spec {
        Some(RuntimeSpec::UdpProxy { ext, port }) => Some(Box::new(
            UdpRuntime::open(&ext, port, lease, udp_fast_path).await?,
        )),
        Some(RuntimeSpec::Ipsec { options, public_ip }) => {
            Some(Box::new(IpsecRuntime::open(options, public_ip, lease)?))
        }
        Some(RuntimeSpec::Extension(spec)) => {
            Some(Box::new(ExtensionRuntime::prepare(spec, lease).await))
        }
        Some(RuntimeSpec::Wireguard(spec)) => {
            Some(Box::new(WireguardRuntime::open(spec, lease).await?))
        }
        // Run by the datapath loop (see the module docs).
        Some(RuntimeSpec::MissResponder { .. }) | None => None,
    })
}

/// The ownership scope for diffs, given the routes our journal says we installed and the
/// blackhole routes we manage.
pub fn scope(
    backend: &dyn Backend,
    journal: &BTreeSet<Route>,
    blackholes: BTreeSet<IpNet>,
) -> Scope {
    Scope {
        owned_devs: backend.owned_devs().into_iter().collect(),
        owned_routes: journal.clone(),
        owned_blackholes: blackholes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_planner::backend::udp;

    #[test]
    fn the_planners_udp_constants_are_the_datapaths() {
        assert_eq!(udp::TUN_NAME, flannel_udp::TUN_NAME);
        assert_eq!(udp::DEFAULT_PORT, flannel_udp::DEFAULT_PORT);
        assert_eq!(udp::ENCAP_OVERHEAD, flannel_udp::ENCAP_OVERHEAD);
        for mtu in [0, 95, 96, 1500, 65563, 65564, 70000] {
            assert_eq!(
                udp::tun_mtu(mtu).ok(),
                flannel_udp::device::tun_mtu(mtu).ok(),
                "MTU {mtu}"
            );
        }
    }

    #[test]
    fn stored_macs_reach_the_backend() {
        let mut network =
            NetworkConfig::parse(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#)
                .expect("config");
        network.check().expect("valid");
        let ext = ExternalInterface {
            index: 2,
            name: "eth0".into(),
            mtu: 1500,
            iface_addr: Some("192.0.2.1".parse().expect("ip")),
            iface_v6_addr: None,
            ext_addr: Some("192.0.2.1".parse().expect("ip")),
            ext_v6_addr: None,
        };
        let b = configure(
            &network,
            &ext,
            Some([0x12, 0xc6, 0x65, 0x89, 0xb4, 0xe3]),
            None,
            WgImplementationFlag::Auto,
        )
        .expect("backend");
        assert_eq!(
            b.lease_data().backend_data.expect("data").as_str(),
            r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}"#
        );
        assert_eq!(b.name(), "vxlan");
    }
}
