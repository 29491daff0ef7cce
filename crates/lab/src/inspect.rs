//! `status` and `list`: what a lab looks like right now (state file + live probes: processes,
//! namespaces, `subnet.env` files, the leases in etcd), as data for tables or JSON.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use flannel_model::lease::{LeaseAttrs, SubnetKey};
use flannel_model::subnet_env::SubnetEnv;
use serde::Serialize;

use crate::build::etcdctl;
use crate::error::Result;
use crate::lab::{all_lab_names, lab_namespaces, Lab};
use crate::render::Table;
use crate::spec::{Backend, ETCD_PREFIX};
use crate::state::{LabState, Phase, ProcRecord};
use flannel_sandbox::{netns, process};

/// A process of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcStatus {
    /// Its pid (as recorded).
    pub pid: Option<u32>,
    /// Whether it is running.
    pub running: bool,
}

impl ProcStatus {
    fn of(p: Option<&ProcRecord>) -> ProcStatus {
        ProcStatus {
            pid: p.map(|p| p.pid),
            running: p.is_some_and(process::is_alive),
        }
    }

    /// `pid 4242, running`, `pid 4242, exited`, `not started`.
    pub fn describe(&self) -> String {
        match (self.pid, self.running) {
            (Some(pid), true) => format!("pid {pid}, running"),
            (Some(pid), false) => format!("pid {pid}, EXITED"),
            (None, _) => "not started".to_owned(),
        }
    }
}

/// One host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    /// `h<n>`.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `eth0`'s address.
    pub public_ip: Ipv4Addr,
    /// `FLANNEL_SUBNET` (network form), once written.
    pub subnet: Option<String>,
    /// `FLANNEL_MTU`, once written.
    pub mtu: Option<u32>,
    /// flanneld.
    pub flanneld: ProcStatus,
    /// flanneld's log.
    pub log: PathBuf,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodStatus {
    /// `h<n>-p<k>`.
    pub name: String,
    /// Its host.
    pub host: String,
    /// Its namespace.
    pub namespace: String,
    /// Its address.
    pub ip: Option<Ipv4Addr>,
}

/// One subnet lease in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseStatus {
    /// The subnet.
    pub subnet: String,
    /// The lease's `PublicIP`.
    pub public_ip: Ipv4Addr,
    /// The lease's `BackendType`.
    pub backend_type: String,
    /// The host with that public IP.
    pub host: Option<String>,
}

/// A lab as `flannelctl lab status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabStatus {
    /// The name.
    pub name: String,
    /// `running`, `degraded: …`, `incomplete: …`.
    pub health: String,
    /// flanneld's backend.
    pub backend: Backend,
    /// The pod network.
    pub network: String,
    /// The lab's directory (state, logs).
    pub dir: PathBuf,
    /// etcd's client URL.
    pub etcd_endpoint: String,
    /// etcd.
    pub etcd: ProcStatus,
    /// etcd's log.
    pub etcd_log: PathBuf,
    /// The hosts.
    pub hosts: Vec<HostStatus>,
    /// The pods.
    pub pods: Vec<PodStatus>,
    /// The leases in etcd (empty when etcd could not be asked, see `leases_error`).
    pub leases: Vec<LeaseStatus>,
    /// Why the leases could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases_error: Option<String>,
}

/// One line of `flannelctl lab list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabSummary {
    /// The name.
    pub name: String,
    /// `running`, `degraded: …`, `incomplete: …`, `leftovers (no state)`.
    pub health: String,
    /// Backend, if known.
    pub backend: Option<Backend>,
    /// Hosts, if known.
    pub hosts: Option<u8>,
    /// Pods per host, if known.
    pub pods: Option<u8>,
    /// Namespaces present.
    pub namespaces: usize,
}

