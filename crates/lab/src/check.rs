//! `check`: pinging every ordered pair of pods (a few pings each, several pairs at once) and
//! collecting the [`Matrix`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::error::{LabError, Result};
use crate::lab::{Lab, Progress};
use crate::matrix::{plan, Counts, Endpoint, Matrix, PairResult, PairStatus, Plan};
use crate::naming::LabName;
use crate::spec::Backend;
use crate::state::LabState;
use flannel_sandbox::probe::{parse_ping, ping_command};
use flannel_sandbox::{cmd, wait};

/// Echo requests per pair.
pub const PINGS: u32 = 3;
/// Pairs pinged at the same time.
const PARALLEL: usize = 8;
/// Time limit of one ping run (ping itself ends about 1.4 s after it starts: 3 requests
/// 0.2 s apart, then at most 1 s for the last reply); both stretch with
/// `FLANNEL_TEST_TIME_SCALE` (in the Debian-kernel guest).
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A pair that got no reply is pinged once more, for longer, before it counts as failed:
/// the first packet to a WireGuard peer starts a handshake, and an initiation that arrives
/// before the other host knows its peer is dropped and sent again only after WireGuard's
/// REKEY_TIMEOUT (5 s), longer than the first run waits. 7 requests 1 s apart cover that.
const RETRY_PINGS: u32 = 7;
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// The result of `flannelctl lab check`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The lab.
    pub lab: String,
    /// Its backend.
    pub backend: Backend,
    /// No pair failed.
    pub ok: bool,
    /// Pair counts.
    pub counts: Counts,
    /// Pods without an address (not part of the matrix).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unattached: Vec<String>,
    /// The matrix.
    #[serde(flatten)]
    pub matrix: Matrix,
}

impl Lab {
    /// Pings every ordered pair of the lab's pods. With the `alloc` backend, pairs on
    /// different hosts are not tested (it programs no routes between hosts).
    pub fn check(&self, name: &LabName, progress: &mut dyn Progress) -> Result<CheckReport> {
        let state = self.load(name)?;
        check_state(&state, progress)
    }
}

/// [`Lab::check`] on a loaded state.
pub fn check_state(state: &LabState, progress: &mut dyn Progress) -> Result<CheckReport> {
    let mut endpoints = Vec::new();
    let mut namespaces = Vec::new();
    let mut unattached = Vec::new();
    for p in &state.pods {
        match p.ip {
            Some(ip) => {
                endpoints.push(Endpoint {
                    name: p.name.clone(),
                    host: p.host,
                    ip,
                });
                namespaces.push(p.ns.clone());
            }
            None => unattached.push(p.name.clone()),
        }
    }
    let backend = state.spec.backend;
    let jobs = plan(&endpoints, backend.connects_hosts());
    let to_ping = jobs.iter().filter(|j| matches!(j, Plan::Ping(..))).count();
    progress.step(
        1,
        1,
        &format!("pinging {to_ping} pod pairs ({PINGS} pings each, {PARALLEL} pairs at a time)"),
    );
    let results = run_pings(&endpoints, &namespaces, &jobs)?;
    let matrix = Matrix {
        pods: endpoints.iter().map(|e| e.name.clone()).collect(),
        pairs: results,
    };
    let counts = matrix.counts();
    Ok(CheckReport {
        lab: state.spec.name.to_string(),
        backend,
        ok: counts.failed == 0 && unattached.is_empty(),
        counts,
        unattached,
        matrix,
    })
}

fn run_pings(
    endpoints: &[Endpoint],
    namespaces: &[String],
    jobs: &[Plan],
) -> Result<Vec<PairResult>> {
    let queue: Mutex<VecDeque<(usize, &Plan)>> = Mutex::new(jobs.iter().enumerate().collect());
    let results: Mutex<Vec<Option<PairResult>>> = Mutex::new(vec![None; jobs.len()]);
    let ep = |i: usize| (endpoints[i].name.as_str(), endpoints[i].ip);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(jobs.len()) {
            scope.spawn(|| loop {
                if wait::interrupted() {
                    return;
                }
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop_front();
                let Some((index, job)) = next else {
                    return;
                };
                let result = match job {
                    Plan::Skip(a, b) => PairResult::skipped(
                        ep(*a),
                        ep(*b),
                        "the alloc backend programs no routes between hosts",
                    ),
                    Plan::Ping(a, b) => ping_pair(&namespaces[*a], ep(*a), ep(*b)),
                };
                results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)[index] = Some(result);
            });
        }
    });
    wait::check_interrupt()?;
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.ok_or_else(|| LabError::unexpected("the ping workers", "a pair was not run")))
        .collect()
}

fn ping_pair(
    from_ns: &str,
    from: (&str, std::net::Ipv4Addr),
    to: (&str, std::net::Ipv4Addr),
) -> PairResult {
    let first = ping_once(
        from_ns,
        from,
        to,
        (PINGS, Duration::from_millis(200), PING_TIMEOUT),
    );
    if first.status != PairStatus::Fail || wait::interrupted() {
        return first;
    }
    ping_once(
        from_ns,
        from,
        to,
        (RETRY_PINGS, RETRY_INTERVAL, RETRY_TIMEOUT),
    )
}

/// One ping run of `(count, interval, time limit)`.
fn ping_once(
    from_ns: &str,
    from: (&str, std::net::Ipv4Addr),
    to: (&str, std::net::Ipv4Addr),
    (count, interval, limit): (u32, Duration, Duration),
) -> PairResult {
    let ping = ping_command(from_ns, to.1.into(), count, interval);
    match cmd::run(ping, None, limit * cmd::time_scale()) {
        Ok(out) => {
            let stats = parse_ping(&out.stdout);
            let error = match stats {
                Some(_) => None,
                None => Some(if out.stderr.trim().is_empty() {
                    format!("ping printed no summary ({})", out.status)
                } else {
                    out.stderr.trim().to_owned()
                }),
            };
            PairResult::from_ping(from, to, stats, error)
        }
        Err(e) => PairResult::from_ping(from, to, None, Some(e.to_string())),
    }
}
