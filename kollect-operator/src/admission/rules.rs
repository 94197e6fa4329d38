//! The admission rules of each kind, as pure functions over the object (and, for the scope
//! checks, the namespace's `KollectScope`). `kollect validate` runs the same functions.
//!
//! The CRD schemas already refuse what a structural schema or a CEL rule can express (required
//! fields, enums, Go durations within 0s..24h, names without `/`, unique sink refs, at most 20
//! refs). These rules cover the rest: what needs our parsers (JSONPath, CEL, label selectors),
//! the sink registry (types this build supports, endpoints, backend configuration), the
//! operator's flags (`--max-export-bytes`, `--allow-private-sinks`, `--tenant-mode`) or the scope.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kollect_collect::extract::ExtractOptions;
use kollect_collect::extract::validate::{Validation, validate_profile};
use kollect_collect::select::{FilterSpec, NamespaceDefaults, TargetFilter};
use kollect_core::GoDuration;
use kollect_core::api::v1alpha1::{
    CollectionFilter, GroupVersionKind, InventorySinkRef, KollectClusterInventory, KollectClusterScope,
    KollectClusterTarget, KollectConnectionTest, KollectInventory, KollectProfile, KollectScope,
    KollectTarget, ScopeCeilingSpec, SinkBindings, SinkFamily,
};
use kollect_core::netguard::NetPolicy;
use kollect_sinks::registry::CheckError;
use kollect_sinks::{BuildContext, FamilySink, Registry};

/// What the rules need to know about the operator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Extraction settings (CEL limits) the profiles compile with.
    pub extract: ExtractOptions,
    /// Which sink endpoints are allowed (`--allow-private-sinks`).
    pub net_policy: NetPolicy,
    /// `--max-export-bytes`: no inventory or sink ref may ask for more.
    pub max_export_bytes: u64,
    /// `--tenant-mode`: cluster-scoped kinds are refused.
    pub tenant_mode: bool,
}

/// A `KollectProfile`: the extraction checks (paths parse, CEL compiles, Secret data only with
/// the opt-in annotation, metrics name attributes).
pub fn profile(profile: &KollectProfile, settings: &Settings) -> Validation {
    validate_profile(profile, &settings.extract)
}

/// A `KollectTarget`: its filters compile, and the scope of its namespace allows its kind
/// (`profile`, when it exists) and its included namespaces.
pub fn target(
    target: &KollectTarget,
    profile: Option<&KollectProfile>,
    scope: Option<&KollectScope>,
    settings: &Settings,
) -> Validation {
    let mut v = Validation::default();
    if target.spec.profile_ref.trim().is_empty() {
        v.error("spec.profileRef", "Required value");
    }
    let scope = scope.map(|s| Policy::new("KollectScope", &s.metadata, &s.spec.ceiling));
    filters(&mut v, (&target.spec).into(), profile, scope.as_ref(), settings);
    v
}

/// What both target kinds check: the filters compile, and the scope allows the kinds and the
/// included namespaces.
fn filters(
    v: &mut Validation,
    spec: FilterSpec<'_>,
    profile: Option<&KollectProfile>,
    scope: Option<&Policy<'_>>,
    settings: &Settings,
) {
    if let Err(error) =
        TargetFilter::compile(spec, &NamespaceDefaults::default(), None, &settings.extract.cel)
    {
        v.error("spec", error.to_string());
    }
    if let Some(policy) = scope {
        policy.kinds(v, spec.filter, profile);
        policy.namespaces(v, spec.filter);
    }
}

/// A `KollectClusterTarget`: its profile ref names a profile, its filters compile, and the
/// cluster scope allows its kind, its included namespaces and its profile's namespace.
pub fn cluster_target(
    target: &KollectClusterTarget,
    profile: Option<&KollectProfile>,
    scope: Option<&KollectClusterScope>,
    settings: &Settings,
) -> Validation {
    let mut v = Validation::default();
    let reference = &target.spec.profile_ref;
    if let Err(message) = dns_subdomain(&reference.name) {
        v.error(
            "spec.profileRef.name",
            format!("Invalid value: {:?}: {message}", reference.name),
        );
    }
    let policy = scope.map(|s| Policy::new("KollectClusterScope", &s.metadata, &s.spec.ceiling));
    filters(&mut v, (&target.spec).into(), profile, policy.as_ref(), settings);
    if let Some(scope) = scope {
        static_ref(
            &mut v,
            scope,
            "spec.profileRef.namespace",
            reference.namespace.as_deref().unwrap_or_default(),
        );
    }
    v
}

