//! `flannelctl status` and `flannelctl doctor`: flanneld's own flags (same names, same
//! `FLANNELD_*` environment, parsed by flanneld's parser) plus `--json` (and `--fix` for
//! doctor). The facts come from [`crate::node`]; the findings from `flannel_doctor`.
//!
//! Exit codes: status 0 (1 when nothing could be gathered); doctor 0 only when no problem is
//! found, 1 otherwise, 2 for a bad command line.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use flannel_doctor::entries::{compare, EntryCheck, EntryState};
use flannel_doctor::facts::{Daemon, SubnetFile};
use flannel_doctor::finding::{render_all, AutoFix};
use flannel_doctor::{diagnose, Finding};
use flanneld_cli::cli::{self, CliError, Flags};
use serde::Serialize;

use flannel_doctor::NodeFacts;

use crate::node;

/// What the subcommand's own options are; the rest are flanneld's flags.
#[derive(Debug, Default)]
struct Own {
    json: bool,
    fix: bool,
}

const USAGE: &str = "usage: flannelctl status|doctor [--json] [--fix] [FLANNELD FLAGS...]
Reads what flanneld with the same flags reads (--etcd-endpoints, --subnet-file, --iface,
--healthz-port, ...; FLANNELD_* environment variables too). doctor --fix turns vxlan tx
checksum offload off where the kernel has the bug.
";

