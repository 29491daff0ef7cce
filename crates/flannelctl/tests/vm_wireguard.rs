//! `flannelctl status` and `doctor` on a wireguard node, in Debian's kernel (the qemu guest;
//! this machine's kernel has no wireguard module): two flanneld on the kernel implementation
//! (etcd mode). status shows h1's peer h2 as a WireGuard peer that matches (key, endpoint,
//! allowed IPs read over generic netlink), doctor finds h1 healthy; with h1's flanneld
//! stopped, a peer endpoint changed by hand (`wg set`) is named wrong, and a removed peer
//! missing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ctl, flanneld_bin};
use flannel_testkit::topology::{log_tails, wait_until, Flanneld, Host, Lab};
use serde_json::Value;

const READY: Duration = Duration::from_secs(60);
const WG: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard"}}"#;

/// flanneld with this host's own key file (all hosts share the machine's /run).
fn wrapper(host: &Host, bin: &Path) -> PathBuf {
    let path = host.dir().join("flanneld-wg");
    let key = host.dir().join("wgkey");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nWIREGUARD_KEY_FILE={} exec {} \"$@\"\n",
            key.display(),
            bin.display()
        ),
    )
    .expect("wrapper");
    std::process::Command::new("chmod")
        .args(["0755", &path.display().to_string()])
        .status()
        .expect("chmod");
    path
}

#[test]
fn wireguard_status_and_doctor_read_the_devices_peers() {
    if !flannel_testkit::vm::in_debian_kernel("wireguard_status_and_doctor_read_the_devices_peers")
    {
        return;
    }
    let bin = flanneld_bin();
    let lab = Lab::new("wgctl").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(WG).expect("config");
    let mut hosts = Vec::new();
    let mut flanneld: Vec<Flanneld> = Vec::new();
    for n in 1..=2u8 {
        let host = lab.add_host(n).expect("host");
        let mut f = host
            .start_flanneld(wrapper(&host, &bin), &["--wireguard-implementation=kernel"])
            .expect("start");
        if let Err(e) = f.wait_ready(READY) {
            panic!("h{n} not ready: {e:#}\n{}", f.log_tail(60));
        }
        hosts.push(host);
        flanneld.push(f);
    }
    let logs = |f: &[Flanneld]| log_tails(f, 40);
    let h1 = &hosts[0];
    let h2_key = || -> Option<String> {
        let dump = h1.exec(&["wg", "show", "flannel-wg", "dump"]).ok()?;
        dump.lines()
            .skip(1)
            .find(|l| l.contains("192.0.2.2:"))
            .and_then(|l| l.split('\t').next())
            .map(str::to_owned)
    };
    let has_peer = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        Ok(h2_key().is_some())
    });
    assert!(has_peer, "h1's device holds h2{}", logs(&flanneld));
    let key = h2_key().expect("h2's key");

    let (out, text) = ctl(h1, "status", true, &["--wireguard-implementation=kernel"]);
    assert!(out.status.success(), "{text}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        s["backend"]
            .as_str()
            .is_some_and(|b| b.starts_with("wireguard")),
        "{s:#}"
    );
    let peers = s["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{s:#}");
    assert_eq!(peers[0]["ok"], true, "{s:#}");
    let entry = &peers[0]["entries"][0];
    assert_eq!(entry["kind"], "wireguard", "{s:#}");
    assert!(
        entry["want"].as_str().is_some_and(|w| w.contains(&key)
            && w.contains("endpoint 192.0.2.2:51820")
            && w.contains("allowed-ips 198.18.")),
        "{s:#}"
    );
    assert!(s.get("not_checked").is_none(), "{s:#}");

    let (out, text) = ctl(h1, "doctor", false, &["--wireguard-implementation=kernel"]);
    assert!(out.status.success(), "a healthy wireguard node: {text}");
    assert!(text.contains("healthy: no problem found"), "{text}");

    // flanneld stopped, the peer's endpoint changed by hand: named wrong, with both endpoints.
    flanneld[0].stop().expect("stop h1");
    h1.exec(&[
        "wg",
        "set",
        "flannel-wg",
        "peer",
        &key,
        "endpoint",
        "192.0.2.9:51820",
    ])
    .expect("wg set endpoint");
    let (out, text) = ctl(h1, "doctor", false, &["--wireguard-implementation=kernel"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("flanneld is not running"), "{text}");
    assert!(
        text.contains("[wireguard] The wireguard entry for peer 192.0.2.2"),
        "{text}"
    );
    assert!(text.contains("is wrong"), "{text}");
    assert!(text.contains("endpoint 192.0.2.9:51820"), "{text}");

    // The peer removed: named missing.
    h1.exec(&["wg", "set", "flannel-wg", "peer", &key, "remove"])
        .expect("wg remove");
    let (out, text) = ctl(h1, "doctor", false, &["--wireguard-implementation=kernel"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("is missing"), "{text}");
    let (_, text) = ctl(h1, "status", false, &["--wireguard-implementation=kernel"]);
    assert!(text.contains("wireguard MISSING"), "{text}");

    for f in &mut flanneld {
        f.stop().expect("stop");
    }
}
