//! `subnet.env` as the CNI plugin reads it ([`flannel_cni::subnet_env::SubnetEnv::parse`], the
//! Go plugin's line grammar), on any bytes.
//!
//! Checks: no panic; an accepted file has what the plugin needs (a network and a subnet of
//! some family, each given as its network address, no duplicate networks); and a file written
//! back from the values in the same grammar (Go's text forms) reads back equal, unless a value
//! is IPv4-mapped IPv6, which Go prints in IPv4 form.
#![no_main]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use flannel_cni::subnet_env::SubnetEnv;
use libfuzzer_sys::fuzz_target;

fn join(nets: &[flannel_cni::goip::GoIpNet]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/run/flannel/subnet.env");
    let Ok(env) = SubnetEnv::parse(&String::from_utf8_lossy(data), path) else {
        return;
    };
    assert!(!env.networks.is_empty() || !env.ipv6_networks.is_empty());
    assert!(env.subnet.is_some() || env.ipv6_subnet.is_some());
    for list in [&env.networks, &env.ipv6_networks] {
        for (i, n) in list.iter().enumerate() {
            assert_eq!(n.network(), *n, "{n} is not a network address");
            assert!(!list[..i].contains(n), "duplicate network {n}");
        }
    }
    for n in env.subnet.iter().chain(&env.ipv6_subnet) {
        assert_eq!(n.network(), *n, "{n} is not a network address");
    }

    let all = || {
        env.networks
            .iter()
            .chain(&env.ipv6_networks)
            .chain(&env.subnet)
            .chain(&env.ipv6_subnet)
    };
    if all().any(|n| matches!(n.addr, IpAddr::V6(a) if a.to_ipv4_mapped().is_some())) {
        return;
    }
    let mut text = String::new();
    if !env.networks.is_empty() {
        let _ = writeln!(text, "FLANNEL_NETWORK={}", join(&env.networks));
    }
    if let Some(s) = env.subnet {
        let _ = writeln!(text, "FLANNEL_SUBNET={s}");
    }
    if !env.ipv6_networks.is_empty() {
        let _ = writeln!(text, "FLANNEL_IPV6_NETWORK={}", join(&env.ipv6_networks));
    }
    if let Some(s) = env.ipv6_subnet {
        let _ = writeln!(text, "FLANNEL_IPV6_SUBNET={s}");
    }
    let _ = writeln!(text, "FLANNEL_MTU={}", env.mtu);
    let _ = writeln!(text, "FLANNEL_IPMASQ={}", env.ipmasq);
    let again = SubnetEnv::parse(&text, path)
        .unwrap_or_else(|e| panic!("values written back as {text:?} do not read: {e}"));
    assert_eq!(again, env, "write-back round trip of {text:?}");
});
