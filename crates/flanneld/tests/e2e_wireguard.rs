//! The wireguard backend against a kernel with the wireguard module (Debian's, in the qemu
//! guest): a flannel-rs node on the kernel implementation, one on the userspace
//! implementation, and a third node set up by hand
//! the way Go Flannel sets one up (its own `flannel-wg` and key, peers by `wg set`, its lease
//! JSON written to etcd without `Port`, as Go writes it) reach each other's pods; `wg show`
//! lists Flannel's endpoints and allowed IPs; the lease's key is the device's; the underlay
//! carries no IPv4 but UDP 51820 (and etcd), and no pod address or ICMP in the clear (IPv6
//! link-local housekeeping of the hosts' own interfaces aside); a restart keeps the key and loses at most one
//! ping in a hundred; a deleted device comes back with its peers; a deleted lease's peer goes
//! within 10 s.
//!
//! On this machine's kernel (no module) two flannel-rs nodes on the userspace implementation
//! reach each other's pods over the same protocol, and nothing travels in the clear.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{log_tails, wait_until, Etcd, Flanneld, Host, Lab, Pod};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const READY: Duration = Duration::from_secs(60);
const WG: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard"}}"#;
/// The hand-made node's subnet.
const GO_SUBNET: &str = "198.18.200.0/24";
const GO_LEASE_KEY: &str = "/coreos.com/network/subnets/198.18.200.0-24";

/// `flanneld` with this host's own key file (all hosts share this machine's /run).
fn wrapper(host: &Host) -> PathBuf {
    let path = host.dir().join("flanneld-wg");
    let key = host.dir().join("wgkey");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nWIREGUARD_KEY_FILE={} exec {BIN} \"$@\"\n",
            key.display()
        ),
    )
    .expect("wrapper");
    std::process::Command::new("chmod")
        .args(["0755", &path.display().to_string()])
        .status()
        .expect("chmod");
    path
}

fn lease_value(etcd: &Etcd, host: &Host) -> serde_json::Value {
    let ip = host.addr().to_string();
    let (_, v) = etcd
        .leases()
        .expect("leases")
        .into_iter()
        .find(|(_, v)| v.contains(&format!("\"PublicIP\":\"{ip}\"")))
        .expect("the host's lease");
    serde_json::from_str(&v).expect("lease json")
}

fn lease_key(etcd: &Etcd, host: &Host) -> String {
    lease_value(etcd, host)["BackendData"]["PublicKey"]
        .as_str()
        .expect("PublicKey")
        .to_owned()
}

/// `wg show flannel-wg dump` peers: key → (endpoint, allowed-ips).
fn wg_peers(host: &Host) -> Vec<(String, String, String)> {
    let out = host
        .exec(&["wg", "show", "flannel-wg", "dump"])
        .unwrap_or_default();
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 4).then(|| (f[0].to_owned(), f[2].to_owned(), f[3].to_owned()))
        })
        .collect()
}

fn pings(from: &Pod, to: &Pod) -> bool {
    from.ping(to.addr(), 2, Duration::from_millis(300))
        .map(|r| r.received > 0)
        .unwrap_or(false)
}

