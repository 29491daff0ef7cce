//! `up`: building a lab step by step, recording each step in the state file, and tearing down
//! what was built when a step fails.
//!
//! Steps (each one progress line): the switch; each host; etcd (until `/health` answers); the
//! network config; each host's flanneld (until `/readyz` answers and `subnet.env` is written);
//! the routes between hosts (until every host has a route to every other host's subnet; not
//! for `alloc`) or, with ipsec, the tunnels (until every host has an ESP SA to and from every
//! other host); each pod (namespace + CNI ADD).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flannel_model::subnet_env::SubnetEnv;
use ipnet::Ipv4Net;

use crate::cni;
use crate::error::{LabError, Result};
use crate::lab::{lab_namespaces, lock, Lab, Progress};
use crate::naming::{host_name, pod_name, LabName, Role};
use crate::spec::{
    self, Backend, LabSpec, ETCD_CLIENT_PORT, ETCD_IP, HEALTHZ_PORT, UNDERLAY_PREFIX_LEN,
};
use crate::state::{
    EtcdState, HostState, LabPaths, LabState, Phase, PodState, ProcRecord, STATE_VERSION,
};
use crate::teardown::teardown;
use flannel_sandbox::{cmd, etcd, netns, probe, process, text, wait};

/// How long etcd may take to answer `/health`.
const ETCD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one flanneld may take to become ready.
pub const FLANNELD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the hosts may take to learn each other's subnets.
const ROUTES_TIMEOUT: Duration = Duration::from_secs(20);
/// How long charon may take to negotiate the ipsec tunnels between all hosts.
const TUNNELS_TIMEOUT: Duration = Duration::from_secs(30);
/// The header of the line written to a log before each daemon the lab starts.
const SPAWN_HEADER: &str = "flannelctl lab";
/// How many log lines a failed step shows.
const LOG_TAIL_LINES: usize = 15;

/// Options of `up` that are not part of the lab itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// Leave what was built in place when a step fails (for debugging; `down` removes it).
    pub keep_on_failure: bool,
    /// How many times longer than the usual bounds the waits may take (0 and 1: as usual);
    /// flannelctl sets it inside Debian's kernel under qemu, where everything runs several
    /// times slower (`FLANNEL_TEST_TIME_SCALE`).
    pub time_scale: u32,
}

impl UpOptions {
    /// `d` stretched by [`UpOptions::time_scale`].
    pub fn scaled(&self, d: Duration) -> Duration {
        d * self.time_scale.max(1)
    }
}

/// Programs the lab runs, looked up in `PATH`.
const TOOLS: [(&str, &str); 6] = [
    ("ip", "iproute2"),
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("ping", "iputils-ping"),
    ("setsid", "util-linux"),
    ("sysctl", "procps"),
];

use flannel_sandbox::cmd::is_executable;

/// Where flanneld looks for charon after `PATH` (Flannel's search path).
const CHARON_PATHS: [&str; 4] = [
    "/usr/lib/strongswan/charon",
    "/usr/lib/ipsec/charon",
    "/usr/libexec/strongswan/charon",
    "/usr/libexec/ipsec/charon",
];
pub use flannel_sandbox::cmd::which;

/// Checks everything `up` needs before anything is built.
pub fn preflight(spec: &LabSpec) -> Result<()> {
    if !cmd::is_root() {
        return Err(LabError::Invalid(
            "the lab creates network namespaces: run flannelctl as root".into(),
        ));
    }
    let private_run: &[(&str, &str)] = if spec.backend.private_run() {
        &[("unshare", "util-linux"), ("mount", "mount")]
    } else {
        &[]
    };
    for (program, package) in TOOLS.iter().chain(private_run) {
        if which(program).is_none() {
            return Err(LabError::Invalid(format!(
                "{program} is not in PATH (Debian package {package}; scripts/install-deps.sh installs it)"
            )));
        }
    }
    if spec.backend == Backend::Ipsec
        && which("charon").is_none()
        && !CHARON_PATHS.iter().any(|p| is_executable(Path::new(p)))
    {
        return Err(LabError::Invalid(format!(
            "the ipsec backend needs strongSwan's charon (Debian packages strongswan-charon, \
             strongswan-swanctl, libstrongswan-standard-plugins), found neither in PATH nor at {}",
            CHARON_PATHS.join(", ")
        )));
    }
    let files = [
        (spec.flanneld.clone(), "flanneld (--flanneld)"),
        (
            spec.cni_plugin.clone(),
            "the flannel CNI plugin (--cni-plugin)",
        ),
        (
            spec.cni_bin_dir.join("bridge"),
            "the bridge CNI plugin (containernetworking-plugins)",
        ),
        (
            spec.cni_bin_dir.join("host-local"),
            "the host-local CNI plugin (containernetworking-plugins)",
        ),
    ];
    for (path, what) in files {
        if !path.is_absolute() || !is_executable(&path) {
            return Err(LabError::Invalid(format!(
                "{what}: {} is not an executable file given by an absolute path",
                path.display()
            )));
        }
    }
    Ok(())
}

