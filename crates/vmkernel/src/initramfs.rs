//! The guest's initramfs: static busybox, the modules needed to mount the 9p root share
//! (and, from `modules.dep`, what they need), and the stage-1 `/init` script.
//!
//! Which files go in is decided by pure functions ([`load_order`], [`entries`]); [`build`]
//! copies them into a staging folder and packs it with `cpio -H newc` (uncompressed: the
//! kernel unpacks it faster than it would decompress under emulation).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::VmError;
use crate::guest;
use crate::host;

/// The version of what goes into the initramfs; raise it when `/init` or the file list
/// changes, so cached kernels get a new initramfs.
pub const FORMAT: u32 = 2;

/// The modules the guest needs before it can mount the root share: the virtio PCI transport,
/// 9p's virtio transport and the 9p filesystem.
pub const BOOT_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];

/// A module's name as the kernel and modprobe spell it: the file name without `.ko[.xz|.zst|.gz]`,
/// `-` folded to `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// `modules.dep`: each module's path (relative to `lib/modules/<release>/`) and its
/// dependencies' paths, keyed by module name.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            let module = module.trim();
            (!module.is_empty()).then(|| {
                (
                    module_name(module),
                    (
                        module.to_string(),
                        deps.split_whitespace().map(str::to_string).collect(),
                    ),
                )
            })
        })
        .collect()
}

/// The module files to load, in an order where each comes after everything it depends on
/// (depth first through `modules.dep`; each file once). A wanted module that is not in
/// `modules.dep` (built into the kernel, or misspelt) is an error unless it is in `builtin`.
pub fn load_order(
    modules_dep: &str,
    builtin: &str,
    wanted: &[&str],
) -> Result<Vec<String>, VmError> {
    let deps = parse_modules_dep(modules_dep);
    let builtin: HashSet<String> = builtin.lines().map(module_name).collect();
    let by_path: BTreeMap<&str, &Vec<String>> =
        deps.values().map(|(p, d)| (p.as_str(), d)).collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        path: &str,
        by_path: &BTreeMap<&str, &Vec<String>>,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(path.to_string()) {
            return;
        }
        if let Some(ds) = by_path.get(path) {
            for d in ds.iter() {
                visit(d, by_path, seen, order);
            }
        }
        order.push(path.to_string());
    }
    for w in wanted {
        let name = module_name(w);
        match deps.get(&name) {
            Some((path, _)) => visit(path, &by_path, &mut seen, &mut order),
            None if builtin.contains(&name) => {}
            None => {
                return Err(VmError::Unexpected {
                    what: "modules.dep",
                    detail: format!("module {name} is neither a module nor built in"),
                })
            }
        }
    }
    Ok(order)
}

/// Where a file of the initramfs comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder.
    Dir,
    /// A copy of a file of this machine, decompressed if it is a `.ko.xz`/`.ko.zst`/`.ko.gz`.
    Copy(PathBuf),
    /// An executable script with this text.
    Script(String),
}

/// One entry of the initramfs; `path` is relative to its root, without a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the initramfs.
    pub path: String,
    /// What it is.
    pub source: Source,
}

/// The module's path inside the initramfs: under `lib/modules/<release>/`, uncompressed
/// (busybox's insmod may not read compressed modules).
pub fn module_path_in_initramfs(release: &str, module: &str) -> String {
    let plain = match module.find(".ko") {
        Some(i) => &module[..i + 3],
        None => module,
    };
    format!("lib/modules/{release}/{plain}")
}

