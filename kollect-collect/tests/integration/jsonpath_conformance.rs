//! The JSONPath conformance suite: cases drawn from client-go's own `util/jsonpath` tests
//! (`tests/data/jsonpath-conformance.json`), each evaluated as an attribute path. Cases marked
//! with a decision are deliberate differences; the suite checks our documented result there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kollect_collect::extract::jsonpath::JsonPath;
use serde_json::Value;

#[test]
fn client_go_jsonpath_cases() {
    let suite: Value =
        serde_json::from_str(include_str!("../data/jsonpath-conformance.json")).expect("the suite parses");
    let documents = &suite["documents"];
    let cases = suite["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let path = case["path"].as_str().expect("a path");
        let document = &documents[case["document"].as_str().expect("a document")];
        assert!(!document.is_null(), "{path}: unknown document");
        let outcome = match JsonPath::parse(path) {
            Err(error) => Err(("parse_error", error.to_string())),
            Ok(parsed) => parsed.extract(document).map_err(|e| ("error", e.to_string())),
        };
        let matched = match (&outcome, case.get("value")) {
            (Ok(value), Some(expected)) => value == expected,
            (Err((kind, message)), None) => case[*kind]
                .as_str()
                .is_some_and(|expected| message.contains(expected)),
            _ => false,
        };
        if !matched {
            failures.push(format!("{path}: got {outcome:?}, expected {case}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let decided = cases.iter().filter(|c| c.get("decision").is_some()).count();
    assert!(decided > 0 && decided < cases.len());
}
