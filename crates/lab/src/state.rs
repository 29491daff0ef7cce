//! A lab's persistent state (`/run/flannel-rs/lab/<name>/state.json`) and where each of its
//! files lives.
//!
//! Layout of a lab's directory:
//!
//! ```text
//! /run/flannel-rs/lab/<name>/        state.json, etcd.log
//!   cni-bin/                          flannel, bridge, host-local (symlinks; the CNI_PATH)
//!   h<n>/                             subnet.env, flanneld.log, cni.log, cni.conf
//!   h<n>/cni/flannel/                 the flannel plugin's dataDir (saved delegate configs)
//!   h<n>/cni/ipam/                    host-local's dataDir (address leases)
//! /run/flannel-rs/lab/<name>.lock     held while flannelctl changes the lab
//! /run/flannel-rs/lab/<name>.failed.log  the log of the step a failed `up` stopped at
//! /var/tmp/flannel-rs-lab/<name>/     etcd's data (off /run: etcd preallocates 64 MB of WAL)
//! ```
//!
//! The state is rewritten after every step of `up`, so a crash leaves a record of what was
//! built; `down` also works without it (it finds namespaces by name).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::naming::LabName;
use crate::spec::LabSpec;

/// Default directory of lab state.
pub const DEFAULT_STATE_ROOT: &str = "/run/flannel-rs/lab";
/// Default directory of etcd data.
pub const DEFAULT_ETCD_ROOT: &str = "/var/tmp/flannel-rs-lab";
/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// Where labs keep their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPaths {
    /// Directory holding one directory (and one lock file) per lab.
    pub root: PathBuf,
    /// Directory holding one etcd data directory per lab.
    pub etcd_root: PathBuf,
}

impl Default for LabPaths {
    fn default() -> Self {
        LabPaths {
            root: PathBuf::from(DEFAULT_STATE_ROOT),
            etcd_root: PathBuf::from(DEFAULT_ETCD_ROOT),
        }
    }
}

impl LabPaths {
    /// The lab's directory.
    pub fn dir(&self, name: &LabName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// The lab's state file.
    pub fn state_file(&self, name: &LabName) -> PathBuf {
        self.dir(name).join("state.json")
    }

    /// The lab's lock file (next to its directory, so it outlives `down`).
    pub fn lock_file(&self, name: &LabName) -> PathBuf {
        self.root.join(format!("{}.lock", name.as_str()))
    }

    /// Where a failed `up` keeps the log of the step that failed (outside the lab's
    /// directory, which the failed `up` removes; the next `up` or `down` of the lab removes it).
    pub fn failed_log(&self, name: &LabName) -> PathBuf {
        self.root.join(format!("{}.failed.log", name.as_str()))
    }

    /// etcd's data directory for the lab.
    pub fn etcd_data(&self, name: &LabName) -> PathBuf {
        self.etcd_root.join(name.as_str())
    }

    /// Names of the labs that have a directory under [`LabPaths::root`] (sorted).
    pub fn lab_dirs(&self) -> Result<Vec<LabName>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LabError::io(format!("listing {}", self.root.display()), e)),
        };
        let mut names = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| LabName::new(n).ok())
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// A process the lab started, identified beyond its pid: the kernel's start time (clock ticks
/// after boot, field 22 of `/proc/<pid>/stat`) tells a reused pid from ours.
pub use flannel_sandbox::process::ProcRecord;

/// How far `up` got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `up` is (or was, if its builder died) building the lab.
    Building,
    /// Built.
    Up,
}

/// etcd's part of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdState {
    /// Its namespace.
    pub ns: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Client URL.
    pub endpoint: String,
    /// Log file.
    pub log: PathBuf,
    /// The process, once started.
    pub process: Option<ProcRecord>,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// `h<n>`.
    pub name: String,
    /// Its number.
    pub n: u8,
    /// Its namespace.
    pub ns: String,
    /// `eth0`'s address.
    pub ip: Ipv4Addr,
    /// Its directory.
    pub dir: PathBuf,
    /// flanneld's `--subnet-file`.
    pub subnet_file: PathBuf,
    /// flanneld's log.
    pub log: PathBuf,
    /// The CNI network config used for its pods.
    pub cni_conf: PathBuf,
    /// Log of every CNI plugin call for its pods.
    pub cni_log: PathBuf,
    /// flanneld, once started.
    pub flanneld: Option<ProcRecord>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    /// `h<n>-p<k>`.
    pub name: String,
    /// Its host's number.
    pub host: u8,
    /// Its number on the host.
    pub k: u8,
    /// Its namespace (`CNI_NETNS` is `/run/netns/<ns>`).
    pub ns: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// The address the CNI plugin gave it (once ADD succeeded).
    pub ip: Option<Ipv4Addr>,
}

/// Everything `down`, `status`, `check` and `exec` need to know about a lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// What was asked for.
    pub spec: LabSpec,
    /// How far `up` got.
    pub phase: Phase,
    /// The pid of the flannelctl that built it.
    pub builder_pid: u32,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The lab's directory.
    pub dir: PathBuf,
    /// etcd's data directory.
    pub etcd_data_dir: PathBuf,
    /// The switch namespace.
    pub switch_ns: String,
    /// etcd.
    pub etcd: EtcdState,
    /// The hosts, in order.
    pub hosts: Vec<HostState>,
    /// The pods, host by host.
    pub pods: Vec<PodState>,
    /// Every namespace created so far, in creation order.
    pub namespaces: Vec<String>,
}

