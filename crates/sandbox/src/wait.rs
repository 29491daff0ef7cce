//! Bounded waits, and the process-wide interrupt flag every interruptible wait checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Result, SandboxError};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks every running [`wait_for`] to stop with [`SandboxError::Interrupted`] (called from a
/// signal-handling thread, see [`crate::signals`]).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once [`interrupt`] was called.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(SandboxError::Interrupted)
    } else {
        Ok(())
    }
}

/// Calls `check` every `interval` until it returns `Ok(true)`; an error from `check` ends the
/// wait at once. Fails after `timeout` ([`SandboxError::Timeout`] naming `what`) or on
/// [`interrupt`].
pub fn wait_for<E: From<SandboxError>>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<bool, E>,
) -> Result<(), E> {
    let deadline = Instant::now() + timeout;
    loop {
        check_interrupt()?;
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Timeout {
                what: what.to_owned(),
                timeout,
            }
            .into());
        }
        std::thread::sleep(interval);
    }
}

/// Polls `done` every `interval` for up to `timeout` (not interruptible: for teardown and
/// tests); whether it became true. Errors from `done` count as "not yet".
pub fn poll<E>(
    timeout: Duration,
    interval: Duration,
    mut done: impl FnMut() -> Result<bool, E>,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(done(), Ok(true)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn waits_end() {
        let mut n = 0;
        wait_for::<SandboxError>(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                Ok(n >= 3)
            },
        )
        .unwrap();
        let e = wait_for::<SandboxError>(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(10),
            || Ok(false),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "never did not happen within 50 ms");
        assert!(poll::<()>(Duration::from_secs(1), Duration::ZERO, || Ok(
            true
        )));
        assert!(!poll(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || { Err::<bool, ()>(()) }
        ));
    }
}
