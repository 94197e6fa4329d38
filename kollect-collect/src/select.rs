//! Which objects a target collects: the namespace, resource and watch-label gates of a
//! `KollectTarget` / `KollectClusterTarget`, compiled once and evaluated per object. Pure and
//! synchronous, so the watch runtime, the one-shot CLI and file-based collection apply exactly the
//! same rules (decision O3).
//!
//! Precedence: the operator's boundary (`--watch-namespaces`) → scope deny → target include (∩ selector) → target exclude →
//! scope allow → resourceRules OR (label selectors, then `matchPolicy`) or the legacy profile
//! GVK + `names` + `labelSelector` → watch labels (resource `kollect.dev/watch: disabled` >
//! resource `enabled` > namespace label/annotation `disabled` > `OptIn` requires `enabled` >
//! `All`).
//!
//! Cluster-scoped objects have the namespace `""` (decision A8): namespace gates, which select
//! namespaces, do not apply to them; the resource gates and the resource's own watch label do.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kollect_core::api::keys;
use kollect_core::api::v1alpha1::{
    CollectionFilter, GroupVersionKind, KollectClusterTargetSpec, KollectTargetSpec, ScopeCeilingSpec,
    WatchMode,
};
use kube::core::{Selector, SelectorExt};
use serde_json::Value;

use crate::extract::cel::CelLimits;
use crate::extract::validate::MatchPolicy;

/// Labels and annotations of one namespace, as the gates see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl NamespaceMeta {
    /// Reads labels and annotations from a Namespace object's JSON.
    pub fn from_object(object: &Value) -> Self {
        Self {
            labels: string_map(object.pointer("/metadata/labels")),
            annotations: string_map(object.pointer("/metadata/annotations")),
        }
    }

    /// Whether the namespace opted out of collection (`kollect.dev/watch=disabled` label or
    /// `kollect.dev/namespace-watch=disabled` annotation).
    fn watch_disabled(&self) -> bool {
        self.labels.get(keys::WATCH_LABEL).map(String::as_str) == Some("disabled")
            || self
                .annotations
                .get(keys::NAMESPACE_WATCH_ANNOTATION)
                .map(String::as_str)
                == Some("disabled")
    }

    /// Whether the namespace opted in (label or annotation `enabled`).
    fn watch_enabled(&self) -> bool {
        self.labels.get(keys::WATCH_LABEL).map(String::as_str) == Some("enabled")
            || self
                .annotations
                .get(keys::NAMESPACE_WATCH_ANNOTATION)
                .map(String::as_str)
                == Some("enabled")
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Operator-wide namespace defaults (`--default-included-namespaces`,
/// `--default-excluded-namespaces`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceDefaults {
    /// Used when a target lists no `includedNamespaces`; empty means all namespaces.
    pub included: Vec<String>,
    /// Always excluded, in addition to a target's `excludedNamespaces`.
    pub excluded: Vec<String>,
    /// The namespaces the operator is confined to (`--watch-namespaces`); nothing outside them
    /// is ever collected. Empty: no boundary.
    pub boundary: Vec<String>,
}

/// Why a target's filters could not be compiled. Each names the field and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A label selector has an unknown operator or malformed requirement.
    #[error("{field}: invalid label selector: {message}")]
    Selector {
        /// The field path, e.g. `spec.resourceRules[0].namespaceSelector`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `matchPolicy` does not compile.
    #[error("{field}: matchPolicy does not compile: {message}")]
    MatchPolicy {
        /// The field path.
        field: String,
        /// The compiler's message.
        message: String,
    },
}

fn selector(field: String, selector: &LabelSelector) -> Result<Selector, FilterError> {
    Selector::try_from(selector.clone()).map_err(|e| FilterError::Selector {
        field,
        message: e.to_string(),
    })
}

/// One compiled `resourceRules[]` entry.
#[derive(Debug, Clone)]
struct CompiledRule {
    gvk: GroupVersionKind,
    namespace_selector: Option<Selector>,
    labels: Selector,
    /// Shared: a compiled CEL program is not cloneable.
    policy: Option<std::sync::Arc<MatchPolicy>>,
}

/// Why an object is not collected (for metrics and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The object's namespace is outside the target's effective namespaces.
    Namespace,
    /// No resource rule (or the legacy filter) matched.
    Resource,
    /// A watch label or annotation opted it out (or `OptIn` was not satisfied).
    WatchLabel,
}

