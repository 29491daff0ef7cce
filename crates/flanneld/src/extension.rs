//! The extension backend's runtime: running the operator's commands. Which command runs
//! when, with which arguments, environment and input, is decided in
//! [`flannel_planner::extension`]; this file starts the processes (directly, no shell), bounds
//! them in time, logs what they did, and reports back.
//!
//! - `PreStartupCommand` runs before the lease is acquired ([`pre_startup`]), again and again
//!   until it succeeds; its output becomes our `BackendData`.
//! - `PostStartupCommand` runs once the lease is held, before flanneld reports ready; if it
//!   fails it is run again on every pass, and no subnet command runs before it succeeded.
//! - `SubnetAddCommand` / `SubnetRemoveCommand` run for peer changes, one at a time; a failed
//!   one runs again on the next pass (every [`PASS_INTERVAL`] and on every peer change).
//!
//! A failing command never ends flanneld: it is logged with its exit status, stderr and
//! stdout. One that runs longer than its timeout is killed and counts as failed.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use flannel_model::{Lease, RawJson, SubnetKey};
use flannel_planner::extension::{self, ExtensionSpec, Invocation, Peer, Progress};
use flannel_registry::PeerEvent;
use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::runtime::{BackendRuntime, Stopped};

/// How often pending commands are retried (besides every peer change).
pub const PASS_INTERVAL: Duration = Duration::from_secs(5);

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status 0.
    pub ok: bool,
    /// `exit status: 1`, `signal: 9 (SIGKILL)`, `timed out after 30 s`, `cannot start: …`.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// flanneld's environment, for `$VAR` expansion.
fn environ(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Run `inv` (no shell), writing its stdin, for at most `timeout` (then it is killed).
pub async fn run(inv: &Invocation, timeout: Duration) -> Outcome {
    let mut cmd = tokio::process::Command::new(&inv.program);
    cmd.args(&inv.args)
        .envs(inv.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                ok: false,
                status: format!("cannot start {}: {e}", inv.program),
                stdout: String::new(),
                stderr: String::new(),
            }
        }
    };
    let stdin = child.stdin.take();
    let input = inv.stdin.clone();
    let feed = async move {
        if let Some(mut s) = stdin {
            // A command that does not read its input may close it early: not an error.
            let _ = s.write_all(input.as_bytes()).await;
        }
    };
    let done = async { tokio::join!(feed, child.wait_with_output()).1 };
    match tokio::time::timeout(timeout, done).await {
        Ok(Ok(out)) => Outcome {
            ok: out.status.success(),
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        },
        Ok(Err(e)) => Outcome {
            ok: false,
            status: format!("waiting for {}: {e}", inv.program),
            stdout: String::new(),
            stderr: String::new(),
        },
        Err(_) => Outcome {
            ok: false,
            status: format!("timed out after {} s and killed", timeout.as_secs_f64()),
            stdout: String::new(),
            stderr: String::new(),
        },
    }
}

/// Run `inv` and log how it went.
async fn run_logged(inv: &Invocation, timeout: Duration) -> Outcome {
    let out = run(inv, timeout).await;
    let subnet = inv.peer.as_ref().map(|p| tracing::field::display(p.subnet));
    if out.ok {
        info!(
            option = inv.hook.option(),
            command = %inv.command,
            subnet,
            output = %out.stdout,
            "ran command"
        );
    } else {
        error!(
            option = inv.hook.option(),
            command = %inv.command,
            subnet,
            status = %out.status,
            stderr = %out.stderr,
            stdout = %out.stdout,
            "failed to run command; it runs again on the next pass"
        );
    }
    out
}

