//! `flannel-bench throughput`: pod-to-pod TCP throughput, ping latency and CPU per GB of the
//! vxlan, host-gw and udp backends, and of the udp backend's one-packet-per-syscall path
//! (`--udp-fast-path=false`) as the baseline of a naive proxy (issue 5, see
//! `docs/benchmarks.md`, "udp backend throughput").
//!
//! All backends are measured in one run, interleaved by rounds: each round measures every
//! backend once, and the order rotates from round to round (round r starts with backend
//! r mod n), so drift of a noisy machine hits every backend alike. Each measurement gets a
//! fresh cluster built with `flannel_testkit::topology` (namespaces `frs-<pid>-<n>-btput_…`,
//! removed when the lab is dropped, and by `flannel_sandbox::cleanup` on a signal or panic):
//! etcd, two hosts (`192.0.2.1`, `192.0.2.2`), flanneld on each, one pod per host in
//! `198.18.0.0/16`. Then, from the pod on host 1 to the pod on host 2:
//!
//! 1. `ping -n -c <pings> -i <interval> -W 1` (on the idle path): every RTT is kept;
//! 2. for each stream count: `iperf3 -s -1` in pod 2, `iperf3 -c … -t <seconds> -P <n> -J`
//!    in pod 1; `/proc/stat` and both flanneld processes' `/proc/<pid>/stat` are read right
//!    before and right after the client, giving the machine's busy CPU seconds and flanneld's
//!    own CPU seconds during the run.
//!
//! Right before and after each client run (outside the CPU window), the loss counters of every
//! lab namespace and the machine's softnet drops are read: the report's "drops by place"
//! ([`crate::throughput_drops`]).
//!
//! The pure half (parsing, medians, table, CSV) is [`crate::throughput_report`] and
//! [`crate::throughput_drops`].

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flannel_testkit::topology::{Flanneld, Host, Lab, Pod};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::throughput_drops::{self as drops, DropSample, Snapshot};
use crate::throughput_report::{
    parse_iperf, parse_pid_cpu, parse_ping_rtts, parse_proc_stat, round_ratios, round_section,
    summarize, summarize_latency, table, CpuTimes, Latency, Sample,
};
use flannel_sandbox::cmd::{self, command};

/// One configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Name in the tables (`--backends`).
    pub name: &'static str,
    /// The network config written to etcd.
    pub config: &'static str,
    /// Extra flanneld arguments.
    pub args: &'static [&'static str],
}

/// Every configuration this benchmark knows, in table order.
pub const CASES: [Case; 5] = [
    Case {
        name: "vxlan",
        config: r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#,
        args: &[],
    },
    Case {
        name: "host-gw",
        config: r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#,
        args: &[],
    },
    Case {
        name: "udp",
        config: r#"{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}"#,
        args: &[],
    },
    Case {
        name: "udp-baseline",
        config: r#"{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}"#,
        args: &["--udp-fast-path=false"],
    },
    // The kernel module where the kernel has it, userspace here (auto-detected).
    Case {
        name: "wireguard",
        config: r#"{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard"}}"#,
        args: &[],
    },
];

/// The case called `name`.
pub fn case(name: &str) -> Option<Case> {
    CASES.iter().copied().find(|c| c.name == name)
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Params {
    /// Configurations, in table order.
    pub cases: Vec<Case>,
    /// Parallel stream counts of the iperf3 runs.
    pub streams: Vec<u32>,
    /// Rounds (each: every case once).
    pub rounds: usize,
    /// Seconds of each iperf3 run.
    pub seconds: u64,
    /// Pings per measurement.
    pub pings: u32,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Deadline of each wait for flanneld.
    pub timeout: Duration,
    /// Pause after the cluster is ready, before measuring.
    pub settle: Duration,
    /// Every round in the `cases` order (instead of rotating it).
    pub fixed_order: bool,
    /// The iperf3 senders' TCP congestion control (`-C`); `None`: the machine's default.
    pub congestion: Option<String>,
}

/// A measurement that could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Case name.
    pub backend: String,
    /// Round (1-based).
    pub round: usize,
    /// The error, first line.
    pub error: String,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// One per case, round and stream count.
    pub samples: Vec<Sample>,
    /// One per case and round.
    pub latency: Vec<Latency>,
    /// Measurements that failed (the run goes on with the others).
    pub failures: Vec<Failure>,
    /// Loss counters that grew, per case, round and stream count.
    pub drops: Vec<DropSample>,
    /// Per case, the line of the first flanneld log that says which udp fast-path features are
    /// in use, if any.
    pub notes: Vec<(String, String)>,
}

