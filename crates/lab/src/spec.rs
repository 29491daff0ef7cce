//! What a lab is made of (pure): the [`LabSpec`] the user asks for, the fixed addresses, and
//! the texts handed to etcd, flanneld and the CNI plugin.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::naming::{LabName, MAX_HOSTS, MAX_PODS};

/// Prefix length of the underlay `192.0.2.0/24` (documentation range, RFC 5737).
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// etcd's address on the underlay.
pub const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The etcd client URL every flanneld of a lab is given.
pub const ETCD_ENDPOINT: &str = "http://192.0.2.254:2379";
/// etcd's client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// Flannel's default etcd prefix (the lab uses it).
pub const ETCD_PREFIX: &str = "/coreos.com/network";
/// flanneld's health port inside each host namespace (on 127.0.0.1).
pub const HEALTHZ_PORT: u16 = 10299;
/// The default pod network: `198.18.0.0/16` (benchmarking range, RFC 2544).
pub const DEFAULT_NETWORK: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 16) {
    Ok(n) => n,
    Err(_) => panic!("constant network"),
};
/// The CNI network name (Flannel's default `cbr0`).
pub const CNI_NETWORK_NAME: &str = "cbr0";
/// Where Debian's `containernetworking-plugins` puts `bridge` and `host-local`.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The underlay address of host `n`: `192.0.2.<n>`.
pub fn host_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, n)
}

/// flanneld's backend, as written in the network config's `Backend.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// VXLAN overlay (`flannel.1`).
    #[serde(rename = "vxlan")]
    Vxlan,
    /// Direct routes via the other hosts' underlay addresses.
    #[serde(rename = "host-gw")]
    HostGw,
    /// Leases only, no datapath: pods on different hosts cannot reach each other.
    #[serde(rename = "alloc")]
    Alloc,
    /// flanneld carries packets itself through the TUN device `flannel0` (UDP port 8285).
    #[serde(rename = "udp")]
    Udp,
    /// IP-in-IP through `flannel.ipip` (needs the kernel's ipip module: on a kernel without
    /// it, flannelctl runs the lab inside Debian's kernel under qemu).
    #[serde(rename = "ipip")]
    Ipip,
    /// ESP tunnels negotiated by strongSwan's charon (needs the kernel's XFRM; each host has a
    /// private `/run` for charon's VICI socket).
    #[serde(rename = "ipsec")]
    Ipsec,
    /// WireGuard on `flannel-wg` (the kernel module, or flanneld's userspace WireGuard where
    /// the kernel has none; each host has a private `/run` for its key `/run/flannel/wgkey`).
    #[serde(rename = "wireguard")]
    Wireguard,
    /// The operator's commands (`--backend-option PreStartupCommand=…`, …); without any, a
    /// lease and nothing else, like alloc.
    #[serde(rename = "extension")]
    Extension,
}

impl Backend {
    /// Every backend the lab knows.
    pub const ALL: [Backend; 8] = [
        Backend::Vxlan,
        Backend::HostGw,
        Backend::Alloc,
        Backend::Udp,
        Backend::Ipip,
        Backend::Ipsec,
        Backend::Wireguard,
        Backend::Extension,
    ];

