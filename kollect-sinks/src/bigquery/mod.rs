//! The `bigquery` sink: one row per collected object in a BigQuery table, keyed by
//! `(cluster, inventory_namespace, inventory_name, target_name, source_uid)`.
//!
//! - Every export is one `MERGE` statement, so the table changes atomically: a full snapshot
//!   upserts its rows and deletes the partition's rows it no longer holds (`WHEN NOT MATCHED
//!   BY SOURCE`); a delta upserts and deletes only the changed rows. Rows travel as one array
//!   query parameter, never spliced into SQL. A snapshot above one request's size is staged
//!   first and still merged in one statement.
//! - `provisioning.mode: ensure` (default) creates the table: the reference columns,
//!   partitioned by day on `exported_at` and clustered by cluster, inventory and resource
//!   namespace. `existing` only reads its metadata and fails clearly when it is missing. The
//!   dataset is never created; either way the table must have the sink's columns.
//! - Credentials: a service-account key (`credentials.json` in `spec.bigquery.secretRef`),
//!   which signs its own short-lived tokens; without a Secret, the metadata server
//!   (Workload Identity on GKE). `spec.endpoint` (or `BIGQUERY_EMULATOR_HOST`) points the sink
//!   at another API root; over plain HTTP nothing is authorised.
//! - The probe reads the dataset's metadata and dry-runs a query; it never runs DDL.
//! - Quota, rate-limit and backend errors are transient even when answered with 403; other
//!   client errors are terminal, refused authorisation is forbidden.

mod auth;
mod config;
mod rest;
mod sink;
mod statement;

pub use self::auth::{Credentials, METADATA_HOST, SCOPE, ServiceAccountKey};
pub use self::config::{
    BigqueryConfig, CREDENTIALS_KEY, DEFAULT_ENDPOINT, EMULATOR_HOST_ENV, METADATA_HOST_ENV,
};
pub use self::sink::BigquerySink;
pub use self::statement::Dialect;

use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::netguard::EndpointKind;
use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily, EndpointField, SecretRefs};
use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// The type name of this backend.
pub const TYPE: &str = "bigquery";

/// The `bigquery` backend: `spec.endpoint` (optional) is the API root it dials.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Crd(SinkFamily::Database),
    Capabilities::ROWS,
    build,
)
.with_endpoints(&[EndpointField::new("spec.endpoint", EndpointKind::Url)])
.with_secrets(secret_refs);

fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Database(spec) => Ok(Box::new(BigquerySink::from_spec(spec, context)?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}

/// The key file comes from `spec.bigquery.secretRef`, or else `spec.secretRef`.
fn secret_refs(sink: &FamilySink) -> SecretRefs {
    let own = match sink {
        FamilySink::Database(s) => s.spec.bigquery.as_ref().and_then(|b| b.secret_ref.clone()),
        _ => None,
    };
    SecretRefs::common(sink).with_credentials_override(own)
}
