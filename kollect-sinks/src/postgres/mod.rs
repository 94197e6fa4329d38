//! The `postgres` sink: one table row per collected object, keyed
//! `(cluster, inventory_namespace, inventory_name, target_name, source_uid)`.
//!
//! - Every export runs in one transaction: a delta (upserts and deletes) when the engine gives
//!   one, otherwise a full reconcile (per-row upserts below 32 rows, `COPY` into a temporary
//!   table and one merge above), then deleting the rows of this inventory and cluster that are
//!   not in the snapshot. An empty snapshot deletes the inventory's rows. A failure rolls back,
//!   leaving the previous rows intact.
//! - `provisioning.mode: ensure` (default) creates the table and migrates a table created by the
//!   Go operator (primary key without `cluster`) in a transaction; `existing` never runs DDL and
//!   fails clearly when the table is missing.
//! - `spec.options` are applied to each session with `set_config` (`statement_timeout`,
//!   `lock_timeout`, ...); keys that look like secrets are refused.
//! - The host is resolved through the SSRF guard and the connection goes to the checked address;
//!   TLS follows the DSN's `sslmode` (rustls, with `spec.tls` CA material when given).
//! - DSN and connection errors are replaced with fixed texts: no host, user or password leaks.

mod config;
mod sink;
mod sql;
mod transport;

pub use self::config::PostgresConfig;
pub use self::sink::PostgresSink;
pub use self::sql::ddl;

use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily, SecretRefs};
use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// The type name of this backend.
pub const TYPE: &str = "postgres";

/// The `postgres` backend. The host it dials is in the DSN of the database Secret, so it is
/// checked when the sink connects, not from a spec field.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Crd(SinkFamily::Database),
    Capabilities::ROWS,
    build,
)
.with_secrets(secret_refs);

fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Database(spec) => Ok(Box::new(PostgresSink::from_spec(spec, context)?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}

/// The DSN comes from `spec.postgres.databaseRef`.
fn secret_refs(sink: &FamilySink) -> SecretRefs {
    SecretRefs::of_database(sink, |spec| spec.postgres.as_ref().map(|p| &p.database_ref))
}
