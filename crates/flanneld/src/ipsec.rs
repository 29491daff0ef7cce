//! The ipsec backend's runtime: charon as a child process, and one place that brings the
//! kernel's XFRM policies and SAs and charon's keys and connections in line with the plan
//! ([`flannel_planner::ipsec`]) for our lease and the peers.
//!
//! A pass runs on every peer change, every [`RESYNC`] (drift: a deleted policy returns) and
//! every second while the last one failed (charon still starting). When charon exits it is
//! started again (after a growing pause) and everything is loaded into it anew. Unlike
//! Flannel, policies and SAs no peer wants are removed, also those a previous run left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use flannel_kernel::xfrm::{sa_text, Xfrm};
use flannel_model::Lease;
use flannel_planner::backend::ipsec::IpsecOptions;
use flannel_planner::ipsec::{self, Connection, Desired, Local};
use flannel_registry::PeerEvent;
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::charon::{self, Charon};
use crate::runtime::{BackendRuntime, Stopped};
use crate::vici::{self, Vici};

/// How often the kernel and charon are checked when nothing changed.
pub const RESYNC: Duration = Duration::from_secs(10);

/// How soon a failed pass is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Every how many failed passes in a row one is logged as a warning (the others at debug).
const FAILURES_WORTH_A_WARNING: u32 = 10;

/// The longest pause before charon is started again after it exited.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

/// What the plan is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    local: Local,
    peers: BTreeMap<Ipv4Net, Lease>,
}

/// The ipsec backend as a [`BackendRuntime`].
#[derive(Debug)]
pub struct IpsecRuntime {
    inputs: watch::Sender<Inputs>,
    state: State,
}

#[derive(Debug)]
enum State {
    Opened(Box<Worker>),
    Running(JoinHandle<()>),
    Gone,
}

impl IpsecRuntime {
    /// Find and start charon (as Flannel does before the lease is used).
    pub fn open(options: IpsecOptions, public_ip: Ipv4Addr, lease: &Lease) -> Result<Self> {
        info!(
            "IPSec config: UDPEncap={} ESPProposal={}",
            options.udp_encap, options.esp_proposal
        );
        let path = charon::find().context("error creating CharonIKEDaemon struct")?;
        let charon = Charon::spawn(&path)?;
        let local = Local {
            subnet: lease.subnet.ipv4,
            public_ip,
        };
        let (tx, rx) = watch::channel(Inputs {
            local,
            peers: BTreeMap::new(),
        });
        Ok(IpsecRuntime {
            inputs: tx,
            state: State::Opened(Box::new(Worker {
                options,
                charon_path: path,
                charon: Some(charon),
                socket: PathBuf::from(vici::SOCKET),
                inputs: rx,
                loaded: Loaded::default(),
            })),
        })
    }
}

impl BackendRuntime for IpsecRuntime {
    fn start(&mut self, cancel: CancellationToken) {
        if let State::Opened(w) = std::mem::replace(&mut self.state, State::Gone) {
            self.state = State::Running(tokio::spawn(w.run(cancel)));
        }
    }

    fn peers_changed(&mut self, events: &[PeerEvent]) {
        self.inputs
            .send_if_modified(|i| apply_events(&mut i.peers, events));
    }

    fn subnet_changed(&mut self, lease: &Lease) {
        self.inputs
            .send_modify(|i| i.local.subnet = lease.subnet.ipv4);
    }

    fn stop(self: Box<Self>) -> Stopped {
        Box::pin(async move {
            match self.state {
                State::Running(task) => task.await.context("ipsec runtime task"),
                State::Opened(w) => {
                    if let Some(c) = w.charon {
                        c.stop().await;
                    }
                    Ok(())
                }
                State::Gone => Ok(()),
            }
        })
    }
}

/// Apply lease events to the peer set (by IPv4 subnet); whether it changed.
fn apply_events(peers: &mut BTreeMap<Ipv4Net, Lease>, events: &[PeerEvent]) -> bool {
    let before = peers.clone();
    for e in events {
        match e {
            PeerEvent::Added(l) => {
                info!(subnet = %l.subnet, "Subnet added");
                peers.insert(l.subnet.ipv4, l.clone());
            }
            PeerEvent::Removed(l) => {
                info!(subnet = %l.subnet, "Subnet removed");
                peers.remove(&l.subnet.ipv4);
            }
        }
    }
    *peers != before
}

/// What the running charon holds (as far as we loaded it).
#[derive(Debug, Default)]
struct Loaded {
    keys: BTreeSet<Ipv4Addr>,
    conns: BTreeMap<String, Connection>,
}

#[derive(Debug)]
struct Worker {
    options: IpsecOptions,
    charon_path: PathBuf,
    charon: Option<Charon>,
    socket: PathBuf,
    inputs: watch::Receiver<Inputs>,
    loaded: Loaded,
}

