//! The applier and observer against a real kernel, each test in its own network namespace
//! (see `common` for the topology). Results are checked both through `observe` and through
//! iproute2's own view (`ip -d link`, `ip route`, `ip neigh`, `bridge fdb`).

mod common;

use std::collections::BTreeSet;

use anyhow::Result;
use common::*;
use flannel_kernel::{Kernel, KernelError, ObserveScope};
use flannel_planner::diff::{diff, Op, Scope};
use flannel_planner::hostgw;
use flannel_planner::state::{Addr, Fdb, KernelState, Neigh, Route};
use flannel_testkit::privileged::require_root;

#[test]
fn vxlan_peers_are_programmed_exactly() -> Result<()> {
    if !require_root("vxlan_peers_are_programmed_exactly") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let desired = vxlan_desired(&[2, 3, 4])?;
        let ops = reconcile(&k, &desired, &observe_scope(), &vxlan_scope()).await?;
        // Link, address, and 3 × (neighbour, FDB, route).
        assert_eq!(ops.len(), 2 + 9, "{ops:#?}");
        assert!(matches!(ops[0], Op::CreateLink(_)));

        let link = ip(&format!("-d link show {DEV}"))?;
        assert!(
            link.contains(
                "vxlan id 1 local 192.0.2.1 dev eth0 srcport 0 0 dstport 8472 nolearning"
            ),
            "{link}"
        );
        assert!(link.contains(" mtu 1450 "), "{link}");
        assert!(link.contains(&format!("link/ether {OWN_MAC} ")), "{link}");
        assert!(link.contains(",UP,"), "{link}");
        assert!(!link.contains(" gbp"), "{link}");
        let addrs = ip(&format!("-4 addr show dev {DEV}"))?;
        assert!(
            addrs.contains(&format!("inet 198.18.1.0/32 scope global {DEV}")),
            "{addrs}"
        );
        assert_vxlan_entries(&[2, 3, 4])?;

        assert_converged(&k, &desired, &observe_scope(), &vxlan_scope()).await
    })
}

#[test]
fn applying_the_same_plan_twice_is_error_free() -> Result<()> {
    if !require_root("applying_the_same_plan_twice_is_error_free") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let desired = vxlan_desired(&[2, 3])?;
        let observed = k.observe(&observe_scope()).await?;
        let ops = diff(&desired, &observed, &vxlan_scope());
        for round in 1..=2 {
            let report = k.apply(&ops).await;
            assert!(report.is_ok(), "round {round}: {:#?}", report.errors);
            assert_eq!(report.applied, ops.len(), "round {round}");
        }
        assert_vxlan_entries(&[2, 3])?;
        assert_converged(&k, &desired, &observe_scope(), &vxlan_scope()).await?;

        // Creating what exists and deleting what is gone are successes too.
        let gone = Neigh {
            dev: DEV.into(),
            ip: ipv4("198.18.77.0"),
            mac: parse_mac(&mac(77)),
        };
        let extra = vec![
            Op::AddAddr(Addr {
                dev: DEV.into(),
                net: "198.18.1.0/32".parse()?,
            }),
            Op::DelAddr(Addr {
                dev: DEV.into(),
                net: "198.18.77.0/32".parse()?,
            }),
            Op::DelRoute(Route {
                dst: "198.18.77.0/24".parse()?,
                gateway: Some(ipv4("198.18.77.0")),
                dev: DEV.into(),
                onlink: true,
            }),
            Op::DelNeigh(gone.clone()),
            Op::DelFdb(Fdb {
                dev: DEV.into(),
                mac: gone.mac,
                dst: ipv4("192.0.2.77"),
            }),
            // Entries on a device that does not exist are gone as well.
            Op::DelNeigh(Neigh {
                dev: "nosuch0".into(),
                ..gone
            }),
        ];
        let report = k.apply(&extra).await;
        assert!(report.is_ok(), "{:#?}", report.errors);
        assert_eq!(report.applied, extra.len());
        assert_converged(&k, &desired, &observe_scope(), &vxlan_scope()).await
    })
}

#[test]
fn deleted_device_is_recreated_with_every_peer() -> Result<()> {
    if !require_root("deleted_device_is_recreated_with_every_peer") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let desired = vxlan_desired(&[2, 3, 4])?;
        reconcile(&k, &desired, &observe_scope(), &vxlan_scope()).await?;
        ip(&format!("link del {DEV}"))?;
        assert!(k.observe(&observe_scope()).await?.links.is_empty());

        let ops = reconcile(&k, &desired, &observe_scope(), &vxlan_scope()).await?;
        assert_eq!(ops.len(), 2 + 9, "{ops:#?}");
        assert_vxlan_entries(&[2, 3, 4])?;
        assert_converged(&k, &desired, &observe_scope(), &vxlan_scope()).await
    })
}

