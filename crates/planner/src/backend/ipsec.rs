//! `ipsec`: pod traffic between hosts in ESP tunnels. strongSwan's `charon` negotiates the
//! keys (IKEv2, pre-shared key) and installs the SAs; flanneld installs the XFRM policies that
//! send pod traffic into them. Nothing goes through the planner's [`KernelState`]: the
//! policies and charon's connections are the runtime's ([`RuntimeSpec::Ipsec`]), planned by
//! [`crate::ipsec`]. IPv4 only, as Flannel.

use std::net::Ipv4Addr;

use flannel_model::gojson::{self, FieldRef};
use serde_json::Value;

use crate::backend::{Backend, BackendError, Inputs, LeaseData, RuntimeSpec};
use crate::ipsec::{pod_mtu, BACKEND_TYPE, DEFAULT_ESP_PROPOSAL, MIN_PSK_LEN};

/// The backend's options (Flannel's anonymous config struct).
#[derive(Clone, PartialEq, Eq)]
pub struct IpsecOptions {
    /// `PSK`: the pre-shared key (at least [`MIN_PSK_LEN`] characters).
    pub psk: String,
    /// `UDPEncap`: force ESP in UDP (port 4500) even without NAT.
    pub udp_encap: bool,
    /// `ESPProposal`.
    pub esp_proposal: String,
}

impl std::fmt::Debug for IpsecOptions {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpsecOptions")
            .field(
                "psk",
                &format_args!("<{} characters>", self.psk.chars().count()),
            )
            .field("udp_encap", &self.udp_encap)
            .field("esp_proposal", &self.esp_proposal)
            .finish()
    }
}

const STRUCT: &str = "";

/// Reads the options as Go's `json.Unmarshal` into Flannel's struct would (keys matched
/// case-insensitively), then checks the key length as Flannel does.
pub fn options(raw: &Value) -> Result<IpsecOptions, BackendError> {
    let mut o = IpsecOptions {
        psk: String::new(),
        udp_encap: false,
        esp_proposal: DEFAULT_ESP_PROPOSAL.to_owned(),
    };
    if let Some(obj) = raw.as_object() {
        let decode = |e: gojson::GoJsonError| BackendError::IpsecConfig(e.to_string());
        if let Some(b) = gojson::get_bool(obj, FieldRef::new(STRUCT, "UDPEncap")).map_err(decode)? {
            o.udp_encap = b;
        }
        if let Some(s) =
            gojson::get_string(obj, FieldRef::new(STRUCT, "ESPProposal")).map_err(decode)?
        {
            o.esp_proposal = s;
        }
        if let Some(s) = gojson::get_string(obj, FieldRef::new(STRUCT, "PSK")).map_err(decode)? {
            o.psk = s;
        }
    }
    // Go's len() counts bytes.
    if o.psk.len() < MIN_PSK_LEN {
        return Err(BackendError::IpsecPskTooShort);
    }
    Ok(o)
}

/// The ipsec backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipsec {
    options: IpsecOptions,
    /// The interface MTU.
    mtu: u32,
    /// The lease's `PublicIP` (`--public-ip`, else the interface address).
    public_ip: Ipv4Addr,
}

/// Build it: IPv4 only; reads and checks the options.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    if inputs.network.enable_ipv6 {
        return Err(BackendError::IpsecIpv6);
    }
    let options = options(&inputs.network.backend.raw)?;
    let ext = inputs.ext_iface()?;
    let public_ip = inputs.underlay.public_ip.unwrap_or(ext.addr);
    Ok(Box::new(Ipsec {
        options,
        mtu: ext.mtu,
        public_ip,
    }))
}

impl Backend for Ipsec {
    fn name(&self) -> &'static str {
        "ipsec"
    }

    /// `BackendType: "ipsec"` and no data, as Flannel writes it.
    fn lease_data(&self) -> LeaseData {
        LeaseData {
            backend_type: BACKEND_TYPE,
            ..LeaseData::default()
        }
    }

    fn pod_mtu(&self) -> u32 {
        pod_mtu(self.mtu, self.options.udp_encap)
    }

    /// The policies and SAs are the runtime's, not the planner's kernel state.
    fn has_datapath(&self) -> bool {
        false
    }

    fn runtime(&self) -> Option<RuntimeSpec> {
        Some(RuntimeSpec::Ipsec {
            options: self.options.clone(),
            public_ip: self.public_ip,
        })
    }
}
