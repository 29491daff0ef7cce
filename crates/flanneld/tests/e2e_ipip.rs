//! The ipip backend against a real kernel. This machine's kernel has no ipip module, so the
//! data path runs inside Debian's kernel (`flannel_testkit::vm::in_debian_kernel`): one guest,
//! one topology, every check in turn (each guest boot and each flanneld start is slow under
//! emulation). The refusal of a foreign `flannel.ipip` needs no ipip module and runs here.
//!
//! Topology: h1..h3 run flanneld with `Backend: ipip`; h4 is set up by hand as Go Flannel
//! would have set it up (its own `flannel.ipip`, address, routes, and its lease JSON written
//! into etcd by the test), with a pod of its own.

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{
    log_tails, parse_ping_summary, wait_until, Etcd, Flanneld, Host, HostSubnet, Lab, Pod,
};
use flannel_testkit::vm::{in_debian_kernel, scaled};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const IPIP: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"ipip"}}"#;
const IPIP_DIRECT: &str =
    r#"{"Network":"198.18.0.0/16","Backend":{"Type":"ipip","DirectRouting":true}}"#;
const LEASES: &str = "/coreos.com/network/subnets/";
/// The packet-filter rules are not under test here and take many seconds per start under
/// emulation.
const ARGS: &[&str] = &["--iptables-forward-rules=false"];
/// The hand-made node's subnet (outside what the allocator hands out first).
const GO_SUBNET: &str = "198.18.200.0/24";
const GO_KEY: &str = "198.18.200.0-24";

fn ready() -> Duration {
    scaled(Duration::from_secs(30))
}

struct Ipip {
    flanneld: Vec<Flanneld>,
    hosts: Vec<Host>,
    etcd: Etcd,
    _lab: Lab,
}

impl Ipip {
    fn logs(&self) -> String {
        format!(
            "{}\n--- etcd ---\n{}",
            log_tails(&self.flanneld, 40),
            self.etcd.log_tail(10)
        )
    }

    fn ok<T>(&self, r: anyhow::Result<T>, what: &str) -> T {
        r.unwrap_or_else(|e| panic!("{what}: {e:#}{}", self.logs()))
    }

    fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            panic!("{}{}", msg(), self.logs());
        }
    }

    fn h(&self, n: usize) -> &Host {
        &self.hosts[n - 1]
    }

    fn sh(&self, n: usize, args: &[&str]) -> String {
        let r = self.h(n).exec(args);
        self.ok(r, &format!("{args:?} on h{n}"))
    }

    fn subnet(&self, n: usize) -> HostSubnet {
        let r = self.h(n).subnet();
        self.ok(r, &format!("h{n}'s subnet.env"))
    }

    fn routes(&self, n: usize) -> String {
        self.sh(n, &["ip", "route"])
    }

    /// Wait until `from` gets an answer from `to`.
    fn wait_ping(&self, from: &Pod, to: Ipv4Addr) {
        let ok = wait_until(
            scaled(Duration::from_secs(15)),
            Duration::from_millis(200),
            || Ok(from.ping(to, 1, Duration::from_millis(200))?.all_received()),
        );
        self.check(ok, || {
            format!(
                "{} cannot reach {to}; routes of its host:\n{}",
                from.ns(),
                self.sh_ns(from.host_ns(), &["ip", "route"])
            )
        });
    }

    fn sh_ns(&self, ns: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Wait until host n's routing table has (or no longer has) `line`.
    fn wait_route(&self, n: usize, line: &str, present: bool, within: Duration) -> Duration {
        let t0 = Instant::now();
        let ok = wait_until(within, Duration::from_millis(100), || {
            Ok(self
                .h(n)
                .exec(&["ip", "route"])?
                .lines()
                .any(|l| l.trim() == line)
                == present)
        });
        self.check(ok, || {
            format!(
                "h{n}: route {line:?} {} after {within:?}:\n{}",
                if present { "missing" } else { "still there" },
                self.routes(n)
            )
        });
        t0.elapsed()
    }
}

