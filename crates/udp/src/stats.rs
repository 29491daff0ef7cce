//! Live counters of a running datapath, so drops are visible while it runs (not only when
//! it stops).
//!
//! Each worker owns a [`Slot`] and publishes its running totals into it after every batch
//! (the fast path) or packet (the simple proxy): the slots share one lock, held only for the
//! copy (so rarely contended: a batch is tens of microseconds of work), and there are no
//! shared atomics on the per-packet path. [`Stats::snapshot`] sums the slots; [`drop_report`] says
//! which drop reasons grew between two snapshots.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use crate::decide::Counters;

/// What both directions did, returned when a datapath (the simple proxy or the fast path) stops, and published
/// live into [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounters {
    /// TUN → UDP decisions.
    pub outbound: Counters,
    /// UDP → TUN decisions.
    pub inbound: Counters,
    /// Packets a decision said to send or write that the OS refused.
    pub io_errors: u64,
}

/// The datapath's counters, readable while it runs. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    slots: Arc<Mutex<Vec<ProxyCounters>>>,
}

/// One worker's place in [`Stats`].
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Mutex<Vec<ProxyCounters>>>,
    index: usize,
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Stats {
        Stats::default()
    }

    /// A new slot for one worker, starting at zero.
    pub(crate) fn slot(&self) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.push(ProxyCounters::default());
        Slot {
            slots: Arc::clone(&self.slots),
            index: slots.len() - 1,
        }
    }

    /// The sum over every worker, as last published.
    pub fn snapshot(&self) -> ProxyCounters {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = ProxyCounters::default();
        for s in slots.iter() {
            total.outbound += s.outbound;
            total.inbound += s.inbound;
            total.io_errors = total.io_errors.wrapping_add(s.io_errors);
        }
        total
    }
}

impl Slot {
    /// Replace this worker's totals.
    pub(crate) fn publish(&self, totals: ProxyCounters) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.get_mut(self.index) {
            *s = totals;
        }
    }
}

/// The drop reasons that grew from `before` to `now`, as `direction.reason=count` words
/// (e.g. `in.unknown_peer=3 in.spoofed_source=1`); `None` when nothing was dropped.
pub fn drop_report(before: &ProxyCounters, now: &ProxyCounters) -> Option<String> {
    let mut out = String::new();
    for (dir, b, n) in [
        ("out", &before.outbound, &now.outbound),
        ("in", &before.inbound, &now.inbound),
    ] {
        for ((name, was), (_, is)) in b.drops().iter().zip(n.drops().iter()) {
            let grew = is.wrapping_sub(*was);
            if grew != 0 {
                if !out.is_empty() {
                    out.push(' ');
                }
                let _ = write!(out, "{dir}.{name}={grew}");
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::DropReason;

    #[test]
    fn snapshot_sums_the_latest_totals_of_every_slot() {
        let stats = Stats::new();
        let (a, b) = (stats.slot(), stats.slot());
        let mut out = ProxyCounters::default();
        out.outbound.forwarded = 5;
        a.publish(out);
        out.outbound.forwarded = 7; // running totals: the newer replaces the older
        a.publish(out);
        let mut inb = ProxyCounters::default();
        inb.inbound.delivered = 3;
        inb.inbound.record_drop(DropReason::UnknownPeer);
        inb.io_errors = 2;
        b.publish(inb);
        let s = stats.clone().snapshot();
        assert_eq!(s.outbound.forwarded, 7);
        assert_eq!(s.inbound.delivered, 3);
        assert_eq!(s.inbound.unknown_peer, 1);
        assert_eq!(s.io_errors, 2);
    }

    #[test]
    fn drop_report_names_what_grew() {
        let before = ProxyCounters::default();
        let mut now = before;
        now.outbound.forwarded = 1000; // traffic is not a drop
        assert_eq!(drop_report(&before, &now), None);
        now.inbound.record_drop(DropReason::SpoofedSource);
        now.inbound.record_drop(DropReason::UnknownPeer);
        now.inbound.record_drop(DropReason::UnknownPeer);
        now.outbound.record_drop(DropReason::NoRoute);
        assert_eq!(
            drop_report(&before, &now).as_deref(),
            Some("out.no_route=1 in.unknown_peer=2 in.spoofed_source=1")
        );
        assert_eq!(drop_report(&now, &now), None);
    }
}
