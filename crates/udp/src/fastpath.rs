//! The udp backend's fast path: batched, offloaded, one worker per queue.
//!
//! Same decisions as [`crate::proxy`] ([`outbound`] / [`inbound`] for every packet), same wire
//! format (one inner IPv4 packet per datagram, at most the TUN MTU), far fewer system calls:
//!
//! - **TUN**: multi-queue (`IFF_MULTI_QUEUE`, one queue per worker) with `IFF_VNET_HDR` and
//!   `TUNSETOFFLOAD` (TSO4/TSO6/CSUM, plus USO4/USO6 where the kernel has them). The kernel
//!   hands us TCP/UDP super-packets of up to 64 KiB; tun-rs's `recv_multiple` splits them into
//!   MTU-sized packets *with complete IPv4 and TCP/UDP checksums* (also for single packets
//!   that arrive `CHECKSUM_PARTIAL`), so a Go Flannel peer receives ordinary packets.
//!   `send_multiple` with a [`GROTable`] coalesces what we deliver back into super-packets.
//! - **UDP**: per worker one socket on `<ext addr>:<port>` with `SO_REUSEPORT`, driven through
//!   quinn-udp: `recvmmsg` with UDP GRO (`UDP_GRO`; datagrams split again at the segment size
//!   the kernel reports) and `sendmsg` with UDP GSO (`UDP_SEGMENT`: a run of equal-size
//!   datagrams to one peer in one call, grouped by [`crate::batch`]).
//! - **Workers**: per queue one OS thread (`udp-q<i>`) for both directions, TUN → UDP and
//!   UDP → TUN, stepping each in turn, with non-blocking file descriptors and `poll(2)` on
//!   both descriptors and a stop `eventfd` once both are empty. One thread rather than a pair
//!   because a TCP flow's ACKs come back the other way: the thread that is awake for the data
//!   picks them up, where a second thread would be woken for each (measured in
//!   docs/benchmarks.md). Blocking threads beat a tokio reactor here: each batch is one or two
//!   system calls and the threads never hand work to each other. The peer table is read once
//!   per batch (a `watch` borrow held only while deciding, never across I/O).
//! - **Fallbacks**: each feature is tried and dropped on refusal, step by step: TUN offload,
//!   then multi-queue (one queue), `SO_REUSEPORT` (one socket), UDP GSO/GRO (quinn-udp
//!   detects them, and turns GSO off at run time if a send fails with `EIO`).
//!   [`Features`] says what is in use.
//!
//! [`FastPath::run`] stops on cancel: it wakes every thread through the eventfd, joins them,
//! and drops the queues, which removes `flannel0` as Flannel's proxy does.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use nix::poll::PollFlags;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use tun_rs::{GROTable, SyncDevice, VirtioNetHdr, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use crate::batch::{Grouper, Limits};
use crate::coalesce::Coalescer;
use crate::decide::{inbound, outbound, Counters, Inbound, Outbound};
use crate::device::DeviceError;
use crate::packet::IcmpUnreachable;
use crate::queues::{self, Sock, Stop, TunSpec, Wake};
use crate::route::PeerTable;
use crate::segment::Tso;
use crate::sgio::{is_tcp4_gso, split_other, write_group, Sent, TsoSender, MAX_TSO_SEGMENTS};
use crate::stats::{ProxyCounters, Slot, Stats};

pub use crate::queues::{default_queues, MAX_QUEUES};

/// A TUN read of a GSO packet needs room for its segments: keep reading into a batch only
/// while at least this many slots are free.
const MIN_FREE_SLOTS: usize = 64;

/// The UDP receive buffers per `recvmmsg`, each large enough for a GRO super-datagram.
const RX_BUFS: usize = 16;
const RX_BUF_LEN: usize = 65_536;

/// Packets handed to one `send_multiple` (coalescing window).
const TUN_WRITE_BATCH: usize = IDEAL_BATCH_SIZE;

