//! Host facts and kernel programming over netlink.
//!
//! Modules:
//! - [`select`]: external interface selection (`--iface`, `--iface-regex`,
//!   `--iface-can-reach`, default route, `--public-ip`) from plain host facts. Pure.
//! - [`iface`]: gathering those facts over rtnetlink, `ip route get`, and discovery.
//! - [`decode`]: rtnetlink messages → plain facts and planner state. Pure.
//! - [`netlink`]: [`Kernel`], the long-lived rtnetlink connection (dumps, lookups, batches).
//! - [`observe`]: reading the managed kernel state into a planner `KernelState`.
//! - [`link`]: one file per link kind (vxlan): decoding, the create message, its `ip` text.
//! - [`apply`]: carrying out the planner's ops, batched, in dependency order.
//! - [`monitor`]: link/address/route/neighbour notifications that call for a reconcile.
//! - [`miss`]: the vxlan on-demand mode's miss listener, answers and learned-entry cleanup.
//! - [`sysctl`]: per-device sysctls through `/proc/sys` (`accept_ra` of the vxlan devices).
//! - [`xfrm`]: the ipsec backend's XFRM policies and SAs over `NETLINK_XFRM`.
//! - [`seam`]: [`KernelApi`], what the daemon asks of the kernel (netlink here, a fake in
//!   tests).
//! - [`error`]: [`KernelError`], with errno classification.
//! - [`fuzzing`]: every decoder above behind one function, for the fuzz targets in `fuzz/`.

pub mod apply;
pub mod decode;
pub mod error;
pub mod fuzzing;
pub mod iface;
pub mod link;
pub mod miss;
pub mod monitor;
pub mod netlink;
pub mod observe;
pub mod seam;
pub mod select;
pub mod sysctl;
pub mod wireguard;
pub mod xfrm;

pub use apply::ApplyReport;
pub use error::KernelError;
pub use iface::{
    discover_external_interface, gather_host_interfaces, route_get, select_external_interface,
    ExternalInterface, HostInterfaces, IfaceError, IfaceRequest, RouteGetAnswer,
};
pub use monitor::{KernelEvent, KernelEvents};
pub use netlink::Kernel;
pub use observe::ObserveScope;
pub use seam::KernelApi;
