//! Why a backend cannot be configured on this host. The texts are the ones flanneld has
//! always logged (and exits with).

use crate::hostgw::NAT_ERROR;
use crate::vxlan::VxlanConfigError;
use crate::wireguard::WgConfigError;

/// A backend that cannot run with this config on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The external interface has no IPv4 address.
    #[error("the external interface has no IPv4 address")]
    NoIpv4Address,
    /// An IPv4-only backend in a network with `EnableIPv4: false`.
    #[error(
        "the {backend} backend needs IPv4 (EnableIPv4 is false); IPv6-only networks work with \
         vxlan and host-gw"
    )]
    NeedsIpv4 {
        /// The backend type.
        backend: String,
    },
    /// IPv6 is enabled but the external interface has no IPv6 address.
    #[error("IPv6 is enabled but the external interface has no IPv6 address")]
    NoIpv6Address,
    /// The vxlan `Backend` options do not decode.
    #[error(transparent)]
    Vxlan(#[from] VxlanConfigError),
    /// The wireguard `Backend` options do not decode or are refused.
    #[error(transparent)]
    Wireguard(#[from] WgConfigError),
    /// The wireguard backend was built without the key flanneld loads for it.
    #[error("the wireguard backend needs the node's key (loaded by flanneld)")]
    WireguardNoKey,
    /// `Mode: on-demand` with IPv6 enabled.
    #[error("the vxlan on-demand mode is IPv4-only; disable EnableIPv6 or use the default mode")]
    OnDemandIpv6,
    /// `Mode: on-demand` without an IPv4 `Network`.
    #[error("the vxlan on-demand mode needs an IPv4 Network")]
    OnDemandNoNetwork,
    /// host-gw behind NAT.
    #[error("{NAT_ERROR}")]
    Nat,
    /// udp with IPv6 enabled.
    #[error("the udp backend is IPv4-only; disable EnableIPv6")]
    UdpIpv6,
    /// udp without an IPv4 `Network`.
    #[error("the udp backend needs an IPv4 Network")]
    UdpNoNetwork,
    /// udp `Port` out of range.
    #[error("udp backend: Port {0} is not a usable UDP port")]
    UdpPort(String),
    /// The ipsec `Backend` options do not decode (Flannel's text).
    #[error("error decoding IPSEC backend config: {0}")]
    IpsecConfig(String),
    /// The ipsec `PSK` is shorter than 96 characters (Flannel's text).
    #[error("config error, password is too short")]
    IpsecPskTooShort,
    /// ipsec with IPv6 enabled.
    #[error("the ipsec backend is IPv4-only; disable EnableIPv6")]
    IpsecIpv6,
    /// ipip with IPv6 enabled.
    #[error("the ipip backend is IPv4-only; disable EnableIPv6")]
    IpipIpv6,
    /// The ipip `Backend` options do not decode.
    #[error("error decoding IPIP backend config: {0}")]
    IpipConfig(String),
    /// The external MTU leaves nothing for the tunnel.
    #[error("MTU {mtu} of iface {ext} is too small for ipip mode to work")]
    IpipMtu {
        /// The external interface's MTU.
        mtu: u32,
        /// The external interface.
        ext: String,
    },
    /// The extension `Backend` options do not decode.
    #[error("error decoding backend config: {0}")]
    ExtensionConfig(String),
    /// A backend option of the wrong JSON type.
    #[error("{backend} backend: {field}: expected a number, got {got}")]
    NotANumber {
        /// The backend.
        backend: &'static str,
        /// The option (as documented, e.g. `Port`).
        field: &'static str,
        /// What was given.
        got: String,
    },
    /// The external MTU leaves no usable MTU for the udp TUN device.
    #[error("external MTU {ext_mtu} leaves no usable MTU for {tun} (overhead {overhead})")]
    UdpMtu {
        /// The external interface's MTU.
        ext_mtu: u32,
        /// The TUN device.
        tun: &'static str,
        /// The encapsulation overhead.
        overhead: u32,
    },
    /// The MTU pods would get is below what the kernel accepts for an enabled family.
    #[error(
        "the {backend} backend would give pods an MTU of {mtu} (FLANNEL_MTU), below the {min} \
         that {family} needs; raise the Backend's MTU option or the MTU of {ext} (now {ext_mtu})"
    )]
    MtuTooSmall {
        /// The backend.
        backend: &'static str,
        /// The pod MTU it computed.
        mtu: u32,
        /// The family's minimum.
        min: u32,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The external interface.
        ext: String,
        /// Its MTU.
        ext_mtu: u32,
    },
    /// A backend Flannel has and this build does not.
    #[error("backend type {name:?} is not available in this build of flannel-rs yet (available: {available})")]
    NotYet {
        /// The type asked for.
        name: String,
        /// The types this build has, comma separated.
        available: String,
    },
    /// A type nobody knows.
    #[error("unknown backend type: {0}")]
    Unknown(String),
}
