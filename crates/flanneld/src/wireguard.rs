//! The wireguard backend's runtime side: settling the key and the implementation before the
//! backend is built ([`host`]), and keeping every device's key, port and peers equal to what
//! the planner wants for the current leases ([`WireguardRuntime`]): on every lease change,
//! after the first complete snapshot (only then are stale peers removed, also those whose
//! lease vanished while flanneld was down), and every [`CHECK_INTERVAL`] (a device the
//! datapath loop re-created after someone deleted it gets its key and all peers back).
//!
//! The decisions are the planner's (`flannel_planner::wireguard`); the kernel calls are
//! `flannel_kernel::wireguard`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flannel_kernel::wireguard::WgNetlink;
use flannel_model::{Lease, SubnetKey};
use flannel_planner::backend::wireguard::WireguardRuntime as Spec;
use flannel_planner::wireguard::{
    desired_device, diff_device, DeviceOp, EndpointFamily, Implementation, WireguardHost,
};
use flannel_registry::PeerEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cli::WgImplementationFlag;
use crate::runtime::{BackendRuntime, Stopped};
use crate::wgkey::{self, PrivateKey};

/// How often the devices are checked even when nothing changed.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(3);

/// Load (or create) the node's key and pick the implementation `flag` asks for.
pub fn host(flag: WgImplementationFlag) -> Result<WireguardHost> {
    let path = wgkey::key_path(std::env::var_os(wgkey::KEY_FILE_ENV));
    let (key, created) = wgkey::load_or_create(&path)?;
    let public_key = key.public_key();
    info!(
        path = %path.display(),
        public_key = %public_key,
        created,
        "wireguard key"
    );
    let module = || match WgNetlink::open() {
        Ok(nl) => nl.is_some(),
        Err(e) => {
            warn!(error = %e, "asking the kernel for wireguard failed");
            false
        }
    };
    let implementation = match flag {
        WgImplementationFlag::Kernel => {
            if !module() {
                bail!("--wireguard-implementation=kernel, but the kernel has no wireguard module");
            }
            Implementation::Kernel
        }
        WgImplementationFlag::Userspace => Implementation::Userspace,
        WgImplementationFlag::Auto => {
            if module() {
                info!("wireguard: the kernel has the wireguard module; using it");
                Implementation::Kernel
            } else {
                info!("wireguard: the kernel has no wireguard module; using the userspace implementation");
                Implementation::Userspace
            }
        }
    };
    Ok(WireguardHost {
        public_key,
        implementation,
    })
}

/// What the runtime task is told.
#[derive(Debug)]
enum Msg {
    Peers(Vec<PeerEvent>),
    Synced,
    Own(SubnetKey),
}

/// The wireguard backend as a [`BackendRuntime`].
pub struct WireguardRuntime {
    tx: mpsc::UnboundedSender<Msg>,
    state: State,
}

enum State {
    Prepared(Box<Task>),
    Running(JoinHandle<()>),
    Gone,
}

/// Everything the reconcile task owns.
struct Task {
    spec: Spec,
    key: PrivateKey,
    own: SubnetKey,
    rx: mpsc::UnboundedReceiver<Msg>,
    datapath: Datapath,
}

/// Where the devices are.
enum Datapath {
    /// The kernel's devices (made by the datapath loop), over this connection once open.
    Kernel(Option<WgNetlink>),
    /// Our TUN devices, in the spec's order.
    Userspace(Vec<flannel_wgtun::Device>),
}

/// Open the userspace devices: TUN devices of the backend's names with our subnet's
/// address(es), a UDP socket on each device's port.
async fn open_userspace(
    spec: &Spec,
    lease: &Lease,
    key: &PrivateKey,
) -> Result<Vec<flannel_wgtun::Device>> {
    let mut devs = Vec::new();
    for d in &spec.devices {
        let addr4 = d.families.v4.then(|| lease.subnet.ipv4.network());
        let addr6 = lease
            .subnet
            .ipv6
            .filter(|_| d.families.v6)
            .map(|n| n.network());
        let mtu = u16::try_from(d.mtu).unwrap_or(u16::MAX);
        // `auto` (no fixed family) reaches peers over either: one dual-stack socket, as the
        // kernel's device listens on both families.
        let v6_socket = d.endpoint_family != Some(EndpointFamily::V4);
        let dev = flannel_wgtun::Device::open(
            &d.name,
            mtu,
            addr4,
            addr6,
            d.listen_port,
            v6_socket,
            *key.bytes(),
        )
        .await
        .with_context(|| format!("opening the userspace WireGuard device {}", d.name))?;
        info!(
            dev = %d.name,
            mtu,
            listen_port = d.listen_port,
            addr = addr4.map(tracing::field::display),
            "wireguard (userspace): TUN device open"
        );
        devs.push(dev);
    }
    Ok(devs)
}

