//! The extraction engine: one Kubernetes object (as JSON) plus a compiled `KollectProfile` in,
//! the row's attributes out. Pure functions, no I/O.
//!
//! ```
//! use kollect_collect::extract::{CompiledProfile, ExtractOptions};
//! use kollect_core::api::v1alpha1::{AttributeSpec, GroupVersionKind, KollectProfileSpec};
//! use serde_json::json;
//!
//! let spec = KollectProfileSpec {
//!     target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
//!     attributes: vec![
//!         AttributeSpec::new("image", "$.spec.template.spec.containers[*].image"),
//!         AttributeSpec::new("containers", "cel:size(object.spec.template.spec.containers)"),
//!     ],
//!     ..Default::default()
//! };
//! let profile = CompiledProfile::compile(&spec, &ExtractOptions::default());
//! let deployment = json!({"spec": {"template": {"spec": {"containers": [{"image": "shop:1.2"}]}}}});
//! let attributes = profile.extract(&deployment).unwrap();
//! assert_eq!(attributes["image"], "shop:1.2");
//! assert_eq!(attributes["containers"], 1);
//! ```
//!
//! Path forms (dispatched on the trimmed path): `cel:<expression>` is CEL ([`cel`]),
//! `helm:release.<field>` reads a Helm release Secret ([`helm`]), anything else is JSONPath in
//! the kubectl dialect ([`jsonpath`]). Every error is reported as `attribute "<name>": <error>`.
//!
//! | evaluation result | required attribute (default) | `optional: true` |
//! |---|---|---|
//! | a value | set | set |
//! | nothing / null | set to `null` | omitted |
//! | an error | the whole object fails | omitted |

pub mod cel;
mod cel_check;
#[cfg(test)]
mod cel_conformance;
mod cel_string;
pub mod helm;
pub mod jsonpath;
pub mod metrics;
pub mod resource;
pub mod scrub;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use kollect_core::api::v1alpha1::{ExportMode, KollectProfile, KollectProfileSpec};
use kollect_core::model::{Attributes, canonical};
use serde_json::Value;

use self::cel::{CelError, CelInput, CelLimits, CelProgram, FieldNeed};
use self::helm::{HelmError, HelmField};
use self::jsonpath::JsonPath;
use self::resource::ResourceExport;
use self::scrub::Scrubber;

/// Operator-wide extraction settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Extra keys to redact (`--scrub-keys`), added to the built-in denylist.
    pub scrub_keys: Vec<String>,
    /// Bounds on CEL evaluation.
    pub cel: CelLimits,
    /// Largest decompressed Helm release accepted.
    pub helm_max_decompressed: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            scrub_keys: Vec::new(),
            cel: CelLimits::default(),
            helm_max_decompressed: helm::DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