/// A scope's ceiling as the rules quote it in their messages.
struct Policy<'a> {
    kind: &'static str,
    name: &'a str,
    ceiling: &'a ScopeCeilingSpec,
}

impl<'a> Policy<'a> {
    fn new(kind: &'static str, metadata: &'a ObjectMeta, ceiling: &'a ScopeCeilingSpec) -> Self {
        Self {
            kind,
            name: metadata.name.as_deref().unwrap_or_default(),
            ceiling,
        }
    }

    /// The kinds a target collects: its rules' kinds, else its profile's (a missing profile is
    /// checked again at reconcile).
    fn kinds(&self, v: &mut Validation, filter: &CollectionFilter, profile: Option<&KollectProfile>) {
        let denied = |gvk: &GroupVersionKind| {
            format!(
                "Forbidden: {} {:?} does not allow {}/{}/{}",
                self.kind, self.name, gvk.group, gvk.version, gvk.kind
            )
        };
        let rules = &filter.resource_rules;
        if rules.is_empty() {
            if let Some(gvk) = profile.map(|p| &p.spec.target_gvk)
                && !self.ceiling.allows_gvk(gvk)
            {
                v.error("spec.profileRef", denied(gvk));
            }
        } else {
            for (i, rule) in rules.iter().enumerate() {
                if !self.ceiling.allows_gvk(&rule.gvk) {
                    v.error(format!("spec.resourceRules[{i}].gvk"), denied(&rule.gvk));
                }
            }
        }
    }

    /// Included namespaces inside the allow list and outside the deny list.
    fn namespaces(&self, v: &mut Validation, filter: &CollectionFilter) {
        for (i, namespace) in filter.included_namespaces.iter().enumerate() {
            if !self.ceiling.allows_namespace(namespace) {
                v.error(
                    format!("spec.includedNamespaces[{i}]"),
                    format!(
                        "Forbidden: {} {:?} does not allow namespace {namespace:?}",
                        self.kind, self.name
                    ),
                );
            }
        }
    }

    /// Every sink ref in the family allowlist of the scope.
    fn sink_names(&self, v: &mut Validation, sinks: &SinkBindings) {
        for (family, index, reference) in indexed_refs(sinks) {
            let allowed = match family {
                SinkFamily::Snapshot => &self.ceiling.snapshot_sink_refs,
                SinkFamily::Database => &self.ceiling.database_sink_refs,
                SinkFamily::Event => &self.ceiling.event_sink_refs,
            };
            if !allowed.is_empty() && !allowed.contains(&reference.name) {
                v.error(
                    format!("spec.{}SinkRefs[{index}].name", family.as_str()),
                    format!(
                        "Forbidden: {} sink ref {:?} is not in {} {:?} {}SinkRefs",
                        family.as_str(),
                        reference.name,
                        self.kind,
                        self.name,
                        family.as_str()
                    ),
                );
            }
        }
    }

    /// The inventory's interval and every ref's override at least the scope's floor.
    fn floor(&self, v: &mut Validation, interval: GoDuration, sinks: &SinkBindings) {
        let Some(floor) = self.ceiling.min_export_interval else {
            return;
        };
        let mut check = |field: String, interval: GoDuration| {
            if interval < floor {
                v.error(
                    field,
                    format!(
                        "Invalid value: {:?}: must be at least the minExportInterval {floor} of {} {:?}",
                        interval.to_string(),
                        self.kind,
                        self.name
                    ),
                );
            }
        };
        check("spec.exportMinInterval".into(), interval);
        for (family, index, reference) in indexed_refs(sinks) {
            if let Some(interval) = reference.export_min_interval {
                check(
                    format!("spec.{}SinkRefs[{index}].exportMinInterval", family.as_str()),
                    interval,
                );
            }
        }
    }
}

/// Cluster kinds may reference objects only in the cluster scope's `allowedStaticRefNamespaces`.
fn static_ref(v: &mut Validation, scope: &KollectClusterScope, field: &str, namespace: &str) {
    let allowed = &scope.spec.allowed_static_ref_namespaces;
    if !allowed.is_empty() && !allowed.iter().any(|a| a == namespace) {
        v.error(
            field,
            format!(
                "Forbidden: KollectClusterScope {:?} does not allow references to namespace {namespace:?} \
                 (allowedStaticRefNamespaces)",
                scope.metadata.name.as_deref().unwrap_or_default()
            ),
        );
    }
}

