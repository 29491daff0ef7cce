//! The usual `process_*` metrics (the names every Prometheus client library exports), read
//! from `/proc/self` on each scrape: CPU time, resident and virtual memory, open and maximum
//! file descriptors, start time.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 in Linux's ABI).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessFacts {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// `utime + stime` in seconds and the start time in ticks after boot, from a
/// `/proc/<pid>/stat` line (the command name may contain spaces and parentheses).
pub fn parse_stat(stat: &str) -> Option<(f64, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state): utime is 14, stime 15, starttime 22.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let start: u64 = fields.get(19)?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // tick counts stay far below 2^52
    Some(((utime + stime) as f64 / USER_HZ, start))
}

/// A `Vm...:   1234 kB` line of `/proc/<pid>/status`, in bytes.
pub fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The soft `Max open files` limit of `/proc/<pid>/limits`.
pub fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: boot time in Unix seconds.
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Read this process's facts; what cannot be read stays 0.
pub fn gather() -> ProcessFacts {
    let mut f = ProcessFacts::default();
    if let Some((cpu, start)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(parse_stat)
    {
        f.cpu_seconds = cpu;
        #[allow(clippy::cast_precision_loss)]
        let since_boot = start as f64 / USER_HZ;
        #[allow(clippy::cast_precision_loss)]
        let boot = boot_time().map(|b| b as f64).unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        });
        f.start_time_seconds = boot + since_boot;
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        f.resident_bytes = status_kb(&status, "VmRSS").unwrap_or(0);
        f.virtual_bytes = status_kb(&status, "VmSize").unwrap_or(0);
    }
    f.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    f.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(max_open_files)
        .unwrap_or(0);
    f
}

/// The collector registered with flanneld's metrics.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = gather();
        let cpu = ConstCounter::new(f.cpu_seconds);
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(m)?;
        #[allow(clippy::cast_precision_loss)]
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                f.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                f.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                f.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                f.max_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                f.start_time_seconds,
            ),
        ] {
            let g = ConstGauge::new(v);
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        let stat = "4242 (flann (el)d) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 12345 10000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((3.0, 12345)));
        let status = "Name:\tflanneld\nVmSize:\t   20480 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(4096 * 1024));
        assert_eq!(status_kb(status, "VmSize"), Some(20480 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_is_seen() {
        let f = gather();
        assert!(
            f.resident_bytes > 0 && f.open_fds > 0 && f.max_fds > 0,
            "{f:?}"
        );
        assert!(f.start_time_seconds > 1.0e9, "{f:?}");
    }
}
