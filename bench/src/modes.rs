//! `flannel-bench modes`: the vxlan backend's two modes (default = pre-programmed,
//! `on-demand` = answer kernel misses) compared on a multi-host lab (issue 6, see
//! `docs/vxlan-modes.md`).
//!
//! Unlike the other benchmarks this one needs real remote hosts with pods, so it builds its
//! lab with `flannel_testkit::topology` (namespaces `frs-<pid>-<n>-bmodes_<mode>-…`, removed
//! when the lab is dropped, and by `flannel_sandbox::cleanup` on a signal or panic). Per mode:
//!
//! 1. **Entries vs scale.** Host h1 with one pod; remote hosts are added one by one (1, 2, 4, 6
//!    by default). At each host count the learned entries of every host are flushed, then pods
//!    1..P of every remote host are pinged (until one reply) from h1's pod, P = 0, 1, 2, 4, 8,
//!    and h1's `flannel.1` neighbours (those with an `lladdr`) and FDB entries (those with a
//!    `dst`, i.e. remote VTEPs; the device's own multicast entries have none) are counted.
//! 2. **First packet.** Rounds of: flush learned entries on every host, then for each remote
//!    host `ping -D -c 5 -i 0.2 -W 1` from h1's pod to a pod of a host not contacted since the
//!    flush ("new host") and then to another pod of the same host ("new pod, known host").
//!    Whether seq 1 was answered, and the time to the first reply
//!    (`(seq − 1) × 200 ms + its rtt`).
//! 3. **flanneld stopped.** A pod pair that already talked pings at 10/s; flanneld on h1 is
//!    stopped (SIGTERM) for 10 s and started again; the loss is counted. During the stop,
//!    `ping -c 5 -i 0.2` to a pod never contacted (pod 2 of the last remote host) says whether
//!    a new destination is reachable.
//!
//! Learned entries are flushed with `ip neigh flush dev flannel.1` (non-permanent ones only)
//! and `bridge fdb del` of the non-permanent entries; in the default mode nothing is learned,
//! so this changes nothing there.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flannel_testkit::topology::{Flanneld, Host, Lab, Pod};

use crate::stats;

/// The two configurations compared.
pub const MODES: [(&str, &str); 2] = [
    (
        "default",
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#,
    ),
    (
        "on-demand",
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","Mode":"on-demand"}}"#,
    ),
];

/// What to measure.
#[derive(Debug, Clone)]
pub struct Params {
    /// Remote host counts of the scale measurement (ascending).
    pub hosts: Vec<usize>,
    /// Pods contacted per remote host (ascending; 0 = none).
    pub pods: Vec<usize>,
    /// Rounds of the first-packet measurement.
    pub rounds: usize,
    /// How long flanneld stays stopped.
    pub stop: Duration,
    /// How long the existing flow runs before flanneld is stopped.
    pub flow_lead: Duration,
    /// Deadline of each wait for flanneld.
    pub timeout: Duration,
}

/// One point of the scale measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Remote hosts in the cluster.
    pub hosts: usize,
    /// Pods contacted per remote host.
    pub pods: usize,
    /// h1's `flannel.1` neighbours with an lladdr.
    pub neigh: usize,
    /// h1's `flannel.1` FDB entries with a `dst`.
    pub fdb: usize,
    /// h1's routes through `flannel.1`.
    pub routes: usize,
}

/// One `ping -c 5 -i 0.2` to a destination not contacted before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct First {
    /// Whether seq 1 was answered.
    pub seq1: bool,
    /// Time to the first reply in ms (`None`: no reply at all).
    pub first_ms: Option<f64>,
    /// Replies out of 5.
    pub received: u32,
}

/// Everything measured for one mode.
#[derive(Debug, Clone)]
pub struct ModeResult {
    /// `default` or `on-demand`.
    pub mode: &'static str,
    /// Scale points.
    pub counts: Vec<Count>,
    /// First contact with a remote host.
    pub new_host: Vec<First>,
    /// First contact with a pod of an already contacted host.
    pub new_pod: Vec<First>,
    /// Existing flow during the stop: (sent, received).
    pub flow: (u32, u32),
    /// State of the flow's neighbour on h1 at the end of the stop (`ip neigh` state word).
    pub flow_neigh: String,
    /// New destination during the stop: replies out of 5.
    pub new_during_stop: u32,
    /// Same destination right after flanneld is ready again: replies out of 5.
    pub new_after_restart: u32,
}

const PING_INTERVAL_MS: f64 = 200.0;

