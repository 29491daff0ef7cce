//! `extension`: the operator's own commands instead of a datapath (see [`crate::extension`]
//! for which command runs when, and with what). flanneld programs nothing in the kernel for
//! it; the commands run in the daemon's runtime ([`RuntimeSpec::Extension`]). Pods get the
//! external interface's MTU; `PublicIP` is the interface's address, not `--public-ip`, as in
//! Flannel.

use std::net::Ipv4Addr;

use flannel_model::gojson::{self, FieldRef};

use crate::backend::{Backend, BackendError, Inputs, LeaseData, RuntimeSpec};
use crate::extension::{Commands, ExtensionSpec, BACKEND_TYPE, COMMAND_TIMEOUT};

/// The extension backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    spec: ExtensionSpec,
    mtu: u32,
}

/// Build it: reads the four commands.
pub fn build(inputs: &Inputs<'_>) -> Result<Box<dyn Backend>, BackendError> {
    let mut commands = Commands::default();
    if let Some(obj) = inputs.network.backend.raw.as_object() {
        for (name, slot) in [
            ("PreStartupCommand", &mut commands.pre_startup),
            ("PostStartupCommand", &mut commands.post_startup),
            ("SubnetAddCommand", &mut commands.subnet_add),
            ("SubnetRemoveCommand", &mut commands.subnet_remove),
        ] {
            if let Some(s) = gojson::get_string(obj, FieldRef::new("", name))
                .map_err(|e| BackendError::ExtensionConfig(e.to_string()))?
            {
                *slot = s;
            }
        }
    }
    let ext = inputs.ext_iface()?;
    Ok(Box::new(Extension {
        spec: ExtensionSpec {
            commands,
            network: inputs.network.network,
            public_ip: ext.addr,
            public_ipv6: ext.addr_v6,
            timeout: COMMAND_TIMEOUT,
        },
        mtu: ext.mtu,
    }))
}

impl Backend for Extension {
    fn name(&self) -> &'static str {
        BACKEND_TYPE
    }

    /// `BackendType:"extension"`; the `BackendData` is the pre start-up command's output,
    /// which the runtime fills in.
    fn lease_data(&self) -> LeaseData {
        LeaseData {
            backend_type: BACKEND_TYPE,
            public_ipv6: self.spec.public_ipv6,
            ..LeaseData::default()
        }
    }

    fn public_ip(&self) -> Option<Ipv4Addr> {
        Some(self.spec.public_ip)
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn has_datapath(&self) -> bool {
        false
    }

    fn runtime(&self) -> Option<RuntimeSpec> {
        Some(RuntimeSpec::Extension(self.spec.clone()))
    }
}
