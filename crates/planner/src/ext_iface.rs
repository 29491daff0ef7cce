//! [`ExtIface`]: the facts about the external interface (the one inter-host traffic uses) that
//! the backends plan with. The kernel crate finds the interface; this is the planner's copy of
//! what it needs from it.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Facts about the external interface the planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtIface {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    /// The interface's IPv4 address (vxlan `local`).
    pub addr: Ipv4Addr,
    /// The interface's IPv6 address when IPv6 is enabled (`local` of `flannel-v6.<VNI>`);
    /// `None` means IPv4 only, and the backends then plan nothing for IPv6.
    pub addr_v6: Option<Ipv6Addr>,
}
