//! Logging setup: one readable line per event on stderr. klog-style `-v=N` sets the level
//! of flannel-rs' own crates (0: info, 1-3: debug, 4+: trace); `RUST_LOG` overrides it.

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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
