//! Pure rendering of Flannel's masquerade and forward rules.
//!
//! This module owns the *text* of every rule flannel-rs installs and every script it feeds to
//! `iptables-restore` / `ip6tables-restore` / `nft`, plus the parsing of `iptables -S` listings
//! back into an [`ObservedChain`]. Nothing here runs a process; [`crate::apply`] does the I/O.
//!
//! The rule text follows Flannel's `pkg/trafficmngr/iptables/iptables.go` and
//! `pkg/trafficmngr/nftables/nftables.go` and the golden dumps in Flannel's `e2e/rules.go`, so a
//! Go node and a Rust node leave identical chains and tables behind.

use std::fmt::Write as _;

use ipnet::IpNet;

/// Name of the iptables chain holding the masquerade rules (table `nat`).
pub const MASQ_CHAIN: &str = "FLANNEL-POSTRTG";
/// Name of the iptables chain holding the forward-accept rules (table `filter`).
pub const FORWARD_CHAIN: &str = "FLANNEL-FWD";
/// Comment attached to every masquerade rule (`-m comment --comment`).
pub const MASQ_COMMENT: &str = "flanneld masq";
/// Comment attached to every forward rule.
pub const FORWARD_COMMENT: &str = "flanneld forward";
/// kube-proxy's masquerade mark (value/mask) as written in iptables rules.
pub const KUBE_PROXY_MARK: &str = "0x4000/0x4000";
/// Name of the nftables masquerade chain (inside `flannel-ipv4` / `flannel-ipv6`).
pub const NFT_MASQ_CHAIN: &str = "postrtg";
/// Name of the nftables forward chain.
pub const NFT_FORWARD_CHAIN: &str = "forward";
/// Comment of the nftables masquerade chain (as Flannel sets it).
pub const NFT_MASQ_CHAIN_COMMENT: &str = "chain to manage traffic masquerading by flannel";
/// Comment of the nftables forward chain (as Flannel sets it).
pub const NFT_FORWARD_CHAIN_COMMENT: &str = "chain to accept flannel traffic";

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`iptables`, nft family `ip`).
    Ipv4,
    /// IPv6 (`ip6tables`, nft family `ip6`).
    Ipv6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family of a network.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    /// The multicast range excluded from masquerading (`224.0.0.0/4` or `ff00::/8`).
    pub fn multicast(self) -> &'static str {
        match self {
            Family::Ipv4 => "224.0.0.0/4",
            Family::Ipv6 => "ff00::/8",
        }
    }

    /// The nftables family keyword (`ip` or `ip6`), also the address-match prefix in rules.
    pub fn nft_family(self) -> &'static str {
        match self {
            Family::Ipv4 => "ip",
            Family::Ipv6 => "ip6",
        }
    }

    /// The nftables table flannel owns for this family (`flannel-ipv4` / `flannel-ipv6`).
    pub fn nft_table(self) -> &'static str {
        match self {
            Family::Ipv4 => "flannel-ipv4",
            Family::Ipv6 => "flannel-ipv6",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// A rule set that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The pod subnet and the network belong to different address families.
    #[error("pod subnet {pod_subnet} and network {network} are not of the same address family")]
    FamilyMismatch {
        /// The cluster network.
        network: IpNet,
        /// The node's pod subnet.
        pod_subnet: IpNet,
    },
}

/// Parameters of the masquerade rules for one family (`--ip-masq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MasqParams {
    /// The whole flannel network (`Network` / `IPv6Network`).
    pub network: IpNet,
    /// This node's leased pod subnet.
    pub pod_subnet: IpNet,
    /// Render `--random-fully` / `fully-random`. [`crate::Firewall`] clears it when the tools
    /// or kernel lack support or `--ip-masq-fully-random-disable` is set.
    pub random_fully: bool,
}

