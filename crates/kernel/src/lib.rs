//! Host facts and kernel programming over netlink.
//!
//! Modules:
//! - [`iface`]: external interface selection (`--iface`, `--iface-regex`, `--iface-can-reach`,
//!   default route, `--public-ip`) from host facts gathered over rtnetlink.
//! - [`netlink`]: [`Kernel`], the long-lived rtnetlink connection (dumps, lookups, batches).
//! - [`observe`]: reading the managed kernel state into a planner `KernelState`.
//! - [`apply`]: carrying out the planner's ops, batched, in dependency order.
//! - [`monitor`]: link/address/route/neighbour notifications that call for a reconcile.
//! - [`miss`]: the vxlan on-demand mode's miss listener, answers and learned-entry cleanup.
//! - [`sysctl`]: per-device sysctls through `/proc/sys` (`accept_ra` of the vxlan devices).
//! - [`error`]: [`KernelError`], with errno classification.
//! - [`fuzzing`]: every decoder above behind one function, for the fuzz targets in `fuzz/`.

pub mod apply;
pub mod error;
pub mod fuzzing;
pub mod iface;
pub mod miss;
pub mod monitor;
pub mod netlink;
pub mod observe;
pub mod sysctl;

pub use apply::ApplyReport;
pub use error::KernelError;
pub use iface::{
    discover_external_interface, gather_host_interfaces, route_get, select_external_interface,
    ExternalInterface, HostInterfaces, IfaceError, IfaceRequest, RouteGetAnswer,
};
pub use monitor::{KernelEvent, KernelEvents};
pub use netlink::Kernel;
pub use observe::ObserveScope;
