//! The userspace datapath's I/O, shared by the udp backend's fast path ([`crate::fastpath`])
//! and the userspace WireGuard (`flannel_wgtun`): a multi-queue TUN device with
//! `IFF_VNET_HDR` offloads, one UDP socket per queue (`SO_REUSEPORT`, driven through
//! quinn-udp for GSO/GRO), and the workers' stop signal ([`Stop`]).
//!
//! Each feature is dropped if the kernel refuses it: TUN offload, then multi-queue (one
//! queue), then `SO_REUSEPORT` (one socket). `label` names the datapath in the debug and
//! warning lines ("udp fast path", "wireguard (userspace)").

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use quinn_udp::{UdpSockRef, UdpSocketState};
use tracing::{debug, warn};
use tun_rs::{DeviceBuilder, SyncDevice};

/// Most queues (and workers), whatever the core count.
pub const MAX_QUEUES: usize = 4;

/// Receive buffer size asked for (forced past `rmem_max` where we may; the kernel doubles it).
///
/// The receiving worker is the bottleneck of a busy tunnel, so the standing queue of the TCP
/// flows inside sits in this buffer: it must hold what they keep in flight, up to
/// `tcp_wmem`'s maximum (4 MiB by default) per flow. At 4 MiB (8 MiB effective), 4 parallel
/// streams overflowed it (`Udp: RcvbufErrors`), and each overflow drops a whole GRO
/// super-datagram: up to 64 inner TCP segments at once, ~4,000 retransmits per 10 s run.
const RECV_BUFFER: usize = 16 << 20;

/// Send buffer size asked for (forced past `wmem_max` where we may). A full send buffer only
/// makes the worker wait (`EAGAIN`, then `poll`), it drops nothing.
const SEND_BUFFER: usize = 4 << 20;

/// `poll` timeout, so that a lost wake-up still ends a worker in bounded time.
pub const POLL_TIMEOUT_MS: u16 = 500;

/// The number of queues for this machine: its cores, at most [`MAX_QUEUES`].
pub fn default_queues() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_QUEUES)
}

/// The TUN device as opened: its queues (non-blocking) and the offloads the kernel took.
pub struct TunQueues {
    pub queues: Vec<SyncDevice>,
    /// `IFF_VNET_HDR` with TSO4/TSO6/CSUM.
    pub tso: bool,
    /// USO4/USO6 as well (UDP super-packets).
    pub uso: bool,
}

impl std::fmt::Debug for TunQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueues")
            .field("queues", &self.queues.len())
            .field("tso", &self.tso)
            .field("uso", &self.uso)
            .finish()
    }
}

/// What the TUN device is to be.
#[derive(Debug, Clone, Copy)]
pub struct TunSpec<'a> {
    pub name: &'a str,
    pub mtu: u16,
    /// A /32 address, if any.
    pub addr4: Option<Ipv4Addr>,
    /// A /128 address, if any.
    pub addr6: Option<Ipv6Addr>,
}

fn build_tun(spec: &TunSpec<'_>, offload: bool, multi_queue: bool) -> io::Result<SyncDevice> {
    let mut b = DeviceBuilder::new()
        .name(spec.name)
        .mtu(spec.mtu)
        .packet_information(false)
        .offload(offload)
        .multi_queue(multi_queue);
    if let Some(a) = spec.addr4 {
        b = b.ipv4(a, 32u8, None);
    }
    if let Some(a) = spec.addr6 {
        b = b.ipv6(a, 128u8);
    }
    b.enable(true).build_sync()
}

/// Opens the TUN device with up to `want` queues, dropping offload, then multi-queue, on
/// refusal; the error is the last refusal's.
pub fn open_tun(spec: &TunSpec<'_>, want: usize, label: &str) -> io::Result<TunQueues> {
    let mq = want > 1;
    let mut attempts = vec![(true, mq), (false, mq)];
    if mq {
        attempts.extend([(true, false), (false, false)]);
    }
    let mut last = None;
    for (offload, multi_queue) in attempts {
        let first = match build_tun(spec, offload, multi_queue) {
            Ok(d) => d,
            Err(e) => {
                debug!(dev = spec.name, offload, multi_queue, error = %e, "{label}: TUN refused");
                last = Some(e);
                continue;
            }
        };
        let tso = offload && first.tcp_gso();
        let uso = tso && first.udp_gso();
        let mut queues = vec![first];
        while multi_queue && queues.len() < want {
            match queues[0].try_clone() {
                Ok(q) => queues.push(q),
                Err(e) => {
                    debug!(dev = spec.name, error = %e, "{label}: no further TUN queue");
                    break;
                }
            }
        }
        for q in &queues {
            q.set_nonblocking(true)?;
        }
        return Ok(TunQueues { queues, tso, uso });
    }
    Err(last.unwrap_or_else(|| io::Error::other("no attempt made")))
}

/// One UDP socket (non-blocking) with its quinn-udp state.
#[derive(Debug)]
pub struct Sock {
    pub sock: UdpSocket,
    /// GSO/GRO state.
    pub state: UdpSocketState,
    /// Bound to `[::]` (IPv4 peers then appear as v4-mapped addresses).
    pub v6: bool,
}

