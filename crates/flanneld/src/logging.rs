//! Logging setup: one readable line per event on stderr. klog-style `-v=N` sets the level
//! of flannel-rs' own crates (0: info, 1-3: debug, 4+: trace); `RUST_LOG` overrides it.
//! Colour only when stderr is a terminal and `NO_COLOR` is unset or empty (no-color.org), so
//! files, journald and `kubectl logs` get plain text.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber.
pub fn init(verbosity: u8) {
    // Verbosity applies to flannel-rs' own crates; libraries stay at info (their debug output
    // is HTTP/2 frames and netlink messages).
    let ours = [
        "flanneld",
        "flannel_kernel",
        "flannel_registry",
        "flannel_firewall",
    ];
    let level = match verbosity {
        0 => "info",
        1..=3 => "debug",
        _ => "trace",
    };
    let default = std::iter::once("info".to_owned())
        .chain(ours.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&default));
    let no_color = std::env::var_os("NO_COLOR");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(
            std::io::stderr().is_terminal(),
            no_color.as_deref(),
        ))
        .with_target(false)
        .init();
}

/// Whether log lines may carry ANSI colour: only on a terminal, and not when `NO_COLOR` is
/// set to anything but the empty string.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// An error with each of its causes once, joined with `: ` (what `{:#}` prints, minus the
/// repeats: our typed errors name their cause in their own message too).
pub fn error_text(e: &anyhow::Error) -> String {
    flannel_registry::error_text::chain(e.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("`ip route add 198.18.1.0/24`: {source}")]
    struct Op {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn an_error_names_each_cause_once() {
        let e = anyhow::Error::new(Op {
            source: std::io::Error::from_raw_os_error(22),
        })
        .context("programming the peers");
        let text = error_text(&e);
        assert_eq!(
            text,
            "programming the peers: `ip route add 198.18.1.0/24`: Invalid argument (os error 22)"
        );
        // What `{:#}` would have printed: the errno twice.
        assert_eq!(format!("{e:#}").matches("os error 22").count(), 2);
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(true, Some(OsStr::new("false"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }
}
