//! Test-only helpers shared by the workspace's integration tests.
//!
//! - [`privileged`]: guards for tests that need root; they fail (never skip) under `CI=true`.
//! - [`netns`]: private network namespaces for one test thread.
//! - [`fake_kernel`]: an in-memory kernel for root-free tests of the daemon's datapath loop.
//! - [`etcd`]: a real etcd process on a free loopback port with a temporary data directory.
//! - [`kubeapi`]: an in-process fake Kubernetes API server (nodes, pods, list/watch/patch).
//! - [`topology`]: multi-host labs of named namespaces (hosts, etcd, flanneld, pods).
//! - [`vm`]: run one test inside Debian's packaged kernel under qemu (ipip, xfrm, wireguard).
//!
//! Namespaces, commands, processes, etcd's command line and the probes come from the sandbox
//! crate (`flannel-sandbox`), which the lab and the benchmarks use too.

pub mod etcd;
pub mod fake_kernel;
pub mod kubeapi;
pub mod netns;
pub mod privileged;
pub mod topology;
pub mod vm;
