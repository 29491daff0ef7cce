//! Userspace WireGuard for the wireguard backend where the kernel has no module: a TUN device
//! (`flannel-wg`) whose packets are encrypted with the WireGuard protocol and sent over UDP,
//! interoperable with the kernel's implementation (one wire format).
//!
//! The protocol itself (Noise handshake, sessions, timers, cookies) is boringtun's `noise`
//! state machine ([`boringtun::noise::Tunn`], one per peer); this crate is the device around
//! it, on the udp backend's datapath engine (`flannel_udp`: TSO segmenting, send grouping,
//! GRO-style coalescing, scatter-gather TUN writes):
//!
//! - [`peers`]: the peer table (by key, by session index, by allowed IP) and how the planner's
//!   [`flannel_planner::wireguard::DeviceOp`]s change it, with the device's configuration
//!   read back as a [`flannel_planner::wireguard::DeviceConfig`] (what `wg show` would say).
//! - [`device`]: the device: opening it, its configuration, its workers and timers.
//! - [`queues`]: the multi-queue offloaded TUN device and the per-queue UDP sockets, and the
//!   workers' stop signal.
//! - `outbound` / `inbound`: the per-queue workers, TUN → encrypt → UDP (GSO) and UDP (GRO)
//!   → decrypt → TUN (coalesced).
//! - [`segments`]: cutting a TCP super-packet into contiguous plaintext segments in place.

pub mod device;
mod inbound;
mod outbound;
pub mod peers;
pub mod queues;
pub mod segments;

pub use device::{Device, DeviceError};
pub use peers::PeerTable;
pub use queues::Features;
