//! Commands with time limits. Output is captured in anonymous temporary files (never pipes,
//! so a stray grandchild holding a pipe open cannot block the caller).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Result, SandboxError};

/// Time limit of a quick command (`ip …`, `sysctl`, `etcdctl`) on an ordinary machine; see
/// [`quick_timeout`].
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times slower than usual this machine may be: set inside the Debian-kernel guest
/// (software emulation), where `ip -n NS link set lo up` has taken over 10 s under load.
pub const TIME_SCALE_ENV: &str = "FLANNEL_TEST_TIME_SCALE";

/// [`TIME_SCALE_ENV`], at least 1 (1 when unset or not a number).
pub fn time_scale() -> u32 {
    std::env::var(TIME_SCALE_ENV)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|s| *s >= 1)
        .unwrap_or(1)
}

/// [`CMD_TIMEOUT`] stretched by [`time_scale`]: the bound of every quick command.
pub fn quick_timeout() -> Duration {
    CMD_TIMEOUT * time_scale()
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
}

/// The command line of `cmd` as text.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `program args…` as a [`Command`].
pub fn command(program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// Runs `cmd` to completion within `timeout` (killing it after), feeding it `stdin` (or
/// nothing); returns its output whatever the exit status.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let desc = describe(&cmd);
    let io = |e| SandboxError::io(format!("running `{desc}`"), e);
    let mut out = tempfile::tempfile().map_err(io)?;
    let mut err = tempfile::tempfile().map_err(io)?;
    match stdin {
        Some(data) => {
            let mut input = tempfile::tempfile().map_err(io)?;
            input.write_all(data).map_err(io)?;
            input.seek(SeekFrom::Start(0)).map_err(io)?;
            cmd.stdin(input);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    cmd.stdout(out.try_clone().map_err(io)?);
    cmd.stderr(err.try_clone().map_err(io)?);
    let mut child = cmd.spawn().map_err(io)?;
    drop(cmd);
    // A thread waits, so the caller learns of the exit at once (benchmarks time commands).
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status.map_err(io)?,
        Err(_) => {
            // Not reaped yet (the waiter still waits), so the pid is still the child's.
            crate::process::signal(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waiter.join();
            return Err(SandboxError::CommandTimeout {
                command: desc,
                timeout,
            });
        }
    };
    let _ = waiter.join();
    let read = |f: &mut File| -> Result<String> {
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.read_to_end(&mut buf).map_err(io)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    Ok(Output {
        status,
        stdout: read(&mut out)?,
        stderr: read(&mut err)?,
    })
}

/// [`run`], and an error (with stderr, or stdout when stderr is empty) unless it exits 0.
pub fn run_ok(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<String> {
    let desc = describe(&cmd);
    let out = run(cmd, stdin, timeout)?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let detail = if out.stderr.trim().is_empty() {
        out.stdout.trim()
    } else {
        out.stderr.trim()
    };
    Err(SandboxError::Command {
        command: desc,
        status: out.status.to_string(),
        detail: detail.to_owned(),
    })
}

/// `program args…` within `timeout`: its stdout, or an error with its stderr.
pub fn sh(program: &str, args: &[&str], timeout: Duration) -> Result<String> {
    run_ok(command(program, args), None, timeout)
}

/// `program` in `PATH`, if there (an executable file).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

/// Whether `p` is an executable regular file.
pub fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the caller runs as root (namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_bounded_and_captured() {
        use std::time::Instant;
        let out = run(
            command("sh", &["-c", "cat; echo err >&2"]),
            Some(b"in"),
            CMD_TIMEOUT,
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "in");
        assert_eq!(out.stderr, "err\n");
        let e = run_ok(
            command("sh", &["-c", "echo bad >&2; exit 3"]),
            None,
            CMD_TIMEOUT,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`sh -c echo bad >&2; exit 3` failed (exit status: 3): bad"
        );
        let started = Instant::now();
        let e = run(command("sleep", &["5"]), None, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, SandboxError::CommandTimeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("surely-not-a-program-here").is_none());
    }
}
