//! The MongoDB sink against a real MongoDB-wire server (FerretDB): the conformance suite, with
//! rows deleted and with soft deletes, and the database-specific behaviour.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::TryStreamExt;
use kollect_core::api::v1alpha1::{DeletedRows, ProvisioningMode};
use kollect_core::model::{Delta, Row, RowKey, Snapshot};
use kollect_core::netguard::{GuardedResolver, NetPolicy};
use kollect_core::sink::{ErrorClass, ExportRequest, InventoryRef, RemoveRequest, Sink};
use kollect_sinks::mongodb::{MongodbConfig, MongodbSink};
use kollect_testkit::backends::{self, FERRETDB_PASSWORD, FerretDb, FerretDbOptions};
use kollect_testkit::conformance::{Inspect, sample_row};
use mongodb::bson::{Bson, Document, doc};

/// One server per test binary; tests use their own collections.
fn server() -> Option<&'static FerretDb> {
    static SERVER: OnceLock<Option<FerretDb>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(FerretDb::start))
        .as_ref()
}

fn permissive() -> GuardedResolver {
    GuardedResolver::new(NetPolicy::permissive_for_tests())
}

fn config(uri: &str, collection: &str) -> MongodbConfig {
    MongodbConfig::new(uri, "kollect", collection, permissive())
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn collection(uri: &str, name: &str) -> mongodb::Collection<Document> {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database("kollect")
        .collection(name)
}

async fn documents(uri: &str, name: &str, filter: Document) -> Vec<Document> {
    collection(uri, name)
        .await
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// How many documents of `collection` match `filter`.
async fn count(collection: &mongodb::Collection<Document>, filter: Document) -> u64 {
    collection.count_documents(filter).await.unwrap()
}

/// Reads an inventory's live documents back.
pub(crate) struct Collection {
    uri: String,
    name: String,
}

#[async_trait]
impl Inspect for Collection {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let filter = doc! {
            "inventory_namespace": inventory.path_namespace(),
            "inventory_name": &inventory.name,
            "cluster": &inventory.cluster,
            "deleted_at": Bson::Null,
        };
        let found = documents(&self.uri, &self.name, filter).await;
        found
            .into_iter()
            .map(|d| {
                let payload = d.get("payload").cloned().ok_or("a document without payload")?;
                serde_json::from_value::<Row>(payload.into_relaxed_extjson()).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

async fn setup_with(deleted_rows: DeletedRows) -> (MongodbSink, Collection) {
    let ferret = server().expect("FerretDB (run hack/setup.sh)");
    let name = unique("conformance");
    let sink = MongodbSink::new(config(&ferret.uri(), &name).with_deleted_rows(deleted_rows)).unwrap();
    (
        sink,
        Collection {
            uri: ferret.uri(),
            name,
        },
    )
}

pub(crate) async fn setup() -> (MongodbSink, Collection) {
    setup_with(DeletedRows::Delete).await
}

kollect_testkit::sink_conformance_tests!(setup());

/// The same suite when vanished objects are kept as soft-deleted documents.
mod soft_delete {
    use super::*;

    kollect_testkit::sink_conformance_tests!(setup_with(DeletedRows::SoftDelete));
}

fn request(inventory: &InventoryRef, names: &[String], version: i64) -> ExportRequest {
    request_at(inventory, names, version, 1_800_000_000)
}

fn request_at(inventory: &InventoryRef, names: &[String], version: i64, second: i64) -> ExportRequest {
    ExportRequest::full(
        inventory.clone(),
        1,
        k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
        Snapshot::new(names.iter().map(|n| sample_row(inventory, n, version)).collect()),
    )
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("obj-{i:05}")).collect()
}

#[tokio::test]
async fn payload_numbers_keep_their_integer_type() {
    let Some(ferret) = server() else { return };
    let name = unique("numbers");
    let sink = MongodbSink::new(config(&ferret.uri(), &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request(&inventory, &names(1), 3)).await.unwrap();
    let found = documents(&ferret.uri(), &name, doc! {}).await;
    assert_eq!(found.len(), 1);
    let attributes = found[0]
        .get_document("payload")
        .unwrap()
        .get_document("attributes")
        .unwrap();
    assert_eq!(attributes.get("replicas"), Some(&Bson::Int64(3)), "{attributes}");
    assert_eq!(found[0].get_str("resource_namespace").unwrap(), "shop");
    assert!(matches!(found[0].get("exported_at"), Some(Bson::DateTime(_))));
}

#[tokio::test]
async fn a_delta_writes_only_the_changed_documents() {
    let Some(ferret) = server() else { return };
    let name = unique("delta");
    let sink = MongodbSink::new(config(&ferret.uri(), &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let first = request_at(&inventory, &names(3), 1, 1_800_000_000);
    sink.export(&first).await.unwrap();
    // obj-00001 changes, obj-00002 disappears, obj-00000 stays as it was.
    let mut next_rows = first.snapshot.rows().to_vec();
    next_rows[1] = sample_row(&inventory, "obj-00001", 2).into();
    next_rows.truncate(2);
    let next = Snapshot::from_shared(next_rows);
    let delta = Delta::between(&first.snapshot, &next);
    assert_eq!((delta.upserts.len(), delta.deletes.len()), (1, 1));
    let later = ExportRequest::full(
        inventory.clone(),
        1,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_600).unwrap(),
        next,
    )
    .with_delta(delta);
    sink.export(&later).await.unwrap();
    let found = documents(&ferret.uri(), &name, doc! {}).await;
    let exported: Vec<(String, i64)> = found
        .iter()
        .map(|d| {
            (
                d.get_document("payload")
                    .unwrap()
                    .get_str("name")
                    .unwrap()
                    .to_owned(),
                d.get_datetime("exported_at").unwrap().timestamp_millis() / 1000,
            )
        })
        .collect();
    let mut exported = exported;
    exported.sort();
    assert_eq!(
        exported,
        [
            ("obj-00000".to_owned(), 1_800_000_000),
            ("obj-00001".to_owned(), 1_800_000_600)
        ],
        "the unchanged document keeps its export time: it was not rewritten"
    );
}

/// Rows of about 100 KiB each: 120 of them exceed one command's 8 MiB.
fn large_request(inventory: &InventoryRef, n: usize, version: i64) -> ExportRequest {
    let rows = names(n)
        .iter()
        .map(|name| {
            let mut row = sample_row(inventory, name, version);
            let mut attributes = row.attributes.take().unwrap_or_default();
            attributes.insert(
                "blob".to_owned(),
                serde_json::Value::String("x".repeat(100 * 1024)),
            );
            row.attributes = Some(attributes);
            row
        })
        .collect();
    ExportRequest::full(
        inventory.clone(),
        1,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        Snapshot::new(rows),
    )
}

#[tokio::test]
async fn large_exports_go_in_several_commands_and_stale_ones_leave() {
    let Some(ferret) = server() else { return };
    let name = unique("bulk");
    let sink = MongodbSink::new(config(&ferret.uri(), &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&large_request(&inventory, 120, 1)).await.unwrap();
    let coll = collection(&ferret.uri(), &name).await;
    assert_eq!(count(&coll, doc! {}).await, 120);
    sink.export(&large_request(&inventory, 70, 2)).await.unwrap();
    assert_eq!(count(&coll, doc! {}).await, 70);
    assert_eq!(
        count(&coll, doc! {"payload.attributes.replicas": 2_i64}).await,
        70
    );
}

#[tokio::test]
async fn two_clusters_with_the_same_inventory_and_uid_stay_apart() {
    let Some(ferret) = server() else { return };
    let name = unique("clusters");
    let sink = MongodbSink::new(config(&ferret.uri(), &name)).unwrap();
    let east = InventoryRef::namespaced("team-a", "apps").with_cluster("east");
    let west = InventoryRef::namespaced("team-a", "apps").with_cluster("west");
    sink.export(&request(&east, &names(3), 1)).await.unwrap();
    sink.export(&request(&west, &names(3), 2)).await.unwrap();
    let coll = collection(&ferret.uri(), &name).await;
    assert_eq!(count(&coll, doc! {}).await, 6);
    sink.export(&request(&east, &[], 1)).await.unwrap();
    let left = coll.distinct("cluster", doc! {}).await.unwrap();
    assert_eq!(left, [Bson::String("west".into())]);
}

#[tokio::test]
async fn ensure_replaces_the_go_operators_index_without_cluster() {
    let Some(ferret) = server() else { return };
    let name = unique("legacy");
    let coll = collection(&ferret.uri(), &name).await;
    coll.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! {"inventory_namespace": 1, "inventory_name": 1, "target_name": 1, "source_uid": 1})
            .options(mongodb::options::IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .unwrap();
    // Documents as the Go operator wrote them: server-generated ids, one of another inventory.
    let go_document = |inventory: &str, uid: &str| {
        doc! {
            "inventory_namespace": "team-a", "inventory_name": inventory, "target_name": "deployments",
            "source_uid": uid, "cluster": "east", "resource_namespace": "shop",
            "payload": {"name": "old"}, "exported_at": mongodb::bson::DateTime::from_millis(0),
        }
    };
    coll.insert_many([
        go_document("apps", "uid-obj-00000"),
        go_document("other", "uid-x"),
    ])
    .await
    .unwrap();
    let sink = MongodbSink::new(config(&ferret.uri(), &name)).unwrap();
    let east = InventoryRef::namespaced("team-a", "apps").with_cluster("east");
    let west = InventoryRef::namespaced("team-a", "apps").with_cluster("west");
    sink.export(&request(&east, &names(2), 1)).await.unwrap();
    sink.export(&request(&west, &names(2), 1)).await.unwrap();
    assert_eq!(count(&coll, doc! {}).await, 5, "four of apps, one of other");
    let mut indexes = coll.list_index_names().await.unwrap();
    indexes.sort();
    assert_eq!(indexes, ["_id_", "kollect_identity"]);
    // The Go documents were re-keyed: the one of apps was then overwritten, the other kept.
    let other = documents(&ferret.uri(), &name, doc! {"inventory_name": "other"}).await;
    assert_eq!(other.len(), 1);
    assert_eq!(
        other[0].get_str("_id").unwrap(),
        "east/team-a/other/deployments/uid-x"
    );
    assert_eq!(
        other[0].get_document("payload").unwrap().get_str("name").unwrap(),
        "old"
    );
    let first = documents(
        &ferret.uri(),
        &name,
        doc! {"_id": "east/team-a/apps/deployments/uid-obj-00000"},
    )
    .await;
    assert_eq!(
        first[0].get_document("payload").unwrap().get_str("name").unwrap(),
        "obj-00000"
    );
}

#[tokio::test]
async fn existing_mode_never_creates_and_fails_clearly() {
    let Some(ferret) = server() else { return };
    let name = unique("not_there");
    let sink =
        MongodbSink::new(config(&ferret.uri(), &name).with_provisioning(ProvisioningMode::Existing)).unwrap();
    let error = sink
        .export(&request(&InventoryRef::namespaced("a", "b"), &names(1), 1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert_eq!(
        error.message(),
        format!(
            "collection kollect.{name} does not exist and provisioning.mode is existing (create it with a unique index on cluster, inventory_namespace, inventory_name, target_name, source_uid, or use mode ensure)"
        )
    );
    let database = mongodb::Client::with_uri_str(ferret.uri())
        .await
        .unwrap()
        .database("kollect");
    let names = database.list_collection_names().await.unwrap();
    assert!(
        !names.contains(&name),
        "existing mode must not create the collection"
    );

    // Once someone created it, existing mode writes into it.
    database.create_collection(&name).await.unwrap();
    let sink =
        MongodbSink::new(config(&ferret.uri(), &name).with_provisioning(ProvisioningMode::Existing)).unwrap();
    sink.export(&request(
        &InventoryRef::namespaced("a", "b"),
        &["x".to_owned()],
        1,
    ))
    .await
    .unwrap();
    let coll = collection(&ferret.uri(), &name).await;
    assert_eq!(count(&coll, doc! {}).await, 1);
    assert_eq!(
        coll.list_index_names().await.unwrap(),
        ["_id_"],
        "no index created either"
    );
}

/// In an `existing` collection nothing is re-keyed: a Go operator's document of an object is
/// replaced by the sink's own and deleted outright, never kept as history.
#[tokio::test]
async fn existing_mode_replaces_go_documents_without_keeping_them_as_history() {
    let Some(ferret) = server() else { return };
    let name = unique("existing_go");
    let coll = collection(&ferret.uri(), &name).await;
    coll.insert_one(doc! {
        "inventory_namespace": "team-a", "inventory_name": "apps", "target_name": "deployments",
        "source_uid": "uid-obj-00000", "cluster": "", "payload": {"name": "old"},
    })
    .await
    .unwrap();
    let sink = MongodbSink::new(
        config(&ferret.uri(), &name)
            .with_provisioning(ProvisioningMode::Existing)
            .with_deleted_rows(DeletedRows::SoftDelete),
    )
    .unwrap();
    sink.export(&request(
        &InventoryRef::namespaced("team-a", "apps"),
        &names(1),
        1,
    ))
    .await
    .unwrap();
    let found = documents(&ferret.uri(), &name, doc! {}).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].get_str("_id").unwrap(),
        "/team-a/apps/deployments/uid-obj-00000"
    );
    assert_eq!(found[0].get("deleted_at"), None);
}

#[tokio::test]
async fn soft_deleted_documents_stay_until_the_object_returns_or_the_inventory_goes() {
    let Some(ferret) = server() else { return };
    let name = unique("history");
    let sink =
        MongodbSink::new(config(&ferret.uri(), &name).with_deleted_rows(DeletedRows::SoftDelete)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let all = names(3);
    sink.export(&request_at(&inventory, &all, 1, 1_800_000_000))
        .await
        .unwrap();
    sink.export(&request_at(&inventory, &all[..1], 1, 1_800_000_060))
        .await
        .unwrap();
    let coll = collection(&ferret.uri(), &name).await;
    assert_eq!(count(&coll, doc! {}).await, 3);
    let gone = documents(&ferret.uri(), &name, doc! {"deleted_at": {"$ne": Bson::Null}}).await;
    assert_eq!(gone.len(), 2);
    assert!(
        gone.iter()
            .all(|d| d.get_datetime("deleted_at").unwrap().timestamp_millis() == 1_800_000_060_000)
    );
    // A later reconcile leaves the deletion time as it was.
    sink.export(&request_at(&inventory, &all[..1], 1, 1_800_000_120))
        .await
        .unwrap();
    let gone = documents(&ferret.uri(), &name, doc! {"deleted_at": {"$ne": Bson::Null}}).await;
    assert!(
        gone.iter()
            .all(|d| d.get_datetime("deleted_at").unwrap().timestamp_millis() == 1_800_000_060_000)
    );
    // obj-00001 comes back (as a delta): live again, one document.
    let before = Snapshot::new(vec![sample_row(&inventory, "obj-00000", 1)]);
    let after = Snapshot::new(vec![
        sample_row(&inventory, "obj-00000", 1),
        sample_row(&inventory, "obj-00001", 1),
    ]);
    let delta = Delta::between(&before, &after);
    sink.export(&request(&inventory, &[], 1).with_delta(delta))
        .await
        .unwrap();
    assert_eq!(count(&coll, doc! {"deleted_at": Bson::Null}).await, 2);
    assert_eq!(count(&coll, doc! {}).await, 3);
    // A delta's delete soft-deletes too.
    let delta = Delta {
        upserts: Vec::new(),
        deletes: vec![RowKey {
            target_namespace: "team-a".into(),
            target_name: "deployments".into(),
            uid: "uid-obj-00000".into(),
        }],
        removed: Vec::new(),
    };
    sink.export(&request(&inventory, &[], 1).with_delta(delta))
        .await
        .unwrap();
    assert_eq!(count(&coll, doc! {"deleted_at": Bson::Null}).await, 1);
    // Removing the inventory removes all of it.
    sink.remove(&RemoveRequest {
        inventory: inventory.clone(),
        generation: 1,
    })
    .await
    .unwrap();
    assert_eq!(count(&coll, doc! {}).await, 0);
}

/// The server refuses a wrong password: terminal, and the message carries neither the password
/// nor the host. (FerretDB 1.24 answers a correct SCRAM exchange with `done: false` although the
/// driver asked it to skip the empty final round, which the Rust driver refuses; so a successful
/// login is not provable against FerretDB, see the sink reference.)
#[tokio::test]
async fn wrong_credentials_are_terminal_and_secret_free() {
    let Ok(ferret) = FerretDb::start_with(FerretDbOptions::default().with_auth()) else {
        assert!(
            !kollect_testkit::control_plane::infra_required(),
            "FerretDB with authentication did not start"
        );
        return;
    };
    let uri = ferret.uri().replace(FERRETDB_PASSWORD, "not-the-password");
    let bad = MongodbSink::new(config(&uri, "auth")).unwrap();
    let error = bad
        .export(&request(&InventoryRef::namespaced("a", "b"), &names(1), 1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    // The server refused the proof (a correct password fails later, on the driver's own check).
    assert_eq!(
        error.message(),
        "mongodb list collections: authentication failed (SCRAM failure: Authentication failed.)"
    );
    let error = bad.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert_eq!(
        error.message(),
        "mongodb ping: authentication failed (SCRAM failure: Authentication failed.)"
    );
    assert!(!error.message().contains("not-the-password") && !error.message().contains("127.0.0.1"));
}

#[tokio::test]
async fn tls_trusts_the_configured_ca() {
    let Ok(ferret) = FerretDb::start_with(FerretDbOptions::default().with_tls()) else {
        assert!(
            !kollect_testkit::control_plane::infra_required(),
            "FerretDB with TLS did not start"
        );
        return;
    };
    let ca = ferret.pki().unwrap().ca_pem.clone();
    let untrusted = MongodbSink::new(
        config(&ferret.uri(), "tls").with_uri(format!("{}&serverSelectionTimeoutMS=3000", ferret.uri())),
    )
    .unwrap();
    let error = untrusted.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    let trusted = MongodbSink::new(config(&ferret.uri(), "tls").with_ca_pem(Some(ca))).unwrap();
    trusted
        .export(&request(&InventoryRef::namespaced("a", "b"), &names(2), 1))
        .await
        .unwrap();
    assert_eq!(trusted.probe().await.unwrap().message, "MongoDB ping succeeded");
}

#[tokio::test]
async fn a_server_outage_fails_the_export_and_the_retry_converges_without_duplicates() {
    let Ok(mut ferret) = FerretDb::start() else {
        assert!(
            !kollect_testkit::control_plane::infra_required(),
            "FerretDB did not start"
        );
        return;
    };
    let uri = format!("{}?serverSelectionTimeoutMS=2000", ferret.uri());
    let sink = MongodbSink::new(config(&uri, "outage")).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request(&inventory, &names(50), 1)).await.unwrap();
    ferret.stop();
    let error = sink
        .export(&request(&inventory, &names(80), 2))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(!error.message().contains("127.0.0.1"), "{error}");
    ferret.resume().unwrap();
    sink.export(&request(&inventory, &names(80), 2)).await.unwrap();
    let coll = collection(&uri, "outage").await;
    assert_eq!(count(&coll, doc! {}).await, 80);
    assert_eq!(
        count(&coll, doc! {"payload.attributes.replicas": 2_i64}).await,
        80
    );
}

#[tokio::test]
async fn loopback_is_refused_by_the_release_network_policy() {
    let Some(ferret) = server() else { return };
    let sink = MongodbSink::new(MongodbConfig::new(
        ferret.uri(),
        "kollect",
        "ssrf",
        GuardedResolver::new(NetPolicy::new(false)),
    ))
    .unwrap();
    let error = sink.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(error.message().starts_with("connect mongodb: "), "{error}");
}

#[test]
fn preview_names_the_index_and_the_collection() {
    let sink = MongodbSink::new(config("mongodb://db.example.com/", "items")).unwrap();
    let preview = sink.preview(&request(&InventoryRef::namespaced("a", "b"), &names(1), 1));
    assert_eq!(
        preview.mongodb.unwrap().expected_index_keys,
        [
            "cluster",
            "inventory_namespace",
            "inventory_name",
            "target_name",
            "source_uid"
        ]
    );
    assert_eq!(
        preview.warnings,
        ["mongodb: documents upserted into kollect.items"]
    );
    assert_eq!(preview.provisioning_mode.as_deref(), Some("ensure"));
}
