//! The vxlan checksum-offload workaround (see `flannel_planner::offload` for the bug): at
//! start-up, once the vxlan devices exist, flanneld turns `tx-checksum-ip-generic` off on them
//! when the kernel has the bug, and says so in its log. `--vxlan-tx-checksum-fix=false` leaves
//! offloads alone (logged as a warning on an affected kernel). Reading and setting the feature
//! goes through the `ethtool` program.

use flannel_planner::offload;
use tokio::process::Command;
use tracing::{debug, info, warn};

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `tx-checksum-ip-generic` of `dev` (`None` when ethtool cannot tell).
pub async fn tx_checksum(dev: &str) -> Option<bool> {
    let out = Command::new("ethtool")
        .arg("-k")
        .arg(dev)
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    offload::parse_ethtool_features(&String::from_utf8_lossy(&out.stdout))
}

/// `ethtool -K <dev> tx-checksum-ip-generic off`; the error text when it fails.
pub async fn disable_tx_checksum(dev: &str) -> Result<(), String> {
    let out = Command::new("ethtool")
        .args(["-K", dev, offload::FEATURE, "off"])
        .output()
        .await
        .map_err(|e| format!("cannot run ethtool: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Apply the workaround to the vxlan devices `devs` if this kernel needs it.
pub async fn fix_vxlan_devices(devs: &[String], enabled: bool) {
    let release = kernel_release();
    if !offload::kernel_has_bug(&release) {
        debug!(kernel = %release, "kernel has no vxlan checksum bug; offloads left alone");
        return;
    }
    for dev in devs {
        let on = tx_checksum(dev).await;
        if !enabled {
            if on != Some(false) {
                warn!(dev = %dev, kernel = %release, "kernel has the vxlan checksum bug (fixed in 5.7) but --vxlan-tx-checksum-fix=false: leaving tx checksum offload on");
            }
            continue;
        }
        if !offload::should_disable(enabled, &release, on) {
            continue;
        }
        match disable_tx_checksum(dev).await {
            Ok(()) => {
                info!(dev = %dev, kernel = %release, "turned tx checksum offload off: this kernel has the vxlan checksum bug (fixed in 5.7)")
            }
            Err(e) => {
                warn!(dev = %dev, kernel = %release, error = %e, "could not turn tx checksum offload off (kernel has the vxlan checksum bug); run `ethtool -K {dev} tx-checksum-ip-generic off`")
            }
        }
    }
}
