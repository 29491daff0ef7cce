//! flanneld as a whole against a real etcd, as an operator runs it: lease acquisition, the
//! subnet file, restarts, a deleted lease, many agents at once, etcd or config not there yet,
//! renewal with a short TTL, reservations. Each test runs in a private network namespace of
//! its own (one veth pair with 192.0.2.x addresses; etcd on that namespace's loopback).
//!
//! The `alloc` backend is used so these tests are about the control plane only.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flannel_testkit::etcd::EtcdServer;
use flannel_testkit::netns::{enter_private_netns, sh};
use flannel_testkit::privileged::require_root;

const PREFIX: &str = "/coreos.com/network";
const ALLOC: &str = r#"{"Network":"198.18.0.0/16","Backend":{"Type":"alloc"}}"#;

struct Env {
    etcd: EtcdServer,
    dir: tempfile::TempDir,
}

/// Private netns with `veth0` (192.0.2.1/24, MTU 1500) and a real etcd on its loopback.
fn setup(test: &str) -> Option<Env> {
    if !require_root(test) {
        return None;
    }
    enter_private_netns().expect("private netns");
    sh(
        "ip",
        &[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ],
    )
    .expect("veth");
    sh("ip", &["addr", "add", "192.0.2.1/24", "dev", "veth0"]).expect("addr");
    sh("ip", &["link", "set", "veth0", "up"]).expect("up");
    sh("ip", &["link", "set", "veth1", "up"]).expect("up");
    let etcd = EtcdServer::start().expect("etcd starts");
    Some(Env {
        etcd,
        dir: tempfile::tempdir().expect("tmp"),
    })
}

struct Flanneld {
    child: Child,
    log: PathBuf,
}

