//! `flannelctl status` and `doctor` in Kubernetes mode, end to end (root): two flanneld with
//! `--kube-subnet-mgr` (vxlan) in their own namespaces against the in-process fake API server
//! (served in the lab's switch namespace at 192.0.2.253, as in flanneld's e2e_kube). The real
//! flannelctl binary, run inside h1 with flanneld's own flags (and once with `FLANNELD_*`
//! variables), shows h1's lease as its node's podCIDR without an expiry, h2 as a matching
//! peer, and doctor finds the node healthy; with flanneld stopped and h2's FDB entry deleted
//! doctor names both; with a `NODE_NAME` no node has it says this node holds no lease. When
//! the API server goes away, h2's `/metrics` counts the failed node watch in
//! `flannel_registry_errors_total{op="watch"}`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result};
use flannel_testkit::kubeapi::FakeApiServer;
use flannel_testkit::netns::sh;
use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{in_netns, log_tails, wait_until, Flanneld, Host, Lab};
use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_flannelctl");
const READY: Duration = Duration::from_secs(30);
const NET_CONF: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
const API_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 253);

/// flanneld from the same target directory as flannelctl.
fn flanneld_bin() -> Option<PathBuf> {
    let bin = Path::new(CTL)
        .parent()
        .expect("target dir")
        .join("flanneld");
    if bin.is_file() {
        return Some(bin);
    }
    let msg = format!(
        "{} must be built first (`cargo build --bins`; the workspace `cargo test` does it)",
        bin.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

fn bind_in(ns: &str, addr: SocketAddr) -> Result<TcpListener> {
    in_netns(ns, move || {
        TcpListener::bind(addr).with_context(|| format!("binding {addr}"))
    })?
}

/// flanneld with `NODE_NAME` set.
fn wrapper(dir: &Path, bin: &Path, node: &str) -> Result<PathBuf> {
    let path = dir.join(format!("flanneld-{node}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nNODE_NAME={node} exec {} \"$@\"\n",
            bin.display()
        ),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// `flannelctl <cmd> <args>` inside `host` with `env` (`K=V`) set.
fn ctl(host: &Host, env: &[String], cmd: &str, args: &[String]) -> (Output, String) {
    let mut argv: Vec<&str> = vec!["env"];
    argv.extend(env.iter().map(String::as_str));
    argv.extend([CTL, cmd]);
    argv.extend(args.iter().map(String::as_str));
    let out = host.run(&argv).expect("running flannelctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn status_and_doctor_read_the_nodes_in_kube_mode() {
    if !require_root("flannelctl::status_and_doctor_read_the_nodes_in_kube_mode") {
        return;
    }
    let Some(bin) = flanneld_bin() else {
        return;
    };
    let lab = Lab::new("kctl").expect("lab");
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
    let net_conf = lab.dir().join("net-conf.json");
    std::fs::write(&net_conf, NET_CONF).expect("net-conf.json");
    let kube_args = [
        "--kube-subnet-mgr".to_owned(),
        format!("--kube-api-url={url}"),
        format!("--net-config-path={}", net_conf.display()),
    ];
    let kube_argv: Vec<&str> = kube_args.iter().map(String::as_str).collect();

    let mut hosts: Vec<Host> = Vec::new();
    let mut flanneld: Vec<Flanneld> = Vec::new();
    for n in 1..=2u8 {
        let host = lab.add_host(n).expect("host");
        let w = wrapper(lab.dir(), &bin, &format!("h{n}")).expect("wrapper");
        let mut f = host.start_flanneld(&w, &kube_argv).expect("start");
        if let Err(e) = f.wait_ready(READY) {
            panic!("h{n} not ready: {e:#}");
        }
        hosts.push(host);
        flanneld.push(f);
    }
    let logs = |f: &[Flanneld]| log_tails(f, 30);
    // h1 must hold h2's entries before status can call them ok.
    let fdb_ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(hosts[0]
            .exec(&["bridge", "fdb", "show", "dev", "flannel.1"])?
            .contains("dst 192.0.2.2"))
    });
    assert!(fdb_ok, "h1's FDB entry for h2{}", logs(&flanneld));

    let h1 = &hosts[0];
    let mut flags: Vec<String> = kube_args.to_vec();
    flags.extend([
        "--iface=eth0".to_owned(),
        format!("--subnet-file={}", h1.subnet_file().display()),
        "--healthz-ip=127.0.0.1".to_owned(),
        "--healthz-port=10299".to_owned(),
    ]);
    let node = ["NODE_NAME=h1".to_owned()];

    // status --json: the lease is h1's podCIDR, without expiry; h2 is a peer whose entries match.
    let mut json_flags = vec!["--json".to_owned()];
    json_flags.extend(flags.iter().cloned());
    let (out, text) = ctl(h1, &node, "status", &json_flags);
    assert!(out.status.success(), "{text}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(s["flanneld"], "ready", "{s:#}");
    assert!(
        s["registry"]
            .as_str()
            .is_some_and(|r| r.starts_with("kubernetes, node h1")),
        "{s:#}"
    );
    assert_eq!(s["lease"]["subnet"], "198.18.1.0/24", "{s:#}");
    assert_eq!(s["lease"]["expires"], Value::Null, "{s:#}");
    assert!(
        s["lease"]["expiry_note"]
            .as_str()
            .is_some_and(|n| n.contains("no expiry")),
        "{s:#}"
    );
    assert_eq!(s["lease"]["backend_type"], "vxlan", "{s:#}");
    let peers = s["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{s:#}");
    assert_eq!(peers[0]["subnet"], "198.18.2.0/24", "{s:#}");
    assert_eq!(peers[0]["public_ip"], "192.0.2.2", "{s:#}");
    assert_eq!(peers[0]["ok"], true, "{s:#}");
    let kinds: Vec<&str> = peers[0]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        ["route", "neigh", "fdb"].iter().all(|k| kinds.contains(k)),
        "{s:#}"
    );

    // The plain text says that there is no expiry.
    let (out, text) = ctl(h1, &node, "status", &flags);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("198.18.1.0/24  no expiry (Kubernetes: the node's podCIDR)"),
        "{text}"
    );

    // doctor, with the flags as FLANNELD_* variables this time: healthy.
    let env = [
        "NODE_NAME=h1".to_owned(),
        "FLANNELD_KUBE_SUBNET_MGR=true".to_owned(),
        format!("FLANNELD_KUBE_API_URL={url}"),
        format!("FLANNELD_NET_CONFIG_PATH={}", net_conf.display()),
        "FLANNELD_IFACE=eth0".to_owned(),
        format!("FLANNELD_SUBNET_FILE={}", h1.subnet_file().display()),
        "FLANNELD_HEALTHZ_IP=127.0.0.1".to_owned(),
        "FLANNELD_HEALTHZ_PORT=10299".to_owned(),
    ];
    let (out, text) = ctl(h1, &env, "doctor", &[]);
    assert!(out.status.success(), "doctor on a healthy node: {text}");
    assert!(text.contains("healthy: no problem found"), "{text}");

    // A NODE_NAME no node has: no lease, said plainly.
    let (out, text) = ctl(h1, &["NODE_NAME=nosuch".to_owned()], "doctor", &flags);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("This node (nosuch) holds no lease."),
        "{text}"
    );
    assert!(text.contains("no node \"nosuch\""), "{text}");

    // flanneld stopped on h1 and h2's FDB entry deleted there: doctor names both.
    flanneld[0].stop().expect("stop h1");
    let fdb = h1
        .exec(&["bridge", "fdb", "show", "dev", "flannel.1"])
        .expect("fdb");
    let entry = fdb
        .lines()
        .find(|l| l.contains("dst 192.0.2.2"))
        .unwrap_or_else(|| panic!("h2's FDB entry: {fdb}"));
    let mac = entry.split_whitespace().next().expect("mac");
    h1.exec(&[
        "bridge",
        "fdb",
        "del",
        mac,
        "dev",
        "flannel.1",
        "dst",
        "192.0.2.2",
    ])
    .expect("fdb del");
    let (out, text) = ctl(h1, &node, "doctor", &flags);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("flanneld is not running"), "{text}");
    assert!(
        text.contains("[fdb] The fdb entry for peer 192.0.2.2 (198.18.2.0/24) is missing."),
        "{text}"
    );

    // The API server goes away: h2 counts the failed watch.
    drop(api);
    let counted = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let (_, body) = hosts[1].http_get(10299, "/metrics")?;
        Ok(body.lines().any(|l| {
            l.starts_with("flannel_registry_errors_total{op=\"watch\"}")
                && l.split_whitespace()
                    .last()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)
        }))
    });
    assert!(
        counted,
        "flannel_registry_errors_total{{op=\"watch\"}} on h2{}",
        logs(&flanneld)
    );
    for f in &mut flanneld {
        f.stop().expect("stop");
    }
    drop(rt);
}
