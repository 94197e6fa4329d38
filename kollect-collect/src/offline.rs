//! Collection without a cluster: objects from manifest files or `kubectl get -o json` dumps go
//! through the same target matching and extraction as the watch runtime, so the rows are the
//! ones the operator would produce for the same objects (decision O4).
//!
//! Namespace labels come from the `Namespace` objects of the source, when it has them; an object
//! without `metadata.namespace` is treated as cluster-scoped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kollect_core::api::v1alpha1::GroupVersionKind;
use kollect_core::collect::RowOwner;
use kollect_core::model::Row;
use serde_json::Value;

use crate::select::NamespaceMeta;
use crate::target::{TargetRegistration, build_row};

/// Why a source could not be read. Each names the file (and document) at fault.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A document is not valid YAML or JSON.
    #[error("{path} (document {document}): {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based document number.
        document: usize,
        /// The parser's message.
        message: String,
    },
}

/// Reads every object of a file or directory (recursively; `*.yaml`, `*.yml`, `*.json`, in path
/// order): multi-document YAML, JSON, and `List` objects (`kubectl get -o json`) flattened.
pub fn load_objects(path: &Path) -> Result<Vec<Value>, SourceError> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| SourceError::Read {
            path: file.clone(),
            message: e.to_string(),
        })?;
        for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(document).map_err(|e| SourceError::Parse {
                path: file.clone(),
                document: i + 1,
                message: e.to_string(),
            })?;
            flatten(value, &mut objects);
        }
    }
    Ok(objects)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let read = |e: std::io::Error| SourceError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let metadata = std::fs::metadata(path).map_err(read)?;
    if metadata.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(entry);
        }
    }
    Ok(())
}

fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Null => {}
        Value::Object(ref map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k == "List" || k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Value::Object(map) = value
                && let Some(Value::Array(items)) = map.get("items").cloned()
            {
                for item in items {
                    flatten(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// The GVK of an object from its `apiVersion` and `kind`.
pub fn object_gvk(object: &Value) -> Option<GroupVersionKind> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    Some(GroupVersionKind::new(group, version, kind))
}

/// What offline collection produced.
#[derive(Debug, Default)]
pub struct OfflineResult {
    /// Rows per target, in object order.
    pub rows: BTreeMap<RowOwner, Vec<Row>>,
    /// Objects whose required attributes failed, per target: `namespace/name: error`.
    pub failures: BTreeMap<RowOwner, Vec<String>>,
}

/// Collects `objects` for `targets`.
pub fn collect(targets: &[TargetRegistration], objects: &[Value]) -> OfflineResult {
    let namespaces: BTreeMap<String, NamespaceMeta> = objects
        .iter()
        .filter(|o| object_gvk(o).is_some_and(|g| g.group.is_empty() && g.kind == "Namespace"))
        .filter_map(|o| {
            let name = o.pointer("/metadata/name")?.as_str()?.to_owned();
            Some((name, NamespaceMeta::from_object(o)))
        })
        .collect();
    let mut result = OfflineResult::default();
    for target in targets {
        result.rows.entry(target.owner.clone()).or_default();
        for object in objects {
            let Some(gvk) = object_gvk(object) else {
                continue;
            };
            if !target.gvk.matches(&gvk) {
                continue;
            }
            let text = |pointer: &str| {
                object
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let namespace = text("/metadata/namespace");
            let name = text("/metadata/name");
            let uid = text("/metadata/uid");
            let meta = namespaces.get(&namespace);
            if target
                .filter
                .select(&target.gvk, &gvk, object, &namespace, meta)
                .is_err()
            {
                continue;
            }
            match build_row(target, object, &namespace, &name, &uid) {
                Ok(row) => result.rows.entry(target.owner.clone()).or_default().push(row),
                Err(error) => result
                    .failures
                    .entry(target.owner.clone())
                    .or_default()
                    .push(format!(
                        "{}/{name}: {error}",
                        if namespace.is_empty() {
                            "(cluster)"
                        } else {
                            &namespace
                        }
                    )),
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_flattened_and_gvks_parsed() {
        let mut out = Vec::new();
        flatten(
            json!({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "apps/v1", "kind": "Deployment"},
                {"apiVersion": "v1", "kind": "ConfigMapList", "items": [{"apiVersion": "v1", "kind": "ConfigMap"}]}
            ]}),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            object_gvk(&out[0]),
            Some(GroupVersionKind::new("apps", "v1", "Deployment"))
        );
        assert_eq!(
            object_gvk(&out[1]),
            Some(GroupVersionKind::new("", "v1", "ConfigMap"))
        );
    }

    #[test]
    fn a_bad_document_names_file_and_document() {
        let dir = tempfile_dir();
        let file = dir.join("objects.yaml");
        std::fs::write(&file, "kind: ConfigMap\n---\nkind: [unclosed\n").unwrap();
        let error = load_objects(&dir).unwrap_err().to_string();
        assert!(error.contains("objects.yaml (document 2)"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kollect-offline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
