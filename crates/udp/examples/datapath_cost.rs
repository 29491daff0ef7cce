//! The userspace work of the udp fast path per 64 KiB TCP super-packet, for
//! `valgrind --tool=callgrind` (instruction counts are repeatable on a loaded machine; see
//! docs/udp.md, "Where the time goes"):
//!
//! ```text
//! cargo build --release -p flannel-udp --example datapath_cost
//! valgrind --tool=callgrind target/release/examples/datapath_cost copy 200
//! valgrind --tool=callgrind target/release/examples/datapath_cost sg 200
//! ```
//!
//! `copy` is the copying path (tun-rs splits the super-packet into slots, the per-packet
//! decisions, and on the receiving side the copy into write buffers and tun-rs's GRO);
//! `sg` is the scatter-gather path ([`flannel_udp::segment`] headers and checksums, one
//! decision per super-packet, and [`flannel_udp::coalesce`] on the receiving side). Neither
//! makes a system call: what is counted is exactly what runs in userspace around them.

use std::net::{Ipv4Addr, SocketAddrV4};

use flannel_udp::coalesce::{Coalescer, HEADER_ROOM};
use flannel_udp::segment::{Tso, MAX_HEADER_LEN};
use flannel_udp::{inbound, outbound, Inbound, Outbound, PeerTable};
use tun_rs::{gso_split, VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_LEN};

const MSS: u16 = 1420;
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 8285);