impl Worker {
    async fn run(mut self, cancel: CancellationToken) {
        let mut xfrm = None;
        let mut restarts: u32 = 0;
        let mut restart_at: Option<tokio::time::Instant> = None;
        let mut wait = Duration::ZERO;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                r = self.inputs.changed() => if r.is_err() { break },
                status = wait_charon(&mut self.charon) => {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    restarts += 1;
                    let pause = restart_pause(restarts);
                    warn!(%status, restart_in = ?pause, "charon exited; starting it again");
                    self.charon = None;
                    self.loaded = Loaded::default();
                    restart_at = Some(tokio::time::Instant::now() + pause);
                }
                () = tokio::time::sleep(wait) => {}
            }
            if self.charon.is_none() && restart_at.is_some_and(|t| tokio::time::Instant::now() >= t)
            {
                match Charon::spawn(&self.charon_path) {
                    Ok(c) => {
                        self.charon = Some(c);
                        restart_at = None;
                    }
                    Err(e) => warn!(error = format!("{e:#}"), "restarting charon failed"),
                }
            }
            let result = match xfrm.take() {
                Some(x) => Ok(x),
                None => Xfrm::connect().context("opening the xfrm netlink socket"),
            };
            let result = match result {
                Ok(x) => {
                    let r = self.pass(&x).await;
                    // A connection that failed is opened anew next time.
                    if r.is_ok() {
                        xfrm = Some(x);
                    }
                    r
                }
                Err(e) => Err(e),
            };
            let ok = match result {
                Ok(()) => {
                    failures = 0;
                    true
                }
                Err(e) => {
                    failures += 1;
                    // charon takes a moment to open its socket: say so only when it lasts.
                    if failures.is_multiple_of(FAILURES_WORTH_A_WARNING) {
                        warn!(
                            error = format!("{e:#}"),
                            failures, "ipsec pass failed; retrying"
                        );
                    } else {
                        debug!(error = format!("{e:#}"), "ipsec pass incomplete; retrying");
                    }
                    false
                }
            };
            wait = if ok && self.charon.is_some() {
                RESYNC
            } else {
                RETRY
            };
        }
        if let Some(c) = self.charon.take() {
            c.stop().await;
        }
    }

    /// One pass: kernel policies first (as Flannel adds them before the connection), then
    /// charon's keys and connections, then the SAs of gone peers.
    async fn pass(&mut self, xfrm: &Xfrm) -> Result<()> {
        let inputs = self.inputs.borrow_and_update().clone();
        let want = ipsec::desired(&inputs.local, inputs.peers.values());
        sync_policies(xfrm, &want).await?;
        if self.charon.is_some() {
            self.sync_charon(&want).await?;
        }
        sync_sas(xfrm, &want).await
    }

    async fn sync_charon(&mut self, want: &Desired) -> Result<()> {
        let mut vici = Vici::connect(Path::new(&self.socket)).await?;
        for owner in ipsec::keys_to_load(want, &self.loaded.keys) {
            vici.load_shared(&self.options.psk, owner).await?;
            info!("Loaded shared key for: {owner}");
            self.loaded.keys.insert(owner);
        }
        let ops = ipsec::diff_connections(want, &self.loaded.conns);
        for name in ops.unload {
            if let Err(e) = vici.unload_conn(&name).await {
                warn!(error = %e, "error unloading charon connection");
            } else {
                info!("Unloaded connection: {name}");
            }
            if let Err(e) = vici.terminate(&name).await {
                debug!(error = %e, "terminating the connection's IKE_SA");
            }
            self.loaded.conns.remove(&name);
        }
        for c in ops.load {
            vici.load_conn(&c, &self.options.esp_proposal, self.options.udp_encap)
                .await?;
            info!("Loaded connection: {}", c.name);
            self.loaded.conns.insert(c.name.clone(), c);
        }
        Ok(())
    }
}

async fn wait_charon(charon: &mut Option<Charon>) -> std::io::Result<std::process::ExitStatus> {
    match charon {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// 1 s, 2 s, 4 s, … up to [`MAX_RESTART_PAUSE`].
fn restart_pause(restarts: u32) -> Duration {
    let secs = 1u64 << restarts.saturating_sub(1).min(5);
    Duration::from_secs(secs).min(MAX_RESTART_PAUSE)
}

async fn sync_policies(xfrm: &Xfrm, want: &Desired) -> Result<()> {
    let observed = xfrm.policies().await?;
    let ops = ipsec::diff_policies(want, &observed);
    for p in &ops.delete {
        info!("Deleting ipsec policy: {p}");
        xfrm.delete_policy(p).await?;
    }
    for p in &ops.update {
        info!("Adding ipsec policy: {p}");
        xfrm.update_policy(p).await?;
    }
    Ok(())
}

async fn sync_sas(xfrm: &Xfrm, want: &Desired) -> Result<()> {
    let sas = xfrm.sas().await?;
    for sa in ipsec::stale_sas(want, &sas) {
        info!("Deleting the SA of a gone peer: {}", sa_text(&sa));
        xfrm.delete_sa(&sa).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(subnet: &str, ip: [u8; 4]) -> Lease {
        Lease {
            subnet: flannel_model::SubnetKey {
                ipv4: subnet.parse().expect("net"),
                ipv6: None,
            },
            attrs: flannel_model::LeaseAttrs {
                public_ip: Ipv4Addr::from(ip),
                public_ipv6: None,
                backend_type: "ipsec".into(),
                backend_data: None,
                backend_v6_data: None,
            },
            expiration: None,
        }
    }

    #[test]
    fn lease_events_update_the_peer_set() {
        let mut peers = BTreeMap::new();
        let a = lease("198.18.2.0/24", [192, 0, 2, 2]);
        let moved = lease("198.18.2.0/24", [192, 0, 2, 7]);
        assert!(apply_events(&mut peers, &[PeerEvent::Added(a.clone())]));
        assert!(
            !apply_events(&mut peers, &[PeerEvent::Added(a.clone())]),
            "no change"
        );
        assert!(apply_events(&mut peers, &[PeerEvent::Added(moved.clone())]));
        assert_eq!(peers.values().collect::<Vec<_>>(), [&moved]);
        assert!(apply_events(&mut peers, &[PeerEvent::Removed(a)]));
        assert!(peers.is_empty());
    }

    #[test]
    fn charon_restarts_back_off_up_to_half_a_minute() {
        let pauses: Vec<u64> = (1..=8).map(|n| restart_pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
