//! The CNI plugin's stdin: the network configuration ([`NetConf::parse`],
//! `decode_config_version`, version parsing), the delegate configuration built from it, and a
//! delegate plugin's error output ([`CniError::from_plugin_output`]), all on the same bytes.
//!
//! Checks: no panic; the delegate configuration saved for DEL is JSON naming the network and
//! the delegate type, with an `ipam` holding the node's subnet; a plugin error we decode
//! prints (`to_json`) as JSON that decodes back to the same error.
#![no_main]

use std::path::Path;

use flannel_cni::netconf::NetConf;
use flannel_cni::subnet_env::SubnetEnv;
use flannel_cni::{delegate, version, CniError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SUBNET_ENV: &str = "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.1.1/24\n\
FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:1::1/64\n\
FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

fuzz_target!(|data: &[u8]| {
    if let Some(err) = CniError::from_plugin_output(data) {
        let json = err.to_json("1.0.0");
        assert_eq!(
            CniError::from_plugin_output(json.as_bytes()),
            Some(err),
            "{json}"
        );
    }

    if let Ok(v) = version::decode_config_version(data) {
        let _ = version::check_supported(&v);
        let _ = version::at_least(&v, "1.1.0");
    }

    let Ok(conf) = NetConf::parse(data) else {
        return;
    };
    let env = SubnetEnv::parse(SUBNET_ENV, Path::new("subnet.env")).expect("valid subnet.env");
    let Ok(d) = delegate::build(&conf, &env) else {
        return;
    };
    let json = d.to_json();
    let v: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("delegate config {json} is not JSON: {e}"));
    assert_eq!(v["name"], Value::String(conf.name.clone()), "{json}");
    assert_eq!(v["type"], Value::String(d.plugin_type.clone()), "{json}");
    let ranges = v["ipam"]["ranges"].to_string();
    assert!(ranges.contains("198.18.1.0/24"), "{json}");
    assert!(ranges.contains("2001:db8:100:1::/64"), "{json}");
});
