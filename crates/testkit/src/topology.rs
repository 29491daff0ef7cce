//! A multi-host lab made of named network namespaces, for end-to-end tests of flanneld.
//!
//! What this file owns: [`Lab`] (a switch namespace with a bridge, every namespace, process and
//! temporary directory of one test), [`Host`] (a "machine" on the lab's 192.0.2.0/24 underlay),
//! [`Etcd`] (an etcd server in its own namespace at `192.0.2.254:2379`), [`Flanneld`] (one
//! flanneld process in a host), [`Pod`] (a namespace behind the host's `cni0` bridge, wired the
//! way the `flannel` CNI plugin + `bridge` would wire it) and [`PingResult`].
//!
//! Layout of a lab with prefix `frs-<pid>-<n>-<hint>`:
//!
//! ```text
//!   <prefix>-sw    bridge `br0`; ports `h<n>` (peer: eth0 of host n) and `etcd`
//!   <prefix>-etcd  eth0 192.0.2.254/24, etcd client URL http://192.0.2.254:2379
//!   <prefix>-h<n>  eth0 192.0.2.<n>/24, ip_forward=1, rp_filter=0; later cni0 + veth<k>
//!                  dual-stack hosts (`add_host_dual`): also 2001:db8:1::<n>/64, IPv6 forwarding
//!                  IPv6-only hosts (`add_host_v6_only`): only 2001:db8:1::<n>/64 on eth0,
//!                  etcd at http://[2001:db8:1::fe]:2379
//!   <prefix>-h<n>p<k>  eth0 <subnet>.<k+1>/<len>, default route via <subnet>.1
//!                  with FLANNEL_IPV6_SUBNET: also <v6 subnet>::<k+1>/<len>, default via ::1
//!                  (IPv6-only hosts: `add_pod_v6_only`, the IPv6 part alone)
//! ```
//!
//! IPv6 addresses are added with `nodad` (duplicate address detection would keep them tentative
//! for a second or more).
//!
//! Interfaces are created directly inside lab namespaces (`ip -n <ns> link add … peer … netns
//! …`), so the namespace the tests run in is never touched, and their names need no lab prefix.
//! There is no route out of the lab. Dropping the [`Lab`] kills every process it started (also
//! when the test panics), deletes every namespace it created and removes its temporary
//! directory (kept when `FLANNEL_LAB_KEEP=1`, for debugging).
//!
//! Everything is synchronous: commands run through `ip netns exec`, and the few in-process
//! socket operations (HTTP health checks) run on a short-lived thread that has joined the
//! namespace with `setns`. The namespaces, commands, probes and process handling are the
//! sandbox crate's (`flannel-sandbox`, shared with the lab and the benchmarks); this module
//! owns the test topology. Namespaces, processes and the temporary directory are also
//! recorded in `flannel_sandbox::cleanup`, so a program that is stopped by a signal
//! (`flannel-bench`) removes them too.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use flannel_sandbox::etcd::EtcdConfig;
use flannel_sandbox::{cleanup, cmd, etcd, netns, probe, process, text};

/// The lab's underlay network (the hosts' `eth0`).
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// Prefix length of the IPv6 underlay `2001:db8:1::/64` of dual-stack hosts.
pub const UNDERLAY_V6_PREFIX_LEN: u8 = 64;

/// The IPv6 underlay address of dual-stack host `n`: `2001:db8:1::<n>`.
pub fn underlay_v6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(n))
}
/// The address etcd listens on (in its own namespace).
pub const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The etcd client URL every flanneld of the lab is given.
pub const ETCD_ENDPOINT: &str = "http://192.0.2.254:2379";
/// etcd's IPv6 address (on the IPv6 underlay `2001:db8:1::/64`), for IPv6-only hosts.
pub const ETCD_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe);
/// The etcd client URL IPv6-only hosts are given.
pub const ETCD_ENDPOINT_V6: &str = "http://[2001:db8:1::fe]:2379";
/// Flannel's default etcd prefix.
pub const DEFAULT_ETCD_PREFIX: &str = "/coreos.com/network";
/// The health port the harness gives flanneld (inside the host namespace, on 127.0.0.1).
pub const HEALTHZ_PORT: u16 = 10299;

/// First component of every namespace name this module creates.
const NAME_PREFIX: &str = "frs";
/// How long a graceful stop may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long etcd may take to become healthy.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(20);

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Prefixes of the labs alive in this process (so leftover cleanup never touches them).
static LIVE_LABS: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// Time limit of a command run in a lab namespace (generous: tests run pings and traffic).
const EXEC_TIMEOUT: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child process shared between its handle and the lab (which kills it on drop).
type SharedChild = Arc<Mutex<Option<Child>>>;

/// What the lab must undo.
struct LabInner {
    prefix: String,
    dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    children: Mutex<Vec<SharedChild>>,
}