/// Everything in the initramfs, folders before their contents: `/init`, busybox, the
/// folders `/init` mounts on, and the boot modules (in `modules`' load order).
pub fn entries(
    package_root: &Path,
    release: &str,
    busybox: &Path,
    modules: &[String],
) -> Vec<Entry> {
    let mut dirs: Vec<String> = ["bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut files = vec![Entry {
        path: "bin/busybox".into(),
        source: Source::Copy(busybox.to_path_buf()),
    }];
    let mut in_initramfs = Vec::new();
    for m in modules {
        let path = module_path_in_initramfs(release, m);
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent {
            let s = p.to_string_lossy().into_owned();
            if s.is_empty() {
                break;
            }
            if !dirs.contains(&s) {
                dirs.push(s);
            }
            parent = p.parent();
        }
        files.push(Entry {
            path: path.clone(),
            source: Source::Copy(package_root.join("lib/modules").join(release).join(m)),
        });
        in_initramfs.push(format!("/{path}"));
    }
    dirs.sort_by_key(|d| d.matches('/').count());
    let mut all: Vec<Entry> = dirs
        .into_iter()
        .map(|path| Entry {
            path,
            source: Source::Dir,
        })
        .collect();
    all.extend(files);
    all.push(Entry {
        path: "init".into(),
        source: Source::Script(guest::init_script(&in_initramfs)),
    });
    all
}

