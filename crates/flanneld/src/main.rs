//! `flanneld`: parse flags (Flannel's, in Go syntax, with `FLANNELD_*` fallbacks), set up
//! logging, run the daemon until SIGTERM/SIGINT.
//!
//! Exit codes: 0 after a clean shutdown, `--help` or `--version`; 2 for a bad command line or
//! environment value (Flannel exits 0 there); 1 for a start-up failure a restart will not fix.

mod backend;
mod charon;
mod daemon;
mod datapath;
mod extension;
mod firewall;
mod health;
mod ipsec;
mod journal;
mod leases;
mod logging;
mod metrics;
mod offload;
mod ondemand;
mod process_metrics;
mod runtime;
mod udp;
mod vici;
mod wgkey;
mod wireguard;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use flannel_kernel::iface::IfaceRequest;
use flannel_registry::etcd::EtcdConfig;
use flannel_registry::kube::client::ClientOptions;
use flannel_registry::kube::watch::WatchMode;
use flannel_registry::ManagerConfig;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use flanneld_cli::cli::{self, CliError, Flags};

fn main() -> ExitCode {
    let flags = match cli::parse_from(std::env::args_os()) {
        Ok(flags) => flags,
        Err(err) => {
            match &err {
                CliError::Help(text) => print!("{text}"),
                // Flannel prints its version to stderr.
                CliError::Version => eprintln!("{}", env!("CARGO_PKG_VERSION")),
                CliError::Usage(message) => eprintln!("{message}"),
            }
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1));
        }
    };
    // A bad FLANNELD_* value would silently become the default in Flannel; refuse it instead.
    if let Some(message) = flags.env_warnings.first() {
        eprintln!("flanneld: {message}");
        return ExitCode::from(2);
    }
    if let Err(message) = flags.validate() {
        eprintln!("{message}");
        return ExitCode::from(1);
    }
    logging::init(flags.v);
    info!(
        "flannel-rs {} starting; CLI flags config: {}",
        env!("CARGO_PKG_VERSION"),
        flags.log_summary()
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        if let Err(e) = watch_signals(cancel.clone()) {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::from(1);
        }
        let ready = health::Readiness::default();
        let metrics = metrics::Metrics::new();
        if flags.healthz_port > 0 {
            let addr = SocketAddr::new(flags.healthz_ip, flags.healthz_port);
            if let Err(e) =
                health::serve(addr, ready.clone(), metrics.clone(), cancel.clone()).await
            {
                error!("{}", logging::error_text(&e));
                return ExitCode::from(1);
            }
        }
        match daemon::run(daemon_config(&flags), ready, metrics, cancel).await {
            Ok(()) => {
                info!("Exiting cleanly...");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{}", logging::error_text(&e));
                ExitCode::from(1)
            }
        }
    })
}

fn daemon_config(flags: &Flags) -> daemon::DaemonConfig {
    let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
    daemon::DaemonConfig {
        etcd: EtcdConfig {
            endpoints: flags.etcd_endpoints(),
            prefix: flags.etcd_prefix.clone(),
            keyfile: flags.etcd_keyfile.clone(),
            certfile: flags.etcd_certfile.clone(),
            cafile: flags.etcd_cafile.clone(),
            username: nonempty(&flags.etcd_username),
            password: nonempty(&flags.etcd_password),
            ..EtcdConfig::default()
        },
        kube: flags.kube_subnet_mgr.then(|| leases::KubeSettings {
            client: ClientOptions {
                api_url: nonempty(&flags.kube_api_url),
                kubeconfig: flags.kubeconfig_file.clone(),
            },
            annotation_prefix: flags.kube_annotation_prefix.clone(),
            net_config_path: flags.net_config_path.clone(),
            set_node_network_unavailable: flags.set_node_network_unavailable,
            watch_mode: WatchMode::MetadataThenGet,
        }),
        subnet_file: flags.subnet_file.clone(),
        iface: IfaceRequest {
            ifaces: flags.iface.clone(),
            iface_regexes: flags.iface_regex.clone(),
            iface_can_reach: flags.iface_can_reach,
            public_ip: flags.public_ip,
            public_ipv6: flags.public_ipv6,
            ipv4: true,
            ipv6: false,
        },
        ip_masq: flags.ip_masq,
        rules: firewall::RuleFlags {
            ip_masq: flags.ip_masq,
            forward_rules: flags.iptables_forward_rules,
            random_fully_disabled: flags.ip_masq_fully_random_disable,
            resync: Duration::from_secs(flags.iptables_resync.max(1)),
        },
        manager: ManagerConfig {
            ttl: Duration::from_secs(flags.subnet_lease_ttl.max(1)),
            renew_margin: Duration::from_secs(u64::from(flags.subnet_lease_renew_margin) * 60),
            ..ManagerConfig::default()
        },
        ip_blackhole_route: flags.ip_blackhole_route,
        udp_fast_path: flags.udp_fast_path,
        vxlan_tx_checksum_fix: flags.vxlan_tx_checksum_fix,
        wireguard_implementation: flags.wireguard_implementation,
    }
}

/// First SIGTERM/SIGINT: orderly shutdown (nothing is torn down). Second: exit at once.
fn watch_signals(cancel: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        for round in 0..2 {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if round == 0 {
                info!("received {name}; shutting down (the data path stays in place)");
                cancel.cancel();
            } else {
                warn!("received {name} again; exiting now");
                // A second signal means "now": nothing is left to unwind that matters (the
                // data path stays in place by design).
                #[allow(clippy::exit)]
                std::process::exit(1);
            }
        }
    });
    Ok(())
}
