//! `flannel-bench`: benchmarks of flanneld's datapath (see `docs/benchmarks.md`).
//!
//! ```text
//! flannel-bench program --peers 1000 --runs 5
//! flannel-bench propagation --samples 200
//! flannel-bench memory --peers 5000
//! flannel-bench all
//! flannel-bench modes --csv bench/plots/vxlan_modes.csv
//! flannel-bench throughput --rounds 3 --csv bench/plots/throughput.csv
//! flannel-bench kube-watch --nodes 250 --intervals 6
//! ```
//!
//! Needs root (it creates network namespaces), `etcd`, iproute2 and a release flanneld
//! (`--flanneld`, default: `flanneld` next to this binary). Progress goes to stderr; the
//! results, as markdown tables, to stdout.

mod bench;
mod etcd;
mod flanneld;
mod kubewatch;
mod modes;
mod monitor;
mod plan;
mod probe;
mod report;
mod stats;
mod throughput;
mod throughput_drops;
mod throughput_report;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use flannel_sandbox::{cleanup, netns};
pub use plan::{ETCD_IP, HOST_IP, UNDERLAY_LEN};

/// First part of every namespace name this program creates (`frsbench<pid>-…`).
pub const NAME_PREFIX: &str = "frsbench";
/// Time limit of a plain setup or reading command (`ip …`, `tc …`).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Benchmarks of flanneld's datapath, in private network namespaces.
#[derive(Debug, Parser)]
#[command(name = "flannel-bench", version)]
struct Cli {
    /// The flanneld binary to measure (default: `flanneld` next to this binary).
    #[arg(long, global = true)]
    flanneld: Option<PathBuf>,
    /// Deadline, in seconds, of each wait for flanneld or the kernel.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
    /// Pause, in milliseconds, between preparing a fresh namespace and starting a measurement
    /// (lets the kernel finish tearing down the previous namespace).
    #[arg(long, global = true, default_value_t = 1000)]
    settle_ms: u64,
    /// Copy every flanneld log to this directory.
    #[arg(long, global = true)]
    keep_logs: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A fresh flanneld facing N leases vs. the `ip -batch`/`bridge -batch` floor.
    Program {
        /// Peer leases in etcd.
        #[arg(long, default_value_t = 1000)]
        peers: usize,
        /// Recorded runs (each: one flanneld run and one floor run).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Unrecorded runs first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
    },
    /// Lease put → route in flanneld's kernel, one lease at a time.
    Propagation {
        /// Leases to write.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Peers already in etcd when flanneld starts.
        #[arg(long, default_value_t = 3)]
        initial_peers: usize,
        /// Pause after each route appeared, in milliseconds.
        #[arg(long, default_value_t = 25)]
        gap_ms: u64,
    },
    /// flanneld's RSS idle (a few peers) and with N peers.
    Memory {
        /// Peers of the loaded measurement.
        #[arg(long, default_value_t = 5000)]
        peers: usize,
        /// Peers of the idle measurement.
        #[arg(long, default_value_t = 3)]
        idle_peers: usize,
    },
    /// The vxlan default (pre-programmed) and on-demand modes on a multi-host lab: entries
    /// vs remote hosts and pods contacted, first packet to a new pod, flanneld stopped.
    Modes {
        /// Remote host counts (ascending, comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,6")]
        hosts: Vec<usize>,
        /// Pods contacted per remote host (ascending, comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0,1,2,4,8")]
        pods: Vec<usize>,
        /// Rounds of the first-packet measurement (each: every remote host once).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds flanneld stays stopped.
        #[arg(long, default_value_t = 10)]
        stop_secs: u64,
        /// Seconds the existing flow runs before flanneld is stopped (its neighbour entry
        /// ages meanwhile: REACHABLE for 15–45 s, then STALE/DELAY/PROBE).
        #[arg(long, default_value_t = 2)]
        flow_lead_secs: u64,
        /// Also write the scale points as CSV here (input of `bench/plots/vxlan_modes.py`).
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Pod-to-pod iperf3 throughput (1 and 4 TCP streams), ping latency and CPU per GB of
    /// vxlan, host-gw, udp and udp with `--udp-fast-path=false`, interleaved by rounds.
    Throughput {
        /// Rounds (each: every backend once, in a rotating order).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds of each iperf3 run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Parallel TCP streams of the iperf3 runs (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        streams: Vec<u32>,
        /// Backends, in table order (comma-separated): vxlan, host-gw, udp, udp-baseline.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "vxlan,host-gw,udp,udp-baseline"
        )]
        backends: Vec<String>,
        /// Pings per measurement.
        #[arg(long, default_value_t = 50)]
        pings: u32,
        /// Interval between pings, in milliseconds.
        #[arg(long, default_value_t = 50)]
        ping_interval_ms: u64,
        /// Also write the per-backend rows as CSV here (input of `bench/plots/throughput.py`).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Measure the backends in the `--backends` order in every round (e.g. `udp,vxlan`:
        /// udp then vxlan), instead of rotating the order from round to round.
        #[arg(long)]
        fixed_order: bool,
        /// TCP congestion control of the iperf3 senders (`iperf3 -C`, e.g. `cubic`, `bbr`);
        /// default: the machine's (`net.ipv4.tcp_congestion_control`, which new namespaces
        /// inherit). It decides what limits a single stream (docs/benchmarks.md).
        #[arg(long)]
        congestion: Option<String>,
    },
    /// Bytes a node watch receives from the Kubernetes API server: Flannel's full-object
    /// watch vs flanneld-rs's metadata watch, against an in-process fake (no root needed).
    KubeWatch {
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 250)]
        nodes: usize,
        /// Heartbeat intervals (each: every node's kubelet updates its status once).
        #[arg(long, default_value_t = 6)]
        intervals: usize,
        /// Kubelet status update period the rates are computed for, in seconds.
        #[arg(long, default_value_t = 10)]
        heartbeat_secs: u64,
    },
    /// Everything with the defaults: program (1,000 and 5,000), propagation, memory.
    All {
        /// Recorded runs of each programming benchmark.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Propagation samples.
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
}

