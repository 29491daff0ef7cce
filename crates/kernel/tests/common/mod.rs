//! Shared set-up for the kernel applier tests: a private network namespace with an underlay
//! veth pair, a tokio runtime in the test thread, the vxlan backend's desired state for a set
//! of peers, and `ip` / `bridge` output helpers.
//!
//! Peer `i` (2..): subnet `198.18.i.0/24`, public IP `192.0.2.i`, VTEP MAC `0e:00:00:00:00:i`.
//! This host: `eth0` 192.0.2.1/24 (peer end `eth0p`), subnet `198.18.1.0/24`.
//!
//! Dual-stack (`setup_dual`, `dual_lease`, `dual_desired`): `eth0` also has `2001:db8:1::1/64`;
//! peer `i` also has `2001:db8:f000:i::/64`, public IPv6 `2001:db8:1::i` and v6 VTEP MAC
//! `0e:00:00:00:06:i`; this host's IPv6 subnet is `2001:db8:f000:1::/64`.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, ensure, Context, Result};
use flannel_kernel::{Kernel, KernelEvent, KernelEvents, ObserveScope};
use flannel_model::{Lease, LeaseAttrs, RawJson, SubnetKey};
use flannel_planner::diff::{diff, Op, Scope};
use flannel_planner::ext_iface::ExtIface;
use flannel_planner::state::{KernelState, LinkSpec, MacAddr, DEFAULT_VXLAN_PORT};
use flannel_planner::vxlan::{desired_state, VtepMacs, VxlanOptions};
use flannel_testkit::netns::{enter_private_netns, sh};
use futures_util::StreamExt;
use std::time::Duration;

pub const DEV: &str = "flannel.1";
pub const DEV6: &str = "flannel-v6.1";
pub const OWN_MAC: &str = "0e:00:00:00:00:01";
pub const OWN_MAC6: &str = "0e:00:00:00:06:01";

/// Run `ip`/`bridge` with whitespace-separated `args`, returning stdout.
pub fn run(cmd: &str, args: &str) -> Result<String> {
    let args: Vec<&str> = args.split_whitespace().collect();
    sh(cmd, &args)
}

pub fn ip(args: &str) -> Result<String> {
    run("ip", args)
}

