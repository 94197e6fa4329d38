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
            let GoJson(value) =
                serde::Deserialize::deserialize(document).map_err(|e| SourceError::Parse {
                    path: file.clone(),
                    document: i + 1,
                    message: e.to_string(),
                })?;
            flatten(value, &mut objects);
        }
    }
    Ok(objects)
}

/// A JSON value decoded as Kubernetes' Go decoder decodes it: an integer beyond the 64-bit
/// range is a float, not an error. (`serde_json::Value` refuses the 128-bit integers the YAML
/// parser hands over for such literals; a `kubectl get -o json` dump can hold them, because
/// Go writes floats up to 1e21 without an exponent.) The API server's JSON is parsed by
/// `serde_json` directly, which already reads them as floats.
struct GoJson(Value);

impl<'de> serde::Deserialize<'de> for GoJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(GoJsonVisitor).map(GoJson)
    }
}

struct GoJsonVisitor;

impl<'de> serde::de::Visitor<'de> for GoJsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        // Beyond 64 bits: a float, as Go decodes it.
        #[allow(clippy::cast_precision_loss)]
        let float = v as f64;
        Ok(i64::try_from(v).map_or_else(|_| Value::from(float), Value::from))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        #[allow(clippy::cast_precision_loss)]
        let float = v as f64;
        Ok(u64::try_from(v).map_or_else(|_| Value::from(float), Value::from))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(GoJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some((key, GoJson(value))) = map.next_entry::<String, GoJson>()? {
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
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

/// Collects `objects` for `targets`: the same gates and extraction as the watch runtime, over
/// objects read from files ([`load_objects`]) or built in memory.
///
/// ```
/// use kollect_collect::offline;
/// use kollect_collect::target::TargetRegistration;
/// use kollect_core::api::v1alpha1::{AttributeSpec, GroupVersionKind, KollectProfile, KollectProfileSpec};
///
/// let profile = KollectProfile::new("images", KollectProfileSpec {
///     target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
///     attributes: vec![AttributeSpec::new("image", "$.spec.template.spec.containers[0].image")],
///     ..Default::default()
/// });
/// let target = TargetRegistration::new("team-a", "images", &profile, &Default::default())?;
/// let deployment = serde_json::json!({
///     "apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" },
///     "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": "web:1.4" }] } } }
/// });
/// let collected = offline::collect(std::slice::from_ref(&target), &[deployment]);
/// let rows = &collected.rows[&target.owner];
/// assert_eq!(rows[0].attributes.as_ref().unwrap()["image"], "web:1.4");
/// # Ok::<(), kollect_collect::select::FilterError>(())
/// ```
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

    /// Integers beyond 64 bits are floats, in source files as from the API server (where
    /// `serde_json` parses the body), as Go decodes them; nothing fails.
    #[test]
    fn integers_beyond_64_bits_are_floats() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nspec: {n: 123456789012345678901234, m: -123456789012345678901234, small: 7}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "spec": {"n": 123456789012345678901234, "u": 18446744073709551615}}"#,
        )
        .unwrap();
        let objects = load_objects(dir.path()).unwrap();
        assert_eq!(objects[0]["spec"]["n"], json!(1.2345678901234568e23));
        assert_eq!(objects[0]["spec"]["m"], json!(-1.2345678901234568e23));
        assert_eq!(objects[0]["spec"]["small"], json!(7));
        assert_eq!(objects[1]["spec"]["n"], json!(1.2345678901234568e23));
        assert_eq!(objects[1]["spec"]["u"], json!(18446744073709551615u64));
        let from_api: Value = serde_json::from_str(r#"{"n": 123456789012345678901234}"#).unwrap();
        assert_eq!(from_api["n"], objects[1]["spec"]["n"]);
    }

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
