//! End-to-end tests of flanneld's data path: real flanneld processes in "host" network
//! namespaces on a shared underlay (192.0.2.0/24, plus 2001:db8:1::/64 for the dual-stack
//! tests), a real etcd in its own namespace, pods wired behind each host's `cni0` bridge (see
//! `flannel_testkit::topology`), and pings between pods.
//!
//! Each test builds its own lab (unique namespace names, its own etcd), so the tests run in
//! parallel. Every wait is bounded; failures carry the tails of the flanneld logs. Needs root:
//! each test calls `require_root` first (which fails under `CI=true` without root).

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{wait_until, Etcd, Flanneld, Host, HostSubnet, Lab, Pod};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const VXLAN: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
const HOST_GW: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#;
const VXLAN_DUAL: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}"#;
const HOST_GW_DUAL: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","IPv6SubnetLen":64,"Backend":{"Type":"host-gw"}}"#;
const ALLOC_DUAL: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","IPv6SubnetLen":64,"Backend":{"Type":"alloc"}}"#;
/// Start-up of a flanneld (tests run in parallel on a small machine: be generous).
const READY: Duration = Duration::from_secs(30);
/// First connectivity between pods after the hosts are ready (peers are learned by watch).
const CONNECT: Duration = Duration::from_secs(10);
/// What the data path must repair or clean up within.
const REPAIR: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);
const LEASES: &str = "/coreos.com/network/subnets/";

/// One lab with etcd and flanneld on hosts 1..=n. Fields drop in order: processes first.
struct Cluster {
    flanneld: Vec<Flanneld>,
    hosts: Vec<Host>,
    etcd: Etcd,
    lab: Lab,
    /// Hosts get an IPv6 underlay address too.
    dual: bool,
    /// Extra flanneld arguments for every host.
    args: Vec<String>,
}

impl Cluster {
    /// Lab `name`, etcd with `config`, and `n` hosts each running a ready flanneld.
    fn new(name: &str, config: &str, n: u8) -> Cluster {
        Cluster::build(name, config, n, false, &[])
    }

    /// [`Cluster::new`] with dual-stack hosts and `args` for every flanneld.
    fn dual(name: &str, config: &str, n: u8, args: &[&str]) -> Cluster {
        Cluster::build(name, config, n, true, args)
    }

