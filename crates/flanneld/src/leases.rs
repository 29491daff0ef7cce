//! Where the network config and the leases come from: etcd (Flannel's default) or the
//! Kubernetes API (`--kube-subnet-mgr`). The daemon asks the same questions of either:
//! the network config, what our node already stores (Kubernetes only), our lease, then a
//! keeper that reports peers as [`ManagerEvent`]s until shutdown.
//!
//! Kubernetes mode reads the network config from `--net-config-path` once (a bad file is
//! fatal, as in Flannel; `CheckNetworkConfig` is not applied there either) and takes the
//! lease from our node's podCIDR; etcd mode reads `<prefix>/config`, retrying until valid.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flannel_model::{Lease, LeaseAttrs, NetworkConfig, SubnetKey};
use flannel_planner::allocator::Ranges;
use flannel_registry::etcd::{EtcdConfig, EtcdStore};
use flannel_registry::kube::annotations::AnnotationNames;
use flannel_registry::kube::client::{self, ClientOptions};
use flannel_registry::kube::lease::{
    KubeLeaseConfig, KubeLeaseError, KubeLeaseManager, OwnNodeFacts,
};
use flannel_registry::kube::watch::WatchMode;
use flannel_registry::{LeaseManager, ManagerConfig, ManagerEvent, StoreError, SubnetStore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The Kubernetes mode's settings (`--kube-*`, `--net-config-path`,
/// `--set-node-network-unavailable`).
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// `--kube-api-url` / `--kubeconfig-file`.
    pub client: ClientOptions,
    /// `--kube-annotation-prefix`.
    pub annotation_prefix: String,
    /// `--net-config-path`.
    pub net_config_path: PathBuf,
    /// `--set-node-network-unavailable`.
    pub set_node_network_unavailable: bool,
    /// How peers' nodes are watched.
    pub watch_mode: WatchMode,
}

/// A connected lease source, before the lease is acquired.
pub enum LeaseSource {
    /// etcd v3.
    Etcd {
        store: EtcdStore,
        manager: ManagerConfig,
    },
    /// The Kubernetes API.
    Kube(Box<KubeSource>),
}

/// The Kubernetes side of [`LeaseSource`]; `manager` exists once the network config is known.
pub struct KubeSource {
    client: flannel_registry::kube::KubeClient,
    settings: KubeSettings,
    names: AnnotationNames,
    node_name: String,
    manager: Option<KubeLeaseManager>,
}

/// Keeps the acquired lease and reports peers.
pub enum LeaseKeeper {
    Etcd(Box<LeaseManager<EtcdStore>>),
    Kube(Box<KubeLeaseManager>),
}

impl LeaseSource {
    /// Connect to Kubernetes when `kube` is set, else set up the etcd client.
    pub async fn connect(
        etcd: &EtcdConfig,
        manager: &ManagerConfig,
        kube: Option<&KubeSettings>,
    ) -> Result<LeaseSource> {
        let Some(settings) = kube else {
            let store = EtcdStore::connect(etcd.clone()).context("setting up the etcd client")?;
            info!(endpoints = %etcd.endpoints.join(","), prefix = %etcd.prefix, "using etcd");
            return Ok(LeaseSource::Etcd {
                store,
                manager: manager.clone(),
            });
        };
        let names = AnnotationNames::new(&settings.annotation_prefix)?;
        let kube_client = client::connect(&settings.client).await?;
        let node_name = client::node_name(&kube_client).await?;
        info!(node = %node_name, "using the Kubernetes API (kube subnet manager)");
        Ok(LeaseSource::Kube(Box::new(KubeSource {
            client: kube_client,
            settings: settings.clone(),
            names,
            node_name,
            manager: None,
        })))
    }

