//! flanneld's packet-filter rules and health endpoints as an operator sees them: the real
//! binary in a lab host namespace (see `flannel_testkit::topology`), the rules read back with
//! `iptables -S` / `nft list`, repaired after someone deletes one, and `/healthz` / `/readyz`.

use std::time::Duration;

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{wait_until, Etcd, Flanneld, Host, Lab};

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const READY: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

struct One {
    flanneld: Flanneld,
    host: Host,
    _etcd: Etcd,
    _lab: Lab,
}

fn one_host(name: &str, config: &str, args: &[&str]) -> One {
    let lab = Lab::new(name).expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(config).expect("config");
    let host = lab.add_host(1).expect("host");
    let mut flanneld = host.start_flanneld(BIN, args).expect("start flanneld");
    if let Err(e) = flanneld.wait_ready(READY) {
        panic!("flanneld not ready: {e:#}\n{}", flanneld.log_tail(40));
    }
    One {
        flanneld,
        host,
        _etcd: etcd,
        _lab: lab,
    }
}

fn masq_rules(network: &str, subnet: &str) -> String {
    let c = r#"-m comment --comment "flanneld masq""#;
    format!(
        "-N FLANNEL-POSTRTG\n\
         -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {c} -j RETURN\n\
         -A FLANNEL-POSTRTG -s {subnet} -d {network} {c} -j RETURN\n\
         -A FLANNEL-POSTRTG -s {network} -d {subnet} {c} -j RETURN\n\
         -A FLANNEL-POSTRTG ! -s {network} -d {subnet} {c} -j RETURN\n\
         -A FLANNEL-POSTRTG -s {network} ! -d 224.0.0.0/4 {c} -j MASQUERADE --random-fully\n\
         -A FLANNEL-POSTRTG ! -s {network} -d {network} {c} -j MASQUERADE --random-fully\n"
    )
}

#[test]
fn ip_masq_and_forward_rules_are_installed_and_repaired() {
    if !require_root("ip_masq_and_forward_rules_are_installed_and_repaired") {
        return;
    }
    let mut one = one_host(
        "rules",
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#,
        &["--ip-masq", "--iptables-resync=1"],
    );
    let subnet = one.host.subnet().expect("subnet").cidr();
    let chain = one
        .host
        .exec(&["iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG"])
        .expect("list");
    assert_eq!(chain, masq_rules("198.18.0.0/16", &subnet));
    let post = one
        .host
        .exec(&["iptables", "-t", "nat", "-S", "POSTROUTING"])
        .expect("list");
    assert!(
        post.contains(r#"-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG"#),
        "{post}"
    );
    let fwd = one
        .host
        .exec(&["iptables", "-t", "filter", "-S", "FLANNEL-FWD"])
        .expect("list");
    assert_eq!(
        fwd,
        "-N FLANNEL-FWD\n\
         -A FLANNEL-FWD -s 198.18.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n\
         -A FLANNEL-FWD -d 198.18.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n"
    );
    // subnet.env says masquerading is done by flanneld (the CNI plugin then skips it).
    let env = std::fs::read_to_string(one.host.subnet_file()).expect("subnet.env");
    assert!(env.contains("FLANNEL_IPMASQ=true\n"), "{env}");

    // Someone deletes a rule: the resync (every second here) puts it back.
    one.host
        .exec(&["iptables", "-t", "nat", "-D", "FLANNEL-POSTRTG", "1"])
        .expect("delete a rule");
    let restored = wait_until(Duration::from_secs(5), POLL, || {
        one.host
            .exec(&["iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG"])
            .map(|c| c == masq_rules("198.18.0.0/16", &subnet))
    });
    assert!(
        restored,
        "rule not restored:\n{}",
        one.flanneld.log_tail(30)
    );

    // Stopping flanneld leaves the rules (a restart must not disturb traffic).
    one.flanneld.stop().expect("stop");
    let after = one
        .host
        .exec(&["iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG"])
        .expect("list");
    assert_eq!(after, masq_rules("198.18.0.0/16", &subnet));
}

#[test]
fn nftables_mode_installs_flannels_tables_and_repairs_them() {
    if !require_root("nftables_mode_installs_flannels_tables_and_repairs_them") {
        return;
    }
    let one = one_host(
        "nft",
        r#"{"Network":"198.18.0.0/16","EnableNFTables":true,"Backend":{"Type":"host-gw"}}"#,
        &["--ip-masq", "--iptables-resync=1"],
    );
    let subnet = one.host.subnet().expect("subnet").cidr();
    let table = one
        .host
        .exec(&["nft", "list", "table", "ip", "flannel-ipv4"])
        .expect("list table");
    for line in [
        "meta mark 0x00004000 return".to_owned(),
        format!("ip saddr {subnet} ip daddr 198.18.0.0/16 return"),
        "ip saddr 198.18.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random".to_owned(),
        "ip saddr 198.18.0.0/16 accept".to_owned(),
        "ip daddr 198.18.0.0/16 accept".to_owned(),
    ] {
        assert!(table.contains(&line), "missing {line:?} in:\n{table}");
    }
    // No iptables chains in nftables mode.
    let nat = one
        .host
        .exec(&["iptables", "-t", "nat", "-S"])
        .expect("list");
    assert!(!nat.contains("FLANNEL-POSTRTG"), "{nat}");

    one.host
        .exec(&["nft", "flush", "chain", "ip", "flannel-ipv4", "postrtg"])
        .expect("flush our chain");
    let restored = wait_until(Duration::from_secs(5), POLL, || {
        one.host
            .exec(&["nft", "list", "table", "ip", "flannel-ipv4"])
            .map(|t| t.contains("masquerade fully-random"))
    });
    assert!(
        restored,
        "nft rules not restored (Flannel never rechecks them; we do):\n{}",
        one.flanneld.log_tail(30)
    );
}

#[test]
fn health_endpoints_answer_like_flannel() {
    if !require_root("health_endpoints_answer_like_flannel") {
        return;
    }
    let one = one_host(
        "health",
        r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#,
        &["--healthz-ip=127.0.0.1", "--healthz-port=10299"],
    );
    assert_eq!(
        one.host.http_get(10299, "/healthz").expect("healthz"),
        (200, "flanneld is running".to_owned())
    );
    assert_eq!(
        one.host.http_get(10299, "/readyz").expect("readyz"),
        (200, "flanneld is ready".to_owned())
    );
}

#[test]
fn not_ready_until_the_lease_is_held() {
    if !require_root("not_ready_until_the_lease_is_held") {
        return;
    }
    let lab = Lab::new("notready").expect("lab");
    let etcd = lab.start_etcd().expect("etcd");
    // No network config yet: flanneld waits for it, alive but not ready.
    let host = lab.add_host(1).expect("host");
    let mut flanneld = host
        .start_flanneld(BIN, &["--healthz-ip=127.0.0.1", "--healthz-port=10299"])
        .expect("start");
    let answered = wait_until(Duration::from_secs(15), POLL, || {
        Ok(host.http_get(10299, "/healthz").is_ok())
    });
    assert!(answered, "{}", flanneld.log_tail(30));
    assert_eq!(
        host.http_get(10299, "/readyz").expect("readyz"),
        (503, "flanneld is not ready yet".to_owned())
    );
    etcd.put_config(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}"#)
        .expect("config");
    if let Err(e) = flanneld.wait_ready(READY) {
        panic!(
            "not ready after the config appeared: {e:#}\n{}",
            flanneld.log_tail(40)
        );
    }
    assert_eq!(
        host.http_get(10299, "/readyz").expect("readyz").0,
        200,
        "{}",
        flanneld.log_tail(20)
    );
}
