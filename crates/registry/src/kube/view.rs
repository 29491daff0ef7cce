//! One look at the cluster as flanneld in Kubernetes mode sees it, for `flannelctl status` and
//! `doctor`: our lease (our node's podCIDR(s), as [`own_subnet`] derives it, with the
//! attributes our annotations advertise) and every other flannel node as a lease
//! ([`node_to_lease`], exactly as the node watch reads them), plus the nodes that are ignored
//! and why. Kubernetes leases have no TTL and no reservations: `expiration` is always `None`.
//!
//! [`view_of`] is the pure part; [`read_view`] lists the nodes (paginated) and calls it.

use flannel_model::{IpStack, Lease, NetworkConfig};
use kube::{Api, Client};

use super::annotations::{node_to_lease, own_subnet, AnnotationNames, NodeInfo};
use super::lease::node_public_ips;
use super::metawatch::list_full;
use super::objects::{node_info, Node};

/// Our node's lease, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnLease {
    /// Our podCIDR with our annotations.
    Held(Lease),
    /// No node of our name exists.
    NoNode,
    /// Our node exists but flanneld has not marked it (`kube-subnet-manager` is not `"true"`):
    /// flanneld has not acquired its lease on it yet. `subnet` is its podCIDR, if usable.
    NotAnnotated {
        /// Our podCIDR as flanneld would take it, or why it cannot.
        subnet: Result<flannel_model::SubnetKey, String>,
    },
    /// Our node's podCIDR or annotations are unusable.
    Unusable(String),
}

/// Every node, read as flanneld reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeView {
    /// Our node's name.
    pub node: String,
    /// Our lease.
    pub own: OwnLease,
    /// The other flannel nodes' leases.
    pub peers: Vec<Lease>,
    /// Nodes marked as flannel's whose lease cannot be read, with the reason (flanneld
    /// ignores them too).
    pub ignored: Vec<(String, String)>,
    /// Nodes not managed by flannel (no `kube-subnet-manager: "true"`), by name.
    pub unmanaged: Vec<String>,
    /// Our node's `node-public-ip` annotation, which flanneld uses as `--public-ip`.
    pub own_public_ip: Option<std::net::Ipv4Addr>,
}

/// The view for `nodes` from node `own_name`, with `names` and `network` (pure).
pub fn view_of(
    nodes: &[NodeInfo],
    own_name: &str,
    names: &AnnotationNames,
    network: &NetworkConfig,
) -> KubeView {
    let stack = network.ip_stack().unwrap_or(IpStack::Ipv4);
    let mut view = KubeView {
        node: own_name.to_owned(),
        own: OwnLease::NoNode,
        peers: Vec::new(),
        ignored: Vec::new(),
        unmanaged: Vec::new(),
        own_public_ip: None,
    };
    for node in nodes {
        let lease = node_to_lease(node, names, stack);
        if node.name == own_name {
            view.own_public_ip = node_public_ips(names, node).ok().and_then(|(v4, _)| v4);
            view.own = match lease {
                Ok(None) => OwnLease::NotAnnotated {
                    subnet: own_subnet(node, network).map_err(|e| e.to_string()),
                },
                Err(e) => OwnLease::Unusable(e.to_string()),
                Ok(Some(advertised)) => match own_subnet(node, network) {
                    Ok(subnet) => OwnLease::Held(Lease {
                        subnet,
                        ..advertised
                    }),
                    Err(e) => OwnLease::Unusable(e.to_string()),
                },
            };
            continue;
        }
        match lease {
            Ok(Some(l)) => view.peers.push(l),
            Ok(None) => view.unmanaged.push(node.name.clone()),
            Err(e) => view.ignored.push((node.name.clone(), e.to_string())),
        }
    }
    view
}

/// List every node (paginated) and read them with [`view_of`].
pub async fn read_view(
    client: &Client,
    own_name: &str,
    names: &AnnotationNames,
    network: &NetworkConfig,
) -> Result<KubeView, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let (nodes, _) = list_full(&api).await?;
    let infos: Vec<NodeInfo> = nodes.iter().map(node_info).collect();
    Ok(view_of(&infos, own_name, names, network))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use super::*;

    fn names() -> AnnotationNames {
        AnnotationNames::new("flannel.alpha.coreos.com").unwrap()
    }

    fn node(name: &str, cidrs: &[&str], public_ip: Option<&str>) -> NodeInfo {
        let n = names();
        let mut annotations = BTreeMap::new();
        if let Some(ip) = public_ip {
            annotations.insert(n.kube_subnet_manager.clone(), "true".to_owned());
            annotations.insert(n.backend_type.clone(), "vxlan".to_owned());
            annotations.insert(n.public_ip.clone(), ip.to_owned());
            annotations.insert(
                n.backend_data.clone(),
                r#"{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}"#.to_owned(),
            );
        }
        NodeInfo {
            name: name.to_owned(),
            annotations,
            pod_cidr: cidrs.first().map(|c| (*c).to_owned()).unwrap_or_default(),
            pod_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn network() -> NetworkConfig {
        NetworkConfig::parse(r#"{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}"#).unwrap()
    }

    #[test]
    fn our_node_is_our_lease_and_the_others_are_peers() {
        let nodes = [
            node("h1", &["198.18.1.0/24"], Some("192.0.2.1")),
            node("h2", &["198.18.2.0/24"], Some("192.0.2.2")),
            node("plain", &["198.18.9.0/24"], None),
            node("broken", &["198.18.3.0/24"], Some("not-an-ip")),
        ];
        let v = view_of(&nodes, "h1", &names(), &network());
        let OwnLease::Held(own) = &v.own else {
            panic!("{:?}", v.own)
        };
        assert_eq!(own.subnet.ipv4.to_string(), "198.18.1.0/24");
        assert_eq!(own.attrs.public_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(own.attrs.backend_type, "vxlan");
        assert_eq!(own.expiration, None, "Kubernetes leases never expire");
        assert_eq!(v.peers.len(), 1);
        assert_eq!(v.peers[0].attrs.public_ip, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(v.unmanaged, ["plain"]);
        assert_eq!(v.ignored.len(), 1);
        assert_eq!(v.ignored[0].0, "broken");
    }

    #[test]
    fn our_node_missing_unmarked_or_outside_the_network_says_so() {
        let v = view_of(&[], "h1", &names(), &network());
        assert_eq!(v.own, OwnLease::NoNode);

        let v = view_of(
            &[node("h1", &["198.18.1.0/24"], None)],
            "h1",
            &names(),
            &network(),
        );
        assert!(
            matches!(&v.own, OwnLease::NotAnnotated { subnet: Ok(s) } if s.ipv4.to_string() == "198.18.1.0/24"),
            "{:?}",
            v.own
        );
        let v = view_of(&[node("h1", &[], None)], "h1", &names(), &network());
        assert!(
            matches!(&v.own, OwnLease::NotAnnotated { subnet: Err(e) } if e.contains("pod cidr not assigned")),
            "{:?}",
            v.own
        );
        let v = view_of(
            &[node("h1", &["203.0.113.0/24"], Some("192.0.2.1"))],
            "h1",
            &names(),
            &network(),
        );
        assert!(
            matches!(&v.own, OwnLease::Unusable(e) if e.contains("doesn't contain")),
            "{:?}",
            v.own
        );
    }
}
