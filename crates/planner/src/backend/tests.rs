//! The registry and the backends' lease data, MTUs and devices, as flanneld has always
//! produced them.

use std::net::{Ipv4Addr, Ipv6Addr};

use flannel_model::{NetworkConfig, SubnetKey};

use super::*;
use crate::state::{LinkSpec, Route};
use crate::vxlan::derive_vtep_mac;
use crate::wireguard::{Implementation, WireguardHost};

fn network(json: &str) -> NetworkConfig {
    let mut n = NetworkConfig::parse(json).expect("config");
    n.check().expect("valid config");
    n
}

fn underlay(v6: bool) -> Underlay {
    Underlay {
        index: 2,
        name: "eth0".into(),
        mtu: 1500,
        iface_addr: Some("192.0.2.1".parse().expect("ip")),
        iface_v6_addr: v6.then(|| "2001:db8:1::1".parse().expect("ip")),
        public_ip: Some("192.0.2.1".parse().expect("ip")),
        public_ipv6: v6.then(|| "2001:db8:1::1".parse().expect("ip")),
    }
}

fn backend(json: &str, v6: bool) -> Result<Box<dyn Backend>, BackendError> {
    backend_with(json, v6, Stored::default())
}

fn backend_with(json: &str, v6: bool, stored: Stored) -> Result<Box<dyn Backend>, BackendError> {
    build(&Inputs {
        network: &network(json),
        underlay: &underlay(v6),
        stored,
        wireguard: None,
    })
}

const DUAL: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}"#;