/// `PreStartupCommand`'s output as our `BackendData`, run until it succeeds; `None` when
/// cancelled first. `Some(None)` when no such command is configured.
pub async fn pre_startup(
    spec: &ExtensionSpec,
    cancel: &CancellationToken,
) -> Option<Option<RawJson>> {
    let Some(inv) = spec.pre_startup(&environ) else {
        info!("No pre startup command configured - skipping");
        return Some(None);
    };
    loop {
        let out = tokio::select! {
            out = run_logged(&inv, spec.timeout) => out,
            _ = cancel.cancelled() => return None,
        };
        if out.ok {
            return Some(Some(extension::backend_data(&out.stdout)));
        }
        tokio::select! {
            _ = tokio::time::sleep(PASS_INTERVAL) => {}
            _ = cancel.cancelled() => return None,
        }
    }
}

/// What the command loop keeps: the extension peers and how far their commands got.
struct Commands {
    spec: ExtensionSpec,
    own: SubnetKey,
    peers: BTreeMap<Ipv4Net, Peer>,
    progress: Progress,
}

impl Commands {
    /// Run one pass: every command the plan asks for, in order. Stops early when `cancel`
    /// fires (the running command is killed).
    async fn pass(&mut self, cancel: &CancellationToken) {
        let invs = extension::plan(
            &self.spec,
            &self.own,
            &self.peers,
            &mut self.progress,
            &environ,
        );
        for inv in invs {
            let out = tokio::select! {
                out = run_logged(&inv, self.spec.timeout) => out,
                _ = cancel.cancelled() => return,
            };
            self.progress.record(&inv, out.ok);
        }
    }

    fn apply(&mut self, events: &[PeerEvent]) {
        for e in events {
            match e {
                PeerEvent::Added(l) => {
                    info!(subnet = %l.subnet, public_ip = %l.attrs.public_ip, "Subnet added");
                    match Peer::from_lease(l) {
                        Ok(p) => {
                            self.peers.insert(p.subnet, p);
                        }
                        Err(reason) => {
                            warn!(subnet = %l.subnet, "{reason}");
                            self.peers.remove(&l.subnet.ipv4);
                        }
                    }
                }
                PeerEvent::Removed(l) => {
                    info!(subnet = %l.subnet, "Subnet removed");
                    self.peers.remove(&l.subnet.ipv4);
                }
            }
        }
    }
}

/// The extension backend as a [`BackendRuntime`].
pub struct ExtensionRuntime {
    state: State,
}

enum State {
    /// Prepared; peer events wait here until the loop runs.
    Ready(Box<Commands>, Vec<PeerEvent>),
    Running(mpsc::UnboundedSender<Vec<PeerEvent>>, JoinHandle<()>),
    Gone,
}

impl ExtensionRuntime {
    /// Runs `PostStartupCommand` for our lease (once here; if it fails, the loop retries it).
    pub async fn prepare(spec: ExtensionSpec, lease: &Lease) -> Self {
        let mut commands = Commands {
            spec,
            own: lease.subnet,
            peers: BTreeMap::new(),
            progress: Progress::default(),
        };
        if commands
            .spec
            .post_startup(&lease.subnet, &environ)
            .is_none()
        {
            info!("No post startup command configured - skipping");
        }
        commands.pass(&CancellationToken::new()).await;
        ExtensionRuntime {
            state: State::Ready(Box::new(commands), Vec::new()),
        }
    }
}

impl BackendRuntime for ExtensionRuntime {
    fn start(&mut self, cancel: CancellationToken) {
        let State::Ready(mut commands, pending) = std::mem::replace(&mut self.state, State::Gone)
        else {
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PeerEvent>>();
        commands.apply(&pending);
        let task = tokio::spawn(async move {
            loop {
                commands.pass(&cancel).await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    events = rx.recv() => match events {
                        Some(events) => {
                            commands.apply(&events);
                            while let Ok(more) = rx.try_recv() {
                                commands.apply(&more);
                            }
                        }
                        None => return,
                    },
                    _ = tokio::time::sleep(PASS_INTERVAL) => {}
                }
            }
        });
        self.state = State::Running(tx, task);
    }

