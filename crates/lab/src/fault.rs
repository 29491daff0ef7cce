//! `fault`: break one host the way real nodes break, so that `flannelctl doctor` can be seen
//! (and tested) naming each problem. Every fault acts inside the host's namespace only.
//!
//! | kind | what it does |
//! | --- | --- |
//! | `stop-flanneld` | stops the host's flanneld (SIGTERM; its kernel state stays) |
//! | `del-fdb` | deletes the FDB entry for the first other host on `flannel.1` |
//! | `del-route` | deletes the route to the first other host's subnet |
//! | `pod-mtu` | sets `cni0` and every pod veth to MTU 1500 |
//! | `rm-subnet-env` | removes the host's `subnet.env` |
//! | `rp-filter` | sets `net.ipv4.conf.all.rp_filter=1` |
//! | `block-port` | drops udp 8472 (vxlan) in the INPUT chain |

use std::str::FromStr;
use std::time::Duration;

use flannel_sandbox::netns;
use flannel_sandbox::process;
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::lab::{lock, Lab};
use crate::naming::{host_name, LabName, Role};
use crate::state::{LabState, Phase};

/// How long flanneld gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The MTU `pod-mtu` sets (an underlay's, larger than any tunnel's).
pub const FAULT_POD_MTU: u32 = 1500;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    StopFlanneld,
    DelFdb,
    DelRoute,
    PodMtu,
    RmSubnetEnv,
    RpFilter,
    BlockPort,
}

impl Fault {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [Fault; 7] = [
        Fault::StopFlanneld,
        Fault::DelFdb,
        Fault::DelRoute,
        Fault::PodMtu,
        Fault::RmSubnetEnv,
        Fault::RpFilter,
        Fault::BlockPort,
    ];

    /// The kind's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::StopFlanneld => "stop-flanneld",
            Fault::DelFdb => "del-fdb",
            Fault::DelRoute => "del-route",
            Fault::PodMtu => "pod-mtu",
            Fault::RmSubnetEnv => "rm-subnet-env",
            Fault::RpFilter => "rp-filter",
            Fault::BlockPort => "block-port",
        }
    }
}

impl FromStr for Fault {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Fault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.as_str()).collect();
                LabError::Invalid(format!("unknown fault {s:?}; one of: {}", names.join(", ")))
            })
    }
}

/// What `fault` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultReport {
    /// The lab.
    pub lab: String,
    /// The host (`h<n>`).
    pub host: String,
    /// The fault.
    pub fault: Fault,
    /// What was changed, one line each.
    pub did: Vec<String>,
}

/// The FDB line of `bridge fdb show dev flannel.1` whose `dst` is `ip`: its MAC.
pub fn fdb_mac_for(fdb_show: &str, ip: &str) -> Option<String> {
    fdb_show.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let dst = w.windows(2).find(|p| p[0] == "dst").map(|p| p[1])?;
        (dst == ip)
            .then(|| w.first().map(|m| (*m).to_owned()))
            .flatten()
    })
}

/// The route lines of `ip route show dev flannel.1` whose gateway is in `peer`'s subnet:
/// their destination.
pub fn route_dst_via(route_show: &str, gateway_prefix: &str) -> Option<String> {
    route_show.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let via = w.windows(2).find(|p| p[0] == "via").map(|p| p[1])?;
        via.starts_with(gateway_prefix)
            .then(|| w.first().map(|d| (*d).to_owned()))
            .flatten()
    })
}

