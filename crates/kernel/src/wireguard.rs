//! The kernel's WireGuard devices over the `wireguard` generic-netlink family (what `wg show`
//! and `wg set` use): reading a device's key, port and peers into the planner's
//! [`DeviceConfig`], and carrying out [`DeviceOp`]s. Messages are built with
//! `netlink-packet-wireguard` (rust-netlink, like rtnetlink) and sent on a plain blocking
//! netlink socket: the calls are few and small, and the caller runs them off the async
//! threads.
//!
//! Encoding ([`set_messages`]) and decoding ([`decode_device`]) are pure and tested on bytes.

use std::collections::BTreeSet;
use std::io;

use flannel_model::WgKey;
use flannel_planner::wireguard::{DeviceConfig, DeviceOp, WgPeer};
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardDeviceFlags, WireguardMessage, WireguardPeer, WireguardPeerAttribute,
    WireguardPeerFlags,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// Peers per `WG_CMD_SET_DEVICE` message (the kernel takes any number, but a message must fit
/// the socket buffer; `wg` splits the same way).
const PEERS_PER_MESSAGE: usize = 16;

/// A WireGuard netlink call that failed.
#[derive(Debug, thiserror::Error)]
pub enum WgNetlinkError {
    /// The socket could not be opened or used.
    #[error("wireguard netlink socket: {0}")]
    Socket(io::Error),
    /// The kernel answered with an error.
    #[error("wireguard netlink {what}: {source}")]
    Kernel {
        /// What was asked.
        what: &'static str,
        /// errno as io::Error.
        source: io::Error,
    },
    /// A reply that does not decode.
    #[error("wireguard netlink {what}: undecodable reply: {reason}")]
    Decode {
        /// What was asked.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

impl WgNetlinkError {
    /// The kernel's errno, if it answered with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            WgNetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A connection to the kernel's wireguard family.
#[derive(Debug)]
pub struct WgNetlink {
    sock: Socket,
    family: u16,
    seq: u32,
}

impl WgNetlink {
    /// Connect and resolve the family; `Ok(None)` when the kernel has no wireguard (no module,
    /// and none could be loaded). Asking for the family makes the kernel load the module.
    pub fn open() -> Result<Option<WgNetlink>, WgNetlinkError> {
        let mut sock = Socket::new(NETLINK_GENERIC).map_err(WgNetlinkError::Socket)?;
        sock.bind_auto().map_err(WgNetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(WgNetlinkError::Socket)?;
        let mut nl = WgNetlink {
            sock,
            family: 0,
            seq: 0,
        };
        let mut msg = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("wireguard".into())],
        }));
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let replies = match nl.call::<GenlCtrl>("family lookup", msg) {
            Ok(r) => r,
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let family = replies
            .iter()
            .flat_map(|m| m.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(WgNetlinkError::Decode {
                what: "family lookup",
                reason: "no family id".into(),
            })?;
        nl.family = family;
        Ok(Some(nl))
    }

    /// The device's configuration; `Ok(None)` when there is no such wireguard device.
    pub fn get_device(&mut self, name: &str) -> Result<Option<DeviceConfig>, WgNetlinkError> {
        let mut genl = GenlMessage::from_payload(WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::IfName(name.to_owned())],
        });
        genl.set_resolved_family_id(self.family);
        let mut msg = NetlinkMessage::from(genl);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP;
        match self.call::<WireguardMessage>("get device", msg) {
            Ok(replies) => Ok(Some(decode_device(
                name,
                replies.iter().map(|m| &m.payload),
            ))),
            Err(e) if matches!(e.errno(), Some(libc::ENODEV) | Some(libc::EOPNOTSUPP)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Carry out `ops` on device `name`; `private_key` is what a `SetDevice` installs.
    pub fn apply(
        &mut self,
        name: &str,
        private_key: &[u8; 32],
        ops: &[DeviceOp],
    ) -> Result<(), WgNetlinkError> {
        for payload in set_messages(name, private_key, ops) {
            let mut genl = GenlMessage::from_payload(payload);
            genl.set_resolved_family_id(self.family);
            let mut msg = NetlinkMessage::from(genl);
            msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
            self.call::<WireguardMessage>("set device", msg)?;
        }
        Ok(())
    }

    /// Send one request and collect the replies until the ack or the end of the dump.
    fn call<F>(
        &mut self,
        what: &'static str,
        mut msg: NetlinkMessage<GenlMessage<F>>,
    ) -> Result<Vec<GenlMessage<F>>, WgNetlinkError>
    where
        F: netlink_packet_generic::GenlFamily
            + netlink_packet_core::Emitable
            + netlink_packet_core::ParseableParametrized<[u8], netlink_packet_generic::GenlHeader>
            + std::fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(WgNetlinkError::Socket)?;
        let dump = msg.header.flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut rx = vec![0u8; 1 << 16];
        loop {
            let n = self
                .sock
                .recv(&mut &mut rx[..], 0)
                .map_err(WgNetlinkError::Socket)?;
            let mut off = 0;
            while off + 4 <= n {
                let len = u32::from_ne_bytes([rx[off], rx[off + 1], rx[off + 2], rx[off + 3]]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len < 16 || off + len > n {
                    return Err(WgNetlinkError::Decode {
                        what,
                        reason: format!("bad message length {len}"),
                    });
                }
                let reply = NetlinkMessage::<GenlMessage<F>>::deserialize(&rx[off..off + len])
                    .map_err(|e| WgNetlinkError::Decode {
                        what,
                        reason: e.to_string(),
                    })?;
                off += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        if e.code.is_some() {
                            return Err(WgNetlinkError::Kernel {
                                what,
                                source: e.to_io(),
                            });
                        }
                        // The ack ends a request (a dump ends with Done).
                        if !dump {
                            return Ok(out);
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
            }
        }
    }
}

/// `WG_CMD_SET_DEVICE` payloads for `ops`: the key and port first, then peers in chunks.
pub fn set_messages(name: &str, private_key: &[u8; 32], ops: &[DeviceOp]) -> Vec<WireguardMessage> {
    let head = |extra: Vec<WireguardAttribute>| {
        let mut attributes = vec![WireguardAttribute::IfName(name.to_owned())];
        attributes.extend(extra);
        WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes,
        }
    };
    let mut out = Vec::new();
    let mut peers = Vec::new();
    for op in ops {
        match op {
            DeviceOp::SetDevice { listen_port } => out.push(head(vec![
                WireguardAttribute::PrivateKey(*private_key),
                WireguardAttribute::ListenPort(*listen_port),
                WireguardAttribute::Flags(WireguardDeviceFlags::empty()),
            ])),
            DeviceOp::RemovePeer(key) => peers.push(WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(key.0),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
            ])),
            DeviceOp::SetPeer(p) => peers.push(peer_attrs(p)),
        }
    }
    for chunk in peers.chunks(PEERS_PER_MESSAGE) {
        out.push(head(vec![WireguardAttribute::Peers(chunk.to_vec())]));
    }
    out
}

/// A peer as `wg set … peer K endpoint E allowed-ips A persistent-keepalive N
/// preshared-key P` sets it, replacing its allowed IPs.
fn peer_attrs(p: &WgPeer) -> WireguardPeer {
    let mut attrs = vec![
        WireguardPeerAttribute::PublicKey(p.public_key.0),
        WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
        WireguardPeerAttribute::PresharedKey(p.psk.map(|k| k.0).unwrap_or([0; 32])),
        WireguardPeerAttribute::PersistentKeepalive(p.keepalive),
    ];
    if let Some(e) = p.endpoint {
        attrs.push(WireguardPeerAttribute::Endpoint(e));
    }
    attrs.push(WireguardPeerAttribute::AllowedIps(
        p.allowed_ips
            .iter()
            .map(|net| {
                WireguardAllowedIp(vec![
                    WireguardAllowedIpAttr::Family(match net {
                        IpNet::V4(_) => WireguardAddressFamily::Ipv4,
                        IpNet::V6(_) => WireguardAddressFamily::Ipv6,
                    }),
                    WireguardAllowedIpAttr::IpAddr(net.addr()),
                    WireguardAllowedIpAttr::Cidr(net.prefix_len()),
                ])
            })
            .collect(),
    ));
    WireguardPeer(attrs)
}

/// A device's configuration from the `WG_CMD_GET_DEVICE` dump (a large device comes in
/// several messages; a peer split across them repeats its key).
pub fn decode_device<'a>(
    name: &str,
    msgs: impl IntoIterator<Item = &'a WireguardMessage>,
) -> DeviceConfig {
    let mut cfg = DeviceConfig {
        name: name.to_owned(),
        public_key: None,
        listen_port: 0,
        peers: Default::default(),
    };
    for m in msgs {
        for a in &m.attributes {
            match a {
                WireguardAttribute::PublicKey(k) if *k != [0; 32] => {
                    cfg.public_key = Some(WgKey(*k));
                }
                WireguardAttribute::ListenPort(p) => cfg.listen_port = *p,
                WireguardAttribute::Peers(peers) => {
                    for p in peers {
                        let Some(peer) = decode_peer(p) else { continue };
                        cfg.peers
                            .entry(peer.public_key)
                            .and_modify(|have| have.allowed_ips.extend(peer.allowed_ips.clone()))
                            .or_insert(peer);
                    }
                }
                _ => {}
            }
        }
    }
    cfg
}

