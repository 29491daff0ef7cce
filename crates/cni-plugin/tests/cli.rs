//! The built `flannel` binary's protocol behaviour that needs no network: VERSION, error JSON
//! on stdout with exit code 1, and what reaches a delegate plugin (a shell script that records
//! its input) and comes back from it. No root needed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};
use serde_json::{json, Value};

fn run(env: &[(&str, &str)], stdin: &str) -> Result<Output> {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flannel"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // VERSION does not read stdin; ignore a closed pipe.
    let _ = child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes());
    Ok(child.wait_with_output()?)
}

fn cmd_env<'a>(cmd: &'a str, cid: &'a str, cni_path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", "/run/netns/does-not-exist"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", cni_path),
        ("CNI_ARGS", "K8S_POD_NAME=web"),
    ]
}

fn error_json(out: &Output) -> Result<Value> {
    assert_eq!(out.status.code(), Some(1), "exit status {}", out.status);
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("stdout {:?}", String::from_utf8_lossy(&out.stdout)))
}

fn write_script(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

struct Fixture {
    dir: tempfile::TempDir,
    bin: PathBuf,
    conf: Value,
}

impl Fixture {
    /// A subnet.env, a data dir and a CNI_PATH dir holding a fake `bridge` with `body`.
    fn new(bridge_body: &str) -> Result<Fixture> {
        let dir = tempfile::tempdir()?;
        let senv = dir.path().join("subnet.env");
        std::fs::write(
            &senv,
            "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.5.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\n",
        )?;
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin)?;
        write_script(&bin, "bridge", bridge_body)?;
        let conf = json!({
            "cniVersion": "0.4.0",
            "name": "cbr0",
            "type": "flannel",
            "subnetFile": senv,
            "dataDir": dir.path().join("data"),
        });
        Ok(Fixture { dir, bin, conf })
    }

    fn path(&self) -> String {
        self.bin.display().to_string()
    }

    fn saved(&self, cid: &str) -> PathBuf {
        self.dir.path().join("data").join(cid)
    }
}

/// A fake delegate that appends `<CNI_COMMAND> <CNI_CONTAINERID> <CNI_ARGS> <stdin>` to
/// `$LOG` and prints `result` on ADD.
fn recorder(log: &Path, result: &str) -> String {
    format!(
        "in=$(cat)\nprintf '%s %s %s %s\\n' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_ARGS\" \"$in\" >> {}\n\
         if [ \"$CNI_COMMAND\" = ADD ]; then printf '%s' '{result}'; fi\necho delegate-says-hi >&2",
        log.display()
    )
}

#[test]
fn version_answer() -> Result<()> {
    let out = run(&[("CNI_COMMAND", "VERSION")], "")?;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout)?,
        "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"
    );
    Ok(())
}

#[test]
fn missing_subnet_env_says_flanneld_has_not_written_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let senv = dir.path().join("run/flannel/subnet.env");
    let conf = json!({"cniVersion": "1.0.0", "name": "cbr0", "type": "flannel",
        "subnetFile": senv, "dataDir": dir.path().join("data")});
    let out = run(&cmd_env("ADD", "c1", "/usr/lib/cni"), &conf.to_string())?;
    let err = error_json(&out)?;
    // Exactly the CNI error keys.
    let keys: Vec<&String> = err.as_object().context("object")?.keys().collect();
    assert_eq!(keys.len(), 3, "{err}");
    assert_eq!(err["cniVersion"], "1.0.0");
    assert_eq!(err["code"], 999);
    let msg = err["msg"].as_str().context("msg")?;
    assert!(
        msg.starts_with(&format!(
            "loadFlannelSubnetEnv failed: open {}: no such file or directory. ",
            senv.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("is flanneld (the kube-flannel pod) running on this node?"),
        "{msg}"
    );
    assert!(!dir.path().join("data").exists());
    Ok(())
}

#[test]
fn incomplete_subnet_env_names_the_missing_keys() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let senv = dir.path().join("subnet.env");
    std::fs::write(
        &senv,
        "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.5.1/24\n",
    )?;
    let conf = json!({"cniVersion": "1.0.0", "name": "cbr0", "subnetFile": senv});
    let err = error_json(&run(
        &cmd_env("ADD", "c1", "/usr/lib/cni"),
        &conf.to_string(),
    )?)?;
    assert_eq!(
        err["msg"],
        format!(
            "loadFlannelSubnetEnv failed: {} is missing FLANNEL_MTU, FLANNEL_IPMASQ. The file is \
             written by flanneld: check the flanneld (kube-flannel pod) log for this node.",
            senv.display()
        )
    );
    Ok(())
}

