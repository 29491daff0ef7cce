//! IPv6-only clusters end to end (`"EnableIPv4":false,"EnableIPv6":true`): real flanneld
//! processes on hosts whose `eth0` has only an IPv6 address (2001:db8:1::<n>/64, etcd at
//! `[2001:db8:1::fe]:2379`, see `flannel_testkit::topology`), pod network 2001:db8:100::/48.
//!
//! What Go Flannel does and these tests hold flanneld to: lease keys `0.0.0.0-0&<v6>-<len>`
//! (`MakeSubnetKey` of the zero `IP4Net`), lease values with `"PublicIP":"0.0.0.0"` and no
//! `BackendData`, a `subnet.env` with only the IPv6 pair, `flannel-v6.1` and no `flannel.1`,
//! IPv6 routes only, masquerading in ip6tables only; pods reach each other over IPv6.

use std::time::Duration;

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{wait_until, Etcd, Flanneld, Host, HostSubnet6, Lab, Pod};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const VXLAN_V6: &str = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}"#;
const HOST_GW_V6: &str = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"host-gw"}}"#;
const READY: Duration = Duration::from_secs(30);
const CONNECT: Duration = Duration::from_secs(10);
const LEASES: &str = "/coreos.com/network/subnets/";

/// Fields drop in order: processes first, the lab (namespaces) last.
struct Cluster {
    flanneld: Vec<Flanneld>,
    hosts: Vec<Host>,
    etcd: Etcd,
    _lab: Lab,
}

impl Cluster {
    fn new(name: &str, config: &str, n: u8, args: &[&str]) -> Cluster {
        let lab = Lab::new(name).expect("creating the lab");
        let etcd = lab.start_etcd().expect("starting etcd");
        etcd.put_config(config).expect("writing the network config");
        let mut c = Cluster {
            flanneld: Vec::new(),
            hosts: Vec::new(),
            etcd,
            _lab: lab,
        };
        for i in 1..=n {
            let host = c._lab.add_host_v6_only(i).expect("adding a host");
            let f = host.start_flanneld(BIN, args).expect("starting flanneld");
            c.hosts.push(host);
            c.flanneld.push(f);
        }
        for i in 0..c.flanneld.len() {
            let r = c.flanneld[i].wait_ready(READY);
            c.ok(r, &format!("flanneld on h{} ready", i + 1));
        }
        c
    }

    fn h(&self, n: usize) -> &Host {
        &self.hosts[n - 1]
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for f in &self.flanneld {
            out.push_str(&format!(
                "\n----- flanneld log of {} (last 40 lines) -----\n{}\n",
                f.host().ns(),
                f.log_tail(40)
            ));
        }
        out
    }

    fn ok<T>(&self, r: anyhow::Result<T>, what: &str) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e:#}{}", self.logs()),
        }
    }

    fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            panic!("{}{}", msg(), self.logs());
        }
    }

    fn sh(&self, n: usize, args: &[&str]) -> String {
        let r = self.h(n).exec(args);
        self.ok(r, &format!("{args:?} on h{n}"))
    }

    /// Host n's `subnet.env`, raw and parsed.
    fn subnet(&self, n: usize) -> (String, HostSubnet6) {
        let path = self.h(n).subnet_file();
        let raw = self.ok(
            std::fs::read_to_string(&path).map_err(Into::into),
            &format!("reading {}", path.display()),
        );
        let (v6, _) = self.ok(HostSubnet6::parse_v6_only(&raw), "parsing subnet.env");
        (raw, v6)
    }

    fn pod(&self, n: usize, k: u8) -> Pod {
        let r = self.h(n).add_pod_v6_only(k);
        self.ok(r, &format!("adding pod {k} on h{n}"))
    }

    fn lease_of(&self, n: usize) -> Option<String> {
        let (_, v6) = self.subnet(n);
        let key = format!("{LEASES}0.0.0.0-0&{}-{}", v6.subnet, v6.prefix_len);
        let leases = self.ok(self.etcd.leases(), "listing leases");
        leases.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn leases(&self) -> Vec<(String, String)> {
        self.ok(self.etcd.leases(), "listing leases")
    }

    /// Every pod reaches every other over IPv6 (first connectivity waited for, then no loss).
    fn all_pairs_ping(&self, pods: &[Pod]) {
        for a in pods {
            for b in pods {
                if a.ns() == b.ns() {
                    continue;
                }
                let to = b.addr6().expect("v6 pod");
                let ok = wait_until(CONNECT, Duration::from_millis(100), || {
                    Ok(a.ping(to, 1, Duration::from_millis(200))?.all_received())
                });
                self.check(ok, || {
                    format!(
                        "{} could not reach {to} within {CONNECT:?}; routes on its host:\n{}",
                        a.ns(),
                        self.sh_ns(a.host_ns(), &["ip", "-6", "route"])
                    )
                });
                let r = self.ok(a.ping(to, 3, Duration::from_millis(100)), "ping");
                self.check(r.sent == 3 && r.received == 3, || {
                    format!("ping {to} from {}: {r:?}", a.ns())
                });
            }
        }
    }

    fn sh_ns(&self, ns: &str, args: &[&str]) -> String {
        let host = self.hosts.iter().find(|h| h.ns() == ns).expect("a host");
        host.exec(args).unwrap_or_else(|e| format!("{e:#}"))
    }
}

