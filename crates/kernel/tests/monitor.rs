//! Kernel change notifications, in a private network namespace: removing flanneld's link or
//! any of its entries by hand is reported promptly.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use flannel_kernel::{Kernel, KernelEvent};
use flannel_testkit::privileged::require_root;

#[test]
fn removals_of_our_link_and_entries_are_reported() -> Result<()> {
    if !require_root("removals_of_our_link_and_entries_are_reported") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        reconcile(
            &k,
            &vxlan_desired(&[2, 3])?,
            &observe_scope(),
            &vxlan_scope(),
        )
        .await?;
        let mut events = k.events().await?;
        let dev = Some(DEV.to_string());
        let within = Duration::from_secs(2);

        ip(&format!("route del 198.18.2.0/24 dev {DEV}"))?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::RouteRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::RouteRemoved {
                dst: "198.18.2.0/24".parse()?,
                gateway: Some(ipv4("198.18.2.0")),
                dev: dev.clone(),
            }
        );

        ip(&format!("neigh del 198.18.3.0 dev {DEV}"))?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::NeighRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::NeighRemoved {
                dev: dev.clone(),
                ip: ipv4("198.18.3.0"),
            }
        );

        run(
            "bridge",
            &format!("fdb del {} dev {DEV} dst 192.0.2.3 self", mac(3)),
        )?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::FdbRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::FdbRemoved {
                dev: dev.clone(),
                mac: parse_mac(&mac(3)),
                dst: Some(ipv4("192.0.2.3")),
            }
        );

        ip(&format!("addr del 198.18.1.0/32 dev {DEV}"))?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::AddrRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::AddrRemoved {
                dev: dev.clone(),
                net: "198.18.1.0/32".parse()?,
            }
        );

        let index = ifindex(DEV)?;
        ip(&format!("link del {DEV}"))?;
        let ev = expect(&mut events, within, |e| {
            matches!(e, KernelEvent::LinkRemoved { .. })
        })
        .await?;
        assert_eq!(
            ev,
            KernelEvent::LinkRemoved {
                index,
                name: DEV.into(),
            }
        );
        Ok(())
    })
}

#[test]
fn link_changes_are_reported_with_names() -> Result<()> {
    if !require_root("link_changes_are_reported_with_names") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let mut events = k.events().await?;
        let index = ifindex("eth0")?;
        ip("link set eth0 mtu 1400")?;
        // By index: the kernel's linkwatch may still report setup's carrier change of the
        // veth peer `eth0p` (it delays such events up to a second), and that event is not
        // the one this change caused.
        let ev = expect(
            &mut events,
            Duration::from_secs(2),
            |e| matches!(e, KernelEvent::LinkChanged { index: i, .. } if *i == index),
        )
        .await?;
        assert_eq!(
            ev,
            KernelEvent::LinkChanged {
                index,
                name: "eth0".into(),
            }
        );
        Ok(())
    })
}