/// Packets `tcpdump` sees on the host's `eth0` matching `filter` while `traffic` runs, and
/// their one-line summaries.
fn captured(host: &Host, filter: &str, traffic: impl FnOnce()) -> (u64, String) {
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", host.ns(), "timeout", "-s", "INT", "20"])
        .args(["tcpdump", "-i", "eth0", "-n", "-p", "-l", filter])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_secs(3));
    traffic();
    std::thread::sleep(Duration::from_secs(1));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("tcpdump output");
    let err = String::from_utf8_lossy(&out.stderr);
    let n = err
        .lines()
        .find_map(|l| l.strip_suffix(" packets captured"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tcpdump summary: {err}"));
    (n, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The node Go Flannel would have made: device, key, address, route, lease, peers.
fn go_style_node(lab: &Lab, etcd: &Etcd, peers: &[&Host]) -> (Host, String) {
    let h3 = lab.add_host(3).expect("host 3");
    let key_file = h3.dir().join("wgkey");
    let private = h3.exec(&["wg", "genkey"]).expect("genkey");
    std::fs::write(&key_file, private.trim()).expect("key");
    let key_path = key_file.display().to_string();
    let public = h3
        .exec(&["sh", "-c", &format!("wg pubkey < {key_path}")])
        .expect("pubkey")
        .trim()
        .to_owned();
    for cmd in [
        vec![
            "ip",
            "link",
            "add",
            "flannel-wg",
            "mtu",
            "1420",
            "type",
            "wireguard",
        ],
        vec![
            "wg",
            "set",
            "flannel-wg",
            "private-key",
            &key_path,
            "listen-port",
            "51820",
        ],
        vec!["ip", "addr", "add", "198.18.200.0/32", "dev", "flannel-wg"],
        vec!["ip", "link", "set", "flannel-wg", "up"],
        vec![
            "ip",
            "route",
            "add",
            "198.18.0.0/16",
            "dev",
            "flannel-wg",
            "scope",
            "link",
        ],
    ] {
        h3.exec(&cmd).expect("setting up the Go-style node");
    }
    // As Go Flannel writes it: PublicKey only.
    let lease = format!(
        r#"{{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"wireguard","BackendData":{{"PublicKey":"{public}"}}}}"#
    );
    etcd.etcdctl(&["put", GO_LEASE_KEY, &lease]).expect("lease");
    // One read of the leases (etcdctl is slow under emulation): each peer's subnet and key.
    let leases = etcd.leases().expect("leases");
    for p in peers {
        let needle = format!("\"PublicIP\":\"{}\"", p.addr());
        let (k, v) = leases
            .iter()
            .find(|(_, v)| v.contains(&needle))
            .expect("the peer's lease");
        let subnet = k.rsplit('/').next().unwrap_or_default().replace('-', "/");
        let v: serde_json::Value = serde_json::from_str(v).expect("lease json");
        let key = v["BackendData"]["PublicKey"].as_str().expect("PublicKey");
        let endpoint = format!("{}:51820", p.addr());
        h3.exec(&[
            "wg",
            "set",
            "flannel-wg",
            "peer",
            key,
            "endpoint",
            &endpoint,
            "allowed-ips",
            &subnet,
        ])
        .expect("wg set peer");
    }
    std::fs::write(
        h3.subnet_file(),
        "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.200.1/24\nFLANNEL_MTU=1420\nFLANNEL_IPMASQ=false\n",
    )
    .expect("subnet file");
    (h3, public)
}

#[test]
fn wireguard_kernel_userspace_and_go_style_nodes_reach_each_other() {
    if !flannel_testkit::vm::in_debian_kernel(
        "wireguard_kernel_userspace_and_go_style_nodes_reach_each_other",
    ) {
        return;
    }
    let lab = Lab::new("wg").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(WG).expect("config");
    let mut hosts = Vec::new();
    let mut flanneld: Vec<Flanneld> = Vec::new();
    // h1 on the kernel module, h2 in userspace: one protocol.
    for (n, implementation) in [(1u8, "kernel"), (2, "userspace")] {
        let host = lab.add_host(n).expect("host");
        let arg = format!("--wireguard-implementation={implementation}");
        let mut f = host.start_flanneld(wrapper(&host), &[&arg]).expect("start");
        if let Err(e) = f.wait_ready(READY) {
            panic!("h{n} not ready: {e:#}\n{}", f.log_tail(60));
        }
        hosts.push(host);
        flanneld.push(f);
    }
    let logs = |f: &[Flanneld]| log_tails(f, 60);
    let (h3, go_key) = go_style_node(&lab, &etcd, &[&hosts[0], &hosts[1]]);
    let p1 = hosts[0].add_pod(1).expect("pod 1");
    let p2 = hosts[1].add_pod(1).expect("pod 2");
    let p3 = h3.add_pod(1).expect("pod 3");

    for (a, b) in [
        (&p1, &p2),
        (&p2, &p1),
        (&p1, &p3),
        (&p3, &p1),
        (&p2, &p3),
        (&p3, &p2),
    ] {
        assert!(
            wait_until(Duration::from_secs(30), Duration::from_millis(500), || Ok(
                pings(a, b)
            )),
            "{} cannot reach {}\n{}",
            a.addr(),
            b.addr(),
            logs(&flanneld)
        );
    }

    // wg show: Flannel's endpoint (PublicIP:51820; the Go node published no Port) and the
    // peer's subnet as allowed-ips.
    let h1_key = lease_key(&etcd, &hosts[0]);
    let dev_key = hosts[0]
        .exec(&["wg", "show", "flannel-wg", "public-key"])
        .expect("wg show");
    assert_eq!(
        dev_key.trim(),
        h1_key,
        "the lease's PublicKey is the device's"
    );
    let peers = wg_peers(&hosts[0]);
    let h2_subnet = hosts[1].subnet().expect("h2 subnet").cidr();
    assert!(
        peers.contains(&(
            lease_key(&etcd, &hosts[1]),
            "192.0.2.2:51820".into(),
            h2_subnet
        )),
        "{peers:?}"
    );
    assert!(
        peers.contains(&(go_key.clone(), "192.0.2.3:51820".into(), GO_SUBNET.into())),
        "{peers:?}"
    );

    // Nothing but WireGuard (and etcd) on the underlay while pods talk; no ICMP in the clear.
    let clear = captured(
        &hosts[0],
        "ip and not (udp port 51820) and not (tcp port 2379)",
        || assert!(pings(&p2, &p1)),
    );
    assert_eq!(
        clear.0, 0,
        "packets other than WireGuard on the underlay:\n{}",
        clear.1
    );
    let pods = captured(&hosts[0], "net 198.18.0.0/16 or icmp", || {
        assert!(pings(&p2, &p1))
    });
    assert_eq!(pods.0, 0, "pod packets in the clear:\n{}", pods.1);
    let wg = captured(&hosts[0], "udp port 51820", || assert!(pings(&p2, &p1)));
    assert!(wg.0 >= 2, "the pings went through WireGuard: {wg:?}");

    // A restart keeps the key and the device: at most 1 of 100 pings at 33/s lost.
    let pinger = {
        let (from, to) = (p2.ns().to_owned(), p1.addr());
        std::thread::spawn(move || {
            let out = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &from, "ping", "-n", "-q", "-c", "100", "-i", "0.03",
                ])
                .arg(to.to_string())
                .output()
                .expect("ping");
            flannel_testkit::topology::parse_ping_summary(&String::from_utf8_lossy(&out.stdout))
                .expect("ping summary")
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    flanneld[0].restart().expect("restart");
    flanneld[0].wait_ready(READY).expect("ready again");
    let r = pinger.join().expect("pinger");
    assert!(
        r.sent - r.received <= 1,
        "lost {} of {} pings across a restart",
        r.sent - r.received,
        r.sent
    );
    assert_eq!(
        lease_key(&etcd, &hosts[0]),
        h1_key,
        "the key survived the restart"
    );

    // A deleted device comes back with its key and all peers.
    hosts[0]
        .exec(&["ip", "link", "del", "flannel-wg"])
        .expect("del");
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
            Ok(wg_peers(&hosts[0]).len() == 2 && pings(&p2, &p1))
        }),
        "the device did not come back with its peers: {:?}\n{}",
        wg_peers(&hosts[0]),
        logs(&flanneld)
    );

    // A deleted lease's peer disappears within 10 s.
    etcd.etcdctl(&["del", GO_LEASE_KEY]).expect("del lease");
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
            Ok(!wg_peers(&hosts[0]).iter().any(|p| p.0 == go_key))
        }),
        "the Go node's peer is still there: {:?}\n{}",
        wg_peers(&hosts[0]),
        logs(&flanneld)
    );
    eprintln!("peer gone after {:?}", start.elapsed());
    drop(flanneld);
}