impl MasqParams {
    /// Masquerade parameters; both networks are truncated to their prefix (as iptables and nft
    /// print them) and must be of the same family.
    pub fn new(network: IpNet, pod_subnet: IpNet, random_fully: bool) -> Result<Self, RuleError> {
        if Family::of(&network) != Family::of(&pod_subnet) {
            return Err(RuleError::FamilyMismatch {
                network,
                pod_subnet,
            });
        }
        Ok(Self {
            network: network.trunc(),
            pod_subnet: pod_subnet.trunc(),
            random_fully,
        })
    }

    /// The family of these parameters (that of `network`).
    pub fn family(&self) -> Family {
        Family::of(&self.network)
    }
}

/// Parameters of the forward-accept rules for one family (`--iptables-forward-rules`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardParams {
    /// The whole flannel network.
    pub network: IpNet,
}

/// The rules wanted for one address family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FamilyRules {
    /// Masquerade rules, if `--ip-masq`.
    pub masq: Option<MasqParams>,
    /// Forward-accept rules, if `--iptables-forward-rules`.
    pub forward: Option<ForwardParams>,
}

impl FamilyRules {
    /// True when no rule is wanted.
    pub fn is_empty(&self) -> bool {
        self.masq.is_none() && self.forward.is_none()
    }
}

/// The complete desired firewall state: which families are active and their rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RuleSet {
    ipv4: Option<FamilyRules>,
    ipv6: Option<FamilyRules>,
}

impl RuleSet {
    /// An empty rule set (no active family).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add masquerade rules; the family is taken from the parameters.
    pub fn with_masq(mut self, params: MasqParams) -> Result<Self, RuleError> {
        let params = MasqParams::new(params.network, params.pod_subnet, params.random_fully)?;
        let family = params.family();
        self.family_mut(family).masq = Some(params);
        Ok(self)
    }

    /// Add forward-accept rules for `network`; the family is taken from the network.
    pub fn with_forward(mut self, network: IpNet) -> Self {
        let network = network.trunc();
        self.family_mut(Family::of(&network)).forward = Some(ForwardParams { network });
        self
    }

    /// The rules for `family`, if it is active.
    pub fn family(&self, family: Family) -> Option<&FamilyRules> {
        match family {
            Family::Ipv4 => self.ipv4.as_ref(),
            Family::Ipv6 => self.ipv6.as_ref(),
        }
    }

    /// Active families with their rules, IPv4 first.
    pub fn families(&self) -> impl Iterator<Item = (Family, &FamilyRules)> {
        Family::ALL
            .into_iter()
            .filter_map(|f| self.family(f).map(|r| (f, r)))
    }

    /// True when no family has any rule.
    pub fn is_empty(&self) -> bool {
        self.families().all(|(_, r)| r.is_empty())
    }

    /// A copy with `random_fully` cleared for every family where `allowed(family)` is false.
    pub fn restrict_random_fully(&self, allowed: impl Fn(Family) -> bool) -> RuleSet {
        let mut out = self.clone();
        for family in Family::ALL {
            if allowed(family) {
                continue;
            }
            if let Some(m) = out
                .family_mut_existing(family)
                .and_then(|r| r.masq.as_mut())
            {
                m.random_fully = false;
            }
        }
        out
    }

    fn family_mut(&mut self, family: Family) -> &mut FamilyRules {
        match family {
            Family::Ipv4 => self.ipv4.get_or_insert_with(FamilyRules::default),
            Family::Ipv6 => self.ipv6.get_or_insert_with(FamilyRules::default),
        }
    }

