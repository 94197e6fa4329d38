//! The per-resource layout of object stores (`layout.mode: perResource` or `split`): one object
//! per row under the inventory's root, the key its document would have without the extension
//! (`inventory/shop/images/` for `inventory/shop/images.json`), so each inventory owns one
//! subtree. `split` (and `perResource` with `layout.index.enabled`) adds the index document at
//! the document's key.
//!
//! A change is applied as a change: with the delta since the last acknowledged export, only
//! the changed rows' objects are written and the deleted rows' objects deleted. Without a
//! delta (the first export, after a restart, or when the deleted rows are not known) every
//! row's object is written and whatever else lies under the root is deleted.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use kollect_core::api::v1alpha1::{LayoutMode, LayoutSpec};
use kollect_core::model::SharedRow;
use kollect_core::sink::{ExportRequest, SinkError};
use object_store::PutPayload;
use object_store::path::Path;

use super::ObjectSink;
use super::encoding::{Encoding, ObjectFormat};
use crate::format::Format;
use crate::layout::Layout;

/// The per-resource template of object stores, below the inventory's root (the git default
/// starts with `{cluster}`, which the root already holds).
pub const RESOURCE_TEMPLATE: &str = "{sourceNamespace}/{kind}/{sourceName}{extension}";

/// How many objects are written or deleted at once.
const CONCURRENCY: usize = 16;

/// The resolved per-resource settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLayout {
    spec: LayoutSpec,
    format: Format,
}

impl ResourceLayout {
    /// The per-resource layout `spec` asks for, or `None` for `mode: document` (one object per
    /// inventory). Refused by name: a table format (csv, parquet), `{generation}` in a key (an
    /// export is applied to the objects of the previous one, so the root must not move), and
    /// per-resource fields with `mode: document`.
    pub fn new(
        spec: &LayoutSpec,
        encoding: &Encoding,
        document_template: &str,
    ) -> Result<Option<Self>, SinkError> {
        if spec.mode == LayoutMode::Document {
            let set = [
                ("layout.pathTemplate", spec.path_template.is_some()),
                ("layout.index", spec.index.is_some()),
                ("layout.filename", spec.filename.is_some()),
                ("layout.content", spec.content != Default::default()),
            ];
            return match set.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err(SinkError::terminal(format!(
                    "{field} applies only to layout.mode perResource or split; an object store writes one object per inventory in document mode"
                ))),
                None => Ok(None),
            };
        }
        let ObjectFormat::Document(format) = &encoding.format else {
            return Err(SinkError::terminal(format!(
                "layout.mode {}: one object per resource is written as json, yaml or ndjson, not {}, which holds a whole table",
                crate::family::api_spelling(&spec.mode),
                encoding.format_name()
            )));
        };
        for (field, template) in [
            ("spec.pathTemplate", Some(document_template)),
            ("layout.pathTemplate", spec.path_template.as_deref()),
            (
                "layout.index.pathTemplate",
                spec.index.as_ref().and_then(|i| i.path_template.as_deref()),
            ),
        ] {
            if template.is_some_and(|t| t.contains("{generation}")) {
                return Err(SinkError::terminal(format!(
                    "{field}: {{generation}} cannot be part of a per-resource key; each export rewrites only what changed since the last one, in the same place"
                )));
            }
        }
        Ok(Some(Self {
            spec: spec.clone(),
            format: *format,
        }))
    }

    /// `perResource` or `split`.
    pub fn mode(&self) -> LayoutMode {
        self.spec.mode
    }

    /// The layout for rows like `rows` (the manifest attribute is recognised from them).
    pub fn resolve(&self, document_template: &str, rows: &[&SharedRow]) -> Layout {
        let mut layout = Layout::resolve(
            Some(&self.spec),
            Some(document_template),
            self.format,
            false,
            rows,
        );
        if self.spec.path_template.is_none() {
            RESOURCE_TEMPLATE.clone_into(&mut layout.resource_template);
        }
        layout
    }
}

/// What a per-resource export wrote and deleted.
#[derive(Debug, Default)]
pub struct Applied {
    /// Bytes written.
    pub bytes: u64,
    /// Objects written.
    pub written: usize,
    /// Objects deleted.
    pub deleted: usize,
}

/// One per-resource export of a sink.
pub struct ResourceExport<'a> {
    /// The sink.
    pub sink: &'a ObjectSink,
    /// The resolved layout.
    pub layout: Layout,
    /// The inventory's root, a full store key ending in `/`.
    pub root: String,
    /// The index document's full key, when the layout has an index.
    pub index: Option<String>,
}

