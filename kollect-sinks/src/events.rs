//! The message schema event sinks publish (Kafka and NATS JetStream), and [`Replay`], which rebuilds the
//! inventories from those messages the way a consumer reading the stream from the beginning
//! does.
//!
//! Two message modes (`spec.options.messageMode`):
//!
//! - `snapshot` (default): one message per export part, keyed `<cluster>/<namespace>/<inventory>`,
//!   its value the Go operator's event shape `{"schemaVersion","timestamp","cluster","namespace",
//!   "payload"}` with the export envelope as `payload`. Deleting the inventory publishes a
//!   tombstone (no value) under the same key.
//! - `row`: one message per changed row, keyed
//!   `<cluster>/<namespace>/<inventory>/<targetNamespace>/<targetName>/<uid>`, its value
//!   `{"schemaVersion","cluster","namespace","inventory","item"}`; a deleted row publishes a
//!   tombstone under its key, and deleting the inventory a tombstone for every row.
//!
//! Every message, tombstones included, carries the headers named by the `HEADER_*` constants,
//! so a consumer (and the sink itself, when it reconciles) can tell inventories apart without
//! parsing keys. `<namespace>` is the inventory's namespace, or `cluster` for a cluster
//! inventory, as in the document path of the snapshot sinks.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::SinkCommonSpec;
use kollect_core::model::{Checksum, Envelope, Row, RowKey, SCHEMA_VERSION, SharedRow, format_exported_at};
use kollect_core::sink::{InventoryRef, SinkError};

use crate::context::BuildContext;

/// Header: the cluster identity (may be empty).
pub const HEADER_CLUSTER: &str = "kollect.dev/cluster";
/// Header: the inventory namespace (`cluster` for cluster inventories).
pub const HEADER_NAMESPACE: &str = "kollect.dev/namespace";
/// Header: the inventory name.
pub const HEADER_INVENTORY: &str = "kollect.dev/inventory";
/// Header: the schema version (`kollect.dev/v1alpha1`).
pub const HEADER_SCHEMA_VERSION: &str = "kollect.dev/schema-version";
/// Header: `snapshot` or `row`.
pub const HEADER_MESSAGE: &str = "kollect.dev/message";
/// Header: the SHA-256 (hex) of the content: a part's items fingerprint for snapshots, the
/// row's canonical JSON for rows. Absent on tombstones.
pub const HEADER_CHECKSUM: &str = "kollect.dev/checksum";

/// Header on snapshot messages: `<index>/<total>` of the part within its set (`1/1` for a
/// single-part export).
pub const HEADER_PART: &str = "kollect.dev/part";

/// TLS settings of an event sink: on when `spec.tls` is set (even `{}`), when the credentials
/// Secret holds a client certificate, or when the sink's own address asks for it.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// CA bundle (PEM); `None` trusts the transport's default roots.
    pub ca_pem: Option<String>,
    /// Skip certificate and host name verification (development only).
    pub insecure_skip_verify: bool,
    /// Client certificate chain and key (PEM), from the Secret's `tls.crt` and `tls.key`.
    pub client: Option<(String, String)>,
}

impl TlsSettings {
    /// The TLS settings of `common` with the resolved `context`; `required` turns TLS on even
    /// without `spec.tls` (a `tls://` address).
    pub(crate) fn from_spec(
        common: &SinkCommonSpec,
        context: &BuildContext,
        required: bool,
    ) -> Result<Option<Self>, SinkError> {
        let secret = &context.secret;
        let client = match (secret.text("tls.crt"), secret.text("tls.key")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(SinkError::terminal(
                    "a client certificate needs both tls.crt and tls.key in the credentials Secret",
                ));
            }
        };
        Ok(
            (common.tls.is_some() || client.is_some() || required).then(|| TlsSettings {
                ca_pem: context.ca_pem.clone(),
                insecure_skip_verify: common.tls_insecure(),
                client,
            }),
        )
    }
}

