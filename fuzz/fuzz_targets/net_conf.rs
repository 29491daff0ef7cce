//! net-conf.json / `<prefix>/config`: [`NetworkConfig::parse`] then [`NetworkConfig::check`]
//! on any text.
//!
//! Checks: no panic; `check` is idempotent (a checked config checks again, unchanged); after
//! a successful check every enabled family has an allocation range whose `SubnetMin` and
//! `SubnetMax` are `/SubnetLen` subnets inside the network, and `SubnetLen` leaves room for
//! at least four subnets (Go's `SubnetLen >= prefix + 2` rule).
#![no_main]

use flannel_model::NetworkConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(mut cfg) = NetworkConfig::parse(&text) else {
        return;
    };
    let _ = cfg.ip_stack();
    let _ = cfg.backend_type();
    if cfg.check().is_err() {
        return;
    }
    let checked = cfg.clone();
    cfg.check().expect("a checked config checks again");
    assert_eq!(cfg, checked, "check is not idempotent");

    if cfg.enable_ipv4 {
        let r = cfg.ipv4_range().expect("checked IPv4 config has a range");
        assert!(r.subnet_len >= r.network.prefix_len() + 2);
        for n in [r.min, r.max] {
            assert_eq!(n.prefix_len(), r.subnet_len);
            assert_eq!(n.trunc(), n, "range bound {n} is not a subnet boundary");
            assert!(r.network.contains(&n), "{n} outside {}", r.network);
        }
    }
    if cfg.enable_ipv6 {
        let r = cfg.ipv6_range().expect("checked IPv6 config has a range");
        assert!(r.subnet_len >= r.network.prefix_len() + 2);
        for n in [r.min, r.max] {
            assert_eq!(n.prefix_len(), r.subnet_len);
            assert_eq!(n.trunc(), n, "range bound {n} is not a subnet boundary");
            assert!(r.network.contains(&n), "{n} outside {}", r.network);
        }
    }
});
