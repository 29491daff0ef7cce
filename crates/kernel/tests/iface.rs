//! External interface discovery against a real kernel, inside a private network namespace.
//!
//! Topology (per test, in the test thread's own namespace):
//! - `ext0` (veth, peer `ext0p`): 192.0.2.10/24, MTU 1500, IPv4 default route via 192.0.2.1;
//! - `ext1` (veth, peer `ext1p`): 198.51.100.10/24, MTU 1400.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result};
use flannel_kernel::iface::{
    discover_external_interface, gather_host_interfaces, route_get, IfaceError, IfaceRequest,
};
use flannel_testkit::netns::{enter_private_netns, sh};
use flannel_testkit::privileged::require_root;

fn ip(args: &str) -> Result<()> {
    let args: Vec<&str> = args.split_whitespace().collect();
    sh("ip", &args).map(|_| ())
}

/// Enters a fresh namespace and builds the two-uplink topology.
fn setup() -> Result<()> {
    enter_private_netns()?;
    ip("link add ext0 type veth peer name ext0p")?;
    ip("link add ext1 type veth peer name ext1p")?;
    ip("link set ext1 mtu 1400")?;
    ip("link set ext1p mtu 1400")?;
    ip("addr add 192.0.2.10/24 dev ext0")?;
    ip("addr add 198.51.100.10/24 dev ext1")?;
    for l in ["ext0", "ext0p", "ext1", "ext1p"] {
        ip(&format!("link set {l} up"))?;
    }
    ip("route add default via 192.0.2.1 dev ext0")?;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building tokio runtime")
}

fn v4(req: IfaceRequest) -> IfaceRequest {
    IfaceRequest { ipv4: true, ..req }
}

fn ifindex(name: &str) -> Result<u32> {
    // `ip -o link show dev X` prints "<index>: X: ..." for this thread's namespace.
    let out = sh("ip", &["-o", "link", "show", "dev", name])?;
    out.split(':')
        .next()
        .context("ip -o link output")?
        .trim()
        .parse()
        .context("parsing ifindex")
}

fn a4(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

#[test]
fn gathers_links_addresses_and_default_routes() -> Result<()> {
    if !require_root("gathers_links_addresses_and_default_routes") {
        return Ok(());
    }
    setup()?;
    let rt = runtime()?;
    let facts = rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(conn);
        let facts = gather_host_interfaces(&handle).await;
        task.abort();
        anyhow::Ok(facts?)
    })?;
    let ext0 = ifindex("ext0")?;
    let ext1 = ifindex("ext1")?;
    let l1 = facts
        .links
        .iter()
        .find(|l| l.name == "ext1")
        .context("ext1 missing")?;
    assert_eq!(l1.index, ext1);
    assert_eq!(l1.mtu, 1400);
    assert!(l1.up);
    let a0 = facts
        .addrs
        .iter()
        .find(|a| a.addr == IpAddr::V4(a4("192.0.2.10")))
        .context("192.0.2.10 missing")?;
    assert_eq!(a0.index, ext0);
    assert_eq!(a0.prefix_len, 24);
    assert!(a0.permanent);
    assert!(!a0.deprecated);
    assert!(!a0.temporary);
    assert_eq!(facts.default_routes_v4, vec![ext0]);
    assert!(facts.default_routes_v6.is_empty());
    Ok(())
}

#[test]
fn default_route_interface() -> Result<()> {
    if !require_root("default_route_interface") {
        return Ok(());
    }
    setup()?;
    let ext = runtime()?.block_on(discover_external_interface(&v4(IfaceRequest::default())))?;
    assert_eq!(ext.name, "ext0");
    assert_eq!(ext.index, ifindex("ext0")?);
    assert_eq!(ext.mtu, 1500);
    assert_eq!(ext.iface_addr, Some(a4("192.0.2.10")));
    assert_eq!(ext.ext_addr, Some(a4("192.0.2.10")));
    assert_eq!(ext.iface_v6_addr, None);
    Ok(())
}

