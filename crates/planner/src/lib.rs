//! Pure decisions: which subnet to lease, what the kernel should hold, and how to get there.
//! Nothing here performs I/O; the I/O crates gather facts, call these functions and apply the
//! results.
//!
//! - [`backend`]: the [`backend::Backend`] trait, one module per backend, and the registry
//!   that maps the config's `Backend.Type` to one.
//! - [`allocator`]: Flannel's subnet acquisition algorithm.
//! - [`link`]: the devices flanneld creates, one [`link::LinkSpec`] variant per link kind.
//! - [`state`]: kernel objects flanneld manages (vxlan links, addresses, routes, neighbours, FDB,
//!   blackhole routes).
//! - [`diff`]: desired vs observed state → ordered operations, within what flanneld owns.
//! - [`offload`]: the vxlan tx checksum offload bug of kernels before 5.7, and its workaround.
//! - [`drift`]: which of those operations repair drift (for the repair counters).
//! - [`vxlan`], [`hostgw`]: what each backend wants in the kernel for a set of peers (IPv4
//!   and, with `EnableIPv6`, IPv6).
//! - [`ipsec`]: the ipsec backend's XFRM policies, charon connections and their diffs.
//! - [`extension`]: the extension backend's commands (which to run, argv, environment, stdin).
//! - [`ondemand`]: the vxlan on-demand mode (Flannel's first design): its kernel state and
//!   the answers to the kernel's L2/L3 misses.
//! - [`ext_iface`], [`skipped`]: the external interface's facts the backends plan with, and
//!   a peer lease a backend cannot use.
//! - [`wireguard`]: the wireguard backend's options, devices, MTUs, and each device's peers
//!   as plain data with their diff.
//! - [`blackhole`]: the blackhole routes for our own subnet (`--ip-blackhole-route`).

pub mod allocator;
pub mod backend;
pub mod blackhole;
pub mod diff;
pub mod drift;
pub mod ext_iface;
pub mod extension;
pub mod hostgw;
pub mod ipsec;
pub mod link;
pub mod offload;
pub mod ondemand;
pub mod skipped;
pub mod state;
pub mod vxlan;
pub mod wireguard;
