//! The Kubernetes objects flanneld reads, cut down to the fields it uses.
//!
//! k8s-openapi's `Node` and `Pod` decode every field of their (large) schemas; a `Pod` alone
//! pulls in the decoders of containers, volumes, probes, affinities and more. flanneld needs a
//! node's metadata and podCIDRs and a pod's `nodeName`, so these types name just those:
//! decoding skips everything else, and the daemon's binary (whose code is most of its resident
//! memory) carries no decoder for the rest. Both are registered under the real API paths
//! (`/api/v1/nodes`, `/api/v1/namespaces/<ns>/pods`), so `kube::Api` works with them as
//! with the full types.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Serialize};

use super::annotations::NodeInfo;

/// A Node: metadata and the podCIDR fields of its spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Node {
    /// Name, annotations, resourceVersion, ...
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The part of the spec flanneld reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NodeSpec>,
}

/// `Node.spec`, podCIDR fields only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct NodeSpec {
    /// `spec.podCIDR` (the first CIDR, as older clusters set it).
    #[serde(rename = "podCIDR", default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// `spec.podCIDRs` (one per address family on dual-stack clusters).
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Option::is_none")]
    pub pod_cidrs: Option<Vec<String>>,
}

/// A Pod: metadata and the node it runs on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Pod {
    /// Name, namespace, ...
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The part of the spec flanneld reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpec>,
}

/// `Pod.spec`, `nodeName` only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PodSpec {
    /// The node the scheduler put the pod on.
    #[serde(rename = "nodeName", default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

impl k8s_openapi::Resource for Node {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Node";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "nodes";
    type Scope = ClusterResourceScope;
}

impl k8s_openapi::ListableResource for Node {
    const LIST_KIND: &'static str = "NodeList";
}

impl k8s_openapi::Metadata for Node {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The fields flannel uses of a Node.
pub fn node_info(node: &Node) -> NodeInfo {
    let spec = node.spec.as_ref();
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        annotations: node.metadata.annotations.clone().unwrap_or_default(),
        pod_cidr: spec.and_then(|s| s.pod_cidr.clone()).unwrap_or_default(),
        pod_cidrs: spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_full_node_decodes_to_the_fields_flanneld_reads() {
        let json = r#"{
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": "n1", "resourceVersion": "42",
                         "annotations": {"flannel.alpha.coreos.com/public-ip": "192.0.2.1"}},
            "spec": {"podCIDR": "198.18.1.0/24", "podCIDRs": ["198.18.1.0/24", "fd00:1::/64"],
                     "providerID": "x", "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "images": [{"names": ["a"], "sizeBytes": 1}]}
        }"#;
        let node: Node = serde_json::from_str(json).unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
        assert_eq!(node.metadata.resource_version.as_deref(), Some("42"));
        let spec = node.spec.unwrap();
        assert_eq!(spec.pod_cidr.as_deref(), Some("198.18.1.0/24"));
        assert_eq!(
            spec.pod_cidrs,
            Some(vec!["198.18.1.0/24".to_owned(), "fd00:1::/64".to_owned()])
        );
    }

    #[test]
    fn a_node_without_spec_and_a_pod_decode() {
        let node: Node = serde_json::from_str(r#"{"metadata":{"name":"n2"}}"#).unwrap();
        assert_eq!(node.spec, None);
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"p","namespace":"kube-flannel"},
                "spec":{"nodeName":"n2","containers":[{"name":"c","image":"i"}]}}"#,
        )
        .unwrap();
        assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some("n2"));
    }

    #[test]
    fn the_types_are_registered_under_the_real_api_paths() {
        use kube::Resource;
        assert_eq!(Node::url_path(&(), None), "/api/v1/nodes");
        assert_eq!(
            Pod::url_path(&(), Some("kube-flannel")),
            "/api/v1/namespaces/kube-flannel/pods"
        );
        assert_eq!(Node::kind(&()), "Node");
    }
}
