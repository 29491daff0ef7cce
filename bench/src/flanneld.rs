//! The flanneld under test: started in a host namespace (`ip netns exec`, which execs in
//! place, so the child's pid is flanneld's; the sandbox crate stops it), its
//! memory read from `/proc/<pid>/status`, and its log read for the lines the benchmarks use
//! (pure parsing: [`parse_reconciled`], [`line_time`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use flannel_sandbox::netns::Netns;
use flannel_sandbox::{cleanup, process};

use crate::plan::ETCD_IP;

/// How long a graceful stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running flanneld; killed on drop.
#[derive(Debug)]
pub struct Flanneld {
    child: Option<Child>,
    pid: i32,
    log: PathBuf,
}

impl Flanneld {
    /// Start flanneld in `ns` (vxlan from etcd, `--iface=eth0`), logging to `dir/flanneld.log`.
    /// Returns it with the instant and wall-clock time taken right before the spawn.
    pub fn spawn(bin: &Path, ns: &Netns, dir: &Path) -> Result<(Flanneld, Instant, SystemTime)> {
        let log = dir.join("flanneld.log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .arg(bin)
            .arg(format!("--etcd-endpoints=http://{ETCD_IP}:2379"))
            .arg("--iface=eth0")
            .arg(format!(
                "--subnet-file={}",
                dir.join("subnet.env").display()
            ))
            .arg("-v=0")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        process::log_to(&mut cmd, &log)?;
        let wall = SystemTime::now();
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        cleanup::track_pid(pid);
        Ok((
            Flanneld {
                child: Some(child),
                pid,
                log,
            },
            t0,
            wall,
        ))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `VmRSS`, `VmHWM` and the rest of [`Memory`], in KiB.
    pub fn memory(&self) -> Result<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading /proc/<flanneld>/status")?;
        let mut m = parse_status(&text).context("no VmRSS/VmHWM in /proc/<flanneld>/status")?;
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).unwrap_or_default();
        if let Ok(smaps) = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid)) {
            m.binary_kib = mapped_rss_kib(&smaps, &exe.to_string_lossy());
        }
        Ok(m)
    }

    /// The process name the kernel reports (to check the pid really is flanneld's).
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        process::stop_child(&mut child, STOP_TIMEOUT).context("stopping flanneld")?;
        cleanup::untrack_pid(self.pid);
        Ok(())
    }
}

impl Drop for Flanneld {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_child(&mut child);
        }
        cleanup::untrack_pid(self.pid);
    }
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size.
    pub hwm_kib: u64,
    /// `RssAnon`: resident heap, stacks and other private memory.
    pub anon_kib: u64,
    /// `RssFile` + `RssShmem`: resident pages of the binary and other mapped files.
    pub file_kib: u64,
    /// Resident pages mapped from flanneld's own executable (from `/proc/<pid>/smaps`; 0
    /// when unknown).
    pub binary_kib: u64,
    /// `Threads`.
    pub threads: u64,
}

/// `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:").unwrap_or(0),
        file_kib: field("RssFile:").unwrap_or(0) + field("RssShmem:").unwrap_or(0),
        binary_kib: 0,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// The resident KiB of the mappings of file `path` in the text of `/proc/<pid>/smaps`.
pub fn mapped_rss_kib(smaps: &str, path: &str) -> u64 {
    let mut total = 0;
    let mut in_file = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        // Mapping headers start with an address range "start-end".
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_file = !path.is_empty() && line.trim_end().ends_with(path);
        } else if in_file {
            if let Some(rest) = line.strip_prefix("Rss:") {
                total += rest
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// One `kernel state reconciled` line of flanneld's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The line's timestamp.
    pub at: Option<SystemTime>,
    /// What triggered the pass (`lease change`, `kernel change`, …).
    pub why: String,
    /// Operations applied.
    pub ops: u64,
    /// Operations that failed.
    pub failed: u64,
    /// Peers known.
    pub peers: u64,
    /// The pass's duration (observe → plan → diff → apply).
    pub took_ms: u64,
}

/// Every `kernel state reconciled` line of a log.
pub fn reconciled_lines(log: &str) -> Vec<Reconciled> {
    log.lines().filter_map(parse_reconciled).collect()
}

/// Parse a `kernel state reconciled` line (ANSI colours are ignored).
pub fn parse_reconciled(line: &str) -> Option<Reconciled> {
    let line = strip_ansi(line);
    if !line.contains("kernel state reconciled") {
        return None;
    }
    let num = |key: &str| field(&line, key).and_then(|v| v.parse::<u64>().ok());
    Some(Reconciled {
        at: line_time(&line),
        why: field(&line, "why").unwrap_or_default(),
        ops: num("ops")?,
        failed: num("failed").unwrap_or(0),
        peers: num("peers")?,
        took_ms: num("took_ms")?,
    })
}

/// The time of the first line of `log` containing `needle`.
pub fn first_line_time(log: &str, needle: &str) -> Option<SystemTime> {
    log.lines()
        .map(strip_ansi)
        .find(|l| l.contains(needle))
        .and_then(|l| line_time(&l))
}

/// The value of `key=value` or `key="quoted value"` in a log line.
fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted.find('"')?;
        Some(quoted[..end].to_owned())
    } else {
        Some(rest.split_whitespace().next()?.to_owned())
    }
}

