//! The pure half of `flannel-bench throughput`: parsing what iperf3, ping and `/proc` print,
//! turning the per-round samples into per-backend rows (medians, ratios to vxlan, CPU per GB),
//! and rendering those rows as a markdown table and as the CSV read by
//! `bench/plots/throughput.py`. No I/O here.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::stats::{max, median, min, percentile};

/// Bytes in the "GB" of "CPU seconds per GB" (decimal, like iperf3's Gbit/s).
pub const BYTES_PER_GB: f64 = 1e9;

/// What one iperf3 client run (`-J`) reports about the data received by the server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iperf {
    /// `end.sum_received.bits_per_second`.
    pub bits_per_second: f64,
    /// `end.sum_received.bytes`.
    pub bytes: u64,
    /// `end.sum_received.seconds`.
    pub seconds: f64,
    /// `end.sum_sent.retransmits` (TCP only; absent on some kernels).
    pub retransmits: Option<u64>,
}

/// Parse iperf3's `-J` output. iperf3 reports its own failures as a top-level `"error"`
/// string (with exit status 1); that, or a missing `end.sum_received`, is an error.
pub fn parse_iperf(json: &str) -> Result<Iperf> {
    let v: Value = serde_json::from_str(json).context("iperf3 output is not JSON")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {e}");
    }
    let recv = v
        .pointer("/end/sum_received")
        .context("iperf3 output has no end.sum_received")?;
    let bits_per_second = recv
        .get("bits_per_second")
        .and_then(Value::as_f64)
        .context("end.sum_received.bits_per_second missing")?;
    let bytes = recv
        .get("bytes")
        .and_then(Value::as_u64)
        .context("end.sum_received.bytes missing")?;
    let seconds = recv
        .get("seconds")
        .and_then(Value::as_f64)
        .context("end.sum_received.seconds missing")?;
    let retransmits = v
        .pointer("/end/sum_sent/retransmits")
        .and_then(Value::as_u64);
    Ok(Iperf {
        bits_per_second,
        bytes,
        seconds,
        retransmits,
    })
}

/// The machine-wide CPU counters of `/proc/stat`'s first line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq + steal. (`guest` and `guest_nice` are already
    /// included in user and nice, so they are not added again.)
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
}

impl CpuTimes {
    /// Busy ticks between `earlier` and `self` (0 if the counters went backwards).
    pub fn busy_since(&self, earlier: &CpuTimes) -> u64 {
        self.busy.saturating_sub(earlier.busy)
    }
}

/// Parse the aggregate `cpu  user nice system idle iowait irq softirq steal guest guest_nice`
/// line of `/proc/stat` (fields missing on old kernels count as 0; at least four are needed).
pub fn parse_proc_stat(text: &str) -> Result<CpuTimes> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))
        .context("/proc/stat has no aggregate `cpu` line")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("bad /proc/stat cpu line {line:?}"))?;
    if fields.len() < 4 {
        bail!("/proc/stat cpu line has {} fields: {line:?}", fields.len());
    }
    let f = |i: usize| fields.get(i).copied().unwrap_or(0);
    Ok(CpuTimes {
        busy: f(0) + f(1) + f(2) + f(5) + f(6) + f(7),
        idle: f(3) + f(4),
    })
}

/// utime + stime (clock ticks, all threads) from a `/proc/<pid>/stat` line. The command name
/// in parentheses may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_pid_cpu(text: &str) -> Result<u64> {
    let (_, rest) = text
        .rsplit_once(')')
        .with_context(|| format!("no `)` in /proc/<pid>/stat line {text:?}"))?;
    // After `)`: state(3) ppid(4) … utime(14) stime(15), i.e. indices 11 and 12 here.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .with_context(|| format!("/proc/<pid>/stat line too short: {text:?}"))?
            .parse::<u64>()
            .with_context(|| format!("bad number in /proc/<pid>/stat line {text:?}"))
    };
    Ok(get(11)? + get(12)?)
}

/// Round-trip times (ms) of every reply line of a `ping -n` output (`… time=0.123 ms`).
pub fn parse_ping_rtts(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("time="))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .collect()
}

