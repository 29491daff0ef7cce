//! The vxlan tx checksum offload bug (Flannel #1279, #2152): on kernels before 5.7, a vxlan
//! packet whose outer UDP checksum was left to offload is sent with a wrong checksum once
//! netfilter NATs it (the fix, "netfilter: nat: never update the UDP checksum when it's 0",
//! is in 5.7). Peers drop those packets, and connections stall for about a minute. The known
//! workaround is to turn off `tx-checksum-ip-generic` on the vxlan device. Go Flannel leaves
//! offloads alone (its PR #1282 was not merged); flanneld applies the workaround itself
//! (`--vxlan-tx-checksum-fix`), and `flannelctl doctor` reports the condition.

/// The first kernel release with the fix.
pub const FIXED_IN: (u32, u32) = (5, 7);

/// The ethtool feature to turn off.
pub const FEATURE: &str = "tx-checksum-ip-generic";

/// `(major, minor)` of a `uname -r` string such as `5.4.0-150-generic`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether this kernel release has the bug (an unreadable release is assumed fixed).
pub fn kernel_has_bug(release: &str) -> bool {
    parse_release(release).is_some_and(|v| v < FIXED_IN)
}

/// Whether flanneld should turn tx checksum offload off on a vxlan device: the fix is
/// enabled, the kernel has the bug, and the offload is on (or unknown).
pub fn should_disable(fix_enabled: bool, release: &str, tx_on: Option<bool>) -> bool {
    fix_enabled && kernel_has_bug(release) && tx_on != Some(false)
}

/// `tx-checksum-ip-generic` from `ethtool -k <dev>` output: `Some(true)` for `on`.
pub fn parse_ethtool_features(text: &str) -> Option<bool> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(FEATURE)?.strip_prefix(':')?;
        Some(rest.trim_start().starts_with("on"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_before_5_7_have_the_bug() {
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert!(kernel_has_bug("5.4.0-150-generic"));
        assert!(kernel_has_bug("4.19.0"));
        assert!(kernel_has_bug("3.10.0-1160.el7.x86_64"));
        assert!(!kernel_has_bug("5.7.0"));
        assert!(!kernel_has_bug("6.18.44-fc-v1045"));
        assert!(!kernel_has_bug("garbage"));
    }

    #[test]
    fn only_a_buggy_kernel_with_offload_on_is_fixed() {
        assert!(should_disable(true, "5.4.0", Some(true)));
        assert!(should_disable(true, "5.4.0", None));
        assert!(!should_disable(true, "5.4.0", Some(false)));
        assert!(!should_disable(false, "5.4.0", Some(true)));
        assert!(!should_disable(true, "6.1.0", Some(true)));
    }

    #[test]
    fn reads_ethtool_output() {
        let on = "Features for flannel.1:\nrx-checksumming: on\ntx-checksumming: on\n\ttx-checksum-ipv4: off [fixed]\n\ttx-checksum-ip-generic: on\n";
        assert_eq!(parse_ethtool_features(on), Some(true));
        let off = "tx-checksumming: off\n\ttx-checksum-ip-generic: off\n";
        assert_eq!(parse_ethtool_features(off), Some(false));
        assert_eq!(parse_ethtool_features("nothing"), None);
    }
}
