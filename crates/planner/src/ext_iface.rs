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
    /// The interface's IPv4 address (vxlan `local`); `0.0.0.0` in an IPv6-only network
    /// (see [`ExtIface::v4`]), which only [`crate::backend::Inputs::ext_iface_for_stack`]
    /// hands out.
    pub addr: Ipv4Addr,
    /// The interface's IPv6 address when IPv6 is enabled (`local` of `flannel-v6.<VNI>`);
    /// `None` means IPv4 only, and the backends then plan nothing for IPv6.
    pub addr_v6: Option<Ipv6Addr>,
}

impl ExtIface {
    /// The IPv4 address, `None` in an IPv6-only network (where `addr` is `0.0.0.0`).
    pub fn v4(&self) -> Option<Ipv4Addr> {
        (!self.addr.is_unspecified()).then_some(self.addr)
    }
}
