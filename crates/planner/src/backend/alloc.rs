//! `alloc`: a lease and nothing else (no data path). Pods get the external MTU.

use crate::backend::{Backend, BackendError, Inputs, LeaseData};

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
}