    fn build(name: &str, config: &str, n: u8, dual: bool, args: &[&str]) -> Cluster {
        let lab = Lab::new(name).expect("creating the lab");
        let etcd = lab.start_etcd().expect("starting etcd");
        etcd.put_config(config).expect("writing the network config");
        let mut cluster = Cluster {
            flanneld: Vec::new(),
            hosts: Vec::new(),
            etcd,
            lab,
            dual,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        for _ in 0..n {
            cluster.start_host();
        }
        for i in 0..cluster.flanneld.len() {
            let result = cluster.flanneld[i].wait_ready(READY);
            cluster.ok(result, &format!("flanneld on h{} ready", i + 1));
        }
        cluster
    }

    /// Add the next host and start flanneld on it (does not wait for it).
    fn start_host(&mut self) -> usize {
        let n = u8::try_from(self.hosts.len() + 1).expect("few hosts");
        let host = if self.dual {
            self.lab.add_host_dual(n)
        } else {
            self.lab.add_host(n)
        }
        .expect("adding a host");
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let f = host.start_flanneld(BIN, &args).expect("starting flanneld");
        self.hosts.push(host);
        self.flanneld.push(f);
        usize::from(n)
    }

    fn h(&self, n: usize) -> &Host {
        &self.hosts[n - 1]
    }

    fn f(&mut self, n: usize) -> &mut Flanneld {
        &mut self.flanneld[n - 1]
    }

    fn subnet(&self, n: usize) -> HostSubnet {
        let r = self.h(n).subnet();
        self.ok(r, &format!("reading h{n}'s subnet.env"))
    }

    fn pod(&self, n: usize, k: u8) -> Pod {
        let r = self.h(n).add_pod(k);
        self.ok(r, &format!("adding pod {k} on h{n}"))
    }

    /// The tail of every flanneld log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for f in &self.flanneld {
            out.push_str(&format!(
                "\n----- flanneld log of {} (last 60 lines) -----\n{}\n",
                f.host().ns(),
                f.log_tail(60)
            ));
        }
        out.push_str(&format!(
            "----- etcd log (last 10 lines) -----\n{}\n",
            self.etcd.log_tail(10)
        ));
        out
    }

    /// Unwrap with the logs in the panic message.
    fn ok<T>(&self, r: anyhow::Result<T>, what: &str) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e:#}{}", self.logs()),
        }
    }

    /// Panic with `msg` and the logs unless `cond`.
    fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            panic!("{}{}", msg(), self.logs());
        }
    }

    /// `args` on host n; stdout (panics with logs on failure).
    fn sh(&self, n: usize, args: &[&str]) -> String {
        let r = self.h(n).exec(args);
        self.ok(r, &format!("{args:?} on h{n}"))
    }

    /// Wait (bounded) until `from` gets an answer from `to`.
    fn wait_ping(&self, from: &Pod, to: impl Into<IpAddr>, timeout: Duration) {
        let to = to.into();
        let ok = wait_until(timeout, Duration::from_millis(100), || {
            Ok(from.ping(to, 1, Duration::from_millis(200))?.all_received())
        });
        self.check(ok, || {
            format!(
                "{} could not reach {to} within {timeout:?}; routes on its host:\n{}{}",
                from.ns(),
                route_table(from.host_ns()),
                route_table6(from.host_ns())
            )
        });
    }

    /// `count` pings at 10/s with no loss.
    fn ping_no_loss(&self, from: &Pod, to: impl Into<IpAddr>, count: u32) {
        let to = to.into();
        let r = from.ping(to, count, Duration::from_millis(100));
        let r = self.ok(r, &format!("ping {to} from {}", from.ns()));
        self.check(r.sent == count && r.received == count, || {
            format!(
                "ping {to} from {}: {r:?}, wanted {count}/{count}",
                from.ns()
            )
        });
    }

    /// Host m as a peer of the others: its subnet, address and (vxlan) MAC.
    fn peer(&self, backend: Backend, m: usize) -> Peer {
        let mac = (backend == Backend::Vxlan)
            .then(|| self.ok(mac_of(self.h(m), "flannel.1"), &format!("h{m}'s MAC")));
        Peer {
            n: m,
            backend,
            subnet: self.subnet(m),
            public: self.h(m).addr(),
            mac,
        }
    }

    /// Wait (bounded by `timeout` from now) until every host in `on` holds `peer`'s entries
    /// (`present`) or none of them (`!present`).
    fn wait_peer(&self, on: &[usize], peer: &Peer, present: bool, timeout: Duration) {
        let t0 = Instant::now();
        let done = wait_until(timeout, POLL, || {
            for &n in on {
                let ok = if present {
                    peer.present_on(self.h(n))?
                } else {
                    peer.absent_on(self.h(n))?
                };
                if !ok {
                    return Ok(false);
                }
            }
            Ok(true)
        });
        self.check(done, || {
            let mut msg = format!(
                "h{}'s {:?} entries ({}) not {} on h{on:?} {:?} later",
                peer.n,
                peer.backend,
                peer.subnet.cidr(),
                if present { "present" } else { "gone" },
                t0.elapsed()
            );
            for &n in on {
                let entries = VxlanPeerEntries::read(self.h(n), &peer.subnet, peer.public);
                msg.push_str(&format!(
                    "\nh{n}: {entries:?}; routes:\n{}",
                    route_table(self.h(n).ns())
                ));
            }
            msg
        });
    }

    /// The value of the lease key of host n's subnet (`None` when absent).
    fn lease_of(&self, n: usize) -> Option<String> {
        let key = lease_key(&self.subnet(n));
        let r = self.etcd.leases();
        self.ok(r, "listing leases")
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// The etcd key of a host's lease: `<v4>-<len>` or, dual-stack, `<v4>-<len>&<v6>-<len>`.
fn lease_key(s: &HostSubnet) -> String {
    match &s.ipv6 {
        None => format!("{LEASES}{}-{}", s.subnet, s.prefix_len),
        Some(v6) => format!(
            "{LEASES}{}-{}&{}-{}",
            s.subnet, s.prefix_len, v6.subnet, v6.prefix_len
        ),
    }
}

fn route_table(ns: &str) -> String {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ip", "route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn route_table6(ns: &str) -> String {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ip", "-6", "route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
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

/// What a vxlan host holds for one peer: the route, neighbour and FDB lines (if present).
#[derive(Debug, Default, PartialEq, Eq)]
struct VxlanPeerEntries {
    route: Option<String>,
    neigh: Option<String>,
    fdb: Option<String>,
}

impl VxlanPeerEntries {
    fn read(host: &Host, peer: &HostSubnet, peer_public: Ipv4Addr) -> anyhow::Result<Self> {
        let cidr = peer.cidr();
        let vtep = peer.subnet.to_string();
        let routes = host.exec(&["ip", "route", "show"])?;
        let route = routes
            .lines()
            .find(|l| l.split_whitespace().next() == Some(cidr.as_str()))
            .map(|l| l.trim().to_owned());
        let neighs = host.run(&["ip", "neigh", "show", "dev", "flannel.1"])?;
        let neigh = String::from_utf8_lossy(&neighs.stdout)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(vtep.as_str()))
            .map(|l| l.trim().to_owned());
        let fdbs = host.run(&["bridge", "fdb", "show", "dev", "flannel.1"])?;
        let dst = format!("dst {peer_public} ");
        let fdb = String::from_utf8_lossy(&fdbs.stdout)
            .lines()
            .find(|l| l.contains(&dst))
            .map(|l| l.trim().to_owned());
        Ok(VxlanPeerEntries { route, neigh, fdb })
    }

    fn none(&self) -> bool {
        self.route.is_none() && self.neigh.is_none() && self.fdb.is_none()
    }

    /// Exactly Flannel's entries for a peer with `mac` at `public`.
    fn complete(&self, peer: &HostSubnet, public: Ipv4Addr, mac: &str) -> bool {
        let route = format!("{} via {} dev flannel.1 onlink", peer.cidr(), peer.subnet);
        let neigh = format!("{} lladdr {mac} PERMANENT", peer.subnet);
        let fdb = format!("{mac} dst {public} self permanent");
        self.route.as_deref() == Some(route.as_str())
            && self.neigh.as_deref() == Some(neigh.as_str())
            && self.fdb.as_deref() == Some(fdb.as_str())
    }
}

/// The two data-path backends the scenarios run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Vxlan,
    HostGw,
}

impl Backend {
    /// The network config: 198.18.0.0/16 with this backend.
    fn config(self) -> &'static str {
        match self {
            Backend::Vxlan => VXLAN,
            Backend::HostGw => HOST_GW,
        }
    }
}

/// What the other hosts must hold for one host (captured while that host is up).
#[derive(Debug, Clone)]
struct Peer {
    n: usize,
    backend: Backend,
    subnet: HostSubnet,
    public: Ipv4Addr,
    /// The host's `flannel.1` MAC (vxlan only).
    mac: Option<String>,
}

impl Peer {
    /// The route line host-gw keeps for this peer.
    fn host_gw_route(&self) -> String {
        format!("{} via {} dev eth0", self.subnet.cidr(), self.public)
    }

    /// Whether `host` holds exactly the backend's entries for this peer.
    fn present_on(&self, host: &Host) -> anyhow::Result<bool> {
        match (self.backend, &self.mac) {
            (Backend::Vxlan, Some(mac)) => Ok(VxlanPeerEntries::read(
                host,
                &self.subnet,
                self.public,
            )?
            .complete(&self.subnet, self.public, mac)),
            (Backend::Vxlan, None) => anyhow::bail!("no MAC recorded for vxlan peer h{}", self.n),
            (Backend::HostGw, _) => {
                let want = self.host_gw_route();
                Ok(host
                    .exec(&["ip", "route", "show"])?
                    .lines()
                    .any(|l| l.trim() == want))
            }
        }
    }

    /// Whether `host` holds none of the backend's entries for this peer.
    fn absent_on(&self, host: &Host) -> anyhow::Result<bool> {
        match self.backend {
            Backend::Vxlan => Ok(VxlanPeerEntries::read(host, &self.subnet, self.public)?.none()),
            Backend::HostGw => {
                let cidr = self.subnet.cidr();
                Ok(!host
                    .exec(&["ip", "route", "show"])?
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(cidr.as_str())))
            }
        }
    }
}

