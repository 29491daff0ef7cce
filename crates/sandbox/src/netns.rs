//! Named network namespaces (through `ip netns`), the commands run inside them, veth pairs
//! into a bridge, and threads that join a namespace to open sockets there.
//!
//! Every link is created inside sandbox namespaces (`ip -n <ns> link add … netns <other>`),
//! so the namespace of the caller is never touched.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cleanup;
use crate::cmd::{self, quick_timeout, Output};
use crate::error::{Result, SandboxError};

/// `ip netns add` is serialised within the process: the first calls on a machine race on
/// making `/run/netns` a shared mount.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// `ip args…` (in the caller's namespace: only `netns` subcommands and `-n <ns>` are ever
/// passed by the sandbox).
pub fn ip(args: &[&str]) -> Result<String> {
    cmd::run_ok(cmd::command("ip", args), None, quick_timeout())
}

/// `ip -n <ns> args…`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// `ip netns exec <ns> args…` as a [`Command`].
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd
}

/// `ip netns exec <ns> args…`, stdout or an error (with stderr).
pub fn exec_in(ns: &str, args: &[&str]) -> Result<String> {
    cmd::run_ok(in_ns(ns, args), None, quick_timeout())
}

/// `ip netns exec <ns> args…`, its output whatever the exit status.
pub fn run_in(ns: &str, args: &[&str]) -> Result<Output> {
    if args.is_empty() {
        return Err(SandboxError::Invalid(format!("empty command for {ns}")));
    }
    cmd::run(in_ns(ns, args), None, quick_timeout())
}

/// `sysctl -qw key=value…` inside `ns`.
pub fn sysctl_in(ns: &str, settings: &[&str]) -> Result<()> {
    let mut args = vec!["sysctl", "-qw"];
    args.extend_from_slice(settings);
    exec_in(ns, &args).map(drop)
}

/// The names in `ip netns list`.
pub fn list() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Whether `/run/netns/<name>` exists.
pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// `ip netns add <name>` (serialised, and retried once), then `lo` up inside. The namespace is
/// recorded for [`cleanup::cleanup_all`] until [`remove`] deletes it.
pub fn add(name: &str) -> Result<()> {
    {
        let _serial = NETNS_ADD.lock().unwrap_or_else(PoisonError::into_inner);
        if ip(&["netns", "add", name]).is_err() && !exists(name) {
            std::thread::sleep(std::time::Duration::from_millis(100));
            ip(&["netns", "add", name])?;
        }
    }
    cleanup::track_netns(name);
    ip_in(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Kills (SIGKILL) every process still in namespace `name`, then deletes it. Missing is fine.
pub fn remove(name: &str) -> Result<()> {
    cleanup::untrack_netns(name);
    if !exists(name) {
        return Ok(());
    }
    kill_pids(name);
    ip(&["netns", "del", name]).map(drop)
}

/// The pids of the processes in namespace `name` (`ip netns pids`); empty on error.
pub fn pids(name: &str) -> Vec<i32> {
    ip(&["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL every process living in namespace `name`.
pub fn kill_pids(name: &str) {
    for pid in pids(name) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Deletes the namespaces named `<prefix><pid>…` whose process `<pid>` no longer exists (and
/// is not this one), killing what still runs in them: what a program stopped by SIGKILL left.
/// Returns the names removed.
pub fn remove_orphans(prefix: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list()? {
        let Some(pid) = owner_pid(&name, prefix) else {
            continue;
        };
        if pid == std::process::id() || crate::process::pid_exists(pid) {
            continue;
        }
        remove(&name)?;
        removed.push(name);
    }
    Ok(removed)
}

/// The pid in a name `<prefix><pid>…`.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Creates bridge `bridge` in `ns` and brings it up.
pub fn add_bridge(ns: &str, bridge: &str) -> Result<()> {
    ip_in(ns, &["link", "add", bridge, "type", "bridge"])?;
    ip_in(ns, &["link", "set", bridge, "up"]).map(drop)
}

/// Attaches namespace `ns` to `bridge` in `switch_ns`: veth `port` (in the switch, enslaved to
/// the bridge, up) whose peer is `ifname` in `ns`, with `cidr` on it, up.
pub fn plug(
    switch_ns: &str,
    bridge: &str,
    port: &str,
    ns: &str,
    ifname: &str,
    cidr: &str,
) -> Result<()> {
    ip_in(
        switch_ns,
        &[
            "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns,
        ],
    )?;
    ip_in(switch_ns, &["link", "set", port, "master", bridge, "up"])?;
    ip_in(ns, &["addr", "add", cidr, "dev", ifname])?;
    ip_in(ns, &["link", "set", ifname, "up"]).map(drop)
}

/// Moves the calling thread into namespace `ns` (sockets it opens and processes it spawns
/// live there).
pub fn enter(ns: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(ns);
    let file = File::open(&path)
        .map_err(|e| SandboxError::io(format!("opening {}", path.display()), e))?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| SandboxError::errno(format!("setns into {}", path.display()), e))
}

/// Runs `f` on a fresh thread that has joined namespace `ns` and returns what it returns; the
/// calling thread's namespace is untouched.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            enter(ns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| SandboxError::unexpected(format!("a thread in namespace {ns}"), "panicked"))?
    })
}

/// A named network namespace owned by the caller: created by [`Netns::create`], deleted (with
/// whatever still runs in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// [`add`] `name` and own it.
    pub fn create(name: impl Into<String>) -> Result<Netns> {
        let name = name.into();
        add(&name)?;
        Ok(Netns { name })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args…>`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        ip_in(&self.name, args)
    }

    /// `bridge -n <ns> <args…>`.
    pub fn bridge(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        cmd::run_ok(cmd::command("bridge", &full), None, quick_timeout())
    }

    /// `ip netns exec <ns> args…`, stdout or an error.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        exec_in(&self.name, args)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = remove(&self.name);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn orphan_names_carry_their_owner() {
        assert_eq!(owner_pid("frsbench123-etcd", "frsbench"), Some(123));
        assert_eq!(owner_pid("frsbench-etcd", "frsbench"), None);
        assert_eq!(owner_pid("other123", "frsbench"), None);
    }

    /// Two namespaces on a bridge reach each other; dropping them removes them and what ran
    /// inside.
    #[test]
    fn namespaces_on_a_bridge() {
        if !crate::privileged::require_root("sandbox::netns::namespaces_on_a_bridge") {
            return;
        }
        let tag = format!("frssbx{}", std::process::id());
        let sw = Netns::create(format!("{tag}-sw")).unwrap();
        let a = Netns::create(format!("{tag}-a")).unwrap();
        let b = Netns::create(format!("{tag}-b")).unwrap();
        add_bridge(sw.name(), "br0").unwrap();
        plug(sw.name(), "br0", "pa", a.name(), "eth0", "192.0.2.1/24").unwrap();
        plug(sw.name(), "br0", "pb", b.name(), "eth0", "192.0.2.2/24").unwrap();
        let out = a
            .exec(&["ping", "-c", "1", "-W", "2", "192.0.2.2"])
            .unwrap();
        assert!(out.contains("1 received"), "{out}");
        let name = in_netns(b.name(), || {
            std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default()
        })
        .unwrap();
        assert!(name.contains("eth0"), "{name}");
        let names = [sw.name().to_owned(), a.name().to_owned()];
        drop((sw, a, b));
        assert!(names.iter().all(|n| !exists(n)));
    }
}