impl LabInner {
    fn ns_name(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Create a namespace with `lo` up and register it for deletion.
    fn add_netns(&self, name: &str) -> Result<()> {
        lock(&self.namespaces).push(name.to_owned());
        netns::add(name)?;
        Ok(())
    }

    fn register_child(&self, child: Child) -> SharedChild {
        if let Ok(pid) = i32::try_from(child.id()) {
            cleanup::track_pid(pid);
        }
        let shared = Arc::new(Mutex::new(Some(child)));
        lock(&self.children).push(shared.clone());
        shared
    }
}

/// One test's private network of namespaces. See the module docs for the layout.
pub struct Lab {
    inner: Arc<LabInner>,
    dir: Option<tempfile::TempDir>,
    switch: String,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.inner.prefix)
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl Lab {
    /// Create a lab: a unique prefix (`frs-<pid>-<counter>-<hint>`), a temporary directory and
    /// the switch namespace with its bridge `br0`.
    pub fn new(name_hint: &str) -> Result<Lab> {
        let hint: String = name_hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{NAME_PREFIX}-{}-{n}-{hint}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .context("creating the lab's temp dir")?;
        let inner = Arc::new(LabInner {
            prefix: prefix.clone(),
            dir: dir.path().to_path_buf(),
            namespaces: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        });
        lock(&LIVE_LABS)
            .get_or_insert_with(HashSet::new)
            .insert(prefix);
        cleanup::track_dir(dir.path());
        let switch = inner.ns_name("sw");
        let lab = Lab {
            inner,
            dir: Some(dir),
            switch,
        };
        // From here on, Drop undoes whatever part of the set-up succeeded.
        lab.inner.add_netns(&lab.switch)?;
        netns::add_bridge(&lab.switch, "br0")?;
        Ok(lab)
    }

    /// The lab's unique name prefix (first part of every namespace name).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The lab's temporary directory (logs, subnet files, etcd data).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The switch namespace's name.
    pub fn switch_ns(&self) -> &str {
        &self.switch
    }

    fn ip(&self, ns: &str, args: &[&str]) -> Result<String> {
        Ok(netns::ip_in(ns, args)?)
    }

    /// Attach namespace `ns` to the switch: veth `port` (in the switch, enslaved to `br0`) whose
    /// peer is `eth0` in `ns`, with `addr` on it.
    fn plug(&self, ns: &str, port: &str, addr: Ipv4Addr) -> Result<()> {
        let cidr = format!("{addr}/{UNDERLAY_PREFIX_LEN}");
        Ok(netns::plug(&self.switch, "br0", port, ns, "eth0", &cidr)?)
    }

    /// Add host `n` (1..=253): namespace `<prefix>-h<n>` with `eth0` = `192.0.2.<n>/24` on the
    /// switch, `lo` up, IPv4 forwarding on and reverse-path filtering off. No default route.
    pub fn add_host(&self, n: u8) -> Result<Host> {
        ensure!((1..=253).contains(&n), "host number {n} is not in 1..=253");
        let ns = self.inner.ns_name(&format!("h{n}"));
        self.inner.add_netns(&ns)?;
        let addr = Ipv4Addr::new(192, 0, 2, n);
        self.plug(&ns, &format!("h{n}"), addr)?;
        let dir = self.inner.dir.join(format!("h{n}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = Host {
            lab: self.inner.clone(),
            n,
            ns,
            addr,
            addr6: None,
            dir,
        };
        host.sysctl("net.ipv4.ip_forward", "1")?;
        for scope in ["all", "default", "eth0"] {
            host.sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
        }
        Ok(host)
    }

    /// [`Lab::add_host`], dual-stack: `eth0` also gets `2001:db8:1::<n>/64` ([`underlay_v6`],
    /// no DAD) and IPv6 forwarding is on. The switch stops snooping multicast (neighbour
    /// discovery must reach every port whatever the MLD state).
    pub fn add_host_dual(&self, n: u8) -> Result<Host> {
        let mut host = self.add_host(n)?;
        self.ip(
            &self.switch,
            &[
                "link",
                "set",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        for scope in ["all", "default"] {
            host.sysctl(&format!("net.ipv6.conf.{scope}.forwarding"), "1")?;
        }
        let addr6 = underlay_v6(n);
        let cidr = format!("{addr6}/{UNDERLAY_V6_PREFIX_LEN}");
        self.ip(
            &host.ns,
            &["-6", "addr", "add", &cidr, "dev", "eth0", "nodad"],
        )?;
        host.addr6 = Some(addr6);
        Ok(host)
    }

    /// [`Lab::add_host`] without IPv4: `eth0` has only `2001:db8:1::<n>/64` ([`underlay_v6`],
    /// no DAD), IPv6 forwarding is on, and flanneld is pointed at etcd's IPv6 address
    /// ([`ETCD_ENDPOINT_V6`]). [`Host::addr`] is `0.0.0.0`.
    pub fn add_host_v6_only(&self, n: u8) -> Result<Host> {
        ensure!((1..=253).contains(&n), "host number {n} is not in 1..=253");
        let ns = self.inner.ns_name(&format!("h{n}"));
        self.inner.add_netns(&ns)?;
        self.ip(
            &self.switch,
            &[
                "link",
                "set",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        let port = format!("h{n}");
        self.ip(
            &self.switch,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        self.ip(&self.switch, &["link", "set", &port, "master", "br0", "up"])?;
        let addr6 = underlay_v6(n);
        let cidr = format!("{addr6}/{UNDERLAY_V6_PREFIX_LEN}");
        self.ip(&ns, &["-6", "addr", "add", &cidr, "dev", "eth0", "nodad"])?;
        self.ip(&ns, &["link", "set", "eth0", "up"])?;
        let dir = self.inner.dir.join(format!("h{n}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = Host {
            lab: self.inner.clone(),
            n,
            ns,
            addr: Ipv4Addr::UNSPECIFIED,
            addr6: Some(addr6),
            dir,
        };
        for scope in ["all", "default"] {
            host.sysctl(&format!("net.ipv6.conf.{scope}.forwarding"), "1")?;
        }
        Ok(host)
    }

    /// Start etcd in namespace `<prefix>-etcd` on `192.0.2.254:2379` (and
    /// `[2001:db8:1::fe]:2379`) with a data directory in the lab's temp dir, and wait until it
    /// is healthy.
    pub fn start_etcd(&self) -> Result<Etcd> {
        let ns = self.inner.ns_name("etcd");
        self.inner.add_netns(&ns)?;
        self.plug(&ns, "etcd", ETCD_IP)?;
        let cidr6 = format!("{ETCD_IP6}/{UNDERLAY_V6_PREFIX_LEN}");
        self.ip(&ns, &["-6", "addr", "add", &cidr6, "dev", "eth0", "nodad"])?;
        let dir = self.inner.dir.join("etcd");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut etcd = Etcd {
            lab: self.inner.clone(),
            ns,
            dir,
            child: None,
        };
        etcd.start()?;
        Ok(etcd)
    }

    /// Delete namespaces named by this module's scheme (`frs-<pid>-<n>-…`, and starting with
    /// `prefix_filter`) that belong to no running lab: their test process is gone, or it is
    /// this process and the lab was dropped without cleaning up. Processes still running in
    /// them are killed first. Returns the names deleted.
    pub fn cleanup_leftovers(prefix_filter: &str) -> Result<Vec<String>> {
        let me = std::process::id();
        let live = lock(&LIVE_LABS).clone().unwrap_or_default();
        let mut deleted = Vec::new();
        for name in netns::list()? {
            let name = name.as_str();
            if !name.starts_with(prefix_filter) {
                continue;
            }
            let Some((pid, lab_prefix)) = parse_lab_name(name) else {
                continue;
            };
            let owner_alive = if pid == me {
                live.iter().any(|p| p == &lab_prefix)
            } else {
                Path::new(&format!("/proc/{pid}")).exists()
            };
            if owner_alive {
                continue;
            }
            if netns::remove(name).is_ok() {
                deleted.push(name.to_owned());
            }
        }
        Ok(deleted)
    }
}

/// `frs-<pid>-<counter>-<hint>-<role>` → (pid, `frs-<pid>-<counter>-<hint>`).
fn parse_lab_name(name: &str) -> Option<(u32, String)> {
    let mut parts = name.splitn(5, '-');
    if parts.next()? != NAME_PREFIX {
        return None;
    }
    let pid: u32 = parts.next()?.parse().ok()?;
    let counter: usize = parts.next()?.parse().ok()?;
    let hint = parts.next()?;
    let _role = parts.next()?;
    Some((pid, format!("{NAME_PREFIX}-{pid}-{counter}-{hint}")))
}

impl Drop for Lab {
    fn drop(&mut self) {
        let children: Vec<SharedChild> = lock(&self.inner.children).drain(..).collect();
        for shared in children {
            kill_child(&shared);
        }
        let namespaces: Vec<String> = lock(&self.inner.namespaces).drain(..).collect();
        // Anything else still running inside (a background ping, say) was started by the test.
        for ns in &namespaces {
            netns::kill_pids(ns);
        }
        for ns in namespaces.iter().rev() {
            if let Err(e) = netns::remove(ns) {
                eprintln!("lab {}: {e:#}", self.inner.prefix);
            }
        }
        if let Some(set) = lock(&LIVE_LABS).as_mut() {
            set.remove(&self.inner.prefix);
        }
        if let Some(dir) = self.dir.take() {
            cleanup::untrack_dir(dir.path());
            if std::env::var("FLANNEL_LAB_KEEP").is_ok_and(|v| v == "1") {
                eprintln!(
                    "lab {}: keeping {}",
                    self.inner.prefix,
                    dir.keep().display()
                );
            }
        }
    }
}

/// A "machine": a namespace on the lab's switch.
#[derive(Clone)]
pub struct Host {
    lab: Arc<LabInner>,
    n: u8,
    ns: String,
    addr: Ipv4Addr,
    addr6: Option<Ipv6Addr>,
    dir: PathBuf,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("ns", &self.ns)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Host {
    /// The host's number `n` (its address is `192.0.2.<n>`).
    pub fn number(&self) -> u8 {
        self.n
    }

    /// The namespace name, `<prefix>-h<n>`.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The underlay address of `eth0` (`0.0.0.0` on IPv6-only hosts).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The IPv6 underlay address of `eth0` (dual-stack hosts only).
    pub fn addr6(&self) -> Option<Ipv6Addr> {
        self.addr6
    }

    /// The host's directory in the lab (subnet file, flanneld log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where flanneld writes this host's `subnet.env`.
    pub fn subnet_file(&self) -> PathBuf {
        self.dir.join("subnet.env")
    }

    /// Run `args` in the host namespace; its stdout, or an error (with stderr) if it fails.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        netns_exec_ok(&self.ns, args)
    }

    /// Run `args` in the host namespace and return the raw output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        netns_exec(&self.ns, args)
    }

    /// Set a sysctl inside the host namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// The current `subnet.env` of this host, parsed.
    pub fn subnet(&self) -> Result<HostSubnet> {
        let path = self.subnet_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        HostSubnet::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// HTTP GET `path` on `127.0.0.1:port` inside the host namespace: (status, body).
    pub fn http_get(&self, port: u16, path: &str) -> Result<(u16, String)> {
        Ok(probe::http_get_in(
            &self.ns,
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            path,
        )?)
    }

    /// Send one UDP datagram from this host's underlay address, port `from_port`, to `to`
    /// (e.g. a forged udp-backend datagram, to check that flanneld drops it).
    pub fn send_udp(&self, from_port: u16, to: SocketAddrV4, payload: &[u8]) -> Result<()> {
        let from = SocketAddrV4::new(self.addr, from_port);
        let payload = payload.to_vec();
        in_netns(&self.ns, move || -> Result<()> {
            let sock = UdpSocket::bind(from).with_context(|| format!("binding {from}"))?;
            let sent = sock
                .send_to(&payload, to)
                .with_context(|| format!("sending from {from} to {to}"))?;
            ensure!(
                sent == payload.len(),
                "sent {sent} of {} bytes",
                payload.len()
            );
            Ok(())
        })?
    }

    /// Start `bin` (flanneld) in this host with the lab's etcd, `--iface=eth0`, this host's
    /// subnet file, `--healthz-ip=127.0.0.1 --healthz-port=`[`HEALTHZ_PORT`] (unless
    /// `extra_args` sets `--healthz-port` itself) and then `extra_args`. stdout and stderr go to
    /// `<host dir>/flanneld.log` (appended across restarts). `FLANNELD_*` variables of the test
    /// environment are not passed on. Does not wait: see [`Flanneld::wait_ready`].
    pub fn start_flanneld(&self, bin: impl AsRef<Path>, extra_args: &[&str]) -> Result<Flanneld> {
        let endpoint = if self.addr.is_unspecified() {
            ETCD_ENDPOINT_V6
        } else {
            ETCD_ENDPOINT
        };
        let mut args = vec![
            format!("--etcd-endpoints={endpoint}"),
            "--iface=eth0".to_owned(),
            format!("--subnet-file={}", self.subnet_file().display()),
        ];
        let own_healthz = extra_args
            .iter()
            .any(|a| a.trim_start_matches('-').starts_with("healthz-port"));
        let healthz_port = if own_healthz {
            extra_args.iter().find_map(|a| {
                a.trim_start_matches('-')
                    .strip_prefix("healthz-port=")
                    .and_then(|p| p.parse().ok())
            })
        } else {
            args.push("--healthz-ip=127.0.0.1".to_owned());
            args.push(format!("--healthz-port={HEALTHZ_PORT}"));
            Some(HEALTHZ_PORT)
        };
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let mut flanneld = Flanneld {
            host: self.clone(),
            bin: bin.as_ref().to_path_buf(),
            args,
            healthz_port: healthz_port.filter(|p| *p > 0),
            log: self.dir.join("flanneld.log"),
            child: None,
            started_at: SystemTime::now(),
            starts: 0,
        };
        flanneld.spawn()?;
        Ok(flanneld)
    }

    /// Add pod `k` (1..=250) behind this host's `cni0` bridge, using the subnet and MTU from the
    /// host's `subnet.env` (flanneld must have written it): namespace `<prefix>-h<n>p<k>`, veth
    /// `veth<k>` in the host (on `cni0`) and `eth0` in the pod with `<subnet>.<k+1>/<len>`,
    /// default route via `<subnet>.1`. `cni0` is created with `<subnet>.1/<len>` on first use.
    /// With `FLANNEL_IPV6_SUBNET` in `subnet.env` the same for IPv6: `cni0` gets
    /// `<v6 subnet>::1/<len>`, the pod `<v6 subnet>::<k+1>/<len>` and an IPv6 default route.
    pub fn add_pod(&self, k: u8) -> Result<Pod> {
        ensure!((1..=250).contains(&k), "pod number {k} is not in 1..=250");
        let subnet = self.subnet()?;
        let mtu = subnet.mtu.to_string();
        let gateway = subnet.gateway();
        let bridge_cidr = format!("{gateway}/{}", subnet.prefix_len);
        let has_bridge = self.run(&["ip", "link", "show", "cni0"])?.status.success();
        if !has_bridge {
            self.exec(&["ip", "link", "add", "cni0", "type", "bridge"])?;
            self.exec(&["ip", "addr", "add", &bridge_cidr, "dev", "cni0"])?;
            if let Some(v6) = &subnet.ipv6 {
                let cidr6 = format!("{}/{}", v6.gateway(), v6.prefix_len);
                self.exec(&["ip", "-6", "addr", "add", &cidr6, "dev", "cni0", "nodad"])?;
            }
            self.exec(&["ip", "link", "set", "cni0", "mtu", &mtu, "up"])?;
        }
        let pod_ns = self.lab.ns_name(&format!("h{}p{k}", self.n));
        self.lab.add_netns(&pod_ns)?;
        let veth = format!("veth{k}");
        self.exec(&[
            "ip", "link", "add", &veth, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu",
            &mtu, "netns", &pod_ns,
        ])?;
        self.exec(&["ip", "link", "set", &veth, "master", "cni0", "up"])?;
        let addr = subnet.host_addr(u32::from(k) + 1);
        let cidr = format!("{addr}/{}", subnet.prefix_len);
        let gw = gateway.to_string();
        netns_exec_ok(&pod_ns, &["ip", "addr", "add", &cidr, "dev", "eth0"])?;
        let addr6 = match &subnet.ipv6 {
            Some(v6) => {
                let a = v6.host_addr(u128::from(k) + 1);
                let cidr6 = format!("{a}/{}", v6.prefix_len);
                netns_exec_ok(
                    &pod_ns,
                    &["ip", "-6", "addr", "add", &cidr6, "dev", "eth0", "nodad"],
                )?;
                Some(a)
            }
            None => None,
        };
        netns_exec_ok(&pod_ns, &["ip", "link", "set", "eth0", "up"])?;
        netns_exec_ok(&pod_ns, &["ip", "route", "add", "default", "via", &gw])?;
        if let Some(v6) = &subnet.ipv6 {
            let gw6 = v6.gateway().to_string();
            netns_exec_ok(
                &pod_ns,
                &["ip", "-6", "route", "add", "default", "via", &gw6],
            )?;
        }
        Ok(Pod {
            ns: pod_ns,
            addr,
            addr6,
            host_ns: self.ns.clone(),
        })
    }
}

impl Host {
    /// Add pod `k` (1..=250) on an IPv6-only host: like [`Host::add_pod`] with only the
    /// `FLANNEL_IPV6_SUBNET` part (`cni0` gets `<v6 subnet>::1/<len>`, the pod
    /// `<v6 subnet>::<k+1>/<len>` and an IPv6 default route). [`Pod::addr`] is `0.0.0.0`.
    pub fn add_pod_v6_only(&self, k: u8) -> Result<Pod> {
        ensure!((1..=250).contains(&k), "pod number {k} is not in 1..=250");
        let path = self.subnet_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let (v6, mtu) = HostSubnet6::parse_v6_only(&text)
            .with_context(|| format!("parsing {}", path.display()))?;
        let mtu = mtu.to_string();
        let has_bridge = self.run(&["ip", "link", "show", "cni0"])?.status.success();
        if !has_bridge {
            self.exec(&["ip", "link", "add", "cni0", "type", "bridge"])?;
            let cidr6 = format!("{}/{}", v6.gateway(), v6.prefix_len);
            self.exec(&["ip", "-6", "addr", "add", &cidr6, "dev", "cni0", "nodad"])?;
            self.exec(&["ip", "link", "set", "cni0", "mtu", &mtu, "up"])?;
        }
        let pod_ns = self.lab.ns_name(&format!("h{}p{k}", self.n));
        self.lab.add_netns(&pod_ns)?;
        let veth = format!("veth{k}");
        self.exec(&[
            "ip", "link", "add", &veth, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu",
            &mtu, "netns", &pod_ns,
        ])?;
        self.exec(&["ip", "link", "set", &veth, "master", "cni0", "up"])?;
        let a = v6.host_addr(u128::from(k) + 1);
        let cidr6 = format!("{a}/{}", v6.prefix_len);
        netns_exec_ok(
            &pod_ns,
            &["ip", "-6", "addr", "add", &cidr6, "dev", "eth0", "nodad"],
        )?;
        netns_exec_ok(&pod_ns, &["ip", "link", "set", "eth0", "up"])?;
        let gw6 = v6.gateway().to_string();
        netns_exec_ok(
            &pod_ns,
            &["ip", "-6", "route", "add", "default", "via", &gw6],
        )?;
        Ok(Pod {
            ns: pod_ns,
            addr: Ipv4Addr::UNSPECIFIED,
            addr6: Some(a),
            host_ns: self.ns.clone(),
        })
    }
}

/// The parts of a `subnet.env` the lab needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSubnet {
    /// `FLANNEL_NETWORK` as text, if present.
    pub network: Option<String>,
    /// Network address of `FLANNEL_SUBNET` (e.g. `198.18.7.0`).
    pub subnet: Ipv4Addr,
    /// Prefix length of `FLANNEL_SUBNET`.
    pub prefix_len: u8,
    /// `FLANNEL_MTU`.
    pub mtu: u32,
    /// `FLANNEL_IPMASQ`, if present.
    pub ipmasq: Option<bool>,
    /// `FLANNEL_IPV6_SUBNET`, if present.
    pub ipv6: Option<HostSubnet6>,
    /// The file's text, byte for byte.
    pub raw: String,
}

/// The IPv6 subnet of a `subnet.env` (`FLANNEL_IPV6_SUBNET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSubnet6 {
    /// Network address (e.g. `2001:db8:f000:7::`).
    pub subnet: Ipv6Addr,
    /// Prefix length.
    pub prefix_len: u8,
}

impl HostSubnet6 {
    /// `FLANNEL_IPV6_SUBNET` and `FLANNEL_MTU` of an IPv6-only `subnet.env` (one without
    /// `FLANNEL_SUBNET`, which [`HostSubnet::parse`] requires).
    pub fn parse_v6_only(text: &str) -> Result<(HostSubnet6, u32)> {
        let mut subnet = None;
        let mut mtu = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("FLANNEL_IPV6_SUBNET", value)) => {
                    let (ip, len) = value
                        .trim()
                        .split_once('/')
                        .with_context(|| format!("FLANNEL_IPV6_SUBNET {value:?} is not a CIDR"))?;
                    let ip: Ipv6Addr = ip.parse().context("FLANNEL_IPV6_SUBNET address")?;
                    let len: u8 = len.parse().context("FLANNEL_IPV6_SUBNET prefix length")?;
                    ensure!(len <= 128, "FLANNEL_IPV6_SUBNET prefix length {len} > 128");
                    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                    subnet = Some(HostSubnet6 {
                        subnet: Ipv6Addr::from(u128::from(ip) & mask),
                        prefix_len: len,
                    });
                }
                Some(("FLANNEL_MTU", value)) => {
                    mtu = Some(value.trim().parse().context("FLANNEL_MTU")?);
                }
                _ => {}
            }
        }
        Ok((
            subnet.context("no FLANNEL_IPV6_SUBNET")?,
            mtu.context("no FLANNEL_MTU")?,
        ))
    }

    /// The subnet as `addr/len` (network address).
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix_len)
    }

    /// The `i`-th address of the subnet (0 = the network address).
    pub fn host_addr(&self, i: u128) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.subnet).wrapping_add(i))
    }

    /// `<subnet>::1`, the bridge address.
    pub fn gateway(&self) -> Ipv6Addr {
        self.host_addr(1)
    }
}

