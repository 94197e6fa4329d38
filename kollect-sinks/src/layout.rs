//! How an inventory becomes files (in a repository or a bucket): one document, one file per
//! resource, or both (`split`, with an index), with the content, filename and format rules of the
//! Go operator.

use std::collections::BTreeMap;

use kollect_core::api::v1alpha1::{GroupInPath, LayoutContent, LayoutMode, LayoutSpec};
use kollect_core::model::SharedRow;
use kollect_core::sink::{ExportRequest, SinkError};
use serde_json::{Map, Value};

use crate::format::Format;
use crate::path;

/// Default per-resource path template.
pub const DEFAULT_RESOURCE_TEMPLATE: &str = "{cluster}/{sourceNamespace}/{kind}/{sourceName}{extension}";

/// The resolved layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Document, per-resource or split.
    pub mode: LayoutMode,
    /// What each per-resource file holds.
    pub content: LayoutContent,
    /// Attribute holding the manifest (`manifest` content).
    pub manifest_key: String,
    /// Document path template.
    pub document_template: String,
    /// Per-resource path template.
    pub resource_template: String,
    /// Index path template (split mode), when the index is on.
    pub index_template: Option<String>,
    /// Group segment policy.
    pub group_in_path: GroupInPath,
    /// Lower-case the kind in paths.
    pub lowercase_kind: bool,
    /// Longest path segment.
    pub max_segment_length: usize,
    /// File format: YAML with keys sorted alphabetically (as `sigs.k8s.io/yaml` writes), JSON
    /// (the canonical envelope in document mode; pretty-printed files otherwise), or one compact
    /// JSON object per line.
    pub format: Format,
    /// Prune files that no longer correspond to rows.
    pub prune: bool,
}

/// One file to write.
pub type File = (String, Vec<u8>);

/// Whether every row holds exactly one attribute that is a manifest of the row's own kind;
/// returns that attribute's name.
fn resource_mode_key(rows: &[&SharedRow]) -> Option<String> {
    let mut key: Option<String> = None;
    if rows.is_empty() {
        return None;
    }
    for row in rows {
        let attributes = row.attributes()?;
        if attributes.len() != 1 {
            return None;
        }
        let (name, value) = attributes.iter().next()?;
        let kind = value.get("kind").and_then(Value::as_str)?;
        value.get("apiVersion")?;
        if !kind.eq_ignore_ascii_case(row.kind()) {
            return None;
        }
        match &key {
            Some(existing) if existing != name => return None,
            _ => key = Some(name.clone()),
        }
    }
    key
}

impl Layout {
    /// Resolves the layout from the spec, the format and the rows (auto-upgrade to
    /// `perResource`/`manifest` when every row is a full-resource export and the layout is not
    /// set explicitly).
    pub fn resolve(
        spec: Option<&LayoutSpec>,
        document_template: Option<&str>,
        format: Format,
        git_prune: bool,
        rows: &[&SharedRow],
    ) -> Layout {
        let mut mode = spec.map_or(LayoutMode::Document, |s| s.mode);
        let mut content = spec.map_or(LayoutContent::Item, |s| s.content);
        let mut manifest_key = "resource".to_owned();
        if let Some(key) = resource_mode_key(rows) {
            manifest_key = key;
            if spec.is_none() {
                mode = LayoutMode::PerResource;
                content = LayoutContent::Manifest;
            }
        }
        let filename = spec.and_then(|s| s.filename.as_ref());
        let index_enabled = spec
            .and_then(|s| s.index.as_ref())
            .and_then(|i| i.enabled)
            .unwrap_or(mode == LayoutMode::Split);
        let layout_prune = mode != LayoutMode::Document;
        Layout {
            mode,
            content,
            manifest_key,
            document_template: document_template
                .map_or_else(|| path::DEFAULT_TEMPLATE.to_owned(), str::to_owned),
            resource_template: spec
                .and_then(|s| s.path_template.clone())
                .unwrap_or_else(|| DEFAULT_RESOURCE_TEMPLATE.to_owned()),
            // The index is on by default for split and opt-in for per-resource; a document
            // layout is its own index.
            index_template: (mode != LayoutMode::Document && index_enabled).then(|| {
                spec.and_then(|s| s.index.as_ref())
                    .and_then(|i| i.path_template.clone())
                    .unwrap_or_else(|| path::DEFAULT_TEMPLATE.to_owned())
            }),
            group_in_path: filename.and_then(|f| f.group_in_path).unwrap_or_default(),
            lowercase_kind: filename.and_then(|f| f.lowercase_kind).unwrap_or(true),
            max_segment_length: filename
                .and_then(|f| f.max_segment_length)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(63),
            format,
            prune: git_prune || layout_prune,
        }
    }

