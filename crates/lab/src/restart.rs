//! `restart`: stopping one host's flanneld (SIGTERM, SIGKILL after 5 s) and starting it again
//! with the same command line, as an operator restarting the daemon on one node would.

use std::time::{Duration, Instant};

use flannel_sandbox::process::{self, Stopped};
use serde::Serialize;

use crate::build::{start_flanneld, FLANNELD_TIMEOUT};
use crate::error::{LabError, Result};
use crate::lab::{lock, Lab};
use crate::naming::{host_name, LabName, Role};
use crate::state::Phase;

/// How long flanneld gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `restart` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartReport {
    /// The lab.
    pub lab: String,
    /// The host (`h<n>`).
    pub host: String,
    /// The pid of the flanneld that was stopped, if one was recorded.
    pub old_pid: Option<u32>,
    /// How it was stopped.
    pub stopped: Stopped,
    /// The new flanneld's pid.
    pub new_pid: u32,
    /// From the stop to the new flanneld being ready, in milliseconds.
    pub took_ms: u64,
}

impl Lab {
    /// Restarts the flanneld of `target` (`h<n>`) in lab `name` and waits until it is ready.
    pub fn restart_flanneld(&self, name: &LabName, target: &str) -> Result<RestartReport> {
        let Some(Role::Host(n)) = Role::parse(target) else {
            return Err(LabError::Invalid(format!(
                "bad host {target:?}: restart takes a host such as h1"
            )));
        };
        let _lock = lock(self.paths(), name)?;
        let mut state = self.load(name)?;
        if state.phase != Phase::Up {
            return Err(LabError::Invalid(format!(
                "lab {name} is not up (its `up` did not finish): nothing to restart"
            )));
        }
        let Some(host) = state.host(n) else {
            return Err(LabError::Invalid(format!(
                "lab {name} has no host {target} (it has h1 to {})",
                host_name(state.spec.hosts)
            )));
        };
        let old = host.flanneld;
        let started = Instant::now();
        let stopped = old.map_or(Stopped::NotRunning, |p| process::stop(&p, STOP_GRACE));
        let new = start_flanneld(self.paths(), &mut state, n, FLANNELD_TIMEOUT)?;
        Ok(RestartReport {
            lab: name.to_string(),
            host: host_name(n),
            old_pid: old.map(|p| p.pid),
            stopped,
            new_pid: new.pid,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}
