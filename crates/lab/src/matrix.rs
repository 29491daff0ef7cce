//! The all-pairs connectivity matrix (pure): which pod pairs to test and how each went.

use std::net::Ipv4Addr;

use serde::Serialize;

use flannel_sandbox::probe::PingStats;

/// How one pair went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairStatus {
    /// At least one reply came back.
    Ok,
    /// No reply (or ping could not run).
    Fail,
    /// Not tested: the backend does not connect these pods.
    Skipped,
}

/// One ordered pair of pods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairResult {
    /// Source pod (`h1-p1`).
    pub from: String,
    /// Destination pod.
    pub to: String,
    /// Source address.
    pub from_ip: Ipv4Addr,
    /// Destination address.
    pub to_ip: Ipv4Addr,
    /// Outcome.
    pub status: PairStatus,
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
    /// Average round trip in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl PairResult {
    /// The result of a ping run (`None`: ping printed no summary; `error` says why).
    pub fn from_ping(
        from: (&str, Ipv4Addr),
        to: (&str, Ipv4Addr),
        stats: Option<PingStats>,
        error: Option<String>,
    ) -> PairResult {
        let (status, sent, received, rtt_ms) = match stats {
            Some(s) if s.received > 0 => (PairStatus::Ok, s.sent, s.received, s.rtt_avg_ms),
            Some(s) => (PairStatus::Fail, s.sent, 0, None),
            None => (PairStatus::Fail, 0, 0, None),
        };
        PairResult {
            from: from.0.to_owned(),
            to: to.0.to_owned(),
            from_ip: from.1,
            to_ip: to.1,
            status,
            sent,
            received,
            rtt_ms,
            detail: if status == PairStatus::Fail {
                error
            } else {
                None
            },
        }
    }

    /// A pair that is not tested, with the reason.
    pub fn skipped(from: (&str, Ipv4Addr), to: (&str, Ipv4Addr), reason: &str) -> PairResult {
        PairResult {
            from: from.0.to_owned(),
            to: to.0.to_owned(),
            from_ip: from.1,
            to_ip: to.1,
            status: PairStatus::Skipped,
            sent: 0,
            received: 0,
            rtt_ms: None,
            detail: Some(reason.to_owned()),
        }
    }
}

/// Pair counts by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    /// Pairs that worked.
    pub ok: usize,
    /// Pairs that failed.
    pub failed: usize,
    /// Pairs not tested.
    pub skipped: usize,
}

/// Every ordered pair of distinct pods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matrix {
    /// Pod names, in display order.
    pub pods: Vec<String>,
    /// The pairs, row by row.
    pub pairs: Vec<PairResult>,
}

impl Matrix {
    /// The result for `from` → `to`, if tested.
    pub fn pair(&self, from: &str, to: &str) -> Option<&PairResult> {
        self.pairs.iter().find(|p| p.from == from && p.to == to)
    }

    /// Counts by outcome.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for p in &self.pairs {
            match p.status {
                PairStatus::Ok => c.ok += 1,
                PairStatus::Fail => c.failed += 1,
                PairStatus::Skipped => c.skipped += 1,
            }
        }
        c
    }

    /// No pair failed.
    pub fn all_ok(&self) -> bool {
        self.counts().failed == 0
    }
}

/// One pod as the matrix sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `h<n>-p<k>`.
    pub name: String,
    /// Its host's number.
    pub host: u8,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// What to do with one ordered pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Ping `to` from `from` (indexes into the endpoint list).
    Ping(usize, usize),
    /// Do not: pods on different hosts with a backend that connects no hosts.
    Skip(usize, usize),
}

/// The ordered pairs of distinct endpoints, row by row. With `connects_hosts == false` only
/// pods on the same host are pinged.
pub fn plan(endpoints: &[Endpoint], connects_hosts: bool) -> Vec<Plan> {
    let mut out = Vec::new();
    for (i, a) in endpoints.iter().enumerate() {
        for (j, b) in endpoints.iter().enumerate() {
            if i == j {
                continue;
            }
            if connects_hosts || a.host == b.host {
                out.push(Plan::Ping(i, j));
            } else {
                out.push(Plan::Skip(i, j));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ep(name: &str, host: u8, last: u8) -> Endpoint {
        Endpoint {
            name: name.into(),
            host,
            ip: Ipv4Addr::new(198, 18, host, last),
        }
    }

    #[test]
    fn plan_covers_every_ordered_pair_once() {
        let eps = [ep("h1-p1", 1, 2), ep("h1-p2", 1, 3), ep("h2-p1", 2, 2)];
        let p = plan(&eps, true);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], Plan::Ping(0, 1));
        assert_eq!(p[5], Plan::Ping(2, 1));
        let alloc = plan(&eps, false);
        assert_eq!(
            alloc,
            vec![
                Plan::Ping(0, 1),
                Plan::Skip(0, 2),
                Plan::Ping(1, 0),
                Plan::Skip(1, 2),
                Plan::Skip(2, 0),
                Plan::Skip(2, 1),
            ]
        );
    }

    #[test]
    fn ping_results_become_pairs() {
        let a = ("h1-p1", Ipv4Addr::new(198, 18, 1, 2));
        let b = ("h2-p1", Ipv4Addr::new(198, 18, 2, 2));
        let ok = PairResult::from_ping(
            a,
            b,
            Some(PingStats {
                sent: 3,
                received: 2,
                rtt_avg_ms: Some(0.3),
            }),
            None,
        );
        assert_eq!(ok.status, PairStatus::Ok);
        let lost = PairResult::from_ping(
            a,
            b,
            Some(PingStats {
                sent: 3,
                received: 0,
                rtt_avg_ms: None,
            }),
            Some("x".into()),
        );
        assert_eq!(lost.status, PairStatus::Fail);
        assert_eq!(lost.detail.as_deref(), Some("x"));
        let broken = PairResult::from_ping(a, b, None, Some("no summary".into()));
        assert_eq!((broken.status, broken.sent), (PairStatus::Fail, 0));
        let skipped = PairResult::skipped(a, b, "why");
        let m = Matrix {
            pods: vec!["h1-p1".into(), "h2-p1".into()],
            pairs: vec![ok, lost, broken, skipped],
        };
        assert_eq!(
            m.counts(),
            Counts {
                ok: 1,
                failed: 2,
                skipped: 1
            }
        );
        assert!(!m.all_ok());
        let json = serde_json::to_value(&m.pairs[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"from":"h1-p1","to":"h2-p1","from_ip":"198.18.1.2",
                "to_ip":"198.18.2.2","status":"ok","sent":3,"received":2,"rtt_ms":0.3})
        );
    }
}
