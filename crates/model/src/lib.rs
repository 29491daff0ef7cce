//! Flannel's wire and file formats, byte-compatible with the Go implementation.
//!
//! - [`config`]: the network configuration (`<prefix>/config` in etcd, or `net-conf.json`).
//! - [`backend_data`]: what backends publish in a lease (`BackendData`: vxlan's VNI and VTEP
//!   MAC).
//! - [`lease`]: subnet keys (`10.5.34.0-24[&fd00::-64]`) and the lease value JSON.
//! - [`scope`]: which lease keys belong to a network config.
//! - [`subnet_env`]: `/run/flannel/subnet.env`, rendered, parsed and written atomically.
//! - [`gojson`]: decoding JSON the way Go's `encoding/json` does (case-insensitive keys).
//! - [`goip`]: Go's IP/CIDR text forms (parsing like `net.ParseCIDR`, printing like Flannel).
//!
//! Nothing here does network I/O; the only file I/O is reading and atomically writing
//! `subnet.env`.

pub mod backend_data;
pub mod config;
pub mod goip;
pub mod gojson;
pub mod lease;
pub mod scope;
pub mod subnet_env;

pub use backend_data::{
    BackendDataError, MacAddr, VxlanLeaseData, WgKey, WireguardDataError, WireguardLeaseData,
};
pub use config::{BackendConfig, ConfigError, IpStack, NetworkConfig, SubnetRange};
pub use lease::{HostId, Lease, LeaseAttrs, LeaseError, RawJson, SubnetKey};
pub use scope::{LeaseScope, OutOfScope};
pub use subnet_env::{SubnetEnv, SubnetEnvError};
