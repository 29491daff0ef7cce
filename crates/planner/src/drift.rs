//! Which operations of a pass are repairs: the kernel drifted away from what an earlier pass
//! had already put there (a route deleted by hand, a neighbour with a changed MAC, a device
//! removed). flanneld counts them (`flannel_kernel_repairs_total{kind}`); an operation that
//! follows a lease change is not a repair.

use crate::diff::Op;
use crate::state::KernelState;

/// What a repair fixed, as the metric's `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RepairKind {
    Route,
    Neigh,
    Fdb,
    Link,
    Address,
}

impl RepairKind {
    /// The label value (`route`, `neigh`, `fdb`, `link`, `address`).
    pub fn as_str(self) -> &'static str {
        match self {
            RepairKind::Route => "route",
            RepairKind::Neigh => "neigh",
            RepairKind::Fdb => "fdb",
            RepairKind::Link => "link",
            RepairKind::Address => "address",
        }
    }
}

/// The repair `op` makes, given `before`: the desired state the previous pass programmed.
/// Re-adding or correcting an entry `before` held is a repair; removing an entry `before` did
/// not hold (one that appeared behind our back) is one too. Removing an entry `before` held
/// (its peer left) is not.
pub fn repair_kind(op: &Op, before: &KernelState) -> Option<RepairKind> {
    let (held, kind) = match op {
        Op::CreateLink(l) | Op::RecreateLink(l) | Op::UpdateLink(l) => {
            (before.links.contains_key(l.name()), RepairKind::Link)
        }
        Op::AddAddr(a) => (before.addrs.contains(a), RepairKind::Address),
        Op::ReplaceRoute(r) => (before.routes.contains(r), RepairKind::Route),
        Op::ReplaceNeigh(n) => (before.neighs.contains(n), RepairKind::Neigh),
        Op::ReplaceFdb(f) => (before.fdb.contains(f), RepairKind::Fdb),
        Op::AddBlackhole(d) => (before.blackholes.contains(d), RepairKind::Route),
        Op::DelAddr(a) => (!before.addrs.contains(a), RepairKind::Address),
        Op::DelRoute(r) => (!before.routes.contains(r), RepairKind::Route),
        Op::DelNeigh(n) => (!before.neighs.contains(n), RepairKind::Neigh),
        Op::DelFdb(f) => (!before.fdb.contains(f), RepairKind::Fdb),
        Op::DelBlackhole(_) => (false, RepairKind::Route),
    };
    held.then_some(kind)
}

/// The operation's name, as the `op` label of `flannel_kernel_ops_total`.
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::CreateLink(_) => "create_link",
        Op::RecreateLink(_) => "recreate_link",
        Op::UpdateLink(_) => "update_link",
        Op::AddAddr(_) => "add_addr",
        Op::DelAddr(_) => "del_addr",
        Op::DelRoute(_) => "del_route",
        Op::DelNeigh(_) => "del_neigh",
        Op::DelFdb(_) => "del_fdb",
        Op::ReplaceNeigh(_) => "replace_neigh",
        Op::ReplaceFdb(_) => "replace_fdb",
        Op::ReplaceRoute(_) => "replace_route",
        Op::AddBlackhole(_) => "add_blackhole",
        Op::DelBlackhole(_) => "del_blackhole",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Route;

    fn route(dst: &str) -> Route {
        Route {
            dst: dst.parse().expect("net"),
            gateway: Some("198.18.2.0".parse().expect("ip")),
            dev: "flannel.1".into(),
            onlink: true,
        }
    }

    #[test]
    fn re_adding_what_was_programmed_is_a_repair() {
        let before = KernelState {
            routes: [route("198.18.2.0/24")].into(),
            ..Default::default()
        };
        let readd = Op::ReplaceRoute(route("198.18.2.0/24"));
        assert_eq!(repair_kind(&readd, &before), Some(RepairKind::Route));
        // A new peer's route is not.
        let new = Op::ReplaceRoute(route("198.18.3.0/24"));
        assert_eq!(repair_kind(&new, &before), None);
        // Removing a route we programmed (its peer left) is not; one we never had is.
        assert_eq!(
            repair_kind(&Op::DelRoute(route("198.18.2.0/24")), &before),
            None
        );
        assert_eq!(
            repair_kind(&Op::DelRoute(route("198.18.9.0/24")), &before),
            Some(RepairKind::Route)
        );
        assert_eq!(RepairKind::Route.as_str(), "route");
        assert_eq!(op_name(&readd), "replace_route");
    }
}
