//! A real single-member etcd for integration tests.
//!
//! [`EtcdServer::start`] runs `etcd` (3.4 from Debian's `etcd-server`) on free loopback ports
//! with a temporary data directory and waits until `/health` says it is healthy. The server
//! can be stopped and restarted on the same ports and data (to test reconnects), and is killed
//! and its directory removed on drop. [`EtcdServer::etcdctl`] runs `etcdctl` (API v3) against
//! it, for writing raw keys, compacting and so on. [`EtcdServer::start_tls`] runs it with TLS
//! and client-certificate authentication, using a throw-away CA made with `openssl`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flannel_sandbox::etcd::EtcdConfig;
use flannel_sandbox::{probe, process};

/// How long a start or restart may take before it is an error.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts (each with fresh ports) when the chosen ports turn out to be taken.
const START_ATTEMPTS: usize = 5;

/// A running (or stopped) etcd process owned by a test. Dropping it kills the process and
/// removes the data directory.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    ports: Ports,
    tls: Option<EtcdTls>,
    child: Option<Child>,
}

/// Certificates of a TLS etcd (all PEM files in its temp dir). The server requires a client
/// certificate signed by `ca`.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A client certificate accepted by the server.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
    /// Plain-HTTP metrics and `/health` listener (also with TLS, for the readiness check).
    metrics: u16,
}

impl EtcdServer {
    /// Start etcd on free loopback ports with a fresh data directory and wait (up to 20 s)
    /// until it reports itself healthy.
    pub fn start() -> Result<EtcdServer> {
        Self::start_inner(false)
    }

    /// Like [`EtcdServer::start`], but clients must use TLS (`https://` endpoint) with a
    /// client certificate; see [`EtcdServer::tls`] for the files. Needs `openssl`.
    pub fn start_tls() -> Result<EtcdServer> {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> Result<EtcdServer> {
        let binary =
            find_binary("etcd").context("etcd is not installed (Debian package etcd-server)")?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("flannel-etcd-")
                .tempdir()
                .context("creating the etcd temp dir")?;
            let tls = if tls {
                Some(make_certificates(dir.path())?)
            } else {
                None
            };
            let ports = free_ports()?;
            let mut server = EtcdServer {
                binary: binary.clone(),
                dir,
                ports,
                tls,
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                // Most likely a port was taken between choosing and binding it: try again.
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    /// Start etcd for test `test`, or decide that the test is skipped: when etcd is not
    /// installed this panics under `CI=true` (CI must not go green without these tests) and
    /// otherwise prints why and returns `None`. A start failure with etcd installed panics.
    pub fn start_or_skip(test: &str) -> Option<EtcdServer> {
        Self::start_or_skip_inner(test, false)
    }

    /// [`EtcdServer::start_tls`] with the skip rules of [`EtcdServer::start_or_skip`].
    pub fn start_tls_or_skip(test: &str) -> Option<EtcdServer> {
        Self::start_or_skip_inner(test, true)
    }

    fn start_or_skip_inner(test: &str, tls: bool) -> Option<EtcdServer> {
        if find_binary("etcd").is_none() {
            if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
                panic!(
                    "{test} needs etcd (Debian package etcd-server) and CI=true: refusing to skip"
                );
            }
            eprintln!(
                "skipping {test}: etcd is not installed (set CI=true to make this a failure)"
            );
            return None;
        }
        match EtcdServer::start_inner(tls) {
            Ok(server) => Some(server),
            Err(e) => panic!("{test}: starting etcd failed: {e:#}"),
        }
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.ports.client)
    }

    /// The certificates, for a server started with [`EtcdServer::start_tls`].
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// The data directory (kept across [`EtcdServer::restart`]).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop etcd gracefully (SIGTERM, then SIGKILL after 10 s) and wait for it to exit.
    /// Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        process::stop_child(&mut child, STOP_TIMEOUT).context("stopping etcd")?;
        Ok(())
    }