/// A DNS-1123 subdomain: what Kubernetes accepts as an object name.
fn dns_subdomain(name: &str) -> Result<(), &'static str> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err("must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)");
    }
    Ok(())
}

/// A `KollectInventory`: size ceilings within `--max-export-bytes`, and the scope's sink
/// allowlists and interval floor.
pub fn inventory(
    inventory: &KollectInventory,
    scope: Option<&KollectScope>,
    settings: &Settings,
) -> Validation {
    let mut v = Validation::default();
    byte_caps(
        &mut v,
        inventory.spec.max_export_bytes,
        &inventory.spec.sinks,
        settings,
    );
    if let Some(scope) = scope {
        let policy = Policy::new("KollectScope", &scope.metadata, &scope.spec.ceiling);
        policy.sink_names(&mut v, &inventory.spec.sinks);
        policy.floor(&mut v, inventory.spec.export_min_interval, &inventory.spec.sinks);
    }
    v
}

/// A `KollectClusterInventory`: selectors that parse, size ceilings within
/// `--max-export-bytes`, the interval floor of the `KollectScope` in `sinkNamespace` and of the
/// cluster scope (decision A5), and the cluster scope's static-ref namespaces and sink
/// allowlists.
pub fn cluster_inventory(
    inventory: &KollectClusterInventory,
    sink_namespace_scope: Option<&KollectScope>,
    scope: Option<&KollectClusterScope>,
    settings: &Settings,
) -> Validation {
    let mut v = Validation::default();
    let spec = &inventory.spec;
    for (field, selector) in [
        ("spec.namespaceSelector", Some(&spec.namespace_selector)),
        ("spec.targetSelector", spec.target_selector.as_ref()),
    ] {
        if let Some(selector) = selector
            && let Err(error) = kube::core::Selector::try_from(selector.clone())
        {
            v.error(field, format!("Invalid value: invalid label selector: {error}"));
        }
    }
    byte_caps(&mut v, None, &spec.sinks, settings);
    if let Some(local) = sink_namespace_scope {
        Policy::new("KollectScope", &local.metadata, &local.spec.ceiling).floor(
            &mut v,
            spec.export_min_interval,
            &spec.sinks,
        );
    }
    if let Some(scope) = scope {
        let policy = Policy::new("KollectClusterScope", &scope.metadata, &scope.spec.ceiling);
        policy.sink_names(&mut v, &spec.sinks);
        policy.floor(&mut v, spec.export_min_interval, &spec.sinks);
        if let Some(profile) = &spec.profile_ref {
            static_ref(
                &mut v,
                scope,
                "spec.profileRef.namespace",
                profile.namespace.as_deref().unwrap_or_default(),
            );
        }
        for (family, index, reference) in indexed_refs(&spec.sinks) {
            let (field, namespace) = match reference.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                Some(namespace) => (
                    format!("spec.{}SinkRefs[{index}].namespace", family.as_str()),
                    namespace,
                ),
                None => ("spec.sinkNamespace".to_owned(), spec.sink_namespace.as_str()),
            };
            static_ref(&mut v, scope, &field, namespace);
        }
    }
    v
}

/// `spec.maxExportBytes` (where the kind has it) and every ref's within `--max-export-bytes`.
fn byte_caps(v: &mut Validation, spec_max: Option<i64>, sinks: &SinkBindings, settings: &Settings) {
    let cap = settings.max_export_bytes;
    let mut bytes = |field: String, value: Option<i64>| {
        if let Some(value) = value
            && u64::try_from(value).is_ok_and(|value| value > cap)
        {
            v.error(
                field,
                format!("Invalid value: {value}: must not exceed the operator's --max-export-bytes ({cap})"),
            );
        }
    };
    bytes("spec.maxExportBytes".into(), spec_max);
    for (family, index, reference) in indexed_refs(sinks) {
        bytes(
            format!("spec.{}SinkRefs[{index}].maxExportBytes", family.as_str()),
            reference.max_export_bytes,
        );
    }
}

