//! `wireguard`: encrypted tunnels between hosts, one WireGuard peer per lease
//! ([`crate::wireguard`]). In the kernel implementation flanneld creates `flannel-wg` (and
//! `flannel-wg-v6`) as `wireguard` links with their addresses and routes, and its runtime
//! sets the key and the peers over generic netlink; in the userspace implementation the
//! runtime opens TUN devices of the same names and the kernel holds only the routes. Either
//! way the runtime ([`RuntimeSpec::Wireguard`]) reconciles the peers.

use std::net::{IpAddr, Ipv6Addr};

use flannel_model::{Lease, SubnetKey, WireguardLeaseData};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::backend::{Backend, BackendError, Inputs, LeaseData, RuntimeSpec};
use crate::link::{LinkSpec, WireguardLink};
use crate::skipped::Skipped;
use crate::state::{Addr, KernelState, Route};
use crate::wireguard::{
    devices, Implementation, Local, WgDevice, WgOptions, WireguardHost, FLANNEL_OVERHEAD,
};

/// The wireguard backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wireguard {
    opts: WgOptions,
    host: WireguardHost,
    devices: Vec<WgDevice>,
    local: Local,
    base_mtu: u32,
    ext_mtu: u32,
    enable_v4: bool,
    enable_v6: bool,
    network: Option<Ipv4Net>,
    network_v6: Option<Ipv6Net>,
    public_ipv6: Option<Ipv6Addr>,
}

/// Everything the runtime needs to keep the devices' peers right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardRuntime {
    /// Kernel or userspace.
    pub implementation: Implementation,
    /// The devices, in the order the backend lists them.
    pub devices: Vec<WgDevice>,
    /// The options (keepalive, PSK, mode).
    pub opts: WgOptions,
    /// Our key and public addresses.
    pub local: Local,
}

/// Build it: read the options; the key and implementation come from flanneld.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    Ok(Box::new(Wireguard::new(inputs)?))
}

impl Wireguard {
    /// The configured backend (see [`build`]).
    pub fn new(inputs: &Inputs<'_>) -> Result<Self, BackendError> {
        let network = inputs.network;
        let opts = WgOptions::from_backend(&network.backend.raw)?;
        let host = inputs.wireguard.ok_or(BackendError::WireguardNoKey)?;
        let ext = inputs.ext_iface()?;
        let base_mtu = opts.mtu.unwrap_or(ext.mtu);
        let enable_v4 = network.enable_ipv4;
        let enable_v6 = network.enable_ipv6;
        let public_ipv6 = ext
            .addr_v6
            .map(|a| inputs.underlay.public_ipv6.unwrap_or(a));
        let local = Local {
            public_key: host.public_key,
            public_ip: Some(inputs.underlay.public_ip.unwrap_or(ext.addr)),
            public_ipv6,
        };
        Ok(Wireguard {
            devices: devices(&opts, enable_v4, enable_v6, base_mtu),
            opts,
            host,
            local,
            base_mtu,
            ext_mtu: ext.mtu,
            enable_v4,
            enable_v6,
            network: network.network,
            network_v6: network.ipv6_network,
            public_ipv6,
        })
    }

    fn kernel(&self) -> bool {
        self.host.implementation == Implementation::Kernel
    }

    fn dev_names(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.name.clone()).collect()
    }
}

impl Backend for Wireguard {
    fn name(&self) -> &'static str {
        "wireguard"
    }

    fn lease_data(&self) -> LeaseData {
        let data = |port| {
            WireguardLeaseData {
                public_key: self.host.public_key,
                port,
            }
            .to_raw()
        };
        let v4_port = self
            .devices
            .iter()
            .find(|d| d.families.v4)
            .map(|d| d.listen_port);
        let v6_port = self
            .devices
            .iter()
            .find(|d| d.families.v6)
            .map(|d| d.listen_port);
        LeaseData {
            backend_type: "wireguard",
            backend_data: v4_port.filter(|_| self.enable_v4).map(data),
            backend_v6_data: v6_port.filter(|_| self.enable_v6).map(data),
            public_ipv6: self.public_ipv6.filter(|_| self.enable_v6),
        }
    }

    /// Flannel's `MTU − 80` whatever the underlay, so nodes of either implementation and
    /// either underlay family agree.
    fn pod_mtu(&self) -> u32 {
        self.base_mtu.saturating_sub(FLANNEL_OVERHEAD)
    }

    fn owned_devs(&self) -> Vec<String> {
        if self.kernel() {
            self.dev_names()
        } else {
            Vec::new()
        }
    }

    fn route_devs(&self) -> Vec<String> {
        if self.kernel() {
            Vec::new()
        } else {
            self.dev_names()
        }
    }

    fn desired(
        &self,
        own: &SubnetKey,
        _peers: &mut dyn Iterator<Item = &Lease>,
        _on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        // The peers live in the devices (the runtime's), not in the routing table.
        let mut state = KernelState::default();
        for dev in &self.devices {
            if self.kernel() {
                state.links.insert(
                    dev.name.clone(),
                    LinkSpec::Wireguard(WireguardLink {
                        name: dev.name.clone(),
                        mtu: dev.mtu,
                        up: true,
                    }),
                );
            }
            if dev.families.v4 {
                if let Some(net) = self.network {
                    let addr = own.ipv4.network();
                    if self.kernel() {
                        state.addrs.insert(Addr {
                            dev: dev.name.clone(),
                            net: IpNet::V4(Ipv4Net::new(addr, 32).unwrap_or(own.ipv4)),
                        });
                    }
                    state.routes.insert(Route {
                        dst: IpNet::V4(net),
                        gateway: None,
                        dev: dev.name.clone(),
                        onlink: false,
                    });
                }
            }
            if dev.families.v6 {
                if let (Some(net), Some(sub)) = (self.network_v6, own.ipv6) {
                    if self.kernel() {
                        state.addrs.insert(Addr {
                            dev: dev.name.clone(),
                            net: IpNet::V6(Ipv6Net::new(sub.network(), 128).unwrap_or(sub)),
                        });
                    }
                    state.routes.insert(Route {
                        dst: IpNet::V6(net),
                        gateway: None,
                        dev: dev.name.clone(),
                        onlink: false,
                    });
                }
            }
        }
        (state, Vec::new())
    }

    fn runtime(&self) -> Option<RuntimeSpec> {
        Some(RuntimeSpec::Wireguard(WireguardRuntime {
            implementation: self.host.implementation,
            devices: self.devices.clone(),
            opts: self.opts.clone(),
            local: self.local,
        }))
    }

    fn warnings(&self) -> Vec<String> {
        match self.opts.mtu {
            Some(mtu) if mtu > self.ext_mtu => vec![format!(
                "the wireguard MTU option {mtu} exceeds the MTU of the external interface ({}): \
                 encrypted packets that do not fit will be dropped or fragmented on the underlay",
                self.ext_mtu
            )],
            _ => Vec::new(),
        }
    }
}