/// The port iperf3 listens on in pod 2.
const IPERF_PORT: &str = "5201";

/// Run every round. A failed measurement is recorded (with its error printed to stderr) and
/// the run goes on; only an error outside a measurement aborts.
pub fn run(bin: &Path, p: &Params) -> Result<Outcome> {
    let clk_tck = clock_ticks_per_second()?;
    let mut out = Outcome::default();
    let n = p.cases.len();
    for round in 1..=p.rounds {
        let order = if p.fixed_order {
            (0..n).collect()
        } else {
            round_order(n, round)
        };
        for i in order {
            let case = p.cases[i];
            eprintln!("== round {round}/{}: {}", p.rounds, case.name);
            match measure(bin, p, case, round, clk_tck) {
                Ok(m) => {
                    for s in &m.samples {
                        eprintln!(
                            "   {} streams: {:.2} Gbit/s, machine {:.2} CPU s, flanneld {:.2} CPU s",
                            s.streams,
                            s.gbps(),
                            s.machine_cpu_s,
                            s.flanneld_cpu_s
                        );
                    }
                    for d in &m.drops {
                        if !d.deltas.is_empty() {
                            let list: Vec<String> =
                                d.deltas.iter().map(|(k, v)| format!("{k} +{v}")).collect();
                            eprintln!(
                                "   {} streams, drops by place: {}",
                                d.streams,
                                list.join(", ")
                            );
                        }
                    }
                    out.samples.extend(m.samples);
                    out.drops.extend(m.drops);
                    out.latency.push(m.latency);
                    if let Some(note) = m.note {
                        if !out.notes.iter().any(|(b, _)| b == case.name) {
                            out.notes.push((case.name.to_owned(), note));
                        }
                    }
                }
                Err(e) => {
                    eprintln!("   {} failed: {e:#}", case.name);
                    out.failures.push(Failure {
                        backend: case.name.to_owned(),
                        round,
                        error: crate::throughput_report::error_summary(&format!("{e:#}")),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The order of the `n` cases in round `round` (1-based): rotated by one each round, so every
/// case takes every position equally often over `n` rounds.
pub fn round_order(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round.saturating_sub(1)) % n).collect()
}

/// The markdown report: the tables, then which udp fast-path features flanneld said it uses,
/// then the failed measurements.
pub fn report(o: &Outcome, p: &Params) -> String {
    let names: Vec<&str> = p.cases.iter().map(|c| c.name).collect();
    let rows = summarize(&o.samples, &names, &p.streams);
    let lat = summarize_latency(&o.latency, &names);
    let mut s = congestion_line(p.congestion.as_deref(), &machine_congestion());
    s += &table(&rows, &lat, p.seconds);
    s += &round_section(&round_ratios(&o.samples, &names, &p.streams));
    s += &drops::section(&drops::summarize(&o.drops, &names, &p.streams));
    if !o.notes.is_empty() {
        s += "\nflanneld (host 1, first round) said:\n\n";
        for (b, note) in &o.notes {
            s += &format!("- {b}: `{note}`\n");
        }
    }
    if !o.failures.is_empty() {
        s += "\nFailed measurements:\n\n";
        for f in &o.failures {
            s += &format!("- {} round {}: {}\n", f.backend, f.round, f.error);
        }
    }
    s
}

/// The machine's default TCP congestion control (what the pods' namespaces inherit).
fn machine_congestion() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Which congestion control the senders ran with: it decides what limits a single stream
/// (BBR paces at its bandwidth estimate; cubic fills the path until the CPUs are busy).
pub fn congestion_line(chosen: Option<&str>, machine: &str) -> String {
    match chosen {
        Some(cc) => format!("TCP congestion control of the senders: `{cc}` (`--congestion`; the machine's default is `{machine}`)\n\n"),
        None => format!("TCP congestion control of the senders: `{machine}` (the machine's default, `net.ipv4.tcp_congestion_control`)\n\n"),
    }
}

/// The CSV for `bench/plots/throughput.py`.
pub fn csv(o: &Outcome, p: &Params) -> String {
    let names: Vec<&str> = p.cases.iter().map(|c| c.name).collect();
    let rows = summarize(&o.samples, &names, &p.streams);
    let lat = summarize_latency(&o.latency, &names);
    crate::throughput_report::csv(&rows, &lat)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of `/proc/stat` and `/proc/<pid>/stat` times.
fn clock_ticks_per_second() -> Result<f64> {
    let v = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .context("sysconf(CLK_TCK)")?
        .context("sysconf(CLK_TCK) has no value")?;
    if v <= 0 {
        bail!("sysconf(CLK_TCK) = {v}");
    }
    Ok(v as f64)
}

struct Measured {
    samples: Vec<Sample>,
    drops: Vec<DropSample>,
    latency: Latency,
    note: Option<String>,
}

/// The running cluster of one measurement. Field order = drop order: flanneld, etcd, lab.
struct Cluster {
    flanneld: Vec<Flanneld>,
    _etcd: flannel_testkit::topology::Etcd,
    hosts: Vec<Host>,
    lab: Lab,
}

/// The hosts share this machine's `/run`: with wireguard each gets its own key file
/// (`WIREGUARD_KEY_FILE`) through a wrapper script in its directory.
fn per_host_key(bin: &Path, h: &Host, case: Case) -> Result<std::path::PathBuf> {
    if !case.config.contains("wireguard") {
        return Ok(bin.to_path_buf());
    }
    let wrapper = h.dir().join("flanneld-wg");
    let key = h.dir().join("wgkey");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nWIREGUARD_KEY_FILE={} exec {} \"$@\"\n",
            key.display(),
            bin.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok(wrapper)
}

impl Cluster {
    fn build(bin: &Path, case: Case, timeout: Duration) -> Result<Cluster> {
        let lab = Lab::new(&format!("btput_{}", case.name))?;
        let etcd = lab.start_etcd()?;
        etcd.put_config(case.config)?;
        let hosts = vec![lab.add_host(1)?, lab.add_host(2)?];
        let mut flanneld = Vec::new();
        for h in &hosts {
            let bin = per_host_key(bin, h, case)?;
            flanneld.push(h.start_flanneld(&bin, case.args)?);
        }
        let mut c = Cluster {
            flanneld,
            _etcd: etcd,
            hosts,
            lab,
        };
        for f in &mut c.flanneld {
            f.wait_ready(timeout)?;
        }
        Ok(c)
    }

    /// The pids of the flanneld processes: the processes of each host namespace whose
    /// executable is `bin` (the harness starts flanneld through `ip netns exec`, which execs).
    fn flanneld_pids(&self, bin: &Path) -> Result<Vec<i32>> {
        let bin = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.to_path_buf());
        let mut pids = Vec::new();
        for h in &self.hosts {
            let listed = cmd::sh("ip", &["netns", "pids", h.ns()], crate::CMD_TIMEOUT)?;
            let found: Vec<i32> = listed
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == bin)
                })
                .collect();
            if found.len() != 1 {
                bail!(
                    "expected one flanneld in {}, found pids {found:?} (of {listed:?})",
                    h.ns()
                );
            }
            pids.extend(found);
        }
        Ok(pids)
    }

    fn note(&self) -> Option<String> {
        self.flanneld
            .first()
            .and_then(|f| crate::throughput_report::fast_path_note(&f.log()))
    }
}

fn measure(bin: &Path, p: &Params, case: Case, round: usize, clk_tck: f64) -> Result<Measured> {
    let mut c = Cluster::build(bin, case, p.timeout)?;
    let src = c.hosts[0].add_pod(1)?;
    let dst = c.hosts[1].add_pod(1)?;
    if let Err(e) = reach(&src, &dst, p.timeout) {
        let logs: Vec<String> = c.flanneld.iter().map(|f| f.log_tail(15)).collect();
        bail!("{e:#}\n{}", logs.join("\n"));
    }
    for f in &mut c.flanneld {
        if let Some(status) = f.try_exit_status() {
            bail!("flanneld exited ({status}); log:\n{}", f.log_tail(20));
        }
    }
    std::thread::sleep(p.settle);
    let pids = c.flanneld_pids(bin)?;
    let places = [
        ("h1", c.hosts[0].ns()),
        ("h2", c.hosts[1].ns()),
        ("p1", src.ns()),
        ("p2", dst.ns()),
        ("sw", c.lab.switch_ns()),
    ];

    let latency = Latency {
        backend: case.name.to_owned(),
        round,
        sent: p.pings,
        rtts_ms: ping(&src, &dst, p.pings, p.ping_interval)?,
    };
    let mut samples = Vec::new();
    let mut dropped = Vec::new();
    for &streams in &p.streams {
        let before = read_drops(&places);
        let (iperf, machine_ticks, flanneld_ticks) = iperf_run(&src, &dst, streams, p, &pids)
            .with_context(|| format!("iperf3 with {streams} stream(s)"))?;
        if let (Some(before), Some(after)) = (before, read_drops(&places)) {
            dropped.push(DropSample {
                backend: case.name.to_owned(),
                round,
                streams,
                deltas: drops::deltas(&before, &after),
            });
        }
        samples.push(Sample {
            backend: case.name.to_owned(),
            round,
            streams,
            iperf,
            machine_cpu_s: machine_ticks as f64 / clk_tck,
            flanneld_cpu_s: flanneld_ticks as f64 / clk_tck,
        });
    }
    for f in &mut c.flanneld {
        if let Some(status) = f.try_exit_status() {
            bail!(
                "flanneld exited ({status}) during the measurement; log:\n{}",
                f.log_tail(20)
            );
        }
    }
    let note = c.note();
    let lab_prefix = c.lab.prefix().to_owned();
    drop(c);
    eprintln!("   {lab_prefix}: removed");
    Ok(Measured {
        samples,
        drops: dropped,
        latency,
        note,
    })
}

/// The loss counters of every place (`(label, namespace)`) and the machine's softnet drops;
/// `None` (with a warning) when something cannot be read: drops by place are best effort.
fn read_drops(places: &[(&str, &str)]) -> Option<Snapshot> {
    match try_read_drops(places) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("   warning: drops by place not read: {e:#}");
            None
        }
    }
}

