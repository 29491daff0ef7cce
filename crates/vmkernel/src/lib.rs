//! Runs one command on Debian's packaged kernel under qemu, for tests that need kernel
//! features this machine's kernel lacks (ipip, wireguard, xfrm, dummy...) or a distribution
//! kernel's behaviour. See docs/kernels.md.
//!
//! - [`package`]: which kernel package is current (apt), fetched once, unpacked, `depmod`ed,
//!   cached under `/var/tmp/flannel-vmkernel/<package>_<version>/`.
//! - [`initramfs`]: busybox plus the 9p/virtio modules (from `modules.dep`), packed with cpio.
//! - [`guest`]: the scripts that run inside: stage 1 mounts this machine's root over 9p,
//!   stage 2 gives the guest private `/run` and `/tmp`, the modprobe wrapper, runs the command.
//! - [`qemu`]: qemu's command line (TCG, no network device).
//! - [`run`]: one bounded run, its results read back from a folder under the cache.
//!
//! ```no_run
//! use flannel_vmkernel::{Vm, RunRequest};
//! let vm = Vm::default();
//! let kernel = vm.prepare_debian()?;
//! let out = vm.run(&kernel, &RunRequest {
//!     argv: vec!["uname".into(), "-r".into()],
//!     env: vec![],
//!     workdir: "/".into(),
//!     timeout: std::time::Duration::from_secs(300),
//! }, |_, _| {})?;
//! assert_eq!(out.status, 0);
//! # Ok::<(), flannel_vmkernel::VmError>(())
//! ```

pub mod error;
pub mod guest;
mod host;
pub mod initramfs;
pub mod package;
pub mod qemu;
pub mod run;

use std::path::{Path, PathBuf};

pub use error::VmError;
pub use package::Kernel;
pub use qemu::Machine;
pub use run::{interrupt, RunOutcome, RunRequest, Stream};

/// The cache folder unless `FLANNEL_VM_CACHE` names another (not under /tmp or /run: the
/// guest reads it over 9p, and those two are private in the guest).
pub const DEFAULT_CACHE: &str = "/var/tmp/flannel-vmkernel";

/// A VM harness: which machine to emulate and where kernels and run folders live.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The emulated machine.
    pub machine: Machine,
    /// The cache folder.
    pub cache: PathBuf,
}

impl Default for Vm {
    fn default() -> Self {
        Vm {
            machine: Machine::default(),
            cache: std::env::var_os("FLANNEL_VM_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE)),
        }
    }
}

impl Vm {
    /// Debian's current kernel (`linux-image-amd64`'s dependency), downloaded only when that
    /// version is not in the cache yet.
    pub fn prepare_debian(&self) -> Result<Kernel, VmError> {
        check_cache_dir(&self.cache)?;
        package::prepare_debian(&self.cache)
    }

    /// Boots `kernel`, runs `req`, returns what it did; `on_output` sees its output as it comes.
    pub fn run(
        &self,
        kernel: &Kernel,
        req: &RunRequest,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<RunOutcome, VmError> {
        check_cache_dir(&self.cache)?;
        run::run(&self.machine, &self.cache, kernel, req, on_output)
    }
}

fn check_cache_dir(cache: &Path) -> Result<(), VmError> {
    if !cache.is_absolute() || cache.starts_with("/tmp") || cache.starts_with("/run") {
        return Err(VmError::InvalidRequest(format!(
            "cache folder {} must be absolute and not under /tmp or /run (private in the guest)",
            cache.display()
        )));
    }
    Ok(())
}