    /// The files of `request`'s part.
    pub fn project(&self, request: &ExportRequest) -> Result<Vec<File>, SinkError> {
        let rows: Vec<&SharedRow> = request.rows().collect();
        let mut files = Vec::new();
        if self.mode == LayoutMode::Document {
            let document = path::render_for(&self.document_template, request, self.format.extension())?;
            files.push((document, self.document(request, &rows)?));
            return Ok(files);
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut resources = Vec::with_capacity(rows.len());
        for row in &rows {
            let file = self.resource_path(request, row)?;
            let identity = format!("{}/{}/{}", row.kind(), row.namespace(), row.name());
            if let Some(other) = seen.insert(file.clone(), identity.clone()) {
                return Err(SinkError::terminal(format!(
                    "layout collision: \"{other}\" and \"{identity}\" both render path \"{file}\""
                )));
            }
            resources.push((file, self.resource_bytes(row)?));
        }
        if let Some(template) = &self.index_template {
            let index = path::render_for(template, request, self.format.extension())?;
            if seen.contains_key(&index) {
                return Err(SinkError::terminal(format!(
                    "layout collision: the index path \"{index}\" is also a resource path"
                )));
            }
            let cluster = if request.inventory.cluster.is_empty() {
                "default"
            } else {
                &request.inventory.cluster
            };
            let mut doc = Map::new();
            doc.insert("schemaVersion".into(), kollect_core::model::SCHEMA_VERSION.into());
            doc.insert("itemCount".into(), rows.len().into());
            doc.insert("checksum".into(), request.part.checksum().to_string().into());
            doc.insert(
                "exportedAt".into(),
                kollect_core::model::format_exported_at(request.exported_at).into(),
            );
            doc.insert("cluster".into(), cluster.into());
            doc.insert(
                "paths".into(),
                resources.iter().map(|(p, _)| Value::from(p.as_str())).collect(),
            );
            files.push((index, self.encode(&Value::Object(doc))?));
        }
        files.extend(resources);
        Ok(files)
    }

    fn document(&self, request: &ExportRequest, rows: &[&SharedRow]) -> Result<Vec<u8>, SinkError> {
        match self.format {
            Format::Json => Ok(request.envelope()),
            Format::Yaml => {
                let items: Vec<Value> = rows.iter().map(|r| row_value(r)).collect::<Result<_, _>>()?;
                yaml(&Value::Array(items))
            }
            Format::Ndjson => {
                let mut out = Vec::new();
                for row in rows {
                    serde_json::to_writer(&mut out, &row_value(row)?)
                        .map_err(|e| SinkError::terminal(format!("render NDJSON: {e}")))?;
                    out.push(b'\n');
                }
                Ok(out)
            }
        }
    }

    /// The bytes of `row`'s own file.
    pub fn resource_bytes(&self, row: &SharedRow) -> Result<Vec<u8>, SinkError> {
        let value = match self.content {
            LayoutContent::Item => row_value(row)?,
            LayoutContent::Attributes => Value::Object(row.attributes().unwrap_or_default()),
            LayoutContent::Manifest => row
                .attributes()
                .and_then(|mut a| a.remove(&self.manifest_key))
                .ok_or_else(|| {
                    SinkError::terminal(format!(
                        "layout content manifest: {}/{}/{} has no attribute \"{}\"",
                        row.kind(),
                        row.namespace(),
                        row.name(),
                        self.manifest_key
                    ))
                })?,
        };
        self.encode(&value)
    }

    fn encode(&self, value: &Value) -> Result<Vec<u8>, SinkError> {
        match self.format {
            Format::Yaml => yaml(value),
            Format::Json => {
                let mut out = serde_json::to_vec_pretty(&sorted(value))
                    .map_err(|e| SinkError::terminal(format!("render JSON: {e}")))?;
                out.push(b'\n');
                Ok(out)
            }
            Format::Ndjson => {
                let mut out = serde_json::to_vec(&sorted(value))
                    .map_err(|e| SinkError::terminal(format!("render NDJSON: {e}")))?;
                out.push(b'\n');
                Ok(out)
            }
        }
    }

    fn sanitize(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut last_dash = false;
        let chars: Vec<char> = value.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let dots = chars[i..].iter().take_while(|&&d| d == '.').count();
            if matches!(c, '/' | '\\' | ':') || dots >= 2 {
                if !last_dash {
                    out.push('-');
                }
                last_dash = true;
                i += dots.max(1);
                continue;
            }
            out.push(c);
            last_dash = c == '-';
            i += 1;
        }
        let trimmed = out.trim_matches(|c| c == '.' || c == '-');
        let cut: String = trimmed.chars().take(self.max_segment_length).collect();
        cut.trim_matches(|c| c == '.' || c == '-').to_owned()
    }

