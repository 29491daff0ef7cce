//! One plugin invocation from environment and stdin to stdout and exit code: the checks Go's
//! `skel.PluginMain` makes, then ADD / DEL / CHECK of the flannel plugin.
//!
//! - **ADD**: decode the config, load `subnet.env`, build the delegate config
//!   ([`crate::delegate`]), find the delegate in `CNI_PATH`, save the config to
//!   `dataDir/<containerID>`, run the delegate's ADD and print its result.
//! - **DEL**: run the delegate's DEL with the saved config, then remove it. No saved config
//!   means nothing was set up (or DEL already ran): success, nothing printed. A saved config
//!   that cannot be decoded is logged and left in place, DEL succeeds (as in Go).
//! - **CHECK**: the saved config (or, without one, the config ADD would build now) with this
//!   call's `cniVersion`, `runtimeConfig` and `prevResult`, sent to the delegate's CHECK.
//! - **GC**, **STATUS** (configs of version 1.1.0): nothing to do, success (as in Go).
//! - **VERSION**: the supported versions.
//!
//! Errors are printed as CNI error JSON on stdout with exit code 1.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;

use crate::args::{self, CmdArgs, Invocation};
use crate::delegate;
use crate::error::{code, CniError};
use crate::gojson::GoJson;
use crate::invoke::{self, InvokeError};
use crate::netconf::NetConf;
use crate::store;
use crate::subnet_env::{SubnetEnv, SubnetEnvError};
use crate::version;

/// The about line printed on stderr when `CNI_COMMAND` is not set.
pub fn about() -> String {
    format!(
        "CNI Plugin flannel version {} (flannel-rs, {}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Runs one invocation. `env` is the process environment (passed on to the delegate as it
/// is, except `CNI_COMMAND`). Returns the exit code.
pub fn run(
    env: &[(OsString, OsString)],
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let getenv = |key: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut input = Vec::new();
    let result = match args::from_env(getenv) {
        Ok(Invocation::About) => {
            let _ = writeln!(stderr, "{}", about());
            let _ = writeln!(
                stderr,
                "CNI protocol versions supported: {}",
                version::SUPPORTED.join(", ")
            );
            return 0;
        }
        Ok(Invocation::Command(args)) => {
            read_input(&args, stdin, &mut input).and_then(|()| dispatch(&args, &input, env, stderr))
        }
        Err(e) => Err(e),
    };
    let code = match result {
        Ok(out) => {
            let _ = stdout.write_all(&out);
            0
        }
        Err(e) => {
            let _ = stdout.write_all(e.to_json(&error_version(&input)).as_bytes());
            let _ = stderr.write_all(format!("flannel: {e}\n").as_bytes());
            1
        }
    };
    let _ = stdout.flush();
    code
}

/// The `cniVersion` for an error result: the config's, else the current one.
fn error_version(input: &[u8]) -> String {
    serde_json::from_slice::<Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| version::CURRENT.to_string())
}

/// Reads stdin (not for VERSION) and checks it is a config with a valid network name (Go
/// `skel` `validateConfig`).
fn read_input(args: &CmdArgs, stdin: &mut dyn Read, input: &mut Vec<u8>) -> Result<(), CniError> {
    if args.command == "VERSION" {
        return Ok(());
    }
    stdin
        .read_to_end(input)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("error reading from stdin: {e}")))?;
    let value: Value = serde_json::from_slice(input).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!(
                "error unmarshall network config: {}: the network configuration on stdin must be \
                 a JSON object (check the flannel entry of the CNI config in /etc/cni/net.d)",
                flannel_model::gojson::GoJsonError::from_serde(&e)
            ),
        )
    })?;
    let name = match &value {
        Value::Object(o) => match flannel_model::gojson::get(o, "name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(CniError::new(
                    code::DECODING_FAILURE,
                    "error unmarshall network config: \"name\" must be a string",
                ))
            }
        },
        Value::Null => String::new(),
        _ => {
            return Err(CniError::new(
                code::DECODING_FAILURE,
                "error unmarshall network config: the network configuration on stdin must be a JSON object",
            ))
        }
    };
    args::validate_network_name(&name)
}

