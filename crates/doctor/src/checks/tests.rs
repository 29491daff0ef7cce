//! Every check against a healthy node with one fact changed.

use std::net::Ipv4Addr;

use flannel_model::{Lease, LeaseAttrs, NetworkConfig, RawJson, SubnetEnv, SubnetKey};
use flannel_planner::backend::{self, Inputs, Stored, Underlay};
use flannel_planner::state::KernelState;

use super::*;
use crate::facts::{BackendFacts, ExtIface, LinkMtu, PeerFacts, TxChecksum};

fn key(s: &str) -> SubnetKey {
    SubnetKey {
        ipv4: s.parse().expect("net"),
        ipv6: None,
    }
}

fn lease(i: u8) -> Lease {
    Lease {
        subnet: key(&format!("198.18.{i}.0/24")),
        attrs: LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 0, 2, i),
            public_ipv6: None,
            backend_type: "vxlan".into(),
            backend_data: Some(
                RawJson::new(&format!(
                    r#"{{"VNI":1,"VtepMAC":"0e:00:00:00:00:{i:02x}"}}"#
                ))
                .expect("json"),
            ),
            backend_v6_data: None,
        },
        expiration: None,
    }
}

/// Host 1 of a vxlan network with peer 2, everything in place.
fn healthy() -> NodeFacts {
    let mut n = NetworkConfig::parse(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#)
        .expect("config");
    n.check().expect("valid");
    let underlay = Underlay {
        name: "eth0".into(),
        index: 2,
        mtu: 1500,
        iface_addr: Some(Ipv4Addr::new(192, 0, 2, 1)),
        iface_v6_addr: None,
        public_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
        public_ipv6: None,
    };
    let b = backend::build(&Inputs {
        network: &n,
        underlay: &underlay,
        stored: Stored::default(),
        wireguard: None,
    })
    .expect("backend");
    let own = lease(1);
    let (base, _) = b.desired(&own.subnet, &mut std::iter::empty(), &|_| false);
    let peer = lease(2);
    let (with_peer, _) = b.desired(&own.subnet, &mut [peer.clone()].iter(), &|_| false);
    let want = KernelState {
        routes: with_peer.routes.difference(&base.routes).cloned().collect(),
        neighs: with_peer.neighs.difference(&base.neighs).cloned().collect(),
        fdb: with_peer.fdb.difference(&base.fdb).cloned().collect(),
        ..KernelState::default()
    };
    NodeFacts {
        daemon: Some(Daemon::Ready),
        subnet_file: "/run/flannel/subnet.env".into(),
        subnet_env: Some(SubnetFile::Present(SubnetEnv::parse(
            "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        ))),
        ext_iface: Some(Ok(ExtIface {
            name: "eth0".into(),
            mtu: 1500,
            public_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
        })),
        registry_error: None,
        own_lease: Some(own),
        other_leases: vec![peer.clone()],
        backend: Some(BackendFacts {
            name: b.name().into(),
            pod_mtu: b.pod_mtu(),
            devs: b.owned_devs(),
            udp_port: Some(8472),
            base: base.clone(),
        }),
        backend_error: None,
        peers: vec![PeerFacts { lease: peer, want }],
        observed: Some(with_peer),
        dev_mtus: vec![],
        pod_links: vec![
            LinkMtu {
                name: "cni0".into(),
                mtu: 1450,
            },
            LinkMtu {
                name: "veth1".into(),
                mtu: 1450,
            },
        ],
        kernel_release: "6.1.0-18-amd64".into(),
        tx_checksum: vec![TxChecksum {
            dev: "flannel.1".into(),
            on: Some(true),
        }],
        rp_filter: vec![("all".into(), 0), ("flannel.1".into(), 0)],
        iptables: Some("*filter\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n".into()),
    }
}

fn kinds(f: &NodeFacts) -> Vec<&'static str> {
    diagnose(f).iter().map(|x| x.kind.as_str()).collect()
}

fn text(f: &NodeFacts) -> String {
    crate::finding::render_all(&diagnose(f))
}

#[test]
fn a_healthy_node_has_no_finding() {
    assert_eq!(diagnose(&healthy()), vec![]);
}

#[test]
fn flanneld_not_running_or_not_ready() {
    let mut f = healthy();
    f.daemon = Some(Daemon::NotRunning {
        addr: "127.0.0.1:10299".into(),
        error: "connection refused".into(),
    });
    assert_eq!(kinds(&f), ["flanneld"]);
    assert!(text(&f).contains("flanneld is not running"));
    f.daemon = Some(Daemon::NotReady);
    assert!(text(&f).contains("not ready"));
}

#[test]
fn a_missing_subnet_env_is_named() {
    let mut f = healthy();
    f.subnet_env = Some(SubnetFile::Missing);
    assert_eq!(kinds(&f), ["subnet.env"]);
    assert!(text(&f).contains("/run/flannel/subnet.env (subnet.env) is missing"));
    f.subnet_env = Some(SubnetFile::Unreadable("permission denied".into()));
    assert!(text(&f).contains("cannot be read"));
}

#[test]
fn a_subnet_env_disagreeing_with_the_lease_or_mtu() {
    let mut f = healthy();
    f.subnet_env = Some(SubnetFile::Present(SubnetEnv::parse(
        "FLANNEL_SUBNET=198.18.7.1/24\nFLANNEL_MTU=1500\n",
    )));
    let t = text(&f);
    assert_eq!(kinds(&f), ["subnet.env", "subnet.env"]);
    assert!(
        t.contains("FLANNEL_SUBNET=198.18.7.1/24, but the lease is 198.18.1.0/24"),
        "{t}"
    );
    assert!(
        t.contains("FLANNEL_MTU=1500, but vxlan over this interface gives 1450"),
        "{t}"
    );
}

#[test]
fn no_registry_or_no_lease() {
    let mut f = healthy();
    f.registry_error = Some("etcd at http://192.0.2.254:2379: connection refused".into());
    assert!(kinds(&f).contains(&"lease"));
    let mut f = healthy();
    f.own_lease = None;
    assert!(text(&f).contains("No lease in the registry has PublicIP 192.0.2.1"));
}

#[test]
fn colliding_leases() {
    let mut f = healthy();
    let mut other = lease(9);
    other.subnet = key("198.18.0.0/23");
    f.other_leases.push(other);
    let mut twin = lease(3);
    twin.attrs.public_ip = Ipv4Addr::new(192, 0, 2, 1);
    f.other_leases.push(twin);
    let t = text(&f);
    assert_eq!(kinds(&f), ["collision", "collision"], "{t}");
    assert!(t.contains("198.18.0.0/23 is leased to 192.0.2.9"), "{t}");
    assert!(
        t.contains("Another lease advertises our public IP 192.0.2.1"),
        "{t}"
    );
}

#[test]
fn the_external_interface_gone_or_changed() {
    let mut f = healthy();
    f.ext_iface = Some(Err("no interface named eth0".into()));
    assert!(kinds(&f).contains(&"iface"));
    let mut f = healthy();
    f.ext_iface = Some(Ok(ExtIface {
        name: "eth0".into(),
        mtu: 1500,
        public_ip: Some(Ipv4Addr::new(192, 0, 2, 50)),
    }));
    assert!(text(&f).contains("eth0 has 192.0.2.50; the lease says 192.0.2.1"));
}

#[test]
fn a_missing_device_or_wrong_device_mtu() {
    let mut f = healthy();
    f.observed.as_mut().expect("observed").links.clear();
    assert!(kinds(&f).contains(&"link"));
    assert!(text(&f).contains("The vxlan device flannel.1 is missing"));
}

#[test]
fn a_deleted_fdb_entry_names_the_peer_and_a_stopped_flanneld() {
    let mut f = healthy();
    f.observed.as_mut().expect("observed").fdb.clear();
    f.daemon = Some(Daemon::NotRunning {
        addr: "127.0.0.1:10299".into(),
        error: "connection refused".into(),
    });
    let t = text(&f);
    assert_eq!(kinds(&f), ["flanneld", "fdb"], "{t}");
    assert!(
        t.contains("[fdb] The fdb entry for peer 192.0.2.2 (198.18.2.0/24) is missing."),
        "{t}"
    );
    assert!(
        t.contains("0e:00:00:00:00:02 dst 192.0.2.2 dev flannel.1"),
        "{t}"
    );
    assert!(t.contains("flanneld is not running"), "{t}");
}

#[test]
fn wrong_route_and_neighbour_entries() {
    let mut f = healthy();
    let obs = f.observed.as_mut().expect("observed");
    let mut r = obs.routes.pop_first().expect("route");
    r.gateway = Some("198.18.9.9".parse().expect("ip"));
    obs.routes.insert(r);
    let mut n = obs.neighs.pop_first().expect("neigh");
    n.mac = flannel_model::MacAddr([0x0e, 0, 0, 0, 0, 0x99]);
    obs.neighs.insert(n);
    let t = text(&f);
    // The wrong entries are also stale (no peer wants them).
    assert_eq!(kinds(&f), ["route", "neigh", "stale", "stale"], "{t}");
    assert!(
        t.contains("The route entry for peer 192.0.2.2 (198.18.2.0/24) is wrong"),
        "{t}"
    );
    assert!(t.contains("0e:00:00:00:00:99"), "{t}");
}

#[test]
fn a_stale_entry_of_a_gone_peer() {
    let mut f = healthy();
    f.peers.clear();
    f.other_leases.clear();
    let t = text(&f);
    assert_eq!(kinds(&f), ["stale", "stale", "stale"], "{t}");
    assert!(
        t.contains("route 198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink"),
        "{t}"
    );
}

#[test]
fn a_pod_mtu_larger_than_the_tunnel() {
    let mut f = healthy();
    f.pod_links[0].mtu = 1500;
    f.pod_links[1].mtu = 1500;
    let t = text(&f);
    assert_eq!(kinds(&f), ["mtu", "mtu"], "{t}");
    assert!(
        t.contains("cni0 has MTU 1500, larger than the tunnel's 1450"),
        "{t}"
    );
    assert!(t.contains("veth1 has MTU 1500"), "{t}");
}

#[test]
fn checksum_offload_on_a_buggy_kernel_only() {
    let mut f = healthy();
    assert!(!kinds(&f).contains(&"checksum"), "6.1 is fixed");
    f.kernel_release = "5.4.0-150-generic".into();
    let found = diagnose(&f);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, Kind::Checksum);
    assert_eq!(
        found[0].auto_fix,
        Some(AutoFix::TxChecksumOff {
            dev: "flannel.1".into()
        })
    );
    assert!(found[0]
        .fix
        .contains("ethtool -K flannel.1 tx-checksum-ip-generic off"));
    f.tx_checksum[0].on = Some(false);
    assert_eq!(diagnose(&f), vec![]);
}

#[test]
fn a_firewall_rule_dropping_the_vxlan_port() {
    let mut f = healthy();
    f.iptables = Some(
        "*filter\n-A INPUT -p udp -m udp --dport 8472 -j DROP\n-A INPUT -p udp -m udp --dport 84720 -j DROP\n-A FORWARD -p udp -m udp --dport 8472 -j DROP\nCOMMIT\n".into(),
    );
    let t = text(&f);
    assert_eq!(kinds(&f), ["firewall"], "{t}");
    assert!(
        t.contains("`-A INPUT -p udp -m udp --dport 8472 -j DROP`"),
        "{t}"
    );
    assert_eq!(
        blocking_rules("-A INPUT -s 192.0.2.9/32 -p udp -m udp --dport 8472 -j REJECT --reject-with icmp-port-unreachable", 8472).len(),
        1
    );
}

#[test]
fn strict_rp_filter_on_the_device_or_all() {
    let mut f = healthy();
    f.rp_filter = vec![("all".into(), 1), ("flannel.1".into(), 0)];
    assert_eq!(kinds(&f), ["rp_filter"]);
    f.rp_filter = vec![("all".into(), 0), ("flannel.1".into(), 2)];
    assert_eq!(diagnose(&f), vec![]);
    // The kernel takes the larger of the two: loose `all` wins over a strict device.
    f.rp_filter = vec![("all".into(), 2), ("flannel.1".into(), 1)];
    assert_eq!(diagnose(&f), vec![]);
    f.rp_filter = vec![("all".into(), 0), ("flannel.1".into(), 1)];
    assert!(text(&f).contains("net.ipv4.conf.flannel.1.rp_filter=1"));
}