impl Sock {
    /// `to` as this socket can send to it (v4-mapped on an IPv6 socket).
    pub fn dest(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(a) if self.v6 => {
                SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port())
            }
            other => other,
        }
    }
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<Sock> {
    use socket2::{Domain, Protocol, Socket, Type};
    let v6 = addr.is_ipv6();
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        // Both families on one socket, as the kernel's wireguard device listens.
        s.set_only_v6(false)?;
    }
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    let fd = s.as_fd();
    if nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBufForce, &RECV_BUFFER)
        .is_err()
    {
        let _ = s.set_recv_buffer_size(RECV_BUFFER);
    }
    if nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBufForce, &SEND_BUFFER)
        .is_err()
    {
        let _ = s.set_send_buffer_size(SEND_BUFFER);
    }
    let sock: UdpSocket = s.into();
    // quinn-udp makes the socket non-blocking.
    let state = UdpSocketState::new(UdpSockRef::from(&sock))?;
    Ok(Sock { sock, state, v6 })
}

/// Binds up to `want` sockets on `addr` (`SO_REUSEPORT` when more than one; one plain socket
/// when the kernel refuses it).
pub fn bind_sockets(addr: SocketAddr, want: usize, label: &str) -> io::Result<Vec<Sock>> {
    if want > 1 {
        match bind_one(addr, true) {
            Ok(first) => {
                let mut socks = vec![first];
                while socks.len() < want {
                    match bind_one(addr, true) {
                        Ok(s) => socks.push(s),
                        Err(e) => {
                            debug!(error = %e, "{label}: no further socket");
                            break;
                        }
                    }
                }
                return Ok(socks);
            }
            Err(e) => debug!(error = %e, "{label}: SO_REUSEPORT refused, one socket"),
        }
    }
    Ok(vec![bind_one(addr, false)?])
}

/// The workers' stop signal: a flag checked between batches and an eventfd that wakes `poll`.
#[derive(Debug)]
pub struct Stop {
    flag: AtomicBool,
    efd: EventFd,
    label: &'static str,
}

/// What [`Stop::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Look at the descriptor again.
    Ready,
    /// Stop.
    Stop,
}

impl Stop {
    /// A signal not yet fired; `label` names the datapath in its warning.
    pub fn new(label: &'static str) -> io::Result<Stop> {
        Ok(Stop {
            flag: AtomicBool::new(false),
            efd: EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io::Error::from)?,
            label,
        })
    }

    /// Tells every worker to stop (and wakes them).
    pub fn fire(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.efd.write(1) {
            warn!(error = %e, "{}: waking the workers failed; they stop within {POLL_TIMEOUT_MS} ms", self.label);
        }
    }

    /// Whether it fired.
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Waits until `fd` has `events` or the signal fires.
    pub fn wait(&self, fd: BorrowedFd<'_>, events: PollFlags) -> Wake {
        if self.stopped() {
            return Wake::Stop;
        }
        let mut fds = [
            PollFd::new(fd, events),
            PollFd::new(self.efd.as_fd(), PollFlags::POLLIN),
        ];
        self.poll(&mut fds)
    }

    /// Waits until `a` or `b` has its events, or the signal fires.
    pub fn wait_either(
        &self,
        a: (BorrowedFd<'_>, PollFlags),
        b: (BorrowedFd<'_>, PollFlags),
    ) -> Wake {
        if self.stopped() {
            return Wake::Stop;
        }
        let mut fds = [
            PollFd::new(a.0, a.1),
            PollFd::new(b.0, b.1),
            PollFd::new(self.efd.as_fd(), PollFlags::POLLIN),
        ];
        self.poll(&mut fds)
    }

    fn poll(&self, fds: &mut [PollFd<'_>]) -> Wake {
        // EINTR and the timeout both just mean "look again".
        let _ = poll(fds, PollTimeout::from(POLL_TIMEOUT_MS));
        if self.stopped() {
            Wake::Stop
        } else {
            Wake::Ready
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fired_stop_ends_the_wait() {
        let stop = Stop::new("test").expect("eventfd");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(!stop.stopped());
        stop.fire();
        assert!(stop.stopped());
        assert_eq!(stop.wait(sock.as_fd(), PollFlags::POLLIN), Wake::Stop);
    }

    #[test]
    fn an_ipv6_socket_sends_to_ipv4_peers_v4_mapped() {
        let mut socks =
            bind_sockets("127.0.0.1:0".parse().expect("addr"), 1, "test").expect("bind");
        let to: SocketAddr = "192.0.2.7:51820".parse().expect("addr");
        assert_eq!(socks[0].dest(to), to);
        socks[0].v6 = true;
        assert_eq!(
            socks[0].dest(to),
            "[::ffff:192.0.2.7]:51820"
                .parse::<SocketAddr>()
                .expect("addr")
        );
        let v6: SocketAddr = "[2001:db8::7]:51820".parse().expect("addr");
        assert_eq!(socks[0].dest(v6), v6);
    }
}