fn main() -> ExitCode {
    if let Err(e) = cleanup::on_signal_and_panic("flannel-bench") {
        eprintln!("flannel-bench: {e:#}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let result = run(cli);
    cleanup::cleanup_all();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flannel-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Cmd::KubeWatch {
        nodes,
        intervals,
        heartbeat_secs,
    } = cli.command
    {
        let params = kubewatch::Params {
            nodes: nodes.clamp(1, 10_000),
            intervals: intervals.max(1),
            heartbeat_secs: heartbeat_secs.max(1),
            timeout: Duration::from_secs(cli.timeout.max(1)),
        };
        let outcome = kubewatch::run(&params)?;
        print!("{}", kubewatch::report(&outcome));
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!("flannel-bench creates network namespaces: run it as root");
    }
    let removed = netns::remove_orphans(NAME_PREFIX)?;
    if !removed.is_empty() {
        eprintln!("removed leftover namespaces: {}", removed.join(", "));
    }
    let bin = match cli.flanneld {
        Some(b) => b,
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("flanneld"),
    };
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = flannel_sandbox::cmd::sh("uname", &["-r"], CMD_TIMEOUT)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut out = String::from("## flannel-bench results\n\n");
    out += &report::machine(nproc, &kernel, &bin.display().to_string());
    out += "\n";
    if let Cmd::Modes {
        hosts,
        pods,
        rounds,
        stop_secs,
        flow_lead_secs,
        csv,
    } = &cli.command
    {
        require_flanneld(&bin)?;
        let params = modes::Params {
            hosts: hosts
                .iter()
                .copied()
                .filter(|h| (1..=250).contains(h))
                .collect(),
            pods: pods.iter().copied().filter(|p| *p <= 200).collect(),
            rounds: (*rounds).max(1),
            stop: Duration::from_secs((*stop_secs).max(1)),
            flow_lead: Duration::from_secs((*flow_lead_secs).clamp(1, 600)),
            timeout,
        };
        if params.hosts.is_empty() {
            bail!("--hosts: give at least one count in 1..=250");
        }
        let results = modes::run(&bin, &params)?;
        if let Some(path) = csv {
            std::fs::write(path, modes::csv(&results))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        out += &modes::report(&results);
        print!("{out}");
        return Ok(());
    }
    if let Cmd::Throughput {
        rounds,
        seconds,
        streams,
        backends,
        pings,
        ping_interval_ms,
        csv,
        fixed_order,
        congestion,
    } = &cli.command
    {
        require_flanneld(&bin)?;
        let cases = backends
            .iter()
            .map(|b| {
                throughput::case(b).with_context(|| {
                    format!("--backends: unknown backend {b:?} (vxlan, host-gw, udp, udp-baseline, wireguard)")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let streams: Vec<u32> = streams
            .iter()
            .copied()
            .filter(|n| (1..=128).contains(n))
            .collect();
        if cases.is_empty() || streams.is_empty() {
            bail!("give at least one backend and one stream count in 1..=128");
        }
        let params = throughput::Params {
            cases,
            streams,
            rounds: (*rounds).max(1),
            seconds: (*seconds).clamp(1, 3600),
            pings: (*pings).clamp(1, 10_000),
            ping_interval: Duration::from_millis((*ping_interval_ms).max(10)),
            timeout,
            settle: Duration::from_millis(cli.settle_ms),
            fixed_order: *fixed_order,
            congestion: congestion.clone(),
        };
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let outcome = throughput::run(&bin, &params)?;
        if let Some(path) = csv {
            std::fs::write(path, throughput::csv(&outcome, &params))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let _ = writeln!(
            out,
            "Load average before the run: {}\n",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        out += &throughput::report(&outcome, &params);
        print!("{out}");
        if !outcome.failures.is_empty() {
            bail!(
                "{} measurement(s) failed (listed in the report)",
                outcome.failures.len()
            );
        }
        return Ok(());
    }
    let mut env = bench::Env::new(
        bin.clone(),
        timeout,
        Duration::from_millis(cli.settle_ms),
        cli.keep_logs,
    )?;

    match cli.command {
        Cmd::Program {
            peers,
            runs,
            warmup,
        } => {
            let r = bench::program(&mut env, peers, runs.max(1), warmup)?;
            out += &report::program(&[r]);
        }
        Cmd::Propagation {
            samples,
            initial_peers,
            gap_ms,
        } => {
            let r = bench::propagation(
                &mut env,
                initial_peers.max(1),
                samples.max(1),
                Duration::from_millis(gap_ms),
            )?;
            out += &report::propagation(&r);
        }
        Cmd::Memory { peers, idle_peers } => {
            let idle = bench::memory(&mut env, idle_peers.max(1))?;
            let loaded = bench::memory(&mut env, peers)?;
            out += &report::memory(&[idle, loaded]);
        }
        Cmd::All { runs, samples } => {
            let mut program = Vec::new();
            for peers in [1000, 5000] {
                program.push(bench::program(&mut env, peers, runs.max(1), 1)?);
            }
            let prop = bench::propagation(&mut env, 3, samples.max(1), Duration::from_millis(25))?;
            let idle = bench::memory(&mut env, 3)?;
            let loaded = bench::memory(&mut env, 5000)?;
            out += &report::program(&program);
            out += "\n";
            out += &report::propagation(&prop);
            out += "\n";
            out += &report::memory(&[idle, loaded]);
        }
        Cmd::Modes { .. } | Cmd::Throughput { .. } | Cmd::KubeWatch { .. } => {}
    }
    drop(env);
    print!("{out}");
    Ok(())
}

/// The flanneld binary must exist before a cluster is built for it.
fn require_flanneld(bin: &std::path::Path) -> Result<()> {
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p flanneld`",
            bin.display()
        );
    }
    Ok(())
}
