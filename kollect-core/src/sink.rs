//! The [`Sink`] trait every backend implements, and its request and response types.
//!
//! A sink receives one [`ExportRequest`] per export part. The request names the inventory
//! explicitly (decision X5: nothing is parsed back out of an object path), carries the full sorted
//! snapshot and the part to write, and, when the export engine knows it, the [`Delta`] since the
//! last export this sink acknowledged (decision X6). Deleting an inventory sends a
//! [`RemoveRequest`] to every bound sink (decision X3).
//!
//! Errors are [`SinkError`]s classified as transient, terminal or forbidden; their messages never
//! carry credentials (URL user-info is always scrubbed, and backends pass known secret values
//! through a [`Redactor`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;

use crate::api::v1alpha1::SinkPreview;
pub use crate::error::ErrorClass;
use crate::error::{Redactor, scrub_userinfo};
use crate::model::{Delta, ExportMeta, Part, PartMarker, SharedRow, Snapshot, part_path};

/// Whether an inventory is namespaced (`KollectInventory`) or cluster-scoped
/// (`KollectClusterInventory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InventoryScope {
    /// A `KollectInventory` in a namespace.
    Namespaced,
    /// A `KollectClusterInventory`.
    Cluster,
}

/// The identity of the inventory an export belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InventoryRef {
    /// Namespaced or cluster inventory.
    pub scope: InventoryScope,
    /// Namespace of a namespaced inventory; empty for cluster inventories.
    pub namespace: String,
    /// Inventory name.
    pub name: String,
    /// Cluster identity (sink `spec.cluster`, or the CLI's context name); empty when unset.
    pub cluster: String,
}

impl InventoryRef {
    /// A `KollectInventory` reference.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            scope: InventoryScope::Namespaced,
            namespace: namespace.into(),
            name: name.into(),
            cluster: String::new(),
        }
    }

    /// A `KollectClusterInventory` reference.
    pub fn cluster_scoped(name: impl Into<String>) -> Self {
        Self {
            scope: InventoryScope::Cluster,
            namespace: String::new(),
            name: name.into(),
            cluster: String::new(),
        }
    }

    /// The same inventory with a cluster identity.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// The namespace segment used in paths: the inventory namespace, or `cluster` for cluster
    /// inventories (as the Go operator writes `inventory/cluster/<name>.json`).
    pub fn path_namespace(&self) -> &str {
        match self.scope {
            InventoryScope::Namespaced => &self.namespace,
            InventoryScope::Cluster => "cluster",
        }
    }

    /// The canonical object path `inventory/<namespace>/<name><extension>` (extension with dot).
    pub fn default_object_path(&self, extension: &str) -> String {
        format!("inventory/{}/{}{}", self.path_namespace(), self.name, extension)
    }
}

impl fmt::Display for InventoryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            InventoryScope::Namespaced => write!(f, "{}/{}", self.namespace, self.name)?,
            InventoryScope::Cluster => write!(f, "cluster/{}", self.name)?,
        }
        if !self.cluster.is_empty() {
            write!(f, " (cluster {})", self.cluster)?;
        }
        Ok(())
    }
}

/// One export of one part of an inventory to one sink.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Which inventory this is.
    pub inventory: InventoryRef,
    /// Inventory `metadata.generation`.
    pub generation: i64,
    /// Export time written into the envelope.
    pub exported_at: Timestamp,
    /// Every row of the inventory, in canonical order.
    pub snapshot: Snapshot,
    /// The part of `snapshot` this request delivers (the whole snapshot for single-part exports).
    pub part: Arc<Part>,
    /// The change of the whole inventory since the last export this sink acknowledged, when the
    /// engine knows it; `None` means the sink must reconcile against the full snapshot.
    pub delta: Option<Arc<Delta>>,
}

impl ExportRequest {
    /// A single-part export of the whole snapshot, without a delta.
    pub fn full(
        inventory: InventoryRef,
        generation: i64,
        exported_at: Timestamp,
        snapshot: Snapshot,
    ) -> Self {
        let part = Part::whole(&snapshot);
        Self {
            inventory,
            generation,
            exported_at,
            snapshot,
            part: Arc::new(part),
            delta: None,
        }
    }

