//! `down`: removing a lab completely, with or without its state file.
//!
//! Order: CNI DEL for every attached pod (through the plugin, as a runtime would), stop every
//! flanneld (SIGTERM, SIGKILL after 5 s) and then etcd, kill whatever else still runs in the
//! lab's namespaces, delete the namespaces (pods, hosts, etcd, switch), delete the lab's
//! directory and etcd's data. Namespaces are found by name (`frslab-<name>-…`) as well as from
//! the state, so a lab whose state is gone or whose processes died is removed all the same.
//! Nothing here is interruptible and every step is bounded; running it twice is harmless.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cni;
use crate::error::Result;
use crate::lab::{all_lab_names, lab_namespaces, lock, Lab};
use crate::naming::{parse_ns_name, LabName};
use crate::state::{LabPaths, LabState, ProcRecord};
use flannel_sandbox::{netns, process};

/// How long flanneld and etcd get to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `down` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DownReport {
    /// The lab.
    pub name: String,
    /// Whether anything of it existed.
    pub found: bool,
    /// Whether it had a state file.
    pub had_state: bool,
    /// Pods released through CNI DEL.
    pub pods_released: usize,
    /// flanneld and etcd processes that were still running and were stopped.
    pub processes_stopped: usize,
    /// Namespaces deleted.
    pub namespaces_removed: Vec<String>,
    /// What could not be done (the rest was done anyway).
    pub warnings: Vec<String>,
}

impl Lab {
    /// Removes lab `name` and everything it left behind. Not finding it is not an error
    /// (see [`DownReport::found`]).
    pub fn down(&self, name: &LabName) -> Result<DownReport> {
        let lock = lock(self.paths(), name)?;
        let mut warnings = Vec::new();
        let state = match LabState::load(self.paths(), name) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("{e} (removing by name instead)"));
                None
            }
        };
        let mut report = teardown(self.paths(), name, state.as_ref());
        // The log a failed `up` kept (teardown itself leaves it: a failed `up` points to it).
        let _ = std::fs::remove_file(self.paths().failed_log(name));
        warnings.append(&mut report.warnings);
        report.warnings = warnings;
        lock.remove();
        Ok(report)
    }

    /// [`Lab::down`] for every lab on the machine (with a directory or leftover namespaces).
    pub fn down_all(&self) -> Result<Vec<DownReport>> {
        all_lab_names(self.paths())?
            .iter()
            .map(|name| self.down(name))
            .collect()
    }
}

/// Removes everything of lab `name` (see the module docs). The caller holds the lab's lock.
pub fn teardown(paths: &LabPaths, name: &LabName, state: Option<&LabState>) -> DownReport {
    let mut report = DownReport {
        name: name.to_string(),
        had_state: state.is_some(),
        ..DownReport::default()
    };
    let dir = paths.dir(name);
    // Directories are derived from the name, never taken from the state file.
    let etcd_data = paths.etcd_data(name);

    if let Some(s) = state {
        // Pods first, through the plugin, while their host namespaces exist.
        for pod in s.pods.iter().rev().filter(|p| p.ip.is_some()) {
            let Some(host) = s.host(pod.host) else {
                continue;
            };
            if !netns::exists(&host.ns) || !host.cni_conf.exists() {
                continue;
            }
            match cni::call("DEL", &dir, host, pod) {
                Ok(_) => report.pods_released += 1,
                Err(e) => report.warnings.push(e.to_string()),
            }
        }
        let flanneld: Vec<ProcRecord> = s.hosts.iter().filter_map(|h| h.flanneld).collect();
        report.processes_stopped += process::stop_all(&flanneld, STOP_GRACE);
        let etcd: Vec<ProcRecord> = s.etcd.process.into_iter().collect();
        report.processes_stopped += process::stop_all(&etcd, STOP_GRACE);
    }

    let mut namespaces: BTreeSet<String> = state
        .map(|s| s.namespaces.iter().cloned().collect())
        .unwrap_or_default();
    match lab_namespaces(name) {
        Ok(found) => namespaces.extend(found),
        Err(e) => report.warnings.push(e.to_string()),
    }
    let mut ordered: Vec<String> = namespaces
        .into_iter()
        .filter(|ns| netns::exists(ns))
        // Only names of this lab's scheme are ever deleted, whatever a state file says.
        .filter(|ns| parse_ns_name(ns).is_some_and(|(n, _)| &n == name))
        .collect();
    ordered.sort_by_key(|ns| parse_ns_name(ns).map(|(_, r)| r.teardown_rank()));
    for ns in ordered {
        match netns::remove(&ns) {
            Ok(()) => report.namespaces_removed.push(ns),
            Err(e) => report.warnings.push(e.to_string()),
        }
    }

    let dir_existed = dir.exists();
    for d in [&etcd_data, &dir] {
        remove_dir(d, &mut report.warnings);
    }
    report.found = report.had_state || dir_existed || !report.namespaces_removed.is_empty();
    report
}

fn remove_dir(dir: &Path, warnings: &mut Vec<String>) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warnings.push(format!("removing {}: {e}", dir.display())),
    }
}
