//! flanneld's log output as an operator reads it: plain text when stderr is not a terminal
//! (files, journald, `kubectl logs`), colour on a terminal unless `NO_COLOR` is set, values as
//! the user writes them, and an unreachable etcd named in the error, which says its cause once.
//!
//! Each run points flanneld at an etcd endpoint on 127.0.0.1 where nothing listens, so it only
//! logs and retries; `timeout` stops it after a couple of seconds (SIGTERM, a clean exit).
//! Nothing leaves loopback and no kernel state is touched (that happens only once a network
//! config has been read).

use std::process::{Command, Output};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `timeout -s TERM 2 flanneld --etcd-endpoints=<endpoint> …` as a shell word list.
fn flanneld_words(endpoint: &str, dir: &std::path::Path) -> Vec<String> {
    vec![
        "timeout".into(),
        "-s".into(),
        "TERM".into(),
        "2".into(),
        env!("CARGO_BIN_EXE_flanneld").into(),
        format!("--etcd-endpoints={endpoint}"),
        format!("--subnet-file={}", dir.join("subnet.env").display()),
    ]
}

/// A command with the caller's FLANNELD_*, RUST_LOG and NO_COLOR settings removed.
fn clean(mut cmd: Command) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("FLANNELD_") || k == "RUST_LOG" || k == "NO_COLOR" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Run flanneld on a pseudo-terminal (util-linux `script`), returning what the terminal showed.
fn on_terminal(endpoint: &str, dir: &std::path::Path, no_color: Option<&str>) -> String {
    let words = flanneld_words(endpoint, dir);
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-f", "-c", &words.join(" "), "/dev/null"]);
    let mut cmd = clean(cmd);
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd
        .output()
        .expect("running flanneld under script(1) (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn logs_to_a_pipe_are_plain_text_with_readable_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let words = flanneld_words(&endpoint, dir.path());
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    let out = clean(cmd).output().expect("running flanneld");
    let log = text(&out);
    assert!(!out.stderr.contains(&0x1b), "ESC in piped logs:\n{log}");
    assert!(
        log.contains(&format!("using etcd endpoints={endpoint} ")),
        "endpoints as given on the command line:\n{log}"
    );
    let error = log
        .lines()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_else(|| panic!("no error logged:\n{log}"));
    assert!(
        error.contains(&format!("etcd unavailable ({endpoint})")),
        "the error names the endpoint: {error}"
    );
    assert!(error.contains("Connection refused"), "{error}");
    assert_eq!(
        error.matches("tcp connect error").count(),
        1,
        "the cause is said once: {error}"
    );
    for debug in ["tonic::", "Os {", "ConnectError(", "Some(", "source:"] {
        assert!(
            !log.contains(debug),
            "Debug formatting `{debug}` in:\n{log}"
        );
    }
    assert!(log.contains("received SIGTERM"), "{log}");
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let coloured = on_terminal(&endpoint, dir.path(), None);
    assert!(
        coloured.contains("using etcd"),
        "flanneld ran on the terminal:\n{coloured}"
    );
    assert!(
        coloured.contains('\x1b'),
        "colour on a terminal:\n{coloured}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_terminal(&endpoint, dir.path(), Some("")).contains('\x1b'));
    let plain = on_terminal(&endpoint, dir.path(), Some("1"));
    assert!(plain.contains("using etcd"), "{plain}");
    assert!(
        !plain.contains('\x1b'),
        "NO_COLOR=1 still coloured:\n{plain}"
    );
}
