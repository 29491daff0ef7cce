//! IPv6 and blackhole routes against a real kernel, each test in its own network namespace
//! (see `common` for the topology): the vxlan backend's second device `flannel-v6.1` with its
//! IPv6 peers, host-gw's IPv6 routes, and the `--ip-blackhole-route` routes. Results are
//! checked through `observe` (observed == desired) and through iproute2's own view.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use common::*;
use flannel_kernel::{sysctl, Kernel, KernelEvent, ObserveScope};
use flannel_planner::diff::{diff, Op, Scope};
use flannel_planner::hostgw;
use flannel_planner::state::{KernelState, Route};
use flannel_testkit::privileged::require_root;
use ipnet::IpNet;

/// Lines of `ip -6 route show [extra]` that mention `dev`.
fn routes6_on(dev: &str, extra: &str) -> Result<Vec<String>> {
    let out = ip(&format!("-6 route show {extra}"))?;
    Ok(lines(&out)
        .into_iter()
        .filter(|l| l.contains(&format!("dev {dev}")))
        .collect())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `ip -6 route` / `ip -6 neigh` / `bridge fdb` lines on flannel-v6.1 for `peers`.
fn assert_v6_entries(peers: &[u8]) -> Result<()> {
    let routes: Vec<String> = peers
        .iter()
        .map(|i| format!("2001:db8:f000:{i:x}::/64 via 2001:db8:f000:{i:x}:: dev {DEV6} metric 1024 onlink pref medium"))
        .collect();
    let neighs: Vec<String> = peers
        .iter()
        .map(|i| format!("2001:db8:f000:{i:x}:: lladdr {} PERMANENT", mac6(*i)))
        .collect();
    let fdb: Vec<String> = peers
        .iter()
        .map(|i| format!("{} dst 2001:db8:1::{i:x} self permanent", mac6(*i)))
        .collect();
    assert_eq!(
        sorted(routes6_on(DEV6, "proto boot")?),
        sorted(routes),
        "ip -6 route show proto boot"
    );
    assert_eq!(
        sorted(lines(&ip(&format!("-6 neigh show dev {DEV6}"))?)),
        sorted(neighs),
        "ip -6 neigh show dev {DEV6}"
    );
    assert_eq!(
        sorted(lines(&run("bridge", &format!("fdb show dev {DEV6}"))?)),
        sorted(fdb),
        "bridge fdb show dev {DEV6}"
    );
    Ok(())
}

#[test]
fn vxlan_dual_stack_devices_and_peers_are_programmed_exactly() -> Result<()> {
    if !require_root("vxlan_dual_stack_devices_and_peers_are_programmed_exactly") {
        return Ok(());
    }
    let rt = setup_dual()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let (oscope, scope) = (dual_observe_scope(), dual_scope());
        let desired = dual_desired(&[2, 3])?;
        let ops = reconcile(&k, &desired, &oscope, &scope).await?;
        // Two links, two addresses, and 2 peers × 2 families × (neighbour, FDB, route).
        assert_eq!(ops.len(), 4 + 12, "{ops:#?}");

        let link = ip(&format!("-d link show {DEV6}"))?;
        assert!(
            link.contains(
                "vxlan id 1 local 2001:db8:1::1 dev eth0 srcport 0 0 dstport 8472 nolearning"
            ),
            "{link}"
        );
        assert!(link.contains(" mtu 1430 "), "{link}");
        assert!(link.contains(&format!("link/ether {OWN_MAC6} ")), "{link}");
        assert!(link.contains(",UP,"), "{link}");
        assert_eq!(sysctl::read(&sysctl::accept_ra_key(DEV6))?, "0");
        assert_eq!(sysctl::read(&sysctl::accept_ra_key(DEV))?, "0");
        let addrs = ip(&format!("-6 addr show dev {DEV6} scope global"))?;
        assert!(
            addrs.contains("inet6 2001:db8:f000:1::/128 scope global"),
            "{addrs}"
        );
        assert_v6_entries(&[2, 3])?;
        assert_vxlan_entries(&[2, 3])?;
        assert_converged(&k, &desired, &oscope, &scope).await?;

        // Peer 3 leaves: both families' entries go, in Flannel's order.
        let fewer = dual_desired(&[2])?;
        let ops = reconcile(&k, &fewer, &oscope, &scope).await?;
        let kinds: Vec<&str> = ops
            .iter()
            .map(|o| match o {
                Op::DelRoute(_) => "route",
                Op::DelNeigh(_) => "neigh",
                Op::DelFdb(_) => "fdb",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["route", "route", "neigh", "neigh", "fdb", "fdb"],
            "{ops:#?}"
        );
        assert_v6_entries(&[2])?;
        assert_vxlan_entries(&[2])?;

        // IPv6 entries removed by hand come back exactly.
        ip(&format!("-6 route del 2001:db8:f000:2::/64 dev {DEV6}"))?;
        ip(&format!("-6 neigh del 2001:db8:f000:2:: dev {DEV6}"))?;
        let ops = reconcile(&k, &fewer, &oscope, &scope).await?;
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert_v6_entries(&[2])?;
        assert_converged(&k, &fewer, &oscope, &scope).await?;

        // A deleted IPv6 device is re-created with its address and peers.
        ip(&format!("link del {DEV6}"))?;
        let ops = reconcile(&k, &fewer, &oscope, &scope).await?;
        assert!(
            matches!(ops[0], Op::CreateLink(ref l) if l.name() == DEV6),
            "{ops:#?}"
        );
        assert_eq!(ops.len(), 1 + 1 + 3, "{ops:#?}");
        assert_eq!(sysctl::read(&sysctl::accept_ra_key(DEV6))?, "0");
        assert_v6_entries(&[2])?;
        assert_converged(&k, &fewer, &oscope, &scope).await
    })
}

