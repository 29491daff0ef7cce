//! flanneld's command line: every flag of Flannel's `main.go` with its default, the
//! `FLANNELD_*` environment fallback, and Go `flag`-package syntax.
//!
//! What this file owns:
//! - [`Flags`], one field per flag (reference §1), declared with clap derive (help text and typed
//!   value parsing come from clap);
//! - a Go-style argument scanner that runs *before* clap: `-name`, `--name`, `-name=value`,
//!   `--name value` (non-bool flags only), booleans as `--flag` or `--flag=<bool>` with Go's
//!   `strconv.ParseBool` spellings, integers with Go's base prefixes (`0x1f`, `0o17`, `017`,
//!   `0b101`, `1_000`); it hands clap only canonical `--name=value` tokens;
//! - the environment fallback of `flagutil.SetFlagsFromEnv(…, "FLANNELD")`: a flag not given on
//!   the command line takes `FLANNELD_<NAME>` (upper case, `-` → `_`) if that is non-empty;
//!   repeatable flags (`--iface`, `--iface-regex`) get exactly one value from the environment (no
//!   comma splitting); `--version` is never read from the environment (Flannel checks it first);
//! - [`CliError`], the outcome when no flags come back: help, version or a one-line usage error.
//!
//! Deliberate differences from Flannel (Go):
//! - An unknown flag or a bad value exits **2** with one line on stderr instead of printing the
//!   whole usage and exiting 0 (quirk 20).
//! - A positional argument is rejected (exit 2). Go stops parsing at the first non-flag argument
//!   and silently ignores everything after it, so `--ip-masq false --iface eth1` would run with
//!   masquerading *on* and without `--iface`; we refuse instead. `--` followed by nothing is
//!   accepted.
//! - A bad environment value is not fatal (as in Flannel) but is reported in
//!   [`Flags::env_warnings`] for the caller to log; the flag keeps its default.
//! - Values are typed at parse time: `--public-ip` must be an IPv4 address, `--public-ipv6` an
//!   IPv6 address, `--iface-can-reach` and `--healthz-ip` IP addresses, `--healthz-port` 0..=65535
//!   (Flannel fails later, or never). An empty value (`--public-ip=`) means "not set", as in
//!   Flannel. `--subnet-lease-renew-margin` accepts any integer so that out-of-range values get
//!   Flannel's own validation message from [`Flags::validate`].
//! - [`Flags::log_summary`] and `Debug` never show the etcd password (Flannel logs it, quirk 13).
//! - klog's `-vmodule` and `-log_backtrace_at` are accepted and ignored; `-v` sets [`Flags::v`].
//! - Extra flag `--subnet-lease-ttl` (seconds, default 86400, env
//!   `FLANNELD_SUBNET_LEASE_TTL`), shown in `--help` and in the start-up log.
//! - Checked before anything else happens (exit 2, naming the value): each `--iface-regex`
//!   must compile, and `--etcd-cafile`/`--etcd-certfile`/`--etcd-keyfile` must name files
//!   that exist (Flannel accepts a bad regex and fails after contacting etcd, and ignores a
//!   missing CA file with `http://` endpoints).
//! - `--version` prints the version to stderr, as Flannel does.
//! - Extra flag `--vxlan-tx-checksum-fix` (default true, env `FLANNELD_VXLAN_TX_CHECKSUM_FIX`):
//!   see `flannel_planner::offload`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

/// Prefix of the environment variables that back every flag.
pub const ENV_PREFIX: &str = "FLANNELD";

/// Flag names that existed in older Flannel releases and are gone (rejected with a hint).
const REMOVED_FLAGS: &[&str] = &[
    "subnet-dir",
    "networks",
    "charon-executable-path",
    "charon-vici-uri",
    "auto-detect-ipv4",
    "auto-detect-ipv6",
    "use-multi-cluster-cidr",
];

/// flanneld's flags (Flannel `main.go`), with Flannel's defaults.
#[derive(Parser, Clone, PartialEq, Eq)]
#[command(
    name = "flanneld",
    override_usage = "flanneld [OPTION]...",
    about = "flannel-rs: per-host overlay network agent (drop-in for Flannel's flanneld)",
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true,
    after_help = "Flags may be written -name, --name, -name=value or --name value; booleans as \
                  --name or --name=true|false.\nEvery flag can also be set through the environment \
                  variable FLANNELD_<NAME> (upper case, '-' replaced by '_'); the command line wins.\n\
                  -h, --help prints this help."
)]
pub struct Flags {
    /// Comma-separated list of etcd v3 endpoints.
    #[arg(
        long,
        value_name = "URLS",
        default_value = "http://127.0.0.1:4001,http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: String,

    /// etcd key prefix of the network.
    #[arg(long, value_name = "PREFIX", default_value = "/coreos.com/network")]
    pub etcd_prefix: String,

    /// TLS client key for etcd (TLS is used only when both key and certificate are given).
    #[arg(long, value_name = "FILE", value_parser = parse_existing_file)]
    pub etcd_keyfile: Option<PathBuf>,

    /// TLS client certificate for etcd.
    #[arg(long, value_name = "FILE", value_parser = parse_existing_file)]
    pub etcd_certfile: Option<PathBuf>,

    /// CA certificate bundle to verify etcd.
    #[arg(long, value_name = "FILE", value_parser = parse_existing_file)]
    pub etcd_cafile: Option<PathBuf>,

    /// Username for etcd authentication.
    #[arg(long, value_name = "NAME")]
    pub etcd_username: Option<String>,

    /// Password for etcd authentication.
    #[arg(long, value_name = "PASSWORD")]
    pub etcd_password: Option<String>,

    /// Use the Kubernetes API (node objects) for subnet leases instead of etcd.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub kube_subnet_mgr: bool,

    /// Kubernetes API server URL (not needed inside a pod).
    #[arg(long, value_name = "URL")]
    pub kube_api_url: Option<String>,

    /// kubeconfig file (not needed inside a pod).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_file: Option<PathBuf>,

