//! The one sandbox layer of flannel-rs: what the integration tests (`flannel-testkit`), the
//! lab (`flannel-lab`, `flannelctl lab`) and the benchmarks (`flannel-bench`) use to build
//! networks of namespaces and run processes in them.
//!
//! - [`cmd`]: commands with time limits, output captured;
//! - [`netns`]: named network namespaces, veths into bridges, threads that join a namespace;
//! - [`process`]: detached daemons, process identity (pid + start time), bounded stops;
//! - [`etcd`]: etcd's command line in a namespace, its health check, `etcdctl`;
//! - [`probe`]: HTTP GET and `ping` from inside a namespace;
//! - [`wait`]: bounded waits and the interrupt flag;
//! - [`signals`]: SIGINT/SIGTERM/SIGHUP through handlers, never a blocked mask (children
//!   inherit a blocked mask, and a daemon started with SIGTERM blocked cannot be stopped);
//! - [`cleanup`]: what is undone on a signal or a panic;
//! - [`privileged`], [`text`]: root guards for tests, log tails.
//!
//! Nothing here touches the caller's own namespace: links are created inside sandbox
//! namespaces, and the sandbox adds no route out of them.

pub mod cleanup;
pub mod cmd;
pub mod error;
pub mod etcd;
pub mod netns;
pub mod privileged;
pub mod probe;
pub mod process;
pub mod signals;
pub mod text;
pub mod wait;

pub use error::{Result, SandboxError};
