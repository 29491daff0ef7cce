//! The daemon's life, in Flannel's order: load the network config, pick the external
//! interface, acquire a lease (which creates nothing yet), ensure the backend's device, install
//! the packet-filter rules, write `subnet.env`, report ready, then keep the lease, follow peers
//! and keep the kernel matching until SIGTERM/SIGINT.
//!
//! Network config and leases come from etcd or, with `--kube-subnet-mgr`, from Kubernetes
//! (see `leases`). Nothing is torn down on exit: the lease stays in etcd (or on the node) and
//! the kernel state stays in place, so a restart disturbs no traffic. The exception is the `udp` backend, as in Flannel: its
//! TUN device `flannel0` lives as long as the process, so a restart interrupts its traffic
//! briefly (until the new process has reopened the device and the route is back).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flannel_kernel::iface::{discover_external_interface, ExternalInterface, IfaceRequest};
use flannel_kernel::Kernel;
use flannel_model::{Lease, LeaseAttrs, NetworkConfig, SubnetEnv, SubnetKey};
use flannel_registry::etcd::EtcdConfig;
use flannel_registry::{ManagerConfig, ManagerEvent};
use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backend::{self, Backend};
use crate::datapath::{Command, Datapath, DatapathOptions};
use crate::firewall::{networks_of_env, RuleFlags, Rules};
use crate::health::Readiness;
use crate::journal::RouteJournal;
use crate::leases::{KubeSettings, LeaseSource};
use crate::metrics::Metrics;

/// Everything the daemon needs, already validated (built from the command line in `main`).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub etcd: EtcdConfig,
    /// `--kube-subnet-mgr`: take the network config and leases from Kubernetes instead.
    pub kube: Option<KubeSettings>,
    pub subnet_file: PathBuf,
    pub iface: IfaceRequest,
    pub ip_masq: bool,
    pub rules: RuleFlags,
    pub manager: ManagerConfig,
    /// `--ip-blackhole-route` (checked every `rules.resync`, as Flannel does).
    pub ip_blackhole_route: bool,
    /// `--udp-fast-path`: the udp backend's batched datapath (false: the simple proxy).
    pub udp_fast_path: bool,
    /// `--vxlan-tx-checksum-fix`: turn tx checksum offload off on buggy kernels.
    pub vxlan_tx_checksum_fix: bool,
    /// `--wireguard-implementation`.
    pub wireguard_implementation: crate::cli::WgImplementationFlag,
}