impl HostSubnet {
    /// Parse `KEY=value` lines; `FLANNEL_SUBNET` and `FLANNEL_MTU` are required.
    pub fn parse(text: &str) -> Result<HostSubnet> {
        let mut network = None;
        let mut subnet = None;
        let mut mtu = None;
        let mut ipmasq = None;
        let mut ipv6 = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key.trim() {
                "FLANNEL_NETWORK" => network = Some(value.trim().to_owned()),
                "FLANNEL_SUBNET" => {
                    let (ip, len) = value
                        .trim()
                        .split_once('/')
                        .with_context(|| format!("FLANNEL_SUBNET {value:?} is not a CIDR"))?;
                    let ip: Ipv4Addr = ip.parse().context("FLANNEL_SUBNET address")?;
                    let len: u8 = len.parse().context("FLANNEL_SUBNET prefix length")?;
                    ensure!(len <= 32, "FLANNEL_SUBNET prefix length {len} > 32");
                    subnet = Some((ip, len));
                }
                "FLANNEL_IPV6_SUBNET" => {
                    let (ip, len) = value
                        .trim()
                        .split_once('/')
                        .with_context(|| format!("FLANNEL_IPV6_SUBNET {value:?} is not a CIDR"))?;
                    let ip: Ipv6Addr = ip.parse().context("FLANNEL_IPV6_SUBNET address")?;
                    let len: u8 = len.parse().context("FLANNEL_IPV6_SUBNET prefix length")?;
                    ensure!(len <= 128, "FLANNEL_IPV6_SUBNET prefix length {len} > 128");
                    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                    ipv6 = Some(HostSubnet6 {
                        subnet: Ipv6Addr::from(u128::from(ip) & mask),
                        prefix_len: len,
                    });
                }
                "FLANNEL_MTU" => mtu = Some(value.trim().parse().context("FLANNEL_MTU")?),
                "FLANNEL_IPMASQ" => ipmasq = Some(value.trim() == "true"),
                _ => {}
            }
        }
        let (ip, prefix_len) = subnet.context("no FLANNEL_SUBNET")?;
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Ok(HostSubnet {
            network,
            subnet: Ipv4Addr::from(u32::from(ip) & mask),
            prefix_len,
            mtu: mtu.context("no FLANNEL_MTU")?,
            ipmasq,
            ipv6,
            raw: text.to_owned(),
        })
    }

    /// The subnet as `a.b.c.d/len` (network address).
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix_len)
    }

    /// The `i`-th address of the subnet (0 = the network address).
    pub fn host_addr(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet).wrapping_add(i))
    }

    /// `<subnet>.1`, the bridge address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host_addr(1)
    }
}

