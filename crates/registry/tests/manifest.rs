//! Structural checks of `deploy/kube-flannel-rs.yml`, the Kubernetes manifest that runs
//! flanneld with `--kube-subnet-mgr`: every document parses, the objects reference each other
//! consistently, RBAC is least privilege, probes match the healthz port, and the ConfigMap's
//! JSON documents are valid for flanneld and the CNI plugin.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context, Result};
use flannel_model::NetworkConfig;
use serde::Deserialize;
use serde_norway::Value;

const MANIFEST: &str = include_str!("../../../deploy/kube-flannel-rs.yml");
const NAMESPACE: &str = "kube-flannel";

fn docs() -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for de in serde_norway::Deserializer::from_str(MANIFEST) {
        let v = Value::deserialize(de).context("manifest document does not parse")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str> {
    get(v, path)?
        .as_str()
        .ok_or_else(|| anyhow!("{path:?} is not a string"))
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Result<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(*p)
            .ok_or_else(|| anyhow!("missing {p} in {path:?}"))?;
    }
    Ok(cur)
}

fn seq<'a>(v: &'a Value, path: &[&str]) -> Result<&'a Vec<Value>> {
    get(v, path)?
        .as_sequence()
        .ok_or_else(|| anyhow!("{path:?} is not a list"))
}

fn strings(v: &Value, path: &[&str]) -> Result<Vec<String>> {
    seq(v, path)?
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{path:?} has a non-string entry"))
        })
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    let mut found = docs.iter().filter(|d| {
        s(d, &["kind"]).ok() == Some(kind) && s(d, &["metadata", "name"]).ok() == Some(name)
    });
    let first = found.next().ok_or_else(|| anyhow!("no {kind} {name}"))?;
    if found.next().is_some() {
        bail!("{kind} {name} defined twice");
    }
    Ok(first)
}

#[test]
fn kinds_names_and_namespaces() -> Result<()> {
    let docs = docs()?;
    let mut seen = BTreeSet::new();
    for d in &docs {
        seen.insert((
            s(d, &["kind"])?.to_owned(),
            s(d, &["metadata", "name"])?.to_owned(),
        ));
        s(d, &["apiVersion"])?;
    }
    let expected: BTreeSet<(String, String)> = [
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "flannel"),
        ("ClusterRole", "flannel"),
        ("ClusterRoleBinding", "flannel"),
        ("ConfigMap", "kube-flannel-cfg"),
        ("DaemonSet", "kube-flannel-ds"),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(docs.len(), expected.len());

    let ns = find(&docs, "Namespace", NAMESPACE)?;
    assert_eq!(
        s(
            ns,
            &["metadata", "labels", "pod-security.kubernetes.io/enforce"]
        )?,
        "privileged"
    );
    for (kind, name) in [
        ("ServiceAccount", "flannel"),
        ("ConfigMap", "kube-flannel-cfg"),
        ("DaemonSet", "kube-flannel-ds"),
    ] {
        assert_eq!(
            s(find(&docs, kind, name)?, &["metadata", "namespace"])?,
            NAMESPACE
        );
    }
    Ok(())
}

#[test]
fn rbac_is_bound_and_least_privilege() -> Result<()> {
    let docs = docs()?;
    let ds = find(&docs, "DaemonSet", "kube-flannel-ds")?;
    let sa = s(ds, &["spec", "template", "spec", "serviceAccountName"])?;
    find(&docs, "ServiceAccount", sa)?;

    let binding = find(&docs, "ClusterRoleBinding", "flannel")?;
    assert_eq!(s(binding, &["roleRef", "kind"])?, "ClusterRole");
    assert_eq!(
        s(binding, &["roleRef", "apiGroup"])?,
        "rbac.authorization.k8s.io"
    );
    let role_name = s(binding, &["roleRef", "name"])?;
    let subjects = seq(binding, &["subjects"])?;
    assert!(subjects.iter().any(|x| {
        s(x, &["kind"]).ok() == Some("ServiceAccount")
            && s(x, &["name"]).ok() == Some(sa)
            && s(x, &["namespace"]).ok() == Some(NAMESPACE)
    }));

    let role = find(&docs, "ClusterRole", role_name)?;
    let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in seq(role, &["rules"])? {
        assert_eq!(
            strings(rule, &["apiGroups"])?,
            vec![String::new()],
            "core API group only"
        );
        assert!(rule.get("resourceNames").is_none());
        let verbs = strings(rule, &["verbs"])?;
        for res in strings(rule, &["resources"])? {
            grants.entry(res).or_default().extend(verbs.iter().cloned());
        }
    }
    let set = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<BTreeSet<_>>();
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("pods".to_owned(), set(&["get"])),
        ("nodes".to_owned(), set(&["get", "list", "watch"])),
        ("nodes/status".to_owned(), set(&["patch"])),
    ]
    .into_iter()
    .collect();
    assert_eq!(grants, expected);
    Ok(())
}

