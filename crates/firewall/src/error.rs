//! [`FirewallError`]: what went wrong running a packet-filter tool, with the command line it
//! concerns.

use std::process::ExitStatus;
use std::time::Duration;

/// Failure of a firewall operation.
///
/// Every message names the command and already includes the underlying cause, so the cause is
/// not exposed again as `source()` (an `{:#}` chain would print it twice).
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The tool could not be started (e.g. not installed).
    #[error("cannot run {command}: {cause}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why spawning failed.
        cause: std::io::Error,
    },
    /// The tool exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error (plus the offending input line, when the tool names one).
        stderr: String,
    },
    /// The tool did not finish in time and was killed.
    #[error("{command} did not finish within {after:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The time limit.
        after: Duration,
    },
    /// The tool's version could not be determined.
    #[error("cannot parse a version (vX.Y.Z) from `{command}` output {output:?}")]
    Version {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// After applying, the live rules still differ from the wanted ones.
    #[error("{what} still differs after applying; wanted:\n{expected}\nfound:\n{observed}")]
    Verify {
        /// Which chain or table.
        what: String,
        /// The wanted listing.
        expected: String,
        /// The live listing.
        observed: String,
    },
}

impl FirewallError {
    /// True when the tool is not installed.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FirewallError::Spawn { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_error_names_the_command_and_its_cause_once() {
        let err = FirewallError::Spawn {
            command: "/nowhere/nft list tables".to_owned(),
            cause: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            err.to_string(),
            "cannot run /nowhere/nft list tables: entity not found"
        );
        assert!(std::error::Error::source(&err).is_none());
        // What the daemon prints (`{:#}` of an anyhow chain) says it once.
        let chained = format!("{:#}", anyhow::Error::new(err));
        assert_eq!(
            chained,
            "cannot run /nowhere/nft list tables: entity not found"
        );
    }
}
