//! The nftables driver: tables `ip flannel-ipv4` and `ip6 flannel-ipv6`, observed with
//! `nft list table` and replaced whole in one `nft -f -` transaction. Probes `masquerade
//! fully-random` with `nft -c` against a throw-away table.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use super::api::{FirewallDriver, Mode, Outcome};
use super::common::{idx, Accepted};
use crate::error::FirewallError;
use crate::exec::Tools;
use crate::rules::{
    nft_delete_script, nft_table_listing, nft_table_script, normalize_nft, parse_nft_tables,
    Family, FamilyRules, RuleSet,
};

/// The nftables driver.
#[derive(Debug)]
pub struct Nftables {
    tools: Arc<Tools>,
    /// `fully-random` support per family (index = [`idx`]), probed on first use.
    random_fully: [OnceCell<bool>; 2],
    accepted: Accepted,
}

impl Nftables {
    /// A driver running `tools`; nothing is probed yet.
    pub fn new(tools: Arc<Tools>) -> Self {
        Self {
            tools,
            random_fully: [OnceCell::new(), OnceCell::new()],
            accepted: Accepted::default(),
        }
    }

    /// `nft list table` normalised, or `None` when the table does not exist.
    async fn observe_table(&self, family: Family) -> Result<Option<String>, FirewallError> {
        let args = ["list", "table", family.nft_family(), family.nft_table()];
        match self.tools.run(&self.tools.binaries.nft, &args, None).await {
            Ok(out) => Ok(Some(normalize_nft(&out).join("\n"))),
            Err(FirewallError::Command { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn apply(&self, script: &str) -> Result<(), FirewallError> {
        debug!("running nft -f - with:\n{script}");
        self.tools
            .run(&self.tools.binaries.nft, &["-f", "-"], Some(script))
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl FirewallDriver for Nftables {
    fn mode(&self) -> Mode {
        Mode::Nftables
    }

    /// Checked once with `nft -c` against a throw-away table, which the kernel validates
    /// without committing.
    async fn supports_random_fully(&self, family: Family) -> Result<bool, FirewallError> {
        self.random_fully[idx(family)]
            .get_or_try_init(|| async {
                let f = family.nft_family();
                let local = match family {
                    Family::Ipv4 => "127.0.0.1",
                    Family::Ipv6 => "::1",
                };
                let script = format!(
                    "add table {f} flannel-probe\n\
                     add chain {f} flannel-probe masqueradeTest {{ type nat hook postrouting priority srcnat ; }}\n\
                     add rule {f} flannel-probe masqueradeTest {f} saddr != {local} masquerade fully-random\n"
                );
                let nft = &self.tools.binaries.nft;
                match self.tools.run(nft, &["-c", "-f", "-"], Some(&script)).await {
                    Ok(_) => Ok(true),
                    Err(e @ FirewallError::Command { .. }) => {
                        warn!("nftables: masquerade fully-random unsupported ({family}): {e}");
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .copied()
    }

    /// `nft list table` per family is compared (whitespace-normalised); differing tables are
    /// replaced in one transaction. Both flannel tables are always created, as Flannel does
    /// (empty for an inactive family).
    async fn setup(&self, desired: &RuleSet) -> Result<Outcome, FirewallError> {
        let mut script = String::new();
        let mut pending = Vec::new();
        for family in Family::ALL {
            let rules = desired.family(family);
            let expected = normalize_nft(&nft_table_listing(family, rules)).join("\n");
            let observed = self.observe_table(family).await?;
            if let Some(found) = &observed {
                if self.accepted.matches(&expected, found) {
                    continue;
                }
                info!(
                    "Some nftables rules are missing; recreating table {}",
                    family.nft_table()
                );
                debug!("wanted:\n{expected}\nfound:\n{found}");
            } else {
                info!(
                    "nftables: setting up table {} {}",
                    family.nft_family(),
                    family.nft_table()
                );
            }
            script.push_str(&nft_table_script(family, rules));
            pending.push((family, expected));
        }
        if script.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        self.apply(&script).await?;
        for (family, expected) in pending {
            let found = self.observe_table(family).await?.unwrap_or_default();
            if found == expected {
                continue;
            }
            if found.lines().count() == expected.lines().count() {
                warn!(
                    "nftables prints table {} differently from flannel's rendering; accepting its form:\n{found}",
                    family.nft_table()
                );
                self.accepted.accept(expected, found);
            } else {
                return Err(FirewallError::Verify {
                    what: format!("nft table {} {}", family.nft_family(), family.nft_table()),
                    expected,
                    observed: found,
                });
            }
        }
        Ok(Outcome::Changed)
    }

    /// Rules cannot be deleted by text: when any rule of `old` that `keep` does not want is
    /// live, the family's table is rebuilt from `keep` in one transaction.
    async fn teardown(
        &self,
        family: Family,
        old: &[FamilyRules],
        keep: Option<&FamilyRules>,
    ) -> Result<Outcome, FirewallError> {
        let Some(found) = self.observe_table(family).await? else {
            return Ok(Outcome::Unchanged);
        };
        let wanted = normalize_nft(&nft_table_listing(family, keep));
        let live: Vec<&str> = found.lines().collect();
        let stale = old
            .iter()
            .flat_map(|r| normalize_nft(&nft_table_listing(family, Some(r))))
            .any(|line| !wanted.contains(&line) && live.contains(&line.as_str()));
        if !stale {
            return Ok(Outcome::Unchanged);
        }
        info!(
            "Removing stale nftables rules: rebuilding table {}",
            family.nft_table()
        );
        self.apply(&nft_table_script(family, keep)).await?;
        Ok(Outcome::Changed)
    }

    /// Delete the tables `flannel-ipv4` / `flannel-ipv6` that exist.
    async fn remove_all(&self) -> Result<Outcome, FirewallError> {
        let nft = &self.tools.binaries.nft;
        let listing = match self.tools.run(nft, &["list", "tables"], None).await {
            Ok(out) => out,
            Err(e) if e.is_not_found() => {
                debug!("no nft binary, nothing to clean up: {e}");
                return Ok(Outcome::Unchanged);
            }
            Err(e) => return Err(e),
        };
        let present = parse_nft_tables(&listing);
        if present.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        let names: Vec<String> = present
            .iter()
            .map(|f| format!("{} {}", f.nft_family(), f.nft_table()))
            .collect();
        info!("Cleaning-up nftables tables {}", names.join(", "));
        self.apply(&nft_delete_script(&present)).await?;
        Ok(Outcome::Changed)
    }
}
