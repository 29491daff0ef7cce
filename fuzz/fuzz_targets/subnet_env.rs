//! `subnet.env` as flanneld reads its previous file ([`flannel_model::SubnetEnv::parse`], the
//! godotenv grammar), on any bytes.
//!
//! Checks: no panic; what flanneld renders reads back equal (parse → render → parse); and the
//! CNI plugin, with its own stricter grammar, reads every complete file flanneld renders with
//! the same values (networks and subnets as networks, MTU, IPMASQ), so pods get what flanneld
//! meant. Skipped for the round trip: IPv6 values that Flannel prints in IPv4 form (see
//! `goip::ipv6_to_string`), which no reader takes back as IPv6.
#![no_main]

use std::net::IpAddr;
use std::path::Path;

use flannel_cni::goip::GoIpNet;
use flannel_model::goip::ipv6_to_string;
use flannel_model::SubnetEnv;
use libfuzzer_sys::fuzz_target;

fn goip(addr: IpAddr, prefix: u8) -> GoIpNet {
    GoIpNet { addr, prefix }
}

fuzz_target!(|data: &[u8]| {
    let env = SubnetEnv::parse(&String::from_utf8_lossy(data));
    let v4_form =
        |n: Option<ipnet::Ipv6Net>| n.is_some_and(|n| ipv6_to_string(n.addr()).contains('.'));
    if v4_form(env.ipv6_network) || v4_form(env.ipv6_subnet) {
        return;
    }
    let text = env.render();
    assert_eq!(
        SubnetEnv::parse(&text),
        env,
        "render/parse round trip of {text:?}"
    );

    let complete = (env.network.is_some() || env.ipv6_network.is_some())
        && (env.subnet.is_some() || env.ipv6_subnet.is_some())
        && env.mtu.is_some()
        && env.ipmasq.is_some();
    if !complete {
        return;
    }
    let cni = flannel_cni::subnet_env::SubnetEnv::parse(&text, Path::new("subnet.env"))
        .unwrap_or_else(|e| panic!("the CNI plugin refuses flanneld's {text:?}: {e}"));
    let v4 = |n: ipnet::Ipv4Net| goip(IpAddr::V4(n.network()), n.prefix_len());
    let v6 = |n: ipnet::Ipv6Net| goip(IpAddr::V6(n.network()), n.prefix_len());
    assert_eq!(
        cni.networks,
        env.network.map(v4).into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        cni.ipv6_networks,
        env.ipv6_network.map(v6).into_iter().collect::<Vec<_>>()
    );
    assert_eq!(cni.subnet, env.subnet.map(v4));
    assert_eq!(cni.ipv6_subnet, env.ipv6_subnet.map(v6));
    assert_eq!(Some(cni.mtu), env.mtu);
    assert_eq!(Some(cni.ipmasq), env.ipmasq);
});
