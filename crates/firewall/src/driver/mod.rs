//! Firewall drivers: one per packet-filter front end, behind [`FirewallDriver`].
//!
//! A driver owns everything mode-specific: how it observes the live rules, how it rewrites
//! them, how it removes what a previous network left, how it removes all of its own state
//! (when the other driver is selected) and which tool features it probes. [`select`] maps a
//! [`Mode`] to its driver; [`crate::Firewall`] holds the selected driver and the other one (for
//! its leftovers) and adds what every mode shares: the random-fully decision, one writer at a
//! time, and the resync loop.
//!
//! Files: `api.rs` (the trait, [`Mode`], [`Outcome`]), one file per driver, `common.rs` (what the
//! drivers share); this file only maps a mode to its driver.
//!
//! Adding a driver means one module here implementing [`FirewallDriver`], one [`Mode`]
//! variant and one line in [`select`].

use std::sync::Arc;

use crate::exec::Tools;

mod api;
mod common;
pub mod iptables;
pub mod nftables;

pub use api::{FirewallDriver, Mode, Outcome};

/// The driver for `mode`, running the tools of `tools`.
pub fn select(mode: Mode, tools: Arc<Tools>) -> Box<dyn FirewallDriver> {
    match mode {
        Mode::Iptables => Box::new(iptables::Iptables::new(tools)),
        Mode::Nftables => Box::new(nftables::Nftables::new(tools)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn select_maps_every_mode_to_its_driver() {
        let tools = Arc::new(Tools {
            binaries: crate::Binaries::default(),
            timeout: Duration::from_secs(1),
        });
        for mode in Mode::ALL {
            assert_eq!(select(mode, tools.clone()).mode(), mode);
        }
        assert_eq!(Mode::from_enable_nftables(true), Mode::Nftables);
        assert_eq!(Mode::from_enable_nftables(false), Mode::Iptables);
        assert_eq!(Mode::Iptables.to_string(), "iptables");
        assert_eq!(Mode::Nftables.to_string(), "nftables");
    }
}
