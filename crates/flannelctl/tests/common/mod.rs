//! What the tests that run flannelctl against a lab flanneld share.

use std::path::{Path, PathBuf};
use std::process::Output;

use flannel_testkit::topology::{Host, ETCD_ENDPOINT};

pub const CTL: &str = env!("CARGO_BIN_EXE_flannelctl");

/// The flanneld binary next to flannelctl (built by the workspace's `cargo test`).
pub fn flanneld_bin() -> PathBuf {
    let bin = Path::new(CTL)
        .parent()
        .expect("target dir")
        .join("flanneld");
    assert!(
        bin.is_file(),
        "{} must be built first (`cargo build --bins`; the workspace `cargo test` does it)",
        bin.display()
    );
    bin
}

/// `flannelctl <cmd> [--json]` in `host` with the lab flanneld's flags (and `extra`): its
/// output and all its text.
pub fn ctl(host: &Host, cmd: &str, json: bool, extra: &[&str]) -> (Output, String) {
    let subnet_file = format!("--subnet-file={}", host.subnet_file().display());
    let etcd = format!("--etcd-endpoints={ETCD_ENDPOINT}");
    let mut argv = vec![CTL, cmd];
    if json {
        argv.push("--json");
    }
    argv.extend([
        etcd.as_str(),
        "--iface=eth0",
        subnet_file.as_str(),
        "--healthz-ip=127.0.0.1",
        "--healthz-port=10299",
    ]);
    argv.extend(extra);
    let out = host.run(&argv).expect("running flannelctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}
