//! The object store transport against real servers: MinIO (S3), fake-gcs-server (GCS) and
//! Azurite (Azure Blob). Credentials, probes, error classes and the SSRF guard at dial time.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::OnceLock;

use async_trait::async_trait;
use kollect_core::netguard::{GuardedResolver, NetPolicy, Resolve};
use kollect_core::sink::{ErrorClass, SinkError};
use kollect_sinks::SecretData;
use kollect_sinks::object::{ClientSettings, Location, ObjectTarget, StoreKind, client};
use kollect_testkit::backends::{self, Azurite, FakeGcs, Minio};
use object_store::ObjectStoreExt;

fn minio() -> Option<&'static Minio> {
    static SERVER: OnceLock<Option<Minio>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(Minio::start))
        .as_ref()
}

fn fake_gcs() -> Option<&'static FakeGcs> {
    static SERVER: OnceLock<Option<FakeGcs>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(FakeGcs::start))
        .as_ref()
}

fn azurite() -> Option<&'static Azurite> {
    static SERVER: OnceLock<Option<Azurite>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(Azurite::start))
        .as_ref()
}

fn secret(pairs: &[(&str, &str)]) -> SecretData {
    SecretData::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    )
}

fn settings(kind: StoreKind, endpoint: &str, secret: SecretData) -> ClientSettings {
    ClientSettings {
        location: Location::parse(kind, endpoint).unwrap(),
        secret,
        ca_pem: None,
        insecure_skip_verify: false,
        region: None,
        policy: NetPolicy::permissive_for_tests(),
    }
}

fn minio_keys() -> SecretData {
    secret(&[
        ("accessKeyID", Minio::ACCESS_KEY),
        ("secretAccessKey", Minio::SECRET_KEY),
    ])
}

async fn round_trip(target: &ObjectTarget) {
    let path = target.path("inventory/check.json");
    target
        .store()
        .put(&path, object_store::PutPayload::from_static(b"{}"))
        .await
        .unwrap();
    let bytes = target.store().get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"{}");
    target.store().delete(&path).await.unwrap();
}

fn assert_error(error: &SinkError, class: ErrorClass, contains: &str) {
    assert_eq!(error.class(), class, "{error}");
    assert!(error.message().contains(contains), "{error}");
}

#[tokio::test]
async fn s3_on_minio_probes_writes_and_classifies_errors() {
    let Some(minio) = minio() else { return };
    minio.create_bucket("probe").await.unwrap();
    let endpoint = format!("{}/probe/fleet-a", minio.endpoint());
    let target = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, minio_keys())).unwrap();
    assert_eq!(target.path("x.json").as_ref(), "fleet-a/x.json");
    let report = target.probe(true).await.unwrap();
    assert_eq!(
        report.message,
        "s3 bucket probe is reachable and listable; a marker object was written and deleted"
    );
    round_trip(&target).await;

    // A wrong secret key: terminal, and neither key appears in the message.
    let wrong = secret(&[
        ("accessKeyID", Minio::ACCESS_KEY),
        ("secretAccessKey", "not-the-secret"),
    ]);
    let error = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, wrong))
        .unwrap()
        .probe(false)
        .await
        .unwrap_err();
    assert_error(
        &error,
        ErrorClass::Terminal,
        "s3 list: the credentials were refused by the store",
    );
    assert!(!error.message().contains("not-the-secret") && !error.message().contains(Minio::ACCESS_KEY));

    // A bucket that does not exist.
    let missing = format!("{}/nope", minio.endpoint());
    let error = ObjectTarget::connect(&settings(StoreKind::S3, &missing, minio_keys()))
        .unwrap()
        .probe(false)
        .await
        .unwrap_err();
    assert_error(
        &error,
        ErrorClass::Terminal,
        "s3 list: bucket nope does not exist",
    );

    // Half a key pair is refused before anything is contacted.
    let half = secret(&[("AWS_ACCESS_KEY_ID", Minio::ACCESS_KEY)]);
    let error = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, half)).unwrap_err();
    assert_error(
        &error,
        ErrorClass::Terminal,
        "s3: the Secret has an access key id but no secret key (secretAccessKey or AWS_SECRET_ACCESS_KEY)",
    );
}

