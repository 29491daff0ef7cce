//! Flannel's `udp` backend (TUN `flannel0` + UDP port 8285).
//!
//! The wire format is Flannel's: the whole UDP payload is the raw inner IPv4 packet, with no
//! extra header. The pure core opens nothing: the caller reads a packet into a buffer it owns,
//! asks [`decide::outbound`] / [`decide::inbound`] what to do with it, and performs the I/O.
//! The hot path does not allocate.
//!
//! - [`route`]: the peer table (leased subnet → peer UDP endpoint), O(log n) lookups.
//! - [`packet`]: IPv4 header parsing, TTL decrement with an RFC 1624 incremental checksum,
//!   ICMP net-unreachable generation as Flannel's C proxy builds it.
//! - [`decide`]: the per-packet decisions, drop reasons and counters.
//!
//! The I/O around it:
//!
//! - [`device`]: opens the TUN device and binds the UDP socket.
//! - [`proxy`]: the two forwarding loops (one packet per system call): the simple path.
//! - [`fastpath`]: the fast path (multi-queue offloaded TUN, UDP GSO/GRO, batched system
//!   calls, one worker thread per queue for both directions); [`batch`] groups its outbound packets into sends,
//!   [`segment`] cuts TSO super-packets into per-segment headers for scatter-gather sends,
//!   [`coalesce`] merges received TCP segments back into super-packets, [`checksum`] is the
//!   checksum arithmetic of both.
//! - [`queues`]: the fast path's I/O, shared with the userspace WireGuard (`flannel_wgtun`):
//!   the multi-queue offloaded TUN device, one UDP socket per queue, the workers' stop signal.
//! - [`stats`]: the counters of a running datapath, and which drop reasons grew.
//!
//! # Fuzzing
//!
//! `crates/udp/fuzz` is a cargo-fuzz project (its own workspace, excluded from the main one, so
//! `cargo test --workspace` never builds it). It needs a nightly toolchain and `cargo-fuzz`:
//!
//! ```text
//! cargo install cargo-fuzz
//! cd crates/udp/fuzz && cargo +nightly fuzz run decide -- -max_total_time=60
//! ```

pub mod batch;
pub mod checksum;
pub mod coalesce;
pub mod decide;
pub mod device;
pub mod fastpath;
pub mod packet;
pub mod proxy;
pub mod queues;
pub mod route;
pub mod segment;
pub mod sgio;
pub mod stats;

pub use decide::{inbound, outbound, Counters, DropReason, Inbound, Outbound};
pub use device::{DeviceError, ENCAP_OVERHEAD, TUN_NAME};
pub use fastpath::{FastPath, Features};
pub use packet::IcmpUnreachable;
pub use proxy::Proxy;
pub use route::{Peer, PeerTable, DEFAULT_PORT};
pub use stats::{drop_report, ProxyCounters, Stats};
