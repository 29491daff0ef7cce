//! `lab up` and `lab demo` on the kernel their backends need (`--kernel auto|this|debian`):
//! when this kernel lacks a module (ipip, esp4: `flannel_lab::kernel`), or with
//! `--kernel debian`, flannelctl runs the same command again inside Debian's packaged kernel
//! under qemu (vm.rs, `flannel-vmkernel`), with `--kernel this` there, and exits with its
//! status.
//!
//! A lab in a guest ends with the guest: `lab up` there builds, checks and removes the lab in
//! one go (`lab status`/`exec`/`down` from a later flannelctl cannot reach it). Inside the
//! guest etcd's data goes to the guest's private `/tmp` (`FLANNELCTL_LAB_ETCD_DIR`), not to
//! this machine's `/var/tmp`, and the lab's waits and commands stretch
//! (`FLANNEL_TEST_TIME_SCALE`, the knob the tests use in the guest too).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use flannel_lab::kernel::{self, KernelChoice, Placement};
use flannel_lab::state::LabPaths;
use flannel_lab::{Backend, Lab, LabError};
use flannel_vmkernel::{RunRequest, Vm};

/// Where etcd keeps its data when set (the guest: its own `/tmp`).
pub const ETCD_DIR_ENV: &str = "FLANNELCTL_LAB_ETCD_DIR";
/// How many times longer the lab's waits and commands may take (set in the guest; the same
/// knob as the tests' and the sandbox's).
pub const TIME_SCALE_ENV: &str = flannel_sandbox::cmd::TIME_SCALE_ENV;
/// Set in the guest: the lab is removed when the command ends.
pub const ONE_SHOT_ENV: &str = "FLANNELCTL_LAB_ONE_SHOT";
/// etcd's data root inside the guest (tmpfs, private to the guest).
const GUEST_ETCD_DIR: &str = "/tmp/flannel-rs-lab";
/// The guest's time scale unless [`TIME_SCALE_ENV`] is set here: emulation is 5–20× slower.
const GUEST_TIME_SCALE: u32 = 4;
/// How long the guest may run: boot, plus this much per lab built.
const GUEST_TIME_PER_LAB: Duration = Duration::from_secs(600);

/// `sh -c` script of a one-shot `lab up` in the guest: flannelctl's `lab up`, then `lab down`
/// of the same lab (its name in `FLANNELCTL_LAB`), then `up`'s status.
const UP_THEN_DOWN: &str = r#""$0" "$@"; rc=$?; "$0" lab down >&2; exit $rc"#;

/// The lab operations with etcd's data where [`ETCD_DIR_ENV`] says, if set.
pub fn lab() -> Lab {
    let mut paths = LabPaths::default();
    if let Some(dir) = std::env::var_os(ETCD_DIR_ENV).filter(|d| !d.is_empty()) {
        paths.etcd_root = PathBuf::from(dir);
    }
    Lab::new(paths)
}

/// Whether this `lab up` is the one-shot form inside the guest (its lab is removed next).
pub fn one_shot() -> bool {
    std::env::var_os(ONE_SHOT_ENV).is_some()
}

/// [`TIME_SCALE_ENV`], at least 1.
pub fn time_scale() -> u32 {
    flannel_sandbox::cmd::time_scale()
}

/// Which command goes into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneShot {
    /// `lab demo`: it removes its labs itself.
    Demo,
    /// `lab up`: followed by `lab down` of the lab named `FLANNELCTL_LAB`.
    Up,
}

/// The guest's command line: this flannelctl (`exe`) with the same arguments (`args`, without
/// the program name) minus any `--kernel`, plus `--kernel this`; for `lab up` wrapped in
/// [`UP_THEN_DOWN`].
pub fn guest_argv(exe: &str, args: &[String], what: OneShot) -> Vec<String> {
    let mut rest: Vec<String> = Vec::new();
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
        } else if a == "--kernel" {
            skip_value = true;
        } else if !a.starts_with("--kernel=") {
            rest.push(a.clone());
        }
    }
    rest.extend(["--kernel".to_owned(), "this".to_owned()]);
    match what {
        OneShot::Demo => std::iter::once(exe.to_owned()).chain(rest).collect(),
        OneShot::Up => ["/bin/sh", "-c", UP_THEN_DOWN, exe]
            .into_iter()
            .map(str::to_owned)
            .chain(rest)
            .collect(),
    }
}

