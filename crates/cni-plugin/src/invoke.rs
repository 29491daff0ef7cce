//! Running the delegate plugin (Go `invoke.DelegateAdd/Del/Check`): find its binary in
//! `CNI_PATH`, run it with this plugin's environment and `CNI_COMMAND` set to the command,
//! the rendered config on stdin, and collect its result or error.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::error::CniError;

/// How often a "text file busy" start is retried (a plugin binary being replaced), one second
/// apart, as Go's `RawExec` does.
const BUSY_RETRIES: u32 = 5;

/// The delegate could not be found or run, or it failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The delegate `type` is empty.
    #[error("no plugin name provided")]
    NoName,
    /// The delegate `type` contains a `/`.
    #[error("invalid plugin name: {0}")]
    InvalidName(String),
    /// `CNI_PATH` has no directories.
    #[error("no paths provided")]
    NoPaths,
    /// No regular file named `plugin` in any `CNI_PATH` directory (Go's text).
    #[error("failed to find plugin {plugin:?} in path [{}]", paths.join(" "))]
    NotFound {
        /// The plugin name.
        plugin: String,
        /// The directories searched.
        paths: Vec<String>,
    },
    /// The binary could not be started.
    #[error("failed to run delegate plugin {}: {source}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The delegate failed and printed a CNI error: passed on as it is.
    #[error("{0}")]
    Plugin(CniError),
    /// The delegate failed without printing anything.
    #[error("delegate plugin {} failed with no error message: {}", path.display(), status_text(*status))]
    NoMessage {
        /// The binary.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
    },
    /// The delegate failed and printed only on stderr.
    #[error("delegate plugin {} failed: {stderr:?}: {}", path.display(), status_text(*status))]
    Stderr {
        /// The binary.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The delegate failed and printed something that is not a CNI error on stdout.
    #[error("delegate plugin {} failed ({}) but its output is not a CNI error: {stdout:?}", path.display(), status_text(*status))]
    BadOutput {
        /// The binary.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stdout.
        stdout: String,
    },
    /// The delegate succeeded but its stdout is not a JSON result object.
    #[error("delegate plugin {} succeeded but printed an invalid result: {reason}", path.display())]
    BadResult {
        /// The binary.
        path: PathBuf,
        /// Why it is invalid.
        reason: String,
    },
}

impl InvokeError {
    /// The CNI error to report: the delegate's own error unchanged, otherwise
    /// [`crate::error::code::INTERNAL`] with this error's text.
    pub fn to_cni(&self) -> CniError {
        match self {
            InvokeError::Plugin(e) => e.clone(),
            other => CniError::internal(other.to_string()),
        }
    }
}

/// Go's text for how a process ended: `exit status 1`, `signal 9`.
fn status_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// The directories of a `CNI_PATH` value (empty entries skipped; Go would search the working
/// directory for them).
pub fn split_path(cni_path: &str) -> Vec<String> {
    cni_path
        .split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Go `invoke.FindInPath`: the first `dir/plugin` that is a regular file (symlinks followed).
pub fn find_in_path(plugin: &str, cni_path: &str) -> Result<PathBuf, InvokeError> {
    if plugin.is_empty() {
        return Err(InvokeError::NoName);
    }
    if plugin.contains('/') {
        return Err(InvokeError::InvalidName(plugin.to_string()));
    }
    let paths = split_path(cni_path);
    if paths.is_empty() {
        return Err(InvokeError::NoPaths);
    }
    for dir in &paths {
        let candidate = Path::new(dir).join(plugin);
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            return Ok(candidate);
        }
    }
    Err(InvokeError::NotFound {
        plugin: plugin.to_string(),
        paths,
    })
}

/// What a successful delegate printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its stdout (the result for ADD; usually empty otherwise).
    pub stdout: Vec<u8>,
    /// Its stderr (informational; the caller forwards it).
    pub stderr: Vec<u8>,
}

