//! `flannel-bench kube-watch`: bytes a node watch receives from the Kubernetes API server in
//! a cluster of N flannel nodes with kubelet heartbeats, for Flannel's full-object node watch
//! and for flanneld-rs's metadata-only watch (+ a GET when a lease may have changed).
//!
//! Two in-process fake API servers (`flannel_testkit::kubeapi`) hold the same deterministic
//! cluster (realistic ~12 KB Node objects) and receive the same changes; one serves (a) a
//! kube-rs `watcher(Api<Node>)` — what Flannel's informer does — and the other (b)
//! `flannel_registry::kube::watch::lease_watch(…, WatchMode::MetadataThenGet)`. Each server
//! counts the response body bytes it sends, per kind of request, so the two watchers are
//! measured side by side in one run. Time is compressed: each "10 s interval" heartbeats every
//! node once, as fast as the watchers keep up; bytes per second are derived from the interval.
//! Phases: initial list, K heartbeat intervals, one annotation change (a node's public IP),
//! one new node (registered by its kubelet, then annotated by its flanneld).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flannel_registry::kube::annotations::{AnnotationNames, DEFAULT_PREFIX};
use flannel_registry::kube::watch::{lease_watch, WatchMode};
use flannel_registry::WatchBatch;
use flannel_testkit::kubeapi::{BytesSent, FakeApiServer};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::watch;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Nodes in the cluster (each a flannel node with a lease).
    pub nodes: usize,
    /// Heartbeat intervals to drive.
    pub intervals: usize,
    /// The kubelet's status update period the byte rates are computed for.
    pub heartbeat_secs: u64,
    /// Deadline of each wait for a watcher.
    pub timeout: Duration,
}

/// What each watcher has seen so far (updated by its draining task).
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// (a): completed initial lists; (b): snapshots.
    syncs: u64,
    /// (a): Apply/Delete events; (b): events inside `Events` batches.
    changes: u64,
    /// (b): leases in the last snapshot.
    leases: usize,
}

/// Bytes per phase for one watcher.
#[derive(Debug, Clone, Copy, Default)]
struct Phases {
    initial: BytesSent,
    heartbeats: BytesSent,
    annotation: BytesSent,
    new_node: BytesSent,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    params: Params,
    full: Phases,
    meta: Phases,
    /// GET requests (b) made during the heartbeat phase.
    heartbeat_gets: usize,
    /// Wall time of the heartbeat phase.
    heartbeat_wall: Duration,
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

fn pod_cidr(i: usize) -> String {
    format!("10.{}.{}.0/24", 244 + i / 256, i % 256)
}

fn public_ip(i: usize) -> String {
    format!("198.51.{}.{}", 100 + i / 250, i % 250 + 1)
}

/// The annotations flanneld writes on its node (vxlan backend).
fn flannel_annotations(i: usize) -> Vec<(String, String)> {
    let p = DEFAULT_PREFIX;
    vec![
        (format!("{p}/kube-subnet-manager"), "true".into()),
        (format!("{p}/backend-type"), "vxlan".into()),
        (
            format!("{p}/backend-data"),
            format!(
                "{{\"VNI\":1,\"VtepMAC\":\"0e:{:02x}:{:02x}:3a:5c:7d\"}}",
                i / 256,
                i % 256
            ),
        ),
        (format!("{p}/public-ip"), public_ip(i)),
    ]
}

/// Register node `i` (kubelet) and annotate it (its flanneld), on both servers.
fn add_flannel_node(servers: &[&FakeApiServer], i: usize) {
    let name = node_name(i);
    let cidr = pod_cidr(i);
    let ann = flannel_annotations(i);
    let changes: Vec<(&str, Option<&str>)> = ann
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    for s in servers {
        s.add_node(&name, &[&cidr]);
        s.set_annotations(&name, &changes);
    }
}

fn diff(after: BytesSent, before: BytesSent) -> BytesSent {
    BytesSent {
        full_objects: after.full_objects - before.full_objects,
        metadata_only: after.metadata_only - before.metadata_only,
        gets: after.gets - before.gets,
        other: after.other - before.other,
    }
}

async fn client(server: &FakeApiServer) -> Result<kube::Client> {
    let url = server.url().parse().context("fake API server URL")?;
    kube::Client::try_from(kube::Config::new(url)).context("building a kube client")
}

/// Wait until every open watch of `server` has sent everything up to its current
/// resourceVersion.
async fn caught_up(server: &FakeApiServer, what: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let rv = server.resource_version();
        let positions = server.watch_positions();
        if !positions.is_empty() && positions.iter().all(|p| *p >= rv) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: watches did not catch up with resourceVersion {rv} ({positions:?})");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Wait until `pred` holds for a watcher's progress.
async fn seen(
    rx: &mut watch::Receiver<Seen>,
    what: &str,
    timeout: Duration,
    pred: impl FnMut(&Seen) -> bool,
) -> Result<Seen> {
    let outcome = tokio::time::timeout(timeout, rx.wait_for(pred))
        .await
        .map(|r| r.map(|s| *s));
    match outcome {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(_)) => bail!("{what}: the watcher stopped"),
        Err(_) => bail!(
            "{what}: timed out after {timeout:?} (seen {:?})",
            *rx.borrow()
        ),
    }
}

fn gets(server: &FakeApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/nodes/"))
        .count()
}

/// Run the benchmark (builds its own tokio runtime).
pub fn run(params: &Params) -> Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(run_async(params))
}

