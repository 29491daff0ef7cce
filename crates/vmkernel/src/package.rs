//! Debian's kernel package: which one is current (apt), fetching it once into the cache,
//! unpacking it and indexing its modules (`depmod`).
//!
//! The only download is `apt-get download` of the image package that `linux-image-amd64`
//! depends on. Everything lands in `<cache>/<package>_<version>/`:
//! `root/` (the unpacked package, with `modules.dep`), `initramfs-v<N>.cpio`, `bin/modprobe`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::VmError;
use crate::host;
use crate::initramfs;

/// The meta package whose dependency names Debian's current amd64 kernel image.
pub const DEBIAN_META_PACKAGE: &str = "linux-image-amd64";

/// A kernel unpacked in the cache, ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The image package, e.g. `linux-image-6.1.0-57-amd64`.
    pub package: String,
    /// Its Debian version, e.g. `6.1.192-3`.
    pub version: String,
    /// The kernel release (`uname -r`), e.g. `6.1.0-57-amd64`.
    pub release: String,
    /// The cache folder of this package version.
    pub dir: PathBuf,
}

impl Kernel {
    /// The unpacked package (`boot/`, `lib/modules/<release>/`): what `modprobe -d` is given.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// The kernel image.
    pub fn vmlinuz(&self) -> PathBuf {
        self.root()
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }
    /// The initramfs built for it (named by [`initramfs::FORMAT`], so that a changed `/init`
    /// gets a new one next to the unpacked package).
    pub fn initramfs(&self) -> PathBuf {
        self.dir
            .join(format!("initramfs-v{}.cpio", initramfs::FORMAT))
    }
    /// The modprobe wrapper that the guest kernel calls for on-demand loading.
    pub fn modprobe_wrapper(&self) -> PathBuf {
        self.dir.join("bin").join("modprobe")
    }
}

/// The image package a meta package depends on, from `apt-cache depends <meta>` output:
/// the first `Depends:` naming a `linux-image-` package.
pub fn parse_apt_depends(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let dep = line
            .trim()
            .trim_start_matches('|')
            .strip_prefix("Depends:")?;
        let dep = dep.trim();
        (dep.starts_with("linux-image-") && !dep.contains(' ')).then(|| dep.to_string())
    })
}

/// The `Version:` field of `apt-cache show --no-all-versions <package>` output.
pub fn parse_apt_version(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The cache folder name of a package version (`:` of an epoch is not wanted in a path).
pub fn cache_key(package: &str, version: &str) -> String {
    format!("{package}_{}", version.replace(':', "%3a"))
}

/// The shell script the guest kernel runs as its modprobe (`/proc/sys/kernel/modprobe`):
/// kmod's modprobe with the unpacked package as its module root. Also first in the command's
/// `PATH`, so an explicit `modprobe NAME` inside the guest loads from the package too.
pub fn modprobe_wrapper_script(kmod_modprobe: &Path, root: &Path) -> String {
    format!(
        "#!/bin/sh\n# flannel-vmkernel: load modules of the booted Debian kernel from its unpacked package.\nexec {} -d {} \"$@\"\n",
        crate::guest::quote(&kmod_modprobe.to_string_lossy()),
        crate::guest::quote(&root.to_string_lossy()),
    )
}

/// Asks apt which image package is current, and makes sure it is unpacked, indexed and has
/// its initramfs in `cache`; downloads it only when that version is not cached yet.
pub fn prepare_debian(cache: &Path) -> Result<Kernel, VmError> {
    let depends = host::output(
        "asking apt for Debian's current kernel",
        Command::new("apt-cache").args(["depends", DEBIAN_META_PACKAGE]),
    )?;
    let package = parse_apt_depends(&depends).ok_or_else(|| VmError::Unexpected {
        what: "apt-cache depends linux-image-amd64",
        detail: format!(
            "no linux-image-* dependency (run `apt-get update`?): {}",
            depends.trim()
        ),
    })?;
    let show = host::output(
        "asking apt for the kernel package's version",
        Command::new("apt-cache").args(["show", "--no-all-versions", &package]),
    )?;
    let version = parse_apt_version(&show).ok_or_else(|| VmError::Unexpected {
        what: "apt-cache show",
        detail: format!("no Version: for {package}"),
    })?;
    let dir = cache.join(cache_key(&package, &version));
    if !dir.join("ready").exists() {
        build_cache_entry(cache, &dir, &package)?;
    }
    let release = kernel_release(&dir.join("root"))?;
    let kernel = Kernel {
        package,
        version,
        release,
        dir,
    };
    let initramfs = kernel.initramfs();
    if !initramfs.exists() {
        let tmp = initramfs.with_extension(format!("tmp-{}", host::unique_suffix()));
        let built = initramfs::build(&kernel.root(), &kernel.release, &host::busybox()?, &tmp)
            .and_then(|()| {
                std::fs::rename(&tmp, &initramfs)
                    .map_err(VmError::io(format!("renaming {}", tmp.display())))
            });
        if built.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        built?;
    }
    Ok(kernel)
}

/// The single `lib/modules/<release>` of an unpacked image package.
fn kernel_release(root: &Path) -> Result<String, VmError> {
    let modules = root.join("lib/modules");
    let mut releases = Vec::new();
    for entry in std::fs::read_dir(&modules)
        .map_err(VmError::io(format!("reading {}", modules.display())))?
    {
        let entry = entry.map_err(VmError::io(format!("reading {}", modules.display())))?;
        releases.push(entry.file_name().to_string_lossy().into_owned());
    }
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(VmError::Unexpected {
            what: "the unpacked kernel package",
            detail: format!(
                "expected one release in {}, found {releases:?}",
                modules.display()
            ),
        }),
    }
}