fn indexed_refs(sinks: &SinkBindings) -> impl Iterator<Item = (SinkFamily, usize, &InventorySinkRef)> {
    let lists = [
        (SinkFamily::Snapshot, &sinks.snapshot_sink_refs),
        (SinkFamily::Database, &sinks.database_sink_refs),
        (SinkFamily::Event, &sinks.event_sink_refs),
    ];
    lists.into_iter().flat_map(|(family, refs)| {
        refs.iter()
            .enumerate()
            .map(move |(index, reference)| (family, index, reference))
    })
}

/// A `KollectConnectionTest`: exactly one sink ref.
pub fn connection_test(test: &KollectConnectionTest) -> Validation {
    let mut v = Validation::default();
    if test.spec.sink_ref.target().is_none() {
        v.error(
            "spec.sinkRef",
            "Invalid value: exactly one of snapshotSinkRef, databaseSinkRef and eventSinkRef must be set",
        );
    }
    v
}

/// A family sink: a type this build has a backend for, endpoints the SSRF policy allows, a
/// configuration the backend accepts (Secrets are not read), an interval at least the scope's
/// floor.
pub fn sink(sink: &FamilySink, scope: Option<&KollectScope>, settings: &Settings) -> Validation {
    let mut v = Validation::default();
    let registry = Registry::builtin();
    let config = sink.config();
    match registry.check_endpoints(&config, &settings.net_policy) {
        Err(error @ CheckError::Unsupported(_)) => {
            v.error("spec.type", format!("Unsupported value: {error}"));
            return v;
        }
        Err(error @ CheckError::Endpoint(_)) => {
            v.error("spec", format!("Forbidden: {error}"));
            return v;
        }
        Ok(()) => {}
    }
    let name = sink.metadata().name.clone().unwrap_or_default();
    if let Err(error) = registry.build(&config, BuildContext::new(name, settings.net_policy)) {
        // Without its Secrets a backend may refuse to build; only what it says about the spec
        // itself is a reason to refuse the object.
        let message = error.message();
        if !message.to_ascii_lowercase().contains("secret") {
            v.error("spec", format!("Invalid value: {message}"));
        }
    }
    sink_warnings(sink, &mut v);
    if let (Some(scope), Some(interval)) = (scope, sink.common().export_min_interval)
        && let Some(floor) = scope.spec.ceiling.min_export_interval
        && interval < floor
    {
        v.error(
            "spec.exportMinInterval",
            format!(
                "Invalid value: {:?}: must be at least the minExportInterval {floor} of KollectScope {:?}",
                interval.to_string(),
                scope.metadata.name.as_deref().unwrap_or_default()
            ),
        );
    }
    v
}

/// What is worth saying about a sink that is valid: settings whose effect may surprise.
fn sink_warnings(sink: &FamilySink, v: &mut Validation) {
    use kollect_core::api::v1alpha1::{
        LayoutContent, LayoutMode, ProvisioningMode, PushPolicy, SerializationFormat,
    };
    let common = sink.common();
    let type_name = sink.type_name();
    let format = common.serialization.as_ref().and_then(|s| s.format);
    if let FamilySink::Snapshot(snapshot) = sink {
        let spec = &snapshot.spec;
        if spec.git.as_ref().and_then(|g| g.push_policy) == Some(PushPolicy::ForcePush) {
            v.warn(
                "spec.git.pushPolicy",
                "ForcePush overwrites the branch's history on every export",
            );
        }
        if spec.object_store.as_ref().is_some_and(|o| o.format.is_some()) && format.is_some() {
            v.warn("spec.serialization.format", "overrides spec.objectStore.format");
        }
    }
    if common.provisioning.as_ref().and_then(|p| p.mode) == Some(ProvisioningMode::Existing) {
        v.warn(
            "spec.provisioning.mode",
            "existing: nothing is created; exports fail until the destination exists",
        );
    }
    if format == Some(SerializationFormat::Parquet) {
        v.warn(
            "spec.serialization.format",
            "parquet writes typed identity columns, the attributes as one JSON column and objectStore.hotAttributes (default image, version) as text columns",
        );
    }
    if format.is_none() && (type_name == "git" || type_name == "gitlab") {
        v.warn(
            "spec.serialization.format",
            "not set: documents are written as YAML, the default of git and gitlab sinks",
        );
    }
    if let Some(template) = &common.path_template
        && template.ends_with(".json")
        && format.is_some_and(|f| f != SerializationFormat::Json)
    {
        v.warn(
            "spec.pathTemplate",
            "ends in .json but serialization.format is not json; use {extension}",
        );
    }
    if let Some(layout) = &common.layout {
        if layout.content == LayoutContent::Manifest {
            v.warn(
                "spec.layout.content",
                "manifest writes the exported resource: it needs a profile in Resource mode",
            );
        }
        if matches!(layout.mode, LayoutMode::PerResource | LayoutMode::Split) {
            v.warn(
                "spec.layout.mode",
                "perResource and split remove the files of deleted objects (prune is enabled)",
            );
        }
    }
}

