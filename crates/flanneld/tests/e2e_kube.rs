//! Kubernetes mode end to end: two flanneld processes with `--kube-subnet-mgr` (vxlan), in
//! their own namespaces, against the in-process fake API server served inside the lab's
//! switch namespace (so both hosts reach it at 192.0.2.253). Checks: each host's lease is its
//! node's podCIDR (`subnet.env`), the annotations and the NetworkUnavailable condition are
//! written, a VTEP MAC stored in the node's `backend-data` annotation (by an earlier flannel)
//! is reused for `flannel.1`, pods ping each other both ways, and a deleted node's route goes.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use flannel_testkit::kubeapi::FakeApiServer;
use flannel_testkit::netns::sh;
use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{in_netns, log_tails, wait_until, Flanneld, Host, Lab, Pod};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const READY: Duration = Duration::from_secs(30);
const NET_CONF: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
/// Where the fake API server listens, on the switch's bridge.
const API_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 253);
/// A VTEP MAC "an earlier flannel" left in h1's backend-data annotation.
const STORED_MAC: &str = "0a:0b:0c:0d:0e:01";

fn a(suffix: &str) -> String {
    format!("flannel.alpha.coreos.com/{suffix}")
}

/// A TCP listener bound inside namespace `ns`.
fn bind_in(ns: &str, addr: SocketAddr) -> Result<TcpListener> {
    in_netns(ns, move || {
        TcpListener::bind(addr).with_context(|| format!("binding {addr}"))
    })?
}

/// flanneld with `NODE_NAME` set (the lab passes its own environment on to every host).
fn wrapper(dir: &Path, node: &str) -> Result<PathBuf> {
    let path = dir.join(format!("flanneld-{node}"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\nNODE_NAME={node} exec {BIN} \"$@\"\n"),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

fn logs(flanneld: &[Flanneld]) -> String {
    log_tails(flanneld, 40)
}

fn pings(from: &Pod, to: &Pod, what: &str, flanneld: &[Flanneld]) {
    let first = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(from
            .ping(to.addr(), 1, Duration::from_millis(200))?
            .all_received())
    });
    assert!(first, "{what} unreachable{}", logs(flanneld));
    let r = from
        .ping(to.addr(), 5, Duration::from_millis(50))
        .expect("ping");
    assert!(r.all_received(), "{what}: {r:?}{}", logs(flanneld));
}

