use super::*;
use flannel_model::LeaseAttrs;
use proptest::prelude::*;

fn spec(commands: Commands) -> ExtensionSpec {
    ExtensionSpec {
        commands,
        network: Some("198.18.0.0/16".parse().expect("net")),
        public_ip: Ipv4Addr::new(192, 0, 2, 1),
        public_ipv6: None,
        timeout: COMMAND_TIMEOUT,
    }
}

fn all_commands() -> Commands {
    Commands {
        pre_startup: "/bin/pre".into(),
        post_startup: "/bin/post $SUBNET".into(),
        subnet_add: "/bin/add ${SUBNET} via $PUBLIC_IP".into(),
        subnet_remove: "/bin/remove $SUBNET".into(),
    }
}

fn own() -> SubnetKey {
    SubnetKey {
        ipv4: "198.18.1.0/24".parse().expect("net"),
        ipv6: None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn lease(subnet: &str, ip: u8, backend: &str, data: Option<&str>) -> Lease {
    Lease {
        subnet: SubnetKey {
            ipv4: subnet.parse().expect("net"),
            ipv6: None,
        },
        attrs: LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 0, 2, ip),
            public_ipv6: None,
            backend_type: backend.into(),
            backend_data: data.map(|d| RawJson::new(d).expect("json")),
            backend_v6_data: None,
        },
        expiration: None,
    }
}

fn peer(subnet: &str, ip: u8, data: &str) -> Peer {
    Peer {
        subnet: subnet.parse().expect("net"),
        public_ip: Ipv4Addr::new(192, 0, 2, ip),
        data: data.into(),
    }
}

fn peers(list: &[Peer]) -> BTreeMap<Ipv4Net, Peer> {
    list.iter().map(|p| (p.subnet, p.clone())).collect()
}

fn summary(invs: &[Invocation]) -> Vec<String> {
    invs.iter()
        .map(|i| format!("{} {}", i.program, i.args.join(" ")))
        .collect()
}

#[test]
fn expansion_follows_gos_os_expand() {
    let env = |k: &str| match k {
        "A" => "x".to_owned(),
        "AB_1" => "long".to_owned(),
        "1" => "one".to_owned(),
        "?" => "q".to_owned(),
        _ => String::new(),
    };
    for (input, want) in [
        ("plain", "plain"),
        ("$A", "x"),
        ("${A}", "x"),
        ("$AB_1-tail", "long-tail"),
        ("${AB_1}tail", "longtail"),
        ("pre$A.post", "prex.post"),
        ("$1$?", "oneq"),
        ("${?}", "q"),
        ("$", "$"),
        ("end$", "end$"),
        ("$.", "$."),
        ("a${}b", "ab"),
        ("a${A", "aA"),
        ("$UNSET", ""),
        ("$$", ""),
        ("été$A", "étéx"),
    ] {
        assert_eq!(expand(input, &env), want, "{input}");
    }
}

#[test]
fn commands_split_on_whitespace_and_expand_each_word_without_a_shell() {
    let s = spec(Commands {
        subnet_add: "  /usr/bin/env\tX=$SUBNET  'quoted word' ; $PUBLIC_IP $HOME ".into(),
        ..Commands::default()
    });
    let environ = |k: &str| (k == "HOME").then(|| "/root".to_owned());
    let inv = s
        .subnet(Hook::SubnetAdd, &peer("198.18.2.0/24", 2, "data"), &environ)
        .expect("configured");
    assert_eq!(inv.program, "/usr/bin/env");
    assert_eq!(
        inv.args,
        [
            "X=198.18.2.0/24",
            "'quoted",
            "word'",
            ";",
            "192.0.2.2",
            "/root"
        ]
    );
    assert_eq!(
        inv.env,
        [
            ("SUBNET".to_owned(), "198.18.2.0/24".to_owned()),
            ("PUBLIC_IP".to_owned(), "192.0.2.2".to_owned()),
        ]
    );
    assert_eq!(inv.stdin, "data\n");
    let blank = spec(Commands {
        subnet_add: " \t ".into(),
        ..Commands::default()
    });
    assert_eq!(
        blank.subnet(Hook::SubnetAdd, &peer("198.18.2.0/24", 2, ""), &no_env),
        None
    );
}