/// h4: what Go Flannel's ipip backend leaves on a node (device, /32 address, one onlink route
/// per peer) and its lease, written into etcd with a TTL as Go writes it.
fn hand_made_node(c: &Ipip, peers: &[(String, Ipv4Addr)]) {
    let h4 = c.h(4);
    for cmd in [
        "ip link add flannel.ipip type ipip local 192.0.2.4",
        "ip link set flannel.ipip mtu 1480",
        "ip addr add 198.18.200.0/32 dev flannel.ipip",
        "ip link set flannel.ipip up",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        c.ok(h4.exec(&args), cmd);
    }
    for (subnet, ip) in peers {
        let ip = ip.to_string();
        c.ok(
            h4.exec(&[
                "ip",
                "route",
                "add",
                subnet,
                "via",
                &ip,
                "dev",
                "flannel.ipip",
                "onlink",
            ]),
            "h4's route",
        );
    }
    // subnet.env as Go's flanneld would write it, so the pod helper wires h4's pod.
    let env = "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.200.1/24\n\
               FLANNEL_MTU=1480\nFLANNEL_IPMASQ=false\n";
    c.ok(
        std::fs::write(h4.subnet_file(), env).map_err(Into::into),
        "h4's subnet.env",
    );
    let grant = c.ok(c.etcd.etcdctl(&["lease", "grant", "600"]), "lease grant");
    let id = grant
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("lease grant said {grant:?}"));
    let value = r#"{"PublicIP":"192.0.2.4","PublicIPv6":null,"BackendType":"ipip"}"#;
    let lease = format!("--lease={id}");
    c.ok(
        c.etcd
            .etcdctl(&["put", &lease, &format!("{LEASES}{GO_KEY}"), value]),
        "writing h4's lease",
    );
}

#[test]
fn ipip_in_debians_kernel() {
    if !in_debian_kernel("ipip_in_debians_kernel") {
        return;
    }
    let lab = Lab::new("ipip").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    // Under emulation etcd's first write can outlast etcdctl's time limit: a few attempts.
    let mut put = etcd.put_config(IPIP);
    for _ in 0..2 {
        if put.is_ok() {
            break;
        }
        put = etcd.put_config(IPIP);
    }
    put.expect("writing the network config");
    let mut c = Ipip {
        flanneld: Vec::new(),
        hosts: Vec::new(),
        etcd,
        _lab: lab,
    };
    for n in 1..=4u8 {
        let host = c._lab.add_host(n).expect("host");
        c.hosts.push(host);
    }
    for n in 1..=3 {
        let f = c.h(n).start_flanneld(BIN, ARGS).expect("start flanneld");
        c.flanneld.push(f);
    }
    for i in 0..3 {
        let r = c.flanneld[i].wait_ready(ready());
        c.ok(r, &format!("flanneld on h{} ready", i + 1));
    }
    let subnets: Vec<HostSubnet> = (1..=3).map(|n| c.subnet(n)).collect();
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1?}] {what}", t0.elapsed());
    step("three flanneld ready");

    // 1. Flannel's device, address, MTU, lease and routes.
    let link = c.sh(1, &["ip", "-d", "link", "show", "flannel.ipip"]);
    c.check(
        link.contains("mtu 1480")
            && link.contains("ipip remote any local 192.0.2.1")
            && link.contains("nopmtudisc")
            && link.contains(",UP"),
        || format!("h1's flannel.ipip:\n{link}"),
    );
    let addr = c.sh(
        1,
        &["ip", "-4", "-o", "addr", "show", "dev", "flannel.ipip"],
    );
    let want_addr = format!("inet {}/32", subnets[0].subnet);
    c.check(addr.contains(&want_addr), || {
        format!("h1's flannel.ipip address (want {want_addr}):\n{addr}")
    });
    c.check(subnets[0].mtu == 1480, || {
        format!("FLANNEL_MTU: {:?}", subnets[0].raw)
    });
    let leases = c.ok(c.etcd.leases(), "leases");
    let key = format!("{LEASES}{}-{}", subnets[0].subnet, subnets[0].prefix_len);
    let value = leases
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str());
    c.check(
        value == Some(r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"ipip"}"#),
        || format!("h1's lease {key}: {value:?}"),
    );
    for m in 2..=3 {
        let line = format!(
            "{} via 192.0.2.{m} dev flannel.ipip onlink",
            subnets[m - 1].cidr()
        );
        c.wait_route(1, &line, true, scaled(Duration::from_secs(10)));
    }

    step("device, address, lease and routes checked");

    // 2. The hand-made node: h1..h3 route to it, its pod and theirs reach each other.
    let peers: Vec<(String, Ipv4Addr)> = (1..=3)
        .map(|n| (subnets[n - 1].cidr(), c.h(n).addr()))
        .collect();
    hand_made_node(&c, &peers);
    for n in 1..=3 {
        let line = format!("{GO_SUBNET} via 192.0.2.4 dev flannel.ipip onlink");
        c.wait_route(n, &line, true, scaled(Duration::from_secs(10)));
    }
    let pods: Vec<Pod> = (1..=4)
        .map(|n| {
            let r = c.h(n).add_pod(1);
            c.ok(r, &format!("pod on h{n}"))
        })
        .collect();
    // Every host's traffic both ways: a ring over h1..h3, and the hand-made node with two.
    for (from, to) in [(0, 1), (1, 2), (2, 0), (3, 0), (2, 3)] {
        c.wait_ping(&pods[from], pods[to].addr());
    }

    step("pods reach each other, the hand-made node too");

    // 3. A route deleted by hand is back within 15 s.
    let to_h2 = format!(
        "{} via 192.0.2.2 dev flannel.ipip onlink",
        subnets[1].cidr()
    );
    c.sh(1, &["ip", "route", "del", &subnets[1].cidr()]);
    let took = c.wait_route(1, &to_h2, true, Duration::from_secs(15));
    eprintln!("deleted route restored after {took:?}");

    step("deleted route restored");

    // 4. A restart of h1's flanneld loses no pings between pods: pings every 20 ms from before
    // the stop until after the restarted daemon is ready (stopped with SIGINT, which makes
    // ping print its summary).
    let ping = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            pods[0].ns(),
            "ping",
            "-q",
            "-i",
            "0.02",
            "-w",
            "120",
        ])
        .arg(pods[1].addr().to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    thread::sleep(Duration::from_millis(500));
    let status = c.flanneld[0].stop();
    let status = c.ok(status, "stopping h1's flanneld");
    c.check(status.is_some_and(|s| s.success()), || {
        format!("h1's flanneld after SIGTERM: {status:?}")
    });
    let r = c.flanneld[0].start();
    c.ok(r, "restarting h1's flanneld");
    let r = c.flanneld[0].wait_ready(ready());
    c.ok(r, "h1's flanneld ready after the restart");
    thread::sleep(Duration::from_secs(1));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &ping.id().to_string()])
        .status();
    let out = ping.wait_with_output().expect("ping's summary");
    let text = String::from_utf8_lossy(&out.stdout);
    let result =
        parse_ping_summary(&text).unwrap_or_else(|| panic!("no ping summary: {text}{}", c.logs()));
    c.check(result.sent >= 50 && result.received == result.sent, || {
        format!("pings across h1's restart: {result:?}")
    });
    c.check(c.subnet(1) == subnets[0], || {
        "h1's subnet.env changed across the restart".into()
    });

    step("restart lost no ping");

    // 5. A gone peer's route is removed: h3 stops and its lease is deleted.
    c.flanneld[2].kill();
    let h3_key = format!("{LEASES}{}-{}", subnets[2].subnet, subnets[2].prefix_len);
    c.ok(c.etcd.etcdctl(&["del", &h3_key]), "deleting h3's lease");
    let to_h3 = format!(
        "{} via 192.0.2.3 dev flannel.ipip onlink",
        subnets[2].cidr()
    );
    c.wait_route(1, &to_h3, false, scaled(Duration::from_secs(10)));

    step("a gone peer's route removed");

    // 6. DirectRouting: h1, restarted with it, routes its same-L2 peers via eth0.
    c.ok(c.etcd.put_config(IPIP_DIRECT), "DirectRouting config");
    let r = c.flanneld[0].restart();
    c.ok(r, "restarting h1's flanneld with DirectRouting");
    let r = c.flanneld[0].wait_ready(ready());
    c.ok(r, "h1's flanneld ready with DirectRouting");
    for (subnet, ip) in [
        (subnets[1].cidr(), "192.0.2.2"),
        (GO_SUBNET.to_owned(), "192.0.2.4"),
    ] {
        c.wait_route(
            1,
            &format!("{subnet} via {ip} dev eth0 onlink"),
            true,
            scaled(Duration::from_secs(10)),
        );
        c.wait_route(
            1,
            &format!("{subnet} via {ip} dev flannel.ipip onlink"),
            false,
            scaled(Duration::from_secs(5)),
        );
    }
    c.wait_ping(&pods[0], pods[1].addr());
    c.wait_ping(&pods[0], pods[3].addr());
    step("DirectRouting routes via eth0, pods still reach each other");
}

