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
    target.delete_objects(vec![path.clone()], "delete").await.unwrap();
    assert!(matches!(
        target.store().head(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
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

#[tokio::test]
async fn azure_blob_on_azurite_with_a_sas_token() {
    let Some(azurite) = azurite() else { return };
    azurite.create_container("sas").await.unwrap();
    let endpoint = format!("{}/sas/fleet", azurite.blob_endpoint());
    let token = azurite.account_sas("rwdlac").unwrap();
    let with_token = |token: &str| {
        ObjectTarget::connect(&settings(
            StoreKind::AzureBlob,
            &endpoint,
            secret(&[("sasToken", token)]),
        ))
        .unwrap()
    };
    let target = with_token(&token);
    target.probe(true).await.unwrap();
    round_trip(&target).await;

    // `ensure` mode creates a missing container with the token.
    let missing = format!("{}/{}", azurite.blob_endpoint(), fresh_bucket("sas-created"));
    created_on_first_write(
        ObjectTarget::connect(&settings(
            StoreKind::AzureBlob,
            &missing,
            secret(&[("sasToken", &token)]),
        ))
        .unwrap(),
    )
    .await;

    // A token without write permission lists but cannot write: access denied, and the
    // signature is not in the message.
    let read_only = azurite.account_sas("rl").unwrap();
    let error = with_token(&read_only).probe(true).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Forbidden, "{error}");
    let signature = read_only.rsplit("sig=").next().unwrap();
    assert!(!error.message().contains(signature), "{error}");

    // A token signed with another key is refused as credentials.
    let forged = token.replace("sig=", "sig=AAAA");
    let error = with_token(&forged).probe(false).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(!error.message().contains("sig="), "{error}");
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
pub(crate) struct Bucket {
    sink: ObjectSink,
}

impl Bucket {
    /// The rows of a per-resource layout: one object per row under `root`.
    async fn resource_rows(&self, root: &str) -> Result<Vec<Row>, String> {
        use futures::TryStreamExt;
        let objects: Vec<object_store::ObjectMeta> = self
            .sink
            .target()
            .store()
            .list(Some(&object_store::path::Path::from(root)))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for object in objects {
            let bytes = self.get(&object.location).await?.ok_or("listed, then missing")?;
            let plain = self.sink.encoding().decompress(&bytes)?;
            let row: Row = match self.sink.encoding().format {
                ObjectFormat::Document(Format::Yaml) => {
                    serde_norway::from_slice(&plain).map_err(|e| e.to_string())?
                }
                _ => serde_json::from_slice(&plain).map_err(|e| e.to_string())?,
            };
            rows.push(row);
        }
        Ok(rows)
    }

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
        if let Some(root) = pointer["root"].as_str() {
            return self.resource_rows(root).await.map(Some);
        }
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

/// The full keys of an inventory's data objects, sorted.
async fn keys_of(sink: &ObjectSink, inventory: &InventoryRef) -> Vec<String> {
    sink.objects_of(inventory)
        .await
        .unwrap()
        .iter()
        .map(|(p, _)| p.to_string())
        .collect()
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
pub(crate) async fn on_minio(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let minio = minio()?;
    let bucket = fresh_bucket("conformance");
    minio.create_bucket(&bucket).await.unwrap();
    let endpoint = format!("{}/{bucket}/fleet", minio.endpoint());
    let target = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, minio_keys())).unwrap();
    Some(pair(target, encoding))
}

/// A sink on a fresh fake-gcs-server bucket, authorised by `keys`.
async fn on_gcs_with(keys: SecretData, encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let gcs = fake_gcs()?;
    let bucket = fresh_bucket("conformance");
    gcs.create_bucket(&bucket).await.unwrap();
    let endpoint = format!("{}/{bucket}/fleet", gcs.base_url());
    let target = ObjectTarget::connect(&settings(StoreKind::Gcs, &endpoint, keys)).unwrap();
    Some(pair(target, encoding))
}

/// A sink on a fresh fake-gcs-server bucket (JSON API, service-account key).
pub(crate) async fn on_gcs(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let key = fake_gcs()?.service_account_key();
    on_gcs_with(secret(&[("credentials.json", &key)]), encoding).await
}

/// A sink on a fresh fake-gcs-server bucket through the XML API with HMAC keys (the Go
/// operator's way; the server does not check the signature).
pub(crate) async fn on_gcs_hmac(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let keys = secret(&[
        ("accessKeyID", "GOOG1EXAMPLEHMACKEY"),
        ("secretAccessKey", "hmac-secret"),
    ]);
    on_gcs_with(keys, encoding).await
}

/// A sink on a fresh Azurite container, authorised by `keys`.
async fn on_azurite_with(keys: SecretData, encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let azurite = azurite()?;
    let container = fresh_bucket("conformance");
    azurite.create_container(&container).await.unwrap();
    let endpoint = format!("{}/{container}/fleet", azurite.blob_endpoint());
    let target = ObjectTarget::connect(&settings(StoreKind::AzureBlob, &endpoint, keys)).unwrap();
    Some(pair(target, encoding))
}

/// A sink on a fresh Azurite container (account key).
pub(crate) async fn on_azurite(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    on_azurite_with(secret(&[("accountKey", Azurite::KEY)]), encoding).await
}

/// A sink on a fresh Azurite container, authorised by an account SAS token.
pub(crate) async fn on_azurite_sas(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    let token = azurite()?.account_sas("rwdlac").unwrap();
    on_azurite_with(secret(&[("sasToken", &token)]), encoding).await
}

fn per_resource(sink_and_bucket: Option<(ObjectSink, Bucket)>) -> Option<(ObjectSink, Bucket)> {
    let (sink, _) = sink_and_bucket?;
    let layout: kollect_core::api::v1alpha1::LayoutSpec =
        serde_norway::from_str("mode: perResource").unwrap();
    let sink = sink.with_layout(&layout).unwrap();
    Some((sink.clone(), Bucket { sink }))
}

/// A per-resource sink on a fresh MinIO bucket.
pub(crate) async fn resources_on_minio(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    per_resource(on_minio(encoding).await)
}

/// A per-resource sink on a fresh Azurite container.
pub(crate) async fn resources_on_azurite(encoding: Encoding) -> Option<(ObjectSink, Bucket)> {
    per_resource(on_azurite(encoding).await)
}

/// The conformance suite over one setup (like PostgreSQL's, it needs its server), for each
/// `module: setup, format, compression;` line.
macro_rules! conformance {
    ($($module:ident: $setup:ident, $format:expr, $compression:expr;)*) => {$(
        mod $module {
            use super::*;
            kollect_testkit::sink_conformance_tests!(async {
                $setup(encoding($format, $compression))
                    .await
                    .expect("the object store server (run hack/setup.sh)")
            });
        }
    )*};
}

fn json() -> ObjectFormat {
    ObjectFormat::Document(Format::Json)
}

fn ndjson() -> ObjectFormat {
    ObjectFormat::Document(Format::Ndjson)
}

fn yaml() -> ObjectFormat {
    ObjectFormat::Document(Format::Yaml)
}

fn csv() -> ObjectFormat {
    ObjectFormat::Csv
}

conformance! {
    minio_json: on_minio, json(), ObjectCompression::None;
    minio_ndjson: on_minio, ndjson(), ObjectCompression::None;
    minio_yaml: on_minio, yaml(), ObjectCompression::None;
    minio_ndjson_zstd: on_minio, ndjson(), ObjectCompression::Zstd;
    minio_csv: on_minio, csv(), ObjectCompression::None;
    minio_json_gzip: on_minio, json(), ObjectCompression::Gzip;
    minio_parquet: on_minio, parquet(PageCodec::None), ObjectCompression::None;
    minio_parquet_snappy: on_minio, parquet(PageCodec::Snappy), ObjectCompression::None;
    minio_parquet_zstd: on_minio, parquet(PageCodec::Zstd), ObjectCompression::None;
    gcs_parquet_gzip: on_gcs, parquet(PageCodec::Gzip), ObjectCompression::None;
    azurite_parquet_snappy: on_azurite, parquet(PageCodec::Snappy), ObjectCompression::None;
    minio_per_resource_json: resources_on_minio, json(), ObjectCompression::None;
    azurite_per_resource_yaml_gzip: resources_on_azurite, yaml(), ObjectCompression::Gzip;
    azurite_sas_csv: on_azurite_sas, csv(), ObjectCompression::None;
    gcs_json: on_gcs, json(), ObjectCompression::None;
    gcs_csv_gzip: on_gcs, csv(), ObjectCompression::Gzip;
    gcs_hmac_ndjson: on_gcs_hmac, ndjson(), ObjectCompression::None;
    azurite_json: on_azurite, json(), ObjectCompression::None;
    azurite_ndjson_gzip: on_azurite, ndjson(), ObjectCompression::Gzip;
}

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
    let (sink, _) = on_minio(encoding(json(), ObjectCompression::Gzip))
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
    let listed: Vec<String> = keys_of(&sink, &inventory).await;
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
    let listed: Vec<String> = keys_of(&sink, &inventory).await;
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

    // Parquet with hot attributes and retention from the spec; retention without
    // `{generation}` in the key is refused by name.
    let spec = |extra: &str| -> kollect_core::api::v1alpha1::KollectSnapshotSinkSpec {
        serde_norway::from_str(&format!(
            "type: s3\nendpoint: {}/from-spec/inv\n{extra}\n",
            minio.endpoint()
        ))
        .unwrap()
    };
    let sink = ObjectSink::from_spec(
        StoreKind::S3,
        &spec("serialization: {format: parquet, compression: snappy}\nobjectStore: {hotAttributes: [replicas], retention: {generations: 3}}"),
        &context,
    )
    .unwrap();
    assert_eq!(
        sink.preview(&request).object_path.as_deref(),
        Some("inv/inventory/cluster=default/ns=shop/name=images/generation=4.parquet")
    );
    let ObjectFormat::Parquet(layout) = &sink.encoding().format else {
        panic!("not Parquet: {:?}", sink.encoding());
    };
    assert_eq!(layout.hot_attributes()[0].column, "attr_replicas");
    let error = ObjectSink::from_spec(
        StoreKind::S3,
        &spec("serialization: {format: json}\nobjectStore: {retention: {generations: 3}}"),
        &context,
    )
    .unwrap_err();
    assert!(error.message().starts_with("objectStore.retention"), "{error}");
}

/// Exports one row with a sink that must create its bucket, and reads it back.
async fn created_on_first_write(target: ObjectTarget) {
    use kollect_core::sink::Sink;
    let (sink, bucket) = pair(target, encoding(json(), ObjectCompression::None));
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
        encoding(csv(), ObjectCompression::None),
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
            encoding(csv(), ObjectCompression::None),
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

/// A fresh MinIO bucket and a maker of uncompressed `existing`-mode sinks writing under
/// `prefix` in it.
async fn fresh_minio_bucket(label: &str, prefix: &str) -> (String, impl Fn(ObjectFormat) -> ObjectSink) {
    let minio = minio().expect("MinIO (run hack/setup.sh)");
    let bucket = fresh_bucket(label);
    minio.create_bucket(&bucket).await.unwrap();
    let endpoint = format!("{}/{bucket}{prefix}", minio.endpoint());
    let sink_of = move |format| {
        let target = ObjectTarget::connect(&settings(StoreKind::S3, &endpoint, minio_keys())).unwrap();
        ObjectSink::new(target, encoding(format, ObjectCompression::None), None, false).unwrap()
    };
    (bucket, sink_of)
}

/// The SQL block of the object store reference page that starts with `-- <marker>`, for the
/// bucket URL `url` instead of the page's example.
fn documented_query(marker: &str, url: &str) -> String {
    let page = include_str!("../../../docs/src/reference/object-stores.md");
    let start = page
        .find(&format!("```sql\n-- {marker}\n"))
        .unwrap_or_else(|| panic!("no `{marker}` query in the reference page"));
    let block = &page[start + "```sql\n".len()..];
    let end = block.find("```").unwrap();
    block[..end].replace("s3://acme-inventory/fleet", url)
}

fn rows_named(inventory: &InventoryRef, names: &[&str], version: i64) -> Vec<Row> {
    names
        .iter()
        .map(|n| kollect_testkit::conformance::sample_row(inventory, n, version))
        .collect()
}

fn generation_request(
    inventory: &InventoryRef,
    generation: i64,
    rows: Vec<Row>,
) -> kollect_core::sink::ExportRequest {
    kollect_core::sink::ExportRequest::full(
        inventory.clone(),
        generation,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + generation).unwrap(),
        kollect_core::model::Snapshot::new(rows),
    )
}

#[tokio::test]
async fn duckdb_reads_the_latest_generation_of_parquet_and_csv() {
    use kollect_core::sink::Sink;
    use kollect_testkit::backends::{DuckDb, S3Access, start_for_test};
    let Some(duckdb) = start_for_test(DuckDb::locate) else {
        return;
    };
    let minio = minio().expect("MinIO (run hack/setup.sh)");
    let (bucket, sink_of) = fresh_minio_bucket("duckdb", "/fleet").await;
    let parquet_sink = sink_of(parquet(PageCodec::Zstd));
    let csv_sink = sink_of(csv());

    let images = InventoryRef::namespaced("shop", "images").with_cluster("east");
    let tools = InventoryRef::namespaced("ops", "tools").with_cluster("east");
    for sink in [&parquet_sink, &csv_sink] {
        for request in [
            generation_request(&images, 1, rows_named(&images, &["x", "y", "z"], 1)),
            generation_request(&images, 2, rows_named(&images, &["w", "x"], 2)),
            generation_request(&tools, 1, rows_named(&tools, &["t"], 1)),
        ] {
            sink.export(&request).await.unwrap();
        }
    }
    // Parquet keeps both generations of `images` (no retention); CSV overwrote its one key.
    assert_eq!(parquet_sink.objects_of(&images).await.unwrap().len(), 2);
    assert_eq!(csv_sink.objects_of(&images).await.unwrap().len(), 1);

    let access = S3Access {
        endpoint: minio.endpoint().trim_start_matches("http://").to_owned(),
        key_id: Minio::ACCESS_KEY.to_owned(),
        secret: Minio::SECRET_KEY.to_owned(),
        region: Minio::REGION.to_owned(),
    };
    let url = format!("s3://{bucket}/fleet");
    for marker in ["latest generation: parquet", "latest generation: csv"] {
        let result = duckdb
            .query(&documented_query(marker, &url), Some(&access))
            .unwrap();
        let seen: Vec<(String, String, i64)> = result
            .rows
            .iter()
            .enumerate()
            .map(|(i, _)| {
                (
                    result.column("inventory_name")[i].as_str().unwrap().to_owned(),
                    result.column("name")[i].as_str().unwrap().to_owned(),
                    result.column("generation")[i].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("tools".to_owned(), "t".to_owned(), 1),
                ("images".to_owned(), "w".to_owned(), 2),
                ("images".to_owned(), "x".to_owned(), 2)
            ],
            "{marker}"
        );
        assert_eq!(
            result.column("cluster"),
            vec![serde_json::json!("east"); 3],
            "{marker}"
        );
    }

    // Typed columns as DuckDB sees them.
    let result = duckdb
        .query(
            &documented_query("latest generation: parquet", &url),
            Some(&access),
        )
        .unwrap();
    assert_eq!(
        result.columns[..4],
        ["api_version", "attr_image", "attr_version", "attributes"]
    );
    for (column, want) in [
        ("exported_at", "TIMESTAMP WITH TIME ZONE"),
        ("attributes", "JSON"),
        ("generation", "BIGINT"),
        ("attr_image", "VARCHAR"),
        ("group", "VARCHAR"),
    ] {
        assert_eq!(result.type_of(column), Some(want), "{column}");
    }
    assert_eq!(
        result.column("attr_image")[2],
        serde_json::json!("registry.example.com/x:2")
    );
    assert_eq!(result.column("attr_version")[2], serde_json::Value::Null);
    assert!(
        result.column("exported_at")[2]
            .as_str()
            .unwrap()
            .starts_with("2027-01-15 08:00:02"),
        "{:?}",
        result.column("exported_at")
    );
    let attributes: serde_json::Value =
        serde_json::from_str(result.column("attributes")[2].as_str().unwrap()).unwrap();
    assert_eq!(attributes["replicas"], 2);
}

#[tokio::test]
async fn retention_keeps_the_newest_generations_and_removal_takes_them_all() {
    use kollect_core::sink::Sink;
    let (_, sink_of) = fresh_minio_bucket("retention", "").await;
    let plain = sink_of(parquet(PageCodec::Snappy));
    let kept = plain.clone().with_retention(2).unwrap();
    let inventory = InventoryRef::namespaced("shop", "images");
    async fn generations(sink: &ObjectSink, inventory: &InventoryRef) -> Vec<i64> {
        let mut found: Vec<i64> = sink
            .objects_of(inventory)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(_, g)| g)
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }
    let rows = rows_named(&inventory, &["a"], 1);

    // Generation 9 is left by an earlier inventory of the same name; without retention
    // nothing is deleted.
    for generation in [9, 1, 2] {
        plain
            .export(&generation_request(&inventory, generation, rows.clone()))
            .await
            .unwrap();
    }
    assert_eq!(generations(&plain, &inventory).await, [1, 2, 9]);

    // With retention 2: the current and the newest one below it; 9 goes too.
    kept.export(&generation_request(&inventory, 3, rows.clone()))
        .await
        .unwrap();
    assert_eq!(generations(&kept, &inventory).await, [2, 3]);
    for generation in [4, 5] {
        kept.export(&generation_request(&inventory, generation, rows.clone()))
            .await
            .unwrap();
    }
    assert_eq!(generations(&kept, &inventory).await, [4, 5]);
    let listed: Vec<String> = keys_of(&kept, &inventory).await;
    assert_eq!(
        listed,
        [
            "inventory/cluster=default/ns=shop/name=images/generation=4.parquet",
            "inventory/cluster=default/ns=shop/name=images/generation=5.parquet"
        ]
    );

    kept.remove(&kollect_core::sink::RemoveRequest {
        inventory: inventory.clone(),
        generation: 5,
    })
    .await
    .unwrap();
    assert!(kept.objects_of(&inventory).await.unwrap().is_empty());

    // A key without {generation} cannot have retention.
    let error = sink_of(csv()).with_retention(2).unwrap_err();
    assert!(
        error
            .message()
            .starts_with("objectStore.retention: the object key"),
        "{error}"
    );
}

/// Every object under `root` with its ETag.
async fn etags(sink: &ObjectSink, root: &str) -> std::collections::BTreeMap<String, String> {
    use futures::TryStreamExt;
    let objects: Vec<object_store::ObjectMeta> = sink
        .target()
        .store()
        .list(Some(&object_store::path::Path::from(root)))
        .try_collect()
        .await
        .unwrap();
    objects
        .into_iter()
        .map(|o| (o.location.to_string(), o.e_tag.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_per_resource_layout_writes_only_what_a_delta_changes() {
    use kollect_core::model::{Delta, Snapshot};
    use kollect_core::sink::{ExportRequest, RemoveRequest, Sink};
    let (sink, bucket) = resources_on_minio(encoding(json(), ObjectCompression::None))
        .await
        .expect("MinIO (run hack/setup.sh)");
    assert_eq!(sink.capabilities(), kollect_core::sink::Capabilities::ROWS);
    let inventory = InventoryRef::namespaced("shop", "images").with_cluster("east");
    let names: Vec<String> = (0..50).map(|i| format!("web-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let first = Snapshot::new(rows_named(&inventory, &names, 1));
    let at = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap();
    sink.export(&ExportRequest::full(inventory.clone(), 1, at, first.clone()))
        .await
        .unwrap();
    let root = "fleet/east/inventory/shop/images/";
    let before = etags(&sink, root).await;
    assert_eq!(before.len(), 50);
    assert!(
        before.contains_key("fleet/east/inventory/shop/images/shop/deployment/web-07.json"),
        "{before:?}"
    );

    // One changed row, one deleted row: one object written, one deleted, the rest untouched.
    let mut rows = rows_named(&inventory, &names[..49], 1);
    rows[7] = kollect_testkit::conformance::sample_row(&inventory, "web-07", 2);
    let second = Snapshot::new(rows);
    let delta = Delta::between(&first, &second);
    assert_eq!((delta.upserts.len(), delta.removed.len()), (1, 1));
    sink.export(&ExportRequest::full(inventory.clone(), 1, at, second.clone()).with_delta(delta))
        .await
        .unwrap();
    let after = etags(&sink, root).await;
    assert_eq!(after.len(), 49);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, e)| before.get(*k) != Some(e))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        changed,
        ["fleet/east/inventory/shop/images/shop/deployment/web-07.json"]
    );
    assert!(!after.contains_key("fleet/east/inventory/shop/images/shop/deployment/web-49.json"));
    let mut held = bucket.rows(&inventory).await.unwrap().unwrap();
    kollect_core::model::sort_canonical(&mut held);
    assert_eq!(held, second.rows().to_vec());

    // A delta that knows only the keys of deleted rows (a change log) is applied by
    // reconciling against the snapshot.
    let third = Snapshot::from_shared(second.rows().iter().take(40).cloned().collect());
    let mut keys_only = Delta::between(&second, &third);
    keys_only.removed.clear();
    sink.export(&ExportRequest::full(inventory.clone(), 1, at, third.clone()).with_delta(keys_only))
        .await
        .unwrap();
    assert_eq!(etags(&sink, root).await.len(), 40);

    // The pointer names the root; removal takes the tree and the pointer.
    let pointer = bucket
        .get(&sink.target().path(&ObjectSink::pointer_key(&inventory)))
        .await
        .unwrap()
        .unwrap();
    let pointer: serde_json::Value = serde_json::from_slice(&pointer).unwrap();
    assert_eq!(
        (pointer["root"].as_str(), pointer["layout"].as_str()),
        (Some(root), Some("perResource"))
    );
    assert_eq!(pointer["itemCount"], 40);
    sink.remove(&RemoveRequest {
        inventory: inventory.clone(),
        generation: 1,
    })
    .await
    .unwrap();
    assert!(etags(&sink, root).await.is_empty());
    assert_eq!(bucket.rows(&inventory).await.unwrap(), None);
}

#[tokio::test]
async fn split_writes_an_index_at_the_document_key() {
    use kollect_core::sink::Sink;
    let (sink, bucket) = on_minio(encoding(json(), ObjectCompression::Gzip))
        .await
        .expect("MinIO (run hack/setup.sh)");
    let layout: kollect_core::api::v1alpha1::LayoutSpec =
        serde_norway::from_str("mode: split\nfilename: {lowercaseKind: false}").unwrap();
    let sink = sink.with_layout(&layout).unwrap();
    let inventory = InventoryRef::namespaced("shop", "images");
    sink.export(&generation_request(
        &inventory,
        3,
        rows_named(&inventory, &["a", "b"], 1),
    ))
    .await
    .unwrap();
    let index = bucket
        .get(&object_store::path::Path::from(
            "fleet/inventory/shop/images.json.gz",
        ))
        .await
        .unwrap()
        .expect("the index at the document key");
    let index: serde_json::Value =
        serde_json::from_slice(&sink.encoding().decompress(&index).unwrap()).unwrap();
    assert_eq!(
        index["paths"],
        serde_json::json!([
            "fleet/inventory/shop/images/shop/Deployment/a.json.gz",
            "fleet/inventory/shop/images/shop/Deployment/b.json.gz"
        ])
    );
    assert_eq!(index["itemCount"], 2);
    let mut held = bucket.rows(&inventory).await.unwrap().unwrap();
    kollect_core::model::sort_canonical(&mut held);
    assert_eq!(held.len(), 2);
}

#[test]
fn per_resource_layouts_refuse_what_they_cannot_do() {
    let Some(minio) = minio() else { return };
    let target = || {
        ObjectTarget::connect(&settings(
            StoreKind::S3,
            &format!("{}/b", minio.endpoint()),
            minio_keys(),
        ))
        .unwrap()
    };
    let layout =
        |yaml: &str| -> kollect_core::api::v1alpha1::LayoutSpec { serde_norway::from_str(yaml).unwrap() };
    let sink = |format: ObjectFormat, template: Option<&str>| {
        ObjectSink::new(
            target(),
            encoding(format, ObjectCompression::None),
            template.map(str::to_owned),
            false,
        )
        .unwrap()
    };
    let json = ObjectFormat::Document(Format::Json);
    for (built, want) in [
        (
            sink(parquet(PageCodec::None), None).with_layout(&layout("mode: perResource")),
            "layout.mode perResource: one object per resource is written as json, yaml or ndjson, not parquet",
        ),
        (
            sink(ObjectFormat::Csv, None).with_layout(&layout("mode: split")),
            "layout.mode split: one object per resource is written as json, yaml or ndjson, not csv",
        ),
        (
            sink(json.clone(), None).with_layout(&layout(
                "mode: perResource\npathTemplate: \"{generation}/{sourceName}\"",
            )),
            "layout.pathTemplate: {generation} cannot be part of a per-resource key",
        ),
        (
            sink(json.clone(), Some("{namespace}/{name}-{generation}{extension}"))
                .with_layout(&layout("mode: perResource")),
            "spec.pathTemplate: {generation} cannot be part of a per-resource key",
        ),
        (
            sink(json.clone(), None).with_layout(&layout("mode: document\nfilename: {lowercaseKind: false}")),
            "layout.filename applies only to layout.mode perResource or split",
        ),
        (
            sink(json.clone(), Some("{namespace}/{name}-{generation}{extension}"))
                .with_retention(2)
                .and_then(|s| s.with_layout(&layout("mode: perResource"))),
            "layout.mode: a per-resource layout cannot be combined with objectStore.retention",
        ),
    ] {
        let error = built.unwrap_err();
        assert!(error.message().starts_with(want), "{error}");
    }
    // `mode: document` alone is the default layout.
    assert!(sink(json, None).with_layout(&layout("mode: document")).is_ok());
}

/// An example manifest's Secret data (its `stringData`) and sink spec.
fn example(
    yaml: &str,
) -> (
    serde_json::Map<String, serde_json::Value>,
    kollect_core::api::v1alpha1::KollectSnapshotSinkSpec,
) {
    let mut data = serde_json::Map::new();
    let mut spec = None;
    for document in yaml.split("\n---\n") {
        let value: serde_json::Value = serde_norway::from_str(document).unwrap();
        match value["kind"].as_str() {
            Some("Secret") => data = value["stringData"].as_object().cloned().unwrap(),
            Some("KollectSnapshotSink") => {
                spec = Some(serde_json::from_value(value["spec"].clone()).unwrap())
            }
            other => panic!("unexpected document {other:?}"),
        }
    }
    (data, spec.expect("a KollectSnapshotSink"))
}

/// The example's Secret with the test server's credentials under the example's own key names.
fn example_secret(
    data: &serde_json::Map<String, serde_json::Value>,
    values: &[(&str, String)],
) -> SecretData {
    for (key, _) in values {
        assert!(data.contains_key(*key), "the example's Secret has no {key}");
    }
    assert_eq!(data.len(), values.len(), "the example's Secret keys: {data:?}");
    SecretData::new(
        values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    )
}

/// Builds the example sink against a local server (its endpoint replaced by `endpoint`),
/// exports three rows and reads them back as a consumer would.
async fn run_example(
    mut spec: kollect_core::api::v1alpha1::KollectSnapshotSinkSpec,
    kind: StoreKind,
    endpoint: String,
    secret: SecretData,
) -> ObjectSink {
    use kollect_core::sink::Sink;
    spec.common.endpoint = Some(endpoint);
    let context = kollect_sinks::BuildContext::new("platform/example", NetPolicy::permissive_for_tests())
        .with_secret(secret);
    let sink = ObjectSink::from_spec(kind, &spec, &context).unwrap();
    let inventory =
        InventoryRef::namespaced("platform", "workloads").with_cluster(spec.common.cluster.clone().unwrap());
    let rows = rows_named(&inventory, &["api", "web", "worker"], 1);
    sink.export(&generation_request(&inventory, 2, rows.clone()))
        .await
        .unwrap();
    let bucket = Bucket { sink: sink.clone() };
    let mut held = bucket.rows(&inventory).await.unwrap().unwrap();
    kollect_core::model::sort_canonical(&mut held);
    assert_eq!(held, rows);
    // After the first write (which creates a missing bucket in `ensure` mode: fake-gcs-server
    // answers a listing of a missing bucket with 500, so a probe cannot tell first).
    sink.probe().await.unwrap();
    sink
}

#[tokio::test]
async fn the_example_manifests_run_against_the_test_servers() {
    use kollect_core::sink::Sink;
    let minio = minio().expect("MinIO (run hack/setup.sh)");
    let (data, mut spec) = example(include_str!("../../../examples/object-stores/s3.yaml"));
    minio.create_bucket("acme-inventory").await.unwrap();
    // MinIO signs for its own region.
    spec.common.options.insert("region".into(), Minio::REGION.into());
    let secret = example_secret(
        &data,
        &[
            ("accessKeyID", Minio::ACCESS_KEY.to_owned()),
            ("secretAccessKey", Minio::SECRET_KEY.to_owned()),
        ],
    );
    let sink = run_example(
        spec,
        StoreKind::S3,
        format!("{}/acme-inventory/fleet", minio.endpoint()),
        secret,
    )
    .await;
    let ObjectFormat::Parquet(layout) = &sink.encoding().format else {
        panic!("the S3 example writes Parquet");
    };
    assert_eq!(layout.codec(), PageCodec::Zstd);
    assert_eq!(
        sink.objects_of(&InventoryRef::namespaced("platform", "workloads").with_cluster("prod-eu-1"))
            .await
            .unwrap()
            .iter()
            .map(|(p, _)| p.to_string())
            .collect::<Vec<_>>(),
        ["fleet/inventory/cluster=prod-eu-1/ns=platform/name=workloads/generation=2.parquet"]
    );

    let gcs = fake_gcs().expect("fake-gcs-server (run hack/setup.sh)");
    let (data, spec) = example(include_str!("../../../examples/object-stores/gcs.yaml"));
    let mut key: serde_json::Value = serde_json::from_str(&gcs.service_account_key()).unwrap();
    key["project_id"] = "acme-platform".into();
    let secret = example_secret(&data, &[("credentials.json", key.to_string())]);
    // `provisioning.mode: ensure`: the bucket does not exist yet.
    let bucket = fresh_bucket("acme-inventory");
    run_example(
        spec,
        StoreKind::Gcs,
        format!("{}/{bucket}/fleet", gcs.base_url()),
        secret,
    )
    .await;

    let azurite = azurite().expect("Azurite (run hack/setup.sh)");
    let (data, spec) = example(include_str!("../../../examples/object-stores/azureblob.yaml"));
    let container = fresh_bucket("inventory");
    azurite.create_container(&container).await.unwrap();
    let secret = example_secret(
        &data,
        &[
            ("accountName", Azurite::ACCOUNT.to_owned()),
            ("sasToken", azurite.account_sas("rwdlac").unwrap()),
        ],
    );
    let sink = run_example(
        spec,
        StoreKind::AzureBlob,
        format!("{}/{container}/fleet", azurite.blob_endpoint()),
        secret,
    )
    .await;
    assert_eq!(sink.capabilities(), kollect_core::sink::Capabilities::ROWS);
}

#[test]
fn the_store_pages_show_the_example_manifests() {
    for (page, manifest) in [
        (
            include_str!("../../../docs/src/reference/s3.md"),
            include_str!("../../../examples/object-stores/s3.yaml"),
        ),
        (
            include_str!("../../../docs/src/reference/gcs.md"),
            include_str!("../../../examples/object-stores/gcs.yaml"),
        ),
        (
            include_str!("../../../docs/src/reference/azure-blob.md"),
            include_str!("../../../examples/object-stores/azureblob.yaml"),
        ),
    ] {
        assert!(
            page.contains(&format!("```yaml\n{manifest}```")),
            "a store page no longer shows its example manifest as it is:\n{manifest}"
        );
    }
}
