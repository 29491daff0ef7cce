//! Building the delegate plugin's configuration from the plugin's [`NetConf`] and
//! [`SubnetEnv`] (flannel-io/cni-plugin `cmdAdd`, `doCmdAdd`, `getDelegateIPAM`).
//!
//! Starting from the user's `delegate` object (which must not contain `name` or `ipam`, and
//! whose `type`, if present, must be a string):
//! - `runtimeConfig` = the plugin's `runtimeConfig`, when given;
//! - `name` = the network name; `type` defaults to `bridge`;
//! - `ipMasq` defaults to `!FLANNEL_IPMASQ` (masquerade here when flanneld does not);
//! - `mtu` defaults to `FLANNEL_MTU`; `isGateway` defaults to `true` for `bridge`;
//! - `cniVersion` = the plugin's `cniVersion`, when given;
//! - `ipam` = the user's `ipam` object (every key kept, e.g. host-local's `dataDir`) with
//!   `type` defaulting to `host-local`, `ranges` replaced by
//!   `[[{"subnet": FLANNEL_SUBNET}], [{"subnet": FLANNEL_IPV6_SUBNET}]]` (the families
//!   present) and `routes` = the user's routes followed by one `{"dst": network}` per
//!   `FLANNEL_NETWORK` and `FLANNEL_IPV6_NETWORK` entry.
//!
//! The result is written like Go's `json.Marshal` of the Go plugin's map (sorted keys, numbers
//! through `float64`; routes as CNI's `types.Route` struct: `dst`, `gw`, `mtu`, `advmss`,
//! `priority`, `table`, `scope`, zero `mtu`/`advmss`/`priority` omitted), so both plugins save
//! byte-identical files for the same input.

use std::collections::BTreeMap;

use flannel_model::gojson::{self, FieldRef, GoInt, GoJsonError, Kind};
use serde_json::{Map, Value};

use crate::goip::{ip_string, GoIpNet};
use crate::gojson::GoJson;
use crate::netconf::NetConf;
use crate::subnet_env::SubnetEnv;

/// The delegate plugin used when `delegate.type` is not set.
pub const DEFAULT_DELEGATE: &str = "bridge";
/// The IPAM plugin used when `ipam.type` is not set.
pub const DEFAULT_IPAM: &str = "host-local";

/// The configuration could not be turned into a delegate configuration. The texts are the
/// Go plugin's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegateError {
    /// `delegate.type` is not a string.
    #[error("'delegate' dictionary, if present, must have (string) 'type' field")]
    TypeNotString,
    /// `delegate.name` is set.
    #[error("'delegate' dictionary must not have 'name' field, it'll be set by flannel")]
    HasName,
    /// `delegate.ipam` is set (IPAM options belong in the top-level `ipam` object).
    #[error("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel")]
    HasIpam,
    /// `ipam.routes` is not a list of CNI routes.
    #[error("failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: {0}")]
    Routes(String),
}

/// A rendered delegate configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Delegate {
    /// The delegate plugin's binary name (`type`).
    pub plugin_type: String,
    /// The configuration object.
    pub config: GoJson,
}

impl Delegate {
    /// The configuration as compact JSON (what is saved and sent on stdin).
    pub fn to_json(&self) -> String {
        self.config.to_compact()
    }
}

/// Checks the user's `delegate` object like the Go plugin's `cmdAdd` does.
pub fn validate(delegate: Option<&Map<String, Value>>) -> Result<(), DelegateError> {
    let Some(d) = delegate else {
        return Ok(());
    };
    if d.get("type").is_some_and(|t| !t.is_string()) {
        return Err(DelegateError::TypeNotString);
    }
    if d.contains_key("name") {
        return Err(DelegateError::HasName);
    }
    if d.contains_key("ipam") {
        return Err(DelegateError::HasIpam);
    }
    Ok(())
}

