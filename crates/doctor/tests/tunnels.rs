//! wireguard and ipsec peers in doctor and status, with fixtures: what the planner's
//! desired-state functions want ([`wanted::peer_facts`], as flannelctl gathers it) against
//! what the kernel's readers would return (WireGuard device configs, XFRM policies and SAs).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use flannel_doctor::entries::{compare_peer, EntryState};
use flannel_doctor::facts::{BackendFacts, Daemon, NodeFacts, Registry, TunnelState};
use flannel_doctor::{diagnose, wanted, Kind};
use flannel_model::{
    Lease, LeaseAttrs, NetworkConfig, RawJson, SubnetKey, WgKey, WireguardLeaseData,
};
use flannel_planner::backend::{self, Backend, Inputs, Stored, Underlay};
use flannel_planner::ipsec::{Dir, Sa};
use flannel_planner::wireguard::{DeviceConfig, Implementation, WgPeer, WireguardHost};

fn underlay() -> Underlay {
    Underlay {
        name: "eth0".into(),
        index: 2,
        mtu: 1500,
        iface_addr: Some(Ipv4Addr::new(192, 0, 2, 1)),
        iface_v6_addr: None,
        public_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
        public_ipv6: None,
    }
}

fn network(backend: &str) -> NetworkConfig {
    let mut n = NetworkConfig::parse(&format!(
        r#"{{"Network":"198.18.0.0/16","Backend":{backend}}}"#
    ))
    .expect("config");
    n.check().expect("valid");
    n
}

fn lease(i: u8, backend_type: &str, data: Option<RawJson>) -> Lease {
    Lease {
        subnet: SubnetKey {
            ipv4: format!("198.18.{i}.0/24").parse().expect("net"),
            ipv6: None,
        },
        attrs: LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 0, 2, i),
            public_ipv6: None,
            backend_type: backend_type.into(),
            backend_data: data,
            backend_v6_data: None,
        },
        expiration: None,
    }
}

fn wg_key(i: u8) -> WgKey {
    WgKey([i; 32])
}

fn wg_lease(i: u8) -> Lease {
    let data = WireguardLeaseData {
        public_key: wg_key(i),
        port: 51820,
    };
    lease(i, "wireguard", Some(data.to_raw()))
}

fn facts_for(b: &dyn Backend, own: Lease, others: Vec<Lease>, tunnels: TunnelState) -> NodeFacts {
    let peers = wanted::peer_facts(b, &own, &others, &|_| false);
    let base = wanted::base(b, &own);
    NodeFacts {
        daemon: Some(Daemon::Ready),
        registry: Registry::Etcd {
            endpoints: "http://192.0.2.254:2379".into(),
        },
        own_lease: Some(own),
        other_leases: others,
        backend: Some(BackendFacts {
            name: b.name().into(),
            pod_mtu: b.pod_mtu(),
            devs: b.owned_devs(),
            udp_port: None,
            base: base.clone(),
        }),
        peers,
        observed: Some(base),
        tunnels,
        not_checked: wanted::not_checked(b),
        ..NodeFacts::default()
    }
}

/// Node 1 of a wireguard network with peer 2, the device holding what flanneld would set.
fn wireguard_node(implementation: Implementation) -> NodeFacts {
    let n = network(r#"{"Type":"wireguard"}"#);
    let b = backend::build(&Inputs {
        network: &n,
        underlay: &underlay(),
        stored: Stored::default(),
        wireguard: Some(WireguardHost {
            public_key: wg_key(1),
            implementation,
        }),
    })
    .expect("backend");
    let mut f = facts_for(&*b, wg_lease(1), vec![wg_lease(2)], TunnelState::default());
    let held: BTreeMap<WgKey, WgPeer> = f
        .peers
        .iter()
        .flat_map(|p| p.wg.iter().map(|(_, w)| (w.public_key, w.clone())))
        .collect();
    f.tunnels.wg_devices.insert(
        "flannel-wg".to_owned(),
        Some(DeviceConfig {
            name: "flannel-wg".into(),
            public_key: Some(wg_key(1)),
            listen_port: 51820,
            peers: held,
        }),
    );
    f
}

fn device(f: &mut NodeFacts) -> &mut DeviceConfig {
    f.tunnels
        .wg_devices
        .get_mut("flannel-wg")
        .and_then(Option::as_mut)
        .expect("flannel-wg")
}

#[test]
fn a_wireguard_peer_is_wanted_with_its_key_endpoint_and_subnet() {
    let f = wireguard_node(Implementation::Kernel);
    assert_eq!(f.peers.len(), 1);
    let (dev, want) = &f.peers[0].wg[0];
    assert_eq!(dev, "flannel-wg");
    assert_eq!(want.public_key, wg_key(2));
    assert_eq!(
        want.endpoint,
        Some(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 51820)))
    );
    let allowed: Vec<String> = want.allowed_ips.iter().map(ToString::to_string).collect();
    assert_eq!(allowed, ["198.18.2.0/24"]);
    assert_eq!(diagnose(&f), vec![], "all in place");
    assert!(f.not_checked.is_empty());
}

