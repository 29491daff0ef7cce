//! Backends: how packets reach other hosts. Each backend is one module implementing
//! [`Backend`]: it reads and checks its `Backend` options, says what this host publishes in its
//! lease, the MTU pods get, the devices it owns, the kernel state it wants for a set of peers
//! (and which facts about a peer it needs for that), and whether it needs a userspace runtime
//! next to the kernel datapath. [`build`] maps the config's `Type` to a backend through
//! [`REGISTRY`].
//!
//! Adding a backend: one module here with its `Backend` impl and one line in [`REGISTRY`]
//! (and, when it creates a new kind of device, one [`crate::link::LinkSpec`] variant).

pub mod alloc;
pub mod error;
pub mod extension;
pub mod hostgw;
pub mod ipip;
pub mod ipsec;
pub mod udp;
pub mod vxlan;
pub mod wireguard;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flannel_model::{Lease, NetworkConfig, RawJson, SubnetKey};

pub use crate::backend::error::BackendError;
use crate::ext_iface::ExtIface;
use crate::skipped::Skipped;
use crate::state::{KernelState, MacAddr};

/// The external interface as found on the host, with the addresses advertised to peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Interface MTU.
    pub mtu: u32,
    /// The interface's IPv4 address, if any.
    pub iface_addr: Option<Ipv4Addr>,
    /// The interface's IPv6 address, if any.
    pub iface_v6_addr: Option<Ipv6Addr>,
    /// The IPv4 address advertised to peers (`--public-ip`, else the interface's).
    pub public_ip: Option<Ipv4Addr>,
    /// The IPv6 address advertised to peers (`--public-ipv6`, else the interface's).
    pub public_ipv6: Option<Ipv6Addr>,
}

/// Data a previous flanneld stored for this node (Kubernetes mode's `backend-data` /
/// `backend-v6-data`), which a backend may reuse so peers' entries for us stay valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// `VtepMAC` of `backend-data`.
    pub vtep_mac: Option<MacAddr>,
    /// `VtepMAC` of `backend-v6-data`.
    pub vtep_mac_v6: Option<MacAddr>,
}

/// Everything a backend is built from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The network config (with the `Backend` object).
    pub network: &'a NetworkConfig,
    /// The external interface.
    pub underlay: &'a Underlay,
    /// What a previous run left on our node.
    pub stored: Stored,
    /// The wireguard backend's key and implementation (flanneld settles them when the config
    /// names wireguard; `None` otherwise).
    pub wireguard: Option<crate::wireguard::WireguardHost>,
}

impl Inputs<'_> {
    /// The external interface's facts for a backend that needs IPv4: its IPv4 address always,
    /// its IPv6 address when IPv6 is enabled. An IPv6-only network is refused
    /// ([`BackendError::NeedsIpv4`]); backends that run IPv6-only use
    /// [`Inputs::ext_iface_for_stack`].
    pub fn ext_iface(&self) -> Result<ExtIface, BackendError> {
        if !self.network.enable_ipv4 {
            return Err(BackendError::NeedsIpv4 {
                backend: self.network.backend_type().to_owned(),
            });
        }
        self.ext_iface_for_stack()
    }

    /// The external interface's facts for the enabled families: its IPv4 address when IPv4
    /// is enabled (else `addr` is `0.0.0.0`, see [`ExtIface::v4`]), its IPv6 address when
    /// IPv6 is enabled. For backends that support IPv6-only networks (vxlan, host-gw).
    pub fn ext_iface_for_stack(&self) -> Result<ExtIface, BackendError> {
        let addr_v6 = if self.network.enable_ipv6 {
            Some(
                self.underlay
                    .iface_v6_addr
                    .ok_or(BackendError::NoIpv6Address)?,
            )
        } else {
            None
        };
        let addr = if self.network.enable_ipv4 {
            self.underlay
                .iface_addr
                .ok_or(BackendError::NoIpv4Address)?
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        Ok(ExtIface {
            name: self.underlay.name.clone(),
            index: self.underlay.index,
            mtu: self.underlay.mtu,
            addr,
            addr_v6,
        })
    }

    /// The IPv4 address advertised to peers (`--public-ip`, else the interface's); `None` in
    /// an IPv6-only network.
    pub fn public_ip(&self) -> Option<Ipv4Addr> {
        if !self.network.enable_ipv4 {
            return None;
        }
        self.underlay.public_ip.or(self.underlay.iface_addr)
    }

    /// The IPv6 address advertised to peers (`--public-ipv6`, else the interface's); `None`
    /// unless IPv6 is enabled.
    pub fn public_ipv6(&self) -> Option<Ipv6Addr> {
        if !self.network.enable_ipv6 {
            return None;
        }
        self.underlay.public_ipv6.or(self.underlay.iface_v6_addr)
    }
}

/// What this host publishes in its lease, besides the subnet and `PublicIP`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseData {
    /// `BackendType` (empty for alloc and udp, as Flannel writes it).
    pub backend_type: &'static str,
    /// `BackendData`.
    pub backend_data: Option<RawJson>,
    /// `BackendV6Data`.
    pub backend_v6_data: Option<RawJson>,
    /// `PublicIPv6`.
    pub public_ipv6: Option<Ipv6Addr>,
}