#[test]
fn malformed_and_invalid_configs() -> Result<()> {
    let env = cmd_env("ADD", "c1", "/usr/lib/cni");
    let err = error_json(&run(&env, "{\"name\": \"cbr0\", }")?)?;
    assert_eq!(err["code"], 6);
    assert!(
        err["msg"]
            .as_str()
            .context("msg")?
            .starts_with("error unmarshall network config: "),
        "{err}"
    );
    let err = error_json(&run(
        &env,
        r#"{"cniVersion":"1.0.0","name":"cbr0","delegate":{"name":"x"}}"#,
    )?)?;
    // The delegate is checked after subnet.env is read (default path absent here), as in Go;
    // use a readable subnet.env to reach the delegate check.
    assert_eq!(err["code"], 999);
    let f = Fixture::new("exit 0")?;
    let mut conf = f.conf.clone();
    conf["delegate"] = json!({"name": "x"});
    let err = error_json(&run(&cmd_env("ADD", "c1", &f.path()), &conf.to_string())?)?;
    assert_eq!(
        err["msg"],
        "'delegate' dictionary must not have 'name' field, it'll be set by flannel"
    );
    conf["delegate"] = json!({"ipam": {}});
    let err = error_json(&run(&cmd_env("ADD", "c1", &f.path()), &conf.to_string())?)?;
    assert_eq!(
        err["msg"],
        "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"
    );
    let err = error_json(&run(&[("CNI_COMMAND", "ADD"), ("CNI_PATH", "/x")], "{}")?)?;
    assert_eq!(err["code"], 4);
    assert_eq!(
        err["msg"],
        "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing"
    );
    Ok(())
}

#[test]
fn delegate_not_in_cni_path() -> Result<()> {
    let f = Fixture::new("exit 0")?;
    let mut conf = f.conf.clone();
    conf["delegate"] = json!({"type": "macvlan"});
    let err = error_json(&run(&cmd_env("ADD", "c1", &f.path()), &conf.to_string())?)?;
    let msg = err["msg"].as_str().context("msg")?;
    assert!(
        msg.starts_with(&format!(
            "failed to find plugin \"macvlan\" in path [{}]: the delegate plugin",
            f.path()
        )),
        "{msg}"
    );
    assert!(!f.saved("c1").exists(), "nothing to undo, nothing saved");
    Ok(())
}

#[test]
fn add_and_del_go_through_the_delegate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("log");
    // A result without cniVersion: the config's version is filled in (Go fixupResultVersion).
    let f = Fixture::new(&recorder(&log, r#"{"ips":[{"address":"198.18.5.2/24"}]}"#))?;
    let out = run(&cmd_env("ADD", "c1", &f.path()), &f.conf.to_string())?;
    assert!(out.status.success(), "{:?}", out);
    let result: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        result,
        json!({"cniVersion": "0.4.0", "ips": [{"address": "198.18.5.2/24"}]})
    );
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("delegate-says-hi"), "{stderr}");

    let delegate_conf = r#"{"cniVersion":"0.4.0","ipMasq":true,"ipam":{"ranges":[[{"subnet":"198.18.5.0/24"}]],"routes":[{"dst":"198.18.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1400,"name":"cbr0","type":"bridge"}"#;
    assert_eq!(std::fs::read_to_string(f.saved("c1"))?, delegate_conf);
    assert_eq!(
        std::fs::read_to_string(&log)?,
        format!("ADD c1 K8S_POD_NAME=web {delegate_conf}\n")
    );

    // DEL sends the saved config (even if the plugin config changed since) and removes it.
    let mut changed = f.conf.clone();
    changed["delegate"] = json!({"mtu": 9000});
    let out = run(&cmd_env("DEL", "c1", &f.path()), &changed.to_string())?;
    assert!(out.status.success(), "{:?}", out);
    assert_eq!(out.stdout, b"");
    assert!(!f.saved("c1").exists());
    let lines: Vec<String> = std::fs::read_to_string(&log)?
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines[1], format!("DEL c1 K8S_POD_NAME=web {delegate_conf}"));

    // A second DEL does not call the delegate.
    let out = run(&cmd_env("DEL", "c1", &f.path()), &f.conf.to_string())?;
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&log)?.lines().count(), 2);
    Ok(())
}

