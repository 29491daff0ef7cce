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
    /// `--wireguard-implementation`.
    pub wireguard_implementation: crate::cli::WgImplementationFlag,
}

/// Run until `cancel` fires. Returns an error only for conditions a restart would not fix.
pub async fn run(cfg: DaemonConfig, ready: Readiness, cancel: CancellationToken) -> Result<()> {
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
    let attrs = lease_attrs(&ext, &*backend)?;
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

    // A backend's userspace part (udp: the TUN device and the socket) exists before the
    // route to its device is added.
    let mut runtime =
        backend::prepare_runtime(backend.runtime(), &lease, cfg.udp_fast_path).await?;

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
        let mut dp = Datapath::new(kernel, Arc::clone(&backend), lease.subnet, journal, opts);
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
                if let Err(e) = write_subnet_env(&cfg, &network, &lease, &*backend) {
                    error!(
                        error = crate::logging::error_text(&e),
                        "rewriting the subnet file failed"
                    );
                } else {
                    info!(path = %cfg.subnet_file.display(), subnet = %lease.subnet, "rewrote subnet file");
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
                current = lease.clone();
                Command::Own(lease.subnet)
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

fn lease_attrs(ext: &ExternalInterface, backend: &dyn Backend) -> Result<LeaseAttrs> {
    let public_ip = ext
        .ext_addr
        .context("the external interface has no IPv4 address to advertise")?;
    let data = backend.lease_data();
    Ok(LeaseAttrs {
        public_ip,
        public_ipv6: data.public_ipv6,
        backend_type: data.backend_type.to_owned(),
        backend_data: data.backend_data,
        backend_v6_data: data.backend_v6_data,
    })
}

/// The subnet we held before, from the previous `subnet.env`, if it has the parts this
/// network needs.
fn previous_subnet(env: &SubnetEnv, network: &NetworkConfig) -> Option<SubnetKey> {
    let ipv4 = env.subnet?.trunc();
    let ipv6 = if network.enable_ipv6 {
        Some(env.ipv6_subnet?.trunc())
    } else {
        None
    };
    info!(subnet = %ipv4, "found the previous subnet in the subnet file");
    Some(SubnetKey { ipv4, ipv6 })
}

/// (network, our subnet) pairs the packet-filter rules are made of.
fn networks_of(network: &NetworkConfig, lease: &Lease) -> Vec<(IpNet, IpNet)> {
    let mut out = Vec::new();
    if let (true, Some(n)) = (network.enable_ipv4, network.network) {
        out.push((IpNet::V4(n), IpNet::V4(lease.subnet.ipv4)));
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
    let env = SubnetEnv {
        network: network.enable_ipv4.then_some(network.network).flatten(),
        subnet: network
            .enable_ipv4
            .then(|| SubnetEnv::first_usable_v4(lease.subnet.ipv4)),
        ipv6_network: network
            .enable_ipv6
            .then_some(network.ipv6_network)
            .flatten(),
        ipv6_subnet: lease.subnet.ipv6.map(SubnetEnv::first_usable_v6),
        mtu: Some(backend.pod_mtu()),
        ipmasq: Some(cfg.ip_masq),
    };
    env.write_atomic(&cfg.subnet_file)
        .with_context(|| format!("writing {}", cfg.subnet_file.display()))
}

fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            warn!(error = %e, "sd_notify READY=1 failed");
        }
    }
}
