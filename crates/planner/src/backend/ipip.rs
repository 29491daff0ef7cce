//! `ipip`: IP-in-IP, as Flannel's ipip backend. One tunnel device `flannel.ipip` (kind ipip,
//! `local` = the external interface's address, any remote) with our subnet's first address
//! as /32, and per peer `<subnet> via <PublicIP> dev flannel.ipip onlink`: the gateway is the
//! outer destination. With `DirectRouting`, a peer on our L2 segment is routed
//! `via <PublicIP> dev <ext> onlink` without encapsulation (Flannel only swaps the device and
//! keeps the flag). IPv4 only.

use std::net::IpAddr;

use flannel_model::gojson::{self, FieldRef};
use flannel_model::{Lease, SubnetKey};
use ipnet::IpNet;

use crate::backend::{Backend, BackendError, Inputs, LeaseData};
use crate::ext_iface::ExtIface;
use crate::link::IpipLink;
use crate::skipped::Skipped;
use crate::state::{Addr, KernelState, LinkSpec, Route};
use crate::vxlan::host_net;

/// The tunnel device (Flannel's `tunnelName`; the kernel's own `tunl0` is left alone).
pub const DEVICE: &str = "flannel.ipip";

/// `BackendType` of our lease and of the peers we route to.
pub const BACKEND_TYPE: &str = "ipip";

/// Bytes the encapsulation adds: the outer IPv4 header.
pub const ENCAP_OVERHEAD: u32 = 20;

/// Flannel's refusal of a device named `flannel.ipip` that is not an ipip device.
pub const FOREIGN_DEVICE_ERROR: &str =
    "flannel.ipip isn't an ipip mode device, please remove device and try again";

/// The ipip backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipip {
    ext: ExtIface,
    /// `DirectRouting`: peers on our L2 segment are routed without the tunnel.
    direct_routing: bool,
}

/// Build it: reads `DirectRouting`; IPv4 only; the external MTU must leave room for the
/// outer header.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    if inputs.network.enable_ipv6 {
        return Err(BackendError::IpipIpv6);
    }
    let direct_routing = match inputs.network.backend.raw.as_object() {
        Some(obj) => gojson::get_bool(obj, FieldRef::new("", "DirectRouting"))
            .map_err(|e| BackendError::IpipConfig(e.to_string()))?
            .unwrap_or(false),
        None => false,
    };
    let ext = inputs.ext_iface()?;
    if ext.mtu <= ENCAP_OVERHEAD {
        return Err(BackendError::IpipMtu {
            mtu: ext.mtu,
            ext: ext.name,
        });
    }
    Ok(Box::new(Ipip {
        ext,
        direct_routing,
    }))
}

impl Ipip {
    /// `flannel.ipip` as wanted: `local` = the external interface's address, remote any,
    /// MTU = the external interface's − 20, up.
    pub fn link(&self) -> IpipLink {
        IpipLink {
            name: DEVICE.to_owned(),
            local: self.ext.addr,
            remote: std::net::Ipv4Addr::UNSPECIFIED,
            mtu: self.ext.mtu - ENCAP_OVERHEAD,
            up: true,
        }
    }
}

impl Backend for Ipip {
    fn name(&self) -> &'static str {
        BACKEND_TYPE
    }

    /// `BackendType:"ipip"` and no data: a peer needs only our `PublicIP`.
    fn lease_data(&self) -> LeaseData {
        LeaseData {
            backend_type: BACKEND_TYPE,
            ..LeaseData::default()
        }
    }

    fn pod_mtu(&self) -> u32 {
        self.ext.mtu - ENCAP_OVERHEAD
    }

    fn owned_devs(&self) -> Vec<String> {
        vec![DEVICE.to_owned()]
    }

    /// DirectRouting routes go on the external interface.
    fn route_devs(&self) -> Vec<String> {
        vec![self.ext.name.clone()]
    }

    fn on_link_queries(&self, peer: &Lease) -> Vec<IpAddr> {
        if self.direct_routing {
            vec![IpAddr::V4(peer.attrs.public_ip)]
        } else {
            Vec::new()
        }
    }

    fn desired(
        &self,
        own: &SubnetKey,
        peers: &mut dyn Iterator<Item = &Lease>,
        on_link: &dyn Fn(IpAddr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        let mut state = KernelState::default();
        state
            .links
            .insert(DEVICE.to_owned(), LinkSpec::Ipip(self.link()));
        state.addrs.insert(Addr {
            dev: DEVICE.to_owned(),
            net: IpNet::V4(host_net(own.ipv4)),
        });
        let mut skipped = Vec::new();
        for lease in peers {
            if lease.attrs.backend_type != BACKEND_TYPE {
                skipped.push(Skipped {
                    subnet: lease.subnet,
                    reason: format!("backend type {:?} is not ipip", lease.attrs.backend_type),
                });
                continue;
            }
            let gateway = IpAddr::V4(lease.attrs.public_ip);
            let direct = self.direct_routing && on_link(gateway);
            state.routes.insert(Route {
                dst: IpNet::V4(lease.subnet.ipv4),
                gateway: Some(gateway),
                dev: if direct {
                    self.ext.name.clone()
                } else {
                    DEVICE.to_owned()
                },
                // Flannel keeps `onlink` on the direct route too.
                onlink: true,
            });
        }
        (state, skipped)
    }
}
