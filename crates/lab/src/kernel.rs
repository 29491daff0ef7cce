//! Which kernel a lab runs on: the kernel features a backend needs ([`KernelNeed`]), a plain
//! probe for each on the running kernel, and where the lab goes ([`place`]): here, or inside
//! Debian's packaged kernel under qemu (flannelctl does that part, with `flannel-vmkernel`).
//!
//! A probe does what flanneld would do, in a throw-away network namespace (`unshare --net`,
//! gone when the probe exits), so it never touches the machine's own interfaces: creating an
//! ipip link (the kernel loads `ipip` on demand if it can; `local` set, or it would clash with
//! the `tunl0` the module creates), adding an ESP SA with Flannel's default ESP proposal
//! (AES-GCM: `esp4` and the crypto modules; a kernel can have XFRM netlink without ESP, as
//! this machine's does). A failing probe means the backend cannot run on this kernel.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::error::{LabError, Result};
use crate::spec::Backend;
use flannel_sandbox::cmd;

/// How long one probe may take: under emulation, loading `esp4` and the AES-GCM modules on
/// demand took 10–30 s (a kernel without them fails at once).
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// A kernel feature a backend needs and this machine's kernel may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelNeed {
    /// The module that provides it (what the message names).
    pub module: &'static str,
    /// The probe, run inside `unshare --net`: it succeeds only when the kernel has the
    /// feature.
    pub probe: &'static [&'static str],
}

impl Backend {
    /// What the backend needs from the kernel beyond what every lab needs (veth, bridge,
    /// namespaces): ipip the `ipip` module, ipsec ESP with AES-GCM (`esp4`). wireguard needs
    /// nothing: flanneld runs WireGuard in userspace where the kernel has no module.
    pub fn kernel_need(&self) -> Option<KernelNeed> {
        match self {
            Backend::Ipip => Some(KernelNeed {
                module: "ipip",
                probe: &[
                    "ip",
                    "link",
                    "add",
                    "frsprobe0",
                    "type",
                    "ipip",
                    "local",
                    "192.0.2.1",
                ],
            }),
            Backend::Ipsec => Some(KernelNeed {
                module: "esp4",
                // aes128gcm16: a 128-bit key and a 32-bit salt, a 128-bit ICV (a probe's key,
                // gone with its namespace).
                probe: &[
                    "ip",
                    "xfrm",
                    "state",
                    "add",
                    "src",
                    "192.0.2.1",
                    "dst",
                    "192.0.2.2",
                    "proto",
                    "esp",
                    "spi",
                    "0x100",
                    "reqid",
                    "11",
                    "mode",
                    "tunnel",
                    "aead",
                    "rfc4106(gcm(aes))",
                    "0x0102030405060708091011121314151617181920",
                    "128",
                ],
            }),
            _ => None,
        }
    }
}

/// Which kernel the user asked for (`--kernel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// This machine's kernel when it has what the backends need, else Debian's under qemu.
    #[default]
    Auto,
    /// This machine's kernel, whatever it lacks (an error names what is missing).
    This,
    /// Debian's packaged kernel under qemu, always.
    Debian,
}

impl KernelChoice {
    /// Every choice, as `--kernel` takes it.
    pub const ALL: [KernelChoice; 3] =
        [KernelChoice::Auto, KernelChoice::This, KernelChoice::Debian];

    /// The `--kernel` word.
    pub fn as_str(&self) -> &'static str {
        match self {
            KernelChoice::Auto => "auto",
            KernelChoice::This => "this",
            KernelChoice::Debian => "debian",
        }
    }
}

impl fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KernelChoice {
    type Err = LabError;
    fn from_str(s: &str) -> Result<KernelChoice> {
        KernelChoice::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                LabError::Invalid(format!("unknown kernel {s:?} (auto, this or debian)"))
            })
    }
}

/// Where a lab (or a demo) runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this machine's kernel.
    Here,
    /// Inside Debian's kernel under qemu; `why` says what this kernel lacks (empty when the
    /// user asked for it with `--kernel debian`).
    Guest {
        /// `this kernel has no ipip module`, or empty.
        why: String,
    },
}