    /// Prefix of the node annotations flannel reads and writes.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "flannel.alpha.coreos.com"
    )]
    pub kube_annotation_prefix: String,

    /// Interface (name or IP address) for inter-host traffic; repeat to try several in order.
    #[arg(long, value_name = "NAME|IP", action = ArgAction::Append)]
    pub iface: Vec<String>,

    /// Regex matched against interface addresses, then names; repeatable, tried after --iface.
    #[arg(long, value_name = "REGEX", action = ArgAction::Append, value_parser = parse_regex)]
    pub iface_regex: Vec<String>,

    /// Use the interface the kernel routes this IP address through (like `ip route get`).
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    pub iface_can_reach: Option<IpAddr>,

    /// File where the subnet, MTU and masquerade settings are written for the CNI plugin.
    #[arg(long, value_name = "FILE", default_value = "/run/flannel/subnet.env")]
    pub subnet_file: PathBuf,

    /// IPv4 address advertised to other nodes (default: the interface address).
    #[arg(long, value_name = "IPV4", value_parser = parse_ipv4)]
    pub public_ip: Option<Ipv4Addr>,

    /// IPv6 address advertised to other nodes (default: the interface address).
    #[arg(long, value_name = "IPV6", value_parser = parse_ipv6)]
    pub public_ipv6: Option<Ipv6Addr>,

    /// Renew the subnet lease this many minutes before it expires (1..1439).
    #[arg(long, value_name = "MINUTES", default_value = "60", value_parser = parse_margin)]
    pub subnet_lease_renew_margin: u32,

    /// Masquerade traffic leaving the overlay network.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub ip_masq: bool,

    /// Do not use fully-random port mapping for masquerading.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub ip_masq_fully_random_disable: bool,

    /// Address the health server listens on.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0", value_parser = parse_ip)]
    pub healthz_ip: IpAddr,

    /// Port of the health server (0 disables it).
    #[arg(long, value_name = "PORT", default_value = "0", value_parser = parse_port)]
    pub healthz_port: u16,

    /// Seconds between checks of the packet-filter rules (and of the blackhole route).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_u64)]
    pub iptables_resync: u64,

    /// Add ACCEPT rules for the pod network to the FORWARD chain.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub iptables_forward_rules: bool,

    /// Keep a blackhole route for this node's pod subnet.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub ip_blackhole_route: bool,

    /// udp backend (flannel-rs only): batched, offloaded multi-queue datapath; false selects
    /// the simple one-packet-per-system-call proxy.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub udp_fast_path: bool,

    /// vxlan (flannel-rs only): on kernels before 5.7, turn off tx checksum offload on the vxlan
    /// device (the kernel's checksum bug after NAT, Flannel #1279); false leaves offloads alone.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub vxlan_tx_checksum_fix: bool,
    /// wireguard backend (flannel-rs only): `kernel` (the wireguard module), `userspace` (a
    /// TUN device and WireGuard in flanneld), or `auto` (the module when the kernel has it).
    #[arg(long, value_name = "IMPL", default_value = "auto", value_parser = parse_wg_impl)]
    pub wireguard_implementation: WgImplementationFlag,

    /// Network configuration file (Kubernetes mode).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/kube-flannel/net-conf.json"
    )]
    pub net_config_path: PathBuf,

    /// Kubernetes mode: set the node's NetworkUnavailable condition to False once ready.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub set_node_network_unavailable: bool,

    /// Print the version and exit.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub version: bool,

    /// Log verbosity (klog -v).
    #[arg(long = "v", value_name = "LEVEL", default_value = "0", value_parser = parse_verbosity)]
    pub v: u8,

    /// Accepted for compatibility with klog; ignored.
    #[arg(
        long = "vmodule",
        value_name = "PATTERN=N,...",
        default_value = "",
        hide_default_value = true
    )]
    pub vmodule: String,

    /// Accepted for compatibility with klog; ignored.
    #[arg(
        long = "log_backtrace_at",
        value_name = "FILE:LINE",
        default_value = "",
        hide_default_value = true
    )]
    pub log_backtrace_at: String,

    /// Lifetime of the subnet lease in etcd, in seconds (flannel-rs only; Flannel: always 24 h).
    #[arg(long, value_name = "SECONDS", default_value = "86400",
          value_parser = parse_u64)]
    pub subnet_lease_ttl: u64,

    /// Environment variables that could not be used (bad values), one message each; the flag
    /// kept its default. Flannel logs these and goes on; the caller should log them.
    #[arg(skip)]
    pub env_warnings: Vec<String>,
}

/// Why parsing did not produce [`Flags`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// `-h` / `--help`: print the text to stdout and exit 0.
    #[error("{0}")]
    Help(String),
    /// `--version`: the caller prints the version and exits 0.
    #[error("version requested")]
    Version,
    /// Bad command line: print the one-line message to stderr and exit 2.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// The process exit code for this outcome (0 for help and version, 2 for usage errors).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Help(_) | CliError::Version => 0,
            CliError::Usage(_) => 2,
        }
    }
}

/// Parses `args` (the first item is the program name) with the process environment as fallback.
pub fn parse_from<I, T>(args: I) -> Result<Flags, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_with_env(args, &|key| std::env::var(key).ok())
}