    /// The path of `row`'s own file, from the per-resource template.
    pub fn resource_path(&self, request: &ExportRequest, row: &SharedRow) -> Result<String, SinkError> {
        let inventory = &request.inventory;
        let cluster = if inventory.cluster.is_empty() {
            "default"
        } else {
            &inventory.cluster
        };
        let kind = if self.lowercase_kind {
            row.kind().to_ascii_lowercase()
        } else {
            row.kind().to_owned()
        };
        let group = match self.group_in_path {
            GroupInPath::Never => String::new(),
            GroupInPath::Auto | GroupInPath::Always => row.group().to_owned(),
        };
        let template = &self.resource_template;
        let mut out = String::new();
        let mut rest = template.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return Err(SinkError::terminal(format!(
                    "layout.pathTemplate \"{template}\": unclosed \"{{\""
                )));
            };
            let value = match &rest[start + 1..start + len] {
                "cluster" => self.sanitize(cluster),
                "namespace" => self.sanitize(inventory.path_namespace()),
                "name" => self.sanitize(&inventory.name),
                "targetNamespace" => self.sanitize(row.target_namespace()),
                "targetName" => self.sanitize(row.target_name()),
                "sourceNamespace" => self.sanitize(row.namespace()),
                "sourceName" => self.sanitize(row.name()),
                "group" => self.sanitize(&group),
                "kind" => self.sanitize(&kind),
                "uid" => self.sanitize(row.uid()),
                "generation" => request.generation.to_string(),
                "extension" => self.format.extension().to_owned(),
                other => {
                    return Err(SinkError::terminal(format!(
                        "layout.pathTemplate \"{template}\": unknown placeholder {{{other}}}"
                    )));
                }
            };
            out.push_str(&value);
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        let segments: Vec<&str> = out.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(SinkError::terminal(format!(
                "layout.pathTemplate \"{template}\" renders \"{out}\", which has a . or .. segment"
            )));
        }
        Ok(segments.join("/"))
    }
}

/// A row as a JSON value (canonical field order).
fn row_value(row: &SharedRow) -> Result<Value, SinkError> {
    serde_json::to_value(row).map_err(|e| SinkError::terminal(format!("encode row: {e}")))
}