/// Capacity of each TUN write buffer: a coalesced 64 KiB packet behind the virtio header
/// (tun-rs wants twice the header's room).
const TUN_WRITE_CAPACITY: usize = 65_536 + 2 * VIRTIO_NET_HDR_LEN;

/// The datapath's name in its log lines.
const LABEL: &str = "udp fast path";

/// Pause after an unexpected I/O error, so a persistent one does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What the fast path runs with (the start-up log line prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Worker queues (TUN queues = UDP sockets = worker threads).
    pub queues: usize,
    /// `IFF_VNET_HDR` with TSO4/TSO6/CSUM on the TUN device.
    pub tun_offload: bool,
    /// UDP segmentation offload (USO4/USO6) on the TUN device as well.
    pub tun_uso: bool,
    /// Most datagrams per UDP send (1: no UDP GSO).
    pub udp_gso_segments: usize,
    /// UDP GRO on receive.
    pub udp_gro: bool,
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offload = match (self.tun_offload, self.tun_uso) {
            (false, _) => "off",
            (true, false) => "tso4,tso6",
            (true, true) => "tso4,tso6,uso",
        };
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "queues={} tun_offload={offload} udp_gso={} udp_gro={}",
            self.queues,
            on(self.udp_gso_segments > 1),
            on(self.udp_gro)
        )
    }
}

/// The opened fast path, ready to [`run`](FastPath::run).
pub struct FastPath {
    queues: Vec<SyncDevice>,
    socks: Vec<Sock>,
    local: Ipv4Net,
    mtu: u16,
    features: Features,
}

impl fmt::Debug for FastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastPath")
            .field("local", &self.local)
            .field("mtu", &self.mtu)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl FastPath {
    /// Opens the TUN device `name` (address: the network address of our lease `local`, as a
    /// /32; `mtu`) with up to `queues` queues, and as many UDP sockets on `bind`.
    pub fn open(
        name: &str,
        local: Ipv4Net,
        mtu: u16,
        bind: SocketAddrV4,
        queues: usize,
    ) -> Result<FastPath, DeviceError> {
        let want = queues.clamp(1, MAX_QUEUES);
        let spec = TunSpec {
            name,
            mtu,
            addr4: Some(local.network()),
            addr6: None,
        };
        let tun = queues::open_tun(&spec, want, LABEL).map_err(|cause| DeviceError::Tun {
            name: name.to_owned(),
            cause,
        })?;
        let mut tun_queues = tun.queues;
        let mut socks = queues::bind_sockets(SocketAddr::V4(bind), tun_queues.len(), LABEL)
            .map_err(|cause| DeviceError::Bind { addr: bind, cause })?;
        let n = tun_queues.len().min(socks.len());
        tun_queues.truncate(n);
        socks.truncate(n);
        let features = Features {
            queues: n,
            tun_offload: tun.tso,
            tun_uso: tun.uso,
            udp_gso_segments: socks
                .iter()
                .map(|s| s.state.max_gso_segments())
                .min()
                .unwrap_or(1),
            udp_gro: socks.iter().all(|s| s.state.gro_segments() > 1),
        };
        Ok(FastPath {
            queues: tun_queues,
            socks,
            local,
            mtu,
            features,
        })
    }

    /// What is in use.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Forwards packets both ways until `cancel` fires, then stops the workers and closes the
    /// device and the sockets. Returns what the workers did.
    /// The running totals are published to `stats` after every batch.
    pub async fn run(
        self,
        peers: watch::Receiver<PeerTable>,
        stats: Stats,
        cancel: CancellationToken,
    ) -> ProxyCounters {
        let stop = match Stop::new(LABEL) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                warn!(error = %e, "udp fast path: cannot create the stop eventfd; not forwarding");
                cancel.cancelled().await;
                return ProxyCounters::default();
            }
        };
        let offload = self.features.tun_offload;
        let mut handles = Vec::new();
        for (i, (tun, sock)) in self.queues.into_iter().zip(self.socks).enumerate() {
            let tun = Arc::new(tun);
            let sock = Arc::new(sock);
            let tx = TxWorker {
                tun: Arc::clone(&tun),
                sock: Arc::clone(&sock),
                peers: peers.clone(),
                stop: Arc::clone(&stop),
                offload,
                slot: usize::from(self.mtu),
                stats: stats.slot(),
            };
            let rx = RxWorker {
                tun,
                sock,
                peers: peers.clone(),
                local: self.local,
                offload,
                stats: stats.slot(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("udp-q{i}"))
                .spawn(move || run_queue(&tx, &rx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => warn!(error = %e, queue = i, "udp fast path: cannot start a worker"),
            }
        }
        cancel.cancelled().await;
        stop.fire();
        let joined = tokio::task::spawn_blocking(move || {
            let mut total = ProxyCounters::default();
            for h in handles {
                match h.join() {
                    Ok(done) => {
                        total.outbound += done.outbound;
                        total.inbound += done.inbound;
                        total.io_errors = total.io_errors.wrapping_add(done.io_errors);
                    }
                    Err(_) => warn!("udp fast path: a worker panicked"),
                }
            }
            total
        })
        .await;
        joined.unwrap_or_else(|e| {
            warn!(error = %e, "udp fast path: joining the workers failed");
            ProxyCounters::default()
        })
    }
}