#[test]
fn dual_stack_vxlan_advertises_both_devices() {
    let b = backend(DUAL, true).expect("backend");
    assert_eq!(b.owned_devs(), ["flannel.1", "flannel-v6.1"]);
    assert_eq!(
        b.pod_mtu(),
        1430,
        "the IPv6 device's MTU is the smaller one"
    );
    let d = b.lease_data();
    let mac4 = derive_vtep_mac(1, "192.0.2.1".parse::<Ipv4Addr>().expect("ip"));
    let mac6 = derive_vtep_mac(1, "2001:db8:1::1".parse::<Ipv6Addr>().expect("ip"));
    assert_eq!(d.backend_type, "vxlan");
    assert_eq!(
        d.backend_data.expect("data").as_str(),
        format!(r#"{{"VNI":1,"VtepMAC":"{mac4}"}}"#)
    );
    assert_eq!(
        d.backend_v6_data.expect("v6 data").as_str(),
        format!(r#"{{"VNI":1,"VtepMAC":"{mac6}"}}"#)
    );
    assert_eq!(d.public_ipv6, Some("2001:db8:1::1".parse().expect("ip")));
    assert_eq!(b.runtime(), None);
}

#[test]
fn stored_vtep_macs_replace_the_derived_ones() {
    let stored = Stored {
        vtep_mac: Some(MacAddr([0x12, 0xc6, 0x65, 0x89, 0xb4, 0xe3])),
        vtep_mac_v6: Some(MacAddr([0x0a, 0x00, 0x00, 0x00, 0x00, 0x06])),
    };
    let d = backend_with(DUAL, true, stored)
        .expect("backend")
        .lease_data();
    assert_eq!(
        d.backend_data.expect("data").as_str(),
        r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}"#
    );
    assert_eq!(
        d.backend_v6_data.expect("v6 data").as_str(),
        r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:06"}"#
    );
    // Only the v4 MAC stored: the v6 one stays derived.
    let only_v4 = Stored {
        vtep_mac_v6: None,
        ..stored
    };
    let d = backend_with(DUAL, true, only_v4)
        .expect("backend")
        .lease_data();
    let mac6 = derive_vtep_mac(1, "2001:db8:1::1".parse::<Ipv6Addr>().expect("ip"));
    assert_eq!(
        d.backend_v6_data.expect("v6 data").as_str(),
        format!(r#"{{"VNI":1,"VtepMAC":"{mac6}"}}"#)
    );
    // Other backends ignore it.
    let hg = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#;
    let d = backend_with(hg, false, stored)
        .expect("backend")
        .lease_data();
    assert_eq!(d.backend_data, None);
}

#[test]
fn ipv4_only_networks_advertise_no_ipv6() {
    let v4 = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#;
    // Even when the interface has an IPv6 address (or --public-ipv6 was given).
    let b = backend(v4, true).expect("backend");
    assert_eq!(b.owned_devs(), ["flannel.1"]);
    assert_eq!(b.pod_mtu(), 1450);
    assert_eq!(b.lease_data().backend_v6_data, None);
    assert_eq!(b.lease_data().public_ipv6, None);
    let alloc = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","Backend":{"Type":"alloc"}}"#;
    let b = backend(alloc, true).expect("backend");
    assert_eq!(
        b.lease_data(),
        LeaseData::default(),
        "Flannel's alloc writes only PublicIP"
    );
    assert!(!b.has_datapath());
    assert_eq!(b.pod_mtu(), 1500);
}

#[test]
fn host_gw_dual_stack_and_missing_ipv6_address() {
    let hostgw = DUAL.replace("vxlan", "host-gw");
    let b = backend(&hostgw, true).expect("backend");
    assert_eq!(b.pod_mtu(), 1500);
    assert_eq!(b.lease_data().backend_type, "host-gw");
    assert_eq!(b.lease_data().backend_v6_data, None);
    assert!(b.lease_data().public_ipv6.is_some());
    assert_eq!(b.route_devs(), ["eth0"]);
    let err = backend(&hostgw, false).expect_err("no v6 address");
    assert_eq!(
        err.to_string(),
        "IPv6 is enabled but the external interface has no IPv6 address"
    );
}

#[test]
fn host_gw_refuses_nat() {
    let hg = network(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#);
    let mut u = underlay(false);
    u.public_ip = Some("203.0.113.9".parse().expect("ip"));
    let err = build(&Inputs {
        network: &hg,
        underlay: &u,
        stored: Stored::default(),
        wireguard: None,
    })
    .expect_err("NAT");
    assert_eq!(err.to_string(), crate::hostgw::NAT_ERROR);
}

#[test]
fn udp_is_the_default_and_advertises_no_backend_type() {
    for json in [
        r#"{"Network":"198.18.0.0/16"}"#,
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}"#,
    ] {
        let b = backend(json, false).expect("backend");
        assert_eq!(b.name(), "udp");
        assert_eq!(b.lease_data(), LeaseData::default());
        assert_eq!(b.pod_mtu(), 1472);
        assert_eq!(b.route_devs(), ["flannel0"]);
        assert!(b.owned_devs().is_empty());
        let Some(RuntimeSpec::UdpProxy { port, .. }) = b.runtime() else {
            panic!("no udp runtime: {b:?}");
        };
        assert_eq!(port, 8285);
        let own = SubnetKey {
            ipv4: "198.18.1.0/24".parse().expect("net"),
            ipv6: None,
        };
        let (state, skipped) = b.desired(&own, &mut std::iter::empty(), &|_| false);
        assert!(skipped.is_empty());
        assert_eq!(
            state.routes.into_iter().collect::<Vec<_>>(),
            [Route {
                dst: "198.18.0.0/16".parse().expect("net"),
                gateway: None,
                dev: "flannel0".into(),
                onlink: false,
            }]
        );
    }
}

#[test]
fn udp_port_option_and_its_errors() {
    let with = |port: &str| {
        backend(
            &format!(r#"{{"Network":"198.18.0.0/16","Backend":{{"Type":"udp","port":{port}}}}}"#),
            false,
        )
    };
    let port = |b: Box<dyn Backend>| match b.runtime() {
        Some(RuntimeSpec::UdpProxy { port, .. }) => port,
        other => panic!("not udp: {other:?}"),
    };
    assert_eq!(port(with("9000").expect("backend")), 9000);
    assert_eq!(port(with("null").expect("backend")), 8285);
    for bad in ["0", "70000", "-1", "\"x\""] {
        assert!(with(bad).is_err(), "Port {bad} must be refused");
    }
    assert_eq!(
        with("\"x\"").expect_err("bad").to_string(),
        "udp backend: Port: expected a number, got \"x\""
    );
    assert_eq!(
        with("0").expect_err("bad").to_string(),
        "udp backend: Port 0 is not a usable UDP port"
    );
    let err = backend(&DUAL.replace("vxlan", "udp"), true).expect_err("IPv6");
    assert_eq!(
        err.to_string(),
        "the udp backend is IPv4-only; disable EnableIPv6"
    );
}

#[test]
fn on_demand_vxlan_needs_the_miss_responder_and_ipv4() {
    let od = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","Mode":"on-demand"}}"#;
    let b = backend(od, false).expect("backend");
    assert_eq!(
        b.runtime(),
        Some(RuntimeSpec::MissResponder {
            dev: "flannel.1".into()
        })
    );
    let dual_od = DUAL.replace(r#""Type":"vxlan""#, r#""Type":"vxlan","Mode":"on-demand""#);
    assert_eq!(
        backend(&dual_od, true).expect_err("v6").to_string(),
        "the vxlan on-demand mode is IPv4-only; disable EnableIPv6 or use the default mode"
    );
}

#[test]
fn unknown_and_unavailable_types_keep_their_messages() {
    let with = |t: &str| {
        backend(
            &format!(r#"{{"Network":"198.18.0.0/16","Backend":{{"Type":"{t}"}}}}"#),
            false,
        )
        .expect_err("refused")
        .to_string()
    };
    assert_eq!(with("bogus"), "unknown backend type: bogus");
    assert_eq!(
        available(),
        "vxlan, host-gw, udp, alloc, ipip, ipsec, extension, wireguard"
    );
    for t in NOT_YET {
        assert_eq!(
            with(t),
            format!(
                "backend type {t:?} is not available in this build of flannel-rs yet \
                 (available: {})",
                available()
            )
        );
    }
    assert_eq!(
        with("vxlan\",\"VNI\":\"one"),
        "error decoding VXLAN backend config: VNI: expected a number, got \"one\""
    );
}

#[test]
fn direct_routing_asks_about_peers_public_ips() {
    let dr = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#;
    let b = backend(dr, false).expect("backend");
    let peer = crate::vxlan::tests::vxlan_peer("198.18.2.0/24", 2, "0e:00:00:00:00:02");
    assert_eq!(
        b.on_link_queries(&peer),
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))]
    );
    let plain = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#,
        false,
    )
    .expect("backend");
    assert!(plain.on_link_queries(&peer).is_empty());
}

#[test]
fn pod_mtus_the_kernel_refuses_are_refused_at_start() {
    // `MTU: 100` used to give FLANNEL_MTU=50 and fail in the kernel on every pass.
    let err = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","MTU":100}}"#,
        false,
    )
    .expect_err("MTU 50 for pods");
    assert_eq!(
        err.to_string(),
        "the vxlan backend would give pods an MTU of 50 (FLANNEL_MTU), below the 68 that IPv4 \
         needs; raise the Backend's MTU option or the MTU of eth0 (now 1500)"
    );
    // The smallest that works, for IPv4 only.
    let b = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","MTU":118}}"#,
        false,
    )
    .expect("68 is enough for IPv4");
    assert_eq!(b.pod_mtu(), 68);
    // With IPv6 enabled the pods need 1280.
    let small_dual = DUAL.replace(r#""Type":"vxlan""#, r#""Type":"vxlan","MTU":1349"#);
    let err = backend(&small_dual, true).expect_err("IPv6 needs 1280");
    assert!(
        err.to_string()
            .contains("an MTU of 1279 (FLANNEL_MTU), below the 1280 that IPv6 needs"),
        "{err}"
    );
    let ok_dual = DUAL.replace(r#""Type":"vxlan""#, r#""Type":"vxlan","MTU":1350"#);
    assert_eq!(backend(&ok_dual, true).expect("1280").pod_mtu(), 1280);
    // host-gw and alloc pass the interface's MTU on: the same rule applies.
    let mut u = underlay(true);
    u.mtu = 1200;
    let hg = network(&DUAL.replace("vxlan", "host-gw"));
    let err = build(&Inputs {
        network: &hg,
        underlay: &u,
        stored: Stored::default(),
        wireguard: None,
    })
    .expect_err("IPv6 on a 1200-byte underlay");
    assert!(err.to_string().contains("the host-gw backend"), "{err}");
}

#[test]
fn a_vxlan_mtu_above_the_underlays_is_warned_about() {
    let b = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","MTU":9000}}"#,
        false,
    )
    .expect("allowed");
    assert_eq!(
        b.warnings(),
        [
            "the vxlan MTU option 9000 exceeds the MTU of eth0 (1500): encapsulated packets \
          larger than 1500 will be dropped or fragmented on the underlay"
        ]
    );
    let fits = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","MTU":1500}}"#,
        false,
    )
    .expect("allowed");
    assert!(fits.warnings().is_empty());
    assert!(backend(r#"{"Network":"198.18.0.0/16"}"#, false)
        .expect("udp")
        .warnings()
        .is_empty());
}

