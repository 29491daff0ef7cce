//! CNI error results: the `{"cniVersion", "code", "msg", "details"}` object a plugin prints on
//! stdout before exiting non-zero (CNI SPEC "Error"), with the well-known codes.

use serde::Serialize;

/// Well-known CNI error codes (CNI SPEC; Go `types.Err*`).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_CNI_VERSION: u32 = 1;
    /// Unsupported field in network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT_VARIABLES: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Invalid network namespace.
    pub const INVALID_NETNS: u32 = 8;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Any other failure (Go `types.ErrInternal`, what the Go plugin returns for its own
    /// errors).
    pub const INTERNAL: u32 = 999;
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!("; {details}") })]
pub struct CniError {
    /// The error code.
    pub code: u32,
    /// A short message (the text runtimes show, e.g. after `plugin type="flannel" failed`).
    pub msg: String,
    /// Optional longer details (empty → omitted).
    pub details: String,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

impl CniError {
    /// An error with a code and message.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// An error with details.
    pub fn with_details(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A [`code::INTERNAL`] error (the plugin's own failures).
    pub fn internal(msg: impl Into<String>) -> CniError {
        CniError::new(code::INTERNAL, msg)
    }

    /// The JSON printed on stdout: indented by four spaces like the Go `skel` package prints
    /// it, with `cniVersion` first, no trailing newline.
    pub fn to_json(&self, cni_version: &str) -> String {
        let wire = Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing a struct of strings and an integer into memory cannot fail.
        let _ = wire.serialize(&mut ser);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Decodes an error a delegate plugin printed (Go `types.Error`: `code`, `msg`,
    /// `details`; other keys ignored). `None` if `stdout` is not such an object.
    pub fn from_plugin_output(stdout: &[u8]) -> Option<CniError> {
        let v: serde_json::Value = serde_json::from_slice(stdout).ok()?;
        let obj = v.as_object()?;
        let code = obj.get("code");
        let msg = obj.get("msg");
        if code.is_none() && msg.is_none() {
            return None;
        }
        let code = match code {
            None | Some(serde_json::Value::Null) => 0,
            Some(c) => u32::try_from(c.as_u64()?).ok()?,
        };
        let text = |v: Option<&serde_json::Value>| match v {
            None | Some(serde_json::Value::Null) => Some(String::new()),
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        Some(CniError {
            code,
            msg: text(msg)?,
            details: text(obj.get("details"))?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_without_details() {
        let e = CniError::internal("boom \"x\"");
        assert_eq!(
            e.to_json("1.0.0"),
            "{\n    \"cniVersion\": \"1.0.0\",\n    \"code\": 999,\n    \"msg\": \"boom \\\"x\\\"\"\n}"
        );
        assert_eq!(e.to_string(), "boom \"x\"");
    }

    #[test]
    fn json_shape_with_details() {
        let e = CniError::with_details(1, "incompatible CNI versions", "config is \"9.9.9\"");
        assert_eq!(
            e.to_json("9.9.9"),
            "{\n    \"cniVersion\": \"9.9.9\",\n    \"code\": 1,\n    \"msg\": \"incompatible CNI versions\",\n    \"details\": \"config is \\\"9.9.9\\\"\"\n}"
        );
        assert_eq!(
            e.to_string(),
            "incompatible CNI versions; config is \"9.9.9\""
        );
    }

    #[test]
    fn decodes_delegate_errors() {
        let e = CniError::from_plugin_output(
            br#"{"cniVersion":"1.0.0","code":11,"msg":"try later","details":"busy"}"#,
        )
        .unwrap();
        assert_eq!(e, CniError::with_details(11, "try later", "busy"));
        let e = CniError::from_plugin_output(b"{\"msg\":\"m\"}").unwrap();
        assert_eq!(e, CniError::new(0, "m"));
        assert_eq!(CniError::from_plugin_output(b"not json"), None);
        assert_eq!(CniError::from_plugin_output(b"{\"ips\":[]}"), None);
        assert_eq!(
            CniError::from_plugin_output(b"{\"code\":-1,\"msg\":\"m\"}"),
            None
        );
    }
}
