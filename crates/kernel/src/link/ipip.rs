//! The ipip link kind: decoding an `RTM_NEWLINK` into an [`IpipLink`], the `RTM_NEWLINK`
//! that creates one, and its `ip link add` text for messages. Which settings force a new
//! device is the planner's [`IpipLink::compatible_with`].
//!
//! The device is created as Go's netlink library creates Flannel's `flannel.ipip`: `local`,
//! `pmtudisc` off, `ttl` and `tos` 0 (inherit), no `remote` (any) and no underlay device.

use std::net::{IpAddr, Ipv4Addr};

use flannel_planner::state::IpipLink;
use netlink_packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::LinkIpIp;

/// An ipip link as [`IpipLink`]; `None` when the link is not an ipip device.
pub(crate) fn decode(name: &str, link: &LinkMessage) -> Option<IpipLink> {
    let mut is_ipip = false;
    let mut data: &[InfoIpTunnel] = &[];
    let mut l = IpipLink {
        name: name.to_owned(),
        local: Ipv4Addr::UNSPECIFIED,
        remote: Ipv4Addr::UNSPECIFIED,
        mtu: 0,
        up: link.header.flags.contains(LinkFlags::Up),
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::IpIp) => is_ipip = true,
                        LinkInfo::Data(InfoData::IpTunnel(d)) => data = d,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !is_ipip {
        return None;
    }
    for d in data {
        match d {
            InfoIpTunnel::Local(IpAddr::V4(a)) => l.local = *a,
            InfoIpTunnel::Remote(IpAddr::V4(a)) => l.remote = *a,
            _ => {}
        }
    }
    Some(l)
}

/// `RTM_NEWLINK` creating the ipip device `l`.
pub(crate) fn create_msg(l: &IpipLink) -> LinkMessage {
    let mut b = LinkIpIp::new(&l.name);
    if !l.local.is_unspecified() {
        b = b.local(l.local);
    }
    if !l.remote.is_unspecified() {
        b = b.remote(l.remote);
    }
    b = b.pmtudisc(false).ttl(0).tos(0);
    if l.mtu != 0 {
        b = b.mtu(l.mtu);
    }
    if l.up {
        b = b.up();
    }
    b.build()
}

/// `ip link add … type ipip …` (and `ip link set … up`), as an operator would type it.
pub(crate) fn add_command(l: &IpipLink) -> String {
    let mut s = format!("ip link add {} mtu {} type ipip", l.name, l.mtu);
    if !l.remote.is_unspecified() {
        s.push_str(&format!(" remote {}", l.remote));
    }
    if !l.local.is_unspecified() {
        s.push_str(&format!(" local {}", l.local));
    }
    s.push_str(" ttl inherit nopmtudisc");
    if l.up {
        s.push_str(" && ip link set ");
        s.push_str(&l.name);
        s.push_str(" up");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn link() -> IpipLink {
        IpipLink {
            name: "flannel.ipip".into(),
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: Ipv4Addr::UNSPECIFIED,
            mtu: 1480,
            up: true,
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The exact message: ifinfomsg (up), name, MTU, and kind ipip with local 192.0.2.1,
    /// pmtudisc 0, ttl 0, tos 0.
    #[test]
    fn ipip_create_message_golden_bytes() {
        let msg = create_msg(&link());
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let golden = concat!(
            // ifinfomsg: family 0, pad, type 0, index 0, flags IFF_UP, change IFF_UP
            "00000000",
            "00000000",
            "01000000",
            "01000000",
            // IFLA_IFNAME "flannel.ipip\0" (length 17, padded to 20)
            "11000300",
            "666c616e6e656c2e69706970",
            "00000000",
            // IFLA_MTU 1480
            "08000400",
            "c8050000",
            // IFLA_LINKINFO (52 bytes): IFLA_INFO_KIND "ipip\0"
            "34001200",
            "09000100",
            "69706970",
            "00000000",
            // IFLA_INFO_DATA (36 bytes): IFLA_IPTUN_LOCAL 192.0.2.1, IFLA_IPTUN_PMTUDISC 0,
            // IFLA_IPTUN_TTL 0, IFLA_IPTUN_TOS 0
            "24000200",
            "08000200",
            "c0000201",
            "05000a00",
            "00000000",
            "05000400",
            "00000000",
            "05000500",
            "00000000",
        );
        assert_eq!(hex(&buf), golden);
        assert_eq!(decode("flannel.ipip", &msg), Some(link()));
    }

    #[test]
    fn non_ipip_links_are_not_ipip_and_remotes_are_read() {
        let mut l = LinkMessage::default();
        l.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Dummy,
            )]));
        assert_eq!(decode("flannel.ipip", &l), None);
        l.attributes = vec![
            LinkAttribute::Mtu(1480),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::IpIp),
                LinkInfo::Data(InfoData::IpTunnel(vec![
                    InfoIpTunnel::Local(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                    InfoIpTunnel::Remote(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
                    InfoIpTunnel::Ttl(64),
                ])),
            ]),
        ];
        let d = decode("flannel.ipip", &l).expect("ipip");
        assert_eq!(
            (d.local, d.remote, d.mtu, d.up),
            (
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(192, 0, 2, 7),
                1480,
                false
            )
        );
        assert_eq!(
            add_command(&link()),
            "ip link add flannel.ipip mtu 1480 type ipip local 192.0.2.1 ttl inherit \
             nopmtudisc && ip link set flannel.ipip up"
        );
    }

    #[test]
    fn a_device_of_another_kind_is_refused_with_flannels_message() {
        let e = crate::error::KernelError::Foreign {
            dev: "flannel.ipip".into(),
            kind: "ipip",
            found: "dummy".into(),
        };
        assert_eq!(
            e.to_string(),
            flannel_planner::backend::ipip::FOREIGN_DEVICE_ERROR
        );
        assert_eq!(e.errno(), None);
    }
}