/// A worker thread's result: its counters and failed reads and writes.
struct Done {
    outbound: Counters,
    inbound: Counters,
    io_errors: u64,
}

/// Most TUN reads per sending step, so that the receiving side is looked at between them.
const READS_PER_STEP: usize = 8;

/// One queue's worker: a single thread for both directions. It steps each side in turn and
/// sleeps only when both descriptors are empty, so a TCP flow's ACKs coming the other way
/// are picked up by the thread that is awake anyway, without waking a second one
/// (docs/benchmarks.md, "one thread per queue": fewer CPU seconds per GB, steadier rounds).
/// While a send waits for room in the socket buffer the receiving side waits too; the
/// kernel drains that buffer on its own, so the wait is short and bounded.
fn run_queue(tx: &TxWorker, rx: &RxWorker) -> Done {
    let mut ts = tx.state();
    let mut rs = rx.state();
    while !tx.stop.stopped() {
        let out = tx.step(&mut ts, READS_PER_STEP);
        let inb = rx.step(&mut rs);
        if out == Step::Idle && inb == Step::Idle {
            let tun = (tx.tun.as_fd(), PollFlags::POLLIN);
            let sock = (rx.sock.sock.as_fd(), PollFlags::POLLIN);
            if let Wake::Stop = tx.stop.wait_either(tun, sock) {
                break;
            }
        }
    }
    Done {
        outbound: ts.counters,
        inbound: rs.counters,
        io_errors: ts.io_errors.wrapping_add(rs.io_errors),
    }
}

/// Writes one packet (an ICMP reply) to the TUN device, behind an empty virtio header when
/// offload is on.
fn write_tun_one(tun: &SyncDevice, offload: bool, pkt: &[u8]) -> io::Result<usize> {
    if offload {
        let hdr = [0u8; VIRTIO_NET_HDR_LEN];
        tun.send_vectored(&[IoSlice::new(&hdr), IoSlice::new(pkt)])
    } else {
        tun.send(pkt)
    }
}

fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// `EIO`: what a UDP GSO send fails with where the route's device cannot take it.
fn libc_eio() -> i32 {
    nix::errno::Errno::EIO as i32
}

/// The outcome of [`TxWorker::forward_tso`].
enum Forwarded {
    /// Sent, or failed with this many errors.
    Done(u64),
    /// Not taken (not a TCP/IPv4 super-packet this path handles, or not to be sent as it is):
    /// the caller splits it.
    NotTso,
    /// The kernel refused the scatter-gather GSO send: switch to the copying path.
    Disable(io::Error),
}

