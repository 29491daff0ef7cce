//! [`KernelError`]: what went wrong talking rtnetlink, with the operation (as the equivalent
//! `ip` / `bridge` command) or the device it concerned, and errno-based classification.

use std::io;

/// An error from the kernel applier, observer or monitor.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The rtnetlink socket could not be opened or configured.
    #[error("opening an rtnetlink socket: {0}")]
    Connect(io::Error),

    /// A dump (`ip link show`, `ip route show`, …) failed.
    #[error("dumping {what}: {source}")]
    Dump {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },

    /// Looking a device up by name failed for another reason than "no such device".
    #[error("looking up device {name}: {source}")]
    LinkLookup {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },

    /// The kernel refused an operation. `cmd` is the equivalent `ip` / `bridge` command.
    #[error("`{cmd}`: {source}")]
    Op {
        cmd: String,
        #[source]
        source: rtnetlink::Error,
    },

    /// An operation names a device that does not exist.
    #[error("`{cmd}`: device {dev} does not exist")]
    NoSuchDevice { cmd: String, dev: String },

    /// A device of the name flanneld wants exists with another kind, and the kind flanneld
    /// wants is one that leaves such a device alone (Flannel's words for `flannel.ipip`).
    #[error("{dev} isn't an {kind} mode device, please remove device and try again")]
    Foreign {
        /// The device.
        dev: String,
        /// The kind flanneld wants (`ipip`).
        kind: &'static str,
        /// The kind it has (empty when it has none).
        found: String,
    },

    /// An operation that cannot be expressed in netlink (e.g. an IPv4 route via an IPv6
    /// gateway).
    #[error("`{cmd}`: {reason}")]
    Invalid { cmd: String, reason: String },
}

impl KernelError {
    /// The errno the kernel answered with, if this error is a kernel answer.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Dump { source, .. }
            | KernelError::LinkLookup { source, .. }
            | KernelError::Op { source, .. } => source_errno(source),
            KernelError::Connect(e) => e.raw_os_error(),
            KernelError::NoSuchDevice { .. }
            | KernelError::Invalid { .. }
            | KernelError::Foreign { .. } => None,
        }
    }

    /// "Already exists" (`EEXIST`): success for a create.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// "Not there" (`ENOENT`, `ESRCH` for routes, `EADDRNOTAVAIL` for addresses, `ENODEV`, or a
    /// device that does not exist): success for a delete.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KernelError::NoSuchDevice { .. })
            || matches!(
                self.errno(),
                Some(libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL | libc::ENODEV)
            )
    }
}

/// The positive errno inside an rtnetlink error, if it carries one.
pub(crate) fn source_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::ErrorMessage;
    use std::num::NonZeroI32;

    fn nack(errno: i32) -> rtnetlink::Error {
        let mut m = ErrorMessage::default();
        m.code = NonZeroI32::new(-errno);
        rtnetlink::Error::NetlinkError(m)
    }

    fn op(errno: i32) -> KernelError {
        KernelError::Op {
            cmd: "ip route replace 198.18.2.0/24 dev flannel.1".into(),
            source: nack(errno),
        }
    }

    #[test]
    fn classification_by_errno() {
        assert!(op(libc::EEXIST).is_exists());
        assert!(!op(libc::EEXIST).is_not_found());
        for e in [libc::ENOENT, libc::ESRCH, libc::EADDRNOTAVAIL, libc::ENODEV] {
            assert!(op(e).is_not_found(), "errno {e}");
            assert!(!op(e).is_exists(), "errno {e}");
        }
        assert!(!op(libc::EINVAL).is_not_found());
        assert_eq!(op(libc::ENETUNREACH).errno(), Some(libc::ENETUNREACH));
        let missing = KernelError::NoSuchDevice {
            cmd: "ip neigh del 198.18.2.0 dev flannel.1".into(),
            dev: "flannel.1".into(),
        };
        assert!(missing.is_not_found());
        assert_eq!(missing.errno(), None);
    }

    #[test]
    fn message_names_the_command() {
        let text = op(libc::EEXIST).to_string();
        assert!(
            text.starts_with("`ip route replace 198.18.2.0/24 dev flannel.1`: "),
            "{text}"
        );
    }
}
