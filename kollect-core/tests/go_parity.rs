//! Byte parity with Go's `encoding/json` (decision X1).
//!
//! `tests/data/canonical-golden.json` was produced from `tests/data/canonical-vectors.json` by
//! `hack/go-canonical` (Go's encoder, with Kubernetes' number decoding); `hack/test.sh`
//! regenerates it with Go and fails on any difference. This test checks that our canonical item
//! arrays, checksums and envelopes are identical to Go's, byte for byte.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kollect_core::model::canonical::zeros_as_kubernetes_decodes;
use kollect_core::model::{EnvelopeHeader, PartMarker, Row, Snapshot, canonical_array};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vector {
    name: String,
    generation: i64,
    #[serde(default)]
    part_index: u32,
    #[serde(default)]
    part_total: u32,
    #[serde(default)]
    cluster: String,
    exported_at: String,
    items: Vec<Row>,
}

#[derive(Deserialize)]
struct Golden {
    name: String,
    items: String,
    checksum: String,
    envelope: String,
}

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn canonical_encoding_checksums_and_envelopes_equal_go() {
    let vectors: Vec<Vector> = load("canonical-vectors.json");
    let golden: Vec<Golden> = load("canonical-golden.json");
    assert_eq!(
        vectors.len(),
        golden.len(),
        "regenerate the golden file with hack/go-canonical"
    );
    for (vector, expected) in vectors.into_iter().zip(golden) {
        assert_eq!(vector.name, expected.name);
        let mut rows = vector.items;
        // The vectors stand for values read from objects, which extraction decodes as
        // Kubernetes does.
        for row in &mut rows {
            if let Some(attributes) = &mut row.attributes {
                attributes.values_mut().for_each(zeros_as_kubernetes_decodes);
            }
        }
        let snapshot = Snapshot::new(rows);
        let items = String::from_utf8(canonical_array(snapshot.rows())).unwrap();
        assert_eq!(items, expected.items, "{}: canonical items", expected.name);
        assert_eq!(
            snapshot.fingerprint().as_str(),
            expected.checksum,
            "{}: checksum",
            expected.name
        );
        let header = EnvelopeHeader {
            checksum: snapshot.fingerprint().clone(),
            generation: Some(vector.generation),
            part: (vector.part_index > 0).then_some(PartMarker {
                index: vector.part_index,
                total: vector.part_total,
            }),
            item_count: snapshot.len(),
            exported_at: vector.exported_at.parse().unwrap(),
            cluster: Some(vector.cluster),
        };
        let mut envelope = Vec::new();
        header.write(&mut envelope, snapshot.rows());
        assert_eq!(
            String::from_utf8(envelope).unwrap(),
            expected.envelope,
            "{}: envelope",
            expected.name
        );
    }
}
