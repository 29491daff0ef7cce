//! From desired and observed kernel state to the ordered list of operations that makes the
//! kernel match — touching only what flanneld owns.
//!
//! Ownership ([`Scope`]): every entry on a device flanneld created (`flannel.<VNI>`,
//! `flannel-v6.<VNI>`) is ours; on other devices (the external interface, for host-gw and
//! DirectRouting routes) only the routes flanneld recorded installing are ours; of the
//! blackhole routes only those for our own subnet(s) — current and previous — are ours.
//! Anything else is never deleted, so a route an operator added inside or outside the pod
//! network survives.
//!
//! Order follows Flannel's vxlan code: links and addresses first; removals route → neighbour →
//! FDB; additions neighbour → FDB → route (a route never points at a missing neighbour).
//! Blackhole removals come with the route removals, blackhole additions after the routes.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::state::{Addr, Fdb, KernelState, LinkSpec, Neigh, Route};

/// What flanneld may change besides the desired entries themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Devices wholly managed by flanneld.
    pub owned_devs: BTreeSet<String>,
    /// Routes on other devices that flanneld installed before (from its journal).
    pub owned_routes: BTreeSet<Route>,
    /// Destinations whose blackhole route flanneld manages (`--ip-blackhole-route`: our
    /// subnets, and the ones we held before). Empty: blackhole routes are never touched.
    pub owned_blackholes: BTreeSet<IpNet>,
}

impl Scope {
    /// Whether flanneld may delete this observed route.
    pub fn owns_route(&self, r: &Route) -> bool {
        self.owned_devs.contains(&r.dev) || self.owned_routes.contains(r)
    }
}

/// One kernel change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateLink(LinkSpec),
    /// Delete the existing device (incompatible settings) and create it again.
    RecreateLink(LinkSpec),
    /// Adjust MTU / MAC / bring up an existing compatible device.
    UpdateLink(LinkSpec),
    AddAddr(Addr),
    DelAddr(Addr),
    DelRoute(Route),
    DelNeigh(Neigh),
    DelFdb(Fdb),
    ReplaceNeigh(Neigh),
    ReplaceFdb(Fdb),
    ReplaceRoute(Route),
    /// `ip route add blackhole <dst>` (never replaces another route to `dst`).
    AddBlackhole(IpNet),
    /// `ip route del blackhole <dst>`.
    DelBlackhole(IpNet),
}