/// Resolves every name to one address, standing in for DNS.
#[derive(Debug, Clone)]
struct PointsAt(IpAddr);

#[async_trait]
impl Resolve for PointsAt {
    async fn lookup(&self, _host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        Ok(vec![self.0])
    }
}

#[tokio::test]
async fn the_ssrf_guard_refuses_denied_addresses_at_dial_time() {
    let Some(minio) = minio() else { return };
    minio.create_bucket("guarded").await.unwrap();
    let port = minio.endpoint().rsplit(':').next().unwrap().to_owned();
    // A name that passes the admission check and resolves to loopback when dialled.
    let mut s = settings(
        StoreKind::S3,
        &format!("http://store.example.test:{port}/guarded"),
        minio_keys(),
    );
    s.policy = NetPolicy::new(false);
    let resolver = GuardedResolver::with_resolver(s.policy, PointsAt("127.0.0.1".parse().unwrap()));
    let target = ObjectTarget::new(&s, client::build_with_resolver(&s, resolver).unwrap());
    let error = target.probe(false).await.unwrap_err();
    assert_error(&error, ErrorClass::Terminal, "s3 list: ");
    assert!(error.message().contains("127.0.0.1"), "{error}");

    // The same server through a name resolving to it is fine under a policy that allows it.
    let permissive = GuardedResolver::with_resolver(
        NetPolicy::permissive_for_tests(),
        PointsAt("127.0.0.1".parse().unwrap()),
    );
    s.policy = NetPolicy::permissive_for_tests();
    let target = ObjectTarget::new(&s, client::build_with_resolver(&s, permissive).unwrap());
    target.probe(true).await.unwrap();

    // A literal address never reaches a resolver: it is refused when the client is built.
    let mut literal = settings(
        StoreKind::S3,
        &format!("{}/guarded", minio.endpoint()),
        minio_keys(),
    );
    literal.policy = NetPolicy::new(false);
    let error = ObjectTarget::connect(&literal).unwrap_err();
    assert_error(&error, ErrorClass::Terminal, "spec.endpoint: ");
}

#[tokio::test]
async fn gcs_json_api_with_a_service_account_key() {
    let Some(gcs) = fake_gcs() else { return };
    gcs.create_bucket("probe").await.unwrap();
    let endpoint = format!("{}/probe/fleet", gcs.base_url());
    let keys = secret(&[("credentials.json", &gcs.service_account_key())]);
    let target = ObjectTarget::connect(&settings(StoreKind::Gcs, &endpoint, keys)).unwrap();
    let report = target.probe(true).await.unwrap();
    assert!(
        report.message.starts_with("gcs bucket probe is reachable"),
        "{}",
        report.message
    );
    round_trip(&target).await;

    let missing = format!("{}/nope", gcs.base_url());
    let keys = secret(&[("credentials.json", &gcs.service_account_key())]);
    let error = ObjectTarget::connect(&settings(StoreKind::Gcs, &missing, keys))
        .unwrap()
        .probe(false)
        .await
        .unwrap_err();
    // fake-gcs-server answers a list of a missing bucket with 500 (GCS answers 404
    // NoSuchBucket, classified as for S3): a server error, so transient.
    assert_error(&error, ErrorClass::Transient, "gcs list: ");
}

#[tokio::test]
async fn azure_blob_on_azurite_with_an_account_key() {
    let Some(azurite) = azurite() else { return };
    azurite.create_container("probe").await.unwrap();
    let endpoint = format!("{}/probe/fleet", azurite.blob_endpoint());
    let keys = secret(&[("accountKey", Azurite::KEY)]);
    let target = ObjectTarget::connect(&settings(StoreKind::AzureBlob, &endpoint, keys)).unwrap();
    assert_eq!(target.location().account.as_deref(), Some(Azurite::ACCOUNT));
    let report = target.probe(true).await.unwrap();
    assert!(
        report
            .message
            .starts_with("azureblob container probe is reachable"),
        "{}",
        report.message
    );
    round_trip(&target).await;

    // Another account's key: refused, and the key is not in the message.
    let other = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3RoZXIta2V5LW90aGVyLWtleQ==";
    let error = ObjectTarget::connect(&settings(
        StoreKind::AzureBlob,
        &endpoint,
        secret(&[("accountKey", other)]),
    ))
    .unwrap()
    .probe(false)
    .await
    .unwrap_err();
    assert_error(
        &error,
        ErrorClass::Terminal,
        "azureblob list: the credentials were refused by the store",
    );
    assert!(!error.message().contains(other));

    let missing = format!("{}/nope", azurite.blob_endpoint());
    let error = ObjectTarget::connect(&settings(
        StoreKind::AzureBlob,
        &missing,
        secret(&[("accountKey", Azurite::KEY)]),
    ))
    .unwrap()
    .probe(false)
    .await
    .unwrap_err();
    assert_error(
        &error,
        ErrorClass::Terminal,
        "azureblob list: container nope does not exist",
    );
}