/// A multi-line error (often with a log tail) in one line, without terminal colour codes: its
/// first line, and the first later line that mentions an error (else the last line), if any.
pub fn error_summary(text: &str) -> String {
    let plain = strip_ansi(text);
    let lines: Vec<&str> = plain
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let Some((first, rest)) = lines.split_first() else {
        return String::new();
    };
    let detail = rest
        .iter()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or(rest.last());
    match detail {
        Some(d) => format!("{first} … {d}"),
        None => (*first).to_owned(),
    }
}

/// The udp backend's (or the userspace WireGuard's) start-up line saying which fast-path
/// features are in use (`udp fast path: queues=2 …`), from a flanneld log, without colours
/// and log prefix.
pub fn fast_path_note(log: &str) -> Option<String> {
    let plain = strip_ansi(log);
    plain.lines().find_map(|l| {
        ["udp fast path", "wireguard (userspace) fast path"]
            .iter()
            .find_map(|p| l.find(p))
            .map(|i| l[i..].trim().to_owned())
    })
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One iperf3 run of one backend in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Backend name (`vxlan`, `host-gw`, `udp`, `udp-baseline`).
    pub backend: String,
    /// Round (1-based).
    pub round: usize,
    /// Parallel TCP streams (`-P`).
    pub streams: u32,
    /// What iperf3 reported.
    pub iperf: Iperf,
    /// Busy CPU seconds of the whole machine during the run.
    pub machine_cpu_s: f64,
    /// CPU seconds (user + system) of both flanneld processes during the run.
    pub flanneld_cpu_s: f64,
}

impl Sample {
    /// Throughput in Gbit/s.
    pub fn gbps(&self) -> f64 {
        self.iperf.bits_per_second / 1e9
    }

    fn gb(&self) -> f64 {
        self.iperf.bytes as f64 / BYTES_PER_GB
    }

    /// Machine CPU seconds per GB received (`None` when nothing was received).
    pub fn machine_s_per_gb(&self) -> Option<f64> {
        (self.iperf.bytes > 0).then(|| self.machine_cpu_s / self.gb())
    }

    /// flanneld CPU seconds per GB received (`None` when nothing was received).
    pub fn flanneld_s_per_gb(&self) -> Option<f64> {
        (self.iperf.bytes > 0).then(|| self.flanneld_cpu_s / self.gb())
    }
}

/// The ping of one backend in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    /// Backend name.
    pub backend: String,
    /// Round (1-based).
    pub round: usize,
    /// Echo requests sent.
    pub sent: u32,
    /// RTT of every reply, ms.
    pub rtts_ms: Vec<f64>,
}

/// One row of the throughput table: a backend at a stream count, over all rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Backend name.
    pub backend: String,
    /// Parallel TCP streams.
    pub streams: u32,
    /// Rounds with a result.
    pub rounds: usize,
    /// Median Gbit/s over the rounds.
    pub gbps_median: f64,
    /// Lowest Gbit/s of a round.
    pub gbps_min: f64,
    /// Highest Gbit/s of a round.
    pub gbps_max: f64,
    /// `gbps_median` / vxlan's `gbps_median` at the same stream count (same run).
    pub ratio_vxlan: Option<f64>,
    /// Median over the rounds of machine CPU seconds per GB.
    pub machine_s_per_gb: Option<f64>,
    /// Median over the rounds of flanneld CPU seconds per GB.
    pub flanneld_s_per_gb: Option<f64>,
    /// Median TCP retransmits of a run.
    pub retransmits: Option<f64>,
}

/// Ping summary of a backend over all rounds (every reply pooled).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    /// Backend name.
    pub backend: String,
    /// Requests sent over all rounds.
    pub sent: u32,
    /// Replies received over all rounds.
    pub received: u32,
    /// Median RTT, ms.
    pub median_ms: Option<f64>,
    /// 90th percentile RTT (nearest rank), ms.
    pub p90_ms: Option<f64>,
}

