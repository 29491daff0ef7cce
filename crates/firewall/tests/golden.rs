//! Golden tests (exact bytes) for the pure rule rendering in `flannel_firewall::rules`.
//! Expected texts follow Flannel's e2e/rules.go dumps (reference §6.1, §6.2).

#![allow(clippy::unwrap_used)]

use flannel_firewall::rules::{
    cleanup_lines, ensure_lines, forward_chain, iptables_chains, masq_chain, nft_delete_script,
    nft_ruleset_script, nft_table_listing, nft_table_script, normalize_nft, parse_nft_tables,
    removal_lines, restore_payload, rule_line, IptTable, ObservedChain,
};
use flannel_firewall::{Family, ForwardParams, MasqParams, RuleError, RuleSet};

const NET4: &str = "198.18.0.0/16";
const POD4: &str = "198.18.5.0/24";
const NET6: &str = "2001:db8:42::/56";
const POD6: &str = "2001:db8:42:5::/64";

fn masq(net: &str, pod: &str, random_fully: bool) -> MasqParams {
    MasqParams::new(net.parse().unwrap(), pod.parse().unwrap(), random_fully).unwrap()
}

fn fwd(net: &str) -> ForwardParams {
    ForwardParams {
        network: net.parse().unwrap(),
    }
}

const MASQ_V4_RANDOM: &str = r#"-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-N FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.5.0/24 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully"#;

const MASQ_V4_PLAIN: &str = r#"-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-N FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.5.0/24 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE"#;

const MASQ_V6_RANDOM: &str = r#"-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-N FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 2001:db8:42:5::/64 -d 2001:db8:42::/56 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 2001:db8:42::/56 -d 2001:db8:42:5::/64 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 2001:db8:42::/56 -d 2001:db8:42:5::/64 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 2001:db8:42::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 2001:db8:42::/56 -d 2001:db8:42::/56 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully"#;

const FWD_V4: &str = r#"-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-N FLANNEL-FWD
-A FLANNEL-FWD -s 198.18.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 198.18.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT"#;

const FWD_V6: &str = r#"-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-N FLANNEL-FWD
-A FLANNEL-FWD -s 2001:db8:42::/56 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 2001:db8:42::/56 -m comment --comment "flanneld forward" -j ACCEPT"#;

#[test]
fn masq_rules_v4_random_fully() {
    assert_eq!(
        masq_chain(Family::Ipv4, &masq(NET4, POD4, true)).listing(),
        MASQ_V4_RANDOM
    );
}

#[test]
fn masq_rules_v4_without_random_fully() {
    assert_eq!(
        masq_chain(Family::Ipv4, &masq(NET4, POD4, false)).listing(),
        MASQ_V4_PLAIN
    );
}

#[test]
fn masq_rules_v6() {
    assert_eq!(
        masq_chain(Family::Ipv6, &masq(NET6, POD6, true)).listing(),
        MASQ_V6_RANDOM
    );
}

#[test]
fn masq_rules_as_argument_vectors() {
    let chain = masq_chain(Family::Ipv4, &masq(NET4, POD4, true));
    assert_eq!(chain.table, IptTable::Nat);
    assert_eq!(chain.parent, "POSTROUTING");
    assert_eq!(chain.chain, "FLANNEL-POSTRTG");
    assert_eq!(
        chain.jump,
        [
            "-m",
            "comment",
            "--comment",
            "flanneld masq",
            "-j",
            "FLANNEL-POSTRTG"
        ]
    );
    assert_eq!(
        chain.rules[4],
        [
            "-s",
            "198.18.0.0/16",
            "!",
            "-d",
            "224.0.0.0/4",
            "-m",
            "comment",
            "--comment",
            "flanneld masq",
            "-j",
            "MASQUERADE",
            "--random-fully"
        ]
    );
}

#[test]
fn forward_rules_v4_and_v6() {
    assert_eq!(forward_chain(&fwd(NET4)).listing(), FWD_V4);
    assert_eq!(forward_chain(&fwd(NET6)).listing(), FWD_V6);
    assert_eq!(forward_chain(&fwd(NET4)).table, IptTable::Filter);
}

