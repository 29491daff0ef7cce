//! etcd in a namespace: its command line, its health check and `etcdctl` against it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::cmd::{self, quick_timeout};
use crate::error::Result;
use crate::{netns, probe, process};

/// The peer URL of an etcd alone in its namespace.
pub const PEER_URL: &str = "http://127.0.0.1:2380";

/// How a one-member etcd is started.
#[derive(Debug, Clone)]
pub struct EtcdConfig<'a> {
    /// `--name`.
    pub name: &'a str,
    /// `--data-dir`.
    pub data_dir: &'a Path,
    /// `--listen-client-urls` (joined with commas).
    pub client_urls: &'a [&'a str],
    /// `--advertise-client-urls`.
    pub advertise: &'a str,
    /// The peer URL (listen and advertise), e.g. [`PEER_URL`].
    pub peer_url: &'a str,
    /// `--log-level`, if not etcd's default.
    pub log_level: Option<&'a str>,
}

impl EtcdConfig<'_> {
    /// etcd's command line (after the binary): one member, zap logging to stderr.
    pub fn args(&self) -> Vec<String> {
        let name = self.name;
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={}", self.client_urls.join(",")),
            format!("--advertise-client-urls={}", self.advertise),
            format!("--listen-peer-urls={}", self.peer_url),
            format!("--initial-advertise-peer-urls={}", self.peer_url),
            format!("--initial-cluster={name}={}", self.peer_url),
            "--initial-cluster-state=new".to_owned(),
            "--logger=zap".to_owned(),
            "--log-outputs=stderr".to_owned(),
        ];
        if let Some(level) = self.log_level {
            args.push(format!("--log-level={level}"));
        }
        args
    }
}

/// `ip netns exec <ns> etcd <args>` with stdout and stderr appended to `log` and the
/// `ETCD_*`/`ETCDCTL_*` variables of the caller not passed on (not started yet).
pub fn command(ns: &str, config: &EtcdConfig<'_>, log: &Path) -> Result<Command> {
    let mut cmd = netns::in_ns(ns, &["etcd"]);
    cmd.args(config.args());
    process::drop_env(&mut cmd, &["ETCD_", "ETCDCTL_"]);
    process::log_to(&mut cmd, log)?;
    Ok(cmd)
}

/// Whether etcd at `addr` (seen from namespace `ns`) answers `/health` with `"health":"true"`.
pub fn healthy_in(ns: &str, addr: SocketAddr) -> bool {
    matches!(
        probe::http_get_in(ns, addr, "/health"),
        Ok((200, body)) if body.contains("\"health\":\"true\"")
    )
}

/// `etcdctl` (API v3, 2 s to connect, 5 s per command) against `endpoint`, run inside `ns`,
/// without the caller's `ETCDCTL_*` variables.
pub fn etcdctl_command(ns: &str, endpoint: &str, args: &[&str]) -> Command {
    let endpoints = format!("--endpoints={endpoint}");
    let mut full = vec![
        "etcdctl",
        endpoints.as_str(),
        "--dial-timeout=2s",
        "--command-timeout=5s",
    ];
    full.extend_from_slice(args);
    let mut cmd = netns::in_ns(ns, &full);
    process::drop_env(&mut cmd, &["ETCDCTL_"]);
    cmd.env("ETCDCTL_API", "3");
    cmd
}

/// [`etcdctl_command`] run to completion: its stdout, or an error with its stderr.
pub fn etcdctl_in(ns: &str, endpoint: &str, args: &[&str]) -> Result<String> {
    cmd::run_ok(etcdctl_command(ns, endpoint, args), None, quick_timeout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_member_command_line() {
        let config = EtcdConfig {
            name: "lab",
            data_dir: Path::new("/var/tmp/x/etcd"),
            client_urls: &["http://192.0.2.254:2379", "http://127.0.0.1:2379"],
            advertise: "http://192.0.2.254:2379",
            peer_url: PEER_URL,
            log_level: Some("warn"),
        };
        assert_eq!(
            config.args().join(" "),
            "--name=lab --data-dir=/var/tmp/x/etcd \
             --listen-client-urls=http://192.0.2.254:2379,http://127.0.0.1:2379 \
             --advertise-client-urls=http://192.0.2.254:2379 \
             --listen-peer-urls=http://127.0.0.1:2380 \
             --initial-advertise-peer-urls=http://127.0.0.1:2380 \
             --initial-cluster=lab=http://127.0.0.1:2380 --initial-cluster-state=new \
             --logger=zap --log-outputs=stderr --log-level=warn"
        );
        let cmd = etcdctl_command("ns", "http://192.0.2.254:2379", &["get", "/k"]);
        assert_eq!(
            cmd::describe(&cmd),
            "ip netns exec ns etcdctl --endpoints=http://192.0.2.254:2379 --dial-timeout=2s \
             --command-timeout=5s get /k"
        );
    }
}
