//! Scale run of the object store sink against a MinIO the testkit starts: one inventory of N
//! rows exported in full in one format, then (for the per-resource layout) one changed row
//! applied as a delta. Prints one tab-separated line: format, rows, objects, seconds, bytes,
//! RSS before the export and peak RSS (KiB, from `/proc/self/status`), and for `per-resource`
//! the seconds and bytes of the one-row change.
//!
//! `hack/perf-object.sh` runs it once per format, each in its own process so peak RSS is that
//! format's. Usage: `object_store_scale <json|ndjson|csv|parquet|per-resource> [rows]`.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use kollect_core::export::DEFAULT_MAX_EXPORT_BYTES;
use kollect_core::model::{Delta, Snapshot};
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{ExportRequest, InventoryRef, Sink};
use kollect_sinks::SecretData;
use kollect_sinks::format::Format;
use kollect_sinks::object::client::ClientSettings;
use kollect_sinks::object::parquet::{PageCodec, ParquetLayout};
use kollect_sinks::object::{
    Encoding, Location, ObjectCompression, ObjectFormat, ObjectSink, ObjectTarget, StoreKind,
};
use kollect_testkit::backends::Minio;

fn kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let format = args.next().unwrap_or_else(|| "json".to_owned());
    let rows: usize = args.next().map_or(100_000, |n| n.parse().expect("rows"));
    kollect_testkit::backends::install_crypto_provider();
    let minio = Minio::start().expect("MinIO (run hack/setup.sh)");
    let bucket = "scale";
    minio.create_bucket(bucket).await.expect("bucket");

    let object_format = match format.as_str() {
        "json" | "per-resource" => ObjectFormat::Document(Format::Json),
        "ndjson" => ObjectFormat::Document(Format::Ndjson),
        "csv" => ObjectFormat::Csv,
        "parquet" => ObjectFormat::Parquet(ParquetLayout::new(&[], PageCodec::Zstd).unwrap()),
        other => panic!("unknown format {other}"),
    };
    let secret = SecretData::new([
        ("accessKeyID".to_owned(), Minio::ACCESS_KEY.as_bytes().to_vec()),
        (
            "secretAccessKey".to_owned(),
            Minio::SECRET_KEY.as_bytes().to_vec(),
        ),
    ]);
    let settings = ClientSettings {
        location: Location::parse(StoreKind::S3, &format!("{}/{bucket}/fleet", minio.endpoint())).unwrap(),
        secret,
        ca_pem: None,
        insecure_skip_verify: false,
        region: None,
        policy: NetPolicy::permissive_for_tests(),
    };
    let target = ObjectTarget::connect(&settings).unwrap();
    let encoding = Encoding {
        format: object_format,
        compression: ObjectCompression::None,
    };
    let mut sink = ObjectSink::new(target, encoding, None, false).unwrap();
    if format == "per-resource" {
        let layout = serde_norway::from_str("mode: perResource").unwrap();
        sink = sink.with_layout(&layout).unwrap();
    }

    let inventory = InventoryRef::namespaced("scale", "configmaps").with_cluster("bench");
    let names: Vec<String> = (0..rows).map(|i| format!("cm-{i:06}")).collect();
    let snapshot = Snapshot::new(
        names
            .iter()
            .map(|n| kollect_testkit::conformance::sample_row(&inventory, n, 1))
            .collect(),
    );
    let at = k8s_openapi::jiff::Timestamp::now();
    let whole = ExportRequest::full(inventory.clone(), 1, at, snapshot.clone());
    let rss_before = kib("VmRSS:");

    let started = Instant::now();
    let ceiling = sink.capabilities().ceiling(DEFAULT_MAX_EXPORT_BYTES);
    let parts = kollect_core::model::partition(&whole.snapshot, &whole.meta(), ceiling)
        .unwrap()
        .parts;
    let objects = if format == "per-resource" {
        rows
    } else {
        parts.len()
    };
    let mut bytes = 0;
    for part in parts {
        let mut request = whole.clone();
        request.part = std::sync::Arc::new(part);
        bytes += sink.export(&request).await.unwrap().bytes;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut line = format!(
        "{format}\t{rows}\t{objects}\t{seconds:.2}\t{bytes}\t{rss_before}\t{}",
        kib("VmHWM:")
    );

    if format == "per-resource" {
        let mut changed = snapshot.rows().to_vec();
        changed[rows / 2] = kollect_testkit::conformance::sample_row(&inventory, &names[rows / 2], 2).into();
        let changed = Snapshot::from_shared(changed);
        let delta = Delta::between(&snapshot, &changed);
        let request = ExportRequest::full(inventory, 1, at, changed).with_delta(delta);
        let started = Instant::now();
        let receipt = sink.export(&request).await.unwrap();
        line.push_str(&format!(
            "\t{:.3}\t{}",
            started.elapsed().as_secs_f64(),
            receipt.bytes
        ));
    }
    println!("{line}");
}