/// A userspace part a backend needs next to the kernel state (see the daemon's runtimes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSpec {
    /// Answer the kernel's L2/L3 misses on `dev` from the lease set (vxlan on-demand).
    MissResponder {
        /// The device whose misses are answered.
        dev: String,
    },
    /// Forward packets between a TUN device and a UDP socket (udp).
    UdpProxy {
        /// The external interface (its address is the socket's).
        ext: ExtIface,
        /// The UDP port every node listens on.
        port: u16,
    },
    /// Run charon and keep its connections and the kernel's XFRM policies in step with the
    /// peers (ipsec).
    Ipsec {
        /// The backend's options.
        options: ipsec::IpsecOptions,
        /// Our lease's `PublicIP`.
        public_ip: Ipv4Addr,
    },
    /// Run the operator's commands at start-up and for every peer (extension); which ones,
    /// with what, is [`crate::extension`]'s decision.
    Extension(crate::extension::ExtensionSpec),
    /// Keep the WireGuard devices' keys and peers right (wireguard), and in the userspace
    /// implementation carry the packets.
    Wireguard(wireguard::WireguardRuntime),
}

/// One backend, configured for this host. Pure: nothing here touches the kernel.
pub trait Backend: fmt::Debug + Send + Sync {
    /// Short name for logs (`vxlan`, `host-gw`, `udp`, `alloc`, `ipip`, `extension`).
    fn name(&self) -> &'static str;

    /// What this host publishes in its lease.
    fn lease_data(&self) -> LeaseData;

    /// The `PublicIP` this backend publishes instead of the usual one (`--public-ip`, else
    /// the interface's address); `None` for the usual one. Flannel's extension backend
    /// publishes the interface's address.
    fn public_ip(&self) -> Option<Ipv4Addr> {
        None
    }

    /// The MTU pods get (`FLANNEL_MTU`).
    fn pod_mtu(&self) -> u32;

    /// Whether this backend programs the kernel at all.
    fn has_datapath(&self) -> bool {
        true
    }

    /// Devices flanneld owns wholly (every entry on them is ours).
    fn owned_devs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Other devices whose routes we program (and observe).
    fn route_devs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Addresses of `peer` whose on-link status (same L2 segment: `ip route get` gives no
    /// gateway) [`Backend::desired`] needs to know. None by default.
    fn on_link_queries(&self, _peer: &Lease) -> Vec<IpAddr> {
        Vec::new()
    }

    /// What the kernel should hold for our lease and these peers, and the peers it cannot use.
    /// `on_link` answers for the addresses [`Backend::on_link_queries`] named. Nothing by
    /// default: what a backend without a datapath of its own (`has_datapath` false) keeps.
    fn desired(
        &self,
        _own: &SubnetKey,
        _peers: &mut dyn Iterator<Item = &Lease>,
        _on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        (KernelState::default(), Vec::new())
    }

    /// The userspace runtime this backend needs, if any.
    fn runtime(&self) -> Option<RuntimeSpec> {
        None
    }

    /// Things about this configuration an operator should hear of at start-up (logged as
    /// warnings), e.g. an `MTU` option larger than the underlay carries.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The smallest MTU the kernel accepts on a device carrying IPv4 (RFC 791).
pub const MIN_MTU_V4: u32 = 68;

/// The smallest MTU the kernel accepts on a device carrying IPv6 (RFC 8200).
pub const MIN_MTU_V6: u32 = 1280;

/// Refuse a pod MTU the kernel would not take on the backend's devices (or on the pods'
/// interfaces): at least 68 with IPv4, at least 1280 with IPv6.
pub fn check_pod_mtu(
    backend: &dyn Backend,
    network: &NetworkConfig,
    underlay: &Underlay,
) -> Result<(), BackendError> {
    let mtu = backend.pod_mtu();
    for (enabled, min, family) in [
        (network.enable_ipv4, MIN_MTU_V4, "IPv4"),
        (network.enable_ipv6, MIN_MTU_V6, "IPv6"),
    ] {
        if enabled && mtu < min {
            return Err(BackendError::MtuTooSmall {
                backend: backend.name(),
                mtu,
                min,
                family,
                ext: underlay.name.clone(),
                ext_mtu: underlay.mtu,
            });
        }
    }
    Ok(())
}

/// One backend type the config may name.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// `Backend.Type`, lower case.
    pub type_name: &'static str,
    /// Build it (reading and checking its options).
    pub build: fn(&Inputs<'_>) -> Result<Box<dyn Backend>, BackendError>,
}

/// Every backend this build provides.
pub const REGISTRY: &[Registration] = &[
    Registration {
        type_name: "vxlan",
        build: vxlan::build,
    },
    Registration {
        type_name: "host-gw",
        build: hostgw::build,
    },
    Registration {
        type_name: "udp",
        build: udp::build,
    },
    Registration {
        type_name: "alloc",
        build: alloc::build,
    },
    Registration {
        type_name: "ipip",
        build: ipip::build,
    },
    Registration {
        type_name: "ipsec",
        build: ipsec::build,
    },
    Registration {
        type_name: "extension",
        build: extension::build,
    },
    Registration {
        type_name: "wireguard",
        build: wireguard::build,
    },
];

/// Backend types Flannel knows that this build does not provide yet.
pub const NOT_YET: &[&str] = &["tencent-vpc"];

/// The backend the config's `Backend.Type` names, configured for this host.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    let t = inputs.network.backend_type();
    if let Some(r) = REGISTRY.iter().find(|r| r.type_name == t) {
        let backend = (r.build)(inputs)?;
        check_pod_mtu(&*backend, inputs.network, inputs.underlay)?;
        return Ok(backend);
    }
    if NOT_YET.contains(&t) {
        return Err(BackendError::NotYet {
            name: t.to_owned(),
            available: available(),
        });
    }
    Err(BackendError::Unknown(t.to_owned()))
}

/// The type names of [`REGISTRY`], for messages (`vxlan, host-gw, udp, alloc, ipip, …`).
pub fn available() -> String {
    let names: Vec<&str> = REGISTRY.iter().map(|r| r.type_name).collect();
    names.join(", ")
}

#[cfg(test)]
pub(crate) mod tests;
