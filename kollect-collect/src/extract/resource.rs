//! Resource-mode export: a pruned, redacted copy of the whole object.
//!
//! Applied in order: keep the `include` sections, drop the identity already on the row
//! (`dedupeIdentity`), remove the default noise (`prune.defaults`), the JSON pointers and the
//! JSONPath matches, then redact. Two fixes over the Go operator (decision E7): `prune.jsonPaths`
//! honours wildcards and filters, and a JSON pointer to a list element removes the element
//! instead of leaving a `null` behind. Secret `data`/`stringData` values are always replaced by
//! `{"redacted": true, "reason": "secret-data"}` (decision E6).

use kollect_core::api::v1alpha1::{ExportInclude, ExportSpec};
use serde_json::{Map, Value};

use super::jsonpath::JsonPath;
use super::scrub::{Scrubber, marker};

/// The pointers `prune.defaults` removes.
pub const DEFAULT_PRUNE_POINTERS: &[&str] = &[
    "/metadata/managedFields",
    "/metadata/resourceVersion",
    "/metadata/generation",
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
    "/metadata/annotations/argocd.argoproj.io~1tracking-id",
];

/// A compiled Resource-mode export.
#[derive(Debug, Clone)]
pub struct ResourceExport {
    /// Attribute key the copy is stored under.
    pub key: String,
    include: ExportInclude,
    dedupe_identity: bool,
    pointers: Vec<String>,
    paths: Vec<JsonPath>,
    scrubber: Scrubber,
}

impl ResourceExport {
    /// Compiles `spec` (which must be in Resource mode) with the operator-level scrubber.
    /// JSONPath prunes that do not parse are skipped here; profile validation reports them.
    pub fn new(spec: &ExportSpec, scrubber: &Scrubber) -> Self {
        let prune = spec.prune.clone().unwrap_or_default();
        let mut pointers: Vec<String> = Vec::new();
        if prune.defaults.unwrap_or(true) {
            pointers.extend(DEFAULT_PRUNE_POINTERS.iter().map(|p| (*p).to_owned()));
        }
        pointers.extend(prune.json_pointers.iter().cloned());
        Self {
            key: spec.as_.clone(),
            include: spec.include,
            dedupe_identity: spec.dedupe_identity.unwrap_or(true),
            pointers,
            paths: prune
                .json_paths
                .iter()
                .filter_map(|p| JsonPath::parse(p).ok())
                .collect(),
            scrubber: scrubber.with_extra(&prune.scrub_keys),
        }
    }

    /// The pruned and redacted copy of `object`.
    pub fn render(&self, object: &Value) -> Value {
        let Value::Object(source) = object else {
            return Value::Null;
        };
        let mut out = Map::new();
        let sections: &[&str] = match self.include {
            ExportInclude::MetadataOnly => &["metadata"],
            ExportInclude::SpecOnly => &["spec"],
            ExportInclude::StatusOnly => &["status"],
            ExportInclude::SpecAndStatus => &["spec", "status"],
            ExportInclude::All => &[],
        };
        if self.include == ExportInclude::All {
            out = source.clone();
        } else {
            for key in ["apiVersion", "kind"].iter().chain(sections) {
                if let Some(v) = source.get(*key) {
                    out.insert((*key).to_owned(), v.clone());
                }
            }
        }
        let is_secret = source.get("kind").and_then(Value::as_str) == Some("Secret")
            && source.get("apiVersion").and_then(Value::as_str) == Some("v1");
        let mut copy = Value::Object(out);
        if self.dedupe_identity
            && let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut)
        {
            for key in ["name", "namespace", "uid"] {
                metadata.remove(key);
            }
        }
        for pointer in &self.pointers {
            remove_pointer(&mut copy, pointer);
        }
        for path in &self.paths {
            // Evaluation errors (an index into a scalar, ...) mean there is nothing to prune.
            let _ = path.remove_from(&mut copy);
        }
        if is_secret {
            redact_secret_data(&mut copy);
        }
        self.scrubber.scrub(&mut copy);
        copy
    }
}

/// Replaces every value of a Secret's `data` and `stringData` by the `secret-data` marker,
/// keeping the keys (which say what the Secret holds without revealing it).
fn redact_secret_data(secret: &mut Value) {
    for section in ["data", "stringData"] {
        if let Some(map) = secret.get_mut(section).and_then(Value::as_object_mut) {
            for value in map.values_mut() {
                *value = marker("secret-data");
            }
        }
    }
}

