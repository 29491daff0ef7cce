//! JSON merge patch (RFC 7386) and the subset of Kubernetes strategic merge patch that core/v1
//! Node updates use: maps merge recursively, `null` deletes a key, lists with a patch merge key
//! (`status.conditions` and `status.addresses` by `type`) merge element-wise, other lists are
//! replaced; `$patch: delete` removes a keyed element, `$patch: replace` replaces a map, and
//! `$setElementOrder/…` / `$retainKeys` directives are accepted and ignored.

use serde_json::{Map, Value};

/// Which patch flavour a request's content type selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
}

impl PatchKind {
    /// The kind for a `Content-Type` header value, `None` for unsupported types.
    pub(crate) fn from_content_type(ct: &str) -> Option<PatchKind> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            _ => None,
        }
    }
}

/// Apply `patch` to `target` in place.
pub(crate) fn apply(kind: PatchKind, target: &mut Value, patch: &Value) {
    let mut path = Vec::new();
    merge(kind, target, patch, &mut path);
}

/// The merge key of a strategic-merge list at `path`, if it is one.
fn merge_key(path: &[String]) -> Option<&'static str> {
    match path
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["status", "conditions"] | ["status", "addresses"] => Some("type"),
        ["metadata", "ownerReferences"] => Some("uid"),
        _ => None,
    }
}

fn merge(kind: PatchKind, target: &mut Value, patch: &Value, path: &mut Vec<String>) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if kind == PatchKind::Strategic
        && patch_map.get("$patch").and_then(Value::as_str) == Some("replace")
    {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if kind == PatchKind::Strategic && key.starts_with('$') {
            // $setElementOrder/<list>, $retainKeys, $patch (handled above): ordering hints and
            // field pruning this fake does not need.
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        path.push(key.clone());
        match (kind, value, merge_key(path)) {
            (PatchKind::Strategic, Value::Array(items), Some(mk)) => {
                let existing = target_map
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !existing.is_array() {
                    *existing = Value::Array(Vec::new());
                }
                if let Value::Array(list) = existing {
                    merge_keyed_list(list, items, mk, path);
                }
            }
            (_, Value::Object(_), _) => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                merge(kind, slot, value, path);
            }
            _ => {
                target_map.insert(key.clone(), value.clone());
            }
        }
        path.pop();
    }
}

fn merge_keyed_list(list: &mut Vec<Value>, items: &[Value], key: &str, path: &mut Vec<String>) {
    for item in items {
        let Some(id) = item.get(key).cloned() else {
            list.push(item.clone());
            continue;
        };
        let pos = list.iter().position(|e| e.get(key) == Some(&id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge(PatchKind::Strategic, &mut list[i], item, path),
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                merge(PatchKind::Strategic, &mut fresh, item, path);
                list.push(fresh);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchKind::Strategic)
        );
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/json-patch+json"),
            None
        );
    }

    #[test]
    fn null_deletes_and_maps_merge() {
        let mut t = json!({"metadata": {"annotations": {"a": "1", "b": "2"}, "name": "n"}});
        let p = json!({"metadata": {"annotations": {"a": null, "c": "3"}}});
        apply(PatchKind::Strategic, &mut t, &p);
        assert_eq!(
            t,
            json!({"metadata": {"annotations": {"b": "2", "c": "3"}, "name": "n"}})
        );
    }

    #[test]
    fn strategic_merges_conditions_by_type_merge_patch_replaces() {
        let base = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"},
        ]}});
        let p = json!({"status": {
            "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "NetworkUnavailable"}],
            "conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"}],
        }});
        let mut s = base.clone();
        apply(PatchKind::Strategic, &mut s, &p);
        assert_eq!(
            s,
            json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"},
            ]}})
        );
        let mut m = base.clone();
        apply(PatchKind::Merge, &mut m, &p);
        assert_eq!(
            m["status"]["conditions"],
            json!([{"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"}])
        );
    }

    #[test]
    fn strategic_appends_new_keyed_elements_and_deletes_by_directive() {
        let mut t = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let p = json!({"status": {"conditions": [
            {"type": "NetworkUnavailable", "status": "False"},
            {"type": "Ready", "$patch": "delete"},
        ]}});
        apply(PatchKind::Strategic, &mut t, &p);
        assert_eq!(
            t,
            json!({"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}})
        );
    }

    #[test]
    fn unkeyed_lists_are_replaced() {
        let mut t = json!({"spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a"}]}});
        apply(
            PatchKind::Strategic,
            &mut t,
            &json!({"spec": {"taints": [{"key": "b"}]}}),
        );
        assert_eq!(
            t,
            json!({"spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "b"}]}})
        );
    }
}
