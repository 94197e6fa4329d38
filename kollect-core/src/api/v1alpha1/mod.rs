//! `kollect.dev/v1alpha1`: the eleven custom resources, wire-compatible with the Go operator.
//!
//! Field names, enum spellings, defaults, short names, scopes, status subresources and printer
//! columns follow the Go operator (decisions A1–A4). The CRD schemas
//! also carry CEL `x-kubernetes-validations` for every rule that can be checked without operator
//! configuration, so a plain API server rejects malformed objects before any webhook runs.
//!
//! [`all_crds`] lists the generated `CustomResourceDefinition`s; `kollect crds` writes them to
//! `charts/kollect/crds/`.

mod cluster;
mod common;
mod connection_test;
mod inventory;
mod profile;
mod scope;
mod sink;
mod target;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use cluster::*;
pub use common::{GroupVersionKind, InventorySinkRef, NamespacedObjectReference, SecretReference, TlsSpec};
pub use connection_test::*;
pub use inventory::*;
pub use profile::*;
pub use scope::*;
pub use sink::*;
pub use target::*;

/// The version string of this API.
pub const VERSION: &str = "v1alpha1";

/// Every CRD of this API version, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        KollectProfile::crd(),
        KollectTarget::crd(),
        KollectInventory::crd(),
        KollectSnapshotSink::crd(),
        KollectDatabaseSink::crd(),
        KollectEventSink::crd(),
        KollectScope::crd(),
        KollectConnectionTest::crd(),
        KollectClusterTarget::crd(),
        KollectClusterInventory::crd(),
        KollectClusterScope::crd(),
    ]
}
