//! Property tests: round trips of every format and the invariants of configured ranges.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use flannel_model::{LeaseAttrs, NetworkConfig, RawJson, SubnetEnv, SubnetKey};
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use serde_json::Value;

/// IPv6 addresses Flannel prints with colons (not the IPv4-looking forms of
/// `goip::ipv6_to_string`'s quirks), i.e. the ones whose text round-trips through Go.
fn plain_v6(a: &Ipv6Addr) -> bool {
    let v = u128::from(*a);
    a.to_ipv4_mapped().is_none() && !((1u128 << 24)..(1u128 << 32)).contains(&v)
}

fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        // Many zero groups, to exercise "::" compression.
        (any::<u16>(), any::<u16>(), 0usize..8, 0usize..8).prop_map(|(x, y, i, j)| {
            let mut s = [0u16; 8];
            s[i] = x;
            s[j] = y;
            Ipv6Addr::from(s)
        }),
    ]
    .prop_filter("plain IPv6 text", plain_v6)
}

fn key_v4() -> impl Strategy<Value = Ipv4Net> {
    // Go parses key prefix lengths with ParseUint(…, 5): at most /31.
    (any_v4(), 0u8..=31).prop_map(|(a, p)| Ipv4Net::new(a, p).unwrap().trunc())
}

fn key_v6() -> impl Strategy<Value = Ipv6Net> {
    (any_v6(), 1u8..=127)
        .prop_map(|(a, p)| Ipv6Net::new(a, p).unwrap().trunc())
        .prop_filter("plain IPv6 text", |n| plain_v6(&n.addr()))
}

fn subnet_key() -> impl Strategy<Value = SubnetKey> {
    (key_v4(), proptest::option::of(key_v6())).prop_map(|(ipv4, ipv6)| SubnetKey { ipv4, ipv6 })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".*".prop_map(Value::String),
        "[<>&\"\\\\\u{2028}\u{2029}a\n\t]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn lease_attrs() -> impl Strategy<Value = LeaseAttrs> {
    (
        any_v4(),
        proptest::option::of(any_v6()),
        prop_oneof![
            Just(String::new()),
            Just("vxlan".to_string()),
            ".*".prop_map(|s: String| s)
        ],
        proptest::option::of(json_value()),
        proptest::option::of(json_value()),
    )
        .prop_map(
            |(public_ip, public_ipv6, backend_type, data, data6)| LeaseAttrs {
                public_ip,
                public_ipv6,
                backend_type,
                backend_data: data.as_ref().map(RawJson::from_value),
                backend_v6_data: data6.as_ref().map(RawJson::from_value),
            },
        )
}

fn config_key() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "EnableIPv4",
            "EnableIPv6",
            "EnableNFTables",
            "Network",
            "IPv6Network",
            "SubnetMin",
            "SubnetMax",
            "IPv6SubnetMin",
            "IPv6SubnetMax",
            "SubnetLen",
            "IPv6SubnetLen",
            "Backend",
            "Other",
        ]),
        any::<bool>(),
    )
        .prop_map(|(k, lower)| {
            if lower {
                k.to_lowercase()
            } else {
                k.to_string()
            }
        })
}

fn config_value() -> impl Strategy<Value = String> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        (0u32..140).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        (any_v4(), 0u8..=32).prop_map(|(a, p)| format!("\"{a}/{p}\"")),
        (any_v6(), 0u8..=128).prop_map(|(a, p)| format!("\"{a}/{p}\"")),
        any_v4().prop_map(|a| format!("\"{a}\"")),
        any_v6().prop_map(|a| format!("\"{a}\"")),
        "\"10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.0(/[0-9]{1,2})?\"",
        Just(r#"{"Type":"vxlan"}"#.to_string()),
    ]
}

fn any_v4_net() -> impl Strategy<Value = Ipv4Net> {
    (any_v4(), 0u8..=32).prop_map(|(a, p)| Ipv4Net::new(a, p).unwrap())
}

fn any_v6_net() -> impl Strategy<Value = Ipv6Net> {
    (any_v6(), 0u8..=128).prop_map(|(a, p)| Ipv6Net::new(a, p).unwrap())
}

