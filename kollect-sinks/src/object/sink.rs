//! The object store sink: each inventory's document (or its parts) at the rendered path
//! template, then a `latest` pointer naming exactly the objects of the export that just
//! finished, then the removal of parts an earlier export left behind.
//!
//! Keys, under the endpoint's prefix:
//!
//! - data: `spec.pathTemplate`, default `inventory/{namespace}/{name}{extension}` (the Go
//!   operator's key), under `{cluster}/` when the inventory has a cluster identity; a multipart
//!   export's parts are `<name>.part-NNNN-of-NNNN<extension>`; compression adds its suffix;
//! - pointer: `_kollect/latest/<cluster>/<namespace>/<name>.json` (`default` for an empty
//!   cluster), written after every part of an export, so a reader that follows it never finds a
//!   missing object. The leading underscore keeps it out of the data globs of Hive-style readers.

use async_trait::async_trait;
use futures::TryStreamExt;
use kollect_core::api::v1alpha1::{KollectSnapshotSinkSpec, LayoutSpec, ProvisioningMode, SinkPreview};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use object_store::path::Path;
use object_store::{Attribute, Attributes, PutOptions, PutPayload};
use serde_json::json;

use super::ObjectTarget;
use super::encoding::{Encoding, ObjectFormat};
use super::resources::{ResourceExport, ResourceLayout};
use crate::context::BuildContext;
use crate::family::Unused;
use crate::path;

/// The default key of Parquet objects (the Go operator's): Hive-style `key=value` directories,
/// which engines such as DuckDB, Spark and Athena read as partition columns.
pub const PARQUET_TEMPLATE: &str =
    "inventory/cluster={cluster}/ns={namespace}/name={name}/generation={generation}{extension}";

/// The pointer's `schemaVersion`.
pub const POINTER_SCHEMA: &str = "kollect.dev/latest/v1";

/// Writes inventory documents to a bucket or container.
#[derive(Debug, Clone)]
pub struct ObjectSink {
    target: ObjectTarget,
    encoding: Encoding,
    path_template: Option<String>,
    ensure: bool,
    retention: Option<u32>,
    resources: Option<ResourceLayout>,
}

impl ObjectSink {
    /// A sink writing to `target`. With `ensure` (`provisioning.mode: ensure`), a missing
    /// bucket is created, by the first write that finds it missing or by a probe, and probes
    /// also write and delete a marker object. The template is checked now.
    pub fn new(
        target: ObjectTarget,
        encoding: Encoding,
        path_template: Option<String>,
        ensure: bool,
    ) -> Result<Self, SinkError> {
        let sink = Self {
            target,
            encoding,
            path_template,
            ensure,
            retention: None,
            resources: None,
        };
        sink.key_pattern(&Self::sample_inventory())?;
        Ok(sink)
    }

    /// The same sink keeping only the newest `generations` generations of an inventory's
    /// objects (the current one included). The object key must contain `{generation}`.
    pub fn with_retention(mut self, generations: u32) -> Result<Self, SinkError> {
        if self.resources.is_some() {
            return Err(SinkError::terminal(
                "objectStore.retention keeps generations of whole documents; a per-resource layout has one generation, kept in place",
            ));
        }
        if generations == 0 {
            return Err(SinkError::terminal(
                "objectStore.retention.generations must be at least 1",
            ));
        }
        if !self.key_pattern(&Self::sample_inventory())?.keyed_by_generation() {
            return Err(SinkError::terminal(format!(
                "objectStore.retention: the object key \"{}\" has no {{generation}}, so there is only ever one generation; add {{generation}} to spec.pathTemplate (for example inventory/{{namespace}}/{{name}}-{{generation}}{{extension}}) or remove retention",
                self.template_for(&Self::sample_inventory())
            )));
        }
        self.retention = Some(generations);
        Ok(self)
    }