fn try_read_drops(places: &[(&str, &str)]) -> Result<Snapshot> {
    let t = crate::CMD_TIMEOUT;
    let mut snap = Snapshot::new();
    for (label, ns) in places {
        let proc_net = cmd::sh(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "cat",
                "/proc/net/snmp",
                "/proc/net/netstat",
            ],
            t,
        )?;
        drops::record(&mut snap, label, drops::parse_proc_net(&proc_net));
        let links = cmd::sh("ip", &["-n", ns, "-s", "-j", "link", "show"], t)?;
        drops::record(&mut snap, label, drops::parse_ip_link(&links)?);
        let qdiscs = cmd::sh("tc", &["-n", ns, "-s", "-j", "qdisc", "show"], t)?;
        drops::record(&mut snap, label, drops::parse_tc_qdisc(&qdiscs)?);
    }
    let softnet =
        std::fs::read_to_string("/proc/net/softnet_stat").context("reading softnet_stat")?;
    drops::record(&mut snap, "cpu", drops::parse_softnet(&softnet)?);
    Ok(snap)
}

/// Ping `dst` from `src` (one packet at a time) until a reply, within `timeout`.
fn reach(src: &Pod, dst: &Pod, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if src
            .ping(dst.addr(), 1, Duration::from_millis(200))?
            .received
            > 0
        {
            return Ok(());
        }
    }
    bail!(
        "{} unreachable from {} within {timeout:?}",
        dst.addr(),
        src.ns()
    )
}