/// Run every measurement for both modes.
pub fn run(bin: &Path, p: &Params) -> Result<Vec<ModeResult>> {
    let mut out = Vec::new();
    for (mode, config) in MODES {
        eprintln!("== mode {mode}");
        out.push(one_mode(bin, p, mode, config)?);
    }
    Ok(out)
}

struct Cluster {
    flanneld: Vec<Flanneld>,
    hosts: Vec<Host>,
    /// pods[i][k-1]: pod k of host i+1 (created on demand).
    pods: Vec<Vec<Pod>>,
    lab: Lab,
}

impl Cluster {
    fn add_host(&mut self, timeout: Duration) -> Result<()> {
        let n = u8::try_from(self.hosts.len() + 1).context("too many hosts")?;
        let host = self.lab.add_host(n)?;
        let mut f = host.start_flanneld(self_bin(), &[])?;
        f.wait_ready(timeout)?;
        self.hosts.push(host);
        self.flanneld.push(f);
        self.pods.push(Vec::new());
        Ok(())
    }

    fn pod(&mut self, host: usize, k: usize) -> Result<Pod> {
        while self.pods[host].len() < k {
            let next = u8::try_from(self.pods[host].len() + 1).context("too many pods")?;
            let pod = self.hosts[host].add_pod(next)?;
            self.pods[host].push(pod);
        }
        Ok(self.pods[host][k - 1].clone())
    }

    fn flush_learned(&self) -> Result<()> {
        for h in &self.hosts {
            h.exec(&["ip", "neigh", "flush", "dev", "flannel.1"])?;
            let fdb = h.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])?;
            for line in fdb.lines().filter(|l| !l.contains("permanent")) {
                let mut args = vec!["bridge", "fdb", "del"];
                let words: Vec<&str> = line
                    .split_whitespace()
                    .take_while(|w| *w != "self" && *w != "master")
                    .collect();
                // `<mac> [dev flannel.1] dst <ip>` → `<mac> dst <ip> dev flannel.1 self`.
                let mut skip = false;
                for w in words {
                    if skip {
                        skip = false;
                    } else if w == "dev" {
                        skip = true;
                    } else {
                        args.push(w);
                    }
                }
                args.extend(["dev", "flannel.1", "self"]);
                let _ = h.exec(&args);
            }
        }
        Ok(())
    }

    /// h1's and h2's learned state and flanneld logs, for an error message.
    fn debug(&self) -> String {
        let mut s = String::new();
        for (h, f) in self.hosts.iter().zip(&self.flanneld).take(2) {
            let neigh = h.exec(&["ip", "neigh", "show", "dev", "flannel.1"]);
            let fdb = h.exec(&["bridge", "fdb", "show", "dev", "flannel.1"]);
            let _ = write!(
                s,
                "--- {}\nneigh: {neigh:?}\nfdb: {fdb:?}\n{}\n",
                h.ns(),
                f.log_tail(15)
            );
        }
        s
    }

    fn count(&self, hosts: usize, pods: usize) -> Result<Count> {
        let h1 = &self.hosts[0];
        let neigh = h1.exec(&["ip", "neigh", "show", "dev", "flannel.1"])?;
        let fdb = h1.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])?;
        let routes = h1.exec(&["ip", "route", "show", "dev", "flannel.1"])?;
        Ok(Count {
            hosts,
            pods,
            neigh: neigh.lines().filter(|l| l.contains(" lladdr ")).count(),
            fdb: fdb.lines().filter(|l| l.contains(" dst ")).count(),
            routes: routes.lines().filter(|l| !l.trim().is_empty()).count(),
        })
    }
}

static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

fn self_bin() -> &'static Path {
    BIN.get().map_or(Path::new("flanneld"), |p| p.as_path())
}

/// Ping `dst` from `src` until one reply (at most 10 tries of one packet).
fn reach(src: &Pod, dst: Ipv4Addr) -> Result<()> {
    for _ in 0..10 {
        if src.ping(dst, 1, Duration::from_millis(200))?.received > 0 {
            return Ok(());
        }
    }
    bail!("{dst} unreachable from {}", src.ns())
}