/// Per backend (in `backends` order) and stream count (in `streams` order), the rows of the
/// table; combinations without a sample are left out.
pub fn summarize(samples: &[Sample], backends: &[&str], streams: &[u32]) -> Vec<Row> {
    let vxlan: Vec<(u32, f64)> = streams
        .iter()
        .filter_map(|&n| {
            let v = gbps_of(samples, "vxlan", n);
            median(&v).map(|m| (n, m))
        })
        .collect();
    let mut rows = Vec::new();
    for &b in backends {
        for &n in streams {
            let of: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.backend == b && s.streams == n)
                .collect();
            let gbps = gbps_of(samples, b, n);
            let (Some(med), Some(lo), Some(hi)) = (median(&gbps), min(&gbps), max(&gbps)) else {
                continue;
            };
            let ratio_vxlan = vxlan
                .iter()
                .find(|(k, _)| *k == n)
                .and_then(|(_, v)| (*v > 0.0).then(|| med / v));
            let machine: Vec<f64> = of.iter().filter_map(|s| s.machine_s_per_gb()).collect();
            let flanneld: Vec<f64> = of.iter().filter_map(|s| s.flanneld_s_per_gb()).collect();
            let retr: Vec<f64> = of
                .iter()
                .filter_map(|s| s.iperf.retransmits.map(|r| r as f64))
                .collect();
            rows.push(Row {
                backend: b.to_owned(),
                streams: n,
                rounds: of.len(),
                gbps_median: med,
                gbps_min: lo,
                gbps_max: hi,
                ratio_vxlan,
                machine_s_per_gb: median(&machine),
                flanneld_s_per_gb: median(&flanneld),
                retransmits: median(&retr),
            });
        }
    }
    rows
}

/// The ratio a backend must reach against vxlan in one run (issue 14: udp ≥ 0.75×).
pub const ROUND_RATIO_TARGET: f64 = 0.75;

/// One round's side-by-side comparison of a backend with vxlan (same round, same stream
/// count: both clusters fresh, each measured once, nothing discarded).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRatio {
    /// Backend compared with vxlan.
    pub backend: String,
    /// Parallel TCP streams.
    pub streams: u32,
    /// Round (1-based).
    pub round: usize,
    /// The backend's Gbit/s.
    pub gbps: f64,
    /// vxlan's Gbit/s.
    pub vxlan_gbps: f64,
    /// `gbps / vxlan_gbps`.
    pub ratio: f64,
    /// The backend's machine CPU seconds per GB.
    pub machine_s_per_gb: Option<f64>,
    /// vxlan's machine CPU seconds per GB.
    pub vxlan_machine_s_per_gb: Option<f64>,
    /// The backend's flanneld CPU seconds per GB.
    pub flanneld_s_per_gb: Option<f64>,
}

/// Per backend other than vxlan, stream count and round in which both were measured, the
/// ratio of that one run to vxlan's run of the same round.
pub fn round_ratios(samples: &[Sample], backends: &[&str], streams: &[u32]) -> Vec<RoundRatio> {
    let mut out = Vec::new();
    for &b in backends.iter().filter(|b| **b != "vxlan") {
        for &n in streams {
            let mut of: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.backend == b && s.streams == n)
                .collect();
            of.sort_by_key(|s| s.round);
            for s in of {
                let Some(v) = samples
                    .iter()
                    .find(|v| v.backend == "vxlan" && v.streams == n && v.round == s.round)
                else {
                    continue;
                };
                if v.gbps() <= 0.0 {
                    continue;
                }
                out.push(RoundRatio {
                    backend: b.to_owned(),
                    streams: n,
                    round: s.round,
                    gbps: s.gbps(),
                    vxlan_gbps: v.gbps(),
                    ratio: s.gbps() / v.gbps(),
                    machine_s_per_gb: s.machine_s_per_gb(),
                    vxlan_machine_s_per_gb: v.machine_s_per_gb(),
                    flanneld_s_per_gb: s.flanneld_s_per_gb(),
                });
            }
        }
    }
    out
}

