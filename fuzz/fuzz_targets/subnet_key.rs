//! Subnet keys (`10.5.34.0-24[&fd00::-64]`, Go `ParseSubnetKey`) and key paths
//! (`<prefix>/subnets/<key>`).
//!
//! Input: the first line is an etcd prefix, the rest a key path (or, for `from_str`, a key).
//! Checks: no panic; a parsed key is canonical and reads back from its own text and its own
//! key path under the same prefix. The one exception kept from Flannel: an IPv6 part that Go
//! prints in IPv4 form (`::ffff:a.b.c.d/96+`, `::100:0/104+`…) makes a key that Flannel's own
//! regex cannot read; such keys only get the no-panic check.
#![no_main]

use flannel_model::goip::ipv6_to_string;
use flannel_model::SubnetKey;
use libfuzzer_sys::fuzz_target;

fn check_round_trip(key: SubnetKey, prefix: &str) {
    assert_eq!(key.ipv4.trunc(), key.ipv4, "non-canonical IPv4 part");
    if let Some(v6) = key.ipv6 {
        assert_eq!(v6.trunc(), v6, "non-canonical IPv6 part");
        if ipv6_to_string(v6.addr()).contains('.') {
            return;
        }
    }
    let text = key.to_string();
    let again: SubnetKey = text
        .parse()
        .unwrap_or_else(|e| panic!("our own key {text:?} does not parse: {e}"));
    assert_eq!(again, key, "key text round trip");
    let path = key.key_path(prefix);
    let again = SubnetKey::from_key_path(&path, prefix)
        .unwrap_or_else(|e| panic!("our own key path {path:?} does not parse: {e}"));
    assert_eq!(again, key, "key path round trip");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, rest) = text
        .split_once('\n')
        .unwrap_or(("/coreos.com/network", text));
    if let Ok(key) = rest.parse::<SubnetKey>() {
        check_round_trip(key, prefix);
    }
    if let Ok(key) = SubnetKey::from_key_path(rest, prefix) {
        check_round_trip(key, prefix);
    }
});