/// Refuses an `spec.options` key of a `type_name` sink that is not in `supported`, by name.
pub(crate) fn check_options(
    type_name: &str,
    options: &BTreeMap<String, String>,
    supported: &[&str],
) -> Result<(), SinkError> {
    match options.keys().find(|k| !supported.contains(&k.as_str())) {
        Some(key) => Err(SinkError::terminal(format!(
            "spec.options.{key}: not a {type_name} option (supported: {})",
            supported.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Which messages an event sink publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageMode {
    /// One message per export part holding the envelope (the Go operator's shape).
    #[default]
    Snapshot,
    /// One message per changed row, a tombstone per deleted row.
    Row,
}

impl MessageMode {
    /// The spelling in `spec.options.messageMode` and the message header.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageMode::Snapshot => "snapshot",
            MessageMode::Row => "row",
        }
    }

    /// Parses `spec.options.messageMode`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "snapshot" => Some(MessageMode::Snapshot),
            "row" => Some(MessageMode::Row),
            _ => None,
        }
    }

    /// The mode `spec.options.messageMode` asks for (`snapshot` when absent).
    pub(crate) fn from_options(options: &BTreeMap<String, String>) -> Result<Self, SinkError> {
        match options.get("messageMode") {
            None => Ok(MessageMode::Snapshot),
            Some(value) => MessageMode::parse(value).ok_or_else(|| {
                SinkError::terminal(format!(
                    "spec.options.messageMode: {value:?} is not snapshot or row"
                ))
            }),
        }
    }
}

/// The key of an inventory's snapshot messages: `<cluster>/<namespace>/<inventory>`.
pub fn inventory_key(inventory: &InventoryRef) -> String {
    format!(
        "{}/{}/{}",
        inventory.cluster,
        inventory.path_namespace(),
        inventory.name
    )
}

/// The key of a row's messages: the inventory key, then `<targetNamespace>/<targetName>/<uid>`.
pub fn row_key(inventory: &InventoryRef, key: &RowKey) -> String {
    format!(
        "{}/{}/{}/{}",
        inventory_key(inventory),
        key.target_namespace,
        key.target_name,
        key.uid
    )
}

/// The headers of a message about `inventory`; `checksum` is `None` for tombstones.
pub fn headers(
    inventory: &InventoryRef,
    mode: MessageMode,
    checksum: Option<&Checksum>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (HEADER_SCHEMA_VERSION, SCHEMA_VERSION.to_owned()),
        (HEADER_CLUSTER, inventory.cluster.clone()),
        (HEADER_NAMESPACE, inventory.path_namespace().to_owned()),
        (HEADER_INVENTORY, inventory.name.clone()),
        (HEADER_MESSAGE, mode.as_str().to_owned()),
    ];
    if let Some(checksum) = checksum {
        headers.push((HEADER_CHECKSUM, checksum.to_string()));
    }
    headers
}

/// The value of a snapshot message: the Go event shape around `envelope`.
pub fn snapshot_value(inventory: &InventoryRef, published_at: Timestamp, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.len() + 160);
    out.extend_from_slice(b"{\"schemaVersion\":");
    push_string(&mut out, SCHEMA_VERSION);
    out.extend_from_slice(b",\"timestamp\":");
    push_string(&mut out, &format_exported_at(published_at));
    out.extend_from_slice(b",\"cluster\":");
    push_string(&mut out, &inventory.cluster);
    out.extend_from_slice(b",\"namespace\":");
    push_string(&mut out, inventory.path_namespace());
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(envelope);
    out.push(b'}');
    out
}

/// The value of a row message and the checksum of the row's canonical JSON.
pub fn row_value(inventory: &InventoryRef, row: &SharedRow) -> (Vec<u8>, Checksum) {
    let item = row.canonical();
    let checksum = Checksum::of_bytes(item);
    let mut out = Vec::with_capacity(item.len() + 160);
    out.extend_from_slice(b"{\"schemaVersion\":");
    push_string(&mut out, SCHEMA_VERSION);
    out.extend_from_slice(b",\"cluster\":");
    push_string(&mut out, &inventory.cluster);
    out.extend_from_slice(b",\"namespace\":");
    push_string(&mut out, inventory.path_namespace());
    out.extend_from_slice(b",\"inventory\":");
    push_string(&mut out, &inventory.name);
    out.extend_from_slice(b",\"item\":");
    out.extend_from_slice(item);
    out.push(b'}');
    (out, checksum)
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The identity headers of a message, as read back from a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageHeaders {
    /// [`HEADER_CLUSTER`].
    pub cluster: String,
    /// [`HEADER_NAMESPACE`].
    pub namespace: String,
    /// [`HEADER_INVENTORY`].
    pub inventory: String,
    /// [`HEADER_MESSAGE`], parsed.
    pub message: Option<MessageMode>,
    /// [`HEADER_CHECKSUM`].
    pub checksum: Option<String>,
}

impl MessageHeaders {
    /// Reads the headers from `(name, value)` pairs; unknown names are ignored.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut headers = MessageHeaders::default();
        for (name, value) in pairs {
            let text = String::from_utf8_lossy(value).into_owned();
            match name {
                HEADER_CLUSTER => headers.cluster = text,
                HEADER_NAMESPACE => headers.namespace = text,
                HEADER_INVENTORY => headers.inventory = text,
                HEADER_MESSAGE => headers.message = MessageMode::parse(&text),
                HEADER_CHECKSUM => headers.checksum = Some(text),
                _ => {}
            }
        }
        headers
    }

    /// Whether these headers belong to `inventory`.
    pub fn is_of(&self, inventory: &InventoryRef) -> bool {
        self.cluster == inventory.cluster
            && self.namespace == inventory.path_namespace()
            && self.inventory == inventory.name
    }
}

