//! The committed CRDs under charts/kollect/crds must equal what the Rust types generate.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn committed_crds_match_generated() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/kollect/crds");
    let drifted = kollect_operator::crds::drift(&dir).expect("read CRD directory");
    assert!(
        drifted.is_empty(),
        "CRDs are out of date, run `cargo run --bin kollect -- crds`:\n{}",
        drifted.join("\n")
    );
}

#[test]
fn eleven_crds_with_expected_file_names() {
    let rendered = kollect_operator::crds::render().expect("render");
    let mut names: Vec<_> = rendered.iter().map(|c| c.file_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "kollect.dev_kollectclusterinventories.yaml",
            "kollect.dev_kollectclusterscopes.yaml",
            "kollect.dev_kollectclustertargets.yaml",
            "kollect.dev_kollectconnectiontests.yaml",
            "kollect.dev_kollectdatabasesinks.yaml",
            "kollect.dev_kollecteventsinks.yaml",
            "kollect.dev_kollectinventories.yaml",
            "kollect.dev_kollectprofiles.yaml",
            "kollect.dev_kollectscopes.yaml",
            "kollect.dev_kollectsnapshotsinks.yaml",
            "kollect.dev_kollecttargets.yaml",
        ]
    );
}