impl ResourceExport<'_> {
    fn key(&self, request: &ExportRequest, row: &SharedRow) -> Result<String, SinkError> {
        let relative = self.layout.resource_path(request, row)?;
        crate::path::check_relative(&relative)?;
        Ok(format!(
            "{}{relative}{}",
            self.root,
            self.sink.encoding().suffix()
        ))
    }

    /// The objects of `rows`, with a clear error when two rows would share a key.
    fn objects(
        &self,
        request: &ExportRequest,
        rows: &[&SharedRow],
    ) -> Result<BTreeMap<String, Vec<u8>>, SinkError> {
        let mut objects = BTreeMap::new();
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for row in rows {
            let key = self.key(request, row)?;
            let identity = format!("{}/{}/{}", row.kind(), row.namespace(), row.name());
            if let Some(other) = owners.insert(key.clone(), identity.clone()) {
                return Err(SinkError::terminal(format!(
                    "layout collision: \"{other}\" and \"{identity}\" both render key \"{key}\""
                )));
            }
            let bytes = self.sink.encoding().compress(self.layout.resource_bytes(row)?)?;
            objects.insert(key, bytes);
        }
        Ok(objects)
    }

    /// Applies `request`: its delta when it has one whose deleted rows are known, else the
    /// whole snapshot.
    pub async fn apply(&self, request: &ExportRequest) -> Result<Applied, SinkError> {
        let delta = request
            .delta
            .as_deref()
            .filter(|d| d.removed.len() == d.deletes.len());
        let (writes, deletes) = match delta {
            Some(delta) => {
                let upserts: Vec<&SharedRow> = delta.upserts.iter().collect();
                let writes = self.objects(request, &upserts)?;
                let mut deletes = BTreeSet::new();
                for row in &delta.removed {
                    let key = self.key(request, row)?;
                    if !writes.contains_key(&key) {
                        deletes.insert(key);
                    }
                }
                (writes, deletes)
            }
            None => {
                let rows: Vec<&SharedRow> = request.snapshot.rows().iter().collect();
                let writes = self.objects(request, &rows)?;
                let deletes = self
                    .listed()
                    .await?
                    .into_iter()
                    .map(|p| p.to_string())
                    .filter(|k| !writes.contains_key(k))
                    .collect();
                (writes, deletes)
            }
        };
        let mut applied = Applied {
            bytes: writes.values().map(|b| b.len() as u64).sum(),
            written: writes.len(),
            deleted: deletes.len(),
        };
        futures::stream::iter(writes)
            .map(|(key, bytes)| async move {
                self.sink
                    .put(&Path::from(key), PutPayload::from(bytes), true)
                    .await
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        if let Some(index) = &self.index {
            let bytes = self.index_document(request)?;
            applied.bytes += bytes.len() as u64;
            applied.written += 1;
            self.sink
                .put(&Path::from(index.as_str()), PutPayload::from(bytes), true)
                .await?;
        }
        self.sink
            .delete_all(deletes.into_iter().map(Path::from).collect(), "delete")
            .await?;
        Ok(applied)
    }

    /// The index document: every row's key, relative to the bucket prefix as the
    /// git index is to the repository.
    fn index_document(&self, request: &ExportRequest) -> Result<Vec<u8>, SinkError> {
        let rows: Vec<&SharedRow> = request.snapshot.rows().iter().collect();
        let keys = rows
            .iter()
            .map(|row| self.key(request, row).map(serde_json::Value::from))
            .collect::<Result<Vec<_>, _>>()?;
        let document = serde_json::json!({
            "schemaVersion": kollect_core::model::SCHEMA_VERSION,
            "itemCount": rows.len(),
            "checksum": request.snapshot.fingerprint().as_str(),
            "exportedAt": kollect_core::model::format_exported_at(request.exported_at),
            "cluster": if request.inventory.cluster.is_empty() { "default" } else { request.inventory.cluster.as_str() },
            "root": self.root,
            "paths": keys,
        });
        self.sink
            .encoding()
            .compress(kollect_core::model::canonical::to_vec(&document))
    }

    /// Every object under the root.
    async fn listed(&self) -> Result<Vec<Path>, SinkError> {
        let target = self.sink.target();
        target
            .store()
            .list(Some(&Path::from(self.root.as_str())))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| target.error("list", &e))
    }

    /// Deletes everything under the root and the index.
    pub async fn remove_all(&self) -> Result<(), SinkError> {
        let mut objects = self.listed().await?;
        objects.extend(self.index.as_deref().map(Path::from));
        self.sink.delete_all(objects, "delete").await
    }

    /// The root of `inventory` for a document key `document` (relative): the key without its
    /// extension, then `/`.
    pub fn root_of(document: &str, extension: &str) -> String {
        format!("{}/", document.strip_suffix(extension).unwrap_or(document))
    }
}