/// Remove ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The RFC 3339 UTC timestamp a line starts with (`2025-11-26T05:59:01.123456Z`).
pub fn line_time(line: &str) -> Option<SystemTime> {
    let ts = line.split_whitespace().next()?;
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let v = digits.parse::<u32>().ok()?;
        v * 10u32.pow(9 - u32::try_from(digits.len()).ok()?)
    };
    let days = days_from_civil(y, mo, da);
    let secs = u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds from `from` to `to` (negative when `to` is earlier).
pub fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "2025-11-26T06:01:02.250000Z  INFO kernel state reconciled \
                        why=\"lease change\" ops=3000 failed=0 peers=1000 took_ms=21";

    #[test]
    fn reconciled_line_fields() {
        let r = parse_reconciled(LINE).expect("parsed");
        assert_eq!(r.why, "lease change");
        assert_eq!((r.ops, r.failed, r.peers, r.took_ms), (3000, 0, 1000, 21));
        let at = r.at.expect("time");
        assert_eq!(
            at.duration_since(UNIX_EPOCH).expect("after epoch"),
            Duration::new(1_764_136_862, 250_000_000)
        );
        assert!(parse_reconciled("2025-11-26T06:01:02Z  INFO flannel is ready").is_none());
    }

    #[test]
    fn ansi_colours_are_ignored() {
        let coloured = "\u{1b}[2m2025-11-26T06:01:02.250000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                        kernel state reconciled \u{1b}[3mwhy\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"start-up\" \
                        \u{1b}[3mops\u{1b}[0m\u{1b}[2m=\u{1b}[0m2 \u{1b}[3mpeers\u{1b}[0m\u{1b}[2m=\u{1b}[0m0 \
                        \u{1b}[3mtook_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m4";
        let r = parse_reconciled(coloured).expect("parsed");
        assert_eq!(
            (r.why.as_str(), r.ops, r.peers, r.took_ms),
            ("start-up", 2, 0, 4)
        );
        assert!(r.at.is_some());
    }

    #[test]
    fn timestamps_and_differences() {
        let a = line_time("1970-01-01T00:00:00Z x").expect("epoch");
        assert_eq!(a, UNIX_EPOCH);
        let b = line_time("2000-03-01T00:00:00.5Z").expect("time");
        assert_eq!(
            b.duration_since(UNIX_EPOCH).expect("after"),
            Duration::from_millis(951_868_800_500)
        );
        assert_eq!(ms_between(a, a + Duration::from_millis(3)), 3.0);
        assert_eq!(ms_between(a + Duration::from_millis(3), a), -3.0);
        assert!(line_time("INFO something").is_none());
        let log = "1970-01-01T00:00:01Z INFO lease acquired subnet=x\n\
                   1970-01-01T00:00:02Z INFO flannel is ready\n";
        assert_eq!(
            first_line_time(log, "flannel is ready"),
            Some(UNIX_EPOCH + Duration::from_secs(2))
        );
    }

    #[test]
    fn smaps_rss_of_one_file() {
        let smaps = "55d0a0000000-55d0a0100000 r--p 00000000 fe:00 123 /usr/bin/flanneld\n\
                     Size:               1024 kB\n\
                     Rss:                 900 kB\n\
                     55d0a0100000-55d0a0900000 r-xp 00100000 fe:00 123 /usr/bin/flanneld\n\
                     Rss:                7000 kB\n\
                     7f0000000000-7f0000200000 r-xp 00000000 fe:00 9 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                     Rss:                1500 kB\n\
                     7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n\
                     Rss:                  40 kB\n";
        assert_eq!(mapped_rss_kib(smaps, "/usr/bin/flanneld"), 7900);
        assert_eq!(mapped_rss_kib(smaps, ""), 0);
    }

    #[test]
    fn proc_status_memory() {
        let text = "Name:\tflanneld\nVmHWM:\t    9876 kB\nVmRSS:\t    8192 kB\n\
                    RssAnon:\t    3000 kB\nRssFile:\t    5000 kB\nRssShmem:\t     192 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_kib: 8192,
                hwm_kib: 9876,
                anon_kib: 3000,
                file_kib: 5192,
                binary_kib: 0,
                threads: 3,
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }
}