#[test]
fn volumes_mounts_and_configmap_keys() -> Result<()> {
    let docs = docs()?;
    let ds = find(&docs, "DaemonSet", "kube-flannel-ds")?;
    let pod = get(ds, &["spec", "template", "spec"])?;
    let cm = find(&docs, "ConfigMap", "kube-flannel-cfg")?;
    let cm_keys: BTreeSet<&str> = get(cm, &["data"])?
        .as_mapping()
        .ok_or_else(|| anyhow!("ConfigMap data is not a map"))?
        .keys()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(cm_keys, BTreeSet::from(["cni-conf.json", "net-conf.json"]));

    let mut volumes = BTreeMap::new();
    for v in seq(pod, &["volumes"])? {
        let name = s(v, &["name"])?.to_owned();
        if let Some(c) = v.get("configMap") {
            let cm_name = s(c, &["name"])?;
            find(&docs, "ConfigMap", cm_name)?;
            if let Some(items) = c.get("items") {
                for item in items
                    .as_sequence()
                    .ok_or_else(|| anyhow!("items not a list"))?
                {
                    let key = s(item, &["key"])?;
                    assert!(
                        cm_keys.contains(key),
                        "volume {name} uses missing key {key}"
                    );
                }
            }
        }
        assert!(
            volumes.insert(name.clone(), v).is_none(),
            "duplicate volume {name}"
        );
    }
    let host_path = |name: &str| -> Result<&str> { s(volumes[name], &["hostPath", "path"]) };
    assert_eq!(host_path("run")?, "/run/flannel");
    assert_eq!(host_path("cni-plugin")?, "/opt/cni/bin");
    assert_eq!(host_path("cni")?, "/etc/cni/net.d");
    assert_eq!(host_path("xtables-lock")?, "/run/xtables.lock");
    assert_eq!(
        s(volumes["xtables-lock"], &["hostPath", "type"])?,
        "FileOrCreate"
    );
    assert!(volumes["flannel-cfg"].get("configMap").is_some());

    // Every mount names a declared volume; every declared volume is mounted somewhere.
    let mut mounted = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for c in seq(pod, &[list])? {
            for m in seq(c, &["volumeMounts"])? {
                let name = s(m, &["name"])?;
                assert!(
                    volumes.contains_key(name),
                    "mount of undeclared volume {name}"
                );
                s(m, &["mountPath"])?;
                mounted.insert(name.to_owned());
            }
        }
    }
    assert_eq!(mounted, volumes.keys().cloned().collect::<BTreeSet<_>>());

    // flanneld reads /etc/kube-flannel/net-conf.json (its default --net-config-path) and the
    // install-cni container reads /etc/kube-flannel/cni-conf.json: both need the ConfigMap there.
    for list in ["initContainers", "containers"] {
        for c in seq(pod, &[list])? {
            let name = s(c, &["name"])?;
            let cfg_path = seq(c, &["volumeMounts"])?
                .iter()
                .find(|m| s(m, &["name"]).ok() == Some("flannel-cfg"))
                .map(|m| s(m, &["mountPath"]))
                .transpose()?;
            let wanted = match name {
                "kube-flannel" | "install-cni" => Some("/etc/kube-flannel/"),
                _ => None,
            };
            assert_eq!(cfg_path, wanted, "flannel-cfg mount of {name}");
        }
    }
    Ok(())
}