    /// The `Backend.Type` text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::Alloc => "alloc",
            Backend::Udp => "udp",
            Backend::Ipip => "ipip",
            Backend::Ipsec => "ipsec",
            Backend::Wireguard => "wireguard",
            Backend::Extension => "extension",
        }
    }

    /// Whether flanneld programs routes to the other hosts' subnets (so pods on different
    /// hosts reach each other).
    pub fn connects_hosts(&self) -> bool {
        !matches!(self, Backend::Alloc | Backend::Extension)
    }

    /// Whether every host gets one route per other host's subnet: vxlan, host-gw, ipip (udp
    /// and wireguard instead route the whole network to their device; ipsec programs no
    /// route at all, its XFRM policies pick the packets).
    pub fn routes_per_host(&self) -> bool {
        matches!(self, Backend::Vxlan | Backend::HostGw | Backend::Ipip)
    }

    /// Whether each host's flanneld runs with a private `/run` (its own mount namespace), as
    /// on separate machines: ipsec (charon's `/var/run/charon.vici` and `charon.pid`) and
    /// wireguard (the private key `/run/flannel/wgkey`) would otherwise share one file
    /// between all hosts.
    pub fn private_run(&self) -> bool {
        matches!(self, Backend::Ipsec | Backend::Wireguard)
    }

    /// Whether the hosts need a route for the pod network on the underlay (a node's default
    /// route plays that part): ipsec installs no route, and the kernel looks for a route
    /// before the XFRM policy puts a packet into the tunnel. The route leads nowhere without
    /// the tunnel (nobody on the underlay answers for a pod address), so the lab's check
    /// still proves that the packets went through ESP.
    pub fn needs_underlay_route(&self) -> bool {
        matches!(self, Backend::Ipsec)
    }

    /// The members of `Backend` the lab writes unless `--backend-option` gives them: ipsec
    /// needs a `PSK` of at least 96 characters ([`LAB_PSK`]).
    pub fn default_options(&self) -> Vec<BackendOption> {
        match self {
            Backend::Ipsec => vec![BackendOption {
                key: "PSK".to_owned(),
                value: serde_json::Value::String(LAB_PSK.to_owned()),
            }],
            _ => Vec::new(),
        }
    }
}

/// The ipsec PSK the lab uses unless `--backend-option PSK=…` gives one: a fixed lab value,
/// not a secret (Flannel wants at least 96 characters).
pub const LAB_PSK: &str = "flannel-rs-lab-psk-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz";

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Backend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                LabError::Invalid(format!(
                    "unknown backend {s:?} (the lab runs vxlan, host-gw, udp, alloc, ipip, ipsec, wireguard or extension)"
                ))
            })
    }
}

/// What `flannelctl lab up` builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// The lab's name (unique on the machine).
    pub name: LabName,
    /// Number of hosts (`h1` … `h<hosts>`).
    pub hosts: u8,
    /// Pods per host.
    pub pods: u8,
    /// flanneld's backend.
    pub backend: Backend,
    /// The pod network (`Network` of the network config).
    pub network: Ipv4Net,
    /// The flanneld binary (absolute).
    pub flanneld: PathBuf,
    /// The `flannel` CNI plugin binary (absolute).
    pub cni_plugin: PathBuf,
    /// Directory with the `bridge` and `host-local` CNI plugins.
    pub cni_bin_dir: PathBuf,
    /// Extra arguments for every flanneld (e.g. `-v=2`).
    #[serde(default)]
    pub flanneld_args: Vec<String>,
    /// Extra members of the network config's `Backend` object, in order (e.g. `Mode`,
    /// `DirectRouting`, `MTU`).
    #[serde(default)]
    pub backend_options: Vec<BackendOption>,
}

/// One member of the network config's `Backend` object besides `Type`, from
/// `--backend-option KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendOption {
    /// The key, as Flannel spells it (`DirectRouting`, `MTU`, `Mode`, `VNI`, …).
    pub key: String,
    /// The value: a JSON number, boolean or `null` when `VALUE` reads as one (also a quoted
    /// JSON string, object or array), else `VALUE` as a string.
    pub value: serde_json::Value,
}

impl FromStr for BackendOption {
    type Err = LabError;
    fn from_str(s: &str) -> Result<BackendOption> {
        let (key, value) = s.split_once('=').ok_or_else(|| {
            LabError::Invalid(format!(
                "backend option {s:?} is not KEY=VALUE (e.g. DirectRouting=true)"
            ))
        })?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LabError::Invalid(format!(
                "backend option {s:?}: the key must be a word like Mode or DirectRouting"
            )));
        }
        if key.eq_ignore_ascii_case("type") {
            return Err(LabError::Invalid(
                "Backend.Type is chosen with --backend, not --backend-option".into(),
            ));
        }
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        Ok(BackendOption {
            key: key.to_owned(),
            value,
        })
    }
}

