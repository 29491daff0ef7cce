//! A private network namespace for the calling test thread.
//!
//! `unshare(CLONE_NEWNET)` affects only the calling thread (cargo runs each test on its own
//! thread), and child processes spawned from that thread (`ip`, `iptables-restore`, `nft`)
//! inherit it. The namespace disappears when the thread exits, so nothing is left behind even
//! when the test fails. Only a new loopback device exists inside; it is brought up.

use anyhow::{Context, Result};
use nix::sched::{unshare, CloneFlags};

/// Move the current thread into a new, empty network namespace with `lo` up.
///
/// Call it first in a `#[test]` (not in a `#[tokio::test]`, whose runtime threads would stay in
/// the host namespace: build a current-thread runtime after this call instead).
pub fn enter_private_netns() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running ip link set lo up")?;
    anyhow::ensure!(status.success(), "ip link set lo up failed: {status}");
    Ok(())
}

/// Run `cmd args...` (in the current thread's namespace) and return its stdout; error if it fails.
pub fn sh(cmd: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd} {args:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