#[test]
fn daemonset_containers() -> Result<()> {
    let docs = docs()?;
    let ds = find(&docs, "DaemonSet", "kube-flannel-ds")?;
    let pod = get(ds, &["spec", "template", "spec"])?;
    assert_eq!(get(pod, &["hostNetwork"])?.as_bool(), Some(true));
    assert_eq!(s(pod, &["priorityClassName"])?, "system-node-critical");
    let tol = seq(pod, &["tolerations"])?;
    assert!(tol
        .iter()
        .any(|t| s(t, &["operator"]).ok() == Some("Exists")
            && s(t, &["effect"]).ok() == Some("NoSchedule")));
    // The selector matches the template's labels.
    let sel = get(ds, &["spec", "selector", "matchLabels"])?
        .as_mapping()
        .ok_or_else(|| anyhow!("matchLabels not a map"))?;
    let labels = get(ds, &["spec", "template", "metadata", "labels"])?;
    for (k, v) in sel {
        assert_eq!(labels.get(k.as_str().unwrap_or_default()), Some(v));
    }

    let containers = seq(pod, &["containers"])?;
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        strings(c, &["command"])?,
        vec!["/opt/bin/flanneld".to_owned()]
    );
    let args = strings(c, &["args"])?;
    assert!(args.contains(&"--ip-masq".to_owned()));
    assert!(args.contains(&"--kube-subnet-mgr".to_owned()));
    let port: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--healthz-port="))
        .ok_or_else(|| anyhow!("no --healthz-port in {args:?}"))?
        .parse()?;
    assert!(
        !args.iter().any(|a| a.starts_with("--healthz-ip")),
        "healthz must listen on 0.0.0.0"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(s(c, &[probe, "httpGet", "path"])?, path);
        assert_eq!(
            get(c, &[probe, "httpGet", "port"])?.as_u64(),
            Some(port),
            "{probe}"
        );
    }
    assert_eq!(
        get(c, &["securityContext", "privileged"])?.as_bool(),
        Some(false)
    );
    assert_eq!(
        strings(c, &["securityContext", "capabilities", "add"])?,
        vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]
    );
    let env = seq(c, &["env"])?;
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env
            .iter()
            .find(|e| s(e, &["name"]).ok() == Some(name))
            .ok_or_else(|| anyhow!("no env {name}"))?;
        assert_eq!(s(e, &["valueFrom", "fieldRef", "fieldPath"])?, field);
    }

    // All containers run the same image.
    let image = s(c, &["image"])?;
    let inits = seq(pod, &["initContainers"])?;
    for i in inits {
        assert_eq!(s(i, &["image"])?, image);
    }
    let by_name = |n: &str| {
        inits
            .iter()
            .find(|i| s(i, &["name"]).ok() == Some(n))
            .ok_or_else(|| anyhow!("no init container {n}"))
    };
    let plugin = by_name("install-cni-plugin")?;
    let cmd = [strings(plugin, &["command"])?, strings(plugin, &["args"])?].concat();
    assert_eq!(
        cmd,
        ["cp", "-f", "/opt/bin/flannel", "/opt/cni/bin/flannel"]
    );
    // The conflist is written to a temporary name and renamed into place.
    let conf = by_name("install-cni")?;
    let script = strings(conf, &["args"])?.join(" ");
    let tmp = "/etc/cni/net.d/.10-flannel.conflist.tmp";
    let cp = script
        .find(&format!("cp -f /etc/kube-flannel/cni-conf.json {tmp}"))
        .ok_or_else(|| anyhow!("no copy to temp file: {script}"))?;
    let mv = script
        .find(&format!("mv -f {tmp} /etc/cni/net.d/10-flannel.conflist"))
        .ok_or_else(|| anyhow!("no rename into place: {script}"))?;
    assert!(cp < mv);
    Ok(())
}

#[test]
fn configmap_json_documents() -> Result<()> {
    let docs = docs()?;
    let cm = find(&docs, "ConfigMap", "kube-flannel-cfg")?;
    let net = NetworkConfig::parse(s(cm, &["data", "net-conf.json"])?)
        .map_err(|e| anyhow!("net-conf.json: {e}"))?;
    assert_eq!(net.network, Some("10.244.0.0/16".parse()?));
    assert_eq!(net.backend_type(), "vxlan");
    assert!(!net.enable_nftables);

    let cni: serde_json::Value = serde_json::from_str(s(cm, &["data", "cni-conf.json"])?)?;
    assert_eq!(cni["cniVersion"], "0.3.1");
    let plugins = cni["plugins"]
        .as_array()
        .ok_or_else(|| anyhow!("cni-conf.json has no plugins list"))?;
    let types: Vec<&str> = plugins.iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(types, ["flannel", "portmap"]);
    assert_eq!(plugins[0]["delegate"]["hairpinMode"], true);
    assert_eq!(plugins[0]["delegate"]["isDefaultGateway"], true);
    assert_eq!(plugins[1]["capabilities"]["portMappings"], true);
    Ok(())
}