/// A device named `flannel.ipip` of another kind is the user's: flanneld leaves it alone and
/// says so with Flannel's words (no ipip module needed: the name is taken before the kind
/// matters).
#[test]
fn a_foreign_flannel_ipip_is_refused_with_flannels_message() {
    if !require_root("a_foreign_flannel_ipip_is_refused_with_flannels_message") {
        return;
    }
    let lab = Lab::new("ipipforeign").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(IPIP).expect("config");
    let h1 = lab.add_host(1).expect("host");
    h1.exec(&["ip", "link", "add", "flannel.ipip", "type", "bridge"])
        .expect("a bridge named flannel.ipip");
    let mut f = h1.start_flanneld(BIN, &[]).expect("start");
    let message = "flannel.ipip isn't an ipip mode device, please remove device and try again";
    let said = wait_until(ready(), Duration::from_millis(200), || {
        Ok(f.log().contains(message))
    });
    assert!(said, "no refusal in the log:\n{}", f.log_tail(40));
    assert!(
        f.is_running(),
        "flanneld must keep running:\n{}",
        f.log_tail(40)
    );
    let link = h1
        .exec(&["ip", "-d", "link", "show", "flannel.ipip"])
        .expect("the device is still there");
    assert!(
        link.contains("bridge"),
        "the user's device was replaced:\n{link}"
    );
    let _ = f.stop();
}
