//! Markdown tables of the results (pure: results in, text out).

use std::fmt::Write as _;

use crate::bench::{MemorySample, ProgramResult, PropagationResult};
use crate::stats::{fmt_ms, max, median, min, percentile};

/// Target: flanneld within this factor of the iproute2 floor.
pub const PROGRAM_TARGET_RATIO: f64 = 1.5;
/// Target: p99 propagation, ms.
pub const PROPAGATION_TARGET_P99_MS: f64 = 100.0;
/// Target: idle RSS, KiB.
pub const IDLE_TARGET_KIB: u64 = 10 * 1024;
/// Target: RSS with 5,000 peers, KiB.
pub const LOADED_TARGET_KIB: u64 = 30 * 1024;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// The machine line: cores and kernel.
pub fn machine(nproc: usize, kernel: &str, flanneld: &str) -> String {
    format!("Machine: {nproc} cores, kernel {kernel}; flanneld: `{flanneld}`\n")
}

/// The programming-speed table (one row per N) and the phase breakdown.
pub fn program(results: &[ProgramResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Programming speed (vxlan, fresh flanneld vs. `ip -batch` + `bridge -batch` floor)\n"
    );
    let _ = writeln!(
        s,
        "| peers | SubnetLen | runs | flanneld median ms (min–max) | floor median ms (min–max) | ratio of medians | median of per-run ratios | target ≤ {PROGRAM_TARGET_RATIO}× | flanneld apply `took_ms` median | ops |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let fl: Vec<f64> = r.flanneld.iter().map(|x| x.total_ms).collect();
        let fo: Vec<f64> = r.floor.iter().map(|x| x.total_ms).collect();
        let ratios: Vec<f64> = fl.iter().zip(&fo).map(|(a, b)| a / b).collect();
        let ratio_of_medians = median(&fl).zip(median(&fo)).map(|(a, b)| a / b);
        let pair_ratio = median(&ratios);
        let apply: Vec<f64> = r.flanneld.iter().filter_map(|x| x.apply_ms).collect();
        let ops = r.flanneld.iter().find_map(|x| x.apply_ops);
        let _ = writeln!(
            s,
            "| {} | /{} | {} | {} ({}–{}) | {} ({}–{}) | {} | {} | {} | {} | {} |",
            r.peers,
            r.subnet_len,
            fl.len(),
            fmt_ms(median(&fl)),
            fmt_ms(min(&fl)),
            fmt_ms(max(&fl)),
            fmt_ms(median(&fo)),
            fmt_ms(min(&fo)),
            fmt_ms(max(&fo)),
            ratio_of_medians.map_or("–".into(), |v| format!("{v:.2}×")),
            pair_ratio.map_or("–".into(), |v| format!("{v:.2}×")),
            verdict(pair_ratio.is_some_and(|v| v <= PROGRAM_TARGET_RATIO)),
            fmt_ms(median(&apply)),
            ops.map_or("–".into(), |v| v.to_string()),
        );
    }
    let _ = writeln!(s, "\nWhere flanneld's time goes (medians, ms since flanneld was started; from its log timestamps):\n");
    let _ = writeln!(
        s,
        "| peers | first log line | lease acquired | ready (device, firewall, subnet.env) | lease snapshot loaded | programming pass ended (log) | every entry seen in the kernel | floor: `ip`+`bridge` processes | extra reconcile passes |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let col = |f: &dyn Fn(&crate::bench::FlanneldRun) -> Option<f64>| {
            let v: Vec<f64> = r.flanneld.iter().filter_map(f).collect();
            fmt_ms(median(&v))
        };
        let proc_ms: Vec<f64> = r.floor.iter().map(|x| x.process_ms).collect();
        let extra: Vec<String> = r
            .flanneld
            .iter()
            .map(|x| x.extra_passes.to_string())
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.peers,
            col(&|x| x.first_log_ms),
            col(&|x| x.lease_ms),
            col(&|x| x.ready_ms),
            col(&|x| x.snapshot_ms),
            col(&|x| x.programmed_ms),
            col(&|x| Some(x.total_ms)),
            fmt_ms(median(&proc_ms)),
            extra.join(", "),
        );
    }
    s
}

/// The propagation table.
pub fn propagation(r: &PropagationResult) -> String {
    let mut s = String::new();
    let x = &r.after_put_ms;
    let p99 = percentile(x, 99.0);
    let _ = writeln!(
        s,
        "### Propagation (lease put → route in flanneld's kernel)\n"
    );
    let _ = writeln!(
        s,
        "| samples | initial peers | p50 ms | p90 ms | p99 ms | max ms | min ms | missed | etcd put round trip median ms | put sent → route p99 ms | target p99 ≤ {PROPAGATION_TARGET_P99_MS:.0} ms |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        x.len() + r.missed,
        r.initial_peers,
        fmt_ms(percentile(x, 50.0)),
        fmt_ms(percentile(x, 90.0)),
        fmt_ms(p99),
        fmt_ms(max(x)),
        fmt_ms(min(x)),
        r.missed,
        fmt_ms(median(&r.put_ms)),
        fmt_ms(percentile(&r.after_send_ms, 99.0)),
        verdict(r.missed == 0 && p99.is_some_and(|v| v <= PROPAGATION_TARGET_P99_MS)),
    );
    let _ = writeln!(
        s,
        "\nControl: the same rtnetlink dumps flanneld's pass makes, timed every 20 ms in its namespace \
         during the run: {} rounds, p50 {} ms, p99 {} ms, max {} ms. Samples slower than 10 ms: {}, \
         of which {} overlapped a dump round slower than 10 ms.",
        r.probe_ms.len(),
        fmt_ms(percentile(&r.probe_ms, 50.0)),
        fmt_ms(percentile(&r.probe_ms, 99.0)),
        fmt_ms(max(&r.probe_ms)),
        r.slow,
        r.slow_with_slow_probe,
    );
    s
}