impl Lab {
    /// Builds the lab described by `spec` and leaves it running. A lab of the same name that
    /// is running is an error; one whose processes all died (or whose state is gone) is
    /// removed first. On failure everything built is torn down (unless
    /// [`UpOptions::keep_on_failure`]) and the error names the step, with the relevant log's
    /// tail.
    pub fn up(
        &self,
        spec: LabSpec,
        options: UpOptions,
        progress: &mut dyn Progress,
    ) -> Result<LabState> {
        spec.validate()?;
        preflight(&spec)?;
        let paths = self.paths();
        let name = spec.name.clone();
        let lock = lock(paths, &name)?;
        self.clear_leftovers(&name, progress)?;
        let _ = std::fs::remove_file(paths.failed_log(&name));

        let dir = paths.dir(&name);
        let etcd_data = paths.etcd_data(&name);
        for d in [&dir, &etcd_data] {
            std::fs::create_dir_all(d)
                .map_err(|e| LabError::io(format!("creating {}", d.display()), e))?;
        }
        let created = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let state = LabState {
            version: STATE_VERSION,
            phase: Phase::Building,
            builder_pid: std::process::id(),
            created,
            dir: dir.clone(),
            etcd_data_dir: etcd_data,
            switch_ns: name.ns(Role::Switch),
            etcd: EtcdState {
                ns: name.ns(Role::Etcd),
                ip: ETCD_IP,
                endpoint: spec::ETCD_ENDPOINT.to_owned(),
                log: dir.join("etcd.log"),
                process: None,
            },
            hosts: Vec::new(),
            pods: Vec::new(),
            namespaces: Vec::new(),
            spec,
        };
        state.save(paths)?;
        let mut builder = Builder {
            paths,
            state,
            progress,
            options,
            index: 0,
            total: 0,
        };
        match builder.build() {
            Ok(()) => {
                builder.state.phase = Phase::Up;
                builder.state.save(paths)?;
                Ok(builder.state)
            }
            Err(e) => {
                let mut e = e;
                if !options.keep_on_failure {
                    // The step's log is in the lab's directory, which goes with the lab.
                    e = keep_failed_log(paths, &name, e);
                    builder.progress.note("tearing down what was built");
                    let report = teardown(paths, &name, Some(&builder.state));
                    for w in &report.warnings {
                        builder.progress.note(&format!("warning: {w}"));
                    }
                    lock.remove();
                } else {
                    builder.progress.note(&format!(
                        "keeping the partial lab for debugging: `flannelctl lab down --name {name}` removes it"
                    ));
                }
                Err(e)
            }
        }
    }

    /// Refuses a running lab of this name; removes a dead one.
    fn clear_leftovers(
        &self,
        name: &crate::naming::LabName,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let paths = self.paths();
        // We hold the lab's lock, so no other flannelctl is building it: a state still in
        // `Building` was left by a builder that died.
        let state = LabState::load(paths, name).ok().flatten();
        if let Some(s) = &state {
            let running = s.phase == Phase::Up
                && (s.etcd.process.as_ref().is_some_and(process::is_alive)
                    || s.hosts
                        .iter()
                        .flat_map(|h| h.flanneld.as_ref())
                        .any(process::is_alive));
            if running {
                return Err(LabError::Exists {
                    name: name.to_string(),
                    detail: "is running".into(),
                });
            }
        }
        let namespaces = lab_namespaces(name)?;
        if state.is_some() || !namespaces.is_empty() || paths.dir(name).exists() {
            progress.note(&format!("removing the leftovers of an earlier lab {name}"));
            let report = teardown(paths, name, state.as_ref());
            if let Some(w) = report.warnings.first() {
                return Err(LabError::unexpected(
                    format!("removing the leftovers of lab {name}"),
                    w.clone(),
                ));
            }
        }
        Ok(())
    }
}