#[test]
fn entries_removed_by_hand_are_restored_exactly() -> Result<()> {
    if !require_root("entries_removed_by_hand_are_restored_exactly") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let desired = vxlan_desired(&[2, 3, 4])?;
        reconcile(&k, &desired, &observe_scope(), &vxlan_scope()).await?;

        ip(&format!("route del 198.18.2.0/24 dev {DEV}"))?;
        ip(&format!("neigh del 198.18.3.0 dev {DEV}"))?;
        run(
            "bridge",
            &format!("fdb del {} dev {DEV} dst 192.0.2.4 self", mac(4)),
        )?;

        let observed = k.observe(&observe_scope()).await?;
        let ops = diff(&desired, &observed, &vxlan_scope());
        assert_eq!(
            ops,
            vec![
                Op::ReplaceNeigh(Neigh {
                    dev: DEV.into(),
                    ip: ipv4("198.18.3.0"),
                    mac: parse_mac(&mac(3)),
                }),
                Op::ReplaceFdb(Fdb {
                    dev: DEV.into(),
                    mac: parse_mac(&mac(4)),
                    dst: ipv4("192.0.2.4"),
                }),
                Op::ReplaceRoute(Route {
                    dst: "198.18.2.0/24".parse()?,
                    gateway: Some(ipv4("198.18.2.0")),
                    dev: DEV.into(),
                    onlink: true,
                }),
            ]
        );
        let report = k.apply(&ops).await;
        assert!(report.is_ok(), "{:#?}", report.errors);
        assert_vxlan_entries(&[2, 3, 4])?;
        assert_converged(&k, &desired, &observe_scope(), &vxlan_scope()).await
    })
}

#[test]
fn stale_peer_is_removed_and_foreign_routes_survive() -> Result<()> {
    if !require_root("stale_peer_is_removed_and_foreign_routes_survive") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        ip("link add eth1 type veth peer name eth1p")?;
        ip("addr add 198.51.100.1/24 dev eth1")?;
        ip("link set eth1 up")?;
        ip("link set eth1p up")?;
        let oscope = ObserveScope {
            devs: vec![DEV.into()],
            route_devs: vec!["eth0".into(), "eth1".into()],
            blackholes: false,
        };
        let k = Kernel::connect()?;
        reconcile(&k, &vxlan_desired(&[2, 3, 4])?, &oscope, &vxlan_scope()).await?;
        ip("route add 198.18.200.0/24 via 192.0.2.200 dev eth0")?;
        ip("route add 198.18.201.0/24 via 198.51.100.9 dev eth1")?;

        // Peer 4 went away while we were not looking.
        let desired = vxlan_desired(&[2, 3])?;
        let ops = reconcile(&k, &desired, &oscope, &vxlan_scope()).await?;
        assert_eq!(ops.len(), 3, "{ops:#?}");
        assert!(matches!(ops[0], Op::DelRoute(_)));
        assert!(matches!(ops[1], Op::DelNeigh(_)));
        assert!(matches!(ops[2], Op::DelFdb(_)));
        assert_vxlan_entries(&[2, 3])?;
        assert_eq!(
            routes_on("eth0", "")?,
            [
                "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.1",
                "198.18.200.0/24 via 192.0.2.200 dev eth0",
            ]
        );
        assert_eq!(
            routes_on("eth1", "")?,
            [
                "198.18.201.0/24 via 198.51.100.9 dev eth1",
                "198.51.100.0/24 dev eth1 proto kernel scope link src 198.51.100.1",
            ]
        );

        // The foreign routes are observed, but not ours to touch.
        let observed = k.observe(&oscope).await?;
        let foreign: BTreeSet<String> = observed
            .routes
            .iter()
            .filter(|r| r.dev != DEV)
            .map(|r| r.dst.to_string())
            .collect();
        assert_eq!(
            foreign,
            BTreeSet::from(["198.18.200.0/24".into(), "198.18.201.0/24".into()])
        );
        assert!(diff(&desired, &observed, &vxlan_scope()).is_empty());
        Ok(())
    })
}

