//! A target as collection sees it: its compiled profile and filters ([`TargetRegistration`]),
//! and how it turns one object into a row ([`build_row`]). Shared by the watch runtime and the
//! offline file source, so both collect exactly the same rows.

use std::sync::Arc;

use kollect_core::api::v1alpha1::GroupVersionKind;
use kollect_core::collect::RowOwner;
use kollect_core::model::{Row, RowKey};
use serde_json::Value;

use crate::extract::{CompiledProfile, ExtractError};
use crate::select::TargetFilter;

/// A target as registered with the runtime.
#[derive(Debug, Clone)]
pub struct TargetRegistration {
    /// Who collects (namespaced or cluster target, kept apart: decision A7).
    pub owner: RowOwner,
    /// The profile's name (the `profile` label of `kollect_collected_objects`).
    pub profile_name: String,
    /// The kind collected (the profile's `targetGVK`); rows carry it.
    pub gvk: GroupVersionKind,
    /// The compiled profile.
    pub profile: Arc<CompiledProfile>,
    /// The compiled filters.
    pub filter: TargetFilter,
    /// Identifies the registration's content (for example target and profile generations and
    /// the effective namespaces): registering the same owner with the same fingerprint again is
    /// free; a different fingerprint relists the GVK.
    pub fingerprint: String,
}

/// The key a row of `owner` with `uid` has (cluster targets have an empty target namespace).
pub fn owner_key(owner: &RowOwner, uid: &str) -> RowKey {
    let (target_namespace, target_name) = match owner {
        RowOwner::Target { namespace, name } => (namespace.clone(), name.clone()),
        RowOwner::ClusterTarget { name } => (String::new(), name.clone()),
    };
    RowKey {
        target_namespace,
        target_name,
        uid: uid.to_owned(),
    }
}

/// The row of `object` for `target` (after its gates passed): extraction, redaction, and the
/// identity fields (group, version and kind come from the profile's `targetGVK`).
pub fn build_row(
    target: &TargetRegistration,
    object: &Value,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<Row, ExtractError> {
    let attributes = target.profile.extract(object)?;
    let key = owner_key(&target.owner, uid);
    Ok(Row {
        target_namespace: key.target_namespace,
        target_name: key.target_name,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        group: target.gvk.group.clone(),
        version: target.gvk.version.clone(),
        kind: target.gvk.kind.clone(),
        uid: uid.to_owned(),
        attributes: Some(attributes),
    })
}