struct Builder<'a> {
    paths: &'a LabPaths,
    state: LabState,
    progress: &'a mut dyn Progress,
    options: UpOptions,
    index: usize,
    total: usize,
}

impl Builder<'_> {
    fn build(&mut self) -> Result<()> {
        let spec = self.state.spec.clone();
        let hosts = usize::from(spec.hosts);
        let pods = usize::from(spec.pods);
        let routes = usize::from(spec.backend.connects_hosts() && spec.hosts > 1);
        self.total = 1 + hosts + 1 + 1 + hosts + routes + hosts * pods;

        cni::make_bin_dir(&self.state.dir, &spec.cni_plugin, &spec.cni_bin_dir)?;
        self.step("creating the switch".into(), None, |b| b.make_switch())?;
        for n in 1..=spec.hosts {
            self.step(format!("creating host {}", host_name(n)), None, |b| {
                b.make_host(n)
            })?;
        }
        let etcd_log = self.state.etcd.log.clone();
        self.step("starting etcd".into(), Some(etcd_log.clone()), |b| {
            b.start_etcd()
        })?;
        self.step("writing the network config".into(), Some(etcd_log), |b| {
            b.write_config()
        })?;
        for n in 1..=spec.hosts {
            let log = self.host(n)?.log.clone();
            self.step(
                format!("starting flanneld on {}", host_name(n)),
                Some(log),
                |b| b.start_flanneld(n),
            )?;
        }
        if routes == 1 && spec.backend == Backend::Ipsec {
            self.step(
                "waiting for the ipsec tunnels between the hosts".into(),
                None,
                |b| b.wait_tunnels(),
            )?;
        } else if routes == 1 {
            self.step("waiting for routes between the hosts".into(), None, |b| {
                b.wait_routes()
            })?;
        }
        for n in 1..=spec.hosts {
            for k in 1..=spec.pods {
                let log = self.host(n)?.cni_log.clone();
                self.step(
                    format!("attaching pod {}", pod_name(n, k)),
                    Some(log),
                    |b| b.add_pod(n, k),
                )?;
            }
        }
        Ok(())
    }

    /// Runs one step: shows it, runs it, records the state. A failure becomes
    /// [`LabError::Step`] with the tail of `log`.
    fn step(
        &mut self,
        what: String,
        log: Option<PathBuf>,
        f: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        self.index += 1;
        self.progress.step(self.index, self.total, &what);
        let result = wait::check_interrupt()
            .map_err(LabError::from)
            .and_then(|()| f(self))
            .and_then(|()| self.state.save(self.paths));
        result.map_err(|e| LabError::Step {
            step: what,
            source: Box::new(e),
            log: log.map(|p| {
                let tail = text::tail_file(&p, LOG_TAIL_LINES);
                (p, tail)
            }),
        })
    }

    fn host(&self, n: u8) -> Result<&HostState> {
        self.state
            .host(n)
            .ok_or_else(|| LabError::unexpected("the lab state", format!("no host {n}")))
    }

    /// Creates namespace `ns` (recorded first, so teardown finds it whatever happens).
    fn add_ns(&mut self, ns: &str) -> Result<()> {
        self.state.namespaces.push(ns.to_owned());
        self.state.save(self.paths)?;
        Ok(netns::add(ns)?)
    }

    fn make_switch(&mut self) -> Result<()> {
        let sw = self.state.switch_ns.clone();
        self.add_ns(&sw)?;
        netns::ip_in(&sw, &["link", "add", "br0", "type", "bridge"])?;
        netns::ip_in(&sw, &["link", "set", "br0", "up"])?;
        Ok(())
    }

    /// Joins `ns` to the switch: veth `port` on `br0`, its peer `eth0` in `ns` with `addr`.
    /// Both ends are created inside lab namespaces; nothing appears in flannelctl's own.
    fn plug(&self, ns: &str, port: &str, addr: Ipv4Addr) -> Result<()> {
        let sw = &self.state.switch_ns;
        netns::ip_in(
            sw,
            &[
                "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        )?;
        netns::ip_in(sw, &["link", "set", port, "master", "br0", "up"])?;
        let cidr = format!("{addr}/{UNDERLAY_PREFIX_LEN}");
        netns::ip_in(ns, &["addr", "add", &cidr, "dev", "eth0"])?;
        netns::ip_in(ns, &["link", "set", "eth0", "up"])?;
        Ok(())
    }

    fn make_host(&mut self, n: u8) -> Result<()> {
        let name = self.state.spec.name.clone();
        let ns = name.ns(Role::Host(n));
        self.add_ns(&ns)?;
        // Before eth0 exists, so it inherits rp_filter=0 from `default`.
        netns::exec_in(
            &ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        )?;
        let ip = spec::host_ip(n);
        self.plug(&ns, &host_name(n), ip)?;
        if self.state.spec.backend.needs_underlay_route() {
            let network = self.state.spec.network.to_string();
            netns::ip_in(&ns, &["route", "add", &network, "dev", "eth0"])?;
        }
        let dir = self.state.dir.join(host_name(n));
        let cni_dir = dir.join("cni");
        std::fs::create_dir_all(&cni_dir)
            .map_err(|e| LabError::io(format!("creating {}", cni_dir.display()), e))?;
        let subnet_file = dir.join("subnet.env");
        let cni_conf = dir.join("cni.conf");
        let conf = spec::cni_conf(
            &subnet_file,
            &cni_dir.join("flannel"),
            &cni_dir.join("ipam"),
        );
        std::fs::write(&cni_conf, conf + "\n")
            .map_err(|e| LabError::io(format!("writing {}", cni_conf.display()), e))?;
        self.state.hosts.push(HostState {
            name: host_name(n),
            n,
            ns,
            ip,
            log: dir.join("flanneld.log"),
            cni_log: dir.join("cni.log"),
            subnet_file,
            cni_conf,
            dir,
            flanneld: None,
        });
        Ok(())
    }

    fn start_etcd(&mut self) -> Result<()> {
        let ns = self.state.etcd.ns.clone();
        self.add_ns(&ns)?;
        self.plug(&ns, "etcd", ETCD_IP)?;
        let etcd = which("etcd").ok_or_else(|| LabError::Invalid("etcd is not in PATH".into()))?;
        let data = self.state.etcd_data_dir.join("data");
        let proc = process::spawn_detached(
            &ns,
            &etcd,
            &spec::etcd_args(&data),
            &self.state.etcd.log,
            &["ETCD_", "ETCDCTL_"],
            SPAWN_HEADER,
        )?;
        self.state.etcd.process = Some(proc);
        self.state.save(self.paths)?;
        wait::wait_for(
            &format!("etcd answering on {}/health", spec::ETCD_ENDPOINT),
            self.options.scaled(ETCD_TIMEOUT),
            Duration::from_millis(100),
            || {
                if !process::is_alive(&proc) {
                    return Err(LabError::Exited {
                        what: format!("etcd (pid {})", proc.pid),
                    });
                }
                Ok(matches!(
                    probe::http_get_in(&ns, SocketAddr::from((ETCD_IP, ETCD_CLIENT_PORT)), "/health"),
                    Ok((200, body)) if body.contains("true")
                ))
            },
        )
    }

    fn write_config(&mut self) -> Result<()> {
        let key = format!("{}/config", spec::ETCD_PREFIX);
        let conf = self.state.spec.net_conf();
        etcdctl(&self.state.etcd.ns, &["put", &key, &conf]).map(drop)
    }

    fn start_flanneld(&mut self, n: u8) -> Result<()> {
        let timeout = self.options.scaled(FLANNELD_TIMEOUT);
        start_flanneld(self.paths, &mut self.state, n, timeout).map(drop)
    }

    /// ipsec: every host has an ESP SA from and to every other host's public IP (charon
    /// negotiated every tunnel).
    fn wait_tunnels(&mut self) -> Result<()> {
        let hosts = self.state.hosts.clone();
        let mut missing = Vec::new();
        let waited = wait::wait_for(
            "ESP SAs between every pair of hosts",
            self.options.scaled(TUNNELS_TIMEOUT),
            Duration::from_millis(250),
            || {
                missing.clear();
                for h in &hosts {
                    let sas = netns::ip_in(&h.ns, &["xfrm", "state", "list"])?;
                    for o in hosts.iter().filter(|o| o.n != h.n) {
                        for (src, dst) in [(h.ip, o.ip), (o.ip, h.ip)] {
                            if !has_esp_sa(&sas, src, dst) {
                                missing.push(format!("{} has no ESP SA {src} → {dst}", h.name));
                            }
                        }
                    }
                }
                Ok(missing.is_empty())
            },
        );
        match waited {
            Err(LabError::Timeout { what, timeout }) => Err(LabError::unexpected(
                format!("{what} (waited {} s)", timeout.as_secs()),
                missing.join("; "),
            )),
            other => other,
        }
    }

    fn wait_routes(&mut self) -> Result<()> {
        let mut subnets = Vec::new();
        for h in &self.state.hosts {
            let subnet = host_subnet(h).ok_or_else(|| {
                LabError::unexpected(h.subnet_file.display().to_string(), "no FLANNEL_SUBNET")
            })?;
            subnets.push((h.clone(), subnet));
        }
        // vxlan/host-gw: a route per other host's subnet; udp and vxlan on-demand: the whole
        // network to their device.
        let per_host = self.state.spec.routes_per_host();
        let network = self.state.spec.network.to_string();
        let mut missing = Vec::new();
        let waited = wait::wait_for(
            "routes to every host's subnet on every host",
            self.options.scaled(ROUTES_TIMEOUT),
            Duration::from_millis(100),
            || {
                missing.clear();
                for (h, _) in &subnets {
                    let table = netns::ip_in(&h.ns, &["-4", "route", "show"])?;
                    let others: Vec<String> = if per_host {
                        subnets
                            .iter()
                            .filter(|(o, _)| o.n != h.n)
                            .map(|(_, s)| s.to_string())
                            .collect()
                    } else {
                        vec![network.clone()]
                    };
                    for cidr in missing_routes(&table, &others) {
                        missing.push(format!("{} has no route to {cidr}", h.name));
                    }
                }
                Ok(missing.is_empty())
            },
        );
        match waited {
            Err(LabError::Timeout { what, timeout }) => Err(LabError::unexpected(
                format!("{what} (waited {} s)", timeout.as_secs()),
                missing.join("; "),
            )),
            other => other,
        }
    }

    fn add_pod(&mut self, n: u8, k: u8) -> Result<()> {
        let host = self.host(n)?.clone();
        let ns = self.state.spec.name.ns(Role::Pod(n, k));
        self.state.pods.push(PodState {
            name: pod_name(n, k),
            host: n,
            k,
            container_id: ns.clone(),
            ns: ns.clone(),
            ip: None,
        });
        self.add_ns(&ns)?;
        let pod = self
            .state
            .pods
            .last()
            .cloned()
            .ok_or_else(|| LabError::unexpected("the lab state", "pod vanished"))?;
        let result = cni::call("ADD", &self.state.dir, &host, &pod)?;
        let ip = cni::parse_add_result(&result)?;
        if let Some(p) = self.state.pods.iter_mut().find(|p| p.ns == ns) {
            p.ip = Some(ip);
        }
        Ok(())
    }
}

/// Starts host `n`'s flanneld with the lab's command line (with ipsec and wireguard in a
/// private `/run`, the host folder's `run/`: [`spec::flanneld_command`]), records it in the
/// state (saved) and waits up to `timeout` until it answers `/readyz` and its `subnet.env`
/// exists.
pub fn start_flanneld(
    paths: &LabPaths,
    state: &mut LabState,
    n: u8,
    timeout: Duration,
) -> Result<ProcRecord> {
    let host = state
        .host(n)
        .cloned()
        .ok_or_else(|| LabError::unexpected("the lab state", format!("no host {n}")))?;
    let (program, args) = spec::flanneld_command(
        &state.spec,
        &host.subnet_file,
        &host.dir.join("run"),
        &paths.root,
    );
    let proc = process::spawn_detached(
        &host.ns,
        &program,
        &args,
        &host.log,
        &["FLANNELD_", "WIREGUARD_KEY_FILE"],
        SPAWN_HEADER,
    )?;
    if let Some(h) = state.hosts.iter_mut().find(|h| h.n == n) {
        h.flanneld = Some(proc);
    }
    state.save(paths)?;
    wait::wait_for(
        &format!(
            "flanneld on {} answering /readyz and writing {}",
            host.name,
            host.subnet_file.display()
        ),
        timeout,
        Duration::from_millis(100),
        || {
            if !process::is_alive(&proc) {
                return Err(LabError::Exited {
                    what: format!("flanneld on {} (pid {})", host.name, proc.pid),
                });
            }
            let ready = matches!(
                probe::http_get_in(
                    &host.ns,
                    SocketAddr::from((Ipv4Addr::LOCALHOST, HEALTHZ_PORT)),
                    "/readyz"
                ),
                Ok((200, _))
            );
            Ok(ready && host_subnet(&host).is_some())
        },
    )?;
    Ok(proc)
}

/// Copies the log a failed step points to out of the lab's directory (to
/// [`LabPaths::failed_log`]) and points the error there. Without a log, or when the copy
/// fails, the error is returned as it is.
fn keep_failed_log(paths: &LabPaths, name: &LabName, e: LabError) -> LabError {
    match e {
        LabError::Step {
            step,
            source,
            log: Some((path, tail)),
        } => {
            let kept = paths.failed_log(name);
            let log = match std::fs::copy(&path, &kept) {
                Ok(_) => (kept, tail),
                Err(_) => (path, tail),
            };
            LabError::Step {
                step,
                source,
                log: Some(log),
            }
        }
        other => other,
    }
}

/// The host's subnet from its `subnet.env` (network address form, e.g. `198.18.5.0/24`).
pub fn host_subnet(host: &HostState) -> Option<Ipv4Net> {
    SubnetEnv::read(&host.subnet_file)
        .ok()
        .flatten()
        .and_then(|env| env.subnet)
        .map(|s| s.trunc())
}

/// The entries of `cidrs` that no route in `ip -4 route show` output starts with.
pub fn missing_routes(table: &str, cidrs: &[String]) -> Vec<String> {
    cidrs
        .iter()
        .filter(|c| {
            !table
                .lines()
                .any(|l| l.split_whitespace().next() == Some(c.as_str()))
        })
        .cloned()
        .collect()
}

/// Whether `ip xfrm state list` output holds an ESP SA from `src` to `dst` (its first line
/// per SA: `src A dst B`, the next `proto esp spi … reqid … mode tunnel`).
pub fn has_esp_sa(text: &str, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    let head = format!("src {src} dst {dst}");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == head {
            if let Some(next) = lines.next() {
                if next.split_whitespace().take(2).eq(["proto", "esp"]) {
                    return true;
                }
            }
        }
    }
    false
}

