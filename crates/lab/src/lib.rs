//! A whole flannel-rs cluster on one machine, for newcomers and as a test harness (the
//! library behind `flannelctl lab`).
//!
//! A lab is N "hosts" (network namespaces on an underlay bridge, `192.0.2.0/24`), a real etcd
//! in its own namespace, one `flanneld` per host with the chosen backend, and P pods per host
//! attached through the `flannel` CNI plugin (which delegates to `bridge` + `host-local`). It
//! outlives the command that built it: processes are detached, and the state is kept in
//! `/run/flannel-rs/lab/<name>/state.json` for `status`, `check`, `exec` and `down`.
//!
//! Modules, pure first:
//! - [`naming`]: lab names and the namespace naming scheme (`frslab-<name>-<role>`);
//! - [`spec`]: what a lab is made of and the texts given to etcd, flanneld and the plugin;
//! - [`state`]: the persistent state and where every file lives;
//! - [`matrix`], [`render`]: the all-pairs matrix, tables;
//! - [`cni`]: the CNI plugin calls;
//! - [`kernel`]: what a backend needs from the kernel, probed, and whether the lab runs here
//!   or inside Debian's kernel under qemu (flannelctl runs the guest);
//! - [`lab`]: the [`Lab`] entry point, progress reporting, locking;
//! - [`build`] (`up`), [`teardown`] (`down`), [`inspect`] (`status`, `list`),
//!   [`check`] (`check`), [`restart`] (`restart`: one host's flanneld), [`fault`] (`fault`:
//!   break one host for `flannelctl doctor` to find).
//!
//! Commands, namespaces, detached processes, probes and interrupts come from the sandbox
//! crate (`flannel-sandbox`), shared with the tests and the benchmarks.
//!
//! A lab never touches the machine's own interfaces: every link is created inside a lab
//! namespace, and no namespace has a route out.

pub mod build;
pub mod check;
pub mod cni;
pub mod error;
pub mod fault;
pub mod inspect;
pub mod kernel;
pub mod lab;
pub mod matrix;
pub mod naming;
pub mod render;
pub mod restart;
pub mod spec;
pub mod state;
pub mod teardown;

pub use build::UpOptions;
pub use check::CheckReport;
pub use error::LabError;
pub use inspect::{LabStatus, LabSummary};
pub use kernel::{KernelChoice, Placement};
pub use lab::{Lab, Progress, Quiet};
pub use naming::LabName;
pub use restart::RestartReport;
pub use spec::{Backend, BackendOption, LabSpec};
pub use state::{LabPaths, LabState};
pub use teardown::DownReport;