#[test]
fn post_startup_gets_gos_variables_and_spellings_of_absent_values() {
    let mut s = spec(all_commands());
    let inv = s.post_startup(&own(), &no_env).expect("configured");
    assert_eq!(inv.args, ["198.18.1.0/24"]);
    let env: Vec<String> = inv.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        env,
        [
            "NETWORK=198.18.0.0/16",
            "SUBNET=198.18.1.0/24",
            "IPV6SUBNET=::/0",
            "PUBLIC_IP=192.0.2.1",
            "PUBLIC_IPV6=<nil>",
        ]
    );
    assert_eq!(inv.stdin, "\n");
    s.network = None;
    s.public_ipv6 = Some("2001:db8:1::1".parse().expect("ip"));
    let dual = SubnetKey {
        ipv6: Some("2001:db8:f000:1::/64".parse().expect("net")),
        ..own()
    };
    let inv = s.post_startup(&dual, &no_env).expect("configured");
    let env: Vec<&str> = inv.env.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        env,
        [
            "0.0.0.0/0",
            "198.18.1.0/24",
            "2001:db8:f000:1::/64",
            "192.0.2.1",
            "2001:db8:1::1"
        ]
    );
    let pre = s.pre_startup(&no_env).expect("configured");
    assert_eq!((pre.program.as_str(), pre.env.len()), ("/bin/pre", 0));
    assert_eq!(pre.stdin, "\n");
}