/// A pod: a namespace behind its host's `cni0`.
#[derive(Debug, Clone)]
pub struct Pod {
    ns: String,
    addr: Ipv4Addr,
    addr6: Option<Ipv6Addr>,
    host_ns: String,
}

/// Outcome of a `ping` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingResult {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
}

impl PingResult {
    /// Every request was answered (and at least one was sent).
    pub fn all_received(&self) -> bool {
        self.sent > 0 && self.received == self.sent
    }
}

impl Pod {
    /// The pod's namespace name.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The pod's address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The pod's IPv6 address (when its host's `subnet.env` has an IPv6 subnet).
    pub fn addr6(&self) -> Option<Ipv6Addr> {
        self.addr6
    }

    /// The namespace of the host it lives on.
    pub fn host_ns(&self) -> &str {
        &self.host_ns
    }

    /// Run `args` in the pod namespace; its stdout, or an error (with stderr) if it fails.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        netns_exec_ok(&self.ns, args)
    }

    /// `ping -c count -i interval -W <1 s × time scale> -q dst` from the pod (IPv4 or IPv6, after `dst`);
    /// counts from the summary line. Loss is not an error; a ping that prints no summary is.
    pub fn ping(
        &self,
        dst: impl Into<IpAddr>,
        count: u32,
        interval: Duration,
    ) -> Result<PingResult> {
        let dst = dst.into();
        // ping ends about a second after its last request; on a loaded machine its intervals
        // stretch (a 1000 × 10 ms run has taken over 20 s), so the bound is generous.
        let bound = interval * count * 4 + Duration::from_secs(60);
        let out = cmd::run(
            probe::ping_command(&self.ns, dst, count, interval),
            None,
            bound,
        )?;
        parse_ping_summary(&out.stdout).with_context(|| {
            format!(
                "ping {dst} from {}: no summary ({}); stdout: {}; stderr: {}",
                self.ns, out.status, out.stdout, out.stderr
            )
        })
    }
}

