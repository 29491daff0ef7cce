//! Many peers at once, in a private network namespace: the applier converges with thousands
//! of entries, and (ignored benchmark, run with `--release -- --ignored --nocapture`) is
//! compared with iproute2's batch mode loading the same entries.
//!
//! Peer `i`: the i-th /29 of `198.19.0.0/16` (clear of this host's 198.18.1.0/24), VTEP MAC
//! `0e:01:00:00:hi:lo`,
//! public IP in 192.0.2.2–251 (FDB destinations may repeat; nothing is sent).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;
use flannel_kernel::Kernel;
use flannel_planner::diff::{diff, Op};
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

/// Time programming `n` peers on a fresh device: the applier vs `ip -batch` / `bridge -batch`.
async fn compare(k: &Kernel, n: u32) -> Result<(Duration, Duration)> {
    let want = desired(n)?;
    let link_only = desired(0)?;
    let dir = tempfile::tempdir()?;

    // Ours: device first (not timed), then every entry.
    let _ = ip(&format!("link del {DEV}"));
    reconcile(k, &link_only, &observe_scope(), &vxlan_scope()).await?;
    let observed = k.observe(&observe_scope()).await?;
    let ops = diff(&want, &observed, &vxlan_scope());
    ensure!(ops.len() == 3 * n as usize);
    let t = Instant::now();
    let report = k.apply(&ops).await;
    let ours = t.elapsed();
    ensure!(report.is_ok(), "{:#?}", report.errors);
    assert_converged(k, &want, &observe_scope(), &vxlan_scope()).await?;

    // iproute2: the same entries from batch files, in the same order.
    ip(&format!("link del {DEV}"))?;
    reconcile(k, &link_only, &observe_scope(), &vxlan_scope()).await?;
    let (mut neigh, mut fdb, mut route) = (String::new(), String::new(), String::new());
    for i in 0..n {
        let (r, ne, f) = peer(i);
        neigh.push_str(&format!(
            "neigh replace {} lladdr {} dev {DEV} nud permanent\n",
            ne.ip, ne.mac
        ));
        fdb.push_str(&format!(
            "fdb replace {} dev {DEV} dst {} self permanent\n",
            f.mac, f.dst
        ));
        route.push_str(&format!(
            "route replace {} via {} dev {DEV} onlink\n",
            r.dst,
            r.gateway.context("gateway")?
        ));
    }
    let files = [
        ("ip", "neigh", neigh),
        ("bridge", "fdb", fdb),
        ("ip", "route", route),
    ];
    let mut paths = Vec::new();
    for (cmd, name, text) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        paths.push((cmd, p));
    }
    let t = Instant::now();
    for (cmd, p) in &paths {
        run(cmd, &format!("-batch {}", p.display()))?;
    }
    let iproute = t.elapsed();
    assert_converged(k, &want, &observe_scope(), &vxlan_scope()).await?;
    Ok((ours, iproute))
}

#[test]
#[ignore = "benchmark: cargo test --release -p flannel-kernel --test scale -- --ignored --nocapture"]
fn apply_is_within_one_and_a_half_times_iproute2_batch() -> Result<()> {
    if !require_root("apply_is_within_one_and_a_half_times_iproute2_batch") {
        return Ok(());
    }
    let rt = setup()?;
    rt.block_on(async {
        let k = Kernel::connect()?;
        for n in [1000, 5000] {
            // Best of three, for both.
            let mut best = (Duration::MAX, Duration::MAX);
            for _ in 0..3 {
                let (ours, iproute) = compare(&k, n).await?;
                best = (best.0.min(ours), best.1.min(iproute));
            }
            let ratio = best.0.as_secs_f64() / best.1.as_secs_f64();
            eprintln!(
                "{n} peers ({} entries): apply {:?}, iproute2 -batch {:?}, ratio {ratio:.2}",
                3 * n,
                best.0,
                best.1
            );
            if !cfg!(debug_assertions) {
                assert!(ratio <= 1.5, "{n} peers: ratio {ratio:.2}");
            }
        }
        Ok(())
    })
}