fn ping(src: &Pod, dst: &Pod, count: u32, interval: Duration) -> Result<Vec<f64>> {
    let count_s = count.to_string();
    let interval_s = format!("{:.3}", interval.as_secs_f64());
    let addr = dst.addr().to_string();
    let limit = interval * count + Duration::from_secs(10);
    let out = cmd::run(
        command(
            "ip",
            &[
                "netns",
                "exec",
                src.ns(),
                "ping",
                "-n",
                "-c",
                &count_s,
                "-i",
                &interval_s,
                "-W",
                "1",
                &addr,
            ],
        ),
        None,
        limit,
    )?;
    Ok(parse_ping_rtts(&out.stdout))
}

/// The iperf3 server in pod 2: killed and reaped on drop (it exits by itself after one test).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // `-s -1` exits by itself once the client is done: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.0.try_wait(), Ok(None)) {
            if let Ok(pid) = i32::try_from(self.0.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.0.wait();
    }
}

fn start_server(dst: &Pod, seconds: u64) -> Result<Server> {
    let idle = (seconds + 30).to_string();
    let child = Command::new("ip")
        .args(["netns", "exec", dst.ns(), "iperf3", "-s", "-1"])
        .args(["-p", IPERF_PORT, "--idle-timeout", &idle])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the iperf3 server")?;
    let mut server = Server(child);
    // Wait until it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.0.try_wait().context("checking iperf3 -s")? {
            bail!("the iperf3 server exited at once ({status})");
        }
        let ss = dst.exec(&["ss", "-Hltn", &format!("sport = :{IPERF_PORT}")])?;
        if !ss.trim().is_empty() {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            bail!("the iperf3 server does not listen after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_machine_cpu() -> Result<CpuTimes> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_proc_stat(&text)
}

fn read_pids_cpu(pids: &[i32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/stat");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path} (flanneld gone?)"))?;
        total += parse_pid_cpu(&text)?;
    }
    Ok(total)
}