#[test]
fn host_gw_ipv6_routes_via_peer_public_ipv6() -> Result<()> {
    if !require_root("host_gw_ipv6_routes_via_peer_public_ipv6") {
        return Ok(());
    }
    let rt = setup_dual()?;
    rt.block_on(async {
        let oscope = ObserveScope {
            devs: vec![],
            route_devs: vec!["eth0".into()],
            blackholes: false,
        };
        let k = Kernel::connect()?;
        // An operator's IPv6 route inside the pod network.
        ip("-6 route add 2001:db8:f000:c8::/64 via 2001:db8:1::c8 dev eth0")?;
        let leases: Vec<_> = [2, 3].iter().map(|&i| dual_lease(i, "host-gw")).collect();
        let (desired, skipped) = hostgw::desired_state(&ext_dual()?, &leases);
        assert!(skipped.is_empty(), "{skipped:?}");
        let scope = Scope {
            owned_devs: BTreeSet::new(),
            owned_routes: desired.routes.clone(),
            owned_blackholes: BTreeSet::new(),
        };
        let ops = reconcile(&k, &desired, &oscope, &scope).await?;
        assert_eq!(ops.len(), 4, "{ops:#?}");
        assert_eq!(
            routes6_on("eth0", "proto boot")?,
            [
                "2001:db8:f000:2::/64 via 2001:db8:1::2 dev eth0 metric 1024 pref medium",
                "2001:db8:f000:3::/64 via 2001:db8:1::3 dev eth0 metric 1024 pref medium",
                "2001:db8:f000:c8::/64 via 2001:db8:1::c8 dev eth0 metric 1024 pref medium",
            ]
        );
        let mut expected = desired.clone();
        expected.routes.insert(Route {
            dst: "2001:db8:f000:c8::/64".parse()?,
            gateway: Some("2001:db8:1::c8".parse()?),
            dev: "eth0".into(),
            onlink: false,
        });
        assert_eq!(k.observe(&oscope).await?, expected);

        // Peer 3 leaves; the operator's route stays.
        let (fewer, _) = hostgw::desired_state(&ext_dual()?, &leases[..1]);
        let ops = reconcile(&k, &fewer, &oscope, &scope).await?;
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert_eq!(
            routes6_on("eth0", "proto boot")?,
            [
                "2001:db8:f000:2::/64 via 2001:db8:1::2 dev eth0 metric 1024 pref medium",
                "2001:db8:f000:c8::/64 via 2001:db8:1::c8 dev eth0 metric 1024 pref medium",
            ]
        );
        Ok(())
    })
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test net")
}

