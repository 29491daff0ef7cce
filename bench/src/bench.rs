//! The three benchmarks, each against a real flanneld in namespaces of the [`Underlay`]:
//!
//! - [`program`]: a fresh flanneld facing N leases already in etcd — time from its start until
//!   the kernel holds every peer's route, neighbour and FDB entry; next to it, in the same run,
//!   the floor: `ip -batch` + `bridge -batch` loading the same entries (and the same vxlan
//!   device) into an identical fresh namespace. Runs alternate which of the two goes first.
//! - [`propagation`]: one lease written at a time; time from the etcd put returning to the
//!   peer's route appearing in flanneld's kernel.
//! - [`memory`]: flanneld's `VmRSS`/`VmHWM`, idle and with N peers, after a periodic pass.
//!
//! Every wait has a deadline; every namespace and process is removed when its guard drops
//! (namespaces and processes come from the sandbox crate, which also removes them on a signal
//! or a panic).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use flannel_sandbox::netns::{self, Netns};
use flannel_sandbox::{cleanup, cmd};

use crate::etcd::Etcd;
use crate::flanneld::{self, Flanneld, Memory, Reconciled};
use crate::monitor::{Monitor, Pending, Seen};
use crate::plan::{lease_key, lease_value, Plan, VXLAN_DEV};
use crate::probe::{self, Probe};
use crate::{ETCD_IP, HOST_IP, NAME_PREFIX, UNDERLAY_LEN};

/// The benchmarks' underlay: namespace `frsbench<pid>-etcd` with a bridge `br0` =
/// `192.0.2.254/24` (etcd listens there and on its own loopback), and for each host under test
/// a fresh namespace whose `eth0` = `192.0.2.1/24` is a veth port of that bridge. Nothing has
/// a route out.
#[derive(Debug)]
pub struct Underlay {
    id: String,
    etcd_ns: Netns,
    hosts: AtomicUsize,
}

impl Underlay {
    /// Create the etcd namespace and its bridge.
    pub fn new() -> Result<Underlay> {
        let id = format!("{NAME_PREFIX}{}", std::process::id());
        let etcd_ns = Netns::create(format!("{id}-etcd"))?;
        netns::add_bridge(etcd_ns.name(), "br0")?;
        etcd_ns.ip(&[
            "addr",
            "add",
            &format!("{ETCD_IP}/{UNDERLAY_LEN}"),
            "dev",
            "br0",
        ])?;
        Ok(Underlay {
            id,
            etcd_ns,
            hosts: AtomicUsize::new(0),
        })
    }

    /// The etcd namespace.
    pub fn etcd_ns(&self) -> &Netns {
        &self.etcd_ns
    }

    /// A fresh host namespace `frsbench<pid>-<role><k>` with `eth0` = `192.0.2.1/24` on the
    /// bridge. Hosts are used one at a time (they share the address).
    pub fn add_host(&self, role: &str) -> Result<Netns> {
        let k = self.hosts.fetch_add(1, Ordering::SeqCst);
        let ns = Netns::create(format!("{}-{role}{k}", self.id))?;
        netns::plug(
            self.etcd_ns.name(),
            "br0",
            &format!("hb{k}"),
            ns.name(),
            "eth0",
            &format!("{HOST_IP}/{UNDERLAY_LEN}"),
        )?;
        Ok(ns)
    }
}

/// What every benchmark needs: the flanneld binary, the lab with etcd, a work directory.
/// Fields drop in order: etcd, then the lab's namespaces, then the directory.
#[derive(Debug)]
pub struct Env {
    etcd: Etcd,
    lab: Underlay,
    dir: tempfile::TempDir,
    bin: PathBuf,
    timeout: Duration,
    keep_logs: Option<PathBuf>,
    settle: Duration,
    runs_started: usize,
}