/// Why [`Replay::apply`] could not use a message.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The message has no `kollect.dev/message` header: it was not published by Kollect.
    #[error("message without a {HEADER_MESSAGE} header")]
    NotKollect,
    /// The value is not a message of its kind.
    #[error("message {key:?}: {message}")]
    Value {
        /// The message key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// `(cluster, namespace, inventory)` as the headers name it.
type InventoryId = (String, String, String);

#[derive(Debug, Default)]
struct Assembly {
    /// Rows of the parts read so far of the set being assembled.
    pending: Vec<Row>,
    /// The next part index expected (1-based; 0 when no set is open).
    next: u32,
    /// The last complete snapshot.
    complete: Option<Vec<Row>>,
}

/// Rebuilds inventories from event messages read in stream order (per key, as Kafka
/// guarantees within a partition): rows by key in row mode, the last complete snapshot in
/// snapshot mode, tombstones removing either.
///
/// ```
/// use kollect_core::sink::InventoryRef;
/// use kollect_sinks::events::{MessageMode, Replay, headers, row_key, row_value};
/// # let row = kollect_core::model::Row {
/// #     target_namespace: "shop".into(), target_name: "t".into(), namespace: "shop".into(),
/// #     name: "web".into(), group: "apps".into(), version: "v1".into(),
/// #     kind: "Deployment".into(), uid: "u1".into(), attributes: None,
/// # };
/// let inventory = InventoryRef::namespaced("shop", "images").with_cluster("prod");
/// let (value, checksum) = row_value(&inventory, &row.clone().into());
/// let headers = headers(&inventory, MessageMode::Row, Some(&checksum));
/// let mut replay = Replay::default();
/// let pairs = headers.iter().map(|(k, v)| (*k, v.as_bytes()));
/// replay.apply(&row_key(&inventory, &row.key()), Some(&value), pairs).unwrap();
/// assert_eq!(replay.rows(&inventory), vec![row]);
/// ```
#[derive(Debug, Default)]
pub struct Replay {
    rows: BTreeMap<InventoryId, BTreeMap<String, Row>>,
    snapshots: BTreeMap<InventoryId, Assembly>,
}

impl Replay {
    /// Applies one message: `value` is `None` for a tombstone.
    pub fn apply<'a>(
        &mut self,
        key: &str,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), ReplayError> {
        let headers = MessageHeaders::from_pairs(headers);
        let mode = headers.message.ok_or(ReplayError::NotKollect)?;
        let id = (headers.cluster, headers.namespace, headers.inventory);
        let bad = |message: String| ReplayError::Value {
            key: key.to_owned(),
            message,
        };
        match (mode, value) {
            (MessageMode::Row, None) => {
                if let Some(rows) = self.rows.get_mut(&id) {
                    rows.remove(key);
                }
            }
            (MessageMode::Row, Some(value)) => {
                #[derive(serde::Deserialize)]
                struct RowMessage {
                    item: Row,
                }
                let message: RowMessage = serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
                self.rows
                    .entry(id)
                    .or_default()
                    .insert(key.to_owned(), message.item);
            }
            (MessageMode::Snapshot, None) => {
                self.snapshots.remove(&id);
            }
            (MessageMode::Snapshot, Some(value)) => {
                #[derive(serde::Deserialize)]
                struct SnapshotMessage {
                    payload: Envelope,
                }
                let message: SnapshotMessage =
                    serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
                let envelope = message.payload;
                if !envelope.schema_version.is_empty() && envelope.schema_version != SCHEMA_VERSION {
                    return Err(bad(format!(
                        "unsupported schemaVersion {:?}",
                        envelope.schema_version
                    )));
                }
                let assembly = self.snapshots.entry(id).or_default();
                let (index, total) = match envelope.part_total {
                    0 => (1, 1),
                    total => (envelope.part_index, total),
                };
                if index == 1 {
                    assembly.pending.clear();
                    assembly.next = 1;
                }
                if index != assembly.next {
                    // A part out of sequence (a set interrupted by a newer one): drop the set.
                    assembly.pending.clear();
                    assembly.next = 0;
                    return Ok(());
                }
                assembly.pending.extend(envelope.items);
                assembly.next += 1;
                if index == total {
                    assembly.complete = Some(std::mem::take(&mut assembly.pending));
                    assembly.next = 0;
                }
            }
        }
        Ok(())
    }

    /// The rows `inventory` holds: its row messages, or its last complete snapshot, in
    /// canonical order.
    pub fn rows(&self, inventory: &InventoryRef) -> Vec<Row> {
        let id = (
            inventory.cluster.clone(),
            inventory.path_namespace().to_owned(),
            inventory.name.clone(),
        );
        let mut rows: Vec<Row> = self
            .rows
            .get(&id)
            .map(|rows| rows.values().cloned().collect())
            .unwrap_or_default();
        if let Some(snapshot) = self.snapshots.get(&id).and_then(|a| a.complete.as_ref()) {
            rows.extend(snapshot.iter().cloned());
        }
        kollect_core::model::sort_canonical(&mut rows);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::model::{ExportMeta, Snapshot, partition};

    fn row(name: &str) -> Row {
        Row {
            target_namespace: "shop".into(),
            target_name: "images".into(),
            namespace: "shop".into(),
            name: name.into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: format!("uid-{name}"),
            attributes: serde_json::json!({"image": format!("{name}:1"), "note": "<&>"})
                .as_object()
                .cloned(),
        }
    }

    fn pairs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a [u8])> {
        headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    #[test]
    fn keys_name_the_cluster_namespace_inventory_and_row() {
        let inventory = InventoryRef::namespaced("shop", "images").with_cluster("prod");
        assert_eq!(inventory_key(&inventory), "prod/shop/images");
        assert_eq!(
            row_key(&inventory, &row("web").key()),
            "prod/shop/images/shop/images/uid-web"
        );
        let cluster = InventoryRef::cluster_scoped("fleet");
        assert_eq!(inventory_key(&cluster), "/cluster/fleet");
    }

    #[test]
    fn snapshot_values_keep_the_go_field_order_and_embed_the_envelope() {
        let inventory = InventoryRef::namespaced("shop", "images").with_cluster("prod");
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let value = snapshot_value(&inventory, at, br#"{"items":[]}"#);
        assert_eq!(
            String::from_utf8(value).unwrap(),
            r#"{"schemaVersion":"kollect.dev/v1alpha1","timestamp":"2027-01-15T08:00:00Z","cluster":"prod","namespace":"shop","payload":{"items":[]}}"#
        );
    }

    #[test]
    fn replay_applies_rows_tombstones_and_multipart_snapshots() {
        let inventory = InventoryRef::namespaced("shop", "images").with_cluster("prod");
        let mut replay = Replay::default();
        for name in ["web", "cart"] {
            let (value, checksum) = row_value(&inventory, &row(name).into());
            let headers = headers(&inventory, MessageMode::Row, Some(&checksum));
            replay
                .apply(
                    &row_key(&inventory, &row(name).key()),
                    Some(&value),
                    pairs(&headers),
                )
                .unwrap();
        }
        let tombstone = headers(&inventory, MessageMode::Row, None);
        replay
            .apply(&row_key(&inventory, &row("web").key()), None, pairs(&tombstone))
            .unwrap();
        assert_eq!(replay.rows(&inventory), vec![row("cart")]);

        let other = InventoryRef::namespaced("shop", "snap").with_cluster("prod");
        let rows: Vec<Row> = (0..40).map(|i| row(&format!("svc-{i:02}"))).collect();
        let snapshot = Snapshot::new(rows.clone());
        let meta = ExportMeta {
            generation: Some(1),
            cluster: Some("prod".into()),
            exported_at: Timestamp::UNIX_EPOCH,
        };
        let parts = partition(&snapshot, &meta, Some(4096)).unwrap().parts;
        assert!(parts.len() > 2);
        let snapshot_headers = headers(&other, MessageMode::Snapshot, None);
        for (i, part) in parts.iter().enumerate() {
            let value = snapshot_value(&other, Timestamp::UNIX_EPOCH, &part.encode(&snapshot, &meta));
            replay
                .apply(&inventory_key(&other), Some(&value), pairs(&snapshot_headers))
                .unwrap();
            let expected = if i + 1 == parts.len() {
                rows.clone()
            } else {
                Vec::new()
            };
            assert_eq!(replay.rows(&other).len(), expected.len(), "after part {}", i + 1);
        }
        assert_eq!(replay.rows(&other), rows);
        replay
            .apply(&inventory_key(&other), None, pairs(&snapshot_headers))
            .unwrap();
        assert!(replay.rows(&other).is_empty());
        assert!(matches!(
            replay.apply("x", None, Vec::new()),
            Err(ReplayError::NotKollect)
        ));
    }
}
