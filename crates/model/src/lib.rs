//! Flannel's wire and file formats, byte-compatible with the Go implementation.
//!
//! - [`config`]: the network configuration (`<prefix>/config` in etcd, or `net-conf.json`).
//! - [`lease`]: subnet keys (`10.5.34.0-24[&fd00::-64]`) and the lease value JSON.
//! - [`subnet_env`]: `/run/flannel/subnet.env`, rendered, parsed and written atomically.
//! - [`gojson`]: decoding JSON the way Go's `encoding/json` does (case-insensitive keys).
//!
//! Nothing here does network I/O; the only file I/O is the atomic `subnet.env` writer.

pub mod config;
pub mod gojson;
pub mod lease;
pub mod subnet_env;

pub use config::{BackendConfig, ConfigError, NetworkConfig, SubnetRange};
pub use lease::{Lease, LeaseAttrs, LeaseError, RawJson, SubnetKey};
pub use subnet_env::{SubnetEnv, SubnetEnvError};
