//! Logging setup: one readable line per event on stderr. klog-style `-v=N` sets the level
//! (0: info, 1-3: debug, 4+: trace); `RUST_LOG` overrides it.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "info",
        1..=3 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
