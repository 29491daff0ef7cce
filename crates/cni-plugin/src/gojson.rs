//! Writing JSON the way the Go plugin's `json.Marshal` writes its delegate config.
//!
//! The Go plugin keeps the delegate config as a `map[string]interface{}`: object keys come out
//! sorted (Go sorts map keys), every number that went through `interface{}` is a `float64`
//! (so `1400` stays `1400` but `1.0` becomes `1` and `1e21` becomes `1e+21`), and strings are
//! HTML-escaped. Typed Go structs inside it (the IPAM routes) keep their field order instead.
//! [`GoJson`] models exactly that: [`GoJson::from_value`] turns decoded user JSON into the
//! map form, and [`GoJson::Object`] keeps whatever member order the builder gives it.

use std::collections::BTreeMap;

use serde_json::Value;

/// A JSON value ready to be written compactly with Go's formatting rules.
#[derive(Debug, Clone, PartialEq)]
pub enum GoJson {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, already in its final text form.
    Number(String),
    /// A string (escaped when written).
    String(String),
    /// An array.
    Array(Vec<GoJson>),
    /// An object whose members are written in the given order (a Go struct, or a Go map whose
    /// keys were sorted by [`GoJson::map`]).
    Object(Vec<(String, GoJson)>),
}

impl GoJson {
    /// A Go `map[string]…`: members written in sorted key order.
    pub fn map(members: BTreeMap<String, GoJson>) -> GoJson {
        GoJson::Object(members.into_iter().collect())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> GoJson {
        GoJson::String(s.into())
    }

    /// An unsigned integer as Go writes a `uint` (exact decimal).
    pub fn uint(n: u64) -> GoJson {
        GoJson::Number(n.to_string())
    }

    /// An `int` as Go writes it (exact decimal).
    pub fn int(n: i64) -> GoJson {
        GoJson::Number(n.to_string())
    }

    /// Decoded JSON as Go holds it in an `interface{}`: objects become sorted maps, numbers
    /// become `float64`.
    pub fn from_value(v: &Value) -> GoJson {
        match v {
            Value::Null => GoJson::Null,
            Value::Bool(b) => GoJson::Bool(*b),
            Value::Number(n) => GoJson::Number(go_float(n.as_f64().unwrap_or(0.0))),
            Value::String(s) => GoJson::String(s.clone()),
            Value::Array(a) => GoJson::Array(a.iter().map(GoJson::from_value).collect()),
            Value::Object(o) => GoJson::map(
                o.iter()
                    .map(|(k, v)| (k.clone(), GoJson::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// Compact JSON text, byte-identical to Go's `json.Marshal` of the same Go value.
    pub fn to_compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            GoJson::Null => out.push_str("null"),
            GoJson::Bool(true) => out.push_str("true"),
            GoJson::Bool(false) => out.push_str("false"),
            GoJson::Number(n) => out.push_str(n),
            GoJson::String(s) => out.push_str(&flannel_model::gojson::quote(s)),
            GoJson::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            GoJson::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&flannel_model::gojson::quote(k));
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Go's `encoding/json` text for a `float64`: shortest round-trip digits, plain decimal
/// unless the magnitude is below `1e-6` or at least `1e21`, where it uses `1e+21` / `1e-7`.
pub fn go_float(f: f64) -> String {
    if !f.is_finite() {
        // Cannot come from parsed JSON; Go would refuse to marshal it.
        return "null".to_string();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let Some((mantissa, exp)) = s.split_once('e') else {
            return s;
        };
        return match exp.strip_prefix('-') {
            Some(digits) => format!("{mantissa}e-{digits}"),
            None if exp.len() < 2 => format!("{mantissa}e+0{exp}"),
            None => format!("{mantissa}e+{exp}"),
        };
    }
    format!("{f}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_like_go() {
        assert_eq!(go_float(1400.0), "1400");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(-0.0), "-0");
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1e20), "100000000000000000000");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e300), "1.5e+300");
        assert_eq!(go_float(0.000001), "0.000001");
        assert_eq!(go_float(1.5e-7), "1.5e-7");
        assert_eq!(go_float(2e-10), "2e-10");
    }

    #[test]
    fn interface_values_sort_keys_and_reformat_numbers() {
        let v = json!({"z": 1.0, "a": {"y": [1, "<&>"], "b": null}, "m": true});
        assert_eq!(
            GoJson::from_value(&v).to_compact(),
            r#"{"a":{"b":null,"y":[1,"\u003c\u0026\u003e"]},"m":true,"z":1}"#
        );
    }

    #[test]
    fn objects_keep_builder_order() {
        let v = GoJson::Object(vec![
            ("dst".into(), GoJson::string("10.0.0.0/8")),
            ("advmss".into(), GoJson::int(1300)),
        ]);
        assert_eq!(v.to_compact(), r#"{"dst":"10.0.0.0/8","advmss":1300}"#);
    }
}