#[test]
fn check_sends_saved_config_with_prev_result() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("log");
    let f = Fixture::new(&recorder(&log, r#"{"cniVersion":"0.4.0"}"#))?;
    let out = run(&cmd_env("ADD", "c1", &f.path()), &f.conf.to_string())?;
    assert!(out.status.success(), "{:?}", out);
    let mut conf = f.conf.clone();
    conf["prevResult"] = json!({"cniVersion": "0.4.0", "ips": []});
    conf["runtimeConfig"] = json!({"bandwidth": {"ingressRate": 1}});
    let out = run(&cmd_env("CHECK", "c1", &f.path()), &conf.to_string())?;
    assert!(out.status.success(), "{:?}", out);
    assert_eq!(out.stdout, b"");
    let logged = std::fs::read_to_string(&log)?;
    let check_line = logged.lines().nth(1).context("no CHECK call")?;
    let sent: Value = serde_json::from_str(
        check_line
            .strip_prefix("CHECK c1 K8S_POD_NAME=web ")
            .context("CHECK line")?,
    )?;
    assert_eq!(
        sent["prevResult"],
        json!({"cniVersion": "0.4.0", "ips": []})
    );
    assert_eq!(
        sent["runtimeConfig"],
        json!({"bandwidth": {"ingressRate": 1}})
    );
    assert_eq!(
        sent["ipam"]["ranges"],
        json!([[{"subnet": "198.18.5.0/24"}]])
    );
    Ok(())
}

#[test]
fn delegate_errors_pass_through_and_failed_del_keeps_the_config() -> Result<()> {
    let f = Fixture::new(
        "cat >/dev/null\necho '{\"cniVersion\":\"0.4.0\",\"code\":11,\"msg\":\"failed to allocate for range 0: no IP addresses available in range set: 198.18.5.1-198.18.5.254\",\"details\":\"d\"}'\nexit 1",
    )?;
    let err = error_json(&run(&cmd_env("ADD", "c1", &f.path()), &f.conf.to_string())?)?;
    assert_eq!(
        err,
        json!({"cniVersion": "0.4.0", "code": 11,
            "msg": "failed to allocate for range 0: no IP addresses available in range set: 198.18.5.1-198.18.5.254",
            "details": "d"})
    );
    // ADD saved the config before running the delegate, so the runtime's DEL can clean up.
    assert!(f.saved("c1").exists());
    let err = error_json(&run(&cmd_env("DEL", "c1", &f.path()), &f.conf.to_string())?)?;
    assert_eq!(err["code"], 11);
    assert!(
        f.saved("c1").exists(),
        "DEL failed: keep the config for the retry"
    );

    // A delegate that dies without output.
    write_script(&f.bin, "bridge", "exit 2")?;
    let err = error_json(&run(&cmd_env("DEL", "c1", &f.path()), &f.conf.to_string())?)?;
    assert_eq!(
        err["msg"],
        format!(
            "delegate plugin {}/bridge failed with no error message: exit status 2",
            f.path()
        )
    );
    // Once the delegate works again, DEL finishes and forgets the config.
    write_script(&f.bin, "bridge", "cat >/dev/null")?;
    let out = run(&cmd_env("DEL", "c1", &f.path()), &f.conf.to_string())?;
    assert!(out.status.success(), "{:?}", out);
    assert!(!f.saved("c1").exists());
    Ok(())
}