impl Flanneld {
    fn start(env: &Env, name: &str, args: &[&str]) -> Flanneld {
        let log = env.dir.path().join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let subnet_file = env.dir.path().join(format!("{name}/subnet.env"));
        let child = Command::new(env!("CARGO_BIN_EXE_flanneld"))
            .arg(format!("--etcd-endpoints={}", env.etcd.endpoint()))
            .arg(format!("--subnet-file={}", subnet_file.display()))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("spawn flanneld");
        Flanneld { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM and wait; returns the exit code.
    fn stop(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Flanneld {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("timed out after {timeout:?} waiting for {what}");
    false
}

fn subnet_env(env: &Env, name: &str) -> Option<String> {
    std::fs::read_to_string(env.dir.path().join(format!("{name}/subnet.env"))).ok()
}

fn subnet_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .expect("FLANNEL_SUBNET line")
        .to_owned()
}

/// `198.18.7.1/24` → `/coreos.com/network/subnets/198.18.7.0-24`.
fn key_of(subnet: &str) -> String {
    let (ip, len) = subnet.split_once('/').expect("cidr");
    let net = ip.rsplit_once('.').expect("ipv4").0;
    format!("{PREFIX}/subnets/{net}.0-{len}")
}

fn wait_subnet(env: &Env, name: &str, d: &Flanneld) -> String {
    assert!(
        wait_for("subnet.env", Duration::from_secs(60), || subnet_env(
            env, name
        )
        .is_some()),
        "no subnet file; log:\n{}",
        d.log()
    );
    subnet_of(&subnet_env(env, name).expect("file"))
}

fn put_config(env: &Env, json: &str) {
    env.etcd
        .etcdctl(&["put", &format!("{PREFIX}/config"), json])
        .expect("put config");
}

fn get(env: &Env, key: &str) -> String {
    env.etcd.etcdctl(&["get", key]).expect("etcdctl get")
}

#[test]
fn acquires_writes_subnet_env_and_keeps_the_subnet_across_restart() {
    let Some(env) = setup("acquires_writes_subnet_env_and_keeps_the_subnet_across_restart") else {
        return;
    };
    put_config(&env, ALLOC);
    let mut d = Flanneld::start(&env, "h1", &["--iface=veth0"]);
    let subnet = wait_subnet(&env, "h1", &d);
    let text = subnet_env(&env, "h1").expect("file");
    assert_eq!(
        text,
        format!(
            "FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET={subnet}\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"
        )
    );
    assert!(subnet.ends_with(".1/24"), "{subnet}");
    let value = get(&env, &key_of(&subnet));
    assert!(
        value
            .trim_end()
            .ends_with(r#"{"PublicIP":"192.0.2.1","PublicIPv6":null}"#),
        "lease value as Flannel writes it for alloc: {value}"
    );
    assert_eq!(
        d.stop(),
        Some(0),
        "clean exit on SIGTERM; log:\n{}",
        d.log()
    );
    assert!(
        get(&env, &key_of(&subnet)).contains("192.0.2.1"),
        "lease kept on exit"
    );

    // The subnet file is gone (e.g. /run cleared) but the lease is found by our public IP.
    std::fs::remove_file(env.dir.path().join("h1/subnet.env")).expect("rm");
    let d2 = Flanneld::start(&env, "h1", &["--iface=veth0"]);
    assert_eq!(wait_subnet(&env, "h1", &d2), subnet, "log:\n{}", d2.log());
}

#[test]
fn a_deleted_lease_is_reacquired_and_the_daemon_keeps_running() {
    let Some(env) = setup("a_deleted_lease_is_reacquired_and_the_daemon_keeps_running") else {
        return;
    };
    put_config(&env, ALLOC);
    let mut d = Flanneld::start(&env, "h1", &["--iface=veth0"]);
    let subnet = wait_subnet(&env, "h1", &d);
    let key = key_of(&subnet);
    env.etcd.etcdctl(&["del", &key]).expect("del");
    assert!(
        wait_for("lease back", Duration::from_secs(10), || get(&env, &key)
            .contains("192.0.2.1")),
        "lease not re-acquired; log:\n{}",
        d.log()
    );
    assert!(d.running(), "flanneld must keep running; log:\n{}", d.log());
    assert_eq!(subnet_of(&subnet_env(&env, "h1").expect("file")), subnet);
    let log = d.log();
    assert!(
        log.contains("our lease was deleted or expired; re-acquiring"),
        "{log}"
    );
    assert!(log.contains("re-acquired the same subnet"), "{log}");
}

#[test]
fn twenty_agents_acquire_concurrently_and_get_distinct_subnets() {
    let Some(env) = setup("twenty_agents_acquire_concurrently_and_get_distinct_subnets") else {
        return;
    };
    put_config(&env, ALLOC);
    for i in 2..=20 {
        sh(
            "ip",
            &["addr", "add", &format!("192.0.2.{i}/24"), "dev", "veth0"],
        )
        .expect("addr");
    }
    let agents: Vec<Flanneld> = (1..=20)
        .map(|i| {
            // Twenty daemons in one namespace would share one FORWARD chain: this test is
            // about leases, so leave the rules out.
            let iface = format!("--iface=192.0.2.{i}");
            Flanneld::start(
                &env,
                &format!("a{i}"),
                &[&iface, "--iptables-forward-rules=false"],
            )
        })
        .collect();
    let mut subnets = std::collections::BTreeSet::new();
    for (i, d) in agents.iter().enumerate() {
        let s = wait_subnet(&env, &format!("a{}", i + 1), d);
        assert!(subnets.insert(s.clone()), "duplicate subnet {s}");
    }
    assert_eq!(subnets.len(), 20);
    let keys = env
        .etcd
        .etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("{PREFIX}/subnets/"),
        ])
        .expect("list");
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 20, "{keys}");
}

#[test]
fn waits_for_etcd_and_for_the_config_saying_why() {
    let Some(mut env) = setup("waits_for_etcd_and_for_the_config_saying_why") else {
        return;
    };
    env.etcd.stop().expect("stop etcd");
    let d = Flanneld::start(&env, "h1", &["--iface=veth0"]);
    assert!(
        wait_for("unreachable log", Duration::from_secs(30), || d
            .log()
            .contains("cannot read the network config")),
        "log:\n{}",
        d.log()
    );
    env.etcd.restart().expect("start etcd");
    assert!(
        wait_for("config-missing log", Duration::from_secs(30), || {
            d
            .log()
            .contains(
            "flannel config not found in etcd store (key /coreos.com/network/config). Did you create your config using etcdv3 API?"
        )
        }),
        "log:\n{}",
        d.log()
    );
    put_config(
        &env,
        r#"{"Network":"198.18.0.0/16","SubnetLen":31,"Backend":{"Type":"alloc"}}"#,
    );
    assert!(
        wait_for("invalid-config log", Duration::from_secs(10), || d
            .log()
            .contains("SubnetLen must be less than /31")),
        "log:\n{}",
        d.log()
    );
    put_config(&env, ALLOC);
    let subnet = wait_subnet(&env, "h1", &d);
    assert!(subnet.starts_with("198.18."), "{subnet}");
}

#[test]
fn a_short_ttl_lease_is_renewed_and_never_lost() {
    let Some(env) = setup("a_short_ttl_lease_is_renewed_and_never_lost") else {
        return;
    };
    put_config(&env, ALLOC);
    let d = Flanneld::start(&env, "h1", &["--iface=veth0", "--subnet-lease-ttl=6"]);
    let subnet = wait_subnet(&env, "h1", &d);
    let key = key_of(&subnet);
    // Three TTLs later the key is still there and was never deleted and re-created.
    let first = env
        .etcd
        .etcdctl(&["get", &key, "-w", "fields"])
        .expect("get");
    std::thread::sleep(Duration::from_secs(18));
    let later = env
        .etcd
        .etcdctl(&["get", &key, "-w", "fields"])
        .expect("get");
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("\"{name}\"")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(!field(&later, "Lease").is_empty(), "still leased: {later}");
    assert_eq!(
        field(&first, "CreateRevision"),
        field(&later, "CreateRevision"),
        "never lost; log:\n{}",
        d.log()
    );
    assert!(d.log().contains("renewed lease"), "log:\n{}", d.log());
}

#[test]
fn a_reservation_is_used_and_keeps_no_ttl() {
    let Some(env) = setup("a_reservation_is_used_and_keeps_no_ttl") else {
        return;
    };
    put_config(&env, ALLOC);
    let key = format!("{PREFIX}/subnets/198.18.77.0-24");
    env.etcd
        .etcdctl(&["put", &key, r#"{"PublicIP":"192.0.2.1"}"#])
        .expect("reserve");
    let mut d = Flanneld::start(&env, "h1", &["--iface=veth0"]);
    assert_eq!(
        wait_subnet(&env, "h1", &d),
        "198.18.77.1/24",
        "log:\n{}",
        d.log()
    );
    assert_eq!(d.stop(), Some(0));
    let fields = env
        .etcd
        .etcdctl(&["get", &key, "-w", "fields"])
        .expect("get");
    assert!(
        fields.lines().any(|l| l == "\"Lease\" : 0"),
        "still a reservation: {fields}"
    );
}

#[test]
fn the_etcd_password_never_reaches_the_log() {
    let Some(env) = setup("the_etcd_password_never_reaches_the_log") else {
        return;
    };
    put_config(&env, ALLOC);
    let secret = "pw-7f3a-do-not-log";
    let d = Flanneld::start(
        &env,
        "h1",
        &[
            "--iface=veth0",
            "--etcd-username=flannel",
            &format!("--etcd-password={secret}"),
        ],
    );
    assert!(wait_for("some log", Duration::from_secs(10), || d
        .log()
        .contains("etcd-password:***")));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!d.log().contains(secret), "log:\n{}", d.log());
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_flanneld"))
        .arg("--no-such-flag")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_flanneld"))
        .env("FLANNELD_HEALTHZ_PORT", "not-a-port")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "bad env value is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLANNELD_HEALTHZ_PORT"));
}

