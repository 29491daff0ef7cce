//! Applying flannel's rules through the selected [`crate::driver`]: decides `random_fully`
//! from configuration and tool support, lets one writer at a time touch the tables, removes
//! the other mode's leftovers, and runs the periodic resync loop.
//!
//! Rules are never removed when the daemon exits: a restart must not disturb traffic.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, error};

use crate::driver::{self, FirewallDriver, Mode, Outcome};
use crate::error::FirewallError;
use crate::exec::{Binaries, Tools};
use crate::rules::{FamilyRules, RuleSet};

/// Settings of a [`Firewall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// iptables or nftables.
    pub mode: Mode,
    /// `--ip-masq-fully-random-disable`: never render `--random-fully` / `fully-random`.
    pub random_fully_disabled: bool,
    /// Tools to run.
    pub binaries: Binaries,
    /// Upper bound for one tool invocation (the tool is killed after it).
    pub command_timeout: Duration,
}

impl FirewallConfig {
    /// Defaults for `mode`: random-fully allowed, tools from `PATH`, 60 s per command.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            random_fully_disabled: false,
            binaries: Binaries::default(),
            command_timeout: Duration::from_secs(60),
        }
    }
}

/// Manages flannel's rules in one [`Mode`]. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Firewall {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: FirewallConfig,
    /// The driver of `config.mode`.
    driver: Box<dyn FirewallDriver>,
    /// The driver of the other mode, only for removing its leftovers.
    other: Box<dyn FirewallDriver>,
    /// Serialises write operations (two overlapping ensures could undo each other).
    write_lock: tokio::sync::Mutex<()>,
}

impl Firewall {
    /// A firewall manager; tools are probed lazily, on first use per family.
    pub fn new(config: FirewallConfig) -> Self {
        let tools = Arc::new(Tools {
            binaries: config.binaries.clone(),
            timeout: config.command_timeout,
        });
        let other = Mode::ALL
            .into_iter()
            .find(|m| *m != config.mode)
            .unwrap_or(config.mode);
        Self {
            inner: Arc::new(Inner {
                driver: driver::select(config.mode, tools.clone()),
                other: driver::select(other, tools),
                config,
                write_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FirewallConfig {
        &self.inner.config
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.inner.config.mode
    }

    /// Whether the selected driver can masquerade with port randomisation for `family`
    /// (`iptables --version` ≥ 1.6.2, or an `nft -c` probe), probed once.
    pub async fn supports_random_fully(
        &self,
        family: crate::Family,
    ) -> Result<bool, FirewallError> {
        self.inner.driver.supports_random_fully(family).await
    }

    /// `desired` with `random_fully` cleared where it is disabled by configuration or
    /// unsupported by the tools (probing only families that ask for it).
    pub async fn effective(&self, desired: &RuleSet) -> Result<RuleSet, FirewallError> {
        let mut allowed = Vec::new();
        for (family, rules) in desired.families() {
            let wants = rules.masq.as_ref().is_some_and(|m| m.random_fully);
            if !wants || self.inner.config.random_fully_disabled {
                continue;
            }
            if self.supports_random_fully(family).await? {
                allowed.push(family);
            }
        }
        Ok(desired.restrict_random_fully(|f| allowed.contains(&f)))
    }

    /// Make the live rules equal to `desired` (after [`Firewall::effective`]); re-applies
    /// atomically, and only when something is missing, extra or out of order (see the
    /// drivers' [`FirewallDriver::setup`]).
    pub async fn ensure(&self, desired: &RuleSet) -> Result<Outcome, FirewallError> {
        let desired = self.effective(desired).await?;
        let _guard = self.inner.write_lock.lock().await;
        self.inner.driver.setup(&desired).await
    }

    /// Remove the rules of `old` (a previous network or subnet) that `current` does not also
    /// want. Safe to call before or after [`Firewall::ensure`]`(current)`. Both
    /// `--random-fully` variants of `old` are considered, so a change of that setting between
    /// runs is handled too.
    pub async fn remove_previous(
        &self,
        old: &RuleSet,
        current: &RuleSet,
    ) -> Result<Outcome, FirewallError> {
        let current = self.effective(current).await?;
        let _guard = self.inner.write_lock.lock().await;
        let mut outcome = Outcome::Unchanged;
        for (family, old_rules) in old.families() {
            let variants = random_fully_variants(old_rules);
            let changed = self
                .inner
                .driver
                .teardown(family, &variants, current.family(family))
                .await?;
            outcome = outcome.or(changed);
        }
        Ok(outcome)
    }

    /// Remove what the *other* mode left behind (its driver's
    /// [`FirewallDriver::remove_all`]): in iptables mode the nft tables, in nftables mode the
    /// iptables chains with their jumps.
    pub async fn cleanup_other_mode(&self) -> Result<Outcome, FirewallError> {
        let _guard = self.inner.write_lock.lock().await;
        self.inner.other.remove_all().await
    }

    /// Re-check `desired` every `period` (at least 1 s) until `shutdown` turns true or its
    /// sender is dropped; errors are logged and retried next period. Nothing is removed on
    /// exit. Call [`Firewall::ensure`] once before, to report setup errors.
    pub async fn resync_loop(
        self,
        desired: RuleSet,
        period: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let period = period.max(Duration::from_secs(1));
        if *shutdown.borrow_and_update() {
            return;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {
                    if let Err(e) = self.ensure(&desired).await {
                        error!("Failed to ensure {} rules: {e}", self.mode());
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow_and_update() {
                        debug!("firewall resync loop stopping");
                        return;
                    }
                }
            }
        }
    }
}

/// Both `random_fully` variants of a family's rules (the old rules may have been written with
/// either setting).
fn random_fully_variants(rules: &FamilyRules) -> Vec<FamilyRules> {
    let mut out = vec![rules.clone()];
    if let Some(m) = &rules.masq {
        let mut other = rules.clone();
        if let Some(om) = other.masq.as_mut() {
            om.random_fully = !m.random_fully;
        }
        out.push(other);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn random_fully_variants_cover_both() {
        let rules = FamilyRules {
            masq: Some(
                crate::rules::MasqParams::new(
                    "198.18.0.0/16".parse().unwrap(),
                    "198.18.5.0/24".parse().unwrap(),
                    true,
                )
                .unwrap(),
            ),
            forward: None,
        };
        let v = random_fully_variants(&rules);
        assert_eq!(v.len(), 2);
        assert!(v[0].masq.as_ref().unwrap().random_fully);
        assert!(!v[1].masq.as_ref().unwrap().random_fully);
        assert_eq!(random_fully_variants(&FamilyRules::default()).len(), 1);
    }

    #[test]
    fn the_other_driver_cleans_up() {
        for mode in Mode::ALL {
            let fw = Firewall::new(FirewallConfig::new(mode));
            assert_eq!(fw.inner.driver.mode(), mode);
            assert_ne!(fw.inner.other.mode(), mode);
        }
    }
}
