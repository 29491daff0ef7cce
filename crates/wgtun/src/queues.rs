//! Opening the device's I/O: a multi-queue TUN device with `IFF_VNET_HDR` offloads and one
//! UDP socket per queue (`SO_REUSEPORT`, driven through quinn-udp for GSO/GRO), as the udp
//! backend's fast path opens its own (`flannel_udp::fastpath`); here the device may carry an
//! IPv6 address and the sockets may be IPv6. Each feature is dropped if the kernel refuses
//! it: offload, then multi-queue (one queue), then `SO_REUSEPORT` (one socket).
//!
//! Also the workers' stop signal ([`Stop`]): a flag and an eventfd that wakes their `poll`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use quinn_udp::{UdpSockRef, UdpSocketState};
use tracing::{debug, warn};
use tun_rs::{DeviceBuilder, SyncDevice};

use crate::device::DeviceError;

/// Most queues, whatever the core count (as the udp backend).
pub const MAX_QUEUES: usize = 4;

/// Socket buffers asked for (forced past the sysctl limits where we may). The receiving
/// worker is the bottleneck of a busy tunnel: its buffer holds what the TCP flows inside
/// keep in flight (see `flannel_udp::fastpath`).
const RECV_BUFFER: usize = 16 << 20;
const SEND_BUFFER: usize = 4 << 20;

/// `poll` timeout, so that a lost wake-up still ends a worker in bounded time.
const POLL_TIMEOUT_MS: u16 = 500;

/// One UDP socket with its quinn-udp state.
#[derive(Debug)]
pub struct Sock {
    /// The socket (non-blocking).
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

/// What the device runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// TUN queues = UDP sockets = worker pairs.
    pub queues: usize,
    /// `IFF_VNET_HDR` with TSO4/TSO6/CSUM.
    pub tun_offload: bool,
    /// Most datagrams per UDP send (1: no UDP GSO).
    pub udp_gso_segments: usize,
    /// UDP GRO on receive.
    pub udp_gro: bool,
}

impl std::fmt::Display for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "queues={} tun_offload={} udp_gso={} udp_gro={}",
            self.queues,
            on(self.tun_offload),
            on(self.udp_gso_segments > 1),
            on(self.udp_gro)
        )
    }
}

/// The number of queues for this machine: its cores, at most [`MAX_QUEUES`].
pub fn default_queues() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_QUEUES)
}

fn build_tun(
    name: &str,
    mtu: u16,
    addr4: Option<Ipv4Addr>,
    addr6: Option<Ipv6Addr>,
    offload: bool,
    multi_queue: bool,
) -> io::Result<SyncDevice> {
    let mut b = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .packet_information(false)
        .offload(offload)
        .multi_queue(multi_queue);
    if let Some(a) = addr4 {
        b = b.ipv4(a, 32u8, None);
    }
    if let Some(a) = addr6 {
        b = b.ipv6(a, 128u8);
    }
    b.enable(true).build_sync()
}

/// Opens TUN device `name` with up to `want` queues (non-blocking); returns them and whether
/// offload is on.
pub fn open_tun(
    name: &str,
    mtu: u16,
    addr4: Option<Ipv4Addr>,
    addr6: Option<Ipv6Addr>,
    want: usize,
) -> Result<(Vec<SyncDevice>, bool), DeviceError> {
    let tun_err = |cause| DeviceError::Tun {
        name: name.to_owned(),
        cause,
    };
    let mq = want > 1;
    let mut attempts = vec![(true, mq), (false, mq)];
    if mq {
        attempts.extend([(true, false), (false, false)]);
    }
    let mut last = None;
    for (offload, multi_queue) in attempts {
        let first = match build_tun(name, mtu, addr4, addr6, offload, multi_queue) {
            Ok(d) => d,
            Err(e) => {
                debug!(dev = name, offload, multi_queue, error = %e, "wireguard (userspace): TUN refused");
                last = Some(e);
                continue;
            }
        };
        let offload = offload && first.tcp_gso();
        let mut queues = vec![first];
        while multi_queue && queues.len() < want {
            match queues[0].try_clone() {
                Ok(q) => queues.push(q),
                Err(e) => {
                    debug!(dev = name, error = %e, "wireguard (userspace): no further TUN queue");
                    break;
                }
            }
        }
        for q in &queues {
            q.set_nonblocking(true).map_err(tun_err)?;
        }
        return Ok((queues, offload));
    }
    Err(tun_err(
        last.unwrap_or_else(|| io::Error::other("no attempt made")),
    ))
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<Sock> {
    use socket2::{Domain, Protocol, Socket, Type};
    let v6 = addr.is_ipv6();
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        // Both families on one socket, as the kernel's device listens.
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
    s.set_nonblocking(true)?;
    let sock: UdpSocket = s.into();
    let state = UdpSocketState::new(UdpSockRef::from(&sock))?;
    Ok(Sock { sock, state, v6 })
}

/// Binds up to `want` sockets on `addr` (`SO_REUSEPORT` when more than one).
pub fn bind_sockets(addr: SocketAddr, want: usize) -> Result<Vec<Sock>, DeviceError> {
    let bind_err = |cause| DeviceError::Bind { addr, cause };
    if want > 1 {
        match bind_one(addr, true) {
            Ok(first) => {
                let mut socks = vec![first];
                while socks.len() < want {
                    match bind_one(addr, true) {
                        Ok(s) => socks.push(s),
                        Err(e) => {
                            debug!(error = %e, "wireguard (userspace): no further socket");
                            break;
                        }
                    }
                }
                return Ok(socks);
            }
            Err(e) => debug!(error = %e, "wireguard (userspace): SO_REUSEPORT refused, one socket"),
        }
    }
    Ok(vec![bind_one(addr, false).map_err(bind_err)?])
}

/// The stop signal of the workers.
#[derive(Debug)]
pub struct Stop {
    flag: AtomicBool,
    efd: EventFd,
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
    /// A signal not yet fired.
    pub fn new() -> io::Result<Stop> {
        Ok(Stop {
            flag: AtomicBool::new(false),
            efd: EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io::Error::from)?,
        })
    }

    /// Tells every worker to stop (and wakes them).
    pub fn fire(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.efd.write(1) {
            warn!(error = %e, "wireguard (userspace): waking the workers failed; they stop within {POLL_TIMEOUT_MS} ms");
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
        // EINTR and the timeout both just mean "look again".
        let _ = poll(&mut fds, PollTimeout::from(POLL_TIMEOUT_MS));
        if self.stopped() {
            Wake::Stop
        } else {
            Wake::Ready
        }
    }
}
