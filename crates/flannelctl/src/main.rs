//! `flannelctl`: operator tool for flannel-rs. Command groups: `lab`, a whole flannel-rs
//! cluster on this machine in network namespaces (see docs/lab.md), `vm` (in vm.rs), a
//! command on Debian's kernel under qemu (see docs/kernels.md), and `status` / `doctor` (in
//! diagnose.rs, facts gathered in node.rs), one node seen and explained
//! (docs/observability.md).
//!
//! This file owns the command line (clap), the terminal output (progress line, tables,
//! `--json`), signal handling (Ctrl-C during `up` tears down what was built) and `exec`.
//! Everything else is in the `flannel-lab` library.

mod diagnose;
mod labkernel;
mod node;
mod progress;
mod vm;

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use flannel_lab::check::CheckReport;
use flannel_lab::inspect::{render_list, render_status};
use flannel_lab::render::matrix;
use flannel_lab::{Backend, BackendOption, Lab, LabError, LabName, LabSpec, UpOptions};
use flannel_sandbox::process::{self, Stopped};
use flannel_sandbox::signals::{self, Action};
use flannel_sandbox::{cmd, wait};
use ipnet::Ipv4Net;
use serde::Serialize;

use progress::TermProgress;

/// `print!` without the panic on a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => { emit(&format!($($arg)*)) };
}

/// `println!` without the panic on a closed stdout.
macro_rules! outln {
    () => { emit("\n") };
    ($($arg:tt)*) => { emit(&format!("{}\n", format!($($arg)*))) };
}

/// flannel-rs operator tool.
#[derive(Debug, Parser)]
#[command(name = "flannelctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// A whole flannel-rs cluster on this machine, in network namespaces (needs root).
    #[command(subcommand)]
    Lab(LabCommand),
    /// Run a command on Debian's packaged kernel under qemu (see docs/kernels.md).
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// This node: its lease, each peer with what the kernel holds for it, flanneld's health.
    /// Takes flanneld's flags (and FLANNELD_* env); --json for scripts.
    #[command(disable_help_flag = true)]
    Status(Passthrough),
    /// Check this node and explain each problem (evidence, fix); exit 0 only when healthy.
    /// Takes flanneld's flags (and FLANNELD_* env); --json, --fix.
    #[command(disable_help_flag = true)]
    Doctor(Passthrough),
}