fn dispatch(
    args: &CmdArgs,
    input: &[u8],
    env: &[(OsString, OsString)],
    stderr: &mut dyn Write,
) -> Result<Vec<u8>, CniError> {
    match args.command.as_str() {
        "ADD" => {
            version::check_supported(&version::decode_config_version(input)?)?;
            check_netns(args)?;
            cmd_add(args, input, env, stderr)
        }
        "DEL" => {
            version::check_supported(&version::decode_config_version(input)?)?;
            check_netns(args)?;
            cmd_del(args, input, env, stderr).map(|()| Vec::new())
        }
        "CHECK" => {
            check_min_version(input, "0.4.0", "CHECK")?;
            cmd_check(args, input, env, stderr).map(|()| Vec::new())
        }
        "GC" | "STATUS" => {
            check_min_version(input, "1.1.0", &args.command)?;
            Ok(Vec::new())
        }
        "VERSION" => Ok(version::version_info_json().into_bytes()),
        other => Err(CniError::new(
            code::INVALID_ENVIRONMENT_VARIABLES,
            format!("unknown CNI_COMMAND: {other}"),
        )),
    }
}

/// Go `skel`'s gate for CHECK / GC / STATUS: the config version must be at least `min`, some
/// supported version must be at least the config's, and the config's must be supported.
fn check_min_version(input: &[u8], min: &str, command: &str) -> Result<(), CniError> {
    let config = version::decode_config_version(input)?;
    let decoding = |e: String| CniError::new(code::DECODING_FAILURE, e);
    if !version::at_least(&config, min).map_err(decoding)? {
        return Err(CniError::new(
            code::INCOMPATIBLE_CNI_VERSION,
            format!("config version does not allow {command}"),
        ));
    }
    for supported in version::SUPPORTED {
        if version::at_least(supported, &config).map_err(decoding)? {
            return version::check_supported(&config);
        }
    }
    Err(CniError::new(
        code::INCOMPATIBLE_CNI_VERSION,
        format!("plugin version does not allow {command}"),
    ))
}

/// Refuses a `CNI_NETNS` that is the plugin's own network namespace (Go `skel`), unless
/// `CNI_NETNS_OVERRIDE` is `1`/`true`. A `CNI_NETNS` that cannot be opened is left to the
/// delegate. Checked before the delegate runs (Go checks after ADD/DEL returned).
fn check_netns(args: &CmdArgs) -> Result<(), CniError> {
    use std::os::unix::fs::MetadataExt;
    if args.netns.is_empty()
        || args.netns_override == "1"
        || args.netns_override.eq_ignore_ascii_case("true")
    {
        return Ok(());
    }
    let (Ok(theirs), Ok(ours)) = (
        std::fs::metadata(&args.netns),
        std::fs::metadata("/proc/self/ns/net"),
    ) else {
        return Ok(());
    };
    if theirs.dev() == ours.dev() && theirs.ino() == ours.ino() {
        return Err(CniError::new(
            code::INVALID_NETNS,
            "plugin's netns and netns from CNI_NETNS should not be the same",
        ));
    }
    Ok(())
}

/// The operator-facing error for a `subnet.env` problem. Keeps the Go plugin's
/// `loadFlannelSubnetEnv failed: open …: no such file or directory` text.
pub fn subnet_env_error(err: &SubnetEnvError) -> CniError {
    let hint = if err.is_not_found() {
        "flanneld writes this file once it has started and acquired this node's subnet lease, \
         so it has not done so yet: is flanneld (the kube-flannel pod) running on this node? \
         Check its log. (The path is \"subnetFile\" in the flannel CNI config.)"
    } else {
        "The file is written by flanneld: check the flanneld (kube-flannel pod) log for this node."
    };
    CniError::internal(format!("loadFlannelSubnetEnv failed: {err}. {hint}"))
}

/// The operator-facing error for a delegate that could not be found or run.
fn invoke_error(err: &InvokeError) -> CniError {
    match err {
        InvokeError::NotFound { .. } | InvokeError::NoPaths => CniError::internal(format!(
            "{err}: the delegate plugin (\"delegate\".\"type\" in the flannel CNI config, default \
             \"bridge\") must be installed in one of the CNI_PATH directories (e.g. from the \
             containernetworking-plugins release)"
        )),
        other => other.to_cni(),
    }
}

fn load_conf(input: &[u8], prefix: &str) -> Result<NetConf, CniError> {
    NetConf::parse(input)
        .map_err(|e| CniError::internal(format!("{prefix}failed to load netconf: {e}")))
}