/// `N packets transmitted, M received, …` → counts.
pub fn parse_ping_summary(text: &str) -> Option<PingResult> {
    probe::parse_ping(text).map(|s| PingResult {
        sent: s.sent,
        received: s.received,
    })
}

/// etcd in its own namespace at [`ETCD_ENDPOINT`].
pub struct Etcd {
    lab: Arc<LabInner>,
    ns: String,
    dir: PathBuf,
    child: Option<SharedChild>,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("ns", &self.ns)
            .field("dir", &self.dir)
            .finish()
    }
}

impl Etcd {
    /// The client URL.
    pub fn endpoint(&self) -> &'static str {
        ETCD_ENDPOINT
    }

    /// The namespace etcd runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The etcd log (stdout + stderr, warnings and errors).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Start etcd (again) with the same data directory and wait until `/health` is OK.
    /// Does nothing when it is running.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let data = self.dir.join("data");
        let config = EtcdConfig {
            name: "lab",
            data_dir: &data,
            client_urls: &[ETCD_ENDPOINT, ETCD_ENDPOINT_V6],
            advertise: ETCD_ENDPOINT,
            peer_url: etcd::PEER_URL,
            log_level: Some("warn"),
        };
        let child = etcd::command(&self.ns, &config, &self.log_file())?
            .spawn()
            .context("spawning etcd")?;
        self.child = Some(self.lab.register_child(child));
        let deadline = Instant::now() + crate::vm::scaled(ETCD_START_TIMEOUT);
        let health = SocketAddr::from((ETCD_IP, 2379));
        loop {
            if !self.is_running() {
                bail!("etcd exited during start-up; log:\n{}", self.log_tail(20));
            }
            if etcd::healthy_in(&self.ns, health) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "etcd was not healthy within {ETCD_START_TIMEOUT:?}; log:\n{}",
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop etcd (SIGTERM, SIGKILL after 10 s) and wait for it. Data is kept for [`Etcd::start`].
    pub fn stop(&mut self) -> Result<()> {
        if let Some(shared) = self.child.take() {
            stop_child(&shared, STOP_TIMEOUT)?;
        }
        Ok(())
    }

    /// Kill etcd at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(shared) = self.child.take() {
            kill_child(&shared);
        }
    }

    /// Whether the etcd process is running.
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(child_running)
    }

    /// Run `etcdctl` (API v3) against this etcd, from inside its namespace; stdout, or an error
    /// with stderr when it exits non-zero.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        etcd::etcdctl_in(&self.ns, ETCD_ENDPOINT, args).with_context(|| format!("etcdctl {args:?}"))
    }

    /// Write the network config to `/coreos.com/network/config`.
    pub fn put_config(&self, json: &str) -> Result<()> {
        self.put_config_at(DEFAULT_ETCD_PREFIX, json)
    }

    /// Write the network config to `<prefix>/config`.
    pub fn put_config_at(&self, prefix: &str, json: &str) -> Result<()> {
        let key = format!("{}/config", prefix.trim_end_matches('/'));
        self.etcdctl(&["put", &key, json]).map(drop)
    }

    /// The subnet lease keys under `<prefix>/subnets/` with their values, sorted by key.
    pub fn leases_at(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let dir = format!("{}/subnets/", prefix.trim_end_matches('/'));
        let out = self.etcdctl(&["get", "--prefix", &dir])?;
        let lines: Vec<&str> = out.lines().collect();
        let mut pairs: Vec<(String, String)> = lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect();
        pairs.sort();
        Ok(pairs)
    }

    /// [`Etcd::leases_at`] with the default prefix.
    pub fn leases(&self) -> Result<Vec<(String, String)>> {
        self.leases_at(DEFAULT_ETCD_PREFIX)
    }

    /// The last `n` lines of the etcd log.
    pub fn log_tail(&self, n: usize) -> String {
        text::tail(
            &std::fs::read_to_string(self.log_file()).unwrap_or_default(),
            n,
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One flanneld process in a host (restartable with the same arguments).
pub struct Flanneld {
    host: Host,
    bin: PathBuf,
    args: Vec<String>,
    healthz_port: Option<u16>,
    log: PathBuf,
    child: Option<SharedChild>,
    started_at: SystemTime,
    starts: u32,
}

impl fmt::Debug for Flanneld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flanneld")
            .field("host", &self.host.ns)
            .field("args", &self.args)
            .field("starts", &self.starts)
            .finish()
    }
}