    /// The same sink with the layout `spec` describes: with `mode: perResource` or `split`, one
    /// object per row under the inventory's root (see [`super::resources`]).
    pub fn with_layout(mut self, spec: &LayoutSpec) -> Result<Self, SinkError> {
        if self.retention.is_some() {
            return Err(SinkError::terminal(
                "layout.mode: a per-resource layout cannot be combined with objectStore.retention",
            ));
        }
        self.resources = ResourceLayout::new(
            spec,
            &self.encoding,
            &self.template_for(&Self::sample_inventory()),
        )?;
        Ok(self)
    }

    fn sample_inventory() -> InventoryRef {
        InventoryRef::namespaced("ns", "name").with_cluster("c")
    }

    /// The sink a snapshot sink spec of `kind` describes, with its resolved material; nothing
    /// is contacted.
    pub fn from_spec(
        kind: super::StoreKind,
        spec: &KollectSnapshotSinkSpec,
        context: &BuildContext,
    ) -> Result<Self, SinkError> {
        crate::family::refuse_unused(
            &crate::family::api_spelling(&spec.type_),
            &[Unused::naming(
                &spec.common,
                "the bucket and prefix are spec.endpoint",
            )],
        )?;
        let encoding = Encoding::from_spec(spec)?;
        let target = ObjectTarget::connect(&ObjectTarget::settings(kind, spec, context)?)?;
        let sink = Self::new(
            target,
            encoding,
            spec.common.path_template.clone(),
            spec.common.provisioning_mode() == ProvisioningMode::Ensure,
        )?;
        let sink = match &spec.common.layout {
            Some(layout) => sink.with_layout(layout)?,
            None => sink,
        };
        match spec.object_store.as_ref().and_then(|o| o.retention) {
            Some(retention) => sink.with_retention(retention.generations),
            None => Ok(sink),
        }
    }

    /// Where it writes.
    pub fn target(&self) -> &ObjectTarget {
        &self.target
    }

    /// How objects are encoded.
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// The path template of an inventory's objects: `spec.pathTemplate`, else the Go
    /// operator's Hive-style key for Parquet, else the default document key.
    fn template_for(&self, inventory: &InventoryRef) -> String {
        match (&self.path_template, &self.encoding.format) {
            (None, ObjectFormat::Parquet(_)) => PARQUET_TEMPLATE.to_owned(),
            (configured, _) => path::template_for(configured.as_deref(), inventory),
        }
    }

    /// The inventory whose cluster identity goes into keys: the Parquet default key takes a
    /// Hive partition value, in which the Go operator replaces runs of characters outside
    /// `[A-Za-z0-9._-]` with `_`.
    fn keyed_inventory(&self, inventory: &InventoryRef) -> InventoryRef {
        let mut keyed = inventory.clone();
        if self.path_template.is_none() && matches!(self.encoding.format, ObjectFormat::Parquet(_)) {
            keyed.cluster = hive_value(&inventory.cluster);
        }
        keyed
    }

    /// The rendered template (before any part name and compression suffix).
    fn rendered(&self, inventory: &InventoryRef, generation: i64) -> Result<String, SinkError> {
        let rendered = path::render(
            &self.template_for(inventory),
            &self.keyed_inventory(inventory),
            generation,
            self.encoding.extension(),
        )?;
        path::check_relative(&rendered)?;
        Ok(rendered)
    }

    /// The key (under the prefix) of an inventory's single-part object, before any part
    /// suffix; compression's suffix included.
    pub fn base_key(&self, inventory: &InventoryRef, generation: i64) -> Result<String, SinkError> {
        Ok(format!(
            "{}{}",
            self.rendered(inventory, generation)?,
            self.encoding.suffix()
        ))
    }

    /// The key of `request`'s part.
    pub fn key(&self, request: &ExportRequest) -> Result<String, SinkError> {
        Ok(format!(
            "{}{}",
            request.part_path(&self.rendered(&request.inventory, request.generation)?),
            self.encoding.suffix()
        ))
    }

