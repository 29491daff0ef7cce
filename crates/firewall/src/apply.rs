//! Applying flannel's rules: runs `iptables`/`iptables-restore` (and the `ip6` variants) or
//! `nft`, compares what is live with what [`crate::rules`] renders, and re-applies atomically
//! only on a difference. Owns capability probing (`--wait`, `--random-fully`, nft
//! `fully-random`), cleanup of the other mode, and the periodic resync loop.
//!
//! Rules are never removed when the daemon exits: a restart must not disturb traffic.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, OnceCell};
use tracing::{debug, error, info, warn};

use crate::rules::{
    cleanup_lines, ensure_lines, iptables_chains, nft_delete_script, nft_table_listing,
    nft_table_script, normalize_nft, parse_nft_tables, removal_lines, restore_payload, ChainRules,
    Family, FamilyRules, IptTable, ObservedChain, RuleSet, FORWARD_CHAIN, MASQ_CHAIN,
};

/// Which packet-filter front end flannel manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `iptables`/`ip6tables` chains `FLANNEL-POSTRTG` (nat) and `FLANNEL-FWD` (filter).
    Iptables,
    /// nftables tables `ip flannel-ipv4` and `ip6 flannel-ipv6` (`EnableNFTables`).
    Nftables,
}

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
    fn iptables(&self, family: Family) -> &PathBuf {
        match family {
            Family::Ipv4 => &self.iptables,
            Family::Ipv6 => &self.ip6tables,
        }
    }

    fn restore(&self, family: Family) -> &PathBuf {
        match family {
            Family::Ipv4 => &self.iptables_restore,
            Family::Ipv6 => &self.ip6tables_restore,
        }
    }
}

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

/// What a tool supports for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `--random-fully` (iptables ≥ 1.6.2) or nft `masquerade fully-random` (kernel check).
    pub random_fully: bool,
    /// `--wait` for `iptables` and `iptables-restore` (iptables ≥ 1.6.2); always false for nft.
    pub wait: bool,
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
    fn or(self, other: Outcome) -> Outcome {
        if self == Outcome::Changed || other == Outcome::Changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        }
    }
}

/// Failure of a firewall operation.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The tool could not be started (e.g. not installed).
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why spawning failed.
        #[source]
        source: std::io::Error,
    },
    /// The tool exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error (plus the offending input line, when the tool names one).
        stderr: String,
    },
    /// The tool did not finish in time and was killed.
    #[error("{command} did not finish within {after:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The time limit.
        after: Duration,
    },
    /// The tool's version could not be determined.
    #[error("cannot parse a version (vX.Y.Z) from `{command}` output {output:?}")]
    Version {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// After applying, the live rules still differ from the wanted ones.
    #[error("{what} still differs after applying; wanted:\n{expected}\nfound:\n{observed}")]
    Verify {
        /// Which chain or table.
        what: String,
        /// The wanted listing.
        expected: String,
        /// The live listing.
        observed: String,
    },
}

impl FirewallError {
    /// True when the tool is not installed.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FirewallError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
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

/// Manages flannel's rules in one [`Mode`]. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Firewall {
    inner: Arc<Inner>,
}

struct Inner {
    config: FirewallConfig,
    /// iptables capabilities per family (index = family as usize), probed on first use.
    iptables_caps: [OnceCell<Capabilities>; 2],
    /// nft fully-random support per family, probed on first use.
    nft_random_fully: [OnceCell<bool>; 2],
    /// Listings seen right after a successful apply that differ from our rendering only because
    /// the installed tool prints rules differently: expected listing -> accepted listing.
    accepted: std::sync::Mutex<HashMap<String, String>>,
    /// Serialises write operations (two overlapping ensures could undo each other).
    write_lock: tokio::sync::Mutex<()>,
}