/// The compiled filters of one target (cheap to clone).
#[derive(Debug, Clone)]
pub struct TargetFilter {
    boundary: Option<BTreeSet<String>>,
    included: Option<BTreeSet<String>>,
    namespace_selector: Option<Selector>,
    excluded: BTreeSet<String>,
    exclude_selector: Option<Selector>,
    scope_allowed: Option<BTreeSet<String>>,
    scope_denied: BTreeSet<String>,
    rules: Vec<CompiledRule>,
    legacy_names: BTreeSet<String>,
    legacy_labels: Option<Selector>,
    watch_mode: WatchMode,
}

/// The parts of a target spec the filter needs; namespaced and cluster targets map onto it.
#[derive(Debug, Clone, Copy)]
pub struct FilterSpec<'a> {
    /// `namespaceSelector` (required on cluster targets).
    pub namespace_selector: Option<&'a LabelSelector>,
    /// Include/exclude lists, exclude selector and resource rules.
    pub filter: &'a CollectionFilter,
    /// Legacy `labelSelector` (namespaced targets only).
    pub label_selector: Option<&'a LabelSelector>,
    /// Legacy `names` (namespaced targets only).
    pub names: &'a [String],
    /// `watchMode`; cluster targets have none and behave as `All`.
    pub watch_mode: WatchMode,
}

impl<'a> From<&'a KollectTargetSpec> for FilterSpec<'a> {
    fn from(spec: &'a KollectTargetSpec) -> Self {
        Self {
            namespace_selector: spec.namespace_selector.as_ref(),
            filter: &spec.filter,
            label_selector: spec.label_selector.as_ref(),
            names: &spec.names,
            watch_mode: spec.watch_mode,
        }
    }
}

impl<'a> From<&'a KollectClusterTargetSpec> for FilterSpec<'a> {
    fn from(spec: &'a KollectClusterTargetSpec) -> Self {
        Self {
            namespace_selector: Some(&spec.namespace_selector),
            filter: &spec.filter,
            label_selector: None,
            names: &[],
            watch_mode: WatchMode::All,
        }
    }
}

impl TargetFilter {
    /// Compiles a target's filters with the operator defaults and the scope ceiling (if any).
    pub fn compile(
        spec: FilterSpec<'_>,
        defaults: &NamespaceDefaults,
        ceiling: Option<&ScopeCeilingSpec>,
        limits: &CelLimits,
    ) -> Result<Self, FilterError> {
        let included: BTreeSet<String> = if spec.filter.included_namespaces.is_empty() {
            defaults.included.iter().cloned().collect()
        } else {
            spec.filter.included_namespaces.iter().cloned().collect()
        };
        let namespace_selector = spec
            .namespace_selector
            .map(|s| selector("spec.namespaceSelector".into(), s))
            .transpose()?
            .filter(|s| !s.selects_all());
        let exclude_selector = spec
            .filter
            .namespace_exclude_selector
            .as_ref()
            .map(|s| selector("spec.namespaceExcludeSelector".into(), s))
            .transpose()?
            // An empty exclude selector would exclude everything; treat it as absent.
            .filter(|s| !s.selects_all());
        let mut rules = Vec::with_capacity(spec.filter.resource_rules.len());
        for (i, rule) in spec.filter.resource_rules.iter().enumerate() {
            let field = format!("spec.resourceRules[{i}]");
            let namespace_selector = rule
                .namespace_selector
                .as_ref()
                .map(|s| selector(format!("{field}.namespaceSelector"), s))
                .transpose()?;
            let labels = selector(
                format!("{field}.matchLabels"),
                &LabelSelector {
                    match_labels: Some(rule.match_labels.clone()),
                    match_expressions: Some(rule.match_expressions.clone()),
                },
            )?;
            let policy = rule
                .match_policy
                .as_deref()
                .map(|expression| {
                    MatchPolicy::compile(expression, limits)
                        .map(std::sync::Arc::new)
                        .map_err(|e| FilterError::MatchPolicy {
                            field: format!("{field}.matchPolicy"),
                            message: e.to_string(),
                        })
                })
                .transpose()?;
            rules.push(CompiledRule {
                gvk: rule.gvk.clone(),
                namespace_selector,
                labels,
                policy,
            });
        }
        let legacy_labels = spec
            .label_selector
            .map(|s| selector("spec.labelSelector".into(), s))
            .transpose()?;
        let scope_allowed = ceiling
            .filter(|c| !c.allowed_namespaces.is_empty())
            .map(|c| c.allowed_namespaces.iter().cloned().collect());
        let scope_denied = ceiling
            .map(|c| c.denied_namespaces.iter().cloned().collect())
            .unwrap_or_default();
        Ok(Self {
            boundary: (!defaults.boundary.is_empty()).then(|| defaults.boundary.iter().cloned().collect()),
            included: (!included.is_empty()).then_some(included),
            namespace_selector,
            excluded: spec
                .filter
                .excluded_namespaces
                .iter()
                .chain(&defaults.excluded)
                .cloned()
                .collect(),
            exclude_selector,
            scope_allowed,
            scope_denied,
            rules,
            legacy_names: spec.names.iter().cloned().collect(),
            legacy_labels,
            watch_mode: spec.watch_mode,
        })
    }

