//! `flannelctl status` and `doctor` on an ipsec node, in Debian's kernel (the qemu guest; this
//! machine's kernel has no xfrm): two flanneld with charon (etcd mode), each with a private
//! `/run` as in flanneld's e2e_ipsec. Once charon has negotiated, status shows h1's peer h2
//! with its three XFRM policies and SAs both ways, all matching, and doctor finds h1 healthy;
//! with h1's flanneld stopped and the fwd policy deleted by hand, doctor names the policy.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ctl, flanneld_bin};
use flannel_testkit::topology::{log_tails, wait_until, Flanneld, Lab};
use serde_json::Value;

const PSK: &str = "flannel-rs-e2e-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz-0123456789";

/// flanneld in a mount namespace of its own with a fresh tmpfs on `/run` (charon's socket and
/// pid file), `exec` all the way so the lab tracks flanneld's pid.
fn private_run_wrapper(dir: &Path, bin: &Path) -> PathBuf {
    let path = dir.join("flanneld-private-run.sh");
    let script = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private /bin/sh -c \
         'mount -t tmpfs -o mode=0755 tmpfs /run && exec \"$0\" \"$@\"' {} \"$@\"\n",
        bin.display()
    );
    std::fs::write(&path, script).expect("write wrapper");
    std::process::Command::new("chmod")
        .args(["755"])
        .arg(&path)
        .status()
        .expect("chmod");
    path
}

#[test]
fn ipsec_status_and_doctor_read_the_xfrm_policies() {
    if !flannel_testkit::vm::in_debian_kernel("ipsec_status_and_doctor_read_the_xfrm_policies") {
        return;
    }
    let bin = flanneld_bin();
    let lab = Lab::new("ipsecctl").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(&format!(
        r#"{{"Network":"198.18.0.0/16","Backend":{{"Type":"ipsec","PSK":"{PSK}"}}}}"#
    ))
    .expect("config");
    let wrapper = private_run_wrapper(lab.dir(), &bin);
    let mut hosts = Vec::new();
    let mut flanneld: Vec<Flanneld> = Vec::new();
    for n in 1..=2u8 {
        let host = lab.add_host(n).expect("host");
        let mut f = host.start_flanneld(&wrapper, &[]).expect("start");
        if let Err(e) = f.wait_ready(Duration::from_secs(60)) {
            panic!("h{n} not ready: {e:#}");
        }
        hosts.push(host);
        flanneld.push(f);
    }
    let logs = |f: &[Flanneld]| log_tails(f, 40);
    let h1 = &hosts[0];

    // charon starts the tunnel when flanneld loads it: wait until status calls the peer ok.
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(90), Duration::from_secs(1), || {
        let (out, _) = ctl(h1, "status", true, &[]);
        last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok(last["peers"][0]["ok"] == true)
    });
    assert!(ok, "h1's peer matches: {last:#}{}", logs(&flanneld));
    let entries = last["peers"][0]["entries"].as_array().expect("entries");
    let wants: Vec<&str> = entries.iter().filter_map(|e| e["want"].as_str()).collect();
    assert_eq!(entries.len(), 4, "three policies and the SAs: {last:#}");
    assert!(entries.iter().all(|e| e["kind"] == "xfrm"), "{last:#}");
    for dir in ["dir out", "dir in", "dir fwd"] {
        assert!(wants.iter().any(|w| w.contains(dir)), "{dir}: {wants:?}");
    }
    assert!(
        wants
            .iter()
            .any(|w| w.contains("SAs 192.0.2.1 ⇄ 192.0.2.2")),
        "{wants:?}"
    );

    let (out, text) = ctl(h1, "doctor", false, &[]);
    assert!(out.status.success(), "a healthy ipsec node: {text}");
    assert!(text.contains("healthy: no problem found"), "{text}");

    // flanneld stopped, the fwd policy from h2's subnet deleted by hand (if flanneld left it).
    flanneld[0].stop().expect("stop h1");
    let s1 = h1.subnet().expect("s1").cidr();
    let s2 = hosts[1].subnet().expect("s2").cidr();
    let _ = h1.exec(&[
        "ip", "xfrm", "policy", "delete", "src", &s2, "dst", &s1, "dir", "fwd",
    ]);
    let (out, text) = ctl(h1, "doctor", false, &[]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("flanneld is not running"), "{text}");
    assert!(
        text.contains("[xfrm] The xfrm entry for peer 192.0.2.2"),
        "{text}"
    );
    assert!(
        text.contains(&format!("src {s2} dst {s1} dir fwd")),
        "{text}"
    );

    flanneld[1].stop().expect("stop h2");
}