/// Builds the delegate configuration for ADD (see the module docs).
pub fn build(conf: &NetConf, env: &SubnetEnv) -> Result<Delegate, DelegateError> {
    validate(conf.delegate.as_ref())?;
    let mut d: BTreeMap<String, GoJson> = conf
        .delegate
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), GoJson::from_value(v)))
        .collect();
    if let Some(rc) = &conf.runtime_config {
        d.insert(
            "runtimeConfig".into(),
            GoJson::from_value(&Value::Object(rc.clone())),
        );
    }
    d.insert("name".into(), GoJson::string(&conf.name));
    let plugin_type = match conf.delegate.as_ref().and_then(|d| d.get("type")) {
        Some(Value::String(t)) => t.clone(),
        _ => {
            d.insert("type".into(), GoJson::string(DEFAULT_DELEGATE));
            DEFAULT_DELEGATE.to_string()
        }
    };
    d.entry("ipMasq".into())
        .or_insert(GoJson::Bool(!env.ipmasq));
    d.entry("mtu".into())
        .or_insert(GoJson::uint(u64::from(env.mtu)));
    if plugin_type == DEFAULT_DELEGATE {
        d.entry("isGateway".into()).or_insert(GoJson::Bool(true));
    }
    if !conf.cni_version.is_empty() {
        d.insert("cniVersion".into(), GoJson::string(&conf.cni_version));
    }
    d.insert("ipam".into(), build_ipam(conf.ipam.as_ref(), env)?);
    Ok(Delegate {
        plugin_type,
        config: GoJson::map(d),
    })
}

/// The delegate's `ipam` object (Go `getDelegateIPAM`).
fn build_ipam(ipam: Option<&Map<String, Value>>, env: &SubnetEnv) -> Result<GoJson, DelegateError> {
    let mut out: BTreeMap<String, GoJson> = ipam
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), GoJson::from_value(v)))
        .collect();
    out.entry("type".into())
        .or_insert(GoJson::string(DEFAULT_IPAM));
    let ranges = [env.subnet, env.ipv6_subnet]
        .into_iter()
        .flatten()
        .map(|sn| {
            let range = GoJson::map(BTreeMap::from([(
                "subnet".to_string(),
                GoJson::string(sn.to_string()),
            )]));
            GoJson::Array(vec![range])
        })
        .collect();
    out.insert("ranges".into(), GoJson::Array(ranges));

    let mut routes = match ipam.and_then(|m| m.get("routes")) {
        Some(v) => parse_routes(v).map_err(DelegateError::Routes)?,
        None => Vec::new(),
    };
    routes.extend(
        env.networks
            .iter()
            .chain(&env.ipv6_networks)
            .map(|nw| GoJson::Object(vec![("dst".into(), GoJson::string(nw.to_string()))])),
    );
    out.insert("routes".into(), GoJson::Array(routes));
    Ok(GoJson::map(out))
}

/// Decodes `ipam.routes` into CNI `types.Route` values and re-encodes them as Go does.
fn parse_routes(v: &Value) -> Result<Vec<GoJson>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(parse_route).collect(),
        other => Err(format!(
            "json: cannot unmarshal {} into Go value of type []types.Route",
            Kind::of_value(other).go_name()
        )),
    }
}

const ROUTE: &str = "route";

