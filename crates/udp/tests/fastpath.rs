//! The fast path against the real kernel, in a private network namespace: the kernel's TCP
//! stack sends through an offloaded `fp0` TUN device (TSO: super-packets that tun-rs splits),
//! and a fake peer — a plain UDP socket that answers the handshake — checks every datagram
//! that reaches the wire: one IPv4 packet of at most the TUN MTU, with a correct IPv4 header
//! checksum and a correct TCP checksum (a Go Flannel peer's kernel gets them as they are, so
//! no `CHECKSUM_PARTIAL` leftovers may remain).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use flannel_testkit::netns::{enter_private_netns, sh};
use flannel_testkit::privileged::require_root;
use flannel_udp::packet::{internet_checksum, ipv4_checksum_ok};
use flannel_udp::{FastPath, PeerTable, Stats};
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const MTU: u16 = 1400;
const FP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 18285);
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 18286);
const LOCAL_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 5);

/// TCP checksum of `seg` (the whole TCP segment) is right for `src` → `dst`.
fn tcp_checksum_ok(src: [u8; 4], dst: [u8; 4], seg: &[u8]) -> bool {
    let mut v = Vec::with_capacity(12 + seg.len());
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.push(0);
    v.push(6);
    v.extend_from_slice(&u16::try_from(seg.len()).expect("short").to_be_bytes());
    v.extend_from_slice(seg);
    internet_checksum(&v) == 0
}

/// The SYN-ACK answering `syn` (an IPv4/TCP SYN from our side), with an MSS option.
fn syn_ack(syn: &[u8]) -> Vec<u8> {
    let ihl = usize::from(syn[0] & 0x0f) * 4;
    let tcp = &syn[ihl..];
    let client_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let mut p = vec![0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 6, 0, 0];
    p.extend_from_slice(&syn[16..20]); // our pod is the source
    p.extend_from_slice(&syn[12..16]);
    let c = internet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mss = MTU - 40;
    let mut t = Vec::new();
    t.extend_from_slice(&tcp[2..4]); // source port: the one it called
    t.extend_from_slice(&tcp[0..2]);
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&client_seq.wrapping_add(1).to_be_bytes());
    t.extend_from_slice(&[6 << 4, 0x12, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(&[2, 4]);
    t.extend_from_slice(&mss.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, 6, 0, 24]);
    pseudo.extend_from_slice(&t);
    let c = internet_checksum(&pseudo);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&t);
    p
}

#[test]
fn split_tso_packets_reach_the_wire_with_complete_checksums() {
    if !require_root("split_tso_packets_reach_the_wire_with_complete_checksums") {
        return;
    }
    enter_private_netns().expect("netns");
    sh("ip", &["addr", "add", "127.0.0.2/8", "dev", "lo"]).ok();

    let local: Ipv4Net = "198.18.0.0/24".parse().expect("net");
    let fp = FastPath::open("fp0", local, MTU, FP, 2).expect("open the fast path");
    let features = fp.features();
    assert!(
        features.tun_offload,
        "this kernel offers TUN offloads: {features}"
    );
    sh("ip", &["route", "add", "198.18.1.0/24", "dev", "fp0"]).expect("route");
    let link = sh("ip", &["-d", "link", "show", "fp0"]).expect("link");
    assert!(link.contains("vnet_hdr on"), "{link}");

    let mut table = PeerTable::new();
    table.upsert("198.18.1.0/24".parse().expect("net"), PEER);
    let (_tx, rx) = watch::channel(table);
    let cancel = CancellationToken::new();
    let stats = Stats::new();
    let runner = {
        let cancel = cancel.clone();
        let live = stats.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(fp.run(rx, live, cancel))
        })
    };

    let peer = UdpSocket::bind(PEER).expect("peer socket");
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let client = std::thread::spawn(|| {
        let mut s = TcpStream::connect_timeout(
            &std::net::SocketAddr::from((REMOTE_POD, 80)),
            Duration::from_secs(5),
        )?;
        s.set_write_timeout(Some(Duration::from_secs(1)))?;
        // Far more than one window: the first flight goes out as one TSO super-packet.
        let _ = s.write_all(&vec![0x5a; 256 * 1024]);
        Ok::<_, std::io::Error>(())
    });

    let mut buf = [0u8; 65_536];
    let mut data_segments: Vec<usize> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && data_segments.len() < 10 {
        let Ok((n, from)) = peer.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from, std::net::SocketAddr::V4(FP));
        let d = &buf[..n];
        assert!(n <= usize::from(MTU), "one packet of at most the MTU: {n}");
        assert!(
            ipv4_checksum_ok(d),
            "IPv4 header checksum: {:02x?}",
            &d[..20]
        );
        assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), n);
        assert_eq!(d[9], 6, "TCP");
        assert_eq!(&d[12..16], &LOCAL_ADDR.octets());
        let ihl = usize::from(d[0] & 0x0f) * 4;
        let seg = &d[ihl..];
        assert!(
            tcp_checksum_ok(
                [d[12], d[13], d[14], d[15]],
                [d[16], d[17], d[18], d[19]],
                seg
            ),
            "TCP checksum of a {n}-byte packet"
        );
        let flags = seg[13];
        let payload = n - ihl - usize::from(seg[12] >> 4) * 4;
        if flags & 0x02 != 0 {
            peer.send_to(&syn_ack(d), FP).expect("send the SYN-ACK");
        } else if payload > 0 {
            data_segments.push(n);
        }
    }
    // The live counters show the traffic while the workers run (published after each batch).
    let deadline = Instant::now() + Duration::from_secs(2);
    while stats.snapshot().outbound.forwarded < 11 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        stats.snapshot().outbound.forwarded >= 11,
        "live counters: {:?}",
        stats.snapshot()
    );
    // The device counts each skb it handed us once: fewer than the packets we forwarded means
    // super-packets came through and were split.
    let link = sh("ip", &["-s", "-j", "link", "show", "fp0"]).expect("stats");
    let link: serde_json::Value = serde_json::from_str(&link).expect("ip -j");
    let tun_tx = link[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .expect("tx packets");
    cancel.cancel();
    let counters = runner.join().expect("runner");
    assert_eq!(
        stats.snapshot(),
        counters,
        "the last published totals are the final ones"
    );
    assert!(
        tun_tx < counters.outbound.forwarded,
        "super-packets were split: {tun_tx} skbs for {} packets",
        counters.outbound.forwarded
    );
    let _ = client.join();

    assert!(
        data_segments.len() >= 10,
        "the first flight arrived: {data_segments:?}"
    );
    // Segments of a split super-packet: full-size, every one (the MSS fills the MTU).
    assert!(
        data_segments.iter().all(|&n| n == usize::from(MTU)),
        "{data_segments:?}"
    );
    assert!(
        counters.outbound.forwarded >= 11,
        "SYN + data forwarded: {counters:?}"
    );
    assert_eq!(counters.inbound.delivered, 1, "the SYN-ACK: {counters:?}");
    // Only the device's own IPv6 chatter (router solicitations) is dropped on the way out.
    assert_eq!(
        counters.outbound.dropped(),
        counters.outbound.not_ipv4,
        "{counters:?}"
    );
}
