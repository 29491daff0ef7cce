//! Deterministic, realistic Kubernetes objects (Node, Pod, Status) and their metadata-only
//! projections, as a real kube-apiserver would serve them.
//!
//! Nodes are built to be about as large as a kubelet-managed node of a real cluster (~12 KB of
//! JSON): labels and annotations as kubelet/kubeadm set them, managedFields for kubeadm,
//! kubelet and kube-controller-manager, five conditions with heartbeat times, capacity,
//! node info and 30 container images. Everything is derived from the node's name and its
//! index, so two runs produce the same bytes.

use serde_json::{json, Map, Value};

/// 2025-01-01T00:00:00Z: the logical clock's origin (timestamps are origin + resourceVersion s).
const CLOCK_ORIGIN: u64 = 1_735_689_600;

/// Conditions the kubelet owns and refreshes on every status update (heartbeat).
const KUBELET_CONDITIONS: [(&str, &str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    (
        "DiskPressure",
        "False",
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
    ),
    (
        "PIDPressure",
        "False",
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
    ),
    (
        "Ready",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    ),
];

/// Container images a node typically has pulled: (repository, tag, size in bytes).
const IMAGES: [(&str, &str, u64); 30] = [
    ("registry.k8s.io/kube-proxy", "v1.31.4", 30_226_458),
    ("registry.k8s.io/pause", "3.10", 320_368),
    ("registry.k8s.io/coredns/coredns", "v1.11.3", 18_562_039),
    (
        "registry.k8s.io/metrics-server/metrics-server",
        "v0.7.2",
        19_494_617,
    ),
    (
        "registry.k8s.io/sig-storage/csi-node-driver-registrar",
        "v2.12.0",
        11_245_871,
    ),
    (
        "registry.k8s.io/sig-storage/livenessprobe",
        "v2.14.0",
        10_982_263,
    ),
    (
        "registry.k8s.io/sig-storage/csi-provisioner",
        "v5.1.0",
        30_418_233,
    ),
    (
        "registry.k8s.io/sig-storage/csi-attacher",
        "v4.7.0",
        29_014_102,
    ),
    (
        "registry.k8s.io/sig-storage/csi-resizer",
        "v1.12.0",
        28_771_440,
    ),
    (
        "registry.k8s.io/sig-storage/csi-snapshotter",
        "v8.1.0",
        27_655_310,
    ),
    (
        "registry.k8s.io/ingress-nginx/controller",
        "v1.11.3",
        105_433_921,
    ),
    (
        "registry.k8s.io/kube-state-metrics/kube-state-metrics",
        "v2.13.0",
        22_106_815,
    ),
    (
        "registry.k8s.io/node-problem-detector/node-problem-detector",
        "v0.8.20",
        61_993_180,
    ),
    (
        "registry.k8s.io/dns/k8s-dns-node-cache",
        "1.23.1",
        34_204_872,
    ),
    (
        "registry.k8s.io/autoscaling/cluster-autoscaler",
        "v1.31.0",
        39_811_245,
    ),
    (
        "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver",
        "v1.37.0",
        82_117_522,
    ),
    ("quay.io/prometheus/node-exporter", "v1.8.2", 12_094_510),
    ("quay.io/prometheus/prometheus", "v2.55.1", 112_771_003),
    (
        "quay.io/prometheus-operator/prometheus-config-reloader",
        "v0.78.2",
        15_303_377,
    ),
    (
        "quay.io/jetstack/cert-manager-controller",
        "v1.16.2",
        17_711_948,
    ),
    (
        "quay.io/jetstack/cert-manager-webhook",
        "v1.16.2",
        15_128_663,
    ),
    (
        "quay.io/jetstack/cert-manager-cainjector",
        "v1.16.2",
        13_950_204,
    ),
    ("docker.io/grafana/grafana", "11.3.1", 124_590_312),
    ("docker.io/grafana/promtail", "3.2.1", 84_318_055),
    ("docker.io/fluent/fluent-bit", "3.2.2", 36_402_915),
    ("docker.io/library/nginx", "1.27.3", 72_955_450),
    ("docker.io/library/busybox", "1.37.0", 2_155_128),
    ("docker.io/library/redis", "7.4.1", 45_610_702),
    ("ghcr.io/flannel-io/flannel", "v0.28.9", 33_912_540),
    (
        "ghcr.io/flannel-io/flannel-cni-plugin",
        "v1.9.1-flannel3",
        4_961_215,
    ),
];

/// FNV-1a 64 of a string: the seed for everything derived from a name.
pub(crate) fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64 step: a small deterministic generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` hex digits from a seed.
fn hex(seed: u64, n: usize) -> String {
    let mut state = seed;
    let mut out = String::with_capacity(n + 16);
    while out.len() < n {
        out.push_str(&format!("{:016x}", splitmix(&mut state)));
    }
    out.truncate(n);
    out
}

/// A deterministic UUID-shaped string for `kind/name`.
pub(crate) fn uid(kind: &str, name: &str) -> String {
    let h = hex(fnv1a(&format!("{kind}/{name}")), 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// RFC 3339 UTC time of the logical clock at `secs` after its origin.
pub(crate) fn timestamp(secs: u64) -> String {
    let t = CLOCK_ORIGIN + secs;
    let days = t / 86_400;
    let rem = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `spec` fields for a node's pod CIDRs (both absent when none are assigned).
pub(crate) fn set_pod_cidrs(node: &mut Value, pod_cidrs: &[&str]) {
    let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(first) = pod_cidrs.first() {
        spec.insert("podCIDR".into(), json!(first));
        spec.insert("podCIDRs".into(), json!(pod_cidrs));
    } else {
        spec.remove("podCIDR");
        spec.remove("podCIDRs");
    }
}

/// Set (`Some`) or remove (`None`) one annotation.
pub(crate) fn set_annotation(obj: &mut Value, key: &str, value: Option<&str>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(map) = annotations.as_object_mut() {
        match value {
            Some(v) => {
                map.insert(key.to_string(), json!(v));
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// A realistic Node as a kubelet registers it and kube-controller-manager assigns its pod CIDRs.
/// `index` (the order nodes were added) picks its address; `rv` is its resourceVersion and the
/// logical time of creation.
pub(crate) fn node(name: &str, index: u64, pod_cidrs: &[&str], rv: u64) -> Value {
    let seed = fnv1a(name);
    let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][(seed % 3) as usize];
    let instance_id = format!("i-0{}", hex(seed ^ 0x1d, 16));
    let created = timestamp(rv);
    let ip = format!("192.0.2.{}", index % 254 + 1);
    let images: Vec<Value> = IMAGES
        .iter()
        .enumerate()
        .map(|(i, (repo, tag, size))| {
            let digest = hex(fnv1a(repo) ^ (i as u64), 64);
            json!({
                "names": [format!("{repo}@sha256:{digest}"), format!("{repo}:{tag}")],
                "sizeBytes": size,
            })
        })
        .collect();
    let mut conditions: Vec<Value> = KUBELET_CONDITIONS
        .iter()
        .map(|(ty, status, reason, message)| {
            json!({
                "type": ty, "status": status,
                "lastHeartbeatTime": created, "lastTransitionTime": created,
                "reason": reason, "message": message,
            })
        })
        .collect();
    conditions.insert(
        0,
        json!({
            "type": "KernelDeadlock", "status": "False",
            "lastHeartbeatTime": created, "lastTransitionTime": created,
            "reason": "KernelHasNoDeadlock", "message": "kernel has no deadlock",
        }),
    );
    let mut node = json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": uid("nodes", name),
            "resourceVersion": rv.to_string(),
            "creationTimestamp": created,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/instance-type": "m5.xlarge",
                "beta.kubernetes.io/os": "linux",
                "failure-domain.beta.kubernetes.io/region": "us-east-1",
                "failure-domain.beta.kubernetes.io/zone": zone,
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "m5.xlarge",
                "topology.ebs.csi.aws.com/zone": zone,
                "topology.kubernetes.io/region": "us-east-1",
                "topology.kubernetes.io/zone": zone,
            },
            "annotations": {
                "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"{instance_id}\"}}"),
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "managedFields": managed_fields(&created),
        },
        "spec": {
            "providerID": format!("aws:///{zone}/{instance_id}"),
        },
        "status": {
            "capacity": {
                "cpu": "4", "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0",
                "hugepages-2Mi": "0", "memory": "16073580Ki", "pods": "110",
            },
            "allocatable": {
                "cpu": "3920m", "ephemeral-storage": "95551679124", "hugepages-1Gi": "0",
                "hugepages-2Mi": "0", "memory": "15056748Ki", "pods": "110",
            },
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "InternalDNS", "address": format!("{name}.ec2.internal")},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hex(seed ^ 0x3a, 32),
                "systemUUID": uid("system", name),
                "bootID": uid("boot", name),
                "kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
                "osImage": "Amazon Linux 2023.6.20241212",
                "containerRuntimeVersion": "containerd://1.7.23",
                "kubeletVersion": "v1.31.4",
                "kubeProxyVersion": "v1.31.4",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
            "runtimeHandlers": [
                {"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
                {"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
            ],
        },
    });
    set_pod_cidrs(&mut node, pod_cidrs);
    node
}

/// The managedFields a kubeadm-joined node carries (kubeadm, kube-controller-manager, kubelet,
/// and the kubelet's status updates, which is the entry heartbeats touch).
fn managed_fields(time: &str) -> Value {
    let kubelet_conditions: Map<String, Value> =
        ["DiskPressure", "MemoryPressure", "PIDPressure", "Ready"]
            .iter()
            .map(|ty| {
                (
                    format!("k:{{\"type\":\"{ty}\"}}"),
                    json!({
                        ".": {}, "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {},
                        "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {},
                    }),
                )
            })
            .collect();
    json!([
        {
            "manager": "kubeadm", "operation": "Update", "apiVersion": "v1", "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {
                "f:kubeadm.alpha.kubernetes.io/cri-socket": {},
            }}},
        },
        {
            "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
            "time": time, "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {"f:node.alpha.kubernetes.io/ttl": {}}},
                "f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, "v:\"10.244.0.0/24\"": {}}},
            },
        },
        {
            "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:annotations": {
                        ".": {}, "f:csi.volume.kubernetes.io/nodeid": {},
                        "f:volumes.kubernetes.io/controller-managed-attach-detach": {},
                    },
                    "f:labels": {
                        ".": {}, "f:beta.kubernetes.io/arch": {}, "f:beta.kubernetes.io/instance-type": {},
                        "f:beta.kubernetes.io/os": {}, "f:failure-domain.beta.kubernetes.io/region": {},
                        "f:failure-domain.beta.kubernetes.io/zone": {}, "f:kubernetes.io/arch": {},
                        "f:kubernetes.io/hostname": {}, "f:kubernetes.io/os": {},
                        "f:node.kubernetes.io/instance-type": {}, "f:topology.ebs.csi.aws.com/zone": {},
                        "f:topology.kubernetes.io/region": {}, "f:topology.kubernetes.io/zone": {},
                    },
                },
                "f:spec": {"f:providerID": {}},
            },
        },
        {
            "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": time,
            "fieldsType": "FieldsV1", "subresource": "status",
            "fieldsV1": {"f:status": {
                "f:allocatable": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}},
                "f:capacity": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}},
                "f:conditions": Value::Object(kubelet_conditions),
                "f:images": {},
                "f:nodeInfo": {"f:bootID": {}, "f:containerRuntimeVersion": {}, "f:kernelVersion": {}},
                "f:runtimeHandlers": {},
            }},
        },
        {
            "manager": "node-problem-detector", "operation": "Update", "apiVersion": "v1",
            "time": time, "fieldsType": "FieldsV1", "subresource": "status",
            "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"KernelDeadlock\"}": {
                ".": {}, "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {},
                "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {},
            }}}},
        },
    ])
}

/// A kubelet status update: every condition's `lastHeartbeatTime` (except the ones other
/// managers own, such as NetworkUnavailable) and the time of the kubelet's and the node
/// problem detector's status managedFields entries become `now`.
pub(crate) fn heartbeat(node: &mut Value, now: &str) {
    if let Some(conds) = node
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in conds.iter_mut() {
            let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
            if ty != "NetworkUnavailable" {
                if let Some(obj) = c.as_object_mut() {
                    obj.insert("lastHeartbeatTime".into(), json!(now));
                }
            }
        }
    }
    if let Some(fields) = node
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for f in fields.iter_mut() {
            let is_status = f.get("subresource").and_then(Value::as_str) == Some("status");
            let manager = f.get("manager").and_then(Value::as_str).unwrap_or("");
            if is_status && (manager == "kubelet" || manager == "node-problem-detector") {
                if let Some(obj) = f.as_object_mut() {
                    obj.insert("time".into(), json!(now));
                }
            }
        }
    }
}

/// Record that `manager` updated the object (through `subresource`, if any) at `now`, as the
/// apiserver's managedFields bookkeeping does (one entry per manager + subresource).
pub(crate) fn touch_managed_fields(
    obj: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let fields = meta
        .entry("managedFields")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = fields.as_array_mut() else {
        return;
    };
    let existing = list.iter_mut().find(|f| {
        f.get("manager").and_then(Value::as_str) == Some(manager)
            && f.get("subresource").and_then(Value::as_str) == subresource
    });
    match existing {
        Some(f) => {
            if let Some(o) = f.as_object_mut() {
                o.insert("time".into(), json!(now));
            }
        }
        None => {
            let mut entry = json!({
                "manager": manager, "operation": "Update", "apiVersion": "v1", "time": now,
                "fieldsType": "FieldsV1", "fieldsV1": {},
            });
            if let (Some(sub), Some(o)) = (subresource, entry.as_object_mut()) {
                o.insert("subresource".into(), json!(sub));
            }
            list.push(entry);
        }
    }
}

/// A running pod scheduled on `node_name`.
pub(crate) fn pod(namespace: &str, name: &str, node_name: &str, rv: u64) -> Value {
    let created = timestamp(rv);
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid("pods", &format!("{namespace}/{name}")),
            "resourceVersion": rv.to_string(),
            "creationTimestamp": created,
            "labels": {"app": "flannel", "tier": "node"},
        },
        "spec": {
            "nodeName": node_name,
            "serviceAccountName": "flannel",
            "hostNetwork": true,
            "containers": [{"name": "kube-flannel", "image": "ghcr.io/flannel-io/flannel:v0.28.9"}],
        },
        "status": {"phase": "Running", "hostIP": "192.0.2.1", "podIP": "192.0.2.1"},
    })
}

/// The metadata-only view of an object (`as=PartialObjectMetadata`).
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Items of a list carry no kind/apiVersion (as the apiserver encodes them).
pub(crate) fn list_item(obj: &Value, metadata_only: bool) -> Value {
    let mut item = if metadata_only {
        partial_metadata(obj)
    } else {
        obj.clone()
    };
    if let Some(o) = item.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    item
}

/// A `Status` failure object as the apiserver returns it with an error code.
pub(crate) fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let (Some(d), Some(o)) = (details, s.as_object_mut()) {
        o.insert("details".into(), d);
    }
    s
}

/// 404 for a named object of `kind` (plural resource name, e.g. "nodes").
pub(crate) fn not_found(kind: &str, name: &str) -> Value {
    status(
        404,
        "NotFound",
        &format!("{kind} \"{name}\" not found"),
        Some(json!({"name": name, "kind": kind})),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_calendar() {
        assert_eq!(timestamp(0), "2025-01-01T00:00:00Z");
        assert_eq!(timestamp(86_400 * 59 + 3661), "2025-03-01T01:01:01Z");
        assert_eq!(timestamp(86_400 * 365), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn nodes_are_deterministic_and_realistically_large() {
        let a = serde_json::to_vec(&node("node-7", 7, &["10.244.7.0/24"], 12)).unwrap();
        let b = serde_json::to_vec(&node("node-7", 7, &["10.244.7.0/24"], 12)).unwrap();
        assert_eq!(a, b);
        assert!(
            (8_000..=15_000).contains(&a.len()),
            "node is {} bytes",
            a.len()
        );
        let other = serde_json::to_vec(&node("node-8", 8, &["10.244.8.0/24"], 12)).unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn heartbeat_touches_kubelet_conditions_and_status_fields_only() {
        let mut n = node("n1", 1, &[], 1);
        let conds = n["status"]["conditions"].as_array_mut().unwrap();
        conds.push(
            json!({"type": "NetworkUnavailable", "status": "False", "lastHeartbeatTime": "x"}),
        );
        heartbeat(&mut n, "2025-02-02T00:00:00Z");
        for c in n["status"]["conditions"].as_array().unwrap() {
            let expect = if c["type"] == "NetworkUnavailable" {
                "x"
            } else {
                "2025-02-02T00:00:00Z"
            };
            assert_eq!(c["lastHeartbeatTime"], expect, "{c}");
        }
        let status_times: Vec<&Value> = n["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["subresource"] == "status")
            .map(|f| &f["time"])
            .collect();
        assert_eq!(status_times.len(), 2);
        assert!(status_times.iter().all(|t| *t == "2025-02-02T00:00:00Z"));
    }
}