/// The markdown section of [`round_ratios`]: one line per round, then per backend and stream
/// count the median ratio and how many rounds reached [`ROUND_RATIO_TARGET`].
pub fn round_section(ratios: &[RoundRatio]) -> String {
    if ratios.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n### One run each: backend / vxlan per round (fresh hosts, no warm-up, nothing discarded)\n\n",
    );
    s += "| backend | streams | round | Gbit/s | vxlan Gbit/s | ratio | machine CPU s/GB | vxlan machine CPU s/GB | flanneld CPU s/GB |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in ratios {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2}× | {} | {} | {} |",
            r.backend,
            r.streams,
            r.round,
            r.gbps,
            r.vxlan_gbps,
            r.ratio,
            opt(r.machine_s_per_gb, 2),
            opt(r.vxlan_machine_s_per_gb, 2),
            opt(r.flanneld_s_per_gb, 2),
        );
    }
    s.push('\n');
    let mut seen: Vec<(&str, u32)> = Vec::new();
    for r in ratios {
        if seen.contains(&(r.backend.as_str(), r.streams)) {
            continue;
        }
        seen.push((r.backend.as_str(), r.streams));
        let of: Vec<&RoundRatio> = ratios
            .iter()
            .filter(|x| x.backend == r.backend && x.streams == r.streams)
            .collect();
        let v: Vec<f64> = of.iter().map(|x| x.ratio).collect();
        let reached = v.iter().filter(|x| **x >= ROUND_RATIO_TARGET).count();
        let cpu = |f: fn(&RoundRatio) -> Option<f64>| {
            let c: Vec<f64> = of.iter().filter_map(|x| f(x)).collect();
            opt(median(&c), 2)
        };
        let _ = writeln!(
            s,
            "- {} / vxlan, {} stream(s): median of {} runs **{}×**, ≥ {:.2}× in {} of {}; \
             machine CPU s/GB (median) {} vs vxlan {}",
            r.backend,
            r.streams,
            v.len(),
            opt(median(&v), 2),
            ROUND_RATIO_TARGET,
            reached,
            v.len(),
            cpu(|x| x.machine_s_per_gb),
            cpu(|x| x.vxlan_machine_s_per_gb),
        );
    }
    s
}

fn gbps_of(samples: &[Sample], backend: &str, streams: u32) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.backend == backend && s.streams == streams)
        .map(Sample::gbps)
        .collect()
}

/// Per backend (in `backends` order, those with at least one ping), the pooled RTTs.
pub fn summarize_latency(pings: &[Latency], backends: &[&str]) -> Vec<LatencyRow> {
    backends
        .iter()
        .filter_map(|&b| {
            let of: Vec<&Latency> = pings.iter().filter(|p| p.backend == b).collect();
            if of.is_empty() {
                return None;
            }
            let rtts: Vec<f64> = of.iter().flat_map(|p| p.rtts_ms.iter().copied()).collect();
            Some(LatencyRow {
                backend: b.to_owned(),
                sent: of.iter().map(|p| p.sent).sum(),
                received: u32::try_from(rtts.len()).unwrap_or(u32::MAX),
                median_ms: median(&rtts),
                p90_ms: percentile(&rtts, 90.0),
            })
        })
        .collect()
}

fn opt(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The markdown tables: throughput and CPU per backend and stream count, then latency.
pub fn table(rows: &[Row], latency: &[LatencyRow], seconds: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Pod-to-pod TCP throughput (iperf3, {seconds} s per run) and CPU per GB received\n"
    );
    s += "| backend | streams | rounds | Gbit/s (median) | × vxlan | min–max Gbit/s | machine CPU s/GB | flanneld CPU s/GB | retransmits (median) |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {} | {:.2}–{:.2} | {} | {} | {} |",
            r.backend,
            r.streams,
            r.rounds,
            r.gbps_median,
            r.ratio_vxlan
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.2}×")),
            r.gbps_min,
            r.gbps_max,
            opt(r.machine_s_per_gb, 2),
            opt(r.flanneld_s_per_gb, 2),
            opt(r.retransmits, 0),
        );
    }
    s += "\n### Pod-to-pod ping RTT (every reply of every round pooled)\n\n";
    s += "| backend | replies / sent | median ms | p90 ms |\n";
    s += "|---|---:|---:|---:|\n";
    for l in latency {
        let _ = writeln!(
            s,
            "| {} | {} / {} | {} | {} |",
            l.backend,
            l.received,
            l.sent,
            opt(l.median_ms, 3),
            opt(l.p90_ms, 3)
        );
    }
    s
}