/// The MAC address of `dev` on a host.
fn mac_of(host: &Host, dev: &str) -> anyhow::Result<String> {
    let out = host.exec(&["ip", "-o", "link", "show", dev])?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no MAC in {out:?}"))
}

/// No IPv4 state from flanneld: no IPv4 route into the pod network or via a flannel device, no
/// IPv4 blackhole, no `flannel.1`, no IPv4 masquerade chain.
fn no_ipv4_state(c: &Cluster, n: usize) {
    let v4_routes = c.sh(n, &["ip", "-4", "route", "show", "table", "all"]);
    c.check(
        !v4_routes.contains("flannel")
            && !v4_routes.contains("blackhole")
            && !v4_routes
                .lines()
                .any(|l| l.starts_with("default") || l.starts_with("0.0.0.0")),
        || format!("h{n} has IPv4 routes from flanneld:\n{v4_routes}"),
    );
    let dev = c.h(n).run(&["ip", "link", "show", "flannel.1"]);
    let dev = c.ok(dev, "ip link show flannel.1");
    c.check(!dev.status.success(), || {
        format!("h{n} has flannel.1 in an IPv6-only network")
    });
    let nat = c.sh(n, &["iptables", "-t", "nat", "-S"]);
    c.check(!nat.contains("FLANNEL"), || {
        format!("h{n} has IPv4 masquerade rules:\n{nat}")
    });
}

/// Three IPv6-only vxlan hosts: Go's keys, values and subnet.env; only `flannel-v6.1`; ip6tables
/// masquerading; IPv6 blackholes; pods reach each other; a host that lost its subnet.env gets
/// its own lease back (found by its `PublicIPv6`: every IPv6-only lease has `PublicIP`
/// 0.0.0.0).
#[test]
fn vxlan_ipv6_only_three_hosts() {
    if !require_root("e2e_ipv6_only::vxlan_ipv6_only_three_hosts") {
        return;
    }
    let mut c = Cluster::new(
        "v6vxlan",
        VXLAN_V6,
        3,
        &["--ip-masq", "--ip-blackhole-route"],
    );
    let leases = c.leases();
    c.check(leases.len() == 3, || format!("leases: {leases:#?}"));
    let mut subnets = Vec::new();
    for n in 1..=3 {
        let (raw, v6) = c.subnet(n);
        let want = format!(
            "FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET={}/64\n\
             FLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n",
            v6.gateway()
        );
        c.check(raw == want, || {
            format!("h{n}'s subnet.env:\n{raw}\nwanted:\n{want}")
        });
        c.check(
            v6.prefix_len == 64 && v6.subnet.segments()[..3] == [0x2001, 0xdb8, 0x100],
            || format!("h{n}'s subnet {v6:?}"),
        );
        let mac = c.ok(mac_of(c.h(n), "flannel-v6.1"), "flannel-v6.1's MAC");
        let want = format!(
            r#"{{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:1::{n}","BackendType":"vxlan","BackendV6Data":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#
        );
        let have = c.lease_of(n);
        c.check(have.as_deref() == Some(want.as_str()), || {
            format!("h{n}'s lease: {have:?}\nwanted: {want}\nall: {leases:#?}")
        });
        let link = c.sh(n, &["ip", "-d", "link", "show", "flannel-v6.1"]);
        for part in [
            "mtu 1430",
            "vxlan id 1 ",
            &format!("local 2001:db8:1::{n} "),
            "dev eth0 ",
        ] {
            c.check(link.contains(part), || {
                format!("flannel-v6.1 on h{n} lacks {part:?}:\n{link}")
            });
        }
        let nat6 = c.sh(n, &["ip6tables", "-t", "nat", "-S", "FLANNEL-POSTRTG"]);
        c.check(
            nat6.contains("-s 2001:db8:100::/48 ! -d ff00::/8")
                && nat6.contains(&format!("-d {}/64", v6.subnet)),
            || format!("h{n}'s ip6tables masquerade rules:\n{nat6}"),
        );
        let bh = c.sh(n, &["ip", "-6", "route", "show", "type", "blackhole"]);
        c.check(bh.contains(&format!("blackhole {}/64", v6.subnet)), || {
            format!("h{n}'s IPv6 blackholes:\n{bh}")
        });
        no_ipv4_state(&c, n);
        subnets.push(v6);
    }
    // h1 holds h2's and h3's entries on flannel-v6.1.
    let routes = c.sh(1, &["ip", "-6", "route", "show", "dev", "flannel-v6.1"]);
    for v6 in &subnets[1..] {
        let want = format!("{} via {} metric 1024 onlink", v6.cidr(), v6.subnet);
        c.check(routes.lines().any(|l| l.trim().starts_with(&want)), || {
            format!("h1 lacks {want:?}:\n{routes}")
        });
    }
    let pods: Vec<Pod> = (1..=3).map(|n| c.pod(n, 1)).collect();
    c.all_pairs_ping(&pods);

    // h1 restarts without its subnet.env: it takes back the lease naming its PublicIPv6.
    let before = subnets[0];
    let r = c.flanneld[0].stop();
    c.ok(r.map(drop), "stopping h1's flanneld");
    c.ok(
        std::fs::remove_file(c.h(1).subnet_file()).map_err(Into::into),
        "removing h1's subnet.env",
    );
    let r = c.flanneld[0].start();
    c.ok(r, "starting h1's flanneld");
    let r = c.flanneld[0].wait_ready(READY);
    c.ok(r, "h1 ready again");
    let (_, after) = c.subnet(1);
    c.check(after == before, || {
        format!("h1 came back with {after:?}, had {before:?}")
    });
    let leases = c.leases();
    c.check(leases.len() == 3, || {
        format!("leases after restart: {leases:#?}")
    });
    c.all_pairs_ping(&pods[..2]);
}