async fn run_async(params: &Params) -> Result<Outcome> {
    let n = params.nodes;
    let t = params.timeout;
    let full_srv = Arc::new(FakeApiServer::start().await);
    let meta_srv = Arc::new(FakeApiServer::start().await);
    let both = [&*full_srv, &*meta_srv];
    for s in both {
        // Like the apiserver (about once a minute), so bookmarks do not inflate the counts.
        s.set_bookmark_interval(Duration::from_secs(60));
    }
    eprintln!(
        "kube-watch: {n} nodes, {} heartbeat intervals",
        params.intervals
    );
    for i in 0..n {
        add_flannel_node(&both, i);
    }

    // (a) Flannel's watch: every Node in full.
    let (full_tx, mut full_rx) = watch::channel(Seen::default());
    let api: Api<Node> = Api::all(client(&full_srv).await?);
    let mut full_stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let full_task = tokio::spawn(async move {
        while let Some(ev) = full_stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => full_tx.send_modify(|s| s.syncs += 1),
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    full_tx.send_modify(|s| s.changes += 1)
                }
                Ok(_) => {}
                Err(e) => eprintln!("kube-watch: full-object watcher: {e}"),
            }
        }
    });

    // (b) flanneld-rs's watch: metadata, then GET when a lease may have changed.
    let (meta_tx, mut meta_rx) = watch::channel(Seen::default());
    let names = AnnotationNames::new(DEFAULT_PREFIX).context("annotation names")?;
    let mut meta_stream = Box::pin(lease_watch(
        client(&meta_srv).await?,
        names,
        WatchMode::MetadataThenGet,
    ));
    let meta_task = tokio::spawn(async move {
        while let Some(batch) = meta_stream.next().await {
            match batch {
                WatchBatch::Snapshot { leases, .. } => meta_tx.send_modify(|s| {
                    s.syncs += 1;
                    s.leases = leases.len();
                }),
                WatchBatch::Events { events, .. } => {
                    meta_tx.send_modify(|s| s.changes += events.len() as u64)
                }
            }
        }
    });

    let result = async {
        // Phase 1: initial list.
        seen(&mut full_rx, "full-object initial list", t, |s| {
            s.syncs >= 1
        })
        .await?;
        let snap = seen(&mut meta_rx, "metadata initial list", t, |s| s.syncs >= 1).await?;
        if snap.leases != n {
            bail!(
                "the metadata watch saw {} leases, expected {n}",
                snap.leases
            );
        }
        caught_up(&full_srv, "full-object initial list", t).await?;
        caught_up(&meta_srv, "metadata initial list", t).await?;
        let mut full = Phases {
            initial: full_srv.bytes_sent(),
            ..Phases::default()
        };
        let mut meta = Phases {
            initial: meta_srv.bytes_sent(),
            ..Phases::default()
        };

        // Phase 2: heartbeats.
        let (f0, m0) = (full_srv.bytes_sent(), meta_srv.bytes_sent());
        let gets0 = gets(&meta_srv);
        let changes0 = full_rx.borrow().changes;
        let started = Instant::now();
        for k in 0..params.intervals {
            for i in 0..n {
                for s in both {
                    s.heartbeat(&node_name(i));
                }
            }
            let want = changes0 + ((k + 1) * n) as u64;
            seen(&mut full_rx, "full-object heartbeats", t, |s| {
                s.changes >= want
            })
            .await?;
            caught_up(&full_srv, "full-object heartbeats", t).await?;
            caught_up(&meta_srv, "metadata heartbeats", t).await?;
            eprintln!("kube-watch: interval {}/{} done", k + 1, params.intervals);
        }
        let heartbeat_wall = started.elapsed();
        full.heartbeats = diff(full_srv.bytes_sent(), f0);
        meta.heartbeats = diff(meta_srv.bytes_sent(), m0);
        let heartbeat_gets = gets(&meta_srv) - gets0;
        if meta_rx.borrow().changes != 0 {
            bail!("heartbeats changed leases in the metadata watch");
        }

        // Phase 3: one node's public IP changes (annotation).
        let (f0, m0) = (full_srv.bytes_sent(), meta_srv.bytes_sent());
        let (fc, mc) = (full_rx.borrow().changes, meta_rx.borrow().changes);
        let key = format!("{DEFAULT_PREFIX}/public-ip");
        for s in both {
            s.set_annotation(&node_name(7 % n), &key, Some("203.0.113.7"));
        }
        seen(&mut full_rx, "full-object annotation", t, |s| {
            s.changes > fc
        })
        .await?;
        seen(&mut meta_rx, "metadata annotation", t, |s| s.changes > mc).await?;
        caught_up(&full_srv, "full-object annotation", t).await?;
        caught_up(&meta_srv, "metadata annotation", t).await?;
        full.annotation = diff(full_srv.bytes_sent(), f0);
        meta.annotation = diff(meta_srv.bytes_sent(), m0);

        // Phase 4: a new node joins (kubelet registers it, its flanneld annotates it).
        let (f0, m0) = (full_srv.bytes_sent(), meta_srv.bytes_sent());
        let (fc, mc) = (full_rx.borrow().changes, meta_rx.borrow().changes);
        add_flannel_node(&both, n);
        seen(&mut full_rx, "full-object new node", t, |s| {
            s.changes >= fc + 2
        })
        .await?;
        seen(&mut meta_rx, "metadata new node", t, |s| s.changes > mc).await?;
        caught_up(&full_srv, "full-object new node", t).await?;
        caught_up(&meta_srv, "metadata new node", t).await?;
        full.new_node = diff(full_srv.bytes_sent(), f0);
        meta.new_node = diff(meta_srv.bytes_sent(), m0);

        Ok(Outcome {
            params: params.clone(),
            full,
            meta,
            heartbeat_gets,
            heartbeat_wall,
        })
    }
    .await;
    full_task.abort();
    meta_task.abort();
    result
}

