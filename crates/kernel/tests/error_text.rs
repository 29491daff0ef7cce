//! Error messages say each cause once: a variant whose message includes its cause does not
//! also expose it as `source()`, so printing the chain (`{:#}` of an anyhow error, as flanneld
//! does for fatal errors) does not repeat it.

use std::error::Error;

use flannel_kernel::iface::{IfaceError, LookupError};
use flannel_kernel::KernelError;

/// The message followed by every `source()`, as anyhow's `{:#}` prints it.
fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[test]
fn no_default_route_is_said_once() {
    let err = IfaceError::NoValidInterface(LookupError::DefaultRoute {
        reason: "unable to find default route".into(),
    });
    assert_eq!(
        chain(&err),
        "Failed to find any valid interface to use: failed to get default interface: \
         unable to find default route"
    );
}

#[test]
fn socket_errors_are_said_once() {
    let denied = || std::io::Error::from_raw_os_error(13);
    assert_eq!(
        chain(&IfaceError::Connection(denied())),
        "cannot open rtnetlink socket: Permission denied (os error 13)"
    );
    assert_eq!(
        chain(&KernelError::Connect(denied())),
        "opening an rtnetlink socket: Permission denied (os error 13)"
    );
}
