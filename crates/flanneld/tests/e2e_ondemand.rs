//! The vxlan on-demand mode (`"Mode":"on-demand"`, Flannel's original design) against the
//! real kernel: nothing is programmed per peer until traffic makes the kernel ask; a miss
//! for an address no lease covers changes nothing; an on-demand host and a default-mode host
//! reach each other's pods.

use std::net::Ipv4Addr;
use std::time::Duration;

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{log_tails, wait_until, Etcd, Flanneld, Host, Lab};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const READY: Duration = Duration::from_secs(30);
const ON_DEMAND: &str =
    r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","Mode":"on-demand"}}"#;
const DEFAULT: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;

struct Two {
    flanneld: Vec<Flanneld>,
    hosts: Vec<Host>,
    etcd: Etcd,
    _lab: Lab,
}

impl Two {
    /// Two hosts sharing one etcd prefix. flanneld reads the network config once at start,
    /// so host n gets `configs[n-1]` by rewriting the config just before starting it.
    fn new(name: &str, configs: [&str; 2]) -> Two {
        let lab = Lab::new(name).expect("lab");
        let etcd = lab.start_etcd().expect("etcd");
        let mut two = Two {
            flanneld: Vec::new(),
            hosts: Vec::new(),
            etcd,
            _lab: lab,
        };
        for (i, config) in configs.iter().enumerate() {
            two.etcd.put_config(config).expect("config");
            let n = u8::try_from(i + 1).expect("small");
            let host = two._lab.add_host(n).expect("host");
            let mut f = host.start_flanneld(BIN, &[]).expect("start");
            if let Err(e) = f.wait_ready(READY) {
                panic!("h{n} not ready: {e:#}\n{}", f.log_tail(40));
            }
            two.hosts.push(host);
            two.flanneld.push(f);
        }
        two
    }

    fn logs(&self) -> String {
        log_tails(&self.flanneld, 40)
    }

    fn neigh(&self, n: usize) -> String {
        self.hosts[n - 1]
            .exec(&["ip", "neigh", "show", "dev", "flannel.1"])
            .unwrap_or_default()
    }
}

#[test]
fn on_demand_learns_only_after_a_miss_and_ignores_unknown_addresses() {
    if !require_root("on_demand_learns_only_after_a_miss_and_ignores_unknown_addresses") {
        return;
    }
    let two = Two::new("ondemand", [ON_DEMAND, ON_DEMAND]);
    let link = two.hosts[0]
        .exec(&["ip", "-d", "link", "show", "flannel.1"])
        .expect("link");
    assert!(link.contains("l2miss") && link.contains("l3miss"), "{link}");
    let route = two.hosts[0]
        .exec(&["ip", "route", "show", "198.18.0.0/16"])
        .expect("route");
    assert!(
        route.contains("dev flannel.1"),
        "one route for the network: {route}"
    );
    let p1 = two.hosts[0].add_pod(1).expect("pod 1");
    let p2 = two.hosts[1].add_pod(1).expect("pod 2");
    // Peers are known (from etcd) but nothing is programmed for them yet.
    assert_eq!(
        two.neigh(1).trim(),
        "",
        "no entries before traffic{}",
        two.logs()
    );

    // A destination no lease covers: the kernel asks, flanneld ignores, nothing appears.
    let unknown = Ipv4Addr::new(198, 18, 250, 9);
    let _ = p1.ping(unknown, 2, Duration::from_millis(200));
    assert!(
        !two.neigh(1).contains("198.18.250.9 lladdr"),
        "no answer for an unknown address: {}{}",
        two.neigh(1),
        two.logs()
    );

    // Traffic to the peer's pod: the first packets may be lost while the miss is answered.
    let reached = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(p1
            .ping(p2.addr(), 1, Duration::from_millis(200))?
            .all_received())
    });
    assert!(reached, "pod on h2 unreachable{}", two.logs());
    let neigh = two.neigh(1);
    assert!(
        neigh.contains(&format!("{} lladdr", p2.addr())),
        "a learned neighbour for the remote pod: {neigh}{}",
        two.logs()
    );
    assert!(
        !neigh.contains("PERMANENT"),
        "learned entries age out: {neigh}"
    );
}

#[test]
fn an_on_demand_host_and_a_default_host_interoperate() {
    if !require_root("an_on_demand_host_and_a_default_host_interoperate") {
        return;
    }
    let two = Two::new("mixedmode", [ON_DEMAND, DEFAULT]);
    let p1 = two.hosts[0].add_pod(1).expect("pod 1");
    let p2 = two.hosts[1].add_pod(1).expect("pod 2");
    for (from, to, what) in [
        (&p1, &p2, "on-demand → default"),
        (&p2, &p1, "default → on-demand"),
    ] {
        let reached = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            Ok(from
                .ping(to.addr(), 1, Duration::from_millis(200))?
                .all_received())
        });
        assert!(reached, "{what} unreachable{}", two.logs());
    }
    let leases = two.etcd.leases().expect("leases");
    assert!(
        leases
            .iter()
            .all(|(_, v)| v.contains(r#""BackendType":"vxlan""#)),
        "same lease format in both modes: {leases:?}"
    );
}
