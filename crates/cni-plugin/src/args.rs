//! The CNI invocation: `CNI_*` environment variables checked the way Go's `skel` package
//! checks them (which ones each command needs, container ID / interface / network name rules).

use crate::error::{code, CniError};

/// The environment variables of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdArgs {
    /// `CNI_COMMAND`: `ADD`, `DEL`, `CHECK`, `GC`, `STATUS` or `VERSION`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: path of the pod's network namespace.
    pub netns: String,
    /// `CNI_IFNAME`: interface name inside the pod.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`: where plugins are searched, `:`-separated.
    pub path: String,
    /// `CNI_NETNS_OVERRIDE`: `1`/`true` skips the "netns is the plugin's own" check.
    pub netns_override: String,
}

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// No `CNI_COMMAND`: print the about text on stderr and exit 0 (Go `skel`).
    About,
    /// A command with its arguments.
    Command(CmdArgs),
}

/// Whether command `cmd` needs variable `var` (Go `skel`'s `reqForCmd` table).
fn required(var: &str, cmd: &str) -> bool {
    let all = matches!(cmd, "ADD" | "CHECK" | "DEL");
    match var {
        "CNI_COMMAND" => true,
        "CNI_CONTAINERID" | "CNI_IFNAME" => all,
        "CNI_NETNS" => matches!(cmd, "ADD" | "CHECK"),
        "CNI_PATH" => all || matches!(cmd, "GC" | "STATUS"),
        _ => false,
    }
}

/// Reads the `CNI_*` variables through `getenv` (empty = unset) in Go's order, validating the
/// container ID and interface name of commands that need them, and listing missing ones in
/// one [`code::INVALID_ENVIRONMENT_VARIABLES`] error.
pub fn from_env(getenv: impl Fn(&str) -> String) -> Result<Invocation, CniError> {
    let command = getenv("CNI_COMMAND");
    let mut args = CmdArgs {
        command: command.clone(),
        ..CmdArgs::default()
    };
    let mut missing = Vec::new();
    for var in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
        "CNI_NETNS_OVERRIDE",
    ] {
        let value = getenv(var);
        let need = required(var, &command);
        if value.is_empty() {
            if need {
                missing.push(var);
            }
        } else if need {
            match var {
                "CNI_CONTAINERID" => validate_container_id(&value)?,
                "CNI_IFNAME" => validate_interface_name(&value)?,
                _ => {}
            }
        }
        let slot = match var {
            "CNI_CONTAINERID" => &mut args.container_id,
            "CNI_NETNS" => &mut args.netns,
            "CNI_IFNAME" => &mut args.ifname,
            "CNI_ARGS" => &mut args.args,
            "CNI_PATH" => &mut args.path,
            "CNI_NETNS_OVERRIDE" => &mut args.netns_override,
            _ => continue,
        };
        *slot = value;
    }
    if command.is_empty() {
        return Ok(Invocation::About);
    }
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENVIRONMENT_VARIABLES,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    Ok(Invocation::Command(args))
}

/// CNI's name rule for container IDs and network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        None => true,
        Some(first) if first.is_ascii_alphanumeric() => {
            bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        }
        Some(_) => false,
    }
}

/// Go `utils.ValidateContainerID`. The ID also names the saved delegate config file, so this
/// rule is what keeps it inside `dataDir`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            "missing containerID",
        ));
    }
    if !valid_name(id) {
        return Err(CniError::with_details(
            code::INVALID_ENVIRONMENT_VARIABLES,
            "invalid characters in containerID",
            id,
        ));
    }
    Ok(())
}

/// Go `utils.ValidateNetworkName`.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "missing network name",
        ));
    }
    if !valid_name(name) {
        return Err(CniError::with_details(
            code::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(())
}

/// Go `utils.ValidateInterfaceName` (the kernel's rules for link names).
pub fn validate_interface_name(name: &str) -> Result<(), CniError> {
    let bad = |msg: &str| Err(CniError::new(code::INVALID_ENVIRONMENT_VARIABLES, msg));
    if name.is_empty() {
        return bad("interface name is empty");
    }
    if name.len() > 15 {
        return Err(CniError::with_details(
            code::INVALID_ENVIRONMENT_VARIABLES,
            "interface name is too long",
            "interface name should be less than 16 characters",
        ));
    }
    if name == "." || name == ".." {
        return bad("interface name is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("interface name contains / or : or whitespace characters");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> String {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned().unwrap_or_default()
    }

    #[test]
    fn add_needs_everything_but_args() {
        let e = from_env(env(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENVIRONMENT_VARIABLES);
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        );
        let ok = from_env(env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1.2_3"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_ARGS", "K8S_POD_NAME=p"),
        ]))
        .unwrap();
        let Invocation::Command(a) = ok else {
            panic!("not a command")
        };
        assert_eq!(a.container_id, "abc-1.2_3");
        assert_eq!(a.args, "K8S_POD_NAME=p");
    }

    #[test]
    fn del_does_not_need_netns_and_version_needs_nothing() {
        let e = from_env(env(&[("CNI_COMMAND", "DEL")])).unwrap_err();
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_PATH] missing"
        );
        assert!(from_env(env(&[("CNI_COMMAND", "VERSION")])).is_ok());
        assert_eq!(from_env(env(&[])).unwrap(), Invocation::About);
        let e = from_env(env(&[("CNI_COMMAND", "GC")])).unwrap_err();
        assert_eq!(e.msg, "required env variables [CNI_PATH] missing");
    }

    #[test]
    fn container_id_and_ifname_rules() {
        let base = |id: &str, ifname: &str| {
            from_env(env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", id),
                ("CNI_IFNAME", ifname),
                ("CNI_PATH", "/x"),
            ]))
        };
        let e = base("../etc", "eth0").unwrap_err();
        assert_eq!(e.msg, "invalid characters in containerID");
        assert_eq!(e.details, "../etc");
        assert!(base(".hidden", "eth0").is_err());
        assert!(base("a/b", "eth0").is_err());
        assert_eq!(
            base("abc", "a-very-long-name0").unwrap_err().msg,
            "interface name is too long"
        );
        assert_eq!(
            base("abc", "eth 0").unwrap_err().msg,
            "interface name contains / or : or whitespace characters"
        );
        assert_eq!(
            base("abc", "..").unwrap_err().msg,
            "interface name is . or .."
        );
    }

    #[test]
    fn network_names() {
        assert!(validate_network_name("cbr0").is_ok());
        assert_eq!(
            validate_network_name("").unwrap_err().code,
            code::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            validate_network_name("my net").unwrap_err().msg,
            "invalid characters found in network name"
        );
    }
}
