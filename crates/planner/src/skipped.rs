//! [`Skipped`]: a peer lease a backend cannot program, and why (logged once per lease by the
//! daemon).

use flannel_model::{Lease, SubnetKey};

/// A peer lease the backend cannot program, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub subnet: SubnetKey,
    pub reason: String,
}

impl Skipped {
    /// `Err` with the reason when `lease` is not of `backend` (its `BackendType`): a backend
    /// programs only peers of its own type.
    pub fn unless_backend(lease: &Lease, backend: &str) -> Result<(), Skipped> {
        if lease.attrs.backend_type == backend {
            return Ok(());
        }
        Err(Skipped {
            subnet: lease.subnet,
            reason: format!(
                "backend type {:?} is not {backend}",
                lease.attrs.backend_type
            ),
        })
    }
}
