//! The lab's error type: what failed, with enough context to act on it.

use std::path::PathBuf;
use std::time::Duration;

/// Anything that can go wrong while building, inspecting or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
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
    /// Something the lab waits for did not happen in time.
    #[error("{what} did not happen within {}", human(*.timeout))]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// A process the lab started exited while it should be running.
    #[error("{what} exited")]
    Exited {
        /// Which process.
        what: String,
    },
    /// A bad argument (name, count, range, path).
    #[error("{0}")]
    Invalid(String),
    /// An answer from a tool or a file the lab reads could not be understood.
    #[error("{what}: {detail}")]
    Unexpected {
        /// What was read.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The state file cannot be read or written.
    #[error("state file {}: {detail}", .path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No lab of that name exists (no state, no namespaces).
    #[error("there is no lab named {name:?} (see `flannelctl lab list`)")]
    NoSuchLab {
        /// The name.
        name: String,
    },
    /// A lab of that name is running or being built.
    #[error("lab {name:?} {detail}; remove it with `flannelctl lab down --name {name}` or pick another --name")]
    Exists {
        /// The name.
        name: String,
        /// Running, being built, …
        detail: String,
    },
    /// Another flannelctl holds the lab's lock.
    #[error("another flannelctl is working on lab {name:?} (lock {})", .path.display())]
    Busy {
        /// The name.
        name: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The running kernel lacks a module a backend needs, and `--kernel this` was asked for.
    #[error("this kernel has {detail}: run the lab with --kernel debian (or auto) to use Debian's kernel under qemu")]
    KernelLacks {
        /// `no ipip module (backend ipip)`, …
        detail: String,
    },
    /// The user interrupted (Ctrl-C, SIGTERM).
    #[error("interrupted")]
    Interrupted,
    /// One step of `up` failed; everything built so far was torn down (unless kept).
    #[error("step {step:?} failed: {source}{}", log_suffix(.log))]
    Step {
        /// The step, as shown in the progress line.
        step: String,
        /// Why.
        #[source]
        source: Box<LabError>,
        /// The relevant log: its path and its last lines.
        log: Option<(PathBuf, String)>,
    },
}

/// `250 ms`, `20 s`.
fn human(d: Duration) -> String {
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

fn log_suffix(log: &Option<(PathBuf, String)>) -> String {
    match log {
        Some((path, tail)) if !tail.trim().is_empty() => {
            let indented: Vec<String> = tail.lines().map(|l| format!("    {l}")).collect();
            format!(
                "\n  last lines of {}:\n{}",
                path.display(),
                indented.join("\n")
            )
        }
        Some((path, _)) => format!("\n  ({} is empty)", path.display()),
        None => String::new(),
    }
}

impl LabError {
    /// An [`LabError::Io`] with a description of the operation.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io {
            what: what.into(),
            source,
        }
    }

    /// An [`LabError::Unexpected`].
    pub fn unexpected(what: impl Into<String>, detail: impl Into<String>) -> LabError {
        LabError::Unexpected {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

impl From<flannel_sandbox::SandboxError> for LabError {
    fn from(e: flannel_sandbox::SandboxError) -> LabError {
        use flannel_sandbox::SandboxError as S;
        match e {
            S::Io { what, source } => LabError::Io { what, source },
            S::Command {
                command,
                status,
                detail,
            } => LabError::Command {
                command,
                status,
                detail,
            },
            S::CommandTimeout { command, timeout } => LabError::CommandTimeout { command, timeout },
            S::Timeout { what, timeout } => LabError::Timeout { what, timeout },
            S::Exited { what } => LabError::Exited { what },
            S::Invalid(text) => LabError::Invalid(text),
            S::Unexpected { what, detail } => LabError::Unexpected { what, detail },
            S::Interrupted => LabError::Interrupted,
        }
    }
}

/// Result alias for the lab.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_error_shows_the_log_tail() {
        let e = LabError::Step {
            step: "starting flanneld on h2".into(),
            source: Box::new(LabError::Exited {
                what: "flanneld on h2".into(),
            }),
            log: Some(("/x/h2/flanneld.log".into(), "a\nb".into())),
        };
        assert_eq!(
            e.to_string(),
            "step \"starting flanneld on h2\" failed: flanneld on h2 exited\n  \
             last lines of /x/h2/flanneld.log:\n    a\n    b"
        );
        let c = LabError::Command {
            command: "ip netns add x".into(),
            status: "exit status: 1".into(),
            detail: String::new(),
        };
        assert_eq!(c.to_string(), "`ip netns add x` failed (exit status: 1)");
    }
}
