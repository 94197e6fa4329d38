//! A target as collection sees it: its compiled profile and filters ([`TargetRegistration`]),
//! and how it turns one object into a row ([`build_row`]). Shared by the watch runtime and the
//! offline file source, so both collect exactly the same rows.

use std::sync::Arc;

use kollect_core::api::v1alpha1::{GroupVersionKind, KollectProfile, KollectTargetSpec};
use kollect_core::collect::RowOwner;
use kollect_core::model::{Row, RowKey};
use serde_json::Value;

use crate::extract::{CompiledProfile, ExtractError, ExtractOptions};
use crate::select::{FilterError, NamespaceDefaults, TargetFilter};

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

impl TargetRegistration {
    /// The registration of a namespaced target `target` named `namespace/name` that collects
    /// with `profile`, with the default extraction options and namespace defaults and no scope
    /// ceiling: what a program that embeds collection needs (the operator adds its flags and
    /// scopes).
    ///
    /// The fingerprint is derived from both specs, so registering the same specs again is free
    /// and changing either relists the kind. The profile is not validated here: an attribute
    /// path that does not compile fails the extraction of every object, so check profiles
    /// from users first with [`crate::extract::validate::validate_profile`].
    ///
    /// ```
    /// use kollect_collect::target::TargetRegistration;
    /// use kollect_core::api::v1alpha1::{
    ///     AttributeSpec, GroupVersionKind, KollectProfile, KollectProfileSpec, KollectTargetSpec,
    /// };
    ///
    /// let profile = KollectProfile::new("images", KollectProfileSpec {
    ///     target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
    ///     attributes: vec![AttributeSpec::new("image", "$.spec.template.spec.containers[*].image")],
    ///     ..Default::default()
    /// });
    /// let registration = TargetRegistration::new("team-a", "images", &profile, &KollectTargetSpec::default())?;
    /// assert_eq!(registration.gvk.kind, "Deployment");
    /// # Ok::<(), kollect_collect::select::FilterError>(())
    /// ```
    pub fn new(
        namespace: &str,
        name: &str,
        profile: &KollectProfile,
        target: &KollectTargetSpec,
    ) -> Result<Self, FilterError> {
        let options = ExtractOptions::default();
        let filter = TargetFilter::compile(target.into(), &NamespaceDefaults::default(), None, &options.cel)?;
        // Serialising plain spec data cannot fail; an empty fingerprint would only cost a relist.
        let fingerprint = serde_json::to_string(&(&profile.spec, target)).unwrap_or_default();
        Ok(Self {
            owner: RowOwner::target(namespace, name),
            profile_name: profile.metadata.name.clone().unwrap_or_default(),
            gvk: profile.spec.target_gvk.clone(),
            profile: Arc::new(CompiledProfile::compile(&profile.spec, &options)),
            filter,
            fingerprint,
        })
    }
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