/// The per-packet path's reusable buffers.
#[derive(Default)]
struct OutBatch {
    lens: Vec<usize>,
    sendable: Vec<(usize, SocketAddrV4, usize)>,
    replies: Vec<IcmpUnreachable>,
    grouper: Grouper,
    staging: Vec<u8>,
}

/// A queue's sending side: TUN → UDP.
struct TxWorker {
    tun: Arc<SyncDevice>,
    sock: Arc<Sock>,
    peers: watch::Receiver<PeerTable>,
    stop: Arc<Stop>,
    offload: bool,
    /// Bytes per packet slot: the TUN MTU.
    slot: usize,
    /// Where the running totals go after each batch.
    stats: Slot,
}

/// What one step of a worker found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It moved packets (or hit an error): step again.
    Worked,
    /// Its descriptor is empty: wait for it.
    Idle,
}

/// The sending worker's buffers and totals, kept across steps.
struct TxState {
    /// Packets in fixed slots of one buffer: a run of full-size packets in consecutive slots
    /// is already the contiguous buffer a GSO send needs.
    big: Vec<u8>,
    /// One TUN read: the virtio header and a packet of up to 64 KiB.
    raw: Vec<u8>,
    sizes: Vec<usize>,
    out: OutBatch,
    tso: TsoSender,
    /// TCP super-packets go out without a userspace copy when the socket does UDP GSO.
    zero_copy: bool,
    counters: Counters,
    io_errors: u64,
    warned: bool,
}

impl TxWorker {
    fn state(&self) -> TxState {
        let slot = self.slot.max(1);
        TxState {
            big: vec![0u8; IDEAL_BATCH_SIZE * slot],
            raw: vec![0u8; VIRTIO_NET_HDR_LEN + 65_535],
            sizes: vec![0usize; IDEAL_BATCH_SIZE],
            out: OutBatch::default(),
            tso: TsoSender::new(),
            zero_copy: self.offload && self.sock.state.max_gso_segments() > 1,
            counters: Counters::default(),
            io_errors: 0,
            warned: false,
        }
    }

    /// Reads from the TUN device until it is empty, the batch is (nearly) full or
    /// `max_reads` reads were made, and sends what it read. A TCP super-packet is sent at
    /// once (after the packets read before it).
    fn step(&self, st: &mut TxState, max_reads: usize) -> Step {
        let slot = self.slot.max(1);
        let slots = st.sizes.len();
        let mut n = 0;
        let mut reads = 0;
        let mut idle = false;
        while n < slots && (n == 0 || slots - n >= MIN_FREE_SLOTS) && reads < max_reads {
            reads += 1;
            let r = if self.offload {
                let TxState {
                    big,
                    raw,
                    sizes,
                    out,
                    tso,
                    zero_copy,
                    counters,
                    io_errors,
                    warned: _,
                } = &mut *st;
                self.tun.recv(raw).and_then(|len| {
                    if len <= VIRTIO_NET_HDR_LEN {
                        return Err(io::Error::other("TUN read without a packet"));
                    }
                    let hdr = VirtioNetHdr::decode(&raw[..VIRTIO_NET_HDR_LEN])?;
                    let pkt = &mut raw[VIRTIO_NET_HDR_LEN..len];
                    if *zero_copy && is_tcp4_gso(&hdr) {
                        if n > 0 {
                            *io_errors = io_errors
                                .wrapping_add(self.send_batch(big, &sizes[..n], out, counters));
                            n = 0;
                        }
                        match self.forward_tso(pkt, hdr, tso, counters) {
                            Forwarded::Done(e) => {
                                *io_errors = io_errors.wrapping_add(e);
                                return Ok(0);
                            }
                            Forwarded::Disable(e) => {
                                warn!(error = %e, "udp fast path: scatter-gather UDP GSO refused; copying from now on");
                                *zero_copy = false;
                                *io_errors = io_errors.wrapping_add(1);
                                return Ok(0);
                            }
                            Forwarded::NotTso => {}
                        }
                    }
                    let mut bufs: Vec<&mut [u8]> = big[n * slot..].chunks_mut(slot).collect();
                    split_other(hdr, pkt, &mut bufs, &mut sizes[n..])
                })
            } else {
                let b = &mut st.big[n * slot..(n + 1) * slot];
                self.tun.recv(b).map(|len| {
                    st.sizes[n] = len;
                    1
                })
            };
            match r {
                Ok(k) => n += k,
                Err(e) if is_would_block(&e) => {
                    idle = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    st.io_errors = st.io_errors.wrapping_add(1);
                    if !st.warned {
                        warn!(error = %e, "udp fast path: reading from the TUN device failed");
                        st.warned = true;
                    } else {
                        debug!(error = %e, "udp fast path: reading from the TUN device failed");
                    }
                    if n == 0 {
                        std::thread::sleep(ERROR_PAUSE);
                    }
                    break;
                }
            }
        }
        if n > 0 {
            st.io_errors = st.io_errors.wrapping_add(self.send_batch(
                &mut st.big,
                &st.sizes[..n],
                &mut st.out,
                &mut st.counters,
            ));
        }
        if reads > 1 || !idle {
            self.stats.publish(ProxyCounters {
                outbound: st.counters,
                io_errors: st.io_errors,
                ..ProxyCounters::default()
            });
        }
        if idle {
            Step::Idle
        } else {
            Step::Worked
        }
    }