/// Removes the location an RFC 6901 pointer names. An empty pointer, `/`, a pointer without the
/// leading `/`, and a missing location are no-ops; a list element is removed.
pub(crate) fn remove_pointer(root: &mut Value, pointer: &str) {
    let Some(rest) = pointer.strip_prefix('/') else {
        return;
    };
    if rest.is_empty() {
        return;
    }
    let tokens: Vec<String> = rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut node = root;
    for token in parents {
        let next = match node {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => list_index(token, items.len()).and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match node {
        Value::Object(map) => {
            map.remove(last);
        }
        Value::Array(items) => {
            if let Some(i) = list_index(last, items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

fn list_index(token: &str, len: usize) -> Option<usize> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<usize>().ok().filter(|i| *i < len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::api::v1alpha1::{ExportMode, PruneSpec};
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u1", "generation": 4, "resourceVersion": "99",
                "labels": {"app": "web"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "argocd.argoproj.io/tracking-id": "x", "keep": "me"},
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "web:1", "env": [{"name": "API_TOKEN", "value": "t0k"}]},
                {"name": "sidecar", "image": "envoy"}
            ]}}},
            "status": {"readyReplicas": 2}
        })
    }

    fn export(include: ExportInclude, prune: Option<PruneSpec>) -> ResourceExport {
        let spec = ExportSpec {
            mode: ExportMode::Resource,
            include,
            prune,
            ..ExportSpec::default()
        };
        ResourceExport::new(&spec, &Scrubber::default())
    }

    #[test]
    fn spec_and_status_by_default_with_identity_and_defaults_pruned() {
        let out = export(ExportInclude::SpecAndStatus, None).render(&deployment());
        assert_eq!(
            out.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec![
                "apiVersion".into(),
                "kind".into(),
                "spec".into(),
                "status".into()
            ])
        );
        let all = export(ExportInclude::All, None).render(&deployment());
        let metadata = &all["metadata"];
        assert_eq!(metadata.get("name"), None);
        assert_eq!(metadata.get("uid"), None);
        assert_eq!(metadata.get("generation"), None);
        assert_eq!(metadata.get("managedFields"), None);
        assert_eq!(metadata["annotations"], json!({"keep": "me"}));
        assert_eq!(metadata["labels"], json!({"app": "web"}));
    }

    #[test]
    fn pointers_remove_list_elements_and_paths_support_filters() {
        let prune = PruneSpec {
            json_pointers: vec![
                "/spec/template/spec/containers/1".into(),
                "/status".into(),
                "/nope/x".into(),
                "".into(),
                "/".into(),
            ],
            json_paths: vec!["$.spec.template.spec.containers[?(@.name=='app')].env".into()],
            ..PruneSpec::default()
        };
        let out = export(ExportInclude::SpecAndStatus, Some(prune)).render(&deployment());
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "web:1"}])
        );
        assert_eq!(out.get("status"), None);
    }

    #[test]
    fn defaults_can_be_kept() {
        let prune = PruneSpec {
            defaults: Some(false),
            ..PruneSpec::default()
        };
        let spec = ExportSpec {
            include: ExportInclude::MetadataOnly,
            dedupe_identity: Some(false),
            prune: Some(prune),
            ..ExportSpec::default()
        };
        let out = ResourceExport::new(&spec, &Scrubber::default()).render(&deployment());
        assert_eq!(out["metadata"]["name"], "web");
        assert_eq!(out["metadata"]["generation"], 4);
        assert_eq!(out.get("spec"), None);
    }

    #[test]
    fn scrubbing_applies_to_the_copy() {
        let out = export(ExportInclude::SpecAndStatus, None).render(&deployment());
        // The env entry's `value` is not sensitive by key; the env *name* is data, not a key.
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "t0k"
        );
        let prune = PruneSpec {
            scrub_keys: vec!["value".into()],
            ..PruneSpec::default()
        };
        let out = export(ExportInclude::SpecAndStatus, Some(prune)).render(&deployment());
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            marker("sensitive-key")
        );
    }

    #[test]
    fn secret_data_is_always_redacted() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque",
            "data": {"username": "YWRtaW4=", "tls.crt": "LS0t"}, "stringData": {"note": "plain"}});
        let out = export(ExportInclude::All, None).render(&secret);
        assert_eq!(
            out["data"],
            json!({"username": marker("secret-data"), "tls.crt": marker("secret-data")})
        );
        assert_eq!(out["stringData"]["note"], marker("secret-data"));
        assert_eq!(out["type"], "Opaque");
    }

    #[test]
    fn pointer_edge_cases() {
        let mut v = json!({"a": [1, 2, 3], "b~c": {"d/e": 1}});
        remove_pointer(&mut v, "/a/-1");
        remove_pointer(&mut v, "/a/x");
        remove_pointer(&mut v, "/a/9");
        assert_eq!(v["a"], json!([1, 2, 3]));
        remove_pointer(&mut v, "/a/0");
        assert_eq!(v["a"], json!([2, 3]));
        remove_pointer(&mut v, "/b~0c/d~1e");
        assert_eq!(v["b~c"], json!({}));
        remove_pointer(&mut v, "a");
        assert!(v.get("a").is_some());
    }
}
