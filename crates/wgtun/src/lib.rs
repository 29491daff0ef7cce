//! Userspace WireGuard for the wireguard backend where the kernel has no module: a TUN device
//! (`flannel-wg`) whose packets are encrypted with the WireGuard protocol and sent over UDP,
//! interoperable with the kernel's implementation (one wire format).
//!
//! The protocol itself (Noise handshake, sessions, timers, cookies) is boringtun's `noise`
//! state machine ([`boringtun::noise::Tunn`], one per peer); this crate is the device around
//! it:
//!
//! - [`peers`]: the peer table (by key, by session index, by allowed IP) and how the planner's
//!   [`flannel_planner::wireguard::DeviceOp`]s change it, with the device's configuration
//!   read back as a [`flannel_planner::wireguard::DeviceConfig`] (what `wg show` would say).
//! - [`device`]: the TUN device, the UDP socket and the tasks moving packets: TUN → encrypt →
//!   UDP, UDP → decrypt → TUN (only packets whose source the sending peer's allowed IPs
//!   cover), and the timers.

pub mod device;
pub mod peers;

pub use device::{Device, DeviceError};
pub use peers::PeerTable;
