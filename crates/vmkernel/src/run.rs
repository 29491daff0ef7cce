//! One guest run: the results folder, qemu started and bounded by a timeout, the command's
//! output streamed and collected from the folder, the folder removed afterwards.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::VmError;
use crate::guest::{self, files, GuestCommand};
use crate::host;
use crate::package::Kernel;
use crate::qemu::{self, Machine};

/// The one command to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Program and arguments; the program is looked up in the guest's `PATH`.
    pub argv: Vec<String>,
    /// The command's whole environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory: an absolute path of this machine, not under /tmp or /run (those are
    /// private, empty tmpfs in the guest).
    pub workdir: PathBuf,
    /// Bound on the whole run, boot included; qemu is killed after it.
    pub timeout: Duration,
}

/// Which of the command's outputs some bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Its stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

/// What the command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Its exit status (128 + n when killed by signal n, as the shell reports it).
    pub status: i32,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Wall time on this machine from starting qemu until the command had started in the
    /// guest (seen within 200 ms): what one boot costs.
    pub boot: Duration,
    /// Guest uptime when the command started (the guest's own view of its boot; under
    /// emulation on a loaded machine its clock may run behind this machine's).
    pub guest_boot: Duration,
    /// Guest time the command took.
    pub command: Duration,
    /// Wall time on this machine from starting qemu until it exited.
    pub wall: Duration,
}

/// Checks a request before anything is started (pure).
pub fn validate(req: &RunRequest) -> Result<(), VmError> {
    let bad = |m: String| Err(VmError::InvalidRequest(m));
    if req.argv.is_empty() {
        return bad("no command".into());
    }
    if req
        .argv
        .iter()
        .chain(req.env.iter().map(|(_, v)| v))
        .any(|s| s.contains('\0'))
    {
        return bad("an argument or value contains a NUL byte".into());
    }
    for (k, _) in &req.env {
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return bad(format!("environment variable name {k:?}"));
        }
    }
    let w = &req.workdir;
    if !w.is_absolute() {
        return bad(format!("working directory {} is not absolute", w.display()));
    }
    if w.starts_with("/tmp") || w.starts_with("/run") {
        return bad(format!(
            "working directory {} is under /tmp or /run, which are private (empty) in the guest",
            w.display()
        ));
    }
    if w.to_str().is_none() {
        return bad(format!("working directory {} is not UTF-8", w.display()));
    }
    Ok(())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes a running (or the next) [`run`] kill its guest and return [`VmError::Interrupted`]
/// (for a signal handler thread: Ctrl-C must not leave qemu behind).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The qemu binary the machine names, if it is installed.
pub fn qemu_available(machine: &Machine) -> Option<PathBuf> {
    host::which(&machine.qemu.to_string_lossy())
}

/// Kills and reaps qemu if the run is left early.
struct Qemu(Option<Child>);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Removes the results folder when the run is over.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads what was appended to a file since `offset`.
fn read_new(path: &Path, offset: &mut u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(*offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
            *offset += buf.len() as u64;
        }
    }
    buf
}

fn uptime(path: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    guest::parse_uptime(&text).map(Duration::from_secs_f64)
}

fn console_tail(dir: &Path) -> String {
    let text = std::fs::read(dir.join(files::CONSOLE)).unwrap_or_default();
    host::tail(&String::from_utf8_lossy(&text), 40)
}

