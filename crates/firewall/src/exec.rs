//! Running the packet-filter tools: which binaries, a time limit per invocation, and error
//! text that names the command and the input line a tool rejected.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::error::FirewallError;
use crate::rules::Family;

/// Paths or names (looked up in `PATH`) of the tools used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// `iptables`.
    pub iptables: PathBuf,
    /// `iptables-restore`.
    pub iptables_restore: PathBuf,
    /// `ip6tables`.
    pub ip6tables: PathBuf,
    /// `ip6tables-restore`.
    pub ip6tables_restore: PathBuf,
    /// `nft`.
    pub nft: PathBuf,
}

impl Default for Binaries {
    fn default() -> Self {
        Self {
            iptables: "iptables".into(),
            iptables_restore: "iptables-restore".into(),
            ip6tables: "ip6tables".into(),
            ip6tables_restore: "ip6tables-restore".into(),
            nft: "nft".into(),
        }
    }
}

impl Binaries {
    /// `iptables` or `ip6tables`.
    pub fn iptables(&self, family: Family) -> &Path {
        match family {
            Family::Ipv4 => &self.iptables,
            Family::Ipv6 => &self.ip6tables,
        }
    }

    /// `iptables-restore` or `ip6tables-restore`.
    pub fn restore(&self, family: Family) -> &Path {
        match family {
            Family::Ipv4 => &self.iptables_restore,
            Family::Ipv6 => &self.ip6tables_restore,
        }
    }
}

/// The tools and how long one invocation may take; shared by the drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// Tools to run.
    pub binaries: Binaries,
    /// Upper bound for one invocation (the tool is killed after it).
    pub timeout: Duration,
}

impl Tools {
    /// Run `program args` (stdin from `input`), returning stdout; non-zero exit is an error.
    pub async fn run(
        &self,
        program: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, FirewallError> {
        let command = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        let spawn_err = |cause| FirewallError::Spawn {
            command: command.clone(),
            cause,
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let timeout = self.timeout;
        let work = async {
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                stdin.write_all(text.as_bytes()).await?;
                stdin.shutdown().await?;
            }
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result.map_err(spawn_err)?,
            Err(_) => {
                return Err(FirewallError::Timeout {
                    command,
                    after: timeout,
                })
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(FirewallError::Command {
                stderr: with_failed_line(&stderr, input),
                command,
                status: output.status,
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// When `stderr` says `line N failed` (iptables-restore) or `/dev/stdin:N:` (nft), append that
/// input line so the error is self-explaining.
fn with_failed_line(stderr: &str, input: Option<&str>) -> String {
    let Some(input) = input else {
        return stderr.to_owned();
    };
    // iptables-restore: "line 2 failed" / "Error occurred at line: 2"; nft: "/dev/stdin:2:".
    let after = |marker: &str| -> Option<usize> {
        stderr.match_indices(marker).find_map(|(at, m)| {
            let rest = stderr[at + m.len()..].trim_start_matches([':', ' ']);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    };
    let number = after("line").or_else(|| after("/dev/stdin:"));
    match number.and_then(|n| input.lines().nth(n.checked_sub(1)?)) {
        Some(line) if !stderr.contains(line) => format!("{stderr} [input line: {line}]"),
        _ => stderr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_line_is_quoted() {
        let input = "*nat\n-D POSTROUTING -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            with_failed_line("iptables-restore: line 2 failed: Bad rule", Some(input)),
            "iptables-restore: line 2 failed: Bad rule [input line: -D POSTROUTING -j ACCEPT]"
        );
        assert_eq!(
            with_failed_line("/dev/stdin:1:1-3: Error: x", Some("bad\n")),
            "/dev/stdin:1:1-3: Error: x [input line: bad]"
        );
        assert_eq!(
            with_failed_line("Bad argument `x'\nError occurred at line: 3", Some(input)),
            "Bad argument `x'\nError occurred at line: 3 [input line: COMMIT]"
        );
        assert_eq!(with_failed_line("oops", Some(input)), "oops");
        assert_eq!(with_failed_line("line 2 failed", None), "line 2 failed");
    }
}