/// 1. vxlan, two hosts: distinct subnets, pod-to-pod ping both ways, and Flannel's device,
///    route, neighbour and FDB entry on h1 for h2.
#[test]
fn vxlan_two_hosts() {
    if !require_root("e2e::vxlan_two_hosts") {
        return;
    }
    let c = Cluster::new("vxlan2", VXLAN, 2);
    let (s1, s2) = (c.subnet(1), c.subnet(2));
    c.check(s1.subnet != s2.subnet, || {
        format!("same subnet: {s1:?} {s2:?}")
    });
    for s in [&s1, &s2] {
        c.check(s.prefix_len == 24, || {
            format!("SubnetLen 24 expected: {s:?}")
        });
        let expected = format!(
            "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET={}/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
            s.gateway()
        );
        c.check(s.raw == expected, || {
            format!("subnet.env:\n{}\nwanted:\n{expected}", s.raw)
        });
    }
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    c.ping_no_loss(&p1, p2.addr(), 5);
    c.ping_no_loss(&p2, p1.addr(), 5);

    let link = c.sh(1, &["ip", "-d", "link", "show", "flannel.1"]);
    for want in [
        "mtu 1450",
        "vxlan id 1 ",
        "local 192.0.2.1 ",
        "dev eth0 ",
        "dstport 8472 ",
        "nolearning",
    ] {
        c.check(link.contains(want), || {
            format!("flannel.1 on h1 lacks {want:?}:\n{link}")
        });
    }
    let addrs = c.sh(1, &["ip", "-4", "-o", "addr", "show", "dev", "flannel.1"]);
    let own = format!("inet {}/32 ", s1.subnet);
    c.check(addrs.contains(&own), || {
        format!("flannel.1 addresses: {addrs}")
    });

    let mac2 = c.ok(mac_of(c.h(2), "flannel.1"), "h2's vtep MAC");
    let lease2 = c.lease_of(2).unwrap_or_default();
    c.check(
        lease2.contains(&format!("\"VtepMAC\":\"{mac2}\"")) && lease2.contains("\"VNI\":1"),
        || format!("h2's lease {lease2} does not carry its MAC {mac2}"),
    );
    let entries = c.ok(
        VxlanPeerEntries::read(c.h(1), &s2, c.h(2).addr()),
        "reading h1's entries",
    );
    c.check(entries.complete(&s2, c.h(2).addr(), &mac2), || {
        format!(
            "h1's entries for h2 ({} at 192.0.2.2, MAC {mac2}): {entries:#?}\nroutes:\n{}\nneigh:\n{}\nfdb:\n{}",
            s2.cidr(),
            route_table(c.h(1).ns()),
            c.sh(1, &["ip", "neigh", "show", "dev", "flannel.1"]),
            c.sh(1, &["bridge", "fdb", "show", "dev", "flannel.1"]),
        )
    });
    // No route for the whole network, and none for our own subnet through the device.
    let routes = c.sh(1, &["ip", "route", "show", "dev", "flannel.1"]);
    c.check(routes.lines().count() == 1, || {
        format!("h1 routes via flannel.1 (one peer expected):\n{routes}")
    });
}

/// 2. host-gw, two hosts: pod-to-pod ping, and the route via the peer's underlay address.
#[test]
fn host_gw_two_hosts() {
    if !require_root("e2e::host_gw_two_hosts") {
        return;
    }
    let c = Cluster::new("hostgw2", HOST_GW, 2);
    let (s1, s2) = (c.subnet(1), c.subnet(2));
    c.check(s1.subnet != s2.subnet, || {
        format!("same subnet: {s1:?} {s2:?}")
    });
    c.check(s1.mtu == 1500, || {
        format!("host-gw MTU is the iface's: {s1:?}")
    });
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    c.ping_no_loss(&p1, p2.addr(), 5);
    c.ping_no_loss(&p2, p1.addr(), 5);
    let want = format!("{} via 192.0.2.2 dev eth0", s2.cidr());
    let routes = c.sh(1, &["ip", "route", "show"]);
    c.check(routes.lines().any(|l| l.trim() == want), || {
        format!("h1 lacks {want:?}:\n{routes}")
    });
    c.check(!c.sh(1, &["ip", "link"]).contains("flannel.1"), || {
        "host-gw created a vxlan device".to_owned()
    });
}

/// Three hosts with two, one and two pods: each host holds the backend's entries for both
/// peers, and every pod reaches every other pod (same host included).
fn all_pairs(name: &str, backend: Backend) {
    let c = Cluster::new(name, backend.config(), 3);
    let peers: Vec<Peer> = (1..=3).map(|m| c.peer(backend, m)).collect();
    c.check(
        peers[0].subnet.subnet != peers[1].subnet.subnet
            && peers[0].subnet.subnet != peers[2].subnet.subnet
            && peers[1].subnet.subnet != peers[2].subnet.subnet,
        || format!("subnets not distinct: {peers:#?}"),
    );
    for peer in &peers {
        let others: Vec<usize> = (1..=3).filter(|n| *n != peer.n).collect();
        c.wait_peer(&others, peer, true, CONNECT);
    }
    let pods = [
        c.pod(1, 1),
        c.pod(1, 2),
        c.pod(2, 1),
        c.pod(3, 1),
        c.pod(3, 2),
    ];
    for from in &pods {
        for to in pods.iter().filter(|p| p.ns() != from.ns()) {
            c.wait_ping(from, to.addr(), CONNECT);
        }
    }
}

/// [`all_pairs`] with vxlan.
#[test]
fn vxlan_all_pairs() {
    if !require_root("e2e::vxlan_all_pairs") {
        return;
    }
    all_pairs("pairsvx", Backend::Vxlan);
}

/// [`all_pairs`] with host-gw.
#[test]
fn host_gw_all_pairs() {
    if !require_root("e2e::host_gw_all_pairs") {
        return;
    }
    all_pairs("pairsgw", Backend::HostGw);
}

