//! Everything gathered about one node, as plain data. `None` or an error text where a fact
//! could not be read; the checks say so instead of guessing.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use flannel_model::{Lease, SubnetEnv};
use flannel_planner::state::KernelState;

/// What `/healthz` and `/readyz` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    /// `/readyz` answered 200.
    Ready,
    /// `/healthz` answered but `/readyz` did not say ready.
    NotReady,
    /// Nothing answered at the health address.
    NotRunning {
        /// `127.0.0.1:10299`, say.
        addr: String,
        /// Why the connection failed.
        error: String,
    },
    /// `--healthz-port=0`: flanneld serves no health endpoint.
    NotChecked,
}

/// The subnet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubnetFile {
    /// It does not exist.
    Missing,
    /// It exists but could not be read.
    Unreadable(String),
    /// Parsed.
    Present(SubnetEnv),
}

/// The external interface flanneld would choose with these flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtIface {
    /// Its name.
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// The IPv4 address advertised (`PublicIP`).
    pub public_ip: Option<Ipv4Addr>,
}

/// The backend the network config names, as configured for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFacts {
    /// `vxlan`, `host-gw`, ...
    pub name: String,
    /// The MTU pods should get (`FLANNEL_MTU`).
    pub pod_mtu: u32,
    /// The devices it owns (`flannel.1`).
    pub devs: Vec<String>,
    /// The UDP port its traffic uses (vxlan 8472, udp 8285), if any.
    pub udp_port: Option<u16>,
    /// What it wants in the kernel with no peers (its devices and addresses).
    pub base: KernelState,
}

/// One peer's lease and what the backend wants in the kernel for it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFacts {
    /// The peer's lease.
    pub lease: Lease,
    /// Its routes, neighbours and FDB entries.
    pub want: KernelState,
}

/// A link's MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMtu {
    /// The link.
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
}

/// A device's tx checksum offload (`tx-checksum-ip-generic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxChecksum {
    /// The device.
    pub dev: String,
    /// On, off, or `None` when it could not be read.
    pub on: Option<bool>,
}

/// Everything gathered about the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    /// flanneld's health endpoints.
    pub daemon: Option<Daemon>,
    /// `--subnet-file`.
    pub subnet_file: PathBuf,
    /// Its content.
    pub subnet_env: Option<SubnetFile>,
    /// The external interface, or why none was found.
    pub ext_iface: Option<Result<ExtIface, String>>,
    /// Why the registry could not be read, if it could not.
    pub registry_error: Option<String>,
    /// Our lease (the one advertising our public IP).
    pub own_lease: Option<Lease>,
    /// Every other lease.
    pub other_leases: Vec<Lease>,
    /// The backend, when the config and the interface allowed building it.
    pub backend: Option<BackendFacts>,
    /// Why the backend could not be built, if it could not.
    pub backend_error: Option<String>,
    /// Each peer the backend programs.
    pub peers: Vec<PeerFacts>,
    /// What the kernel holds on the backend's devices (and its routes elsewhere).
    pub observed: Option<KernelState>,
    /// The MTU of each device the backend owns, as the kernel has it.
    pub dev_mtus: Vec<LinkMtu>,
    /// `cni0` and the pod veths attached to it.
    pub pod_links: Vec<LinkMtu>,
    /// `uname -r`.
    pub kernel_release: String,
    /// tx checksum offload of the backend's vxlan devices.
    pub tx_checksum: Vec<TxChecksum>,
    /// `net.ipv4.conf.<iface>.rp_filter` for `all`, the external interface and our devices.
    pub rp_filter: Vec<(String, u8)>,
    /// `iptables-save` output, when it could be run.
    pub iptables: Option<String>,
}
