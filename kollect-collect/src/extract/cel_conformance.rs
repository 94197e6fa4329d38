//! The CEL specification's "simple" conformance tests, run against Kollect's CEL environment.
//!
//! `tests/data/cel-conformance.json` holds the cases (written by
//! `hack/conformance/cel_simple.py` from the specification's test files); this test evaluates
//! each one with `object` bound to `{}` and compares the typed result. The outcome, per file and
//! with every failing case and why, is `docs/src/reference/cel-conformance.md`: the test fails
//! when a case starts or stops passing until that page is regenerated
//! (`KOLLECT_UPDATE_GOLDEN=1 cargo test -p kollect-collect cel_conformance`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine;
use cel::Value as CelValue;
use cel::common::types::CelType;
use cel::common::value::Val;
use cel::objects::{Key, OptionalValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::cel::{CelInput, CelLimits, CelProgram, FieldNeed};

#[derive(Deserialize)]
struct Suite {
    source: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    section: String,
    name: String,
    expr: String,
    check: bool,
    value: Option<Value>,
    error: Option<String>,
}

/// The typed form of a CEL value, as the case file writes expected values.
fn typed(value: &dyn Val) -> Value {
    if let Some(t) = value.downcast_ref::<CelType>() {
        return json!({"type": t.name()});
    }
    match CelValue::try_from(value) {
        Ok(v) => typed_value(&v),
        Err(e) => json!({"unrepresentable": e.to_string()}),
    }
}

fn typed_value(value: &CelValue) -> Value {
    match value {
        CelValue::Int(i) => json!({"int": i.to_string()}),
        CelValue::UInt(u) => json!({"uint": u.to_string()}),
        CelValue::Float(f) => json!({"double": double(*f)}),
        CelValue::String(s) => json!({"string": s.as_str()}),
        CelValue::Bytes(b) => {
            json!({"bytes": base64::engine::general_purpose::STANDARD.encode(b.as_slice())})
        }
        CelValue::Bool(b) => json!({"bool": b}),
        CelValue::Null => json!({"null": null}),
        CelValue::List(items) => json!({"list": items.iter().map(typed_value).collect::<Vec<_>>()}),
        CelValue::Map(map) => {
            let mut entries: Vec<Value> = map
                .map
                .iter()
                .map(|(k, v)| json!([typed_value(&key_value(k)), typed_value(v)]))
                .collect();
            entries.sort_by_key(Value::to_string);
            json!({ "map": entries })
        }
        CelValue::Timestamp(ts) => json!({"timestamp": ts.to_rfc3339()}),
        CelValue::Duration(d) => json!({"duration": d.to_string()}),
        CelValue::Opaque(_) => match <&OptionalValue>::try_from(value) {
            Ok(optional) => json!({"optional": optional.value().map(typed_value)}),
            Err(_) => json!({"opaque": format!("{value:?}")}),
        },
        other => json!({"other": format!("{other:?}")}),
    }
}

fn key_value(key: &Key) -> CelValue {
    match key {
        Key::Int(i) => CelValue::Int(*i),
        Key::Uint(u) => CelValue::UInt(*u),
        Key::Bool(b) => CelValue::Bool(*b),
        Key::String(s) => CelValue::String(s.clone()),
    }
}

fn double(f: f64) -> Value {
    if f.is_nan() {
        json!("nan")
    } else if f.is_infinite() {
        json!(if f > 0.0 { "inf" } else { "-inf" })
    } else if f == 0.0 && f.is_sign_negative() {
        json!("-0")
    } else {
        json!(f)
    }
}

/// Expected maps are compared with their entries sorted, as produced maps are.
fn normalise(expected: &Value) -> Value {
    match expected {
        Value::Object(o) if o.len() == 1 => {
            let (kind, inner) = o.iter().next().unwrap();
            let inner = match (kind.as_str(), inner) {
                ("list", Value::Array(items)) => Value::Array(items.iter().map(normalise).collect()),
                ("map", Value::Array(entries)) => {
                    let mut entries: Vec<Value> = entries
                        .iter()
                        .map(|e| json!([normalise(&e[0]), normalise(&e[1])]))
                        .collect();
                    entries.sort_by_key(Value::to_string);
                    Value::Array(entries)
                }
                // A whole double read from the case file compares equal to the produced one.
                ("double", Value::Number(n)) => json!(n.as_f64().unwrap()),
                _ => inner.clone(),
            };
            json!({ kind: inner })
        }
        other => other.clone(),
    }
}

/// Runs one case: `None` when it passes, otherwise why not.
fn run(case: &Case) -> Option<String> {
    let limits = CelLimits::default();
    let program = match CelProgram::compile_checked(&case.expr, &limits, case.check) {
        Ok(program) => program,
        Err(_) if case.error.is_some() => return None,
        Err(e) => return Some(e.to_string()),
    };
    let object = json!({});
    let input = CelInput::new(&object, &FieldNeed::All);
    let outcome = CelValue::resolve_val(program.expr(), input.context()).map(|v| typed(v.as_ref()));
    match (outcome, &case.value, &case.error) {
        (Err(_), _, Some(_)) => None,
        (Ok(got), _, Some(expected)) => Some(format!("expected error {expected:?}, got {got}")),
        (Ok(got), Some(expected), None) => (got != normalise(expected)).then(|| format!("got {got}")),
        (Err(e), _, None) => Some(format!("eval: {e}")),
        (Ok(_), None, None) => Some("case has neither a value nor an error".into()),
    }
}

/// One line of the page: `|` and newlines would break the table.
fn cell(text: &str) -> String {
    let text: String = text.replace('|', "\\|").replace('\n', " ");
    match text.char_indices().nth(140) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[test]
fn cel_spec_simple_tests() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let suite: Suite = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/tests/data/cel-conformance.json")).unwrap(),
    )
    .unwrap();
    let mut per_file: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &suite.cases {
        let entry = per_file.entry(case.file.as_str()).or_default();
        entry.1 += 1;
        match run(case) {
            None => entry.0 += 1,
            Some(why) => failures.push((case, why)),
        }
    }
    let passed: usize = per_file.values().map(|(p, _)| p).sum();
    let mut page = String::new();
    writeln!(page, "# CEL conformance").unwrap();
    writeln!(page).unwrap();
    writeln!(
        page,
        "<!-- Generated by the cel_conformance test in kollect-collect; do not edit. -->"
    )
    .unwrap();
    writeln!(page).unwrap();
    writeln!(
        page,
        "Kollect runs the CEL specification's \"simple\" conformance tests (`{}`) in CI against \
         the environment attribute paths use, with `object` bound to an empty map. Cases that \
         bind other variables, use protobuf messages, enums or a container, or only check \
         deduced types cannot mean the same thing here and are left out; \
         `hack/conformance/cel_simple.py` lists them per file. **{passed} of {} cases pass.**",
        suite.source,
        suite.cases.len()
    )
    .unwrap();
    writeln!(page).unwrap();
    writeln!(page, "| File | Passed | Cases |").unwrap();
    writeln!(page, "|---|---|---|").unwrap();
    for (file, (p, n)) in &per_file {
        writeln!(page, "| `{file}` | {p} | {n} |").unwrap();
    }
    writeln!(page).unwrap();
    writeln!(page, "## Cases that do not pass").unwrap();
    writeln!(page).unwrap();
    writeln!(
        page,
        "They fall in a few groups. Two-variable comprehensions (`macros2`, cel-go's \
         `ext.TwoVarComprehensions`) and backquoted field names (`fields/quoted_map_fields`) \
         are not parsed by the `cel` crate; the Go operator's environment (the standard library \
         only) does not enable them either. Programs naming a variable other than `object` are \
         refused when they are compiled, also where a case turns cel-go's checker off and \
         expects an evaluation error or a short-circuited result. The `optional_type` \
         denotation is not defined."
    )
    .unwrap();
    writeln!(page).unwrap();
    writeln!(page, "| Case | Expression | Result here |").unwrap();
    writeln!(page, "|---|---|---|").unwrap();
    for (case, why) in &failures {
        writeln!(
            page,
            "| `{}/{}/{}` | `{}` | {} |",
            case.file,
            case.section,
            case.name,
            cell(&case.expr).replace('`', "'"),
            cell(why)
        )
        .unwrap();
    }
    kollect_testkit::golden::assert_golden(format!("{dir}/../docs/src/reference/cel-conformance.md"), &page);
}
