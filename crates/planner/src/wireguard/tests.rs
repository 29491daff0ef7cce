//! Options as Flannel reads and refuses them, devices and MTUs, peers from leases, and the
//! device diff.

use std::net::{IpAddr, SocketAddr};

use flannel_model::{LeaseAttrs, RawJson};
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn key(n: u8) -> WgKey {
    WgKey([n; 32])
}

fn opts(v: Value) -> Result<WgOptions, WgConfigError> {
    WgOptions::from_backend(&v)
}

#[test]
fn options_have_flannels_defaults() {
    let o = opts(json!({"Type": "wireguard"})).expect("ok");
    assert_eq!(o, WgOptions::default());
    assert_eq!((o.listen_port, o.listen_port_v6), (51820, 51821));
    assert_eq!(o.mode, WgMode::Separate);
    let o = opts(json!({
        "listenport": 4000, "ListenPortV6": 4001, "MTU": 1400,
        "PSK": key(7).to_string(), "PersistentKeepaliveInterval": 25, "Mode": "auto"
    }))
    .expect("ok");
    assert_eq!(
        o,
        WgOptions {
            listen_port: 4000,
            listen_port_v6: 4001,
            mtu: Some(1400),
            psk: Some(key(7)),
            keepalive: 25,
            mode: WgMode::Auto,
        }
    );
    for (m, want) in [
        ("ipv4", WgMode::Ipv4),
        ("ipv6", WgMode::Ipv6),
        ("separate", WgMode::Separate),
    ] {
        assert_eq!(opts(json!({"Mode": m})).expect("ok").mode, want);
    }
}

#[test]
fn invalid_options_are_refused_with_flannels_messages() {
    let err = |v: Value| opts(v).expect_err("refused").to_string();
    assert_eq!(err(json!({"Mode": "both"})), "no valid Mode configured");
    assert_eq!(err(json!({"Mode": "Auto"})), "no valid Mode configured");
    assert_eq!(
        err(json!({"ListenPort": "51820"})),
        "error decoding backend config: json: cannot unmarshal string into Go struct field .ListenPort of type int"
    );
    assert_eq!(
        err(json!({"PersistentKeepaliveInterval": 1.5})),
        "error decoding backend config: json: cannot unmarshal number 1.5 into Go struct field .PersistentKeepaliveInterval of type int64"
    );
    assert!(err(json!({"PSK": "short"})).starts_with("could not parse psk: "));
    assert_eq!(
        err(json!({"ListenPort": 0})),
        "ListenPort must be a UDP port between 1 and 65535"
    );
    assert_eq!(
        err(json!({"ListenPortV6": 70000})),
        "ListenPortV6 must be a UDP port between 1 and 65535"
    );
}

#[test]
fn devices_per_mode_with_per_family_overhead() {
    let o = WgOptions::default();
    let d = devices(&o, true, true, 1500);
    assert_eq!(
        d.iter()
            .map(|d| (d.name.as_str(), d.listen_port, d.mtu))
            .collect::<Vec<_>>(),
        [("flannel-wg", 51820, 1440), ("flannel-wg-v6", 51821, 1420)]
    );
    assert_eq!(devices(&o, true, false, 1500).len(), 1);
    let auto = WgOptions {
        mode: WgMode::Auto,
        ..WgOptions::default()
    };
    let d = devices(&auto, true, true, 1500);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].name.as_str(), d[0].mtu), ("flannel-wg", 1420));
    assert_eq!(d[0].families, Families { v4: true, v6: true });
    let v4 = WgOptions {
        mode: WgMode::Ipv4,
        ..WgOptions::default()
    };
    assert_eq!(devices(&v4, true, true, 1500)[0].mtu, 1440);
}

fn lease(n: u8, data: Option<String>, v6: bool) -> Lease {
    Lease {
        subnet: SubnetKey {
            ipv4: format!("198.18.{n}.0/24").parse().expect("net"),
            ipv6: v6.then(|| format!("2001:db8:f000:{n}::/64").parse().expect("net")),
        },
        attrs: LeaseAttrs {
            public_ip: format!("192.0.2.{n}").parse().expect("ip"),
            public_ipv6: v6.then(|| format!("2001:db8:1::{n}").parse().expect("ip")),
            backend_type: "wireguard".into(),
            backend_data: data.clone().map(|d| RawJson::new(&d).expect("json")),
            backend_v6_data: if v6 {
                data.map(|d| RawJson::new(&d).expect("json"))
            } else {
                None
            },
        },
        expiration: None,
    }
}