const V6_ONLY_VXLAN: &str = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}"#;
const V6_ONLY_HOSTGW: &str = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"host-gw"}}"#;

/// What interface selection finds in an IPv6-only network: no IPv4 address is looked up.
fn underlay_v6_only() -> Underlay {
    Underlay {
        iface_addr: None,
        public_ip: None,
        ..underlay(true)
    }
}

fn backend_v6_only(json: &str) -> Result<Box<dyn Backend>, BackendError> {
    build(&Inputs {
        network: &network(json),
        underlay: &underlay_v6_only(),
        stored: Stored::default(),
        wireguard: None,
    })
}

fn v6_only_peer(subnet: &str, ip6: &str, backend_type: &str, v6_data: Option<&str>) -> Lease {
    Lease {
        subnet: SubnetKey::v6_only(subnet.parse().expect("net")),
        attrs: flannel_model::LeaseAttrs {
            public_ip: Ipv4Addr::UNSPECIFIED,
            public_ipv6: Some(ip6.parse().expect("ip")),
            backend_type: backend_type.into(),
            backend_data: None,
            backend_v6_data: v6_data.map(|d| RawJson::new(d).expect("json")),
        },
        expiration: None,
    }
}

#[test]
fn v6_only_vxlan_has_only_the_v6_device() {
    let b = backend_v6_only(V6_ONLY_VXLAN).expect("IPv6-only vxlan builds");
    assert_eq!(b.owned_devs(), ["flannel-v6.1"]);
    assert_eq!(b.pod_mtu(), 1430);
    let d = b.lease_data();
    let mac6 = derive_vtep_mac(1, "2001:db8:1::1".parse::<Ipv6Addr>().expect("ip"));
    assert_eq!(d.backend_type, "vxlan");
    assert_eq!(
        d.backend_data, None,
        "Go writes no BackendData without flannel.1"
    );
    assert_eq!(
        d.backend_v6_data.expect("v6 data").as_str(),
        format!(r#"{{"VNI":1,"VtepMAC":"{mac6}"}}"#)
    );
    assert_eq!(d.public_ipv6, Some("2001:db8:1::1".parse().expect("ip")));

    let own = SubnetKey::v6_only("2001:db8:100:1::/64".parse().expect("net"));
    let peer = v6_only_peer(
        "2001:db8:100:2::/64",
        "2001:db8:1::2",
        "vxlan",
        Some(r#"{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}"#),
    );
    let (state, skipped) = b.desired(&own, &mut std::iter::once(&peer), &|_| false);
    assert!(skipped.is_empty(), "{skipped:?}");
    let links: Vec<&String> = state.links.keys().collect();
    assert_eq!(links, ["flannel-v6.1"]);
    let addrs: Vec<String> = state
        .addrs
        .iter()
        .map(|a| format!("{} {}", a.dev, a.net))
        .collect();
    assert_eq!(addrs, ["flannel-v6.1 2001:db8:100:1::/128"]);
    let routes: Vec<String> = state
        .routes
        .iter()
        .map(|r| format!("{} via {:?} dev {}", r.dst, r.gateway, r.dev))
        .collect();
    assert_eq!(
        routes,
        ["2001:db8:100:2::/64 via Some(2001:db8:100:2::) dev flannel-v6.1"]
    );
    let fdb: Vec<String> = state
        .fdb
        .iter()
        .map(|f| format!("{} {} {}", f.dev, f.mac, f.dst))
        .collect();
    assert_eq!(fdb, ["flannel-v6.1 0a:00:00:00:00:02 2001:db8:1::2"]);
}

#[test]
fn v6_only_host_gw_routes_v6_only() {
    let b = backend_v6_only(V6_ONLY_HOSTGW).expect("IPv6-only host-gw builds");
    assert_eq!(
        b.lease_data(),
        LeaseData {
            backend_type: "host-gw",
            backend_data: None,
            backend_v6_data: None,
            public_ipv6: Some("2001:db8:1::1".parse().expect("ip")),
        }
    );
    let own = SubnetKey::v6_only("2001:db8:100:1::/64".parse().expect("net"));
    let peer = v6_only_peer("2001:db8:100:2::/64", "2001:db8:1::2", "host-gw", None);
    let (state, skipped) = b.desired(&own, &mut std::iter::once(&peer), &|_| false);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        state.routes.into_iter().collect::<Vec<_>>(),
        [Route {
            dst: "2001:db8:100:2::/64".parse().expect("net"),
            gateway: Some("2001:db8:1::2".parse().expect("ip")),
            dev: "eth0".into(),
            onlink: false,
        }]
    );
    assert!(state.links.is_empty());
}

#[test]
fn v6_only_ipv4_backends_say_why() {
    let udp = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"udp"}}"#;
    assert_eq!(
        backend_v6_only(udp).expect_err("udp is IPv4-only"),
        BackendError::UdpIpv6
    );
    // A backend that asks for the IPv4 interface facts gets a message naming the config.
    let net = network(V6_ONLY_VXLAN);
    let inputs = Inputs {
        network: &net,
        underlay: &underlay_v6_only(),
        stored: Stored::default(),
        wireguard: None,
    };
    assert_eq!(
        inputs.ext_iface().expect_err("needs IPv4").to_string(),
        "the vxlan backend needs IPv4 (EnableIPv4 is false); IPv6-only networks work with vxlan \
         and host-gw"
    );
    assert_eq!(inputs.public_ip(), None);
    assert_eq!(inputs.ext_iface_for_stack().expect("v6").v4(), None);
}