/// 3. No packet is lost while flanneld restarts (SIGTERM, start) on h1 and then on h2, with
///    pod-to-pod pings at 100/s running throughout (for 10 s, longer under emulation, where
///    the restarts take longer too).
fn restart_loses_no_packets(name: &str, backend: Backend) {
    let mut c = Cluster::new(name, backend.config(), 2);
    let env_before = [c.subnet(1), c.subnet(2)];
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);

    let (pinger, dst) = (p1.clone(), p2.addr());
    let started = Instant::now();
    let count = 1000 * flannel_testkit::vm::time_scale();
    let pings = thread::spawn(move || pinger.ping(dst, count, Duration::from_millis(10)));
    thread::sleep(Duration::from_millis(300));
    for n in [1, 2] {
        let status = c.f(n).stop();
        let status = c.ok(status, &format!("stopping flanneld on h{n}"));
        c.check(status.is_some_and(|s| s.success()), || {
            format!("flanneld on h{n} after SIGTERM: {status:?} (exit 0 expected)")
        });
        thread::sleep(Duration::from_millis(200));
        let r = c.f(n).start();
        c.ok(r, &format!("restarting flanneld on h{n}"));
        let r = c.f(n).wait_ready(READY);
        c.ok(r, &format!("flanneld on h{n} ready after restart"));
        // Give the restarted daemon time to load its peers and reconcile under traffic.
        thread::sleep(Duration::from_millis(500));
    }
    let restarts_done = started.elapsed();
    let still_pinging = !pings.is_finished();
    let result = pings.join().expect("ping thread");
    let result = c.ok(result, "pinging during restarts");
    c.check(still_pinging, || {
        format!("the restarts took {restarts_done:?}, longer than the {count} pings: test is void")
    });
    c.check(
        result.sent == count && result.received == result.sent,
        || format!("pings during the restarts: {result:?}"),
    );
    for n in [1, 2] {
        let after = c.subnet(n);
        c.check(after == env_before[n - 1], || {
            format!("h{n}'s subnet.env changed across the restart: {after:?}")
        });
    }
}

#[test]
fn vxlan_restart_loses_no_packets() {
    if !require_root("e2e::vxlan_restart_loses_no_packets") {
        return;
    }
    restart_loses_no_packets("restartvx", Backend::Vxlan);
}

#[test]
fn host_gw_restart_loses_no_packets() {
    if !require_root("e2e::host_gw_restart_loses_no_packets") {
        return;
    }
    restart_loses_no_packets("restartgw", Backend::HostGw);
}

/// 4. A third host joining later: within 2 s of it being ready, h1 and h2 hold its entries
///    (and it holds theirs), and pods reach each other. When it leaves (flanneld stopped, lease
///    deleted with etcdctl) its entries are gone from h1 and h2 within 2 s.
fn host_joins_and_leaves(name: &str, backend: Backend) {
    let mut c = Cluster::new(name, backend.config(), 2);
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);

    let n3 = c.start_host();
    let r = c.f(n3).wait_ready(READY);
    c.ok(r, "flanneld on h3 ready");
    let ready = Instant::now();
    let peer3 = c.peer(backend, n3);
    c.wait_peer(
        &[1, 2],
        &peer3,
        true,
        REPAIR.saturating_sub(ready.elapsed()),
    );
    for m in [1, 2] {
        let peer = c.peer(backend, m);
        c.wait_peer(&[n3], &peer, true, REPAIR.saturating_sub(ready.elapsed()));
    }
    eprintln!(
        "h3 known everywhere {:?} after it was ready",
        ready.elapsed()
    );
    let p3 = c.pod(n3, 1);
    c.wait_ping(&p1, p3.addr(), Duration::from_secs(5));
    c.wait_ping(&p2, p3.addr(), Duration::from_secs(5));
    c.wait_ping(&p3, p1.addr(), Duration::from_secs(5));
    c.wait_ping(&p3, p2.addr(), Duration::from_secs(5));

    let status = c.f(n3).stop();
    c.ok(status, "stopping flanneld on h3");
    let key = lease_key(&peer3.subnet);
    let r = c.etcd.etcdctl(&["del", "--prefix", &key]);
    let deleted = c.ok(r, "deleting h3's lease");
    c.check(deleted.trim() == "1", || {
        format!("etcdctl del {key} deleted {deleted:?} keys")
    });
    c.wait_peer(&[1, 2], &peer3, false, REPAIR);
    // h1 <-> h2 is unaffected.
    for m in [1, 2] {
        let peer = c.peer(backend, m);
        c.check(peer.present_on(c.h(3 - m)).unwrap_or(false), || {
            format!("h{m}'s entries left h{} with h3", 3 - m)
        });
    }
    c.ping_no_loss(&p1, p2.addr(), 3);
}

#[test]
fn vxlan_host_joins_and_leaves() {
    if !require_root("e2e::vxlan_host_joins_and_leaves") {
        return;
    }
    host_joins_and_leaves("joinvx", Backend::Vxlan);
}

#[test]
fn host_gw_host_joins_and_leaves() {
    if !require_root("e2e::host_gw_host_joins_and_leaves") {
        return;
    }
    host_joins_and_leaves("joingw", Backend::HostGw);
}

/// 5. `flannel.1` deleted by hand on h1 comes back, with its peers, within 2 s, and traffic
///    flows again both ways within those 2 s.
#[test]
fn vxlan_device_deleted_is_recreated() {
    if !require_root("e2e::vxlan_device_deleted_is_recreated") {
        return;
    }
    let c = Cluster::new("devdel", VXLAN, 2);
    let s2 = c.subnet(2);
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    let mac1 = c.ok(mac_of(c.h(1), "flannel.1"), "h1's MAC");
    let mac2 = c.ok(mac_of(c.h(2), "flannel.1"), "h2's MAC");

    c.sh(1, &["ip", "link", "del", "flannel.1"]);
    let t0 = Instant::now();
    let back = wait_until(REPAIR, POLL, || {
        Ok(VxlanPeerEntries::read(c.h(1), &s2, c.h(2).addr())?.complete(&s2, c.h(2).addr(), &mac2))
    });
    let now = VxlanPeerEntries::read(c.h(1), &s2, c.h(2).addr());
    c.check(back, || {
        format!(
            "flannel.1 and h2's entries not back on h1 {:?} after deletion: {now:#?}",
            t0.elapsed()
        )
    });
    let link = c.sh(1, &["ip", "-d", "link", "show", "flannel.1"]);
    c.check(
        link.contains("vxlan id 1 ") && link.contains("mtu 1450"),
        || format!("re-created flannel.1: {link}"),
    );
    let mac1_after = c.ok(mac_of(c.h(1), "flannel.1"), "h1's MAC after");
    let lease1 = c.lease_of(1).unwrap_or_default();
    c.check(lease1.contains(&format!("\"VtepMAC\":\"{mac1_after}\"")), || {
        format!("h1's lease {lease1} does not name the MAC of its new device {mac1_after} (was {mac1})")
    });
    // Traffic flows both ways again within 2 s of the deletion (one echo, 200 ms to answer).
    let (a1, a2) = (p1.addr().to_string(), p2.addr().to_string());
    let echo = |from: &Pod, to: &str| from.exec(&["ping", "-c", "1", "-W", "0.2", "-q", to]);
    let flowing = wait_until(REPAIR.saturating_sub(t0.elapsed()), POLL, || {
        Ok(echo(&p1, &a2).is_ok() && echo(&p2, &a1).is_ok())
    });
    c.check(flowing, || {
        format!(
            "no traffic between p1 and p2 {:?} after flannel.1 was deleted on h1",
            t0.elapsed()
        )
    });
    eprintln!(
        "traffic back {:?} after flannel.1 was deleted",
        t0.elapsed()
    );
    c.ping_no_loss(&p1, p2.addr(), 3);
    c.ping_no_loss(&p2, p1.addr(), 3);
}