/// A device made by hand with `spec` is replaced by flanneld's, and what was on it is
/// replayed.
fn replaced_device(test: &str, spec: &str, expect: fn(&Op) -> bool) -> Result<()> {
    if !require_root(test) {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        ip(&format!("link add {DEV} {spec}"))?;
        ip(&format!("link set {DEV} up"))?;
        ip(&format!("route add 198.18.9.0/24 dev {DEV}"))?;
        let k = Kernel::connect()?;
        let desired = vxlan_desired(&[2, 3])?;
        let ops = reconcile(&k, &desired, &observe_scope(), &vxlan_scope()).await?;
        assert!(expect(&ops[0]), "{test}: {ops:#?}");
        let link = ip(&format!("-d link show {DEV}"))?;
        assert!(
            link.contains(
                "vxlan id 1 local 192.0.2.1 dev eth0 srcport 0 0 dstport 8472 nolearning"
            ),
            "{test}: {link}"
        );
        assert_vxlan_entries(&[2, 3])?;
        assert_converged(&k, &desired, &observe_scope(), &vxlan_scope()).await
    })
}

#[test]
fn device_with_another_vni_is_recreated() -> Result<()> {
    replaced_device(
        "device_with_another_vni_is_recreated",
        "type vxlan id 7 dev eth0 local 192.0.2.1 dstport 8472 nolearning",
        |op| matches!(op, Op::RecreateLink(_)),
    )
}

#[test]
fn device_with_learning_on_is_recreated() -> Result<()> {
    replaced_device(
        "device_with_learning_on_is_recreated",
        "type vxlan id 1 dev eth0 local 192.0.2.1 dstport 8472 learning",
        |op| matches!(op, Op::RecreateLink(_)),
    )
}

#[test]
fn non_vxlan_device_in_the_way_is_replaced() -> Result<()> {
    // observe leaves the veth out; CreateLink meets EEXIST, deletes it and creates flannel.1.
    replaced_device(
        "non_vxlan_device_in_the_way_is_replaced",
        "type veth peer name flannelp",
        |op| matches!(op, Op::CreateLink(_)),
    )
}

#[test]
fn mtu_mac_and_state_are_updated_in_place() -> Result<()> {
    if !require_root("mtu_mac_and_state_are_updated_in_place") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let desired = vxlan_desired(&[2, 3])?;
        reconcile(&k, &desired, &observe_scope(), &vxlan_scope()).await?;
        let index = ifindex(DEV)?;
        ip(&format!("link set {DEV} down"))?;
        ip(&format!(
            "link set {DEV} mtu 1400 address 0e:00:00:00:00:99"
        ))?;
        // Taking the device down made the kernel flush its routes and neighbours (not the
        // FDB): the plan updates the link in place and replays those.
        let observed = k.observe(&observe_scope()).await?;
        let ops = diff(&desired, &observed, &vxlan_scope());
        assert!(matches!(ops[0], Op::UpdateLink(_)), "{ops:#?}");
        assert!(!ops.iter().any(|o| matches!(o, Op::RecreateLink(_))));
        let report = k.apply(&ops).await;
        assert!(report.is_ok(), "{:#?}", report.errors);
        assert_eq!(ifindex(DEV)?, index, "the device was kept");
        let link = ip(&format!("link show {DEV}"))?;
        assert!(link.contains(" mtu 1450 "), "{link}");
        assert!(link.contains(&format!("link/ether {OWN_MAC} ")), "{link}");
        assert!(link.contains(",UP"), "{link}");
        assert_vxlan_entries(&[2, 3])?;
        assert_converged(&k, &desired, &observe_scope(), &vxlan_scope()).await
    })
}