fn subnet_env() -> impl Strategy<Value = SubnetEnv> {
    (
        proptest::option::of(any_v4_net()),
        proptest::option::of(any_v4_net()),
        proptest::option::of(any_v6_net()),
        proptest::option::of(any_v6_net()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(network, subnet, ipv6_network, ipv6_subnet, mtu, ipmasq)| SubnetEnv {
                network,
                subnet,
                ipv6_network,
                ipv6_subnet,
                mtu,
                ipmasq,
            },
        )
}

proptest! {
    #[test]
    fn key_display_parse_round_trip(key in subnet_key()) {
        let text = key.to_string();
        prop_assert_eq!(text.parse::<SubnetKey>().unwrap(), key);
        prop_assert!(!text.chars().any(|c| c.is_ascii_uppercase()));
        for prefix in ["/coreos.com/network", "/a/b/", ""] {
            prop_assert_eq!(SubnetKey::from_key_path(&key.key_path(prefix), prefix).unwrap(), key);
        }
    }

    #[test]
    fn key_parse_never_panics_and_is_stable(
        s in prop_oneof![".{0,40}", "[0-9a-fA-F:.&x-]{0,30}", "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}-[0-9]{1,3}(&[0-9a-f:]{1,12}-[0-9]{1,3})?"]
    ) {
        if let Ok(key) = s.parse::<SubnetKey>() {
            prop_assert_eq!(key.ipv4.trunc(), key.ipv4);
            prop_assert_eq!(key.to_string().parse::<SubnetKey>().unwrap(), key);
        }
    }

    #[test]
    fn lease_json_round_trip(attrs in lease_attrs()) {
        let json = attrs.to_json();
        let back = LeaseAttrs::from_json(json.as_bytes()).unwrap();
        prop_assert_eq!(&back, &attrs);
        prop_assert_eq!(back.to_json(), json.clone());
        // Always valid JSON, with the fields in Go's order.
        let v: Value = serde_json::from_str(&json).unwrap();
        prop_assert!(v.is_object());
        prop_assert!(json.starts_with(r#"{"PublicIP":""#), "field order: {}", json);
        // Marshal's HTML escaping: none of these characters appear raw.
        let raw_html = json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']);
        prop_assert!(!raw_html, "unescaped HTML characters in {}", json);
    }

    #[test]
    fn lease_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = LeaseAttrs::from_json(&bytes);
    }

    #[test]
    fn raw_json_compaction_is_idempotent(v in json_value()) {
        let raw = RawJson::from_value(&v);
        prop_assert_eq!(RawJson::new(raw.as_str()).unwrap(), raw.clone());
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert_eq!(RawJson::new(&pretty).unwrap(), raw.clone());
        prop_assert_eq!(raw.to_value().unwrap(), v);
    }

    #[test]
    fn subnet_env_round_trip(env in subnet_env()) {
        let text = env.render();
        let plain = env.ipv6_network.is_none_or(|n| plain_v6(&n.addr()))
            && env.ipv6_subnet.is_none_or(|n| plain_v6(&n.addr()));
        if plain {
            prop_assert_eq!(SubnetEnv::parse(&text), env);
        }
        prop_assert!(text.is_empty() || text.ends_with('\n'));
    }

    #[test]
    fn config_parse_never_panics(s in ".{0,60}") {
        if let Ok(mut c) = NetworkConfig::parse(&s) {
            let _ = c.check();
        }
    }

    #[test]
    fn config_fuzz_checked_ranges_are_sound(
        members in prop::collection::vec((config_key(), config_value()), 0..8)
    ) {
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
            .collect();
        let json = format!("{{{}}}", body.join(","));
        let Ok(mut c) = NetworkConfig::parse(&json) else { return Ok(()) };
        if c.check().is_err() {
            return Ok(());
        }
        if c.enable_ipv4 {
            let r = c.ipv4_range().unwrap();
            for n in [r.min, r.max] {
                prop_assert_eq!(n.trunc(), n);
                prop_assert!(r.network.contains(&n.addr()));
            }
        }
        if c.enable_ipv6 {
            let r = c.ipv6_range().unwrap();
            for n in [r.min, r.max] {
                prop_assert_eq!(n.trunc(), n);
                prop_assert!(r.network.contains(&n.addr()));
            }
        }
    }

    #[test]
    fn v4_ranges_are_aligned_and_inside(
        addr in any_v4(),
        prefix in 1u8..=28,
        extra in proptest::option::of(2u8..=8),
    ) {
        let network = Ipv4Net::new(addr, prefix).unwrap().trunc();
        let len = extra.map(|e| (prefix + e).min(30));
        let json = match len {
            Some(l) => format!(r#"{{"Network":"{network}","SubnetLen":{l}}}"#),
            None => format!(r#"{{"Network":"{network}"}}"#),
        };
        let mut c = NetworkConfig::parse(&json).unwrap();
        c.check().unwrap();
        let r = c.ipv4_range().unwrap();
        prop_assert_eq!(r.network, network);
        if let Some(l) = len {
            prop_assert_eq!(r.subnet_len, l);
        }
        prop_assert!(r.subnet_len >= prefix + 2 && r.subnet_len <= 30);
        for n in [r.min, r.max] {
            prop_assert_eq!(n.prefix_len(), r.subnet_len);
            prop_assert_eq!(n.trunc(), n);
            prop_assert!(network.contains(&n));
        }
        prop_assert!(r.min < r.max);
        // Min skips the first subnet, max is the last one.
        let size = 1u64 << (32 - r.subnet_len);
        prop_assert_eq!(u64::from(u32::from(r.min.addr())), u64::from(u32::from(network.addr())) + size);
        prop_assert_eq!(r.max.broadcast(), network.broadcast());
        // Explicit bounds at the defaults give the same range.
        let json2 = format!(
            r#"{{"Network":"{network}","SubnetLen":{},"SubnetMin":"{}","SubnetMax":"{}"}}"#,
            r.subnet_len, r.min.addr(), r.max.addr()
        );
        let mut c2 = NetworkConfig::parse(&json2).unwrap();
        c2.check().unwrap();
        prop_assert_eq!(c2.ipv4_range().unwrap(), r);
    }

    #[test]
    fn v6_ranges_are_aligned_and_inside(
        addr in any::<u128>(),
        prefix in 1u8..=124,
        extra in proptest::option::of(2u8..=16),
    ) {
        let network = Ipv6Net::new(Ipv6Addr::from(addr), prefix).unwrap().trunc();
        let len = extra.map(|e| (prefix + e).min(126));
        let json = match len {
            Some(l) => format!(
                r#"{{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"{network}","IPv6SubnetLen":{l}}}"#
            ),
            None => format!(r#"{{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"{network}"}}"#),
        };
        let mut c = NetworkConfig::parse(&json).unwrap();
        c.check().unwrap();
        prop_assert_eq!(c.ipv4_range(), None);
        let r = c.ipv6_range().unwrap();
        prop_assert_eq!(r.network, network);
        prop_assert!(r.subnet_len >= prefix + 2 && r.subnet_len <= 126);
        for n in [r.min, r.max] {
            prop_assert_eq!(n.prefix_len(), r.subnet_len);
            prop_assert_eq!(n.trunc(), n);
            prop_assert!(network.contains(&n));
        }
        prop_assert!(r.min < r.max);
        prop_assert_eq!(r.max.broadcast(), network.broadcast());
    }
}

proptest! {
    /// A key is in scope exactly when its IPv4 part is a /SubnetLen inside Network.
    #[test]
    fn lease_scope_is_containment_with_exact_length(
        net in (any_v4(), 8u8..=28).prop_map(|(a, p)| Ipv4Net::new(a, p).unwrap().trunc()),
        extra in 2u8..=4,
        key in key_v4(),
    ) {
        let len = (net.prefix_len() + extra).min(30);
        let scope = flannel_model::LeaseScope::new(Some((net, len)), None);
        let want = key.prefix_len() == len && net.contains(&key);
        prop_assert_eq!(scope.check(&SubnetKey::v4(key)).is_ok(), want);
    }

    /// A checked config never has SubnetMin above SubnetMax.
    #[test]
    fn checked_ranges_are_never_inverted(
        min in 0u32..256, max in 0u32..256,
    ) {
        let json = format!(
            r#"{{"Network":"198.18.0.0/16","SubnetMin":"198.18.{min}.0","SubnetMax":"198.18.{max}.0"}}"#
        );
        let mut c = NetworkConfig::parse(&json).unwrap();
        match c.check().map(|()| c.ipv4_range().unwrap()) {
            Ok(r) => prop_assert!(min <= max && r.min.addr() <= r.max.addr()),
            Err(e) => prop_assert!(min > max && e.to_string().contains("is above SubnetMax"), "{}", e),
        }
    }
}