/// The line that says where the lab goes and why.
pub fn announce(why: &str, what: OneShot, release: &str) -> String {
    let thing = match what {
        OneShot::Demo => "the demo",
        OneShot::Up => "the lab",
    };
    let why = if why.is_empty() {
        "--kernel debian".to_owned()
    } else {
        why.to_owned()
    };
    let after = match what {
        OneShot::Demo => "",
        OneShot::Up => {
            "; the lab ends with the guest, so it is built, checked and removed in one go"
        }
    };
    format!(
        "flannelctl: {why}; running {thing} inside Debian's {release} kernel under qemu \
         (software emulation: slow){after}"
    )
}

/// Decides where `backends` run; runs the whole command in the guest when they go there and
/// returns its exit status (`None`: run here). `labs` is how many labs the command builds.
pub fn run_where_needed(
    choice: KernelChoice,
    backends: &[Backend],
    name: Option<&str>,
    what: OneShot,
    labs: usize,
) -> Result<Option<ExitCode>> {
    if !flannel_sandbox::cmd::is_root() {
        // The probes need root too; `up`/`demo` say so plainly.
        return Ok(None);
    }
    let missing = match choice {
        KernelChoice::Debian => Vec::new(),
        _ => kernel::missing_here(backends),
    };
    let why = match kernel::place(choice, &missing)? {
        Placement::Here => return Ok(None),
        Placement::Guest { why } => why,
    };
    vm_run(&why, name, what, labs).map(Some)
}

fn vm_run(why: &str, name: Option<&str>, what: OneShot, labs: usize) -> Result<ExitCode> {
    crate::vm::watch_signals()?;
    let vm = Vm::default();
    let kernel = vm
        .prepare_debian()
        .map_err(|e| anyhow!("{why}, and Debian's kernel cannot be prepared: {e}"))?;
    eprintln!("{}", announce(why, what, &kernel.release));
    let exe = std::env::current_exe().context("finding this flannelctl")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv = guest_argv(&exe.to_string_lossy(), &args, what);
    let mut extra = vec![
        format!("{ETCD_DIR_ENV}={GUEST_ETCD_DIR}"),
        format!("{ONE_SHOT_ENV}=1"),
        format!(
            "{TIME_SCALE_ENV}={}",
            std::env::var(TIME_SCALE_ENV).unwrap_or_else(|_| GUEST_TIME_SCALE.to_string())
        ),
    ];
    if let Some(n) = name {
        extra.push(format!("FLANNELCTL_LAB={n}"));
    }
    let env = crate::vm::environment(&extra, |k| std::env::var(k).ok());
    let workdir = std::env::current_dir().context("reading the current directory")?;
    let labs = u32::try_from(labs.max(1)).unwrap_or(u32::MAX);
    let req = RunRequest {
        argv,
        env,
        workdir,
        timeout: Duration::from_secs(120) + GUEST_TIME_PER_LAB * labs,
    };
    crate::vm::run_streaming(&vm, &kernel, &req)
}

/// clap's parser of `--kernel`.
pub fn parse_kernel(s: &str) -> Result<KernelChoice, String> {
    s.parse().map_err(|e: LabError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_guest_reruns_the_same_command_on_its_own_kernel() {
        let demo = guest_argv(
            "/t/flannelctl",
            &strings(&[
                "lab",
                "demo",
                "--kernel",
                "auto",
                "--backends",
                "ipip,ipsec",
                "--hosts=2",
            ]),
            OneShot::Demo,
        );
        assert_eq!(
            demo,
            strings(&[
                "/t/flannelctl",
                "lab",
                "demo",
                "--backends",
                "ipip,ipsec",
                "--hosts=2",
                "--kernel",
                "this"
            ])
        );
        let up = guest_argv(
            "/t/flannelctl",
            &strings(&[
                "lab",
                "up",
                "--backend",
                "ipip",
                "--kernel=debian",
                "--json",
            ]),
            OneShot::Up,
        );
        assert_eq!(
            up,
            strings(&[
                "/bin/sh",
                "-c",
                UP_THEN_DOWN,
                "/t/flannelctl",
                "lab",
                "up",
                "--backend",
                "ipip",
                "--json",
                "--kernel",
                "this"
            ])
        );
    }

    #[test]
    fn the_announcement_says_why_and_where() {
        assert_eq!(
            announce(
                "this kernel has no ipip module (backend ipip)",
                OneShot::Demo,
                "6.1.0-57-amd64"
            ),
            "flannelctl: this kernel has no ipip module (backend ipip); running the demo inside \
             Debian's 6.1.0-57-amd64 kernel under qemu (software emulation: slow)"
        );
        let up = announce("", OneShot::Up, "6.1.0-57-amd64");
        assert!(up.starts_with("flannelctl: --kernel debian; running the lab inside"));
        assert!(up.ends_with("built, checked and removed in one go"));
    }
}
