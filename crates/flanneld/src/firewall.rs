//! Wiring of the masquerade (`--ip-masq`) and forward (`--iptables-forward-rules`) rules:
//! which rules this host wants, the start-up sequence (clean the other mode, drop rules of a
//! previous network/subnet, ensure), and the resync loop every `--iptables-resync` seconds in
//! both iptables and nftables mode.

use std::time::Duration;

use anyhow::Result;
use flannel_firewall::{Firewall, FirewallConfig, MasqParams, Mode, RuleSet};
use flannel_model::{NetworkConfig, SubnetEnv};
use ipnet::IpNet;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// The rule-related flags.
#[derive(Debug, Clone)]
pub struct RuleFlags {
    pub ip_masq: bool,
    pub forward_rules: bool,
    pub random_fully_disabled: bool,
    pub resync: Duration,
}

/// Rules for `network` and our `subnet` (IPv4 and, if given, IPv6).
pub fn desired_rules(flags: &RuleFlags, networks: &[(IpNet, IpNet)]) -> Result<RuleSet> {
    let mut set = RuleSet::new();
    for (network, subnet) in networks {
        if flags.ip_masq {
            set = set.with_masq(MasqParams::new(*network, *subnet, true)?)?;
        }
        if flags.forward_rules {
            set = set.with_forward(*network);
        }
    }
    Ok(set)
}

/// (network, subnet) pairs of a `subnet.env` (used for the previous run's rules).
pub fn networks_of_env(env: &SubnetEnv) -> Vec<(IpNet, IpNet)> {
    let mut out = Vec::new();
    if let (Some(n), Some(s)) = (env.network, env.subnet) {
        out.push((IpNet::V4(n), IpNet::V4(s.trunc())));
    }
    if let (Some(n), Some(s)) = (env.ipv6_network, env.ipv6_subnet) {
        out.push((IpNet::V6(n), IpNet::V6(s.trunc())));
    }
    out
}

/// The running rule manager.
pub struct Rules {
    firewall: Firewall,
    flags: RuleFlags,
    stop: Option<watch::Sender<bool>>,
}

impl Rules {
    /// Set up: remove the other mode's leftovers, drop rules of the previous run that no longer
    /// apply, install ours, and start the resync loop.
    pub async fn start(
        network: &NetworkConfig,
        flags: RuleFlags,
        networks: &[(IpNet, IpNet)],
        previous: &[(IpNet, IpNet)],
    ) -> Result<Self> {
        let mut cfg = FirewallConfig::new(Mode::from_enable_nftables(network.enable_nftables));
        cfg.random_fully_disabled = flags.random_fully_disabled;
        let firewall = Firewall::new(cfg);
        if let Err(e) = firewall.cleanup_other_mode().await {
            warn!(error = %e, "could not remove rules of the other firewall mode");
        }
        let mut rules = Rules {
            firewall,
            flags,
            stop: None,
        };
        rules.update(networks, previous).await?;
        Ok(rules)
    }

    /// Install the rules for `networks`, removing those of `previous` that differ, and
    /// (re)start the resync loop for them.
    pub async fn update(
        &mut self,
        networks: &[(IpNet, IpNet)],
        previous: &[(IpNet, IpNet)],
    ) -> Result<()> {
        let desired = desired_rules(&self.flags, networks)?;
        if !previous.is_empty() && previous != networks {
            let old = desired_rules(&self.flags, previous)?;
            match self.firewall.remove_previous(&old, &desired).await {
                Ok(_) => info!("removed rules of the previous network/subnet"),
                Err(e) => {
                    warn!(error = %e, "could not remove rules of the previous network/subnet")
                }
            }
        }
        if desired.is_empty() {
            return Ok(());
        }
        // Another writer (kube-proxy, a second flanneld for another network) may be changing
        // the same tables: a failed attempt is retried, and if it keeps failing the resync
        // loop goes on trying every period rather than taking the daemon down.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.firewall.ensure(&desired).await {
                Ok(_) => {
                    info!(mode = %self.firewall.mode(), masq = self.flags.ip_masq, forward = self.flags.forward_rules, "packet-filter rules in place");
                    break;
                }
                Err(e) if attempt < 5 => {
                    warn!(error = %e, attempt, "installing packet-filter rules failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    error!(error = %e, retry_every = ?self.flags.resync, "installing packet-filter rules failed; the resync keeps trying");
                    break;
                }
            }
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(
            self.firewall
                .clone()
                .resync_loop(desired, self.flags.resync, rx),
        );
        self.stop = Some(tx);
        Ok(())
    }
}