/// One iperf3 test: (result, machine busy ticks, flanneld ticks) during the client's run.
fn iperf_run(
    src: &Pod,
    dst: &Pod,
    streams: u32,
    p: &Params,
    pids: &[i32],
) -> Result<(crate::throughput_report::Iperf, u64, u64)> {
    let server = start_server(dst, p.seconds)?;
    let secs = p.seconds.to_string();
    let parallel = streams.to_string();
    let addr = dst.addr().to_string();
    let limit = Duration::from_secs(p.seconds + 30);
    let mut args = vec![
        "netns",
        "exec",
        src.ns(),
        "iperf3",
        "-c",
        &addr,
        "-p",
        IPERF_PORT,
        "-t",
        &secs,
        "-P",
        &parallel,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    if let Some(cc) = &p.congestion {
        args.extend(["-C", cc.as_str()]);
    }
    let cpu0 = read_machine_cpu()?;
    let fl0 = read_pids_cpu(pids)?;
    let out = cmd::run(command("ip", &args), None, limit)?;
    let cpu1 = read_machine_cpu()?;
    let fl1 = read_pids_cpu(pids)?;
    drop(server);
    let result = parse_iperf(&out.stdout)
        .with_context(|| format!("iperf3 client ({}): {}", out.status, out.stderr.trim()))?;
    Ok((result, cpu1.busy_since(&cpu0), fl1.saturating_sub(fl0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_congestion_control() {
        assert_eq!(
            congestion_line(None, "bbr"),
            "TCP congestion control of the senders: `bbr` (the machine's default, `net.ipv4.tcp_congestion_control`)\n\n"
        );
        assert!(congestion_line(Some("cubic"), "bbr").starts_with(
            "TCP congestion control of the senders: `cubic` (`--congestion`; the machine's default is `bbr`)"
        ));
    }

    #[test]
    fn rounds_rotate_the_order() {
        assert_eq!(round_order(4, 1), vec![0, 1, 2, 3]);
        assert_eq!(round_order(4, 2), vec![1, 2, 3, 0]);
        assert_eq!(round_order(4, 5), vec![0, 1, 2, 3]);
        assert_eq!(round_order(1, 3), vec![0]);
        assert!(round_order(0, 1).is_empty());
    }

    #[test]
    fn cases_are_found_by_name() {
        let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            ["vxlan", "host-gw", "udp", "udp-baseline", "wireguard"]
        );
        let base = case("udp-baseline").map(|c| (c.config, c.args));
        assert_eq!(
            base,
            Some((
                r#"{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}"#,
                &["--udp-fast-path=false"][..]
            ))
        );
        assert_eq!(case("udp").map(|c| c.args.len()), Some(0));
        assert_eq!(
            case("host-gw").map(|c| c.config),
            Some(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#)
        );
        assert_eq!(case("ipip"), None);
    }
}
