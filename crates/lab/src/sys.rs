//! The lab's contact with the system: commands with time limits, network namespaces (through
//! `ip`), detached processes and their identity, HTTP probes inside a namespace, log tails,
//! and the interrupt flag every wait checks.
//!
//! Every command runs with a time limit and its output captured in anonymous temporary files
//! (never pipes, so a stray grandchild holding a pipe cannot block the lab). Every wait is
//! bounded and ends early when [`interrupt`] was called.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{LabError, Result};
use crate::state::ProcRecord;

/// Time limit of a quick command (`ip …`, `sysctl`, `etcdctl`).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks every running wait of the lab to stop with [`LabError::Interrupted`] (called from a
/// signal-handling thread). Teardown ignores it.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once [`interrupt`] was called.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(LabError::Interrupted)
    } else {
        Ok(())
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
}

/// The command line of `cmd` as text.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion within `timeout` (killing it after), feeding it `stdin` (or
/// nothing); returns its output whatever the exit status.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let desc = describe(&cmd);
    let io = |e| LabError::io(format!("running `{desc}`"), e);
    let mut out = tempfile::tempfile().map_err(io)?;
    let mut err = tempfile::tempfile().map_err(io)?;
    match stdin {
        Some(data) => {
            let mut input = tempfile::tempfile().map_err(io)?;
            input.write_all(data).map_err(io)?;
            input.seek(SeekFrom::Start(0)).map_err(io)?;
            cmd.stdin(input);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    cmd.stdout(out.try_clone().map_err(io)?);
    cmd.stderr(err.try_clone().map_err(io)?);
    let mut child = cmd.spawn().map_err(io)?;
    drop(cmd);
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::CommandTimeout {
                command: desc,
                timeout,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let read = |f: &mut File| -> Result<String> {
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.read_to_end(&mut buf).map_err(io)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    Ok(Output {
        status,
        stdout: read(&mut out)?,
        stderr: read(&mut err)?,
    })
}

/// [`run`], and an error (with stderr, or stdout when stderr is empty) unless it exits 0.
pub fn run_ok(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<String> {
    let desc = describe(&cmd);
    let out = run(cmd, stdin, timeout)?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let detail = if out.stderr.trim().is_empty() {
        out.stdout.trim()
    } else {
        out.stderr.trim()
    };
    Err(LabError::Command {
        command: desc,
        status: out.status.to_string(),
        detail: detail.to_owned(),
    })
}

/// `program args…` as a [`Command`].
pub fn command(program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// `ip args…` (in flannelctl's own namespace: only `netns` subcommands and `-n <lab ns>`
/// are ever passed).
pub fn ip(args: &[&str]) -> Result<String> {
    run_ok(command("ip", args), None, CMD_TIMEOUT)
}

/// `ip -n <ns> args…`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// `ip netns exec <ns> args…` as a [`Command`].
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd
}

/// `ip netns exec <ns> args…`, stdout or an error.
pub fn exec_in(ns: &str, args: &[&str]) -> Result<String> {
    run_ok(in_ns(ns, args), None, CMD_TIMEOUT)
}

/// The names in `ip netns list`.
pub fn netns_list() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Whether `/run/netns/<name>` exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// `ip netns add <name>` (retried once: the very first `ip netns add` on a machine races
/// with any other one on making `/run/netns` a shared mount), then `lo` up inside.
pub fn netns_add(name: &str) -> Result<()> {
    if ip(&["netns", "add", name]).is_err() && !netns_exists(name) {
        std::thread::sleep(Duration::from_millis(100));
        ip(&["netns", "add", name])?;
    }
    ip_in(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Kills (SIGKILL) every process still in namespace `name`, then deletes it. Missing is fine.
pub fn netns_remove(name: &str) -> Result<()> {
    if !netns_exists(name) {
        return Ok(());
    }
    for pid in netns_pids(name) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    ip(&["netns", "del", name]).map(drop)
}

/// The pids of the processes in namespace `name` (`ip netns pids`); empty on error.
pub fn netns_pids(name: &str) -> Vec<i32> {
    ip(&["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// State letter and start time (field 3 and field 22) of `/proc/<pid>/stat` text.
pub fn parse_proc_stat(text: &str) -> Option<(char, u64)> {
    // The command name (field 2) is in parentheses and may contain anything.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn proc_stat(pid: u32) -> Option<(char, u64)> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether the process is still the one recorded and has not exited (zombies count as exited).
pub fn is_alive(p: &ProcRecord) -> bool {
    matches!(proc_stat(p.pid), Some((state, start)) if start == p.start_time && state != 'Z' && state != 'X')
}

/// Starts `program args…` in namespace `ns` as a session leader of its own (`setsid`), stdin
/// from `/dev/null`, stdout and stderr appended to `log`; environment variables starting with
/// one of `drop_env` are not passed on. flannelctl does not wait for it: it outlives flannelctl.
pub fn spawn_detached(
    ns: &str,
    program: &Path,
    args: &[String],
    log: &Path,
    drop_env: &[&str],
) -> Result<ProcRecord> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| LabError::io(format!("opening {}", log.display()), e))
    };
    let mut out = open()?;
    let err = open()?;
    let mut cmd = Command::new("setsid");
    cmd.args(["ip", "netns", "exec", ns])
        .arg(program)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if drop_env.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(&key);
        }
    }
    let desc = describe(&cmd);
    writeln!(out, "===== flannelctl lab: {desc}")
        .map_err(|e| LabError::io(format!("writing {}", log.display()), e))?;
    cmd.stdout(out).stderr(err);
    // The Child handle is dropped without waiting: the process belongs to the lab, not to
    // this flannelctl (`setsid` execs in place, so the pid is the daemon's own).
    let child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("starting `{desc}`"), e))?;
    let pid = child.id();
    let (_, start_time) = proc_stat(pid).ok_or_else(|| LabError::Exited {
        what: format!("`{desc}`"),
    })?;
    Ok(ProcRecord { pid, start_time })
}

/// Stops the recorded processes that are still alive: SIGTERM, then SIGKILL for those left
/// after `grace`, then waits up to two seconds more. Returns how many were running.
pub fn stop_all(procs: &[ProcRecord], grace: Duration) -> usize {
    let alive: Vec<ProcRecord> = procs.iter().copied().filter(is_alive).collect();
    let signal = |p: &ProcRecord, sig| {
        if let Ok(pid) = i32::try_from(p.pid) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    };
    for p in &alive {
        signal(p, Signal::SIGTERM);
    }
    let gone = || alive.iter().all(|p| !is_alive(p));
    if !poll(grace, gone) {
        for p in alive.iter().filter(|p| is_alive(p)) {
            signal(p, Signal::SIGKILL);
        }
        poll(Duration::from_secs(2), gone);
    }
    alive.len()
}

/// Polls `done` every 20 ms for up to `timeout` (not interruptible); whether it became true.
fn poll(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Calls `check` every `interval` until it returns `Ok(true)`; an error from `check` ends the
/// wait at once. Fails after `timeout` ([`LabError::Timeout`] naming `what`) or on interrupt.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        check_interrupt()?;
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(interval);
    }
}

/// HTTP GET `http://<addr>:<port><path>` from inside namespace `ns` (a short-lived thread joins
/// the namespace; flannelctl's own threads stay where they are): (status, body).
pub fn http_get_in(ns: &str, addr: Ipv4Addr, port: u16, path: &str) -> Result<(u16, String)> {
    let netns = Path::new("/run/netns").join(ns);
    let path = path.to_owned();
    let what = format!("GET http://{addr}:{port}{path} in {ns}");
    let what2 = what.clone();
    std::thread::spawn(move || -> Result<(u16, String)> {
        let io = |e| LabError::io(what2.clone(), e);
        let file = File::open(&netns).map_err(io)?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::io(what2.clone(), std::io::Error::from(e)))?;
        let sock = SocketAddr::from((addr, port));
        let mut stream =
            TcpStream::connect_timeout(&sock, Duration::from_millis(500)).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .map_err(io)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}:{port}\r\nConnection: close\r\n\r\n"
        )
        .map_err(io)?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(io)?;
        parse_http_response(&response).ok_or_else(|| LabError::unexpected(what2, "no HTTP status"))
    })
    .join()
    .map_err(|_| LabError::unexpected(what, "the probing thread panicked"))?
}