#[test]
fn peers_come_from_extension_leases_with_a_string_or_no_backend_data() {
    let p =
        Peer::from_lease(&lease("198.18.2.0/24", 2, "extension", Some(r#""a\nb""#))).expect("peer");
    assert_eq!(p, peer("198.18.2.0/24", 2, "a\nb"));
    for data in [None, Some("null")] {
        let p = Peer::from_lease(&lease("198.18.2.0/24", 2, "extension", data)).expect("peer");
        assert_eq!(p.data, "");
    }
    let err = Peer::from_lease(&lease("198.18.2.0/24", 2, "extension", Some(r#"{"a":1}"#)))
        .expect_err("an object");
    assert!(err.starts_with("failed to unmarshal BackendData"), "{err}");
    assert_eq!(
        Peer::from_lease(&lease("198.18.2.0/24", 2, "vxlan", None)),
        Err("Ignoring non-extension subnet: type=vxlan".into())
    );
}

#[test]
fn backend_data_is_the_trimmed_output_as_a_go_json_string() {
    assert_eq!(backend_data("  hello world\n").as_str(), r#""hello world""#);
    assert_eq!(
        backend_data("{\"k\":\"<v>\"}\n").as_str(),
        r#""{\"k\":\"\u003cv\u003e\"}""#
    );
    assert_eq!(backend_data("").as_str(), r#""""#);
}

#[test]
fn post_startup_comes_first_and_is_retried_until_it_succeeds() {
    let s = spec(all_commands());
    let mut progress = Progress::default();
    let set = peers(&[peer("198.18.2.0/24", 2, "")]);
    let first = plan(&s, &own(), &set, &mut progress, &no_env);
    assert_eq!(summary(&first), ["/bin/post 198.18.1.0/24"]);
    progress.record(&first[0], false);
    let again = plan(&s, &own(), &set, &mut progress, &no_env);
    assert_eq!(again, first, "a failed post start-up command runs again");
    progress.record(&again[0], true);
    let next = plan(&s, &own(), &set, &mut progress, &no_env);
    assert_eq!(summary(&next), ["/bin/add 198.18.2.0/24 via 192.0.2.2"]);
}

#[test]
fn adds_and_removes_follow_the_peer_set_and_failures_are_retried() {
    let s = spec(all_commands());
    let mut progress = Progress {
        post_startup_done: true,
        ..Progress::default()
    };
    let a = peer("198.18.2.0/24", 2, "a");
    let b = peer("198.18.3.0/24", 3, "b");
    let invs = plan(
        &s,
        &own(),
        &peers(&[a.clone(), b.clone()]),
        &mut progress,
        &no_env,
    );
    assert_eq!(
        summary(&invs),
        [
            "/bin/add 198.18.2.0/24 via 192.0.2.2",
            "/bin/add 198.18.3.0/24 via 192.0.2.3"
        ]
    );
    assert_eq!(invs[1].stdin, "b\n");
    progress.record(&invs[0], true);
    progress.record(&invs[1], false);
    // b's add failed: retried; a is done.
    let invs = plan(
        &s,
        &own(),
        &peers(&[a.clone(), b.clone()]),
        &mut progress,
        &no_env,
    );
    assert_eq!(summary(&invs), ["/bin/add 198.18.3.0/24 via 192.0.2.3"]);
    // b goes away before its add ever succeeded: its remove runs anyway (its add ran).
    // a changes its public IP: add again, no remove.
    let a2 = peer("198.18.2.0/24", 9, "a");
    let invs = plan(
        &s,
        &own(),
        &peers(std::slice::from_ref(&a2)),
        &mut progress,
        &no_env,
    );
    assert_eq!(
        summary(&invs),
        [
            "/bin/remove 198.18.3.0/24",
            "/bin/add 198.18.2.0/24 via 192.0.2.9"
        ]
    );
    assert_eq!(invs[0].stdin, "b\n", "the gone peer's data");
    progress.record(&invs[0], false);
    progress.record(&invs[1], true);
    let invs = plan(
        &s,
        &own(),
        &peers(std::slice::from_ref(&a2)),
        &mut progress,
        &no_env,
    );
    assert_eq!(summary(&invs), ["/bin/remove 198.18.3.0/24"]);
    progress.record(&invs[0], true);
    assert!(plan(&s, &own(), &peers(&[a2]), &mut progress, &no_env).is_empty());
}

#[test]
fn unconfigured_commands_count_as_done() {
    let s = spec(Commands::default());
    let mut progress = Progress::default();
    let a = peer("198.18.2.0/24", 2, "a");
    assert!(plan(&s, &own(), &peers(&[a]), &mut progress, &no_env).is_empty());
    assert!(progress.post_startup_done);
    assert!(plan(&s, &own(), &BTreeMap::new(), &mut progress, &no_env).is_empty());
    assert!(progress.added.is_empty());
}

proptest! {
    #[test]
    fn words_without_a_dollar_are_kept(s in "[^$]{0,40}") {
        prop_assert_eq!(expand(&s, &|_| "X".to_owned()), s);
    }

    /// Whatever fails in between, once every command succeeds the plan is empty and the
    /// added set is the peer set.
    #[test]
    fn plans_converge_once_commands_succeed(
        steps in proptest::collection::vec(
            (proptest::collection::btree_set(2u8..8, 0..5), proptest::collection::vec(any::<bool>(), 0..8)),
            1..6,
        ),
    ) {
        let s = spec(all_commands());
        let mut progress = Progress::default();
        let set = |ids: &std::collections::BTreeSet<u8>| {
            peers(&ids.iter().map(|i| peer(&format!("198.18.{i}.0/24"), *i, "")).collect::<Vec<_>>())
        };
        let mut last = BTreeMap::new();
        for (ids, outcomes) in &steps {
            last = set(ids);
            let invs = plan(&s, &own(), &last, &mut progress, &no_env);
            for (inv, ok) in invs.iter().zip(outcomes.iter().chain(std::iter::repeat(&true))) {
                progress.record(inv, *ok);
            }
        }
        for _ in 0..3 {
            let invs = plan(&s, &own(), &last, &mut progress, &no_env);
            for inv in &invs {
                progress.record(inv, true);
            }
        }
        prop_assert!(plan(&s, &own(), &last, &mut progress, &no_env).is_empty());
        let added: BTreeMap<Ipv4Net, Peer> =
            progress.added.iter().map(|(k, (p, _))| (*k, p.clone())).collect();
        prop_assert_eq!(added, last);
    }
}
