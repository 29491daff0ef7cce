//! The network config in Kubernetes mode: the file `--net-config-path` names (the
//! `kube-flannel-cfg` ConfigMap's `net-conf.json`, mounted at `/etc/kube-flannel/`), read and
//! checked the way flanneld reads it (Flannel's `CheckNetworkConfig` is not applied in this
//! mode; only the address families and the backend type are checked). flanneld and
//! `flannelctl status`/`doctor` both read it through [`read_net_conf`].

use std::path::{Path, PathBuf};

use flannel_model::{ConfigError, NetworkConfig};

/// Why the net-conf file gave no usable config (Flannel's texts, with the path).
#[derive(Debug, thiserror::Error)]
pub enum NetConfError {
    /// The file could not be read.
    #[error("failed to read net conf: {source} ({})", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is not a network config.
    #[error("error parsing subnet config in {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why it did not parse.
        source: ConfigError,
    },
    /// It enables no address family, or names an unknown backend.
    #[error("invalid network config in {}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ConfigError,
    },
}

/// The network config in `path`, parsed and checked as flanneld does in Kubernetes mode.
pub fn read_net_conf(path: &Path) -> Result<NetworkConfig, NetConfError> {
    let text = std::fs::read_to_string(path).map_err(|source| NetConfError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config = NetworkConfig::parse(&text).map_err(|source| NetConfError::Parse {
        path: path.to_owned(),
        source,
    })?;
    config
        .ip_stack()
        .and_then(|_| config.check_backend_type())
        .map_err(|source| NetConfError::Invalid {
            path: path.to_owned(),
            source,
        })?;
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_valid_file_and_names_the_file_in_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net-conf.json");
        let missing = read_net_conf(&path).unwrap_err().to_string();
        assert!(
            missing.starts_with("failed to read net conf: "),
            "{missing}"
        );
        assert!(
            missing.ends_with(&format!("({})", path.display())),
            "{missing}"
        );

        std::fs::write(&path, "{").unwrap();
        let bad = read_net_conf(&path).unwrap_err().to_string();
        assert!(
            bad.starts_with(&format!(
                "error parsing subnet config in {}: ",
                path.display()
            )),
            "{bad}"
        );

        std::fs::write(&path, r#"{"EnableIPv4":false,"Backend":{"Type":"vxlan"}}"#).unwrap();
        let invalid = read_net_conf(&path).unwrap_err().to_string();
        assert!(
            invalid.starts_with(&format!("invalid network config in {}: ", path.display())),
            "{invalid}"
        );

        std::fs::write(
            &path,
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#,
        )
        .unwrap();
        let config = read_net_conf(&path).unwrap();
        assert_eq!(config.backend_type(), "vxlan");
    }
}
