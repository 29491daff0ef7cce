//! What the process must undo if it is stopped by a signal or a panic: every namespace,
//! process and directory the sandbox made, recorded here while it exists.
//!
//! The normal path undoes things through drops ([`crate::netns::Netns`], the owners of
//! processes) and forgets them here; [`cleanup_all`] is for the abnormal paths (a signal, a
//! panic in a release build that aborts, a test harness giving up).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[derive(Debug, Default)]
struct Registry {
    namespaces: Vec<String>,
    pids: Vec<i32>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    namespaces: Vec::new(),
    pids: Vec::new(),
    dirs: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remember a namespace (done by [`crate::netns::add`]).
pub fn track_netns(name: &str) {
    registry().namespaces.push(name.to_owned());
}

/// Forget a namespace (done by [`crate::netns::remove`]).
pub fn untrack_netns(name: &str) {
    registry().namespaces.retain(|n| n != name);
}

/// Remember a child process to kill.
pub fn track_pid(pid: i32) {
    registry().pids.push(pid);
}

/// Forget a child process (it was stopped and reaped).
pub fn untrack_pid(pid: i32) {
    registry().pids.retain(|p| *p != pid);
}

/// Remember a directory to remove.
pub fn track_dir(dir: &Path) {
    registry().dirs.push(dir.to_path_buf());
}

/// Forget a directory.
pub fn untrack_dir(dir: &Path) {
    registry().dirs.retain(|d| d != dir);
}

/// The namespaces recorded now (oldest first).
pub fn tracked_namespaces() -> Vec<String> {
    registry().namespaces.clone()
}

/// Kill every recorded process and whatever runs in a recorded namespace, delete the
/// namespaces (newest first) and directories. Does not wait on locks other than its own and
/// runs no command without a bound (`ip` answers at once).
pub fn cleanup_all() {
    let mut reg = registry();
    for pid in reg.pids.drain(..) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let namespaces: Vec<String> = reg.namespaces.drain(..).collect();
    let dirs: Vec<PathBuf> = reg.dirs.drain(..).collect();
    drop(reg);
    for ns in namespaces.iter().rev() {
        crate::netns::kill_pids(ns);
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// [`cleanup_all`] on SIGINT, SIGTERM and SIGHUP (then exit 130) and after a panic has been
/// reported (release builds abort on panic, so drops would not run).
pub fn on_signal_and_panic(program: &'static str) -> crate::error::Result<()> {
    crate::signals::watch(move |sig, _| {
        eprintln!("{program}: {sig}: cleaning up");
        cleanup_all();
        crate::signals::Action::Exit(130)
    })?;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        cleanup_all();
    }));
    Ok(())
}