/// Operations that turn `observed` into `desired` within `scope`. Empty when they match.
pub fn diff(desired: &KernelState, observed: &KernelState, scope: &Scope) -> Vec<Op> {
    let mut ops = Vec::new();
    // Devices created now start empty: what was observed on them is gone.
    let mut fresh: BTreeSet<&str> = BTreeSet::new();
    for (name, want) in &desired.links {
        match observed.links.get(name) {
            None => {
                ops.push(Op::CreateLink(want.clone()));
                fresh.insert(name);
            }
            Some(have) if !want.compatible_with(have) => {
                ops.push(Op::RecreateLink(want.clone()));
                fresh.insert(name);
            }
            Some(have) if want.needs_update(have) => {
                ops.push(Op::UpdateLink(want.clone()));
            }
            Some(_) => {}
        }
    }
    let live = |dev: &str| !fresh.contains(dev);

    // Addresses.
    let have_addrs: BTreeSet<&Addr> = observed.addrs.iter().filter(|a| live(&a.dev)).collect();
    for a in &desired.addrs {
        if !have_addrs.contains(a) {
            ops.push(Op::AddAddr(a.clone()));
        }
    }
    for a in have_addrs {
        if scope.owned_devs.contains(&a.dev) && !desired.addrs.contains(a) {
            ops.push(Op::DelAddr(a.clone()));
        }
    }

    // Per-peer entries, keyed the way the kernel identifies them.
    let want_routes: BTreeMap<_, &Route> = desired.routes.iter().map(|r| (r.dst, r)).collect();
    let have_routes: BTreeMap<_, &Route> = observed
        .routes
        .iter()
        .filter(|r| live(&r.dev))
        .map(|r| (r.dst, r))
        .collect();
    let want_neighs: BTreeMap<_, &Neigh> = desired
        .neighs
        .iter()
        .map(|n| ((n.dev.as_str(), n.ip), n))
        .collect();
    let have_neighs: BTreeMap<_, &Neigh> = observed
        .neighs
        .iter()
        .filter(|n| live(&n.dev))
        .map(|n| ((n.dev.as_str(), n.ip), n))
        .collect();
    let want_fdb: BTreeMap<_, &Fdb> = desired
        .fdb
        .iter()
        .map(|f| ((f.dev.as_str(), f.mac), f))
        .collect();
    let have_fdb: BTreeMap<_, &Fdb> = observed
        .fdb
        .iter()
        .filter(|f| live(&f.dev))
        .map(|f| ((f.dev.as_str(), f.mac), f))
        .collect();

    // Removals: route, then neighbour, then FDB.
    for (dst, r) in &have_routes {
        if !want_routes.contains_key(dst) && scope.owns_route(r) {
            ops.push(Op::DelRoute((*r).clone()));
        }
    }
    for (key, n) in &have_neighs {
        if !want_neighs.contains_key(key) && scope.owned_devs.contains(&n.dev) {
            ops.push(Op::DelNeigh((*n).clone()));
        }
    }
    for (key, f) in &have_fdb {
        if !want_fdb.contains_key(key) && scope.owned_devs.contains(&f.dev) {
            ops.push(Op::DelFdb((*f).clone()));
        }
    }
    for dst in &observed.blackholes {
        if !desired.blackholes.contains(dst) && scope.owned_blackholes.contains(dst) {
            ops.push(Op::DelBlackhole(*dst));
        }
    }

    // Additions and corrections: neighbour, then FDB, then route.
    for (key, n) in &want_neighs {
        if have_neighs.get(key) != Some(n) {
            ops.push(Op::ReplaceNeigh((*n).clone()));
        }
    }
    for (key, f) in &want_fdb {
        if have_fdb.get(key) != Some(f) {
            ops.push(Op::ReplaceFdb((*f).clone()));
        }
    }
    for (dst, r) in &want_routes {
        if have_routes.get(dst) != Some(r) {
            ops.push(Op::ReplaceRoute((*r).clone()));
        }
    }
    for dst in &desired.blackholes {
        if !observed.blackholes.contains(dst) {
            ops.push(Op::AddBlackhole(*dst));
        }
    }
    ops
}