/// `ping -D -c 5 -i 0.2 -W 1 dst` from `src`, parsed.
fn first_contact(src: &Pod, dst: Ipv4Addr) -> Result<First> {
    let out = Command::new("ip")
        .args(["netns", "exec", src.ns(), "ping", "-D", "-n", "-c", "5"])
        .args(["-i", "0.2", "-W", "1", &dst.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running ping")?;
    Ok(parse_first(&String::from_utf8_lossy(&out.stdout)))
}

/// Replies of a `ping -D` output: (seq, rtt ms).
fn parse_first(text: &str) -> First {
    let mut replies: Vec<(u32, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.contains("bytes from")) {
        let seq = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("icmp_seq="))
            .and_then(|v| v.parse::<u32>().ok());
        let rtt = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("time="))
            .and_then(|v| v.parse::<f64>().ok());
        if let (Some(s), Some(t)) = (seq, rtt) {
            replies.push((s, t));
        }
    }
    let first_ms = replies
        .iter()
        .map(|(s, t)| f64::from(s.saturating_sub(1)) * PING_INTERVAL_MS + t)
        .min_by(f64::total_cmp);
    First {
        seq1: replies.iter().any(|(s, _)| *s == 1),
        first_ms,
        received: u32::try_from(replies.len()).unwrap_or(u32::MAX),
    }
}

/// Start `ping -i 0.1 -c count -W 1 -q dst` in `src` in the background.
fn spawn_flow(src: &Pod, dst: Ipv4Addr, count: u32) -> Result<Child> {
    Command::new("ip")
        .args(["netns", "exec", src.ns(), "ping", "-n", "-q", "-i", "0.1"])
        .args(["-W", "1", "-c", &count.to_string(), &dst.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the flow's ping")
}

fn one_mode(bin: &Path, p: &Params, mode: &'static str, config: &str) -> Result<ModeResult> {
    let _ = BIN.set(bin.to_path_buf());
    let lab = Lab::new(&format!("bmodes_{mode}"))?;
    let etcd = lab.start_etcd()?;
    etcd.put_config(config)?;
    let mut c = Cluster {
        flanneld: Vec::new(),
        hosts: Vec::new(),
        pods: Vec::new(),
        lab,
    };
    c.add_host(p.timeout)?;
    let src = c.pod(0, 1)?;

    // 1. Entries vs remote hosts and pods contacted.
    let mut counts = Vec::new();
    for &r in &p.hosts {
        while c.hosts.len() < r + 1 {
            c.add_host(p.timeout)?;
            eprintln!("  {mode}: {} remote hosts", c.hosts.len() - 1);
        }
        // Every flanneld knows every lease before counting.
        std::thread::sleep(Duration::from_secs(1));
        c.flush_learned()?;
        let mut contacted = 0;
        for &pods in &p.pods {
            for host in 1..=r {
                for k in contacted + 1..=pods {
                    let dst = c.pod(host, k)?.addr();
                    if let Err(e) = reach(&src, dst) {
                        bail!("{e:#}\n{}", c.debug());
                    }
                }
            }
            contacted = contacted.max(pods);
            let n = c.count(r, pods)?;
            eprintln!("  {mode}: {n:?}");
            counts.push(n);
        }
    }
    let remote = c.hosts.len() - 1;
    // Make sure every remote host has two pods for the first-packet rounds.
    for host in 1..=remote {
        c.pod(host, 2)?;
    }

    // 2. First packet to a destination never contacted.
    let mut new_host = Vec::new();
    let mut new_pod = Vec::new();
    for round in 0..p.rounds {
        c.flush_learned()?;
        std::thread::sleep(Duration::from_millis(300));
        for host in 1..=remote {
            let a = c.pod(host, 1)?.addr();
            let b = c.pod(host, 2)?.addr();
            new_host.push(first_contact(&src, a)?);
            new_pod.push(first_contact(&src, b)?);
        }
        eprintln!("  {mode}: first-packet round {} done", round + 1);
    }

    // 3. flanneld stopped on h1 for `p.stop`.
    c.flush_learned()?;
    let flow_dst = c.pod(1, 1)?.addr();
    reach(&src, flow_dst)?;
    // Pod 2 of the last remote host: never contacted since the flush (a new host too when
    // there are two remote hosts or more).
    let fresh = c.pod(remote, 2)?.addr();
    let lead = p.flow_lead;
    let tail = Duration::from_secs(3);
    let total = lead + p.stop + tail;
    let count = u32::try_from(total.as_millis() / 100).unwrap_or(u32::MAX);
    let flow = spawn_flow(&src, flow_dst, count)?;
    std::thread::sleep(lead);
    let stopped_at = Instant::now();
    c.flanneld[0].stop()?;
    std::thread::sleep(Duration::from_millis(500));
    let during = first_contact(&src, fresh)?;
    let left = p.stop.saturating_sub(stopped_at.elapsed());
    std::thread::sleep(left);
    let flow_neigh = c.hosts[0]
        .exec(&[
            "ip",
            "neigh",
            "show",
            "dev",
            "flannel.1",
            &flow_dst.to_string(),
        ])?
        .split_whitespace()
        .last()
        .unwrap_or("no entry (default mode: none per pod)")
        .to_owned();
    c.flanneld[0].start()?;
    c.flanneld[0].wait_ready(p.timeout)?;
    let after = first_contact(&src, fresh)?;
    let out = flow.wait_with_output().context("waiting for the flow")?;
    let summary =
        flannel_testkit::topology::parse_ping_summary(&String::from_utf8_lossy(&out.stdout))
            .context("the flow's ping printed no summary")?;
    drop(etcd);
    drop(c);
    Ok(ModeResult {
        mode,
        counts,
        new_host,
        new_pod,
        flow: (summary.sent, summary.received),
        flow_neigh,
        new_during_stop: during.received,
        new_after_restart: after.received,
    })
}

fn first_summary(v: &[First]) -> (usize, usize, Option<f64>, Option<f64>) {
    let lost = v.iter().filter(|f| !f.seq1).count();
    let ms: Vec<f64> = v.iter().filter_map(|f| f.first_ms).collect();
    (lost, v.len(), stats::median(&ms), stats::max(&ms))
}

/// Markdown tables of the results.
pub fn report(results: &[ModeResult]) -> String {
    let mut s = String::new();
    s += "### Entries on h1 (`flannel.1`) vs remote hosts and pods contacted per remote host\n\n";
    s += "| mode | remote hosts | pods contacted / remote host | neighbours | FDB | routes |\n";
    s += "|---|---:|---:|---:|---:|---:|\n";
    for r in results {
        for c in &r.counts {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.mode, c.hosts, c.pods, c.neigh, c.fdb, c.routes
            );
        }
    }
    s += "\n### First packet to a destination never contacted (`ping -c 5 -i 0.2`)\n\n";
    s += "| mode | case | samples | seq 1 lost | median time to first reply | max |\n";
    s += "|---|---|---:|---:|---:|---:|\n";
    let ms = |v: Option<f64>| v.map_or("–".to_owned(), |x| format!("{x:.1} ms"));
    for r in results {
        for (case, v) in [
            ("new host", &r.new_host),
            ("new pod, known host", &r.new_pod),
        ] {
            let (lost, n, med, max) = first_summary(v);
            let _ = writeln!(
                s,
                "| {} | {case} | {n} | {lost}/{n} | {} | {} |",
                r.mode,
                ms(med),
                ms(max)
            );
        }
    }
    s += "\n### flanneld stopped on the sending host\n\n";
    s += "| mode | existing flow at 10/s: lost / sent | its neighbour on h1 at the end of the stop | new destination during the stop | same destination after restart |\n";
    s += "|---|---:|---|---:|---:|\n";
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} / {} | {} | {}/5 replies | {}/5 replies |",
            r.mode,
            r.flow.0.saturating_sub(r.flow.1),
            r.flow.0,
            r.flow_neigh,
            r.new_during_stop,
            r.new_after_restart
        );
    }
    s
}

