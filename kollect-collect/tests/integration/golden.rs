//! Golden tests of the extraction engine: every profile under `tests/fixtures/profiles` is run
//! over the fixture objects of its kind, and the rows' attributes (or the extraction error) are
//! compared with `tests/golden/<profile>.json`. `KOLLECT_UPDATE_GOLDEN=1` rewrites the files.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kollect_collect::extract::validate::validate_profile;
use kollect_collect::extract::{CompiledProfile, ExtractOptions};
use kollect_core::api::v1alpha1::KollectProfile;
use serde::Deserialize;
use serde_json::{Value, json};

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(sub)
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn load_objects() -> Vec<Value> {
    sorted_files(&dir("fixtures/objects"))
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            serde_norway::Deserializer::from_str(&text)
                .map(|doc| Value::deserialize(doc).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The value with every object's keys in sorted order, so the golden text does not depend on
/// whether serde_json keeps insertion order (another crate in the build may enable that).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn api_version_matches(profile: &KollectProfile, object: &Value) -> bool {
    let gvk = &profile.spec.target_gvk;
    object["apiVersion"].as_str() == Some(gvk.api_version().as_str())
        && object["kind"].as_str() == Some(gvk.kind.as_str())
}

#[test]
fn profiles_over_fixture_objects_match_golden_files() {
    let objects = load_objects();
    let options = ExtractOptions::default();
    let mut checked = 0;
    for path in sorted_files(&dir("fixtures/profiles")) {
        let profile: KollectProfile =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let validation = validate_profile(&profile, &options);
        assert!(
            validation.is_valid(),
            "{}: {:?}",
            path.display(),
            validation.errors
        );
        let compiled = CompiledProfile::compile(&profile.spec, &options);
        let mut results = Vec::new();
        for object in objects.iter().filter(|o| api_version_matches(&profile, o)) {
            let id = format!(
                "{} {}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            results.push(match compiled.extract(object) {
                Ok(attributes) => json!({"object": id, "attributes": attributes}),
                Err(error) => json!({"object": id, "error": error.to_string()}),
            });
        }
        assert!(
            !results.is_empty(),
            "{}: no fixture object of this kind",
            path.display()
        );
        let document =
            json!({"profile": profile.metadata.name, "warnings": validation.warnings, "results": results});
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        kollect_testkit::golden::assert_golden(
            dir("golden").join(format!("{stem}.json")),
            &(serde_json::to_string_pretty(&sorted(document)).unwrap() + "\n"),
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} profiles checked");
}

proptest::proptest! {
    /// Random objects never make a compiled fixture profile panic.
    #[test]
    fn random_objects_never_panic(object in arb_object()) {
        let options = ExtractOptions::default();
        for path in sorted_files(&dir("fixtures/profiles")) {
            let profile: KollectProfile = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let _ = CompiledProfile::compile(&profile.spec, &options).extract(&object);
        }
    }
}

fn arb_object() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (proptest::num::f64::NORMAL).prop_map(|f| json!(f)),
        "[a-z0-9:/. ]{0,12}".prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("spec".to_owned()),
        Just("status".to_owned()),
        Just("metadata".to_owned()),
        Just("data".to_owned()),
        Just("containers".to_owned()),
        Just("rules".to_owned()),
        Just("conditions".to_owned()),
        Just("release".to_owned()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
