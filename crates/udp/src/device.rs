//! The TUN device `flannel0` and the UDP socket of the udp backend.
//!
//! As Flannel does: the device is `IFF_TUN | IFF_NO_PI`, carries our subnet's address as a /32
//! (only a source address for host-to-pod traffic; a /32 creates no broadcast routes), has the
//! external MTU minus [`ENCAP_OVERHEAD`], and is up. It is not persistent: it disappears when
//! its file descriptor is closed (flanneld exiting), so a restart interrupts traffic briefly.
//! The route of the whole network through the device is the caller's (the reconciler's) job.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use tokio::net::UdpSocket;
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Flannel's device name (`flannel%d` with the first free number; we always ask for 0).
pub const TUN_NAME: &str = "flannel0";

/// Bytes the encapsulation adds: outer IPv4 header (20) + UDP header (8).
pub const ENCAP_OVERHEAD: u32 = 28;

/// Failures opening the backend's device or socket. Messages include the OS error, which is
/// therefore not also exposed as `source()` (an `{:#}` chain would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The MTU left after the encapsulation overhead does not fit a TUN device.
    #[error("external MTU {0} leaves no usable MTU for {TUN_NAME} (overhead {ENCAP_OVERHEAD})")]
    BadMtu(u32),
    /// Creating or configuring the TUN device failed.
    #[error("failed to open TUN device {name}: {cause}")]
    Tun {
        /// The device name asked for.
        name: String,
        /// The OS error.
        cause: io::Error,
    },
    /// Binding the UDP socket failed.
    #[error("failed to start listening on UDP socket {addr}: {cause}")]
    Bind {
        /// The address asked for.
        addr: SocketAddrV4,
        /// The OS error.
        cause: io::Error,
    },
}

/// The TUN MTU for an external interface MTU (`ext_mtu - 28`).
pub fn tun_mtu(ext_mtu: u32) -> Result<u16, DeviceError> {
    ext_mtu
        .checked_sub(ENCAP_OVERHEAD)
        .filter(|m| *m >= 68)
        .and_then(|m| u16::try_from(m).ok())
        .ok_or(DeviceError::BadMtu(ext_mtu))
}

/// Opens `name` as a TUN device with `addr/32`, `mtu`, up. Must run inside a tokio runtime.
pub fn open_tun(name: &str, addr: Ipv4Addr, mtu: u16) -> Result<AsyncDevice, DeviceError> {
    DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .packet_information(false)
        .ipv4(addr, 32u8, None)
        .enable(true)
        .build_async()
        .map_err(|cause| DeviceError::Tun {
            name: name.to_owned(),
            cause,
        })
}

/// Binds the backend's UDP socket to `addr` (the external interface address and the port).
pub async fn bind_udp(addr: SocketAddrV4) -> Result<UdpSocket, DeviceError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|cause| DeviceError::Bind { addr, cause })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tun_mtu_subtracts_the_overhead() {
        assert_eq!(tun_mtu(1500).ok(), Some(1472));
        assert_eq!(tun_mtu(9001).ok(), Some(8973));
        assert!(matches!(tun_mtu(90), Err(DeviceError::BadMtu(90))));
        assert!(matches!(tun_mtu(20), Err(DeviceError::BadMtu(20))));
        assert!(matches!(tun_mtu(70_000), Err(DeviceError::BadMtu(70_000))));
    }

    #[test]
    fn messages_say_the_os_error_once() {
        let err = DeviceError::Bind {
            addr: "192.0.2.1:8285".parse().expect("addr"),
            cause: io::Error::from_raw_os_error(98),
        };
        assert_eq!(
            err.to_string(),
            "failed to start listening on UDP socket 192.0.2.1:8285: \
             Address already in use (os error 98)"
        );
        assert!(std::error::Error::source(&err).is_none());
    }
}
