//! Link kinds: one file per kind flanneld creates ([`vxlan`], [`ipip`]), each decoding the kernel's
//! `RTM_NEWLINK` into its planner type and encoding the message that creates it, as rtnetlink
//! keeps one builder per kind. This module dispatches on [`LinkSpec`] and holds what all kinds
//! share: the `RTM_SETLINK` that adjusts MTU, address and state, and the kind's name for
//! messages.

pub mod ipip;
pub mod vxlan;
pub mod wireguard;

use flannel_planner::state::LinkSpec;
use netlink_packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
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
    Attrs::of(link)
        .kind
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// What every kind's decoder reads from an `RTM_NEWLINK`: the generic attributes and the
/// kind with its kind-specific data.
#[derive(Debug, Default)]
pub(crate) struct Attrs<'a> {
    pub mtu: u32,
    pub address: Option<&'a [u8]>,
    pub up: bool,
    pub kind: Option<&'a InfoKind>,
    pub data: Option<&'a InfoData>,
}

impl<'a> Attrs<'a> {
    pub fn of(link: &'a LinkMessage) -> Self {
        let mut a = Attrs {
            up: link.header.flags.contains(LinkFlags::Up),
            ..Attrs::default()
        };
        for attr in &link.attributes {
            match attr {
                LinkAttribute::Mtu(m) => a.mtu = *m,
                LinkAttribute::Address(mac) => a.address = Some(mac),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => a.kind = Some(k),
                            LinkInfo::Data(d) => a.data = Some(d),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        a
    }
}