/// 6. A peer's route, neighbour or FDB entry removed by hand on h1 is restored within 2 s.
#[test]
fn vxlan_entries_removed_by_hand_are_restored() {
    if !require_root("e2e::vxlan_entries_removed_by_hand_are_restored") {
        return;
    }
    let c = Cluster::new("restore", VXLAN, 2);
    let s2 = c.subnet(2);
    let h2 = c.h(2).addr();
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    let mac2 = c.ok(mac_of(c.h(2), "flannel.1"), "h2's MAC");
    let vtep2 = s2.subnet.to_string();
    let h2s = h2.to_string();
    let cidr2 = s2.cidr();
    let removals: [(&str, Vec<&str>); 3] = [
        ("route", vec!["ip", "route", "del", &cidr2]),
        (
            "neighbour",
            vec!["ip", "neigh", "del", &vtep2, "dev", "flannel.1"],
        ),
        (
            "fdb entry",
            vec![
                "bridge",
                "fdb",
                "del",
                &mac2,
                "dev",
                "flannel.1",
                "dst",
                &h2s,
                "self",
            ],
        ),
    ];
    for (what, cmd) in &removals {
        c.sh(1, cmd);
        let after_del = VxlanPeerEntries::read(c.h(1), &s2, h2);
        let t0 = Instant::now();
        let back = wait_until(REPAIR, POLL, || {
            Ok(VxlanPeerEntries::read(c.h(1), &s2, h2)?.complete(&s2, h2, &mac2))
        });
        let now = VxlanPeerEntries::read(c.h(1), &s2, h2);
        c.check(back, || {
            format!(
                "{what} removed by hand on h1 not restored within {:?}; right after removal: \
                 {after_del:#?}; now: {now:#?}",
                t0.elapsed()
            )
        });
    }
    c.ping_no_loss(&p1, p2.addr(), 3);
}

/// 7. A route inside the pod network that flanneld did not make (`198.18.250.0/24 via
///    192.0.2.200 dev eth0`) survives a flanneld restart, a peer joining and a peer leaving.
fn foreign_route_survives(name: &str, config: &str, backend_data: &str) {
    let mut c = Cluster::new(name, config, 2);
    let foreign = "198.18.250.0/24 via 192.0.2.200 dev eth0";
    let mut cmd = vec!["ip", "route", "add"];
    cmd.extend(foreign.split(' '));
    c.sh(1, &cmd);
    let has_foreign = |c: &Cluster| {
        c.sh(1, &["ip", "route", "show"])
            .lines()
            .any(|l| l.trim() == foreign)
    };

    // Restart: start-up reconcile with the foreign route present.
    let r = c.f(1).restart();
    c.ok(r, "restarting flanneld on h1");
    let r = c.f(1).wait_ready(READY);
    c.ok(r, "flanneld on h1 ready after restart");
    // A peer-driven pass after the restart proves the restarted daemon reconciled: wait for a
    // new (hand-made) peer lease to show up, then remove it again.
    let fake = "198.18.251.0/24";
    let value = format!(
        r#"{{"PublicIP":"192.0.2.201","PublicIPv6":null,"BackendType":"{}"{backend_data}}}"#,
        if config.contains("vxlan") {
            "vxlan"
        } else {
            "host-gw"
        }
    );
    let r = c
        .etcd
        .etcdctl(&["put", &format!("{LEASES}198.18.251.0-24"), &value]);
    c.ok(r, "adding a hand-made lease");
    let has_fake = |c: &Cluster| {
        c.sh(1, &["ip", "route", "show"])
            .lines()
            .any(|l| l.starts_with(&format!("{fake} ")))
    };
    let added = wait_until(Duration::from_secs(5), POLL, || Ok(has_fake(&c)));
    c.check(added, || {
        format!(
            "h1 has no route for the hand-made lease {fake}:\n{}",
            route_table(c.h(1).ns())
        )
    });
    c.check(has_foreign(&c), || {
        format!(
            "the foreign route is gone after restart + peer added:\n{}",
            route_table(c.h(1).ns())
        )
    });
    let r = c
        .etcd
        .etcdctl(&["del", &format!("{LEASES}198.18.251.0-24")]);
    c.ok(r, "deleting the hand-made lease");
    let removed = wait_until(Duration::from_secs(5), POLL, || Ok(!has_fake(&c)));
    c.check(removed, || {
        format!(
            "h1 kept the route of the deleted lease {fake}:\n{}",
            route_table(c.h(1).ns())
        )
    });
    c.check(has_foreign(&c), || {
        format!(
            "the foreign route is gone after a peer left:\n{}",
            route_table(c.h(1).ns())
        )
    });
    // And once more after a second restart (the journal must not have picked it up).
    let r = c.f(1).restart();
    c.ok(r, "restarting flanneld on h1 again");
    let r = c.f(1).wait_ready(READY);
    c.ok(r, "flanneld on h1 ready after the second restart");
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    c.check(has_foreign(&c), || {
        format!(
            "the foreign route is gone after the second restart:\n{}",
            route_table(c.h(1).ns())
        )
    });
}

