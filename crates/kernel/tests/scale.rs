//! Many peers at once, in a private network namespace: the applier converges with thousands
//! of entries. How fast it does so next to iproute2's batch mode is `flannel-bench program`'s
//! question (docs/benchmarks.md), not a timed test's.
//!
//! Peer `i`: the i-th /29 of `198.19.0.0/16` (clear of this host's 198.18.1.0/24), VTEP MAC
//! `0e:01:00:00:hi:lo`,
//! public IP in 192.0.2.2–251 (FDB destinations may repeat; nothing is sent).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use anyhow::Result;
use common::*;
use flannel_kernel::Kernel;
use flannel_planner::diff::Op;
use flannel_planner::state::{Fdb, KernelState, MacAddr, Neigh, Route};
use flannel_testkit::privileged::require_root;
use ipnet::{IpNet, Ipv4Net};

fn peer(i: u32) -> (Route, Neigh, Fdb) {
    let base = u32::from(Ipv4Addr::new(198, 19, 0, 0));
    let net = Ipv4Net::new(Ipv4Addr::from(base + i * 8), 29).expect("prefix");
    let gw = IpAddr::V4(net.network());
    let [_, _, hi, lo] = i.to_be_bytes();
    let mac = MacAddr([0x0e, 0x01, 0, 0, hi, lo]);
    let last = u8::try_from(2 + i % 250).expect("octet");
    (
        Route {
            dst: IpNet::V4(net),
            gateway: Some(gw),
            dev: DEV.into(),
            onlink: true,
        },
        Neigh {
            dev: DEV.into(),
            ip: gw,
            mac,
        },
        Fdb {
            dev: DEV.into(),
            mac,
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
        },
    )
}

/// The vxlan device and address, plus `n` peers.
fn desired(n: u32) -> Result<KernelState> {
    let mut s = vxlan_desired(&[])?;
    for i in 0..n {
        let (r, ne, f) = peer(i);
        s.routes.insert(r);
        s.neighs.insert(ne);
        s.fdb.insert(f);
    }
    Ok(s)
}

fn count(cmd: &str, args: &str) -> Result<usize> {
    Ok(lines(&run(cmd, args)?).len())
}

#[test]
fn thousands_of_entries_converge() -> Result<()> {
    if !require_root("thousands_of_entries_converge") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        let big = desired(1000)?;
        let started = Instant::now();
        let ops = reconcile(&k, &big, &observe_scope(), &vxlan_scope()).await?;
        eprintln!("1000 peers: {} ops in {:?}", ops.len(), started.elapsed());
        assert_eq!(ops.len(), 2 + 3000);
        assert_eq!(count("ip", &format!("route show dev {DEV}"))?, 1000);
        assert_eq!(count("ip", &format!("neigh show dev {DEV}"))?, 1000);
        assert_eq!(count("bridge", &format!("fdb show dev {DEV}"))?, 1000);
        assert_converged(&k, &big, &observe_scope(), &vxlan_scope()).await?;

        // Half of them leave.
        let small = desired(500)?;
        let ops = reconcile(&k, &small, &observe_scope(), &vxlan_scope()).await?;
        assert_eq!(ops.len(), 1500);
        assert!(ops
            .iter()
            .all(|o| matches!(o, Op::DelRoute(_) | Op::DelNeigh(_) | Op::DelFdb(_))));
        assert_eq!(count("ip", &format!("route show dev {DEV}"))?, 500);
        assert_eq!(count("bridge", &format!("fdb show dev {DEV}"))?, 500);
        assert_converged(&k, &small, &observe_scope(), &vxlan_scope()).await
    })
}