impl Flanneld {
    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        writeln!(
            log,
            "===== lab: start #{} of flanneld {:?}",
            self.starts, self.args
        )
        .context("writing the flanneld log")?;
        drop(log);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host.ns])
            .arg(&self.bin)
            .args(&self.args);
        process::log_to(&mut cmd, &self.log)?;
        process::drop_env(&mut cmd, &["FLANNELD_"]);
        self.started_at = SystemTime::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(self.host.lab.register_child(child));
        Ok(())
    }

    /// The host it runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The full argument list (after the binary).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Wait until this run of flanneld is ready: `/readyz` answers 200 (when a health port is
    /// configured) and `subnet.env` exists and was written by this run. Fails at once when the
    /// process exits, and after `timeout`; the error carries the log's tail.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let timeout = crate::vm::scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                bail!(
                    "flanneld in {} exited ({status}) before it was ready; log:\n{}",
                    self.host.ns,
                    self.log_tail(40)
                );
            }
            if self.ready_now() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "flanneld in {} was not ready within {timeout:?}; log:\n{}",
                    self.host.ns,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ready_now(&self) -> bool {
        match self.healthz_port {
            Some(port) => {
                matches!(self.host.http_get(port, "/readyz"), Ok((200, _)))
                    && self.host.subnet_file().exists()
            }
            None => std::fs::metadata(self.host.subnet_file())
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= self.started_at),
        }
    }

    /// Graceful stop: SIGTERM, wait (SIGKILL after 10 s). Returns the exit status; `Ok(None)`
    /// when it was not running.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.take() {
            Some(shared) => stop_child(&shared, STOP_TIMEOUT).map(Some),
            None => Ok(None),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(shared) = self.child.take() {
            kill_child(&shared);
        }
    }

    /// Stop (gracefully) and start again with the same arguments. Does not wait for readiness.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Start again after [`Flanneld::stop`] / [`Flanneld::kill`] (or after it exited).
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.child = None;
        self.spawn()
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(child_running)
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let shared = self.child.as_ref()?;
        let mut guard = lock(shared);
        guard.as_mut()?.try_wait().ok().flatten()
    }

    /// The whole log file (every run of this host's flanneld).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        text::tail(&self.log(), n)
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

/// The last `n` lines of each flanneld's log, headed by its host, for failure messages.
pub fn log_tails(flanneld: &[Flanneld], n: usize) -> String {
    flanneld
        .iter()
        .map(|f| format!("\n--- {} ---\n{}", f.host().ns(), f.log_tail(n)))
        .collect()
}

impl Drop for Flanneld {
    fn drop(&mut self) {
        self.kill();
    }
}

fn child_running(shared: &SharedChild) -> bool {
    lock(shared)
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

fn kill_child(shared: &SharedChild) {
    if let Some(mut child) = lock(shared).take() {
        process::kill_child(&mut child);
        untrack(&child);
    }
}

fn stop_child(shared: &SharedChild, timeout: Duration) -> Result<ExitStatus> {
    let Some(mut child) = lock(shared).take() else {
        bail!("process already reaped");
    };
    let status = process::stop_child(&mut child, crate::vm::scaled(timeout))?;
    untrack(&child);
    Ok(status)
}

fn untrack(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        cleanup::untrack_pid(pid);
    }
}

