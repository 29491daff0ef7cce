//! What a backend publishes in a lease besides the subnet and the public IP: the JSON of
//! `BackendData` / `BackendV6Data` (and, in Kubernetes mode, of the `backend-data` /
//! `backend-v6-data` node annotations), and the values inside it.
//!
//! - [`MacAddr`]: an Ethernet address in Go's `net.HardwareAddr` text form.
//! - [`VxlanLeaseData`]: the vxlan backend's `{"VNI":1,"VtepMAC":"0e:2a:…"}`.
//! - [`WgKey`], [`WireguardLeaseData`]: the wireguard backend's
//!   `{"PublicKey":"<base64>","Port":51820}`.
//!
//! Backends without data (host-gw, udp, alloc) publish none. The forms are Flannel's, byte for
//! byte (see the golden tests).

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::gojson;
use crate::lease::RawJson;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    /// Lower-case, colon separated, as Go prints a `net.HardwareAddr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A MAC address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case (as Go's ParseMAC does for
    /// 6-byte addresses).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// A peer's backend data that this host cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendDataError {
    /// Not JSON at all.
    #[error("{0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("vxlan BackendData is not an object: {0}")]
    NotAnObject(String),
    /// No `VtepMAC` string.
    #[error("vxlan BackendData has no VtepMAC: {0}")]
    NoVtepMac(String),
    /// A `VtepMAC` that is no MAC address.
    #[error(transparent)]
    BadMac(#[from] BadMac),
}

/// The vxlan BackendData (and BackendV6Data) in a lease: `{"VNI":1,"VtepMAC":"0e:2a:…"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanLeaseData {
    /// `VNI` (0 when a peer left it out, as Go decodes a missing number).
    pub vni: u32,
    /// `VtepMAC`: the MAC of the peer's vxlan device.
    pub vtep_mac: MacAddr,
}

impl VxlanLeaseData {
    /// JSON exactly as Flannel writes it.
    pub fn to_raw(&self) -> RawJson {
        RawJson::from_value(&serde_json::json!({
            "VNI": self.vni,
            "VtepMAC": self.vtep_mac.to_string(),
        }))
    }

    /// Read a peer's BackendData (keys case-insensitive, as Go decodes).
    pub fn from_raw(raw: &RawJson) -> Result<Self, BackendDataError> {
        let value = raw
            .to_value()
            .map_err(|e| BackendDataError::Json(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| BackendDataError::NotAnObject(raw.as_str().to_owned()))?;
        let vni = gojson::get(obj, "VNI")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        let mac = gojson::get(obj, "VtepMAC")
            .and_then(Value::as_str)
            .ok_or_else(|| BackendDataError::NoVtepMac(raw.as_str().to_owned()))?;
        Ok(VxlanLeaseData {
            vni,
            vtep_mac: mac.parse()?,
        })
    }
}

/// A WireGuard key (Curve25519 public or private key, or a preshared key): 32 bytes, written
/// as standard base64 with padding (44 characters), as `wg` and Go's `wgtypes` write it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use base64::Engine as _;
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl fmt::Debug for WgKey {
    /// The base64 text: public keys are what logs and test failures need. Private keys are
    /// never held in a `WgKey` that is printed (the daemon keeps them in its own type).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({self})")
    }
}

/// Text that is not a WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WireGuard key {0:?}: expected 32 bytes in base64")]
pub struct BadWgKey(pub String);

impl FromStr for WgKey {
    type Err = BadWgKey;

    /// Standard base64 of exactly 32 bytes (what `wgtypes.ParseKey` accepts).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| BadWgKey(s.to_owned()))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(WgKey)
            .map_err(|_| BadWgKey(s.to_owned()))
    }
}

/// A peer's wireguard BackendData that this host cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireguardDataError {
    /// Not JSON, or not an object.
    #[error("wireguard BackendData is not a JSON object: {0}")]
    NotAnObject(String),
    /// No `PublicKey` string.
    #[error("wireguard BackendData has no PublicKey: {0}")]
    NoPublicKey(String),
    /// A `PublicKey` that is no key.
    #[error(transparent)]
    BadKey(#[from] BadWgKey),
    /// A `Port` that is no UDP port.
    #[error("wireguard BackendData: Port is not a UDP port: {0}")]
    BadPort(String),
}

/// The wireguard BackendData (and BackendV6Data) in a lease:
/// `{"PublicKey":"<base64>","Port":51820}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireguardLeaseData {
    /// `PublicKey`: the peer device's public key.
    pub public_key: WgKey,
    /// `Port`: the peer device's listen port; 0 when an older Flannel left it out (the reader
    /// then uses its own port, as Flannel does).
    pub port: u16,
}

