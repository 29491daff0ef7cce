//! Firewall drivers: one per packet-filter front end, behind [`FirewallDriver`].
//!
//! A driver owns everything mode-specific: how it observes the live rules, how it rewrites
//! them, how it removes what a previous network left, how it removes all of its own state
//! (when the other driver is selected) and which tool features it probes. [`select`] maps a
//! [`Mode`] to its driver; [`crate::Firewall`] holds the selected driver and the other one (for
//! its leftovers) and adds what every mode shares: the random-fully decision, one writer at a
//! time, and the resync loop.
//!
//! Adding a driver means one module here implementing [`FirewallDriver`], one [`Mode`]
//! variant and one line in [`select`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::FirewallError;
use crate::exec::Tools;
use crate::rules::{Family, FamilyRules, RuleSet};

pub mod iptables;
pub mod nftables;

/// Which packet-filter front end flannel manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `iptables`/`ip6tables` chains `FLANNEL-POSTRTG` (nat) and `FLANNEL-FWD` (filter).
    Iptables,
    /// nftables tables `ip flannel-ipv4` and `ip6 flannel-ipv6` (`EnableNFTables`).
    Nftables,
}

impl Mode {
    /// Every mode, in the order [`select`] knows them.
    pub const ALL: [Mode; 2] = [Mode::Iptables, Mode::Nftables];

    /// The mode net-conf.json asks for: `"EnableNFTables": true` selects nftables.
    pub fn from_enable_nftables(enable_nftables: bool) -> Mode {
        if enable_nftables {
            Mode::Nftables
        } else {
            Mode::Iptables
        }
    }

    /// The name as logs and docs spell it (`iptables`, `nftables`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Nftables => "nftables",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was already as wanted; nothing was written.
    Unchanged,
    /// Rules were written (created, repaired or removed).
    Changed,
}

impl Outcome {
    /// `Changed` when either is.
    pub fn or(self, other: Outcome) -> Outcome {
        if self == Outcome::Changed || other == Outcome::Changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        }
    }
}

/// One packet-filter front end (the shape of netavark's `FirewallDriver`): set up the rules of
/// the current network, tear down those of a previous one, remove everything it owns.
///
/// Callers serialise writes ([`crate::Firewall`] holds a lock around every call but
/// [`FirewallDriver::supports_random_fully`]).
#[async_trait]
pub trait FirewallDriver: Send + Sync + fmt::Debug {
    /// The mode this driver implements.
    fn mode(&self) -> Mode;

    /// Whether masquerading with port randomisation (`--random-fully` / `fully-random`) works
    /// for `family`; probed once, then cached.
    async fn supports_random_fully(&self, family: Family) -> Result<bool, FirewallError>;

    /// Make the live rules equal to `desired` (random-fully already decided); re-applies
    /// atomically, and only when something is missing, extra or out of order.
    async fn setup(&self, desired: &RuleSet) -> Result<Outcome, FirewallError>;

    /// Remove the live rules of `old` (each variant a previous network's rules for `family`)
    /// that `keep` (the current rules of `family`, if any) does not also want.
    async fn teardown(
        &self,
        family: Family,
        old: &[FamilyRules],
        keep: Option<&FamilyRules>,
    ) -> Result<Outcome, FirewallError>;

    /// Remove everything of this mode that flannel may have created (used when the other mode
    /// is selected). A missing tool means nothing can be there to remove.
    async fn remove_all(&self) -> Result<Outcome, FirewallError>;
}

/// The driver for `mode`, running the tools of `tools`.
pub fn select(mode: Mode, tools: Arc<Tools>) -> Box<dyn FirewallDriver> {
    match mode {
        Mode::Iptables => Box::new(iptables::Iptables::new(tools)),
        Mode::Nftables => Box::new(nftables::Nftables::new(tools)),
    }
}

/// Listings seen right after a successful apply that differ from our rendering only because
/// the installed tool prints rules differently: expected listing -> accepted listing.
#[derive(Debug, Default)]
struct Accepted(std::sync::Mutex<HashMap<String, String>>);

impl Accepted {
    /// True when `found` is `expected` or the form this tool was seen to print it in.
    fn matches(&self, expected: &str, found: &str) -> bool {
        if expected == found {
            return true;
        }
        let accepted = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.get(expected).is_some_and(|a| a == found)
    }

    /// Remember `found` as this tool's way of printing `expected`.
    fn accept(&self, expected: String, found: String) {
        let mut accepted = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.insert(expected, found);
    }
}

fn idx(family: Family) -> usize {
    match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
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

    #[test]
    fn accepted_forms_are_remembered() {
        let a = Accepted::default();
        assert!(a.matches("x", "x"));
        assert!(!a.matches("x", "y"));
        a.accept("x".into(), "y".into());
        assert!(a.matches("x", "y"));
        assert!(!a.matches("x", "z"));
    }
}