fn ipsec_config(backend: &str) -> String {
    format!(r#"{{"Network":"198.18.0.0/16","Backend":{backend}}}"#)
}

const PSK: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn ipsec_is_flannels_mtu_lease_and_proposals() {
    assert_eq!(PSK.len(), 96);
    let b = backend(
        &ipsec_config(&format!(r#"{{"Type":"ipsec","PSK":"{PSK}"}}"#)),
        false,
    )
    .expect("backend");
    assert_eq!(b.name(), "ipsec");
    assert_eq!(b.pod_mtu(), 1423);
    assert!(!b.has_datapath());
    assert_eq!(
        b.lease_data(),
        LeaseData {
            backend_type: "ipsec",
            ..LeaseData::default()
        }
    );
    let Some(RuntimeSpec::Ipsec { options, public_ip }) = b.runtime() else {
        panic!("no ipsec runtime: {:?}", b.runtime());
    };
    assert_eq!(public_ip, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(options.psk, PSK);
    assert!(!options.udp_encap);
    assert_eq!(options.esp_proposal, "aes128gcm16-sha256-prfsha256-ecp256");
    assert!(
        !format!("{options:?}").contains(PSK),
        "the key stays out of logs"
    );
}

#[test]
fn ipsec_options_are_read_as_go_reads_them() {
    let b = backend(
        &ipsec_config(&format!(
            r#"{{"Type":"ipsec","psk":"{PSK}","udpencap":true,"ESPProposal":"aes256gcm16-ecp384"}}"#
        )),
        false,
    )
    .expect("backend");
    assert_eq!(b.pod_mtu(), 1415, "UDPEncap takes 8 more");
    let Some(RuntimeSpec::Ipsec { options, .. }) = b.runtime() else {
        panic!("no ipsec runtime");
    };
    assert!(options.udp_encap);
    assert_eq!(options.esp_proposal, "aes256gcm16-ecp384");
}

#[test]
fn ipsec_refuses_a_short_key_with_flannels_message() {
    for backend_json in [
        r#"{"Type":"ipsec"}"#.to_owned(),
        format!(r#"{{"Type":"ipsec","PSK":"{}"}}"#, &PSK[1..]),
    ] {
        let err = backend(&ipsec_config(&backend_json), false).expect_err("short key");
        assert_eq!(err, BackendError::IpsecPskTooShort);
        assert_eq!(err.to_string(), "config error, password is too short");
    }
    let err = backend(&ipsec_config(r#"{"Type":"ipsec","PSK":96}"#), false).expect_err("a number");
    assert!(
        err.to_string()
            .starts_with("error decoding IPSEC backend config: "),
        "{err}"
    );
    let err = backend(
        r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","Backend":{"Type":"ipsec"}}"#,
        true,
    )
    .expect_err("IPv4 only");
    assert_eq!(err, BackendError::IpsecIpv6);
}

fn lease(subnet: &str, ip: u8, backend: &str) -> flannel_model::Lease {
    flannel_model::Lease {
        subnet: SubnetKey {
            ipv4: subnet.parse().expect("cidr"),
            ipv6: None,
        },
        attrs: flannel_model::LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 0, 2, ip),
            public_ipv6: None,
            backend_type: backend.into(),
            backend_data: None,
            backend_v6_data: None,
        },
        expiration: None,
    }
}

fn own() -> SubnetKey {
    SubnetKey {
        ipv4: "198.18.1.0/24".parse().expect("cidr"),
        ipv6: None,
    }
}

const IPIP: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"ipip"}}"#;

#[test]
fn ipip_has_flannels_device_address_mtu_and_lease() {
    let b = backend(IPIP, false).expect("backend");
    assert_eq!(b.name(), "ipip");
    assert_eq!(b.pod_mtu(), 1480);
    assert_eq!(b.owned_devs(), ["flannel.ipip"]);
    assert_eq!(b.route_devs(), ["eth0"]);
    assert_eq!(b.runtime(), None);
    assert_eq!(b.public_ip(), None, "the lease carries --public-ip");
    assert_eq!(
        b.lease_data(),
        LeaseData {
            backend_type: "ipip",
            ..LeaseData::default()
        }
    );
    let peers = [
        lease("198.18.2.0/24", 2, "ipip"),
        lease("198.18.3.0/24", 3, "vxlan"),
    ];
    let (s, skipped) = b.desired(&own(), &mut peers.iter(), &|_| true);
    let link = s.links["flannel.ipip"].clone();
    assert_eq!(
        link,
        LinkSpec::Ipip(crate::link::IpipLink {
            name: "flannel.ipip".into(),
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: Ipv4Addr::UNSPECIFIED,
            mtu: 1480,
            up: true,
        })
    );
    let addrs: Vec<String> = s
        .addrs
        .iter()
        .map(|a| format!("{} {}", a.dev, a.net))
        .collect();
    assert_eq!(addrs, ["flannel.ipip 198.18.1.0/32"]);
    let routes: Vec<String> = s.routes.iter().map(Route::to_string).collect();
    assert_eq!(
        routes,
        ["198.18.2.0/24 via 192.0.2.2 dev flannel.ipip onlink"]
    );
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].reason, "backend type \"vxlan\" is not ipip");
    assert!(s.neighs.is_empty() && s.fdb.is_empty());
    assert!(
        b.on_link_queries(&peers[0]).is_empty(),
        "no DirectRouting, no questions"
    );
}

#[test]
fn ipip_direct_routing_uses_the_external_interface_for_on_link_peers() {
    let b = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"ipip","directrouting":true}}"#,
        false,
    )
    .expect("backend");
    let peers = [
        lease("198.18.2.0/24", 2, "ipip"),
        lease("198.18.3.0/24", 3, "ipip"),
    ];
    assert_eq!(
        b.on_link_queries(&peers[0]),
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))]
    );
    let on_link = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let (s, _) = b.desired(&own(), &mut peers.iter(), &on_link);
    let routes: Vec<String> = s.routes.iter().map(Route::to_string).collect();
    assert_eq!(
        routes,
        [
            "198.18.2.0/24 via 192.0.2.2 dev eth0 onlink",
            "198.18.3.0/24 via 192.0.2.3 dev flannel.ipip onlink",
        ]
    );
}