    /// The same request carrying a delta.
    pub fn with_delta(mut self, delta: Delta) -> Self {
        self.delta = Some(Arc::new(delta));
        self
    }

    /// The envelope fields shared by all parts of this export.
    pub fn meta(&self) -> ExportMeta {
        ExportMeta {
            generation: Some(self.generation),
            cluster: Some(self.inventory.cluster.clone()).filter(|c| !c.is_empty()),
            exported_at: self.exported_at,
        }
    }

    /// The rows of this part, in canonical order.
    pub fn rows(&self) -> impl Iterator<Item = &SharedRow> + '_ {
        self.part.rows(&self.snapshot)
    }

    /// The canonical JSON envelope of this part.
    pub fn envelope(&self) -> Vec<u8> {
        self.part.encode(&self.snapshot, &self.meta())
    }

    /// The part marker, when this is one part of a multipart set.
    pub fn marker(&self) -> Option<PartMarker> {
        self.part.marker()
    }

    /// True for the last part of a multipart set, and for single-part exports.
    pub fn is_last_part(&self) -> bool {
        self.part.marker().is_none_or(|m| m.index == m.total)
    }

    /// `path` with this part's `.part-NNNN-of-NNNN` suffix when the export is multipart.
    pub fn part_path(&self, path: &str) -> String {
        part_path(path, self.part.marker())
    }
}

/// A request to remove everything a sink holds for an inventory (inventory deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveRequest {
    /// The inventory being deleted.
    pub inventory: InventoryRef,
    /// Its last generation.
    pub generation: i64,
}

/// What a sink reports after a successful export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReceipt {
    /// Bytes written or sent.
    pub bytes: u64,
    /// True when the destination already held this content and nothing was written.
    pub unchanged: bool,
}

impl ExportReceipt {
    /// `bytes` were written or sent.
    pub const fn written(bytes: u64) -> Self {
        Self {
            bytes,
            unchanged: false,
        }
    }

    /// The destination already held this content; nothing was written.
    pub const fn unchanged() -> Self {
        Self {
            bytes: 0,
            unchanged: true,
        }
    }
}

/// The result of a successful connection probe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeReport {
    /// Time the probe took.
    pub latency: Duration,
    /// Human-readable success message (e.g. `TLS and git remote reachability verified`).
    pub message: String,
}

impl ProbeReport {
    /// A probe that succeeded after `latency` with `message`.
    pub fn new(latency: Duration, message: impl Into<String>) -> Self {
        Self {
            latency,
            message: message.into(),
        }
    }
}

/// How the export engine hands a sink the content of an inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Payload {
    /// The whole snapshot in one request, whatever its size (a database applies it in one
    /// transaction, so there is nothing to bound).
    Whole,
    /// Parts whose encoded envelope stays within the binding's byte ceiling (documents and
    /// messages have size limits at the destination).
    Parts,
}

/// What coalescing compares to decide that the content changed since the last export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChecksumBasis {
    /// The checksum of the sorted canonical items (the envelope `checksum`): rows that hold
    /// the content once, wherever it is split.
    Content,
    /// The checksum over every part's checksum: documents whose bytes also change when the
    /// same content is split differently (a new ceiling writes new files).
    Parts,
}

/// What a sink needs from the export engine. The engine reads every field and nothing else:
///
/// - [`Capabilities::payload`]: whole snapshot, or parts within the byte ceiling;
/// - [`Capabilities::checksum`]: which checksum coalescing compares;
/// - [`Capabilities::accepts_delta`]: whether requests carry the change since the last
///   acknowledged export;
/// - [`Capabilities::needs_removal`]: whether deleting an inventory must call
///   [`Sink::remove`].
///
/// Start from one of the constants and adjust with the `with_*` methods; the struct grows with
/// the engine, so it cannot be built field by field outside this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whole snapshot or parts.
    pub payload: Payload,
    /// The checksum coalescing compares.
    pub checksum: ChecksumBasis,
    /// Whether the sink can apply a [`Delta`] instead of rewriting everything.
    pub accepts_delta: bool,
    /// Whether the sink holds something that must be removed when the inventory is deleted.
    pub needs_removal: bool,
    /// The largest part the destination accepts, whatever the configured ceiling (a message
    /// broker's maximum payload); `None` when only the ceiling bounds parts.
    pub part_limit: Option<u64>,
}

