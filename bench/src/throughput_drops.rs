//! "Drops by place" for `flannel-bench throughput`: which loss counters of which namespace
//! grew during an iperf3 run (the pure half: parsing and summarizing; the reading is in
//! `throughput.rs`).
//!
//! Per namespace of the lab (`h1`, `h2` hosts, `p1`, `p2` pods, `sw` switch) the harness reads,
//! right before and right after the iperf3 client:
//!
//! - `/proc/net/snmp` and `/proc/net/netstat` ([`parse_proc_net`]): the loss-related counters
//!   of [`PROC_NET_COUNTERS`] (socket buffer overflows, IP discards, TCP retransmits, receive
//!   queue drops, out-of-order queueing);
//! - `ip -s -j link show` ([`parse_ip_link`]): per interface `rx_dropped`, `tx_dropped`,
//!   `rx_errors`, `tx_errors`, `rx_over_errors`;
//! - `tc -s -j qdisc show` ([`parse_tc_qdisc`]): per interface qdisc `drops`;
//!
//! and, once for the machine, `/proc/net/softnet_stat` ([`parse_softnet`]: the per-CPU backlog
//! `dropped` and `time_squeeze`, summed). A [`Snapshot`] maps `"<place> <counter>"` to its
//! value; [`deltas`] keeps what grew, and [`summarize`] takes the median over rounds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::stats::median;

/// The counters of `/proc/net/snmp` and `/proc/net/netstat` worth reporting: losses, and the
/// TCP signs of them (retransmits, out-of-order arrivals).
pub const PROC_NET_COUNTERS: [&str; 24] = [
    "Ip.InDiscards",
    "Ip.OutDiscards",
    "Ip.InHdrErrors",
    "Ip.InAddrErrors",
    "Ip.OutNoRoutes",
    "Ip.FragFails",
    "Udp.InErrors",
    "Udp.RcvbufErrors",
    "Udp.SndbufErrors",
    "Udp.NoPorts",
    "Udp.InCsumErrors",
    "Tcp.RetransSegs",
    "Tcp.InErrs",
    "Tcp.InCsumErrors",
    "TcpExt.TCPBacklogDrop",
    "TcpExt.TCPRcvQDrop",
    "TcpExt.TCPOFODrop",
    "TcpExt.TCPOFOQueue",
    "TcpExt.PruneCalled",
    "TcpExt.RcvPruned",
    "TcpExt.OfoPruned",
    "TcpExt.TCPZeroWindowDrop",
    "TcpExt.TCPSACKReorder",
    "TcpExt.TCPDSACKRecv",
];

/// Counter values by `"<place> <counter>"`.
pub type Snapshot = BTreeMap<String, u64>;

/// The counters of [`PROC_NET_COUNTERS`] in `/proc/net/snmp` or `/proc/net/netstat` text
/// (pairs of lines `Proto: Name Name …` / `Proto: value value …`), as `Proto.Name`.
pub fn parse_proc_net(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((proto, names)), Some((proto2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if proto != proto2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            let key = format!("{proto}.{name}");
            if PROC_NET_COUNTERS.contains(&key.as_str()) {
                if let Ok(v) = value.parse::<u64>() {
                    out.push((key, v));
                }
            }
        }
    }
    out
}

/// Per interface of `ip -s -j link show`, its loss counters as `<ifname> rx_dropped` etc.
pub fn parse_ip_link(json: &str) -> Result<Vec<(String, u64)>> {
    let v: Value = serde_json::from_str(json).context("`ip -s -j link` output is not JSON")?;
    let Some(links) = v.as_array() else {
        bail!("`ip -s -j link` output is not an array");
    };
    let mut out = Vec::new();
    for l in links {
        let Some(name) = l.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        for (dir, fields) in [
            ("rx", &["dropped", "errors", "over_errors"][..]),
            ("tx", &["dropped", "errors"][..]),
        ] {
            for f in fields {
                if let Some(n) = l
                    .pointer(&format!("/stats64/{dir}/{f}"))
                    .and_then(Value::as_u64)
                {
                    out.push((format!("{name} {dir}_{f}"), n));
                }
            }
        }
    }
    Ok(out)
}

/// Per qdisc of `tc -s -j qdisc show`, its drops as `<dev> qdisc_drops` (summed per device).
pub fn parse_tc_qdisc(json: &str) -> Result<Vec<(String, u64)>> {
    let v: Value = serde_json::from_str(json).context("`tc -s -j qdisc` output is not JSON")?;
    let Some(qdiscs) = v.as_array() else {
        bail!("`tc -s -j qdisc` output is not an array");
    };
    let mut per_dev: BTreeMap<String, u64> = BTreeMap::new();
    for q in qdiscs {
        let (Some(dev), Some(drops)) = (
            q.get("dev").and_then(Value::as_str),
            q.get("drops").and_then(Value::as_u64),
        ) else {
            continue;
        };
        *per_dev.entry(format!("{dev} qdisc_drops")).or_default() += drops;
    }
    Ok(per_dev.into_iter().collect())
}

