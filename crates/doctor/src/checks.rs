//! One function per problem, each reading only [`NodeFacts`]. [`diagnose`] runs them all, in
//! the order an operator would look: the daemon, its files and lease, the interface, then the
//! kernel entries of each peer, MTUs, offloads, filters.

use flannel_model::SubnetEnv;
use flannel_planner::offload;
use ipnet::Ipv4Net;

use crate::entries::{compare, stale, EntryState};
use crate::facts::{Daemon, NodeFacts, SubnetFile};
use crate::finding::{AutoFix, Finding, Kind};

/// Every finding for this node; empty when it is healthy.
pub fn diagnose(f: &NodeFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(daemon(f));
    out.extend(subnet_env(f));
    out.extend(lease(f));
    out.extend(collision(f));
    out.extend(ext_iface(f));
    out.extend(devices(f));
    out.extend(peer_entries(f));
    out.extend(stale_entries(f));
    out.extend(pod_mtu(f));
    out.extend(tx_checksum(f));
    out.extend(firewall(f));
    out.extend(rp_filter(f));
    out
}

/// flanneld not running, or not ready.
pub fn daemon(f: &NodeFacts) -> Vec<Finding> {
    match &f.daemon {
        Some(Daemon::NotRunning { addr, error }) => vec![Finding::new(
            Kind::Flanneld,
            "flanneld is not running.",
            format!("Nothing answers at http://{addr}/healthz ({error})."),
            "Start flanneld (systemctl start flanneld, or check the DaemonSet pod and its logs).",
        )],
        Some(Daemon::NotReady) => vec![Finding::new(
            Kind::Flanneld,
            "flanneld is running but not ready.",
            "/readyz does not answer 200.",
            "Read flanneld's log: it waits for the registry, a lease or the network config.",
        )],
        Some(Daemon::Ready | Daemon::NotChecked) | None => Vec::new(),
    }
}

/// The subnet file missing, unreadable, or not matching the lease and the backend.
pub fn subnet_env(f: &NodeFacts) -> Vec<Finding> {
    let path = f.subnet_file.display();
    match &f.subnet_env {
        Some(SubnetFile::Missing) => vec![Finding::new(
            Kind::SubnetEnv,
            format!("{path} (subnet.env) is missing. The CNI plugin cannot set up pods."),
            format!("{path} does not exist."),
            "flanneld writes it once it holds a lease: get flanneld running and ready. Check that --subnet-file matches the CNI plugin's subnetFile.",
        )],
        Some(SubnetFile::Unreadable(e)) => vec![Finding::new(
            Kind::SubnetEnv,
            format!("{path} (subnet.env) cannot be read."),
            e.clone(),
            "Fix the file's permissions, or remove it and restart flanneld.",
        )],
        Some(SubnetFile::Present(env)) => subnet_env_disagrees(f, env),
        None => Vec::new(),
    }
}

fn subnet_env_disagrees(f: &NodeFacts, env: &SubnetEnv) -> Vec<Finding> {
    let path = f.subnet_file.display();
    let mut out = Vec::new();
    if let (Some(lease), Some(sub)) = (&f.own_lease, env.subnet) {
        if sub.trunc() != lease.subnet.ipv4 {
            out.push(Finding::new(
                Kind::SubnetEnv,
                format!("{path} (subnet.env) disagrees with our lease."),
                format!(
                    "FLANNEL_SUBNET={sub}, but the lease is {}.",
                    lease.subnet.ipv4
                ),
                "Restart flanneld: it rewrites the file. Pods created since got addresses outside our subnet and need restarting.",
            ));
        }
    }
    if let (Some(b), Some(mtu)) = (&f.backend, env.mtu) {
        if mtu != b.pod_mtu {
            out.push(Finding::new(
                Kind::SubnetEnv,
                format!("{path} (subnet.env) has another MTU than the backend gives pods."),
                format!(
                    "FLANNEL_MTU={mtu}, but {} over this interface gives {}.",
                    b.name, b.pod_mtu
                ),
                "Restart flanneld: it rewrites the file. Then restart the pods.",
            ));
        }
    }
    out
}

/// The registry unreadable, or no lease for this node in it.
pub fn lease(f: &NodeFacts) -> Vec<Finding> {
    if let Some(e) = &f.registry_error {
        return vec![Finding::new(
            Kind::Lease,
            "The subnet registry cannot be read.",
            e.clone(),
            "Check --etcd-endpoints (and the TLS files), and that etcd is up and reachable from this node.",
        )];
    }
    let ip = match &f.ext_iface {
        Some(Ok(e)) => e.public_ip,
        _ => None,
    };
    if f.own_lease.is_none() {
        if let Some(ip) = ip {
            return vec![Finding::new(
                Kind::Lease,
                "This node holds no lease.",
                format!("No lease in the registry has PublicIP {ip}."),
                "Start flanneld; if it runs, read its log (out of subnets? wrong --public-ip?).",
            )];
        }
    }
    Vec::new()
}