/// The CSV header written by [`csv`].
pub const CSV_HEADER: &str = "backend,streams,rounds,gbps_median,gbps_min,gbps_max,ratio_vxlan,machine_cpu_s_per_gb,flanneld_cpu_s_per_gb,ping_median_ms,ping_p90_ms";

/// One line per row (empty fields for unknown values), with the backend's ping median and p90
/// repeated on each of its lines. Input of `bench/plots/throughput.py`.
pub fn csv(rows: &[Row], latency: &[LatencyRow]) -> String {
    let f = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v:.4}"));
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in rows {
        let lat = latency.iter().find(|l| l.backend == r.backend);
        let _ = writeln!(
            s,
            "{},{},{},{:.4},{:.4},{:.4},{},{},{},{},{}",
            r.backend,
            r.streams,
            r.rounds,
            r.gbps_median,
            r.gbps_min,
            r.gbps_max,
            f(r.ratio_vxlan),
            f(r.machine_s_per_gb),
            f(r.flanneld_s_per_gb),
            f(lat.and_then(|l| l.median_ms)),
            f(lat.and_then(|l| l.p90_ms)),
        );
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Trimmed from a real `iperf3 -c … -P 4 -J` run.
    const IPERF_JSON: &str = r#"{
        "start": {"connected": [], "version": "iperf 3.12"},
        "intervals": [],
        "end": {
            "streams": [],
            "sum_sent": {"start": 0, "end": 10.000123, "seconds": 10.000123,
                         "bytes": 12884901888, "bits_per_second": 10307795461.2,
                         "retransmits": 42, "sender": true},
            "sum_received": {"start": 0, "end": 10.0005, "seconds": 10.0005,
                             "bytes": 12800000000, "bits_per_second": 10239488025.6,
                             "sender": true},
            "cpu_utilization_percent": {"host_total": 61.2}
        }
    }"#;

    #[test]
    fn iperf_json_is_parsed() {
        let r = parse_iperf(IPERF_JSON).unwrap();
        assert_eq!(
            r,
            Iperf {
                bits_per_second: 10239488025.6,
                bytes: 12_800_000_000,
                seconds: 10.0005,
                retransmits: Some(42),
            }
        );
    }

    #[test]
    fn iperf_errors_are_errors() {
        let e = parse_iperf(r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}"#)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "iperf3: unable to connect to server: Connection refused"
        );
        let e = parse_iperf(r#"{"end":{}}"#).unwrap_err();
        assert_eq!(e.to_string(), "iperf3 output has no end.sum_received");
        assert!(parse_iperf("iperf3: error - unable to connect").is_err());
        let no_retr =
            r#"{"end":{"sum_received":{"bits_per_second":8e9,"bytes":10,"seconds":1.5}}}"#;
        assert_eq!(
            parse_iperf(no_retr).unwrap(),
            Iperf {
                bits_per_second: 8e9,
                bytes: 10,
                seconds: 1.5,
                retransmits: None
            }
        );
    }

    #[test]
    fn proc_stat_is_parsed() {
        let text = "cpu  10 2 30 400 5 6 7 8 100 200\n\
                    cpu0 5 1 15 200 2 3 3 4 50 100\n\
                    intr 12345 0 0\nctxt 999\n";
        let t = parse_proc_stat(text).unwrap();
        assert_eq!(
            t,
            CpuTimes {
                busy: 10 + 2 + 30 + 6 + 7 + 8,
                idle: 405
            }
        );
        let old = parse_proc_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!(old, CpuTimes { busy: 6, idle: 4 });
        let later = CpuTimes { busy: 100, idle: 0 };
        assert_eq!(later.busy_since(&t), 100 - 63);
        assert_eq!(t.busy_since(&later), 0);
        assert!(parse_proc_stat("cpu0 1 2 3 4\n").is_err());
        assert!(parse_proc_stat("cpu 1 2 x 4\n").is_err());
        assert!(parse_proc_stat("cpu 1 2 3\n").is_err());
    }

    #[test]
    fn pid_stat_is_parsed_even_with_odd_names() {
        let line = "4242 (flanneld) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 123456789 2048 18446744073709551615\n";
        assert_eq!(parse_pid_cpu(line).unwrap(), 325);
        let odd = "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 1 1 1 1\n";
        assert_eq!(parse_pid_cpu(odd).unwrap(), 33);
        assert!(parse_pid_cpu("7 (x) R 1 2 3\n").is_err());
        assert!(parse_pid_cpu("no parenthesis").is_err());
    }

    #[test]
    fn ping_rtts_are_parsed() {
        let out = "PING 198.18.2.2 (198.18.2.2) 56(84) bytes of data.\n\
                   64 bytes from 198.18.2.2: icmp_seq=1 ttl=62 time=0.123 ms\n\
                   64 bytes from 198.18.2.2: icmp_seq=3 ttl=62 time=1.50 ms\n\
                   From 198.18.1.1 icmp_seq=4 Destination Net Unreachable\n\n\
                   --- 198.18.2.2 ping statistics ---\n\
                   4 packets transmitted, 2 received, +1 errors, 50% packet loss, time 150ms\n\
                   rtt min/avg/max/mdev = 0.123/0.811/1.500/0.688 ms\n";
        assert_eq!(parse_ping_rtts(out), vec![0.123, 1.5]);
        assert!(parse_ping_rtts("connect: Network is unreachable\n").is_empty());
    }

    #[test]
    fn errors_are_summarized_on_one_line() {
        let e = "flanneld in frs-1-0-btput_udp-h1 exited (exit status: 1) before it was ready; log:\n\
                 ===== lab: start #1 of flanneld [\"--iface=eth0\"]\n\
                 \u{1b}[2m2026-11-26T08:23:17Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m backend type \"udp\" is not available\n\
                 \u{1b}[2m2026-11-26T08:23:18Z\u{1b}[0m  INFO bye\n";
        assert_eq!(
            error_summary(e),
            "flanneld in frs-1-0-btput_udp-h1 exited (exit status: 1) before it was ready; log: \
             … 2026-11-26T08:23:17Z ERROR backend type \"udp\" is not available"
        );
        let e = "flanneld in x exited (exit status: 2) before it was ready; log:\n\
                 ===== lab: start #1\nflanneld: unknown flag --udp-fast-path (see --help)\n";
        assert_eq!(
            error_summary(e),
            "flanneld in x exited (exit status: 2) before it was ready; log: … \
             flanneld: unknown flag --udp-fast-path (see --help)"
        );
        assert_eq!(error_summary("\n  just this\n"), "just this");
        assert_eq!(error_summary(""), "");
    }

    #[test]
    fn the_fast_path_line_is_found() {
        let log = "===== lab: start #1\n\
                   \u{1b}[2m2026-11-26T08:35:05.807677Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m using etcd\n\
                   \u{1b}[2m2026-11-26T08:35:05.807677Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m udp fast path: queues=2 tun_offload=tso4,tso6,uso udp_gso=on udp_gro=on\n";
        assert_eq!(
            fast_path_note(log).as_deref(),
            Some("udp fast path: queues=2 tun_offload=tso4,tso6,uso udp_gso=on udp_gro=on")
        );
        assert_eq!(fast_path_note("INFO vxlan device created\n"), None);
        assert_eq!(
            fast_path_note(
                "INFO wireguard (userspace) fast path: queues=2 tun_offload=on udp_gso=on udp_gro=on\n"
            )
            .as_deref(),
            Some("wireguard (userspace) fast path: queues=2 tun_offload=on udp_gso=on udp_gro=on")
        );
    }

    // Test fixtures: small positive numbers, whole by construction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn sample(backend: &str, round: usize, streams: u32, gbps: f64, cpu: f64, fl: f64) -> Sample {
        Sample {
            backend: backend.to_owned(),
            round,
            streams,
            iperf: Iperf {
                bits_per_second: gbps * 1e9,
                // gbps for 10 s → gbps × 1.25 GB.
                bytes: (gbps * 1.25e9) as u64,
                seconds: 10.0,
                retransmits: Some(round as u64),
            },
            machine_cpu_s: cpu,
            flanneld_cpu_s: fl,
        }
    }

    #[test]
    fn each_round_is_compared_with_vxlan_of_the_same_round() {
        let r = round_ratios(&samples(), &["vxlan", "udp"], &[1, 4]);
        let got: Vec<(u32, usize, f64)> = r.iter().map(|x| (x.streams, x.round, x.ratio)).collect();
        assert_eq!(
            got,
            vec![(1, 1, 0.5), (1, 2, 0.6), (1, 3, 5.0 / 12.0), (4, 1, 0.0)]
        );
        assert_eq!(r[0].machine_s_per_gb, Some(2.0));
        assert_eq!(r[0].vxlan_machine_s_per_gb, Some(1.0));
        // A round without vxlan is not compared.
        let only_udp = [sample("udp", 1, 1, 4.0, 10.0, 5.0)];
        assert!(round_ratios(&only_udp, &["vxlan", "udp"], &[1]).is_empty());
        assert_eq!(round_section(&[]), "");
    }

    #[test]
    fn the_round_section_gives_the_median_and_the_rounds_that_reached_the_target() {
        let mut s = samples();
        s.push(sample("udp", 4, 1, 9.0, 10.0, 5.0));
        s.push(sample("vxlan", 4, 1, 10.0, 10.0, 0.0));
        let text = round_section(&round_ratios(&s, &["vxlan", "udp"], &[1]));
        assert!(
            text.contains("| udp | 1 | 4 | 9.00 | 10.00 | 0.90× |"),
            "{text}"
        );
        assert!(
            text.contains(
                "- udp / vxlan, 1 stream(s): median of 4 runs **0.55×**, ≥ 0.75× in 1 of 4"
            ),
            "{text}"
        );
    }

    fn samples() -> Vec<Sample> {
        vec![
            sample("vxlan", 1, 1, 8.0, 10.0, 0.0),
            sample("udp", 1, 1, 4.0, 10.0, 5.0),
            sample("vxlan", 2, 1, 10.0, 12.5, 0.0),
            sample("udp", 2, 1, 6.0, 15.0, 7.5),
            sample("vxlan", 3, 1, 12.0, 15.0, 0.0),
            sample("udp", 3, 1, 5.0, 12.5, 5.0),
            sample("vxlan", 1, 4, 20.0, 25.0, 0.0),
            sample("udp", 1, 4, 0.0, 20.0, 1.0),
        ]
    }

    #[test]
    fn rows_have_medians_ranges_ratios_and_cpu_per_gb() {
        let rows = summarize(&samples(), &["vxlan", "host-gw", "udp"], &[1, 4]);
        assert_eq!(rows.len(), 4, "{rows:#?}");
        assert_eq!(
            rows[0],
            Row {
                backend: "vxlan".into(),
                streams: 1,
                rounds: 3,
                gbps_median: 10.0,
                gbps_min: 8.0,
                gbps_max: 12.0,
                ratio_vxlan: Some(1.0),
                // 10 s / 10 GB, 12.5 s / 12.5 GB, 15 s / 15 GB.
                machine_s_per_gb: Some(1.0),
                flanneld_s_per_gb: Some(0.0),
                retransmits: Some(2.0),
            }
        );
        assert_eq!(rows[1].backend, "vxlan");
        assert_eq!(rows[1].streams, 4);
        let udp1 = &rows[2];
        assert_eq!((udp1.backend.as_str(), udp1.streams), ("udp", 1));
        assert_eq!(udp1.gbps_median, 5.0);
        assert_eq!((udp1.gbps_min, udp1.gbps_max), (4.0, 6.0));
        assert_eq!(udp1.ratio_vxlan, Some(0.5));
        // 10/5 = 2, 15/7.5 = 2, 12.5/6.25 = 2.
        assert_eq!(udp1.machine_s_per_gb, Some(2.0));
        // 5/5 = 1, 7.5/7.5 = 1, 5/6.25 = 0.8.
        assert_eq!(udp1.flanneld_s_per_gb, Some(1.0));
        // Nothing received: no CPU per GB, ratio 0.
        let udp4 = &rows[3];
        assert_eq!(udp4.ratio_vxlan, Some(0.0));
        assert_eq!(udp4.machine_s_per_gb, None);
        assert_eq!(udp4.flanneld_s_per_gb, None);
    }

    #[test]
    fn without_vxlan_there_is_no_ratio() {
        let s: Vec<Sample> = samples()
            .into_iter()
            .filter(|s| s.backend != "vxlan")
            .collect();
        let rows = summarize(&s, &["udp"], &[1]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ratio_vxlan, None);
    }

    fn pings() -> Vec<Latency> {
        vec![
            Latency {
                backend: "udp".into(),
                round: 1,
                sent: 5,
                rtts_ms: vec![0.5, 0.1, 0.2, 0.3],
            },
            Latency {
                backend: "udp".into(),
                round: 2,
                sent: 5,
                rtts_ms: vec![0.4, 0.6, 0.7, 0.8, 0.9, 1.0],
            },
            Latency {
                backend: "vxlan".into(),
                round: 1,
                sent: 2,
                rtts_ms: vec![],
            },
        ]
    }

    #[test]
    fn latency_is_pooled_over_rounds() {
        let l = summarize_latency(&pings(), &["vxlan", "host-gw", "udp"]);
        assert_eq!(
            l,
            vec![
                LatencyRow {
                    backend: "vxlan".into(),
                    sent: 2,
                    received: 0,
                    median_ms: None,
                    p90_ms: None,
                },
                LatencyRow {
                    backend: "udp".into(),
                    sent: 10,
                    received: 10,
                    median_ms: Some(0.55),
                    p90_ms: Some(0.9),
                },
            ]
        );
    }

    #[test]
    fn markdown_table_is_exact() {
        let rows = summarize(&samples(), &["vxlan", "udp"], &[1]);
        let lat = summarize_latency(&pings(), &["vxlan", "udp"]);
        let expected = "### Pod-to-pod TCP throughput (iperf3, 10 s per run) and CPU per GB received\n\n\
| backend | streams | rounds | Gbit/s (median) | × vxlan | min–max Gbit/s | machine CPU s/GB | flanneld CPU s/GB | retransmits (median) |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|\n\
| vxlan | 1 | 3 | 10.00 | 1.00× | 8.00–12.00 | 1.00 | 0.00 | 2 |\n\
| udp | 1 | 3 | 5.00 | 0.50× | 4.00–6.00 | 2.00 | 1.00 | 2 |\n\
\n### Pod-to-pod ping RTT (every reply of every round pooled)\n\n\
| backend | replies / sent | median ms | p90 ms |\n\
|---|---:|---:|---:|\n\
| vxlan | 0 / 2 | – | – |\n\
| udp | 10 / 10 | 0.550 | 0.900 |\n";
        assert_eq!(table(&rows, &lat, 10), expected);
    }

    #[test]
    fn csv_is_exact() {
        let rows = summarize(&samples(), &["vxlan", "udp"], &[1, 4]);
        let lat = summarize_latency(&pings(), &["vxlan", "udp"]);
        let expected = format!(
            "{CSV_HEADER}\n\
             vxlan,1,3,10.0000,8.0000,12.0000,1.0000,1.0000,0.0000,,\n\
             vxlan,4,1,20.0000,20.0000,20.0000,1.0000,1.0000,0.0000,,\n\
             udp,1,3,5.0000,4.0000,6.0000,0.5000,2.0000,1.0000,0.5500,0.9000\n\
             udp,4,1,0.0000,0.0000,0.0000,0.0000,,,0.5500,0.9000\n"
        );
        assert_eq!(csv(&rows, &lat), expected);
    }
}
