//! Link kinds: one file per kind flanneld creates ([`vxlan`], [`ipip`]), each decoding the kernel's
//! `RTM_NEWLINK` into its planner type and encoding the message that creates it, as rtnetlink
//! keeps one builder per kind. This module dispatches on [`LinkSpec`] and holds what all kinds
//! share: the `RTM_SETLINK` that adjusts MTU, address and state, and the kind's name for
//! messages.

pub mod ipip;
pub mod vxlan;
pub mod wireguard;

use flannel_planner::state::LinkSpec;
use netlink_packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::LinkUnspec;

/// The link kinds flanneld manages, for messages.
pub const KINDS: &str = "vxlan, ipip or wireguard";

/// The device `name` as one of the kinds flanneld manages; `None` for any other kind (the
/// diff then asks for it to be created, and the applier replaces the device in the way).
pub(crate) fn decode(name: &str, link: &LinkMessage) -> Option<LinkSpec> {
    vxlan::decode(name, link)
        .map(LinkSpec::Vxlan)
        .or_else(|| ipip::decode(name, link).map(LinkSpec::Ipip))
        .or_else(|| wireguard::decode(name, link).map(LinkSpec::Wireguard))
}

/// `RTM_NEWLINK` creating `l`.
pub(crate) fn create_msg(l: &LinkSpec) -> LinkMessage {
    match l {
        LinkSpec::Vxlan(v) => vxlan::create_msg(v),
        LinkSpec::Ipip(v) => ipip::create_msg(v),
        LinkSpec::Wireguard(w) => wireguard::create_msg(w),
    }
}

/// `ip link add …` for `l`.
pub(crate) fn add_command(l: &LinkSpec) -> String {
    match l {
        LinkSpec::Vxlan(v) => vxlan::add_command(v),
        LinkSpec::Ipip(v) => ipip::add_command(v),
        LinkSpec::Wireguard(w) => wireguard::add_command(w),
    }
}

/// Whether a device of this kind may lack IPv6 sysctls without that being worth a warning
/// (a vxlan device over an IPv4 underlay on a kernel without IPv6).
pub(crate) fn ipv6_optional(l: &LinkSpec) -> bool {
    match l {
        LinkSpec::Vxlan(v) => v.local.is_ipv4(),
        LinkSpec::Ipip(_) => true,
        // Its IPv6 sysctls exist whenever the kernel has IPv6; none are needed for IPv4.
        LinkSpec::Wireguard(_) => true,
    }
}

/// `RTM_SETLINK` bringing an existing device's MTU, address and state to `l`'s.
pub(crate) fn update_msg(index: u32, l: &LinkSpec) -> LinkMessage {
    let mut b = LinkUnspec::new_with_index(index).mtu(l.mtu());
    if let Some(mac) = l.mac() {
        b = b.address(mac.0.to_vec());
    }
    if l.up() {
        b.up().build()
    } else {
        b.down().build()
    }
}

/// The link's kind (`vxlan`, `veth`, …) for messages; empty when it has none.
pub(crate) fn link_kind(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}
