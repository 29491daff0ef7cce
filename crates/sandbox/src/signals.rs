//! SIGINT, SIGTERM and SIGHUP without blocking them.
//!
//! Blocking the signals and waiting for them with `sigwait` on a thread is the classic design,
//! but the blocked mask is inherited by every thread created afterwards and, through `exec`,
//! by every child: a flanneld started that way ignores `kill` and is only stopped by SIGKILL.
//! Here the signals get handlers instead (tokio's, on a thread of their own); handlers are
//! reset to the default by `exec`, so children start with default signal handling.

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

use crate::error::{Result, SandboxError};

/// What to do after a signal was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep watching.
    Continue,
    /// Exit the process at once with this code.
    Exit(i32),
}

/// Calls `handler(signal, how many so far)` on a thread of its own for every SIGINT, SIGTERM
/// and SIGHUP from now on (the handlers are installed before this returns).
pub fn watch(mut handler: impl FnMut(Signal, u32) -> Action + Send + 'static) -> Result<()> {
    let io = |e| SandboxError::io("installing signal handlers", e);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(io)?;
    let (mut int, mut term, mut hup) = {
        let _guard = rt.enter();
        (
            signal(SignalKind::interrupt()).map_err(io)?,
            signal(SignalKind::terminate()).map_err(io)?,
            signal(SignalKind::hangup()).map_err(io)?,
        )
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut seen = 0;
                loop {
                    let sig = tokio::select! {
                        Some(()) = int.recv() => Signal::SIGINT,
                        Some(()) = term.recv() => Signal::SIGTERM,
                        Some(()) = hup.recv() => Signal::SIGHUP,
                        else => break,
                    };
                    seen += 1;
                    if let Action::Exit(code) = handler(sig, seen) {
                        // The handler asked to end the process at once (a second Ctrl-C).
                        #[allow(clippy::exit)]
                        std::process::exit(code);
                    }
                }
            });
        })
        .map_err(|e| SandboxError::io("starting the signal thread", e))?;
    Ok(())
}

/// The blocked-signal mask (`SigBlk` of `/proc/<pid>/status`), if the process exists.
pub fn blocked_mask(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_sigblk(&text)
}

/// `SigBlk` of `/proc/<pid>/status` text.
pub fn parse_sigblk(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn handled_signals_leave_children_unblocked() {
        let count = Arc::new(AtomicU32::new(0));
        let c = count.clone();
        watch(move |sig, n| {
            assert_eq!(sig, Signal::SIGHUP);
            c.store(n, Ordering::SeqCst);
            Action::Continue
        })
        .unwrap();
        nix::sys::signal::raise(Signal::SIGHUP).unwrap();
        assert!(crate::wait::poll::<()>(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || Ok(count.load(Ordering::SeqCst) == 1)
        ));
        // A child started now gets the default mask, so SIGTERM ends it at once.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(crate::wait::poll::<()>(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || Ok(blocked_mask(child.id()).is_some_and(|m| m == 0)
                && std::fs::read_to_string(format!("/proc/{}/comm", child.id()))
                    .is_ok_and(|c| c.trim() == "sleep"))
        ));
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
    }

    #[test]
    fn sigblk_is_parsed() {
        assert_eq!(
            parse_sigblk("Name:\tx\nSigBlk:\t0000000000004003\nSigIgn:\t0\n"),
            Some(0x4003)
        );
        assert_eq!(parse_sigblk("Name:\tx\n"), None);
    }
}