    /// The full store keys of every data object of an export of `request`'s inventory with
    /// `parts` parts (`None` for a single object).
    fn export_keys(&self, request: &ExportRequest) -> Result<Vec<String>, SinkError> {
        let rendered = self.rendered(&request.inventory, request.generation)?;
        let keys = match request.marker() {
            None => vec![rendered],
            Some(marker) => (1..=marker.total)
                .map(|index| {
                    let part = kollect_core::model::PartMarker {
                        index,
                        total: marker.total,
                    };
                    kollect_core::model::part_path(&rendered, Some(part))
                })
                .collect(),
        };
        Ok(keys
            .into_iter()
            .map(|key| {
                self.target
                    .location()
                    .key(&format!("{key}{}", self.encoding.suffix()))
            })
            .collect())
    }

    fn key_pattern(&self, inventory: &InventoryRef) -> Result<KeyPattern, SinkError> {
        let keyed = self.keyed_inventory(inventory);
        let template = self.template_for(inventory);
        let extension = self.encoding.extension();
        let location = self.target.location();
        let (head, tail) = match path::split_at_generation(&template, &keyed, extension)? {
            Some((before, after)) => (before, Some(after)),
            None => (path::render(&template, &keyed, 0, extension)?, None),
        };
        path::check_relative(&format!("{head}1{}", tail.as_deref().unwrap_or_default()))?;
        Ok(KeyPattern {
            head: location.key(&head),
            tail,
            suffix: self.encoding.suffix(),
        })
    }