/// Why one attribute could not be evaluated (the text after `attribute "<name>": `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// A CEL failure (`empty CEL expression`, `compile CEL: …`, `eval CEL: …`).
    #[error(transparent)]
    Cel(#[from] CelError),
    /// The JSONPath does not parse.
    #[error("parse JSONPath: {0}")]
    ParseJsonPath(String),
    /// The JSONPath cannot be evaluated on this object.
    #[error("eval JSONPath: {0}")]
    EvalJsonPath(String),
    /// A Helm path or decoding failure.
    #[error(transparent)]
    Helm(#[from] HelmError),
}

/// An object whose required attribute failed; extraction of the object fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute {attribute:?}: {error}")]
pub struct ExtractError {
    /// Attribute name.
    pub attribute: String,
    /// What went wrong.
    pub error: PathError,
}

/// A parsed attribute path.
#[derive(Debug)]
pub enum AttributePath {
    /// A JSONPath.
    JsonPath(JsonPath),
    /// A CEL expression.
    Cel(CelProgram),
    /// A Helm release field.
    Helm(HelmField),
}

impl AttributePath {
    /// Parses a path: `cel:` prefix, `helm:release.` prefix, otherwise JSONPath.
    pub fn parse(path: &str, limits: &CelLimits) -> Result<Self, PathError> {
        let path = path.trim();
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if let Some(expression) = path.strip_prefix("cel:") {
            return Ok(Self::Cel(CelProgram::compile(expression, limits)?));
        }
        if let Some(field) = path.strip_prefix("helm:release.") {
            return Ok(Self::Helm(HelmField::parse(field)?));
        }
        JsonPath::parse(path)
            .map(Self::JsonPath)
            .map_err(|e| PathError::ParseJsonPath(e.to_string()))
    }
}

#[derive(Debug)]
struct CompiledAttribute {
    name: String,
    optional: bool,
    path: Result<AttributePath, PathError>,
}

/// A profile prepared for extraction: every path parsed and every CEL program compiled once.
///
/// Compilation never fails as a whole: an attribute whose path is invalid fails at extraction
/// time like any other evaluation error (so `optional` still applies), and admission
/// ([`validate`]) rejects such profiles before they reach the operator.
#[derive(Debug)]
pub struct CompiledProfile {
    attributes: Vec<CompiledAttribute>,
    metrics: Vec<kollect_core::api::v1alpha1::MetricSpec>,
    cel_need: Option<FieldNeed>,
    resource: Option<ResourceExport>,
    scrubber: Scrubber,
    options: ExtractOptions,
}

impl CompiledProfile {
    /// Compiles `spec` with the operator-wide `options`.
    pub fn compile(spec: &KollectProfileSpec, options: &ExtractOptions) -> Self {
        let attributes: Vec<CompiledAttribute> = spec
            .attributes
            .iter()
            .map(|a| CompiledAttribute {
                name: a.name.clone(),
                optional: a.is_optional(),
                path: AttributePath::parse(&a.path, &options.cel),
            })
            .collect();
        let cel_need = attributes
            .iter()
            .filter_map(|a| match &a.path {
                Ok(AttributePath::Cel(program)) => Some(program.need().clone()),
                _ => None,
            })
            .reduce(|a, b| a.union(&b));
        let operator_scrubber = Scrubber::new(&options.scrub_keys);
        let export = spec.export.clone().unwrap_or_default();
        let scrub_keys = export
            .prune
            .as_ref()
            .map(|p| p.scrub_keys.clone())
            .unwrap_or_default();
        let resource =
            (export.mode == ExportMode::Resource).then(|| ResourceExport::new(&export, &operator_scrubber));
        Self {
            attributes,
            metrics: spec.metrics.clone(),
            cel_need,
            resource,
            scrubber: operator_scrubber.with_extra(scrub_keys),
            options: options.clone(),
        }
    }

    /// The profile's `spec.metrics` (domain series computed from its rows).
    pub fn metric_specs(&self) -> &[kollect_core::api::v1alpha1::MetricSpec] {
        &self.metrics
    }

    /// Extracts the attributes of `object`: attributes in declaration order, each redacted, then
    /// the Resource-mode copy (if any) under `export.as`.
    pub fn extract(&self, object: &Value) -> Result<Attributes, ExtractError> {
        let cel_input = OnceLock::new();
        let release = OnceLock::new();
        let mut attributes = Attributes::new();
        for attribute in &self.attributes {
            let outcome = match &attribute.path {
                Err(error) => Err(error.clone()),
                Ok(AttributePath::JsonPath(path)) => path
                    .extract(object)
                    .map(|mut value| {
                        canonical::zeros_as_kubernetes_decodes(&mut value);
                        value
                    })
                    .map_err(|e| PathError::EvalJsonPath(e.to_string())),
                Ok(AttributePath::Cel(program)) => {
                    let need = self.cel_need.as_ref().unwrap_or(&FieldNeed::All);
                    let input = cel_input.get_or_init(|| CelInput::new(object, need));
                    program
                        .evaluate(input, &self.options.cel)
                        .map_err(PathError::from)
                }
                Ok(AttributePath::Helm(field)) => {
                    match release
                        .get_or_init(|| helm::decode_release(object, self.options.helm_max_decompressed))
                    {
                        Ok(decoded) => field.lookup(decoded).map_err(PathError::from),
                        Err(error) => Err(PathError::from(error.clone())),
                    }
                }
            };
            match outcome {
                Ok(Value::Null) if attribute.optional => {}
                Ok(mut value) => {
                    self.scrubber.scrub(&mut value);
                    attributes.insert(attribute.name.clone(), value);
                }
                Err(_) if attribute.optional => {}
                Err(error) => {
                    return Err(ExtractError {
                        attribute: attribute.name.clone(),
                        error,
                    });
                }
            }
        }
        if let Some(resource) = &self.resource {
            let mut copy = resource.render(object);
            canonical::zeros_as_kubernetes_decodes(&mut copy);
            attributes.insert(resource.key.clone(), copy);
        }
        Ok(attributes)
    }
}

/// Compiled profiles, keyed by namespace and name and reused while the profile's
/// `metadata.generation` (and so its spec) is unchanged.
#[derive(Debug, Default)]
pub struct ProfileCache {
    options: ExtractOptions,
    entries: Mutex<HashMap<ProfileKey, CachedProfile>>,
}

/// Namespace and name of a profile.
type ProfileKey = (String, String);
/// The generation a profile was compiled at, and the result.
type CachedProfile = (Option<i64>, Arc<CompiledProfile>);

impl ProfileCache {
    /// An empty cache compiling with `options`.
    pub fn new(options: ExtractOptions) -> Self {
        Self {
            options,
            entries: Mutex::default(),
        }
    }

    /// The compiled form of `profile`, compiled now if its generation is new.
    pub fn get(&self, profile: &KollectProfile) -> Arc<CompiledProfile> {
        let key = (
            profile.metadata.namespace.clone().unwrap_or_default(),
            profile.metadata.name.clone().unwrap_or_default(),
        );
        let generation = profile.metadata.generation;
        // The map is only ever left consistent, so a poisoned lock is still usable.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached_generation, compiled)) = entries.get(&key)
            && generation.is_some()
            && *cached_generation == generation
        {
            return Arc::clone(compiled);
        }
        let compiled = Arc::new(CompiledProfile::compile(&profile.spec, &self.options));
        entries.insert(key, (generation, Arc::clone(&compiled)));
        compiled
    }

    /// Drops the entry of a deleted profile.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(namespace.to_owned(), name.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::api::v1alpha1::{AttributeSpec, ExportSpec, GroupVersionKind};
    use serde_json::json;

    fn profile(attributes: Vec<AttributeSpec>) -> CompiledProfile {
        let spec = KollectProfileSpec {
            target_gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            attributes,
            ..Default::default()
        };
        CompiledProfile::compile(&spec, &ExtractOptions::default())
    }

    fn optional(name: &str, path: &str) -> AttributeSpec {
        AttributeSpec {
            optional: Some(true),
            ..AttributeSpec::new(name, path)
        }
    }

    fn cm() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"a": "1", "password": "x"}})
    }

    #[test]
    fn required_optional_and_missing_table() {
        let p = profile(vec![
            AttributeSpec::new("name", "$.metadata.name"),
            AttributeSpec::new("missingRequired", "$.metadata.nope"),
            optional("missingOptional", "$.metadata.nope"),
            optional("erroringOptional", "$.metadata.name[0]"),
            optional("celNullOptional", "cel:null"),
            AttributeSpec::new("celNullRequired", "cel:null"),
        ]);
        let attrs = p.extract(&cm()).unwrap();
        assert_eq!(
            Value::Object(attrs),
            json!({"name": "c", "missingRequired": null, "celNullRequired": null})
        );
    }

    #[test]
    fn required_errors_fail_the_object_with_the_reference_texts() {
        let err = |path: &str| {
            profile(vec![AttributeSpec::new("x", path)])
                .extract(&cm())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("  "), "attribute \"x\": empty path");
        assert_eq!(err("cel: "), "attribute \"x\": empty CEL expression");
        assert!(err("cel:object.(").starts_with("attribute \"x\": compile CEL: "));
        assert!(err("cel:object.nope").starts_with("attribute \"x\": eval CEL: "));
        assert!(err("{.metadata").starts_with("attribute \"x\": parse JSONPath: "));
        assert_eq!(
            err("$.metadata.name[0]"),
            "attribute \"x\": eval JSONPath: string is not array or slice"
        );
        assert_eq!(
            err("helm:release.manifest"),
            "attribute \"x\": helm release field \"manifest\" is not exportable"
        );
        assert_eq!(err("helm:release."), "attribute \"x\": empty helm release field");
        assert_eq!(
            err("helm:release.status"),
            "attribute \"x\": secret data.release not found"
        );
    }

    #[test]
    fn first_required_failure_aborts_in_declaration_order() {
        let p = profile(vec![
            AttributeSpec::new("a", "$.metadata.name[0]"),
            AttributeSpec::new("b", "cel:object.nope"),
        ]);
        assert_eq!(p.extract(&cm()).unwrap_err().attribute, "a");
    }

    #[test]
    fn values_are_redacted_but_attribute_names_are_not() {
        let p = profile(vec![
            AttributeSpec::new("password", "$.metadata.name"),
            AttributeSpec::new("data", "$.data"),
        ]);
        let attrs = p.extract(&cm()).unwrap();
        assert_eq!(attrs["password"], "c");
        assert_eq!(
            attrs["data"],
            json!({"a": "1", "password": {"redacted": true, "reason": "sensitive-key"}})
        );
    }

    #[test]
    fn operator_and_profile_scrub_keys_apply() {
        let mut spec = KollectProfileSpec {
            target_gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            attributes: vec![AttributeSpec::new("data", "$.data")],
            export: Some(ExportSpec {
                prune: Some(kollect_core::api::v1alpha1::PruneSpec {
                    scrub_keys: vec!["A".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = ExtractOptions {
            scrub_keys: vec!["other".into()],
            ..Default::default()
        };
        let attrs = CompiledProfile::compile(&spec, &options).extract(&cm()).unwrap();
        assert_eq!(attrs["data"]["a"]["redacted"], true);
        spec.export = None;
        let attrs = CompiledProfile::compile(&spec, &options).extract(&cm()).unwrap();
        assert_eq!(attrs["data"]["a"], "1");
    }

    #[test]
    fn resource_mode_adds_the_copy_under_export_as() {
        let spec = KollectProfileSpec {
            target_gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            attributes: vec![AttributeSpec::new("name", "$.metadata.name")],
            export: Some(ExportSpec {
                mode: ExportMode::Resource,
                as_: "manifest".into(),
                include: kollect_core::api::v1alpha1::ExportInclude::All,
                ..Default::default()
            }),
            ..Default::default()
        };
        let attrs = CompiledProfile::compile(&spec, &ExtractOptions::default())
            .extract(&cm())
            .unwrap();
        assert_eq!(attrs["name"], "c");
        assert_eq!(attrs["manifest"]["kind"], "ConfigMap");
        assert_eq!(attrs["manifest"]["metadata"], json!({}));
        assert_eq!(attrs["manifest"]["data"]["password"]["redacted"], true);
    }

    #[test]
    fn numbers_keep_their_kind_through_every_path() {
        let obj = json!({"spec": {"replicas": 3, "ratio": 0.25, "big": 9007199254740993i64}});
        let p = profile(vec![
            AttributeSpec::new("jp", "$.spec.replicas"),
            AttributeSpec::new("jpf", "$.spec.ratio"),
            AttributeSpec::new("jpbig", "$.spec.big"),
            AttributeSpec::new("cel", "cel:object.spec.replicas + 1"),
            AttributeSpec::new("celf", "cel:object.spec.ratio * 2.0"),
            AttributeSpec::new("celbig", "cel:object.spec.big"),
        ]);
        let attrs = p.extract(&obj).unwrap();
        assert!(
            attrs["jp"].is_i64()
                && attrs["cel"].is_i64()
                && attrs["celbig"].is_i64()
                && attrs["jpbig"].is_i64()
        );
        assert_eq!(attrs["celbig"], json!(9007199254740993i64));
        assert!(attrs["jpf"].is_f64() && attrs["celf"].is_f64());
    }

    #[test]
    fn negative_zeros_encode_as_the_go_operator_encodes_them() {
        // The API server's `-0` is the integer 0 to Kubernetes' decoder; a CEL negative zero
        // stays a float, which Go prints `-0`.
        let obj: Value = serde_json::from_str(r#"{"spec": {"z": -0, "list": [-0, 1]}}"#).unwrap();
        let spec = KollectProfileSpec {
            target_gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            attributes: vec![
                AttributeSpec::new("jp", "$.spec.z"),
                AttributeSpec::new("jplist", "$.spec.list"),
                AttributeSpec::new("celtype", "cel:type(object.spec.z) == int"),
                AttributeSpec::new("celneg", "cel:0.0 * -1.0"),
            ],
            export: Some(ExportSpec {
                mode: ExportMode::Resource,
                as_: "manifest".into(),
                include: kollect_core::api::v1alpha1::ExportInclude::SpecOnly,
                ..Default::default()
            }),
            ..Default::default()
        };
        let attrs = CompiledProfile::compile(&spec, &ExtractOptions::default())
            .extract(&obj)
            .unwrap();
        let encode = |v: &Value| kollect_core::model::canonical::to_string(v);
        assert_eq!(encode(&attrs["jp"]), "0");
        assert_eq!(encode(&attrs["jplist"]), "[0,1]");
        assert_eq!(attrs["celtype"], true);
        assert_eq!(encode(&attrs["celneg"]), "-0");
        assert_eq!(encode(&attrs["manifest"]["spec"]), r#"{"list":[0,1],"z":0}"#);
    }

    #[test]
    fn helm_release_is_decoded_once_for_several_attributes() {
        let secret = helm::tests::secret_with(helm::tests::release_json().to_string().as_bytes(), true, true);
        let p = profile(vec![
            AttributeSpec::new("chart", "helm:release.chartName"),
            AttributeSpec::new("version", "helm:release.chartVersion"),
            AttributeSpec::new("values", "helm:release.config"),
        ]);
        let attrs = p.extract(&secret).unwrap();
        assert_eq!(attrs["chart"], "shop-chart");
        assert_eq!(attrs["version"], "1.2.3");
        assert_eq!(
            attrs["values"]["db"]["password"]["redacted"], true,
            "Helm values are redacted too"
        );
    }

    #[test]
    fn cache_reuses_a_profile_until_its_generation_changes() {
        let cache = ProfileCache::new(ExtractOptions::default());
        let mut profile = KollectProfile::new("p", KollectProfileSpec::default());
        profile.metadata.namespace = Some("ns".into());
        profile.metadata.generation = Some(1);
        let first = cache.get(&profile);
        assert!(Arc::ptr_eq(&first, &cache.get(&profile)));
        profile.metadata.generation = Some(2);
        let second = cache.get(&profile);
        assert!(!Arc::ptr_eq(&first, &second));
        cache.forget("ns", "p");
        assert!(!Arc::ptr_eq(&second, &cache.get(&profile)));
    }

    proptest::proptest! {
        #[test]
        fn random_paths_never_panic(path in ".{0,40}") {
            let p = profile(vec![AttributeSpec::new("x", &path), optional("y", &format!("cel:{path}"))]);
            let _ = p.extract(&cm());
        }
    }
}