/// Parses `args` (the first item is the program name) with `env` as the environment lookup.
pub fn parse_with_env<I, T>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Flags, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let program = args.next().unwrap_or_else(|| OsString::from("flanneld"));
    let args = args
        .map(|a| {
            a.into_string()
                .map_err(|a| usage(format!("argument {a:?} is not valid UTF-8")))
        })
        .collect::<Result<Vec<String>, CliError>>()?;

    let mut cmd = Flags::command();
    let table = FlagTable::from_command(&cmd);

    // 1. Go-style scan of the command line.
    let scanned = scan(&args, &table)?;

    // 2. Check each command-line value on its own, for a precise error message.
    let mut given: HashSet<&str> = HashSet::new();
    let mut tokens: Vec<String> = vec![program.to_string_lossy().into_owned()];
    for (name, value) in &scanned {
        given.insert(name.as_str());
        let spec = table.get(name).ok_or_else(|| unknown_flag(name))?;
        if value.is_empty() && spec.empty_means_unset {
            continue;
        }
        check_value(&mut cmd, name, value)
            .map_err(|reason| usage(format!("invalid value {value:?} for --{name}: {reason}")))?;
        tokens.push(format!("--{name}={value}"));
    }

    // 3. Environment fallback for flags not given on the command line.
    let mut env_warnings = Vec::new();
    for spec in &table.flags {
        if given.contains(spec.name.as_str()) || spec.name == "version" {
            continue;
        }
        let key = env_key(&spec.name);
        let Some(value) = env(&key).filter(|v| !v.is_empty()) else {
            continue;
        };
        match check_value(&mut cmd, &spec.name, &value) {
            Ok(()) => tokens.push(format!("--{}={value}", spec.name)),
            Err(reason) => {
                env_warnings.push(format!("invalid value {value:?} for {key}: {reason}"))
            }
        }
    }

    // 4. Typed parse of the canonical tokens.
    let matches = cmd
        .try_get_matches_from_mut(&tokens)
        .map_err(|e| usage(first_line(&e.to_string())))?;
    let mut flags =
        Flags::from_arg_matches(&matches).map_err(|e| usage(first_line(&e.to_string())))?;
    flags.env_warnings = env_warnings;
    if flags.version {
        return Err(CliError::Version);
    }
    Ok(flags)
}

/// The environment variable backing flag `name`: `FLANNELD_` + upper case, `-` → `_`.
pub fn env_key(name: &str) -> String {
    format!("{ENV_PREFIX}_{}", name.replace('-', "_").to_uppercase())
}

impl Flags {
    /// `--etcd-endpoints` split on commas, exactly as Flannel does (no trimming).
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd_endpoints.split(',').map(str::to_string).collect()
    }

    /// Checks what Flannel checks after parsing: the renew margin must be in 1..=1439 minutes.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..24 * 60).contains(&self.subnet_lease_renew_margin) {
            return Err(
                "Invalid subnet-lease-renew-margin option, out of acceptable range".to_string(),
            );
        }
        Ok(())
    }

    /// One line describing every flag value for the startup log; the etcd password is shown as
    /// `***` when set.
    pub fn log_summary(&self) -> String {
        format!("{self:?}")
    }

    /// The help text (`-h`).
    pub fn help_text() -> String {
        Flags::command().render_help().to_string()
    }
}