impl Capabilities {
    /// Documents in a store (Git, GitLab, a directory, an object store): parts within the
    /// ceiling, parts checksum, no delta, removal on deletion.
    pub const DOCUMENTS: Capabilities = Capabilities {
        payload: Payload::Parts,
        checksum: ChecksumBasis::Parts,
        accepts_delta: false,
        needs_removal: true,
        part_limit: None,
    };
    /// Rows in a database (PostgreSQL, MongoDB, BigQuery): the whole snapshot, content
    /// checksum, deltas applied, removal on deletion.
    pub const ROWS: Capabilities = Capabilities {
        payload: Payload::Whole,
        checksum: ChecksumBasis::Content,
        accepts_delta: true,
        needs_removal: true,
        part_limit: None,
    };
    /// Messages on a stream (Kafka, NATS, standard output): parts within the ceiling, content
    /// checksum, deltas accepted, removal on deletion (tombstones or an empty snapshot).
    pub const MESSAGES: Capabilities = Capabilities {
        payload: Payload::Parts,
        checksum: ChecksumBasis::Content,
        accepts_delta: true,
        needs_removal: true,
        part_limit: None,
    };

    /// The same capabilities with `accepts_delta` set.
    pub const fn with_delta(mut self, accepts_delta: bool) -> Self {
        self.accepts_delta = accepts_delta;
        self
    }

    /// The same capabilities with `needs_removal` set.
    pub const fn with_removal(mut self, needs_removal: bool) -> Self {
        self.needs_removal = needs_removal;
        self
    }

    /// The same capabilities with parts bounded by `limit` bytes as well as by the ceiling.
    pub const fn with_part_limit(mut self, limit: u64) -> Self {
        self.part_limit = Some(limit);
        self
    }

    /// The byte ceiling the engine partitions within: `Some(ceiling)` (lowered to the part
    /// limit when there is one) for parts, `None` for a whole snapshot.
    pub const fn ceiling(&self, ceiling: u64) -> Option<u64> {
        match (self.payload, self.part_limit) {
            (Payload::Whole, _) => None,
            (Payload::Parts, Some(limit)) if limit < ceiling => Some(limit),
            (Payload::Parts, _) => Some(ceiling),
        }
    }
}

/// A failed sink operation: its class and a credential-free message.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    class: ErrorClass,
    message: String,
}

impl fmt::Debug for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SinkError({}: {})", self.class, self.message)
    }
}

impl SinkError {
    /// An error of `class`. URL user-info in `message` is scrubbed.
    pub fn new(class: ErrorClass, message: impl AsRef<str>) -> Self {
        Self {
            class,
            message: scrub_userinfo(message.as_ref()),
        }
    }

    /// A transient error (retried with backoff).
    pub fn transient(message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::Transient, message)
    }

    /// A terminal error (not retried until something changes).
    pub fn terminal(message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::Terminal, message)
    }

    /// A permission error.
    pub fn forbidden(message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::Forbidden, message)
    }

    /// Wraps a library error: the message is `context: <error and its sources>`, passed through
    /// `redactor`, and the class is `class` unless the text is recognised as an authentication
    /// failure (terminal) by [`ErrorClass::from_message`].
    pub fn from_error(
        class: ErrorClass,
        context: &str,
        error: &(dyn std::error::Error + 'static),
        redactor: &Redactor,
    ) -> Self {
        let text = format!("{context}: {}", crate::error::error_chain(error));
        let class = match ErrorClass::from_message(&text) {
            Some(ErrorClass::Terminal) => ErrorClass::Terminal,
            _ => class,
        };
        Self {
            class,
            message: redactor.scrub(&text),
        }
    }

    /// The class.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a retry may help.
    pub fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }

    /// Prefixes the message with `context: `.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = scrub_userinfo(&format!("{context}: {}", self.message));
        self
    }
}