#[test]
fn iface_by_name_and_by_ip() -> Result<()> {
    if !require_root("iface_by_name_and_by_ip") {
        return Ok(());
    }
    setup()?;
    let rt = runtime()?;
    for spec in ["ext1", "198.51.100.10"] {
        let req = v4(IfaceRequest {
            ifaces: vec!["nosuch0".into(), spec.into()],
            ..Default::default()
        });
        let ext = rt.block_on(discover_external_interface(&req))?;
        assert_eq!(ext.name, "ext1", "--iface {spec}");
        assert_eq!(ext.index, ifindex("ext1")?);
        assert_eq!(ext.mtu, 1400, "--iface {spec}");
        assert_eq!(ext.iface_addr, Some(a4("198.51.100.10")));
    }
    Ok(())
}

#[test]
fn iface_regex_by_ip_and_name() -> Result<()> {
    if !require_root("iface_regex_by_ip_and_name") {
        return Ok(());
    }
    setup()?;
    let rt = runtime()?;
    for regex in [r"^198\.51\.100\.", "^ext1$"] {
        let req = v4(IfaceRequest {
            iface_regexes: vec![regex.into()],
            ..Default::default()
        });
        let ext = rt.block_on(discover_external_interface(&req))?;
        assert_eq!(ext.name, "ext1", "--iface-regex {regex}");
        assert_eq!(ext.iface_addr, Some(a4("198.51.100.10")));
    }
    Ok(())
}

#[test]
fn iface_can_reach() -> Result<()> {
    if !require_root("iface_can_reach") {
        return Ok(());
    }
    setup()?;
    ip("addr add 198.51.100.20/24 dev ext1")?;
    ip("route add 203.0.113.0/24 via 198.51.100.1 dev ext1 src 198.51.100.20")?;
    let rt = runtime()?;

    let answer = rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(conn);
        let a = route_get(&handle, "203.0.113.5".parse()?).await;
        task.abort();
        anyhow::Ok(a?)
    })?;
    assert_eq!(answer.oif, ifindex("ext1")?);
    assert_eq!(answer.prefsrc, Some("198.51.100.20".parse()?));

    let req = v4(IfaceRequest {
        iface_can_reach: Some("203.0.113.5".parse()?),
        ..Default::default()
    });
    let ext = rt.block_on(discover_external_interface(&req))?;
    assert_eq!(ext.name, "ext1");
    assert_eq!(ext.iface_addr, Some(a4("198.51.100.20")));

    // Through the default route: ext0.
    let req = v4(IfaceRequest {
        iface_can_reach: Some("192.0.2.200".parse()?),
        ..Default::default()
    });
    let ext = rt.block_on(discover_external_interface(&req))?;
    assert_eq!(ext.name, "ext0");
    assert_eq!(ext.iface_addr, Some(a4("192.0.2.10")));
    Ok(())
}

