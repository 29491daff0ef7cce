//! Gathering the facts `flannelctl status` and `flannelctl doctor` judge, with flanneld's own
//! flags: `/healthz` and `/readyz` at `--healthz-ip:--healthz-port`, `--subnet-file`, the
//! network config and every lease from etcd, the external interface flanneld would choose, the
//! backend the config names (built by the same planner code flanneld runs), what the kernel
//! holds on its devices, the pod interfaces' MTUs, tx checksum offload (`ethtool -k`),
//! `rp_filter` and `iptables-save`. The judging is `flannel_doctor`'s.
//!
//! Kubernetes mode (`--kube-subnet-mgr`) is not read yet: the registry facts stay empty and
//! doctor says so.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use flannel_doctor::facts::{
    BackendFacts, Daemon, ExtIface, LinkMtu, NodeFacts, PeerFacts, SubnetFile, TxChecksum,
};
use flannel_kernel::iface::{discover_external_interface, ExternalInterface, IfaceRequest};
use flannel_kernel::{Kernel, ObserveScope};
use flannel_model::{Lease, NetworkConfig, SubnetEnv};
use flannel_planner::backend::{self, Backend, Inputs, Stored};
use flannel_planner::offload;
use flannel_planner::state::KernelState;
use flannel_registry::etcd::{EtcdConfig, EtcdStore};
use flannel_registry::SubnetStore;
use flanneld_cli::cli::Flags;
use futures_util::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;

/// How long one health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The name of the bridge the flannel CNI plugin attaches pods to.
pub const POD_BRIDGE: &str = "cni0";

