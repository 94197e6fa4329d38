//! Profile validation shared by the admission webhook and `kollect validate`, and the
//! `resourceRules[].matchPolicy` predicate.
//!
//! Errors carry a field path (`spec.attributes[2].path`) and a message in the form Kubernetes
//! uses (`Required value`, `Duplicate value: "x"`, `Invalid value: "…": why`, `Forbidden: why`),
//! so the webhook and the CLI print the same thing.

use std::collections::HashSet;
use std::fmt;

use kollect_core::api::keys::{ALLOW_FULL_RESOURCE_EXPORT_ANNOTATION, ALLOW_SECRET_EXTRACTION_ANNOTATION};
use kollect_core::api::v1alpha1::{ExportMode, KollectProfile};
use serde_json::Value;

use super::cel::{self, CelError, CelInput, CelLimits, CelProgram};
use super::jsonpath::JsonPath;
use super::{AttributePath, ExtractOptions};

/// Most labels a profile metric may have.
pub const MAX_METRIC_LABELS: usize = 5;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.attributes[2].path`.
    pub field: String,
    /// What is wrong, e.g. `Required value`.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The outcome of validating one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    /// Reasons to refuse the object.
    pub errors: Vec<FieldError>,
    /// Things worth telling the user that do not block the object.
    pub warnings: Vec<String>,
}

impl Validation {
    /// True when there are no errors.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The admission message for `kind`/`name`: `<Kind> "<name>" is invalid: <err>; <err>`.
    pub fn message(&self, kind: &str, name: &str) -> Option<String> {
        if self.errors.is_empty() {
            return None;
        }
        let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        Some(format!("{kind} {name:?} is invalid: {}", errors.join("; ")))
    }

    /// Adds an error on `field` (`spec.attributes[2].path`).
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Requires `name` to be non-blank and not yet in `seen`.
    fn unique_name<'a>(&mut self, field: &str, name: &'a str, seen: &mut HashSet<&'a str>) {
        if name.trim().is_empty() {
            self.error(field, "Required value");
        } else if !seen.insert(name) {
            self.error(field, format!("Duplicate value: {name:?}"));
        }
    }

    /// Adds a warning on `field`.
    pub fn warn(&mut self, field: &str, message: &str) {
        self.warnings.push(format!("{field}: {message}"));
    }
}

fn invalid(value: &str, why: impl fmt::Display) -> String {
    format!("Invalid value: {value:?}: {why}")
}

/// Checks one attribute path as admission does: it must parse (CEL compiles, JSONPath parses,
/// Helm fields pass the policy), and a bare `object.` / `object[` expression needs `cel:`.
pub fn check_attribute_path(path: &str, limits: &CelLimits) -> Result<AttributePath, String> {
    let trimmed = path.trim();
    if trimmed.starts_with("object.") || trimmed.starts_with("object[") {
        return Err("CEL expressions must use \"cel:\" prefix".to_owned());
    }
    AttributePath::parse(path, limits).map_err(|e| e.to_string())
}

fn annotation_is_true(profile: &KollectProfile, key: &str) -> bool {
    profile
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Validates a profile.
pub fn validate_profile(profile: &KollectProfile, options: &ExtractOptions) -> Validation {
    let mut v = Validation::default();
    let spec = &profile.spec;
    if spec.target_gvk.version.trim().is_empty() {
        v.error("spec.targetGVK.version", "Required value");
    }
    if spec.target_gvk.kind.trim().is_empty() {
        v.error("spec.targetGVK.kind", "Required value");
    }
    let is_secret = (spec.target_gvk.group.is_empty() || spec.target_gvk.group.eq_ignore_ascii_case("core"))
        && spec.target_gvk.kind == "Secret";
    let secret_data_allowed = annotation_is_true(profile, ALLOW_SECRET_EXTRACTION_ANNOTATION);

    let mut names = HashSet::new();
    for (i, attribute) in spec.attributes.iter().enumerate() {
        let field = format!("spec.attributes[{i}]");
        v.unique_name(&format!("{field}.name"), &attribute.name, &mut names);
        if attribute.path.trim().is_empty() {
            v.error(format!("{field}.path"), "Required value");
            continue;
        }
        match check_attribute_path(&attribute.path, &options.cel) {
            Err(why) => v.error(format!("{field}.path"), invalid(&attribute.path, why)),
            Ok(parsed) => {
                let reads_data = match &parsed {
                    AttributePath::JsonPath(path) => {
                        if path.has_filter() {
                            v.warn(&format!("{field}.path"), "JSONPath filter expressions are evaluated per object and cost more than plain paths; consider a cel: expression");
                        }
                        path.reads_field("data") || path.reads_field("stringData")
                    }
                    AttributePath::Cel(_) => {
                        let source = attribute.path.trim().trim_start_matches("cel:");
                        cel::reads_field(source, "data") || cel::reads_field(source, "stringData")
                    }
                    AttributePath::Helm(field) => field.reads_config(),
                };
                if is_secret && reads_data && !secret_data_allowed {
                    v.error(
                        format!("{field}.path"),
                        format!("Forbidden: reading Secret data requires the annotation {ALLOW_SECRET_EXTRACTION_ANNOTATION}: \"true\""),
                    );
                }
            }
        }
    }

    let attribute_names: HashSet<&str> = spec.attributes.iter().map(|a| a.name.as_str()).collect();
    let mut metric_names = HashSet::new();
    for (i, metric) in spec.metrics.iter().enumerate() {
        let field = format!("spec.metrics[{i}]");
        v.unique_name(&format!("{field}.name"), &metric.name, &mut metric_names);
        if metric.path.trim().is_empty() {
            v.error(format!("{field}.path"), "Required value");
        } else if !attribute_names.contains(metric.path.as_str()) {
            v.error(
                format!("{field}.path"),
                invalid(&metric.path, "must name an attribute of this profile"),
            );
        }
        if metric.labels.len() > MAX_METRIC_LABELS {
            v.error(
                format!("{field}.labels"),
                format!(
                    "Too many: {}: must have at most {MAX_METRIC_LABELS} items",
                    metric.labels.len()
                ),
            );
        }
        for (j, label) in metric.labels.iter().enumerate() {
            if !attribute_names.contains(label.as_str()) {
                v.error(
                    format!("{field}.labels[{j}]"),
                    invalid(label, "must name an attribute of this profile"),
                );
            }
        }
    }

    if let Some(export) = &spec.export {
        match export.mode {
            ExportMode::Attributes if spec.attributes.is_empty() => {
                v.error(
                    "spec.attributes",
                    "Required value: at least one attribute is required when export.mode is Attributes",
                );
            }
            ExportMode::Resource => {
                if attribute_names.contains(export.as_.as_str()) {
                    v.error(
                        "spec.export.as",
                        invalid(&export.as_, "must not equal an attribute name in Resource mode"),
                    );
                }
                if is_secret && !annotation_is_true(profile, ALLOW_FULL_RESOURCE_EXPORT_ANNOTATION) {
                    v.error(
                        "spec.export.mode",
                        format!("Forbidden: Resource mode on Secrets requires the annotation {ALLOW_FULL_RESOURCE_EXPORT_ANNOTATION}: \"true\""),
                    );
                }
            }
            ExportMode::Attributes => {}
        }
        if let Some(prune) = &export.prune {
            for (i, pointer) in prune.json_pointers.iter().enumerate() {
                if let Err(why) = check_json_pointer(pointer) {
                    v.error(
                        format!("spec.export.prune.jsonPointers[{i}]"),
                        invalid(pointer, why),
                    );
                }
            }
            for (i, path) in prune.json_paths.iter().enumerate() {
                if let Err(e) = JsonPath::parse(path) {
                    v.error(format!("spec.export.prune.jsonPaths[{i}]"), invalid(path, e));
                }
            }
            if !prune.cel.is_empty() {
                v.warn("spec.export.prune.cel", "is reserved and not applied");
            }
        }
    }
    v
}

/// RFC 6901: empty, or `/`-separated tokens where `~` is only followed by `0` or `1`.
pub(crate) fn check_json_pointer(pointer: &str) -> Result<(), &'static str> {
    if pointer.is_empty() {
        return Err("must not be empty");
    }
    if !pointer.starts_with('/') {
        return Err("must start with '/'");
    }
    let bytes = pointer.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0') | Some(b'1')) {
            return Err("'~' must be followed by '0' or '1'");
        }
    }
    Ok(())
}

/// A compiled `resourceRules[].matchPolicy`.
#[derive(Debug)]
pub struct MatchPolicy {
    program: CelProgram,
    limits: CelLimits,
}

impl MatchPolicy {
    /// Compiles a policy; an empty expression is a compile error.
    pub fn compile(expression: &str, limits: &CelLimits) -> Result<Self, CelError> {
        if expression.trim().is_empty() {
            return Err(CelError::Compile("matchPolicy must not be empty".to_owned()));
        }
        Ok(Self {
            program: CelProgram::compile(expression, limits)?,
            limits: *limits,
        })
    }

    /// True when the policy evaluates to `true` (or a string reading as true); any other
    /// result, null or an evaluation error is no match.
    pub fn matches(&self, object: &Value) -> bool {
        self.program
            .evaluate_predicate(&CelInput::new(object, self.program.need()), &self.limits)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use kollect_core::api::v1alpha1::{
        AttributeSpec, ExportSpec, GroupVersionKind, KollectProfileSpec, MetricSpec, PruneSpec,
    };
    use serde_json::json;

    fn profile(spec: KollectProfileSpec) -> KollectProfile {
        KollectProfile::new("p", spec)
    }

    fn deployments(attributes: Vec<AttributeSpec>) -> KollectProfileSpec {
        KollectProfileSpec {
            target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
            attributes,
            ..Default::default()
        }
    }

    fn errors(spec: KollectProfileSpec) -> Vec<String> {
        validate_profile(&profile(spec), &ExtractOptions::default())
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn valid_profile_has_no_errors() {
        let spec = deployments(vec![
            AttributeSpec::new("image", "$.spec.template.spec.containers[0].image"),
            AttributeSpec::new("containers", "cel:size(object.spec.template.spec.containers)"),
            AttributeSpec::new("chart", "helm:release.chartName"),
        ]);
        assert_eq!(errors(spec), Vec::<String>::new());
    }

    /// Programs cel-go's checker refuses are refused when the profile is validated, not at
    /// every evaluation.
    #[test]
    fn statically_wrong_cel_is_refused() {
        let spec = deployments(vec![
            AttributeSpec::new("a", "cel:frobnicate(object)"),
            AttributeSpec::new("b", "cel:'a' * 3"),
            AttributeSpec::new("c", "cel:-1 * 5u"),
            AttributeSpec::new("d", "cel:quantity('1')"),
        ]);
        assert_eq!(
            errors(spec),
            [
                "spec.attributes[0].path: Invalid value: \"cel:frobnicate(object)\": compile CEL: undeclared reference to 'frobnicate' (in container '')",
                "spec.attributes[1].path: Invalid value: \"cel:'a' * 3\": compile CEL: found no matching overload for '_*_' applied to '(string, int)'",
                "spec.attributes[2].path: Invalid value: \"cel:-1 * 5u\": compile CEL: found no matching overload for '_*_' applied to '(int, uint)'",
                "spec.attributes[3].path: Invalid value: \"cel:quantity('1')\": compile CEL: undeclared reference to 'quantity' (in container '')",
            ]
        );
    }

    #[test]
    fn gvk_names_and_paths() {
        let spec = KollectProfileSpec {
            target_gvk: GroupVersionKind::new("apps", "", ""),
            attributes: vec![
                AttributeSpec::new("a", "$.x"),
                AttributeSpec::new("a", "$.y"),
                AttributeSpec::new("", "$.z"),
                AttributeSpec::new("b", ""),
                AttributeSpec::new("c", "object.spec.replicas"),
                AttributeSpec::new("d", "cel:object.("),
                AttributeSpec::new("e", "{.spec"),
                AttributeSpec::new("f", "helm:release.manifest"),
            ],
            ..Default::default()
        };
        let e = errors(spec);
        assert_eq!(e[0], "spec.targetGVK.version: Required value");
        assert_eq!(e[1], "spec.targetGVK.kind: Required value");
        assert_eq!(e[2], "spec.attributes[1].name: Duplicate value: \"a\"");
        assert_eq!(e[3], "spec.attributes[2].name: Required value");
        assert_eq!(e[4], "spec.attributes[3].path: Required value");
        assert_eq!(
            e[5],
            "spec.attributes[4].path: Invalid value: \"object.spec.replicas\": CEL expressions must use \"cel:\" prefix"
        );
        assert!(
            e[6].starts_with("spec.attributes[5].path: Invalid value: \"cel:object.(\": compile CEL: "),
            "{}",
            e[6]
        );
        assert!(
            e[7].starts_with("spec.attributes[6].path: Invalid value: \"{.spec\": parse JSONPath: "),
            "{}",
            e[7]
        );
        assert_eq!(
            e[8],
            "spec.attributes[7].path: Invalid value: \"helm:release.manifest\": helm release field \"manifest\" is not exportable"
        );
        assert_eq!(e.len(), 9);
    }

    #[test]
    fn secret_data_needs_the_annotation() {
        let secret_spec = |path: &str| KollectProfileSpec {
            target_gvk: GroupVersionKind::new("", "v1", "Secret"),
            attributes: vec![AttributeSpec::new("x", path)],
            ..Default::default()
        };
        for path in [
            "$.data.password",
            "{.stringData.x}",
            "cel:object.data.token",
            "helm:release.config.db",
        ] {
            let e = errors(secret_spec(path));
            assert_eq!(e.len(), 1, "{path}: {e:?}");
            assert!(
                e[0].contains("requires the annotation kollect.dev/allow-secret-extraction"),
                "{}",
                e[0]
            );
        }
        assert!(errors(secret_spec("$.metadata.name")).is_empty());
        let mut allowed = profile(secret_spec("$.data.password"));
        allowed.metadata.annotations = Some(BTreeMap::from([(
            ALLOW_SECRET_EXTRACTION_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
        assert!(validate_profile(&allowed, &ExtractOptions::default()).is_valid());
    }

    #[test]
    fn metrics_and_export_rules() {
        let mut spec = deployments(vec![
            AttributeSpec::new("replicas", "$.spec.replicas"),
            AttributeSpec::new("team", "$.metadata.labels.team"),
        ]);
        spec.metrics = vec![
            MetricSpec {
                name: "replicas".into(),
                path: "replicas".into(),
                labels: vec!["team".into()],
            },
            MetricSpec {
                name: "replicas".into(),
                path: "$.spec.replicas".into(),
                labels: vec!["nope".into()],
            },
            MetricSpec {
                name: "many".into(),
                path: "replicas".into(),
                labels: vec!["team".into(); 6],
            },
        ];
        spec.export = Some(ExportSpec {
            mode: ExportMode::Resource,
            as_: "team".into(),
            prune: Some(PruneSpec {
                json_pointers: vec!["metadata".into(), "/a~2b".into(), "/ok~1x".into()],
                json_paths: vec!["$.a[".into()],
                cel: vec!["x".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        let validation = validate_profile(&profile(spec), &ExtractOptions::default());
        let e: Vec<String> = validation.errors.iter().map(ToString::to_string).collect();
        assert!(
            e.contains(&"spec.metrics[1].name: Duplicate value: \"replicas\"".to_owned()),
            "{e:?}"
        );
        assert!(e.contains(&"spec.metrics[1].path: Invalid value: \"$.spec.replicas\": must name an attribute of this profile".to_owned()), "{e:?}");
        assert!(
            e.contains(
                &"spec.metrics[1].labels[0]: Invalid value: \"nope\": must name an attribute of this profile"
                    .to_owned()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&"spec.metrics[2].labels: Too many: 6: must have at most 5 items".to_owned()),
            "{e:?}"
        );
        assert!(
            e.contains(
                &"spec.export.as: Invalid value: \"team\": must not equal an attribute name in Resource mode"
                    .to_owned()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(
                &"spec.export.prune.jsonPointers[0]: Invalid value: \"metadata\": must start with '/'"
                    .to_owned()
            ),
            "{e:?}"
        );
        assert!(e.contains(&"spec.export.prune.jsonPointers[1]: Invalid value: \"/a~2b\": '~' must be followed by '0' or '1'".to_owned()), "{e:?}");
        assert!(
            e.iter()
                .any(|x| x.starts_with("spec.export.prune.jsonPaths[0]: Invalid value: \"$.a[\"")),
            "{e:?}"
        );
        assert_eq!(e.len(), 8, "{e:?}");
        assert_eq!(
            validation.warnings,
            vec!["spec.export.prune.cel: is reserved and not applied".to_owned()]
        );
        assert!(
            validation
                .message("KollectProfile", "p")
                .unwrap()
                .starts_with("KollectProfile \"p\" is invalid: spec.metrics[1].name")
        );
    }

    #[test]
    fn attributes_mode_needs_attributes_and_resource_mode_on_secrets_needs_annotation() {
        let mut spec = deployments(vec![]);
        spec.export = Some(ExportSpec::default());
        assert_eq!(
            errors(spec),
            vec![
                "spec.attributes: Required value: at least one attribute is required when export.mode is Attributes"
            ]
        );
        let secret = KollectProfileSpec {
            target_gvk: GroupVersionKind::new("core", "v1", "Secret"),
            export: Some(ExportSpec {
                mode: ExportMode::Resource,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            errors(secret),
            vec![
                "spec.export.mode: Forbidden: Resource mode on Secrets requires the annotation kollect.dev/allow-full-resource-export: \"true\""
            ]
        );
        // No export block and no attributes is admitted.
        assert!(errors(deployments(vec![])).is_empty());
    }

    #[test]
    fn filter_paths_warn() {
        let spec = deployments(vec![AttributeSpec::new(
            "x",
            "$.spec.containers[?(@.name=='a')].image",
        )]);
        let validation = validate_profile(&profile(spec), &ExtractOptions::default());
        assert!(validation.is_valid());
        assert_eq!(validation.warnings.len(), 1);
        assert!(validation.warnings[0].starts_with("spec.attributes[0].path: JSONPath filter expressions"));
    }

    #[test]
    fn match_policies() {
        let limits = CelLimits::default();
        assert!(MatchPolicy::compile("  ", &limits).is_err());
        assert!(MatchPolicy::compile("object.(", &limits).is_err());
        let policy = MatchPolicy::compile("object.metadata.labels.tier == 'front'", &limits).unwrap();
        assert!(policy.matches(&json!({"metadata": {"labels": {"tier": "front"}}})));
        assert!(!policy.matches(&json!({"metadata": {"labels": {"tier": "back"}}})));
        assert!(
            !policy.matches(&json!({"metadata": {}})),
            "an evaluation error is no match"
        );
        assert!(
            MatchPolicy::compile("'true'", &limits)
                .unwrap()
                .matches(&json!({}))
        );
        assert!(
            !MatchPolicy::compile("object.metadata", &limits)
                .unwrap()
                .matches(&json!({"metadata": {}}))
        );
    }
}
