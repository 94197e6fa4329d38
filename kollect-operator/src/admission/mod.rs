//! The validating admission webhook of `kollect run`: one path per kind
//! (`/validate-kollect-dev-v1alpha1-<lowercase kind>`), served over TLS from a certificate
//! directory, on every replica (admission must not wait for leadership).
//!
//! - [`rules`]: what each kind must satisfy, shared with `kollect validate`;
//! - [`server`]: the HTTPS server and certificate reloading.
//!
//! An object whose `deletionTimestamp` is set is always admitted, so that removing finalizers
//! can never be blocked by a rule the object no longer meets.

pub mod rules;
pub mod server;

use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kollect_collect::extract::validate::Validation;
use kollect_core::api::v1alpha1::{
    KollectClusterInventory, KollectClusterScope, KollectClusterTarget, KollectConnectionTest,
    KollectDatabaseSink, KollectEventSink, KollectInventory, KollectProfile, KollectScope,
    KollectSnapshotSink, KollectTarget,
};
use kollect_sinks::FamilySink;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde::de::DeserializeOwned;

pub use rules::Settings;

/// The kinds the webhook validates, with the path the API server calls for each.
pub const KINDS: [&str; 11] = [
    "KollectProfile",
    "KollectTarget",
    "KollectClusterTarget",
    "KollectInventory",
    "KollectClusterInventory",
    "KollectScope",
    "KollectClusterScope",
    "KollectSnapshotSink",
    "KollectDatabaseSink",
    "KollectEventSink",
    "KollectConnectionTest",
];

/// The webhook path of `kind`.
pub fn path_of(kind: &str) -> String {
    format!("/validate-kollect-dev-v1alpha1-{}", kind.to_ascii_lowercase())
}

/// The webhook name of `kind` (`v<lowercase kind>.kb.io`, as the Go operator names them).
pub fn name_of(kind: &str) -> String {
    format!("v{}.kb.io", kind.to_ascii_lowercase())
}

/// The `ValidatingWebhookConfiguration` named `name` with one webhook per kind (CREATE and
/// UPDATE, `failurePolicy` as given), each reaching this server through `client(path)`.
pub fn configuration(
    name: &str,
    failure_policy: &str,
    client: impl Fn(String) -> WebhookClientConfig,
) -> ValidatingWebhookConfiguration {
    let webhooks = KINDS
        .iter()
        .map(|kind| {
            let (plural, scope) = resource_of(kind);
            ValidatingWebhook {
                name: name_of(kind),
                client_config: client(path_of(kind)),
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["kollect.dev".into()]),
                    api_versions: Some(vec!["v1alpha1".into()]),
                    operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                    resources: Some(vec![plural.to_owned()]),
                    scope: Some(scope.into()),
                }]),
                failure_policy: Some(failure_policy.to_owned()),
                side_effects: "None".into(),
                admission_review_versions: vec!["v1".into()],
                ..ValidatingWebhook::default()
            }
        })
        .collect();
    ValidatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        webhooks: Some(webhooks),
    }
}

/// The plural and scope (`Namespaced` or `Cluster`) of `kind`.
fn resource_of(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "KollectProfile" => ("kollectprofiles", "Namespaced"),
        "KollectTarget" => ("kollecttargets", "Namespaced"),
        "KollectClusterTarget" => ("kollectclustertargets", "Cluster"),
        "KollectInventory" => ("kollectinventories", "Namespaced"),
        "KollectClusterInventory" => ("kollectclusterinventories", "Cluster"),
        "KollectScope" => ("kollectscopes", "Namespaced"),
        "KollectClusterScope" => ("kollectclusterscopes", "Cluster"),
        "KollectSnapshotSink" => ("kollectsnapshotsinks", "Namespaced"),
        "KollectDatabaseSink" => ("kollectdatabasesinks", "Namespaced"),
        "KollectEventSink" => ("kollecteventsinks", "Namespaced"),
        _ => ("kollectconnectiontests", "Namespaced"),
    }
}