#[test]
fn comment_quoting_follows_iptables() {
    let spec = |c: &str| -> Vec<String> {
        ["-m", "comment", "--comment", c, "-j", "RETURN"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(
        rule_line("-A", "X", &spec("foo")),
        "-A X -m comment --comment foo -j RETURN"
    );
    assert_eq!(
        rule_line("-A", "X", &spec(r#"a "b"\c"#)),
        r#"-A X -m comment --comment "a \"b\"\\c" -j RETURN"#
    );
}

fn set_v4() -> RuleSet {
    RuleSet::new()
        .with_masq(masq(NET4, POD4, true))
        .unwrap()
        .with_forward(NET4.parse().unwrap())
}

fn fresh_payload(set: &RuleSet, family: Family) -> String {
    let blocks: Vec<(IptTable, Vec<String>)> = iptables_chains(family, set.family(family).unwrap())
        .iter()
        .map(|c| {
            (
                c.table,
                ensure_lines(c, &ObservedChain::absent(c.parent, c.chain)),
            )
        })
        .collect();
    restore_payload(&blocks)
}

#[test]
fn restore_payload_fresh_v4() {
    let expected = r#"*nat
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.5.0/24 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
COMMIT
*filter
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 198.18.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 198.18.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"#;
    assert_eq!(fresh_payload(&set_v4(), Family::Ipv4), expected);
}

#[test]
fn restore_payload_fresh_v6() {
    let set = RuleSet::new()
        .with_masq(masq(NET6, POD6, false))
        .unwrap()
        .with_forward(NET6.parse().unwrap());
    let expected = r#"*nat
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 2001:db8:42:5::/64 -d 2001:db8:42::/56 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 2001:db8:42::/56 -d 2001:db8:42:5::/64 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 2001:db8:42::/56 -d 2001:db8:42:5::/64 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 2001:db8:42::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE
-A FLANNEL-POSTRTG ! -s 2001:db8:42::/56 -d 2001:db8:42::/56 -m comment --comment "flanneld masq" -j MASQUERADE
COMMIT
*filter
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 2001:db8:42::/56 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 2001:db8:42::/56 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"#;
    assert_eq!(fresh_payload(&set, Family::Ipv6), expected);
    assert!(set.family(Family::Ipv4).is_none());
}

/// A real `iptables -t nat -S POSTROUTING` with kube-proxy's jump, two copies of ours and a
/// variant without comment.
const POSTROUTING_DUPES: &str = r#"-P POSTROUTING ACCEPT
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A POSTROUTING -j FLANNEL-POSTRTG
"#;

#[test]
fn observed_chain_parsing() {
    let chain_listing = "-N FLANNEL-POSTRTG\n-A FLANNEL-POSTRTG -j RETURN\n";
    let o = ObservedChain::parse(
        "POSTROUTING",
        "FLANNEL-POSTRTG",
        POSTROUTING_DUPES,
        Some(chain_listing),
    );
    assert!(o.chain_exists);
    assert_eq!(
        o.jumps,
        [
            r#"-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG"#,
            r#"-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG"#,
            "-A POSTROUTING -j FLANNEL-POSTRTG",
        ]
    );
    assert_eq!(o.rules, ["-A FLANNEL-POSTRTG -j RETURN"]);
    let missing = ObservedChain::parse(
        "POSTROUTING",
        "FLANNEL-POSTRTG",
        "-P POSTROUTING ACCEPT\n",
        None,
    );
    assert!(missing.is_absent());
    assert_eq!(missing.listing(), "");
}

#[test]
fn restore_payload_with_duplicate_jumps_deletes_them_all_then_appends_one() {
    let chain = masq_chain(Family::Ipv4, &masq(NET4, POD4, false));
    let observed = ObservedChain::parse(
        "POSTROUTING",
        "FLANNEL-POSTRTG",
        POSTROUTING_DUPES,
        Some("-N FLANNEL-POSTRTG\n"),
    );
    let expected = r#"*nat
:FLANNEL-POSTRTG - [0:0]
-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-D POSTROUTING -j FLANNEL-POSTRTG
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.5.0/24 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 198.18.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE
-A FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE
COMMIT
"#;
    assert_eq!(
        restore_payload(&[(IptTable::Nat, ensure_lines(&chain, &observed))]),
        expected
    );
}

#[test]
fn restore_payload_keeps_a_single_correct_jump() {
    let chain = forward_chain(&fwd(NET4));
    // The chain lost one rule; the jump is fine and stays where it is.
    let observed = ObservedChain::parse(
        "FORWARD",
        "FLANNEL-FWD",
        "-P FORWARD ACCEPT\n-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n",
        Some("-N FLANNEL-FWD\n-A FLANNEL-FWD -s 198.18.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n"),
    );
    assert_ne!(observed.listing(), chain.listing());
    let expected = r#"*filter
:FLANNEL-FWD - [0:0]
-A FLANNEL-FWD -s 198.18.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 198.18.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"#;
    assert_eq!(
        restore_payload(&[(IptTable::Filter, ensure_lines(&chain, &observed))]),
        expected
    );
    // Once complete, the observed listing equals the rendering.
    let complete = ObservedChain::parse(
        "FORWARD",
        "FLANNEL-FWD",
        "-P FORWARD ACCEPT\n-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n",
        Some(&format!(
            "{}\n",
            chain
                .listing()
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n")
        )),
    );
    assert_eq!(complete.listing(), chain.listing());
}

#[test]
fn removal_payload_for_changed_subnet() {
    let old = masq_chain(Family::Ipv4, &masq(NET4, POD4, true));
    let new = masq_chain(Family::Ipv4, &masq(NET4, "198.18.7.0/24", true));
    let chain_listing = old.listing().lines().skip(1).collect::<Vec<_>>().join("\n");
    let observed = ObservedChain::parse(
        "POSTROUTING",
        "FLANNEL-POSTRTG",
        &old.jump_line(),
        Some(&chain_listing),
    );
    let expected = r#"*nat
-D FLANNEL-POSTRTG -s 198.18.5.0/24 -d 198.18.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-D FLANNEL-POSTRTG -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
-D FLANNEL-POSTRTG ! -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "flanneld masq" -j RETURN
COMMIT
"#;
    assert_eq!(
        restore_payload(&[(IptTable::Nat, removal_lines(&old, Some(&new), &observed))]),
        expected
    );
    // Without a current chain, every live old rule goes (the jump stays).
    let all = removal_lines(&old, None, &observed);
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|l| l.starts_with("-D FLANNEL-POSTRTG ")));
    // Nothing live, nothing to delete, no payload at all.
    let empty = removal_lines(
        &old,
        None,
        &ObservedChain::absent("POSTROUTING", "FLANNEL-POSTRTG"),
    );
    assert_eq!(restore_payload(&[(IptTable::Nat, empty)]), "");
}

#[test]
fn cleanup_payload_removes_chain_and_jumps() {
    let observed = ObservedChain::parse(
        "POSTROUTING",
        "FLANNEL-POSTRTG",
        POSTROUTING_DUPES,
        Some("-N FLANNEL-POSTRTG\n-A FLANNEL-POSTRTG -j RETURN\n"),
    );
    let expected = r#"*nat
:FLANNEL-POSTRTG - [0:0]
-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-D POSTROUTING -j FLANNEL-POSTRTG
-X FLANNEL-POSTRTG
COMMIT
"#;
    assert_eq!(
        restore_payload(&[(IptTable::Nat, cleanup_lines(&observed))]),
        expected
    );
    assert!(cleanup_lines(&ObservedChain::absent("FORWARD", "FLANNEL-FWD")).is_empty());
}

const NFT_V4: &str = "table ip flannel-ipv4 {
\tcomment \"rules for flannel-ipv4\"
\tchain postrtg {
\t\tcomment \"chain to manage traffic masquerading by flannel\"
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark 0x00004000 return
\t\tip saddr 198.18.5.0/24 ip daddr 198.18.0.0/16 return
\t\tip saddr 198.18.0.0/16 ip daddr 198.18.5.0/24 return
\t\tip saddr != 198.18.5.0/24 ip daddr 198.18.0.0/16 return
\t\tip saddr 198.18.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
\t\tip saddr != 198.18.0.0/16 ip daddr 198.18.0.0/16 masquerade fully-random
\t}

\tchain forward {
\t\tcomment \"chain to accept flannel traffic\"
\t\ttype filter hook forward priority filter; policy accept;
\t\tip saddr 198.18.0.0/16 accept
\t\tip daddr 198.18.0.0/16 accept
\t}
}
";

const NFT_V6_EMPTY: &str = "table ip6 flannel-ipv6 {
\tcomment \"rules for flannel-ipv6\"
}
";

