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
