//! A golden test of a profile: the rows it extracts from the Deployments of a kubectl dump.
use kollect_testkit::golden::{assert_golden, profile_rows};

#[test]
fn the_deployments_profile_extracts_what_the_golden_file_says() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = profile_rows(dir.join("first-inventory/profile.yaml"), dir.join("cluster-snapshot"))?;
    assert_golden(dir.join("tests/golden/deployments.json"), &rows);
    Ok(())
}