/// Issues 16.2 and 16.7: every config error in etcd — an inverted range, a `Backend` without
/// `Type`, a backend that cannot be built from it — is logged naming the key and what is
/// wrong, and retried until the operator fixes it (Flannel exits on the last one).
#[test]
fn config_errors_in_etcd_are_retried_until_fixed() {
    let Some(env) = setup("config_errors_in_etcd_are_retried_until_fixed") else {
        return;
    };
    put_config(
        &env,
        r#"{"Network":"198.18.0.0/16","SubnetMin":"198.18.9.0","SubnetMax":"198.18.2.0","Backend":{"Type":"alloc"}}"#,
    );
    let mut d = Flanneld::start(&env, "h1", &["--iface=veth0"]);
    for (config, want) in [
        (
            None,
            "invalid network config in etcd key /coreos.com/network/config: SubnetMin 198.18.9.0 is above SubnetMax 198.18.2.0",
        ),
        (
            Some(r#"{"Network":"198.18.0.0/16","Backend":{}}"#),
            "invalid network config in etcd key /coreos.com/network/config: Backend.Type is missing",
        ),
        (
            Some(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"bogus"}}"#),
            "the network config in etcd key /coreos.com/network/config cannot be used: unknown backend type: bogus",
        ),
    ] {
        if let Some(config) = config {
            put_config(&env, config);
        }
        assert!(
            wait_for(want, Duration::from_secs(15), || d.log().contains(want)),
            "log:\n{}",
            d.log()
        );
        assert!(d.running(), "a config error is retried; log:\n{}", d.log());
    }
    assert!(subnet_env(&env, "h1").is_none());
    put_config(&env, ALLOC);
    let subnet = wait_subnet(&env, "h1", &d);
    assert!(subnet.starts_with("198.18."), "{subnet}");
}

