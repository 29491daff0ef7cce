//! The benchmark's sandbox: named network namespaces (`frsbench<pid>-…`), the processes
//! started in them, and their removal — on drop, on SIGINT/SIGTERM/SIGHUP, on a panic, and
//! (for namespaces of a bench process that no longer exists) at the next start.
//!
//! Layout: one namespace `frsbench<pid>-etcd` with a bridge `br0` = `192.0.2.254/24` (etcd
//! listens there and on its own loopback), and for each host under test a fresh namespace
//! whose `eth0` = `192.0.2.1/24` is a veth port of that bridge. Nothing has a route out.
//!
//! Every external command runs with a time limit ([`run`]).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use crate::plan::{ETCD_IP, HOST_IP, UNDERLAY_LEN};

/// First part of every namespace name this program creates.
pub const NAME_PREFIX: &str = "frsbench";
/// Time limit of a plain setup command (`ip …`).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// What must be undone if the program is interrupted.
#[derive(Default)]
struct Registry {
    namespaces: Vec<String>,
    pids: Vec<i32>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    namespaces: Vec::new(),
    pids: Vec::new(),
    dirs: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remember a child process to kill if the program is interrupted.
pub fn register_pid(pid: i32) {
    registry().pids.push(pid);
}

/// Forget a child process (it was stopped and reaped).
pub fn unregister_pid(pid: i32) {
    registry().pids.retain(|p| *p != pid);
}

/// Remember a directory to remove if the program is interrupted.
pub fn register_dir(dir: PathBuf) {
    registry().dirs.push(dir);
}

/// Kill every registered process, delete every registered namespace and directory. Used on
/// signals and panics; the normal path undoes things through drops.
pub fn cleanup_all() {
    let mut reg = registry();
    for pid in reg.pids.drain(..) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for ns in reg.namespaces.drain(..).rev() {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for dir in reg.dirs.drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
    drop(reg);
    remove_testkit_namespaces();
}

/// Kill what runs in, and delete, the namespaces and temporary directories of this process's
/// `flannel_testkit` labs (`frs-<pid>-…`, used by `flannel-bench modes`); on the normal path
/// the labs' drops do this.
fn remove_testkit_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"], CMD_TIMEOUT) else {
        return;
    };
    let mine = format!("frs-{}-", std::process::id());
    for name in list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&mine))
    {
        if let Ok(pids) = run("ip", &["netns", "pids", name], CMD_TIMEOUT) {
            for p in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        let _ = run("ip", &["netns", "del", name], CMD_TIMEOUT);
    }
    // The labs' temporary directories (`<tmp>/frs-<pid>-<n>-<hint>-XXXXXX`).
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&mine) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Block SIGINT/SIGTERM/SIGHUP in this thread (call first in `main`, so every later thread
/// inherits the mask) and clean up and exit when one arrives. Also clean up on a panic
/// (release builds abort on panic, so drops would not run).
pub fn install_cleanup_handlers() -> Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("blocking signals")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("flannel-bench: {sig}: cleaning up");
                cleanup_all();
                std::process::exit(130);
            }
        })
        .context("starting the signal thread")?;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        cleanup_all();
    }));
    Ok(())
}

/// Delete namespaces (and kill what runs in them) left by bench processes that no longer
/// exist. Returns the names removed.
pub fn remove_leftovers() -> Result<Vec<String>> {
    let list = run("ip", &["netns", "list"], CMD_TIMEOUT)?;
    let mut removed = Vec::new();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = run("ip", &["netns", "pids", name], CMD_TIMEOUT) {
            for p in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        run("ip", &["netns", "del", name], CMD_TIMEOUT)?;
        removed.push(name.to_owned());
    }
    Ok(removed)
}

/// Run a command to completion within `timeout`; its stdout, or an error with its stderr.
pub fn run(cmd: &str, args: &[&str], timeout: Duration) -> Result<String> {
    let out = run_output(cmd, args, timeout)?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command to completion within `timeout` (killed after it) and return its output.
pub fn run_output(cmd: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd}"))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => r.with_context(|| format!("waiting for {cmd}")),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            bail!("{cmd} {} took longer than {timeout:?}", args.join(" "))
        }
    }
}

/// Move the calling thread into namespace `ns` (sockets it opens and processes it spawns
/// live there).
pub fn enter(ns: &str) -> Result<()> {
    let f =
        File::open(format!("/run/netns/{ns}")).with_context(|| format!("opening netns {ns}"))?;
    setns(&f, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {ns}"))?;
    Ok(())
}

/// Run `f` on a new thread inside namespace `ns` and return its result.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns)?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("a thread in {ns} panicked"))?
    })
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add <name>` and bring `lo` up.
    pub fn create(name: String) -> Result<Netns> {
        run("ip", &["netns", "add", &name], CMD_TIMEOUT)?;
        registry().namespaces.push(name.clone());
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args…>`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full, CMD_TIMEOUT)
    }

    /// `bridge -n <ns> <args…>`.
    pub fn bridge(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("bridge", &full, CMD_TIMEOUT)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name], CMD_TIMEOUT);
        registry().namespaces.retain(|n| *n != self.name);
    }
}

/// The lab: the etcd namespace with its bridge, and a counter for host namespaces.
#[derive(Debug)]
pub struct Lab {
    id: String,
    etcd_ns: Netns,
    hosts: AtomicUsize,
}

impl Lab {
    /// Create the etcd namespace and its bridge.
    pub fn new() -> Result<Lab> {
        let id = format!("{NAME_PREFIX}{}", std::process::id());
        let etcd_ns = Netns::create(format!("{id}-etcd"))?;
        etcd_ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        etcd_ns.ip(&[
            "addr",
            "add",
            &format!("{ETCD_IP}/{UNDERLAY_LEN}"),
            "dev",
            "br0",
        ])?;
        etcd_ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Lab {
            id,
            etcd_ns,
            hosts: AtomicUsize::new(0),
        })
    }

    /// The etcd namespace.
    pub fn etcd_ns(&self) -> &Netns {
        &self.etcd_ns
    }

    /// A fresh host namespace `frsbench<pid>-<role><k>` with `eth0` = `192.0.2.1/24` on the
    /// lab's bridge. Hosts are used one at a time (they share the address).
    pub fn add_host(&self, role: &str) -> Result<Netns> {
        let k = self.hosts.fetch_add(1, Ordering::SeqCst);
        let ns = Netns::create(format!("{}-{role}{k}", self.id))?;
        let port = format!("hb{k}");
        self.etcd_ns.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ])?;
        self.etcd_ns
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{HOST_IP}/{UNDERLAY_LEN}"),
            "dev",
            "eth0",
        ])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        Ok(ns)
    }
}