impl WireguardLeaseData {
    /// JSON exactly as Flannel writes it: Go's struct order (`PublicKey`, then `Port`), no
    /// spaces. Base64 has no character Go's encoder escapes.
    pub fn to_raw(&self) -> RawJson {
        #[derive(serde::Serialize)]
        struct Go<'a> {
            #[serde(rename = "PublicKey")]
            public_key: &'a str,
            #[serde(rename = "Port")]
            port: u16,
        }
        let key = self.public_key.to_string();
        let text = serde_json::to_string(&Go {
            public_key: &key,
            port: self.port,
        })
        .unwrap_or_default();
        RawJson::new(&text).unwrap_or_else(|_| RawJson::from_value(&Value::Null))
    }

    /// Read a peer's BackendData (keys case-insensitive, as Go decodes; a missing `Port` is 0).
    pub fn from_raw(raw: &RawJson) -> Result<Self, WireguardDataError> {
        let not_object = || WireguardDataError::NotAnObject(raw.as_str().to_owned());
        let value = raw.to_value().map_err(|_| not_object())?;
        let obj = value.as_object().ok_or_else(not_object)?;
        let key = gojson::get(obj, "PublicKey")
            .and_then(Value::as_str)
            .ok_or_else(|| WireguardDataError::NoPublicKey(raw.as_str().to_owned()))?;
        let port = match gojson::get(obj, "Port") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| WireguardDataError::BadPort(v.to_string()))?,
        };
        Ok(WireguardLeaseData {
            public_key: key.parse()?,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key whose base64 has `+`, `/` and padding (the characters a JSON encoder might touch).
    fn key() -> WgKey {
        let mut k = [0u8; 32];
        k[0] = 0xfb;
        k[1] = 0xff;
        k[31] = 0x7f;
        WgKey(k)
    }

    #[test]
    fn wireguard_data_is_flannels_json_byte_for_byte() {
        let d = WireguardLeaseData {
            public_key: key(),
            port: 51820,
        };
        // Golden: Go's json.Marshal of struct{PublicKey string; Port uint16}.
        assert_eq!(
            d.to_raw().as_str(),
            r#"{"PublicKey":"+/8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH8=","Port":51820}"#
        );
        assert_eq!(WireguardLeaseData::from_raw(&d.to_raw()), Ok(d));
    }

    #[test]
    fn wireguard_data_reads_what_peers_write() {
        // An older Flannel writes no Port: 0, meaning "the reader's own port".
        let d = WireguardLeaseData::from_raw(&raw(
            r#"{ "publickey": "+/8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH8=" }"#,
        ))
        .expect("parses");
        assert_eq!((d.public_key, d.port), (key(), 0));
        let err = |s: &str| {
            WireguardLeaseData::from_raw(&raw(s))
                .expect_err("unusable")
                .to_string()
        };
        assert_eq!(
            err(r#"{"Port":1}"#),
            r#"wireguard BackendData has no PublicKey: {"Port":1}"#
        );
        assert_eq!(
            err(r#"{"PublicKey":"AAAA"}"#),
            r#"invalid WireGuard key "AAAA": expected 32 bytes in base64"#
        );
        assert_eq!(
            err(r#"{"PublicKey":"+/8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH8=","Port":70000}"#),
            "wireguard BackendData: Port is not a UDP port: 70000"
        );
        assert_eq!(
            err("[1]"),
            "wireguard BackendData is not a JSON object: [1]"
        );
    }

    #[test]
    fn wg_key_text_is_wg_tools_base64() {
        let k: WgKey = "+/8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH8="
            .parse()
            .expect("key");
        assert_eq!(k, key());
        assert_eq!(k.to_string().len(), 44);
        for bad in [
            "",
            "AAAA",
            "not base64!",
            "+/8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH8",
        ] {
            assert!(bad.parse::<WgKey>().is_err(), "{bad}");
        }
    }

    fn raw(s: &str) -> RawJson {
        RawJson::new(s).expect("json")
    }

    #[test]
    fn vxlan_data_is_flannels_json_byte_for_byte() {
        let d = VxlanLeaseData {
            vni: 1,
            vtep_mac: "c6:d2:32:6f:8f:44".parse().expect("mac"),
        };
        // Golden: what Go flannel writes (field order, no spaces, lower-case MAC).
        assert_eq!(
            d.to_raw().as_str(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#
        );
        assert_eq!(VxlanLeaseData::from_raw(&d.to_raw()), Ok(d));
        let big = VxlanLeaseData {
            vni: 0xff_ffff,
            vtep_mac: MacAddr([0x0e, 0, 0xff, 0x10, 0xab, 1]),
        };
        assert_eq!(
            big.to_raw().as_str(),
            r#"{"VNI":16777215,"VtepMAC":"0e:00:ff:10:ab:01"}"#
        );
    }

    #[test]
    fn vxlan_data_reads_what_peers_write() {
        // Spacing, key case, hyphens and upper case as other writers produce them.
        let d = VxlanLeaseData::from_raw(&raw(r#"{ "vni": 4, "vtepmac": "12-C6-65-89-B4-E3" }"#))
            .expect("parses");
        assert_eq!(d.vni, 4);
        assert_eq!(d.vtep_mac.to_string(), "12:c6:65:89:b4:e3");
        // A missing VNI decodes as 0, as in Go.
        let d = VxlanLeaseData::from_raw(&raw(r#"{"VtepMAC":"0e:00:00:00:00:01"}"#)).expect("ok");
        assert_eq!(d.vni, 0);
    }

    #[test]
    fn unusable_vxlan_data_says_why() {
        let err = |s: &str| {
            VxlanLeaseData::from_raw(&raw(s))
                .expect_err("unusable")
                .to_string()
        };
        assert_eq!(
            err(r#"{"VNI":1}"#),
            r#"vxlan BackendData has no VtepMAC: {"VNI":1}"#
        );
        assert_eq!(err("[1]"), "vxlan BackendData is not an object: [1]");
        assert_eq!(
            err(r#"{"VtepMAC":"12:c6:65:89:b4"}"#),
            r#"invalid MAC address "12:c6:65:89:b4""#
        );
    }

    #[test]
    fn mac_text_forms() {
        let m: MacAddr = "AA-bb-CC-dd-EE-ff".parse().expect("mac");
        assert_eq!(m, MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]));
        assert_eq!(m.to_string(), "aa:bb:cc:dd:ee:ff");
        for bad in [
            "",
            "12:c6:65:89:b4",
            "12:c6:65:89:b4:e3:00",
            "12:c6:65:89:b4:zz",
            "1:c6:65:89:b4:e3",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(BadMac(bad.to_owned())), "{bad}");
        }
    }
}