/// `/proc/net/softnet_stat` (one line per CPU, hexadecimal: processed, dropped, time_squeeze,
/// …): the backlog drops and time squeezes summed over CPUs.
pub fn parse_softnet(text: &str) -> Result<Vec<(String, u64)>> {
    let (mut dropped, mut squeezed) = (0u64, 0u64);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            bail!("softnet_stat line with fewer than 3 fields: {line:?}");
        }
        let hex = |s: &str| {
            u64::from_str_radix(s, 16).with_context(|| format!("softnet_stat field {s:?}"))
        };
        dropped += hex(f[1])?;
        squeezed += hex(f[2])?;
    }
    Ok(vec![
        ("softnet_dropped".to_owned(), dropped),
        ("softnet_time_squeeze".to_owned(), squeezed),
    ])
}

/// Adds `counters` to `snap` under `place`.
pub fn record(snap: &mut Snapshot, place: &str, counters: Vec<(String, u64)>) {
    for (k, v) in counters {
        snap.insert(format!("{place} {k}"), v);
    }
}

/// The counters that grew from `before` to `after`, with their increase (a counter missing
/// before, e.g. an interface created meanwhile, counts from 0).
pub fn deltas(before: &Snapshot, after: &Snapshot) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(k, &v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// The drops of one backend at one stream count in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropSample {
    /// Backend name.
    pub backend: String,
    /// Round (1-based).
    pub round: usize,
    /// Parallel TCP streams.
    pub streams: u32,
    /// What grew during the run.
    pub deltas: Vec<(String, u64)>,
}

/// The drops of one backend at one stream count over all rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct DropRow {
    /// Backend name.
    pub backend: String,
    /// Parallel TCP streams.
    pub streams: u32,
    /// `(place counter, median increase, largest increase)`, largest median first.
    pub counters: Vec<(String, f64, u64)>,
}

/// Per backend (in `backends` order) and stream count (in `streams` order) with samples: each
/// counter that grew in some round, with the median of its increase over the rounds (a round
/// where it did not grow counts as 0) and the largest, sorted by median, then name.
pub fn summarize(samples: &[DropSample], backends: &[&str], streams: &[u32]) -> Vec<DropRow> {
    let mut out = Vec::new();
    for &b in backends {
        for &n in streams {
            let of: Vec<&DropSample> = samples
                .iter()
                .filter(|s| s.backend == b && s.streams == n)
                .collect();
            if of.is_empty() {
                continue;
            }
            let keys: BTreeSet<&str> = of
                .iter()
                .flat_map(|s| s.deltas.iter().map(|(k, _)| k.as_str()))
                .collect();
            let mut counters: Vec<(String, f64, u64)> = keys
                .into_iter()
                .map(|k| {
                    let vals: Vec<u64> = of
                        .iter()
                        .map(|s| {
                            s.deltas
                                .iter()
                                .find(|(key, _)| key == k)
                                .map_or(0, |(_, v)| *v)
                        })
                        .collect();
                    let fl: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
                    (
                        k.to_owned(),
                        median(&fl).unwrap_or(0.0),
                        vals.iter().copied().max().unwrap_or(0),
                    )
                })
                .collect();
            counters.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            out.push(DropRow {
                backend: b.to_owned(),
                streams: n,
                counters,
            });
        }
    }
    out
}

