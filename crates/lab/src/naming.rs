//! Names: lab names, the roles of a lab's namespaces and the namespace naming scheme (pure).
//!
//! Every namespace of lab `<name>` is called `frslab-<name>-<role>`:
//!
//! | role | namespace | what |
//! |---|---|---|
//! | `sw` | `frslab-<name>-sw` | the switch: bridge `br0` joining every host and etcd |
//! | `etcd` | `frslab-<name>-etcd` | etcd on `192.0.2.254` |
//! | `h<n>` | `frslab-<name>-h<n>` | host `n`: `eth0` = `192.0.2.<n>/24`, flanneld |
//! | `h<n>-p<k>` | `frslab-<name>-h<n>-p<k>` | pod `k` of host `n` |
//!
//! Lab names are `[a-z0-9_]`, so the `-` after the name ends it: the namespaces of lab `a`
//! (prefix `frslab-a-`) can never be mistaken for those of lab `a_b` or `ab`. Interface names
//! inside the namespaces (`br0`, `h<n>`, `etcd`, `eth0`) need no lab prefix and stay far below
//! the kernel's 15-character limit.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// First component of every namespace a lab creates.
pub const NS_PREFIX: &str = "frslab";
/// Longest lab name.
pub const MAX_NAME_LEN: usize = 20;
/// Most hosts in one lab (`192.0.2.1` … `192.0.2.200`; etcd is `192.0.2.254`).
pub const MAX_HOSTS: u8 = 200;
/// Most pods per host.
pub const MAX_PODS: u8 = 50;

/// A validated lab name: 1 to [`MAX_NAME_LEN`] characters from `a-z`, `0-9` and `_`, starting
/// with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabName(String);

impl TryFrom<String> for LabName {
    type Error = LabError;
    fn try_from(s: String) -> Result<LabName> {
        LabName::new(&s)
    }
}

impl From<LabName> for String {
    fn from(n: LabName) -> String {
        n.0
    }
}

impl LabName {
    /// Checks `name` against the rules above.
    pub fn new(name: &str) -> Result<LabName> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if name.len() > MAX_NAME_LEN || !first_ok || !name.chars().all(ok_char) {
            return Err(LabError::Invalid(format!(
                "bad lab name {name:?}: use 1 to {MAX_NAME_LEN} characters from a-z, 0-9 and _, \
                 starting with a letter or digit"
            )));
        }
        Ok(LabName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `frslab-<name>-`: what every namespace of this lab starts with.
    pub fn ns_prefix(&self) -> String {
        format!("{NS_PREFIX}-{}-", self.0)
    }

    /// The namespace of `role` in this lab.
    pub fn ns(&self, role: Role) -> String {
        format!("{}{role}", self.ns_prefix())
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a namespace is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Pod `k` (second) of host `n` (first).
    Pod(u8, u8),
    /// Host `n`.
    Host(u8),
    /// etcd.
    Etcd,
    /// The switch.
    Switch,
}

impl Role {
    /// Parses a role as written in namespace names and on the command line: `sw`, `etcd`,
    /// `h<n>`, `h<n>-p<k>` (numbers without leading zeros, from 1).
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "sw" => return Some(Role::Switch),
            "etcd" => return Some(Role::Etcd),
            _ => {}
        }
        let rest = text.strip_prefix('h')?;
        let (host, pod) = match rest.split_once("-p") {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let n = parse_number(host)?;
        match pod {
            None => Some(Role::Host(n)),
            Some(p) => Some(Role::Pod(n, parse_number(p)?)),
        }
    }

    /// A sort key for showing roles: hosts each followed by their pods, then etcd, then the
    /// switch.
    pub fn display_key(&self) -> (u8, u8, u8) {
        match self {
            Role::Host(n) => (0, *n, 0),
            Role::Pod(n, k) => (0, *n, *k),
            Role::Etcd => (1, 0, 0),
            Role::Switch => (2, 0, 0),
        }
    }

    /// The order in which namespaces are deleted: pods, hosts, etcd, switch.
    pub fn teardown_rank(&self) -> u8 {
        match self {
            Role::Pod(..) => 0,
            Role::Host(_) => 1,
            Role::Etcd => 2,
            Role::Switch => 3,
        }
    }
}

fn parse_number(text: &str) -> Option<u8> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| *n > 0)
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Switch => f.write_str("sw"),
            Role::Etcd => f.write_str("etcd"),
            Role::Host(n) => write!(f, "h{n}"),
            Role::Pod(n, k) => write!(f, "h{n}-p{k}"),
        }
    }
}