/// `running`, or what is wrong.
pub fn health(state: &LabState) -> String {
    if state.phase == Phase::Building {
        return if process::pid_exists(state.builder_pid) && state.builder_pid != std::process::id()
        {
            format!("building (flannelctl pid {})", state.builder_pid)
        } else {
            "incomplete: its `up` died; `down` removes it".to_owned()
        };
    }
    let mut problems = Vec::new();
    if !state.etcd.process.as_ref().is_some_and(process::is_alive) {
        problems.push("etcd is not running".to_owned());
    }
    for h in &state.hosts {
        if !h.flanneld.as_ref().is_some_and(process::is_alive) {
            problems.push(format!("flanneld on {} is not running", h.name));
        }
    }
    let missing = state
        .namespaces
        .iter()
        .filter(|ns| !netns::exists(ns))
        .count();
    if missing > 0 {
        problems.push(format!("{missing} namespaces are gone"));
    }
    if problems.is_empty() {
        "running".to_owned()
    } else {
        format!("degraded: {}", problems.join(", "))
    }
}

impl Lab {
    /// The lab's status.
    pub fn status(&self, name: &crate::naming::LabName) -> Result<LabStatus> {
        let state = self.load(name)?;
        let hosts = state
            .hosts
            .iter()
            .map(|h| {
                let env = SubnetEnv::read(&h.subnet_file).ok().flatten();
                HostStatus {
                    name: h.name.clone(),
                    namespace: h.ns.clone(),
                    public_ip: h.ip,
                    subnet: env
                        .as_ref()
                        .and_then(|e| e.subnet)
                        .map(|s| s.trunc().to_string()),
                    mtu: env.as_ref().and_then(|e| e.mtu),
                    flanneld: ProcStatus::of(h.flanneld.as_ref()),
                    log: h.log.clone(),
                }
            })
            .collect();
        let pods = state
            .pods
            .iter()
            .map(|p| PodStatus {
                name: p.name.clone(),
                host: crate::naming::host_name(p.host),
                namespace: p.ns.clone(),
                ip: p.ip,
            })
            .collect();
        let etcd = ProcStatus::of(state.etcd.process.as_ref());
        let (leases, leases_error) = if etcd.running {
            match read_leases(&state) {
                Ok(l) => (l, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            }
        } else {
            (Vec::new(), Some("etcd is not running".to_owned()))
        };
        Ok(LabStatus {
            name: name.to_string(),
            health: health(&state),
            backend: state.spec.backend,
            network: state.spec.network.to_string(),
            dir: state.dir.clone(),
            etcd_endpoint: state.etcd.endpoint.clone(),
            etcd,
            etcd_log: state.etcd.log.clone(),
            hosts,
            pods,
            leases,
            leases_error,
        })
    }

    /// Every lab on the machine.
    pub fn list(&self) -> Result<Vec<LabSummary>> {
        let mut out = Vec::new();
        for name in all_lab_names(self.paths())? {
            let namespaces = lab_namespaces(&name)?.len();
            let summary = match LabState::load(self.paths(), &name) {
                Ok(Some(s)) => LabSummary {
                    name: name.to_string(),
                    health: health(&s),
                    backend: Some(s.spec.backend),
                    hosts: Some(s.spec.hosts),
                    pods: Some(s.spec.pods),
                    namespaces,
                },
                Ok(None) => LabSummary {
                    name: name.to_string(),
                    health: "leftovers (no state); `down` removes them".to_owned(),
                    backend: None,
                    hosts: None,
                    pods: None,
                    namespaces,
                },
                Err(e) => LabSummary {
                    name: name.to_string(),
                    health: format!("unreadable state ({e}); `down` removes it"),
                    backend: None,
                    hosts: None,
                    pods: None,
                    namespaces,
                },
            };
            out.push(summary);
        }
        Ok(out)
    }
}

/// The subnet leases in the lab's etcd, sorted by subnet.
fn read_leases(state: &LabState) -> Result<Vec<LeaseStatus>> {
    let dir = format!("{ETCD_PREFIX}/subnets/");
    let out = etcdctl(&state.etcd.ns, &["get", "--prefix", &dir])?;
    let mut leases = parse_leases(&out);
    for l in &mut leases {
        l.host = state
            .hosts
            .iter()
            .find(|h| h.ip == l.public_ip)
            .map(|h| h.name.clone());
    }
    Ok(leases)
}

/// Leases from `etcdctl get --prefix <prefix>/subnets/` output (key line, value line);
/// entries that do not parse are skipped.
pub fn parse_leases(text: &str) -> Vec<LeaseStatus> {
    let lines: Vec<&str> = text.lines().collect();
    let mut leases: Vec<(SubnetKey, LeaseStatus)> = lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .filter_map(|c| {
            let key = SubnetKey::from_key_path(c[0], ETCD_PREFIX).ok()?;
            let attrs = LeaseAttrs::from_json(c[1].as_bytes()).ok()?;
            // An IPv6-only lease shows its IPv6 subnet.
            let subnet = match (key.ipv4_net(), key.ipv6) {
                (None, Some(v6)) => v6.to_string(),
                _ => key.ipv4.to_string(),
            };
            Some((
                key,
                LeaseStatus {
                    subnet,
                    public_ip: attrs.public_ip,
                    backend_type: attrs.backend_type,
                    host: None,
                },
            ))
        })
        .collect();
    leases.sort_by_key(|(k, _)| (k.ipv4, k.ipv6));
    leases.into_iter().map(|(_, l)| l).collect()
}

/// The status as text: a header, then the hosts, pods and leases tables.
pub fn render_status(s: &LabStatus) -> String {
    let mut out = format!(
        "lab {}: {}\n  backend {}, network {}, etcd {} ({})\n  files in {}\n\nhosts\n",
        s.name,
        s.health,
        s.backend,
        s.network,
        s.etcd_endpoint,
        s.etcd.describe(),
        s.dir.display()
    );
    let mut hosts = Table::new(&["HOST", "PUBLIC IP", "SUBNET", "MTU", "FLANNELD"]);
    for h in &s.hosts {
        hosts.row(vec![
            h.name.clone(),
            h.public_ip.to_string(),
            h.subnet.clone().unwrap_or_else(|| "-".into()),
            h.mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            h.flanneld.describe(),
        ]);
    }
    out.push_str(&hosts.render());
    out.push_str("\npods\n");
    let mut pods = Table::new(&["POD", "HOST", "IP", "NAMESPACE"]);
    for p in &s.pods {
        pods.row(vec![
            p.name.clone(),
            p.host.clone(),
            p.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            p.namespace.clone(),
        ]);
    }
    if s.pods.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&pods.render());
    }
    out.push_str("\nleases in etcd\n");
    match &s.leases_error {
        Some(e) => out.push_str(&format!("  (cannot read them: {e})\n")),
        None => {
            let mut leases = Table::new(&["SUBNET", "PUBLIC IP", "BACKEND", "HOST"]);
            for l in &s.leases {
                leases.row(vec![
                    l.subnet.clone(),
                    l.public_ip.to_string(),
                    if l.backend_type.is_empty() {
                        "-".into()
                    } else {
                        l.backend_type.clone()
                    },
                    l.host.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            out.push_str(&leases.render());
        }
    }
    out
}

/// The list as a table.
pub fn render_list(labs: &[LabSummary]) -> String {
    if labs.is_empty() {
        return "no labs\n".to_owned();
    }
    let mut t = Table::new(&[
        "LAB",
        "BACKEND",
        "HOSTS",
        "PODS/HOST",
        "NAMESPACES",
        "STATE",
    ]);
    let opt = |v: Option<u8>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    for l in labs {
        t.row(vec![
            l.name.clone(),
            l.backend
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            opt(l.hosts),
            opt(l.pods),
            l.namespaces.to_string(),
            l.health.clone(),
        ]);
    }
    t.render()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_read_from_etcdctl_output() {
        let text = "/coreos.com/network/subnets/198.18.9.0-24\n\
            {\"PublicIP\":\"192.0.2.2\",\"PublicIPv6\":null,\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"aa:bb:cc:dd:ee:ff\"}}\n\
            /coreos.com/network/subnets/198.18.10.0-24\n\
            {\"PublicIP\":\"192.0.2.1\",\"PublicIPv6\":null,\"BackendType\":\"vxlan\"}\n\
            /coreos.com/network/subnets/garbage\n\
            {}\n";
        let leases = parse_leases(text);
        assert_eq!(
            leases,
            vec![
                LeaseStatus {
                    subnet: "198.18.9.0/24".into(),
                    public_ip: Ipv4Addr::new(192, 0, 2, 2),
                    backend_type: "vxlan".into(),
                    host: None
                },
                LeaseStatus {
                    subnet: "198.18.10.0/24".into(),
                    public_ip: Ipv4Addr::new(192, 0, 2, 1),
                    backend_type: "vxlan".into(),
                    host: None
                },
            ]
        );
        assert!(parse_leases("").is_empty());
        // An IPv6-only lease (Go's key with the empty IPv4 part) shows its IPv6 subnet.
        let v6 = "/coreos.com/network/subnets/0.0.0.0-0&2001:db8:100:2::-64\n\
            {\"PublicIP\":\"0.0.0.0\",\"PublicIPv6\":\"2001:db8::2\",\"BackendType\":\"host-gw\"}\n";
        assert_eq!(parse_leases(v6)[0].subnet, "2001:db8:100:2::/64");
    }

    #[test]
    fn status_golden() {
        let s = LabStatus {
            name: "demo".into(),
            health: "running".into(),
            backend: Backend::Vxlan,
            network: "198.18.0.0/16".into(),
            dir: "/run/flannel-rs/lab/demo".into(),
            etcd_endpoint: "http://192.0.2.254:2379".into(),
            etcd: ProcStatus {
                pid: Some(10),
                running: true,
            },
            etcd_log: "/run/flannel-rs/lab/demo/etcd.log".into(),
            hosts: vec![HostStatus {
                name: "h1".into(),
                namespace: "frslab-demo-h1".into(),
                public_ip: Ipv4Addr::new(192, 0, 2, 1),
                subnet: Some("198.18.9.0/24".into()),
                mtu: Some(1450),
                flanneld: ProcStatus {
                    pid: Some(11),
                    running: false,
                },
                log: "/run/flannel-rs/lab/demo/h1/flanneld.log".into(),
            }],
            pods: vec![PodStatus {
                name: "h1-p1".into(),
                host: "h1".into(),
                namespace: "frslab-demo-h1-p1".into(),
                ip: Some(Ipv4Addr::new(198, 18, 9, 2)),
            }],
            leases: vec![LeaseStatus {
                subnet: "198.18.9.0/24".into(),
                public_ip: Ipv4Addr::new(192, 0, 2, 1),
                backend_type: "vxlan".into(),
                host: Some("h1".into()),
            }],
            leases_error: None,
        };
        assert_eq!(
            render_status(&s),
            concat!(
                "lab demo: running\n",
                "  backend vxlan, network 198.18.0.0/16, etcd http://192.0.2.254:2379 (pid 10, running)\n",
                "  files in /run/flannel-rs/lab/demo\n",
                "\n",
                "hosts\n",
                "  HOST  PUBLIC IP  SUBNET         MTU   FLANNELD\n",
                "  h1    192.0.2.1  198.18.9.0/24  1450  pid 11, EXITED\n",
                "\n",
                "pods\n",
                "  POD    HOST  IP          NAMESPACE\n",
                "  h1-p1  h1    198.18.9.2  frslab-demo-h1-p1\n",
                "\n",
                "leases in etcd\n",
                "  SUBNET         PUBLIC IP  BACKEND  HOST\n",
                "  198.18.9.0/24  192.0.2.1  vxlan    h1\n",
            )
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["hosts"][0]["subnet"], "198.18.9.0/24");
        assert_eq!(json["backend"], "vxlan");
        assert!(json.get("leases_error").is_none());
    }

    #[test]
    fn list_golden() {
        let labs = vec![LabSummary {
            name: "old".into(),
            health: "leftovers (no state); `down` removes them".into(),
            backend: None,
            hosts: None,
            pods: None,
            namespaces: 4,
        }];
        assert_eq!(
            render_list(&labs),
            "  LAB  BACKEND  HOSTS  PODS/HOST  NAMESPACES  STATE\n  \
             old  -        -      -          4           leftovers (no state); `down` removes them\n"
        );
        assert_eq!(render_list(&[]), "no labs\n");
    }
}
