//! CNI spec versions: what the plugin supports (the Go plugin's `version.All` from
//! containernetworking/cni v1.3), the `VERSION` answer, and version comparison like Go's
//! `version.ParseVersion` / `GreaterThanOrEqualTo`.

use serde_json::Value;

use crate::error::{code, CniError};

/// The spec version the plugin implements (`cniVersion` of the `VERSION` answer).
pub const CURRENT: &str = "1.1.0";

/// Every config version accepted (exact string match, like Go's reconciler).
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The `VERSION` answer, as Go's `json.Encoder` writes it (compact, trailing newline).
pub fn version_info_json() -> String {
    let list: Vec<String> = SUPPORTED.iter().map(|v| format!("\"{v}\"")).collect();
    format!(
        "{{\"cniVersion\":\"{CURRENT}\",\"supportedVersions\":[{}]}}\n",
        list.join(",")
    )
}

/// The `cniVersion` of a config (Go `create.DecodeVersion`): `0.1.0` when absent or empty.
pub fn decode_config_version(stdin: &[u8]) -> Result<String, CniError> {
    let v: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!("decoding version from network config: {e}"),
        )
    })?;
    match v.get("cniVersion") {
        None | Some(Value::Null) => Ok("0.1.0".to_string()),
        Some(Value::String(s)) if s.is_empty() => Ok("0.1.0".to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(CniError::new(
            code::DECODING_FAILURE,
            format!(
                "decoding version from network config: json: cannot unmarshal {} into Go struct field .cniVersion of type string",
                flannel_model::gojson::Kind::of_value(other).go_name()
            ),
        )),
    }
}

/// Checks that `config_version` is one of [`SUPPORTED`] (Go `Reconciler.Check`).
pub fn check_supported(config_version: &str) -> Result<(), CniError> {
    if SUPPORTED.contains(&config_version) {
        return Ok(());
    }
    let list: Vec<String> = SUPPORTED.iter().map(|v| format!("\"{v}\"")).collect();
    Err(CniError::with_details(
        code::INCOMPATIBLE_CNI_VERSION,
        "incompatible CNI versions",
        format!(
            "config is \"{config_version}\", plugin supports [{}]",
            list.join(" ")
        ),
    ))
}

/// Go `version.ParseVersion`: up to three dot-separated decimal integers; `""` is `0.1.0`.
pub fn parse_version(v: &str) -> Result<(i64, i64, i64), String> {
    if v.is_empty() {
        return Ok((0, 1, 0));
    }
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() >= 4 {
        return Err(format!("invalid version \"{v}\": too many parts"));
    }
    let names = ["major", "minor", "micro"];
    let mut out = [0i64; 3];
    for (i, part) in parts.iter().enumerate() {
        out[i] = go_atoi(part).ok_or_else(|| {
            format!(
                "failed to convert {} version part \"{part}\": strconv.Atoi: parsing \"{part}\": invalid syntax",
                names[i]
            )
        })?;
    }
    Ok((out[0], out[1], out[2]))
}

/// Go `strconv.Atoi` for the values that matter (optional sign, decimal digits).
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go `version.GreaterThanOrEqualTo(a, b)`.
pub fn at_least(a: &str, b: &str) -> Result<bool, String> {
    Ok(parse_version(a)? >= parse_version(b)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn version_answer_is_exact() {
        assert_eq!(
            version_info_json(),
            "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"
        );
    }

    #[test]
    fn config_versions() {
        assert_eq!(decode_config_version(br#"{"name":"x"}"#).unwrap(), "0.1.0");
        assert_eq!(
            decode_config_version(br#"{"cniVersion":"1.0.0"}"#).unwrap(),
            "1.0.0"
        );
        assert_eq!(
            decode_config_version(br#"{"cniVersion":1}"#)
                .unwrap_err()
                .code,
            code::DECODING_FAILURE
        );
        assert!(check_supported("0.3.1").is_ok());
        let e = check_supported("1.0").unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_CNI_VERSION);
        assert_eq!(
            e.details,
            "config is \"1.0\", plugin supports [\"0.1.0\" \"0.2.0\" \"0.3.0\" \"0.3.1\" \"0.4.0\" \"1.0.0\" \"1.1.0\"]"
        );
    }

    #[test]
    fn comparison_like_go() {
        assert!(at_least("0.4.0", "0.4.0").unwrap());
        assert!(at_least("1.0.0", "0.4.0").unwrap());
        assert!(!at_least("0.3.1", "0.4.0").unwrap());
        assert!(at_least("1.1", "1.0.5").unwrap());
        assert!(!at_least("", "0.4.0").unwrap());
        assert!(at_least("1.0.0.0", "0.4.0").is_err());
        assert!(at_least("x.0", "0.4.0").is_err());
    }
}