    /// Decides and sends one TCP super-packet without copying its payload.
    fn forward_tso(
        &self,
        pkt: &mut [u8],
        hdr: VirtioNetHdr,
        tso: &mut TsoSender,
        counters: &mut Counters,
    ) -> Forwarded {
        let Ok(plan) = Tso::plan(pkt, hdr.gso_size) else {
            return Forwarded::NotTso;
        };
        if plan.segments > MAX_TSO_SEGMENTS {
            return Forwarded::NotTso;
        }
        let d = outbound(pkt, &self.peers.borrow());
        let (to, len) = match d {
            Outbound::SendTo { to, len } => (to, len),
            // Replies and drops take the per-packet path (one decision per segment).
            _ => return Forwarded::NotTso,
        };
        // Decided (the TTL is decremented): from here on the packet is sent or lost, never
        // handed to the per-packet path (which would decide it again).
        counters.record_outbound(&d);
        let pkt = &pkt[..len];
        let plan = match Tso::plan(pkt, hdr.gso_size) {
            Ok(p) if tso.prepare(pkt, &p) => p,
            _ => {
                debug!(
                    len,
                    "udp fast path: a super-packet shorter than its headers say"
                );
                return Forwarded::Done(1);
            }
        };
        counters.forwarded = counters
            .forwarded
            .wrapping_add(u64::try_from(plan.segments - 1).unwrap_or(0));
        let max_segments = self.sock.state.max_gso_segments();
        let mut from = 0;
        loop {
            match tso.send(self.sock.sock.as_fd(), pkt, &plan, to, max_segments, from) {
                Ok(Sent::All(_)) => return Forwarded::Done(0),
                Ok(Sent::WouldBlock { from: f }) => {
                    from = f;
                    if let Wake::Stop = self.stop.wait(self.sock.sock.as_fd(), PollFlags::POLLOUT) {
                        return Forwarded::Done(1);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc_eio()) => return Forwarded::Disable(e),
                Err(e) => {
                    debug!(error = %e, %to, "udp fast path: sending failed");
                    return Forwarded::Done(1);
                }
            }
        }
    }

    /// Decides the `sizes.len()` packets in `big`'s slots and sends them, grouped into GSO
    /// sends. Returns the failed sends.
    fn send_batch(
        &self,
        big: &mut [u8],
        sizes: &[usize],
        out: &mut OutBatch,
        counters: &mut Counters,
    ) -> u64 {
        let slot = self.slot.max(1);
        let mut io_errors = 0u64;
        out.sendable.clear();
        out.lens.resize(sizes.len(), 0);
        {
            let table = self.peers.borrow();
            for (i, &size) in sizes.iter().enumerate() {
                let pkt = &mut big[i * slot..i * slot + size.min(slot)];
                let d = outbound(pkt, &table);
                counters.record_outbound(&d);
                match d {
                    Outbound::SendTo { to, len } => {
                        out.lens[i] = len;
                        out.sendable.push((i, to, len));
                    }
                    Outbound::Reply(icmp) => out.replies.push(icmp),
                    Outbound::Drop(reason) => {
                        debug!(?reason, "udp fast path: dropped an outbound packet");
                    }
                }
            }
        }
        for icmp in out.replies.drain(..) {
            if let Err(e) = write_tun_one(&self.tun, self.offload, icmp.as_bytes()) {
                io_errors = io_errors.wrapping_add(1);
                debug!(error = %e, "udp fast path: writing an ICMP reply failed");
            }
        }

        let limits = Limits::gso(self.sock.state.max_gso_segments());
        out.grouper.group(out.sendable.iter().copied(), limits);
        for send in out.grouper.sends() {
            let ids = out.grouper.packets(send);
            let (Some(&first), Some((_, init))) = (ids.first(), ids.split_last()) else {
                continue;
            };
            let contiguous = ids.windows(2).all(|w| w[1] == w[0] + 1)
                && init.iter().all(|&i| out.lens[i] == slot);
            let contents: &[u8] = if contiguous {
                &big[first * slot..first * slot + send.bytes]
            } else {
                out.staging.clear();
                for &i in ids {
                    out.staging
                        .extend_from_slice(&big[i * slot..i * slot + out.lens[i]]);
                }
                &out.staging
            };
            let t = Transmit {
                destination: SocketAddr::V4(send.to),
                ecn: None,
                contents,
                segment_size: (send.count > 1).then_some(send.segment_size),
                src_ip: None,
            };
            if let Err(e) = self.send(&t) {
                io_errors = io_errors.wrapping_add(1);
                debug!(error = %e, to = %send.to, "udp fast path: sending failed");
            }
        }
        io_errors
    }

    /// Sends one transmit, waiting for room in the socket buffer when it is full.
    fn send(&self, t: &Transmit<'_>) -> io::Result<()> {
        loop {
            match self
                .sock
                .state
                .try_send(UdpSockRef::from(&self.sock.sock), t)
            {
                Err(e) if is_would_block(&e) => {
                    if let Wake::Stop = self.stop.wait(self.sock.sock.as_fd(), PollFlags::POLLOUT) {
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }
}

/// A queue's receiving side: UDP → TUN.
struct RxWorker {
    tun: Arc<SyncDevice>,
    sock: Arc<Sock>,
    peers: watch::Receiver<PeerTable>,
    local: Ipv4Net,
    offload: bool,
    /// Where the running totals go after each batch.
    stats: Slot,
}

/// The receiving worker's buffers and totals, kept across steps.
struct RxState {
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    /// Delivered packets, each behind the virtio header's room; `used` of them are filled;
    /// each has room for a coalesced super-packet.
    out: Vec<Vec<u8>>,
    used: usize,
    gro: GROTable,
    /// TCP segments to deliver: (receive buffer, offset, length), coalesced per batch.
    delivered: Vec<(usize, usize, usize)>,
    coalescer: Coalescer,
    counters: Counters,
    io_errors: u64,
    warned: bool,
}

impl RxWorker {
    fn state(&self) -> RxState {
        RxState {
            bufs: (0..RX_BUFS).map(|_| vec![0u8; RX_BUF_LEN]).collect(),
            metas: vec![RecvMeta::default(); RX_BUFS],
            out: Vec::new(),
            used: 0,
            gro: GROTable::default(),
            delivered: Vec::with_capacity(RX_BUFS * 64),
            coalescer: Coalescer::new(),
            counters: Counters::default(),
            io_errors: 0,
            warned: false,
        }
    }

    /// One `recvmmsg`, its datagrams decided and delivered to the TUN device.
    fn step(&self, st: &mut RxState) -> Step {
        let head = if self.offload { VIRTIO_NET_HDR_LEN } else { 0 };
        let r = {
            let mut iovs: Vec<IoSliceMut<'_>> =
                st.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            self.sock
                .state
                .recv(UdpSockRef::from(&self.sock.sock), &mut iovs, &mut st.metas)
        };
        let m = match r {
            Ok(m) => m,
            Err(e) if is_would_block(&e) => return Step::Idle,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Worked,
            Err(e) => {
                st.io_errors = st.io_errors.wrapping_add(1);
                if !st.warned {
                    warn!(error = %e, "udp fast path: reading from the UDP socket failed");
                    st.warned = true;
                }
                std::thread::sleep(ERROR_PAUSE);
                return Step::Worked;
            }
        };
        let RxState {
            bufs,
            metas,
            out,
            used,
            gro,
            delivered,
            coalescer,
            counters,
            io_errors,
            warned: _,
        } = st;
        delivered.clear();
        for (b, (buf, meta)) in bufs.iter_mut().zip(metas.iter()).take(m).enumerate() {
            let SocketAddr::V4(from) = meta.addr else {
                continue;
            };
            let len = meta.len.min(buf.len());
            let stride = if meta.stride == 0 { len } else { meta.stride };
            {
                let table = self.peers.borrow();
                for (k, seg) in buf[..len].chunks_mut(stride.max(1)).enumerate() {
                    let d = inbound(seg, from, &table, self.local);
                    counters.record_inbound(&d);
                    match d {
                        // TCP goes to the coalescer, read in place.
                        Inbound::Deliver { len } if self.offload && seg[9] == 6 => {
                            delivered.push((b, k * stride, len));
                        }
                        Inbound::Deliver { len } => {
                            if *used == out.len() {
                                // tun-rs coalesces into a buffer only within its capacity:
                                // room for a whole 64 KiB super-packet (only the bytes
                                // written become resident).
                                out.push(Vec::with_capacity(TUN_WRITE_CAPACITY));
                            }
                            let o = &mut out[*used];
                            o.clear();
                            o.resize(head, 0);
                            o.extend_from_slice(&seg[..len]);
                            *used += 1;
                        }
                        Inbound::Drop(reason) => {
                            debug!(?reason, %from, "udp fast path: dropped an inbound datagram");
                        }
                    }
                }
            }
            if *used >= TUN_WRITE_BATCH {
                *io_errors = io_errors.wrapping_add(self.flush(gro, &mut out[..*used], head));
                *used = 0;
            }
        }
        if !delivered.is_empty() {
            let views: Vec<&[u8]> = delivered
                .iter()
                .map(|&(b, at, len)| &bufs[b][at..at + len])
                .collect();
            coalescer.coalesce(&views);
            for g in coalescer.groups() {
                if let Err(e) = write_group(&self.tun, g, coalescer.packets(g), &views) {
                    *io_errors = io_errors.wrapping_add(1);
                    debug!(error = %e, "udp fast path: writing to the TUN device failed");
                }
            }
        }
        if *used > 0 {
            *io_errors = io_errors.wrapping_add(self.flush(gro, &mut out[..*used], head));
            *used = 0;
        }
        self.stats.publish(ProxyCounters {
            inbound: *counters,
            io_errors: *io_errors,
            ..ProxyCounters::default()
        });
        Step::Worked
    }

    /// Writes `pkts` to the TUN device (coalesced when offload is on); returns 1 on failure.
    fn flush(&self, gro: &mut GROTable, pkts: &mut [Vec<u8>], head: usize) -> u64 {
        match self.tun.send_multiple(gro, pkts, head) {
            Ok(_) => 0,
            Err(e) => {
                debug!(error = %e, "udp fast path: writing to the TUN device failed");
                1
            }
        }
    }
}
