//! The harness's typed error.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong preparing the kernel or running the guest.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `qemu-system-x86_64` is not installed (or not at the configured path).
    #[error(
        "{} not found: install Debian's qemu-system-x86 (`scripts/install-deps.sh vm`)",
        qemu.display()
    )]
    QemuMissing {
        /// The binary that was looked for.
        qemu: PathBuf,
    },
    /// A host tool the harness needs is missing.
    #[error("{tool} not found: install Debian's {package} (`scripts/install-deps.sh vm`)")]
    ToolMissing {
        /// The binary looked for.
        tool: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// A host command (apt, dpkg-deb, depmod, cpio) failed.
    #[error("{what}: `{command}` failed ({status}): {stderr}")]
    Command {
        /// What the harness was doing.
        what: &'static str,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A command's output or a file did not look as expected.
    #[error("{what}: {detail}")]
    Unexpected {
        /// What the harness was reading.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The run request cannot be expressed (non-UTF-8 argument, bad variable name...).
    #[error("invalid run request: {0}")]
    InvalidRequest(String),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// qemu exited before the guest ran the command.
    #[error("the guest did not start: qemu exited ({status}) before the command ran\n--- qemu stderr ---\n{qemu_stderr}\n--- console (last lines) ---\n{console}")]
    GuestDidNotStart {
        /// qemu's exit status.
        status: String,
        /// What qemu printed on stderr.
        qemu_stderr: String,
        /// The end of the guest's serial console.
        console: String,
    },
    /// The guest ran the command but stopped without reporting its exit status.
    #[error("the guest stopped without reporting the command's exit status (qemu: {status})\n--- console (last lines) ---\n{console}")]
    NoStatus {
        /// qemu's exit status.
        status: String,
        /// The end of the guest's serial console.
        console: String,
    },
    /// [`crate::run::interrupt`] was called; qemu was killed.
    #[error("interrupted; qemu was killed")]
    Interrupted,
    /// The guest did not finish within the timeout; qemu was killed.
    #[error("the guest did not finish within {after:?} ({}); qemu was killed\n--- console (last lines) ---\n{console}",
        if *started { "the command was running" } else { "it had not started the command yet" })]
    Timeout {
        /// The timeout.
        after: Duration,
        /// Whether the command had started in the guest.
        started: bool,
        /// The end of the guest's serial console.
        console: String,
    },
}

impl VmError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
        let context = context.into();
        move |source| VmError::Io { context, source }
    }
}
