//! What every firewall driver is: the [`FirewallDriver`] trait, the [`Mode`] it implements
//! and the [`Outcome`] of an operation.

use std::fmt;

use async_trait::async_trait;

use crate::error::FirewallError;
use crate::rules::{Family, FamilyRules, RuleSet};

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