/// (status code, body) of an HTTP/1.x response.
pub fn parse_http_response(text: &str) -> Option<(u16, String)> {
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The last `n` lines of a (log) file; empty when it cannot be read. Only the last 64 KiB are
/// read.
pub fn tail_file(path: &Path, n: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    tail(&String::from_utf8_lossy(&buf), n)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether flannelctl runs as root (the lab needs CAP_NET_ADMIN and CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Whether a process with this pid exists (any process: used for the builder's pid).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_parsed() {
        let text = "4242 (flanneld (x) y) S 1 4242 4242 0 -1 4194560 1016 0 0 0 3 1 0 0 20 0 \
                    9 0 987654 123 456 18446744073709551615\n";
        assert_eq!(parse_proc_stat(text), Some(('S', 987654)));
        assert_eq!(parse_proc_stat("1 (init) Z 0"), None);
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let (_, start) = proc_stat(me).unwrap();
        assert!(is_alive(&ProcRecord {
            pid: me,
            start_time: start
        }));
        assert!(!is_alive(&ProcRecord {
            pid: me,
            start_time: start + 1
        }));
    }

    #[test]
    fn commands_are_bounded_and_captured() {
        let out = run(
            command("sh", &["-c", "cat; echo err >&2"]),
            Some(b"in"),
            CMD_TIMEOUT,
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "in");
        assert_eq!(out.stderr, "err\n");
        let e = run_ok(
            command("sh", &["-c", "echo bad >&2; exit 3"]),
            None,
            CMD_TIMEOUT,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`sh -c echo bad >&2; exit 3` failed (exit status: 3): bad"
        );
        let started = Instant::now();
        let e = run(command("sleep", &["5"]), None, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, LabError::CommandTimeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn waits_end() {
        let mut n = 0;
        wait_for(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                Ok(n >= 3)
            },
        )
        .unwrap();
        let e = wait_for(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(10),
            || Ok(false),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "never did not happen within 50 ms");
    }

    #[test]
    fn http_responses_and_tails() {
        assert_eq!(
            parse_http_response("HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\nnot ready"),
            Some((503, "not ready".to_owned()))
        );
        assert_eq!(parse_http_response(""), None);
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("log");
        std::fs::write(&f, "1\n2\n3\n").unwrap();
        assert_eq!(tail_file(&f, 1), "3");
        assert_eq!(tail_file(&dir.path().join("missing"), 1), "");
    }
}
