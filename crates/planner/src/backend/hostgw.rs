//! `host-gw`: one route per peer via its public IP (see [`crate::hostgw`] for the routes).

use std::net::IpAddr;

use flannel_model::{Lease, SubnetKey};

use crate::backend::{Backend, BackendError, Inputs, LeaseData};
use crate::ext_iface::ExtIface;
use crate::hostgw::{check_not_nat, desired_state};
use crate::skipped::Skipped;
use crate::state::KernelState;

/// The host-gw backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGw {
    ext: ExtIface,
    /// `PublicIPv6` (with IPv6 enabled).
    public_ipv6: Option<std::net::Ipv6Addr>,
}

/// Build it: no options; refuses to run behind NAT (compared for IPv4 only, as Flannel does).
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    let ext = inputs.ext_iface_for_stack()?;
    if let Some(public) = inputs.public_ip() {
        check_not_nat(public, ext.addr).map_err(|_| BackendError::Nat)?;
    }
    let public_ipv6 = ext
        .addr_v6
        .map(|a| inputs.underlay.public_ipv6.unwrap_or(a));
    Ok(Box::new(HostGw { ext, public_ipv6 }))
}

impl Backend for HostGw {
    fn name(&self) -> &'static str {
        "host-gw"
    }

    fn lease_data(&self) -> LeaseData {
        LeaseData {
            backend_type: "host-gw",
            backend_data: None,
            backend_v6_data: None,
            public_ipv6: self.public_ipv6,
        }
    }

    fn pod_mtu(&self) -> u32 {
        self.ext.mtu
    }

    fn route_devs(&self) -> Vec<String> {
        vec![self.ext.name.clone()]
    }

    fn desired(
        &self,
        _own: &SubnetKey,
        peers: &mut dyn Iterator<Item = &Lease>,
        _on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        desired_state(&self.ext, peers)
    }
}