#[test]
fn host_gw_foreign_route_survives() {
    if !require_root("e2e::host_gw_foreign_route_survives") {
        return;
    }
    foreign_route_survives("foreigngw", HOST_GW, "");
}

#[test]
fn vxlan_foreign_route_survives() {
    if !require_root("e2e::vxlan_foreign_route_survives") {
        return;
    }
    foreign_route_survives(
        "foreignvx",
        VXLAN,
        r#","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:c9"}"#,
    );
}

/// 8. h1's lease deleted by hand: flanneld keeps running, the key comes back with the same
///    subnet within a few seconds, `subnet.env` is unchanged and pods still reach each other.
fn lease_deleted_by_hand_comes_back(name: &str, backend: Backend) {
    let mut c = Cluster::new(name, backend.config(), 2);
    let s1 = c.subnet(1);
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    let before = c.lease_of(1);
    c.check(before.is_some(), || "h1 has no lease".to_owned());
    let key = lease_key(&s1);
    let r = c.etcd.etcdctl(&["del", &key]);
    let deleted = c.ok(r, "deleting h1's lease");
    c.check(deleted.trim() == "1", || {
        format!("etcdctl del {key}: {deleted:?}")
    });

    let back = wait_until(Duration::from_secs(5), POLL, || {
        Ok(c.etcd.leases()?.iter().any(|(k, _)| *k == key))
    });
    let leases = c.etcd.leases();
    c.check(back, || {
        format!("h1's lease {key} did not come back within 5 s; leases: {leases:#?}")
    });
    c.check(c.lease_of(1) == before, || {
        format!(
            "h1's lease value changed: {:?} -> {:?}",
            before,
            c.lease_of(1)
        )
    });
    thread::sleep(Duration::from_millis(500));
    let status = c.f(1).try_exit_status();
    c.check(status.is_none(), || {
        format!("flanneld on h1 exited after its lease was deleted: {status:?}")
    });
    let after = c.subnet(1);
    c.check(after.raw == s1.raw, || {
        format!("subnet.env changed:\n{}\n->\n{}", s1.raw, after.raw)
    });
    // h2 saw the delete and the re-creation: it must end up with h1's entries again.
    c.wait_ping(&p2, p1.addr(), Duration::from_secs(5));
    c.ping_no_loss(&p1, p2.addr(), 5);
    c.ping_no_loss(&p2, p1.addr(), 5);
    let peer1 = c.peer(backend, 1);
    c.check(peer1.present_on(c.h(2)).unwrap_or(false), || {
        "h2 does not hold h1's entries again".to_owned()
    });
}

#[test]
fn vxlan_lease_deleted_by_hand_comes_back() {
    if !require_root("e2e::vxlan_lease_deleted_by_hand_comes_back") {
        return;
    }
    lease_deleted_by_hand_comes_back("leasedelvx", Backend::Vxlan);
}

#[test]
fn host_gw_lease_deleted_by_hand_comes_back() {
    if !require_root("e2e::host_gw_lease_deleted_by_hand_comes_back") {
        return;
    }
    lease_deleted_by_hand_comes_back("leasedelgw", Backend::HostGw);
}

/// 9. Start-up on a host whose kernel tables are big (thousands of foreign routes, busy
///    neighbour table): every restart must come up, and the foreign routes stay untouched.
#[test]
fn vxlan_restarts_with_a_large_routing_table() {
    if !require_root("e2e::vxlan_restarts_with_a_large_routing_table") {
        return;
    }
    let mut c = Cluster::new("bigtable", VXLAN, 2);
    let batch = c.h(1).dir().join("routes.batch");
    let mut text = String::new();
    for i in 0..4000u32 {
        text.push_str(&format!(
            "route add 203.0.{}.{}/32 via 192.0.2.{} dev eth0\n",
            100 + i / 256,
            i % 256,
            10 + i % 200
        ));
    }
    std::fs::write(&batch, text).expect("writing the batch file");
    c.sh(1, &["ip", "-batch", &batch.to_string_lossy()]);
    let count = |c: &Cluster| c.sh(1, &["ip", "route", "show"]).lines().count();
    // Ready comes before the first programming pass: count once h2's entries are in place.
    let peer2 = c.peer(Backend::Vxlan, 2);
    c.wait_peer(&[1], &peer2, true, CONNECT);
    let before = count(&c);
    for round in 1..=10 {
        let r = c.f(1).restart();
        c.ok(r, &format!("restart #{round}"));
        let r = c.f(1).wait_ready(READY);
        c.ok(r, &format!("flanneld on h1 ready after restart #{round}"));
    }
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    let after = count(&c);
    c.check(after == before + 1, || {
        format!("h1 had {before} routes, now {after} (only cni0's subnet route is new)")
    });
}

/// How long etcd is down in the outage scenario.
const OUTAGE: Duration = Duration::from_secs(20);

/// 10. etcd stopped for 20 s: pods of h1 and h2 keep reaching each other throughout (10/s,
///     both ways, no loss) and neither flanneld exits. h3's flanneld, started during the
///     outage, keeps running and logs that it retries; once etcd is back it comes up, h1 and
///     h2 learn it, and its pod and theirs reach each other.
fn survives_an_etcd_outage(name: &str, backend: Backend) {
    let mut c = Cluster::new(name, backend.config(), 2);
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    c.wait_ping(&p2, p1.addr(), CONNECT);
    let r = c.etcd.stop();
    c.ok(r, "stopping etcd");
    let down = Instant::now();
    // Pings at 10/s covering the outage (all but its last second, left for the checks).
    let count = u32::try_from(OUTAGE.as_millis() / 100).expect("small") - 10;
    let pinger = |from: &Pod, to: Ipv4Addr| {
        let from = from.clone();
        thread::spawn(move || from.ping(to, count, Duration::from_millis(100)))
    };
    let pings = [pinger(&p1, p2.addr()), pinger(&p2, p1.addr())];

    let n3 = c.start_host();
    let retrying = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(c.flanneld[n3 - 1].log().contains("retrying"))
    });
    c.check(retrying, || {
        "flanneld on h3 does not log that it retries while etcd is down".to_owned()
    });
    for (i, pings) in pings.into_iter().enumerate() {
        let r = pings.join().expect("ping thread");
        let r = c.ok(r, "pinging during the outage");
        c.check(r.sent == count && r.received == count, || {
            format!("pings h{} -> h{} during the outage: {r:?}", i + 1, 2 - i)
        });
    }
    thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    for n in 1..=3 {
        let status = c.f(n).try_exit_status();
        c.check(status.is_none(), || {
            format!("flanneld on h{n} exited while etcd was down: {status:?}")
        });
    }
    c.check(!c.h(n3).subnet_file().exists(), || {
        "h3 wrote subnet.env while etcd was down".to_owned()
    });
    let r = c.etcd.start();
    c.ok(r, "starting etcd again");
    eprintln!("etcd was down for {:?}", down.elapsed());

    let r = c.f(n3).wait_ready(READY);
    c.ok(r, "flanneld on h3 ready after etcd came back");
    let peer3 = c.peer(backend, n3);
    c.wait_peer(&[1, 2], &peer3, true, CONNECT);
    let p3 = c.pod(n3, 1);
    for p in [&p1, &p2] {
        c.wait_ping(p, p3.addr(), CONNECT);
        c.wait_ping(&p3, p.addr(), CONNECT);
    }
    c.ping_no_loss(&p1, p2.addr(), 3);
}

