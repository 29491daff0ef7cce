//! The wireguard link kind: decoding an `RTM_NEWLINK` into a [`WireguardLink`], the
//! `RTM_NEWLINK` that creates one, and its `ip link add` text. The device's key, port and
//! peers are not link attributes: flanneld sets them over the wireguard generic-netlink
//! family (`crate::wireguard`).

use flannel_planner::link::WireguardLink;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::LinkWireguard;

/// A wireguard link as [`WireguardLink`]; `None` when the link is of another kind.
pub(crate) fn decode(name: &str, link: &LinkMessage) -> Option<WireguardLink> {
    let mut is_wg = false;
    let mut mtu = 0;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                is_wg |= infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Wireguard)));
            }
            _ => {}
        }
    }
    is_wg.then(|| WireguardLink {
        name: name.to_owned(),
        mtu,
        up: link.header.flags.contains(LinkFlags::Up),
    })
}

/// `RTM_NEWLINK` creating the wireguard device `l`.
pub(crate) fn create_msg(l: &WireguardLink) -> LinkMessage {
    let mut b = LinkWireguard::new(&l.name);
    if l.mtu != 0 {
        b = b.mtu(l.mtu);
    }
    if l.up {
        b = b.up();
    }
    b.build()
}

/// `ip link add … type wireguard`, as an operator would type it.
pub(crate) fn add_command(l: &WireguardLink) -> String {
    let mut s = format!("ip link add {} mtu {} type wireguard", l.name, l.mtu);
    if l.up {
        s.push_str(&format!(" && ip link set {} up", l.name));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn link() -> WireguardLink {
        WireguardLink {
            name: "flannel-wg".into(),
            mtu: 1440,
            up: true,
        }
    }

    #[test]
    fn create_message_decodes_back() {
        let msg = create_msg(&link());
        assert_eq!(decode("flannel-wg", &msg), Some(link()));
        assert_eq!(
            add_command(&link()),
            "ip link add flannel-wg mtu 1440 type wireguard && ip link set flannel-wg up"
        );
    }

    #[test]
    fn create_message_golden_bytes() {
        let msg = create_msg(&link());
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        // What `ip link add flannel-wg mtu 1440 up type wireguard` sends: ifinfomsg (family,
        // type, index 0; flags and change IFF_UP), IFLA_IFNAME "flannel-wg\0" + 1 pad byte,
        // IFLA_MTU 1440, IFLA_LINKINFO { IFLA_INFO_KIND "wireguard\0" + 2 pad bytes }.
        assert_eq!(
            hex,
            concat!(
                "00000000000000000100000001000000",
                "0f000300666c616e6e656c2d776700",
                "00",
                "08000400a0050000",
                "140012000e000100776972656775617264000000",
            )
        );
    }

    #[test]
    fn other_kinds_are_not_wireguard() {
        let vx = rtnetlink::LinkVxlan::new("flannel.1", 1).build();
        assert_eq!(decode("flannel.1", &vx), None);
    }
}
