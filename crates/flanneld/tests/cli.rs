//! The flanneld binary's command-line contract (exit codes and output streams).
//!
//! The parsing rules themselves are unit-tested in `src/cli.rs`; these tests check how `main`
//! reports the outcomes: help on stdout with exit 0, `--version` on stderr (as Flannel) with exit 0, one-line usage errors on
//! stderr with exit 2, Flannel's renew-margin message with exit 1.

use std::process::{Command, Output};

fn flanneld(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flanneld"));
    cmd.args(args);
    // Keep the caller's FLANNELD_* settings out of the test.
    for (k, _) in std::env::vars() {
        if k.starts_with("FLANNELD_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("running flanneld")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    for flag in ["-h", "--help", "-help"] {
        let out = flanneld(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("Usage: flanneld [OPTION]..."), "{stdout}");
        assert!(stdout.contains("--iface-regex"), "{stdout}");
    }
}

#[test]
fn version_goes_to_stderr_like_flannel_and_exits_0() {
    let out = flanneld(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(text(&out.stderr).trim_end(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn subnet_lease_ttl_is_in_the_help() {
    let out = flanneld(&["--help"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("--subnet-lease-ttl"), "{stdout}");
    assert!(stdout.contains("86400"), "{stdout}");
}

/// Issue 16.7: a bad `--iface-regex` or a missing TLS file is refused before anything is
/// contacted (the etcd endpoint here would hang), exit 2, naming the value.
#[test]
fn bad_regex_and_missing_tls_files_exit_2_before_any_io() {
    let nowhere = "/nonexistent/flannel-ca.pem";
    let cases: [(&[&str], &str); 4] = [
        (
            &["--iface-regex=["],
            "invalid value \"[\" for --iface-regex: not a regular expression",
        ),
        (&[&format!("--etcd-cafile={nowhere}")], nowhere),
        (&["--etcd-certfile", nowhere], nowhere),
        (&["--etcd-keyfile=/"], "/ is a directory"),
    ];
    for (args, want) in cases {
        let mut all = vec!["--etcd-endpoints=http://192.0.2.1:2379"];
        all.extend_from_slice(args);
        let start = std::time::Instant::now();
        let out = flanneld(&all);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_flanneld"))
        .env("FLANNELD_ETCD_CAFILE", nowhere)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("FLANNELD_ETCD_CAFILE") && stderr.contains(nowhere),
        "{stderr}"
    );
}

#[test]
fn unknown_flag_is_one_line_and_exits_2() {
    let out = flanneld(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "flanneld: unknown flag --no-such-flag (see --help)"
    );
}

#[test]
fn bad_value_exits_2() {
    let out = flanneld(&["-healthz-port", "http"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid value \"http\" for --healthz-port"));
}

#[test]
fn renew_margin_out_of_range_exits_1() {
    let out = flanneld(&["--subnet-lease-renew-margin=1440"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr)
        .contains("Invalid subnet-lease-renew-margin option, out of acceptable range"));
}

#[test]
fn udp_fast_path_is_a_flag_with_a_checked_value() {
    let out = flanneld(&["--help"]);
    assert!(text(&out.stdout).contains("--udp-fast-path"));
    let out = flanneld(&["--udp-fast-path=sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--udp-fast-path"),
        "{}",
        text(&out.stderr)
    );
}