#[test]
fn a_wireguard_peer_wrong_missing_or_stale_is_named() {
    let mut f = wireguard_node(Implementation::Kernel);
    if let Some(p) = device(&mut f).peers.get_mut(&wg_key(2)) {
        p.endpoint = Some(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 9), 51820)));
    }
    let found = diagnose(&f);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, Kind::Wireguard);
    assert!(
        found[0]
            .problem
            .contains("peer 192.0.2.2 (198.18.2.0/24) is wrong"),
        "{found:#?}"
    );
    assert!(
        found[0].evidence.contains("endpoint 192.0.2.9:51820"),
        "{found:#?}"
    );

    let mut f = wireguard_node(Implementation::Kernel);
    let p = device(&mut f).peers.remove(&wg_key(2)).expect("peer 2");
    let observed = f.observed.clone().expect("observed");
    let entries = compare_peer(&f.peers[0], &observed, &f.tunnels);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, EntryState::Missing);
    // A peer under a key no lease publishes: stale.
    let other = WgPeer {
        public_key: wg_key(3),
        ..p
    };
    device(&mut f).peers.insert(wg_key(3), other);
    let kinds: Vec<Kind> = diagnose(&f).iter().map(|x| x.kind).collect();
    assert_eq!(kinds, [Kind::Wireguard, Kind::Stale]);

    // No such device: the peer is missing with it.
    let mut f = wireguard_node(Implementation::Kernel);
    f.tunnels.wg_devices.insert("flannel-wg".into(), None);
    let entries = compare_peer(&f.peers[0], &observed, &f.tunnels);
    assert_eq!(entries[0].state, EntryState::Missing);
}

#[test]
fn userspace_wireguard_says_what_it_cannot_check() {
    let f = wireguard_node(Implementation::Userspace);
    assert!(f.peers.iter().all(|p| p.wg.is_empty()));
    assert_eq!(f.not_checked.len(), 1);
    let text = flannel_doctor::finding::render_all(&diagnose(&f), &f.not_checked);
    assert!(!text.contains("healthy"), "{text}");
    assert!(
        text.contains("[not checked] wireguard runs inside flanneld (userspace implementation)"),
        "{text}"
    );
}