    /// Number of `resourceRules` (for `status.activeResourceRules`).
    pub fn active_rules(&self) -> usize {
        self.rules.len()
    }

    /// The fixed set of namespaces this target can ever collect from, when it has one (an
    /// include list, or the scope's allowlist); `None` means "any namespace that matches".
    /// The runtime narrows its watches to these.
    pub fn static_namespaces(&self) -> Option<BTreeSet<String>> {
        let mut base: BTreeSet<String> = match (&self.included, &self.scope_allowed) {
            (Some(included), Some(allowed)) => included.intersection(allowed).cloned().collect(),
            (Some(set), None) | (None, Some(set)) => set.clone(),
            (None, None) => self.boundary.clone()?,
        };
        if let Some(boundary) = &self.boundary {
            base.retain(|ns| boundary.contains(ns));
        }
        Some(
            base.into_iter()
                .filter(|ns| !self.excluded.contains(ns) && !self.scope_denied.contains(ns))
                .collect(),
        )
    }

    /// The namespace gate before the scope ceiling: include list ∩ selector − excluded − exclude
    /// selector (`status.matchedNamespaces`).
    pub fn namespace_matched(&self, namespace: &str, meta: Option<&NamespaceMeta>) -> bool {
        let empty = BTreeMap::new();
        let labels = meta.map(|m| &m.labels).unwrap_or(&empty);
        if let Some(boundary) = &self.boundary
            && !boundary.contains(namespace)
        {
            return false;
        }
        if let Some(included) = &self.included
            && !included.contains(namespace)
        {
            return false;
        }
        if let Some(selector) = &self.namespace_selector
            && (meta.is_none() || !selector.matches(labels))
        {
            return false;
        }
        if self.excluded.contains(namespace) {
            return false;
        }
        if let Some(selector) = &self.exclude_selector
            && selector.matches(labels)
        {
            return false;
        }
        true
    }

    /// Whether the scope ceiling lets the target into `namespace` (not denied, and allowed
    /// when the scope has an allow list).
    pub fn scope_allows(&self, namespace: &str) -> bool {
        !self.scope_denied.contains(namespace)
            && self
                .scope_allowed
                .as_ref()
                .is_none_or(|allowed| allowed.contains(namespace))
    }

    /// The full namespace gate: matched and inside the scope ceiling
    /// (`status.effectiveNamespaces`).
    pub fn namespace_effective(&self, namespace: &str, meta: Option<&NamespaceMeta>) -> bool {
        self.scope_allows(namespace) && self.namespace_matched(namespace, meta)
    }

    /// Whether `object` (of kind `gvk`) is collected. `namespace` is the object's namespace
    /// (`""` when cluster-scoped) and `meta` that namespace's labels, when known.
    pub fn select(
        &self,
        profile_gvk: &GroupVersionKind,
        gvk: &GroupVersionKind,
        object: &Value,
        namespace: &str,
        meta: Option<&NamespaceMeta>,
    ) -> Result<(), Skip> {
        let namespaced = !namespace.is_empty();
        if namespaced && !self.namespace_effective(namespace, meta) {
            return Err(Skip::Namespace);
        }
        let labels = string_map(object.pointer("/metadata/labels"));
        if !self.resource_matches(profile_gvk, gvk, object, &labels, meta) {
            return Err(Skip::Resource);
        }
        if !self.watch_allows(&labels, namespaced.then_some(meta).flatten()) {
            return Err(Skip::WatchLabel);
        }
        Ok(())
    }