/// Boots `kernel` and runs `req` in it; `on_output` sees the command's output as it arrives
/// (polled from the results folder), and the outcome has all of it.
pub fn run(
    machine: &Machine,
    cache: &Path,
    kernel: &Kernel,
    req: &RunRequest,
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<RunOutcome, VmError> {
    let qemu_bin =
        host::which(&machine.qemu.to_string_lossy()).ok_or_else(|| VmError::QemuMissing {
            qemu: machine.qemu.clone(),
        })?;
    validate(req)?;

    let runs = cache.join("runs");
    std::fs::create_dir_all(&runs).map_err(VmError::io(format!("creating {}", runs.display())))?;
    let dir = RunDir(runs.join(format!("{}-{}", std::process::id(), host::unique_suffix())));
    let d = dir.0.clone();
    std::fs::create_dir(&d).map_err(VmError::io(format!("creating {}", d.display())))?;
    let script = guest::run_script(&GuestCommand {
        argv: &req.argv,
        env: &req.env,
        workdir: &req.workdir,
        results: &d,
        modprobe_wrapper: &kernel.modprobe_wrapper(),
    });
    host::write_executable(&d.join(files::SCRIPT), &script)?;

    let qemu_stderr = d.join("qemu.stderr");
    let err_file = File::create(&qemu_stderr)
        .map_err(VmError::io(format!("creating {}", qemu_stderr.display())))?;
    let args = qemu::args(
        machine,
        &kernel.vmlinuz(),
        &kernel.initramfs(),
        &d,
        &d.join(files::CONSOLE),
    );
    let started_at = Instant::now();
    let child = Command::new(&qemu_bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .map_err(VmError::io(format!("starting {}", qemu_bin.display())))?;
    let mut qemu = Qemu(Some(child));

    let (mut out_off, mut err_off) = (0u64, 0u64);
    let mut boot_wall = None;
    let mut stream = |on: &mut dyn FnMut(Stream, &[u8])| {
        for (s, name, off) in [
            (Stream::Stdout, files::STDOUT, &mut out_off),
            (Stream::Stderr, files::STDERR, &mut err_off),
        ] {
            let new = read_new(&d.join(name), off);
            if !new.is_empty() {
                on(s, &new);
            }
        }
    };
    let exit = loop {
        let child = qemu.0.as_mut().ok_or_else(|| VmError::Unexpected {
            what: "qemu",
            detail: "lost the child".into(),
        })?;
        if let Some(status) = child.try_wait().map_err(VmError::io("waiting for qemu"))? {
            qemu.0 = None;
            break status;
        }
        stream(&mut on_output);
        if boot_wall.is_none() && d.join(files::STARTED).exists() {
            boot_wall = Some(started_at.elapsed());
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            drop(qemu);
            return Err(VmError::Interrupted);
        }
        if started_at.elapsed() >= req.timeout {
            drop(qemu);
            return Err(VmError::Timeout {
                after: req.timeout,
                started: d.join(files::STARTED).exists(),
                console: console_tail(&d),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = started_at.elapsed();
    stream(&mut on_output);

    let status_text = std::fs::read_to_string(d.join(files::STATUS)).ok();
    let Some(status_text) = status_text else {
        if d.join(files::STARTED).exists() {
            return Err(VmError::NoStatus {
                status: exit.to_string(),
                console: console_tail(&d),
            });
        }
        return Err(VmError::GuestDidNotStart {
            status: exit.to_string(),
            qemu_stderr: host::tail(
                &std::fs::read_to_string(&qemu_stderr).unwrap_or_default(),
                20,
            ),
            console: console_tail(&d),
        });
    };
    let status: i32 = status_text
        .trim()
        .parse()
        .map_err(|_| VmError::Unexpected {
            what: "the guest's status file",
            detail: format!("not a number: {status_text:?}"),
        })?;
    let read = |name: &str| {
        let p = d.join(name);
        std::fs::read(&p).map_err(VmError::io(format!("reading {}", p.display())))
    };
    let guest_boot = uptime(&d.join(files::STARTED)).unwrap_or_default();
    let finished = uptime(&d.join(files::FINISHED)).unwrap_or(guest_boot);
    Ok(RunOutcome {
        status,
        stdout: read(files::STDOUT)?,
        stderr: read(files::STDERR)?,
        boot: boot_wall.unwrap_or(wall),
        guest_boot,
        command: finished.saturating_sub(guest_boot),
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str], workdir: &str) -> RunRequest {
        RunRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("CI".into(), "true".into())],
            workdir: workdir.into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn requests_are_checked_before_anything_starts() {
        assert!(validate(&req(&["true"], "/work")).is_ok());
        for (r, why) in [
            (req(&[], "/work"), "no command"),
            (req(&["true"], "work"), "not absolute"),
            (req(&["true"], "/tmp/x"), "private"),
            (req(&["true"], "/run"), "private"),
            (req(&["a\0b"], "/work"), "NUL"),
        ] {
            let e = validate(&r).expect_err(why).to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut r = req(&["true"], "/work");
        r.env.push(("A=B".into(), "x".into()));
        assert!(validate(&r).is_err());
        // /tmpfoo is not /tmp.
        assert!(validate(&req(&["true"], "/tmpfoo")).is_ok());
    }

    #[test]
    fn a_missing_qemu_is_a_typed_error() {
        let machine = Machine {
            qemu: "/nonexistent/qemu-system-x86_64".into(),
            ..Machine::default()
        };
        let kernel = Kernel {
            package: "p".into(),
            version: "v".into(),
            release: "r".into(),
            dir: "/nonexistent".into(),
        };
        let e = run(
            &machine,
            Path::new("/nonexistent"),
            &kernel,
            &req(&["true"], "/"),
            |_, _| {},
        )
        .expect_err("no qemu");
        assert!(matches!(e, VmError::QemuMissing { .. }), "{e}");
        assert!(e.to_string().contains("install-deps.sh vm"), "{e}");
    }
}
