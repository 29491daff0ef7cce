//! qemu's command line (pure) for one guest: software emulation (TCG; KVM guests hang on
//! these machines), no network device, no disk, the serial console into a file, this
//! machine's root as a 9p share.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::guest;

/// How the guest machine is sized and which qemu runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The qemu binary (a name in `PATH` or a path).
    pub qemu: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// The 9p cache mode of the root share (`none`, `loose`, `mmap`...).
    pub ninep_cache: String,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            qemu: PathBuf::from("qemu-system-x86_64"),
            memory_mib: 2048,
            cpus: 2,
            ninep_cache: std::env::var("FLANNEL_VM_9P_CACHE").unwrap_or_else(|_| "loose".into()),
        }
    }
}

/// The kernel command line: serial console, a panic powers off at once (with `-no-reboot`),
/// and where the run's folder is.
pub fn kernel_cmdline(m: &Machine, results: &Path) -> String {
    format!(
        "console=ttyS0 panic=-1 quiet loglevel=4 {}={} {}={}",
        guest::RUN_PARAM,
        results.display(),
        guest::CACHE_PARAM,
        m.ninep_cache
    )
}

/// qemu's arguments (without the binary).
pub fn args(
    m: &Machine,
    vmlinuz: &Path,
    initramfs: &Path,
    results: &Path,
    console: &Path,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    for s in [
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
    ] {
        push(s);
    }
    push("-m");
    push(&m.memory_mib.to_string());
    push("-smp");
    push(&m.cpus.to_string());
    push("-serial");
    push(&format!("file:{}", console.display()));
    push("-virtfs");
    push(&format!(
        "local,path=/,mount_tag={},security_model=passthrough,multidevs=remap,id={}",
        guest::ROOT_TAG,
        guest::ROOT_TAG
    ));
    push("-kernel");
    a.push(vmlinuz.into());
    a.push("-initrd".into());
    a.push(initramfs.into());
    a.push("-append".into());
    a.push(kernel_cmdline(m, results).into());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_tcg_with_no_network_and_the_root_over_9p() {
        let machine = Machine {
            ninep_cache: "none".into(),
            ..Machine::default()
        };
        let a = args(
            &machine,
            Path::new("/c/root/boot/vmlinuz-6.1"),
            Path::new("/c/initramfs.cpio"),
            Path::new("/var/tmp/runs/r1"),
            Path::new("/var/tmp/runs/r1/console.log"),
        );
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            a.join(" "),
            "-accel tcg -cpu max -nodefaults -no-user-config -display none -monitor none \
             -no-reboot -nic none -m 2048 -smp 2 -serial file:/var/tmp/runs/r1/console.log \
             -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap,id=hostroot \
             -kernel /c/root/boot/vmlinuz-6.1 -initrd /c/initramfs.cpio \
             -append console=ttyS0 panic=-1 quiet loglevel=4 flannelvm_run=/var/tmp/runs/r1 flannelvm_9pcache=none"
        );
        assert!(!a.iter().any(|s| s.contains("kvm")));
    }
}