/// The name of host `n` (`h<n>`).
pub fn host_name(n: u8) -> String {
    Role::Host(n).to_string()
}

/// The name of pod `k` on host `n` (`h<n>-p<k>`).
pub fn pod_name(n: u8, k: u8) -> String {
    Role::Pod(n, k).to_string()
}

/// Splits a namespace name made by a lab into (lab name, role); `None` for anything else.
pub fn parse_ns_name(ns: &str) -> Option<(LabName, Role)> {
    let rest = ns.strip_prefix(NS_PREFIX)?.strip_prefix('-')?;
    let (name, role) = rest.split_once('-')?;
    Some((LabName::new(name).ok()?, Role::parse(role)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_are_checked() {
        for good in ["a", "demo", "lab_2", "0x", "abcdefghijklmnopqrst"] {
            assert_eq!(LabName::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "_a",
            "A",
            "a-b",
            "a b",
            "a.b",
            "abcdefghijklmnopqrstu",
            "é",
        ] {
            assert!(LabName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn namespaces_are_named_and_parsed_back() {
        let lab = LabName::new("demo").unwrap();
        assert_eq!(lab.ns_prefix(), "frslab-demo-");
        let cases = [
            (Role::Switch, "frslab-demo-sw"),
            (Role::Etcd, "frslab-demo-etcd"),
            (Role::Host(3), "frslab-demo-h3"),
            (Role::Pod(12, 2), "frslab-demo-h12-p2"),
        ];
        for (role, ns) in cases {
            assert_eq!(lab.ns(role), ns);
            assert_eq!(parse_ns_name(ns), Some((lab.clone(), role)));
        }
        assert_eq!(host_name(7), "h7");
        assert_eq!(pod_name(7, 1), "h7-p1");
    }

    #[test]
    fn foreign_namespaces_are_not_parsed() {
        for ns in [
            "frs-123-4-x-h1",
            "frsbench123-h1",
            "frslab-demo",
            "frslab-demo-",
            "frslab-demo-h0",
            "frslab-demo-h01",
            "frslab-demo-h1-p",
            "frslab-demo-h1-p0",
            "frslab-demo-h1-x2",
            "frslab-demo-h256",
            "frslab-de-mo-h1",
            "frslab-Demo-h1",
            "frslabx-demo-h1",
            "cni-1234",
        ] {
            assert_eq!(parse_ns_name(ns), None, "{ns}");
        }
    }

    #[test]
    fn prefixes_of_different_labs_never_overlap() {
        let a = LabName::new("a").unwrap();
        let ab = LabName::new("a_b").unwrap();
        assert!(!ab.ns(Role::Host(1)).starts_with(&a.ns_prefix()));
        assert!(!a.ns(Role::Host(1)).starts_with(&ab.ns_prefix()));
    }

    #[test]
    fn targets_parse() {
        assert_eq!(Role::parse("h1"), Some(Role::Host(1)));
        assert_eq!(Role::parse("h1-p2"), Some(Role::Pod(1, 2)));
        assert_eq!(Role::parse("etcd"), Some(Role::Etcd));
        assert_eq!(Role::parse("sw"), Some(Role::Switch));
        assert_eq!(Role::parse("p1"), None);
        assert_eq!(Role::parse("h"), None);
        let mut roles = vec![Role::Switch, Role::Host(1), Role::Pod(1, 1), Role::Etcd];
        roles.sort_by_key(Role::teardown_rank);
        let mut shown = vec![Role::Etcd, Role::Host(10), Role::Pod(2, 1), Role::Host(2)];
        shown.sort_by_key(Role::display_key);
        assert_eq!(
            shown,
            vec![Role::Host(2), Role::Pod(2, 1), Role::Host(10), Role::Etcd]
        );
        assert_eq!(
            roles,
            vec![Role::Pod(1, 1), Role::Host(1), Role::Etcd, Role::Switch]
        );
    }
}