/// What admission needs: the rules' settings and a client for the scope and profile lookups.
#[derive(Clone)]
pub struct Admission {
    client: kube::Client,
    settings: Settings,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Admission through `client` with `settings`.
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        Self { client, settings }
    }

    /// Reviews one request for `kind`.
    pub async fn review(&self, kind: &str, request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let response = AdmissionResponse::from(request);
        if !matches!(request.operation, Operation::Create | Operation::Update) {
            return response;
        }
        let Some(object) = &request.object else {
            return response;
        };
        if object.metadata.deletion_timestamp.is_some() {
            return response;
        }
        let name = object.name_any();
        let namespace = request.namespace.clone().unwrap_or_default();
        let validation = match self.validate(kind, object, &namespace).await {
            Ok(validation) => validation,
            Err(message) => return response.deny(message),
        };
        let message = validation.message(kind, &name);
        let mut response = match message {
            Some(message) => response.deny(message),
            None => response,
        };
        if !validation.warnings.is_empty() {
            response.warnings = Some(validation.warnings);
        }
        response
    }

    async fn validate(
        &self,
        kind: &str,
        object: &DynamicObject,
        namespace: &str,
    ) -> Result<Validation, String> {
        let settings = &self.settings;
        if settings.tenant_mode && kind.starts_with("KollectCluster") {
            return Err(rules::tenant_mode_refusal(kind));
        }
        Ok(match kind {
            "KollectProfile" => rules::profile(&decode::<KollectProfile>(object, kind)?, settings),
            "KollectTarget" => {
                let target = decode::<KollectTarget>(object, kind)?;
                let profiles: Api<KollectProfile> = Api::namespaced(self.client.clone(), namespace);
                let profile = profiles
                    .get_opt(target.spec.profile_ref.trim())
                    .await
                    .map_err(|e| format!("{kind} {:?}: read its KollectProfile: {e}", target.name_any()))?;
                let scope = self.scope_of(namespace).await?;
                rules::target(&target, profile.as_ref(), scope.as_ref(), settings)
            }
            "KollectInventory" => {
                let inventory = decode::<KollectInventory>(object, kind)?;
                let scope = self.scope_of(namespace).await?;
                rules::inventory(&inventory, scope.as_ref(), settings)
            }
            "KollectSnapshotSink" => {
                self.sink(decode::<KollectSnapshotSink>(object, kind)?.into(), namespace)
                    .await?
            }
            "KollectDatabaseSink" => {
                self.sink(decode::<KollectDatabaseSink>(object, kind)?.into(), namespace)
                    .await?
            }
            "KollectEventSink" => {
                self.sink(decode::<KollectEventSink>(object, kind)?.into(), namespace)
                    .await?
            }
            "KollectConnectionTest" => {
                rules::connection_test(&decode::<KollectConnectionTest>(object, kind)?)
            }
            "KollectScope" => rules::scope(&decode::<KollectScope>(object, kind)?),
            "KollectClusterTarget" => {
                let target = decode::<KollectClusterTarget>(object, kind)?;
                let reference = &target.spec.profile_ref;
                let profiles: Api<KollectProfile> = Api::namespaced(
                    self.client.clone(),
                    reference.namespace.as_deref().unwrap_or_default(),
                );
                let profile = profiles
                    .get_opt(reference.name.trim())
                    .await
                    .map_err(|e| format!("{kind} {:?}: read its KollectProfile: {e}", target.name_any()))?;
                let scope = self.cluster_scope().await?;
                rules::cluster_target(&target, profile.as_ref(), scope.as_ref(), settings)
            }
            "KollectClusterInventory" => {
                let inventory = decode::<KollectClusterInventory>(object, kind)?;
                let local = self.scope_of(&inventory.spec.sink_namespace).await?;
                let scope = self.cluster_scope().await?;
                rules::cluster_inventory(&inventory, local.as_ref(), scope.as_ref(), settings)
            }
            "KollectClusterScope" => Validation::default(),
            other => return Err(format!("{other} is not a Kollect kind this webhook validates")),
        })
    }

    /// The cluster scope in force: the `KollectClusterScope` with the smallest name.
    async fn cluster_scope(&self) -> Result<Option<KollectClusterScope>, String> {
        let scopes: Api<KollectClusterScope> = Api::all(self.client.clone());
        let list = scopes
            .list(&Default::default())
            .await
            .map_err(|e| format!("list the KollectClusterScopes: {e}"))?;
        Ok(list.items.into_iter().min_by_key(ResourceExt::name_any))
    }

    async fn sink(&self, sink: FamilySink, namespace: &str) -> Result<Validation, String> {
        let scope = self.scope_of(namespace).await?;
        Ok(rules::sink(&sink, scope.as_ref(), &self.settings))
    }

    /// The scope of `namespace`: the `KollectScope` with the smallest name, as reconciles use.
    async fn scope_of(&self, namespace: &str) -> Result<Option<KollectScope>, String> {
        let scopes: Api<KollectScope> = Api::namespaced(self.client.clone(), namespace);
        let list = scopes
            .list(&Default::default())
            .await
            .map_err(|e| format!("list the KollectScopes of namespace {namespace}: {e}"))?;
        Ok(list.items.into_iter().min_by_key(ResourceExt::name_any))
    }
}

fn decode<K: DeserializeOwned>(object: &DynamicObject, kind: &str) -> Result<K, String> {
    let value = serde_json::to_value(object).map_err(|e| format!("{kind}: {e}"))?;
    serde_json::from_value(value).map_err(|e| format!("{kind} {:?} is invalid: {e}", object.name_any()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn every_kind_has_its_path_name_and_plural() {
        use kollect_core::api::v1alpha1::{
            KollectClusterInventory, KollectClusterScope, KollectClusterTarget,
        };
        let plurals = [
            KollectProfile::plural(&()).into_owned(),
            KollectTarget::plural(&()).into_owned(),
            KollectClusterTarget::plural(&()).into_owned(),
            KollectInventory::plural(&()).into_owned(),
            KollectClusterInventory::plural(&()).into_owned(),
            KollectScope::plural(&()).into_owned(),
            KollectClusterScope::plural(&()).into_owned(),
            KollectSnapshotSink::plural(&()).into_owned(),
            KollectDatabaseSink::plural(&()).into_owned(),
            KollectEventSink::plural(&()).into_owned(),
            KollectConnectionTest::plural(&()).into_owned(),
        ];
        for (kind, plural) in KINDS.iter().zip(plurals) {
            assert_eq!(resource_of(kind).0, plural, "{kind}");
            assert_eq!(
                resource_of(kind).1 == "Cluster",
                kind.starts_with("KollectCluster"),
                "{kind}"
            );
        }
        assert_eq!(
            path_of("KollectSnapshotSink"),
            "/validate-kollect-dev-v1alpha1-kollectsnapshotsink"
        );
        assert_eq!(name_of("KollectProfile"), "vkollectprofile.kb.io");
    }
}