fn cmd_add(
    args: &CmdArgs,
    input: &[u8],
    env: &[(OsString, OsString)],
    stderr: &mut dyn Write,
) -> Result<Vec<u8>, CniError> {
    let conf = load_conf(input, "failed to load flannel netconf file: ")?;
    let senv = SubnetEnv::load(&conf.subnet_file).map_err(|e| subnet_env_error(&e))?;
    let delegate = delegate::build(&conf, &senv).map_err(|e| CniError::internal(e.to_string()))?;
    let json = delegate.to_json();
    let plugin =
        invoke::find_in_path(&delegate.plugin_type, &args.path).map_err(|e| invoke_error(&e))?;
    let _ = writeln!(
        stderr,
        "flannel: ADD {}: delegating to {}: {json}",
        args.container_id,
        plugin.display()
    );
    store::save(&conf.data_dir, &args.container_id, json.as_bytes())
        .map_err(|e| CniError::internal(e.to_string()))?;
    let out =
        invoke::exec_plugin(&plugin, "ADD", json.as_bytes(), env).map_err(|e| invoke_error(&e))?;
    let _ = stderr.write_all(&out.stderr);
    let config_version = version::decode_config_version(json.as_bytes())?;
    invoke::fixup_result(&plugin, &config_version, &out.stdout).map_err(|e| invoke_error(&e))
}

fn cmd_del(
    args: &CmdArgs,
    input: &[u8],
    env: &[(OsString, OsString)],
    stderr: &mut dyn Write,
) -> Result<(), CniError> {
    let conf = load_conf(input, "")?;
    let saved = store::load(&conf.data_dir, &args.container_id)
        .map_err(|e| CniError::internal(e.to_string()))?;
    let Some((path, bytes)) = saved else {
        // Never added, or already deleted: nothing to undo.
        return Ok(());
    };
    let Some(plugin_type) = saved_type(&bytes) else {
        let _ = writeln!(
            stderr,
            "flannel: DEL {}: ignoring unusable saved delegate config {} (no JSON object with a \
             string \"type\"); the pod's interface stays until the node reboots",
            args.container_id,
            path.display()
        );
        return Ok(());
    };
    let plugin = invoke::find_in_path(&plugin_type, &args.path).map_err(|e| invoke_error(&e))?;
    let out = invoke::exec_plugin(&plugin, "DEL", &bytes, env).map_err(|e| invoke_error(&e))?;
    let _ = stderr.write_all(&out.stderr);
    store::remove(&path);
    Ok(())
}

/// The delegate type of a saved config, if it is usable.
fn saved_type(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let t = v.get("type")?.as_str()?;
    (!t.is_empty()).then(|| t.to_string())
}

fn cmd_check(
    args: &CmdArgs,
    input: &[u8],
    env: &[(OsString, OsString)],
    stderr: &mut dyn Write,
) -> Result<(), CniError> {
    let conf = load_conf(input, "failed to load flannel netconf file: ")?;
    let saved = store::load(&conf.data_dir, &args.container_id)
        .map_err(|e| CniError::internal(e.to_string()))?;
    let mut config = match saved {
        Some((path, bytes)) => saved_object(&path, &bytes)?,
        None => {
            let senv = SubnetEnv::load(&conf.subnet_file).map_err(|e| subnet_env_error(&e))?;
            let d = delegate::build(&conf, &senv).map_err(|e| CniError::internal(e.to_string()))?;
            saved_object(Path::new("(built)"), d.to_json().as_bytes())?
        }
    };
    if !conf.cni_version.is_empty() {
        config.insert("cniVersion".into(), Value::String(conf.cni_version.clone()));
    }
    if let Some(rc) = &conf.runtime_config {
        config.insert("runtimeConfig".into(), Value::Object(rc.clone()));
    }
    if let Some(prev) = &conf.prev_result {
        config.insert("prevResult".into(), Value::Object(prev.clone()));
    }
    let plugin_type = config
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let json = GoJson::from_value(&Value::Object(config)).to_compact();
    let plugin = invoke::find_in_path(&plugin_type, &args.path).map_err(|e| invoke_error(&e))?;
    let out = invoke::exec_plugin(&plugin, "CHECK", json.as_bytes(), env)
        .map_err(|e| invoke_error(&e))?;
    let _ = stderr.write_all(&out.stderr);
    Ok(())
}