#[derive(Debug, Args)]
struct Passthrough {
    /// --json, --fix (doctor), then flanneld's flags, e.g. --etcd-endpoints=... --iface=eth0.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build a lab and leave it running: etcd, one flanneld per host, pods via the flannel
    /// CNI plugin; then check all-pairs pod connectivity.
    Up(UpArgs),
    /// Show a lab: hosts, pods, leases, backend; exit 1 unless it is running and whole.
    Status(NameJson),
    /// Ping every ordered pair of pods; exit 1 if any pair fails.
    Check(NameJson),
    /// Run a command in a host (h1), a pod (h1-p2), etcd or sw; a shell without a command.
    Exec(ExecArgs),
    /// Restart one host's flanneld (SIGTERM, then start it again and wait until it is ready).
    Restart(RestartArgs),
    /// Break one host on purpose (for `flannelctl doctor` to find): stop-flanneld, del-fdb,
    /// del-route, pod-mtu, rm-subnet-env, rp-filter, block-port.
    Fault(FaultArgs),
    /// Stop and remove a lab (also its leftovers after a crash).
    Down(DownArgs),
    /// List the labs on this machine.
    List(JsonOnly),
    /// up, check, down with vxlan, then host-gw, then udp (what `make demo` runs), in a lab
    /// of its own (`demo_<pid>`; leftovers of earlier demos that died are removed first).
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct FaultArgs {
    /// The fault.
    #[arg(value_parser = parse_fault)]
    kind: flannel_lab::fault::Fault,
    /// The host (h1, h2, ...).
    host: String,
    #[command(flatten)]
    name: NameArg,
    #[command(flatten)]
    json: JsonOnly,
}

fn parse_fault(s: &str) -> Result<flannel_lab::fault::Fault, String> {
    s.parse().map_err(|e: LabError| e.to_string())
}

#[derive(Debug, Args)]
struct NameArg {
    /// The lab's name (a-z, 0-9, _).
    #[arg(long, env = "FLANNELCTL_LAB", default_value = "default")]
    name: String,
}

#[derive(Debug, Args)]
struct JsonOnly {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct NameJson {
    #[command(flatten)]
    name: NameArg,
    #[command(flatten)]
    json: JsonOnly,
}

#[derive(Debug, Args)]
struct Binaries {
    /// flanneld binary [default: next to flannelctl, else in PATH].
    #[arg(long, value_name = "PATH")]
    flanneld: Option<PathBuf>,
    /// The flannel CNI plugin [default: `flannel` next to flannelctl, else /opt/cni/bin/flannel].
    #[arg(long, value_name = "PATH")]
    cni_plugin: Option<PathBuf>,
    /// Directory with the bridge and host-local CNI plugins.
    #[arg(long, value_name = "DIR", default_value = flannel_lab::spec::DEFAULT_CNI_BIN_DIR)]
    cni_bin_dir: PathBuf,
    /// Extra argument for every flanneld (repeatable), e.g. `--flanneld-arg=-v=2`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    flanneld_arg: Vec<String>,
}

#[derive(Debug, Args)]
struct Shape {
    /// Number of hosts.
    #[arg(long, default_value_t = 3)]
    hosts: u8,
    /// Pods per host.
    #[arg(long, default_value_t = 2)]
    pods: u8,
    /// The pod network.
    #[arg(long, default_value = "198.18.0.0/16")]
    network: Ipv4Net,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    name: NameArg,
    #[command(flatten)]
    shape: Shape,
    /// flanneld's backend: vxlan, host-gw, udp, alloc, ipip, ipsec, wireguard or extension.
    #[arg(long, default_value = "vxlan", value_parser = parse_backend)]
    backend: Backend,
    /// Which kernel: auto (this one, or Debian's under qemu when this one lacks a module the
    /// backend needs: ipip, esp4), this, or debian. In the guest the lab is built, checked and
    /// removed in one go.
    #[arg(long, default_value = "auto", value_parser = labkernel::parse_kernel)]
    kernel: flannel_lab::KernelChoice,
    /// A member of the network config's `Backend` besides `Type` (repeatable), e.g.
    /// `Mode=on-demand`, `DirectRouting=true`, `MTU=1400`; numbers and booleans are written
    /// as JSON numbers and booleans, anything else as a string.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_backend_option)]
    backend_option: Vec<BackendOption>,
    #[command(flatten)]
    binaries: Binaries,
    /// Do not run the connectivity check after building.
    #[arg(long)]
    no_check: bool,
    /// When a step fails, leave what was built for debugging (`down` removes it).
    #[arg(long)]
    keep_on_failure: bool,
    #[command(flatten)]
    json: JsonOnly,
}

#[derive(Debug, Args)]
struct ExecArgs {
    #[command(flatten)]
    name: NameArg,
    /// h<n>, h<n>-p<k>, etcd or sw.
    target: String,
    /// The command (after `--`); default: $SHELL.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct RestartArgs {
    #[command(flatten)]
    name: NameArg,
    /// The host whose flanneld is restarted (h<n>).
    host: String,
    #[command(flatten)]
    json: JsonOnly,
}

#[derive(Debug, Args)]
struct DownArgs {
    #[command(flatten)]
    name: NameArg,
    /// Every lab on this machine (with state or leftovers only).
    #[arg(long, conflicts_with = "name")]
    all: bool,
    #[command(flatten)]
    json: JsonOnly,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// The lab's name while the demo runs [default: demo_<pid>, a name of its own]. A running
    /// lab of that name is never removed.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    shape: Shape,
    /// Backends to show, in order (any the lab runs).
    #[arg(long, value_delimiter = ',', default_value = "vxlan,host-gw,udp", value_parser = parse_backend)]
    backends: Vec<Backend>,
    /// Which kernel: auto (this one, or the whole demo inside Debian's under qemu when this
    /// one lacks a module a backend needs: ipip, esp4), this, or debian.
    #[arg(long, default_value = "auto", value_parser = labkernel::parse_kernel)]
    kernel: flannel_lab::KernelChoice,
    #[command(flatten)]
    binaries: Binaries,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse().map_err(|e: LabError| e.to_string())
}

fn parse_backend_option(s: &str) -> Result<BackendOption, String> {
    s.parse().map_err(|e: LabError| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Top::Lab(command) => run(command),
        Top::Vm(command) => vm::run(command),
        Top::Status(a) => diagnose::status(&a.args),
        Top::Doctor(a) => diagnose::doctor(&a.args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flannelctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: LabCommand) -> Result<ExitCode> {
    let lab = labkernel::lab();
    match command {
        LabCommand::Up(a) => {
            let (backend, name) = (a.backend, a.name.name.clone());
            let guest = labkernel::run_where_needed(
                a.kernel,
                &[backend],
                Some(&name),
                labkernel::OneShot::Up,
                1,
            )?;
            if let Some(code) = guest {
                return Ok(code);
            }
            watch_signals()?;
            up(&lab, a)
        }
        LabCommand::Status(a) => status(&lab, &a),
        LabCommand::Check(a) => {
            watch_signals()?;
            check(&lab, &a)
        }
        LabCommand::Exec(a) => exec(&lab, a),
        LabCommand::Restart(a) => {
            watch_signals()?;
            restart(&lab, &a)
        }
        LabCommand::Fault(a) => fault(&lab, &a),
        LabCommand::Down(a) => {
            watch_signals()?;
            down(&lab, &a)
        }
        LabCommand::List(a) => list(&lab, &a),
        LabCommand::Demo(a) => {
            let guest = labkernel::run_where_needed(
                a.kernel,
                &a.backends,
                a.name.as_deref(),
                labkernel::OneShot::Demo,
                a.backends.len(),
            )?;
            if let Some(code) = guest {
                return Ok(code);
            }
            watch_signals()?;
            demo(&lab, a)
        }
    }
}

fn fault(lab: &Lab, a: &FaultArgs) -> Result<ExitCode> {
    let r = lab.inject_fault(&name_of(&a.name)?, a.kind, &a.host)?;
    if a.json.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for line in &r.did {
            outln!("{} {}: {line}", r.lab, r.host);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn name_of(arg: &NameArg) -> Result<LabName> {
    Ok(LabName::new(&arg.name)?)
}

fn need_root() -> Result<()> {
    if !cmd::is_root() {
        bail!("the lab lives in network namespaces: run flannelctl as root");
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP stop the lab's waits (what was built is torn down); a second
/// one exits at once (`flannelctl lab down` removes what is left). The signals are handled,
/// not blocked, so the daemons the lab starts do not inherit a blocked mask (they must stop
/// on SIGTERM).
fn watch_signals() -> Result<()> {
    signals::watch(|sig, seen| {
        if seen > 1 {
            eprintln!(
                "\nflannelctl: {sig} again: exiting; `flannelctl lab down` removes what is left"
            );
            return Action::Exit(130);
        }
        eprintln!("\nflannelctl: {sig}: stopping (again to quit at once)");
        wait::interrupt();
        Action::Continue
    })
    .context("watching signals")?;
    Ok(())
}

/// `name` next to the running flannelctl, if there.
fn sibling(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join(name);
    p.is_file().then_some(p)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("{} does not exist", p.display()))
}

fn resolve_binaries(b: &Binaries) -> Result<(PathBuf, PathBuf)> {
    let flanneld = match &b.flanneld {
        Some(p) => absolute(p)?,
        None => sibling("flanneld")
            .or_else(|| flannel_lab::build::which("flanneld"))
            .ok_or_else(|| {
                anyhow!("cannot find flanneld: pass --flanneld PATH (or `cargo build --release --bins`)")
            })?,
    };
    let plugin = match &b.cni_plugin {
        Some(p) => absolute(p)?,
        None => sibling("flannel")
            .or_else(|| {
                let p = PathBuf::from("/opt/cni/bin/flannel");
                p.is_file().then_some(p)
            })
            .ok_or_else(|| {
                anyhow!("cannot find the flannel CNI plugin: pass --cni-plugin PATH (or `cargo build --release --bins`)")
            })?,
    };
    Ok((flanneld, plugin))
}

fn make_spec(
    name: LabName,
    shape: &Shape,
    backend: Backend,
    backend_options: &[BackendOption],
    binaries: &Binaries,
) -> Result<LabSpec> {
    let (flanneld, plugin) = resolve_binaries(binaries)?;
    let mut spec = LabSpec::new(name, flanneld, plugin);
    spec.hosts = shape.hosts;
    spec.pods = shape.pods;
    spec.network = shape.network;
    spec.backend = backend;
    spec.cni_bin_dir = binaries.cni_bin_dir.clone();
    spec.flanneld_args = binaries.flanneld_arg.clone();
    spec.backend_options = backend_options.to_vec();
    spec.validate()?;
    Ok(spec)
}

/// What `up --json` prints.
#[derive(Serialize)]
struct UpJson {
    status: flannel_lab::LabStatus,
    check: Option<CheckReport>,
}

fn up(lab: &Lab, a: UpArgs) -> Result<ExitCode> {
    need_root()?;
    let name = name_of(&a.name)?;
    let spec = make_spec(
        name.clone(),
        &a.shape,
        a.backend,
        &a.backend_option,
        &a.binaries,
    )?;
    let json = a.json.json;
    let mut progress = TermProgress::new(json);
    let started = Instant::now();
    let built = lab.up(
        spec,
        UpOptions {
            keep_on_failure: a.keep_on_failure,
            time_scale: labkernel::time_scale(),
        },
        &mut progress,
    );
    progress.clear();
    built?;
    let elapsed = started.elapsed().as_secs_f64();
    let status = lab.status(&name)?;
    let report = if a.no_check {
        None
    } else {
        let r = lab.check(&name, &mut progress);
        progress.clear();
        Some(r?)
    };
    let ok = report.as_ref().is_none_or(|r| r.ok);
    if json {
        print_json(&UpJson {
            status,
            check: report,
        })?;
    } else {
        outln!("lab {name} is up ({elapsed:.1} s)\n");
        out!("{}", render_status(&status));
        if let Some(r) = &report {
            out!("\n{}", render_check(r));
        }
        if labkernel::one_shot() {
            outln!("\n(inside the guest: the lab is removed now, the guest ends with it)");
        } else {
            outln!(
                "\nnext: flannelctl lab exec --name {name} h1-p1 -- ip addr   |   \
                 flannelctl lab status --name {name}   |   flannelctl lab down --name {name}"
            );
        }
        if !ok && !labkernel::one_shot() {
            outln!("some pairs FAILED; the lab is left running for debugging (see docs/lab.md)");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn render_check(r: &CheckReport) -> String {
    let mut out = format!(
        "connectivity: ping from each pod (rows) to each pod (columns), backend {}\n",
        r.backend
    );
    out.push_str(&matrix(&r.matrix));
    if !r.unattached.is_empty() {
        out.push_str(&format!(
            "  pods without an address (not checked): {}\n",
            r.unattached.join(", ")
        ));
    }
    out
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Writes to stdout, ignoring errors: a closed pipe (`| head`) must not stop a teardown.
fn emit(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

fn status(lab: &Lab, a: &NameJson) -> Result<ExitCode> {
    need_root()?;
    let s = lab.status(&name_of(&a.name)?)?;
    if a.json.json {
        print_json(&s)?;
    } else {
        out!("{}", render_status(&s));
    }
    // Scripts can wait on `lab status`: 0 only when everything is running.
    Ok(if s.health == "running" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check(lab: &Lab, a: &NameJson) -> Result<ExitCode> {
    need_root()?;
    let name = name_of(&a.name)?;
    let mut progress = TermProgress::new(a.json.json);
    let r = lab.check(&name, &mut progress);
    progress.clear();
    let r = r?;
    if a.json.json {
        print_json(&r)?;
    } else {
        out!("{}", render_check(&r));
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn exec(lab: &Lab, a: ExecArgs) -> Result<ExitCode> {
    need_root()?;
    let ns = lab.namespace_of(&name_of(&a.name)?, &a.target)?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns]);
    if let Some(program) = a.command.first() {
        // `ip netns exec` exits 255 when the command cannot be run; a shell's 127 and 126
        // say what happened.
        if let Some((code, why)) = unrunnable(program) {
            eprintln!("flannelctl: {program}: {why}");
            return Ok(ExitCode::from(code));
        }
        cmd.args(&a.command);
    } else {
        cmd.arg(std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into()));
    }
    // Only returns on failure; otherwise the command's exit status is flannelctl's.
    let e = cmd.exec();
    Err(anyhow!("running ip netns exec {ns}: {e}"))
}

/// Why `program` cannot be run, as a shell would say it: 127 when it is not found (in `PATH`
/// when it has no `/`), 126 when it is not an executable file. The lab's namespaces share
/// flannelctl's file system, so what is found here is what `ip netns exec` runs.
fn unrunnable(program: &str) -> Option<(u8, &'static str)> {
    if program.contains('/') {
        let path = Path::new(program);
        if !path.exists() {
            return Some((127, "no such file"));
        }
        return (!cmd::is_executable(path)).then_some((126, "not an executable file"));
    }
    cmd::which(program)
        .is_none()
        .then_some((127, "command not found"))
}

fn restart(lab: &Lab, a: &RestartArgs) -> Result<ExitCode> {
    need_root()?;
    let r = lab.restart_flanneld(&name_of(&a.name)?, &a.host)?;
    if a.json.json {
        print_json(&r)?;
    } else {
        let old = match (r.old_pid, r.stopped) {
            (Some(pid), Stopped::Terminated) => format!("pid {pid} stopped by SIGTERM"),
            (Some(pid), Stopped::Killed) => {
                format!("pid {pid} ignored SIGTERM and was killed")
            }
            (Some(pid), Stopped::NotRunning) => format!("pid {pid} was not running"),
            (None, _) => "none was running".to_owned(),
        };
        outln!(
            "lab {}: flanneld on {} restarted ({old}; now pid {}, ready after {:.1} s)",
            r.lab,
            r.host,
            r.new_pid,
            Duration::from_millis(r.took_ms).as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn down(lab: &Lab, a: &DownArgs) -> Result<ExitCode> {
    need_root()?;
    let reports = if a.all {
        lab.down_all()?
    } else {
        vec![lab.down(&name_of(&a.name)?)?]
    };
    if a.json.json {
        print_json(&reports)?;
    } else if reports.is_empty() {
        outln!("no labs");
    } else {
        for r in &reports {
            outln!("{}", describe_down(r));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_down(r: &flannel_lab::DownReport) -> String {
    if !r.found {
        return format!("lab {}: nothing to remove", r.name);
    }
    let mut line = format!(
        "lab {}: released {}, stopped {}, removed {}{}",
        r.name,
        plural(r.pods_released, "pod"),
        plural(r.processes_stopped, "process"),
        plural(r.namespaces_removed.len(), "namespace"),
        if r.had_state {
            ""
        } else {
            " (it had no state)"
        }
    );
    for w in &r.warnings {
        line.push_str(&format!("\n  warning: {w}"));
    }
    line
}

/// `1 pod`, `2 pods`, `3 processes`.
fn plural(n: usize, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

fn list(lab: &Lab, a: &JsonOnly) -> Result<ExitCode> {
    let labs = lab.list()?;
    if a.json {
        print_json(&labs)?;
    } else {
        out!("{}", render_list(&labs));
    }
    Ok(ExitCode::SUCCESS)
}

fn demo(lab: &Lab, a: DemoArgs) -> Result<ExitCode> {
    need_root()?;
    let name = match &a.name {
        Some(n) => LabName::new(n)?,
        None => {
            // A name of its own, so a lab someone else is using is never touched; what
            // earlier demos left when they were killed is removed.
            for earlier in lab.list()?.iter().filter(|l| dead_demo(&l.name)) {
                let r = lab.down(&LabName::new(&earlier.name)?)?;
                outln!("{} (left by an earlier demo)", describe_down(&r));
            }
            LabName::new(&demo_name(std::process::id()))?
        }
    };
    let mut all_ok = true;
    for (i, backend) in a.backends.iter().enumerate() {
        if wait::interrupted() {
            break;
        }
        let spec = make_spec(name.clone(), &a.shape, *backend, &[], &a.binaries)?;
        heading(&format!(
            "{}/{}: backend {backend}: {} hosts, {} pods each",
            i + 1,
            a.backends.len(),
            spec.hosts,
            spec.pods
        ));
        let mut progress = TermProgress::new(false);
        let started = Instant::now();
        let options = UpOptions {
            time_scale: labkernel::time_scale(),
            ..UpOptions::default()
        };
        let built = lab.up(spec, options, &mut progress);
        progress.clear();
        if let Err(e) = built {
            outln!("FAILED to build the lab: {e}");
            all_ok = false;
            continue;
        }
        outln!("built in {:.1} s\n", started.elapsed().as_secs_f64());
        match lab.status(&name) {
            Ok(s) => out!("{}", render_status(&s)),
            Err(e) => outln!("status: {e}"),
        }
        let checked = lab.check(&name, &mut progress);
        progress.clear();
        match checked {
            Ok(r) => {
                out!("\n{}", render_check(&r));
                all_ok &= r.ok;
            }
            Err(e) => {
                outln!("\ncheck FAILED: {e}");
                all_ok = false;
            }
        }
        let r = lab.down(&name)?;
        outln!("\n{}", describe_down(&r));
    }
    if wait::interrupted() {
        outln!("\ndemo interrupted");
        return Ok(ExitCode::from(130));
    }
    if all_ok {
        outln!("\ndemo OK: every pod reached every other pod with each backend");
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("\ndemo FAILED (see above)");
        Ok(ExitCode::FAILURE)
    }
}

/// The lab name of the demo run by process `pid`.
fn demo_name(pid: u32) -> String {
    format!("demo_{pid}")
}

/// Whether `name` is the lab of a demo whose flannelctl no longer runs.
fn dead_demo(name: &str) -> bool {
    name.strip_prefix("demo_")
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| demo_name(pid) == name && !process::pid_exists(pid))
}

fn heading(text: &str) {
    // Bold only on a terminal, and not with NO_COLOR set to anything but "" (no-color.org).
    let styled = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if styled {
        outln!("\n\x1b[1m== {text}\x1b[0m\n");
    } else {
        outln!("\n== {text}\n");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> LabCommand {
        let Top::Lab(c) = Cli::try_parse_from(args).unwrap().command else {
            panic!("not a lab command: {args:?}")
        };
        c
    }

    #[test]
    fn exec_takes_a_target_and_a_command() {
        let LabCommand::Exec(a) = parse(&[
            "flannelctl",
            "lab",
            "exec",
            "--name",
            "x",
            "h1-p2",
            "--",
            "ip",
            "-br",
            "addr",
        ]) else {
            panic!("not exec");
        };
        assert_eq!(a.name.name, "x");
        assert_eq!(a.target, "h1-p2");
        assert_eq!(a.command, vec!["ip", "-br", "addr"]);
    }

    #[test]
    fn up_defaults_and_options() {
        let LabCommand::Up(a) = parse(&["flannelctl", "lab", "up"]) else {
            panic!("not up");
        };
        assert_eq!(
            (a.shape.hosts, a.shape.pods, a.backend),
            (3, 2, Backend::Vxlan)
        );
        assert_eq!(a.shape.network.to_string(), "198.18.0.0/16");
        assert_eq!(a.binaries.cni_bin_dir, PathBuf::from("/usr/lib/cni"));
        let LabCommand::Up(a) = parse(&[
            "flannelctl",
            "lab",
            "up",
            "--backend",
            "host-gw",
            "--flanneld-arg=-v=2",
            "--flanneld-arg",
            "--iptables-resync=1",
        ]) else {
            panic!("not up");
        };
        assert_eq!(a.backend, Backend::HostGw);
        assert_eq!(a.binaries.flanneld_arg, vec!["-v=2", "--iptables-resync=1"]);
        assert!(Cli::try_parse_from(["flannelctl", "lab", "up", "--backend", "geneve"]).is_err());
        let LabCommand::Demo(d) = parse(&["flannelctl", "lab", "demo"]) else {
            panic!("not demo");
        };
        assert_eq!(
            d.backends,
            vec![Backend::Vxlan, Backend::HostGw, Backend::Udp]
        );
        assert!(
            Cli::try_parse_from(["flannelctl", "lab", "down", "--all", "--name", "x"]).is_err()
        );
        assert_eq!(d.name, None);
    }

    #[test]
    fn backend_options_and_restart_parse() {
        let LabCommand::Up(a) = parse(&[
            "flannelctl",
            "lab",
            "up",
            "--backend-option",
            "Mode=on-demand",
            "--backend-option=DirectRouting=true",
            "--backend-option",
            "MTU=1400",
        ]) else {
            panic!("not up");
        };
        let shown: Vec<String> = a.backend_option.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["Mode=\"on-demand\"", "DirectRouting=true", "MTU=1400"]
        );
        assert!(Cli::try_parse_from(["flannelctl", "lab", "up", "--backend-option", "x"]).is_err());
        let LabCommand::Restart(r) = parse(&["flannelctl", "lab", "restart", "--name", "x", "h2"])
        else {
            panic!("not restart");
        };
        assert_eq!((r.name.name.as_str(), r.host.as_str()), ("x", "h2"));
    }

    #[test]
    fn unrunnable_commands_are_told_apart() {
        assert_eq!(unrunnable("sh"), None);
        assert_eq!(unrunnable("/bin/sh"), None);
        assert_eq!(
            unrunnable("surely-no-such-command"),
            Some((127, "command not found"))
        );
        assert_eq!(unrunnable("/no/such/file"), Some((127, "no such file")));
        let plain = std::env::temp_dir().join(format!("flannelctl-test-{}", std::process::id()));
        std::fs::write(&plain, "not a program").unwrap();
        let got = unrunnable(plain.to_str().unwrap());
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(got, Some((126, "not an executable file")));
    }

    #[test]
    fn demo_names_are_its_own() {
        let me = std::process::id();
        assert_eq!(demo_name(me), format!("demo_{me}"));
        assert!(!dead_demo(&demo_name(me)), "a running demo is not dead");
        // pid 0 never belongs to a process.
        assert!(dead_demo("demo_0"));
        assert!(!dead_demo("demo"));
        assert!(!dead_demo("demo_x"));
        assert!(!dead_demo("demo_007"));
        assert!(!dead_demo("mydemo_0"));
    }

    #[test]
    fn down_reports_read_well() {
        let mut r = flannel_lab::DownReport {
            name: "demo".into(),
            ..Default::default()
        };
        assert_eq!(describe_down(&r), "lab demo: nothing to remove");
        r.found = true;
        r.pods_released = 1;
        r.had_state = true;
        r.namespaces_removed = vec!["a".into()];
        assert_eq!(
            describe_down(&r),
            "lab demo: released 1 pod, stopped 0 processes, removed 1 namespace"
        );
        r.had_state = false;
        r.pods_released = 6;
        r.processes_stopped = 4;
        r.namespaces_removed = vec!["a".into(), "b".into()];
        r.warnings = vec!["x".into()];
        assert_eq!(
            describe_down(&r),
            "lab demo: released 6 pods, stopped 4 processes, removed 2 namespaces (it had no state)\n  warning: x"
        );
    }
}
