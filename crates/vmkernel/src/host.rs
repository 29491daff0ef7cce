//! Small side-effecting helpers on this machine: finding tools, running them, writing files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::VmError;

/// `name` in `PATH` (or an absolute/relative path that exists).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Errors with the Debian package to install when `tool` is missing.
pub fn require_tool(tool: &'static str, package: &'static str) -> Result<PathBuf, VmError> {
    which(tool).ok_or(VmError::ToolMissing { tool, package })
}

/// The static busybox (Debian's busybox-static puts it at /bin/busybox).
pub fn busybox() -> Result<PathBuf, VmError> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(VmError::ToolMissing {
            tool: "busybox",
            package: "busybox-static",
        })
}

/// kmod's modprobe, which the wrapper calls with `-d <unpacked package>`.
pub fn kmod_modprobe() -> Result<PathBuf, VmError> {
    ["/usr/sbin/modprobe", "/sbin/modprobe"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(VmError::ToolMissing {
            tool: "modprobe",
            package: "kmod",
        })
}

/// Runs `cmd` to completion; its stdout on success, a [`VmError::Command`] otherwise.
pub fn output(what: &'static str, cmd: &mut Command) -> Result<String, VmError> {
    let line = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            VmError::Unexpected {
                what,
                detail: format!("`{line}`: command not found"),
            }
        } else {
            VmError::Io {
                context: format!("{what}: starting `{line}`"),
                source: e,
            }
        }
    })?;
    if !out.status.success() {
        return Err(VmError::Command {
            what,
            command: line,
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 20),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes `text` to `path` with mode 0755.
pub fn write_executable(path: &Path, text: &str) -> Result<(), VmError> {
    std::fs::write(path, text).map_err(VmError::io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(VmError::io(format!("chmod {}", path.display())))
}

/// A suffix that makes a folder name unique on this machine (pid + nanoseconds).
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