#[test]
fn kube_mode_vxlan_pods_reach_each_other() {
    if !require_root("kube_mode_vxlan_pods_reach_each_other") {
        return;
    }
    let lab = Lab::new("kube").expect("lab");
    let sw = lab.switch_ns().to_owned();
    sh(
        "ip",
        &["-n", &sw, "addr", "add", "192.0.2.253/24", "dev", "br0"],
    )
    .expect("bridge addr");
    sh("ip", &["-n", &sw, "link", "set", "br0", "up"]).expect("bridge up");
    let listener = bind_in(&sw, SocketAddr::from((API_IP, 0))).expect("listener");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let api = rt.block_on(FakeApiServer::from_listener(listener));
    let url = format!("http://{}", api.addr());

    api.add_node("h1", &["198.18.1.0/24"]);
    api.add_node("h2", &["198.18.2.0/24"]);
    api.set_annotation(
        "h1",
        &a("backend-data"),
        Some(&format!(r#"{{"VNI":1,"VtepMAC":"{STORED_MAC}"}}"#)),
    );
    let net_conf = lab.dir().join("net-conf.json");
    std::fs::write(&net_conf, NET_CONF).expect("net-conf.json");
    let args = [
        "--kube-subnet-mgr".to_owned(),
        format!("--kube-api-url={url}"),
        format!("--net-config-path={}", net_conf.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut hosts: Vec<Host> = Vec::new();
    let mut flanneld: Vec<Flanneld> = Vec::new();
    for n in 1..=2u8 {
        let host = lab.add_host(n).expect("host");
        let bin = wrapper(lab.dir(), &format!("h{n}")).expect("wrapper");
        let mut f = host.start_flanneld(&bin, &args).expect("start");
        if let Err(e) = f.wait_ready(READY) {
            panic!("h{n} not ready: {e:#}");
        }
        hosts.push(host);
        flanneld.push(f);
    }

    // The lease is the node's podCIDR.
    for (n, host) in (1u8..).zip(&hosts) {
        let s = host.subnet().expect("subnet.env");
        assert_eq!(s.subnet, Ipv4Addr::new(198, 18, n, 0), "{}", s.raw);
        assert!(
            s.raw.contains(&format!("FLANNEL_SUBNET=198.18.{n}.1/24\n")),
            "{}",
            s.raw
        );
        assert_eq!(s.prefix_len, 24);
        assert_eq!(s.network.as_deref(), Some("198.18.0.0/16"));
    }

    // Annotations as Flannel writes them; h1 kept its stored MAC, h2 got a derived one.
    for (n, host) in (1u8..).zip(&hosts) {
        let node = api.node(&format!("h{n}")).expect("node");
        let ann = &node["metadata"]["annotations"];
        assert_eq!(ann[a("kube-subnet-manager")], "true");
        assert_eq!(ann[a("backend-type")], "vxlan");
        assert_eq!(ann[a("public-ip")], format!("192.0.2.{n}"));
        let data: serde_json::Value =
            serde_json::from_str(ann[a("backend-data")].as_str().expect("backend-data"))
                .expect("backend-data JSON");
        assert_eq!(data["VNI"], 1);
        let mac = data["VtepMAC"].as_str().expect("VtepMAC").to_owned();
        if n == 1 {
            assert_eq!(mac, STORED_MAC, "the stored MAC is reused");
        }
        let link = host
            .exec(&["ip", "link", "show", "flannel.1"])
            .expect("flannel.1");
        assert!(link.contains(&format!("link/ether {mac}")), "{link}");
        let unavailable = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let node = api.node(&format!("h{n}")).context("node")?;
            Ok(node["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "NetworkUnavailable"
                        && c["status"] == "False"
                        && c["reason"] == "FlannelIsUp"
                })
            }))
        });
        assert!(
            unavailable,
            "NetworkUnavailable=False on h{n}{}",
            logs(&flanneld)
        );
    }
    // Only the status subresource was patched.
    let patches: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH"))
        .collect();
    assert!(
        patches
            .iter()
            .all(|p| p == "PATCH /api/v1/nodes/h1/status" || p == "PATCH /api/v1/nodes/h2/status"),
        "{patches:?}"
    );

    // h2 reaches h1's VTEP at the stored MAC.
    let fdb_ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(hosts[1]
            .exec(&["bridge", "fdb", "show", "dev", "flannel.1"])?
            .contains(&format!("{STORED_MAC} dst 192.0.2.1")))
    });
    assert!(fdb_ok, "h2's FDB entry for h1{}", logs(&flanneld));

    let p1 = hosts[0].add_pod(1).expect("pod 1");
    let p2 = hosts[1].add_pod(1).expect("pod 2");
    pings(&p1, &p2, "h1 → h2", &flanneld);
    pings(&p2, &p1, "h2 → h1", &flanneld);

    // Node h2 deleted: h1 drops its route.
    api.delete_node("h2");
    let gone = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(!hosts[0]
            .exec(&["ip", "route", "show", "198.18.2.0/24"])?
            .contains("flannel.1"))
    });
    assert!(
        gone,
        "h1 removes the route of the deleted node{}",
        logs(&flanneld)
    );

    for f in &mut flanneld {
        let status = f.stop().expect("stop");
        assert!(
            status.is_some_and(|s| s.success()),
            "clean exit: {status:?}{}",
            logs(std::slice::from_ref(&*f))
        );
    }
    drop(api);
}
