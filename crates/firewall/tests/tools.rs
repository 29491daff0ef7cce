//! Unprivileged tests of `Firewall` against fake tools (shell scripts in a temp dir): missing
//! tools, failing tools, hanging tools, version probing. No rule reaches the kernel.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flannel_firewall::{
    Binaries, Family, Firewall, FirewallConfig, FirewallError, MasqParams, Mode, Outcome, RuleSet,
};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn missing(dir: &Path) -> Binaries {
    let m = dir.join("missing");
    Binaries {
        iptables: m.clone(),
        iptables_restore: m.clone(),
        ip6tables: m.clone(),
        ip6tables_restore: m.clone(),
        nft: m,
    }
}

fn set() -> RuleSet {
    RuleSet::new()
        .with_masq(
            MasqParams::new(
                "198.18.0.0/16".parse().unwrap(),
                "198.18.5.0/24".parse().unwrap(),
                true,
            )
            .unwrap(),
        )
        .unwrap()
}

fn fw(mode: Mode, binaries: Binaries) -> Firewall {
    let mut config = FirewallConfig::new(mode);
    config.binaries = binaries;
    config.command_timeout = Duration::from_millis(500);
    Firewall::new(config)
}

#[tokio::test]
async fn missing_tools_are_errors_for_ensure_but_not_for_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [Mode::Iptables, Mode::Nftables] {
        let f = fw(mode, missing(dir.path()));
        let err = f.ensure(&set()).await.unwrap_err();
        assert!(err.is_not_found(), "{mode:?}: {err}");
        assert!(err.to_string().contains("missing"), "{err}");
        // Nothing of the other mode can exist without its tool.
        assert_eq!(f.cleanup_other_mode().await.unwrap(), Outcome::Unchanged);
    }
}

#[tokio::test]
async fn old_iptables_gets_no_wait_and_no_random_fully() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let ipt = script(
        dir.path(),
        "iptables",
        &format!(
            "echo \"iptables $*\" >> {log}\n\
             case \"$*\" in --version) echo 'iptables v1.6.1';; *\" -S POSTROUTING\") echo '-P POSTROUTING ACCEPT';; *) exit 1;; esac",
            log = log.display()
        ),
    );
    let restore = script(
        dir.path(),
        "iptables-restore",
        &format!(
            "echo \"iptables-restore $*\" >> {log}\ncat >> {log}",
            log = log.display()
        ),
    );
    let mut b = missing(dir.path());
    b.iptables = ipt;
    b.iptables_restore = restore;
    let f = fw(Mode::Iptables, b);
    // 1.6.1 has neither `--random-fully` nor `--wait` (the log below shows no `--wait`).
    assert!(!f.supports_random_fully(Family::Ipv4).await.unwrap());
    // The fake never shows the rules, so verification fails after applying: that is reported.
    let err = f.ensure(&set()).await.unwrap_err();
    assert!(matches!(err, FirewallError::Verify { .. }), "{err}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("iptables -t nat -S POSTROUTING\n"), "{log}");
    assert!(
        log.contains("iptables-restore --noflush\n*nat\n:FLANNEL-POSTRTG - [0:0]\n"),
        "{log}"
    );
    assert!(!log.contains("--wait"), "{log}");
    assert!(!log.contains("--random-fully"), "{log}");
    assert!(log.contains("-j MASQUERADE\n"), "{log}");
}

#[tokio::test]
async fn failing_restore_reports_command_status_stderr_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ipt = script(
        dir.path(),
        "iptables",
        "case \"$*\" in --version) echo 'iptables v1.8.9 (nf_tables)';; *\" -S POSTROUTING\") echo '-P POSTROUTING ACCEPT';; *) exit 1;; esac",
    );
    let restore = script(
        dir.path(),
        "iptables-restore",
        "cat > /dev/null; echo 'iptables-restore: line 2 failed: Bad rule' >&2; exit 2",
    );
    let mut b = missing(dir.path());
    b.iptables = ipt;
    b.iptables_restore = restore;
    let err = fw(Mode::Iptables, b).ensure(&set()).await.unwrap_err();
    let FirewallError::Command {
        command,
        status,
        stderr,
    } = &err
    else {
        panic!("unexpected error {err}");
    };
    assert!(
        command.ends_with("iptables-restore --noflush --wait"),
        "{command}"
    );
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "iptables-restore: line 2 failed: Bad rule [input line: :FLANNEL-POSTRTG - [0:0]]"
    );
}

#[tokio::test]
async fn hanging_tool_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = missing(dir.path());
    b.nft = script(dir.path(), "nft", "exec sleep 30");
    let err = fw(Mode::Nftables, b).ensure(&set()).await.unwrap_err();
    assert!(matches!(err, FirewallError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn nft_without_fully_random_support_renders_plain_masquerade() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // `nft -c` (the probe) fails; listing fails (no table); applying records the script.
    let nft = script(
        dir.path(),
        "nft",
        &format!(
            "case \"$1\" in -c) cat > /dev/null; echo 'Error: unsupported' >&2; exit 1;; list) exit 1;; esac\ncat >> {log}",
            log = log.display()
        ),
    );
    let mut b = missing(dir.path());
    b.nft = nft;
    let f = fw(Mode::Nftables, b);
    assert!(!f.supports_random_fully(Family::Ipv4).await.unwrap());
    // Verification fails (the fake lists nothing), but the script was written.
    assert!(f.ensure(&set()).await.is_err());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("ip saddr 198.18.0.0/16 ip daddr != 224.0.0.0/4 masquerade\n"),
        "{log}"
    );
    assert!(!log.contains("fully-random"), "{log}");
    assert!(log.contains("table ip6 flannel-ipv6 {"), "{log}");
}