/// Two IPv6-only host-gw hosts: `<peer v6 subnet> via <peer IPv6> dev eth0`, no IPv4 routes,
/// Go's lease value, pods reach each other.
#[test]
fn host_gw_ipv6_only_two_hosts() {
    if !require_root("e2e_ipv6_only::host_gw_ipv6_only_two_hosts") {
        return;
    }
    let c = Cluster::new("v6hostgw", HOST_GW_V6, 2, &[]);
    let (raw1, s1) = c.subnet(1);
    let (_, s2) = c.subnet(2);
    let want = format!(
        "FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET={}/64\n\
         FLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
        s1.gateway()
    );
    c.check(raw1 == want, || {
        format!("h1's subnet.env:\n{raw1}\nwanted:\n{want}")
    });
    for (n, peer, peer_subnet) in [(1, 2, s2), (2, 1, s1)] {
        let lease = c.lease_of(peer);
        let want = format!(
            r#"{{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:1::{peer}","BackendType":"host-gw"}}"#
        );
        c.check(lease.as_deref() == Some(want.as_str()), || {
            format!("h{peer}'s lease: {lease:?}")
        });
        let route = format!(
            "{} via 2001:db8:1::{peer} dev eth0 metric 1024 pref medium",
            peer_subnet.cidr()
        );
        let ok = wait_until(CONNECT, Duration::from_millis(100), || {
            let routes = c.h(n).exec(&["ip", "-6", "route", "show"])?;
            Ok(routes.lines().any(|l| l.trim() == route))
        });
        c.check(ok, || {
            format!(
                "h{n} lacks {route:?}:\n{}",
                c.sh(n, &["ip", "-6", "route", "show"])
            )
        });
        no_ipv4_state(&c, n);
    }
    let pods: Vec<Pod> = (1..=2).map(|n| c.pod(n, 1)).collect();
    c.all_pairs_ping(&pods);
}

