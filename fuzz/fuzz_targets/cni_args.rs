//! The CNI plugin's environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_IFNAME`, `CNI_ARGS`…,
//! [`flannel_cni::args::from_env`]).
//!
//! Input: `NAME=value` lines, one variable each (a missing variable is unset, as for the
//! plugin). Checks: no panic; an accepted command has every variable it needs; the container
//! ID (which names the saved delegate config in `dataDir`) cannot leave that directory; the
//! interface name follows the kernel's rules; the other variables are passed on unchanged.
#![no_main]

use std::collections::HashMap;

use flannel_cni::args::{from_env, Invocation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| vars.get(k).map(|v| v.to_string()).unwrap_or_default();
    let Ok(inv) = from_env(get) else {
        return;
    };
    let Invocation::Command(args) = inv else {
        assert!(get("CNI_COMMAND").is_empty());
        return;
    };
    assert_eq!(args.command, get("CNI_COMMAND"));
    assert_eq!(args.args, get("CNI_ARGS"));
    assert_eq!(args.netns, get("CNI_NETNS"));
    assert_eq!(args.path, get("CNI_PATH"));
    if matches!(args.command.as_str(), "ADD" | "DEL" | "CHECK") {
        let id = &args.container_id;
        assert!(!id.is_empty());
        assert!(
            !id.contains('/') && id != "." && id != "..",
            "container id {id:?}"
        );
        assert!(
            !id.starts_with('.') && !id.starts_with('-'),
            "container id {id:?}"
        );
        let ifname = &args.ifname;
        assert!(
            !ifname.is_empty() && ifname.len() <= 15,
            "ifname {ifname:?}"
        );
        assert!(ifname != "." && ifname != "..");
        assert!(!ifname.contains(['/', ':']) && !ifname.contains(char::is_whitespace));
        assert!(!args.path.is_empty());
    }
    if matches!(args.command.as_str(), "ADD" | "CHECK") {
        assert!(!args.netns.is_empty());
    }
});
