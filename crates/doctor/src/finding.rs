//! One problem found on a node: what kind, the evidence, the fix.

use serde::Serialize;

/// What a finding is about; its name is the word doctor prints first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// flanneld is not running or not ready.
    Flanneld,
    /// The subnet file is missing, unreadable or disagrees with the lease.
    SubnetEnv,
    /// The registry (etcd) could not be read, or holds no lease for this node.
    Lease,
    /// Our lease overlaps another host's, or another host advertises our address.
    Collision,
    /// The external interface is gone.
    Iface,
    /// The backend's device is missing or wrong.
    Link,
    /// A peer's route is missing or wrong.
    Route,
    /// A peer's neighbour (ARP) entry is missing or wrong.
    Neigh,
    /// A peer's FDB entry is missing or wrong.
    Fdb,
    /// An entry on our device belongs to no peer.
    Stale,
    /// A pod interface has a larger MTU than the tunnel carries.
    Mtu,
    /// vxlan tx checksum offload on a kernel with the known bug.
    Checksum,
    /// A local firewall rule drops the backend's port.
    Firewall,
    /// Strict reverse-path filtering on an interface the tunnel's traffic uses.
    RpFilter,
}

impl Kind {
    /// The kind's name as printed (`subnet.env`, `fdb`, `rp_filter`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Flanneld => "flanneld",
            Kind::SubnetEnv => "subnet.env",
            Kind::Lease => "lease",
            Kind::Collision => "collision",
            Kind::Iface => "iface",
            Kind::Link => "link",
            Kind::Route => "route",
            Kind::Neigh => "neigh",
            Kind::Fdb => "fdb",
            Kind::Stale => "stale",
            Kind::Mtu => "mtu",
            Kind::Checksum => "checksum",
            Kind::Firewall => "firewall",
            Kind::RpFilter => "rp_filter",
        }
    }
}

/// What `doctor --fix` can do about a finding by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AutoFix {
    /// `ethtool -K <dev> tx-checksum-ip-generic off`.
    TxChecksumOff {
        /// The device.
        dev: String,
    },
}

/// One problem, explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What it is about.
    pub kind: Kind,
    /// What is wrong, in one short sentence.
    pub problem: String,
    /// What was seen that shows it.
    pub evidence: String,
    /// What to do.
    pub fix: String,
    /// What `--fix` can do by itself, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_fix: Option<AutoFix>,
}

impl Finding {
    /// A finding without an automatic fix.
    pub fn new(
        kind: Kind,
        problem: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            kind,
            problem: problem.into(),
            evidence: evidence.into(),
            fix: fix.into(),
            auto_fix: None,
        }
    }

    /// Three lines: `[kind] problem`, `  seen: evidence`, `  fix:  fix`.
    pub fn render(&self) -> String {
        format!(
            "[{}] {}\n  seen: {}\n  fix:  {}\n",
            self.kind.as_str(),
            self.problem,
            self.evidence,
            self.fix
        )
    }
}

/// doctor's whole text: every finding, then a one-line verdict.
pub fn render_all(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&f.render());
    }
    if findings.is_empty() {
        out.push_str("healthy: no problem found\n");
    } else {
        let n = findings.len();
        out.push_str(&format!(
            "{n} problem{} found\n",
            if n == 1 { "" } else { "s" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_kind_evidence_and_fix() {
        let f = Finding::new(Kind::SubnetEnv, "a", "b", "c");
        assert_eq!(f.render(), "[subnet.env] a\n  seen: b\n  fix:  c\n");
        assert_eq!(
            render_all(&[f.clone(), f]).lines().last(),
            Some("2 problems found")
        );
        assert_eq!(render_all(&[]), "healthy: no problem found\n");
    }
}
