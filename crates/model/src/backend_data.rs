//! What a backend publishes in a lease besides the subnet and the public IP: the JSON of
//! `BackendData` / `BackendV6Data` (and, in Kubernetes mode, of the `backend-data` /
//! `backend-v6-data` node annotations), and the values inside it.
//!
//! - [`MacAddr`]: an Ethernet address in Go's `net.HardwareAddr` text form.
//! - [`VxlanLeaseData`]: the vxlan backend's `{"VNI":1,"VtepMAC":"0e:2a:…"}`.
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

#[cfg(test)]
mod tests {
    use super::*;

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