/// Output lines, trimmed, without empty ones.
pub fn lines(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Lines of `ip route show [extra]` that mention `dev`.
pub fn routes_on(dev: &str, extra: &str) -> Result<Vec<String>> {
    let out = ip(&format!("route show {extra}"))?;
    Ok(lines(&out)
        .into_iter()
        .filter(|l| l.contains(&format!("dev {dev}")))
        .collect())
}

/// Enter a fresh namespace, build the underlay and return a current-thread runtime.
pub fn setup() -> Result<tokio::runtime::Runtime> {
    enter_private_netns()?;
    ip("link add eth0 type veth peer name eth0p")?;
    ip("addr add 192.0.2.1/24 dev eth0")?;
    ip("link set eth0 up")?;
    ip("link set eth0p up")?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building tokio runtime")
}

/// [`setup`], plus `2001:db8:1::1/64` (no DAD) on `eth0`.
pub fn setup_dual() -> Result<tokio::runtime::Runtime> {
    let rt = setup()?;
    ip("-6 addr add 2001:db8:1::1/64 dev eth0 nodad")?;
    Ok(rt)
}

pub fn ifindex(name: &str) -> Result<u32> {
    let out = ip(&format!("-o link show dev {name}"))?;
    out.split(':')
        .next()
        .context("ip -o link output")?
        .trim()
        .parse()
        .context("parsing ifindex")
}

pub fn mac(i: u8) -> String {
    format!("0e:00:00:00:00:{i:02x}")
}

fn key(subnet: &str) -> SubnetKey {
    SubnetKey {
        ipv4: subnet.parse().expect("test subnet"),
        ipv6: None,
    }
}

/// A lease of peer `i` for `backend` ("vxlan" or "host-gw").
pub fn lease(i: u8, backend: &str) -> Lease {
    let backend_data = (backend == "vxlan")
        .then(|| RawJson::new(&format!(r#"{{"VNI":1,"VtepMAC":"{}"}}"#, mac(i))).expect("json"));
    Lease {
        subnet: key(&format!("198.18.{i}.0/24")),
        attrs: LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 0, 2, i),
            public_ipv6: None,
            backend_type: backend.into(),
            backend_data,
            backend_v6_data: None,
        },
        expiration: None,
    }
}

/// Peer `i`'s dual-stack lease for `backend` (see the module docs).
pub fn dual_lease(i: u8, backend: &str) -> Lease {
    let mut l = lease(i, backend);
    l.subnet.ipv6 = Some(
        format!("2001:db8:f000:{i:x}::/64")
            .parse()
            .expect("test subnet"),
    );
    l.attrs.public_ipv6 = Some(format!("2001:db8:1::{i:x}").parse().expect("test address"));
    if backend == "vxlan" {
        l.attrs.backend_v6_data =
            Some(RawJson::new(&format!(r#"{{"VNI":1,"VtepMAC":"{}"}}"#, mac6(i))).expect("json"));
    }
    l
}

pub fn mac6(i: u8) -> String {
    format!("0e:00:00:00:06:{i:02x}")
}

pub fn ext() -> Result<ExtIface> {
    Ok(ExtIface {
        name: "eth0".into(),
        index: ifindex("eth0")?,
        mtu: 1500,
        addr: Ipv4Addr::new(192, 0, 2, 1),
        addr_v6: None,
    })
}

pub fn ext_dual() -> Result<ExtIface> {
    Ok(ExtIface {
        addr_v6: Some(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
        ..ext()?
    })
}

pub fn own_dual() -> SubnetKey {
    SubnetKey {
        ipv4: "198.18.1.0/24".parse().expect("test subnet"),
        ipv6: Some("2001:db8:f000:1::/64".parse().expect("test subnet")),
    }
}

/// The dual-stack vxlan desired state (default options) for `peers`.
pub fn dual_desired(peers: &[u8]) -> Result<KernelState> {
    let leases: Vec<Lease> = peers.iter().map(|&i| dual_lease(i, "vxlan")).collect();
    let (state, skipped) = desired_state(
        &VxlanOptions::default(),
        &ext_dual()?,
        &own_dual(),
        VtepMacs {
            v4: OWN_MAC.parse().expect("mac"),
            v6: Some(OWN_MAC6.parse().expect("mac")),
        },
        &leases,
        &|_| false,
    );
    ensure!(skipped.is_empty(), "skipped peers: {skipped:?}");
    Ok(state)
}

/// The vxlan backend's desired state (default options) for `peers`.
pub fn vxlan_desired(peers: &[u8]) -> Result<KernelState> {
    let leases: Vec<Lease> = peers.iter().map(|&i| lease(i, "vxlan")).collect();
    let (state, skipped) = desired_state(
        &VxlanOptions::default(),
        &ext()?,
        &key("198.18.1.0/24"),
        VtepMacs {
            v4: OWN_MAC.parse().expect("mac"),
            v6: None,
        },
        &leases,
        &|_| false,
    );
    ensure!(skipped.is_empty(), "skipped peers: {skipped:?}");
    Ok(state)
}

pub fn observe_scope() -> ObserveScope {
    ObserveScope {
        devs: vec![DEV.into()],
        route_devs: vec!["eth0".into()],
        blackholes: false,
    }
}

pub fn vxlan_scope() -> Scope {
    Scope {
        owned_devs: BTreeSet::from([DEV.to_string()]),
        owned_routes: BTreeSet::new(),
        owned_blackholes: BTreeSet::new(),
    }
}

pub fn dual_observe_scope() -> ObserveScope {
    ObserveScope {
        devs: vec![DEV.into(), DEV6.into()],
        ..observe_scope()
    }
}

pub fn dual_scope() -> Scope {
    Scope {
        owned_devs: BTreeSet::from([DEV.to_string(), DEV6.to_string()]),
        ..vxlan_scope()
    }
}

/// observe → diff → apply; fails on any apply error. Returns the ops applied.
pub async fn reconcile(
    k: &Kernel,
    desired: &KernelState,
    oscope: &ObserveScope,
    scope: &Scope,
) -> Result<Vec<Op>> {
    let observed = k.observe(oscope).await?;
    let ops = diff(desired, &observed, scope);
    let report = k.apply(&ops).await;
    ensure!(report.is_ok(), "apply errors: {:#?}", report.errors);
    ensure!(
        report.applied == ops.len(),
        "applied {} of {} ops",
        report.applied,
        ops.len()
    );
    Ok(ops)
}

/// `desired` as the kernel reports it: a default port reads back as 8472.
pub fn as_reported(desired: &KernelState) -> KernelState {
    let mut s = desired.clone();
    for l in s.links.values_mut().filter_map(LinkSpec::as_vxlan_mut) {
        if l.port == 0 {
            l.port = DEFAULT_VXLAN_PORT;
        }
    }
    s
}

/// The kernel holds exactly `desired` (within `oscope`) and a new diff is empty.
pub async fn assert_converged(
    k: &Kernel,
    desired: &KernelState,
    oscope: &ObserveScope,
    scope: &Scope,
) -> Result<()> {
    let observed = k.observe(oscope).await?;
    let want = as_reported(desired);
    assert_eq!(observed.links, want.links);
    assert_eq!(observed.addrs, want.addrs);
    fn missing_extra<T: Ord + std::fmt::Debug>(what: &str, have: &BTreeSet<T>, want: &BTreeSet<T>) {
        let missing: Vec<_> = want.difference(have).take(5).collect();
        let extra: Vec<_> = have.difference(want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: {} missing, e.g. {missing:?}; {} extra, e.g. {extra:?}",
            want.difference(have).count(),
            have.difference(want).count()
        );
    }
    missing_extra("routes", &observed.routes, &want.routes);
    missing_extra("neighbours", &observed.neighs, &want.neighs);
    missing_extra("FDB", &observed.fdb, &want.fdb);
    assert_eq!(observed.blackholes, want.blackholes, "blackholes");
    assert_eq!(diff(desired, &observed, scope), Vec::<Op>::new());
    Ok(())
}

/// The `ip route` / `ip neigh` / `bridge fdb` lines peers `peers` must produce on flannel.1.
pub fn expected_vxlan_lines(peers: &[u8]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let routes = peers
        .iter()
        .map(|i| format!("198.18.{i}.0/24 via 198.18.{i}.0 dev {DEV} onlink"))
        .collect();
    let neighs = peers
        .iter()
        .map(|i| format!("198.18.{i}.0 lladdr {} PERMANENT", mac(*i)))
        .collect();
    let fdb = peers
        .iter()
        .map(|i| format!("{} dst 192.0.2.{i} self permanent", mac(*i)))
        .collect();
    (routes, neighs, fdb)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Check flannel.1's routes, neighbours and FDB entries through iproute2 (neighbour and FDB
/// dumps come in hash order, so lines are compared sorted).
pub fn assert_vxlan_entries(peers: &[u8]) -> Result<()> {
    let (routes, neighs, fdb) = expected_vxlan_lines(peers);
    let (routes, neighs, fdb) = (sorted(routes), sorted(neighs), sorted(fdb));
    assert_eq!(sorted(routes_on(DEV, "")?), routes, "ip route show");
    assert_eq!(
        sorted(routes_on(DEV, "proto boot")?),
        routes,
        "ip route show proto boot"
    );
    assert_eq!(
        sorted(lines(&ip(&format!("neigh show dev {DEV}"))?)),
        neighs,
        "ip neigh show dev {DEV}"
    );
    assert_eq!(
        sorted(lines(&run("bridge", &format!("fdb show dev {DEV}"))?)),
        fdb,
        "bridge fdb show dev {DEV}"
    );
    Ok(())
}

pub fn ipv4(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn parse_mac(s: &str) -> MacAddr {
    s.parse().expect("test MAC")
}

/// Wait up to `within` for an event matching `want`, skipping others.
pub async fn expect(
    events: &mut KernelEvents,
    within: Duration,
    want: impl Fn(&KernelEvent) -> bool,
) -> Result<KernelEvent> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ev)) if want(&ev) => return Ok(ev),
            Ok(Some(ev)) => seen.push(ev),
            Ok(None) => bail!("event stream ended; saw {seen:#?}"),
            Err(_) => bail!("no matching event within {within:?}; saw {seen:#?}"),
        }
    }
}
