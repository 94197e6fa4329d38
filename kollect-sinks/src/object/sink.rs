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
use futures::StreamExt;
use kollect_core::api::v1alpha1::{KollectSnapshotSinkSpec, ProvisioningMode, SinkPreview};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStoreExt, PutOptions, PutPayload};
use serde_json::json;

use super::ObjectTarget;
use super::encoding::Encoding;
use crate::context::BuildContext;
use crate::path;

/// The pointer's `schemaVersion`.
pub const POINTER_SCHEMA: &str = "kollect.dev/latest/v1";

/// Writes inventory documents to a bucket or container.
#[derive(Debug, Clone)]
pub struct ObjectSink {
    target: ObjectTarget,
    encoding: Encoding,
    path_template: Option<String>,
    ensure: bool,
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
        };
        let sample = InventoryRef::namespaced("ns", "name").with_cluster("c");
        sink.base_key(&sample, 1)?;
        Ok(sink)
    }

    /// The sink a snapshot sink spec of `kind` describes, with its resolved material; nothing
    /// is contacted.
    pub fn from_spec(
        kind: super::StoreKind,
        spec: &KollectSnapshotSinkSpec,
        context: &BuildContext,
    ) -> Result<Self, SinkError> {
        let encoding = Encoding::from_spec(spec)?;
        let target = ObjectTarget::connect(&ObjectTarget::settings(kind, spec, context)?)?;
        Self::new(
            target,
            encoding,
            spec.common.path_template.clone(),
            spec.common.provisioning_mode() == ProvisioningMode::Ensure,
        )
    }

    /// Where it writes.
    pub fn target(&self) -> &ObjectTarget {
        &self.target
    }

    /// How objects are encoded.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn template_for(&self, inventory: &InventoryRef) -> String {
        path::template_for(self.path_template.as_deref(), inventory)
    }

    /// The key (under the prefix) of an inventory's single-part object, before any part
    /// suffix; compression's suffix included.
    pub fn base_key(&self, inventory: &InventoryRef, generation: i64) -> Result<String, SinkError> {
        let rendered = path::render(
            &self.template_for(inventory),
            inventory,
            generation,
            self.encoding.extension(),
        )?;
        path::check_relative(&rendered)?;
        Ok(format!("{rendered}{}", self.encoding.suffix()))
    }

    /// The key of `request`'s part.
    pub fn key(&self, request: &ExportRequest) -> Result<String, SinkError> {
        let rendered = path::render_for(
            &self.template_for(&request.inventory),
            request,
            self.encoding.extension(),
        )?;
        path::check_relative(&rendered)?;
        Ok(format!("{rendered}{}", self.encoding.suffix()))
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

    /// Every object of an inventory's document now in the store: the single object and any
    /// parts, sorted by key (full store paths).
    pub async fn objects_of(
        &self,
        inventory: &InventoryRef,
        generation: i64,
    ) -> Result<Vec<Path>, SinkError> {
        let base = self.target.path(&self.base_key(inventory, generation)?);
        let base_text = base.as_ref().to_owned();
        let (directory, file) = match base_text.rsplit_once('/') {
            Some((directory, file)) => (Some(Path::from(directory)), file.to_owned()),
            None => (None, base_text.clone()),
        };
        let tail = format!("{}{}", self.encoding.extension(), self.encoding.suffix());
        let stem = file.strip_suffix(&tail).unwrap_or(&file).to_owned();
        let part_prefix = format!("{stem}.part-");
        let listing = self
            .target
            .store()
            .list_with_delimiter(directory.as_ref())
            .await
            .map_err(|e| self.target.error("list", &e))?;
        let mut objects: Vec<Path> = listing
            .objects
            .into_iter()
            .map(|meta| meta.location)
            .filter(|location| {
                let name = location.filename().unwrap_or_default();
                name == file
                    || name
                        .strip_prefix(&part_prefix)
                        .and_then(|rest| rest.strip_suffix(&tail))
                        .is_some_and(path::is_part_name)
            })
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// Writes one object; in `ensure` mode, a missing bucket is created and the write tried
    /// once more.
    async fn put(&self, key: &Path, payload: PutPayload, encoded: bool) -> Result<(), SinkError> {
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

    async fn write_pointer(&self, request: &ExportRequest, objects: &[String]) -> Result<(), SinkError> {
        let pointer = json!({
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
        Capabilities::DOCUMENTS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let key = self.target.path(&self.key(request)?);
        let bytes = self.encoding.render(request)?;
        let written = bytes.len() as u64;
        self.put(&key, PutPayload::from(bytes), true).await?;
        if request.is_last_part() {
            // Every part of this export is written: point at them, then drop what an earlier
            // export with another part count left.
            let rendered = path::render(
                &self.template_for(&request.inventory),
                &request.inventory,
                request.generation,
                self.encoding.extension(),
            )?;
            let current: Vec<String> = match request.marker() {
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
            }
            .into_iter()
            .map(|key| {
                self.target
                    .location()
                    .key(&format!("{key}{}", self.encoding.suffix()))
            })
            .collect();
            self.write_pointer(request, &current).await?;
            for stale in self.objects_of(&request.inventory, request.generation).await? {
                if !current.iter().any(|c| c == stale.as_ref()) {
                    self.target
                        .store()
                        .delete(&stale)
                        .await
                        .map_err(|e| self.target.error("delete a stale part", &e))?;
                }
            }
        }
        Ok(ExportReceipt::written(written))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let mut objects = self.objects_of(&request.inventory, request.generation).await?;
        objects.push(self.target.path(&Self::pointer_key(&request.inventory)));
        let store = self.target.store();
        let mut deletions = store.delete_stream(futures::stream::iter(objects.into_iter().map(Ok)).boxed());
        while let Some(outcome) = deletions.next().await {
            match outcome {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.target.error("delete", &e)),
            }
        }
        Ok(())
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.target.probe(self.ensure).await
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            object_path: self.key(request).ok().map(|k| self.target.location().key(&k)),
            ..SinkPreview::default()
        }
    }
}
