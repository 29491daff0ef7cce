//! Kubernetes mode: a node's annotations and PodCIDRs (`crates/registry/src/kube/annotations.rs`).
//!
//! That file is pure (no API client) and compiled into this target by path, so the fuzz build
//! does not have to compile the etcd and Kubernetes clients the rest of flannel-registry needs.
//!
//! Input: line 1 is the `--kube-annotation-prefix` (empty: the default); then one
//! `name=value` per line, where `name` is `podCIDR`, `podCIDRs` (comma-separated) or an
//! annotation's full name. Checks: no panic; a normalised prefix is well-formed; for a node
//! that gives a peer lease, flanneld's own annotations for that lease converge (after applying
//! the patch, nothing is left to patch), the patch body is JSON holding exactly those
//! annotations, and a node carrying them yields the same lease again.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/registry/src/kube/annotations.rs"]
mod annotations;

use std::collections::BTreeMap;

use annotations::{
    annotations_patch_body, annotations_to_patch, desired_annotations, node_to_lease,
    normalize_prefix, own_pod_cidrs, restore_vtep_mac, AnnotationNames, NodeInfo, DEFAULT_PREFIX,
};
use flannel_model::{IpStack, Lease, NetworkConfig};
use libfuzzer_sys::fuzz_target;

/// Missing backend data is written as `null` (Go's `RawMessage(nil)`), and `null` reads back
/// as the raw value `null`: the same lease.
fn without_null_data(mut lease: Lease) -> Lease {
    for d in [
        &mut lease.attrs.backend_data,
        &mut lease.attrs.backend_v6_data,
    ] {
        if d.as_ref().is_some_and(|d| d.is_null()) {
            *d = None;
        }
    }
    lease
}

const NET_CONF: &str = r#"{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}"#;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let prefix = match lines.next() {
        Some("") | None => DEFAULT_PREFIX,
        Some(p) => p,
    };
    if let Ok(p) = normalize_prefix(prefix) {
        assert!(p.ends_with('/') || p.ends_with('-'), "{p:?}");
        assert_eq!(p.matches('/').count(), 1, "{p:?}");
    }
    let Ok(names) = AnnotationNames::new(prefix) else {
        return;
    };
    let mut node = NodeInfo {
        name: "node-1".into(),
        ..NodeInfo::default()
    };
    for (k, v) in lines.filter_map(|l| l.split_once('=')) {
        match k {
            "podCIDR" => node.pod_cidr = v.to_owned(),
            "podCIDRs" => node.pod_cidrs = v.split(',').map(str::to_owned).collect(),
            _ => {
                node.annotations.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    let _ = restore_vtep_mac(&names, &node.annotations);
    let config = NetworkConfig::parse(NET_CONF).expect("valid net-conf");
    if let Ok((v4, v6)) = own_pod_cidrs(&node, &config) {
        if let (Some(v4), Some(net)) = (v4, config.network) {
            assert!(net.contains(&v4), "{v4} outside {net}");
        }
        if let (Some(v6), Some(net)) = (v6, config.ipv6_network) {
            assert!(net.contains(&v6), "{v6} outside {net}");
        }
    }

    for stack in [IpStack::Ipv4, IpStack::Dual, IpStack::Ipv6] {
        let Ok(Some(lease)) = node_to_lease(&node, &names, stack) else {
            continue;
        };
        let desired = desired_annotations(&names, &node.annotations, &lease.attrs);
        let patch = annotations_to_patch(&names, &node.annotations, &lease.attrs);
        let body = annotations_patch_body(&patch);
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("patch body {body} is not JSON: {e}"));
        let sent: BTreeMap<String, String> =
            serde_json::from_value(v["metadata"]["annotations"].clone())
                .unwrap_or_else(|e| panic!("patch body {body}: {e}"));
        assert_eq!(sent, patch, "patch body {body}");

        let mut patched = node.annotations.clone();
        patched.extend(patch);
        let again = annotations_to_patch(&names, &patched, &lease.attrs);
        assert!(again.is_empty(), "patch does not converge: {again:?} left");
        for (k, v) in &desired {
            assert_eq!(patched.get(k), Some(v));
        }

        // A node carrying exactly our annotations for this lease gives the lease back (unless a
        // user's overwrite replaced our address, or vxlan without data writes no address).
        let overwritten = [&names.public_ip_overwrite, &names.public_ipv6_overwrite]
            .iter()
            .any(|k| node.annotations.get(*k).is_some_and(|v| !v.is_empty()));
        let no_v4_addr = lease.attrs.backend_type == "vxlan"
            && lease
                .attrs
                .backend_data
                .as_ref()
                .is_none_or(|d| d.is_null());
        if overwritten || no_v4_addr {
            continue;
        }
        let mut cidrs = vec![lease.subnet.ipv4.to_string()];
        cidrs.extend(lease.subnet.ipv6.map(|n| n.to_string()));
        let ours = NodeInfo {
            name: node.name.clone(),
            annotations: desired,
            pod_cidr: cidrs[0].clone(),
            pod_cidrs: cidrs,
        };
        match node_to_lease(&ours, &names, stack) {
            Ok(Some(back)) => assert_eq!(
                without_null_data(back),
                without_null_data(lease),
                "lease → annotations → lease"
            ),
            other if stack == IpStack::Ipv4 => {
                panic!("our own annotations {:?} give {other:?}", ours.annotations)
            }
            _ => {}
        }
    }
});