impl Default for Flags {
    /// Flannel's defaults (no arguments, empty environment).
    fn default() -> Self {
        // Invariant: the defaults declared above parse; covered by the unit tests.
        parse_with_env(["flanneld"], &|_| None).expect("invariant: default flags parse")
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn opt<T: fmt::Display>(v: &Option<T>) -> String {
            v.as_ref().map(ToString::to_string).unwrap_or_default()
        }
        fn path(v: &Option<PathBuf>) -> String {
            v.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        }
        let password = if self.etcd_password.as_deref().is_some_and(|p| !p.is_empty()) {
            "***"
        } else {
            ""
        };
        write!(
            f,
            "{{etcd-endpoints:{} etcd-prefix:{} etcd-keyfile:{} etcd-certfile:{} etcd-cafile:{} \
             etcd-username:{} etcd-password:{password} kube-subnet-mgr:{} kube-api-url:{} \
             kubeconfig-file:{} kube-annotation-prefix:{} iface:{:?} iface-regex:{:?} \
             iface-can-reach:{} subnet-file:{} public-ip:{} public-ipv6:{} \
             subnet-lease-renew-margin:{} ip-masq:{} ip-masq-fully-random-disable:{} \
             healthz-ip:{} healthz-port:{} iptables-resync:{} iptables-forward-rules:{} \
             ip-blackhole-route:{} net-config-path:{} set-node-network-unavailable:{} \
             version:{} v:{} subnet-lease-ttl:{}}}",
            self.etcd_endpoints,
            self.etcd_prefix,
            path(&self.etcd_keyfile),
            path(&self.etcd_certfile),
            path(&self.etcd_cafile),
            opt(&self.etcd_username),
            self.kube_subnet_mgr,
            opt(&self.kube_api_url),
            path(&self.kubeconfig_file),
            self.kube_annotation_prefix,
            self.iface,
            self.iface_regex,
            opt(&self.iface_can_reach),
            self.subnet_file.display(),
            opt(&self.public_ip),
            opt(&self.public_ipv6),
            self.subnet_lease_renew_margin,
            self.ip_masq,
            self.ip_masq_fully_random_disable,
            self.healthz_ip,
            self.healthz_port,
            self.iptables_resync,
            self.iptables_forward_rules,
            self.ip_blackhole_route,
            self.net_config_path.display(),
            self.set_node_network_unavailable,
            self.version,
            self.v,
            self.subnet_lease_ttl,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Go-style scanner
// ---------------------------------------------------------------------------------------------

/// What the scanner needs to know about one flag (read from the clap command).
#[derive(Debug)]
struct FlagSpec {
    name: String,
    /// Boolean: `--x` alone means true and never consumes the next argument.
    boolean: bool,
    /// Optional value without default: an empty value means "not set".
    empty_means_unset: bool,
}

#[derive(Debug)]
struct FlagTable {
    flags: Vec<FlagSpec>,
}

impl FlagTable {
    fn from_command(cmd: &clap::Command) -> Self {
        let flags = cmd
            .get_arguments()
            .filter_map(|arg| {
                let name = arg.get_long()?.to_string();
                let boolean = arg.get_num_args().is_some_and(|r| r.min_values() == 0);
                let append = matches!(arg.get_action(), ArgAction::Append);
                Some(FlagSpec {
                    name,
                    boolean,
                    empty_means_unset: !boolean && !append && arg.get_default_values().is_empty(),
                })
            })
            .collect();
        FlagTable { flags }
    }

    fn get(&self, name: &str) -> Option<&FlagSpec> {
        self.flags.iter().find(|f| f.name == name)
    }
}

/// Scans the arguments like Go's `flag.FlagSet.Parse`, returning `(name, value)` occurrences
/// (booleans without a value get `"true"`).
fn scan(args: &[String], table: &FlagTable) -> Result<Vec<(String, String)>, CliError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg.len() < 2 || !arg.starts_with('-') {
            return Err(positional(arg));
        }
        let body = if let Some(rest) = arg.strip_prefix("--") {
            if rest.is_empty() {
                // Terminator: Go stops here; we accept it only at the end.
                return match args.get(i) {
                    None => Ok(out),
                    Some(next) => Err(positional(next)),
                };
            }
            rest
        } else {
            &arg[1..]
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(usage(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(spec) = table.get(name) else {
            if name == "h" || name == "help" {
                return Err(CliError::Help(help_text()));
            }
            return Err(unknown_flag(name));
        };
        let value = match inline {
            Some(v) => v.to_string(),
            None if spec.boolean => "true".to_string(),
            None => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => return Err(usage(format!("flag needs an argument: --{name}"))),
            },
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

fn help_text() -> String {
    Flags::help_text()
}

/// Validates one value of one flag through clap's typed parser; `Err` carries the reason.
fn check_value(cmd: &mut clap::Command, name: &str, value: &str) -> Result<(), String> {
    cmd.try_get_matches_from_mut(["flanneld".to_string(), format!("--{name}={value}")])
        .map(|_| ())
        .map_err(|e| match std::error::Error::source(&e) {
            Some(src) => src.to_string(),
            None => first_line(&e.to_string()),
        })
}

fn usage(msg: String) -> CliError {
    CliError::Usage(format!("flanneld: {msg}"))
}

fn unknown_flag(name: &str) -> CliError {
    if REMOVED_FLAGS.contains(&name) {
        usage(format!(
            "unknown flag --{name} (removed from flannel; see --help)"
        ))
    } else {
        usage(format!("unknown flag --{name} (see --help)"))
    }
}

fn positional(arg: &str) -> CliError {
    usage(format!(
        "unexpected argument {arg:?}: flanneld takes no positional arguments \
         (write booleans as --flag=false; see --help)"
    ))
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Value parsers (Go semantics)
// ---------------------------------------------------------------------------------------------

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err("not a boolean (use true/false, 1/0, t/f)".to_string()),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-`0` bases and `_`
/// between digits.
fn parse_go_int(s: &str) -> Result<i128, String> {
    let bad = || format!("not an integer: {s:?}");
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return Err(bad());
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Underscores only between digits, or right after a base prefix.
    let mut prev_digit = prefixed;
    let mut clean = String::with_capacity(digits.len());
    for c in digits.chars() {
        if c == '_' {
            if !prev_digit {
                return Err(bad());
            }
            prev_digit = false;
        } else {
            clean.push(c);
            prev_digit = true;
        }
    }
    if !prev_digit || clean.is_empty() {
        return Err(bad());
    }
    let v = i128::from_str_radix(&clean, radix).map_err(|_| bad())?;
    let v = if neg { -v } else { v };
    if v < i128::from(i64::MIN) || v > i128::from(i64::MAX) {
        return Err("value out of range".to_string());
    }
    Ok(v)
}

fn parse_port(s: &str) -> Result<u16, String> {
    let v = parse_go_int(s)?;
    u16::try_from(v).map_err(|_| "port out of range (0..65535)".to_string())
}

/// `--wireguard-implementation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgImplementationFlag {
    /// The kernel module when the kernel has it, else userspace.
    Auto,
    /// The kernel module (fails without it).
    Kernel,
    /// Userspace, even when the module is there.
    Userspace,
}

fn parse_wg_impl(s: &str) -> Result<WgImplementationFlag, String> {
    match s {
        "auto" => Ok(WgImplementationFlag::Auto),
        "kernel" => Ok(WgImplementationFlag::Kernel),
        "userspace" => Ok(WgImplementationFlag::Userspace),
        _ => Err("expected auto, kernel or userspace".into()),
    }
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let v = parse_go_int(s)?;
    u64::try_from(v).map_err(|_| "must not be negative".to_string())
}

/// Any integer; out-of-range values are clamped so that [`Flags::validate`] rejects them with
/// Flannel's message.
fn parse_margin(s: &str) -> Result<u32, String> {
    let v = parse_go_int(s)?;
    Ok(u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

/// klog's `-v`: a decimal level.
fn parse_verbosity(s: &str) -> Result<u8, String> {
    s.parse::<u8>()
        .map_err(|_| "not a verbosity level (0..255)".to_string())
}

/// A regular expression as `--iface-regex` uses it (the `regex` crate's syntax, like Go's RE2).
fn parse_regex(s: &str) -> Result<String, String> {
    regex::Regex::new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a regular expression: {}", first_line(&e.to_string())))
}

/// A file that exists (TLS files are read only when etcd is contacted: fail before that).
fn parse_existing_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Err(format!("{s} is a directory, not a file")),
        Ok(_) => Ok(path),
        Err(e) => Err(format!("cannot use {s}: {e}")),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| "not an IP address".to_string())
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| "not an IPv4 address".to_string())
}

fn parse_ipv6(s: &str) -> Result<Ipv6Addr, String> {
    s.parse().map_err(|_| "not an IPv6 address".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str]) -> Result<Flags, CliError> {
        parse_env(args, &[])
    }

    fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Flags, CliError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut argv = vec!["flanneld"];
        argv.extend_from_slice(args);
        parse_with_env(argv, &|k| env.get(k).cloned())
    }

    fn ok(args: &[&str]) -> Flags {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
    }

    fn usage_err(args: &[&str]) -> String {
        match parse(args) {
            Err(CliError::Usage(m)) => m,
            other => panic!("{args:?}: expected usage error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_flannel() {
        let f = ok(&[]);
        assert_eq!(
            f.etcd_endpoints,
            "http://127.0.0.1:4001,http://127.0.0.1:2379"
        );
        assert_eq!(
            f.etcd_endpoints(),
            vec!["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
        );
        assert_eq!(f.etcd_prefix, "/coreos.com/network");
        assert_eq!(f.etcd_keyfile, None);
        assert_eq!(f.etcd_certfile, None);
        assert_eq!(f.etcd_cafile, None);
        assert_eq!(f.etcd_username, None);
        assert_eq!(f.etcd_password, None);
        assert!(!f.kube_subnet_mgr);
        assert_eq!(f.kube_api_url, None);
        assert_eq!(f.kubeconfig_file, None);
        assert_eq!(f.kube_annotation_prefix, "flannel.alpha.coreos.com");
        assert!(f.iface.is_empty());
        assert!(f.iface_regex.is_empty());
        assert_eq!(f.iface_can_reach, None);
        assert_eq!(f.subnet_file, PathBuf::from("/run/flannel/subnet.env"));
        assert_eq!(f.public_ip, None);
        assert_eq!(f.public_ipv6, None);
        assert_eq!(f.subnet_lease_renew_margin, 60);
        assert!(!f.ip_masq);
        assert!(!f.ip_masq_fully_random_disable);
        assert_eq!(f.healthz_ip, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(f.healthz_port, 0);
        assert_eq!(f.iptables_resync, 5);
        assert!(f.iptables_forward_rules);
        assert!(!f.ip_blackhole_route);
        assert_eq!(
            f.net_config_path,
            PathBuf::from("/etc/kube-flannel/net-conf.json")
        );
        assert!(f.set_node_network_unavailable);
        assert!(!f.version);
        assert_eq!(f.v, 0);
        assert_eq!(f.vmodule, "");
        assert_eq!(f.log_backtrace_at, "");
        assert_eq!(f.subnet_lease_ttl, 86400);
        assert!(f.env_warnings.is_empty());
        assert_eq!(f, Flags::default());
        assert_eq!(f.validate(), Ok(()));
    }

    #[test]
    fn every_value_flag_on_command_line() {
        let f = ok(&[
            "--etcd-endpoints=https://192.0.2.1:2379,https://192.0.2.2:2379",
            "--etcd-prefix",
            "/x/network",
            "--etcd-keyfile=/dev/null",
            "--etcd-certfile=/proc/self/status",
            "--etcd-cafile=/proc/version",
            "--etcd-username=u",
            "--etcd-password=p",
            "--kube-subnet-mgr",
            "--kube-api-url=https://198.51.100.1:6443",
            "--kubeconfig-file=/kc",
            "--kube-annotation-prefix=example.com",
            "--iface=eth0",
            "--iface-regex=^en",
            "--iface-can-reach=192.0.2.9",
            "--subnet-file=/tmp/s.env",
            "--public-ip=203.0.113.7",
            "--public-ipv6=2001:db8::7",
            "--subnet-lease-renew-margin=30",
            "--ip-masq",
            "--ip-masq-fully-random-disable",
            "--healthz-ip=127.0.0.1",
            "--healthz-port=8471",
            "--iptables-resync=10",
            "--iptables-forward-rules=false",
            "--ip-blackhole-route",
            "--net-config-path=/n.json",
            "--set-node-network-unavailable=false",
            "--v=3",
            "--vmodule=foo=2",
            "--log_backtrace_at=main.go:10",
            "--subnet-lease-ttl=120",
        ]);
        assert_eq!(
            f.etcd_endpoints(),
            vec!["https://192.0.2.1:2379", "https://192.0.2.2:2379"]
        );
        assert_eq!(f.etcd_prefix, "/x/network");
        assert_eq!(f.etcd_keyfile, Some(PathBuf::from("/dev/null")));
        assert_eq!(f.etcd_certfile, Some(PathBuf::from("/proc/self/status")));
        assert_eq!(f.etcd_cafile, Some(PathBuf::from("/proc/version")));
        assert_eq!(f.etcd_username.as_deref(), Some("u"));
        assert_eq!(f.etcd_password.as_deref(), Some("p"));
        assert!(f.kube_subnet_mgr);
        assert_eq!(f.kube_api_url.as_deref(), Some("https://198.51.100.1:6443"));
        assert_eq!(f.kubeconfig_file, Some(PathBuf::from("/kc")));
        assert_eq!(f.kube_annotation_prefix, "example.com");
        assert_eq!(f.iface, vec!["eth0"]);
        assert_eq!(f.iface_regex, vec!["^en"]);
        assert_eq!(f.iface_can_reach, Some("192.0.2.9".parse().expect("ip")));
        assert_eq!(f.subnet_file, PathBuf::from("/tmp/s.env"));
        assert_eq!(f.public_ip, Some(Ipv4Addr::new(203, 0, 113, 7)));
        assert_eq!(f.public_ipv6, Some("2001:db8::7".parse().expect("ip")));
        assert_eq!(f.subnet_lease_renew_margin, 30);
        assert!(f.ip_masq);
        assert!(f.ip_masq_fully_random_disable);
        assert_eq!(f.healthz_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(f.healthz_port, 8471);
        assert_eq!(f.iptables_resync, 10);
        assert!(!f.iptables_forward_rules);
        assert!(f.ip_blackhole_route);
        assert_eq!(f.net_config_path, PathBuf::from("/n.json"));
        assert!(!f.set_node_network_unavailable);
        assert_eq!(f.v, 3);
        assert_eq!(f.vmodule, "foo=2");
        assert_eq!(f.log_backtrace_at, "main.go:10");
        assert_eq!(f.subnet_lease_ttl, 120);
    }

    #[test]
    fn go_single_dash_syntax() {
        let f = ok(&[
            "-iface",
            "eth1",
            "-etcd-prefix=/p",
            "-ip-masq",
            "-public-ip",
            "192.0.2.5",
            "-v",
            "2",
        ]);
        assert_eq!(f.iface, vec!["eth1"]);
        assert_eq!(f.etcd_prefix, "/p");
        assert!(f.ip_masq);
        assert_eq!(f.public_ip, Some(Ipv4Addr::new(192, 0, 2, 5)));
        assert_eq!(f.v, 2);
        assert_eq!(ok(&["-v=4"]).v, 4);
        assert_eq!(ok(&["--v", "5"]).v, 5);
        assert_eq!(ok(&["--v=6"]).v, 6);
    }

    #[test]
    fn value_may_start_with_dash_or_contain_equals() {
        let f = ok(&["--etcd-password", "-secret=x", "--iface-regex=a=b"]);
        assert_eq!(f.etcd_password.as_deref(), Some("-secret=x"));
        assert_eq!(f.iface_regex, vec!["a=b"]);
    }

    #[test]
    fn bool_forms() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(ok(&[&format!("--ip-masq={t}")]).ip_masq, "{t}");
            assert!(ok(&[&format!("-iptables-forward-rules={t}")]).iptables_forward_rules);
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!ok(&[&format!("--ip-masq={f}")]).ip_masq, "{f}");
            assert!(!ok(&[&format!("-iptables-forward-rules={f}")]).iptables_forward_rules);
        }
        assert!(ok(&["--iptables-forward-rules"]).iptables_forward_rules);
        let m = usage_err(&["--ip-masq=yes"]);
        assert_eq!(
            m,
            "flanneld: invalid value \"yes\" for --ip-masq: not a boolean (use true/false, 1/0, t/f)"
        );
        let m = usage_err(&["--ip-masq="]);
        assert!(
            m.starts_with("flanneld: invalid value \"\" for --ip-masq"),
            "{m}"
        );
    }

    #[test]
    fn bool_never_consumes_next_argument() {
        let m = usage_err(&["--ip-masq", "false"]);
        assert_eq!(
            m,
            "flanneld: unexpected argument \"false\": flanneld takes no positional arguments \
             (write booleans as --flag=false; see --help)"
        );
        // The next flag is still a flag.
        let f = ok(&["--ip-masq", "--iface", "eth0"]);
        assert!(f.ip_masq);
        assert_eq!(f.iface, vec!["eth0"]);
    }

    #[test]
    fn positional_and_terminator() {
        assert!(usage_err(&["eth0"]).contains("unexpected argument \"eth0\""));
        assert!(usage_err(&["-"]).contains("unexpected argument \"-\""));
        assert!(usage_err(&["--", "--iface=x"]).contains("unexpected argument \"--iface=x\""));
        assert!(ok(&["--ip-masq", "--"]).ip_masq);
    }

    #[test]
    fn repeatable_flags_keep_order() {
        let f = ok(&[
            "--iface=eth0",
            "-iface",
            "192.0.2.3",
            "--iface-regex",
            "^en",
            "--iface-regex=^eth",
        ]);
        assert_eq!(f.iface, vec!["eth0", "192.0.2.3"]);
        assert_eq!(f.iface_regex, vec!["^en", "^eth"]);
        // Commas are not split on the command line either.
        assert_eq!(ok(&["--iface=eth0,eth1"]).iface, vec!["eth0,eth1"]);
    }

    #[test]
    fn repeated_single_value_flag_last_wins() {
        let f = ok(&[
            "--etcd-prefix=/a",
            "--etcd-prefix=/b",
            "--healthz-port=1",
            "-healthz-port=2",
        ]);
        assert_eq!(f.etcd_prefix, "/b");
        assert_eq!(f.healthz_port, 2);
    }

    #[test]
    fn env_fallback_for_every_flag_kind() {
        let f = parse_env(
            &[],
            &[
                ("FLANNELD_ETCD_ENDPOINTS", "http://192.0.2.1:2379"),
                ("FLANNELD_ETCD_PASSWORD", "pw"),
                ("FLANNELD_IP_MASQ", "true"),
                ("FLANNELD_IPTABLES_FORWARD_RULES", "false"),
                ("FLANNELD_IFACE", "eth0,eth1"),
                ("FLANNELD_IFACE_REGEX", "^en"),
                ("FLANNELD_PUBLIC_IP", "203.0.113.9"),
                ("FLANNELD_HEALTHZ_PORT", "0x10"),
                ("FLANNELD_SUBNET_LEASE_RENEW_MARGIN", "90"),
                ("FLANNELD_SUBNET_FILE", "/tmp/x.env"),
                ("FLANNELD_KUBECONFIG_FILE", "/kc"),
                ("FLANNELD_V", "4"),
                ("FLANNELD_LOG_BACKTRACE_AT", "x.go:1"),
                ("FLANNELD_SUBNET_LEASE_TTL", "30"),
            ],
        )
        .expect("env");
        assert_eq!(f.etcd_endpoints(), vec!["http://192.0.2.1:2379"]);
        assert_eq!(f.etcd_password.as_deref(), Some("pw"));
        assert!(f.ip_masq);
        assert!(!f.iptables_forward_rules);
        // One value, no comma splitting (quirk 19).
        assert_eq!(f.iface, vec!["eth0,eth1"]);
        assert_eq!(f.iface_regex, vec!["^en"]);
        assert_eq!(f.public_ip, Some(Ipv4Addr::new(203, 0, 113, 9)));
        assert_eq!(f.healthz_port, 16);
        assert_eq!(f.subnet_lease_renew_margin, 90);
        assert_eq!(f.subnet_file, PathBuf::from("/tmp/x.env"));
        assert_eq!(f.kubeconfig_file, Some(PathBuf::from("/kc")));
        assert_eq!(f.v, 4);
        assert_eq!(f.log_backtrace_at, "x.go:1");
        assert_eq!(f.subnet_lease_ttl, 30);
        assert!(f.env_warnings.is_empty());
    }

    #[test]
    fn wireguard_implementation_defaults_to_auto_and_reads_its_env() {
        assert_eq!(ok(&[]).wireguard_implementation, WgImplementationFlag::Auto);
        assert_eq!(
            ok(&["--wireguard-implementation=userspace"]).wireguard_implementation,
            WgImplementationFlag::Userspace
        );
        let f = parse_env(&[], &[("FLANNELD_WIREGUARD_IMPLEMENTATION", "kernel")])
            .expect("valid flags");
        assert_eq!(f.wireguard_implementation, WgImplementationFlag::Kernel);
        assert!(
            usage_err(&["--wireguard-implementation=fast"]).contains("--wireguard-implementation")
        );
    }

    #[test]
    fn udp_fast_path_defaults_on_and_turns_off_like_other_bools() {
        assert!(ok(&[]).udp_fast_path);
        assert!(ok(&["--udp-fast-path"]).udp_fast_path);
        assert!(!ok(&["--udp-fast-path=false"]).udp_fast_path);
        assert!(!ok(&["-udp-fast-path=0"]).udp_fast_path);
        let env = |v: &str| {
            parse_env(&[], &[("FLANNELD_UDP_FAST_PATH", v)])
                .expect("valid flags")
                .udp_fast_path
        };
        assert!(!env("false"));
        assert!(env("true"));
        // The command line wins over the environment.
        let f = parse_env(
            &["--udp-fast-path=true"],
            &[("FLANNELD_UDP_FAST_PATH", "false")],
        )
        .expect("valid flags");
        assert!(f.udp_fast_path);
        assert!(usage_err(&["--udp-fast-path=maybe"]).contains("--udp-fast-path"));
    }

    #[test]
    fn command_line_wins_over_env() {
        let env = [
            ("FLANNELD_ETCD_PREFIX", "/env"),
            ("FLANNELD_IFACE", "env0"),
            ("FLANNELD_IP_MASQ", "true"),
            ("FLANNELD_HEALTHZ_PORT", "1"),
        ];
        let f = parse_env(
            &[
                "--etcd-prefix=/cli",
                "--iface=cli0",
                "--iface=cli1",
                "--ip-masq=false",
            ],
            &env,
        )
        .expect("parse");
        assert_eq!(f.etcd_prefix, "/cli");
        assert_eq!(f.iface, vec!["cli0", "cli1"]);
        assert!(!f.ip_masq);
        // Not given on the command line: env applies.
        assert_eq!(f.healthz_port, 1);
    }

    #[test]
    fn empty_env_is_ignored() {
        let f = parse_env(
            &[],
            &[
                ("FLANNELD_ETCD_PREFIX", ""),
                ("FLANNELD_IFACE", ""),
                ("FLANNELD_IPTABLES_FORWARD_RULES", ""),
            ],
        )
        .expect("parse");
        assert_eq!(f.etcd_prefix, "/coreos.com/network");
        assert!(f.iface.is_empty());
        assert!(f.iptables_forward_rules);
        assert!(f.env_warnings.is_empty());
    }

    #[test]
    fn bad_env_value_is_a_warning_and_keeps_default() {
        let f = parse_env(
            &[],
            &[
                ("FLANNELD_HEALTHZ_PORT", "http"),
                ("FLANNELD_IP_MASQ", "yes"),
                ("FLANNELD_ETCD_PREFIX", "/ok"),
            ],
        )
        .expect("parse");
        assert_eq!(f.healthz_port, 0);
        assert!(!f.ip_masq);
        assert_eq!(f.etcd_prefix, "/ok");
        assert_eq!(
            f.env_warnings,
            vec![
                "invalid value \"yes\" for FLANNELD_IP_MASQ: not a boolean (use true/false, 1/0, t/f)"
                    .to_string(),
                "invalid value \"http\" for FLANNELD_HEALTHZ_PORT: not an integer: \"http\""
                    .to_string(),
            ]
        );
    }

    #[test]
    fn version_flag_and_env() {
        assert_eq!(parse(&["--version"]), Err(CliError::Version));
        assert_eq!(parse(&["-version"]), Err(CliError::Version));
        assert!(!ok(&["--version=false"]).version);
        // FLANNELD_VERSION is not honoured (Flannel checks --version before reading env).
        let f = parse_env(&[], &[("FLANNELD_VERSION", "true")]).expect("no version");
        assert!(!f.version);
        assert_eq!(CliError::Version.exit_code(), 0);
    }

    #[test]
    fn bad_regex_and_missing_files_are_usage_errors() {
        let m = usage_err(&["--iface-regex=["]);
        assert!(
            m.starts_with(
                "flanneld: invalid value \"[\" for --iface-regex: not a regular expression"
            ),
            "{m}"
        );
        ok(&["--iface-regex=^(eth|ens)[0-9]+$"]);
        let m = usage_err(&["--etcd-cafile=/nonexistent/ca.pem"]);
        assert!(
            m.contains("cannot use /nonexistent/ca.pem: No such file"),
            "{m}"
        );
        // An empty value still means "not set".
        assert_eq!(ok(&["--etcd-cafile="]).etcd_cafile, None);
        let f =
            parse_env(&[], &[("FLANNELD_IFACE_REGEX", "(")]).expect("env problems are warnings");
        assert!(f.iface_regex.is_empty());
        assert!(
            f.env_warnings[0].contains("FLANNELD_IFACE_REGEX"),
            "{:?}",
            f.env_warnings
        );
    }

    #[test]
    fn help() {
        for h in ["-h", "--help", "-help", "--h"] {
            let Err(CliError::Help(text)) = parse(&[h]) else {
                panic!("{h}: expected help");
            };
            assert!(text.contains("Usage: flanneld [OPTION]..."), "{text}");
            assert!(text.contains("--iface-can-reach"), "{text}");
            assert!(text.contains("--etcd-endpoints"), "{text}");
            assert!(text.contains("--subnet-lease-ttl"), "{text}");
        }
        // Help after earlier valid flags still wins; errors before it come first (like Go).
        assert!(matches!(
            parse(&["--ip-masq", "-h"]),
            Err(CliError::Help(_))
        ));
        assert!(matches!(parse(&["--nope", "-h"]), Err(CliError::Usage(_))));
        assert_eq!(CliError::Help(String::new()).exit_code(), 0);
    }

    #[test]
    fn unknown_and_removed_flags() {
        assert_eq!(
            usage_err(&["--foo"]),
            "flanneld: unknown flag --foo (see --help)"
        );
        assert_eq!(
            usage_err(&["-foo=1"]),
            "flanneld: unknown flag --foo (see --help)"
        );
        for removed in [
            "--subnet-dir=/x",
            "--networks=a,b",
            "--use-multi-cluster-cidr",
            "--auto-detect-ipv4",
        ] {
            let m = usage_err(&[removed]);
            assert!(m.contains("(removed from flannel; see --help)"), "{m}");
        }
        assert_eq!(
            CliError::Usage(String::new()).exit_code(),
            2,
            "usage errors exit 2"
        );
    }

    #[test]
    fn bad_syntax_and_missing_value() {
        assert_eq!(
            usage_err(&["---iface"]),
            "flanneld: bad flag syntax: ---iface"
        );
        assert_eq!(usage_err(&["-=x"]), "flanneld: bad flag syntax: -=x");
        assert_eq!(
            usage_err(&["--iface"]),
            "flanneld: flag needs an argument: --iface"
        );
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            usage_err(&["--healthz-port=x"]),
            "flanneld: invalid value \"x\" for --healthz-port: not an integer: \"x\""
        );
        assert_eq!(
            usage_err(&["--healthz-port=70000"]),
            "flanneld: invalid value \"70000\" for --healthz-port: port out of range (0..65535)"
        );
        assert_eq!(
            usage_err(&["--public-ip=2001:db8::1"]),
            "flanneld: invalid value \"2001:db8::1\" for --public-ip: not an IPv4 address"
        );
        assert_eq!(
            usage_err(&["--public-ipv6", "192.0.2.1"]),
            "flanneld: invalid value \"192.0.2.1\" for --public-ipv6: not an IPv6 address"
        );
        assert!(usage_err(&["--iface-can-reach=host"]).contains("not an IP address"));
        assert!(usage_err(&["--iptables-resync=-1"]).contains("must not be negative"));
        assert!(usage_err(&["--v=x"]).contains("not a verbosity level"));
        // Every message is a single line.
        for args in [&["--healthz-port=x"][..], &["--foo"], &["--iface"]] {
            assert!(!usage_err(args).contains('\n'));
        }
    }

    #[test]
    fn empty_value_means_unset_for_optional_flags() {
        let f = parse_env(
            &["--public-ip=", "--etcd-password=", "--iface-can-reach="],
            &[
                ("FLANNELD_PUBLIC_IP", "192.0.2.1"),
                ("FLANNELD_ETCD_PASSWORD", "env"),
            ],
        )
        .expect("parse");
        // Given (empty) on the command line: unset, and env does not apply.
        assert_eq!(f.public_ip, None);
        assert_eq!(f.etcd_password, None);
        assert_eq!(f.iface_can_reach, None);
    }

    #[test]
    fn go_integers() {
        assert_eq!(parse_go_int("42"), Ok(42));
        assert_eq!(parse_go_int("-7"), Ok(-7));
        assert_eq!(parse_go_int("+7"), Ok(7));
        assert_eq!(parse_go_int("0x1F"), Ok(31));
        assert_eq!(parse_go_int("0o17"), Ok(15));
        assert_eq!(parse_go_int("017"), Ok(15));
        assert_eq!(parse_go_int("0b101"), Ok(5));
        assert_eq!(parse_go_int("1_000"), Ok(1000));
        assert_eq!(parse_go_int("0x_1f"), Ok(31));
        assert_eq!(parse_go_int("0"), Ok(0));
        for bad in [
            "",
            "-",
            "_1",
            "1_",
            "1__0",
            "0x",
            "08",
            "1.5",
            " 1",
            "9223372036854775808",
        ] {
            assert!(parse_go_int(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ok(&["--iptables-resync=0x0a"]).iptables_resync, 10);
    }

    #[test]
    fn renew_margin_validation() {
        let msg =
            Err("Invalid subnet-lease-renew-margin option, out of acceptable range".to_string());
        assert_eq!(ok(&["--subnet-lease-renew-margin=1"]).validate(), Ok(()));
        assert_eq!(ok(&["--subnet-lease-renew-margin=1439"]).validate(), Ok(()));
        assert_eq!(ok(&["--subnet-lease-renew-margin=0"]).validate(), msg);
        assert_eq!(ok(&["--subnet-lease-renew-margin=1440"]).validate(), msg);
        // Negative and huge values parse and fail validation, as in Flannel.
        assert_eq!(ok(&["--subnet-lease-renew-margin=-5"]).validate(), msg);
        assert_eq!(
            ok(&["--subnet-lease-renew-margin=99999999999"]).validate(),
            msg
        );
    }

    #[test]
    fn password_is_redacted() {
        let f = ok(&["--etcd-password=hunter2", "--etcd-username=alice"]);
        let summary = f.log_summary();
        assert!(!summary.contains("hunter2"), "{summary}");
        assert!(summary.contains("etcd-password:***"), "{summary}");
        assert!(summary.contains("etcd-username:alice"), "{summary}");
        assert!(!format!("{f:?}").contains("hunter2"));
        let plain = ok(&[]).log_summary();
        assert!(plain.contains("etcd-password: "), "{plain}");
        assert!(plain.starts_with("{etcd-endpoints:http://127.0.0.1:4001,http://127.0.0.1:2379 "));
    }

    #[test]
    fn env_keys() {
        assert_eq!(env_key("iface-can-reach"), "FLANNELD_IFACE_CAN_REACH");
        assert_eq!(env_key("v"), "FLANNELD_V");
        assert_eq!(env_key("log_backtrace_at"), "FLANNELD_LOG_BACKTRACE_AT");
    }

    #[test]
    fn table_classifies_flags() {
        let t = FlagTable::from_command(&Flags::command());
        let b = |n: &str| t.get(n).expect(n).boolean;
        let e = |n: &str| t.get(n).expect(n).empty_means_unset;
        for n in [
            "ip-masq",
            "ip-masq-fully-random-disable",
            "kube-subnet-mgr",
            "iptables-forward-rules",
            "ip-blackhole-route",
            "set-node-network-unavailable",
            "udp-fast-path",
            "vxlan-tx-checksum-fix",
            "version",
        ] {
            assert!(b(n), "{n} should be boolean");
        }
        for n in [
            "iface",
            "etcd-prefix",
            "v",
            "healthz-port",
            "subnet-lease-ttl",
        ] {
            assert!(!b(n), "{n} should take a value");
        }
        assert!(e("public-ip") && e("etcd-password") && e("iface-can-reach"));
        assert!(!e("iface") && !e("etcd-prefix") && !e("vmodule"));
        // Flannel's 32 flags plus flannel-rs's `--udp-fast-path`, `--vxlan-tx-checksum-fix` and
        // `--wireguard-implementation`.
        assert_eq!(t.flags.len(), 35);
    }

    #[test]
    fn non_utf8_argument_is_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("flanneld"),
            OsString::from_vec(vec![b'-', b'-', 0xff]),
        ];
        let r = parse_with_env(args, &|_| None);
        assert!(matches!(r, Err(CliError::Usage(m)) if m.contains("not valid UTF-8")));
    }
}
