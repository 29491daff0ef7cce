//! The iptables driver: chains `nat FLANNEL-POSTRTG` and `filter FLANNEL-FWD` with their jumps,
//! observed with `iptables -S` and rewritten with one `iptables-restore --noflush` per family
//! (the `ip6tables` tools for IPv6). Probes `iptables --version` for `--wait` and
//! `--random-fully`.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use super::api::{FirewallDriver, Mode, Outcome};
use super::common::{idx, Accepted};
use crate::error::FirewallError;
use crate::exec::Tools;
use crate::rules::{
    cleanup_lines, ensure_lines, iptables_chains, removal_lines, restore_payload, ChainRules,
    Family, FamilyRules, IptTable, ObservedChain, RuleSet, FORWARD_CHAIN, MASQ_CHAIN,
};

/// What a tool supports for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `--random-fully` (iptables ≥ 1.6.2) or nft `masquerade fully-random` (kernel check).
    pub random_fully: bool,
    /// `--wait` for `iptables` and `iptables-restore` (iptables ≥ 1.6.2); always false for nft.
    pub wait: bool,
}

/// Parse the first `vX.Y.Z` of `iptables --version` output (e.g. `iptables v1.8.9 (nf_tables)`).
pub fn parse_iptables_version(output: &str) -> Option<(u32, u32, u32)> {
    output.split_whitespace().find_map(|word| {
        let rest = word.strip_prefix('v')?;
        let mut parts = rest.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some((major, minor, patch.parse().ok()?))
    })
}

/// Capabilities implied by an iptables version: `--wait` for restore and `--random-fully` both
/// arrived in 1.6.2 (Flannel and go-iptables use the same threshold).
pub fn iptables_capabilities(version: (u32, u32, u32)) -> Capabilities {
    let modern = version >= (1, 6, 2);
    Capabilities {
        random_fully: modern,
        wait: modern,
    }
}

/// The kinds of flannel iptables chains: (table, parent, chain).
const IPTABLES_CHAINS: [(IptTable, &str, &str); 2] = [
    (IptTable::Nat, "POSTROUTING", MASQ_CHAIN),
    (IptTable::Filter, "FORWARD", FORWARD_CHAIN),
];

/// The iptables driver.
#[derive(Debug)]
pub struct Iptables {
    tools: Arc<Tools>,
    /// Capabilities per family (index = [`idx`]), probed on first use.
    caps: [OnceCell<Capabilities>; 2],
    accepted: Accepted,
}

impl Iptables {
    /// A driver running `tools`; nothing is probed yet.
    pub fn new(tools: Arc<Tools>) -> Self {
        Self {
            tools,
            caps: [OnceCell::new(), OnceCell::new()],
            accepted: Accepted::default(),
        }
    }

    /// Capabilities for `family` (runs `iptables --version` once).
    pub async fn capabilities(&self, family: Family) -> Result<Capabilities, FirewallError> {
        self.caps[idx(family)]
            .get_or_try_init(|| async {
                let bin = self.tools.binaries.iptables(family);
                let out = self.tools.run(bin, &["--version"], None).await?;
                let version =
                    parse_iptables_version(&out).ok_or_else(|| FirewallError::Version {
                        command: format!("{} --version", bin.display()),
                        output: out.clone(),
                    })?;
                let caps = iptables_capabilities(version);
                info!(
                    "{} ({family}): {}; --wait: {}, --random-fully: {}",
                    bin.display(),
                    out.trim(),
                    caps.wait,
                    caps.random_fully
                );
                Ok(caps)
            })
            .await
            .copied()
    }

    /// After applying `chain`, check the listing; a listing that differs only in how this
    /// iptables prints rules (same number of rules, one jump) is remembered as equivalent.
    async fn verify_chain(&self, family: Family, chain: &ChainRules) -> Result<(), FirewallError> {
        let observed = self
            .observe_chain(family, chain.table, chain.parent, chain.chain)
            .await?;
        let expected = chain.listing();
        let found = observed.listing();
        if found == expected {
            return Ok(());
        }
        if observed.chain_exists
            && observed.jumps.len() == 1
            && observed.rules.len() == chain.rules.len()
        {
            warn!(
                "{family} {}: this iptables prints the rules differently from flannel's rendering; \
                 accepting its form:\n{found}",
                chain.chain
            );
            self.accepted.accept(expected, found);
            return Ok(());
        }
        Err(FirewallError::Verify {
            what: format!("{family} {} {}", chain.table.as_str(), chain.chain),
            expected,
            observed: found,
        })
    }