/// Poll `check` every `interval` until it returns `true` or `timeout` passes; whether it did.
/// Errors from `check` count as "not yet". `timeout` is stretched under emulation
/// ([`crate::vm::scaled`]).
pub fn wait_until(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> bool {
    let deadline = Instant::now() + crate::vm::scaled(timeout);
    loop {
        if matches!(check(), Ok(true)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(interval);
    }
}

/// `args` in namespace `ns` (bounded by [`EXEC_TIMEOUT`]), whatever the exit status.
fn netns_exec(ns: &str, args: &[&str]) -> Result<Output> {
    ensure!(!args.is_empty(), "empty command");
    let out = cmd::run(netns::in_ns(ns, args), None, EXEC_TIMEOUT)
        .with_context(|| format!("running {args:?} in {ns}"))?;
    Ok(Output {
        status: ExitStatus::from_raw(out.status.into_raw()),
        stdout: out.stdout.into_bytes(),
        stderr: out.stderr.into_bytes(),
    })
}

fn netns_exec_ok(ns: &str, args: &[&str]) -> Result<String> {
    let out = netns_exec(ns, args)?;
    ensure!(
        out.status.success(),
        "{args:?} in {ns} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `f` on a fresh thread that has joined network namespace `ns` (sockets it opens live
/// there). The calling thread's namespace is untouched.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    Ok(netns::in_netns(ns, f)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `program args` (in the test's namespace): stdout, or an error with stderr.
    fn run_ok(program: &str, args: &[&str]) -> Result<String> {
        Ok(cmd::sh(program, args, cmd::quick_timeout())?)
    }

    #[test]
    fn ping_summary_is_parsed() {
        let text = "PING 198.18.2.2 (198.18.2.2) 56(84) bytes of data.\n\n--- 198.18.2.2 ping \
                    statistics ---\n5 packets transmitted, 4 received, 20% packet loss, time \
                    4005ms\nrtt min/avg/max/mdev = 0.050/0.080/0.100/0.020 ms\n";
        assert_eq!(
            parse_ping_summary(text),
            Some(PingResult {
                sent: 5,
                received: 4
            })
        );
        let errors = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n";
        assert_eq!(
            parse_ping_summary(errors),
            Some(PingResult {
                sent: 3,
                received: 0
            })
        );
        assert_eq!(
            parse_ping_summary("connect: Network is unreachable\n"),
            None
        );
    }

    #[test]
    fn subnet_env_is_parsed() {
        let text = "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.42.1/24\n\
                    FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";
        let s = HostSubnet::parse(text).unwrap();
        assert_eq!(s.network.as_deref(), Some("198.18.0.0/16"));
        assert_eq!(s.subnet, Ipv4Addr::new(198, 18, 42, 0));
        assert_eq!(s.cidr(), "198.18.42.0/24");
        assert_eq!(s.gateway(), Ipv4Addr::new(198, 18, 42, 1));
        assert_eq!(s.host_addr(3), Ipv4Addr::new(198, 18, 42, 3));
        assert_eq!(s.mtu, 1450);
        assert_eq!(s.ipmasq, Some(false));
        assert_eq!(s.ipv6, None);
        let dual = HostSubnet::parse(
            "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.42.1/24\n\
             FLANNEL_IPV6_NETWORK=2001:db8:f000::/48\nFLANNEL_IPV6_SUBNET=2001:db8:f000:2a::1/64\n\
             FLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
        )
        .unwrap();
        let v6 = dual.ipv6.unwrap();
        assert_eq!(v6.cidr(), "2001:db8:f000:2a::/64");
        assert_eq!(
            v6.gateway(),
            "2001:db8:f000:2a::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            v6.host_addr(3),
            "2001:db8:f000:2a::3".parse::<Ipv6Addr>().unwrap()
        );
        assert!(HostSubnet::parse("FLANNEL_MTU=1450\n").is_err());
        assert!(HostSubnet::parse("FLANNEL_SUBNET=198.18.42.1/24\n").is_err());
    }

    #[test]
    fn lab_names_are_parsed() {
        assert_eq!(
            parse_lab_name("frs-123-4-vxlan_two-h1p2"),
            Some((123, "frs-123-4-vxlan_two".to_owned()))
        );
        assert_eq!(parse_lab_name("frs-123-4-x"), None);
        assert_eq!(parse_lab_name("other-123-4-x-h1"), None);
        assert_eq!(parse_lab_name("frs-abc-4-x-h1"), None);
    }

    /// Two hosts and etcd; host-to-host and host-to-etcd reachability; everything is gone after
    /// the lab is dropped.
    #[test]
    fn lab_builds_and_cleans_up() {
        if !crate::privileged::require_root("testkit::topology::lab_builds_and_cleans_up") {
            return;
        }
        let lab = Lab::new("selftest").unwrap();
        let h1 = lab.add_host(1).unwrap();
        let h2 = lab.add_host(2).unwrap();
        let etcd = lab.start_etcd().unwrap();
        let out = h1
            .exec(&["ping", "-c", "1", "-W", "2", "192.0.2.2"])
            .unwrap();
        assert!(out.contains("1 received"), "{out}");
        assert!(h2
            .exec(&["ip", "route"])
            .unwrap()
            .lines()
            .all(|l| !l.starts_with("default")));
        assert_eq!(
            h1.exec(&["sysctl", "-n", "net.ipv4.ip_forward"])
                .unwrap()
                .trim(),
            "1"
        );
        etcd.put_config(r#"{"Network":"198.18.0.0/16"}"#).unwrap();
        let got = etcd
            .etcdctl(&["get", "/coreos.com/network/config", "--print-value-only"])
            .unwrap();
        assert_eq!(got.trim(), r#"{"Network":"198.18.0.0/16"}"#);

        // A fake subnet.env is enough to wire pods.
        std::fs::write(
            h1.subnet_file(),
            "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.7.1/24\nFLANNEL_MTU=1400\n",
        )
        .unwrap();
        let pod = h1.add_pod(1).unwrap();
        let pod2 = h1.add_pod(2).unwrap();
        assert_eq!(pod.addr(), Ipv4Addr::new(198, 18, 7, 2));
        let r = pod
            .ping(pod2.addr(), 3, Duration::from_millis(200))
            .unwrap();
        assert_eq!(
            r,
            PingResult {
                sent: 3,
                received: 3
            }
        );
        let r = pod
            .ping(Ipv4Addr::new(192, 0, 2, 2), 1, Duration::from_millis(200))
            .unwrap();
        assert_eq!(r.sent, 1);
        assert_eq!(r.received, 0, "no route back from h2 to the pod: no reply");
        assert!(pod
            .exec(&["ip", "link", "show", "eth0"])
            .unwrap()
            .contains("mtu 1400"));

        let prefix = lab.prefix().to_owned();
        let dir = lab.dir().to_path_buf();
        drop(etcd);
        drop(lab);
        let left = run_ok("ip", &["netns", "list"]).unwrap();
        assert!(!left.contains(&prefix), "namespaces left behind: {left}");
        assert!(!dir.exists());
    }

    /// The process side of [`Flanneld`] with a stand-in daemon (a shell script that writes the
    /// subnet file, logs, and exits 0 on SIGTERM).
    #[test]
    fn daemon_starts_stops_and_restarts() {
        use std::os::unix::fs::PermissionsExt;
        if !crate::privileged::require_root("testkit::topology::daemon_starts_stops_and_restarts") {
            return;
        }
        let lab = Lab::new("fakedaemon").unwrap();
        let h1 = lab.add_host(1).unwrap();
        let script = lab.dir().join("fake-flanneld");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             for a; do case $a in --subnet-file=*) f=${a#--subnet-file=};; esac; done\n\
             echo \"args: $*\"\n\
             ip -o addr show dev eth0\n\
             sleep 0.2\n\
             printf 'FLANNEL_SUBNET=198.18.3.1/24\\nFLANNEL_MTU=1450\\n' > \"$f.tmp\"\n\
             mv \"$f.tmp\" \"$f\"\n\
             trap 'echo bye; exit 0' TERM\n\
             while :; do sleep 0.05; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut f = h1
            .start_flanneld(&script, &["--healthz-port=0", "-v=2"])
            .unwrap();
        f.wait_ready(Duration::from_secs(10)).unwrap();
        assert!(f.is_running());
        assert_eq!(h1.subnet().unwrap().cidr(), "198.18.3.0/24");
        let log = f.log();
        assert!(
            log.contains("--etcd-endpoints=http://192.0.2.254:2379 --iface=eth0 --subnet-file="),
            "{log}"
        );
        assert!(log.contains("--healthz-port=0 -v=2"), "{log}");
        assert!(
            log.contains("inet 192.0.2.1/24"),
            "runs in the host namespace: {log}"
        );
        assert!(f.stop().unwrap().unwrap().success());
        assert!(f.log().contains("bye"));
        f.restart().unwrap();
        f.wait_ready(Duration::from_secs(10)).unwrap();
        assert!(f.log().contains("start #2"));
        f.kill();
        assert!(!f.is_running());
    }

    /// Dual-stack hosts reach each other over IPv6 at once (no DAD), and pods get IPv6
    /// addresses and a default route from `FLANNEL_IPV6_SUBNET`.
    #[test]
    fn dual_stack_hosts_and_pods() {
        if !crate::privileged::require_root("testkit::topology::dual_stack_hosts_and_pods") {
            return;
        }
        let lab = Lab::new("dualself").unwrap();
        let h1 = lab.add_host_dual(1).unwrap();
        let h2 = lab.add_host_dual(2).unwrap();
        assert_eq!(h2.addr6(), Some("2001:db8:1::2".parse().unwrap()));
        let out = h1
            .exec(&["ping", "-c", "1", "-W", "2", "2001:db8:1::2"])
            .unwrap();
        assert!(out.contains("1 received"), "{out}");
        assert_eq!(
            h1.exec(&["sysctl", "-n", "net.ipv6.conf.eth0.forwarding"])
                .unwrap()
                .trim(),
            "1"
        );
        std::fs::write(
            h1.subnet_file(),
            "FLANNEL_SUBNET=198.18.7.1/24\nFLANNEL_IPV6_SUBNET=2001:db8:f000:7::1/64\n\
             FLANNEL_MTU=1400\n",
        )
        .unwrap();
        let pod = h1.add_pod(1).unwrap();
        let pod2 = h1.add_pod(2).unwrap();
        assert_eq!(pod.addr6(), Some("2001:db8:f000:7::2".parse().unwrap()));
        let r = pod
            .ping(pod2.addr6().unwrap(), 2, Duration::from_millis(200))
            .unwrap();
        assert!(r.all_received(), "{r:?}");
        let routes = pod.exec(&["ip", "-6", "route", "show", "default"]).unwrap();
        assert!(
            routes.starts_with("default via 2001:db8:f000:7::1 dev eth0"),
            "{routes}"
        );
    }

    #[test]
    fn lab_is_cleaned_up_when_the_test_panics() {
        if !crate::privileged::require_root("testkit::topology::lab_is_cleaned_up_on_panic") {
            return;
        }
        let seen: Arc<Mutex<Option<(String, PathBuf)>>> = Arc::new(Mutex::new(None));
        let seen2 = seen.clone();
        let outcome = std::panic::catch_unwind(move || {
            let lab = Lab::new("panics").unwrap();
            let h1 = lab.add_host(1).unwrap();
            let _etcd = lab.start_etcd().unwrap();
            std::fs::write(
                h1.subnet_file(),
                "FLANNEL_SUBNET=198.18.9.1/24\nFLANNEL_MTU=1450\n",
            )
            .unwrap();
            let _pod = h1.add_pod(1).unwrap();
            *lock(&seen2) = Some((lab.prefix().to_owned(), lab.dir().to_path_buf()));
            panic!("deliberate panic with a lab in scope");
        });
        assert!(outcome.is_err());
        let (prefix, dir) = lock(&seen).clone().unwrap();
        let left = run_ok("ip", &["netns", "list"]).unwrap();
        assert!(!left.contains(&prefix), "namespaces left behind: {left}");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn etcd_stops_and_starts_with_its_data() {
        if !crate::privileged::require_root("testkit::topology::etcd_stops_and_starts") {
            return;
        }
        let lab = Lab::new("etcdrestart").unwrap();
        let mut etcd = lab.start_etcd().unwrap();
        etcd.etcdctl(&["put", "/k", "v"]).unwrap();
        etcd.stop().unwrap();
        assert!(!etcd.is_running());
        assert!(etcd.etcdctl(&["get", "/k"]).is_err());
        etcd.start().unwrap();
        assert_eq!(
            etcd.etcdctl(&["get", "/k", "--print-value-only"])
                .unwrap()
                .trim(),
            "v"
        );
    }

    #[test]
    fn leftovers_of_dead_labs_are_removed() {
        if !crate::privileged::require_root("testkit::topology::leftovers") {
            return;
        }
        // A namespace that looks like it belongs to a lab of a process that no longer exists
        // (pid 0 is never a user process: /proc/0 does not exist).
        let fake = format!("{NAME_PREFIX}-0-{}-leftover-h1", std::process::id());
        run_ok("ip", &["netns", "add", &fake]).unwrap();
        let lab = Lab::new("alive").unwrap();
        let _h = lab.add_host(1).unwrap();
        let deleted = Lab::cleanup_leftovers(&format!("{NAME_PREFIX}-")).unwrap();
        assert!(deleted.contains(&fake), "{deleted:?}");
        let left = run_ok("ip", &["netns", "list"]).unwrap();
        assert!(!left.contains(&fake));
        assert!(left.contains(lab.prefix()), "a live lab is kept: {left}");
    }
}