/// CSV of the scale points (`mode,hosts,pods,neigh,fdb,routes`), for the plot script.
pub fn csv(results: &[ModeResult]) -> String {
    let mut s = String::from("mode,hosts,pods,neigh,fdb,routes\n");
    for r in results {
        for c in &r.counts {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{}",
                r.mode, c.hosts, c.pods, c.neigh, c.fdb, c.routes
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reply_of_a_ping_with_seq_1_lost() {
        let out = "PING 198.18.2.2 (198.18.2.2) 56(84) bytes of data.\n\
                   [1764140000.100000] 64 bytes from 198.18.2.2: icmp_seq=2 ttl=62 time=0.512 ms\n\
                   [1764140000.300000] 64 bytes from 198.18.2.2: icmp_seq=3 ttl=62 time=0.100 ms\n";
        let f = parse_first(out);
        assert!(!f.seq1);
        assert_eq!(f.received, 2);
        assert_eq!(f.first_ms, Some(200.512));
    }

    #[test]
    fn first_reply_of_a_ping_with_seq_1_answered_and_none() {
        let out = "[1.0] 64 bytes from 198.18.2.3: icmp_seq=1 ttl=62 time=3.25 ms\n";
        assert_eq!(
            parse_first(out),
            First {
                seq1: true,
                first_ms: Some(3.25),
                received: 1
            }
        );
        assert_eq!(
            parse_first("5 packets transmitted, 0 received, 100% packet loss\n"),
            First {
                seq1: false,
                first_ms: None,
                received: 0
            }
        );
    }
}