/// `etcdctl` (API v3) against the lab's etcd, run in etcd's namespace; stdout.
pub fn etcdctl(etcd_ns: &str, args: &[&str]) -> Result<String> {
    Ok(etcd::etcdctl_in(etcd_ns, spec::ETCD_ENDPOINT, args)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_sas_are_found() {
        let text = "src 192.0.2.1 dst 192.0.2.2\n\
                    \tproto esp spi 0xc1a2b3c4 reqid 11 mode tunnel\n\
                    \treplay-window 0 flag af-unspec\n\
                    src 192.0.2.3 dst 192.0.2.1\n\
                    \tproto ah spi 0x1 reqid 1 mode transport\n";
        let ip = |n| Ipv4Addr::new(192, 0, 2, n);
        assert!(has_esp_sa(text, ip(1), ip(2)));
        assert!(!has_esp_sa(text, ip(2), ip(1)));
        assert!(!has_esp_sa(text, ip(3), ip(1)), "AH is not ESP");
        assert!(!has_esp_sa("", ip(1), ip(2)));
        assert!(!has_esp_sa(
            "src 192.0.2.1 dst 192.0.2.20\n\tproto esp spi 1\n",
            ip(1),
            ip(2)
        ));
    }

    #[test]
    fn waits_stretch_with_the_time_scale() {
        let d = Duration::from_secs(20);
        assert_eq!(UpOptions::default().scaled(d), d);
        let slow = UpOptions {
            time_scale: 4,
            ..UpOptions::default()
        };
        assert_eq!(slow.scaled(d), Duration::from_secs(80));
    }

    #[test]
    fn missing_routes_are_found() {
        let table = "198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink\n\
                     198.18.3.0/24 via 192.0.2.3 dev eth0\n\
                     192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.1\n";
        let want = vec![
            "198.18.2.0/24".to_owned(),
            "198.18.3.0/24".to_owned(),
            "198.18.4.0/24".to_owned(),
        ];
        assert_eq!(missing_routes(table, &want), vec!["198.18.4.0/24"]);
        assert_eq!(missing_routes("", &[]), Vec::<String>::new());
        // A longer prefix that merely starts with the same text does not count.
        assert_eq!(
            missing_routes("198.18.2.0/240 dev x\n", &want[..1]),
            vec!["198.18.2.0/24"]
        );
    }
}