/// The backends among `backends` whose [`KernelNeed`] `has` says this kernel lacks, each
/// with its need, in order (each backend once).
pub fn missing(
    backends: &[Backend],
    mut has: impl FnMut(&KernelNeed) -> bool,
) -> Vec<(Backend, KernelNeed)> {
    let mut out: Vec<(Backend, KernelNeed)> = Vec::new();
    for b in backends {
        if out.iter().any(|(seen, _)| seen == b) {
            continue;
        }
        if let Some(need) = b.kernel_need() {
            if !has(&need) {
                out.push((*b, need));
            }
        }
    }
    out
}

/// `no ipip module (backend ipip) and no esp4 module (backend ipsec)`.
fn lacking(missing: &[(Backend, KernelNeed)]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|(b, n)| format!("no {} module (backend {b})", n.module))
        .collect();
    parts.join(" and ")
}

/// Where the lab goes, given the user's choice and what this kernel lacks ([`missing`]).
/// `--kernel this` with something missing is [`LabError::KernelLacks`].
pub fn place(choice: KernelChoice, missing: &[(Backend, KernelNeed)]) -> Result<Placement> {
    match choice {
        KernelChoice::Debian => Ok(Placement::Guest { why: String::new() }),
        KernelChoice::Auto if missing.is_empty() => Ok(Placement::Here),
        KernelChoice::Auto => Ok(Placement::Guest {
            why: format!("this kernel has {}", lacking(missing)),
        }),
        KernelChoice::This if missing.is_empty() => Ok(Placement::Here),
        KernelChoice::This => Err(LabError::KernelLacks {
            detail: lacking(missing),
        }),
    }
}

/// Whether the running kernel has `need`: its probe, inside a network namespace of its own
/// that goes when the probe ends (needs root).
pub fn kernel_has(need: &KernelNeed) -> bool {
    let mut args = vec!["--net", "--"];
    args.extend_from_slice(need.probe);
    cmd::run(cmd::command("unshare", &args), None, PROBE_TIMEOUT)
        .is_ok_and(|out| out.status.success())
}

/// [`missing`] with the real probes on the running kernel.
pub fn missing_here(backends: &[Backend]) -> Vec<(Backend, KernelNeed)> {
    missing(backends, kernel_has)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_ipip_and_ipsec_need_a_module() {
        let needing: Vec<Backend> = Backend::ALL
            .into_iter()
            .filter(|b| b.kernel_need().is_some())
            .collect();
        assert_eq!(needing, [Backend::Ipip, Backend::Ipsec]);
        assert_eq!(Backend::Ipip.kernel_need().unwrap().module, "ipip");
        assert_eq!(Backend::Ipsec.kernel_need().unwrap().module, "esp4");
    }

    #[test]
    fn missing_asks_once_per_backend() {
        let mut asked = Vec::new();
        let got = missing(
            &[
                Backend::Vxlan,
                Backend::Ipip,
                Backend::Ipsec,
                Backend::Ipip,
                Backend::Wireguard,
            ],
            |n| {
                asked.push(n.module);
                n.module != "ipip"
            },
        );
        assert_eq!(asked, ["ipip", "esp4"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Backend::Ipip);
        assert!(missing(&[Backend::Vxlan, Backend::Udp], |_| false).is_empty());
    }

    #[test]
    fn placement_follows_the_choice_and_the_kernel() {
        let none: Vec<(Backend, KernelNeed)> = Vec::new();
        let ipip = missing(&[Backend::Ipip, Backend::Ipsec], |_| false);
        assert_eq!(place(KernelChoice::Auto, &none).unwrap(), Placement::Here);
        assert_eq!(place(KernelChoice::This, &none).unwrap(), Placement::Here);
        assert_eq!(
            place(KernelChoice::Debian, &none).unwrap(),
            Placement::Guest { why: String::new() }
        );
        assert_eq!(
            place(KernelChoice::Auto, &ipip).unwrap(),
            Placement::Guest {
                why: "this kernel has no ipip module (backend ipip) and no esp4 module \
                      (backend ipsec)"
                    .into()
            }
        );
        let e = place(KernelChoice::This, &ipip[..1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "this kernel has no ipip module (backend ipip): run the lab with --kernel debian \
             (or auto) to use Debian's kernel under qemu"
        );
    }

    #[test]
    fn kernel_choices_parse_and_print() {
        for k in KernelChoice::ALL {
            assert_eq!(k.as_str().parse::<KernelChoice>().unwrap(), k);
        }
        assert_eq!(KernelChoice::default(), KernelChoice::Auto);
        assert!("host".parse::<KernelChoice>().is_err());
    }
}
