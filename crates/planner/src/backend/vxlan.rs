//! `vxlan`: `flannel.<VNI>` (with IPv4) and `flannel-v6.<VNI>` (with IPv6; an IPv6-only
//! network has only this one), VTEP MACs derived from the
//! public IPs (or the stored ones), and either a route + neighbour + FDB entry per peer
//! ([`crate::vxlan`]) or, with `Mode: on-demand`, one route and answers to the kernel's misses
//! ([`crate::ondemand`], [`RuntimeSpec::MissResponder`]).

use std::net::IpAddr;

use flannel_model::{Lease, SubnetKey, VxlanLeaseData};
use ipnet::Ipv4Net;

use crate::backend::{Backend, BackendError, Inputs, LeaseData, RuntimeSpec};
use crate::ext_iface::ExtIface;
use crate::ondemand;
use crate::skipped::Skipped;
use crate::state::KernelState;
use crate::vxlan::{derive_vtep_mac, desired_state, VtepMacs, VxlanMode, VxlanOptions};

/// The vxlan backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    opts: VxlanOptions,
    macs: VtepMacs,
    ext: ExtIface,
    /// `Network` (the on-demand mode routes all of it to the device).
    network: Option<Ipv4Net>,
    /// `PublicIPv6` (with IPv6 enabled).
    public_ipv6: Option<std::net::Ipv6Addr>,
}

/// Build it: read the options, check the mode against the config, pick the VTEP MACs.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    Ok(Box::new(Vxlan::new(inputs)?))
}

impl Vxlan {
    /// The configured backend (see [`build`]).
    pub fn new(inputs: &Inputs<'_>) -> Result<Self, BackendError> {
        let network = inputs.network;
        let opts = VxlanOptions::from_backend(&network.backend.raw)?;
        let ext = inputs.ext_iface_for_stack()?;
        if opts.mode == VxlanMode::OnDemand {
            if ext.addr_v6.is_some() {
                return Err(BackendError::OnDemandIpv6);
            }
            if network.network.is_none() || ext.v4().is_none() {
                return Err(BackendError::OnDemandNoNetwork);
            }
        }
        // The public IP identifies this host in etcd; the MAC follows it (the IPv6 device's
        // MAC follows the public IPv6 address). MACs a previous run stored win.
        // (IPv6-only: no IPv4 device; its MAC is never used.)
        let public_ip = inputs.public_ip().unwrap_or(ext.addr);
        let public_ipv6 = ext
            .addr_v6
            .map(|a| inputs.underlay.public_ipv6.unwrap_or(a));
        let mut macs = VtepMacs {
            v4: derive_vtep_mac(opts.vni, public_ip),
            v6: public_ipv6.map(|a| derive_vtep_mac(opts.vni, a)),
        };
        if let Some(mac) = inputs.stored.vtep_mac {
            macs.v4 = mac;
        }
        if let (Some(slot), Some(mac)) = (macs.v6.as_mut(), inputs.stored.vtep_mac_v6) {
            *slot = mac;
        }
        Ok(Vxlan {
            opts,
            macs,
            ext,
            network: network.network,
            public_ipv6,
        })
    }
}

impl Backend for Vxlan {
    fn name(&self) -> &'static str {
        "vxlan"
    }

    fn lease_data(&self) -> LeaseData {
        let data = |mac| {
            VxlanLeaseData {
                vni: self.opts.vni,
                vtep_mac: mac,
            }
            .to_raw()
        };
        LeaseData {
            backend_type: "vxlan",
            // Go's newSubnetAttrs: no BackendData without the IPv4 device.
            backend_data: self.ext.v4().map(|_| data(self.macs.v4)),
            backend_v6_data: self.macs.v6.map(data),
            public_ipv6: self.public_ipv6,
        }
    }

    /// The smaller of the two devices' MTUs when both exist (Flannel subtracts 50 for both,
    /// see `VXLAN_OVERHEAD_V6`); the IPv6 device's in an IPv6-only network.
    fn pod_mtu(&self) -> u32 {
        if self.ext.v4().is_none() {
            return self.opts.device_mtu_v6(self.ext.mtu);
        }
        self.opts.pod_mtu(self.ext.mtu, self.ext.addr_v6.is_some())
    }

    fn owned_devs(&self) -> Vec<String> {
        let mut devs = Vec::new();
        if self.ext.v4().is_some() {
            devs.push(self.opts.device_name());
        }
        if self.ext.addr_v6.is_some() {
            devs.push(self.opts.device_name_v6());
        }
        devs
    }

    fn route_devs(&self) -> Vec<String> {
        vec![self.ext.name.clone()]
    }

    /// DirectRouting: the peer's public IPs (v4, and v6 with IPv6 on).
    fn on_link_queries(&self, peer: &Lease) -> Vec<IpAddr> {
        if !self.opts.direct_routing {
            return Vec::new();
        }
        let v6 = peer
            .attrs
            .public_ipv6
            .filter(|_| self.ext.addr_v6.is_some() && peer.subnet.ipv6.is_some())
            .map(IpAddr::V6);
        let v4 = self.ext.v4().map(|_| IpAddr::V4(peer.attrs.public_ip));
        v4.into_iter().chain(v6).collect()
    }

    fn desired(
        &self,
        own: &SubnetKey,
        peers: &mut dyn Iterator<Item = &Lease>,
        on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        match (self.opts.mode, self.network) {
            (VxlanMode::OnDemand, Some(net)) => (
                ondemand::desired_state(&self.opts, &self.ext, own, self.macs.v4, net),
                Vec::new(),
            ),
            _ => desired_state(&self.opts, &self.ext, own, self.macs, peers, on_link),
        }
    }

    /// `MTU` is the size of the encapsulated packets: larger than the external interface's
    /// MTU, they do not fit the underlay.
    fn warnings(&self) -> Vec<String> {
        match self.opts.mtu {
            Some(mtu) if mtu > self.ext.mtu => vec![format!(
                "the vxlan MTU option {mtu} exceeds the MTU of {} ({}): encapsulated packets \
                 larger than {} will be dropped or fragmented on the underlay",
                self.ext.name, self.ext.mtu, self.ext.mtu
            )],
            _ => Vec::new(),
        }
    }

    fn runtime(&self) -> Option<RuntimeSpec> {
        (self.opts.mode == VxlanMode::OnDemand).then(|| RuntimeSpec::MissResponder {
            dev: self.opts.device_name(),
        })
    }
}
