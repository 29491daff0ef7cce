//! `udp`: a TUN device (`flannel0`) and a userspace proxy (`flannel-udp`) that carries the raw
//! inner packets in UDP datagrams. The kernel holds only the route of the whole network through
//! the device; the peers live in the proxy's table ([`RuntimeSpec::UdpProxy`]). IPv4 only.

use std::net::IpAddr;

use flannel_model::{gojson, Lease, SubnetKey};
use ipnet::{IpNet, Ipv4Net};
use serde_json::Value;

use crate::backend::{Backend, BackendError, Inputs, LeaseData, RuntimeSpec};
use crate::ext_iface::ExtIface;
use crate::skipped::Skipped;
use crate::state::{KernelState, Route};

/// The TUN device (Flannel's `flannel%d` with the first free number; always 0 here). Equal to
/// `flannel_udp::TUN_NAME` (checked by flanneld's tests).
pub const TUN_NAME: &str = "flannel0";

/// Flannel's default `Port`. Equal to `flannel_udp::DEFAULT_PORT`.
pub const DEFAULT_PORT: u16 = 8285;

/// Bytes the encapsulation adds: outer IPv4 header (20) + UDP header (8). Equal to
/// `flannel_udp::ENCAP_OVERHEAD`.
pub const ENCAP_OVERHEAD: u32 = 28;

/// The smallest MTU the TUN device may get (IPv4's minimum).
const MIN_TUN_MTU: u32 = 68;

/// The udp backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp {
    ext: ExtIface,
    /// `Backend.Port`: the UDP port every node's proxy listens on.
    port: u16,
    /// `Network`, routed to `flannel0`.
    network: Ipv4Net,
}

/// Reads the `Port` option (default 8285).
fn port(raw: &Value) -> Result<u16, BackendError> {
    let Some(obj) = raw.as_object() else {
        return Ok(DEFAULT_PORT);
    };
    match gojson::get(obj, "Port") {
        None | Some(Value::Null) => Ok(DEFAULT_PORT),
        Some(Value::Number(n)) => match n.as_u64().map(u16::try_from) {
            Some(Ok(p)) if p != 0 => Ok(p),
            _ => Err(BackendError::UdpPort(n.to_string())),
        },
        Some(other) => Err(BackendError::NotANumber {
            backend: "udp",
            field: "Port",
            got: other.to_string(),
        }),
    }
}

/// Build it: IPv4 only, needs `Network`, reads `Port`, and the external MTU must leave room
/// for the TUN device.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    let network = inputs.network;
    if network.enable_ipv6 {
        return Err(BackendError::UdpIpv6);
    }
    let net = network.network.ok_or(BackendError::UdpNoNetwork)?;
    let port = port(&network.backend.raw)?;
    let ext = inputs.ext_iface()?;
    tun_mtu(ext.mtu)?;
    Ok(Box::new(Udp {
        ext,
        port,
        network: net,
    }))
}

/// The TUN MTU for an external interface MTU (`ext_mtu - 28`, at least 68).
pub fn tun_mtu(ext_mtu: u32) -> Result<u16, BackendError> {
    ext_mtu
        .checked_sub(ENCAP_OVERHEAD)
        .filter(|m| *m >= MIN_TUN_MTU)
        .and_then(|m| u16::try_from(m).ok())
        .ok_or(BackendError::UdpMtu {
            ext_mtu,
            tun: TUN_NAME,
            overhead: ENCAP_OVERHEAD,
        })
}

impl Backend for Udp {
    fn name(&self) -> &'static str {
        "udp"
    }

    /// Flannel's udp writes no `BackendType` and no data.
    fn lease_data(&self) -> LeaseData {
        LeaseData::default()
    }

    fn pod_mtu(&self) -> u32 {
        self.ext.mtu.saturating_sub(ENCAP_OVERHEAD)
    }

    fn route_devs(&self) -> Vec<String> {
        vec![TUN_NAME.to_owned()]
    }

    fn desired(
        &self,
        _own: &SubnetKey,
        _peers: &mut dyn Iterator<Item = &Lease>,
        _on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        // Peers live in the proxy's table, not in the kernel.
        let mut state = KernelState::default();
        state.routes.insert(Route {
            dst: IpNet::V4(self.network),
            gateway: None,
            dev: TUN_NAME.to_owned(),
            onlink: false,
        });
        (state, Vec::new())
    }

    fn runtime(&self) -> Option<RuntimeSpec> {
        Some(RuntimeSpec::UdpProxy {
            ext: self.ext.clone(),
            port: self.port,
        })
    }
}