fn data(n: u8, port: u16) -> Option<String> {
    Some(
        WireguardLeaseData {
            public_key: key(n),
            port,
        }
        .to_raw()
        .as_str()
        .to_owned(),
    )
}

fn local() -> Local {
    Local {
        public_key: key(1),
        public_ip: Some("192.0.2.1".parse().expect("ip")),
        public_ipv6: Some("2001:db8:1::1".parse().expect("ip")),
    }
}

#[test]
fn peers_get_flannels_endpoint_allowed_ips_keepalive_and_psk() {
    let o = WgOptions {
        keepalive: 25,
        psk: Some(key(9)),
        ..WgOptions::default()
    };
    let devs = devices(&o, true, true, 1500);
    let own = lease(1, data(1, 51820), true);
    let peers = [
        own.clone(),
        lease(2, data(2, 51820), true),
        // An old Flannel wrote no Port: our own port is used.
        lease(3, Some(format!(r#"{{"PublicKey":"{}"}}"#, key(3))), true),
        lease(4, Some("{}".into()), true),
        Lease {
            attrs: LeaseAttrs {
                backend_type: "vxlan".into(),
                ..lease(5, None, false).attrs
            },
            ..lease(5, None, false)
        },
    ];
    let (v4, skipped) = desired_device(&devs[0], &o, &local(), &own.subnet, &mut peers.iter());
    assert_eq!(v4.public_key, Some(key(1)));
    assert_eq!(v4.peers.len(), 2);
    let p2 = &v4.peers[&key(2)];
    assert_eq!(
        p2.endpoint,
        Some("192.0.2.2:51820".parse::<SocketAddr>().expect("addr"))
    );
    assert_eq!(
        p2.allowed_ips
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        ["198.18.2.0/24"]
    );
    assert_eq!((p2.keepalive, p2.psk), (25, Some(key(9))));
    assert_eq!(v4.peers[&key(3)].endpoint.map(|e| e.port()), Some(51820));
    assert_eq!(
        skipped
            .iter()
            .map(|s| s.reason.as_str())
            .collect::<Vec<_>>(),
        [
            "wireguard BackendData has no PublicKey: {}",
            "backend type \"vxlan\" is not wireguard"
        ]
    );
    let (v6, _) = desired_device(&devs[1], &o, &local(), &own.subnet, &mut peers.iter());
    let p2 = &v6.peers[&key(2)];
    assert_eq!(
        p2.endpoint,
        Some("[2001:db8:1::2]:51820".parse::<SocketAddr>().expect("addr"))
    );
    assert_eq!(
        p2.allowed_ips
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        ["2001:db8:f000:2::/64"]
    );
    assert_eq!(
        v6.peers[&key(3)].endpoint.map(|e| e.port()),
        Some(51821),
        "port 0 means the v6 device's own port"
    );
}

#[test]
fn single_device_modes_carry_both_subnets() {
    let o = WgOptions {
        mode: WgMode::Auto,
        ..WgOptions::default()
    };
    let dev = &devices(&o, true, true, 1500)[0];
    let own = lease(1, data(1, 51820), true);
    let peers = [lease(2, data(2, 51820), true)];
    let (cfg, _) = desired_device(dev, &o, &local(), &own.subnet, &mut peers.iter());
    let p = &cfg.peers[&key(2)];
    assert_eq!(p.allowed_ips.len(), 2);
    // Documentation addresses are not RFC 1918: the v4 endpoint wins, as in Flannel.
    assert_eq!(
        p.endpoint.map(|e| e.ip()),
        Some(IpAddr::from([192, 0, 2, 2]))
    );
    let v6 = WgOptions {
        mode: WgMode::Ipv6,
        ..WgOptions::default()
    };
    let dev = &devices(&v6, true, true, 1500)[0];
    let (cfg, _) = desired_device(dev, &v6, &local(), &own.subnet, &mut peers.iter());
    assert!(cfg.peers[&key(2)].endpoint.is_some_and(|e| e.is_ipv6()));
}

#[test]
fn auto_endpoint_is_flannels_choice() {
    let l = local();
    let private4 = "10.0.0.2".parse().expect("ip");
    let public4 = "192.0.2.2".parse().expect("ip");
    let public6 = "2001:db8::2".parse().expect("ip");
    let ula6 = "fd00::2".parse().expect("ip");
    assert_eq!(auto_endpoint(&l, public4, None), EndpointFamily::V4);
    assert_eq!(
        auto_endpoint(&l, public4, Some(public6)),
        EndpointFamily::V4
    );
    assert_eq!(
        auto_endpoint(&l, private4, Some(public6)),
        EndpointFamily::V6
    );
    assert_eq!(auto_endpoint(&l, private4, Some(ula6)), EndpointFamily::V4);
    let ula_local = Local {
        public_ipv6: Some(ula6),
        ..l
    };
    assert_eq!(
        auto_endpoint(&ula_local, private4, Some(public6)),
        EndpointFamily::V4
    );
}

#[test]
fn diff_sets_key_removes_stale_peers_and_updates_changed_ones() {
    let o = WgOptions::default();
    let dev = &devices(&o, true, false, 1500)[0];
    let own = lease(1, data(1, 51820), false);
    let peers = [
        lease(2, data(2, 51820), false),
        lease(3, data(3, 51820), false),
    ];
    let (want, _) = desired_device(dev, &o, &local(), &own.subnet, &mut peers.iter());
    // A freshly created device: no key, no peers.
    let mut have = DeviceConfig {
        name: DEVICE.into(),
        public_key: None,
        listen_port: 0,
        peers: BTreeMap::new(),
    };
    let ops = diff_device(&want, &have, true);
    assert_eq!(ops[0], DeviceOp::SetDevice { listen_port: 51820 });
    assert_eq!(ops.len(), 3);
    simulate(&mut have, want.public_key, &ops);
    assert_eq!(have, want);
    assert!(diff_device(&want, &have, true).is_empty());
    // A stale peer (its lease gone while we were down) and a moved one.
    have.peers.insert(
        key(8),
        WgPeer {
            public_key: key(8),
            endpoint: None,
            allowed_ips: BTreeSet::new(),
            keepalive: 0,
            psk: None,
        },
    );
    if let Some(p) = have.peers.get_mut(&key(2)) {
        p.endpoint = Some("192.0.2.99:51820".parse().expect("addr"));
    }
    let ops = diff_device(&want, &have, true);
    assert_eq!(
        ops,
        [
            DeviceOp::RemovePeer(key(8)),
            DeviceOp::SetPeer(want.peers[&key(2)].clone())
        ]
    );
    // Before the first complete snapshot nothing is removed.
    assert_eq!(diff_device(&want, &have, false).len(), 1);
}

fn arb_peer() -> impl Strategy<Value = WgPeer> {
    (1u8..20, 0u16..3, prop::option::of(1u8..4)).prop_map(|(k, port, psk)| WgPeer {
        public_key: key(k),
        endpoint: Some(SocketAddr::new(IpAddr::from([192, 0, 2, k]), 51820 + port)),
        allowed_ips: [IpNet::V4(format!("198.18.{k}.0/24").parse().expect("net"))]
            .into_iter()
            .collect(),
        keepalive: port,
        psk: psk.map(key),
    })
}

fn arb_config() -> impl Strategy<Value = DeviceConfig> {
    (
        prop::option::of(1u8..3),
        prop::sample::select(vec![0u16, 51820]),
        prop::collection::vec(arb_peer(), 0..8),
    )
        .prop_map(|(k, port, peers)| DeviceConfig {
            name: DEVICE.into(),
            public_key: k.map(key),
            listen_port: port,
            peers: peers.into_iter().map(|p| (p.public_key, p)).collect(),
        })
}

proptest! {
    #[test]
    fn applying_the_diff_reaches_the_desired_config(want in arb_config(), have in arb_config()) {
        let mut have = have;
        let ops = diff_device(&want, &have, true);
        simulate(&mut have, want.public_key, &ops);
        prop_assert_eq!(&have, &want);
        prop_assert!(diff_device(&want, &have, true).is_empty());
    }

    #[test]
    fn without_pruning_no_peer_is_removed(want in arb_config(), have in arb_config()) {
        let ops = diff_device(&want, &have, false);
        prop_assert!(!ops.iter().any(|o| matches!(o, DeviceOp::RemovePeer(_))));
    }
}