/// Split `args` into our options and flanneld's flags (parsed as flanneld parses them).
fn parse(args: &[String], allow_fix: bool) -> Result<(Own, Flags), ExitCode> {
    let mut own = Own::default();
    let mut rest = vec!["flanneld".to_owned()];
    for a in args {
        match a.as_str() {
            "--json" => own.json = true,
            "--fix" if allow_fix => own.fix = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Err(ExitCode::SUCCESS);
            }
            _ => rest.push(a.clone()),
        }
    }
    match cli::parse_from(rest) {
        Ok(flags) => {
            for w in &flags.env_warnings {
                eprintln!("flannelctl: {w}");
            }
            Ok((own, flags))
        }
        Err(CliError::Help(_)) => {
            print!("{USAGE}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("flannelctl: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `flannelctl status`.
pub fn status(args: &[String]) -> Result<ExitCode> {
    let (own, flags) = match parse(args, false) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let g = runtime()?.block_on(node::gather(&flags));
    let s = Status::of(&g);
    if own.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// `flannelctl doctor`.
pub fn doctor(args: &[String]) -> Result<ExitCode> {
    let (own, flags) = match parse(args, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let rt = runtime()?;
    let mut findings = diagnose(&rt.block_on(node::gather(&flags)));
    let mut fixed = Vec::new();
    if own.fix {
        for f in &findings {
            if let Some(AutoFix::TxChecksumOff { dev }) = &f.auto_fix {
                match node::disable_tx_checksum(dev) {
                    Ok(()) => fixed.push(format!("turned tx checksum offload off on {dev}")),
                    Err(e) => fixed.push(format!(
                        "could not turn tx checksum offload off on {dev}: {e}"
                    )),
                }
            }
        }
        if !fixed.is_empty() {
            findings = diagnose(&rt.block_on(node::gather(&flags)));
        }
    }
    if own.json {
        #[derive(Serialize)]
        struct Report<'a> {
            healthy: bool,
            findings: &'a [Finding],
            #[serde(skip_serializing_if = "Vec::is_empty")]
            fixed: Vec<String>,
        }
        let r = Report {
            healthy: findings.is_empty(),
            findings: &findings,
            fixed,
        };
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for line in &fixed {
            println!("fix: {line}");
        }
        print!("{}", render_all(&findings));
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What status shows (and prints as JSON).
#[derive(Debug, Serialize)]
struct Status {
    flanneld: String,
    iface: Option<String>,
    public_ip: Option<String>,
    backend: Option<String>,
    lease: Option<LeaseView>,
    subnet_file: String,
    subnet_env: String,
    peers: Vec<PeerView>,
}

#[derive(Debug, Serialize)]
struct LeaseView {
    subnet: String,
    /// Unix seconds; absent for a lease without TTL.
    expires: Option<u64>,
    /// Seconds from now.
    expires_in: Option<i64>,
    backend_type: String,
    backend_data: Option<String>,
}

#[derive(Debug, Serialize)]
struct PeerView {
    subnet: String,
    public_ip: String,
    /// Every wanted entry matches.
    ok: bool,
    entries: Vec<EntryCheck>,
}

impl Status {
    fn of(f: &NodeFacts) -> Status {
        let flanneld = match &f.daemon {
            Some(Daemon::Ready) => "ready".to_owned(),
            Some(Daemon::NotReady) => "running, not ready".to_owned(),
            Some(Daemon::NotRunning { addr, error }) => format!("not running ({addr}: {error})"),
            Some(Daemon::NotChecked) | None => "not checked (--healthz-port=0)".to_owned(),
        };
        let ext = f.ext_iface.as_ref().and_then(|e| e.as_ref().ok());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let lease = f.own_lease.as_ref().map(|l| {
            let expires = l
                .expiration
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            LeaseView {
                subnet: l.subnet.ipv4.to_string(),
                expires,
                expires_in: expires.map(|e| {
                    i64::try_from(e).unwrap_or(i64::MAX) - i64::try_from(now).unwrap_or(0)
                }),
                backend_type: l.attrs.backend_type.clone(),
                backend_data: l.attrs.backend_data.as_ref().map(|d| d.as_str().to_owned()),
            }
        });
        let subnet_env = match &f.subnet_env {
            Some(SubnetFile::Present(env)) => format!(
                "FLANNEL_SUBNET={} FLANNEL_MTU={}",
                env.subnet.map(|s| s.to_string()).unwrap_or_default(),
                env.mtu.map(|m| m.to_string()).unwrap_or_default()
            ),
            Some(SubnetFile::Missing) => "missing".to_owned(),
            Some(SubnetFile::Unreadable(e)) => format!("unreadable: {e}"),
            None => String::new(),
        };
        let empty = Default::default();
        let observed = f.observed.as_ref().unwrap_or(&empty);
        let peers = f
            .peers
            .iter()
            .map(|p| {
                let entries = compare(&p.want, observed);
                PeerView {
                    subnet: p.lease.subnet.ipv4.to_string(),
                    public_ip: p.lease.attrs.public_ip.to_string(),
                    ok: entries.iter().all(|e| e.state == EntryState::Ok),
                    entries,
                }
            })
            .collect();
        Status {
            flanneld,
            iface: ext.map(|e| format!("{} (mtu {})", e.name, e.mtu)),
            public_ip: ext.and_then(|e| e.public_ip).map(|ip| ip.to_string()),
            backend: f
                .backend
                .as_ref()
                .map(|b| format!("{} (pod mtu {})", b.name, b.pod_mtu)),
            lease,
            subnet_file: f.subnet_file.display().to_string(),
            subnet_env,
            peers,
        }
    }

    fn render(&self) -> String {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let mut out = format!(
            "flanneld:   {}\niface:      {}  public ip {}\nbackend:    {}\n",
            self.flanneld,
            or(&self.iface),
            or(&self.public_ip),
            or(&self.backend)
        );
        match &self.lease {
            Some(l) => {
                let expiry = match (l.expires, l.expires_in) {
                    (Some(at), Some(left)) => format!("expires in {} (unix {at})", duration(left)),
                    _ => "no TTL".to_owned(),
                };
                out.push_str(&format!(
                    "lease:      {}  {expiry}  {} {}\n",
                    l.subnet,
                    l.backend_type,
                    l.backend_data.clone().unwrap_or_default()
                ));
            }
            None => out.push_str("lease:      none\n"),
        }
        out.push_str(&format!(
            "subnet.env: {}  {}\npeers:      {}\n",
            self.subnet_file,
            self.subnet_env,
            self.peers.len()
        ));
        for p in &self.peers {
            let states: Vec<String> = p
                .entries
                .iter()
                .map(|e| {
                    let s = match &e.state {
                        EntryState::Ok => "ok".to_owned(),
                        EntryState::Missing => "MISSING".to_owned(),
                        EntryState::Wrong(have) => format!("WRONG ({have})"),
                    };
                    format!("{} {s}", e.kind.as_str())
                })
                .collect();
            out.push_str(&format!(
                "  {:<18} {:<15} {}\n",
                p.subnet,
                p.public_ip,
                states.join(", ")
            ));
        }
        out
    }
}

/// `23h59m`, `5m3s`, `-10s` (already expired).
fn duration(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    if h > 0 {
        format!("{sign}{h}h{m:02}m")
    } else if m > 0 {
        format!("{sign}{m}m{sec:02}s")
    } else {
        format!("{sign}{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_options_and_flanneld_flags_are_split() {
        let args: Vec<String> = ["--json", "--fix", "--iface=eth0", "-subnet-file", "/x"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let (own, flags) = parse(&args, true).expect("parses");
        assert!(own.json && own.fix);
        assert_eq!(flags.iface, ["eth0"]);
        assert_eq!(flags.subnet_file, std::path::Path::new("/x"));
        // status has no --fix: it goes to flanneld's parser, which refuses it.
        assert!(parse(&args, false).is_err());
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(duration(86_340), "23h59m");
        assert_eq!(duration(303), "5m03s");
        assert_eq!(duration(-10), "-10s");
    }
}
