//! The `mongodb` sink: one document per collected object, unique on
//! `(cluster, inventory_namespace, inventory_name, target_name, source_uid)`.
//!
//! - A document's `_id` is its identity (`cluster/namespace/inventory/target/uid`), so every
//!   write is a lookup on the primary index.
//! - An export is ordered `update` commands (replacement upserts, batched within the server's
//!   message limits) followed by one `delete` command for the objects that disappeared: a
//!   delta's deletes, or for a whole snapshot the documents of this inventory and cluster that
//!   it no longer holds. Every step is idempotent, so a retry after a failure part-way
//!   converges. (The single mixed `bulkWrite` command needs MongoDB 8.0; the two ordered
//!   commands work on every server.) A delta writes only its changed documents.
//! - Payload numbers keep their type: integers are stored as 64-bit integers, not doubles.
//! - `spec.deletedRows: SoftDelete` keeps a vanished object's document with `deleted_at` set.
//! - `provisioning.mode: ensure` (default) creates the collection and the unique index (and
//!   drops the Go operator's index without `cluster`, re-keying its documents); `existing`
//!   never creates anything and fails clearly when the collection is missing.
//! - The URI comes from the Secret of `spec.mongodb.databaseRef`. Every seed host is checked
//!   against the SSRF policy before connecting, and so is every replica-set member the server
//!   announces; TLS follows the URI, with `spec.tls` CA material and verification settings.
//! - Errors never carry the URI, host or credentials.

mod config;
mod document;
mod sink;
mod transport;

pub use self::config::MongodbConfig;
pub use self::sink::MongodbSink;

use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily, SecretRefs};
use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// The type name of this backend.
pub const TYPE: &str = "mongodb";

/// The keys of the unique index, in order.
pub const INDEX_KEYS: [&str; 5] = [
    "cluster",
    "inventory_namespace",
    "inventory_name",
    "target_name",
    "source_uid",
];

/// The `mongodb` backend. Its hosts are in the URI of the database Secret, so they are checked
/// when the sink connects, not from a spec field.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Crd(SinkFamily::Database),
    Capabilities::ROWS,
    build,
)
.with_secrets(secret_refs);

fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Database(spec) => Ok(Box::new(MongodbSink::from_spec(spec, context)?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}

/// The URI comes from `spec.mongodb.databaseRef`.
fn secret_refs(sink: &FamilySink) -> SecretRefs {
    SecretRefs::of_database(sink, |spec| spec.mongodb.as_ref().map(|m| &m.database_ref))
}