    /// The network config; `None` when cancelled first.
    pub async fn network_config(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<NetworkConfig>> {
        match self {
            LeaseSource::Etcd { store, .. } => Ok(load_network_config(store, cancel).await),
            LeaseSource::Kube(k) => {
                let network = read_net_conf(&k.settings)?;
                let mut cfg = KubeLeaseConfig::new(k.node_name.clone(), k.names.clone());
                cfg.set_node_network_unavailable = k.settings.set_node_network_unavailable;
                cfg.watch_mode = k.settings.watch_mode;
                k.manager = Some(KubeLeaseManager::new(
                    k.client.clone(),
                    network.clone(),
                    cfg,
                )?);
                Ok(Some(network))
            }
        }
    }

    /// What our node stores (Kubernetes: `node-public-ip(v6)` and the VTEP MACs; etcd:
    /// nothing). `None` when cancelled first.
    pub async fn own_node_facts(&self, cancel: &CancellationToken) -> Result<Option<OwnNodeFacts>> {
        match self {
            LeaseSource::Etcd { .. } => Ok(Some(OwnNodeFacts::default())),
            LeaseSource::Kube(k) => {
                let manager = k
                    .manager
                    .as_ref()
                    .context("internal: the network config is read first")?;
                match manager.own_node_facts(cancel).await {
                    Ok(facts) => Ok(Some(facts)),
                    Err(KubeLeaseError::Cancelled) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Acquire our lease (etcd: from `network`'s ranges, preferring `previous`; Kubernetes:
    /// our node's podCIDR). `None` when cancelled first.
    pub async fn acquire(
        self,
        network: &NetworkConfig,
        attrs: LeaseAttrs,
        previous: Option<SubnetKey>,
        cancel: &CancellationToken,
    ) -> Result<Option<(Lease, LeaseKeeper)>> {
        match self {
            LeaseSource::Etcd { store, manager } => {
                let ranges = ranges_of(network)?;
                let mut keeper = LeaseManager::new(store, ranges, attrs, manager);
                match keeper.acquire(previous, cancel).await {
                    Ok(lease) => Ok(Some((lease, LeaseKeeper::Etcd(Box::new(keeper))))),
                    Err(flannel_registry::AcquireError::Cancelled) => Ok(None),
                    Err(e) => Err(e).context("acquiring a subnet lease"),
                }
            }
            LeaseSource::Kube(k) => {
                let mut keeper = k
                    .manager
                    .context("internal: the network config is read first")?;
                match keeper.acquire(attrs, cancel).await {
                    Ok(lease) => Ok(Some((lease, LeaseKeeper::Kube(Box::new(keeper))))),
                    Err(KubeLeaseError::Cancelled) => Ok(None),
                    Err(e) => Err(e).context("acquiring the node's pod CIDR as our lease"),
                }
            }
        }
    }
}

impl LeaseKeeper {
    /// Keep the lease and report peers on `events` until `cancel` fires.
    pub async fn run(self, events: mpsc::Sender<ManagerEvent>, cancel: CancellationToken) {
        match self {
            LeaseKeeper::Etcd(m) => m.run(events, cancel).await,
            LeaseKeeper::Kube(m) => m.run(events, cancel).await,
        }
    }
}

/// `--net-config-path`, parsed (Flannel's error texts).
fn read_net_conf(settings: &KubeSettings) -> Result<NetworkConfig> {
    let text = std::fs::read_to_string(&settings.net_config_path).map_err(|e| {
        anyhow::anyhow!(
            "failed to read net conf: {e} ({})",
            settings.net_config_path.display()
        )
    })?;
    let config = NetworkConfig::parse(&text)
        .map_err(|e| anyhow::anyhow!("error parsing subnet config: {e}"))?;
    config
        .ip_stack()
        .map_err(|e| anyhow::anyhow!("invalid network config: {e}"))?;
    info!(
        path = %settings.net_config_path.display(),
        network = config.network.map(tracing::field::display),
        ipv6_network = config.ipv6_network.map(tracing::field::display),
        backend = config.backend_type(),
        "network config loaded"
    );
    Ok(config)
}

/// Read and check `<prefix>/config`, retrying every second until it is there and valid (an
/// operator can fix it in etcd without restarting us). `None` when cancelled first.
async fn load_network_config(
    store: &EtcdStore,
    cancel: &CancellationToken,
) -> Option<NetworkConfig> {
    let mut last_error = String::new();
    let mut last_logged = tokio::time::Instant::now();
    loop {
        let result = match store.get_network_config().await {
            Ok(text) => NetworkConfig::parse(&text)
                .and_then(|mut c| {
                    c.check()?;
                    c.ip_stack()?;
                    Ok(c)
                })
                .map_err(|e| format!("invalid network config: {e}")),
            Err(StoreError::ConfigNotFound) => Err(StoreError::ConfigNotFound.to_string()),
            Err(e) => Err(format!("cannot read the network config: {e}")),
        };
        match result {
            Ok(config) => {
                info!(
                    network = config.network.map(tracing::field::display),
                    ipv6_network = config.ipv6_network.map(tracing::field::display),
                    backend = config.backend_type(),
                    "network config loaded"
                );
                return Some(config);
            }
            Err(message) => {
                // Log a repeated error every 30 s, a new one at once.
                if message != last_error || last_logged.elapsed() >= Duration::from_secs(30) {
                    error!("{message} (retrying every second)");
                    last_logged = tokio::time::Instant::now();
                    last_error = message;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn ranges_of(network: &NetworkConfig) -> Result<Ranges> {
    let Some(v4) = network.ipv4_range() else {
        bail!("etcd mode needs an IPv4 Network: Flannel's subnet keys always carry an IPv4 part");
    };
    let v6 = if network.enable_ipv6 {
        Some(
            network
                .ipv6_range()
                .context("IPv6 is enabled but no IPv6 range is configured")?,
        )
    } else {
        None
    };
    Ok(Ranges { v4, v6 })
}
