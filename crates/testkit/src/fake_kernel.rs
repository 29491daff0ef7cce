//! [`FakeKernel`]: a kernel in memory for root-free tests of what drives the kernel. It holds
//! a `KernelState`, answers `observe` from it (within the scope asked), carries ops out with
//! `planner::diff::simulate` (the applier's semantics), answers `route_get` from a set of
//! on-link addresses, and never emits events. The on-demand calls are not modelled: learned
//! entries are empty, misses cannot be answered.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use flannel_kernel::{
    ApplyReport, IfaceError, KernelApi, KernelError, KernelEvents, ObserveScope, RouteGetAnswer,
};
use flannel_planner::diff::{simulate, Op};
use flannel_planner::state::{Fdb, KernelState, Neigh};

/// A shared, inspectable in-memory kernel (clones share the state).
#[derive(Debug, Clone, Default)]
pub struct FakeKernel {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    state: KernelState,
    on_link: BTreeSet<IpAddr>,
    applied: Vec<Vec<Op>>,
}

impl FakeKernel {
    /// A kernel holding `state`.
    pub fn new(state: KernelState) -> Self {
        let k = FakeKernel::default();
        k.lock().state = state;
        k
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything the kernel holds now.
    pub fn state(&self) -> KernelState {
        self.lock().state.clone()
    }

    /// Change the kernel behind the daemon's back (an operator, another program).
    pub fn edit(&self, f: impl FnOnce(&mut KernelState)) {
        f(&mut self.lock().state);
    }

    /// `route_get` answers "on-link" (no gateway) for these addresses.
    pub fn set_on_link(&self, ips: impl IntoIterator<Item = IpAddr>) {
        self.lock().on_link = ips.into_iter().collect();
    }

    /// Every batch of ops applied so far, in order.
    pub fn applied(&self) -> Vec<Vec<Op>> {
        self.lock().applied.clone()
    }
}

/// `state` as `observe` would report it for `scope`: the named links and what is on them,
/// routes on them and on the route devices, blackholes when asked.
pub fn within(state: &KernelState, scope: &ObserveScope) -> KernelState {
    let devs: BTreeSet<&str> = scope
        .devs
        .iter()
        .map(String::as_str)
        .filter(|d| state.links.contains_key(*d))
        .collect();
    let route_devs: BTreeSet<&str> = scope.route_devs.iter().map(String::as_str).collect();
    KernelState {
        links: state
            .links
            .iter()
            .filter(|(name, _)| devs.contains(name.as_str()))
            .map(|(n, l)| (n.clone(), l.clone()))
            .collect(),
        addrs: state
            .addrs
            .iter()
            .filter(|a| devs.contains(a.dev.as_str()))
            .cloned()
            .collect(),
        routes: state
            .routes
            .iter()
            .filter(|r| devs.contains(r.dev.as_str()) || route_devs.contains(r.dev.as_str()))
            .cloned()
            .collect(),
        neighs: state
            .neighs
            .iter()
            .filter(|n| devs.contains(n.dev.as_str()))
            .cloned()
            .collect(),
        fdb: state
            .fdb
            .iter()
            .filter(|f| devs.contains(f.dev.as_str()))
            .cloned()
            .collect(),
        blackholes: if scope.blackholes {
            state.blackholes.clone()
        } else {
            BTreeSet::new()
        },
    }
}

impl KernelApi for FakeKernel {
    async fn observe(&self, scope: &ObserveScope) -> Result<KernelState, KernelError> {
        Ok(within(&self.lock().state, scope))
    }

    async fn apply(&self, ops: &[Op]) -> ApplyReport {
        let mut inner = self.lock();
        simulate(&mut inner.state, ops);
        inner.applied.push(ops.to_vec());
        ApplyReport {
            applied: ops.len(),
            errors: Vec::new(),
        }
    }

    async fn route_get(&self, dst: IpAddr) -> Result<RouteGetAnswer, IfaceError> {
        let on_link = self.lock().on_link.contains(&dst);
        Ok(RouteGetAnswer {
            oif: 2,
            prefsrc: None,
            gateway: (!on_link).then_some(dst),
        })
    }

    async fn events(&self) -> Result<KernelEvents, KernelError> {
        Ok(KernelEvents::from_stream(futures_util::stream::pending()))
    }

    async fn device_index(&self, dev: &str) -> Result<Option<u32>, KernelError> {
        Ok(self.lock().state.links.contains_key(dev).then_some(1))
    }

    async fn answer_neigh(&self, _index: u32, _n: &Neigh) -> Result<(), KernelError> {
        Ok(())
    }

    async fn answer_fdb(&self, _index: u32, _f: &Fdb) -> Result<(), KernelError> {
        Ok(())
    }

    async fn learned(&self, _dev: &str) -> Result<(Vec<Neigh>, Vec<Fdb>), KernelError> {
        Ok((Vec::new(), Vec::new()))
    }

    async fn forget(&self, _neighs: &[Neigh], _fdb: &[Fdb]) -> Vec<KernelError> {
        Vec::new()
    }
}