#[test]
fn nft_listing_v4() {
    assert_eq!(
        nft_table_listing(Family::Ipv4, set_v4().family(Family::Ipv4)),
        NFT_V4
    );
}

#[test]
fn nft_listing_v6_masq_only_without_fully_random() {
    let set = RuleSet::new().with_masq(masq(NET6, POD6, false)).unwrap();
    let expected = "table ip6 flannel-ipv6 {
\tcomment \"rules for flannel-ipv6\"
\tchain postrtg {
\t\tcomment \"chain to manage traffic masquerading by flannel\"
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark 0x00004000 return
\t\tip6 saddr 2001:db8:42:5::/64 ip6 daddr 2001:db8:42::/56 return
\t\tip6 saddr 2001:db8:42::/56 ip6 daddr 2001:db8:42:5::/64 return
\t\tip6 saddr != 2001:db8:42:5::/64 ip6 daddr 2001:db8:42::/56 return
\t\tip6 saddr 2001:db8:42::/56 ip6 daddr != ff00::/8 masquerade
\t\tip6 saddr != 2001:db8:42::/56 ip6 daddr 2001:db8:42::/56 masquerade
\t}
}
";
    assert_eq!(
        nft_table_listing(Family::Ipv6, set.family(Family::Ipv6)),
        expected
    );
}