#[test]
fn ipip_options_ipv6_and_mtu_errors() {
    let err = |json: &str, v6: bool| backend(json, v6).expect_err("refused").to_string();
    assert_eq!(
        err(
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"ipip","DirectRouting":"yes"}}"#,
            false
        ),
        "error decoding IPIP backend config: json: cannot unmarshal string into Go struct \
         field .DirectRouting of type bool"
    );
    assert_eq!(
        err(
            r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","Backend":{"Type":"ipip"}}"#,
            true
        ),
        "the ipip backend is IPv4-only; disable EnableIPv6"
    );
    let mut small = underlay(false);
    small.mtu = 20;
    let e = build(&Inputs {
        network: &network(IPIP),
        underlay: &small,
        stored: Stored::default(),
        wireguard: None,
    })
    .expect_err("MTU 20");
    assert_eq!(
        e.to_string(),
        "MTU 20 of iface eth0 is too small for ipip mode to work"
    );
    small.mtu = 87;
    let e = build(&Inputs {
        network: &network(IPIP),
        underlay: &small,
        stored: Stored::default(),
        wireguard: None,
    })
    .expect_err("pod MTU 67");
    assert!(e.to_string().contains("an MTU of 67"), "{e}");
}

#[test]
fn extension_reads_its_commands_and_advertises_the_interface_address() {
    let json = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"extension",
        "PreStartupCommand":"/bin/pre","PostStartupCommand":"/bin/post",
        "subnetaddcommand":"/bin/add $SUBNET","SubnetRemoveCommand":"/bin/rm"}}"#;
    let mut u = underlay(false);
    u.public_ip = Some("203.0.113.9".parse().expect("ip"));
    u.mtu = 9000;
    let b = build(&Inputs {
        network: &network(json),
        underlay: &u,
        stored: Stored::default(),
        wireguard: None,
    })
    .expect("backend");
    assert_eq!(b.name(), "extension");
    assert_eq!(b.pod_mtu(), 9000, "the interface's MTU");
    assert!(!b.has_datapath());
    assert!(b.owned_devs().is_empty() && b.route_devs().is_empty());
    assert_eq!(
        b.public_ip(),
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        "the interface's address, not --public-ip"
    );
    assert_eq!(
        b.lease_data(),
        LeaseData {
            backend_type: "extension",
            ..LeaseData::default()
        }
    );
    let Some(RuntimeSpec::Extension(spec)) = b.runtime() else {
        panic!("extension runtime expected");
    };
    assert_eq!(
        spec.commands,
        crate::extension::Commands {
            pre_startup: "/bin/pre".into(),
            post_startup: "/bin/post".into(),
            subnet_add: "/bin/add $SUBNET".into(),
            subnet_remove: "/bin/rm".into(),
        }
    );
    assert_eq!(spec.network, Some("198.18.0.0/16".parse().expect("net")));
    assert_eq!(spec.public_ip, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(spec.timeout, crate::extension::COMMAND_TIMEOUT);
    let (s, skipped) = b.desired(&own(), &mut std::iter::empty(), &|_| false);
    assert_eq!((s, skipped.len()), (KernelState::default(), 0));

    let dual = backend(
        r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","Backend":{"Type":"extension"}}"#,
        true,
    )
    .expect("backend");
    assert_eq!(
        dual.lease_data().public_ipv6,
        Some("2001:db8:1::1".parse().expect("ip"))
    );
    let err = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"extension","SubnetAddCommand":7}}"#,
        false,
    )
    .expect_err("a number");
    assert_eq!(
        err.to_string(),
        "error decoding backend config: json: cannot unmarshal number into Go struct field \
         .SubnetAddCommand of type string"
    );
}

