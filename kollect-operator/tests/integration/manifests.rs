//! Every manifest a user may copy (examples/, the sample pipelines, and YAML blocks in the docs
//! and README) applies to a real kube-apiserver with strict field validation: no field is
//! unknown to the CRDs or silently dropped.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kollect_testkit::ControlPlane;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use serde::Deserialize;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `yaml` fenced blocks of a Markdown file that hold a Kubernetes object.
fn markdown_manifests(text: &str) -> Vec<Value> {
    let mut manifests = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_start()) {
            (None, fence) if fence.starts_with("```yaml") => block = Some(String::new()),
            (Some(body), "```") => {
                if body.contains("apiVersion:") && body.contains("kind:") {
                    manifests.extend(yaml_documents(body));
                }
                block = None;
            }
            (Some(body), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    manifests
}

/// Every manifest with where it came from; lists (`kubectl get -o json`) are unpacked.
fn manifests() -> Vec<(String, Value)> {
    let root = repo();
    let mut files = Vec::new();
    files_under(&root.join("examples"), &mut files);
    files_under(&root.join("kollect-operator/tests/fixtures/samples"), &mut files);
    files_under(&root.join("docs"), &mut files);
    files.push(root.join("README.md"));
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let documents = match file.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => yaml_documents(&text),
            Some("json") => vec![serde_json::from_str(&text).unwrap()],
            Some("md") => markdown_manifests(&text),
            _ => continue,
        };
        for document in documents {
            if document["kind"] == "List" {
                for item in document["items"].as_array().unwrap() {
                    out.push((name.clone(), item.clone()));
                }
            } else if document.get("kind").is_some() {
                out.push((name.clone(), document));
            }
        }
    }
    out
}

/// What the server sets itself (identity, versions, status, allocated addresses) is not part of
/// what users write.
fn as_written(mut object: Value) -> Value {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            metadata.remove(key);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    // A dump's cluster IPs come from the cluster it was taken from; this one allocates its own.
    if object["kind"] == "Service"
        && let Some(spec) = object["spec"].as_object_mut()
    {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    object
}

#[tokio::test]
async fn every_example_and_documented_manifest_applies_strictly() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let client = plane.client().await.unwrap();
    let manifests = manifests();
    assert!(manifests.len() >= 20, "only {} manifests found", manifests.len());
    let namespaces: BTreeSet<String> = manifests
        .iter()
        .filter_map(|(_, m)| m["metadata"]["namespace"].as_str().map(str::to_owned))
        .chain(std::iter::once("kollect-system".to_owned()))
        .collect();
    let params = PatchParams::apply("kollect-manifest-test")
        .force()
        .validation_strict();
    let namespace_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for namespace in &namespaces {
        let object =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        namespace_api
            .patch(namespace, &params, &Patch::Apply(&object))
            .await
            .unwrap();
    }
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut failures = Vec::new();
    for (file, manifest) in &manifests {
        let object: DynamicObject = serde_json::from_value(as_written(manifest.clone())).unwrap();
        let types = object.types.clone().unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
        let name = object.metadata.name.clone().unwrap_or_default();
        let Some((resource, capabilities)) = discovery.resolve_gvk(&gvk) else {
            failures.push(format!(
                "{file}: {} {name}: kind unknown to the API server",
                gvk.kind
            ));
            continue;
        };
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object.metadata.namespace.as_deref().unwrap_or("kollect-system"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        if let Err(error) = api.patch(&name, &params, &Patch::Apply(&object)).await {
            failures.push(format!("{file}: {} {name}: {error}", gvk.kind));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn markdown_blocks_are_found() {
    let text =
        "intro\n```yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n```\n```yaml\nfoo: bar\n```\n";
    let found = markdown_manifests(text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["kind"], "ConfigMap");
}
