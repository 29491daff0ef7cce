//! Writing per-device sysctls through `/proc/sys` (of the calling thread's network namespace).
//!
//! Only what the applier needs: `net/ipv6/conf/<dev>/accept_ra = 0` on the vxlan devices it
//! creates, as Flannel does, so a router advertisement arriving over the overlay can never add
//! addresses or routes to them.

use std::io;
use std::path::PathBuf;

/// `/proc/sys/<key>`; `key` uses `/` separators (a device name may contain dots:
/// `net/ipv6/conf/flannel-v6.1/accept_ra`).
pub fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key)
}

/// Write `value` to the sysctl `key` (see [`path`]).
pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value)
}

/// Read the sysctl `key` (trimmed).
pub fn read(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path(key))?.trim().to_owned())
}

/// The `accept_ra` sysctl of `dev`.
pub fn accept_ra_key(dev: &str) -> String {
    format!("net/ipv6/conf/{dev}/accept_ra")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_dots_in_device_names() {
        assert_eq!(
            path(&accept_ra_key("flannel-v6.1")),
            PathBuf::from("/proc/sys/net/ipv6/conf/flannel-v6.1/accept_ra")
        );
    }
}