/// `value` with every object's keys sorted (Go's `sigs.k8s.io/yaml` and `encoding/json` of maps).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn yaml(value: &Value) -> Result<Vec<u8>, SinkError> {
    serde_norway::to_string(&sorted(value))
        .map(String::into_bytes)
        .map_err(|e| SinkError::terminal(format!("render YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::api::v1alpha1::FilenameSpec;
    use kollect_core::model::{Row, Snapshot};
    use kollect_core::sink::InventoryRef;
    use serde_json::json;

    fn row(kind: &str, ns: &str, name: &str, attributes: Value) -> Row {
        Row {
            target_namespace: "team-a".into(),
            target_name: "t".into(),
            namespace: ns.into(),
            name: name.into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: kind.into(),
            uid: format!("uid-{name}"),
            attributes: attributes.as_object().cloned(),
        }
    }

    fn request(rows: Vec<Row>) -> ExportRequest {
        ExportRequest::full(
            InventoryRef::namespaced("team-a", "apps").with_cluster("prod"),
            4,
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            Snapshot::new(rows),
        )
    }

    fn layout(spec: Option<LayoutSpec>, format: Format, rows: &ExportRequest) -> Layout {
        let rows: Vec<&SharedRow> = rows.rows().collect();
        Layout::resolve(spec.as_ref(), None, format, false, &rows)
    }

    #[test]
    fn document_json_is_the_canonical_envelope_and_yaml_a_sorted_list() {
        let req = request(vec![row(
            "Deployment",
            "shop",
            "web",
            json!({"image": "web:1", "app": "x"}),
        )]);
        let files = layout(None, Format::Json, &req).project(&req).unwrap();
        assert_eq!(
            files,
            vec![("inventory/team-a/apps.json".to_owned(), req.envelope())]
        );
        let files = layout(None, Format::Yaml, &req).project(&req).unwrap();
        let text = String::from_utf8(files[0].1.clone()).unwrap();
        assert_eq!(files[0].0, "inventory/team-a/apps.yaml");
        assert!(
            text.starts_with(
                "- attributes:\n    app: x\n    image: web:1\n  group: apps\n  kind: Deployment\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn per_resource_paths_follow_the_filename_rules() {
        let req = request(vec![row(
            "Deployment",
            "shop",
            "web..v2:blue",
            json!({"image": "web:1"}),
        )]);
        let spec = LayoutSpec {
            mode: LayoutMode::PerResource,
            content: LayoutContent::Attributes,
            filename: Some(FilenameSpec {
                group_in_path: Some(GroupInPath::Always),
                lowercase_kind: Some(false),
                max_segment_length: Some(8),
            }),
            path_template: Some("{cluster}/{group}/{kind}/{sourceName}{extension}".into()),
            ..Default::default()
        };
        let files = layout(Some(spec), Format::Json, &req).project(&req).unwrap();
        assert_eq!(files[0].0, "prod/apps/Deployme/web-v2-b.json");
        assert_eq!(
            String::from_utf8(files[0].1.clone()).unwrap(),
            "{\n  \"image\": \"web:1\"\n}\n"
        );
    }

    #[test]
    fn split_writes_an_index_first_and_collisions_are_errors() {
        let req = request(vec![
            row("Deployment", "shop", "web", json!({"a": 1})),
            row("Deployment", "shop", "api", json!({"a": 2})),
        ]);
        let spec = LayoutSpec {
            mode: LayoutMode::Split,
            ..Default::default()
        };
        let files = layout(Some(spec.clone()), Format::Json, &req)
            .project(&req)
            .unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "inventory/team-a/apps.json",
                "prod/shop/deployment/api.json",
                "prod/shop/deployment/web.json"
            ]
        );
        let index: Value = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(index["itemCount"], 2);
        assert_eq!(index["cluster"], "prod");
        assert_eq!(index["paths"][1], "prod/shop/deployment/web.json");

        let collide = LayoutSpec {
            mode: LayoutMode::PerResource,
            path_template: Some("{sourceNamespace}/{kind}{extension}".into()),
            ..Default::default()
        };
        let error = layout(Some(collide), Format::Json, &req)
            .project(&req)
            .unwrap_err();
        assert!(error.message().starts_with("layout collision: "), "{error}");
    }

    #[test]
    fn the_index_follows_index_enabled_for_split_and_per_resource() {
        let req = request(vec![row("Deployment", "shop", "web", json!({"a": 1}))]);
        let with_index = |mode, enabled| LayoutSpec {
            mode,
            index: Some(kollect_core::api::v1alpha1::LayoutIndexSpec {
                enabled,
                path_template: Some("indexes/{name}{extension}".into()),
            }),
            ..Default::default()
        };
        let paths = |spec| -> Vec<String> {
            layout(Some(spec), Format::Json, &req)
                .project(&req)
                .unwrap()
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        };
        assert_eq!(
            paths(with_index(LayoutMode::PerResource, Some(true))),
            ["indexes/apps.json", "prod/shop/deployment/web.json"]
        );
        assert_eq!(
            paths(with_index(LayoutMode::PerResource, None)),
            ["prod/shop/deployment/web.json"]
        );
        assert_eq!(
            paths(with_index(LayoutMode::Split, Some(false))),
            ["prod/shop/deployment/web.json"]
        );
        assert_eq!(
            paths(with_index(LayoutMode::Split, None)),
            ["indexes/apps.json", "prod/shop/deployment/web.json"]
        );
    }

    #[test]
    fn full_resource_rows_upgrade_to_per_resource_manifests() {
        let manifest = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        let req = request(vec![row(
            "Deployment",
            "shop",
            "web",
            json!({"resource": manifest}),
        )]);
        let resolved = layout(None, Format::Yaml, &req);
        assert_eq!(resolved.mode, LayoutMode::PerResource);
        assert_eq!(resolved.content, LayoutContent::Manifest);
        assert!(resolved.prune);
        let files = resolved.project(&req).unwrap();
        assert_eq!(files[0].0, "prod/shop/deployment/web.yaml");
        assert_eq!(
            String::from_utf8(files[0].1.clone()).unwrap(),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
        );
    }
}
