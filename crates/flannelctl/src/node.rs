//! Gathering the facts `flannelctl status` and `flannelctl doctor` judge, with flanneld's own
//! flags: `/healthz` and `/readyz` at `--healthz-ip:--healthz-port`, `--subnet-file`, the
//! network config and every lease from etcd, the external interface flanneld would choose, the
//! backend the config names (built by the same planner code flanneld runs), what the kernel
//! holds on its devices, the pod interfaces' MTUs, tx checksum offload (`ethtool -k`),
//! `rp_filter` and `iptables-save`. The judging is `flannel_doctor`'s.
//!
//! Kubernetes mode (`--kube-subnet-mgr`): the network config from `--net-config-path` and
//! every lease from the Node objects (podCIDRs and Flannel's annotations), both read by the
//! registry's own Kubernetes code ([`flannel_registry::kube::view`]); our node is `NODE_NAME`
//! (or `POD_NAME`/`POD_NAMESPACE`), as flanneld finds it.
//!
//! wireguard (kernel implementation) and ipsec peers live outside the routing table: the
//! devices' peers are read over generic netlink, the XFRM policies and SAs over netlink.
//! What cannot be read is listed in [`NodeFacts::not_checked`].

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use flannel_doctor::facts::{
    BackendFacts, Daemon, ExtIface, LinkMtu, NodeFacts, Registry, SubnetFile, TunnelState,
    TxChecksum,
};
use flannel_doctor::wanted;
use flannel_kernel::iface::{discover_external_interface, ExternalInterface, IfaceRequest};
use flannel_kernel::wireguard::WgNetlink;
use flannel_kernel::xfrm::Xfrm;
use flannel_kernel::{Kernel, ObserveScope};
use flannel_model::{Lease, NetworkConfig, SubnetEnv, WireguardLeaseData};
use flannel_planner::backend::{self, Backend, Inputs, RuntimeSpec, Stored};
use flannel_planner::offload;
use flannel_planner::state::KernelState;
use flannel_planner::wireguard::{Implementation, WireguardHost};
use flannel_registry::etcd::{EtcdConfig, EtcdStore};
use flannel_registry::kube::annotations::AnnotationNames;
use flannel_registry::kube::client::{self, ClientOptions};
use flannel_registry::kube::netconf::read_net_conf;
use flannel_registry::kube::view::{read_view, KubeView, OwnLease};
use flannel_registry::SubnetStore;
use flanneld_cli::cli::{Flags, WgImplementationFlag};
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
    let mut node_public_ip = None;
    let mut leases = Vec::new();
    if flags.kube_subnet_mgr {
        f.registry = Registry::Kube {
            node: String::new(),
            net_conf: flags.net_config_path.clone(),
        };
        match read_kube(flags, &mut f.registry).await {
            Ok((n, view)) => {
                network = Some(n);
                node_public_ip = view.own_public_ip;
                apply_kube_view(&mut f, view);
            }
            Err(e) => f.registry_error = Some(e),
        }
    } else {
        f.registry = Registry::Etcd {
            endpoints: flags.etcd_endpoints.clone(),
        };
        match read_etcd(flags).await {
            Ok((n, l)) => {
                network = Some(n);
                leases = l;
            }
            Err(e) => f.registry_error = Some(e),
        }
    }
    let mut request = iface_request(flags, network.as_ref());
    // Kubernetes: the node-public-ip annotation overrides --public-ip, as in flanneld.
    if let Some(ip) = node_public_ip {
        request.public_ip = Some(ip);
    }
    let ext = discover_external_interface(&request).await;
    f.ext_iface = Some(match &ext {
        Ok(e) => Ok(ExtIface {
            name: e.name.clone(),
            mtu: e.mtu,
            public_ip: e.ext_addr,
        }),
        Err(e) => Err(e.to_string()),
    });
    if !flags.kube_subnet_mgr {
        let public_ip = ext.as_ref().ok().and_then(|e| e.ext_addr);
        let (own, others): (Vec<Lease>, Vec<Lease>) = leases
            .into_iter()
            .partition(|l| Some(l.attrs.public_ip) == public_ip && public_ip.is_some());
        f.own_lease = own.into_iter().next();
        f.other_leases = others;
    }

    let kernel = Kernel::connect().ok();
    if let (Some(network), Ok(ext)) = (&network, &ext) {
        match build_backend(network, ext, f.own_lease.as_ref(), flags) {
            Ok(b) => {
                f.not_checked.extend(wanted::not_checked(&*b));
                if let Some(own) = f.own_lease.clone() {
                    fill_backend(&mut f, &*b, &own, kernel.as_ref()).await;
                    read_tunnels(&mut f, &*b).await;
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
    let base = wanted::base(b, own);
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
    f.peers = wanted::peer_facts(b, own, &f.other_leases, &|ip| on_link.contains(&ip));
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
    own: Option<&Lease>,
    flags: &Flags,
) -> Result<Box<dyn Backend>, String> {
    let underlay = ext.underlay();
    let wireguard = if network.backend_type() == "wireguard" {
        Some(wireguard_host(own, flags)?)
    } else {
        None
    };
    backend::build(&Inputs {
        network,
        underlay: &underlay,
        stored: Stored::default(),
        wireguard,
    })
    .map_err(|e| e.to_string())
}

/// The wireguard backend's host facts: the public key our lease advertises (the private key
/// stays unread) and the implementation `--wireguard-implementation` resolves to here, as
/// flanneld resolves it (`auto`: the kernel's when it has the module).
fn wireguard_host(own: Option<&Lease>, flags: &Flags) -> Result<WireguardHost, String> {
    let own = own.ok_or("wireguard: this node holds no lease, so its public key is unknown")?;
    let data = own
        .attrs
        .backend_data
        .as_ref()
        .ok_or("wireguard: our lease has no BackendData (no public key)")?;
    let public_key = WireguardLeaseData::from_raw(data)
        .map_err(|e| format!("wireguard: our lease's BackendData: {e}"))?
        .public_key;
    let module = || matches!(WgNetlink::open(), Ok(Some(_)));
    let implementation = match flags.wireguard_implementation {
        WgImplementationFlag::Kernel => Implementation::Kernel,
        WgImplementationFlag::Userspace => Implementation::Userspace,
        WgImplementationFlag::Auto if module() => Implementation::Kernel,
        WgImplementationFlag::Auto => Implementation::Userspace,
    };
    Ok(WireguardHost {
        public_key,
        implementation,
    })
}

/// What the kernel holds for wireguard (the devices' peers) and ipsec (policies and SAs).
async fn read_tunnels(f: &mut NodeFacts, b: &dyn Backend) {
    match b.runtime() {
        Some(RuntimeSpec::Wireguard(rt)) if rt.implementation == Implementation::Kernel => {
            let mut nl = match WgNetlink::open() {
                Ok(Some(nl)) => nl,
                Ok(None) => {
                    f.not_checked.push(
                        "wireguard: the kernel has no wireguard module, so the devices' peers cannot be read.".to_owned(),
                    );
                    return;
                }
                Err(e) => {
                    f.not_checked.push(format!(
                        "wireguard: the devices' peers cannot be read ({e})."
                    ));
                    return;
                }
            };
            let mut devices = std::collections::BTreeMap::new();
            for dev in &rt.devices {
                match nl.get_device(&dev.name) {
                    Ok(cfg) => {
                        devices.insert(dev.name.clone(), cfg);
                    }
                    Err(e) => f.not_checked.push(format!(
                        "wireguard: the peers of {} cannot be read ({e}).",
                        dev.name
                    )),
                }
            }
            f.tunnels = TunnelState {
                wg_devices: devices,
                ..TunnelState::default()
            };
        }
        Some(RuntimeSpec::Ipsec { .. }) => {
            let xfrm = match Xfrm::connect() {
                Ok(x) => x,
                Err(e) => {
                    f.not_checked.push(format!(
                        "ipsec: the kernel's XFRM policies cannot be read ({e})."
                    ));
                    return;
                }
            };
            match xfrm.policies().await {
                Ok(p) => f.tunnels.xfrm_policies = Some(p),
                Err(e) => f.not_checked.push(format!(
                    "ipsec: the kernel's XFRM policies cannot be read ({e})."
                )),
            }
            match xfrm.sas().await {
                Ok(s) => f.tunnels.xfrm_sas = Some(s),
                Err(e) => f
                    .not_checked
                    .push(format!("ipsec: the kernel's SAs cannot be read ({e}).")),
            }
        }
        _ => {}
    }
}

/// The network config from `--net-config-path` and every node as a lease; our node's name goes
/// into `registry` as soon as it is known.
async fn read_kube(
    flags: &Flags,
    registry: &mut Registry,
) -> Result<(NetworkConfig, KubeView), String> {
    let network = read_net_conf(&flags.net_config_path).map_err(|e| e.to_string())?;
    let names = AnnotationNames::new(&flags.kube_annotation_prefix)
        .map_err(|e| format!("--kube-annotation-prefix: {e}"))?;
    let opts = ClientOptions {
        api_url: flags.kube_api_url.clone().filter(|v| !v.is_empty()),
        kubeconfig: flags.kubeconfig_file.clone(),
    };
    let kube = client::connect(&opts).await.map_err(|e| e.to_string())?;
    let node = client::node_name(&kube)
        .await
        .map_err(|e| format!("finding our node's name: {e}"))?;
    if let Registry::Kube { node: name, .. } = registry {
        name.clone_from(&node);
    }
    let view = read_view(&kube, &node, &names, &network)
        .await
        .map_err(|e| format!("listing the nodes from the Kubernetes API: {e}"))?;
    Ok((network, view))
}

/// Our lease, the peers and the ignored nodes from the Kubernetes view.
fn apply_kube_view(f: &mut NodeFacts, view: KubeView) {
    if let Registry::Kube { node, .. } = &mut f.registry {
        node.clone_from(&view.node);
    }
    let node = &view.node;
    match view.own {
        OwnLease::Held(lease) => f.own_lease = Some(lease),
        OwnLease::NoNode => {
            f.own_lease_problem = Some(format!(
                "The Kubernetes API has no node {node:?} (NODE_NAME)."
            ));
        }
        OwnLease::NotAnnotated { subnet } => {
            f.own_lease_problem = Some(match subnet {
                Ok(s) => format!(
                    "Node {node} has podCIDR {s}, but flanneld has not annotated it yet (no kube-subnet-manager=true)."
                ),
                Err(e) => format!("Node {node} is not annotated by flanneld, and: {e}."),
            });
        }
        OwnLease::Unusable(e) => f.own_lease_problem = Some(format!("Node {node}: {e}.")),
    }
    f.other_leases = view.peers;
    f.ignored_nodes = view.ignored;
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