impl LabState {
    /// Writes the state atomically (temporary file + rename in the lab's directory).
    pub fn save(&self, paths: &LabPaths) -> Result<()> {
        let path = paths.state_file(&self.spec.name);
        let err = |detail: String| LabError::State {
            path: path.clone(),
            detail,
        };
        let dir = path
            .parent()
            .ok_or_else(|| err("no parent directory".into()))?;
        let text = serde_json::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".state.")
            .tempfile_in(dir)
            .map_err(|e| err(e.to_string()))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.write_all(b"\n"))
            .map_err(|e| err(e.to_string()))?;
        tmp.persist(&path).map_err(|e| err(e.error.to_string()))?;
        Ok(())
    }

    /// Reads a lab's state; `Ok(None)` when the file does not exist.
    pub fn load(paths: &LabPaths, name: &LabName) -> Result<Option<LabState>> {
        let path = paths.state_file(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LabError::State {
                    path,
                    detail: e.to_string(),
                })
            }
        };
        LabState::parse(&text, &path).map(Some)
    }

    /// Parses a state file's text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<LabState> {
        let err = |detail: String| LabError::State {
            path: path.to_path_buf(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(STATE_VERSION)) {
            return Err(err(format!(
                "format version {version:?}, this flannelctl reads {STATE_VERSION}"
            )));
        }
        serde_json::from_value(value).map_err(|e| err(e.to_string()))
    }

    /// The host numbered `n`.
    pub fn host(&self, n: u8) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.n == n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::Backend;

    /// A state file as flannelctl writes it (format version 1).
    const V1: &str = r#"{
  "version": 1,
  "spec": {
    "name": "demo",
    "hosts": 1,
    "pods": 1,
    "backend": "host-gw",
    "network": "198.18.0.0/16",
    "flanneld": "/usr/bin/flanneld",
    "cni_plugin": "/opt/cni/bin/flannel",
    "cni_bin_dir": "/usr/lib/cni",
    "flanneld_args": []
  },
  "phase": "up",
  "builder_pid": 4242,
  "created": 1700000000,
  "dir": "/run/flannel-rs/lab/demo",
  "etcd_data_dir": "/var/tmp/flannel-rs-lab/demo",
  "switch_ns": "frslab-demo-sw",
  "etcd": {
    "ns": "frslab-demo-etcd",
    "ip": "192.0.2.254",
    "endpoint": "http://192.0.2.254:2379",
    "log": "/run/flannel-rs/lab/demo/etcd.log",
    "process": { "pid": 100, "start_time": 12345 }
  },
  "hosts": [
    {
      "name": "h1",
      "n": 1,
      "ns": "frslab-demo-h1",
      "ip": "192.0.2.1",
      "dir": "/run/flannel-rs/lab/demo/h1",
      "subnet_file": "/run/flannel-rs/lab/demo/h1/subnet.env",
      "log": "/run/flannel-rs/lab/demo/h1/flanneld.log",
      "cni_conf": "/run/flannel-rs/lab/demo/h1/cni.conf",
      "cni_log": "/run/flannel-rs/lab/demo/h1/cni.log",
      "flanneld": null
    }
  ],
  "pods": [
    {
      "name": "h1-p1",
      "host": 1,
      "k": 1,
      "ns": "frslab-demo-h1-p1",
      "container_id": "frslab-demo-h1-p1",
      "ip": "198.18.7.2"
    }
  ],
  "namespaces": ["frslab-demo-sw", "frslab-demo-h1", "frslab-demo-etcd", "frslab-demo-h1-p1"]
}
"#;

    #[test]
    fn a_v1_state_file_is_read() {
        let s = LabState::parse(V1, Path::new("state.json")).unwrap();
        assert_eq!(s.spec.name.as_str(), "demo");
        assert_eq!(s.spec.backend, Backend::HostGw);
        assert_eq!(s.phase, Phase::Up);
        assert_eq!(
            s.etcd.process,
            Some(ProcRecord {
                pid: 100,
                start_time: 12345
            })
        );
        assert_eq!(s.host(1).unwrap().ip, Ipv4Addr::new(192, 0, 2, 1));
        assert!(s.host(2).is_none());
        assert_eq!(s.pods[0].ip, Some(Ipv4Addr::new(198, 18, 7, 2)));
        assert_eq!(s.namespaces.len(), 4);
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LabPaths {
            root: dir.path().join("lab"),
            etcd_root: dir.path().join("etcd"),
        };
        let mut s = LabState::parse(V1, Path::new("state.json")).unwrap();
        let name = s.spec.name.clone();
        assert!(LabState::load(&paths, &name).unwrap().is_none());
        std::fs::create_dir_all(paths.dir(&name)).unwrap();
        s.phase = Phase::Building;
        s.save(&paths).unwrap();
        let back = LabState::load(&paths, &name).unwrap().unwrap();
        assert_eq!(back, s);
        let text = std::fs::read_to_string(paths.state_file(&name)).unwrap();
        assert!(text.contains("\"phase\": \"building\""), "{text}");
        // No temporary files are left next to it.
        let files: Vec<_> = std::fs::read_dir(paths.dir(&name))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("state.json")]);
        assert_eq!(paths.lab_dirs().unwrap(), vec![name.clone()]);
        assert_eq!(
            paths.lock_file(&name),
            dir.path().join("lab").join("demo.lock")
        );
        assert_eq!(paths.etcd_data(&name), dir.path().join("etcd").join("demo"));
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let v2 = V1.replacen("\"version\": 1", "\"version\": 2", 1);
        let e = LabState::parse(&v2, Path::new("s.json")).unwrap_err();
        assert!(e.to_string().contains("format version Some(2)"), "{e}");
        assert!(LabState::parse("{", Path::new("s.json")).is_err());
        let bad_name = V1.replacen("\"name\": \"demo\"", "\"name\": \"De-mo\"", 1);
        assert!(LabState::parse(&bad_name, Path::new("s.json")).is_err());
    }
}