/// Builds the initramfs for the unpacked package at `package_root` into `out`.
pub fn build(
    package_root: &Path,
    release: &str,
    busybox: &Path,
    out: &Path,
) -> Result<(), VmError> {
    let moddir = package_root.join("lib/modules").join(release);
    let read = |name: &str| {
        let p = moddir.join(name);
        std::fs::read_to_string(&p).map_err(VmError::io(format!("reading {}", p.display())))
    };
    let modules_dep = read("modules.dep")?;
    let builtin = read("modules.builtin").unwrap_or_default();
    let modules = load_order(&modules_dep, &builtin, &BOOT_MODULES)?;
    let list = entries(package_root, release, busybox, &modules);

    let staging = out.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| {
        for e in &list {
            let dest = staging.join(&e.path);
            match &e.source {
                Source::Dir => std::fs::create_dir_all(&dest)
                    .map_err(VmError::io(format!("creating {}", dest.display())))?,
                Source::Script(text) => host::write_executable(&dest, text)?,
                Source::Copy(src) => copy_plain(src, &dest)?,
            }
        }
        let listing: String = list.iter().map(|e| format!("{}\n", e.path)).collect();
        let file = std::fs::File::create(out)
            .map_err(VmError::io(format!("creating {}", out.display())))?;
        let mut child = Command::new("cpio")
            .args(["--create", "--format=newc", "--owner=0:0", "--quiet"])
            .current_dir(&staging)
            .stdin(Stdio::piped())
            .stdout(file)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(VmError::io("starting cpio"))?;
        child
            .stdin
            .take()
            .ok_or_else(|| VmError::Unexpected {
                what: "cpio",
                detail: "no stdin".into(),
            })?
            .write_all(listing.as_bytes())
            .map_err(VmError::io("writing the file list to cpio"))?;
        let done = child
            .wait_with_output()
            .map_err(VmError::io("waiting for cpio"))?;
        if !done.status.success() {
            return Err(VmError::Command {
                what: "packing the initramfs",
                command: "cpio --create --format=newc".into(),
                status: done.status.to_string(),
                stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
            });
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Copies `src` to `dest`, decompressing a compressed module.
fn copy_plain(src: &Path, dest: &Path) -> Result<(), VmError> {
    let name = src.to_string_lossy();
    let tool = [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, t)| t);
    match tool {
        None => std::fs::copy(src, dest)
            .map(|_| ())
            .map_err(VmError::io(format!("copying {}", src.display()))),
        Some(tool) => {
            let file = std::fs::File::create(dest)
                .map_err(VmError::io(format!("creating {}", dest.display())))?;
            let status = Command::new(tool)
                .arg("-dc")
                .arg(src)
                .stdout(file)
                .status()
                .map_err(VmError::io(format!("running {tool} -dc")))?;
            if status.success() {
                Ok(())
            } else {
                Err(VmError::Command {
                    what: "decompressing a module",
                    command: format!("{tool} -dc {}", src.display()),
                    status: status.to_string(),
                    stderr: String::new(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of Debian 12's 6.1.0-57-amd64 `modules.dep` that the boot modules touch.
    const DEP: &str = "\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/dummy.ko:
";

    #[test]
    fn module_names_drop_the_extension_and_fold_dashes() {
        assert_eq!(module_name("kernel/fs/9p/9p.ko"), "9p");
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.xz"),
            "9pnet_virtio"
        );
        assert_eq!(module_name("kernel/x/nf-tables.ko.zst"), "nf_tables");
        assert_eq!(module_name("virtio-pci"), "virtio_pci");
    }

    #[test]
    fn boot_modules_load_after_their_dependencies() {
        let order = load_order(DEP, "", &BOOT_MODULES).expect("order");
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
                "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_pci.ko",
                "kernel/net/9p/9pnet.ko",
                "kernel/net/9p/9pnet_virtio.ko",
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/fscache/fscache.ko",
                "kernel/fs/9p/9p.ko",
            ]
        );
        // Each dependency comes before its user, and nothing unrelated is pulled in.
        let pos = |m: &str| order.iter().position(|p| p.ends_with(m)).expect(m);
        assert!(pos("/netfs.ko") < pos("/fscache.ko"));
        assert!(pos("/virtio_ring.ko") < pos("/virtio.ko"));
        assert!(!order.iter().any(|p| p.contains("dummy")));
    }

    #[test]
    fn builtin_modules_are_skipped_and_unknown_ones_refused() {
        let order = load_order(
            DEP,
            "kernel/drivers/virtio/virtio_pcie.ko\n",
            &["virtio_pcie", "9p"],
        )
        .expect("order");
        assert_eq!(order.len(), 4);
        let err = load_order(DEP, "", &["nosuchmod"]).expect_err("unknown");
        assert!(err.to_string().contains("nosuchmod"), "{err}");
    }

    #[test]
    fn the_file_list_has_busybox_init_and_the_modules_under_their_folders() {
        let modules = load_order(DEP, "", &BOOT_MODULES).expect("order");
        let list = entries(
            Path::new("/cache/root"),
            "6.1.0-57-amd64",
            Path::new("/bin/busybox"),
            &modules,
        );
        let paths: Vec<&str> = list.iter().map(|e| e.path.as_str()).collect();
        // Every file's folder is listed before it (cpio needs no more than that).
        for (i, e) in list.iter().enumerate() {
            if let Some(parent) = Path::new(&e.path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                let p = parent.to_string_lossy();
                let j = paths
                    .iter()
                    .position(|x| *x == p)
                    .unwrap_or_else(|| panic!("no folder {p}"));
                assert!(j < i, "{p} after {}", e.path);
            }
        }
        assert!(list.contains(&Entry {
            path: "bin/busybox".into(),
            source: Source::Copy("/bin/busybox".into())
        }));
        assert!(list.contains(&Entry {
            path: "lib/modules/6.1.0-57-amd64/kernel/fs/9p/9p.ko".into(),
            source: Source::Copy(
                "/cache/root/lib/modules/6.1.0-57-amd64/kernel/fs/9p/9p.ko".into()
            )
        }));
        assert_eq!(
            list.iter()
                .filter(|e| matches!(e.source, Source::Copy(_)))
                .count(),
            11
        );
        let init = list.iter().find(|e| e.path == "init").expect("init");
        let Source::Script(text) = &init.source else {
            panic!("init is a script")
        };
        assert!(
            text.contains("insmod /lib/modules/6.1.0-57-amd64/kernel/fs/9p/9p.ko"),
            "{text}"
        );
        for d in ["proc", "newroot", "dev", "sys"] {
            assert!(paths.contains(&d), "{d}");
        }
    }

    #[test]
    fn compressed_modules_are_stored_uncompressed() {
        assert_eq!(
            module_path_in_initramfs("6.12", "kernel/fs/9p/9p.ko.xz"),
            "lib/modules/6.12/kernel/fs/9p/9p.ko"
        );
        assert_eq!(
            module_path_in_initramfs("6.1", "kernel/fs/9p/9p.ko"),
            "lib/modules/6.1/kernel/fs/9p/9p.ko"
        );
    }
}