/// A destination for inventory exports.
///
/// Implementations must be idempotent: receiving the same request twice leaves the destination
/// as after the first (exports are delivered at least once). `export` of the parts of one
/// multipart set is called in order, and never concurrently for the same inventory.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The backend type (`git`, `postgres`, ...), used as the `sink_type` metric label.
    fn sink_type(&self) -> &str;

    /// What the sink can do.
    fn capabilities(&self) -> Capabilities;

    /// Writes one part of an inventory.
    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError>;

    /// Removes everything this sink holds for an inventory.
    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError>;

    /// Checks that the destination is reachable and the credentials work, without writing.
    async fn probe(&self) -> Result<ProbeReport, SinkError>;

    /// Describes what an export of `request` would produce, without side effects.
    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            object_path: Some(request.part_path(&request.inventory.default_object_path(".json"))),
            ..SinkPreview::default()
        }
    }
}

macro_rules! forward_sink {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<S: Sink + ?Sized> Sink for $ty {
            fn sink_type(&self) -> &str {
                (**self).sink_type()
            }

            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }

            async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
                (**self).export(request).await
            }

            async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
                (**self).remove(request).await
            }

            async fn probe(&self) -> Result<ProbeReport, SinkError> {
                (**self).probe().await
            }

            fn preview(&self, request: &ExportRequest) -> SinkPreview {
                (**self).preview(request)
            }
        }
    )*};
}

forward_sink!(Box<S>, Arc<S>);

/// A type-erased sink, as built by the sink registry.
pub type BoxSink = Box<dyn Sink>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Snapshot;

    #[test]
    fn a_part_limit_lowers_the_ceiling_and_never_raises_it() {
        assert_eq!(Capabilities::ROWS.with_part_limit(10).ceiling(100), None);
        assert_eq!(Capabilities::MESSAGES.ceiling(100), Some(100));
        assert_eq!(Capabilities::MESSAGES.with_part_limit(60).ceiling(100), Some(60));
        assert_eq!(
            Capabilities::MESSAGES.with_part_limit(600).ceiling(100),
            Some(100)
        );
    }

    #[test]
    fn inventory_paths_and_display() {
        let ns = InventoryRef::namespaced("team-a", "apps");
        assert_eq!(ns.default_object_path(".json"), "inventory/team-a/apps.json");
        let cl = InventoryRef::cluster_scoped("rollup").with_cluster("prod");
        assert_eq!(cl.default_object_path(".yaml"), "inventory/cluster/rollup.yaml");
        assert_eq!(cl.to_string(), "cluster/rollup (cluster prod)");
    }

    #[test]
    fn full_request_is_one_unmarked_part() {
        let req = ExportRequest::full(
            InventoryRef::namespaced("a", "b"),
            3,
            Timestamp::UNIX_EPOCH,
            Snapshot::empty(),
        );
        assert!(req.is_last_part());
        assert_eq!(req.part_path("inventory/a/b.json"), "inventory/a/b.json");
        let text = String::from_utf8(req.envelope()).unwrap();
        assert!(text.contains("\"generation\":3"), "{text}");
        assert!(text.ends_with("\"items\":[]}"), "{text}");
    }

    #[test]
    fn errors_never_keep_url_credentials() {
        let e = SinkError::transient("push to https://me:tok3n@git.example.com/x failed");
        assert_eq!(e.message(), "push to https://***@git.example.com/x failed");
        let io = std::io::Error::other("auth with pw-9f8e7d failed: 401 Unauthorized");
        let e = SinkError::from_error(
            ErrorClass::Transient,
            "connect",
            &io,
            &Redactor::new(["pw-9f8e7d"]),
        );
        assert_eq!(e.class(), ErrorClass::Terminal);
        assert_eq!(e.to_string(), "connect: auth with *** failed: 401 Unauthorized");
        assert_eq!(
            e.context("export to \"git\"").message(),
            "export to \"git\": connect: auth with *** failed: 401 Unauthorized"
        );
    }
}
