//! Lease values (`<prefix>/subnets/<key>` in etcd): [`LeaseAttrs::from_json`] on any bytes,
//! and [`RawJson::new`] (the backend data) on any text.
//!
//! Checks: no panic; what we write reads back as the same lease (parse → `to_json` → parse
//! gives equal attributes, and `to_json` is then a fixpoint). The one documented exception is
//! a `PublicIPv6` that Flannel prints in IPv4 form (`::ffff:a.b.c.d`, `::100:0`–`::ffff:ffff`):
//! it reads back as the IPv4-mapped address, so the attributes are compared after that
//! normalisation. Raw JSON is compacted once: compacting it again changes nothing.
#![no_main]

use flannel_model::goip::{ipv6_to_string, parse_ip6};
use flannel_model::{LeaseAttrs, RawJson};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(raw) = RawJson::new(text) {
            let again = RawJson::new(raw.as_str()).expect("compacted JSON is JSON");
            assert_eq!(again, raw, "compacting is not idempotent");
        }
    }

    let Ok(attrs) = LeaseAttrs::from_json(data) else {
        return;
    };
    let json = attrs.to_json();
    let back = LeaseAttrs::from_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("our own lease JSON {json} does not parse: {e}"));
    assert_eq!(back.to_json(), json, "to_json is not a fixpoint");

    let mut expected = attrs.clone();
    expected.public_ipv6 = attrs
        .public_ipv6
        .map(|a| parse_ip6(&ipv6_to_string(a)).expect("printed IPv6 parses"));
    assert_eq!(back, expected, "lease JSON round trip");
});