impl Env {
    /// Create the lab and start etcd. `timeout` bounds each wait for flanneld or the kernel.
    /// `settle` is the pause between preparing a host namespace and starting a measurement in
    /// it (the kernel finishes tearing down the previous namespace in the background).
    pub fn new(
        bin: PathBuf,
        timeout: Duration,
        settle: Duration,
        keep_logs: Option<PathBuf>,
    ) -> Result<Env> {
        if !bin.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p flanneld`",
                bin.display()
            );
        }
        let shm = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        let prefix = format!("{NAME_PREFIX}{}-", std::process::id());
        builder.prefix(&prefix);
        let dir = if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .context("creating the work directory")?;
        cleanup::track_dir(dir.path());
        let lab = Underlay::new()?;
        let etcd = Etcd::start(lab.etcd_ns(), dir.path())?;
        if let Some(k) = &keep_logs {
            std::fs::create_dir_all(k).with_context(|| format!("creating {}", k.display()))?;
        }
        Ok(Env {
            etcd,
            lab,
            dir,
            bin,
            timeout,
            keep_logs,
            settle,
            runs_started: 0,
        })
    }

    fn run_dir(&mut self, what: &str) -> Result<PathBuf> {
        self.runs_started += 1;
        let d = self
            .dir
            .path()
            .join(format!("{:03}-{what}", self.runs_started));
        std::fs::create_dir_all(&d).context("creating a run directory")?;
        Ok(d)
    }

    fn keep_log(&self, run_dir: &Path) {
        if let (Some(keep), Some(name)) = (&self.keep_logs, run_dir.file_name()) {
            let _ = std::fs::copy(
                run_dir.join("flanneld.log"),
                keep.join(format!("{}.log", name.to_string_lossy())),
            );
        }
    }
}

/// Sends the instant the last missing entry arrived (or why that will never happen).
type DoneTx = mpsc::Sender<std::result::Result<Instant, String>>;

/// A monitor in `ns` that reports once every entry of `peers` is in the kernel.
fn completion_monitor(ns: &Netns, plan: &Plan) -> Result<(Monitor, Completion)> {
    let (tx, rx): (DoneTx, _) = mpsc::channel();
    let mut pending = Pending::for_peers(&plan.peers);
    if pending.total() == 0 {
        bail!("nothing to wait for");
    }
    let missing = Arc::new(AtomicUsize::new(pending.total()));
    let missing2 = missing.clone();
    let monitor = Monitor::start(ns.name(), move |seen, at| {
        if seen == Seen::Overrun {
            let _ = tx.send(Err("rtnetlink notifications were lost (ENOBUFS)".into()));
            return false;
        }
        let done = pending.see(seen);
        missing2.store(pending.missing(), Ordering::Relaxed);
        if done {
            let _ = tx.send(Ok(at));
            return false;
        }
        true
    })?;
    Ok((monitor, Completion { rx, missing }))
}

/// The receiving end of a [`completion_monitor`].
struct Completion {
    rx: mpsc::Receiver<std::result::Result<Instant, String>>,
    missing: Arc<AtomicUsize>,
}

/// Wait for the completion report, checking `alive` every 100 ms.
fn wait_complete(
    c: &Completion,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        match c.rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(at)) => return Ok(at),
            Ok(Err(e)) => bail!("{e}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the monitor stopped"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        alive()?;
        if Instant::now() >= deadline {
            bail!(
                "the kernel did not hold every entry within {timeout:?} ({} still missing)",
                c.missing.load(Ordering::Relaxed)
            );
        }
    }
}

/// Check with iproute2 that `ns` holds exactly one route, neighbour and FDB entry per peer.
fn verify_entries(ns: &Netns, peers: usize) -> Result<()> {
    let routes = ns
        .ip(&["-4", "route", "show", "dev", VXLAN_DEV])?
        .lines()
        .count();
    let neighs = ns
        .ip(&["-4", "neigh", "show", "dev", VXLAN_DEV, "nud", "permanent"])?
        .lines()
        .count();
    let fdbs = ns
        .bridge(&["fdb", "show", "dev", VXLAN_DEV])?
        .lines()
        .filter(|l| l.contains(" dst "))
        .count();
    if (routes, neighs, fdbs) != (peers, peers, peers) {
        bail!(
            "expected {peers} routes, neighbours and FDB entries on {VXLAN_DEV}, found {routes}, {neighs} and {fdbs}"
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A flanneld that must keep running; its log tail explains a death.
fn check_alive(fl: &mut Flanneld) -> Result<()> {
    if fl.running() {
        Ok(())
    } else {
        bail!("flanneld exited; log tail:\n{}", fl.log_tail(20))
    }
}

/// Wait (≤ 5 s) for the log line of the pass that programmed `peers` peers.
fn wait_programmed_line(fl: &Flanneld, peers: usize) -> Option<Reconciled> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = flanneld::reconciled_lines(&fl.log())
            .into_iter()
            .find(|r| r.peers == peers as u64 && r.ops > 0);
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One flanneld run of the programming benchmark.
#[derive(Debug, Clone)]
pub struct FlanneldRun {
    /// Start → every entry in the kernel.
    pub total_ms: f64,
    /// `took_ms` of the pass that programmed the peers (from the log).
    pub apply_ms: Option<f64>,
    /// `ops` of that pass.
    pub apply_ops: Option<u64>,
    /// Start → flanneld's first log line (process start-up, `ip netns exec` included).
    pub first_log_ms: Option<f64>,
    /// Start → `lease acquired` (log timestamp).
    pub lease_ms: Option<f64>,
    /// Start → `flannel is ready`.
    pub ready_ms: Option<f64>,
    /// Start → `initial lease snapshot loaded` (every peer read from etcd).
    pub snapshot_ms: Option<f64>,
    /// Start → the end of the programming pass (its log line).
    pub programmed_ms: Option<f64>,
    /// Reconcile passes with ops after the programming pass, within the run.
    pub extra_passes: usize,
}

/// One floor run.
#[derive(Debug, Clone)]
pub struct FloorRun {
    /// Start of `ip -batch` → every entry in the kernel.
    pub total_ms: f64,
    /// Wall time of the `ip -batch` and `bridge -batch` processes.
    pub process_ms: f64,
}

/// The programming benchmark's result for one N.
#[derive(Debug, Clone)]
pub struct ProgramResult {
    /// Peers.
    pub peers: usize,
    /// `SubnetLen` used.
    pub subnet_len: u8,
    /// Recorded flanneld runs.
    pub flanneld: Vec<FlanneldRun>,
    /// Recorded floor runs (paired with `flanneld` by index).
    pub floor: Vec<FloorRun>,
}

fn flanneld_program_run(env: &mut Env, plan: &Plan) -> Result<FlanneldRun> {
    let run_dir = env.run_dir(&format!("program{}-flanneld", plan.peers.len()))?;
    let host = env.lab.add_host("fl")?;
    let (monitor, rx) = completion_monitor(&host, plan)?;
    std::thread::sleep(env.settle);
    let (mut fl, t0, wall0) = Flanneld::spawn(&env.bin, &host, &run_dir)?;
    let done = wait_complete(&rx, env.timeout, || check_alive(&mut fl));
    drop(monitor);
    let done = done.with_context(|| format!("flanneld log tail:\n{}", fl.log_tail(15)))?;
    let total_ms = ms(done - t0);
    verify_entries(&host, plan.peers.len())?;
    let programmed = wait_programmed_line(&fl, plan.peers.len());
    // Give a pass triggered by our own notifications (socket overrun) a moment to show.
    std::thread::sleep(Duration::from_millis(300));
    let log = fl.log();
    let since = |t: Option<SystemTime>| t.map(|t| flanneld::ms_between(wall0, t));
    let extra_passes = flanneld::reconciled_lines(&log)
        .iter()
        .filter(|r| r.ops > 0 && r.peers == plan.peers.len() as u64)
        .count()
        .saturating_sub(1);
    let run = FlanneldRun {
        total_ms,
        apply_ms: programmed.as_ref().map(|r| r.took_ms as f64),
        apply_ops: programmed.as_ref().map(|r| r.ops),
        first_log_ms: since(
            log.lines()
                .next()
                .and_then(|l| flanneld::line_time(&flanneld::strip_ansi(l))),
        ),
        lease_ms: since(flanneld::first_line_time(&log, "lease acquired")),
        ready_ms: since(flanneld::first_line_time(&log, "flannel is ready")),
        snapshot_ms: since(flanneld::first_line_time(
            &log,
            "initial lease snapshot loaded",
        )),
        programmed_ms: since(programmed.and_then(|r| r.at)),
        extra_passes,
    };
    if fl.comm() != "flanneld" {
        bail!("the measured process is not flanneld but {:?}", fl.comm());
    }
    fl.stop()?;
    env.keep_log(&run_dir);
    drop(host);
    env.etcd.delete_foreign_leases(plan)?;
    Ok(run)
}

fn floor_program_run(
    env: &mut Env,
    plan: &Plan,
    ip_file: &Path,
    bridge_file: &Path,
) -> Result<FloorRun> {
    let host = env.lab.add_host("floor")?;
    let (monitor, rx) = completion_monitor(&host, plan)?;
    let ip_file = ip_file.to_string_lossy().into_owned();
    let bridge_file = bridge_file.to_string_lossy().into_owned();
    std::thread::sleep(env.settle);
    let t0 = Instant::now();
    cmd::sh("ip", &["-n", host.name(), "-batch", &ip_file], env.timeout)?;
    cmd::sh(
        "bridge",
        &["-n", host.name(), "-batch", &bridge_file],
        env.timeout,
    )?;
    let process_ms = ms(t0.elapsed());
    let done = wait_complete(&rx, env.timeout, || Ok(()));
    drop(monitor);
    let total_ms = ms(done? - t0);
    verify_entries(&host, plan.peers.len())?;
    Ok(FloorRun {
        total_ms,
        process_ms,
    })
}

/// The programming benchmark: `warmup` unrecorded pairs, then `runs` recorded pairs, each a
/// flanneld run and a floor run in alternating order.
pub fn program(env: &mut Env, peers: usize, runs: usize, warmup: usize) -> Result<ProgramResult> {
    let plan = Plan::new(peers)?;
    env.etcd.load(&plan)?;
    let ip_file = env.dir.path().join(format!("floor-{peers}.ip"));
    let bridge_file = env.dir.path().join(format!("floor-{peers}.bridge"));
    std::fs::write(&ip_file, plan.ip_batch()).context("writing the ip batch")?;
    std::fs::write(&bridge_file, plan.bridge_batch()).context("writing the bridge batch")?;
    let mut result = ProgramResult {
        peers,
        subnet_len: plan.subnet_len,
        flanneld: Vec::new(),
        floor: Vec::new(),
    };
    for k in 0..warmup + runs {
        let recorded = k >= warmup;
        let label = if recorded {
            format!("run {}/{runs}", k - warmup + 1)
        } else {
            format!("warm-up {}/{warmup}", k + 1)
        };
        let (fl, floor) = if k % 2 == 0 {
            let fl = flanneld_program_run(env, &plan)?;
            let floor = floor_program_run(env, &plan, &ip_file, &bridge_file)?;
            (fl, floor)
        } else {
            let floor = floor_program_run(env, &plan, &ip_file, &bridge_file)?;
            let fl = flanneld_program_run(env, &plan)?;
            (fl, floor)
        };
        eprintln!(
            "program N={peers} {label}: flanneld {:.1} ms (apply {} ms, ready at {} ms, extra passes {}), \
             floor {:.1} ms (processes {:.1} ms), ratio {:.2}",
            fl.total_ms,
            opt(fl.apply_ms),
            opt(fl.ready_ms),
            fl.extra_passes,
            floor.total_ms,
            floor.process_ms,
            fl.total_ms / floor.total_ms
        );
        if recorded {
            result.flanneld.push(fl);
            result.floor.push(floor);
        }
    }
    Ok(result)
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "?".into(), |v| format!("{v:.1}"))
}

/// The propagation benchmark's result.
#[derive(Debug, Clone)]
pub struct PropagationResult {
    /// Leases present when flanneld started.
    pub initial_peers: usize,
    /// Put returned → route in the kernel, per sample (ms; negative when the route came
    /// first).
    pub after_put_ms: Vec<f64>,
    /// Put sent → route in the kernel, per sample (ms).
    pub after_send_ms: Vec<f64>,
    /// The etcd put's round trip, per sample (ms).
    pub put_ms: Vec<f64>,
    /// Samples whose route did not appear within 5 s.
    pub missed: usize,
    /// Durations of the control probe's dump rounds (ms), see [`crate::probe`].
    pub probe_ms: Vec<f64>,
    /// Samples slower than [`SLOW_SAMPLE`].
    pub slow: usize,
    /// Of those, how many overlapped a probe round slower than [`SLOW_SAMPLE`].
    pub slow_with_slow_probe: usize,
}

/// A propagation sample (or probe round) above this counts as slow.
pub const SLOW_SAMPLE: Duration = Duration::from_millis(10);

/// The propagation benchmark: flanneld runs with `initial` peers; `samples` leases are
/// written one at a time, `gap` apart after each route appeared.
pub fn propagation(
    env: &mut Env,
    initial: usize,
    samples: usize,
    gap: Duration,
) -> Result<PropagationResult> {
    let full = Plan::new(initial + samples)?;
    let start_plan = Plan {
        subnet_len: full.subnet_len,
        peers: full.peers[..initial].to_vec(),
    };
    env.etcd.load(&start_plan)?;
    let run_dir = env.run_dir("propagation")?;
    let host = env.lab.add_host("prop")?;
    let (monitor, rx) = completion_monitor(&host, &start_plan)?;
    std::thread::sleep(env.settle);
    let (mut fl, _, _) = Flanneld::spawn(&env.bin, &host, &run_dir)?;
    let done = wait_complete(&rx, env.timeout, || check_alive(&mut fl));
    drop(monitor);
    done.with_context(|| format!("flanneld log tail:\n{}", fl.log_tail(15)))?;
    std::thread::sleep(Duration::from_millis(500));

    // Leases to write: subnets nobody holds (flanneld's own lease is somewhere among them).
    let taken: HashSet<String> = env.etcd.lease_keys()?.into_iter().collect();
    let mut todo = Vec::with_capacity(samples);
    let mut i = initial;
    while todo.len() < samples {
        let p = full.peer(i);
        if i + 1 >= full.subnet_count() {
            bail!("not enough free subnets for {samples} samples");
        }
        if !taken.contains(&lease_key(p.subnet)) {
            todo.push(p);
        }
        i += 1;
    }

    let (tx, mut routes) = tokio::sync::mpsc::unbounded_channel::<(ipnet::Ipv4Net, Instant)>();
    let monitor = Monitor::start(host.name(), move |seen, at| {
        if let Seen::Route(net) = seen {
            let _ = tx.send((net, at));
        }
        true
    })?;
    let probe = Probe::start(host.name())?;
    let result = env.etcd.with_client(|mut c| async move {
        let mut r = PropagationResult {
            initial_peers: initial,
            after_put_ms: Vec::new(),
            after_send_ms: Vec::new(),
            put_ms: Vec::new(),
            missed: 0,
            probe_ms: Vec::new(),
            slow: 0,
            slow_with_slow_probe: 0,
        };
        let mut slow_windows = Vec::new();
        for (k, p) in todo.iter().enumerate() {
            while routes.try_recv().is_ok() {}
            let sent = Instant::now();
            c.put(lease_key(p.subnet), lease_value(p), None)
                .await
                .context("writing a lease")?;
            let returned = Instant::now();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let seen = loop {
                match tokio::time::timeout_at(deadline, routes.recv()).await {
                    Ok(Some((net, at))) if net == p.subnet => break Some(at),
                    Ok(Some(_)) => continue,
                    Ok(None) => bail!("the route monitor stopped"),
                    Err(_) => break None,
                }
            };
            match seen {
                Some(at) => {
                    let signed = |from: Instant| {
                        if at >= from {
                            ms(at - from)
                        } else {
                            -ms(from - at)
                        }
                    };
                    let lat = signed(returned);
                    if at > returned + SLOW_SAMPLE {
                        slow_windows.push((returned, at));
                    }
                    if lat > 10.0 {
                        eprintln!(
                            "propagation: sample {k} ({}) took {lat:.1} ms after the put returned",
                            p.subnet
                        );
                    }
                    r.after_put_ms.push(lat);
                    r.after_send_ms.push(signed(sent));
                    r.put_ms.push(ms(returned - sent));
                }
                None => {
                    r.missed += 1;
                    eprintln!(
                        "propagation: sample {k} ({}) did not appear within 5 s",
                        p.subnet
                    );
                    if r.missed * 10 > samples {
                        bail!("more than 10% of the leases never reached the kernel");
                    }
                }
            }
            if (k + 1) % 50 == 0 {
                eprintln!("propagation: {}/{} samples", k + 1, todo.len());
            }
            tokio::time::sleep(gap).await;
        }
        Ok((r, slow_windows))
    });
    let probes = probe.stop();
    let monitor_result = monitor.stop();
    let alive = check_alive(&mut fl);
    fl.stop()?;
    env.keep_log(&run_dir);
    drop(host);
    let (mut result, slow_windows) = result?;
    monitor_result?;
    alive?;
    let probes = probes?;
    result.probe_ms = probes.iter().map(|(_, d)| ms(*d)).collect();
    result.slow = slow_windows.len();
    result.slow_with_slow_probe = probe::overlapping(&slow_windows, &probes, SLOW_SAMPLE);
    Ok(result)
}

/// flanneld's memory with some number of peers.
#[derive(Debug, Clone, Copy)]
pub struct MemorySample {
    /// Peers in etcd.
    pub peers: usize,
    /// Right after every entry was programmed (+1 s).
    pub programmed: Memory,
    /// After at least one periodic reconcile pass (12 s after start).
    pub settled: Memory,
}

/// flanneld's memory with `peers` leases: start, wait for the kernel, read `/proc` 1 s later
/// and again 12 s after start (after the first 10-second periodic pass).
pub fn memory(env: &mut Env, peers: usize) -> Result<MemorySample> {
    let plan = Plan::new(peers)?;
    env.etcd.load(&plan)?;
    let run_dir = env.run_dir(&format!("memory{peers}"))?;
    let host = env.lab.add_host("mem")?;
    let (monitor, rx) = completion_monitor(&host, &plan)?;
    std::thread::sleep(env.settle);
    let (mut fl, t0, _) = Flanneld::spawn(&env.bin, &host, &run_dir)?;
    let done = wait_complete(&rx, env.timeout, || check_alive(&mut fl));
    drop(monitor);
    done.with_context(|| format!("flanneld log tail:\n{}", fl.log_tail(15)))?;
    std::thread::sleep(Duration::from_secs(1));
    let programmed = fl.memory()?;
    let settle_at = t0 + Duration::from_secs(12);
    while Instant::now() < settle_at {
        std::thread::sleep(Duration::from_millis(100));
        check_alive(&mut fl)?;
    }
    let settled = fl.memory()?;
    fl.stop()?;
    env.keep_log(&run_dir);
    drop(host);
    eprintln!(
        "memory N={peers}: after programming RSS {} KiB (HWM {}), after a periodic pass RSS {} KiB \
         (anon {}, file {} of which flanneld's binary {}, HWM {}, {} threads)",
        programmed.rss_kib,
        programmed.hwm_kib,
        settled.rss_kib,
        settled.anon_kib,
        settled.file_kib,
        settled.binary_kib,
        settled.hwm_kib,
        settled.threads
    );
    Ok(MemorySample {
        peers,
        programmed,
        settled,
    })
}