/// Human-readable bytes.
fn bytes(b: f64) -> String {
    if b >= 1_048_576.0 {
        format!("{:.2} MiB", b / 1_048_576.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// What a watcher received (body bytes; PATCH responses and the like excluded, none occur).
fn received(b: &BytesSent) -> f64 {
    (b.full_objects + b.metadata_only + b.gets) as f64
}

fn ratio(full: f64, meta: f64) -> String {
    if meta > 0.0 {
        format!("{:.1}×", full / meta)
    } else {
        "∞".into()
    }
}

/// The markdown report.
pub fn report(o: &Outcome) -> String {
    let p = &o.params;
    let n = p.nodes as f64;
    let updates = (p.nodes * p.intervals) as f64;
    let seconds = (p.intervals as u64 * p.heartbeat_secs) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Kubernetes node watch: {} nodes, heartbeats every {} s, {} intervals\n",
        p.nodes, p.heartbeat_secs, p.intervals
    );
    let _ = writeln!(
        out,
        "Bytes received by one node's watch (response bodies counted by the fake API server; \
         HTTP headers and chunk framing excluded). (a) kube-rs `watcher(Api<Node>)`, the \
         full-object watch Flannel's informer makes; (b) flanneld-rs \
         `lease_watch(MetadataThenGet)`: metadata-only list/watch + GET of a node when its \
         lease may have changed.\n"
    );
    let _ = writeln!(
        out,
        "| | (a) full objects | (b) metadata + GET | (a)/(b) |\n|---|---:|---:|---:|"
    );
    let mut row = |label: &str, a: f64, b: f64| {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            bytes(a),
            bytes(b),
            ratio(a, b)
        );
    };
    let (fi, mi) = (received(&o.full.initial), received(&o.meta.initial));
    row("initial list", fi, mi);
    let (fh, mh) = (received(&o.full.heartbeats), received(&o.meta.heartbeats));
    row(
        "per node heartbeat (one status update)",
        fh / updates,
        mh / updates,
    );
    row(
        &format!("**per second, one watcher** ({} nodes)", p.nodes),
        fh / seconds,
        mh / seconds,
    );
    row(
        "per second per watched node",
        fh / seconds / n,
        mh / seconds / n,
    );
    row(
        &format!("per second, API server → all {} watchers", p.nodes),
        fh / seconds * n,
        mh / seconds * n,
    );
    row(
        "one annotation change (public-ip)",
        received(&o.full.annotation),
        received(&o.meta.annotation),
    );
    row(
        "one new node (register + annotate)",
        received(&o.full.new_node),
        received(&o.meta.new_node),
    );
    let total = |ph: &Phases| {
        received(&ph.initial)
            + received(&ph.heartbeats)
            + received(&ph.annotation)
            + received(&ph.new_node)
    };
    row("total over the run", total(&o.full), total(&o.meta));
    let _ = writeln!(
        out,
        "\n(b)'s bytes by kind: initial list {} metadata + {} full LIST + {} GETs; \
         heartbeats {} metadata, {} GETs ({} GET requests); annotation change {} metadata + {} GET; \
         new node {} metadata + {} GET. Heartbeat phase wall time: {:.2} s ({} × {} updates per server).",
        bytes(o.meta.initial.metadata_only as f64),
        bytes(o.meta.initial.full_objects as f64),
        bytes(o.meta.initial.gets as f64),
        bytes(o.meta.heartbeats.metadata_only as f64),
        bytes(o.meta.heartbeats.gets as f64),
        o.heartbeat_gets,
        bytes(o.meta.annotation.metadata_only as f64),
        bytes(o.meta.annotation.gets as f64),
        bytes(o.meta.new_node.metadata_only as f64),
        bytes(o.meta.new_node.gets as f64),
        o.heartbeat_wall.as_secs_f64(),
        p.intervals,
        p.nodes,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_and_cidrs_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..600 {
            assert!(seen.insert((node_name(i), pod_cidr(i), public_ip(i))));
        }
        assert_eq!(pod_cidr(257), "10.245.1.0/24");
        assert_eq!(public_ip(250), "198.51.101.1");
    }

    #[test]
    fn small_cluster_end_to_end() {
        let o = run(&Params {
            nodes: 5,
            intervals: 2,
            heartbeat_secs: 10,
            timeout: Duration::from_secs(20),
        })
        .expect("benchmark run");
        assert_eq!(o.heartbeat_gets, 0, "heartbeats cost (b) no GET");
        assert_eq!(o.meta.heartbeats.full_objects, 0);
        assert!(o.full.heartbeats.full_objects > 3 * o.meta.heartbeats.metadata_only);
        assert!(
            o.meta.annotation.gets > 0,
            "an annotation change is fetched"
        );
        assert!(o.meta.new_node.gets > 0, "a new node is fetched");
        let text = report(&o);
        assert!(
            text.contains("| per node heartbeat (one status update) |"),
            "{text}"
        );
    }
}
