//! Pure decisions: which subnet to lease, what the kernel should hold, and how to get there.
//! Nothing here performs I/O; the I/O crates gather facts, call these functions and apply the
//! results.
//!
//! - [`allocator`]: Flannel's subnet acquisition algorithm.
//! - [`state`]: kernel objects flanneld manages (vxlan link, addresses, routes, neighbours, FDB).
//! - [`diff`]: desired vs observed state → ordered operations, within what flanneld owns.
//! - [`vxlan`], [`hostgw`]: what each backend wants in the kernel for a set of peers.

pub mod allocator;
pub mod diff;
pub mod hostgw;
pub mod state;
pub mod vxlan;