fn saved_object(path: &Path, bytes: &[u8]) -> Result<serde_json::Map<String, Value>, CniError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(CniError::internal(format!(
            "the saved delegate config {} is not a JSON object",
            path.display()
        ))),
        Err(e) => Err(CniError::internal(format!(
            "the saved delegate config {} is not valid JSON: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn invoke(vars: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
        let env: Vec<(OsString, OsString)> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(&env, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn add_env(cid: &str) -> Vec<(&str, &str)> {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", "/nonexistent/netns"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/nonexistent"),
        ]
    }

    #[test]
    fn version_ignores_stdin() {
        let (code, out, _) = invoke(&[("CNI_COMMAND", "VERSION")], "garbage");
        assert_eq!(code, 0);
        assert_eq!(out, version::version_info_json());
    }

    #[test]
    fn about_without_command() {
        let (code, out, err) = invoke(&[], "");
        assert_eq!(code, 0);
        assert_eq!(out, "");
        assert!(err.starts_with("CNI Plugin flannel version "), "{err}");
        assert!(err.ends_with(
            "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"
        ));
    }

    #[test]
    fn env_and_config_errors() {
        let (code, out, _) = invoke(&[("CNI_COMMAND", "ADD")], "{}");
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["code"], 4);
        assert_eq!(v["cniVersion"], version::CURRENT);

        let (code, out, _) = invoke(&add_env("c1"), "{\"cniVersion\":\"1.0.0\",");
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["code"], 6);
        assert!(v["msg"]
            .as_str()
            .unwrap()
            .starts_with("error unmarshall network config: unexpected end of JSON input"));

        let (_, out, _) = invoke(&add_env("c1"), r#"{"cniVersion":"1.0.0","type":"flannel"}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["code"].as_u64(), v["msg"].as_str()),
            (Some(7), Some("missing network name"))
        );
        assert_eq!(v["cniVersion"], "1.0.0");

        let (_, out, _) = invoke(&add_env("c1"), r#"{"cniVersion":"9.0.0","name":"n"}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["code"], 1);
        assert_eq!(v["msg"], "incompatible CNI versions");

        let mut e = add_env("c1");
        e[0].1 = "FROB";
        let (_, out, _) = invoke(&e, r#"{"name":"n"}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["msg"], "unknown CNI_COMMAND: FROB");
    }

    #[test]
    fn check_needs_040() {
        let mut e = add_env("c1");
        e[0].1 = "CHECK";
        let (code, out, _) = invoke(&e, r#"{"cniVersion":"0.3.1","name":"n"}"#);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["msg"], "config version does not allow CHECK");
    }

    #[test]
    fn gc_and_status_are_noops_for_110() {
        for cmd in ["GC", "STATUS"] {
            let e = [("CNI_COMMAND", cmd), ("CNI_PATH", "/x")];
            let (code, out, _) = invoke(&e, r#"{"cniVersion":"1.1.0","name":"n"}"#);
            assert_eq!((code, out.as_str()), (0, ""));
            let (code, out, _) = invoke(&e, r#"{"cniVersion":"1.0.0","name":"n"}"#);
            assert_eq!(code, 1);
            assert!(out.contains(&format!("config version does not allow {cmd}")));
        }
    }

    #[test]
    fn add_with_missing_subnet_env_explains() {
        let dir = tempfile::tempdir().unwrap();
        let senv = dir.path().join("subnet.env");
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"flannel","subnetFile":"{}","dataDir":"{}"}}"#,
            senv.display(),
            dir.path().join("data").display()
        );
        let (code, out, _) = invoke(&add_env("c1"), &conf);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["code"], 999);
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!(
                "loadFlannelSubnetEnv failed: open {}: no such file or directory. ",
                senv.display()
            )),
            "{msg}"
        );
        assert!(msg.contains("is flanneld (the kube-flannel pod) running on this node?"));
        assert!(!dir.path().join("data").exists());
    }

    #[test]
    fn add_with_delegate_not_found_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let senv = dir.path().join("subnet.env");
        std::fs::write(
            &senv,
            "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.5.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n",
        )
        .unwrap();
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"flannel","subnetFile":"{}","dataDir":"{}"}}"#,
            senv.display(),
            dir.path().join("data").display()
        );
        let (code, out, _) = invoke(&add_env("c1"), &conf);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("failed to find plugin \"bridge\" in path [/nonexistent]: "),
            "{msg}"
        );
        assert!(!dir.path().join("data/c1").exists());
    }

    #[test]
    fn del_without_saved_config_succeeds_silently() {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","dataDir":"{}"}}"#,
            dir.path().display()
        );
        let e = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/nonexistent"),
        ];
        assert_eq!(invoke(&e, &conf), (0, String::new(), String::new()));
        // An unusable saved config is logged and left alone.
        std::fs::write(dir.path().join("c1"), b"{not json").unwrap();
        let (code, out, err) = invoke(&e, &conf);
        assert_eq!((code, out.as_str()), (0, ""));
        assert!(
            err.contains("ignoring unusable saved delegate config"),
            "{err}"
        );
        assert!(dir.path().join("c1").exists());
    }

    #[test]
    fn netns_of_the_plugin_itself_is_refused() {
        let mut e = add_env("c1");
        e[2].1 = "/proc/self/ns/net";
        let (code, out, _) = invoke(&e, r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["code"], 8);
    }
}