/// Node 1 of an ipsec network with peer 2 (and a vxlan lease), policies and SAs in place.
fn ipsec_node() -> NodeFacts {
    let psk = "0123456789abcdef".repeat(6);
    let n = network(&format!(r#"{{"Type":"ipsec","PSK":"{psk}"}}"#));
    let b = backend::build(&Inputs {
        network: &n,
        underlay: &underlay(),
        stored: Stored::default(),
        wireguard: None,
    })
    .expect("backend");
    let others = vec![lease(2, "ipsec", None), lease(3, "vxlan", None)];
    let mut f = facts_for(&*b, lease(1, "ipsec", None), others, TunnelState::default());
    let (a, z) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let sa = |src, dst, spi| Sa {
        src,
        dst,
        spi,
        reqid: 11,
    };
    f.tunnels.xfrm_policies = Some(f.peers.iter().flat_map(|p| p.xfrm.clone()).collect());
    f.tunnels.xfrm_sas = Some(vec![sa(a, z, 1), sa(z, a, 2)]);
    f
}

#[test]
fn ipsec_policies_and_sas_are_checked_per_peer() {
    let f = ipsec_node();
    assert_eq!(f.peers.len(), 1, "the vxlan lease is no ipsec peer");
    assert_eq!(f.peers[0].xfrm.len(), 3, "out, in, fwd");
    assert_eq!(diagnose(&f), vec![]);

    // The fwd policy gone and no SA back from the peer.
    let mut f = ipsec_node();
    if let Some(p) = &mut f.tunnels.xfrm_policies {
        p.retain(|p| p.dir != Dir::Fwd);
    }
    if let Some(s) = &mut f.tunnels.xfrm_sas {
        s.retain(|s| s.src == Ipv4Addr::new(192, 0, 2, 1));
    }
    let found = diagnose(&f);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|x| x.kind == Kind::Xfrm), "{found:#?}");
    assert!(found[0].evidence.contains("dir fwd"), "{found:#?}");
    assert!(
        found[1].evidence.contains("only 192.0.2.1 → 192.0.2.2"),
        "{found:#?}"
    );
    assert!(found[1].fix.contains("charon"), "{found:#?}");

    // The policies of a peer that is gone: stale.
    let mut f = ipsec_node();
    f.peers.clear();
    f.other_leases.clear();
    let found = diagnose(&f);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found.iter().all(|x| x.kind == Kind::Stale), "{found:#?}");
    assert!(
        found
            .iter()
            .any(|x| x.evidence.contains("dst 198.18.2.0/24 dir out")),
        "{found:#?}"
    );
}

#[test]
fn kube_mode_lease_findings_name_the_node() {
    let mut f = ipsec_node();
    f.registry = Registry::Kube {
        node: "h1".into(),
        net_conf: "/etc/kube-flannel/net-conf.json".into(),
    };
    f.own_lease = None;
    f.own_lease_problem = Some("Node h1 has no podCIDR.".into());
    f.ignored_nodes = vec![("h7".into(), "bad public-ip".into())];
    let found = diagnose(&f);
    let lease: Vec<_> = found.iter().filter(|x| x.kind == Kind::Lease).collect();
    assert_eq!(lease.len(), 2, "{found:#?}");
    assert!(lease[0].problem.contains("Node h7"), "{lease:#?}");
    assert_eq!(lease[1].problem, "This node (h1) holds no lease.");
    assert_eq!(lease[1].evidence, "Node h1 has no podCIDR.");

    f.registry_error = Some("Kubernetes API http://192.0.2.253/: refused".into());
    let found = diagnose(&f);
    assert!(found[0].fix.contains("--kube-api-url"), "{found:#?}");
    assert!(
        found[0].fix.contains("/etc/kube-flannel/net-conf.json"),
        "{found:#?}"
    );
}

#[test]
fn an_ipip_peer_is_a_route_via_its_public_ip_onlink() {
    let n = network(r#"{"Type":"ipip"}"#);
    let b = backend::build(&Inputs {
        network: &n,
        underlay: &underlay(),
        stored: Stored::default(),
        wireguard: None,
    })
    .expect("backend");
    let mut f = facts_for(
        &*b,
        lease(1, "ipip", None),
        vec![lease(2, "ipip", None)],
        TunnelState::default(),
    );
    assert_eq!(f.peers.len(), 1);
    let routes: Vec<String> = f.peers[0]
        .want
        .routes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(
        routes[0].contains("198.18.2.0/24")
            && routes[0].contains("via 192.0.2.2")
            && routes[0].contains("dev flannel.ipip")
            && routes[0].contains("onlink"),
        "{routes:?}"
    );
    // The kernel lacks it (observed holds only the device): a missing route.
    let found = diagnose(&f);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, Kind::Route);
    assert!(found[0].problem.contains("peer 192.0.2.2"), "{found:#?}");
    // In place: healthy.
    let want = f.peers[0].want.routes.clone();
    if let Some(o) = &mut f.observed {
        o.routes.extend(want);
    }
    assert_eq!(diagnose(&f), vec![]);
}