/// A `KollectScope`: nothing beyond its schema today; kept so every kind has its rules.
pub fn scope(_: &KollectScope) -> Validation {
    Validation::default()
}

/// Tenant mode refuses the cluster-scoped kinds: an operator confined to its namespaces cannot
/// collect across the cluster.
pub fn tenant_mode_refusal(kind: &str) -> String {
    format!(
        "{kind} is not allowed: the operator runs in tenant mode (--tenant-mode), which manages namespaced \
         kinds only; use KollectTarget and KollectInventory in the watched namespaces"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tenant_mode: bool) -> Settings {
        Settings {
            extract: ExtractOptions::default(),
            net_policy: NetPolicy::new(false),
            max_export_bytes: 100,
            tenant_mode,
        }
    }

    #[test]
    fn tenant_mode_names_the_flag_and_the_alternative() {
        let message = tenant_mode_refusal("KollectClusterTarget");
        assert!(
            message.starts_with("KollectClusterTarget is not allowed"),
            "{message}"
        );
        assert!(
            message.contains("--tenant-mode") && message.contains("KollectTarget"),
            "{message}"
        );
    }

    #[test]
    fn profile_names_must_be_object_names() {
        assert!(dns_subdomain("argo-apps.v1").is_ok());
        for bad in ["", "Upper", "-lead", "trail-", "a..b", "under_score"] {
            assert!(dns_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_inventories_meet_both_floors_and_the_static_ref_namespaces() {
        let inventory: KollectClusterInventory = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectClusterInventory",
            "metadata": {"name": "rollup"},
            "spec": {
                "namespaceSelector": {"matchLabels": {"tier": "platform"}},
                "exportMinInterval": "1m",
                "snapshotSinkRefs": [{"name": "git"}],
                "databaseSinkRefs": [{"name": "pg", "namespace": "team-a"}]
            }
        }))
        .expect("inventory");
        let local: KollectScope = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectScope",
            "metadata": {"name": "local", "namespace": "kollect-system"},
            "spec": {"minExportInterval": "30s"}
        }))
        .expect("scope");
        let cluster: KollectClusterScope = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectClusterScope",
            "metadata": {"name": "platform"},
            "spec": {
                "minExportInterval": "5m",
                "allowedStaticRefNamespaces": ["kollect-system"],
                "databaseSinkRefs": ["warehouse"]
            }
        }))
        .expect("cluster scope");
        let v = cluster_inventory(&inventory, Some(&local), Some(&cluster), &settings(false));
        let errors: Vec<String> = v.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.databaseSinkRefs[0].name: Forbidden: database sink ref \"pg\" is not in KollectClusterScope \"platform\" databaseSinkRefs",
                "spec.exportMinInterval: Invalid value: \"1m0s\": must be at least the minExportInterval 5m0s of KollectClusterScope \"platform\"",
                "spec.databaseSinkRefs[0].namespace: Forbidden: KollectClusterScope \"platform\" does not allow references to namespace \"team-a\" (allowedStaticRefNamespaces)",
            ]
        );
    }

    #[test]
    fn ceilings_stay_within_the_operators_cap() {
        let inventory: KollectInventory = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectInventory",
            "metadata": {"name": "i"},
            "spec": {"maxExportBytes": 100, "snapshotSinkRefs": [{"name": "git", "maxExportBytes": 101}]}
        }))
        .expect("inventory");
        let v = inventory_rules(&inventory);
        assert_eq!(v.errors.len(), 1, "{v:?}");
        assert_eq!(v.errors[0].field, "spec.snapshotSinkRefs[0].maxExportBytes");
    }

    fn inventory_rules(i: &KollectInventory) -> Validation {
        inventory(i, None, &settings(false))
    }

    #[test]
    fn a_scope_checks_the_kinds_of_resource_rules_and_the_included_namespaces() {
        let target: KollectTarget = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectTarget",
            "metadata": {"name": "t", "namespace": "team"},
            "spec": {
                "profileRef": "p",
                "includedNamespaces": ["team", "kube-system"],
                "resourceRules": [
                    {"gvk": {"group": "apps", "version": "v1", "kind": "Deployment"}},
                    {"gvk": {"group": "", "version": "v1", "kind": "Secret"}}
                ]
            }
        }))
        .expect("target");
        let scope: KollectScope = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectScope",
            "metadata": {"name": "ceiling", "namespace": "team"},
            "spec": {
                "allowedGVKs": [{"group": "apps", "version": "v1", "kind": "deployment"}],
                "deniedNamespaces": ["kube-system"]
            }
        }))
        .expect("scope");
        let v = target_rules(&target, &scope);
        let errors: Vec<String> = v.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.resourceRules[1].gvk: Forbidden: KollectScope \"ceiling\" does not allow /v1/Secret",
                "spec.includedNamespaces[1]: Forbidden: KollectScope \"ceiling\" does not allow namespace \"kube-system\"",
            ]
        );
    }

    fn target_rules(t: &KollectTarget, scope: &KollectScope) -> Validation {
        target(t, None, Some(scope), &settings(false))
    }

    #[test]
    fn object_store_sinks_are_checked_by_their_backend() {
        let check = |spec: serde_json::Value| -> Vec<String> {
            let sink: kollect_core::api::v1alpha1::KollectSnapshotSink =
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectSnapshotSink",
                    "metadata": {"name": "bucket", "namespace": "team"},
                    "spec": spec
                }))
                .expect("sink");
            sink_rules(&sink.into())
                .errors
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // Valid without their Secrets: Parquet with retention, per-resource JSON, each store.
        for spec in [
            serde_json::json!({"type": "s3", "endpoint": "s3://inv/fleet", "serialization": {"format": "parquet", "compression": "snappy"}, "objectStore": {"hotAttributes": ["image"], "retention": {"generations": 3}}}),
            serde_json::json!({"type": "gcs", "endpoint": "gs://inv/fleet", "layout": {"mode": "perResource"}}),
            serde_json::json!({"type": "azureblob", "endpoint": "https://acct.blob.core.windows.net/inv", "serialization": {"format": "csv", "compression": "zstd"}}),
        ] {
            assert_eq!(check(spec.clone()), Vec::<String>::new(), "{spec}");
        }
        for (spec, want) in [
            (
                serde_json::json!({"type": "s3", "endpoint": "s3://inv", "serialization": {"format": "csv"}, "layout": {"mode": "perResource"}}),
                "spec: Invalid value: layout.mode perResource: one object per resource is written as json, yaml or ndjson, not csv",
            ),
            (
                serde_json::json!({"type": "s3", "endpoint": "s3://inv", "objectStore": {"retention": {"generations": 2}}}),
                "spec: Invalid value: objectStore.retention: the object key",
            ),
            (
                serde_json::json!({"type": "gcs", "endpoint": "gs://inv", "serialization": {"compression": "snappy"}}),
                "spec: Invalid value: serialization.compression snappy is a Parquet page codec",
            ),
        ] {
            let errors = check(spec.clone());
            assert!(
                errors.len() == 1 && errors[0].starts_with(want),
                "{spec}: {errors:?}"
            );
        }
    }

    #[test]
    fn kafka_sinks_are_checked_by_their_backend() {
        let check = event_sink_errors;
        let kafka = serde_json::json!({"brokers": ["kafka.example.com:9093"], "topic": "inventory"});
        // Valid without the Secret: the SASL mechanism needs a username only at run time.
        let valid = serde_json::json!({"type": "kafka", "kafka": kafka, "tls": {},
            "options": {"messageMode": "row", "saslMechanism": "SCRAM-SHA-512", "partitions": "6"}});
        assert_eq!(check(valid), Vec::<String>::new());
        for (spec, want) in [
            (
                serde_json::json!({"type": "kafka", "kafka": kafka, "options": {"acks": "1"}}),
                "spec: Invalid value: spec.options.acks: not a kafka option (supported: messageMode, saslMechanism, partitions, replicationFactor)",
            ),
            (
                serde_json::json!({"type": "kafka", "kafka": kafka, "options": {"messageMode": "rows"}}),
                "spec: Invalid value: spec.options.messageMode: \"rows\" is not snapshot or row",
            ),
            (
                serde_json::json!({"type": "kafka", "kafka": kafka, "pathTemplate": "x/{name}"}),
                "spec: Invalid value: spec.pathTemplate is not used by kafka sinks: message keys are fixed by the message mode",
            ),
            (
                serde_json::json!({"type": "kafka", "kafka": {"brokers": ["169.254.169.254:9092"], "topic": "t"}}),
                "spec: Forbidden: spec.kafka.brokers: ",
            ),
        ] {
            let errors = check(spec.clone());
            assert!(
                errors.len() == 1 && errors[0].starts_with(want),
                "{spec}: {errors:?}"
            );
        }
    }

    /// The admission errors of a `KollectEventSink` with `spec`.
    fn event_sink_errors(spec: serde_json::Value) -> Vec<String> {
        let sink: kollect_core::api::v1alpha1::KollectEventSink = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectEventSink",
            "metadata": {"name": "events", "namespace": "team"},
            "spec": spec
        }))
        .expect("sink");
        sink_rules(&sink.into())
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn nats_sinks_are_checked_by_their_backend() {
        let nats =
            |subject: &str| serde_json::json!({"url": "nats://nats.example.com:4222", "subject": subject});
        let valid = serde_json::json!({"type": "nats", "nats": nats("kollect.{cluster}.{namespace}.{name}"),
            "options": {"messageMode": "row", "replicas": "3"}});
        assert_eq!(event_sink_errors(valid), Vec::<String>::new());
        for (spec, want) in [
            (
                serde_json::json!({"type": "nats", "nats": nats("inventory"), "options": {"messageMode": "row"}}),
                "spec: Invalid value: spec.nats.subject must contain {cluster}, {namespace} and {name} for messageMode row",
            ),
            (
                serde_json::json!({"type": "nats", "nats": nats("inv-{name}")}),
                "spec: Invalid value: spec.nats.subject \"inv-{name}\": token \"inv-{name}\": placeholders are",
            ),
            (
                serde_json::json!({"type": "nats", "nats": nats("inventory"), "options": {"maxAge": "1h"}}),
                "spec: Invalid value: spec.options.maxAge: not a nats option (supported: messageMode, replicas)",
            ),
            (
                serde_json::json!({"type": "nats", "nats": {"url": "nats://kollect:pw@nats:4222", "subject": "s"}}),
                "spec: Invalid value: spec.nats.url: \"nats://***@nats:4222\" carries a user name or password",
            ),
            (
                serde_json::json!({"type": "nats", "nats": {"url": "nats://a.example.com:4222,nats://169.254.169.254:4222", "subject": "s"}}),
                "spec: Forbidden: spec.nats.url: ",
            ),
        ] {
            let errors = event_sink_errors(spec.clone());
            assert!(
                errors.len() == 1 && errors[0].starts_with(want),
                "{spec}: {errors:?}"
            );
        }
    }

    #[test]
    fn surprising_sink_settings_are_warned_about() {
        let sink: kollect_core::api::v1alpha1::KollectSnapshotSink =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectSnapshotSink",
                "metadata": {"name": "git", "namespace": "team"},
                "spec": {
                    "type": "git",
                    "endpoint": "https://git.example.com/inventory.git",
                    "git": {"branch": "main", "pushPolicy": "ForcePush"},
                    "layout": {"mode": "perResource"}
                }
            }))
            .expect("sink");
        let v = sink_rules(&sink.into());
        assert!(v.is_valid(), "{v:?}");
        let fields: Vec<&str> = v
            .warnings
            .iter()
            .map(|w| w.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.git.pushPolicy",
                "spec.serialization.format",
                "spec.layout.mode"
            ]
        );
    }

    fn sink_rules(s: &FamilySink) -> Validation {
        sink(s, None, &settings(false))
    }

    #[test]
    fn a_connection_test_names_exactly_one_sink() {
        let test: KollectConnectionTest = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectConnectionTest",
            "metadata": {"name": "t"},
            "spec": {"sinkRef": {"snapshotSinkRef": "a", "eventSinkRef": "b"}}
        }))
        .expect("test");
        assert_eq!(connection_test(&test).errors[0].field, "spec.sinkRef");
    }
}