/// flanneld with `NODE_NAME` set (the lab passes its own environment on to every host).
fn wrapper(dir: &std::path::Path, node: &str) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("flanneld-{node}"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\nNODE_NAME={node} exec {BIN} \"$@\"\n"),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Kubernetes mode, IPv6-only vxlan: the fake API server on the switch at
/// `[2001:db8:1::fd]`, two IPv6-only hosts whose nodes have only an IPv6 podCIDR. Each lease
/// is its podCIDR (subnet.env with the IPv6 pair only), the annotations are Go's for an
/// IPv6-only vxlan host (no `public-ip`/`backend-data`), only `flannel-v6.1` exists, and
/// pods reach each other.
#[test]
fn kube_mode_ipv6_only_vxlan() {
    use flannel_testkit::kubeapi::FakeApiServer;
    use flannel_testkit::netns::sh;
    use flannel_testkit::topology::{in_netns, log_tails};
    use std::net::{Ipv6Addr, SocketAddr, TcpListener};

    if !require_root("e2e_ipv6_only::kube_mode_ipv6_only_vxlan") {
        return;
    }
    let ann = |suffix: &str| format!("flannel.alpha.coreos.com/{suffix}");
    let lab = Lab::new("v6kube").expect("lab");
    let sw = lab.switch_ns().to_owned();
    let api_ip = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfd);
    sh(
        "ip",
        &[
            "-n",
            &sw,
            "-6",
            "addr",
            "add",
            "2001:db8:1::fd/64",
            "dev",
            "br0",
            "nodad",
        ],
    )
    .expect("bridge addr");
    sh("ip", &["-n", &sw, "link", "set", "br0", "up"]).expect("bridge up");
    let addr = SocketAddr::from((api_ip, 0));
    let listener = in_netns(&sw, move || TcpListener::bind(addr))
        .expect("entering the switch")
        .expect("listener");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let api = rt.block_on(FakeApiServer::from_listener(listener));
    let url = format!("http://[{api_ip}]:{}", api.addr().port());
    api.add_node("h1", &["2001:db8:100:1::/64"]);
    api.add_node("h2", &["2001:db8:100:2::/64"]);
    let net_conf = lab.dir().join("net-conf.json");
    std::fs::write(&net_conf, VXLAN_V6).expect("net-conf.json");
    let args = [
        "--kube-subnet-mgr".to_owned(),
        format!("--kube-api-url={url}"),
        format!("--net-config-path={}", net_conf.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut hosts = Vec::new();
    let mut flanneld: Vec<Flanneld> = Vec::new();
    for n in 1..=2u8 {
        let host = lab.add_host_v6_only(n).expect("host");
        let bin = wrapper(lab.dir(), &format!("h{n}")).expect("wrapper");
        let mut f = host.start_flanneld(&bin, &args).expect("start");
        if let Err(e) = f.wait_ready(READY) {
            panic!("h{n} not ready: {e:#}\n{}", f.log_tail(40));
        }
        hosts.push(host);
        flanneld.push(f);
    }
    let logs = |f: &[Flanneld]| log_tails(f, 40);
    for (n, host) in (1u8..).zip(&hosts) {
        let raw = std::fs::read_to_string(host.subnet_file()).expect("subnet.env");
        assert_eq!(
            raw,
            format!(
                "FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:{n}::1/64\n\
                 FLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n"
            ),
            "{}",
            logs(&flanneld)
        );
        let node = api.node(&format!("h{n}")).expect("node");
        let a = &node["metadata"]["annotations"];
        assert_eq!(a[ann("kube-subnet-manager")], "true");
        assert_eq!(a[ann("backend-type")], "vxlan");
        assert_eq!(a[ann("public-ipv6")], format!("2001:db8:1::{n}"));
        assert!(a.get(ann("public-ip")).is_none(), "{a}");
        assert!(a.get(ann("backend-data")).is_none(), "{a}");
        let mac = mac_of(host, "flannel-v6.1").expect("flannel-v6.1");
        assert_eq!(
            a[ann("backend-v6-data")],
            format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#)
        );
        let v4 = host.run(&["ip", "link", "show", "flannel.1"]).expect("ip");
        assert!(!v4.status.success(), "flannel.1 exists on h{n}");
    }
    let p1 = hosts[0].add_pod_v6_only(1).expect("pod 1");
    let p2 = hosts[1].add_pod_v6_only(1).expect("pod 2");
    for (from, to) in [(&p1, &p2), (&p2, &p1)] {
        let dst = to.addr6().expect("v6 pod");
        let ok = wait_until(CONNECT, Duration::from_millis(100), || {
            Ok(from
                .ping(dst, 1, Duration::from_millis(200))?
                .all_received())
        });
        assert!(ok, "{} cannot reach {dst}{}", from.ns(), logs(&flanneld));
        let r = from.ping(dst, 3, Duration::from_millis(100)).expect("ping");
        assert!(r.all_received(), "{r:?}{}", logs(&flanneld));
    }
    for f in &mut flanneld {
        let status = f.stop().expect("stop");
        assert!(
            status.is_some_and(|s| s.success()),
            "clean exit: {status:?}"
        );
    }
    drop(api);
}