fn blackhole_lines() -> Result<Vec<String>> {
    let mut out = lines(&ip("route show type blackhole")?);
    out.extend(lines(&ip("-6 route show type blackhole")?));
    Ok(out)
}

#[test]
fn blackhole_routes_for_our_subnets_only() -> Result<()> {
    if !require_root("blackhole_routes_for_our_subnets_only") {
        return Ok(());
    }
    let rt = setup_dual()?;
    rt.block_on(async {
        // A bridge holding our subnets' gateway addresses (as a CNI bridge would).
        ip("link add cni0 type bridge")?;
        ip("link set cni0 up")?;
        ip("addr add 198.18.1.1/24 dev cni0")?;
        ip("-6 addr add 2001:db8:f000:1::1/64 dev cni0 nodad")?;
        // Ours from a previous subnet, and an operator's.
        ip("route add blackhole 198.18.9.0/24 proto boot")?;
        ip("route add blackhole 203.0.113.0/24 proto static")?;
        let oscope = ObserveScope {
            blackholes: true,
            ..ObserveScope::default()
        };
        let own = [net("198.18.1.0/24"), net("2001:db8:f000:1::/64")];
        let desired = KernelState {
            blackholes: own.into(),
            ..KernelState::default()
        };
        let scope = Scope {
            owned_blackholes: BTreeSet::from([own[0], own[1], net("198.18.9.0/24")]),
            ..Scope::default()
        };
        let k = Kernel::connect()?;
        let ops = reconcile(&k, &desired, &oscope, &scope).await?;
        assert_eq!(
            ops,
            [
                Op::DelBlackhole(net("198.18.9.0/24")),
                Op::AddBlackhole(own[0]),
                Op::AddBlackhole(own[1]),
            ]
        );
        assert_eq!(
            blackhole_lines()?,
            [
                "blackhole 198.18.1.0/24 metric 1024",
                "blackhole 203.0.113.0/24 proto static",
                "blackhole 2001:db8:f000:1::/64 dev lo metric 1024 pref medium",
            ]
        );
        assert_eq!(
            lines(&ip("route show proto boot")?),
            ["blackhole 198.18.1.0/24 metric 1024"]
        );
        let mut expected = desired.clone();
        expected.blackholes.insert(net("203.0.113.0/24"));
        assert_eq!(k.observe(&oscope).await?, expected);
        assert!(diff(&desired, &expected, &scope).is_empty());

        // The bridge's connected routes (lower metric) keep winning ...
        assert!(ip("route get 198.18.1.5")?.contains("dev cni0"));
        assert!(ip("-6 route get 2001:db8:f000:1::5")?.contains("dev cni0"));
        // ... and without them, traffic to our subnet goes nowhere.
        ip("addr del 198.18.1.1/24 dev cni0")?;
        assert!(ip("route get 198.18.1.5").is_err(), "blackholed");

        // Removed by hand: put back.
        ip("route del blackhole 198.18.1.0/24")?;
        let ops = reconcile(&k, &desired, &oscope, &scope).await?;
        assert_eq!(ops, [Op::AddBlackhole(own[0])]);

        // Our subnet moves: the old blackholes go, the bridge's IPv6 route to the old subnet
        // (same destination, another type) stays.
        let moved = [net("198.18.2.0/24"), net("2001:db8:f000:2::/64")];
        let desired = KernelState {
            blackholes: moved.into(),
            ..KernelState::default()
        };
        let mut scope = scope;
        scope.owned_blackholes.extend(moved);
        let ops = reconcile(&k, &desired, &oscope, &scope).await?;
        assert_eq!(ops.len(), 4, "{ops:#?}");
        assert_eq!(
            blackhole_lines()?,
            [
                "blackhole 198.18.2.0/24 metric 1024",
                "blackhole 203.0.113.0/24 proto static",
                "blackhole 2001:db8:f000:2::/64 dev lo metric 1024 pref medium",
            ]
        );
        assert_eq!(
            lines(&ip("-6 route show 2001:db8:f000:1::/64")?),
            ["2001:db8:f000:1::/64 dev cni0 proto kernel metric 256 pref medium"]
        );
        let mut expected = desired.clone();
        expected.blackholes.insert(net("203.0.113.0/24"));
        assert_eq!(k.observe(&oscope).await?, expected);
        Ok(())
    })
}