    /// Every data object of an inventory now in the store, with the generation its key names
    /// (`None` when the key has no `{generation}`): single objects and parts, sorted by key.
    pub async fn objects_of(&self, inventory: &InventoryRef) -> Result<Vec<(Path, Option<i64>)>, SinkError> {
        let pattern = self.key_pattern(inventory)?;
        let directory = pattern
            .head
            .rsplit_once('/')
            .map(|(directory, _)| Path::from(directory));
        let store = self.target.store();
        // Below the directory only when `{generation}` names a directory.
        let locations: Vec<Path> = if pattern.tail.as_deref().is_some_and(|t| t.contains('/')) {
            store
                .list(directory.as_ref())
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
                .map_err(|e| self.target.error("list", &e))?
        } else {
            store
                .list_with_delimiter(directory.as_ref())
                .await
                .map_err(|e| self.target.error("list", &e))?
                .objects
                .into_iter()
                .map(|meta| meta.location)
                .collect()
        };
        let mut objects: Vec<(Path, Option<i64>)> = locations
            .into_iter()
            .filter_map(|location| {
                let generation = pattern.generation_of(location.as_ref())?;
                Some((location, generation))
            })
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// Deletes `objects`; one already gone is fine.
    pub(super) async fn delete_all(&self, objects: Vec<Path>, operation: &str) -> Result<(), SinkError> {
        self.target.delete_objects(objects, operation).await
    }

    /// After an export: the objects of its generation that it did not write (parts of an
    /// earlier export), and with retention the generations beyond the newest kept ones. A
    /// generation above the current one (left by an earlier inventory of the same name) is
    /// never one of the kept ones, so it cannot shadow the current data.
    fn stale_objects(
        &self,
        objects: Vec<(Path, Option<i64>)>,
        current: &[String],
        generation: i64,
    ) -> Vec<Path> {
        let mut kept_generations: Vec<i64> = objects
            .iter()
            .filter_map(|(_, g)| *g)
            .filter(|g| *g < generation)
            .collect();
        kept_generations.sort_unstable_by(|a, b| b.cmp(a));
        kept_generations.dedup();
        let older_kept = self.retention.map(|n| n as usize - 1);
        objects
            .into_iter()
            .filter(|(location, object_generation)| {
                if current.iter().any(|c| c == location.as_ref()) {
                    return false;
                }
                match (object_generation, older_kept) {
                    (None, _) => true,
                    (Some(g), _) if *g == generation => true,
                    (Some(_), None) => false,
                    (Some(g), Some(keep)) => !kept_generations.iter().take(keep).any(|k| k == g),
                }
            })
            .map(|(location, _)| location)
            .collect()
    }

    /// The key of an inventory's `latest` pointer.
    pub fn pointer_key(inventory: &InventoryRef) -> String {
        let cluster = if inventory.cluster.is_empty() {
            "default"
        } else {
            &inventory.cluster
        };
        format!(
            "_kollect/latest/{cluster}/{}/{}.json",
            inventory.path_namespace(),
            inventory.name
        )
    }

    /// Writes one object; in `ensure` mode, a missing bucket is created and the write tried
    /// once more.
    pub(super) async fn put(&self, key: &Path, payload: PutPayload, encoded: bool) -> Result<(), SinkError> {
        // A payload's clone shares its buffers.
        match self.put_once(key, payload.clone(), encoded).await {
            Err(e) if self.ensure && ObjectTarget::is_missing_bucket(&e) => {
                self.target.create_bucket().await?;
                self.put_once(key, payload, encoded).await
            }
            other => other,
        }
    }

    async fn put_once(&self, key: &Path, payload: PutPayload, encoded: bool) -> Result<(), SinkError> {
        let mut attributes = Attributes::new();
        if encoded {
            attributes.insert(Attribute::ContentType, self.encoding.content_type().into());
            // GCS serves objects with a Content-Encoding decompressed to clients that do not
            // ask for it (decompressive transcoding), so a `.gz` key would hand out plain
            // bytes; there the compressed bytes are stored as they are.
            if let Some(encoding) = self.encoding.content_encoding()
                && self.target.location().kind != super::StoreKind::Gcs
            {
                attributes.insert(Attribute::ContentEncoding, encoding.into());
            }
        } else {
            attributes.insert(Attribute::ContentType, "application/json".into());
        }
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.target
            .store()
            .put_opts(key, payload, options)
            .await
            .map(|_| ())
            .map_err(|e| self.target.error("put", &e))
    }

    async fn write_pointer(
        &self,
        request: &ExportRequest,
        objects: &[String],
        root: Option<&str>,
    ) -> Result<(), SinkError> {
        let mut pointer = json!({
            "schemaVersion": POINTER_SCHEMA,
            "cluster": request.inventory.cluster,
            "namespace": request.inventory.namespace,
            "name": request.inventory.name,
            "generation": request.generation,
            "exportedAt": kollect_core::model::format_exported_at(request.exported_at),
            "checksum": request.snapshot.fingerprint().as_str(),
            "itemCount": request.snapshot.len(),
            "format": self.encoding.format_name(),
            "compression": self.encoding.compression_name(),
            "objects": objects,
        });
        if let Some(root) = root {
            pointer["root"] = root.into();
            pointer["layout"] =
                crate::family::api_spelling(&self.resources.as_ref().map(ResourceLayout::mode)).into();
        }
        let bytes = kollect_core::model::canonical::to_string(&pointer).into_bytes();
        let key = self.target.path(&Self::pointer_key(&request.inventory));
        self.put(&key, PutPayload::from(bytes), false).await
    }
}

#[async_trait]
impl Sink for ObjectSink {
    fn sink_type(&self) -> &str {
        self.target.location().kind.type_name()
    }

