//! The plugin's network configuration (stdin), decoded like the Go plugin's `NetConf`.
//!
//! Keys are matched like Go's `encoding/json` does for struct fields (exact, then
//! case-insensitive); a `null` leaves the default. Recognised fields:
//!
//! | key | meaning |
//! |---|---|
//! | `cniVersion`, `name`, `type` | standard CNI fields |
//! | `subnetFile` | default `/run/flannel/subnet.env` |
//! | `dataDir` | where rendered delegate configs are kept, default `/var/lib/cni/flannel` |
//! | `delegate` | object: options for the delegate plugin (default type `bridge`) |
//! | `ipam` | object: IPAM options merged into the delegate's IPAM (kept whole, e.g. `dataDir`) |
//! | `runtimeConfig` | object: passed to the delegate as its `runtimeConfig` |
//! | `prevResult` | object: passed to the delegate on CHECK |
//! | `capabilities`, `dns` | type-checked like Go, otherwise unused |
//!
//! All other keys are ignored (Go drops them too: only `delegate` and `ipam` contents reach
//! the delegate). An empty `subnetFile` or `dataDir` means the default here; the Go plugin
//! would try to open the path `""`.

use std::path::PathBuf;

use flannel_model::gojson::{self, FieldRef, GoJsonError, Kind};
use serde_json::{Map, Value};

/// Default `subnetFile`.
pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
/// Default `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";

/// The decoded configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion` (empty when absent).
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `type` (normally `flannel`).
    pub plugin_type: String,
    /// `subnetFile`.
    pub subnet_file: PathBuf,
    /// `dataDir`.
    pub data_dir: PathBuf,
    /// `delegate` (absent or `null` → `None`).
    pub delegate: Option<Map<String, Value>>,
    /// `ipam` (absent or `null` → `None`).
    pub ipam: Option<Map<String, Value>>,
    /// `runtimeConfig` (absent or `null` → `None`).
    pub runtime_config: Option<Map<String, Value>>,
    /// `prevResult` (absent or `null` → `None`).
    pub prev_result: Option<Map<String, Value>>,
}

const STRUCT: &str = "NetConf";

impl NetConf {
    /// Decodes the configuration. Errors use Go's `encoding/json` wording.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, GoJsonError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| GoJsonError::from_serde(&e))?;
        let empty = Map::new();
        let obj = match &value {
            Value::Object(o) => o,
            Value::Null => &empty,
            other => {
                return Err(GoJsonError::ValueType {
                    value: Kind::of_value(other).go_name().to_string(),
                    go_type: "main.NetConf".to_string(),
                })
            }
        };
        let string = |name: &str| gojson::get_string(obj, FieldRef::new(STRUCT, name));
        let path = |name: &str, default: &str| -> Result<PathBuf, GoJsonError> {
            Ok(PathBuf::from(
                string(name)?
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| default.to_string()),
            ))
        };
        let conf = NetConf {
            cni_version: string("cniVersion")?.unwrap_or_default(),
            name: string("name")?.unwrap_or_default(),
            plugin_type: string("type")?.unwrap_or_default(),
            subnet_file: path("subnetFile", DEFAULT_SUBNET_FILE)?,
            data_dir: path("dataDir", DEFAULT_DATA_DIR)?,
            delegate: object(obj, "delegate")?,
            ipam: object(obj, "ipam")?,
            runtime_config: object(obj, "runtimeConfig")?,
            prev_result: object(obj, "prevResult")?,
        };
        if let Some(caps) = object(obj, "capabilities")? {
            for v in caps.values() {
                if !matches!(v, Value::Bool(_) | Value::Null) {
                    return Err(type_error(v, "capabilities", "bool"));
                }
            }
        }
        if let Some(v) = gojson::get(obj, "dns") {
            if !matches!(v, Value::Object(_) | Value::Null) {
                return Err(type_error(v, "dns", "types.DNS"));
            }
        }
        Ok(conf)
    }
}

/// A `map[string]interface{}` field: an object, or absent/`null`.
fn object(obj: &Map<String, Value>, name: &str) -> Result<Option<Map<String, Value>>, GoJsonError> {
    match gojson::get(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o.clone())),
        Some(v) => Err(type_error(v, name, "map[string]interface {}")),
    }
}

fn type_error(v: &Value, field: &str, go_type: &str) -> GoJsonError {
    GoJsonError::FieldType {
        value: Kind::of_value(v).go_name().to_string(),
        strukt: STRUCT.to_string(),
        field: field.to_string(),
        go_type: go_type.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let c = NetConf::parse(br#"{"name":"cni-flannel","type":"flannel"}"#).unwrap();
        assert_eq!(c.name, "cni-flannel");
        assert_eq!(c.plugin_type, "flannel");
        assert_eq!(c.cni_version, "");
        assert_eq!(c.subnet_file, PathBuf::from(DEFAULT_SUBNET_FILE));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.delegate, None);
        assert_eq!(c.ipam, None);
    }

    #[test]
    fn fields_and_go_key_matching() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"flannel","SubnetFile":"/tmp/s.env",
                "datadir":"/tmp/d","delegate":{"hairpinMode":true},"ipam":{"dataDir":"/tmp/i"},
                "runtimeConfig":{"portMappings":[]},"prevResult":{"cniVersion":"1.0.0"},
                "capabilities":{"portMappings":true},"unknown":1}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.subnet_file, PathBuf::from("/tmp/s.env"));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(
            Value::Object(c.delegate.unwrap()),
            json!({"hairpinMode": true})
        );
        assert_eq!(Value::Object(c.ipam.unwrap()), json!({"dataDir": "/tmp/i"}));
        assert_eq!(
            Value::Object(c.runtime_config.unwrap()),
            json!({"portMappings": []})
        );
        assert!(c.prev_result.is_some());
    }

    #[test]
    fn empty_paths_and_nulls_mean_default() {
        let c = NetConf::parse(br#"{"name":"n","subnetFile":"","dataDir":null,"delegate":null}"#)
            .unwrap();
        assert_eq!(c.subnet_file, PathBuf::from(DEFAULT_SUBNET_FILE));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.delegate, None);
    }

    #[test]
    fn wrong_types_use_go_wording() {
        let e = NetConf::parse(br#"{"name":"n","delegate":"bridge"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "json: cannot unmarshal string into Go struct field NetConf.delegate of type map[string]interface {}"
        );
        let e = NetConf::parse(br#"{"name":"n","subnetFile":5}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "json: cannot unmarshal number into Go struct field NetConf.subnetFile of type string"
        );
        let e =
            NetConf::parse(br#"{"name":"n","capabilities":{"portMappings":"yes"}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "json: cannot unmarshal string into Go struct field NetConf.capabilities of type bool"
        );
        let e = NetConf::parse(br#"[1]"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "json: cannot unmarshal array into Go value of type main.NetConf"
        );
        let e = NetConf::parse(br#"{"name":"n""#).unwrap_err();
        assert_eq!(e.to_string(), "unexpected end of JSON input");
    }
}