/// Issue 16.3: etcd loses its data (wiped and restarted, config put back by the operator):
/// flanneld writes its lease again with the subnet it had, and keeps running. A hand-written
/// key outside the network (issue 16.1) is ignored with one warning, however often it is
/// rewritten.
#[test]
fn after_etcd_lost_its_data_our_lease_is_written_again() {
    let Some(mut env) = setup("after_etcd_lost_its_data_our_lease_is_written_again") else {
        return;
    };
    put_config(&env, ALLOC);
    let d = Flanneld::start(&env, "h1", &["--iface=veth0"]);
    let subnet = wait_subnet(&env, "h1", &d);
    let foreign = format!("{PREFIX}/subnets/203.0.113.0-24");
    for _ in 0..20 {
        env.etcd
            .etcdctl(&["put", &foreign, r#"{"PublicIP":"198.51.100.7"}"#])
            .expect("put");
    }
    assert!(
        wait_for("one warning", Duration::from_secs(10), || d
            .log()
            .contains("ignoring lease 203.0.113.0-24")),
        "log:\n{}",
        d.log()
    );
    env.etcd.stop().expect("stop etcd");
    std::fs::remove_dir_all(env.etcd.data_dir().join("data")).expect("wipe etcd");
    env.etcd.restart().expect("start etcd");
    put_config(&env, ALLOC);
    let key = key_of(&subnet);
    assert!(
        wait_for("lease back", Duration::from_secs(30), || get(&env, &key)
            .contains("192.0.2.1")),
        "lease not written again; log:\n{}",
        d.log()
    );
    let log = d.log();
    assert!(log.contains("etcd lost its data"), "{log}");
    assert_eq!(
        log.matches("ignoring lease 203.0.113.0-24").count(),
        1,
        "{log}"
    );
    assert_eq!(subnet_of(&subnet_env(&env, "h1").expect("file")), subnet);
}