    fn capabilities(&self) -> Capabilities {
        if self.resources.is_some() {
            // One object per row: the whole snapshot with the delta since the last export, so
            // a change writes only the objects that changed.
            Capabilities::ROWS
        } else {
            Capabilities::DOCUMENTS
        }
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        if let Some(export) = self.resource_export(request)? {
            let applied = export.apply(request).await?;
            let objects: Vec<String> = export.index.iter().cloned().collect();
            self.write_pointer(request, &objects, Some(&export.root)).await?;
            return Ok(ExportReceipt::written(applied.bytes));
        }
        let key = self.target.path(&self.key(request)?);
        let bytes = self.encoding.render(request)?;
        let written = bytes.len() as u64;
        self.put(&key, PutPayload::from(bytes), true).await?;
        if request.is_last_part() {
            // Every part of this export is written: point at them, then drop what an earlier
            // export with another part count left, and the generations retention lets go.
            let current = self.export_keys(request)?;
            self.write_pointer(request, &current, None).await?;
            let objects = self.objects_of(&request.inventory).await?;
            let stale = self.stale_objects(objects, &current, request.generation);
            self.delete_all(stale, "delete an old object").await?;
        }
        Ok(ExportReceipt::written(written))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        if let Some(export) = self.resource_export_of(&request.inventory, request.generation, &[])? {
            export.remove_all().await?;
            let pointer = self.target.path(&Self::pointer_key(&request.inventory));
            return self.delete_all(vec![pointer], "delete").await;
        }
        // Every generation's objects, then the pointer.
        let mut objects: Vec<Path> = self
            .objects_of(&request.inventory)
            .await?
            .into_iter()
            .map(|(location, _)| location)
            .collect();
        objects.push(self.target.path(&Self::pointer_key(&request.inventory)));
        self.delete_all(objects, "delete").await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.target.probe(self.ensure).await
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        if let Ok(Some(export)) = self.resource_export(request) {
            let sample = request
                .snapshot
                .rows()
                .first()
                .and_then(|row| export.layout.resource_path(request, row).ok())
                .map(|relative| format!("{}{relative}{}", export.root, self.encoding.suffix()));
            return SinkPreview {
                input_sample_source: Some("synthetic".to_owned()),
                object_path: sample.or(Some(export.root)),
                ..SinkPreview::default()
            };
        }
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            object_path: self.key(request).ok().map(|k| self.target.location().key(&k)),
            ..SinkPreview::default()
        }
    }
}

impl ObjectSink {
    /// The per-resource export of `request`, when the sink has a per-resource layout.
    fn resource_export(&self, request: &ExportRequest) -> Result<Option<ResourceExport<'_>>, SinkError> {
        let rows: Vec<&kollect_core::model::SharedRow> = match request.delta.as_deref() {
            Some(delta) => delta.upserts.iter().collect(),
            None => request.snapshot.rows().iter().collect(),
        };
        self.resource_export_of(&request.inventory, request.generation, &rows)
    }

    /// The per-resource export of an inventory, its layout resolved for `rows` (which name the
    /// manifest attribute), when the sink has a per-resource layout.
    fn resource_export_of(
        &self,
        inventory: &InventoryRef,
        generation: i64,
        rows: &[&kollect_core::model::SharedRow],
    ) -> Result<Option<ResourceExport<'_>>, SinkError> {
        let Some(resources) = &self.resources else {
            return Ok(None);
        };
        let layout = resources.resolve(&self.template_for(inventory), rows);
        let location = self.target.location();
        let document = self.rendered(inventory, generation)?;
        let root = location.key(&ResourceExport::root_of(&document, self.encoding.extension()));
        let index = match &layout.index_template {
            Some(index) => {
                let rendered = path::render(index, inventory, generation, self.encoding.extension())?;
                path::check_relative(&rendered)?;
                Some(location.key(&format!("{rendered}{}", self.encoding.suffix())))
            }
            None => None,
        };
        Ok(Some(ResourceExport {
            sink: self,
            layout,
            root,
            index,
        }))
    }
}

