//! Processes started in namespaces: identity that survives the starter (pid + kernel start
//! time), detached daemons with their output appended to a log, and bounded stops (SIGTERM,
//! then SIGKILL).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cmd::describe;
use crate::error::{Result, SandboxError};

/// A process recorded by pid and kernel start time, so a reused pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// The pid.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot).
    pub start_time: u64,
}

/// State letter and start time (field 3 and field 22) of `/proc/<pid>/stat` text.
pub fn parse_proc_stat(text: &str) -> Option<(char, u64)> {
    // The command name (field 2) is in parentheses and may contain anything.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// State letter and start time of process `pid`.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The record of a running process `pid`.
pub fn record(pid: u32) -> Option<ProcRecord> {
    proc_stat(pid).map(|(_, start_time)| ProcRecord { pid, start_time })
}

/// Whether the process is still the one recorded and has not exited (zombies count as exited).
pub fn is_alive(p: &ProcRecord) -> bool {
    matches!(proc_stat(p.pid), Some((state, start)) if start == p.start_time && state != 'Z' && state != 'X')
}

/// Whether a process with this pid exists (any process).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends `sig` to `pid`, ignoring errors (it may be gone already).
pub fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Drops from `cmd`'s environment every variable starting with one of `prefixes`.
pub fn drop_env(cmd: &mut Command, prefixes: &[&str]) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if prefixes.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(&key);
        }
    }
}

/// Opens `log` for appending (created if missing).
pub fn open_log(log: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| SandboxError::io(format!("opening {}", log.display()), e))
}

/// Points `cmd`'s stdin at `/dev/null` and its stdout and stderr at the end of `log`.
pub fn log_to(cmd: &mut Command, log: &Path) -> Result<()> {
    let out = open_log(log)?;
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io(format!("duplicating {}", log.display()), e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    Ok(())
}

/// Starts `program args…` in namespace `ns` as a session leader of its own (`setsid`), stdin
/// from `/dev/null`, stdout and stderr appended to `log` after a header line
/// `===== <header>: <command line>`; environment variables starting with one of `drop`
/// are not passed on. Nobody waits for it: it outlives the caller.
pub fn spawn_detached(
    ns: &str,
    program: &Path,
    args: &[String],
    log: &Path,
    drop: &[&str],
    header: &str,
) -> Result<ProcRecord> {
    let mut cmd = Command::new("setsid");
    cmd.args(["ip", "netns", "exec", ns])
        .arg(program)
        .args(args)
        .current_dir("/");
    drop_env(&mut cmd, drop);
    let desc = describe(&cmd);
    let mut out = open_log(log)?;
    writeln!(out, "===== {header}: {desc}")
        .map_err(|e| SandboxError::io(format!("writing {}", log.display()), e))?;
    log_to(&mut cmd, log)?;
    // The Child handle is dropped without waiting: the process belongs to whoever records it
    // (`setsid` and `ip netns exec` exec in place, so the pid is the daemon's own).
    let child = cmd
        .spawn()
        .map_err(|e| SandboxError::io(format!("starting `{desc}`"), e))?;
    record(child.id()).ok_or_else(|| SandboxError::Exited {
        what: format!("`{desc}`"),
    })
}

/// Stops the recorded processes that are still alive: SIGTERM, then SIGKILL for those left
/// after `grace`, then waits up to two seconds more. Returns how many were running.
pub fn stop_all(procs: &[ProcRecord], grace: Duration) -> usize {
    let alive: Vec<ProcRecord> = procs.iter().copied().filter(is_alive).collect();
    for p in &alive {
        signal(p.pid, Signal::SIGTERM);
    }
    let gone = || Ok::<bool, ()>(alive.iter().all(|p| !is_alive(p)));
    if !crate::wait::poll(grace, Duration::from_millis(20), gone) {
        for p in alive.iter().filter(|p| is_alive(p)) {
            signal(p.pid, Signal::SIGKILL);
        }
        crate::wait::poll(Duration::from_secs(2), Duration::from_millis(20), gone);
    }
    alive.len()
}

/// How [`stop`] ended a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// It was not running.
    NotRunning,
    /// It exited after SIGTERM.
    Terminated,
    /// It was still running after the grace time and got SIGKILL.
    Killed,
}

/// Stops one recorded process: SIGTERM, then SIGKILL if it is still alive after `grace`
/// (waiting up to two seconds more for it to go).
pub fn stop(p: &ProcRecord, grace: Duration) -> Stopped {
    if !is_alive(p) {
        return Stopped::NotRunning;
    }
    signal(p.pid, Signal::SIGTERM);
    let gone = || Ok::<bool, ()>(!is_alive(p));
    if crate::wait::poll(grace, Duration::from_millis(20), gone) {
        return Stopped::Terminated;
    }
    signal(p.pid, Signal::SIGKILL);
    crate::wait::poll(Duration::from_secs(2), Duration::from_millis(20), gone);
    Stopped::Killed
}

/// Graceful stop of a child: SIGTERM, wait up to `grace`, then SIGKILL; reaps it and returns
/// how it exited.
pub fn stop_child(child: &mut Child, grace: Duration) -> Result<ExitStatus> {
    let pid = child.id();
    let io = move |e| SandboxError::io(format!("waiting for process {pid}"), e);
    if let Some(status) = child.try_wait().map_err(io)? {
        return Ok(status);
    }
    signal(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait().map_err(io);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL and reap a child, ignoring errors.
pub fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_parsed() {
        let text = "4242 (flanneld (x) y) S 1 4242 4242 0 -1 4194560 1016 0 0 0 3 1 0 0 20 0 \
                    9 0 987654 123 456 18446744073709551615\n";
        assert_eq!(parse_proc_stat(text), Some(('S', 987654)));
        assert_eq!(parse_proc_stat("1 (init) Z 0"), None);
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = record(std::process::id()).unwrap();
        assert!(is_alive(&me));
        assert!(!is_alive(&ProcRecord {
            pid: me.pid,
            start_time: me.start_time + 1
        }));
        assert!(pid_exists(me.pid));
    }

    #[test]
    fn a_recorded_process_is_stopped_and_a_stubborn_one_killed() {
        let mut polite = Command::new("sleep").arg("30").spawn().unwrap();
        let mut stubborn = Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // A reaper thread each, as the daemons' real parent (init) would be.
        let p = record(polite.id()).unwrap();
        let s = record(stubborn.id()).unwrap();
        let reap = std::thread::spawn(move || {
            let _ = polite.wait();
            let _ = stubborn.wait();
        });
        assert_eq!(stop(&p, Duration::from_secs(5)), Stopped::Terminated);
        assert_eq!(stop(&s, Duration::from_millis(300)), Stopped::Killed);
        assert_eq!(stop(&p, Duration::from_secs(5)), Stopped::NotRunning);
        reap.join().unwrap();
    }

    #[test]
    fn a_child_is_stopped_gracefully() {
        let mut child = Command::new("sh")
            .args(["-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let status = stop_child(&mut child, Duration::from_secs(5)).unwrap();
        assert_eq!(status.code(), Some(3));
    }
}
