//! `vm::in_debian_kernel` for real: the test's body runs in the guest, on Debian's kernel, as
//! root, with modules loaded on demand (ipip: this machine's kernel has none).

use std::process::Command;

#[test]
fn a_test_body_runs_inside_debians_kernel() {
    if !flannel_testkit::vm::in_debian_kernel("a_test_body_runs_inside_debians_kernel") {
        return;
    }
    // Inside the guest from here on.
    assert!(flannel_testkit::vm::inside_vm());
    assert_eq!(std::env::var("CI").as_deref(), Ok("true"));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let release = release.trim();
    assert!(
        release.ends_with("-amd64"),
        "not Debian's kernel: {release}"
    );
    let name = format!("vmtk{}", std::process::id() % 10000);
    let ns = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip netns add");
    assert!(ns.success());
    let made = Command::new("ip")
        .args([
            "-n",
            &name,
            "link",
            "add",
            "t0",
            "type",
            "ipip",
            "local",
            "192.0.2.1",
        ])
        .output()
        .expect("ip link add");
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    assert!(
        made.status.success(),
        "ipip link: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}