#[test]
fn vxlan_survives_an_etcd_outage() {
    if !require_root("e2e::vxlan_survives_an_etcd_outage") {
        return;
    }
    survives_an_etcd_outage("etcdoutvx", Backend::Vxlan);
}

#[test]
fn host_gw_survives_an_etcd_outage() {
    if !require_root("e2e::host_gw_survives_an_etcd_outage") {
        return;
    }
    survives_an_etcd_outage("etcdoutgw", Backend::HostGw);
}

/// IPv6 part of a host's subnet.env (panics with logs when absent).
fn v6_of(c: &Cluster, s: &HostSubnet) -> flannel_testkit::topology::HostSubnet6 {
    match s.ipv6 {
        Some(v6) => v6,
        None => panic!("no FLANNEL_IPV6_SUBNET in {s:?}{}", c.logs()),
    }
}

/// The `blackhole …` lines of both families on host n.
fn blackholes(c: &Cluster, n: usize) -> Vec<String> {
    let mut out: Vec<String> = c
        .sh(n, &["ip", "route", "show", "type", "blackhole"])
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    out.extend(
        c.sh(n, &["ip", "-6", "route", "show", "type", "blackhole"])
            .lines()
            .map(|l| l.trim().to_owned()),
    );
    out.retain(|l| !l.is_empty());
    out
}

/// The blackhole lines flanneld keeps for subnet.env `s`.
fn expected_blackholes(c: &Cluster, s: &HostSubnet) -> Vec<String> {
    vec![
        format!("blackhole {} metric 1024", s.cidr()),
        format!(
            "blackhole {} dev lo metric 1024 pref medium",
            v6_of(c, s).cidr()
        ),
    ]
}

/// 11. Dual-stack vxlan (with `--ip-blackhole-route`, next to the pods' bridge): both
///     devices with Flannel's attributes, both address families in the lease and in
///     subnet.env, Flannel's IPv6 entries, and pod-to-pod ping and ping6 both ways.
#[test]
fn vxlan_dual_stack_two_hosts() {
    if !require_root("e2e::vxlan_dual_stack_two_hosts") {
        return;
    }
    let c = Cluster::dual("vxlandual", VXLAN_DUAL, 2, &["--ip-blackhole-route"]);
    let (s1, s2) = (c.subnet(1), c.subnet(2));
    let (v6_1, v6_2) = (v6_of(&c, &s1), v6_of(&c, &s2));
    c.check(v6_1.subnet != v6_2.subnet && v6_1.prefix_len == 64, || {
        format!("IPv6 subnets: {v6_1:?} {v6_2:?}")
    });
    let expected = format!(
        "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET={}/24\nFLANNEL_IPV6_NETWORK=2001:db8:f000::/48\n\
         FLANNEL_IPV6_SUBNET={}/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
        s1.gateway(),
        v6_1.gateway()
    );
    c.check(s1.raw == expected, || {
        format!("subnet.env:\n{}\nwanted:\n{expected}", s1.raw)
    });

    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    let (a1, a2) = (p1.addr6().expect("v6 pod"), p2.addr6().expect("v6 pod"));
    c.wait_ping(&p1, a2, CONNECT);
    c.ping_no_loss(&p1, a2, 5);
    c.ping_no_loss(&p2, a1, 5);
    c.wait_ping(&p1, p2.addr(), CONNECT);
    c.ping_no_loss(&p2, p1.addr(), 5);

    let link = c.sh(1, &["ip", "-d", "link", "show", "flannel-v6.1"]);
    for want in [
        "mtu 1430",
        "vxlan id 1 ",
        "local 2001:db8:1::1 ",
        "dev eth0 ",
        "dstport 8472 ",
        "nolearning",
    ] {
        c.check(link.contains(want), || {
            format!("flannel-v6.1 on h1 lacks {want:?}:\n{link}")
        });
    }
    let ra = c.sh(
        1,
        &["cat", "/proc/sys/net/ipv6/conf/flannel-v6.1/accept_ra"],
    );
    c.check(ra.trim() == "0", || {
        format!("accept_ra of flannel-v6.1: {ra}")
    });
    let addrs = c.sh(
        1,
        &["ip", "-6", "-o", "addr", "show", "dev", "flannel-v6.1"],
    );
    c.check(
        addrs.contains(&format!("inet6 {}/128 scope global", v6_1.subnet)),
        || format!("flannel-v6.1 addresses: {addrs}"),
    );

    let mac2 = c.ok(mac_of(c.h(2), "flannel.1"), "h2's vtep MAC");
    let mac2v6 = c.ok(mac_of(c.h(2), "flannel-v6.1"), "h2's v6 vtep MAC");
    c.check(mac2 != mac2v6, || {
        format!("same MAC on both devices: {mac2}")
    });
    let lease2 = c.lease_of(2).unwrap_or_default();
    let want = format!(
        r#"{{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8:1::2","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac2}"}},"BackendV6Data":{{"VNI":1,"VtepMAC":"{mac2v6}"}}}}"#
    );
    c.check(lease2 == want, || {
        format!("h2's lease:\n{lease2}\nwanted:\n{want}")
    });

    let route = format!(
        "{} via {} dev flannel-v6.1 metric 1024 onlink pref medium",
        v6_2.cidr(),
        v6_2.subnet
    );
    let routes = c.sh(1, &["ip", "-6", "route", "show", "dev", "flannel-v6.1"]);
    let route_dev = route.replace(" dev flannel-v6.1", "");
    c.check(routes.lines().any(|l| l.trim() == route_dev), || {
        format!("h1 lacks {route:?}:\n{routes}")
    });
    let neigh = c.sh(1, &["ip", "-6", "neigh", "show", "dev", "flannel-v6.1"]);
    let want_neigh = format!("{} lladdr {mac2v6} PERMANENT", v6_2.subnet);
    c.check(neigh.lines().any(|l| l.trim() == want_neigh), || {
        format!("h1 lacks neighbour {want_neigh:?}:\n{neigh}")
    });
    let fdb = c.sh(1, &["bridge", "fdb", "show", "dev", "flannel-v6.1"]);
    let want_fdb = format!("{mac2v6} dst 2001:db8:1::2 self permanent");
    c.check(fdb.lines().any(|l| l.trim() == want_fdb), || {
        format!("h1 lacks fdb entry {want_fdb:?}:\n{fdb}")
    });
    // The IPv4 side is unchanged by IPv6.
    let entries = c.ok(
        VxlanPeerEntries::read(c.h(1), &s2, c.h(2).addr()),
        "reading h1's entries",
    );
    c.check(entries.complete(&s2, c.h(2).addr(), &mac2), || {
        format!("h1's IPv4 entries for h2: {entries:#?}")
    });
    // Blackholes for both subnets, and the bridge's routes still win (pods answered above).
    for n in [1, 2] {
        let want = expected_blackholes(&c, &c.subnet(n));
        let have = blackholes(&c, n);
        c.check(have == want, || {
            format!("h{n} blackholes: {have:#?}, wanted {want:#?}")
        });
    }
}