/// A Hive partition value as the Go operator writes it: runs of characters outside
/// `[A-Za-z0-9._-]` become one `_`; empty is `default`.
fn hive_value(value: &str) -> String {
    if value.is_empty() {
        return "default".to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut in_run = false;
    for c in value.chars() {
        let kept = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if kept {
            out.push(c);
        } else if !in_run {
            out.push('_');
        }
        in_run = !kept;
    }
    out
}

/// The shape of an inventory's data keys (full store keys): `<head><generation><tail>` when
/// the template has `{generation}`, else `<head>`; then an optional part name before the
/// file's extension, then the compression suffix.
struct KeyPattern {
    head: String,
    tail: Option<String>,
    suffix: &'static str,
}

impl KeyPattern {
    fn keyed_by_generation(&self) -> bool {
        self.tail.is_some()
    }

    /// `Some(generation)` when `key` is one of the inventory's data objects (the generation is
    /// `None` for keys without one).
    fn generation_of(&self, key: &str) -> Option<Option<i64>> {
        let key = key.strip_suffix(self.suffix)?;
        let (whole, generation) = match &self.tail {
            None => (self.head.clone(), None),
            Some(tail) => {
                let rest = key.strip_prefix(&self.head)?;
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let generation: i64 = rest[..digits].parse().ok()?;
                (
                    format!("{}{}{tail}", self.head, &rest[..digits]),
                    Some(generation),
                )
            }
        };
        if key == whole {
            return Some(generation);
        }
        // A part: `<stem>.part-NNNN-of-NNNN<extension>`, the extension starting at the last dot
        // of the file name (as `part_path` places it).
        let file_start = whole.rfind('/').map_or(0, |i| i + 1);
        let dot = whole[file_start..]
            .rfind('.')
            .map_or(whole.len(), |d| file_start + d);
        let (stem, extension) = whole.split_at(dot);
        let part = key
            .strip_prefix(stem)?
            .strip_prefix(".part-")?
            .strip_suffix(extension)?;
        path::is_part_name(part).then_some(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(head: &str, tail: Option<&str>, suffix: &'static str) -> KeyPattern {
        KeyPattern {
            head: head.to_owned(),
            tail: tail.map(str::to_owned),
            suffix,
        }
    }

    #[test]
    fn keys_are_matched_with_their_generation_and_parts() {
        let parquet = pattern(
            "p/inventory/cluster=c/ns=a/name=b/generation=",
            Some(".parquet"),
            "",
        );
        for (key, want) in [
            (
                "p/inventory/cluster=c/ns=a/name=b/generation=7.parquet",
                Some(Some(7)),
            ),
            (
                "p/inventory/cluster=c/ns=a/name=b/generation=12.part-0001-of-0002.parquet",
                Some(Some(12)),
            ),
            ("p/inventory/cluster=c/ns=a/name=b/generation=.parquet", None),
            ("p/inventory/cluster=c/ns=a/name=b/generation=7.csv", None),
            (
                "p/inventory/cluster=c/ns=a/name=b/generation=7.part-x.parquet",
                None,
            ),
            ("p/inventory/cluster=c/ns=a/name=bc/generation=7.parquet", None),
        ] {
            assert_eq!(parquet.generation_of(key), want, "{key}");
        }
        let json = pattern("inventory/a/b.json", None, ".gz");
        assert_eq!(json.generation_of("inventory/a/b.json.gz"), Some(None));
        assert_eq!(
            json.generation_of("inventory/a/b.part-0002-of-0003.json.gz"),
            Some(None)
        );
        assert_eq!(json.generation_of("inventory/a/b.json"), None);
        assert_eq!(json.generation_of("inventory/a/bb.json.gz"), None);
        let directory = pattern("x/", Some("/a/b.json"), "");
        assert_eq!(directory.generation_of("x/3/a/b.json"), Some(Some(3)));
        assert_eq!(directory.generation_of("x/3/a/c.json"), None);
    }

    #[test]
    fn hive_values_are_sanitized_as_the_go_operator_does() {
        assert_eq!(hive_value(""), "default");
        assert_eq!(hive_value("prod-eu.1_a"), "prod-eu.1_a");
        assert_eq!(hive_value("prod eu/€x"), "prod_eu_x");
        assert_eq!(hive_value("a_ b"), "a__b");
    }
}