/// Our subnet overlapping another lease, or another lease advertising our public IP.
pub fn collision(f: &NodeFacts) -> Vec<Finding> {
    let Some(own) = &f.own_lease else {
        return Vec::new();
    };
    let mine = own.subnet.ipv4;
    let mut out = Vec::new();
    for other in &f.other_leases {
        let theirs: Ipv4Net = other.subnet.ipv4;
        if theirs.contains(&mine.network()) || mine.contains(&theirs.network()) {
            out.push(Finding::new(
                Kind::Collision,
                format!("Our lease {mine} overlaps another host's lease."),
                format!("{theirs} is leased to {}.", other.attrs.public_ip),
                "Delete the stale lease from the registry and restart flanneld on both hosts.",
            ));
        } else if other.attrs.public_ip == own.attrs.public_ip {
            out.push(Finding::new(
                Kind::Collision,
                format!(
                    "Another lease advertises our public IP {}.",
                    own.attrs.public_ip
                ),
                format!(
                    "{theirs} and our {mine} both name {}.",
                    own.attrs.public_ip
                ),
                "Two hosts share an address, or a stale lease is left: give each host its own --public-ip, or delete the stale lease.",
            ));
        }
    }
    out
}

/// The external interface gone (or not the one the lease advertises).
pub fn ext_iface(f: &NodeFacts) -> Vec<Finding> {
    match &f.ext_iface {
        Some(Err(e)) => vec![Finding::new(
            Kind::Iface,
            "The external interface is gone.",
            e.clone(),
            "Check --iface / --iface-regex against `ip addr`; restart flanneld once the interface is back.",
        )],
        Some(Ok(ext)) => match (&f.own_lease, ext.public_ip) {
            (Some(l), Some(ip)) if l.attrs.public_ip != ip => vec![Finding::new(
                Kind::Iface,
                "The external interface's address is not the one our lease advertises.",
                format!("{} has {ip}; the lease says {}.", ext.name, l.attrs.public_ip),
                "Restart flanneld so that it advertises the current address.",
            )],
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// The backend's devices missing, or with another MTU than planned.
pub fn devices(f: &NodeFacts) -> Vec<Finding> {
    let (Some(b), Some(obs)) = (&f.backend, &f.observed) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, want) in &b.base.links {
        match obs.links.get(name) {
            None => out.push(Finding::new(
                Kind::Link,
                format!("The {} device {name} is missing.", want.kind()),
                format!("`ip link show {name}` finds nothing."),
                "Start or restart flanneld: it creates the device.",
            )),
            Some(have) if have.mtu() != want.mtu() => out.push(Finding::new(
                Kind::Link,
                format!("{name} has MTU {}, not {}.", have.mtu(), want.mtu()),
                format!(
                    "{name} mtu {}; the external interface allows {}.",
                    have.mtu(),
                    want.mtu()
                ),
                "Restart flanneld: it sets the MTU.",
            )),
            Some(_) => {}
        }
    }
    out
}

/// Each peer's route, neighbour and FDB entries: missing or wrong.
pub fn peer_entries(f: &NodeFacts) -> Vec<Finding> {
    let Some(obs) = &f.observed else {
        return Vec::new();
    };
    let down = matches!(f.daemon, Some(Daemon::NotRunning { .. }));
    let mut out = Vec::new();
    for p in &f.peers {
        let ip = p.lease.attrs.public_ip;
        let subnet = p.lease.subnet.ipv4;
        for e in compare(&p.want, obs) {
            let what = e.kind.as_str();
            let (problem, evidence) = match &e.state {
                EntryState::Ok => continue,
                EntryState::Missing => (
                    format!("The {what} entry for peer {ip} ({subnet}) is missing."),
                    format!("Want `{}`; the kernel has none.", e.want),
                ),
                EntryState::Wrong(have) => (
                    format!("The {what} entry for peer {ip} ({subnet}) is wrong."),
                    format!("Want `{}`; the kernel has `{have}`.", e.want),
                ),
            };
            let fix = if down {
                "Start flanneld: flanneld is not running, and it puts the entry back within seconds once it runs.".to_owned()
            } else {
                "flanneld should restore it within 10 s; if it stays, read flanneld's log (kernel operation failed?).".to_owned()
            };
            out.push(Finding::new(e.kind, problem, evidence, fix));
        }
    }
    out
}

/// Entries on our devices that belong to no peer.
pub fn stale_entries(f: &NodeFacts) -> Vec<Finding> {
    let (Some(b), Some(obs)) = (&f.backend, &f.observed) else {
        return Vec::new();
    };
    let mut wanted = b.base.clone();
    for p in &f.peers {
        wanted.routes.extend(p.want.routes.iter().cloned());
        wanted.neighs.extend(p.want.neighs.iter().cloned());
        wanted.fdb.extend(p.want.fdb.iter().cloned());
    }
    stale(&wanted, obs, &b.devs)
        .into_iter()
        .map(|e| {
            Finding::new(
                Kind::Stale,
                "An entry on our device belongs to no current peer.",
                format!("`{e}`."),
                "flanneld removes it on its next pass; if it is not running, start it.",
            )
        })
        .collect()
}

/// A pod interface (cni0, a pod veth) with a larger MTU than the tunnel carries.
pub fn pod_mtu(f: &NodeFacts) -> Vec<Finding> {
    let Some(b) = &f.backend else {
        return Vec::new();
    };
    f.pod_links
        .iter()
        .filter(|l| l.mtu > b.pod_mtu)
        .map(|l| {
            Finding::new(
                Kind::Mtu,
                format!(
                    "{} has MTU {}, larger than the tunnel's {}.",
                    l.name, l.mtu, b.pod_mtu
                ),
                format!(
                    "{} mtu {}; {} over this interface carries {}. Large packets from pods are dropped.",
                    l.name, l.mtu, b.name, b.pod_mtu
                ),
                format!(
                    "Set the MTU to {} (`ip link set {} mtu {}`), and give the CNI config the MTU from subnet.env; restart the pods.",
                    b.pod_mtu, l.name, b.pod_mtu
                ),
            )
        })
        .collect()
}

/// vxlan tx checksum offload left on with a kernel that has the bug.
pub fn tx_checksum(f: &NodeFacts) -> Vec<Finding> {
    if !offload::kernel_has_bug(&f.kernel_release) {
        return Vec::new();
    }
    f.tx_checksum
        .iter()
        .filter(|c| c.on != Some(false))
        .map(|c| Finding {
            auto_fix: Some(AutoFix::TxChecksumOff { dev: c.dev.clone() }),
            ..Finding::new(
                Kind::Checksum,
                format!("tx checksum offload is on for {} on a kernel with the vxlan checksum bug.", c.dev),
                format!(
                    "Kernel {} (fixed in {}.{}); {} {}: {}.",
                    f.kernel_release,
                    offload::FIXED_IN.0,
                    offload::FIXED_IN.1,
                    c.dev,
                    offload::FEATURE,
                    c.on.map_or("unknown", |on| if on { "on" } else { "off" })
                ),
                format!(
                    "Run `ethtool -K {} {} off` (doctor --fix does it), or upgrade the kernel. flanneld does it itself unless --vxlan-tx-checksum-fix=false.",
                    c.dev,
                    offload::FEATURE
                ),
            )
        })
        .collect()
}

/// An iptables rule dropping the backend's UDP port.
pub fn firewall(f: &NodeFacts) -> Vec<Finding> {
    let (Some(b), Some(text)) = (&f.backend, &f.iptables) else {
        return Vec::new();
    };
    let Some(port) = b.udp_port else {
        return Vec::new();
    };
    blocking_rules(text, port)
        .into_iter()
        .map(|rule| {
            Finding::new(
                Kind::Firewall,
                format!("A firewall rule drops the {} port (udp {port}).", b.name),
                format!("`{rule}`."),
                format!("Allow udp {port} from the other nodes before this rule, or remove it."),
            )
        })
        .collect()
}

/// `-A INPUT` rules of `iptables-save` text that drop or reject udp traffic to `port`.
pub fn blocking_rules(iptables_save: &str, port: u16) -> Vec<String> {
    let port = port.to_string();
    iptables_save
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let after = |flag: &str| words.windows(2).find(|w| w[0] == flag).map(|w| w[1]);
            words.starts_with(&["-A", "INPUT"])
                && after("-p") == Some("udp")
                && after("--dport") == Some(port.as_str())
                && matches!(after("-j"), Some("DROP" | "REJECT"))
        })
        .map(str::to_owned)
        .collect()
}

/// Strict reverse-path filtering (1) where the tunnel's traffic goes through.
pub fn rp_filter(f: &NodeFacts) -> Vec<Finding> {
    let Some(b) = &f.backend else {
        return Vec::new();
    };
    if b.devs.is_empty() {
        return Vec::new();
    }
    let value = |name: &str| f.rp_filter.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let all = value("all").unwrap_or(0);
    let mut out = Vec::new();
    for dev in &b.devs {
        // The kernel uses the larger of `all` and the device's own value.
        let v = value(dev).unwrap_or(0).max(all);
        if v == 1 {
            out.push(Finding::new(
                Kind::RpFilter,
                format!("Strict rp_filter on {dev} can drop the tunnel's traffic."),
                format!(
                    "net.ipv4.conf.{dev}.rp_filter={}, net.ipv4.conf.all.rp_filter={all}.",
                    value(dev).unwrap_or(0)
                ),
                format!(
                    "Use loose mode: `sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{dev}.rp_filter=2`."
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