impl Lab {
    /// Injects `fault` into host `target` (`h<n>`) of lab `name`.
    pub fn inject_fault(&self, name: &LabName, fault: Fault, target: &str) -> Result<FaultReport> {
        let Some(Role::Host(n)) = Role::parse(target) else {
            return Err(LabError::Invalid(format!(
                "bad host {target:?}: fault takes a host such as h1"
            )));
        };
        let _lock = lock(self.paths(), name)?;
        let mut state = self.load(name)?;
        if state.phase != Phase::Up {
            return Err(LabError::Invalid(format!("lab {name} is not up")));
        }
        let Some(host) = state.host(n).cloned() else {
            return Err(LabError::Invalid(format!(
                "lab {name} has no host {target} (it has h1 to {})",
                host_name(state.spec.hosts)
            )));
        };
        let ns = host.ns.as_str();
        let mut did = Vec::new();
        match fault {
            Fault::StopFlanneld => {
                if let Some(p) = host.flanneld {
                    let how = process::stop(&p, STOP_GRACE);
                    did.push(format!("stopped flanneld (pid {}, {how:?})", p.pid));
                } else {
                    did.push("flanneld was not running".to_owned());
                }
                if let Some(h) = state.hosts.iter_mut().find(|h| h.n == n) {
                    h.flanneld = None;
                }
                state.save(self.paths())?;
            }
            Fault::DelFdb => {
                let peer = other_host(&state, n)?;
                let show = netns::exec_in(ns, &["bridge", "fdb", "show", "dev", "flannel.1"])?;
                let ip = peer.to_string();
                let mac = fdb_mac_for(&show, &ip).ok_or_else(|| {
                    LabError::Invalid(format!("{target} has no FDB entry for {ip}"))
                })?;
                netns::exec_in(
                    ns,
                    &["bridge", "fdb", "del", &mac, "dev", "flannel.1", "dst", &ip],
                )?;
                did.push(format!("deleted fdb {mac} dst {ip} dev flannel.1"));
            }
            Fault::DelRoute => {
                let lease = peer_subnet_prefix(&state, n)?;
                let show = netns::exec_in(ns, &["ip", "route", "show", "dev", "flannel.1"])?;
                let dst = route_dst_via(&show, &lease).ok_or_else(|| {
                    LabError::Invalid(format!("{target} has no flannel.1 route via {lease}*"))
                })?;
                netns::exec_in(ns, &["ip", "route", "del", &dst, "dev", "flannel.1"])?;
                did.push(format!("deleted route {dst} dev flannel.1"));
            }
            Fault::PodMtu => {
                let mtu = FAULT_POD_MTU.to_string();
                let ports = netns::exec_in(ns, &["ip", "-o", "link", "show", "master", "cni0"])?;
                for name in ports.lines().filter_map(|l| {
                    let name = l.split(':').nth(1)?.trim();
                    Some(name.split('@').next().unwrap_or(name).to_owned())
                }) {
                    netns::exec_in(ns, &["ip", "link", "set", &name, "mtu", &mtu])?;
                    did.push(format!("{name} mtu {mtu}"));
                }
                netns::exec_in(ns, &["ip", "link", "set", "cni0", "mtu", &mtu])?;
                did.push(format!("cni0 mtu {mtu}"));
            }
            Fault::RmSubnetEnv => {
                std::fs::remove_file(&host.subnet_file).map_err(|source| LabError::Io {
                    what: format!("removing {}", host.subnet_file.display()),
                    source,
                })?;
                did.push(format!("removed {}", host.subnet_file.display()));
            }
            Fault::RpFilter => {
                netns::exec_in(ns, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"])?;
                did.push("net.ipv4.conf.all.rp_filter=1".to_owned());
            }
            Fault::BlockPort => {
                netns::exec_in(
                    ns,
                    &[
                        "iptables", "-I", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP",
                    ],
                )?;
                did.push("iptables -I INPUT -p udp --dport 8472 -j DROP".to_owned());
            }
        }
        Ok(FaultReport {
            lab: name.to_string(),
            host: host_name(n),
            fault,
            did,
        })
    }
}

/// The underlay address of the first host other than `n`.
fn other_host(state: &LabState, n: u8) -> Result<std::net::Ipv4Addr> {
    state
        .hosts
        .iter()
        .find(|h| h.n != n)
        .map(|h| h.ip)
        .ok_or_else(|| LabError::Invalid("the lab has only one host".to_owned()))
}

/// The first three octets (`198.18.2.`) of the first other host's subnet, from its
/// `subnet.env`.
fn peer_subnet_prefix(state: &LabState, n: u8) -> Result<String> {
    let peer = state
        .hosts
        .iter()
        .find(|h| h.n != n)
        .ok_or_else(|| LabError::Invalid("the lab has only one host".to_owned()))?;
    let text = std::fs::read_to_string(&peer.subnet_file).map_err(|source| LabError::Io {
        what: format!("reading {}", peer.subnet_file.display()),
        source,
    })?;
    let subnet = text
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .ok_or_else(|| {
            LabError::Invalid(format!(
                "{} has no FLANNEL_SUBNET",
                peer.subnet_file.display()
            ))
        })?;
    let ip = subnet.split('/').next().unwrap_or(subnet);
    let prefix = ip
        .rsplit_once('.')
        .map(|(p, _)| format!("{p}."))
        .unwrap_or_default();
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(f.as_str().parse::<Fault>().expect("parses"), f);
        }
        assert!("melt".parse::<Fault>().is_err());
    }

    #[test]
    fn finds_the_peers_entries_in_ip_output() {
        let fdb = "0e:00:00:00:00:02 dst 192.0.2.2 self permanent\n0e:00:00:00:00:03 dst 192.0.2.3 self permanent\n";
        assert_eq!(
            fdb_mac_for(fdb, "192.0.2.3").as_deref(),
            Some("0e:00:00:00:00:03")
        );
        assert_eq!(fdb_mac_for(fdb, "192.0.2.9"), None);
        let routes = "198.18.2.0/24 via 198.18.2.0 onlink\n198.18.3.0/24 via 198.18.3.0 onlink\n";
        assert_eq!(
            route_dst_via(routes, "198.18.3.").as_deref(),
            Some("198.18.3.0/24")
        );
    }
}