/// What the kernel looks like after `ops` (the semantics the applier implements; used by the
/// fake kernel and by property tests).
pub fn simulate(state: &mut KernelState, ops: &[Op]) {
    for op in ops {
        match op {
            Op::CreateLink(l) | Op::RecreateLink(l) => {
                let name = l.name().to_owned();
                state.addrs.retain(|a| a.dev != name);
                state.routes.retain(|r| r.dev != name);
                state.neighs.retain(|n| n.dev != name);
                state.fdb.retain(|f| f.dev != name);
                state.links.insert(name, l.clone());
            }
            Op::UpdateLink(l) => {
                state.links.insert(l.name().to_owned(), l.clone());
            }
            Op::AddAddr(a) => {
                state.addrs.insert(a.clone());
            }
            Op::DelAddr(a) => {
                state.addrs.remove(a);
            }
            Op::DelRoute(r) => {
                state.routes.remove(r);
            }
            Op::DelNeigh(n) => {
                state.neighs.remove(n);
            }
            Op::DelFdb(f) => {
                state.fdb.remove(f);
            }
            Op::ReplaceNeigh(n) => {
                state.neighs.retain(|o| !(o.dev == n.dev && o.ip == n.ip));
                state.neighs.insert(n.clone());
            }
            Op::ReplaceFdb(f) => {
                state.fdb.retain(|o| !(o.dev == f.dev && o.mac == f.mac));
                state.fdb.insert(f.clone());
            }
            Op::ReplaceRoute(r) => {
                state.routes.retain(|o| o.dst != r.dst);
                state.routes.insert(r.clone());
            }
            Op::AddBlackhole(dst) => {
                state.blackholes.insert(*dst);
            }
            Op::DelBlackhole(dst) => {
                state.blackholes.remove(dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MacAddr, VxlanLink};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    const DEV: &str = "flannel.1";

    fn link(mtu: u32) -> LinkSpec {
        let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        LinkSpec::Vxlan(VxlanLink::new(
            DEV,
            1,
            2,
            local,
            mtu,
            MacAddr([0x0e, 0, 0, 0, 0, 1]),
        ))
    }

    fn vx(s: &mut KernelState) -> &mut VxlanLink {
        s.links
            .get_mut(DEV)
            .and_then(LinkSpec::as_vxlan_mut)
            .expect("vxlan link")
    }

    fn peer(i: u8, dev: &str) -> (Route, Neigh, Fdb) {
        let gw = IpAddr::V4(Ipv4Addr::new(198, 18, i, 0));
        let mac = MacAddr([0x0e, 0, 0, 0, 1, i]);
        (
            Route {
                dst: format!("198.18.{i}.0/24").parse().expect("net"),
                gateway: Some(gw),
                dev: dev.into(),
                onlink: true,
            },
            Neigh {
                dev: dev.into(),
                ip: gw,
                mac,
            },
            Fdb {
                dev: dev.into(),
                mac,
                dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)),
            },
        )
    }

    fn state(peers: &[u8]) -> KernelState {
        let mut s = KernelState::default();
        s.links.insert(DEV.into(), link(1450));
        for &i in peers {
            let (r, n, f) = peer(i, DEV);
            s.routes.insert(r);
            s.neighs.insert(n);
            s.fdb.insert(f);
        }
        s
    }

    fn scope() -> Scope {
        Scope {
            owned_devs: [DEV.to_string()].into(),
            owned_routes: BTreeSet::new(),
            owned_blackholes: BTreeSet::new(),
        }
    }

    #[test]
    fn additions_go_neigh_fdb_route_and_removals_route_neigh_fdb() {
        let ops = diff(&state(&[2]), &state(&[3]), &scope());
        let kinds: Vec<&str> = ops
            .iter()
            .map(|o| match o {
                Op::DelRoute(_) => "del-route",
                Op::DelNeigh(_) => "del-neigh",
                Op::DelFdb(_) => "del-fdb",
                Op::ReplaceNeigh(_) => "neigh",
                Op::ReplaceFdb(_) => "fdb",
                Op::ReplaceRoute(_) => "route",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["del-route", "del-neigh", "del-fdb", "neigh", "fdb", "route"]
        );
    }

    #[test]
    fn foreign_route_on_another_device_is_left_alone() {
        let mut observed = state(&[2]);
        let foreign = Route {
            dst: "198.18.200.0/24".parse().expect("net"),
            gateway: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200))),
            dev: "eth0".into(),
            onlink: false,
        };
        observed.routes.insert(foreign.clone());
        assert!(diff(&state(&[2]), &observed, &scope()).is_empty());
        // ...unless our journal says we installed it.
        let mut s = scope();
        s.owned_routes.insert(foreign.clone());
        assert_eq!(
            diff(&state(&[2]), &observed, &s),
            vec![Op::DelRoute(foreign)]
        );
    }

    #[test]
    fn incompatible_device_is_recreated_and_everything_replayed() {
        let mut observed = state(&[2, 3]);
        vx(&mut observed).vni = 7;
        let ops = diff(&state(&[2, 3]), &observed, &scope());
        assert!(matches!(ops[0], Op::RecreateLink(_)));
        assert_eq!(ops.len(), 1 + 3 * 2, "{ops:?}");
    }

    #[test]
    fn mtu_change_updates_in_place() {
        let mut observed = state(&[2]);
        vx(&mut observed).mtu = 1400;
        assert_eq!(
            diff(&state(&[2]), &observed, &scope()),
            vec![Op::UpdateLink(link(1450))]
        );
    }

    #[test]
    fn changed_mac_replaces_neigh_and_fdb() {
        let desired = state(&[2]);
        let mut observed = state(&[2]);
        let (_, mut n, mut f) = peer(2, DEV);
        observed.neighs.remove(&n);
        observed.fdb.remove(&f);
        n.mac = MacAddr([0x0e, 9, 9, 9, 9, 9]);
        f.mac = n.mac;
        observed.neighs.insert(n);
        observed.fdb.insert(f.clone());
        let ops = diff(&desired, &observed, &scope());
        let (_, want_n, want_f) = peer(2, DEV);
        assert_eq!(
            ops,
            vec![
                Op::DelFdb(f),
                Op::ReplaceNeigh(want_n),
                Op::ReplaceFdb(want_f)
            ]
        );
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn only_owned_blackholes_are_removed_and_desired_ones_added() {
        let mut desired = state(&[2]);
        desired.blackholes = [net("198.18.1.0/24"), net("2001:db8:f000:1::/64")].into();
        let mut observed = state(&[2]);
        // Ours from before the subnet moved, and an operator's.
        observed.blackholes = [net("198.18.9.0/24"), net("203.0.113.0/24")].into();
        let mut s = scope();
        s.owned_blackholes = [
            net("198.18.1.0/24"),
            net("2001:db8:f000:1::/64"),
            net("198.18.9.0/24"),
        ]
        .into();
        let ops = diff(&desired, &observed, &s);
        assert_eq!(
            ops,
            vec![
                Op::DelBlackhole(net("198.18.9.0/24")),
                Op::AddBlackhole(net("198.18.1.0/24")),
                Op::AddBlackhole(net("2001:db8:f000:1::/64")),
            ]
        );
        let mut kernel = observed.clone();
        simulate(&mut kernel, &ops);
        assert_eq!(
            kernel.blackholes,
            [
                net("198.18.1.0/24"),
                net("2001:db8:f000:1::/64"),
                net("203.0.113.0/24")
            ]
            .into()
        );
        assert!(diff(&desired, &kernel, &s).is_empty());
        // Without ownership nothing is removed.
        assert_eq!(
            diff(&desired, &observed, &scope()),
            ops[1..].to_vec(),
            "an unowned blackhole is left alone"
        );
    }

    fn arb_state() -> impl Strategy<Value = KernelState> {
        (
            proptest::collection::btree_set(1u8..20, 0..8),
            1300u32..1500,
            any::<bool>(),
            proptest::collection::btree_set(100u8..110, 0..3),
            proptest::collection::btree_set(1u8..5, 0..3),
        )
            .prop_map(|(peers, mtu, vni7, foreign, blackholes)| {
                let mut s = state(&peers.into_iter().collect::<Vec<_>>());
                let l = vx(&mut s);
                l.mtu = mtu;
                if vni7 {
                    l.vni = 7;
                }
                for i in foreign {
                    s.routes.insert(peer(i, "eth0").0);
                }
                s.blackholes = blackholes
                    .into_iter()
                    .map(|i| net(&format!("198.18.{i}.0/24")))
                    .collect();
                s
            })
    }

    proptest! {
        /// Applying the diff reaches the desired state (within scope), and a second diff is empty.
        #[test]
        fn diff_converges_and_is_idempotent(desired in arb_state(), observed in arb_state()) {
            // Desired never contains foreign routes.
            let mut desired = desired;
            desired.routes.retain(|r| r.dev == DEV);
            // Blackholes 198.18.{1,2}.0/24 are ours (current and previous subnet); 3 and 4 not.
            let mut scope = scope();
            scope.owned_blackholes = [net("198.18.1.0/24"), net("198.18.2.0/24")].into();
            desired.blackholes.retain(|b| scope.owned_blackholes.contains(b));
            let mut kernel = observed.clone();
            simulate(&mut kernel, &diff(&desired, &observed, &scope));
            prop_assert_eq!(diff(&desired, &kernel, &scope), vec![]);
            prop_assert!(desired.blackholes.is_subset(&kernel.blackholes));
            for b in &kernel.blackholes {
                prop_assert!(desired.blackholes.contains(b) || !scope.owned_blackholes.contains(b));
            }
            for b in observed.blackholes.iter().filter(|b| !scope.owned_blackholes.contains(b)) {
                prop_assert!(kernel.blackholes.contains(b));
            }
            // Everything desired is there; foreign routes survived.
            prop_assert!(desired.routes.is_subset(&kernel.routes));
            prop_assert!(desired.neighs.is_subset(&kernel.neighs));
            prop_assert!(desired.fdb.is_subset(&kernel.fdb));
            for r in observed.routes.iter().filter(|r| r.dev != DEV) {
                prop_assert!(kernel.routes.contains(r));
            }
            // Nothing of ours that is not desired is left.
            for r in kernel.routes.iter().filter(|r| r.dev == DEV) {
                prop_assert!(desired.routes.contains(r));
            }
        }
    }
}