fn idx(family: Family) -> usize {
    match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

/// The kinds of flannel iptables chains: (table, parent, chain).
const IPTABLES_CHAINS: [(IptTable, &str, &str); 2] = [
    (IptTable::Nat, "POSTROUTING", MASQ_CHAIN),
    (IptTable::Filter, "FORWARD", FORWARD_CHAIN),
];

impl Firewall {
    /// A firewall manager; tools are probed lazily, on first use per family.
    pub fn new(config: FirewallConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                iptables_caps: [OnceCell::new(), OnceCell::new()],
                nft_random_fully: [OnceCell::new(), OnceCell::new()],
                accepted: std::sync::Mutex::new(HashMap::new()),
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

    /// iptables capabilities for `family` (runs `iptables --version` once).
    pub async fn iptables_capabilities(
        &self,
        family: Family,
    ) -> Result<Capabilities, FirewallError> {
        self.inner.iptables_caps[idx(family)]
            .get_or_try_init(|| async {
                let bin = self.inner.config.binaries.iptables(family).clone();
                let out = self.run(&bin, &["--version"], None).await?;
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

    /// Whether nft accepts `masquerade fully-random` for `family` (checked once with `nft -c`
    /// against a throw-away table, which the kernel validates without committing).
    pub async fn nft_supports_random_fully(&self, family: Family) -> Result<bool, FirewallError> {
        self.inner.nft_random_fully[idx(family)]
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
                let nft = self.inner.config.binaries.nft.clone();
                match self.run(&nft, &["-c", "-f", "-"], Some(&script)).await {
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

    /// `desired` with `random_fully` cleared where it is disabled by configuration or
    /// unsupported by the tools (probing only families that ask for it).
    pub async fn effective(&self, desired: &RuleSet) -> Result<RuleSet, FirewallError> {
        let mut allowed = [false; 2];
        for (family, rules) in desired.families() {
            let wants = rules.masq.as_ref().is_some_and(|m| m.random_fully);
            if !wants || self.inner.config.random_fully_disabled {
                continue;
            }
            allowed[idx(family)] = match self.mode() {
                Mode::Iptables => self.iptables_capabilities(family).await?.random_fully,
                Mode::Nftables => self.nft_supports_random_fully(family).await?,
            };
        }
        Ok(desired.restrict_random_fully(|f| allowed[idx(f)]))
    }

    /// Make the live rules equal to `desired` (after [`Firewall::effective`]); re-applies
    /// atomically, and only when something is missing, extra or out of order.
    ///
    /// iptables: per chain, `iptables -S <parent>` and `iptables -S <chain>` are compared with
    /// the rendering; differing chains are rewritten with one `iptables-restore --noflush` per
    /// family. nftables: `nft list table` per family is compared (whitespace-normalised);
    /// differing tables are replaced in one `nft -f -` transaction. Both flannel nft tables are
    /// always created, as Flannel does (empty for an inactive family).
    pub async fn ensure(&self, desired: &RuleSet) -> Result<Outcome, FirewallError> {
        let desired = self.effective(desired).await?;
        let _guard = self.inner.write_lock.lock().await;
        match self.mode() {
            Mode::Iptables => self.ensure_iptables(&desired).await,
            Mode::Nftables => self.ensure_nft(&desired).await,
        }
    }

    /// Remove the rules of `old` (a previous network or subnet) that `current` does not also
    /// want. Safe to call before or after [`Firewall::ensure`]`(current)`.
    ///
    /// iptables: `-D` for each such rule that is live (jumps stay: they do not depend on the
    /// network). Both `--random-fully` variants of `old` are considered, so a change of that
    /// setting between runs is handled too. nftables: rules cannot be deleted by text, so when
    /// any such rule is live the family's table is rebuilt from `current` in one transaction.
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
            let current_rules = current.family(family);
            let changed = match self.mode() {
                Mode::Iptables => {
                    self.remove_previous_iptables(family, &variants, current_rules)
                        .await?
                }
                Mode::Nftables => {
                    self.remove_previous_nft(family, &variants, current_rules)
                        .await?
                }
            };
            outcome = outcome.or(changed);
        }
        Ok(outcome)
    }

    /// Remove what the *other* mode left behind: in iptables mode, delete the nft tables
    /// `flannel-ipv4`/`flannel-ipv6`; in nftables mode, delete the iptables chains
    /// `nat FLANNEL-POSTRTG` and **`filter`** `FLANNEL-FWD` with their jumps (Flannel looks for
    /// `FLANNEL-FWD` in `nat`, quirk 12, so it never removes it; we do). A missing tool means
    /// nothing can be there to remove.
    pub async fn cleanup_other_mode(&self) -> Result<Outcome, FirewallError> {
        let _guard = self.inner.write_lock.lock().await;
        match self.mode() {
            Mode::Iptables => self.cleanup_nft().await,
            Mode::Nftables => self.cleanup_iptables().await,
        }
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
                        error!("Failed to ensure {} rules: {e}", self.mode_name());
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

    fn mode_name(&self) -> &'static str {
        match self.mode() {
            Mode::Iptables => "iptables",
            Mode::Nftables => "nftables",
        }
    }

    // ----------------------------------------------------------------------------------------
    // iptables
    // ----------------------------------------------------------------------------------------

    async fn ensure_iptables(&self, desired: &RuleSet) -> Result<Outcome, FirewallError> {
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
                if self.is_accepted(&chain.listing(), &observed.listing()) {
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
            self.accept(expected, found);
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
        let caps = self.iptables_capabilities(family).await?;
        let bin = self.inner.config.binaries.iptables(family).clone();
        let list = |target: &str| {
            let mut args = Vec::new();
            if caps.wait {
                args.push("--wait".to_owned());
            }
            args.extend([
                "-t".to_owned(),
                table.as_str().to_owned(),
                "-S".to_owned(),
                target.to_owned(),
            ]);
            args
        };
        let parent_args = list(parent);
        let parent_out = self.run(&bin, &as_strs(&parent_args), None).await?;
        let chain_args = list(chain);
        // Listing a missing chain fails (iptables-nft even calls it "incompatible" when the
        // table does not exist): treat any failure as "missing"; applying will report real errors.
        let chain_out = match self.run(&bin, &as_strs(&chain_args), None).await {
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
        let caps = self.iptables_capabilities(family).await?;
        let bin = self.inner.config.binaries.restore(family).clone();
        let mut args = vec!["--noflush"];
        if caps.wait {
            args.push("--wait");
        }
        debug!(
            "running {} {args:?} with payload:\n{payload}",
            bin.display()
        );
        self.run(&bin, &args, Some(payload)).await.map(|_| ())
    }

    async fn remove_previous_iptables(
        &self,
        family: Family,
        old_variants: &[FamilyRules],
        current: Option<&FamilyRules>,
    ) -> Result<Outcome, FirewallError> {
        let current_chains = current
            .map(|r| iptables_chains(family, r))
            .unwrap_or_default();
        let mut blocks: Vec<(IptTable, Vec<String>)> = Vec::new();
        for (table, parent, chain_name) in IPTABLES_CHAINS {
            let olds: Vec<ChainRules> = old_variants
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

    async fn cleanup_iptables(&self) -> Result<Outcome, FirewallError> {
        let mut outcome = Outcome::Unchanged;
        for family in Family::ALL {
            match self.iptables_capabilities(family).await {
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

    // ----------------------------------------------------------------------------------------
    // nftables
    // ----------------------------------------------------------------------------------------

    async fn ensure_nft(&self, desired: &RuleSet) -> Result<Outcome, FirewallError> {
        let mut script = String::new();
        let mut pending = Vec::new();
        for family in Family::ALL {
            let rules = desired.family(family);
            let expected = normalize_nft(&nft_table_listing(family, rules)).join("\n");
            let observed = self.observe_nft_table(family).await?;
            if let Some(found) = &observed {
                if self.is_accepted(&expected, found) {
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
        self.nft_apply(&script).await?;
        for (family, expected) in pending {
            let found = self.observe_nft_table(family).await?.unwrap_or_default();
            if found == expected {
                continue;
            }
            if found.lines().count() == expected.lines().count() {
                warn!(
                    "nftables prints table {} differently from flannel's rendering; accepting its form:\n{found}",
                    family.nft_table()
                );
                self.accept(expected, found);
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

    /// `nft list table` normalised, or `None` when the table does not exist.
    async fn observe_nft_table(&self, family: Family) -> Result<Option<String>, FirewallError> {
        let nft = self.inner.config.binaries.nft.clone();
        let args = ["list", "table", family.nft_family(), family.nft_table()];
        match self.run(&nft, &args, None).await {
            Ok(out) => Ok(Some(normalize_nft(&out).join("\n"))),
            Err(FirewallError::Command { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn nft_apply(&self, script: &str) -> Result<(), FirewallError> {
        let nft = self.inner.config.binaries.nft.clone();
        debug!("running nft -f - with:\n{script}");
        self.run(&nft, &["-f", "-"], Some(script)).await.map(|_| ())
    }

    async fn remove_previous_nft(
        &self,
        family: Family,
        old_variants: &[FamilyRules],
        current: Option<&FamilyRules>,
    ) -> Result<Outcome, FirewallError> {
        let Some(found) = self.observe_nft_table(family).await? else {
            return Ok(Outcome::Unchanged);
        };
        let keep = normalize_nft(&nft_table_listing(family, current));
        let live: Vec<&str> = found.lines().collect();
        let stale = old_variants
            .iter()
            .flat_map(|r| normalize_nft(&nft_table_listing(family, Some(r))))
            .any(|line| !keep.contains(&line) && live.contains(&line.as_str()));
        if !stale {
            return Ok(Outcome::Unchanged);
        }
        info!(
            "Removing stale nftables rules: rebuilding table {}",
            family.nft_table()
        );
        self.nft_apply(&nft_table_script(family, current)).await?;
        Ok(Outcome::Changed)
    }

    async fn cleanup_nft(&self) -> Result<Outcome, FirewallError> {
        let nft = self.inner.config.binaries.nft.clone();
        let listing = match self.run(&nft, &["list", "tables"], None).await {
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
        info!("Cleaning-up nftables tables {present:?}");
        self.nft_apply(&nft_delete_script(&present)).await?;
        Ok(Outcome::Changed)
    }

    // ----------------------------------------------------------------------------------------
    // helpers
    // ----------------------------------------------------------------------------------------

    fn is_accepted(&self, expected: &str, found: &str) -> bool {
        if expected == found {
            return true;
        }
        let accepted = self
            .inner
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.get(expected).is_some_and(|a| a == found)
    }

    fn accept(&self, expected: String, found: String) {
        let mut accepted = self
            .inner
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.insert(expected, found);
    }

    /// Run `program args` (stdin from `input`), returning stdout; non-zero exit is an error.
    async fn run(
        &self,
        program: &PathBuf,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, FirewallError> {
        let command = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        let spawn_err = |source| FirewallError::Spawn {
            command: command.clone(),
            source,
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
        let timeout = self.inner.config.command_timeout;
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

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
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
#[allow(clippy::unwrap_used)]
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
}