impl WireguardRuntime {
    /// Re-read the key (the one [`host`] loaded, whose public half is in the lease) and get
    /// ready to keep the devices.
    pub async fn open(spec: Spec, lease: &Lease) -> Result<Self> {
        let path = wgkey::key_path(std::env::var_os(wgkey::KEY_FILE_ENV));
        let (key, _) = wgkey::load_or_create(&path)?;
        if key.public_key() != spec.local.public_key {
            bail!(
                "the WireGuard key file {} changed since the lease was written",
                path.display()
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let datapath = match spec.implementation {
            Implementation::Kernel => Datapath::Kernel(None),
            Implementation::Userspace => {
                Datapath::Userspace(open_userspace(&spec, lease, &key).await?)
            }
        };
        Ok(WireguardRuntime {
            tx,
            state: State::Prepared(Box::new(Task {
                spec,
                key,
                own: lease.subnet,
                rx,
                datapath,
            })),
        })
    }
}

impl BackendRuntime for WireguardRuntime {
    fn start(&mut self, cancel: CancellationToken) {
        if let State::Prepared(task) = std::mem::replace(&mut self.state, State::Gone) {
            if let Datapath::Userspace(devs) = &task.datapath {
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
                for d in devs {
                    tokio::spawn(d.clone().run(workers, cancel.clone()));
                }
            }
            self.state = State::Running(tokio::spawn(task.run(cancel)));
        }
    }

    fn peers_changed(&mut self, events: &[PeerEvent]) {
        let _ = self.tx.send(Msg::Peers(events.to_vec()));
    }

    fn synced(&mut self) {
        let _ = self.tx.send(Msg::Synced);
    }

    fn subnet_changed(&mut self, lease: &Lease) {
        let _ = self.tx.send(Msg::Own(lease.subnet));
    }

    fn stop(self: Box<Self>) -> Stopped {
        Box::pin(async move {
            if let State::Running(task) = self.state {
                task.await.context("wireguard runtime task")?;
            }
            // The devices stay (unlike Flannel): a restart loses no traffic.
            info!("wireguard runtime stopped; the devices stay up");
            Ok(())
        })
    }
}

impl Task {
    async fn run(self: Box<Self>, cancel: CancellationToken) {
        let Task {
            spec,
            key,
            mut own,
            mut rx,
            mut datapath,
        } = *self;
        let mut peers: BTreeMap<SubnetKey, Lease> = BTreeMap::new();
        let mut synced = false;
        let mut logged: BTreeSet<(SubnetKey, String)> = BTreeSet::new();
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    // Take whatever else is queued: one pass for a burst of events.
                    let mut next = Some(msg);
                    while let Some(m) = next {
                        match m {
                            Msg::Peers(events) => apply_events(&mut peers, events),
                            Msg::Synced => synced = true,
                            Msg::Own(s) => own = s,
                        }
                        next = rx.try_recv().ok();
                    }
                }
            }
            let leases: Vec<Lease> = peers.values().cloned().collect();
            let pass = match &mut datapath {
                Datapath::Kernel(nl) => {
                    let (spec2, key2) = (spec.clone(), key.clone());
                    let conn = nl.take();
                    tokio::task::spawn_blocking(move || {
                        reconcile(conn, &spec2, &key2, &own, &leases, synced)
                    })
                    .await
                }
                Datapath::Userspace(devs) => Ok((
                    None,
                    Ok(reconcile_userspace(devs, &spec, &own, &leases, synced)),
                )),
            };
            match pass {
                Ok((conn, Ok(skipped))) => {
                    if let Datapath::Kernel(nl) = &mut datapath {
                        *nl = conn;
                    }
                    for s in skipped {
                        if logged.insert((s.subnet, s.reason.clone())) {
                            warn!(subnet = %s.subnet, reason = %s.reason, "wireguard: skipping peer");
                        }
                    }
                }
                Ok((conn, Err(e))) => {
                    if let Datapath::Kernel(nl) = &mut datapath {
                        *nl = conn;
                    }
                    warn!(
                        error = format!("{e:#}"),
                        "wireguard: configuring the devices failed; retrying"
                    );
                }
                Err(e) => warn!(error = %e, "wireguard: reconcile task failed"),
            }
        }
    }
}