#[test]
fn host_gw_routes_via_peer_public_ips() -> Result<()> {
    if !require_root("host_gw_routes_via_peer_public_ips") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let oscope = ObserveScope {
            devs: vec![],
            route_devs: vec!["eth0".into()],
            blackholes: false,
        };
        let k = Kernel::connect()?;
        ip("route add 198.18.200.0/24 via 192.0.2.200 dev eth0")?;
        let leases: Vec<_> = [2, 3, 4].iter().map(|&i| lease(i, "host-gw")).collect();
        let (desired, _) = hostgw::desired_state(&ext()?, &leases);
        // host-gw owns exactly the routes it installed (its journal).
        let scope = Scope {
            owned_devs: BTreeSet::new(),
            owned_routes: desired.routes.clone(),
            owned_blackholes: BTreeSet::new(),
        };
        let ops = reconcile(&k, &desired, &oscope, &scope).await?;
        assert_eq!(ops.len(), 3);
        let boot = routes_on("eth0", "proto boot")?;
        assert_eq!(
            boot,
            [
                "198.18.2.0/24 via 192.0.2.2 dev eth0",
                "198.18.3.0/24 via 192.0.2.3 dev eth0",
                "198.18.4.0/24 via 192.0.2.4 dev eth0",
                "198.18.200.0/24 via 192.0.2.200 dev eth0",
            ]
        );
        let mut expected = desired.clone();
        expected.routes.insert(Route {
            dst: "198.18.200.0/24".parse()?,
            gateway: Some(ipv4("192.0.2.200")),
            dev: "eth0".into(),
            onlink: false,
        });
        assert_eq!(k.observe(&oscope).await?, expected);

        // Peers 3 and 4 leave: their routes go, the foreign one stays.
        let (fewer, _) = hostgw::desired_state(&ext()?, &leases[..1]);
        let ops = reconcile(&k, &fewer, &oscope, &scope).await?;
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert_eq!(
            routes_on("eth0", "proto boot")?,
            [
                "198.18.2.0/24 via 192.0.2.2 dev eth0",
                "198.18.200.0/24 via 192.0.2.200 dev eth0",
            ]
        );
        // A host-gw route somebody changed is put back.
        ip("route replace 198.18.2.0/24 via 192.0.2.99 dev eth0")?;
        let ops = reconcile(&k, &fewer, &oscope, &scope).await?;
        assert_eq!(ops.len(), 1, "{ops:#?}");
        assert_eq!(
            routes_on("eth0", "proto boot")?.first().map(String::as_str),
            Some("198.18.2.0/24 via 192.0.2.2 dev eth0")
        );
        Ok(())
    })
}

#[test]
fn failures_are_reported_per_op_and_the_rest_applied() -> Result<()> {
    if !require_root("failures_are_reported_per_op_and_the_rest_applied") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let good = Route {
            dst: "198.18.5.0/24".parse()?,
            gateway: Some(ipv4("192.0.2.5")),
            dev: "eth0".into(),
            onlink: false,
        };
        let missing_dev = Route {
            dev: "nosuch0".into(),
            dst: "198.18.6.0/24".parse()?,
            ..good.clone()
        };
        // Not on-link and no route to the gateway: the kernel refuses.
        let unreachable = Route {
            dst: "198.18.7.0/24".parse()?,
            gateway: Some(ipv4("203.0.113.7")),
            ..good.clone()
        };
        let ops = vec![
            Op::ReplaceRoute(missing_dev.clone()),
            Op::ReplaceRoute(unreachable.clone()),
            Op::ReplaceRoute(good),
        ];
        let report = k.apply(&ops).await;
        assert_eq!(report.applied, 1);
        assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
        let (op, e) = &report.errors[0];
        assert_eq!(op, &Op::ReplaceRoute(missing_dev));
        assert!(matches!(e, KernelError::NoSuchDevice { dev, .. } if dev == "nosuch0"));
        let (op, e) = &report.errors[1];
        assert_eq!(op, &Op::ReplaceRoute(unreachable));
        assert!(e.errno().is_some(), "{e}");
        assert!(
            e.to_string().starts_with(
                "`ip route replace 198.18.7.0/24 via 203.0.113.7 dev eth0 proto boot`: "
            ),
            "{e}"
        );
        assert_eq!(
            routes_on("eth0", "proto boot")?,
            ["198.18.5.0/24 via 192.0.2.5 dev eth0"]
        );
        Ok(())
    })
}

#[test]
fn observe_without_devices_is_empty() -> Result<()> {
    if !require_root("observe_without_devices_is_empty") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let state = k
            .observe(&ObserveScope {
                devs: vec![DEV.into()],
                route_devs: vec!["nosuch0".into()],
                blackholes: true,
            })
            .await?;
        assert_eq!(state, KernelState::default());
        Ok(())
    })
}

#[test]
fn route_get_answers_which_device_reaches_a_peer() -> Result<()> {
    if !require_root("route_get_answers_which_device_reaches_a_peer") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        // DirectRouting asks this about every peer's public IP.
        let answer = k.route_get(ipv4("192.0.2.2")).await?;
        assert_eq!(answer.oif, ifindex("eth0")?);
        assert_eq!(answer.prefsrc, Some(ipv4("192.0.2.1")));
        Ok(())
    })
}
