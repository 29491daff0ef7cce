//! Tests that need Debian's packaged kernel (ipip, xfrm, wireguard, dummy... which this
//! machine's kernel may lack): [`in_debian_kernel`] re-runs the calling test inside a qemu
//! guest booted with that kernel (`flannel-vmkernel`), sharing this machine's root, so the
//! guest runs the very test binary cargo built.
//!
//! ```no_run
//! #[test]
//! fn ipip_pods_reach_each_other() {
//!     if !flannel_testkit::vm::in_debian_kernel("ipip_pods_reach_each_other") {
//!         return; // it ran (and passed) in the guest, or was skipped outside CI
//!     }
//!     // the body: runs inside the guest, as root, with CI=true
//! }
//! ```
//!
//! On the host the call boots the guest, runs `<this test binary> <name> --exact` there and
//! panics unless that run exits 0 and reports exactly one test passed (a misspelt name would
//! otherwise run nothing and pass). Without qemu it skips with a message, except under
//! `CI=true`, where it fails: a test that needs the VM must not pass without it. Guest runs of
//! one test binary are serialised (each guest takes both emulated CPUs).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flannel_vmkernel::{RunRequest, Stream, Vm};

/// Set in the guest's environment: the test is running inside the VM.
pub const IN_VM_ENV: &str = "FLANNEL_TEST_IN_VM";

/// How long one test may take in the guest unless `FLANNEL_VM_TEST_TIMEOUT` (seconds) says
/// otherwise. Emulation is slow and CI machines are shared: generous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(900);

/// One guest at a time per test binary.
static GUEST: Mutex<()> = Mutex::new(());

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether this process runs inside the test guest.
pub fn inside_vm() -> bool {
    std::env::var_os(IN_VM_ENV).is_some()
}

fn timeout() -> Duration {
    std::env::var("FLANNEL_VM_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs the test `name` (its function name, or its path within the test binary, as
/// `cargo test -- --exact` takes it) inside Debian's kernel. Returns `true` inside the guest:
/// the caller then runs the test's body. Returns `false` on the host after the guest run
/// passed (or when skipped outside CI); panics when it failed or could not run under CI.
#[track_caller]
pub fn in_debian_kernel(name: &str) -> bool {
    if inside_vm() {
        return true;
    }
    let vm = Vm::default();
    if flannel_vmkernel::run::qemu_available(&vm.machine).is_none() {
        let msg = format!(
            "{name}: needs Debian's kernel under qemu, but {} is not installed \
             (scripts/install-deps.sh vm)",
            vm.machine.qemu.display()
        );
        if ci() {
            panic!("{msg}; CI=true: refusing to skip");
        }
        eprintln!("skipping {msg}");
        return false;
    }
    let _one = GUEST.lock().unwrap_or_else(|p| p.into_inner());
    let kernel = vm
        .prepare_debian()
        .unwrap_or_else(|e| panic!("{name}: preparing Debian's kernel: {e}"));
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("{name}: cannot find this test binary: {e}"));
    let workdir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut env = vec![
        (IN_VM_ENV.to_string(), "1".to_string()),
        ("CI".to_string(), "true".to_string()),
    ];
    if std::env::var_os(TIME_SCALE_ENV).is_none() {
        env.push((TIME_SCALE_ENV.to_string(), GUEST_TIME_SCALE.to_string()));
    }
    for key in ["RUST_BACKTRACE", "RUST_LOG", TIME_SCALE_ENV] {
        if let Ok(v) = std::env::var(key) {
            env.push((key.to_string(), v));
        }
    }
    let req = RunRequest {
        argv: vec![
            exe.to_string_lossy().into_owned(),
            name.to_string(),
            "--exact".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ],
        env,
        workdir,
        timeout: timeout(),
    };
    let started = Instant::now();
    eprintln!(
        "{name}: running inside Debian's kernel {} under qemu",
        kernel.release
    );
    let out = vm
        .run(&kernel, &req, |stream, bytes| {
            // The guest's output, as it comes, where the test harness captures it.
            let text = String::from_utf8_lossy(bytes);
            match stream {
                Stream::Stdout => print!("{text}"),
                Stream::Stderr => eprint!("{text}"),
            }
            let _ = std::io::stdout().flush();
        })
        .unwrap_or_else(|e| panic!("{name}: the guest could not run the test: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status,
        0,
        "{name}: failed inside Debian's kernel {} (exit {}, {:.0?})",
        kernel.release,
        out.status,
        started.elapsed()
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name}: the guest run did not run exactly this one test (is the name right?)"
    );
    eprintln!(
        "{name}: passed inside Debian's kernel {} in {:.0?} (boot {:.0?})",
        kernel.release,
        started.elapsed(),
        out.boot
    );
    false
}

/// Set in the guest's environment: how many times longer than on the host the topology's
/// waits (and every quick command of the sandbox) may take there (software emulation is
/// 15–30× slower; the guest's timers are not).
pub const TIME_SCALE_ENV: &str = flannel_sandbox::cmd::TIME_SCALE_ENV;

/// The guest's default [`TIME_SCALE_ENV`].
pub const GUEST_TIME_SCALE: u32 = 4;

/// `d` stretched by [`TIME_SCALE_ENV`] (1 on the host unless set): what the topology's
/// bounded waits use, so a bound that holds on the host holds under emulation too.
pub fn scaled(d: Duration) -> Duration {
    d * time_scale()
}

/// The factor [`scaled`] uses: [`TIME_SCALE_ENV`], at least 1.
pub fn time_scale() -> u32 {
    flannel_sandbox::cmd::time_scale()
}