/// Run until `cancel` fires. Returns an error only for conditions a restart would not fix.
pub async fn run(
    cfg: DaemonConfig,
    ready: Readiness,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<()> {
    let mut source = LeaseSource::connect(&cfg.etcd, &cfg.manager, cfg.kube.as_ref()).await?;
    let Some(network) = source.network_config(&cancel).await? else {
        return Ok(());
    };

    let mut iface_req = cfg.iface.clone();
    iface_req.ipv4 = network.enable_ipv4;
    iface_req.ipv6 = network.enable_ipv6;
    // Kubernetes: the node-public-ip(v6) annotations override --public-ip(v6).
    let Some(stored) = source.own_node_facts(&cancel).await? else {
        return Ok(());
    };
    if let Some(ip) = stored.public_ip {
        info!(public_ip = %ip, "using the public IP from our node's node-public-ip annotation");
        iface_req.public_ip = Some(ip);
    }
    if let Some(ip) = stored.public_ipv6 {
        info!(public_ipv6 = %ip, "using the public IPv6 from our node's node-public-ipv6 annotation");
        iface_req.public_ipv6 = Some(ip);
    }
    let ext = discover_external_interface(&iface_req)
        .await
        .context("choosing the external interface")?;
    info!(
        iface = %ext.name,
        iface_addr = ext.iface_addr.map(tracing::field::display),
        public_ip = ext.ext_addr.map(tracing::field::display),
        mtu = ext.mtu,
        "using external interface"
    );

    // A backend the config cannot build is a config error: retried, re-reading the config.
    let Some((network, backend)) = source
        .settle_config(network, &cancel, |n| {
            backend::configure(
                n,
                &ext,
                stored.vtep_mac,
                stored.vtep_mac_v6,
                cfg.wireguard_implementation,
            )
        })
        .await?
    else {
        return Ok(());
    };
    let backend: Arc<dyn Backend> = backend.into();
    for warning in backend.warnings() {
        warn!("{warning}");
    }
    let Some(data) = backend::lease_data(&*backend, &cancel).await else {
        return Ok(());
    };
    let attrs = lease_attrs(&network, &ext, &*backend, data)?;
    if let Some(v6) = attrs.public_ipv6 {
        info!(public_ipv6 = %v6, iface_v6_addr = ext.iface_v6_addr.map(tracing::field::display), "IPv6 enabled");
    }
    info!(
        backend = backend.name(),
        mtu = backend.pod_mtu(),
        "backend configured"
    );

    let previous_env = match SubnetEnv::read(&cfg.subnet_file) {
        Ok(env) => env,
        Err(e) => {
            warn!(error = %e, "ignoring the previous subnet file");
            None
        }
    };
    let previous = previous_env
        .as_ref()
        .and_then(|env| previous_subnet(env, &network));
    let Some((lease, manager)) = source.acquire(&network, attrs, previous, &cancel).await? else {
        return Ok(());
    };
    info!(subnet = %lease.subnet, "lease acquired");
    metrics.set_lease_expiry(lease.expiration);
    let manager = manager.observed_by(Arc::new(metrics.clone()));

    // A backend's userspace part (udp: the TUN device and the socket) exists before the
    // route to its device is added.
    let mut runtime =
        backend::prepare_runtime(backend.runtime(), &lease, cfg.udp_fast_path).await?;
    if let Some(stats) = runtime.as_ref().and_then(|r| r.datapath_stats()) {
        metrics.watch_udp(stats);
    }

    // The device exists (and peers' entries are kept) before anything says we are ready.
    let mut datapath = None;
    if backend.has_datapath() || cfg.ip_blackhole_route {
        let journal = RouteJournal::load(RouteJournal::path_for(&cfg.subnet_file));
        let opts = DatapathOptions {
            blackhole: cfg.ip_blackhole_route,
            resync: cfg.rules.resync,
            previous,
        };
        let kernel = Kernel::connect().context("opening the rtnetlink connection")?;
        let mut dp = Datapath::new(kernel, Arc::clone(&backend), lease.subnet, journal, opts)
            .with_metrics(metrics.clone());
        // A failed first pass is not fatal: the loop retries on every event and every 10 s.
        for attempt in 1..=5 {
            match dp.reconcile("start-up").await {
                Ok(_) => break,
                Err(e) if attempt < 5 => {
                    warn!(
                        error = crate::logging::error_text(&e),
                        attempt, "setting up the datapath failed; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => error!(
                    error = crate::logging::error_text(&e),
                    "setting up the datapath failed; the reconcile loop keeps trying"
                ),
            }
        }
        datapath = Some(dp);
        if backend.name() == "vxlan" {
            crate::offload::fix_vxlan_devices(&backend.owned_devs(), cfg.vxlan_tx_checksum_fix)
                .await;
        }
    }

    let networks = networks_of(&network, &lease);
    let previous_networks = previous_env
        .as_ref()
        .map(networks_of_env)
        .unwrap_or_default();
    let mut rules =
        Rules::start(&network, cfg.rules.clone(), &networks, &previous_networks).await?;

    write_subnet_env(&cfg, &network, &lease, &*backend)?;
    info!(path = %cfg.subnet_file.display(), "wrote subnet file");
    ready.set(true);
    info!("flannel is ready");
    notify_ready();

    if let Some(r) = runtime.as_mut() {
        r.start(cancel.clone());
    }
    let (dp_tx, dp_rx) = mpsc::channel(1024);
    let dp_task = datapath.map(|dp| tokio::spawn(dp.run(dp_rx, cancel.clone())));
    let (tx, mut rx) = mpsc::channel(256);
    let keeper = tokio::spawn(manager.run(tx, cancel.clone()));
    let mut current = lease;
    while let Some(event) = rx.recv().await {
        let command = match event {
            ManagerEvent::Peers(peers) => {
                count_peer_events(&metrics, &peers);
                if let Some(r) = runtime.as_mut() {
                    r.peers_changed(&peers);
                }
                Command::Peers(peers)
            }
            ManagerEvent::Synced => {
                if let Some(r) = runtime.as_mut() {
                    r.synced();
                }
                Command::Synced
            }
            ManagerEvent::Reacquired { lease, previous } => {
                metrics.lease_events("reacquired", 1);
                metrics.set_lease_expiry(lease.expiration);
                if let Err(e) = write_subnet_env(&cfg, &network, &lease, &*backend) {
                    error!(
                        error = crate::logging::error_text(&e),
                        "rewriting the subnet file failed"
                    );
                } else {
                    info!(path = %cfg.subnet_file.display(), subnet = %lease.subnet, "rewrote subnet file");
                }
                // The datapath (routes, blackholes) moves first: the packet-filter rules can
                // take seconds to rewrite (xtables lock, large rule sets) and must not hold
                // the kernel state back.
                if dp_task.is_some() && dp_tx.send(Command::Own(lease.subnet)).await.is_err() {
                    break;
                }
                if lease.subnet != previous {
                    if let Some(r) = runtime.as_mut() {
                        r.subnet_changed(&lease);
                    }
                    let old = networks_of(&network, &current);
                    if let Err(e) = rules.update(&networks_of(&network, &lease), &old).await {
                        error!(
                            error = crate::logging::error_text(&e),
                            "updating packet-filter rules failed"
                        );
                    }
                }
                current = lease;
                continue;
            }
        };
        if dp_task.is_some() && dp_tx.send(command).await.is_err() {
            break;
        }
    }
    keeper.await.context("lease keeper task")?;
    if let Some(t) = dp_task {
        t.await.context("datapath task")?;
    }
    if let Some(r) = runtime {
        r.stop().await?;
    }
    Ok(())
}

fn count_peer_events(metrics: &Metrics, events: &[flannel_registry::PeerEvent]) {
    let added = events
        .iter()
        .filter(|e| matches!(e, flannel_registry::PeerEvent::Added(_)))
        .count();
    let removed = events.len() - added;
    metrics.lease_events("added", u64::try_from(added).unwrap_or(u64::MAX));
    metrics.lease_events("removed", u64::try_from(removed).unwrap_or(u64::MAX));
}

/// What we advertise: the backend's own address (extension: the interface's), else the
/// external interface's. An IPv6-only host's `PublicIP` is `0.0.0.0`, as Go leaves its `ip.IP4`.
fn lease_attrs(
    network: &NetworkConfig,
    ext: &ExternalInterface,
    backend: &dyn Backend,
    data: backend::LeaseData,
) -> Result<LeaseAttrs> {
    let public_ip = if network.enable_ipv4 {
        backend
            .public_ip()
            .or(ext.ext_addr)
            .context("the external interface has no IPv4 address to advertise")?
    } else {
        std::net::Ipv4Addr::UNSPECIFIED
    };
    Ok(LeaseAttrs {
        public_ip,
        public_ipv6: data.public_ipv6,
        backend_type: data.backend_type.to_owned(),
        backend_data: data.backend_data,
        backend_v6_data: data.backend_v6_data,
    })
}

/// The subnet we held before, from the previous `subnet.env`, if it has the parts this
/// network needs (IPv6-only: `FLANNEL_IPV6_SUBNET` alone).
fn previous_subnet(env: &SubnetEnv, network: &NetworkConfig) -> Option<SubnetKey> {
    let ipv6 = if network.enable_ipv6 {
        Some(env.ipv6_subnet?.trunc())
    } else {
        None
    };
    let key = match (network.enable_ipv4, ipv6) {
        (true, ipv6) => SubnetKey {
            ipv4: env.subnet?.trunc(),
            ipv6,
        },
        (false, Some(ipv6)) => SubnetKey::v6_only(ipv6),
        (false, None) => return None,
    };
    info!(subnet = %key, "found the previous subnet in the subnet file");
    Some(key)
}

/// (network, our subnet) pairs the packet-filter rules are made of.
fn networks_of(network: &NetworkConfig, lease: &Lease) -> Vec<(IpNet, IpNet)> {
    let mut out = Vec::new();
    if let (true, Some(n), Some(s)) = (
        network.enable_ipv4,
        network.network,
        lease.subnet.ipv4_net(),
    ) {
        out.push((IpNet::V4(n), IpNet::V4(s)));
    }
    if let (true, Some(n), Some(s)) = (network.enable_ipv6, network.ipv6_network, lease.subnet.ipv6)
    {
        out.push((IpNet::V6(n), IpNet::V6(s)));
    }
    out
}

fn write_subnet_env(
    cfg: &DaemonConfig,
    network: &NetworkConfig,
    lease: &Lease,
    backend: &dyn Backend,
) -> Result<()> {
    subnet_env(network, lease, backend.pod_mtu(), cfg.ip_masq)
        .write_atomic(&cfg.subnet_file)
        .with_context(|| format!("writing {}", cfg.subnet_file.display()))
}

/// The `subnet.env` of our lease, as Go's `WriteSubnetFile`: the IPv4 pair only with
/// `EnableIPv4`, the IPv6 pair only with `EnableIPv6`.
fn subnet_env(network: &NetworkConfig, lease: &Lease, mtu: u32, ip_masq: bool) -> SubnetEnv {
    let v4 = lease.subnet.ipv4_net().filter(|_| network.enable_ipv4);
    SubnetEnv {
        network: v4.and(network.network),
        subnet: v4.map(SubnetEnv::first_usable_v4),
        ipv6_network: network
            .enable_ipv6
            .then_some(network.ipv6_network)
            .flatten(),
        ipv6_subnet: lease.subnet.ipv6.map(SubnetEnv::first_usable_v6),
        mtu: Some(mtu),
        ipmasq: Some(ip_masq),
    }
}

fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            warn!(error = %e, "sd_notify READY=1 failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6_only() -> NetworkConfig {
        let mut n = NetworkConfig::parse(
            r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}"#,
        )
        .expect("config");
        n.check().expect("valid");
        n
    }

    /// Go's `WriteSubnetFile` with `EnableIPv4` false writes only the IPv6 pair, then MTU and
    /// IPMASQ (`fmt.Appendf` of `FLANNEL_IPV6_NETWORK=%s\nFLANNEL_IPV6_SUBNET=%s\n` with the
    /// subnet's IP incremented, then `FLANNEL_MTU=%d\nFLANNEL_IPMASQ=%t\n`; pkg/subnet/subnet.go).
    #[test]
    fn v6_only_subnet_env_golden() {
        let lease = Lease {
            subnet: SubnetKey::v6_only("2001:db8:100:2a::/64".parse().expect("net")),
            attrs: LeaseAttrs::default(),
            expiration: None,
        };
        let env = subnet_env(&v6_only(), &lease, 1430, true);
        assert_eq!(
            env.render(),
            "FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:2a::1/64\n\
             FLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n"
        );
        // Read back at the next start: the previous subnet is the IPv6-only key.
        assert_eq!(previous_subnet(&env, &v6_only()), Some(lease.subnet));
        // No IPv4 packet-filter rules for an IPv6-only lease.
        let nets = networks_of(&v6_only(), &lease);
        assert_eq!(
            nets,
            [(
                "2001:db8:100::/48".parse().expect("net"),
                "2001:db8:100:2a::/64".parse().expect("net")
            )]
        );
    }
}