fn decode_peer(p: &WireguardPeer) -> Option<WgPeer> {
    let mut key = None;
    let mut peer = WgPeer {
        public_key: WgKey([0; 32]),
        endpoint: None,
        allowed_ips: BTreeSet::new(),
        keepalive: 0,
        psk: None,
    };
    for a in &p.0 {
        match a {
            WireguardPeerAttribute::PublicKey(k) => key = Some(WgKey(*k)),
            WireguardPeerAttribute::PresharedKey(k) if *k != [0; 32] => peer.psk = Some(WgKey(*k)),
            WireguardPeerAttribute::Endpoint(e) => peer.endpoint = Some(*e),
            WireguardPeerAttribute::PersistentKeepalive(k) => peer.keepalive = *k,
            WireguardPeerAttribute::AllowedIps(ips) => {
                for ip in ips {
                    let mut addr = None;
                    let mut cidr = None;
                    for attr in &ip.0 {
                        match attr {
                            WireguardAllowedIpAttr::IpAddr(a) => addr = Some(*a),
                            WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
                            _ => {}
                        }
                    }
                    if let (Some(a), Some(c)) = (addr, cidr) {
                        if let Ok(net) = IpNet::new(a, c) {
                            peer.allowed_ips.insert(net);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    peer.public_key = key?;
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, ParseableParametrized};
    use netlink_packet_generic::GenlHeader;

    fn peer() -> WgPeer {
        WgPeer {
            public_key: WgKey([2; 32]),
            endpoint: Some("192.0.2.2:51820".parse().expect("addr")),
            allowed_ips: ["198.18.2.0/24".parse().expect("net")]
                .into_iter()
                .collect(),
            keepalive: 25,
            psk: None,
        }
    }

    fn bytes(m: &WireguardMessage) -> Vec<u8> {
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        buf
    }

    #[test]
    fn set_peer_golden_bytes() {
        let msgs = set_messages("flannel-wg", &[1; 32], &[DeviceOp::SetPeer(peer())]);
        assert_eq!(msgs.len(), 1);
        let hex: String = bytes(&msgs[0]).iter().map(|b| format!("{b:02x}")).collect();
        // WGDEVICE_A_IFNAME "flannel-wg"; WGDEVICE_A_PEERS (nested, 148) { peer (nested) {
        // PUBLIC_KEY, FLAGS REPLACE_ALLOWEDIPS, PRESHARED_KEY zeros, KEEPALIVE 25,
        // ENDPOINT sockaddr_in 192.0.2.2:51820, ALLOWEDIPS { { FAMILY 2, IPADDR, CIDR 24 } } } }
        let want = concat!(
            "0f000200666c616e6e656c2d776700",
            "00",
            "94000880",
            "90000080",
            "24000100",
            "0202020202020202020202020202020202020202020202020202020202020202",
            "08000300",
            "02000000",
            "24000200",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "06000500",
            "1900",
            "0000",
            "14000400",
            "0200ca6cc0000202",
            "0000000000000000",
            "20000980",
            "1c000080",
            "06000100",
            "0200",
            "0000",
            "08000200",
            "c6120200",
            "05000300",
            "18",
            "000000",
        );
        assert_eq!(hex, want);
    }

    #[test]
    fn set_device_comes_first_and_peers_are_chunked() {
        let mut ops = vec![DeviceOp::SetDevice { listen_port: 51820 }];
        for k in 0..20u8 {
            ops.push(DeviceOp::RemovePeer(WgKey([k; 32])));
        }
        let msgs = set_messages("flannel-wg", &[1; 32], &ops);
        assert_eq!(msgs.len(), 3);
        assert!(msgs[0]
            .attributes
            .contains(&WireguardAttribute::PrivateKey([1; 32])));
        assert!(msgs[0]
            .attributes
            .contains(&WireguardAttribute::ListenPort(51820)));
        let peers = |m: &WireguardMessage| {
            m.attributes
                .iter()
                .find_map(|a| match a {
                    WireguardAttribute::Peers(p) => Some(p.len()),
                    _ => None,
                })
                .unwrap_or(0)
        };
        assert_eq!((peers(&msgs[1]), peers(&msgs[2])), (16, 4));
    }

    #[test]
    fn a_dump_decodes_into_the_device_config_it_was_set_to() {
        // Emit what set_messages would send, parse it back as the kernel's dump would carry
        // it (same attributes), and split one peer across two messages.
        let msgs = set_messages("flannel-wg", &[1; 32], &[DeviceOp::SetPeer(peer())]);
        let header = GenlHeader { cmd: 1, version: 1 };
        let parsed = WireguardMessage::parse_with_param(&bytes(&msgs[0]), header).expect("parses");
        let mut second = peer();
        second.allowed_ips = ["2001:db8:f000:2::/64".parse().expect("net")]
            .into_iter()
            .collect();
        let more = set_messages("flannel-wg", &[1; 32], &[DeviceOp::SetPeer(second)]);
        let dev = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![
                WireguardAttribute::PublicKey([7; 32]),
                WireguardAttribute::ListenPort(51820),
            ],
        };
        let cfg = decode_device("flannel-wg", [&dev, &parsed, &more[0]]);
        assert_eq!(cfg.public_key, Some(WgKey([7; 32])));
        assert_eq!(cfg.listen_port, 51820);
        let p = &cfg.peers[&WgKey([2; 32])];
        assert_eq!(p.endpoint, peer().endpoint);
        assert_eq!((p.keepalive, p.psk), (25, None));
        assert_eq!(p.allowed_ips.len(), 2);
    }
}