    fn resource_matches(
        &self,
        profile_gvk: &GroupVersionKind,
        gvk: &GroupVersionKind,
        object: &Value,
        labels: &BTreeMap<String, String>,
        meta: Option<&NamespaceMeta>,
    ) -> bool {
        if self.rules.is_empty() {
            if !profile_gvk.matches(gvk) {
                return false;
            }
            if !self.legacy_names.is_empty() {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !self.legacy_names.contains(name) {
                    return false;
                }
            }
            return self
                .legacy_labels
                .as_ref()
                .is_none_or(|selector| selector.matches(labels));
        }
        let empty = BTreeMap::new();
        let namespace_labels = meta.map(|m| &m.labels).unwrap_or(&empty);
        self.rules.iter().any(|rule| {
            rule.gvk.matches(gvk)
                && rule
                    .namespace_selector
                    .as_ref()
                    .is_none_or(|s| s.matches(namespace_labels))
                && rule.labels.matches(labels)
                && rule.policy.as_ref().is_none_or(|p| p.matches(object))
        })
    }

    fn watch_allows(&self, labels: &BTreeMap<String, String>, meta: Option<&NamespaceMeta>) -> bool {
        match labels.get(keys::WATCH_LABEL).map(String::as_str) {
            Some("disabled") => return false,
            Some("enabled") => return true,
            _ => {}
        }
        let Some(meta) = meta else {
            // Cluster-scoped objects have no namespace to opt in or out.
            return self.watch_mode == WatchMode::All;
        };
        if meta.watch_disabled() {
            return false;
        }
        match self.watch_mode {
            WatchMode::OptIn => meta.watch_enabled(),
            WatchMode::All => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use kollect_core::api::v1alpha1::ResourceRule;
    use serde_json::json;

    fn gvk() -> GroupVersionKind {
        GroupVersionKind::new("apps", "v1", "Deployment")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ns(pairs: &[(&str, &str)]) -> NamespaceMeta {
        NamespaceMeta {
            labels: labels(pairs),
            annotations: BTreeMap::new(),
        }
    }

    fn object(name: &str, object_labels: &[(&str, &str)]) -> Value {
        json!({"metadata": {"name": name, "namespace": "team-a", "labels": labels(object_labels)}})
    }

    fn compile(spec: &KollectTargetSpec) -> TargetFilter {
        TargetFilter::compile(
            spec.into(),
            &NamespaceDefaults::default(),
            None,
            &CelLimits::default(),
        )
        .unwrap()
    }

    fn selects(
        filter: &TargetFilter,
        object: &Value,
        namespace: &str,
        meta: &NamespaceMeta,
    ) -> Result<(), Skip> {
        filter.select(&gvk(), &gvk(), object, namespace, Some(meta))
    }

    #[test]
    fn effective_namespaces_apply_include_selector_excludes_and_scope() {
        let spec = KollectTargetSpec {
            profile_ref: "p".into(),
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("team", "a")])),
                match_expressions: None,
            }),
            filter: CollectionFilter {
                included_namespaces: vec!["team-a".into(), "team-a-dev".into(), "other".into()],
                excluded_namespaces: vec!["team-a-dev".into()],
                namespace_exclude_selector: Some(LabelSelector {
                    match_labels: Some(labels(&[("frozen", "true")])),
                    match_expressions: None,
                }),
                resource_rules: vec![],
            },
            ..Default::default()
        };
        let ceiling = ScopeCeilingSpec {
            denied_namespaces: vec!["other".into()],
            ..Default::default()
        };
        let filter = TargetFilter::compile(
            (&spec).into(),
            &NamespaceDefaults::default(),
            Some(&ceiling),
            &CelLimits::default(),
        )
        .unwrap();
        let team = ns(&[("team", "a")]);
        assert!(filter.namespace_effective("team-a", Some(&team)));
        assert!(!filter.namespace_effective("team-a-dev", Some(&team)), "excluded");
        assert!(filter.namespace_matched("other", Some(&team)));
        assert!(!filter.namespace_effective("other", Some(&team)), "scope deny");
        assert!(!filter.scope_allows("other") && filter.scope_allows("elsewhere"));
        assert!(!filter.namespace_effective("team-a", Some(&ns(&[]))), "selector");
        assert!(!filter.namespace_effective("team-a", None), "unknown namespace");
        assert!(
            !filter.namespace_effective("team-a", Some(&ns(&[("team", "a"), ("frozen", "true")]))),
            "exclude selector"
        );
        assert!(
            !filter.namespace_effective("elsewhere", Some(&team)),
            "not included"
        );
        assert_eq!(
            filter.static_namespaces(),
            Some(BTreeSet::from(["team-a".to_owned()]))
        );
    }

    #[test]
    fn operator_defaults_fill_an_empty_include_list_and_always_exclude() {
        let spec = KollectTargetSpec::default();
        let defaults = NamespaceDefaults {
            included: vec!["apps".into(), "kube-system".into()],
            excluded: vec!["kube-system".into()],
            boundary: Vec::new(),
        };
        let filter = TargetFilter::compile((&spec).into(), &defaults, None, &CelLimits::default()).unwrap();
        assert!(filter.namespace_effective("apps", Some(&ns(&[]))));
        assert!(!filter.namespace_effective("kube-system", Some(&ns(&[]))));
        assert!(!filter.namespace_effective("default", Some(&ns(&[]))));
        let open = compile(&spec);
        assert!(open.namespace_effective("anything", Some(&ns(&[]))));
        assert_eq!(open.static_namespaces(), None);
    }

    #[test]
    fn the_boundary_confines_every_target_and_fixes_its_watched_namespaces() {
        let defaults = NamespaceDefaults {
            boundary: vec!["team-a".into(), "team-b".into()],
            ..NamespaceDefaults::default()
        };
        let open = KollectTargetSpec::default();
        let filter = TargetFilter::compile((&open).into(), &defaults, None, &CelLimits::default()).unwrap();
        assert!(filter.namespace_effective("team-a", Some(&ns(&[]))));
        assert!(
            !filter.namespace_effective("team-c", Some(&ns(&[]))),
            "outside the boundary"
        );
        assert_eq!(
            filter.static_namespaces(),
            Some(BTreeSet::from(["team-a".to_owned(), "team-b".to_owned()]))
        );
        let wider = KollectTargetSpec {
            filter: CollectionFilter {
                included_namespaces: vec!["team-b".into(), "elsewhere".into()],
                ..CollectionFilter::default()
            },
            ..KollectTargetSpec::default()
        };
        let filter = TargetFilter::compile((&wider).into(), &defaults, None, &CelLimits::default()).unwrap();
        assert!(!filter.namespace_matched("elsewhere", Some(&ns(&[]))));
        assert_eq!(
            filter.static_namespaces(),
            Some(BTreeSet::from(["team-b".to_owned()]))
        );
    }

    #[test]
    fn resource_rules_are_or_ed_with_label_selectors_and_match_policy() {
        let spec = KollectTargetSpec {
            filter: CollectionFilter {
                resource_rules: vec![
                    ResourceRule {
                        gvk: gvk(),
                        match_labels: labels(&[("tier", "web")]),
                        ..Default::default()
                    },
                    ResourceRule {
                        gvk: gvk(),
                        match_expressions: vec![LabelSelectorRequirement {
                            key: "tier".into(),
                            operator: "In".into(),
                            values: Some(vec!["db".into()]),
                        }],
                        match_policy: Some("object.metadata.name.startsWith('pg-')".into()),
                        ..Default::default()
                    },
                    ResourceRule {
                        gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            ..Default::default()
        };
        let filter = compile(&spec);
        let meta = ns(&[]);
        assert_eq!(filter.active_rules(), 3);
        assert_eq!(
            selects(&filter, &object("web", &[("tier", "web")]), "team-a", &meta),
            Ok(())
        );
        assert_eq!(
            selects(&filter, &object("pg-main", &[("tier", "db")]), "team-a", &meta),
            Ok(())
        );
        assert_eq!(
            selects(&filter, &object("mysql", &[("tier", "db")]), "team-a", &meta),
            Err(Skip::Resource),
            "matchPolicy false"
        );
        assert_eq!(
            selects(&filter, &object("cache", &[("tier", "cache")]), "team-a", &meta),
            Err(Skip::Resource)
        );
    }

    #[test]
    fn legacy_filter_uses_profile_gvk_names_and_label_selector() {
        let spec = KollectTargetSpec {
            names: vec!["web".into(), "api".into()],
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", "shop")])),
                match_expressions: None,
            }),
            ..Default::default()
        };
        let filter = compile(&spec);
        let meta = ns(&[]);
        assert_eq!(
            selects(&filter, &object("web", &[("app", "shop")]), "team-a", &meta),
            Ok(())
        );
        assert_eq!(
            selects(&filter, &object("worker", &[("app", "shop")]), "team-a", &meta),
            Err(Skip::Resource)
        );
        assert_eq!(
            selects(&filter, &object("api", &[]), "team-a", &meta),
            Err(Skip::Resource)
        );
        let other = GroupVersionKind::new("apps", "v1", "StatefulSet");
        assert_eq!(
            filter.select(
                &gvk(),
                &other,
                &object("web", &[("app", "shop")]),
                "team-a",
                Some(&meta)
            ),
            Err(Skip::Resource)
        );
    }

    #[test]
    fn watch_labels_follow_their_precedence() {
        let all = compile(&KollectTargetSpec::default());
        let opt_in = compile(&KollectTargetSpec {
            watch_mode: WatchMode::OptIn,
            ..Default::default()
        });
        let plain = ns(&[]);
        let disabled_ns = ns(&[(keys::WATCH_LABEL, "disabled")]);
        let enabled_ns = NamespaceMeta {
            labels: BTreeMap::new(),
            annotations: labels(&[(keys::NAMESPACE_WATCH_ANNOTATION, "enabled")]),
        };
        let enabled_obj = object("x", &[(keys::WATCH_LABEL, "enabled")]);
        let disabled_obj = object("x", &[(keys::WATCH_LABEL, "disabled")]);
        let obj = object("x", &[]);
        // Resource disabled beats everything; resource enabled beats a disabled namespace.
        assert_eq!(
            selects(&all, &disabled_obj, "team-a", &enabled_ns),
            Err(Skip::WatchLabel)
        );
        assert_eq!(selects(&all, &enabled_obj, "team-a", &disabled_ns), Ok(()));
        assert_eq!(selects(&all, &obj, "team-a", &disabled_ns), Err(Skip::WatchLabel));
        assert_eq!(selects(&all, &obj, "team-a", &plain), Ok(()));
        // OptIn needs the namespace (or the resource) to opt in.
        assert_eq!(selects(&opt_in, &obj, "team-a", &plain), Err(Skip::WatchLabel));
        assert_eq!(selects(&opt_in, &obj, "team-a", &enabled_ns), Ok(()));
        assert_eq!(selects(&opt_in, &enabled_obj, "team-a", &plain), Ok(()));
    }

    #[test]
    fn cluster_scoped_objects_skip_namespace_gates() {
        let spec = KollectTargetSpec {
            filter: CollectionFilter {
                included_namespaces: vec!["team-a".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let filter = compile(&spec);
        let node = json!({"metadata": {"name": "node-1"}});
        assert_eq!(filter.select(&gvk(), &gvk(), &node, "", None), Ok(()));
        assert_eq!(
            filter.select(&gvk(), &gvk(), &object("x", &[]), "team-b", Some(&ns(&[]))),
            Err(Skip::Namespace)
        );
    }

    #[test]
    fn invalid_selectors_and_policies_name_their_field() {
        let spec = KollectTargetSpec {
            filter: CollectionFilter {
                resource_rules: vec![ResourceRule {
                    gvk: gvk(),
                    match_policy: Some("object.metadata.name ==".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let error = TargetFilter::compile(
            (&spec).into(),
            &NamespaceDefaults::default(),
            None,
            &CelLimits::default(),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("spec.resourceRules[0].matchPolicy"),
            "{error}"
        );
        let spec = KollectTargetSpec {
            label_selector: Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "Near".into(),
                    values: None,
                }]),
            }),
            ..Default::default()
        };
        let error = TargetFilter::compile(
            (&spec).into(),
            &NamespaceDefaults::default(),
            None,
            &CelLimits::default(),
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("spec.labelSelector"), "{error}");
    }
}