#[test]
fn wireguard_userspace_nodes_reach_each_other_encrypted() {
    if !require_root("wireguard_userspace_nodes_reach_each_other_encrypted") {
        return;
    }
    let lab = Lab::new("wgu").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(WG).expect("config");
    let mut hosts = Vec::new();
    let mut flanneld: Vec<Flanneld> = Vec::new();
    for n in 1..=2u8 {
        let host = lab.add_host(n).expect("host");
        let mut f = host
            .start_flanneld(wrapper(&host), &["--wireguard-implementation=userspace"])
            .expect("start");
        if let Err(e) = f.wait_ready(READY) {
            panic!("h{n} not ready: {e:#}\n{}", f.log_tail(60));
        }
        hosts.push(host);
        flanneld.push(f);
    }
    let p1 = hosts[0].add_pod(1).expect("pod 1");
    let p2 = hosts[1].add_pod(1).expect("pod 2");
    for (a, b) in [(&p1, &p2), (&p2, &p1)] {
        assert!(
            wait_until(Duration::from_secs(30), Duration::from_millis(500), || Ok(
                pings(a, b)
            )),
            "{} cannot reach {}\n{}",
            a.addr(),
            b.addr(),
            log_tails(&flanneld, 60)
        );
    }
    // The device is a TUN device of the backend's name; the lease carries its key.
    let link = hosts[0]
        .exec(&["ip", "-d", "link", "show", "flannel-wg"])
        .expect("link");
    assert!(link.contains("tun"), "{link}");
    let key = lease_key(&etcd, &hosts[0]);
    assert_eq!(key.len(), 44, "{key}");
    let r = p1
        .ping(p2.addr(), 20, Duration::from_millis(20))
        .expect("ping");
    assert!(r.all_received(), "{r:?}\n{}", log_tails(&flanneld, 60));
    let clear = captured(
        &hosts[0],
        "ip and not (udp port 51820) and not (tcp port 2379)",
        || assert!(pings(&p2, &p1)),
    );
    assert_eq!(
        clear.0, 0,
        "packets other than WireGuard on the underlay:\n{}",
        clear.1
    );
    let pods = captured(&hosts[0], "net 198.18.0.0/16 or icmp", || {
        assert!(pings(&p2, &p1))
    });
    assert_eq!(pods.0, 0, "pod packets in the clear:\n{}", pods.1);
    let wg = captured(&hosts[0], "udp port 51820", || assert!(pings(&p2, &p1)));
    assert!(wg.0 >= 2, "the pings went through WireGuard: {wg:?}");
    // A restart keeps the key.
    flanneld[0].restart().expect("restart");
    flanneld[0].wait_ready(READY).expect("ready again");
    assert_eq!(lease_key(&etcd, &hosts[0]), key);
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(500), || Ok(
            pings(&p2, &p1)
        )),
        "no traffic after the restart\n{}",
        log_tails(&flanneld, 60)
    );
}
