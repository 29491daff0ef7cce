//! Golden test of `bench/perf_breakdown.py`, the script that turns a system-wide
//! `perf script -F comm,tid,ip,sym` into docs/udp.md's per-thread, per-system-call profile:
//! a small hand-made sample file (system calls named by `__x64_sys_*`, by `__sys_*` and by
//! the C library's wrapper only; user-space samples; idle; a kernel thread) and the table it
//! must give.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const EXPECTED: &str = "\
udp-q0 (tid 101): 4 samples, 44.4% of all
    sendmmsg                  50.0%   copying  25.0%
    user space                25.0%   copying   0.0%
    read                      25.0%   copying  25.0%
udp-q0 (tid 102): 2 samples, 22.2% of all
    sendmsg                   50.0%   copying   0.0%
    writev                    50.0%   copying   0.0%
iperf3 (tid 200): 1 samples, 11.1% of all
    write                    100.0%   copying 100.0%
swapper (tid 0): 1 samples, 11.1% of all
    kernel, no system call   100.0%   copying   0.0%
kworker/0:1 (tid 77): 1 samples, 11.1% of all
    kernel, no system call   100.0%   copying   0.0%
all samples: 9; idle (swapper) 11.1%
threads udp-q*: 66.7% of all samples; their copies 22.2%, their user space 11.1%
";

#[test]
fn the_breakdown_of_a_known_sample_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let input = std::fs::read(dir.join("tests/data/perf-script.txt")).expect("fixture");
    let mut child = Command::new("python3")
        .arg(dir.join("perf_breakdown.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write the samples");
    let out = child.wait_with_output().expect("the script ends");
    assert!(
        out.status.success(),
        "perf_breakdown.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), EXPECTED);
}

#[test]
fn no_samples_is_an_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(dir.join("perf_breakdown.py"))
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no samples"));
}