/// The markdown section: per backend and stream count, one line of `place counter median
/// (max)`, largest first.
pub fn section(summary: &[DropRow]) -> String {
    let mut s = String::from(
        "\n### Drops by place (increase during the iperf3 run: median over rounds, max)\n\n",
    );
    s += "Places: h1/h2 hosts, p1/p2 pods (sender/receiver), sw switch, cpu machine-wide.\n\n";
    for DropRow {
        backend: b,
        streams: n,
        counters,
    } in summary
    {
        if counters.is_empty() {
            let _ = writeln!(s, "- {b}, {n} streams: nothing grew");
            continue;
        }
        let list: Vec<String> = counters
            .iter()
            .map(|(k, med, max)| format!("{k} {med:.0} ({max})"))
            .collect();
        let _ = writeln!(s, "- {b}, {n} streams: {}", list.join("; "));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 1 64 100 0 0 50 0 3 40 30 0 0 0 0 0 0 0 0 0 30
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 10 1 7 12 7 0 0 0 0
";

    #[test]
    fn proc_net_keeps_the_listed_counters() {
        let got = parse_proc_net(SNMP);
        let expect: Vec<(String, u64)> = [
            ("Ip.InHdrErrors", 0),
            ("Ip.InAddrErrors", 0),
            ("Ip.InDiscards", 3),
            ("Ip.OutDiscards", 0),
            ("Ip.OutNoRoutes", 0),
            ("Ip.FragFails", 0),
            ("Udp.NoPorts", 1),
            ("Udp.InErrors", 7),
            ("Udp.RcvbufErrors", 7),
            ("Udp.SndbufErrors", 0),
            ("Udp.InCsumErrors", 0),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn netstat_lines_are_read_too() {
        let text = "TcpExt: SyncookiesSent TCPBacklogDrop TCPOFOQueue\nTcpExt: 0 4 90\nIpExt: InNoRoutes\nIpExt: 2\n";
        assert_eq!(
            parse_proc_net(text),
            vec![
                ("TcpExt.TCPBacklogDrop".to_owned(), 4),
                ("TcpExt.TCPOFOQueue".to_owned(), 90)
            ]
        );
    }

    #[test]
    fn ip_link_json_gives_drops_and_errors_per_interface() {
        let json = r#"[{"ifindex":1,"ifname":"flannel0","stats64":{"rx":{"bytes":1,"packets":2,"errors":0,"dropped":5,"over_errors":0,"multicast":0},"tx":{"bytes":3,"packets":4,"errors":1,"dropped":9,"carrier_errors":0,"collisions":0}}},{"ifname":"lo"}]"#;
        assert_eq!(
            parse_ip_link(json).unwrap(),
            vec![
                ("flannel0 rx_dropped".to_owned(), 5),
                ("flannel0 rx_errors".to_owned(), 0),
                ("flannel0 rx_over_errors".to_owned(), 0),
                ("flannel0 tx_dropped".to_owned(), 9),
                ("flannel0 tx_errors".to_owned(), 1),
            ]
        );
        assert!(parse_ip_link("{}").is_err());
        assert!(parse_ip_link("not json").is_err());
    }

    #[test]
    fn qdisc_drops_are_summed_per_device() {
        let json = r#"[{"kind":"mq","handle":"1:","dev":"eth0","drops":2},{"kind":"fq_codel","dev":"eth0","drops":3},{"kind":"noqueue","dev":"lo"},{"kind":"pfifo_fast","dev":"flannel0","drops":7}]"#;
        assert_eq!(
            parse_tc_qdisc(json).unwrap(),
            vec![
                ("eth0 qdisc_drops".to_owned(), 5),
                ("flannel0 qdisc_drops".to_owned(), 7)
            ]
        );
    }

    #[test]
    fn softnet_sums_hex_fields_over_cpus() {
        let text = "0000a000 00000010 00000002 00000000\n0000b000 00000001 0000000f 00000000\n";
        assert_eq!(
            parse_softnet(text).unwrap(),
            vec![
                ("softnet_dropped".to_owned(), 17),
                ("softnet_time_squeeze".to_owned(), 17)
            ]
        );
        assert!(parse_softnet("00 zz 01\n").is_err());
        assert!(parse_softnet("00 01\n").is_err());
    }

    #[test]
    fn deltas_keep_what_grew() {
        let mut a = Snapshot::new();
        record(&mut a, "h1", vec![("x".into(), 5), ("y".into(), 2)]);
        let mut b = Snapshot::new();
        record(
            &mut b,
            "h1",
            vec![("x".into(), 9), ("y".into(), 2), ("z".into(), 3)],
        );
        record(&mut b, "cpu", vec![("w".into(), 0)]);
        assert_eq!(
            deltas(&a, &b),
            vec![("h1 x".to_owned(), 4), ("h1 z".to_owned(), 3)]
        );
    }

    #[test]
    fn summary_takes_medians_with_missing_rounds_as_zero() {
        let s = |round, deltas: &[(&str, u64)]| DropSample {
            backend: "udp".into(),
            round,
            streams: 4,
            deltas: deltas.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        };
        let samples = [
            s(1, &[("h1 a", 10), ("h2 b", 1)]),
            s(2, &[("h1 a", 30)]),
            s(3, &[("h1 a", 20), ("h2 b", 5)]),
        ];
        let sum = summarize(&samples, &["vxlan", "udp"], &[1, 4]);
        assert_eq!(
            sum,
            vec![DropRow {
                backend: "udp".to_owned(),
                streams: 4,
                counters: vec![("h1 a".to_owned(), 20.0, 30), ("h2 b".to_owned(), 1.0, 5)]
            }]
        );
        assert_eq!(
            section(&sum),
            "\n### Drops by place (increase during the iperf3 run: median over rounds, max)\n\n\
             Places: h1/h2 hosts, p1/p2 pods (sender/receiver), sw switch, cpu machine-wide.\n\n\
             - udp, 4 streams: h1 a 20 (30); h2 b 1 (5)\n"
        );
    }
}