    async fn observe_chain(
        &self,
        family: Family,
        table: IptTable,
        parent: &str,
        chain: &str,
    ) -> Result<ObservedChain, FirewallError> {
        let caps = self.capabilities(family).await?;
        let bin = self.tools.binaries.iptables(family);
        let list = |target: &str| {
            let mut args = Vec::new();
            if caps.wait {
                args.push("--wait");
            }
            args.extend(["-t", table.as_str(), "-S"]);
            args.push(target);
            args.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let parent_args = list(parent);
        let parent_out = self.tools.run(bin, &as_strs(&parent_args), None).await?;
        let chain_args = list(chain);
        // Listing a missing chain fails (iptables-nft even calls it "incompatible" when the
        // table does not exist): treat any failure as "missing"; applying will report real errors.
        let chain_out = match self.tools.run(bin, &as_strs(&chain_args), None).await {
            Ok(out) => Some(out),
            Err(FirewallError::Command { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(ObservedChain::parse(
            parent,
            chain,
            &parent_out,
            chain_out.as_deref(),
        ))
    }

    async fn restore(&self, family: Family, payload: &str) -> Result<(), FirewallError> {
        let caps = self.capabilities(family).await?;
        let bin = self.tools.binaries.restore(family);
        let mut args = vec!["--noflush"];
        if caps.wait {
            args.push("--wait");
        }
        debug!(
            "running {} {} with payload:\n{payload}",
            bin.display(),
            args.join(" ")
        );
        self.tools.run(bin, &args, Some(payload)).await.map(|_| ())
    }
}

#[async_trait]
impl FirewallDriver for Iptables {
    fn mode(&self) -> Mode {
        Mode::Iptables
    }

    async fn supports_random_fully(&self, family: Family) -> Result<bool, FirewallError> {
        Ok(self.capabilities(family).await?.random_fully)
    }

    /// Per chain, `iptables -S <parent>` and `iptables -S <chain>` are compared with the
    /// rendering; differing chains are rewritten with one `iptables-restore --noflush` per
    /// family, then verified.
    async fn setup(&self, desired: &RuleSet) -> Result<Outcome, FirewallError> {
        let mut outcome = Outcome::Unchanged;
        for (family, rules) in desired.families() {
            let chains = iptables_chains(family, rules);
            if chains.is_empty() {
                continue;
            }
            let mut blocks = Vec::new();
            let mut pending = Vec::new();
            for chain in &chains {
                let observed = self
                    .observe_chain(family, chain.table, chain.parent, chain.chain)
                    .await?;
                if self.accepted.matches(&chain.listing(), &observed.listing()) {
                    continue;
                }
                if observed.is_absent() {
                    info!("Setting up {} rules ({family})", chain.chain);
                } else {
                    info!("Some iptables rules are missing; deleting and recreating rules ({family} {})", chain.chain);
                    debug!(
                        "wanted:\n{}\nfound:\n{}",
                        chain.listing(),
                        observed.listing()
                    );
                }
                blocks.push((chain.table, ensure_lines(chain, &observed)));
                pending.push(chain);
            }
            if blocks.is_empty() {
                continue;
            }
            self.restore(family, &restore_payload(&blocks)).await?;
            outcome = Outcome::Changed;
            for chain in pending {
                self.verify_chain(family, chain).await?;
            }
        }
        Ok(outcome)
    }

    /// `-D` for each rule of `old` that is live and not wanted by `keep`; jumps stay (they do
    /// not depend on the network).
    async fn teardown(
        &self,
        family: Family,
        old: &[FamilyRules],
        keep: Option<&FamilyRules>,
    ) -> Result<Outcome, FirewallError> {
        let current_chains = keep.map(|r| iptables_chains(family, r)).unwrap_or_default();
        let mut blocks: Vec<(IptTable, Vec<String>)> = Vec::new();
        for (table, parent, chain_name) in IPTABLES_CHAINS {
            let olds: Vec<ChainRules> = old
                .iter()
                .flat_map(|r| iptables_chains(family, r))
                .filter(|c| c.chain == chain_name)
                .collect();
            if olds.is_empty() {
                continue;
            }
            let observed = self
                .observe_chain(family, table, parent, chain_name)
                .await?;
            let keep = current_chains.iter().find(|c| c.chain == chain_name);
            let mut lines: Vec<String> = Vec::new();
            for old in &olds {
                for line in removal_lines(old, keep, &observed) {
                    if !lines.contains(&line) {
                        lines.push(line);
                    }
                }
            }
            if !lines.is_empty() {
                info!(
                    "Removing {} stale {family} rule(s) from {chain_name}",
                    lines.len()
                );
                blocks.push((table, lines));
            }
        }
        if blocks.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        self.restore(family, &restore_payload(&blocks)).await?;
        Ok(Outcome::Changed)
    }

    /// Flush and delete `nat FLANNEL-POSTRTG` and **`filter`** `FLANNEL-FWD` with their jumps
    /// (Flannel looks for `FLANNEL-FWD` in `nat`, quirk 12, so it never removes it; we do).
    async fn remove_all(&self) -> Result<Outcome, FirewallError> {
        let mut outcome = Outcome::Unchanged;
        for family in Family::ALL {
            match self.capabilities(family).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    debug!("no iptables for {family}, nothing to clean up: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut blocks = Vec::new();
            for (table, parent, chain) in IPTABLES_CHAINS {
                let observed = self.observe_chain(family, table, parent, chain).await?;
                let lines = cleanup_lines(&observed);
                if !lines.is_empty() {
                    info!(
                        "Cleaning-up iptables chain {} {chain} ({family})",
                        table.as_str()
                    );
                    blocks.push((table, lines));
                }
            }
            if !blocks.is_empty() {
                self.restore(family, &restore_payload(&blocks)).await?;
                outcome = Outcome::Changed;
            }
        }
        Ok(outcome)
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(
            parse_iptables_version("iptables v1.8.9 (nf_tables)\n"),
            Some((1, 8, 9))
        );
        assert_eq!(
            parse_iptables_version("ip6tables-restore v1.6.1"),
            Some((1, 6, 1))
        );
        assert_eq!(parse_iptables_version("iptables 1.8"), None);
        assert_eq!(
            iptables_capabilities((1, 6, 1)),
            Capabilities {
                random_fully: false,
                wait: false
            }
        );
        assert_eq!(
            iptables_capabilities((1, 6, 2)),
            Capabilities {
                random_fully: true,
                wait: true
            }
        );
        assert!(iptables_capabilities((2, 0, 0)).random_fully);
    }
}