#[test]
fn iface_can_reach_unreachable() -> Result<()> {
    if !require_root("iface_can_reach_unreachable") {
        return Ok(());
    }
    setup()?;
    ip("route del default")?;
    let rt = runtime()?;
    let err = rt
        .block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            let task = tokio::spawn(conn);
            let a = route_get(&handle, "203.0.113.5".parse()?).await;
            task.abort();
            anyhow::Ok(a)
        })?
        .expect_err("no route to 203.0.113.5");
    assert!(matches!(err, IfaceError::RouteGet { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("couldn't lookup route to 203.0.113.5"),
        "{err}"
    );

    let req = v4(IfaceRequest {
        iface_can_reach: Some("203.0.113.5".parse()?),
        ..Default::default()
    });
    let err = rt
        .block_on(discover_external_interface(&req))
        .expect_err("unreachable");
    assert!(matches!(err, IfaceError::NoMatch { .. }), "{err:?}");
    Ok(())
}

#[test]
fn public_ip_local_lookup() -> Result<()> {
    if !require_root("public_ip_local_lookup") {
        return Ok(());
    }
    setup()?;
    let rt = runtime()?;
    let req = v4(IfaceRequest {
        public_ip: Some(a4("198.51.100.10")),
        ..Default::default()
    });
    let ext = rt.block_on(discover_external_interface(&req))?;
    assert_eq!(ext.name, "ext1");
    assert_eq!(ext.ext_addr, Some(a4("198.51.100.10")));

    let req = v4(IfaceRequest {
        public_ip: Some(a4("203.0.113.99")),
        ..Default::default()
    });
    let err = rt
        .block_on(discover_external_interface(&req))
        .expect_err("non-local public ip");
    assert_eq!(
        err.to_string(),
        "Failed to find any valid interface to use: error looking up interface 203.0.113.99: \
         no interface with given IP found"
    );

    // With --iface the public IP is only advertised.
    let req = v4(IfaceRequest {
        ifaces: vec!["ext0".into()],
        public_ip: Some(a4("203.0.113.99")),
        ..Default::default()
    });
    let ext = rt.block_on(discover_external_interface(&req))?;
    assert_eq!(ext.name, "ext0");
    assert_eq!(ext.iface_addr, Some(a4("192.0.2.10")));
    assert_eq!(ext.ext_addr, Some(a4("203.0.113.99")));
    Ok(())
}

#[test]
fn deprecated_and_secondary_addresses() -> Result<()> {
    if !require_root("deprecated_and_secondary_addresses") {
        return Ok(());
    }
    enter_private_netns()?;
    ip("link add ext0 type veth peer name ext0p")?;
    ip("link set ext0 up")?;
    ip("link set ext0p up")?;
    // Primary but deprecated: skipped. Then primary 198.51.100.0/24 and a secondary in 192.0.2.0/24.
    ip("addr add 192.0.2.9/24 dev ext0 preferred_lft 0")?;
    ip("addr add 192.0.2.10/24 dev ext0")?;
    ip("addr add 198.51.100.10/24 dev ext0")?;
    ip("route add default via 192.0.2.1 dev ext0")?;
    let ext = runtime()?.block_on(discover_external_interface(&v4(IfaceRequest::default())))?;
    assert_eq!(ext.name, "ext0");
    // 192.0.2.10 is secondary (Go treats it like a temporary address): the primary wins.
    assert_eq!(ext.iface_addr, Some(a4("198.51.100.10")));
    Ok(())
}

#[test]
fn dual_stack_default_routes() -> Result<()> {
    if !require_root("dual_stack_default_routes") {
        return Ok(());
    }
    setup()?;
    ip("-6 addr add 2001:db8::10/64 dev ext0 nodad")?;
    ip("-6 route add default via 2001:db8::1 dev ext0")?;
    let req = IfaceRequest {
        ipv4: true,
        ipv6: true,
        ..Default::default()
    };
    let rt = runtime()?;
    let ext = rt.block_on(discover_external_interface(&req))?;
    assert_eq!(ext.name, "ext0");
    assert_eq!(ext.iface_addr, Some(a4("192.0.2.10")));
    assert_eq!(ext.iface_v6_addr, Some("2001:db8::10".parse()?));

    // Move the v6 default route to ext1: Flannel's mismatch error.
    ip("-6 addr add 2001:db8:1::10/64 dev ext1 nodad")?;
    ip("-6 route del default")?;
    ip("-6 route add default via 2001:db8:1::1 dev ext1")?;
    let err = rt
        .block_on(discover_external_interface(&req))
        .expect_err("mismatch");
    assert_eq!(
        err.to_string(),
        "Failed to find any valid interface to use: v6 default route interface ext1 must be the \
         same with v4 default route interface ext0"
    );
    Ok(())
}
