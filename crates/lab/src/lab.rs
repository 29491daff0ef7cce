//! The entry point: [`Lab`] (every lab operation, given where labs keep their files),
//! [`Progress`] (how a long operation reports its steps) and the per-lab lock.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{LabError, Result};
use crate::naming::{parse_ns_name, LabName, Role};
use crate::state::{LabPaths, LabState};
use flannel_sandbox::{netns, wait};

/// How long to wait for another flannelctl working on the same lab.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Receives the steps of a long operation.
pub trait Progress {
    /// Step `index` (from 1) of `total` starts.
    fn step(&mut self, index: usize, total: usize, what: &str);
    /// Something worth a line of its own (e.g. leftovers being removed).
    fn note(&mut self, text: &str);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn step(&mut self, _: usize, _: usize, _: &str) {}
    fn note(&mut self, _: &str) {}
}

/// Held while one flannelctl changes a lab (`up`, `down`): an exclusive `flock` on
/// `<root>/<name>.lock`, released when dropped or when the process dies.
#[derive(Debug)]
pub struct LabLock {
    lock: Flock<File>,
    path: PathBuf,
}

impl LabLock {
    /// Deletes the lock file, then releases the lock (when the lab is gone). A flannelctl
    /// waiting on the old file notices it was unlinked and locks a new one.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock);
    }

    /// Whether the locked file is still the one at `path` (not unlinked by a `down`).
    fn current(&self) -> bool {
        match (self.lock.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// Takes the lab's lock, waiting up to a minute for another flannelctl to finish.
pub fn lock(paths: &LabPaths, name: &LabName) -> Result<LabLock> {
    std::fs::create_dir_all(&paths.root)
        .map_err(|e| LabError::io(format!("creating {}", paths.root.display()), e))?;
    let path = paths.lock_file(name);
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LabError::io(format!("opening {}", path.display()), e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let lock = LabLock {
                    lock,
                    path: path.clone(),
                };
                if lock.current() {
                    return Ok(lock);
                }
            }
            Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                wait::check_interrupt()?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(LabError::Busy {
                    name: name.to_string(),
                    path,
                })
            }
            Err((_, e)) => {
                return Err(LabError::io(
                    format!("locking {}", path.display()),
                    std::io::Error::from(e),
                ))
            }
        }
    }
}

/// The namespaces that belong to lab `name` (by name), whatever its state file says.
pub fn lab_namespaces(name: &LabName) -> Result<Vec<String>> {
    Ok(netns::list()?
        .into_iter()
        .filter(|ns| parse_ns_name(ns).is_some_and(|(n, _)| &n == name))
        .collect())
}

/// Names of every lab on the machine: those with a directory and those that only left
/// namespaces behind (sorted, deduplicated).
pub fn all_lab_names(paths: &LabPaths) -> Result<Vec<LabName>> {
    let mut names = paths.lab_dirs()?;
    for ns in netns::list()? {
        if let Some((name, _)) = parse_ns_name(&ns) {
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Every lab operation, for labs kept under one [`LabPaths`].
#[derive(Debug, Clone, Default)]
pub struct Lab {
    paths: LabPaths,
}

impl Lab {
    /// Labs kept under `paths`.
    pub fn new(paths: LabPaths) -> Lab {
        Lab { paths }
    }

    /// Where labs keep their files.
    pub fn paths(&self) -> &LabPaths {
        &self.paths
    }

    /// The lab's state; [`LabError::NoSuchLab`] when it has none.
    pub fn load(&self, name: &LabName) -> Result<LabState> {
        LabState::load(&self.paths, name)?.ok_or_else(|| LabError::NoSuchLab {
            name: name.to_string(),
        })
    }

    /// The namespace of `target` (`h1`, `h1-p2`, `etcd`, `sw`) in lab `name`, checked to exist.
    pub fn namespace_of(&self, name: &LabName, target: &str) -> Result<String> {
        let role = Role::parse(target).ok_or_else(|| {
            LabError::Invalid(format!(
                "bad target {target:?}: use a host (h1), a pod (h1-p2), etcd or sw"
            ))
        })?;
        let ns = name.ns(role);
        if netns::exists(&ns) {
            return Ok(ns);
        }
        let known = lab_namespaces(name)?;
        if known.is_empty() {
            return Err(LabError::NoSuchLab {
                name: name.to_string(),
            });
        }
        let mut roles: Vec<Role> = known
            .iter()
            .filter_map(|ns| parse_ns_name(ns).map(|(_, r)| r))
            .collect();
        roles.sort_by_key(Role::display_key);
        let targets: Vec<String> = roles.iter().map(Role::to_string).collect();
        Err(LabError::Invalid(format!(
            "lab {name} has no {target} (it has: {})",
            targets.join(", ")
        )))
    }
}