/// Downloads, unpacks, indexes and builds the initramfs in a private folder next to `dir`,
/// then renames it into place (a concurrent run that finished first wins; ours is dropped).
fn build_cache_entry(cache: &Path, dir: &Path, package: &str) -> Result<(), VmError> {
    for (tool, pkg) in [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("depmod", "kmod"),
        ("cpio", "cpio"),
    ] {
        host::require_tool(tool, pkg)?;
    }
    host::busybox()?;
    let kmod_modprobe = host::kmod_modprobe()?;

    std::fs::create_dir_all(cache).map_err(VmError::io(format!("creating {}", cache.display())))?;
    let work = cache.join(format!(
        ".building-{}-{}",
        std::process::id(),
        host::unique_suffix()
    ));
    let result = (|| {
        std::fs::create_dir_all(&work)
            .map_err(VmError::io(format!("creating {}", work.display())))?;
        host::output(
            "downloading the kernel package",
            Command::new("apt-get")
                .args(["download", "-q", package])
                .current_dir(&work),
        )?;
        let deb = find_deb(&work, package)?;
        let root = work.join("root");
        host::output(
            "unpacking the kernel package",
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        )?;
        std::fs::remove_file(&deb).map_err(VmError::io(format!("removing {}", deb.display())))?;
        let release = kernel_release(&root)?;
        host::output(
            "indexing the kernel's modules",
            Command::new("depmod").arg("-b").arg(&root).arg(&release),
        )?;
        let final_root = dir.join("root");
        let bin = work.join("bin");
        std::fs::create_dir_all(&bin)
            .map_err(VmError::io(format!("creating {}", bin.display())))?;
        host::write_executable(
            &bin.join("modprobe"),
            &modprobe_wrapper_script(&kmod_modprobe, &final_root),
        )?;
        std::fs::write(work.join("ready"), format!("{package}\n"))
            .map_err(VmError::io(format!("writing {}/ready", work.display())))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    if std::fs::rename(&work, dir).is_err() {
        // Another run put the same version in place first.
        let _ = std::fs::remove_dir_all(&work);
        if !dir.join("ready").exists() {
            return Err(VmError::Unexpected {
                what: "the kernel cache",
                detail: format!("could not move the new entry to {}", dir.display()),
            });
        }
    }
    Ok(())
}

fn find_deb(dir: &Path, package: &str) -> Result<PathBuf, VmError> {
    let entries =
        std::fs::read_dir(dir).map_err(VmError::io(format!("reading {}", dir.display())))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{package}_")) && name.ends_with(".deb") {
            return Ok(e.path());
        }
    }
    Err(VmError::Unexpected {
        what: "apt-get download",
        detail: format!("no {package}_*.deb in {}", dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_package_comes_from_apt_cache_depends() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            parse_apt_depends(out).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        let alt = "linux-image-amd64\n  Depends: kmod\n |Depends: linux-image-6.12.9-amd64\n  Depends: <linux-initramfs-tool>\n";
        assert_eq!(
            parse_apt_depends(alt).as_deref(),
            Some("linux-image-6.12.9-amd64")
        );
        assert_eq!(parse_apt_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn the_version_comes_from_apt_cache_show() {
        let out = "Package: linux-image-6.1.0-57-amd64\nSource: linux-signed-amd64 (6.1.192+3)\nVersion: 6.1.192-3\nDepends: kmod\n";
        assert_eq!(parse_apt_version(out).as_deref(), Some("6.1.192-3"));
        assert_eq!(parse_apt_version("Package: x\n"), None);
    }

    #[test]
    fn cache_keys_are_path_safe() {
        assert_eq!(
            cache_key("linux-image-6.1.0-57-amd64", "6.1.192-3"),
            "linux-image-6.1.0-57-amd64_6.1.192-3"
        );
        assert_eq!(cache_key("p", "1:2.0"), "p_1%3a2.0");
    }

    #[test]
    fn the_modprobe_wrapper_points_kmod_at_the_package() {
        let s = modprobe_wrapper_script(
            Path::new("/var/tmp/c/bin/kmod/modprobe"),
            Path::new("/var/tmp/c/root"),
        );
        assert!(s.starts_with("#!/bin/sh\n"), "{s}");
        assert!(
            s.ends_with("exec '/var/tmp/c/bin/kmod/modprobe' -d '/var/tmp/c/root' \"$@\"\n"),
            "{s}"
        );
    }
}