    fn peers_changed(&mut self, events: &[PeerEvent]) {
        match &mut self.state {
            State::Ready(_, pending) => pending.extend_from_slice(events),
            State::Running(tx, _) => {
                // The loop only ends on shutdown.
                let _ = tx.send(events.to_vec());
            }
            State::Gone => {}
        }
    }

    fn subnet_changed(&mut self, lease: &Lease) {
        warn!(
            subnet = %lease.subnet,
            "the subnet changed: PostStartupCommand is not run again until flanneld restarts"
        );
    }

    fn stop(self: Box<Self>) -> Stopped {
        Box::pin(async move {
            if let State::Running(_, task) = self.state {
                task.await.context("extension command loop")?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_planner::extension::{Commands, Hook, COMMAND_TIMEOUT};
    use std::time::Instant;

    fn sh(script: &str, stdin: &str) -> Invocation {
        Invocation {
            hook: Hook::SubnetAdd,
            command: format!("/bin/sh -c {script}"),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("SUBNET".into(), "198.18.2.0/24".into())],
            stdin: stdin.into(),
            peer: None,
        }
    }

    #[tokio::test]
    async fn a_command_gets_its_stdin_and_variables_and_keeps_stdout_and_stderr_apart() {
        let out = run(
            &sh(r#"read l; echo " $l $SUBNET "; echo oops >&2"#, "data\n"),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(
            out,
            Outcome {
                ok: true,
                status: "exit status: 0".into(),
                stdout: "data 198.18.2.0/24".into(),
                stderr: "oops".into(),
            }
        );
    }

    #[tokio::test]
    async fn failures_report_their_status() {
        let out = run(&sh("echo no >&2; exit 3", "\n"), Duration::from_secs(20)).await;
        assert!(!out.ok);
        assert_eq!(
            (out.status.as_str(), out.stderr.as_str()),
            ("exit status: 3", "no")
        );
        let mut missing = sh("", "\n");
        missing.program = "/nonexistent/flannel-extension-command".into();
        let out = run(&missing, Duration::from_secs(20)).await;
        assert!(!out.ok);
        assert!(
            out.status
                .starts_with("cannot start /nonexistent/flannel-extension-command"),
            "{}",
            out.status
        );
        // A command that ignores its input is fine.
        let big = "x".repeat(1 << 20);
        let out = run(&sh("exit 0", &big), Duration::from_secs(20)).await;
        assert!(out.ok, "{out:?}");
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_killed_at_its_timeout() {
        let t0 = Instant::now();
        let out = run(&sh("sleep 30", "\n"), Duration::from_millis(300)).await;
        assert!(!out.ok);
        assert_eq!(out.status, "timed out after 0.3 s and killed");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn the_pre_startup_output_becomes_backend_data_and_failures_are_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("failed-once");
        let script = dir.path().join("pre");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nif [ ! -e {m} ]; then touch {m}; echo first >&2; exit 1; fi\n\
                 echo warn >&2\necho ' <out> '\n",
                m = marker.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let spec = ExtensionSpec {
            commands: Commands {
                pre_startup: script.display().to_string(),
                ..Commands::default()
            },
            network: None,
            public_ip: "192.0.2.1".parse().expect("ip"),
            public_ipv6: None,
            timeout: COMMAND_TIMEOUT,
        };
        let cancel = CancellationToken::new();
        let data = pre_startup(&spec, &cancel).await.expect("not cancelled");
        assert_eq!(
            data.expect("configured").as_str(),
            r#""\u003cout\u003e""#,
            "stdout only, trimmed, as a Go JSON string"
        );
        assert!(marker.exists(), "the first run failed and was retried");
        let none = ExtensionSpec {
            commands: Commands::default(),
            ..spec
        };
        assert_eq!(pre_startup(&none, &cancel).await, Some(None));
        cancel.cancel();
    }
}
