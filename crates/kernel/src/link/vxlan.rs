//! The vxlan link kind: decoding an `RTM_NEWLINK` into a [`VxlanLink`], the `RTM_NEWLINK`
//! that creates one, and its `ip link add` text for messages. Which settings force a new
//! device is the planner's [`VxlanLink::compatible_with`].

use std::net::IpAddr;

use super::Attrs;
use flannel_planner::state::{MacAddr, VxlanLink};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkMessage};
use rtnetlink::LinkVxlan;

/// A vxlan link as [`VxlanLink`]; `None` when the link is not a vxlan device.
pub(crate) fn decode(name: &str, link: &LinkMessage) -> Option<VxlanLink> {
    let attrs = Attrs::of(link);
    if attrs.kind != Some(&InfoKind::Vxlan) {
        return None;
    }
    let data = match attrs.data {
        Some(InfoData::Vxlan(d)) => d.as_slice(),
        _ => &[],
    };
    let mac = attrs
        .address
        .and_then(|a| <[u8; 6]>::try_from(a).ok())
        .map_or(MacAddr([0; 6]), MacAddr);
    let unspecified = IpAddr::from([0, 0, 0, 0]);
    let mut v = VxlanLink {
        up: attrs.up,
        ..VxlanLink::new(name, 0, 0, unspecified, attrs.mtu, mac)
    };
    for d in data {
        match d {
            InfoVxlan::Id(id) => v.vni = *id,
            InfoVxlan::Link(i) => v.underlay_index = *i,
            InfoVxlan::Local(a) => v.local = IpAddr::V4(*a),
            InfoVxlan::Local6(a) => v.local = IpAddr::V6(*a),
            InfoVxlan::Port(p) => v.port = *p,
            InfoVxlan::Learning(b) => v.learning = *b,
            InfoVxlan::Gbp => v.gbp = true,
            InfoVxlan::L2Miss(b) => v.l2miss = *b,
            InfoVxlan::L3Miss(b) => v.l3miss = *b,
            _ => {}
        }
    }
    Some(v)
}

/// `RTM_NEWLINK` creating the vxlan device `l`.
pub(crate) fn create_msg(l: &VxlanLink) -> LinkMessage {
    let mut b = LinkVxlan::new(&l.name, l.vni).learning(l.learning);
    if l.underlay_index != 0 {
        b = b.dev(l.underlay_index);
    }
    match l.local {
        IpAddr::V4(a) if !a.is_unspecified() => b = b.local(a),
        IpAddr::V6(a) if !a.is_unspecified() => b = b.local6(a),
        _ => {}
    }
    if l.port != 0 {
        b = b.port(l.port);
    }
    if l.gbp {
        b = b.gbp();
    }
    if l.l2miss {
        b = b.l2miss(true);
    }
    if l.l3miss {
        b = b.l3miss(true);
    }
    if l.mtu != 0 {
        b = b.mtu(l.mtu);
    }
    b = b.address(l.mac.0.to_vec());
    if l.up {
        b = b.up();
    }
    b.build()
}

/// `ip link add … type vxlan …` (and `ip link set … up`), as an operator would type it.
pub(crate) fn add_command(l: &VxlanLink) -> String {
    let mut s = format!(
        "ip link add {} address {} mtu {} type vxlan id {}",
        l.name, l.mac, l.mtu, l.vni
    );
    if l.underlay_index != 0 {
        s.push_str(&format!(" dev #{}", l.underlay_index));
    }
    if !l.local.is_unspecified() {
        s.push_str(&format!(" local {}", l.local));
    }
    if l.port != 0 {
        s.push_str(&format!(" dstport {}", l.port));
    }
    s.push_str(if l.learning {
        " learning"
    } else {
        " nolearning"
    });
    for (on, word) in [
        (l.gbp, " gbp"),
        (l.l2miss, " l2miss"),
        (l.l3miss, " l3miss"),
    ] {
        if on {
            s.push_str(word);
        }
    }
    if l.up {
        s.push_str(" && ip link set ");
        s.push_str(&l.name);
        s.push_str(" up");
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo};
    use std::net::Ipv4Addr;

    /// The test device: flannel.1 over ifindex 2 from 192.0.2.1, MTU 1450.
    pub(crate) fn link() -> VxlanLink {
        let local = "192.0.2.1".parse().expect("ip");
        VxlanLink::new(
            "flannel.1",
            1,
            2,
            local,
            1450,
            MacAddr([0x0e, 0, 0, 0, 0, 1]),
        )
    }

    #[test]
    fn vxlan_create_has_flannels_attributes_and_no_port_when_default() {
        let msg = create_msg(&link());
        assert!(msg.header.flags.contains(LinkFlags::Up));
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(1450)));
        assert!(msg
            .attributes
            .contains(&LinkAttribute::Address(vec![0x0e, 0, 0, 0, 0, 1])));
        let data = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => i.iter().find_map(|i| match i {
                    LinkInfo::Data(InfoData::Vxlan(d)) => Some(d.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .expect("vxlan data");
        assert_eq!(
            data,
            vec![
                InfoVxlan::Id(1),
                InfoVxlan::Learning(false),
                InfoVxlan::Link(2),
                InfoVxlan::Local(Ipv4Addr::new(192, 0, 2, 1)),
            ]
        );
        let mut l = link();
        l.port = 4789;
        l.gbp = true;
        let msg = create_msg(&l);
        let text = format!("{msg:?}");
        assert!(
            text.contains("Port(4789)") && text.contains("Gbp"),
            "{text}"
        );
    }

    #[test]
    fn non_vxlan_links_are_not_vxlan() {
        let mut l = LinkMessage::default();
        l.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Veth,
            )]));
        assert_eq!(decode("flannel.1", &l), None);
        l.attributes = vec![
            LinkAttribute::Mtu(1450),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(1),
                    InfoVxlan::Port(8472),
                    InfoVxlan::Learning(false),
                    InfoVxlan::Gbp,
                ])),
            ]),
        ];
        let v = decode("flannel.1", &l).expect("vxlan");
        assert_eq!(
            (v.vni, v.port, v.mtu, v.gbp, v.learning),
            (1, 8472, 1450, true, false)
        );
    }
}