#[test]
fn nft_script_replaces_both_tables_atomically() {
    let expected = format!(
        "add table ip flannel-ipv4\ndelete table ip flannel-ipv4\n{NFT_V4}\
         add table ip6 flannel-ipv6\ndelete table ip6 flannel-ipv6\n{NFT_V6_EMPTY}"
    );
    assert_eq!(nft_ruleset_script(&set_v4()), expected);
    assert_eq!(
        nft_table_script(Family::Ipv6, None),
        format!("add table ip6 flannel-ipv6\ndelete table ip6 flannel-ipv6\n{NFT_V6_EMPTY}")
    );
}

#[test]
fn nft_delete_and_table_parsing() {
    assert_eq!(
        nft_delete_script(&[Family::Ipv4, Family::Ipv6]),
        "delete table ip flannel-ipv4\ndelete table ip6 flannel-ipv6\n"
    );
    let tables =
        "table ip nat\ntable ip6 flannel-ipv6\ntable inet flannel-ipv4\ntable ip flannel-ipv4\n";
    assert_eq!(parse_nft_tables(tables), [Family::Ipv6, Family::Ipv4]);
    assert!(parse_nft_tables("table ip filter\n").is_empty());
}

#[test]
fn nft_normalization_ignores_whitespace_only() {
    assert_eq!(
        normalize_nft("table ip x {\n\n  chain  a {\t\n}\n"),
        ["table ip x {", "chain a {", "}"]
    );
    assert_ne!(
        normalize_nft("ip saddr 1.2.3.0/24 accept"),
        normalize_nft("ip saddr 1.2.4.0/24 accept")
    );
}

#[test]
fn rule_set_validation_and_normalisation() {
    let err = MasqParams::new(NET4.parse().unwrap(), POD6.parse().unwrap(), true).unwrap_err();
    assert!(matches!(err, RuleError::FamilyMismatch { .. }));
    // Host bits are dropped, as iptables and nft print prefixes.
    let p = MasqParams::new(
        "198.18.0.1/16".parse().unwrap(),
        "198.18.5.1/24".parse().unwrap(),
        true,
    )
    .unwrap();
    assert_eq!(p.network.to_string(), NET4);
    assert_eq!(p.pod_subnet.to_string(), POD4);
    // with_masq re-validates a hand-built MasqParams.
    let bad = MasqParams {
        network: NET4.parse().unwrap(),
        pod_subnet: POD6.parse().unwrap(),
        random_fully: true,
    };
    assert!(RuleSet::new().with_masq(bad).is_err());

    let set = set_v4();
    assert!(!set.is_empty());
    assert!(RuleSet::new().is_empty());
    assert_eq!(
        set.families().map(|(f, _)| f).collect::<Vec<_>>(),
        [Family::Ipv4]
    );
    let plain = set.restrict_random_fully(|_| false);
    assert!(
        !plain
            .family(Family::Ipv4)
            .unwrap()
            .masq
            .as_ref()
            .unwrap()
            .random_fully
    );
    let kept = set.restrict_random_fully(|_| true);
    assert_eq!(kept, set);
}
