//! `--ip-blackhole-route`: a blackhole route for this host's own pod subnet(s), so traffic to
//! pod addresses nobody uses is dropped here instead of leaving by the default route (meant for
//! setups without a bridge, where each pod has its own more specific route, e.g. Canal).
//!
//! flanneld owns the blackhole route of its current subnet and of the subnets it held before
//! (a lease re-acquired elsewhere, or a different subnet than the previous `subnet.env` had):
//! those are removed, nothing else is.
//!
//! The route is installed with metric [`BLACKHOLE_METRIC`] (for IPv6 that is the kernel's
//! default, as in Flannel; Flannel's IPv4 route has metric 0). A route to the same subnet with
//! a lower metric — the connected route of a `cni0` bridge holding the subnet's gateway address
//! — therefore keeps winning, and adding the blackhole never collides with it.

use std::collections::BTreeSet;

use flannel_model::SubnetKey;
use ipnet::IpNet;

/// Metric of the blackhole routes flanneld adds (IPv4 and IPv6).
pub const BLACKHOLE_METRIC: u32 = 1024;

/// The blackhole routes wanted for our lease: one per address family it has.
pub fn desired(own: &SubnetKey) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    if let Some(v4) = own.ipv4_net() {
        out.insert(IpNet::V4(v4.trunc()));
    }
    if let Some(v6) = own.ipv6 {
        out.insert(IpNet::V6(v6.trunc()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_blackhole_per_family_of_our_lease() {
        let v4_only = SubnetKey {
            ipv4: "198.18.1.0/24".parse().expect("net"),
            ipv6: None,
        };
        let got: Vec<String> = desired(&v4_only).iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["198.18.1.0/24"]);
        let dual = SubnetKey {
            ipv6: Some("2001:db8:f000:1::/64".parse().expect("net")),
            ..v4_only
        };
        let got: Vec<String> = desired(&dual).iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["198.18.1.0/24", "2001:db8:f000:1::/64"]);
        // IPv6-only: never a blackhole for the empty IPv4 part (0.0.0.0/0).
        let v6_only = SubnetKey::v6_only("2001:db8:100:1::/64".parse().expect("net"));
        let got: Vec<String> = desired(&v6_only).iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["2001:db8:100:1::/64"]);
    }
}