// ------------------------------------------------------------------------------------------
// The sink: conformance suite on each server, formats and compression read back, the pointer.
// ------------------------------------------------------------------------------------------

use kollect_core::model::Row;
use kollect_core::sink::InventoryRef;
use kollect_sinks::format::Format;
use kollect_sinks::object::parquet::{PageCodec, ParquetLayout};
use kollect_sinks::object::{Encoding, ObjectCompression, ObjectFormat, ObjectSink};
use kollect_testkit::conformance::Inspect;

/// Reads an inventory back as a consumer does: the objects its `latest` pointer names, in
/// order. The pointer must name exactly the data objects of its generation in the bucket.
pub struct Bucket {
    sink: ObjectSink,
}

impl Bucket {
    async fn get(&self, path: &object_store::path::Path) -> Result<Option<bytes::Bytes>, String> {
        match self.sink.target().store().get(path).await {
            Ok(got) => got.bytes().await.map(Some).map_err(|e| e.to_string()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[async_trait]
impl Inspect for Bucket {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let pointer_path = self.sink.target().path(&ObjectSink::pointer_key(inventory));
        let listed = self.sink.objects_of(inventory).await.map_err(|e| e.to_string())?;
        let Some(pointer) = self.get(&pointer_path).await? else {
            return if listed.is_empty() {
                Ok(None)
            } else {
                Err(format!("no pointer, but objects {listed:?}"))
            };
        };
        let pointer: serde_json::Value = serde_json::from_slice(&pointer).map_err(|e| e.to_string())?;
        let named: Vec<String> =
            serde_json::from_value(pointer["objects"].clone()).map_err(|e| e.to_string())?;
        let generation = pointer["generation"].as_i64();
        let present: Vec<String> = listed
            .iter()
            .filter(|(_, g)| g.is_none() || *g == generation)
            .map(|(p, _)| p.to_string())
            .collect();
        if present != named {
            return Err(format!(
                "the pointer names {named:?}, the bucket holds {present:?}"
            ));
        }
        let mut rows = Vec::new();
        for object in &named {
            let bytes = self
                .get(&object_store::path::Path::from(object.as_str()))
                .await?
                .ok_or_else(|| format!("the pointer names the missing object {object}"))?;
            rows.extend(self.sink.encoding().read_rows(&bytes)?);
        }
        Ok(Some(rows))
    }
}

/// A bucket name no other test of this binary uses.
fn fresh_bucket(label: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{label}-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn encoding(format: ObjectFormat, compression: ObjectCompression) -> Encoding {
    Encoding { format, compression }
}

fn parquet(codec: PageCodec) -> ObjectFormat {
    ObjectFormat::Parquet(ParquetLayout::new(&[], codec).unwrap())
}

fn pair(target: ObjectTarget, encoding: Encoding) -> (ObjectSink, Bucket) {
    let sink = ObjectSink::new(target, encoding, None, true).unwrap();
    (sink.clone(), Bucket { sink })
}

/// A sink on a fresh MinIO bucket, with a key prefix.
pub async fn on_minio(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let minio = minio()?;
    let bucket = fresh_bucket("conformance");
    minio.create_bucket(&bucket).await.unwrap();
    let endpoint = format!("{}/{bucket}/fleet", minio.endpoint());
    let target = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, minio_keys())).unwrap();
    Some(pair(target, encoding))
}

/// A sink on a fresh fake-gcs-server bucket (JSON API, service-account key).
pub async fn on_gcs(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let gcs = fake_gcs()?;
    let bucket = fresh_bucket("conformance");
    gcs.create_bucket(&bucket).await.unwrap();
    let keys = secret(&[("credentials.json", &gcs.service_account_key())]);
    let target = ObjectTarget::connect(&settings(
        StoreKind::Gcs,
        &format!("{}/{bucket}", gcs.base_url()),
        keys,
    ))
    .unwrap();
    Some(pair(target, encoding))
}

/// A sink on a fresh Azurite container (account key).
pub async fn on_azurite(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let azurite = azurite()?;
    let container = fresh_bucket("conformance");
    azurite.create_container(&container).await.unwrap();
    let endpoint = format!("{}/{container}/fleet", azurite.blob_endpoint());
    let target = ObjectTarget::connect(&settings(
        StoreKind::AzureBlob,
        &endpoint,
        secret(&[("accountKey", Azurite::KEY)]),
    ))
    .unwrap();
    Some(pair(target, encoding))
}

/// The conformance suite over one setup (like PostgreSQL's, it needs its server).
macro_rules! conformance {
    ($module:ident, $setup:ident, $format:expr, $compression:expr) => {
        mod $module {
            use super::*;
            kollect_testkit::sink_conformance_tests!(async {
                $setup(encoding($format, $compression))
                    .await
                    .expect("the object store server (run hack/setup.sh)")
            });
        }
    };
}

conformance!(
    minio_json,
    on_minio,
    ObjectFormat::Document(Format::Json),
    ObjectCompression::None
);
conformance!(
    minio_ndjson,
    on_minio,
    ObjectFormat::Document(Format::Ndjson),
    ObjectCompression::None
);
conformance!(
    minio_yaml,
    on_minio,
    ObjectFormat::Document(Format::Yaml),
    ObjectCompression::None
);
conformance!(
    minio_ndjson_zstd,
    on_minio,
    ObjectFormat::Document(Format::Ndjson),
    ObjectCompression::Zstd
);
conformance!(minio_csv, on_minio, ObjectFormat::Csv, ObjectCompression::None);
conformance!(
    minio_json_gzip,
    on_minio,
    ObjectFormat::Document(Format::Json),
    ObjectCompression::Gzip
);
conformance!(
    minio_parquet,
    on_minio,
    parquet(PageCodec::None),
    ObjectCompression::None
);
conformance!(
    minio_parquet_snappy,
    on_minio,
    parquet(PageCodec::Snappy),
    ObjectCompression::None
);
conformance!(
    minio_parquet_zstd,
    on_minio,
    parquet(PageCodec::Zstd),
    ObjectCompression::None
);
conformance!(
    gcs_parquet_gzip,
    on_gcs,
    parquet(PageCodec::Gzip),
    ObjectCompression::None
);
conformance!(
    azurite_parquet_snappy,
    on_azurite,
    parquet(PageCodec::Snappy),
    ObjectCompression::None
);
conformance!(
    gcs_json,
    on_gcs,
    ObjectFormat::Document(Format::Json),
    ObjectCompression::None
);
conformance!(gcs_csv_gzip, on_gcs, ObjectFormat::Csv, ObjectCompression::Gzip);
conformance!(
    azurite_json,
    on_azurite,
    ObjectFormat::Document(Format::Json),
    ObjectCompression::None
);
conformance!(
    azurite_ndjson_gzip,
    on_azurite,
    ObjectFormat::Document(Format::Ndjson),
    ObjectCompression::Gzip
);

fn request_of(inventory: &InventoryRef, names: &[String]) -> kollect_core::sink::ExportRequest {
    kollect_core::sink::ExportRequest::full(
        inventory.clone(),
        4,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        kollect_core::model::Snapshot::new(
            names
                .iter()
                .map(|n| kollect_testkit::conformance::sample_row(inventory, n, 1))
                .collect(),
        ),
    )
}

#[tokio::test]
async fn the_latest_pointer_names_exactly_the_objects_of_the_last_export() {
    use kollect_core::sink::Sink;
    let (sink, _) = on_minio(encoding(
        ObjectFormat::Document(Format::Json),
        ObjectCompression::Gzip,
    ))
    .await
    .expect("MinIO (run hack/setup.sh)");
    let inventory = InventoryRef::namespaced("shop", "images").with_cluster("east");
    let names: Vec<String> = (0..60).map(|i| format!("deployment-{i:02}")).collect();

    // Three parts, then one: the pointer follows, and the parts are gone.
    let whole = request_of(&inventory, &names);
    let meta = whole.meta();
    let parts = kollect_core::model::partition(&whole.snapshot, &meta, Some(4096))
        .unwrap()
        .parts;
    assert!(parts.len() >= 3);
    for part in parts {
        let mut request = whole.clone();
        request.part = std::sync::Arc::new(part);
        sink.export(&request).await.unwrap();
    }
    let pointer_path = sink.target().path(&ObjectSink::pointer_key(&inventory));
    let read_pointer = || async {
        let got = sink.target().store().get(&pointer_path).await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&got.bytes().await.unwrap()).unwrap()
    };
    let pointer = read_pointer().await;
    let listed: Vec<String> = sink
        .objects_of(&inventory)
        .await
        .unwrap()
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(pointer["objects"], serde_json::json!(listed));
    assert!(
        listed[0].starts_with("fleet/east/inventory/shop/images.part-0001-of-"),
        "{listed:?}"
    );
    assert!(listed[0].ends_with(".json.gz"), "{listed:?}");
    assert_eq!(pointer["schemaVersion"], kollect_sinks::object::POINTER_SCHEMA);
    assert_eq!(pointer["checksum"], whole.snapshot.fingerprint().as_str());
    assert_eq!(
        (pointer["itemCount"].as_u64(), pointer["generation"].as_i64()),
        (Some(60), Some(4))
    );
    assert_eq!(
        (pointer["format"].as_str(), pointer["compression"].as_str()),
        (Some("json"), Some("gzip"))
    );

    sink.export(&request_of(&inventory, &names[..2])).await.unwrap();
    let pointer = read_pointer().await;
    assert_eq!(
        pointer["objects"],
        serde_json::json!(["fleet/east/inventory/shop/images.json.gz"])
    );
    let listed: Vec<String> = sink
        .objects_of(&inventory)
        .await
        .unwrap()
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(listed, ["fleet/east/inventory/shop/images.json.gz"]);

    // Content-Type and Content-Encoding are set on the data object.
    let got = sink
        .target()
        .store()
        .get(&object_store::path::Path::from(listed[0].as_str()))
        .await
        .unwrap();
    assert_eq!(
        got.attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("application/json")
    );
    assert_eq!(
        got.attributes
            .get(&object_store::Attribute::ContentEncoding)
            .map(|v| v.as_ref()),
        Some("gzip")
    );

    // Removal takes the data and the pointer.
    sink.remove(&kollect_core::sink::RemoveRequest {
        inventory: inventory.clone(),
        generation: 4,
    })
    .await
    .unwrap();
    assert!(sink.objects_of(&inventory).await.unwrap().is_empty());
    assert!(matches!(
        sink.target().store().head(&pointer_path).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_sink_from_its_spec_and_build_context() {
    use kollect_core::sink::Sink;
    let minio = minio().expect("MinIO (run hack/setup.sh)");
    minio.create_bucket("from-spec").await.unwrap();
    let spec: kollect_core::api::v1alpha1::KollectSnapshotSinkSpec = serde_norway::from_str(&format!(
        "type: s3\nendpoint: {}/from-spec/inv\noptions: {{region: us-east-1}}\nserialization: {{format: ndjson}}\nprovisioning: {{mode: existing}}\n",
        minio.endpoint()
    ))
    .unwrap();
    let context = kollect_sinks::BuildContext::new("ns/s3", NetPolicy::permissive_for_tests())
        .with_secret(minio_keys());
    let sink = ObjectSink::from_spec(StoreKind::S3, &spec, &context).unwrap();
    assert_eq!(sink.sink_type(), "s3");
    assert_eq!(sink.encoding().extension(), ".ndjson");
    // `existing`: the probe lists, and writes nothing.
    let report = sink.probe().await.unwrap();
    assert_eq!(report.message, "s3 bucket from-spec is reachable and listable");
    let request = request_of(&InventoryRef::namespaced("shop", "images"), &["web".to_owned()]);
    assert_eq!(
        sink.preview(&request).object_path.as_deref(),
        Some("inv/inventory/shop/images.ndjson")
    );
}

/// Exports one row with a sink that must create its bucket, and reads it back.
async fn created_on_first_write(target: ObjectTarget) {
    use kollect_core::sink::Sink;
    let (sink, bucket) = pair(
        target,
        encoding(ObjectFormat::Document(Format::Json), ObjectCompression::None),
    );
    let inventory = InventoryRef::namespaced("shop", "created");
    sink.export(&request_of(&inventory, &["web".to_owned()]))
        .await
        .unwrap();
    let rows = bucket.rows(&inventory).await.unwrap().unwrap();
    assert_eq!(rows.len(), 1);
    // A second sink finds it there: a probe in ensure mode does not fail on "already exists".
    sink.probe().await.unwrap();
}

#[tokio::test]
async fn ensure_mode_creates_missing_buckets_and_existing_mode_does_not() {
    use kollect_core::sink::Sink;
    let minio = minio().expect("MinIO (run hack/setup.sh)");
    let endpoint = format!("{}/{}", minio.endpoint(), fresh_bucket("created"));
    let target = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, minio_keys())).unwrap();
    // `existing`: the missing bucket is an error, and nothing is created.
    let existing = ObjectSink::new(
        target.clone(),
        encoding(ObjectFormat::Csv, ObjectCompression::None),
        None,
        false,
    )
    .unwrap();
    let error = existing
        .export(&request_of(
            &InventoryRef::namespaced("shop", "x"),
            &["web".to_owned()],
        ))
        .await
        .unwrap_err();
    assert_error(
        &error,
        ErrorClass::Terminal,
        "does not exist or these credentials cannot see it",
    );
    assert!(
        ObjectSink::new(
            target.clone(),
            encoding(ObjectFormat::Csv, ObjectCompression::None),
            None,
            false
        )
        .unwrap()
        .probe()
        .await
        .is_err()
    );
    created_on_first_write(target).await;

    let azurite = azurite().expect("Azurite (run hack/setup.sh)");
    let endpoint = format!("{}/{}", azurite.blob_endpoint(), fresh_bucket("created"));
    let keys = secret(&[("accountKey", Azurite::KEY)]);
    created_on_first_write(ObjectTarget::connect(&settings(StoreKind::AzureBlob, &endpoint, keys)).unwrap())
        .await;

    let gcs = fake_gcs().expect("fake-gcs-server (run hack/setup.sh)");
    let mut key: serde_json::Value = serde_json::from_str(&gcs.service_account_key()).unwrap();
    key["project_id"] = "kollect-test".into();
    let endpoint = format!("{}/{}", gcs.base_url(), fresh_bucket("created"));
    let keys = secret(&[("credentials.json", &key.to_string())]);
    created_on_first_write(ObjectTarget::connect(&settings(StoreKind::Gcs, &endpoint, keys)).unwrap()).await;
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_given() {
    let pki = kollect_testkit::pki::serving_pki("minio").unwrap();
    let Some(minio) = backends::start_for_test(|| Minio::start_tls(&pki)) else {
        return;
    };
    let endpoint = format!("{}/tls/fleet", minio.endpoint());
    let mut with_ca = settings(StoreKind::S3, &endpoint, minio_keys());
    with_ca.ca_pem = Some(pki.ca_pem.clone());
    let target = ObjectTarget::connect(&with_ca).unwrap();
    // MinIO answers 503 for a moment after its port opens: wait until it creates the bucket.
    let mut created = Err(SinkError::transient("not tried"));
    for _ in 0..100 {
        created = target.ensure_bucket().await;
        if created.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    created.unwrap();
    target.probe(true).await.unwrap();
    round_trip(&target).await;

    // Without the CA the certificate is unknown; with insecureSkipVerify it is not checked.
    let without = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, minio_keys())).unwrap();
    let error = without.probe(false).await.unwrap_err();
    assert!(error.message().starts_with("s3 list: "), "{error}");
    assert_error(
        &error,
        ErrorClass::Terminal,
        "the store's TLS certificate is not trusted",
    );
    assert!(error.message().contains("UnknownIssuer"), "{error}");
    let mut insecure = settings(StoreKind::S3, &endpoint, minio_keys());
    insecure.insecure_skip_verify = true;
    ObjectTarget::connect(&insecure)
        .unwrap()
        .probe(false)
        .await
        .unwrap();
}