    fn family_mut_existing(&mut self, family: Family) -> Option<&mut FamilyRules> {
        match family {
            Family::Ipv4 => self.ipv4.as_mut(),
            Family::Ipv6 => self.ipv6.as_mut(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// iptables
// ---------------------------------------------------------------------------------------------

/// An iptables table used by flannel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IptTable {
    /// `nat` (masquerade rules).
    Nat,
    /// `filter` (forward rules).
    Filter,
}

impl IptTable {
    /// The table name as iptables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            IptTable::Nat => "nat",
            IptTable::Filter => "filter",
        }
    }
}

/// One flannel-owned iptables chain: its rules, and the jump into it from a built-in chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRules {
    /// Table of both the chain and its parent.
    pub table: IptTable,
    /// Built-in chain holding the jump (`POSTROUTING` / `FORWARD`).
    pub parent: &'static str,
    /// The flannel chain (`FLANNEL-POSTRTG` / `FLANNEL-FWD`).
    pub chain: &'static str,
    /// Rule specification of the jump (without `-A <parent>`).
    pub jump: Vec<String>,
    /// Rule specifications of the chain's rules, in order (without `-A <chain>`).
    pub rules: Vec<Vec<String>>,
}

impl ChainRules {
    /// The jump rule as `iptables -S` prints it.
    pub fn jump_line(&self) -> String {
        rule_line("-A", self.parent, &self.jump)
    }

    /// The chain's rules as `iptables -S` prints them.
    pub fn rule_lines(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| rule_line("-A", self.chain, r))
            .collect()
    }

    /// The expected listing in the form Flannel's e2e test compares: the jump line(s) from
    /// `iptables -S <parent>`, then the whole of `iptables -S <chain>`; no trailing newline.
    pub fn listing(&self) -> String {
        let mut lines = vec![self.jump_line(), format!("-N {}", self.chain)];
        lines.extend(self.rule_lines());
        lines.join("\n")
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The masquerade chain for `family` (Flannel `masqRules` / `masqIP6Rules`), in order.
///
/// Rule order: kube-proxy mark bypass, pod→cluster and cluster→pod returns, external→pod
/// return, cluster→non-multicast masquerade, host→cluster masquerade.
pub fn masq_chain(family: Family, params: &MasqParams) -> ChainRules {
    let net = params.network.to_string();
    let pod = params.pod_subnet.to_string();
    let comment = ["-m", "comment", "--comment", MASQ_COMMENT];
    let with = |head: &[&str], target: &[&str]| -> Vec<String> {
        let mut v = args(head);
        v.extend(args(&comment));
        v.extend(args(target));
        v
    };
    let masq: &[&str] = if params.random_fully {
        &["-j", "MASQUERADE", "--random-fully"]
    } else {
        &["-j", "MASQUERADE"]
    };
    ChainRules {
        table: IptTable::Nat,
        parent: "POSTROUTING",
        chain: MASQ_CHAIN,
        jump: with(&[], &["-j", MASQ_CHAIN]),
        rules: vec![
            with(
                &["-m", "mark", "--mark", KUBE_PROXY_MARK],
                &["-j", "RETURN"],
            ),
            with(&["-s", &pod, "-d", &net], &["-j", "RETURN"]),
            with(&["-s", &net, "-d", &pod], &["-j", "RETURN"]),
            with(&["!", "-s", &net, "-d", &pod], &["-j", "RETURN"]),
            with(&["-s", &net, "!", "-d", family.multicast()], masq),
            with(&["!", "-s", &net, "-d", &net], masq),
        ],
    }
}

/// The forward chain (Flannel `forwardRules`): accept anything from or to the network.
pub fn forward_chain(params: &ForwardParams) -> ChainRules {
    let net = params.network.to_string();
    let comment = ["-m", "comment", "--comment", FORWARD_COMMENT];
    let with = |head: &[&str], target: &[&str]| -> Vec<String> {
        let mut v = args(head);
        v.extend(args(&comment));
        v.extend(args(target));
        v
    };
    ChainRules {
        table: IptTable::Filter,
        parent: "FORWARD",
        chain: FORWARD_CHAIN,
        jump: with(&[], &["-j", FORWARD_CHAIN]),
        rules: vec![
            with(&["-s", &net], &["-j", "ACCEPT"]),
            with(&["-d", &net], &["-j", "ACCEPT"]),
        ],
    }
}

/// All flannel chains wanted for one family: masquerade (nat) first, then forward (filter).
pub fn iptables_chains(family: Family, rules: &FamilyRules) -> Vec<ChainRules> {
    let mut out = Vec::new();
    if let Some(m) = &rules.masq {
        out.push(masq_chain(family, m));
    }
    if let Some(f) = &rules.forward {
        out.push(forward_chain(f));
    }
    out
}

/// Characters iptables prints without quotes in string options (xtables `save_string`).
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Render `<action> <chain> <spec...>` as iptables prints it and iptables-restore reads it:
/// the value after `--comment` is double-quoted when it holds anything but `[A-Za-z0-9_-]`.
pub fn rule_line(action: &str, chain: &str, spec: &[String]) -> String {
    let mut line = format!("{action} {chain}");
    let mut prev_is_comment = false;
    for arg in spec {
        line.push(' ');
        if prev_is_comment && needs_quotes(arg) {
            line.push('"');
            for c in arg.chars() {
                if c == '"' || c == '\\' {
                    line.push('\\');
                }
                line.push(c);
            }
            line.push('"');
        } else {
            line.push_str(arg);
        }
        prev_is_comment = arg == "--comment";
    }
    line
}

/// What a table currently holds for one flannel chain, parsed from `iptables -S` listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedChain {
    /// The built-in parent chain that was listed.
    pub parent: String,
    /// The flannel chain.
    pub chain: String,
    /// Whether the chain exists (`-N <chain>` was listed).
    pub chain_exists: bool,
    /// Lines of the parent whose target is the chain (`-A <parent> ... -j <chain>`), in order.
    pub jumps: Vec<String>,
    /// The chain's rule lines (`-A <chain> ...`), in order.
    pub rules: Vec<String>,
}

