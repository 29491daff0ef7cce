//! Boots Debian's kernel for real: one guest runs a probe script that checks the kernel
//! release, the working directory, the environment, private /tmp and /run, on-demand module
//! loading (a `dummy` link: this machine's kernel has no dummy module), stdout/stderr and the
//! exit status. A second run checks that the timeout kills the guest.
//!
//! Without qemu the tests say so and pass, unless `CI=true`: then they fail.

use std::path::Path;
use std::time::Duration;

use flannel_vmkernel::{Kernel, RunRequest, Vm, VmError};

fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// The harness's kernel, or `None` (skip) when qemu is missing and this is not CI.
fn kernel(vm: &Vm, test: &str) -> Option<Kernel> {
    if flannel_vmkernel::run::qemu_available(&vm.machine).is_none() {
        if ci() {
            panic!("{test}: qemu-system-x86_64 is missing and CI=true: refusing to skip (scripts/install-deps.sh vm)");
        }
        eprintln!("skipping {test}: qemu-system-x86_64 is missing (scripts/install-deps.sh vm)");
        return None;
    }
    Some(vm.prepare_debian().expect("preparing Debian's kernel"))
}

/// Generous: the machine this runs on may be heavily loaded and emulation is slow.
const TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn a_command_runs_on_debians_kernel_and_reports_back() {
    let vm = Vm::default();
    let Some(kernel) = kernel(&vm, "a_command_runs_on_debians_kernel_and_reports_back") else {
        return;
    };
    let marker = format!("flannel-vmkernel-probe-{}", std::process::id());
    let probe = format!(
        r#"set -e
uname -r
pwd
echo "CI=$CI ONLY=$ONLY HOME=${{HOME:-unset}}"
touch /tmp/{marker} /run/{marker}
ip link add vmprobe0 type dummy
grep -q '^dummy ' /proc/modules && echo dummy-loaded
ip link del vmprobe0
echo to-stderr >&2
exit 7"#
    );
    let mut streamed = Vec::new();
    let out = vm
        .run(
            &kernel,
            &RunRequest {
                argv: vec!["sh".into(), "-c".into(), probe],
                env: vec![("CI".into(), "true".into()), ("ONLY".into(), "this".into())],
                workdir: "/usr/share".into(),
                timeout: TIMEOUT,
            },
            |_, bytes| streamed.extend_from_slice(bytes),
        )
        .unwrap_or_else(|e| panic!("the guest run failed: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status, 7, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            kernel.release.as_str(),
            "/usr/share",
            "CI=true ONLY=this HOME=unset",
            "dummy-loaded"
        ],
        "stderr:\n{stderr}"
    );
    assert_eq!(stderr, "to-stderr\n");
    assert!(!streamed.is_empty(), "nothing was streamed");
    // The guest's /tmp and /run were its own.
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(!Path::new("/run").join(&marker).exists());
    assert!(
        out.boot > Duration::ZERO && out.wall > out.boot / 2,
        "{out:?}"
    );
    eprintln!(
        "guest: boot {:?} (guest uptime), command {:?}, wall {:?}",
        out.boot, out.command, out.wall
    );
}

#[test]
fn a_guest_that_overruns_its_timeout_is_killed() {
    let vm = Vm::default();
    let Some(kernel) = kernel(&vm, "a_guest_that_overruns_its_timeout_is_killed") else {
        return;
    };
    let started = std::time::Instant::now();
    let err = vm
        .run(
            &kernel,
            &RunRequest {
                argv: vec!["sleep".into(), "3600".into()],
                env: vec![],
                workdir: "/".into(),
                timeout: Duration::from_secs(3),
            },
            |_, _| {},
        )
        .expect_err("must time out");
    assert!(matches!(err, VmError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "{err}");
}
