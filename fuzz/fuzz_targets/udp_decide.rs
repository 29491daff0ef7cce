//! The udp backend's per-packet decisions (`flannel_udp::{outbound, inbound}`) on any bytes.
//!
//! Input layout: byte 0 picks the sender (low 2 bits: host 192.0.2.x) and whether its port is
//! right (bit 2); the rest is the packet. Checks: no panic, lengths in bounds, ICMP replies
//! carry a valid IP checksum, a delivered packet's source belongs to the sending peer and its
//! destination to our own subnet.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use flannel_udp::packet::ipv4_checksum_ok;
use flannel_udp::{inbound, outbound, Inbound, Outbound, PeerTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let mut table = PeerTable::new();
    for i in 1u8..=3 {
        let net = format!("198.18.{i}.0/24").parse().expect("valid subnet");
        table.upsert(net, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, i), 8285));
    }

    let mut out = pkt.to_vec();
    match outbound(&mut out, &table) {
        Outbound::SendTo { len, .. } => assert!(len <= out.len()),
        Outbound::Reply(icmp) => {
            assert!(ipv4_checksum_ok(icmp.as_bytes()));
            assert_eq!(out, pkt);
        }
        Outbound::Drop(_) => assert_eq!(out, pkt),
    }

    let port = if sel & 4 == 0 { 8285 } else { 8286 };
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, sel & 3), port);
    let mut inb = pkt.to_vec();
    let local = "198.18.0.0/24".parse().expect("valid subnet");
    match inbound(&mut inb, from, &table, local) {
        Inbound::Deliver { len } => {
            assert!(len <= inb.len());
            let src = Ipv4Addr::new(inb[12], inb[13], inb[14], inb[15]);
            assert_eq!(table.lookup(src).map(|p| p.endpoint), Some(from));
            let dst = Ipv4Addr::new(inb[16], inb[17], inb[18], inb[19]);
            assert!(local.contains(&dst));
        }
        Inbound::Drop(_) => assert_eq!(inb, pkt),
    }
});
