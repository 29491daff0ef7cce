//! Backends: how packets reach other hosts. Each decides what this host advertises in its
//! lease (`BackendType`, `BackendData`), the MTU pods get, and — through the planner — what the
//! kernel should hold for a set of peers.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use flannel_kernel::iface::ExternalInterface;
use flannel_model::{Lease, NetworkConfig, RawJson, SubnetKey};
use flannel_planner::diff::Scope;
use flannel_planner::hostgw;
use flannel_planner::state::{KernelState, MacAddr, Route};
use flannel_planner::vxlan::{self, ExtIface, Skipped, VxlanLeaseData, VxlanOptions};

/// Backend types Flannel knows that this build does not provide yet.
const NOT_YET: &[&str] = &[
    "udp",
    "ipip",
    "wireguard",
    "ipsec",
    "extension",
    "tencent-vpc",
];

/// The configured backend.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `alloc`: lease only, no data path.
    Alloc { mtu: u32 },
    /// `vxlan`, current scheme: route + neighbour + FDB entry per peer.
    Vxlan {
        opts: VxlanOptions,
        mac: MacAddr,
        ext: ExtIface,
    },
    /// `host-gw`: one route per peer via its public IP.
    HostGw { ext: ExtIface },
}

impl Backend {
    /// Pick and configure the backend for the network config.
    pub fn new(network: &NetworkConfig, ext: &ExternalInterface) -> Result<Self> {
        let ext_facts = || -> Result<ExtIface> {
            Ok(ExtIface {
                name: ext.name.clone(),
                index: ext.index,
                mtu: ext.mtu,
                addr: ext
                    .iface_addr
                    .context("the external interface has no IPv4 address")?,
            })
        };
        match network.backend_type() {
            "alloc" => Ok(Backend::Alloc { mtu: ext.mtu }),
            "vxlan" => {
                let opts = VxlanOptions::from_backend(&network.backend.raw)?;
                let facts = ext_facts()?;
                // The public IP identifies this host in etcd; the MAC follows it.
                let public_ip = ext.ext_addr.unwrap_or(facts.addr);
                let mac = vxlan::derive_vtep_mac(opts.vni, public_ip);
                Ok(Backend::Vxlan {
                    opts,
                    mac,
                    ext: facts,
                })
            }
            "host-gw" => {
                let facts = ext_facts()?;
                let public = ext.ext_addr.unwrap_or(facts.addr);
                hostgw::check_not_nat(public, facts.addr).map_err(anyhow::Error::msg)?;
                Ok(Backend::HostGw { ext: facts })
            }
            t if NOT_YET.contains(&t) => bail!(
                "backend type {t:?} is not available in this build of flannel-rs yet \
                 (available: vxlan, host-gw, alloc)"
            ),
            t => bail!("unknown backend type: {t}"),
        }
    }

    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Alloc { .. } => "alloc",
            Backend::Vxlan { .. } => "vxlan",
            Backend::HostGw { .. } => "host-gw",
        }
    }

    /// `BackendType` written in our lease (empty for alloc, as Flannel writes it).
    pub fn lease_type(&self) -> &'static str {
        match self {
            Backend::Alloc { .. } => "",
            Backend::Vxlan { .. } => "vxlan",
            Backend::HostGw { .. } => "host-gw",
        }
    }

    /// `BackendData` written in our lease.
    pub fn backend_data(&self) -> Option<RawJson> {
        match self {
            Backend::Alloc { .. } | Backend::HostGw { .. } => None,
            Backend::Vxlan { opts, mac, .. } => Some(
                VxlanLeaseData {
                    vni: opts.vni,
                    vtep_mac: *mac,
                }
                .to_raw(),
            ),
        }
    }

    /// MTU for pods (`FLANNEL_MTU`).
    pub fn mtu(&self) -> u32 {
        match self {
            Backend::Alloc { mtu } => *mtu,
            Backend::Vxlan { opts, ext, .. } => opts.device_mtu(ext.mtu),
            Backend::HostGw { ext } => ext.mtu,
        }
    }

    /// Whether this backend programs the kernel at all.
    pub fn has_datapath(&self) -> bool {
        !matches!(self, Backend::Alloc { .. })
    }

    /// Devices flanneld owns wholly (every entry on them is ours).
    pub fn owned_devs(&self) -> Vec<String> {
        match self {
            Backend::Vxlan { opts, .. } => vec![opts.device_name()],
            _ => Vec::new(),
        }
    }

    /// Other devices whose routes we program (and observe).
    pub fn route_devs(&self) -> Vec<String> {
        match self {
            Backend::Vxlan { ext, .. } | Backend::HostGw { ext } => vec![ext.name.clone()],
            Backend::Alloc { .. } => Vec::new(),
        }
    }

    /// What the kernel should hold for our lease and these peers.
    pub fn desired<'a>(
        &self,
        own: &SubnetKey,
        peers: impl IntoIterator<Item = &'a Lease>,
        on_link: &dyn Fn(Ipv4Addr) -> bool,
    ) -> (KernelState, Vec<Skipped>) {
        match self {
            Backend::Alloc { .. } => (KernelState::default(), Vec::new()),
            Backend::Vxlan { opts, mac, ext } => {
                vxlan::desired_state(opts, ext, own, *mac, peers, on_link)
            }
            Backend::HostGw { ext } => hostgw::desired_state(ext, peers),
        }
    }

    /// The ownership scope for diffs, given the routes our journal says we installed.
    pub fn scope(&self, journal: &BTreeSet<Route>) -> Scope {
        Scope {
            owned_devs: self.owned_devs().into_iter().collect(),
            owned_routes: journal.clone(),
        }
    }
}
