//! The admission rules of each kind, as pure functions over the object (and, for the scope
//! checks, the namespace's `KollectScope`). `kollect validate` runs the same functions.
//!
//! The CRD schemas already refuse what a structural schema or a CEL rule can express (required
//! fields, enums, Go durations within 0s..24h, names without `/`, unique sink refs, at most 20
//! refs). These rules cover the rest: what needs our parsers (JSONPath, CEL, label selectors),
//! the sink registry (types this build supports, endpoints, backend configuration), the
//! operator's flags (`--max-export-bytes`, `--allow-private-sinks`, `--tenant-mode`) or the scope.

use kollect_collect::extract::ExtractOptions;
use kollect_collect::extract::validate::{Validation, validate_profile};
use kollect_collect::select::{NamespaceDefaults, TargetFilter};
use kollect_core::api::v1alpha1::{
    KollectConnectionTest, KollectInventory, KollectProfile, KollectScope, KollectTarget, SinkFamily,
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
    if let Err(error) = TargetFilter::compile(
        (&target.spec).into(),
        &NamespaceDefaults::default(),
        None,
        &settings.extract.cel,
    ) {
        v.error("spec", error.to_string());
    }
    let Some(scope) = scope else {
        return v;
    };
    let ceiling = &scope.spec.ceiling;
    let scope_name = scope.metadata.name.as_deref().unwrap_or_default();
    let denied = |gvk: &kollect_core::api::v1alpha1::GroupVersionKind| {
        format!(
            "Forbidden: KollectScope {scope_name:?} does not allow {}/{}/{}",
            gvk.group, gvk.version, gvk.kind
        )
    };
    // The kinds a target collects: its rules' kinds, else its profile's (a missing profile is
    // checked again at reconcile).
    let rules = &target.spec.filter.resource_rules;
    if rules.is_empty() {
        if let Some(gvk) = profile.map(|p| &p.spec.target_gvk)
            && !ceiling.allows_gvk(gvk)
        {
            v.error("spec.profileRef", denied(gvk));
        }
    } else {
        for (i, rule) in rules.iter().enumerate() {
            if !ceiling.allows_gvk(&rule.gvk) {
                v.error(format!("spec.resourceRules[{i}].gvk"), denied(&rule.gvk));
            }
        }
    }
    for (i, namespace) in target.spec.filter.included_namespaces.iter().enumerate() {
        if !ceiling.allows_namespace(namespace) {
            v.error(
                format!("spec.includedNamespaces[{i}]"),
                format!("Forbidden: KollectScope {scope_name:?} does not allow namespace {namespace:?}"),
            );
        }
    }
    v
}

/// A `KollectInventory`: size ceilings within `--max-export-bytes`, and the scope's sink
/// allowlists and interval floor.
pub fn inventory(
    inventory: &KollectInventory,
    scope: Option<&KollectScope>,
    settings: &Settings,
) -> Validation {
    let mut v = Validation::default();
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
    bytes("spec.maxExportBytes".into(), inventory.spec.max_export_bytes);
    for (family, index, reference) in indexed_refs(inventory) {
        bytes(
            format!("spec.{}SinkRefs[{index}].maxExportBytes", family.as_str()),
            reference.max_export_bytes,
        );
    }
    let Some(scope) = scope else {
        return v;
    };
    let name = scope.metadata.name.as_deref().unwrap_or_default();
    let ceiling = &scope.spec.ceiling;
    for (family, index, reference) in indexed_refs(inventory) {
        let allowed = match family {
            SinkFamily::Snapshot => &ceiling.snapshot_sink_refs,
            SinkFamily::Database => &ceiling.database_sink_refs,
            SinkFamily::Event => &ceiling.event_sink_refs,
        };
        if !allowed.is_empty() && !allowed.contains(&reference.name) {
            v.error(
                format!("spec.{}SinkRefs[{index}].name", family.as_str()),
                format!(
                    "Forbidden: {} sink ref {:?} is not in KollectScope {name:?} {}SinkRefs",
                    family.as_str(),
                    reference.name,
                    family.as_str()
                ),
            );
        }
    }
    if let Some(floor) = ceiling.min_export_interval {
        let below = |interval: kollect_core::duration::GoDuration| interval < floor;
        if below(inventory.spec.export_min_interval) {
            v.error(
                "spec.exportMinInterval",
                format!(
                    "Invalid value: {:?}: must be at least the minExportInterval {floor} of KollectScope {name:?}",
                    inventory.spec.export_min_interval.to_string()
                ),
            );
        }
        for (family, index, reference) in indexed_refs(inventory) {
            if let Some(interval) = reference.export_min_interval
                && below(interval)
            {
                v.error(
                    format!("spec.{}SinkRefs[{index}].exportMinInterval", family.as_str()),
                    format!(
                        "Invalid value: {:?}: must be at least the minExportInterval {floor} of KollectScope {name:?}",
                        interval.to_string()
                    ),
                );
            }
        }
    }
    v
}

fn indexed_refs(
    inventory: &KollectInventory,
) -> impl Iterator<Item = (SinkFamily, usize, &kollect_core::api::v1alpha1::InventorySinkRef)> {
    let lists = [
        (SinkFamily::Snapshot, &inventory.spec.sinks.snapshot_sink_refs),
        (SinkFamily::Database, &inventory.spec.sinks.database_sink_refs),
        (SinkFamily::Event, &inventory.spec.sinks.event_sink_refs),
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
            "parquet writes typed columns: attributes keep the type of their first value",
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

/// The message refusing a cluster-scoped kind: in tenant mode it is never allowed; otherwise
/// this build cannot act on it yet, and admitting it would make it a silent no-op.
pub fn cluster_kind(kind: &str, settings: &Settings) -> String {
    if settings.tenant_mode {
        format!(
            "{kind} is not allowed: the operator runs in tenant mode (--tenant-mode), which manages namespaced kinds only"
        )
    } else {
        format!(
            "{kind} is not supported by this operator build yet; use the namespaced kinds (KollectTarget, KollectInventory, KollectScope)"
        )
    }
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
    fn cluster_kinds_are_refused_with_the_reason() {
        assert!(cluster_kind("KollectClusterTarget", &settings(true)).contains("--tenant-mode"));
        assert!(
            cluster_kind("KollectClusterTarget", &settings(false))
                .contains("not supported by this operator build")
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