/// A 64 KiB TCP/IPv4 super-packet from 198.18.0.5 to 198.18.1.7 as the TUN hands it over.
fn super_packet() -> (VirtioNetHdr, Vec<u8>) {
    let payload_len = 45 * usize::from(MSS) + 400;
    let total = 52 + payload_len;
    let mut p = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 5, 198, 18, 1, 7,
    ];
    p[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x10]);
    p.extend_from_slice(&[0x01, 0xf5, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend((0..payload_len).map(|i| u8::try_from(i % 251).unwrap_or(0)));
    let hdr = VirtioNetHdr {
        flags: 1,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 52,
        gso_size: MSS,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, p)
}

fn tables() -> (PeerTable, PeerTable) {
    let mut out = PeerTable::new();
    out.upsert(
        "198.18.1.0/24".parse().unwrap_or_else(|_| unreachable!()),
        PEER,
    );
    let mut inb = PeerTable::new();
    inb.upsert(
        "198.18.0.0/24".parse().unwrap_or_else(|_| unreachable!()),
        PEER,
    );
    (out, inb)
}

/// The copying path: split, decide each, (the send), then on the receiver copy each into a
/// write buffer, decide each, coalesce with tun-rs. Returns bytes "written" (to keep it live).
fn copy_path(hdr: VirtioNetHdr, pkt: &[u8], st: &mut CopyState) -> usize {
    let (out_table, in_table) = &st.tables;
    let mut input = pkt.to_vec();
    let mut bufs: Vec<&mut [u8]> = st.slots.chunks_mut(1472).collect();
    let n = gso_split(&mut input, hdr, &mut bufs, &mut st.sizes, 0, false).unwrap_or(0);
    // The receiving side, in the same buffers (as if the datagrams arrived as sent).
    let local = "198.18.1.0/24".parse().unwrap_or_else(|_| unreachable!());
    let mut used = 0;
    for i in 0..n {
        let seg = &mut st.slots[i * 1472..i * 1472 + st.sizes[i]];
        if let Outbound::SendTo { len, .. } = outbound(seg, out_table) {
            if let Inbound::Deliver { len } = inbound(&mut seg[..len], PEER, in_table, local) {
                let o = &mut st.out[used];
                o.clear();
                o.resize(VIRTIO_NET_HDR_LEN, 0);
                o.extend_from_slice(&seg[..len]);
                used += 1;
            }
        }
    }
    // Fresh GRO tables each time (tun-rs keeps its table types private; the few allocations
    // are noise next to the per-byte work).
    st.to_write.clear();
    let (mut tcp, mut udp) = (Default::default(), Default::default());
    let _ = tun_rs::handle_gro(
        &mut st.out[..used],
        VIRTIO_NET_HDR_LEN,
        &mut tcp,
        &mut udp,
        true,
        &mut st.to_write,
    );
    st.to_write.iter().map(|&i| st.out[i].len()).sum()
}

struct CopyState {
    tables: (PeerTable, PeerTable),
    slots: Vec<u8>,
    sizes: Vec<usize>,
    out: Vec<Vec<u8>>,
    to_write: Vec<usize>,
}

/// The scatter-gather path: decide once, build the headers (with checksums), then on the
/// receiver decide each datagram in place and plan the merged writes. Returns bytes "written".
fn sg_path(hdr: VirtioNetHdr, pkt: &[u8], st: &mut SgState) -> usize {
    let (out_table, in_table) = &st.tables;
    st.input.clear();
    st.input.extend_from_slice(pkt); // stands for the TUN read's buffer (the kernel's copy)
    let Outbound::SendTo { len, .. } = outbound(&mut st.input, out_table) else {
        return 0;
    };
    let Ok(plan) = Tso::plan(&st.input[..len], hdr.gso_size) else {
        return 0;
    };
    for i in 0..plan.segments {
        plan.write_header(
            &st.input,
            i,
            &mut st.heads[i * 128..i * 128 + MAX_HEADER_LEN],
        );
    }
    // The receiving side: the datagrams as the kernel would place them (its copy).
    st.rx.clear();
    for i in 0..plan.segments {
        st.rx
            .extend_from_slice(&st.heads[i * 128..i * 128 + plan.header_len]);
        st.rx.extend_from_slice(&st.input[plan.payload(i)]);
    }
    let local = "198.18.1.0/24".parse().unwrap_or_else(|_| unreachable!());
    let seg_len = plan.header_len + plan.mss;
    let mut spans = Vec::with_capacity(plan.segments);
    for (k, seg) in st.rx.chunks_mut(seg_len).enumerate() {
        if let Inbound::Deliver { len } = inbound(seg, PEER, in_table, local) {
            spans.push((k * seg_len, len));
        }
    }
    let views: Vec<&[u8]> = spans.iter().map(|&(a, l)| &st.rx[a..a + l]).collect();
    st.coalescer.coalesce(&views);
    let mut written = 0;
    for g in st.coalescer.groups() {
        let ids = st.coalescer.packets(g);
        let mut head = [0u8; HEADER_ROOM];
        if g.count > 1 {
            written += g.write_header(views[ids[0]], &mut head);
        }
        written += g.total_len();
    }
    written
}

struct SgState {
    tables: (PeerTable, PeerTable),
    input: Vec<u8>,
    heads: Vec<u8>,
    rx: Vec<u8>,
    coalescer: Coalescer,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "sg".to_owned());
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let (hdr, pkt) = super_packet();
    let mut total = 0usize;
    match mode.as_str() {
        "copy" => {
            let mut st = CopyState {
                tables: tables(),
                slots: vec![0u8; 128 * 1472],
                sizes: vec![0; 128],
                out: (0..128).map(|_| Vec::with_capacity(65_556)).collect(),
                to_write: Vec::new(),
            };
            for _ in 0..rounds {
                total += copy_path(hdr, &pkt, &mut st);
            }
        }
        _ => {
            let mut st = SgState {
                tables: tables(),
                input: Vec::with_capacity(65_600),
                heads: vec![0u8; 256 * 128],
                rx: Vec::with_capacity(70_000),
                coalescer: Coalescer::new(),
            };
            for _ in 0..rounds {
                total += sg_path(hdr, &pkt, &mut st);
            }
        }
    }
    println!(
        "{mode}: {rounds} super-packets of {} bytes, {total} bytes out",
        pkt.len()
    );
}
