//! etcd for the benchmarks: one `etcd` process in the underlay's etcd namespace (started by
//! the sandbox crate; data on tmpfs when `/dev/shm` exists), and a client that runs on a
//! thread inside that namespace (it talks to etcd over the namespace's loopback; flanneld uses
//! `http://192.0.2.254:2379`) to load the plans' leases.

use std::future::Future;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp};
use flannel_sandbox::etcd::{self as sandbox_etcd, EtcdConfig, PEER_URL};
use flannel_sandbox::netns::{self, Netns};
use flannel_sandbox::{cleanup, process};

use crate::plan::{lease_key, lease_value, Plan, ETCD_IP, ETCD_PREFIX};

/// How long etcd may take to become usable.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Time limit of one client request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Puts per transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 128;

/// A running etcd, killed on drop.
#[derive(Debug)]
pub struct Etcd {
    ns: String,
    child: Option<Child>,
    pid: i32,
}

impl Etcd {
    /// Start etcd in `ns` with its data under `dir` and wait until it answers.
    pub fn start(ns: &Netns, dir: &Path) -> Result<Etcd> {
        let data = dir.join("etcd-data");
        let advertise = format!("http://{ETCD_IP}:2379");
        let config = EtcdConfig {
            name: "bench",
            data_dir: &data,
            client_urls: &[&advertise, "http://127.0.0.1:2379"],
            advertise: &advertise,
            peer_url: PEER_URL,
            log_level: Some("warn"),
        };
        let child = sandbox_etcd::command(ns.name(), &config, &dir.join("etcd.log"))?
            .spawn()
            .context("starting etcd")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        cleanup::track_pid(pid);
        let mut etcd = Etcd {
            ns: ns.name().to_owned(),
            child: Some(child),
            pid,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ok = etcd.with_client(|c| async move {
                let mut c = c;
                c.get("/health-probe", None).await?;
                Ok(())
            });
            match ok {
                Ok(()) => return Ok(etcd),
                Err(e) if Instant::now() >= deadline => {
                    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
                    bail!("etcd did not start: {e:#}\n{log}");
                }
                Err(_) => {}
            }
            if let Some(child) = etcd.child.as_mut() {
                if let Some(status) = child.try_wait().context("waiting for etcd")? {
                    etcd.child = None;
                    bail!("etcd exited during start-up: {status}");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run `f` with a connected client, on a thread inside the etcd namespace.
    pub fn with_client<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(Client) -> Fut + Send,
        Fut: Future<Output = Result<T>>,
    {
        netns::in_netns(&self.ns, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?;
            rt.block_on(async {
                let options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(REQUEST_TIMEOUT);
                let client = Client::connect(["http://127.0.0.1:2379"], Some(options))
                    .await
                    .context("connecting to etcd")?;
                f(client).await
            })
        })?
    }

    /// Wipe all leases, write the plan's network config and every peer's lease (in
    /// transactions of 128 puts).
    pub fn load(&self, plan: &Plan) -> Result<()> {
        let config = plan.config_json();
        let kvs: Vec<(String, String)> = plan
            .peers
            .iter()
            .map(|p| (lease_key(p.subnet), lease_value(p)))
            .collect();
        self.with_client(|mut c| async move {
            c.delete(
                format!("{ETCD_PREFIX}/subnets/"),
                Some(DeleteOptions::new().with_prefix()),
            )
            .await
            .context("deleting old leases")?;
            c.put(format!("{ETCD_PREFIX}/config"), config, None)
                .await
                .context("writing the network config")?;
            for chunk in kvs.chunks(TXN_OPS) {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
                    .collect();
                c.txn(Txn::new().and_then(ops))
                    .await
                    .context("writing leases")?;
            }
            Ok(())
        })
    }

    /// The lease keys under `/coreos.com/network/subnets/`.
    pub fn lease_keys(&self) -> Result<Vec<String>> {
        self.with_client(|mut c| async move {
            let resp = c
                .get(
                    format!("{ETCD_PREFIX}/subnets/"),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                )
                .await
                .context("listing leases")?;
            Ok(resp
                .kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                .collect())
        })
    }

    /// Delete every lease that is not one of the plan's peers (what a flanneld run acquired).
    pub fn delete_foreign_leases(&self, plan: &Plan) -> Result<usize> {
        let ours: std::collections::HashSet<String> =
            plan.peers.iter().map(|p| lease_key(p.subnet)).collect();
        let foreign: Vec<String> = self
            .lease_keys()?
            .into_iter()
            .filter(|k| !ours.contains(k))
            .collect();
        let n = foreign.len();
        if n > 0 {
            self.with_client(|mut c| async move {
                for k in foreign {
                    c.delete(k, None).await.context("deleting a lease")?;
                }
                Ok(())
            })?;
        }
        Ok(n)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_child(&mut child);
        }
        cleanup::untrack_pid(self.pid);
    }
}
