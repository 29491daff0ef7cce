//! Where the network config and the leases come from: etcd (Flannel's default) or the
//! Kubernetes API (`--kube-subnet-mgr`). The daemon asks the same questions of either:
//! the network config, what our node already stores (Kubernetes only), our lease, then a
//! keeper that reports peers as [`ManagerEvent`]s until shutdown.
//!
//! Kubernetes mode reads the network config from `--net-config-path` (`CheckNetworkConfig`
//! is not applied there, as in Flannel) and takes the lease from our node's podCIDR; etcd
//! mode reads `<prefix>/config`.
//!
//! One rule for config errors, in both modes: a config that is missing, invalid, or that the
//! daemon cannot build its backend from ([`LeaseSource::settle_config`]) is logged with the
//! key or file it came from and read again every second, since an operator may fix it live
//! (Flannel exits on some of these and retries others). In etcd mode the `out of subnets`
//! retry re-reads the config too ([`LeaseManager::with_network_config`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flannel_model::{Lease, LeaseAttrs, NetworkConfig, SubnetKey};
use flannel_registry::etcd::{EtcdConfig, EtcdStore};
use flannel_registry::kube::annotations::AnnotationNames;
use flannel_registry::kube::client::{self, ClientOptions};
use flannel_registry::kube::lease::{
    KubeLeaseConfig, KubeLeaseError, KubeLeaseManager, OwnNodeFacts,
};
use flannel_registry::kube::watch::WatchMode;
use flannel_registry::{
    ranges_for, LeaseManager, ManagerConfig, ManagerEvent, StoreError, SubnetStore,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
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

    /// Where the network config comes from, for messages.
    fn config_origin(&self) -> String {
        match self {
            LeaseSource::Etcd { store, .. } => format!("etcd key {}", store.config_key()),
            LeaseSource::Kube(k) => k.settings.net_config_path.display().to_string(),
        }
    }

    /// One attempt at reading the network config; the error says what is wrong and where.
    async fn load_once(&mut self) -> Result<NetworkConfig, String> {
        match self {
            LeaseSource::Etcd { store, .. } => {
                let text = store.get_network_config().await.map_err(|e| match e {
                    e @ StoreError::ConfigNotFound { .. } => e.to_string(),
                    e => format!("cannot read the network config: {e}"),
                })?;
                NetworkConfig::parse_checked(&text).map_err(|e| {
                    format!(
                        "invalid network config in etcd key {}: {e}",
                        store.config_key()
                    )
                })
            }
            LeaseSource::Kube(k) => {
                let network = read_net_conf(&k.settings)?;
                let mut cfg = KubeLeaseConfig::new(k.node_name.clone(), k.names.clone());
                cfg.set_node_network_unavailable = k.settings.set_node_network_unavailable;
                cfg.watch_mode = k.settings.watch_mode;
                let manager = KubeLeaseManager::new(k.client.clone(), network.clone(), cfg)
                    .map_err(|e| {
                        format!(
                            "invalid network config in {}: {e}",
                            k.settings.net_config_path.display()
                        )
                    })?;
                k.manager = Some(manager);
                Ok(network)
            }
        }
    }

    /// The network config, read again every second until it is there and valid; `None`
    /// when cancelled first.
    pub async fn network_config(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<NetworkConfig>> {
        let mut log = RetryLog::default();
        loop {
            match self.load_once().await {
                Ok(network) => {
                    log_loaded(&network, &self.config_origin());
                    return Ok(Some(network));
                }
                Err(message) => log.error(&message),
            }
            if !pause(cancel).await {
                return Ok(None);
            }
        }
    }

    /// Build what the daemon derives from `network` (its backend) with `build`. While that
    /// fails the error is logged as a config error and the config is read again every
    /// second, so a backend option fixed in etcd (or in `net-conf.json`) is picked up.
    /// Returns the config that worked with what `build` made; `None` when cancelled first.
    pub async fn settle_config<T>(
        &mut self,
        network: NetworkConfig,
        cancel: &CancellationToken,
        mut build: impl FnMut(&NetworkConfig) -> Result<T>,
    ) -> Result<Option<(NetworkConfig, T)>> {
        let mut network = network;
        let mut log = RetryLog::default();
        loop {
            match build(&network) {
                Ok(built) => {
                    if log.failed() {
                        log_loaded(&network, &self.config_origin());
                    }
                    return Ok(Some((network, built)));
                }
                Err(e) => log.error(&format!(
                    "the network config in {} cannot be used: {}",
                    self.config_origin(),
                    crate::logging::error_text(&e)
                )),
            }
            network = loop {
                if !pause(cancel).await {
                    return Ok(None);
                }
                match self.load_once().await {
                    Ok(fresh) => break fresh,
                    Err(message) => log.error(&message),
                }
            };
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
                let ranges = ranges_for(network)?;
                let mut keeper = LeaseManager::new(store, ranges, attrs, manager)
                    .with_network_config(network.clone());
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
    /// Report renewals and registry failures to `observer` (etcd mode; a Kubernetes lease is
    /// the node's podCIDR and is never renewed).
    pub fn observed_by(self, observer: Arc<dyn flannel_registry::ManagerObserver>) -> Self {
        match self {
            LeaseKeeper::Etcd(m) => LeaseKeeper::Etcd(Box::new(m.with_observer(observer))),
            k @ LeaseKeeper::Kube(_) => k,
        }
    }

    /// Keep the lease and report peers on `events` until `cancel` fires.
    pub async fn run(self, events: mpsc::Sender<ManagerEvent>, cancel: CancellationToken) {
        match self {
            LeaseKeeper::Etcd(m) => m.run(events, cancel).await,
            LeaseKeeper::Kube(m) => m.run(events, cancel).await,
        }
    }
}

/// `--net-config-path`, parsed (Flannel's error texts, with the path).
fn read_net_conf(settings: &KubeSettings) -> Result<NetworkConfig, String> {
    let path = settings.net_config_path.display();
    let text = std::fs::read_to_string(&settings.net_config_path)
        .map_err(|e| format!("failed to read net conf: {e} ({path})"))?;
    let config = NetworkConfig::parse(&text)
        .map_err(|e| format!("error parsing subnet config in {path}: {e}"))?;
    config
        .ip_stack()
        .and_then(|_| config.check_backend_type())
        .map_err(|e| format!("invalid network config in {path}: {e}"))?;
    Ok(config)
}

fn log_loaded(config: &NetworkConfig, origin: &str) {
    let show = |n: Option<String>| n.unwrap_or_else(|| "none".to_owned());
    info!(
        from = origin,
        network = show(config.network.map(|n| n.to_string())),
        ipv6_network = show(config.ipv6_network.map(|n| n.to_string())),
        backend = config.backend_type(),
        "network config loaded"
    );
}

/// Logs the errors of a retry loop: a new message at once, the same one every 30 s.
#[derive(Debug, Default)]
struct RetryLog {
    last: Option<(String, Instant)>,
}

impl RetryLog {
    fn error(&mut self, message: &str) {
        let repeated = matches!(&self.last,
            Some((last, at)) if last == message && at.elapsed() < Duration::from_secs(30));
        if !repeated {
            error!("{message} (retrying every second)");
            self.last = Some((message.to_owned(), Instant::now()));
        }
    }

    fn failed(&self) -> bool {
        self.last.is_some()
    }
}

/// Wait a second; false when cancelled first.
async fn pause(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}