impl fmt::Display for BackendOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl LabSpec {
    /// A spec with the defaults: 3 hosts, 2 pods each, vxlan, `198.18.0.0/16`.
    pub fn new(name: LabName, flanneld: PathBuf, cni_plugin: PathBuf) -> LabSpec {
        LabSpec {
            name,
            hosts: 3,
            pods: 2,
            backend: Backend::Vxlan,
            network: DEFAULT_NETWORK,
            flanneld,
            cni_plugin,
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            flanneld_args: Vec::new(),
            backend_options: Vec::new(),
        }
    }

    /// Checks counts and the network against each other (enough subnets for the hosts and
    /// enough addresses in a subnet for the pods), and that no backend option is given twice.
    pub fn validate(&self) -> Result<()> {
        for (i, o) in self.backend_options.iter().enumerate() {
            if self.backend_options[..i].iter().any(|p| p.key == o.key) {
                return Err(LabError::Invalid(format!(
                    "backend option {} is given more than once",
                    o.key
                )));
            }
        }
        if !(1..=MAX_HOSTS).contains(&self.hosts) {
            return Err(LabError::Invalid(format!(
                "--hosts {} is not in 1..={MAX_HOSTS}",
                self.hosts
            )));
        }
        if self.pods > MAX_PODS {
            return Err(LabError::Invalid(format!(
                "--pods {} is not in 0..={MAX_PODS}",
                self.pods
            )));
        }
        if self.network.network() != self.network.addr() {
            return Err(LabError::Invalid(format!(
                "--network {} has host bits set (did you mean {}?)",
                self.network,
                self.network.trunc()
            )));
        }
        let prefix = self.network.prefix_len();
        if prefix > 28 {
            return Err(LabError::Invalid(format!(
                "--network {}: the smallest useful network is a /28",
                self.network
            )));
        }
        let subnet_len = self.subnet_len();
        // Flannel skips the first subnet of the network.
        let subnets = (1u64 << (subnet_len - prefix)) - 1;
        if subnets < u64::from(self.hosts) {
            return Err(LabError::Invalid(format!(
                "--network {} has room for {subnets} host subnets (/{subnet_len}), not {}",
                self.network, self.hosts
            )));
        }
        // Network address, gateway (cni0) and broadcast are not for pods.
        let per_subnet = (1u64 << (32 - subnet_len)) - 3;
        if per_subnet < u64::from(self.pods) {
            return Err(LabError::Invalid(format!(
                "a /{subnet_len} host subnet has room for {per_subnet} pods, not {}",
                self.pods
            )));
        }
        Ok(())
    }

