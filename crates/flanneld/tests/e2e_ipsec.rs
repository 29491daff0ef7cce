//! The ipsec backend with strongSwan's charon and the kernel's XFRM, inside Debian's kernel
//! (this machine's has no xfrm): two hosts, each flanneld with a private `/run` (so each
//! charon has its own VICI socket and pid file, as on separate machines). Pods reach each
//! other; the switch between the hosts sees ESP and no ICMP; FLANNEL_MTU is 1423 and the lease
//! is Flannel's; a hand-deleted policy returns and a stale one is removed; charon killed is
//! started again and traffic resumes; a gone peer's policies and SAs are removed.
//!
//! A short PSK is refused with Flannel's message, on this machine's kernel (no xfrm needed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{log_tails, wait_until, Flanneld, Host, Lab, Pod};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const PSK: &str = "flannel-rs-e2e-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz-0123456789";

fn config(psk: &str) -> String {
    format!(r#"{{"Network":"198.18.0.0/16","Backend":{{"Type":"ipsec","PSK":"{psk}"}}}}"#)
}

/// A wrapper that runs flanneld in a mount namespace of its own with a fresh tmpfs on
/// `/run` (charon's `/var/run/charon.vici` and `charon.pid` live there). `exec` all the way,
/// so the pid the lab tracks is flanneld's.
fn private_run_wrapper(dir: &Path) -> PathBuf {
    let path = dir.join("flanneld-private-run.sh");
    let script = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private /bin/sh -c \
         'mount -t tmpfs -o mode=0755 tmpfs /run && exec \"$0\" \"$@\"' {BIN} \"$@\"\n"
    );
    std::fs::write(&path, script).expect("write wrapper");
    std::process::Command::new("chmod")
        .args(["755"])
        .arg(&path)
        .status()
        .expect("chmod");
    path
}

/// Pids of processes named `comm` in `host`'s network namespace.
fn pids(host: &Host, comm: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", host.ns()])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .map(str::to_owned)
        .collect()
}

/// `(icmp, esp)` packets the switch's bridge forwarded between the hosts.
fn wire_counts(lab: &Lab) -> (u64, u64) {
    let text = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.switch_ns(),
            "nft",
            "list",
            "table",
            "bridge",
            "wire",
        ])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&text.stdout);
    let count = |proto: &str| -> u64 {
        text.lines()
            .find(|l| l.contains(&format!("ip protocol {proto}")))
            .and_then(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let i = w.iter().position(|x| *x == "packets")?;
                w.get(i + 1)?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no {proto} counter in: {text}"))
    };
    (count("icmp"), count("esp"))
}

fn count_wire(lab: &Lab) {
    let ns = lab.switch_ns();
    for rule in [
        "add table bridge wire",
        "add chain bridge wire crossing { type filter hook forward priority 0; }",
        "add rule bridge wire crossing ip protocol icmp counter",
        "add rule bridge wire crossing ip protocol esp counter",
    ] {
        let mut args = vec!["netns", "exec", ns, "nft"];
        args.extend(rule.split(' '));
        let st = std::process::Command::new("ip")
            .args(&args)
            .status()
            .expect("nft");
        assert!(st.success(), "nft {rule}");
    }
}

fn xfrm(host: &Host, what: &str) -> String {
    host.exec(&["ip", "xfrm", what]).expect("ip xfrm")
}

/// `ip xfrm policy` as one line per policy, whitespace collapsed.
fn policy_lines(host: &Host) -> Vec<String> {
    let text = xfrm(host, "policy");
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match out.last_mut() {
            Some(last) if line.starts_with(char::is_whitespace) => {
                last.push(' ');
                last.push_str(&words);
            }
            _ => out.push(words),
        }
    }
    out
}

/// Whether `host` has the policy `src dst dir` with Flannel's template `tsrc` → `tdst`.
fn has_policy(host: &Host, src: &str, dst: &str, dir: &str, tsrc: &str, tdst: &str) -> bool {
    let head = format!("src {src} dst {dst} dir {dir} ");
    let tmpl = format!("tmpl src {tsrc} dst {tdst} proto esp reqid 11 mode tunnel");
    policy_lines(host)
        .iter()
        .any(|p| p.starts_with(&head) && p.contains(&tmpl))
}

