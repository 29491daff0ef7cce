//! What the layout of a UDP GSO send costs the kernel: one 64 KiB send of 44 inner packets
//! (52-byte IPv4/TCP header + 1,420-byte payload each), handed over three ways:
//!
//! - `iovecs`: the fast path's way, `[header 1, payload 1, header 2, payload 2, …]` as 88
//!   iovecs (the payloads in place in the TUN read buffer);
//! - `flat`: one iovec over a buffer already laid out as header + payload per segment;
//! - `gather`: copy headers and payloads into such a buffer in userspace first, then `flat`.
//!
//! ```text
//! cargo build --release -p flannel-udp --example send_layout
//! target/release/examples/send_layout 50000
//! ```
//!
//! It sends to a closed port on 127.0.0.1 only (loopback, nothing leaves the machine) and
//! prints microseconds per send for each layout, rotating the order over three rounds
//! (docs/udp.md, "Where the time goes").

use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::sys::socket::{sendmsg, setsockopt, sockopt, MsgFlags, SockaddrIn};

const SEGMENTS: usize = 44;
const HEADER: usize = 52;
const PAYLOAD: usize = 1420;
const SEGMENT: usize = HEADER + PAYLOAD;

#[derive(Clone, Copy, Debug)]
enum Layout {
    Iovecs,
    Flat,
    Gather,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sends: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    // A port nobody listens on: bind one, note it, close it.
    let closed = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let to = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, closed));
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let gso = u16::try_from(SEGMENT)?;
    setsockopt(&sock, sockopt::UdpGsoSegment, &i32::from(gso))?;

    let payload: Vec<u8> = (0..SEGMENTS * PAYLOAD)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    let headers = vec![0x45u8; SEGMENTS * HEADER];
    let mut flat = vec![0u8; SEGMENTS * SEGMENT];
    let gather = |flat: &mut [u8]| {
        for (i, seg) in flat.chunks_mut(SEGMENT).enumerate() {
            seg[..HEADER].copy_from_slice(&headers[i * HEADER..(i + 1) * HEADER]);
            seg[HEADER..].copy_from_slice(&payload[i * PAYLOAD..(i + 1) * PAYLOAD]);
        }
    };
    gather(&mut flat);

    // The fast path keeps its iovec vector from send to send; so does this.
    let interleaved: Vec<IoSlice<'_>> = (0..SEGMENTS)
        .flat_map(|i| {
            [
                IoSlice::new(&headers[i * HEADER..(i + 1) * HEADER]),
                IoSlice::new(&payload[i * PAYLOAD..(i + 1) * PAYLOAD]),
            ]
        })
        .collect();
    let fd = sock.as_raw_fd();

    let layouts = [Layout::Iovecs, Layout::Flat, Layout::Gather];
    for round in 0..3 {
        for k in 0..layouts.len() {
            let layout = layouts[(k + round) % layouts.len()];
            let mut failed = 0usize;
            let start = Instant::now();
            for _ in 0..sends {
                if let Layout::Gather = layout {
                    gather(&mut flat);
                }
                let one = [IoSlice::new(&flat)];
                let iov: &[IoSlice<'_>] = match layout {
                    Layout::Iovecs => &interleaved,
                    Layout::Flat | Layout::Gather => &one,
                };
                if sendmsg(fd, iov, &[], MsgFlags::empty(), Some(&to)).is_err() {
                    failed += 1;
                }
            }
            let us = start.elapsed().as_secs_f64() * 1e6 / sends as f64;
            println!("round {round}: {layout:?}: {us:.2} µs per 64 KiB send ({failed} failed)");
        }
    }
    Ok(())
}
