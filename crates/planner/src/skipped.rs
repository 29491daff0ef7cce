//! [`Skipped`]: a peer lease a backend cannot program, and why (logged once per lease by the
//! daemon).

use flannel_model::SubnetKey;

/// A peer lease the backend cannot program, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub subnet: SubnetKey,
    pub reason: String,
}