fn apply_events(peers: &mut BTreeMap<SubnetKey, Lease>, events: Vec<PeerEvent>) {
    for e in events {
        match e {
            PeerEvent::Added(l) => {
                peers.insert(l.subnet, l);
            }
            PeerEvent::Removed(l) => {
                peers.remove(&l.subnet);
            }
        }
    }
}

type Pass = (
    Option<WgNetlink>,
    Result<Vec<flannel_planner::skipped::Skipped>>,
);

/// One pass over the devices (blocking netlink calls). Returns the connection for reuse.
fn reconcile(
    conn: Option<WgNetlink>,
    spec: &Spec,
    key: &PrivateKey,
    own: &SubnetKey,
    leases: &[Lease],
    prune: bool,
) -> Pass {
    let mut nl = match conn {
        Some(nl) => nl,
        None => match WgNetlink::open() {
            Ok(Some(nl)) => nl,
            Ok(None) => {
                return (
                    None,
                    Err(anyhow::anyhow!("the kernel has no wireguard module")),
                )
            }
            Err(e) => return (None, Err(e.into())),
        },
    };
    let mut skipped = Vec::new();
    for dev in &spec.devices {
        let observed = match nl.get_device(&dev.name) {
            Ok(Some(o)) => o,
            Ok(None) => {
                debug!(dev = %dev.name, "wireguard device not there (yet); the datapath loop creates it");
                continue;
            }
            Err(e) => {
                return (
                    None,
                    Err(e).with_context(|| format!("reading {}", dev.name)),
                )
            }
        };
        let (desired, s) = desired_device(dev, &spec.opts, &spec.local, own, &mut leases.iter());
        skipped.extend(s);
        let ops = diff_device(&desired, &observed, prune);
        if ops.is_empty() {
            continue;
        }
        log_ops(&dev.name, &spec.local.public_key, &ops);
        if let Err(e) = nl.apply(&dev.name, key.bytes(), &ops) {
            return (
                None,
                Err(e).with_context(|| format!("configuring {}", dev.name)),
            );
        }
    }
    (Some(nl), Ok(skipped))
}

/// One pass over the userspace devices (in memory: no system calls).
fn reconcile_userspace(
    devs: &[flannel_wgtun::Device],
    spec: &Spec,
    own: &SubnetKey,
    leases: &[Lease],
    prune: bool,
) -> Vec<flannel_planner::skipped::Skipped> {
    let mut skipped = Vec::new();
    for (d, dev) in spec.devices.iter().zip(devs) {
        let (desired, s) = desired_device(d, &spec.opts, &spec.local, own, &mut leases.iter());
        skipped.extend(s);
        let ops = diff_device(&desired, &dev.config(), prune);
        if !ops.is_empty() {
            log_ops(dev.name(), &spec.local.public_key, &ops);
            dev.apply(&ops);
        }
    }
    skipped
}

fn log_ops(dev: &str, public_key: &flannel_model::WgKey, ops: &[DeviceOp]) {
    for op in ops {
        match op {
            DeviceOp::SetDevice { listen_port } => {
                info!(dev, listen_port, public_key = %public_key, "wireguard: setting the device's key and port")
            }
            DeviceOp::SetPeer(p) => info!(
                dev,
                peer = %p.public_key,
                endpoint = p.endpoint.map(tracing::field::display),
                allowed_ips = ?p.allowed_ips,
                "wireguard: peer set"
            ),
            DeviceOp::RemovePeer(k) => info!(dev, peer = %k, "wireguard: peer removed"),
        }
    }
}