    /// Start etcd again on the same ports with the same data and wait until it is healthy.
    /// Stops it first if it is running.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        // Right after the old process exits the port is free for us (SO_REUSEADDR in etcd),
        // but give a few tries in case something else raced for it.
        let mut last_err = None;
        for _ in 0..3 {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill_child();
                    last_err = Some(e);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("etcd did not restart")))
    }

    /// Kill etcd with SIGKILL (no clean shutdown) and reap it.
    pub fn kill(&mut self) {
        self.kill_child();
    }

    /// Whether the etcd process is running (started and not yet exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Run `etcdctl` (API v3) against this server and return its stdout. Fails when it exits
    /// non-zero, with its stderr in the error.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let binary = find_binary("etcdctl")
            .context("etcdctl is not installed (Debian package etcd-client)")?;
        let mut cmd = Command::new(&binary);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--command-timeout=15s");
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.client_cert.display()))
                .arg(format!("--key={}", tls.client_key.display()));
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running etcdctl {args:?}"))?;
        if !out.status.success() {
            bail!(
                "etcdctl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The etcd log file (stdout and stderr of the process; warnings and errors only).
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.ports.peer);
        let metrics = format!("http://127.0.0.1:{}", self.ports.metrics);
        let data = self.dir.path().join("data");
        let config = EtcdConfig {
            name: "flannel-test",
            data_dir: &data,
            client_urls: &[&client],
            advertise: &client,
            peer_url: &peer,
            log_level: Some("warn"),
        };
        let mut cmd = Command::new(&self.binary);
        cmd.args(config.args())
            .arg(format!("--listen-metrics-urls={metrics}"));
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        process::log_to(&mut cmd, &self.log_file())?;
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.metrics));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking on etcd")? {
                    self.child = None;
                    bail!(
                        "etcd exited during start-up ({status}); log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if health_ok(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill_child();
                bail!(
                    "etcd was not healthy within {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_child(&mut child);
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill_child();
    }
}

/// `GET /health`; true when etcd answers 200 with `"health":"true"`.
fn health_ok(addr: SocketAddr) -> bool {
    matches!(
        probe::http_get(addr, "/health"),
        Ok((200, body)) if body.contains("\"health\":\"true\"")
    )
}

/// Three distinct free loopback ports (bound to port 0 together, then released).
fn free_ports() -> Result<Ports> {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port");
    let (a, b, c) = (bind()?, bind()?, bind()?);
    let port = |l: &TcpListener| l.local_addr().context("local address").map(|a| a.port());
    Ok(Ports {
        client: port(&a)?,
        peer: port(&b)?,
        metrics: port(&c)?,
    })
}

/// Make a CA, a server certificate for 127.0.0.1 and a client certificate in `dir` (openssl).
fn make_certificates(dir: &Path) -> Result<EtcdTls> {
    let openssl = find_binary("openssl").context("openssl is not installed")?;
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new(&openssl)
            .current_dir(dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running openssl {args:?}"))?;
        if !out.status.success() {
            bail!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &new_key[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=flannel-test-ca",
        ][..],
    ]
    .concat())?;
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .context("writing the certificate extensions")?;
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subject = format!("/CN=flannel-test-{name}");
        run(&[
            &["req"][..],
            &new_key[..],
            &["-keyout", &key, "-out", &csr, "-subj", &subject][..],
        ]
        .concat())?;
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ])?;
    }
    Ok(EtcdTls {
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    })
}

/// `/usr/bin/<name>` if present, else `<name>` found in `PATH`.
fn find_binary(name: &str) -> Option<PathBuf> {
    let usr_bin = Path::new("/usr/bin").join(name);
    if usr_bin.is_file() {
        return Some(usr_bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn start_put_restart_get() {
        let Some(mut etcd) = EtcdServer::start_or_skip("testkit::etcd::start_put_restart_get")
        else {
            return;
        };
        etcd.etcdctl(&["put", "/k", "v1"]).unwrap();
        etcd.restart().unwrap();
        let got = etcd.etcdctl(&["get", "/k", "--print-value-only"]).unwrap();
        assert_eq!(got.trim(), "v1");
        etcd.stop().unwrap();
        assert!(!etcd.is_running());
        assert!(etcd
            .etcdctl(&["--dial-timeout=1s", "--command-timeout=2s", "get", "/k"])
            .is_err());
        etcd.restart().unwrap();
        assert!(etcd.is_running());
        let dir = etcd.data_dir().to_path_buf();
        drop(etcd);
        assert!(!dir.exists(), "data dir is removed on drop");
    }

    #[test]
    fn tls_server_takes_etcdctl_with_client_certificate() {
        let Some(etcd) = EtcdServer::start_tls_or_skip("testkit::etcd::tls_server") else {
            return;
        };
        assert!(etcd.endpoint().starts_with("https://127.0.0.1:"));
        etcd.etcdctl(&["put", "/k", "v"]).unwrap();
        let got = etcd.etcdctl(&["get", "/k", "--print-value-only"]).unwrap();
        assert_eq!(got.trim(), "v");
    }
}
