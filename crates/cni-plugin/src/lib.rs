//! The `flannel` CNI plugin: a drop-in replacement for flannel-io/cni-plugin.
//!
//! It is a meta-plugin: it reads the node's `subnet.env` (written by flanneld), turns it and
//! its own network configuration into a configuration for a real plugin (by default `bridge`
//! with `host-local` IPAM), saves that configuration for DEL, and runs the real plugin.
//!
//! Modules, from pure to I/O:
//! - [`gojson`], [`goip`]: Go's JSON and IP text forms, so saved configs are byte-identical
//!   to the Go plugin's;
//! - [`netconf`]: the plugin's configuration; [`subnet_env`]: the plugin's `subnet.env` reader;
//! - [`delegate`]: building the delegate configuration;
//! - [`error`], [`version`], [`args`]: CNI errors, versions and environment (Go `skel`);
//! - [`store`]: saved delegate configs; [`invoke`]: running the delegate;
//! - [`plugin`]: one invocation, end to end.

pub mod args;
pub mod delegate;
pub mod error;
pub mod goip;
pub mod gojson;
pub mod invoke;
pub mod netconf;
pub mod plugin;
pub mod store;
pub mod subnet_env;
pub mod version;

pub use error::CniError;
