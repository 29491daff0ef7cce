//! `alloc`: a lease and nothing else (no data path). Pods get the external MTU.

use std::net::IpAddr;

use flannel_model::{Lease, SubnetKey};

use crate::backend::{Backend, BackendError, Inputs, LeaseData};
use crate::skipped::Skipped;
use crate::state::KernelState;

/// The alloc backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alloc {
    mtu: u32,
}

/// Build it: no options, no address needed.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    Ok(Box::new(Alloc {
        mtu: inputs.underlay.mtu,
    }))
}

impl Backend for Alloc {
    fn name(&self) -> &'static str {
        "alloc"
    }

    /// Flannel's alloc writes only `PublicIP`.
    fn lease_data(&self) -> LeaseData {
        LeaseData::default()
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn has_datapath(&self) -> bool {
        false
    }

    fn desired(
        &self,
        _own: &SubnetKey,
        _peers: &mut dyn Iterator<Item = &Lease>,
        _on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        (KernelState::default(), Vec::new())
    }
}
