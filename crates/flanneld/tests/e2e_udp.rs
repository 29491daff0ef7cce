//! The udp backend against the real kernel: two hosts, `flannel0` TUN devices and the
//! userspace proxy on UDP 8285; pods reach each other both ways without loss; the lease
//! carries no `BackendType` (as Flannel writes it); `flannel0` disappears when flanneld stops.

use std::time::Duration;

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{wait_until, Etcd, Flanneld, Host, Lab};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const READY: Duration = Duration::from_secs(30);
const UDP: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}"#;

struct Two {
    flanneld: Vec<Flanneld>,
    hosts: Vec<Host>,
    etcd: Etcd,
    _lab: Lab,
}

impl Two {
    fn new(name: &str, config: &str) -> Two {
        let lab = Lab::new(name).expect("lab");
        let etcd = lab.start_etcd().expect("etcd");
        etcd.put_config(config).expect("config");
        let mut two = Two {
            flanneld: Vec::new(),
            hosts: Vec::new(),
            etcd,
            _lab: lab,
        };
        for n in 1..=2u8 {
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
        self.flanneld
            .iter()
            .map(|f| format!("\n--- {} ---\n{}", f.host().ns(), f.log_tail(40)))
            .collect()
    }
}

#[test]
fn udp_backend_carries_pod_traffic_both_ways() {
    if !require_root("udp_backend_carries_pod_traffic_both_ways") {
        return;
    }
    let mut two = Two::new("udp", UDP);

    for host in &two.hosts {
        let subnet = host.subnet().expect("subnet.env");
        let link = host
            .exec(&["ip", "-d", "link", "show", "flannel0"])
            .expect("flannel0");
        assert!(link.contains("tun type tun"), "a TUN device: {link}");
        assert!(
            link.contains("pi off"),
            "no packet information header: {link}"
        );
        assert!(
            link.contains("persist off"),
            "gone with the process: {link}"
        );
        assert!(link.contains(",UP"), "up: {link}");
        let underlay = host
            .exec(&["ip", "-o", "link", "show", "eth0"])
            .expect("eth0");
        let ext_mtu: u32 = underlay
            .split_whitespace()
            .skip_while(|w| *w != "mtu")
            .nth(1)
            .and_then(|m| m.parse().ok())
            .expect("eth0 mtu");
        assert_eq!(subnet.mtu, ext_mtu - 28, "FLANNEL_MTU = ext MTU - 28");
        assert!(
            link.contains(&format!("mtu {} ", subnet.mtu)),
            "flannel0 MTU = FLANNEL_MTU: {link}"
        );
        let addr = host
            .exec(&["ip", "-4", "addr", "show", "dev", "flannel0"])
            .expect("addr");
        assert!(
            addr.contains(&format!("inet {}/32", subnet.subnet)),
            "the subnet's address as a /32: {addr}"
        );
    }

    // The route of the network through the device comes once the peers are loaded.
    for host in &two.hosts {
        let routed = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            Ok(host
                .exec(&["ip", "route", "show", "198.18.0.0/16"])?
                .contains("dev flannel0"))
        });
        assert!(routed, "route 198.18.0.0/16 dev flannel0{}", two.logs());
    }

    let p1 = two.hosts[0].add_pod(1).expect("pod 1");
    let p2 = two.hosts[1].add_pod(1).expect("pod 2");
    for (from, to, what) in [(&p1, &p2, "h1 → h2"), (&p2, &p1, "h2 → h1")] {
        // The peer table fills from etcd; allow a moment for it, then require no loss.
        let first = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            Ok(from
                .ping(to.addr(), 1, Duration::from_millis(200))?
                .all_received())
        });
        assert!(first, "{what} unreachable{}", two.logs());
        let r = from
            .ping(to.addr(), 10, Duration::from_millis(50))
            .expect("ping");
        assert!(r.all_received(), "{what}: {r:?}{}", two.logs());
    }

    let leases = two.etcd.leases().expect("leases");
    assert_eq!(leases.len(), 2, "{leases:?}");
    for (key, value) in &leases {
        assert!(
            !value.contains("BackendType"),
            "udp leases carry no BackendType: {key} = {value}"
        );
        assert!(value.contains(r#""PublicIP":"#), "{key} = {value}");
    }

    // As in Flannel, the TUN device lives as long as the process.
    two.flanneld[0].stop().expect("stop h1");
    let gone = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        Ok(!two.hosts[0]
            .run(&["ip", "link", "show", "flannel0"])?
            .status
            .success())
    });
    assert!(gone, "flannel0 is removed on shutdown{}", two.logs());
}