/// Runs the plugin at `path` for `command` with `config` on stdin. The environment is exactly
/// `env` (this plugin's own environment) with `CNI_COMMAND` replaced.
pub fn exec_plugin(
    path: &Path,
    command: &str,
    config: &[u8],
    env: &[(OsString, OsString)],
) -> Result<Output, InvokeError> {
    let mut attempt = 0;
    let mut child = loop {
        let spawned = Command::new(path)
            .env_clear()
            .envs(env.iter().filter(|(k, _)| k != "CNI_COMMAND").cloned())
            .env("CNI_COMMAND", command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => break child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(source) => {
                return Err(InvokeError::Spawn {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    };
    // Feed stdin from another thread so a delegate that writes a lot before reading cannot
    // dead-lock us; a delegate that exits without reading is not an error here.
    let stdin = child.stdin.take();
    let output = std::thread::scope(|s| {
        if let Some(mut stdin) = stdin {
            s.spawn(move || {
                let _ = stdin.write_all(config);
            });
        }
        child.wait_with_output()
    })
    .map_err(|source| InvokeError::Spawn {
        path: path.to_path_buf(),
        source,
    })?;

    if output.status.success() {
        return Ok(Output {
            stdout: output.stdout,
            stderr: output.stderr,
        });
    }
    let path = path.to_path_buf();
    let status = output.status;
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(if stderr.is_empty() {
            InvokeError::NoMessage { path, status }
        } else {
            InvokeError::Stderr {
                path,
                status,
                stderr,
            }
        });
    }
    match CniError::from_plugin_output(&output.stdout) {
        Some(e) => Err(InvokeError::Plugin(e)),
        None => Err(InvokeError::BadOutput {
            path,
            status,
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        }),
    }
}

/// Go `fixupResultVersion`: a result without a (non-empty string) `cniVersion` gets the
/// config's version; a result with one is passed on byte for byte.
pub fn fixup_result(
    path: &Path,
    config_version: &str,
    stdout: &[u8],
) -> Result<Vec<u8>, InvokeError> {
    let bad = |reason: String| InvokeError::BadResult {
        path: path.to_path_buf(),
        reason,
    };
    let mut value: Value = serde_json::from_slice(stdout)
        .map_err(|e| bad(format!("failed to unmarshal raw result: {e}")))?;
    if value.is_null() {
        value = Value::Object(serde_json::Map::new());
    }
    let Some(obj) = value.as_object_mut() else {
        return Err(bad("the result is not a JSON object".into()));
    };
    if obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty())
    {
        return Ok(stdout.to_vec());
    }
    obj.insert(
        "cniVersion".into(),
        Value::String(config_version.to_string()),
    );
    serde_json::to_vec_pretty(&value).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn find_follows_go_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        std::fs::create_dir(dir.path().join("bridge")).unwrap();
        std::fs::write(dir.path().join("host-local"), b"").unwrap();
        assert!(matches!(find_in_path("", &d), Err(InvokeError::NoName)));
        assert_eq!(
            find_in_path("../bridge", &d).unwrap_err().to_string(),
            "invalid plugin name: ../bridge"
        );
        assert_eq!(
            find_in_path("bridge", "").unwrap_err().to_string(),
            "no paths provided"
        );
        // A directory is not a plugin.
        assert_eq!(
            find_in_path("bridge", &format!("/nonexistent::{d}"))
                .unwrap_err()
                .to_string(),
            format!("failed to find plugin \"bridge\" in path [/nonexistent {d}]")
        );
        assert_eq!(
            find_in_path("host-local", &format!("/nonexistent:{d}")).unwrap(),
            dir.path().join("host-local")
        );
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn env() -> Vec<(OsString, OsString)> {
        vec![
            ("CNI_COMMAND".into(), "ADD".into()),
            ("CNI_CONTAINERID".into(), "c1".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ]
    }

    #[test]
    fn exec_passes_env_stdin_and_collects_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "echo",
            "printf '%s|%s|' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\"; cat; echo warn >&2",
        );
        let out = exec_plugin(&p, "DEL", b"{\"a\":1}", &env()).unwrap();
        assert_eq!(out.stdout, b"DEL|c1|{\"a\":1}");
        assert_eq!(out.stderr, b"warn\n");
    }

    #[test]
    fn exec_failures() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "err",
            "cat >/dev/null; echo '{\"code\":11,\"msg\":\"busy\",\"details\":\"d\"}'; exit 1",
        );
        let e = exec_plugin(&p, "ADD", b"{}", &env()).unwrap_err();
        assert_eq!(e.to_cni(), CniError::with_details(11, "busy", "d"));

        let p = script(dir.path(), "silent", "exit 3");
        let e = exec_plugin(&p, "ADD", b"{}", &env()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "delegate plugin {} failed with no error message: exit status 3",
                p.display()
            )
        );
        assert_eq!(e.to_cni().code, crate::error::code::INTERNAL);

        let p = script(dir.path(), "stderr", "echo 'oops' >&2; exit 1");
        let e = exec_plugin(&p, "ADD", b"{}", &env()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "delegate plugin {} failed: \"oops\": exit status 1",
                p.display()
            )
        );

        let p = script(dir.path(), "garbage", "echo 'not json'; exit 1");
        let e = exec_plugin(&p, "ADD", b"{}", &env()).unwrap_err();
        assert!(matches!(e, InvokeError::BadOutput { .. }), "{e}");

        let e = exec_plugin(&dir.path().join("missing"), "ADD", b"{}", &env()).unwrap_err();
        assert!(matches!(e, InvokeError::Spawn { .. }), "{e}");
    }

    #[test]
    fn fixup_keeps_or_injects_version() {
        let p = Path::new("/x/bridge");
        let raw = b"{\n  \"cniVersion\": \"1.0.0\", \"ips\": []\n}";
        assert_eq!(fixup_result(p, "0.3.1", raw).unwrap(), raw.to_vec());
        let fixed = fixup_result(p, "0.3.1", b"{\"ips\":[]}").unwrap();
        let v: Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(v, serde_json::json!({"cniVersion": "0.3.1", "ips": []}));
        let fixed = fixup_result(p, "1.0.0", b"null").unwrap();
        let v: Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(v, serde_json::json!({"cniVersion": "1.0.0"}));
        assert!(fixup_result(p, "1.0.0", b"[1]").is_err());
        assert!(fixup_result(p, "1.0.0", b"").is_err());
    }
}