/// The memory table.
pub fn memory(samples: &[MemorySample]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### Memory (flanneld `/proc/<pid>/status`)\n");
    let _ = writeln!(
        s,
        "| peers | VmRSS after programming | VmRSS after a periodic pass | of which anonymous / file-backed (flanneld's own binary) | threads | VmHWM (peak) | target | verdict (peak) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for m in samples {
        let target = if m.peers <= 10 {
            IDLE_TARGET_KIB
        } else {
            LOADED_TARGET_KIB
        };
        let peak = m.settled.hwm_kib.max(m.settled.rss_kib);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} / {} ({}) | {} | {} | < {} | {} |",
            m.peers,
            mib(m.programmed.rss_kib),
            mib(m.settled.rss_kib),
            mib(m.settled.anon_kib),
            mib(m.settled.file_kib),
            mib(m.settled.binary_kib),
            m.settled.threads,
            mib(m.settled.hwm_kib),
            mib(target),
            verdict(peak < target),
        );
    }
    s
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{FlanneldRun, FloorRun};
    use crate::flanneld::Memory;

    fn run(total: f64) -> FlanneldRun {
        FlanneldRun {
            total_ms: total,
            apply_ms: Some(10.0),
            apply_ops: Some(3000),
            first_log_ms: Some(2.0),
            lease_ms: Some(5.0),
            ready_ms: Some(20.0),
            snapshot_ms: Some(25.0),
            programmed_ms: Some(total - 1.0),
            extra_passes: 0,
        }
    }

    #[test]
    fn program_table_uses_medians_and_pairwise_ratios() {
        let r = ProgramResult {
            peers: 1000,
            subnet_len: 26,
            flanneld: vec![run(60.0), run(70.0), run(200.0)],
            floor: vec![
                FloorRun {
                    total_ms: 50.0,
                    process_ms: 49.0,
                },
                FloorRun {
                    total_ms: 50.0,
                    process_ms: 49.0,
                },
                FloorRun {
                    total_ms: 100.0,
                    process_ms: 99.0,
                },
            ],
        };
        let t = program(&[r]);
        assert!(
            t.contains("| 1000 | /26 | 3 | 70.0 (60.0–200) | 50.0 (50.0–100) | 1.40× | 1.40× | met | 10.0 | 3000 |"),
            "{t}"
        );
        assert!(
            t.contains("| 1000 | 2.0 | 5.0 | 20.0 | 25.0 | 69.0 | 70.0 | 49.0 | 0, 0, 0 |"),
            "{t}"
        );
    }

    #[test]
    fn propagation_and_memory_verdicts() {
        let r = PropagationResult {
            initial_peers: 3,
            after_put_ms: (1..=100).map(f64::from).collect(),
            after_send_ms: (2..=101).map(f64::from).collect(),
            put_ms: vec![1.0; 100],
            missed: 0,
            probe_ms: vec![0.5, 0.7, 30.0],
            slow: 90,
            slow_with_slow_probe: 1,
        };
        let t = propagation(&r);
        assert!(
            t.contains("| 100 | 3 | 50.0 | 90.0 | 99.0 | 100 | 1.0 | 0 | 1.0 | 100 | met |"),
            "{t}"
        );
        assert!(
            t.contains("3 rounds, p50 0.7 ms, p99 30.0 ms, max 30.0 ms. Samples slower than 10 ms: 90, of which 1 overlapped"),
            "{t}"
        );
        let mem = |rss, hwm| Memory {
            rss_kib: rss,
            hwm_kib: hwm,
            anon_kib: rss / 4,
            file_kib: rss - rss / 4,
            binary_kib: rss / 2,
            threads: 4,
        };
        let t = memory(&[
            MemorySample {
                peers: 3,
                programmed: mem(5000, 6000),
                settled: mem(5100, 6000),
            },
            MemorySample {
                peers: 5000,
                programmed: mem(20000, 40000),
                settled: mem(20000, 40000),
            },
        ]);
        assert!(
            t.contains(
                "| 3 | 4.9 MiB | 5.0 MiB | 1.2 MiB / 3.7 MiB (2.5 MiB) | 4 | 5.9 MiB | < 10.0 MiB | met |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| 5000 | 19.5 MiB | 19.5 MiB | 4.9 MiB / 14.6 MiB (9.8 MiB) | 4 | 39.1 MiB | < 30.0 MiB | **missed** |"),
            "{t}"
        );
    }
}