fn wireguard(json: &str, v6: bool, implementation: Implementation) -> Box<dyn Backend> {
    build(&Inputs {
        network: &network(json),
        underlay: &underlay(v6),
        stored: Stored::default(),
        wireguard: Some(WireguardHost {
            public_key: flannel_model::WgKey([0x11; 32]),
            implementation,
        }),
    })
    .expect("wireguard backend")
}

const WG_DUAL: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f000::/48","IPv6SubnetLen":64,"Backend":{"Type":"wireguard"}}"#;

#[test]
fn wireguard_publishes_key_and_port_per_family() {
    let b = wireguard(WG_DUAL, true, Implementation::Kernel);
    assert_eq!(b.name(), "wireguard");
    let d = b.lease_data();
    assert_eq!(d.backend_type, "wireguard");
    // Golden: Go's json.Marshal of the lease attributes' data.
    assert_eq!(
        d.backend_data.expect("v4").as_str(),
        r#"{"PublicKey":"ERERERERERERERERERERERERERERERERERERERERERE=","Port":51820}"#
    );
    assert_eq!(
        d.backend_v6_data.expect("v6").as_str(),
        r#"{"PublicKey":"ERERERERERERERERERERERERERERERERERERERERERE=","Port":51821}"#
    );
    assert_eq!(d.public_ipv6, Some("2001:db8:1::1".parse().expect("ip")));
    assert_eq!(b.pod_mtu(), 1420, "Flannel's MTU - 80");
    assert_eq!(b.owned_devs(), ["flannel-wg", "flannel-wg-v6"]);
    let v4 = wireguard(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard","MTU":1400,"ListenPort":4000}}"#,
        false,
        Implementation::Kernel,
    );
    assert_eq!(v4.pod_mtu(), 1320);
    assert!(v4.lease_data().backend_v6_data.is_none());
    assert!(v4
        .lease_data()
        .backend_data
        .expect("v4")
        .as_str()
        .ends_with(r#""Port":4000}"#));
}

#[test]
fn wireguard_kernel_state_is_devices_addresses_and_network_routes() {
    let own = SubnetKey {
        ipv4: "198.18.1.0/24".parse().expect("net"),
        ipv6: Some("2001:db8:f000:1::/64".parse().expect("net")),
    };
    let b = wireguard(WG_DUAL, true, Implementation::Kernel);
    let (s, skipped) = b.desired(&own, &mut std::iter::empty(), &|_| false);
    assert!(skipped.is_empty());
    assert_eq!(
        s.links
            .values()
            .map(|l| (l.name(), l.kind(), l.mtu()))
            .collect::<Vec<_>>(),
        [
            ("flannel-wg", "wireguard", 1440),
            ("flannel-wg-v6", "wireguard", 1420)
        ]
    );
    assert_eq!(
        s.addrs
            .iter()
            .map(|a| format!("{} {}", a.dev, a.net))
            .collect::<Vec<_>>(),
        [
            "flannel-wg 198.18.1.0/32",
            "flannel-wg-v6 2001:db8:f000:1::/128"
        ]
    );
    assert_eq!(
        s.routes.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        [
            "198.18.0.0/16 dev flannel-wg",
            "2001:db8:f000::/48 dev flannel-wg-v6"
        ]
    );
    let Some(RuntimeSpec::Wireguard(rt)) = b.runtime() else {
        panic!("wireguard has a runtime");
    };
    assert_eq!(rt.devices.len(), 2);
    // Userspace: TUN devices of the same names hold the address; the kernel only routes.
    let u = wireguard(WG_DUAL, true, Implementation::Userspace);
    let (s, _) = u.desired(&own, &mut std::iter::empty(), &|_| false);
    assert!(s.links.is_empty() && s.addrs.is_empty());
    assert_eq!(s.routes.len(), 2);
    assert!(u.owned_devs().is_empty());
    assert_eq!(u.route_devs(), ["flannel-wg", "flannel-wg-v6"]);
}

#[test]
fn wireguard_refuses_bad_options_and_a_missing_key() {
    let with = |backend: &str| {
        build(&Inputs {
            network: &network(&format!(
                r#"{{"Network":"198.18.0.0/16","Backend":{backend}}}"#
            )),
            underlay: &underlay(false),
            stored: Stored::default(),
            wireguard: Some(WireguardHost {
                public_key: flannel_model::WgKey([1; 32]),
                implementation: Implementation::Kernel,
            }),
        })
        .expect_err("refused")
        .to_string()
    };
    assert_eq!(
        with(r#"{"Type":"wireguard","Mode":"x"}"#),
        "no valid Mode configured"
    );
    let err = backend(
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard"}}"#,
        false,
    )
    .expect_err("no key");
    assert_eq!(err, BackendError::WireguardNoKey);
}
