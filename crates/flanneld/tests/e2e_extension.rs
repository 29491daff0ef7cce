//! The extension backend for real: flanneld in a lab host runs the operator's commands, here
//! small scripts (written by the test into the lab's directory) that record their argument
//! vector, the variables Flannel documents and their standard input. A peer's lease is written
//! into etcd by the test, so its `BackendData` is known exactly.
//!
//! Checked: the pre start-up command's stdout becomes `BackendData` as a JSON string (stderr
//! does not); `PublicIP` is the interface's address even with `--public-ip`; FLANNEL_MTU is the
//! interface's MTU; the post start-up command gets `NETWORK`, `SUBNET`, `IPV6SUBNET`,
//! `PUBLIC_IP`, `PUBLIC_IPV6`; the subnet commands get `SUBNET`, `PUBLIC_IP` and the peer's data
//! and a newline on stdin; words are passed literally (no shell); a failing command is logged
//! with its exit status and stderr, retried, and flanneld keeps running.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use flannel_testkit::privileged::require_root;
use flannel_testkit::topology::{wait_until, Lab};
use flannel_testkit::vm::scaled;

const BIN: &str = env!("CARGO_BIN_EXE_flanneld");
const LEASES: &str = "/coreos.com/network/subnets/";
const PEER_KEY: &str = "198.18.250.0-24";
const PEER_LEASE: &str = r#"{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"extension","BackendData":"peer data"}"#;

/// Records one call (see the module docs); fails once, with a message on stderr, when the
/// test left a `fail-once-<tag>-<PUBLIC_IP>` marker.
const RECORDER: &str = r#"#!/bin/sh
dir=$(dirname "$0")
tag=$1
if [ -e "$dir/fail-once-$tag-$PUBLIC_IP" ]; then
  rm -f "$dir/fail-once-$tag-$PUBLIC_IP"
  echo "failing on purpose" >&2
  exit 3
fi
cat > "$dir/$tag.stdin"
printf 'argv=%s|NETWORK=%s|SUBNET=%s|IPV6SUBNET=%s|PUBLIC_IP=%s|PUBLIC_IPV6=%s\n' "$*" \
  "${NETWORK-unset}" "${SUBNET-unset}" "${IPV6SUBNET-unset}" "${PUBLIC_IP-unset}" \
  "${PUBLIC_IPV6-unset}" >> "$dir/calls.log"
echo "recorded $tag"
"#;

const PRE: &str = r#"#!/bin/sh
echo "diagnostics on stderr" >&2
printf '  {"k": "<v>"}\n'
"#;

fn script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn extension_commands_run_with_flannels_environment_and_stdin() {
    if !require_root("extension_commands_run_with_flannels_environment_and_stdin") {
        return;
    }
    let lab = Lab::new("ext").expect("lab");
    let dir = lab.dir().join("scripts");
    std::fs::create_dir_all(&dir).expect("scripts dir");
    let rec = script(&dir, "rec", RECORDER);
    let pre = script(&dir, "pre", PRE);
    let config = serde_json::json!({
        "Network": "198.18.0.0/16",
        "Backend": {
            "Type": "extension",
            "PreStartupCommand": pre,
            "PostStartupCommand": format!("{rec} post $NETWORK"),
            "SubnetAddCommand": format!("{rec}  add\t${{SUBNET}} $PUBLIC_IP ; $(id) $NO_SUCH_VAR"),
            "SubnetRemoveCommand": format!("{rec} remove $SUBNET"),
        }
    })
    .to_string();
    let etcd = lab.start_etcd().expect("etcd");
    etcd.put_config(&config).expect("config");
    etcd.etcdctl(&["put", &format!("{LEASES}{PEER_KEY}"), PEER_LEASE])
        .expect("the peer's lease");
    std::fs::write(dir.join("fail-once-add-192.0.2.77"), "").expect("marker");

    let h1 = lab.add_host(1).expect("host");
    let mut f = h1
        .start_flanneld(BIN, &["--public-ip=203.0.113.9"])
        .expect("start");
    let logs = |f: &flannel_testkit::topology::Flanneld| f.log_tail(60);
    if let Err(e) = f.wait_ready(scaled(Duration::from_secs(30))) {
        panic!("not ready: {e:#}\n{}", logs(&f));
    }
    let env = h1.subnet().expect("subnet.env");
    assert_eq!(env.mtu, 1500, "the interface's MTU:\n{}", env.raw);

    // Our lease: the interface's address, the pre start-up command's stdout as a JSON string.
    let own_key = format!("{LEASES}{}-{}", env.subnet, env.prefix_len);
    let leases = etcd.leases().expect("leases");
    let own = leases
        .iter()
        .find(|(k, _)| *k == own_key)
        .map(|(_, v)| v.as_str());
    assert_eq!(
        own,
        Some(
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"extension","BackendData":"{\"k\": \"\u003cv\u003e\"}"}"#
        ),
        "{}",
        logs(&f)
    );

    // The post start-up command ran before ready, with Go's variables and an empty line.
    let post = format!(
        "argv=post 198.18.0.0/16|NETWORK=198.18.0.0/16|SUBNET={}|IPV6SUBNET=::/0|\
         PUBLIC_IP=192.0.2.1|PUBLIC_IPV6=<nil>",
        env.cidr()
    );
    assert_eq!(calls(&dir).first(), Some(&post), "{}", logs(&f));
    assert_eq!(
        std::fs::read_to_string(dir.join("post.stdin")).expect("post stdin"),
        "\n"
    );

    // The add command failed once (logged with its status and stderr), then ran again.
    let add = "argv=add 198.18.250.0/24 192.0.2.77 ; $(id) |NETWORK=unset|\
               SUBNET=198.18.250.0/24|IPV6SUBNET=unset|PUBLIC_IP=192.0.2.77|PUBLIC_IPV6=unset";
    let added = wait_until(
        scaled(Duration::from_secs(20)),
        Duration::from_millis(200),
        || Ok(calls(&dir).iter().any(|c| c == add)),
    );
    assert!(
        added,
        "no add call {add:?}: {:?}\n{}",
        calls(&dir),
        logs(&f)
    );
    let log = f.log();
    assert!(
        log.contains("failed to run command")
            && log.contains("exit status: 3")
            && log.contains("failing on purpose"),
        "the failure is not logged with its status and stderr:\n{}",
        logs(&f)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("add.stdin")).expect("add stdin"),
        "peer data\n"
    );
    assert!(f.is_running(), "a failing command must not end flanneld");

    // The peer goes away: the remove command, with its data.
    etcd.etcdctl(&["del", &format!("{LEASES}{PEER_KEY}")])
        .expect("deleting the peer's lease");
    let remove = "argv=remove 198.18.250.0/24|NETWORK=unset|SUBNET=198.18.250.0/24|\
                  IPV6SUBNET=unset|PUBLIC_IP=192.0.2.77|PUBLIC_IPV6=unset";
    let removed = wait_until(
        scaled(Duration::from_secs(20)),
        Duration::from_millis(200),
        || Ok(calls(&dir).iter().any(|c| c == remove)),
    );
    assert!(removed, "no remove call: {:?}\n{}", calls(&dir), logs(&f));
    assert_eq!(
        std::fs::read_to_string(dir.join("remove.stdin")).expect("remove stdin"),
        "peer data\n"
    );
    assert_eq!(
        calls(&dir).len(),
        3,
        "post, add, remove once each: {:?}",
        calls(&dir)
    );
    let status = f.stop().expect("stop");
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
}