fn parse_route(v: &Value) -> Result<GoJson, String> {
    let obj = match v {
        Value::Object(o) => o,
        Value::Null => return Err("a route is null (each route needs a \"dst\")".into()),
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type types.route",
                Kind::of_value(other).go_name()
            ))
        }
    };
    let go = |e: GoJsonError| e.to_string();
    let dst = match gojson::get(obj, "dst") {
        None => return Err("a route has no \"dst\"".into()),
        Some(Value::String(s)) => {
            GoIpNet::parse(s).ok_or_else(|| format!("invalid CIDR address: {s}"))?
        }
        Some(Value::Null) => return Err("invalid CIDR address: ".into()),
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type string",
                Kind::of_value(other).go_name()
            ))
        }
    };
    let mut out = vec![("dst".to_string(), GoJson::string(dst.to_string()))];
    match gojson::get(obj, "gw") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => {
            let ip = flannel_model::goip::parse_ip(s)
                .ok_or_else(|| format!("invalid IP address: {s}"))?;
            out.push(("gw".into(), GoJson::string(ip_string(ip))));
        }
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field route.gw of type net.IP",
                Kind::of_value(other).go_name()
            ))
        }
    }
    for name in ["mtu", "advmss", "priority"] {
        let n = gojson::get_int(obj, FieldRef::new(ROUTE, name), GoInt::Int).map_err(go)?;
        if let Some(n) = n.filter(|n| *n != 0) {
            out.push((name.into(), GoJson::Number(n.to_string())));
        }
    }
    for name in ["table", "scope"] {
        let n = gojson::get_int(obj, FieldRef::new(ROUTE, name), GoInt::Int).map_err(go)?;
        if let Some(n) = n {
            out.push((name.into(), GoJson::Number(n.to_string())));
        }
    }
    Ok(GoJson::Object(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    const V4: &str = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
    const DUAL: &str = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\n\
        FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";

    fn env(text: &str) -> SubnetEnv {
        SubnetEnv::parse(text, Path::new("subnet.env")).unwrap()
    }

    fn render(conf: &str, env_text: &str) -> Result<String, DelegateError> {
        let conf = NetConf::parse(conf.as_bytes()).unwrap();
        build(&conf, &env(env_text)).map(|d| d.to_json())
    }

    #[test]
    fn golden_v4_defaults() {
        // The Go plugin's own test expectation ("uses dataDir for storing network
        // configuration with ipv4 stack"), in Go's byte order.
        assert_eq!(
            render(r#"{"name":"cni-flannel","type":"flannel"}"#, V4).unwrap(),
            r#"{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}"#
        );
    }

    #[test]
    fn golden_dual_stack_with_version() {
        assert_eq!(
            render(
                r#"{"cniVersion":"1.0.0","name":"cbr0","type":"flannel"}"#,
                DUAL
            )
            .unwrap(),
            r#"{"cniVersion":"1.0.0","ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}],[{"subnet":"fc00::/64"}]],"routes":[{"dst":"10.1.0.0/16"},{"dst":"fc00::/48"}],"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cbr0","type":"bridge"}"#
        );
    }

    /// flanneld's `subnet.env` of an IPv6-only network (no FLANNEL_NETWORK/FLANNEL_SUBNET): one
    /// IPv6 range and route, as the Go plugin builds them (flannel_linux.go `getDelegateIPAM`
    /// appends a range per subnet present and a route per network present).
    #[test]
    fn golden_ipv6_only() {
        let text =
            "FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:2a::1/64\n\
            FLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n";
        assert_eq!(
            render(
                r#"{"cniVersion":"1.0.0","name":"cbr0","type":"flannel"}"#,
                text
            )
            .unwrap(),
            r#"{"cniVersion":"1.0.0","ipMasq":false,"ipam":{"ranges":[[{"subnet":"2001:db8:100:2a::/64"}]],"routes":[{"dst":"2001:db8:100::/48"}],"type":"host-local"},"isGateway":true,"mtu":1430,"name":"cbr0","type":"bridge"}"#
        );
    }

    #[test]
    fn golden_multiple_networks_and_ipmasq_false() {
        let text = "FLANNEL_NETWORK=10.1.0.0/16,192.168.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";
        assert_eq!(
            render(r#"{"name":"n","type":"flannel"}"#, text).unwrap(),
            r#"{"ipMasq":true,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"},{"dst":"192.168.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1450,"name":"n","type":"bridge"}"#
        );
    }

    #[test]
    fn golden_user_delegate_options_win() {
        // The kube-flannel.yml conflist: hairpinMode + isDefaultGateway; user mtu/ipMasq
        // override subnet.env; runtimeConfig replaces a delegate one; unknown keys kept.
        let conf = r#"{"cniVersion":"0.3.1","name":"cbr0","type":"flannel",
            "delegate":{"hairpinMode":true,"isDefaultGateway":true,"mtu":1400.0,"ipMasq":true,
                        "isGateway":false,"runtimeConfig":{"x":1},"vlan":0,"extra":{"z":1,"a":"<b>"}},
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},
            "somethingElse":"dropped"}"#;
        assert_eq!(
            render(conf, V4).unwrap(),
            r#"{"cniVersion":"0.3.1","extra":{"a":"\u003cb\u003e","z":1},"hairpinMode":true,"ipMasq":true,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":false,"mtu":1400,"name":"cbr0","runtimeConfig":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},"type":"bridge","vlan":0}"#
        );
    }

    #[test]
    fn non_bridge_delegate_gets_no_is_gateway() {
        let out = render(
            r#"{"name":"n","type":"flannel","delegate":{"type":"ipvlan","master":"eth0"}}"#,
            V4,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"master":"eth0","mtu":1472,"name":"n","type":"ipvlan"}"#
        );
    }

    #[test]
    fn golden_user_ipam_kept_and_routes_first() {
        // The Go test's "input IPAM" case: unknown IPAM keys kept, type kept, user routes
        // (normalised through types.Route) before the flannel network routes.
        let conf = r#"{"name":"n","type":"flannel","ipam":{"type":"my-ipam","unknown-param":"unknown-value",
            "dataDir":"/tmp/ipam","ranges":[["ignored"]],
            "routes":[{"dst":"10.96.0.0/12"},{"dst":"192.168.244.0/24","gw":"10.1.17.20","extra":1},
                      {"DST":"fc00:0::1/64","gw":"::ffff:10.0.0.1","mtu":0,"advmss":1300,"table":0,"scope":null}]}}"#;
        assert_eq!(
            render(conf, DUAL).unwrap(),
            r#"{"ipMasq":false,"ipam":{"dataDir":"/tmp/ipam","ranges":[[{"subnet":"10.1.17.0/24"}],[{"subnet":"fc00::/64"}]],"routes":[{"dst":"10.96.0.0/12"},{"dst":"192.168.244.0/24","gw":"10.1.17.20"},{"dst":"fc00::1/64","gw":"10.0.0.1","advmss":1300,"table":0},{"dst":"10.1.0.0/16"},{"dst":"fc00::/48"}],"type":"my-ipam","unknown-param":"unknown-value"},"isGateway":true,"mtu":1472,"name":"n","type":"bridge"}"#
        );
    }

    #[test]
    fn ipam_without_type_defaults_to_host_local() {
        let out = render(
            r#"{"name":"n","type":"flannel","ipam":{"routes":null}}"#,
            V4,
        )
        .unwrap();
        assert!(out.contains(r#""ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"}"#), "{out}");
    }

    #[test]
    fn delegate_errors_use_go_text() {
        let err = |conf: &str| render(conf, V4).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"name":"n","delegate":{"name":"x"}}"#),
            "'delegate' dictionary must not have 'name' field, it'll be set by flannel"
        );
        assert_eq!(
            err(r#"{"name":"n","delegate":{"ipam":{"type":"host-local"}}}"#),
            "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"
        );
        assert_eq!(
            err(r#"{"name":"n","delegate":{"type":5}}"#),
            "'delegate' dictionary, if present, must have (string) 'type' field"
        );
        // Type is checked before name, as in Go.
        assert_eq!(
            render(r#"{"name":"n","delegate":{"type":null,"name":"x"}}"#, V4).unwrap_err(),
            DelegateError::TypeNotString
        );
    }

    #[test]
    fn bad_routes_are_errors() {
        let err = |routes: &str| {
            render(
                &format!(r#"{{"name":"n","ipam":{{"routes":{routes}}}}}"#),
                V4,
            )
            .unwrap_err()
            .to_string()
        };
        let prefix = "failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: ";
        assert_eq!(
            err(r#"[{"dst":"10.0.0.0"}]"#),
            format!("{prefix}invalid CIDR address: 10.0.0.0")
        );
        assert_eq!(
            err(r#"[{"dst":"10.0.0.0/8","gw":"x"}]"#),
            format!("{prefix}invalid IP address: x")
        );
        assert_eq!(
            err(r#"{"dst":"10.0.0.0/8"}"#),
            format!("{prefix}json: cannot unmarshal object into Go value of type []types.Route")
        );
        assert_eq!(
            err(r#"[{"dst":"10.0.0.0/8","mtu":1.5}]"#),
            format!("{prefix}json: cannot unmarshal number 1.5 into Go struct field route.mtu of type int")
        );
        assert!(err(r#"[{"gw":"10.0.0.1"}]"#).contains("no \"dst\""));
    }
}