fn pings(from: &Pod, to: &Pod) -> bool {
    from.ping(to.addr(), 1, Duration::from_millis(500))
        .is_ok_and(|r| r.all_received())
}

#[test]
fn ipsec_pods_reach_each_other_over_esp_only() {
    if !flannel_testkit::vm::in_debian_kernel("ipsec_pods_reach_each_other_over_esp_only") {
        return;
    }
    let started = std::time::Instant::now();
    let stage = |what: &str| eprintln!("ipsec e2e: {what} after {:.1?}", started.elapsed());
    let lab = Lab::new("ipsec").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(&config(PSK)).expect("config");
    let wrapper = private_run_wrapper(lab.dir());
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
    stage("both flanneld ready");
    let logs = |f: &[Flanneld]| log_tails(f, 60);
    let (h1, h2) = (&hosts[0], &hosts[1]);
    let (s1, s2) = (h1.subnet().expect("s1"), h2.subnet().expect("s2"));
    assert_eq!((s1.mtu, s2.mtu), (1423, 1423), "FLANNEL_MTU = 1500 - 77");
    for (key, value) in etcd.leases().expect("leases") {
        assert!(
            value.contains(r#""BackendType":"ipsec""#) && !value.contains("BackendData"),
            "{key}: {value}"
        );
    }
    assert!(
        !Path::new("/run/charon.vici").exists(),
        "charon's socket is in each host's private /run, not the machine's"
    );

    // Without the policies the pods' traffic would cross in the clear, host-gw style.
    h1.exec(&[
        "ip",
        "route",
        "add",
        &s2.cidr(),
        "via",
        &h2.addr().to_string(),
    ])
    .expect("route");
    h2.exec(&[
        "ip",
        "route",
        "add",
        &s1.cidr(),
        "via",
        &h1.addr().to_string(),
    ])
    .expect("route");
    let p1 = h1.add_pod(1).expect("pod 1");
    let p2 = h2.add_pod(1).expect("pod 2");
    count_wire(&lab);

    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(500), || Ok(
            pings(&p1, &p2)
        )),
        "the pods never reached each other\n{}\npolicies:\n{}\nstates:\n{}",
        logs(&flanneld),
        xfrm(h1, "policy"),
        xfrm(h1, "state")
    );
    stage("first ping through the tunnel");
    for f in &flanneld {
        for line in f
            .log()
            .lines()
            .filter(|l| l.contains("Charon daemon started") || l.contains("Loaded connection"))
        {
            eprintln!("ipsec e2e: {}: {line}", f.host().ns());
        }
    }
    for (a, b) in [(&p1, &p2), (&p2, &p1)] {
        let r = a
            .ping(b.addr(), 5, Duration::from_millis(200))
            .expect("ping");
        assert!(r.all_received(), "{r:?}\n{}", logs(&flanneld));
    }
    let (icmp, esp) = wire_counts(&lab);
    assert_eq!(icmp, 0, "ICMP crossed the underlay in the clear");
    assert!(esp >= 20, "ESP packets on the underlay: {esp}");

    let (a, b) = (s1.cidr(), s2.cidr());
    for (src, dst, dir, tsrc, tdst) in [
        (&a, &b, "out", "192.0.2.1", "192.0.2.2"),
        (&b, &a, "in", "192.0.2.2", "192.0.2.1"),
        (&b, &a, "fwd", "192.0.2.2", "192.0.2.1"),
    ] {
        assert!(
            has_policy(h1, src, dst, dir, tsrc, tdst),
            "no {dir} policy {src} -> {dst} in:\n{}",
            xfrm(h1, "policy")
        );
    }
    assert!(xfrm(h1, "state").contains("reqid 11 mode tunnel"));

    stage("pings and policies checked");
    // Drift: a deleted policy returns; a stale reqid-11 policy (a previous run's) goes.
    h1.exec(&[
        "ip", "xfrm", "policy", "delete", "src", &a, "dst", &b, "dir", "out",
    ])
    .expect("delete");
    h1.exec(&[
        "ip",
        "xfrm",
        "policy",
        "add",
        "src",
        "198.18.250.0/24",
        "dst",
        &a,
        "dir",
        "in",
        "tmpl",
        "src",
        "192.0.2.99",
        "dst",
        "192.0.2.1",
        "proto",
        "esp",
        "reqid",
        "11",
        "mode",
        "tunnel",
    ])
    .expect("stale");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
            Ok(has_policy(h1, &a, &b, "out", "192.0.2.1", "192.0.2.2")
                && !xfrm(h1, "policy").contains("198.18.250.0"))
        }),
        "drift not repaired:\n{}\n{}",
        xfrm(h1, "policy"),
        logs(&flanneld)
    );

    stage("drift repaired");
    // charon dies: flanneld starts it again and loads everything into it anew.
    let charon = pids(h1, "charon");
    assert_eq!(charon.len(), 1, "one charon in h1: {charon:?}");
    h1.exec(&["kill", "-9", &charon[0]]).expect("kill charon");
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(500), || Ok(
            pids(h1, "charon").iter().any(|p| *p != charon[0]) && pings(&p1, &p2)
        )),
        "no traffic after charon was killed\n{}",
        logs(&flanneld)
    );
    assert!(flanneld[0]
        .log()
        .contains("charon exited; starting it again"));
    // The kernel's SAs outlive charon, so traffic alone does not show the new charon has
    // the connection: flanneld loads it anew (a second "Loaded connection" for h2).
    let loaded = format!("Loaded connection: 192.0.2.1-{a}-{b}-192.0.2.2");
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || Ok(
            flanneld[0].log().matches(&loaded).count() >= 2
        )),
        "the restarted charon never got h2's connection again:\n{}",
        logs(&flanneld)
    );

    stage("traffic after charon's restart");
    // A gone peer: h2's flanneld and charon die at once (no IKE DELETE), its lease goes.
    let mut doomed = pids(h2, "charon");
    doomed.extend(pids(h2, "flanneld"));
    assert_eq!(doomed.len(), 2, "h2's charon and flanneld: {doomed:?}");
    let mut kill = vec!["kill", "-9"];
    kill.extend(doomed.iter().map(String::as_str));
    h2.exec(&kill).expect("kill h2");
    let key = format!(
        "/coreos.com/network/subnets/{}-{}",
        s2.subnet, s2.prefix_len
    );
    etcd.etcdctl(&["del", &key]).expect("delete h2's lease");
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
            let (p, s) = (xfrm(h1, "policy"), xfrm(h1, "state"));
            Ok(!p.contains("192.0.2.2") && !s.contains("192.0.2.2"))
        }),
        "a gone peer's policies or SAs stayed:\n{}\n{}\n{}",
        xfrm(h1, "policy"),
        xfrm(h1, "state"),
        logs(&flanneld)
    );
    // charon may drop the SAs while it unloads the connection, before flanneld logs it.
    let unloaded = loaded.replace("Loaded", "Unloaded");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(200), || Ok(
            flanneld[0].log().contains(&unloaded)
        )),
        "flanneld never unloaded the gone peer's connection:\n{}",
        logs(&flanneld)
    );
    stage("gone peer cleaned up");
    flanneld[0].stop().expect("stop h1");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(200), || Ok(
            pids(h1, "charon").is_empty()
        )),
        "charon outlived flanneld"
    );
}

#[test]
fn ipsec_refuses_a_short_psk_with_flannels_message() {
    if !require_root("ipsec_refuses_a_short_psk_with_flannels_message") {
        return;
    }
    let lab = Lab::new("ipsec-psk").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(&config(&PSK[..95])).expect("config");
    let host = lab.add_host(1).expect("host");
    let f = host.start_flanneld(BIN, &[]).expect("start");
    // flanneld waits for a usable config (docs/differences.md), saying why with Flannel's text.
    let refused = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(f.log().contains("config error, password is too short"))
    });
    assert!(
        refused,
        "a 95-character PSK was not refused\n{}",
        f.log_tail(20)
    );
    assert!(!host.subnet_file().exists(), "no subnet.env");
    assert!(etcd.leases().expect("leases").is_empty(), "no lease taken");
}
