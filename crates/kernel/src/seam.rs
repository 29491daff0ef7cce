//! [`KernelApi`]: what the daemon asks of the kernel, as a trait, so the daemon's decisions
//! around it (sync gating, the route journal, blackholes) can be tested without root against a
//! fake kernel (`flannel_testkit::fake_kernel`, built on `planner::diff::simulate`). [`Kernel`]
//! is the netlink implementation.

use std::future::Future;
use std::net::IpAddr;

use flannel_planner::diff::Op;
use flannel_planner::state::{Fdb, KernelState, Neigh};

use crate::apply::ApplyReport;
use crate::error::KernelError;
use crate::iface::{IfaceError, RouteGetAnswer};
use crate::monitor::KernelEvents;
use crate::netlink::Kernel;
use crate::observe::ObserveScope;

/// The kernel as the daemon uses it.
pub trait KernelApi: Send + Sync {
    /// Read the managed state within `scope`.
    fn observe(
        &self,
        scope: &ObserveScope,
    ) -> impl Future<Output = Result<KernelState, KernelError>> + Send;

    /// Carry out `ops` (the semantics of `planner::diff::simulate`).
    fn apply(&self, ops: &[Op]) -> impl Future<Output = ApplyReport> + Send;

    /// `ip route get <dst>` (DirectRouting asks whether a peer is on-link).
    fn route_get(
        &self,
        dst: IpAddr,
    ) -> impl Future<Output = Result<RouteGetAnswer, IfaceError>> + Send;

    /// Changes that may undo our work.
    fn events(&self) -> impl Future<Output = Result<KernelEvents, KernelError>> + Send;

    /// The ifindex of `dev`, or `None` when there is no such device (on-demand mode).
    fn device_index(
        &self,
        dev: &str,
    ) -> impl Future<Output = Result<Option<u32>, KernelError>> + Send;

    /// Install the answer to an L3 miss (on-demand mode).
    fn answer_neigh(
        &self,
        index: u32,
        n: &Neigh,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// Install the answer to an L2 miss (on-demand mode).
    fn answer_fdb(
        &self,
        index: u32,
        f: &Fdb,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;

    /// The learned (non-permanent) entries on `dev` (on-demand mode).
    fn learned(
        &self,
        dev: &str,
    ) -> impl Future<Output = Result<(Vec<Neigh>, Vec<Fdb>), KernelError>> + Send;

    /// Remove learned entries; returns the errors (on-demand mode).
    fn forget(
        &self,
        neighs: &[Neigh],
        fdb: &[Fdb],
    ) -> impl Future<Output = Vec<KernelError>> + Send;
}

impl KernelApi for Kernel {
    async fn observe(&self, scope: &ObserveScope) -> Result<KernelState, KernelError> {
        Kernel::observe(self, scope).await
    }

    async fn apply(&self, ops: &[Op]) -> ApplyReport {
        Kernel::apply(self, ops).await
    }

    async fn route_get(&self, dst: IpAddr) -> Result<RouteGetAnswer, IfaceError> {
        Kernel::route_get(self, dst).await
    }

    async fn events(&self) -> Result<KernelEvents, KernelError> {
        Kernel::events(self).await
    }

    async fn device_index(&self, dev: &str) -> Result<Option<u32>, KernelError> {
        Kernel::device_index(self, dev).await
    }

    async fn answer_neigh(&self, index: u32, n: &Neigh) -> Result<(), KernelError> {
        Kernel::answer_neigh(self, index, n).await
    }

    async fn answer_fdb(&self, index: u32, f: &Fdb) -> Result<(), KernelError> {
        Kernel::answer_fdb(self, index, f).await
    }

    async fn learned(&self, dev: &str) -> Result<(Vec<Neigh>, Vec<Fdb>), KernelError> {
        Kernel::learned(self, dev).await
    }

    async fn forget(&self, neighs: &[Neigh], fdb: &[Fdb]) -> Vec<KernelError> {
        Kernel::forget(self, neighs, fdb).await
    }
}
