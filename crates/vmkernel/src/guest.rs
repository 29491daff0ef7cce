//! The text of what runs inside the guest: stage 1 (`/init` in the initramfs, busybox) mounts
//! this machine's root over 9p and `switch_root`s into it; stage 2 (a script in the run's
//! results folder, run by this machine's `/bin/sh` as PID 1) gives the guest its own `/proc`,
//! `/sys`, `/dev`, `/run` and `/tmp`, installs the modprobe wrapper, runs the one command and
//! writes its output, exit status and timing into the results folder, then powers off.

use std::path::Path;

/// The 9p mount tag of this machine's root filesystem.
pub const ROOT_TAG: &str = "hostroot";

/// The kernel command line parameter that tells stage 1 where the run's folder is.
pub const RUN_PARAM: &str = "flannelvm_run";

/// The kernel command line parameter with the 9p cache mode of the root share (`none`,
/// `loose`, ...; see the kernel's Documentation/filesystems/9p.rst).
pub const CACHE_PARAM: &str = "flannelvm_9pcache";

/// Files of the results folder.
pub mod files {
    /// Stage 2's script.
    pub const SCRIPT: &str = "guest.sh";
    /// The command's stdout.
    pub const STDOUT: &str = "stdout";
    /// The command's stderr.
    pub const STDERR: &str = "stderr";
    /// The command's exit status (decimal; 128+n for signal n), written last.
    pub const STATUS: &str = "status";
    /// `/proc/uptime` when the command started (written before it runs).
    pub const STARTED: &str = "started";
    /// `/proc/uptime` when the command ended.
    pub const FINISHED: &str = "finished";
    /// The guest's serial console (written by qemu).
    pub const CONSOLE: &str = "console.log";
}

/// `s` as one POSIX shell word.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Stage 1: the initramfs's `/init` (run by busybox sh). `modules` are absolute paths inside
/// the initramfs, in load order.
pub fn init_script(modules: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         # flannel-vmkernel stage 1: load the 9p modules, mount this machine's root, switch to it.\n\
         b=/bin/busybox\n\
         fail() { echo \"flannel-vmkernel: $*\"; $b poweroff -f; }\n\
         $b mount -t proc proc /proc || fail 'mounting /proc'\n\
         run=\n\
         cache=none\n\
         for a in $($b cat /proc/cmdline); do\n\
         \x20 case \"$a\" in\n",
    );
    s.push_str(&format!(
        "    {RUN_PARAM}=*) run=\"${{a#{RUN_PARAM}=}}\" ;;\n    {CACHE_PARAM}=*) cache=\"${{a#{CACHE_PARAM}=}}\" ;;\n  esac\ndone\n"
    ));
    s.push_str("[ -n \"$run\" ] || fail 'no run folder on the kernel command line'\n");
    for m in modules {
        s.push_str(&format!("$b insmod {m} || fail 'insmod {m}'\n"));
    }
    s.push_str(&format!(
        "$b mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=$cache {ROOT_TAG} /newroot || fail 'mounting the 9p root'\n\
         $b umount /proc\n\
         exec $b switch_root /newroot /bin/sh \"$run/{}\"\n\
         fail 'switch_root'\n",
        files::SCRIPT
    ));
    s
}

/// What stage 2 runs and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestCommand<'a> {
    /// The program and its arguments (not empty).
    pub argv: &'a [String],
    /// The command's whole environment (`PATH` gets the modprobe wrapper's folder first).
    pub env: &'a [(String, String)],
    /// Its working directory (absolute, a path of this machine).
    pub workdir: &'a Path,
    /// The results folder (absolute, not under /tmp or /run).
    pub results: &'a Path,
    /// The modprobe wrapper the guest kernel is given.
    pub modprobe_wrapper: &'a Path,
}

/// The `PATH` the command gets: the wrapper's folder, then the requested `PATH` (or a default).
pub fn guest_path(requested: Option<&str>, wrapper: &Path) -> String {
    let dir = wrapper
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest = requested.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    format!("{dir}:{rest}")
}

