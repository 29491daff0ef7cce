//! `flannelctl vm run [--kernel debian] -- CMD ARGS…`: one command on Debian's packaged kernel
//! under qemu, with this machine's root shared into the guest (see docs/kernels.md). Its
//! output is streamed as it comes; flannelctl exits with its status.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flannel_vmkernel::{Kernel, Machine, RunRequest, Stream, Vm};

/// The variables a guest command gets from flannelctl's own environment (besides `--env`).
const PASSED_THROUGH: [&str; 8] = [
    "PATH",
    "HOME",
    "TERM",
    "CI",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "RUST_TEST_THREADS",
    "NO_COLOR",
];

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot the kernel, run one command (in the current directory), exit with its status.
    Run(RunArgs),
}

/// The kernels the harness can boot.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KernelChoice {
    /// Debian's current amd64 kernel package (`linux-image-amd64`'s dependency).
    Debian,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which kernel to boot.
    #[arg(long, value_enum, default_value = "debian")]
    kernel: KernelChoice,
    /// Kill the guest after this many seconds (boot included).
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    timeout: u64,
    /// Extra environment for the command: NAME=VALUE, or NAME to pass flannelctl's own
    /// (repeatable). PATH, HOME, TERM, CI, RUST_BACKTRACE, RUST_LOG, RUST_TEST_THREADS and
    /// NO_COLOR are passed when set; nothing else is.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// The command's environment: the passed-through variables that are set, then `--env`
/// (a later entry of a name replaces an earlier one).
pub fn environment(
    extra: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v));
    };
    for k in PASSED_THROUGH {
        if let Some(v) = lookup(k) {
            set(k, v);
        }
    }
    for e in extra {
        match e.split_once('=') {
            Some((k, v)) => set(k, v.to_string()),
            None => {
                if let Some(v) = lookup(e) {
                    set(e, v);
                }
            }
        }
    }
    env
}

/// SIGINT, SIGTERM and SIGHUP kill the guest (the run returns `Interrupted`).
pub fn watch_signals() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("blocking signals")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("\nflannelctl vm: {sig}: stopping the guest");
                flannel_vmkernel::interrupt();
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

pub fn run(command: VmCommand) -> Result<ExitCode> {
    let VmCommand::Run(a) = command;
    watch_signals()?;
    let KernelChoice::Debian = a.kernel;
    let vm = Vm {
        machine: Machine {
            memory_mib: a.memory,
            cpus: a.cpus,
            ..Machine::default()
        },
        ..Vm::default()
    };
    let kernel = vm.prepare_debian().context("preparing Debian's kernel")?;
    let workdir = std::env::current_dir().context("reading the current directory")?;
    let req = RunRequest {
        argv: a.command,
        env: environment(&a.env, |k| std::env::var(k).ok()),
        workdir,
        timeout: Duration::from_secs(a.timeout),
    };
    run_streaming(&vm, &kernel, &req)
}

/// Runs `req` in a guest of `kernel`, its output streamed to ours as it comes, then one line
/// with the kernel and the times on stderr; the command's exit status.
pub fn run_streaming(vm: &Vm, kernel: &Kernel, req: &RunRequest) -> Result<ExitCode> {
    let out = vm
        .run(kernel, req, |stream, bytes| {
            // A closed stdout/stderr must not stop the run.
            let _ = match stream {
                Stream::Stdout => std::io::stdout().write_all(bytes),
                Stream::Stderr => std::io::stderr().write_all(bytes),
            };
        })
        .map_err(|e| anyhow!("running the guest: {e}"))?;
    let _ = std::io::stdout().flush();
    eprintln!(
        "flannelctl vm: kernel {} ({} {}): exit {}; boot {:.1} s (guest uptime {:.1} s), command {:.1} s (guest time), qemu {:.1} s wall",
        kernel.release,
        kernel.package,
        kernel.version,
        out.status,
        out.boot.as_secs_f64(),
        out.guest_boot.as_secs_f64(),
        out.command.as_secs_f64(),
        out.wall.as_secs_f64()
    );
    Ok(ExitCode::from(u8::try_from(out.status).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_the_passed_through_set_and_env_flags() {
        let host = |k: &str| match k {
            "PATH" => Some("/usr/bin".to_string()),
            "CI" => Some("true".to_string()),
            "SECRET" => Some("no".to_string()),
            "WANTED" => Some("yes".to_string()),
            _ => None,
        };
        let env = environment(
            &[
                "WANTED".into(),
                "A=b=c".into(),
                "CI=false".into(),
                "UNSET".into(),
            ],
            host,
        );
        assert_eq!(
            env,
            [
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("WANTED".into(), "yes".into()),
                ("A".into(), "b=c".into()),
                ("CI".into(), "false".into()),
            ]
        );
    }

    #[test]
    fn run_takes_the_command_after_the_double_dash() {
        #[derive(Debug, clap::Parser)]
        struct T {
            #[command(subcommand)]
            vm: VmCommand,
        }
        let t = <T as clap::Parser>::try_parse_from([
            "t",
            "run",
            "--timeout",
            "60",
            "--env",
            "A=1",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .expect("parse");
        let VmCommand::Run(a) = t.vm;
        assert!(matches!(a.kernel, KernelChoice::Debian));
        assert_eq!(a.timeout, 60);
        assert_eq!(a.env, ["A=1"]);
        assert_eq!(a.command, ["sh", "-c", "exit 3"]);
        assert!(
            <T as clap::Parser>::try_parse_from(["t", "run"]).is_err(),
            "a command is required"
        );
    }
}