#[test]
fn blackhole_add_never_replaces_another_route() -> Result<()> {
    if !require_root("blackhole_add_never_replaces_another_route") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        // Same destination and metric as our blackhole would have.
        ip("route add 198.18.1.0/24 via 192.0.2.9 dev eth0 metric 1024")?;
        let k = Kernel::connect()?;
        let report = k.apply(&[Op::AddBlackhole(net("198.18.1.0/24"))]).await;
        assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
        assert!(report.errors[0].1.is_exists(), "{}", report.errors[0].1);
        assert_eq!(
            lines(&ip("route show 198.18.1.0/24")?),
            ["198.18.1.0/24 via 192.0.2.9 dev eth0 metric 1024"]
        );
        // Deleting "our" blackhole leaves that route alone too.
        let report = k.apply(&[Op::DelBlackhole(net("198.18.1.0/24"))]).await;
        assert!(report.is_ok(), "{:#?}", report.errors);
        assert_eq!(lines(&ip("route show 198.18.1.0/24")?).len(), 1);
        Ok(())
    })
}

#[test]
fn ipv6_and_blackhole_removals_are_reported() -> Result<()> {
    if !require_root("ipv6_and_blackhole_removals_are_reported") {
        return Ok(());
    }
    let rt = setup_dual()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        reconcile(
            &k,
            &dual_desired(&[2])?,
            &dual_observe_scope(),
            &dual_scope(),
        )
        .await?;
        ip("route add blackhole 198.18.1.0/24")?;
        ip("-6 route add blackhole 2001:db8:f000:1::/64")?;
        let mut events = k.events().await?;
        let within = Duration::from_secs(2);

        ip(&format!("-6 route del 2001:db8:f000:2::/64 dev {DEV6}"))?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::RouteRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::RouteRemoved {
                dst: net("2001:db8:f000:2::/64"),
                gateway: Some("2001:db8:f000:2::".parse()?),
                dev: Some(DEV6.into()),
            }
        );
        ip(&format!("-6 neigh del 2001:db8:f000:2:: dev {DEV6}"))?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::NeighRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::NeighRemoved {
                dev: Some(DEV6.into()),
                ip: "2001:db8:f000:2::".parse()?,
            }
        );
        ip(&format!("-6 addr del 2001:db8:f000:1::/128 dev {DEV6}"))?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::AddrRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::AddrRemoved {
                dev: Some(DEV6.into()),
                net: net("2001:db8:f000:1::/128"),
            }
        );
        for dst in ["198.18.1.0/24", "2001:db8:f000:1::/64"] {
            ip(&format!("route del blackhole {dst}"))?;
            let ev = expect(&mut events, within, |e| {
                matches!(e, KernelEvent::BlackholeRemoved { .. })
            })
            .await?;
            assert_eq!(ev, KernelEvent::BlackholeRemoved { dst: net(dst) });
        }
        Ok(())
    })
}