/// Gather every fact about this node, as flanneld with `flags` would see it.
pub async fn gather(flags: &Flags) -> NodeFacts {
    let mut f = NodeFacts {
        daemon: Some(probe_daemon(flags)),
        subnet_file: flags.subnet_file.clone(),
        subnet_env: Some(match SubnetEnv::read(&flags.subnet_file) {
            Ok(Some(env)) => SubnetFile::Present(env),
            Ok(None) => SubnetFile::Missing,
            Err(e) => SubnetFile::Unreadable(e.to_string()),
        }),
        kernel_release: offload_release(),
        ..NodeFacts::default()
    };
    let mut network = None;
    let mut leases = Vec::new();
    if flags.kube_subnet_mgr {
        f.registry_error = Some(
            "--kube-subnet-mgr: reading leases from Kubernetes is not supported by flannelctl yet"
                .to_owned(),
        );
    } else {
        match read_etcd(flags).await {
            Ok((n, l)) => {
                network = Some(n);
                leases = l;
            }
            Err(e) => f.registry_error = Some(e),
        }
    }
    let ext = discover_external_interface(&iface_request(flags, network.as_ref())).await;
    f.ext_iface = Some(match &ext {
        Ok(e) => Ok(ExtIface {
            name: e.name.clone(),
            mtu: e.mtu,
            public_ip: e.ext_addr,
        }),
        Err(e) => Err(e.to_string()),
    });
    let public_ip = ext.as_ref().ok().and_then(|e| e.ext_addr);
    let (own, others): (Vec<Lease>, Vec<Lease>) = leases
        .into_iter()
        .partition(|l| Some(l.attrs.public_ip) == public_ip && public_ip.is_some());
    f.own_lease = own.into_iter().next();
    f.other_leases = others;

    let kernel = Kernel::connect().ok();
    if let (Some(network), Ok(ext)) = (&network, &ext) {
        match build_backend(network, ext) {
            Ok(b) => {
                if let Some(own) = f.own_lease.clone() {
                    fill_backend(&mut f, &*b, &own, kernel.as_ref()).await;
                } else {
                    f.backend = Some(backend_facts(&*b, KernelState::default()));
                }
            }
            Err(e) => f.backend_error = Some(e),
        }
    }
    if let Some(k) = &kernel {
        f.pod_links = pod_links(k).await;
    }
    if let Some(b) = &f.backend {
        if b.name == "vxlan" {
            f.tx_checksum = b
                .devs
                .iter()
                .map(|d| TxChecksum {
                    dev: d.clone(),
                    on: ethtool_tx_checksum(d),
                })
                .collect();
        }
        let mut names = vec!["all".to_owned()];
        names.extend(b.devs.iter().cloned());
        f.rp_filter = names
            .into_iter()
            .filter_map(|n| {
                let v = std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{n}/rp_filter"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                Some((n, v))
            })
            .collect();
    }
    f.iptables = Command::new("iptables-save")
        .args(["-t", "filter"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    f
}

/// The backend's facts, its peers' wanted entries and what the kernel holds.
async fn fill_backend(f: &mut NodeFacts, b: &dyn Backend, own: &Lease, kernel: Option<&Kernel>) {
    let (base, _) = b.desired(&own.subnet, &mut std::iter::empty(), &|_| false);
    let mut on_link: HashSet<IpAddr> = HashSet::new();
    if let Some(k) = kernel {
        for peer in &f.other_leases {
            for ip in b.on_link_queries(peer) {
                if matches!(k.route_get(ip).await, Ok(a) if a.gateway.is_none()) {
                    on_link.insert(ip);
                }
            }
        }
    }
    for peer in &f.other_leases {
        let (one, skipped) = b.desired(&own.subnet, &mut [peer.clone()].iter(), &|ip| {
            on_link.contains(&ip)
        });
        if !skipped.is_empty() {
            continue;
        }
        let want = KernelState {
            routes: one.routes.difference(&base.routes).cloned().collect(),
            neighs: one.neighs.difference(&base.neighs).cloned().collect(),
            fdb: one.fdb.difference(&base.fdb).cloned().collect(),
            ..KernelState::default()
        };
        f.peers.push(PeerFacts {
            lease: peer.clone(),
            want,
        });
    }
    if let Some(k) = kernel {
        let scope = ObserveScope {
            devs: b.owned_devs(),
            route_devs: b.route_devs(),
            blackholes: false,
        };
        if let Ok(observed) = k.observe(&scope).await {
            f.dev_mtus = observed
                .links
                .iter()
                .map(|(name, l)| LinkMtu {
                    name: name.clone(),
                    mtu: l.mtu(),
                })
                .collect();
            f.observed = Some(observed);
        }
    }
    f.backend = Some(backend_facts(b, base));
}

fn backend_facts(b: &dyn Backend, base: KernelState) -> BackendFacts {
    let udp_port = match (b.name(), b.runtime()) {
        (_, Some(backend::RuntimeSpec::UdpProxy { port, .. })) => Some(port),
        ("vxlan", _) => base.links.values().find_map(|l| {
            #[allow(unreachable_patterns)] // other link kinds carry no vxlan port
            match l {
                flannel_planner::state::LinkSpec::Vxlan(v) => Some(if v.port == 0 {
                    flannel_planner::state::DEFAULT_VXLAN_PORT
                } else {
                    v.port
                }),
                _ => None,
            }
        }),
        _ => None,
    };
    BackendFacts {
        name: b.name().to_owned(),
        pod_mtu: b.pod_mtu(),
        devs: b.owned_devs(),
        udp_port,
        base,
    }
}

fn build_backend(
    network: &NetworkConfig,
    ext: &ExternalInterface,
) -> Result<Box<dyn Backend>, String> {
    let underlay = ext.underlay();
    backend::build(&Inputs {
        network,
        underlay: &underlay,
        stored: Stored::default(),
        // The wireguard backend needs this node's key; status and doctor do not read it yet,
        // so for wireguard they report that the backend cannot be rebuilt (docs/observability.md).
        wireguard: None,
    })
    .map_err(|e| e.to_string())
}

/// flanneld's interface request from its flags and the network config.
fn iface_request(flags: &Flags, network: Option<&NetworkConfig>) -> IfaceRequest {
    IfaceRequest {
        ifaces: flags.iface.clone(),
        iface_regexes: flags.iface_regex.clone(),
        iface_can_reach: flags.iface_can_reach,
        public_ip: flags.public_ip,
        public_ipv6: flags.public_ipv6,
        ipv4: network.is_none_or(|n| n.enable_ipv4),
        ipv6: network.is_some_and(|n| n.enable_ipv6),
    }
}

/// The network config and every lease under `--etcd-prefix`.
async fn read_etcd(flags: &Flags) -> Result<(NetworkConfig, Vec<Lease>), String> {
    let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
    let cfg = EtcdConfig {
        endpoints: flags.etcd_endpoints(),
        prefix: flags.etcd_prefix.clone(),
        keyfile: flags.etcd_keyfile.clone(),
        certfile: flags.etcd_certfile.clone(),
        cafile: flags.etcd_cafile.clone(),
        username: nonempty(&flags.etcd_username),
        password: nonempty(&flags.etcd_password),
        ..EtcdConfig::default()
    };
    let endpoints = flags.etcd_endpoints.clone();
    let store = EtcdStore::connect(cfg).map_err(|e| format!("etcd at {endpoints}: {e}"))?;
    let text = store
        .get_network_config()
        .await
        .map_err(|e| format!("reading the network config from etcd at {endpoints}: {e}"))?;
    let network = NetworkConfig::parse_checked(&text)
        .map_err(|e| format!("the network config in etcd is not valid: {e}"))?;
    let (stored, _) = store
        .list_leases()
        .await
        .map_err(|e| format!("reading the leases from etcd at {endpoints}: {e}"))?;
    Ok((network, stored.into_iter().map(|s| s.lease).collect()))
}

/// `/healthz`, then `/readyz`, at `--healthz-ip:--healthz-port` (0.0.0.0 and :: mean this host).
fn probe_daemon(flags: &Flags) -> Daemon {
    if flags.healthz_port == 0 {
        return Daemon::NotChecked;
    }
    let ip = match flags.healthz_ip {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, flags.healthz_port);
    match http_status(addr, "/healthz") {
        Err(error) => Daemon::NotRunning {
            addr: addr.to_string(),
            error,
        },
        Ok(_) => match http_status(addr, "/readyz") {
            Ok(200) => Daemon::Ready,
            _ => Daemon::NotReady,
        },
    }
}

/// The HTTP status of `GET path`.
pub fn http_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    http_get(addr, path).map(|(status, _)| status)
}

/// `GET path` over HTTP/1.0: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:.40}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `cni0` and the links attached to it (the pods' host-side veths).
async fn pod_links(kernel: &Kernel) -> Vec<LinkMtu> {
    let Ok(links) = kernel
        .rtnetlink()
        .link()
        .get()
        .execute()
        .try_collect::<Vec<_>>()
        .await
    else {
        return Vec::new();
    };
    let facts: Vec<(u32, String, u32, Option<u32>)> = links
        .iter()
        .map(|m| {
            let mut name = String::new();
            let mut mtu = 0;
            let mut master = None;
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => name.clone_from(n),
                    LinkAttribute::Mtu(v) => mtu = *v,
                    LinkAttribute::Controller(i) => master = Some(*i),
                    _ => {}
                }
            }
            (m.header.index, name, mtu, master)
        })
        .collect();
    let Some(bridge) = facts.iter().find(|l| l.1 == POD_BRIDGE).map(|l| l.0) else {
        return Vec::new();
    };
    facts
        .into_iter()
        .filter(|l| l.0 == bridge || l.3 == Some(bridge))
        .map(|(_, name, mtu, _)| LinkMtu { name, mtu })
        .collect()
}

fn offload_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `tx-checksum-ip-generic` of `dev`, from `ethtool -k`.
fn ethtool_tx_checksum(dev: &str) -> Option<bool> {
    let out = Command::new("ethtool").arg("-k").arg(dev).output().ok()?;
    out.status
        .success()
        .then(|| offload::parse_ethtool_features(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

/// `ethtool -K <dev> tx-checksum-ip-generic off` (doctor --fix).
pub fn disable_tx_checksum(dev: &str) -> Result<(), String> {
    let out = Command::new("ethtool")
        .args(["-K", dev, offload::FEATURE, "off"])
        .output()
        .map_err(|e| format!("cannot run ethtool: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