impl ObservedChain {
    /// Nothing present: no chain, no jump.
    pub fn absent(parent: &str, chain: &str) -> Self {
        Self {
            parent: parent.to_owned(),
            chain: chain.to_owned(),
            chain_exists: false,
            jumps: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Parse `iptables -S <parent>` output and, if the chain could be listed,
    /// `iptables -S <chain>` output (`None` when listing it failed, i.e. it is missing).
    pub fn parse(
        parent: &str,
        chain: &str,
        parent_listing: &str,
        chain_listing: Option<&str>,
    ) -> Self {
        let mut out = Self::absent(parent, chain);
        let parent_prefix = format!("-A {parent} ");
        let jump_suffix = format!(" -j {chain}");
        out.jumps = parent_listing
            .lines()
            .map(str::trim_end)
            .filter(|l| l.starts_with(&parent_prefix) && l.ends_with(&jump_suffix))
            .map(str::to_owned)
            .collect();
        if let Some(listing) = chain_listing {
            let new_line = format!("-N {chain}");
            let rule_prefix = format!("-A {chain} ");
            for line in listing.lines().map(str::trim_end) {
                if line == new_line {
                    out.chain_exists = true;
                } else if line.starts_with(&rule_prefix) {
                    out.rules.push(line.to_owned());
                }
            }
        }
        out
    }

    /// The observed state in the same form as [`ChainRules::listing`].
    pub fn listing(&self) -> String {
        let mut lines = self.jumps.clone();
        if self.chain_exists {
            lines.push(format!("-N {}", self.chain));
        }
        lines.extend(self.rules.iter().cloned());
        lines.join("\n")
    }

    /// True when nothing of the chain is present.
    pub fn is_absent(&self) -> bool {
        !self.chain_exists && self.jumps.is_empty() && self.rules.is_empty()
    }
}

/// Turn an observed `-A <chain> <spec>` line into `-D <chain> <spec>`.
fn delete_line(observed_append: &str) -> String {
    match observed_append.strip_prefix("-A ") {
        Some(rest) => format!("-D {rest}"),
        None => observed_append.to_owned(),
    }
}

/// The `iptables-restore --noflush` lines (for `desired.table`) that make the live chain equal
/// to `desired`, given what is there now:
///
/// 1. `:<chain> - [0:0]`: with `--noflush` this creates the chain, or flushes it when it exists,
///    so the chain ends up holding exactly our rules (stale or foreign rules in it vanish);
/// 2. unless exactly one correct jump exists: `-D` every observed jump (duplicates, variants),
///    then `-A` one jump — so repeated application never duplicates it (Flannel deletes then
///    appends too, which leaves the jump **appended** to the parent, quirk 10);
/// 3. `-A` every rule in order.
pub fn ensure_lines(desired: &ChainRules, observed: &ObservedChain) -> Vec<String> {
    let mut lines = vec![format!(":{} - [0:0]", desired.chain)];
    let jump = desired.jump_line();
    if observed.jumps.len() != 1 || observed.jumps[0] != jump {
        lines.extend(observed.jumps.iter().map(|j| delete_line(j)));
        lines.push(jump);
    }
    lines.extend(desired.rule_lines());
    lines
}

/// Lines deleting the rules of `old` that are live and not also wanted by `keep` (the current
/// chain, if any). Jumps are never removed here: they are the same for every network and
/// [`ensure_lines`] owns them.
pub fn removal_lines(
    old: &ChainRules,
    keep: Option<&ChainRules>,
    observed: &ObservedChain,
) -> Vec<String> {
    let kept: Vec<String> = keep.map(ChainRules::rule_lines).unwrap_or_default();
    old.rule_lines()
        .into_iter()
        .filter(|l| observed.rules.contains(l) && !kept.contains(l))
        .map(|l| delete_line(&l))
        .collect()
}

/// Lines removing a flannel chain entirely (used when switching to nftables mode): flush it,
/// delete every jump into it, delete it. Empty when nothing is present.
pub fn cleanup_lines(observed: &ObservedChain) -> Vec<String> {
    if observed.is_absent() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    if observed.chain_exists {
        lines.push(format!(":{} - [0:0]", observed.chain));
    }
    lines.extend(observed.jumps.iter().map(|j| delete_line(j)));
    if observed.chain_exists {
        lines.push(format!("-X {}", observed.chain));
    }
    lines
}

/// Assemble an `iptables-restore` payload: one `*table` … `COMMIT` block per table (in the
/// order given, blocks for the same table merged), skipping tables without lines.
pub fn restore_payload(blocks: &[(IptTable, Vec<String>)]) -> String {
    let mut order: Vec<IptTable> = Vec::new();
    for (table, lines) in blocks {
        if !lines.is_empty() && !order.contains(table) {
            order.push(*table);
        }
    }
    let mut out = String::new();
    for table in order {
        let _ = writeln!(out, "*{}", table.as_str());
        for (_, lines) in blocks.iter().filter(|(t, _)| *t == table) {
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// nftables
// ---------------------------------------------------------------------------------------------

/// The rules of the nft `postrtg` chain (Flannel `addMasqRules`), in `nft list` syntax.
///
/// **Flannel quirk 11, kept on purpose:** Flannel's nft rules differ from its iptables rules:
/// the kube-proxy mark is matched exactly (`meta mark 0x00004000`, not `& 0x4000 == 0x4000`)
/// and rule 4 is `saddr != <podSubnet> daddr <Network>` instead of iptables'
/// `! -s <Network> -d <podSubnet>`. We reproduce Flannel's nft output byte for byte so that a
/// Go node and a Rust node produce the same tables (and either can take over the other's).
pub fn nft_masq_rules(family: Family, params: &MasqParams) -> Vec<String> {
    let f = family.nft_family();
    let net = params.network;
    let pod = params.pod_subnet;
    let masq = if params.random_fully {
        "masquerade fully-random"
    } else {
        "masquerade"
    };
    let mcast = family.multicast();
    vec![
        "meta mark 0x00004000 return".to_owned(),
        format!("{f} saddr {pod} {f} daddr {net} return"),
        format!("{f} saddr {net} {f} daddr {pod} return"),
        format!("{f} saddr != {pod} {f} daddr {net} return"),
        format!("{f} saddr {net} {f} daddr != {mcast} {masq}"),
        format!("{f} saddr != {net} {f} daddr {net} {masq}"),
    ]
}

/// The rules of the nft `forward` chain (Flannel `SetupAndEnsureForwardRules`).
pub fn nft_forward_rules(family: Family, params: &ForwardParams) -> Vec<String> {
    let f = family.nft_family();
    let net = params.network;
    vec![
        format!("{f} saddr {net} accept"),
        format!("{f} daddr {net} accept"),
    ]
}

/// The table `family`'s flannel table should be, exactly as `nft list table <fam> <name>`
/// (nft 1.0.6) prints it: table comment `rules for <name>` (as Flannel's knftables sets it),
/// then `postrtg` (if masquerading) and `forward` (if forwarding) with Flannel's comments, hook
/// and priorities. `None` (family not active) gives the empty table Flannel creates at Init.
///
/// The same text is valid `nft -f` input, which is how [`nft_table_script`] uses it.
pub fn nft_table_listing(family: Family, rules: Option<&FamilyRules>) -> String {
    let mut chains: Vec<String> = Vec::new();
    if let Some(rules) = rules {
        if let Some(m) = &rules.masq {
            chains.push(nft_chain(
                NFT_MASQ_CHAIN,
                NFT_MASQ_CHAIN_COMMENT,
                "type nat hook postrouting priority srcnat; policy accept;",
                &nft_masq_rules(family, m),
            ));
        }
        if let Some(f) = &rules.forward {
            chains.push(nft_chain(
                NFT_FORWARD_CHAIN,
                NFT_FORWARD_CHAIN_COMMENT,
                "type filter hook forward priority filter; policy accept;",
                &nft_forward_rules(family, f),
            ));
        }
    }
    let mut out = format!(
        "table {} {} {{\n\tcomment \"rules for {}\"\n",
        family.nft_family(),
        family.nft_table(),
        family.nft_table()
    );
    out.push_str(&chains.join("\n"));
    out.push_str("}\n");
    out
}

fn nft_chain(name: &str, comment: &str, base: &str, rules: &[String]) -> String {
    let mut out = format!("\tchain {name} {{\n\t\tcomment \"{comment}\"\n\t\t{base}\n");
    for rule in rules {
        let _ = writeln!(out, "\t\t{rule}");
    }
    out.push_str("\t}\n");
    out
}

/// An `nft -f` script that atomically replaces `family`'s flannel table with
/// [`nft_table_listing`]: `add table` (so the `delete` cannot fail), `delete table` (drops any
/// stale chain or rule), then the full table definition. Running it twice gives the same result.
pub fn nft_table_script(family: Family, rules: Option<&FamilyRules>) -> String {
    format!(
        "add table {f} {t}\ndelete table {f} {t}\n{body}",
        f = family.nft_family(),
        t = family.nft_table(),
        body = nft_table_listing(family, rules)
    )
}

/// One `nft -f` transaction setting up both flannel tables for `set` (Flannel always creates
/// both `flannel-ipv4` and `flannel-ipv6`, empty when the family is inactive).
pub fn nft_ruleset_script(set: &RuleSet) -> String {
    Family::ALL
        .into_iter()
        .map(|f| nft_table_script(f, set.family(f)))
        .collect()
}

/// An `nft -f` script deleting the flannel tables of `families` (each must exist).
pub fn nft_delete_script(families: &[Family]) -> String {
    families
        .iter()
        .map(|f| format!("delete table {} {}\n", f.nft_family(), f.nft_table()))
        .collect()
}

/// Normalise nft text for comparison: per line, runs of whitespace become one space, leading and
/// trailing whitespace goes, empty lines are dropped.
pub fn normalize_nft(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Parse `nft list tables` output into the flannel tables present.
pub fn parse_nft_tables(listing: &str) -> Vec<Family> {
    let mut out = Vec::new();
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for family in Family::ALL {
            if words == ["table", family.nft_family(), family.nft_table()] && !out.contains(&family)
            {
                out.push(family);
            }
        }
    }
    out
}