/// Stage 2's script.
pub fn run_script(c: &GuestCommand<'_>) -> String {
    let r = quote(&c.results.to_string_lossy());
    let mut env: Vec<String> = c
        .env
        .iter()
        .filter(|(k, _)| k != "PATH")
        .map(|(k, v)| quote(&format!("{k}={v}")))
        .collect();
    let path = c
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    env.push(quote(&format!(
        "PATH={}",
        guest_path(path, c.modprobe_wrapper)
    )));
    let argv: Vec<String> = c.argv.iter().map(|a| quote(a)).collect();
    format!(
        "#!/bin/sh\n\
         # flannel-vmkernel stage 2 (PID 1 on this machine's root over 9p): private /proc, /sys,\n\
         # /dev, /run and /tmp; on-demand modules from the unpacked package; one command.\n\
         R={r}\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mkdir -p /dev/pts /dev/shm\n\
         mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts\n\
         mount -t tmpfs tmpfs /dev/shm\n\
         mount -t tmpfs -o mode=0755 tmpfs /run\n\
         mount -t tmpfs -o mode=1777 tmpfs /tmp\n\
         mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null\n\
         echo {wrapper} > /proc/sys/kernel/modprobe\n\
         echo flannel-vm > /proc/sys/kernel/hostname\n\
         ip link set lo up\n\
         cat /proc/uptime > \"$R/{started}\"\n\
         (cd {workdir} && exec env -i {env} {argv}) < /dev/null > \"$R/{stdout}\" 2> \"$R/{stderr}\"\n\
         echo $? > \"$R/{status}.tmp\"\n\
         cat /proc/uptime > \"$R/{finished}\"\n\
         mv \"$R/{status}.tmp\" \"$R/{status}\"\n\
         sync\n\
         echo o > /proc/sysrq-trigger\n\
         sleep 60\n",
        wrapper = quote(&c.modprobe_wrapper.to_string_lossy()),
        workdir = quote(&c.workdir.to_string_lossy()),
        env = env.join(" "),
        argv = argv.join(" "),
        started = files::STARTED,
        stdout = files::STDOUT,
        stderr = files::STDERR,
        status = files::STATUS,
        finished = files::FINISHED,
    )
}

/// The first field of `/proc/uptime`, in seconds.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stage_one_loads_the_modules_in_order_then_switches_root() {
        let s = init_script(&[
            "/lib/modules/6.1/a.ko".into(),
            "/lib/modules/6.1/b.ko".into(),
        ]);
        assert!(s.starts_with("#!/bin/busybox sh\n"), "{s}");
        let a = s.find("insmod /lib/modules/6.1/a.ko").expect("a");
        let b = s.find("insmod /lib/modules/6.1/b.ko").expect("b");
        let mount = s
            .find("mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=$cache hostroot /newroot")
            .expect("9p mount");
        let switch = s
            .find("exec $b switch_root /newroot /bin/sh \"$run/guest.sh\"")
            .expect("switch_root");
        assert!(a < b && b < mount && mount < switch, "{s}");
        assert!(
            s.contains("flannelvm_run=*) run=\"${a#flannelvm_run=}\" ;;"),
            "{s}"
        );
    }

    #[test]
    fn stage_two_isolates_run_and_tmp_and_reports_through_the_results_folder() {
        let argv = ["sh".to_string(), "-c".into(), "echo 'hi'; exit 3".into()];
        let env = [
            ("CI".to_string(), "true".to_string()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ];
        let s = run_script(&GuestCommand {
            argv: &argv,
            env: &env,
            workdir: Path::new("/work/x y"),
            results: Path::new("/var/tmp/flannel-vmkernel/runs/r1"),
            modprobe_wrapper: Path::new("/var/tmp/flannel-vmkernel/k/bin/modprobe"),
        });
        for line in [
            "R='/var/tmp/flannel-vmkernel/runs/r1'\n",
            "mount -t tmpfs -o mode=0755 tmpfs /run\n",
            "mount -t tmpfs -o mode=1777 tmpfs /tmp\n",
            "echo '/var/tmp/flannel-vmkernel/k/bin/modprobe' > /proc/sys/kernel/modprobe\n",
            "(cd '/work/x y' && exec env -i 'CI=true' 'PATH=/var/tmp/flannel-vmkernel/k/bin:/usr/bin:/bin' 'sh' '-c' 'echo '\\''hi'\\''; exit 3') < /dev/null > \"$R/stdout\" 2> \"$R/stderr\"\n",
            "echo $? > \"$R/status.tmp\"\n",
            "echo o > /proc/sysrq-trigger\n",
        ] {
            assert!(s.contains(line), "missing {line:?} in\n{s}");
        }
        // The status appears only after the output is complete and timing is written.
        let status = s.find("mv \"$R/status.tmp\" \"$R/status\"").expect("mv");
        assert!(s.find("$R/finished").expect("finished") < status);
        assert!(
            s.find("/proc/sys/kernel/modprobe").expect("wrapper") < s.find("env -i").expect("env")
        );
    }

    #[test]
    fn the_wrapper_folder_comes_first_in_path() {
        let w = Path::new("/c/bin/modprobe");
        assert_eq!(guest_path(Some("/usr/bin"), w), "/c/bin:/usr/bin");
        assert!(guest_path(None, w).starts_with("/c/bin:/usr/local/sbin:"));
    }

    #[test]
    fn uptime_is_the_first_field() {
        assert_eq!(parse_uptime("12.34 20.00\n"), Some(12.34));
        assert_eq!(parse_uptime(""), None);
    }

    proptest! {
        /// Whatever the argument, the shell reads back exactly that one word.
        #[test]
        fn quoted_words_survive_the_shell(arg in "[^\u{0}]{0,40}") {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", quote(&arg)))
                .output()
                .expect("sh");
            prop_assert_eq!(String::from_utf8_lossy(&out.stdout), arg);
        }
    }
}