    /// Whether every host gets one route per other host's subnet: vxlan, host-gw, ipip, except
    /// vxlan's `Mode=on-demand`, which (like udp) routes the whole network to its device.
    pub fn routes_per_host(&self) -> bool {
        let on_demand = self.backend_options.iter().any(|o| {
            o.key == "Mode"
                && o.value
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case("on-demand"))
        });
        self.backend.routes_per_host() && !(self.backend == Backend::Vxlan && on_demand)
    }

    /// The host subnet length flanneld will choose (Flannel's default for `SubnetLen`).
    pub fn subnet_len(&self) -> u8 {
        let prefix = self.network.prefix_len();
        if prefix <= 22 {
            24
        } else {
            prefix + 2
        }
    }

    /// The network config written to `<prefix>/config`: `Network`, then `Backend` with `Type`
    /// first, the backend options in the order given, then the backend's
    /// [`Backend::default_options`] that were not given.
    pub fn net_conf(&self) -> String {
        let mut backend = format!(r#"{{"Type":"{}""#, self.backend);
        let defaults = self.backend.default_options();
        let missing = defaults
            .iter()
            .filter(|d| !self.backend_options.iter().any(|o| o.key == d.key));
        for o in self.backend_options.iter().chain(missing) {
            backend.push_str(&format!(
                ",{}:{}",
                serde_json::Value::String(o.key.clone()),
                o.value
            ));
        }
        backend.push('}');
        format!(r#"{{"Network":"{}","Backend":{backend}}}"#, self.network)
    }

    /// flanneld's command line (after the binary) for a host whose subnet file is
    /// `subnet_file`: Flannel's flags as a node would run it, plus the health endpoint the lab
    /// waits on, plus [`LabSpec::flanneld_args`].
    pub fn flanneld_args(&self, subnet_file: &Path) -> Vec<String> {
        let mut args = vec![
            format!("--etcd-endpoints={ETCD_ENDPOINT}"),
            "--iface=eth0".to_owned(),
            format!("--subnet-file={}", subnet_file.display()),
            "--ip-masq".to_owned(),
            "--healthz-ip=127.0.0.1".to_owned(),
            format!("--healthz-port={HEALTHZ_PORT}"),
        ];
        args.extend(self.flanneld_args.iter().cloned());
        args
    }
}

/// The mount namespace wrapper of a flanneld with a private `/run` ([`Backend::private_run`]),
/// run by `sh -c` under `unshare --mount --propagation private`: `$1` is the host's folder
/// that becomes `/run`, `$2` the lab's state root, `$3` where that root appears inside the new
/// `/run` (empty when the root is not under `/run`), then flanneld and its arguments. Binding
/// the state root back in keeps `--subnet-file` (and every lab path) where it was; `exec` all
/// the way, so the pid the lab records is flanneld's.
pub const PRIVATE_RUN_SCRIPT: &str = r#"set -e
mkdir -p "$1"
if [ -n "$3" ]; then mkdir -p "$1$3"; mount --bind "$2" "$1$3"; fi
mount --rbind "$1" /run
shift 3
exec "$@""#;

/// The program and arguments that start flanneld for a host: flanneld itself, or with a
/// private `/run` (ipsec, wireguard) `unshare` running [`PRIVATE_RUN_SCRIPT`] with `run_dir`
/// as the host's `/run`. `state_root` is where the lab keeps its state (normally
/// `/run/flannel-rs/lab`).
pub fn flanneld_command(
    spec: &LabSpec,
    subnet_file: &Path,
    run_dir: &Path,
    state_root: &Path,
) -> (PathBuf, Vec<String>) {
    let args = spec.flanneld_args(subnet_file);
    if !spec.backend.private_run() {
        return (spec.flanneld.clone(), args);
    }
    let inner = state_root
        .strip_prefix("/run")
        .map(|rel| format!("/{}", rel.display()))
        .unwrap_or_default();
    let mut wrapped = vec![
        "--mount".to_owned(),
        "--propagation".to_owned(),
        "private".to_owned(),
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        PRIVATE_RUN_SCRIPT.to_owned(),
        "flanneld-private-run".to_owned(),
        run_dir.display().to_string(),
        state_root.display().to_string(),
        inner,
        spec.flanneld.display().to_string(),
    ];
    wrapped.extend(args);
    (PathBuf::from("unshare"), wrapped)
}

/// etcd's command line (after the binary): a one-member cluster serving clients on
/// [`ETCD_ENDPOINT`], its data in `data_dir`, logging to stderr.
pub fn etcd_args(data_dir: &Path) -> Vec<String> {
    flannel_sandbox::etcd::EtcdConfig {
        name: "lab",
        data_dir,
        client_urls: &[ETCD_ENDPOINT],
        advertise: ETCD_ENDPOINT,
        peer_url: flannel_sandbox::etcd::PEER_URL,
        log_level: None,
    }
    .args()
}

/// The CNI network configuration given to the `flannel` plugin for one host, like Flannel's
/// default `10-flannel.conflist` entry (`cbr0`, `hairpinMode`, `isDefaultGateway`), with every
/// file the plugins write kept inside the lab: the plugin's `dataDir` and host-local's
/// `ipam.dataDir` (which the plugin passes through to the delegate).
pub fn cni_conf(subnet_file: &Path, data_dir: &Path, ipam_dir: &Path) -> String {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK_NAME,
        "type": "flannel",
        "subnetFile": subnet_file.to_string_lossy(),
        "dataDir": data_dir.to_string_lossy(),
        "ipam": {"dataDir": ipam_dir.to_string_lossy()},
        "delegate": {"hairpinMode": true, "isDefaultGateway": true},
    });
    conf.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> LabSpec {
        LabSpec::new(
            LabName::new("t").unwrap(),
            "/bin/flanneld".into(),
            "/bin/flannel".into(),
        )
    }

    #[test]
    fn backends_parse_and_print() {
        for b in Backend::ALL {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
            assert_eq!(
                serde_json::to_string(&b).unwrap(),
                format!("\"{}\"", b.as_str())
            );
        }
        assert!("udp-fast".parse::<Backend>().is_err());
        assert!(!Backend::Alloc.connects_hosts());
        assert!(Backend::Udp.connects_hosts() && !Backend::Udp.routes_per_host());
        assert!(Backend::Vxlan.routes_per_host() && Backend::HostGw.routes_per_host());
    }

    #[test]
    fn net_conf_is_flannels_format() {
        let mut s = spec();
        assert_eq!(
            s.net_conf(),
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#
        );
        s.backend = Backend::HostGw;
        assert_eq!(
            s.net_conf(),
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#
        );
    }

    #[test]
    fn backend_options_are_typed_and_kept_in_order() {
        let mut s = spec();
        for o in [
            "Mode=on-demand",
            "DirectRouting=true",
            "MTU=1400",
            "Name=\"1\"",
        ] {
            s.backend_options.push(o.parse().unwrap());
        }
        s.validate().unwrap();
        assert!(!s.routes_per_host(), "on-demand routes the whole network");
        assert!(spec().routes_per_host());
        assert_eq!(
            s.net_conf(),
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","Mode":"on-demand","DirectRouting":true,"MTU":1400,"Name":"1"}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&s.net_conf()).unwrap();
        assert_eq!(parsed["Backend"]["MTU"], 1400);
        assert_eq!(s.backend_options[1].to_string(), "DirectRouting=true");
        assert!("Mode".parse::<BackendOption>().is_err());
        assert!("=x".parse::<BackendOption>().is_err());
        assert!("Type=udp".parse::<BackendOption>().is_err());
        s.backend_options.push("MTU=1300".parse().unwrap());
        assert!(s.validate().unwrap_err().to_string().contains("MTU"));
        // An older state file without the field still loads.
        let mut old = serde_json::to_value(spec()).unwrap();
        old.as_object_mut().unwrap().remove("backend_options");
        assert_eq!(serde_json::from_value::<LabSpec>(old).unwrap(), spec());
    }

    #[test]
    fn flanneld_gets_flannels_flags() {
        let mut s = spec();
        s.flanneld_args = vec!["-v=2".into()];
        assert_eq!(
            s.flanneld_args(Path::new("/run/x/h1/subnet.env")).join(" "),
            "--etcd-endpoints=http://192.0.2.254:2379 --iface=eth0 \
             --subnet-file=/run/x/h1/subnet.env --ip-masq --healthz-ip=127.0.0.1 \
             --healthz-port=10299 -v=2"
        );
    }

    #[test]
    fn new_backends_get_what_they_need() {
        let mut s = spec();
        s.backend = Backend::Ipsec;
        // The lab's PSK unless one is given; Flannel refuses fewer than 96 characters.
        assert!(LAB_PSK.len() >= 96);
        assert_eq!(
            s.net_conf(),
            format!(
                r#"{{"Network":"198.18.0.0/16","Backend":{{"Type":"ipsec","PSK":"{LAB_PSK}"}}}}"#
            )
        );
        s.backend_options = vec![
            "PSK=short".parse().unwrap(),
            "UDPEncap=true".parse().unwrap(),
        ];
        assert_eq!(
            s.net_conf(),
            r#"{"Network":"198.18.0.0/16","Backend":{"Type":"ipsec","PSK":"short","UDPEncap":true}}"#
        );
        assert!(Backend::Ipsec.needs_underlay_route() && Backend::Ipsec.connects_hosts());
        assert!(!Backend::Ipsec.routes_per_host() && !Backend::Wireguard.routes_per_host());
        assert!(Backend::Ipip.routes_per_host() && !Backend::Ipip.private_run());
        assert!(Backend::Ipsec.private_run() && Backend::Wireguard.private_run());
        assert!(Backend::Wireguard.default_options().is_empty());
        assert!(Backend::ALL
            .iter()
            .filter(|b| b.needs_underlay_route())
            .eq([&Backend::Ipsec]));
    }

    #[test]
    fn flanneld_gets_a_private_run_where_the_backend_needs_one() {
        let mut s = spec();
        let subnet = Path::new("/run/flannel-rs/lab/t/h1/subnet.env");
        let run = Path::new("/run/flannel-rs/lab/t/h1/run");
        let root = Path::new("/run/flannel-rs/lab");
        let (program, args) = flanneld_command(&s, subnet, run, root);
        assert_eq!(program, PathBuf::from("/bin/flanneld"));
        assert_eq!(args, s.flanneld_args(subnet));
        s.backend = Backend::Ipsec;
        let (program, args) = flanneld_command(&s, subnet, run, root);
        assert_eq!(program, PathBuf::from("unshare"));
        assert_eq!(
            args[..7],
            [
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                PRIVATE_RUN_SCRIPT,
                "flanneld-private-run"
            ]
        );
        assert_eq!(
            args[7..11],
            [
                "/run/flannel-rs/lab/t/h1/run",
                "/run/flannel-rs/lab",
                "/flannel-rs/lab",
                "/bin/flanneld"
            ]
        );
        assert_eq!(args[11..], s.flanneld_args(subnet)[..]);
        // A state root outside /run needs no binding back.
        let (_, args) =
            flanneld_command(&s, subnet, Path::new("/var/x/h1/run"), Path::new("/var/x"));
        assert_eq!(args[9], "");
        assert!(PRIVATE_RUN_SCRIPT.ends_with(r#"exec "$@""#));
    }

    #[test]
    fn cni_conf_keeps_files_in_the_lab() {
        let text = cni_conf(
            Path::new("/l/h1/subnet.env"),
            Path::new("/l/h1/cni/flannel"),
            Path::new("/l/h1/cni/ipam"),
        );
        assert_eq!(
            text,
            r#"{"cniVersion":"1.0.0","dataDir":"/l/h1/cni/flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true},"ipam":{"dataDir":"/l/h1/cni/ipam"},"name":"cbr0","subnetFile":"/l/h1/subnet.env","type":"flannel"}"#
        );
    }

    #[test]
    fn sizes_are_validated() {
        let mut s = spec();
        s.validate().unwrap();
        assert_eq!(s.subnet_len(), 24);
        s.hosts = 0;
        assert!(s.validate().is_err());
        s.hosts = 201;
        assert!(s.validate().is_err());
        s.hosts = 3;
        s.pods = 51;
        assert!(s.validate().is_err());
        s.pods = 2;
        s.network = "198.18.0.0/26".parse().unwrap();
        assert_eq!(s.subnet_len(), 28);
        // Three usable /28s, 13 pod addresses each.
        s.validate().unwrap();
        s.hosts = 4;
        assert!(s.validate().unwrap_err().to_string().contains("room for 3"));
        s.hosts = 3;
        s.pods = 14;
        assert!(s.validate().is_err());
        s.pods = 13;
        s.validate().unwrap();
        s.network = "198.18.0.1/16".parse().unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("host bits"));
        s.network = "198.18.0.0/29".parse().unwrap();
        assert!(s.validate().is_err());
    }

    #[test]
    fn etcd_serves_the_lab_endpoint() {
        let args = etcd_args(Path::new("/var/tmp/x/etcd"));
        assert!(args.contains(&"--data-dir=/var/tmp/x/etcd".to_owned()));
        assert!(args.contains(&"--listen-client-urls=http://192.0.2.254:2379".to_owned()));
        assert!(args.contains(&"--initial-cluster=lab=http://127.0.0.1:2380".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--log-level")));
        assert_eq!(host_ip(3), Ipv4Addr::new(192, 0, 2, 3));
    }
}
