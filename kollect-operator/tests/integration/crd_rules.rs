//! The CEL rules embedded in the generated CRDs: they compile, accept the sample
//! pipelines, and reject the invalid objects they are meant to reject.
//!
//! This evaluates the rules in-process with the Kubernetes CEL library; the same CRDs are applied
//! to a real kube-apiserver by the kollect-testkit tests.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use kollect_core::api::v1alpha1::*;
use serde::Deserialize;
use serde_json::{Value, json};

fn schemas() -> BTreeMap<String, Value> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let version = &crd.spec.versions[0];
            let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            (crd.spec.names.kind.clone(), schema)
        })
        .collect()
}

fn load_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn validate(schemas: &BTreeMap<String, Value>, object: &Value) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap();
    let schema = schemas.get(kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
    kube_cel::validate(schema, object, None).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Decodes `object` into its Rust type, so the samples also prove wire compatibility of the types.
fn decode_typed(object: &Value) {
    let kind = object["kind"].as_str().unwrap();
    let v = object.clone();
    let result = match kind {
        "KollectProfile" => serde_json::from_value::<KollectProfile>(v).map(drop),
        "KollectTarget" => serde_json::from_value::<KollectTarget>(v).map(drop),
        "KollectInventory" => serde_json::from_value::<KollectInventory>(v).map(drop),
        "KollectSnapshotSink" => serde_json::from_value::<KollectSnapshotSink>(v).map(drop),
        "KollectDatabaseSink" => serde_json::from_value::<KollectDatabaseSink>(v).map(drop),
        "KollectEventSink" => serde_json::from_value::<KollectEventSink>(v).map(drop),
        "KollectScope" => serde_json::from_value::<KollectScope>(v).map(drop),
        "KollectConnectionTest" => serde_json::from_value::<KollectConnectionTest>(v).map(drop),
        "KollectClusterTarget" => serde_json::from_value::<KollectClusterTarget>(v).map(drop),
        "KollectClusterInventory" => serde_json::from_value::<KollectClusterInventory>(v).map(drop),
        "KollectClusterScope" => serde_json::from_value::<KollectClusterScope>(v).map(drop),
        other => panic!("unexpected kind {other}"),
    };
    result.unwrap_or_else(|e| panic!("{kind}: {e}"));
}

#[test]
fn every_rule_compiles() {
    for (kind, schema) in schemas() {
        let compiled = kube_cel::compile_schema(&schema);
        let errors: Vec<_> = compiled
            .compilation_errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{kind}: {errors:#?}");
    }
}

#[test]
fn reference_samples_are_valid_and_decode() {
    let schemas = schemas();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        for doc in load_docs(&path) {
            if !doc["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("kollect.dev/")
            {
                continue;
            }
            validate(&schemas, &doc)
                .unwrap_or_else(|e| panic!("{}: {} rejected: {e}", path.display(), doc["metadata"]["name"]));
            decode_typed(&doc);
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} sample objects checked");
}

fn obj(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "kollect.dev/v1alpha1", "kind": kind, "metadata": {"name": "x", "namespace": "ns"}, "spec": spec})
}

#[test]
fn invalid_objects_are_rejected_with_clear_messages() {
    let schemas = schemas();
    let git = json!({"type": "git", "endpoint": "https://git.example.com/r.git"});
    let with = |base: &Value, patch: Value| {
        let mut v = base.clone();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            obj("KollectInventory", json!({"exportMinInterval": "25h"})),
            "between 0s and 24h",
        ),
        (
            obj("KollectInventory", json!({"exportMinInterval": "-1s"})),
            "between 0s and 24h",
        ),
        (
            obj("KollectInventory", json!({"snapshotSinkRefs": [{"name": "a/b"}]})),
            "not namespace/name",
        ),
        (
            obj(
                "KollectInventory",
                json!({"snapshotSinkRefs": [{"name": "a", "namespace": "other"}]}),
            ),
            "must not set namespace",
        ),
        (
            obj(
                "KollectInventory",
                json!({"snapshotSinkRefs": [{"name": "a"}, {"name": "a"}]}),
            ),
            "unique",
        ),
        (
            obj(
                "KollectInventory",
                json!({
                    "snapshotSinkRefs": (0..8).map(|i| json!({"name": format!("s{i}")})).collect::<Vec<_>>(),
                    "databaseSinkRefs": (0..8).map(|i| json!({"name": format!("d{i}")})).collect::<Vec<_>>(),
                    "eventSinkRefs": (0..8).map(|i| json!({"name": format!("e{i}")})).collect::<Vec<_>>(),
                }),
            ),
            "at most 20 sinks",
        ),
        (
            obj("KollectTarget", json!({"profileRef": "ns/p"})),
            "not namespace/name",
        ),
        (
            obj(
                "KollectProfile",
                json!({"targetGVK": {"version": "v1", "kind": "Pod"}, "export": {"mode": "Attributes"}}),
            ),
            "spec.attributes is required",
        ),
        (
            obj(
                "KollectProfile",
                json!({"targetGVK": {"version": "v1", "kind": "Pod"}, "attributes": [{"name": "resource", "path": "$.a"}], "export": {"mode": "Resource"}}),
            ),
            "export.as must not equal",
        ),
        (
            obj(
                "KollectProfile",
                json!({"targetGVK": {"version": "v1", "kind": "Pod"}, "attributes": [{"name": "a", "path": "$.a"}], "metrics": [{"name": "m", "path": "b"}]}),
            ),
            "must name an attribute",
        ),
        (
            obj(
                "KollectProfile",
                json!({"targetGVK": {"version": "v1", "kind": "Pod"}, "export": {"mode": "Resource", "prune": {"jsonPointers": ["metadata/x"]}}}),
            ),
            "JSON pointer",
        ),
        (
            obj("KollectSnapshotSink", json!({"type": "git"})),
            "spec.endpoint is required",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"endpoint": "file:///tmp/repo"})),
            ),
            "file://",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"objectStore": {"format": "json"}})),
            ),
            "objectStore is only allowed",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"http": {"method": "PUT"}})),
            ),
            "spec.http is reserved",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"serialization": {"format": "parquet"}})),
            ),
            "json, yaml or ndjson",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"pathTemplate": "/abs/{namespace}/{name}"})),
            ),
            "relative path",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"pathTemplate": "inventory/{name}"})),
            ),
            "{namespace}",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"pathTemplate": "{namespace}/{name}/{bogus}"})),
            ),
            "allowed placeholders",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"options": {"API_TOKEN": "x"}})),
            ),
            "must not carry secrets",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"git": {"branch": "refs/heads/main"}})),
            ),
            "short branch name",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"git": {"branch": "feature..x"}})),
            ),
            "short branch name",
        ),
        (
            obj(
                "KollectSnapshotSink",
                with(&git, json!({"layout": {"pathTemplate": "{kind}/{group}"}})),
            ),
            "{sourceName}",
        ),
        (
            obj(
                "KollectDatabaseSink",
                json!({"type": "postgres", "postgres": {"databaseRef": {"name": "d"}, "table": "t"}, "layout": {"mode": "perResource"}}),
            ),
            "layout is only allowed",
        ),
        (
            obj(
                "KollectSnapshotSink",
                json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/g/r.git", "gitlab": {"mergeRequest": {"mode": "merge_request"}}}),
            ),
            "targetBranch is required",
        ),
        (
            obj(
                "KollectSnapshotSink",
                json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/g/r.git", "gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "main", "autoMerge": true}}}),
            ),
            "autoMerge is not supported",
        ),
        (
            obj(
                "KollectSnapshotSink",
                json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/g/r.git", "git": {"auth": {"type": "ssh"}}}),
            ),
            "spec.git.auth.type must be token",
        ),
        (
            obj(
                "KollectSnapshotSink",
                json!({"type": "s3", "endpoint": "s3://bucket", "git": {"branch": "main"}}),
            ),
            "spec.git is only allowed for types git and gitlab",
        ),
        (
            obj("KollectDatabaseSink", json!({"type": "postgres"})),
            "spec.postgres is required",
        ),
        (
            obj(
                "KollectDatabaseSink",
                json!({"type": "postgres", "postgres": {"databaseRef": {"name": "d"}, "table": "t"}, "mongodb": {"databaseRef": {"name": "d"}, "database": "x", "collection": "y"}}),
            ),
            "spec.mongodb is only allowed",
        ),
        (
            obj(
                "KollectDatabaseSink",
                json!({"type": "bigquery", "bigquery": {"project": "p", "dataset": "d", "table": "t"}, "deletedRows": "SoftDelete"}),
            ),
            "SoftDelete is supported by types postgres and mongodb",
        ),
        (
            obj("KollectEventSink", json!({"type": "kafka"})),
            "spec.kafka is required",
        ),
        (
            obj(
                "KollectEventSink",
                json!({"type": "nats", "nats": {"subject": "s"}}),
            ),
            "nats.url or spec.endpoint",
        ),
        (
            obj("KollectConnectionTest", json!({"sinkRef": {}})),
            "exactly one of",
        ),
        (
            obj(
                "KollectConnectionTest",
                json!({"sinkRef": {"snapshotSinkRef": "a", "eventSinkRef": "b"}}),
            ),
            "exactly one of",
        ),
        (
            obj("KollectScope", json!({"minExportInterval": "2d"})),
            "duration",
        ),
        (
            json!({"apiVersion": "kollect.dev/v1alpha1", "kind": "KollectClusterTarget", "metadata": {"name": "x"},
                   "spec": {"profileRef": {"name": "p", "namespace": "ns"}, "namespaceSelector": {}}}),
            "at least one matchLabels",
        ),
    ];
    let mut failures = Vec::new();
    for (object, expected) in &cases {
        match validate(&schemas, object) {
            Ok(()) => failures.push(format!("accepted but expected {expected:?}: {object}")),
            Err(message) if !message.contains(expected) => {
                failures.push(format!("expected {expected:?}, got {message:?}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn defaults_are_those_of_the_reference() {
    let profile: KollectProfileSpec =
        serde_json::from_value(json!({"targetGVK": {"version": "v1", "kind": "Pod"}, "export": {}})).unwrap();
    let export = profile.export.unwrap();
    assert_eq!(
        (export.mode, export.as_.as_str(), export.include),
        (ExportMode::Attributes, "resource", ExportInclude::SpecAndStatus)
    );
    let target: KollectTargetSpec = serde_json::from_value(json!({"profileRef": "p"})).unwrap();
    assert_eq!(target.watch_mode, WatchMode::All);
    let cinv: KollectClusterInventorySpec =
        serde_json::from_value(json!({"namespaceSelector": {"matchLabels": {"a": "b"}}})).unwrap();
    assert_eq!(
        (
            cinv.sink_namespace.as_str(),
            cinv.dedupe,
            cinv.export_min_interval.to_string().as_str()
        ),
        ("kollect-system", DedupeMode::KeepAll, "30s")
    );
    let test: KollectConnectionTestSpec =
        serde_json::from_value(json!({"sinkRef": {"eventSinkRef": "e"}})).unwrap();
    assert_eq!(test.ttl_seconds_after_finished, 300);
    let sink: KollectSnapshotSinkSpec = serde_json::from_value(json!({"type": "git", "layout": {}})).unwrap();
    let layout = sink.common.layout.clone().unwrap();
    assert_eq!(
        (layout.mode, layout.content),
        (LayoutMode::Document, LayoutContent::Item)
    );
    assert!(sink.common.connection_test_enabled());
}

#[test]
fn enum_spellings_round_trip() {
    for (value, ty) in [
        (json!("perResource"), "layout"),
        (json!("merge_request"), "mr"),
        (json!("go-git"), "engine"),
        (json!("byResourceUID"), "dedupe"),
        (json!("SpecAndStatus"), "include"),
        (json!("OptIn"), "watch"),
        (json!("ForcePush"), "push"),
        (json!("azureblob"), "snap"),
    ] {
        let back = match ty {
            "layout" => serde_json::to_value(serde_json::from_value::<LayoutMode>(value.clone()).unwrap()),
            "mr" => serde_json::to_value(serde_json::from_value::<MergeRequestMode>(value.clone()).unwrap()),
            "engine" => serde_json::to_value(serde_json::from_value::<GitEngine>(value.clone()).unwrap()),
            "dedupe" => serde_json::to_value(serde_json::from_value::<DedupeMode>(value.clone()).unwrap()),
            "include" => {
                serde_json::to_value(serde_json::from_value::<ExportInclude>(value.clone()).unwrap())
            }
            "watch" => serde_json::to_value(serde_json::from_value::<WatchMode>(value.clone()).unwrap()),
            "push" => serde_json::to_value(serde_json::from_value::<PushPolicy>(value.clone()).unwrap()),
            _ => serde_json::to_value(serde_json::from_value::<SnapshotSinkType>(value.clone()).unwrap()),
        };
        assert_eq!(back.unwrap(), value);
    }
}

/// Walks a schema and reports what a Kubernetes API server would refuse as non-structural:
/// untyped nodes, references and combinators, properties next to additionalProperties, and
/// list-map keys that are not required.
fn structural_problems(path: &str, node: &Value, problems: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    let exempt = map.contains_key("x-kubernetes-int-or-string")
        || map.contains_key("x-kubernetes-preserve-unknown-fields");
    if !map.contains_key("type") && !exempt {
        problems.push(format!("{path}: no type"));
    }
    for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "$defs"] {
        if map.contains_key(forbidden) {
            problems.push(format!("{path}: uses {forbidden}"));
        }
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(keys) = map.get("x-kubernetes-list-map-keys").and_then(Value::as_array) {
        let required = map["items"]
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for key in keys {
            let defaulted = map["items"]["properties"][key.as_str().unwrap_or_default()]
                .get("default")
                .is_some();
            if !required.contains(key) && !defaulted {
                problems.push(format!(
                    "{path}: list-map key {key} is neither required nor defaulted"
                ));
            }
        }
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_problems(&format!("{path}.{name}"), child, problems);
        }
    }
    if let Some(items) = map.get("items") {
        structural_problems(&format!("{path}[]"), items, problems);
    }
    if let Some(additional) = map.get("additionalProperties").filter(|v| v.is_object()) {
        structural_problems(&format!("{path}{{}}"), additional, problems);
    }
}

#[test]
fn schemas_are_structural() {
    let mut problems = Vec::new();
    for (kind, schema) in schemas() {
        structural_problems(&kind, &schema, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn scope_kinds_have_no_status_and_the_others_have_the_subresource() {
    for crd in all_crds() {
        let version = &crd.spec.versions[0];
        let has_status = version.subresources.as_ref().is_some_and(|s| s.status.is_some());
        let is_scope = crd.spec.names.kind.ends_with("Scope");
        assert_eq!(has_status, !is_scope, "{}", crd.spec.names.kind);
        assert!(version.served && version.storage, "{}", crd.spec.names.kind);
        assert_eq!(crd.spec.group, "kollect.dev");
    }
}
