//! strongSwan's IKE daemon `charon`, run as flanneld's child for the ipsec backend: where it is
//! found (Flannel's search path), how it is started (stdout and stderr inherited, SIGTERM when
//! flanneld dies) and stopped.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// Flannel's candidates, in its order: `charon` in `PATH`, then the distributions' places.
pub const SEARCH_PATH: &[&str] = &[
    "charon",
    "/usr/lib/strongswan/charon",     // alpine, arch, flannel's image
    "/usr/lib/ipsec/charon",          // debian, ubuntu
    "/usr/libexec/strongswan/charon", // centos, rhel
    "/usr/libexec/ipsec/charon",      // opensuse, sles
];

/// `setpriv` (util-linux) gives the child a parent-death signal without unsafe code here.
const SETPRIV: &str = "/usr/bin/setpriv";

/// How long charon gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The first of `candidates` that names an executable file: a bare name is looked up in the
/// directories of `path_env` (as Go's `exec.LookPath`), a path is taken as it is. Pure apart
/// from `is_executable`.
pub fn find_in(
    candidates: &[&str],
    path_env: Option<&str>,
    is_executable: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    candidates.iter().find_map(|c| {
        if c.contains('/') {
            let p = PathBuf::from(c);
            is_executable(&p).then_some(p)
        } else {
            path_env?
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(d).join(c))
                .find(|p| is_executable(p))
        }
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where charon is on this host, or Flannel's error naming the paths searched.
pub fn find() -> Result<PathBuf> {
    let path_env = std::env::var("PATH").ok();
    match find_in(SEARCH_PATH, path_env.as_deref(), is_executable) {
        Some(p) => Ok(p),
        None => bail!("no valid charon executable found at paths {SEARCH_PATH:?}"),
    }
}

/// A running charon.
#[derive(Debug)]
pub struct Charon {
    child: Child,
}

impl Charon {
    /// Start `path`, with SIGTERM as its parent-death signal when `setpriv` is there.
    pub fn spawn(path: &Path) -> Result<Charon> {
        let mut cmd = if Path::new(SETPRIV).exists() {
            let mut c = Command::new(SETPRIV);
            c.args(["--pdeathsig", "TERM", "--"]).arg(path);
            c
        } else {
            warn!("{SETPRIV} not found: charon outlives flanneld if flanneld is killed");
            Command::new(path)
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting charon ({})", path.display()))?;
        info!(path = %path.display(), pid = child.id(), "Charon daemon started");
        Ok(Charon { child })
    }

    /// Wait for it to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM, then SIGKILL after a few seconds; waits for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            if let Err(e) = signal_term(pid) {
                warn!(error = %e, "signalling charon");
            }
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => info!(%status, "Stopped charon daemon"),
            Ok(Err(e)) => warn!(error = %e, "waiting for charon"),
            Err(_) => {
                warn!("charon did not stop within {STOP_TIMEOUT:?}; killing it");
                let _ = self.child.kill().await;
            }
        }
    }
}

fn signal_term(pid: u32) -> Result<()> {
    let pid = i32::try_from(pid).context("charon's pid")?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).with_context(|| format!("kill -TERM {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannels_search_order() {
        let exists =
            |have: &'static [&'static str]| move |p: &Path| have.iter().any(|h| Path::new(h) == p);
        assert_eq!(
            find_in(
                SEARCH_PATH,
                Some("/usr/sbin:/opt/bin"),
                exists(&["/opt/bin/charon", "/usr/lib/ipsec/charon"])
            ),
            Some(PathBuf::from("/opt/bin/charon")),
            "PATH first"
        );
        assert_eq!(
            find_in(
                SEARCH_PATH,
                Some("/usr/sbin"),
                exists(&["/usr/lib/ipsec/charon", "/usr/libexec/ipsec/charon"])
            ),
            Some(PathBuf::from("/usr/lib/ipsec/charon")),
            "Debian's before openSUSE's"
        );
        assert_eq!(find_in(SEARCH_PATH, None, exists(&[])), None);
    }
}
