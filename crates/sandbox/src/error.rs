//! The sandbox's error type: what failed, with enough context to act on it.

use std::time::Duration;

/// Anything that can go wrong while driving namespaces, commands and processes.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}){}", detail_suffix(.detail))]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// Its stderr (or stdout when stderr was empty), trimmed.
        detail: String,
    },
    /// A command did not finish in time and was killed.
    #[error("`{command}` did not finish within {} and was killed", human(*.timeout))]
    CommandTimeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// Something awaited did not happen in time.
    #[error("{what} did not happen within {}", human(*.timeout))]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// A process exited while it should be running.
    #[error("{what} exited")]
    Exited {
        /// Which process.
        what: String,
    },
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// An answer from a tool or a peer could not be understood.
    #[error("{what}: {detail}")]
    Unexpected {
        /// What was read.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// [`crate::wait::interrupt`] was called (Ctrl-C, SIGTERM).
    #[error("interrupted")]
    Interrupted,
}

/// `250 ms`, `20 s`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs())
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl SandboxError {
    /// An [`SandboxError::Io`] with a description of the operation.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> SandboxError {
        SandboxError::Io {
            what: what.into(),
            source,
        }
    }

    /// An [`SandboxError::Io`] from a `nix` error.
    pub fn errno(what: impl Into<String>, errno: nix::errno::Errno) -> SandboxError {
        SandboxError::io(what, std::io::Error::from(errno))
    }

    /// An [`SandboxError::Unexpected`].
    pub fn unexpected(what: impl Into<String>, detail: impl Into<String>) -> SandboxError {
        SandboxError::Unexpected {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// Result alias for the sandbox.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