/// 12. Dual-stack host-gw: pod-to-pod ping6 and the IPv6 route via the peer's IPv6 underlay
///     address.
#[test]
fn host_gw_dual_stack_two_hosts() {
    if !require_root("e2e::host_gw_dual_stack_two_hosts") {
        return;
    }
    let c = Cluster::dual("hostgwdual", HOST_GW_DUAL, 2, &[]);
    let (s1, s2) = (c.subnet(1), c.subnet(2));
    c.check(s1.mtu == 1500, || {
        format!("host-gw MTU is the iface's: {s1:?}")
    });
    let v6_2 = v6_of(&c, &s2);
    let p1 = c.pod(1, 1);
    let p2 = c.pod(2, 1);
    let (a1, a2) = (p1.addr6().expect("v6 pod"), p2.addr6().expect("v6 pod"));
    c.wait_ping(&p1, a2, CONNECT);
    c.ping_no_loss(&p1, a2, 5);
    c.ping_no_loss(&p2, a1, 5);
    c.ping_no_loss(&p1, p2.addr(), 3);
    let want = format!(
        "{} via 2001:db8:1::2 dev eth0 metric 1024 pref medium",
        v6_2.cidr()
    );
    let routes = c.sh(1, &["ip", "-6", "route", "show"]);
    c.check(routes.lines().any(|l| l.trim() == want), || {
        format!("h1 lacks {want:?}:\n{routes}")
    });
    let lease2 = c.lease_of(2).unwrap_or_default();
    let want = r#"{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8:1::2","BackendType":"host-gw"}"#;
    c.check(lease2 == want, || format!("h2's lease: {lease2}"));
    c.check(blackholes(&c, 1).is_empty(), || {
        "blackhole routes without --ip-blackhole-route".to_owned()
    });
}

/// 13. `--ip-blackhole-route` with the alloc backend (no other data path): blackhole routes
///     for both subnets, put back within 2 s when deleted by hand, and moved when the lease is
///     taken over and flanneld re-acquires another subnet.
#[test]
fn alloc_blackhole_routes_follow_our_subnet() {
    if !require_root("e2e::alloc_blackhole_routes_follow_our_subnet") {
        return;
    }
    let c = Cluster::dual(
        "blackhole",
        ALLOC_DUAL,
        1,
        &["--ip-blackhole-route", "--iptables-resync=1"],
    );
    let s1 = c.subnet(1);
    let want = expected_blackholes(&c, &s1);
    let present = wait_until(Duration::from_secs(5), POLL, || {
        Ok(blackholes(&c, 1) == want)
    });
    c.check(present, || {
        format!("h1 blackholes: {:#?}, wanted {want:#?}", blackholes(&c, 1))
    });
    let lease = c.lease_of(1).unwrap_or_default();
    c.check(
        lease == r#"{"PublicIP":"192.0.2.1","PublicIPv6":null}"#,
        || format!("alloc lease: {lease}"),
    );

    for dst in [s1.cidr(), v6_of(&c, &s1).cidr()] {
        c.sh(1, &["ip", "route", "del", "blackhole", &dst]);
        let t0 = Instant::now();
        let back = wait_until(REPAIR, POLL, || Ok(blackholes(&c, 1) == want));
        c.check(back, || {
            format!(
                "blackhole {dst} not back {:?} after deletion: {:#?}",
                t0.elapsed(),
                blackholes(&c, 1)
            )
        });
    }

    // Another host takes our subnet over: flanneld acquires a new one and moves the blackholes.
    let key = lease_key(&s1);
    let r = c.etcd.etcdctl(&[
        "put",
        &key,
        r#"{"PublicIP":"192.0.2.201","PublicIPv6":null}"#,
    ]);
    c.ok(r, "taking h1's lease over");
    let moved = wait_until(Duration::from_secs(10), POLL, || {
        Ok(c.h(1).subnet()?.subnet != s1.subnet)
    });
    c.check(moved, || "h1 did not move to another subnet".to_owned());
    let s1b = c.subnet(1);
    let want_b = expected_blackholes(&c, &s1b);
    let followed = wait_until(Duration::from_secs(5), POLL, || {
        Ok(blackholes(&c, 1) == want_b)
    });
    c.check(followed, || {
        format!(
            "after moving from {} to {}: blackholes {:#?}, wanted {want_b:#?}",
            s1.cidr(),
            s1b.cidr(),
            blackholes(&c, 1)
        )
    });
}
