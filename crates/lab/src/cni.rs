//! Pods through the real CNI flow: the `flannel` plugin run inside the host namespace with the
//! standard CNI environment, delegating to `bridge` + `host-local`.
//!
//! Each lab has a `cni-bin/` directory (the `CNI_PATH`, like a node's `/opt/cni/bin`) with
//! symlinks `flannel`, `bridge` and `host-local`. Every call and its output is appended to the
//! host's `cni.log`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::state::{HostState, PodState};
use flannel_sandbox::{cmd, netns};

/// Time limit of one plugin call.
pub const CNI_TIMEOUT: Duration = Duration::from_secs(30);
/// The interface name inside pods.
pub const POD_IFNAME: &str = "eth0";

/// The lab's `CNI_PATH` directory.
pub fn bin_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("cni-bin")
}

/// Creates `cni-bin/` with `flannel` → `plugin` and `bridge`, `host-local` → the files of
/// the same name in `delegates_dir`.
pub fn make_bin_dir(lab_dir: &Path, plugin: &Path, delegates_dir: &Path) -> Result<PathBuf> {
    let dir = bin_dir(lab_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let links = [
        ("flannel", plugin.to_path_buf()),
        ("bridge", delegates_dir.join("bridge")),
        ("host-local", delegates_dir.join("host-local")),
    ];
    for (name, target) in links {
        let link = dir.join(name);
        std::os::unix::fs::symlink(&target, &link).map_err(|e| {
            LabError::io(
                format!("linking {} to {}", link.display(), target.display()),
                e,
            )
        })?;
    }
    Ok(dir)
}

/// Runs the `flannel` plugin's `command` (`ADD` or `DEL`) for `pod` inside `host`'s namespace
/// with the host's CNI config on stdin; returns its stdout (the CNI result for ADD).
pub fn call(command: &str, lab_dir: &Path, host: &HostState, pod: &PodState) -> Result<String> {
    let conf = std::fs::read(&host.cni_conf)
        .map_err(|e| LabError::io(format!("reading {}", host.cni_conf.display()), e))?;
    let bin = bin_dir(lab_dir);
    let plugin = bin.join("flannel");
    let plugin_str = plugin.to_string_lossy();
    let mut plugin_cmd = netns::in_ns(&host.ns, &[plugin_str.as_ref()]);
    plugin_cmd
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.container_id)
        .env("CNI_NETNS", format!("/run/netns/{}", pod.ns))
        .env("CNI_IFNAME", POD_IFNAME)
        .env("CNI_PATH", &bin);
    let desc = format!(
        "CNI_COMMAND={command} CNI_CONTAINERID={} CNI_NETNS=/run/netns/{} CNI_IFNAME={POD_IFNAME} \
         CNI_PATH={} {}",
        pod.container_id,
        pod.ns,
        bin.display(),
        cmd::describe(&plugin_cmd)
    );
    let result = cmd::run(plugin_cmd, Some(&conf), CNI_TIMEOUT);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&host.cni_log)
        .map_err(|e| LabError::io(format!("opening {}", host.cni_log.display()), e))?;
    let _ = writeln!(log, "===== {} {}: {desc}", command, pod.name);
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let _ = writeln!(log, "{e}");
            return Err(e.into());
        }
    };
    let _ = writeln!(
        log,
        "exit: {}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout.trim(),
        out.stderr.trim()
    );
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("flannel CNI plugin {command} for {}", pod.name),
            status: out.status.to_string(),
            detail: error_message(&out.stdout, &out.stderr),
        });
    }
    Ok(out.stdout)
}

/// The message of a CNI error result (`{"code":…,"msg":…,"details":…}`), else stderr.
pub fn error_message(stdout: &str, stderr: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(stdout).ok();
    if let Some(v) = parsed {
        let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or_default();
        let details = v
            .get("details")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        match (msg.is_empty(), details.is_empty()) {
            (false, false) => return format!("{msg}: {details}"),
            (false, true) => return msg.to_owned(),
            _ => {}
        }
    }
    if stderr.trim().is_empty() {
        stdout.trim().to_owned()
    } else {
        stderr.trim().to_owned()
    }
}

/// The pod's IPv4 address from an ADD result (`ips[].address`, first IPv4 one).
pub fn parse_add_result(stdout: &str) -> Result<Ipv4Addr> {
    let bad =
        |detail: &str| LabError::unexpected("the CNI ADD result", format!("{detail}: {stdout}"));
    let v: serde_json::Value =
        serde_json::from_str(stdout).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let ips = v
        .get("ips")
        .and_then(|i| i.as_array())
        .ok_or_else(|| bad("no \"ips\""))?;
    ips.iter()
        .filter_map(|ip| ip.get("address")?.as_str())
        .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
        .next()
        .ok_or_else(|| bad("no IPv4 address"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn add_results_are_read() {
        let out = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"}],
            "ips":[{"interface":2,"address":"198.18.5.2/24","gateway":"198.18.5.1"}],
            "routes":[{"dst":"198.18.0.0/16"},{"dst":"0.0.0.0/0","gw":"198.18.5.1"}],"dns":{}}"#;
        assert_eq!(parse_add_result(out).unwrap(), Ipv4Addr::new(198, 18, 5, 2));
        let v6_first = r#"{"ips":[{"address":"2001:db8::2/64"},{"address":"198.18.5.3/24"}]}"#;
        assert_eq!(
            parse_add_result(v6_first).unwrap(),
            Ipv4Addr::new(198, 18, 5, 3)
        );
        assert!(parse_add_result(r#"{"ips":[]}"#).is_err());
        assert!(parse_add_result("").is_err());
    }

    #[test]
    fn error_results_are_read() {
        assert_eq!(
            error_message(
                r#"{"cniVersion":"1.0.0","code":11,"msg":"failed to load flannel 'subnet.env' file","details":"open /x: no such file"}"#,
                "flannel: …"
            ),
            "failed to load flannel 'subnet.env' file: open /x: no such file"
        );
        assert_eq!(error_message(r#"{"code":7,"msg":"m"}"#, ""), "m");
        assert_eq!(error_message("", " boom \n"), "boom");
    }

    #[test]
    fn bin_dir_links_the_plugins() {
        let dir = tempfile::tempdir().unwrap();
        let bin = make_bin_dir(
            dir.path(),
            Path::new("/x/flannel"),
            Path::new("/usr/lib/cni"),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(bin.join("flannel")).unwrap(),
            PathBuf::from("/x/flannel")
        );
        assert_eq!(
            std::fs::read_link(bin.join("host-local")).unwrap(),
            PathBuf::from("/usr/lib/cni/host-local")
        );
    }
}
