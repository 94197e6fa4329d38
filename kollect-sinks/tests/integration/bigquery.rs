//! The BigQuery sink against a real BigQuery-API server (goccy's bigquery-emulator): the
//! conformance suite and the table-specific behaviour. The emulator does not check
//! credentials; what the sink sends as credentials is checked in `auth_contract`.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::ProvisioningMode;
use kollect_core::model::{Delta, Row, Snapshot};
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{ErrorClass, ExportRequest, InventoryRef, RemoveRequest, Sink};
use kollect_sinks::bigquery::{BigqueryConfig, BigquerySink, Credentials, Dialect};
use kollect_testkit::backends::{self, BIGQUERY_DATASET, BIGQUERY_PROJECT, BigqueryEmulator};
use kollect_testkit::conformance::{Inspect, sample_row};
use serde_json::Value;
use tokio::sync::OnceCell;
use url::Url;

mod auth_contract;

/// One server per test binary; tests use their own tables.
async fn server() -> Option<&'static BigqueryEmulator> {
    static SERVER: OnceCell<Option<BigqueryEmulator>> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async { backends::start_for_test(BigqueryEmulator::start) })
        .await
        .as_ref()
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The sink as `spec.endpoint: http://...` builds it: the emulator's dialect.
fn config(emulator: &BigqueryEmulator, table: &str) -> BigqueryConfig {
    merge_config(emulator, table).with_dialect(Dialect::Emulator)
}

/// The sink as it talks to BigQuery itself.
fn merge_config(emulator: &BigqueryEmulator, table: &str) -> BigqueryConfig {
    BigqueryConfig::new(
        BIGQUERY_PROJECT,
        BIGQUERY_DATASET,
        table,
        Credentials::Anonymous,
        NetPolicy::permissive_for_tests(),
    )
    .with_endpoint(Url::parse(&emulator.endpoint()).unwrap())
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The table's rows of `inventory` as `(name, replicas, exported_at seconds)`.
async fn summary(
    emulator: &BigqueryEmulator,
    table: &str,
    inventory: &InventoryRef,
) -> Vec<(String, i64, i64)> {
    let sql = format!(
        "SELECT JSON_VALUE(payload, '$.name'), CAST(JSON_VALUE(payload, '$.attributes.replicas') AS INT64), \
         UNIX_SECONDS(exported_at) FROM `{BIGQUERY_PROJECT}.{BIGQUERY_DATASET}.{table}` \
         WHERE inventory_namespace = {} AND inventory_name = {} AND cluster = {} ORDER BY 1",
        quote(inventory.path_namespace()),
        quote(&inventory.name),
        quote(&inventory.cluster)
    );
    emulator
        .query(&sql)
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            let text = |i: usize| row[i].as_str().unwrap_or_default().to_owned();
            (text(0), text(1).parse().unwrap(), text(2).parse().unwrap())
        })
        .collect()
}

async fn count(emulator: &BigqueryEmulator, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM `{BIGQUERY_PROJECT}.{BIGQUERY_DATASET}.{table}`");
    let rows = emulator.query(&sql).await.unwrap();
    rows[0][0].as_str().unwrap().parse().unwrap()
}

/// Reads an inventory's rows back from the table.
pub(crate) struct Table {
    emulator: &'static BigqueryEmulator,
    name: String,
}

#[async_trait]
impl Inspect for Table {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let sql = format!(
            "SELECT TO_JSON_STRING(payload) FROM `{BIGQUERY_PROJECT}.{BIGQUERY_DATASET}.{}` \
             WHERE inventory_namespace = {} AND inventory_name = {} AND cluster = {}",
            self.name,
            quote(inventory.path_namespace()),
            quote(&inventory.name),
            quote(&inventory.cluster)
        );
        let found = match self.emulator.query(&sql).await {
            Ok(rows) => rows,
            // Nothing was exported yet: the table does not exist.
            Err(error) if error.to_string().contains("HTTP 404") => return Ok(None),
            Err(error) => return Err(error.to_string()),
        };
        found
            .iter()
            .map(|row| {
                let text = row[0].as_str().ok_or("a row without payload")?;
                serde_json::from_str::<Row>(text).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

pub(crate) async fn setup() -> (BigquerySink, Table) {
    let emulator = server().await.expect("bigquery-emulator (run hack/setup.sh)");
    let name = unique("conformance");
    let sink = BigquerySink::new(config(emulator, &name)).unwrap();
    (sink, Table { emulator, name })
}

kollect_testkit::sink_conformance_tests!(setup());

fn request_at(inventory: &InventoryRef, names: &[String], version: i64, second: i64) -> ExportRequest {
    ExportRequest::full(
        inventory.clone(),
        1,
        Timestamp::from_second(second).unwrap(),
        Snapshot::new(names.iter().map(|n| sample_row(inventory, n, version)).collect()),
    )
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("obj-{i:05}")).collect()
}

#[tokio::test]
async fn ensure_creates_a_day_partitioned_clustered_table() {
    let Some(emulator) = server().await else { return };
    let name = unique("created");
    let sink = BigquerySink::new(config(emulator, &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request_at(&inventory, &names(2), 3, 1_800_000_000))
        .await
        .unwrap();
    let table = emulator
        .table(BIGQUERY_DATASET, &name)
        .await
        .unwrap()
        .expect("created");
    let fields: Vec<(String, String)> = table["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        fields.contains(&("payload".to_owned(), "JSON".to_owned())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("exported_at".to_owned(), "TIMESTAMP".to_owned())),
        "{fields:?}"
    );
    assert_eq!(table["timePartitioning"]["type"], "DAY", "{table}");
    assert_eq!(table["timePartitioning"]["field"], "exported_at");
    assert_eq!(
        table["clustering"]["fields"],
        serde_json::json!([
            "cluster",
            "inventory_namespace",
            "inventory_name",
            "resource_namespace"
        ])
    );
    assert_eq!(
        summary(emulator, &name, &inventory).await,
        [
            ("obj-00000".to_owned(), 3, 1_800_000_000),
            ("obj-00001".to_owned(), 3, 1_800_000_000)
        ]
    );
    // A second sink on the same table finds it and writes on.
    let again = BigquerySink::new(config(emulator, &name)).unwrap();
    again
        .export(&request_at(&inventory, &names(1), 4, 1_800_000_100))
        .await
        .unwrap();
    assert_eq!(
        summary(emulator, &name, &inventory).await,
        [("obj-00000".to_owned(), 4, 1_800_000_100)]
    );
}

#[tokio::test]
async fn a_delta_writes_only_the_changed_rows() {
    let Some(emulator) = server().await else { return };
    let name = unique("delta");
    let sink = BigquerySink::new(config(emulator, &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let first = request_at(&inventory, &names(3), 1, 1_800_000_000);
    sink.export(&first).await.unwrap();
    // obj-00001 changes, obj-00002 disappears, obj-00000 stays as it was.
    let mut next_rows = first.snapshot.rows().to_vec();
    next_rows[1] = sample_row(&inventory, "obj-00001", 2).into();
    next_rows.truncate(2);
    let next = Snapshot::from_shared(next_rows);
    let delta = Delta::between(&first.snapshot, &next);
    let later = ExportRequest::full(
        inventory.clone(),
        1,
        Timestamp::from_second(1_800_000_600).unwrap(),
        next,
    )
    .with_delta(delta);
    sink.export(&later).await.unwrap();
    assert_eq!(
        summary(emulator, &name, &inventory).await,
        [
            ("obj-00000".to_owned(), 1, 1_800_000_000),
            ("obj-00001".to_owned(), 2, 1_800_000_600)
        ],
        "the unchanged row keeps its export time: it was not rewritten"
    );
}

/// Rows of about 100 KiB each: 120 of them exceed one request's 8 MiB.
fn large_request(inventory: &InventoryRef, n: usize, version: i64, second: i64) -> ExportRequest {
    let rows = names(n)
        .iter()
        .map(|name| {
            let mut row = sample_row(inventory, name, version);
            let mut attributes = row.attributes.take().unwrap_or_default();
            attributes.insert("blob".to_owned(), Value::String("x".repeat(100 * 1024)));
            row.attributes = Some(attributes);
            row
        })
        .collect();
    ExportRequest::full(
        inventory.clone(),
        1,
        Timestamp::from_second(second).unwrap(),
        Snapshot::new(rows),
    )
}

#[tokio::test]
async fn a_snapshot_above_one_request_is_staged_and_merged() {
    let Some(emulator) = server().await else { return };
    let name = unique("large");
    let sink = BigquerySink::new(config(emulator, &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let other = InventoryRef::namespaced("team-b", "apps");
    sink.export(&request_at(&other, &names(2), 1, 1_800_000_000))
        .await
        .unwrap();
    sink.export(&large_request(&inventory, 120, 1, 1_800_000_000))
        .await
        .unwrap();
    assert_eq!(summary(emulator, &name, &inventory).await.len(), 120);
    sink.export(&large_request(&inventory, 90, 2, 1_800_000_100))
        .await
        .unwrap();
    let rows = summary(emulator, &name, &inventory).await;
    assert_eq!(rows.len(), 90);
    assert!(
        rows.iter()
            .all(|(_, replicas, at)| (*replicas, *at) == (2, 1_800_000_100))
    );
    assert_eq!(
        summary(emulator, &name, &other).await.len(),
        2,
        "another inventory is untouched"
    );
    assert_eq!(count(emulator, &name).await, 92);
    assert_eq!(
        staging_tables(emulator, &name).await,
        Vec::<String>::new(),
        "staging tables are deleted"
    );
}

/// The staging tables left of `table` (tests run side by side in one dataset, so only this
/// test's own tables count).
async fn staging_tables(emulator: &BigqueryEmulator, table: &str) -> Vec<String> {
    let prefix = format!("{table}_kollect_stage_");
    emulator
        .tables(BIGQUERY_DATASET)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .collect()
}

/// The emulator cannot run the statement the sink sends BigQuery, so this checks how far its
/// GoogleSQL engine (ZetaSQL) gets with it: past parsing and analysis, failing only where the
/// emulator stops implementing BigQuery. A syntax or analysis error of ours would fail earlier
/// with another message.
#[tokio::test]
async fn the_production_merge_is_parsed_and_analyzed_by_the_emulators_engine() {
    let Some(emulator) = server().await else { return };
    let name = unique("merge_dialect");
    let sink = BigquerySink::new(merge_config(emulator, &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    // Rows as an ARRAY<STRUCT> parameter: the emulator types every array parameter as INT64
    // and stops at the UNNEST that reads it, so everything before it parsed.
    let error = sink
        .export(&request_at(&inventory, &names(2), 1, 1_800_000_000))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error
            .contains("Values referenced in UNNEST must be arrays. UNNEST contains expression of type INT64"),
        "{error}"
    );
    assert!(!error.contains("Syntax error"), "{error}");
    // A staged snapshot: the load job runs for real, and the MERGE reading the staging table
    // passes ZetaSQL's analysis (tables, columns, types, PARSE_JSON, NOT MATCHED BY SOURCE);
    // the emulator's executor then refuses a MERGE matching on more than one column.
    let error = sink
        .export(&large_request(&inventory, 120, 1, 1_800_000_000))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("bigquery merge snapshot")
            && error.contains("currently MERGE expression is supported equal expression only"),
        "{error}"
    );
    assert_eq!(
        staging_tables(emulator, &name).await,
        Vec::<String>::new(),
        "the staging table is deleted after a failure too"
    );
}

#[tokio::test]
async fn existing_mode_without_the_table_fails_clearly_and_creates_nothing() {
    let Some(emulator) = server().await else { return };
    let name = unique("missing");
    let sink =
        BigquerySink::new(config(emulator, &name).with_provisioning(ProvisioningMode::Existing)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let error = sink
        .export(&request_at(&inventory, &names(1), 1, 1_800_000_000))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(
        error.to_string().contains(&format!(
            "{BIGQUERY_DATASET}.{name} does not exist (provisioning.mode=existing"
        )),
        "{error}"
    );
    assert!(
        emulator.table(BIGQUERY_DATASET, &name).await.unwrap().is_none(),
        "no DDL ran"
    );
}

#[tokio::test]
async fn existing_mode_uses_a_table_made_by_hand_and_refuses_one_without_the_columns() {
    let Some(emulator) = server().await else { return };
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let name = unique("by_hand");
    let columns = [
        ("inventory_namespace", "STRING"),
        ("inventory_name", "STRING"),
        ("target_name", "STRING"),
        ("source_uid", "STRING"),
        ("cluster", "STRING"),
        ("resource_namespace", "STRING"),
        ("payload", "JSON"),
        ("exported_at", "TIMESTAMP"),
    ];
    emulator
        .create_table(BIGQUERY_DATASET, &name, &columns)
        .await
        .unwrap();
    let sink =
        BigquerySink::new(config(emulator, &name).with_provisioning(ProvisioningMode::Existing)).unwrap();
    sink.export(&request_at(&inventory, &names(2), 1, 1_800_000_000))
        .await
        .unwrap();
    assert_eq!(summary(emulator, &name, &inventory).await.len(), 2);

    let narrow = unique("narrow");
    emulator
        .create_table(BIGQUERY_DATASET, &narrow, &columns[..6])
        .await
        .unwrap();
    let sink =
        BigquerySink::new(config(emulator, &narrow).with_provisioning(ProvisioningMode::Existing)).unwrap();
    let error = sink
        .export(&request_at(&inventory, &names(1), 1, 1_800_000_000))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(
        error
            .to_string()
            .contains("payload is missing; exported_at is missing"),
        "{error}"
    );
}

#[tokio::test]
async fn inventory_deletion_removes_exactly_its_rows() {
    let Some(emulator) = server().await else { return };
    let name = unique("removal");
    let sink = BigquerySink::new(config(emulator, &name)).unwrap();
    let gone = InventoryRef::namespaced("team-a", "apps").with_cluster("east");
    let same_name_other_cluster = InventoryRef::namespaced("team-a", "apps").with_cluster("west");
    let other = InventoryRef::namespaced("team-a", "jobs").with_cluster("east");
    for inventory in [&gone, &same_name_other_cluster, &other] {
        sink.export(&request_at(inventory, &names(3), 1, 1_800_000_000))
            .await
            .unwrap();
    }
    sink.remove(&RemoveRequest {
        inventory: gone.clone(),
        generation: 1,
    })
    .await
    .unwrap();
    assert!(summary(emulator, &name, &gone).await.is_empty());
    assert_eq!(summary(emulator, &name, &same_name_other_cluster).await.len(), 3);
    assert_eq!(summary(emulator, &name, &other).await.len(), 3);
}

#[tokio::test]
async fn a_dropped_table_is_created_again_by_the_next_attempt() {
    let Some(emulator) = server().await else { return };
    let name = unique("dropped");
    let sink = BigquerySink::new(config(emulator, &name)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request_at(&inventory, &names(2), 1, 1_800_000_000))
        .await
        .unwrap();
    emulator.drop_table(BIGQUERY_DATASET, &name).await.unwrap();
    let error = sink
        .export(&request_at(&inventory, &names(2), 2, 1_800_000_100))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    sink.export(&request_at(&inventory, &names(2), 2, 1_800_000_100))
        .await
        .unwrap();
    assert_eq!(summary(emulator, &name, &inventory).await.len(), 2);
}

#[tokio::test]
async fn an_invalid_statement_is_terminal() {
    let Some(emulator) = server().await else { return };
    // A dataset that does not exist: the table cannot be created, and the sink never creates
    // datasets.
    let sink = BigquerySink::new(
        BigqueryConfig::new(
            BIGQUERY_PROJECT,
            "no_such_dataset",
            "rows",
            Credentials::Anonymous,
            NetPolicy::permissive_for_tests(),
        )
        .with_endpoint(Url::parse(&emulator.endpoint()).unwrap())
        .with_dialect(Dialect::Emulator),
    )
    .unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let error = sink
        .export(&request_at(&inventory, &names(1), 1, 1_800_000_000))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(error.to_string().contains("no_such_dataset"), "{error}");
    let probe = sink.probe().await.unwrap_err();
    assert!(
        probe
            .to_string()
            .starts_with("bigquery dataset metadata: HTTP 404"),
        "{probe}"
    );
}

#[tokio::test]
async fn the_server_down_then_back_converges_without_duplicates() {
    let Some(_) = server().await else { return };
    // A server of its own, so stopping it does not disturb other tests.
    let mut emulator = BigqueryEmulator::start().unwrap();
    let name = unique("outage");
    let gated = Url::parse(&emulator.gated_endpoint()).unwrap();
    let sink = BigquerySink::new(config(&emulator, &name).with_endpoint(gated)).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request_at(&inventory, &names(50), 1, 1_800_000_000))
        .await
        .unwrap();
    emulator.stop();
    let error = sink
        .export(&request_at(&inventory, &names(80), 2, 1_800_000_100))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(
        !error.to_string().contains("127.0.0.1"),
        "no address in the message: {error}"
    );
    emulator.resume().unwrap();
    sink.export(&request_at(&inventory, &names(80), 2, 1_800_000_100))
        .await
        .unwrap();
    sink.export(&request_at(&inventory, &names(80), 2, 1_800_000_100))
        .await
        .unwrap();
    let rows = summary(&emulator, &name, &inventory).await;
    assert_eq!(rows.len(), 80);
    assert!(rows.iter().all(|(_, replicas, _)| *replicas == 2));
    assert_eq!(count(&emulator, &name).await, 80, "no duplicates");
}

#[tokio::test]
async fn the_ssrf_policy_refuses_a_loopback_emulator_outside_tests() {
    let Some(emulator) = server().await else { return };
    let config = BigqueryConfig::new(
        BIGQUERY_PROJECT,
        BIGQUERY_DATASET,
        "rows",
        Credentials::Anonymous,
        NetPolicy::default(),
    )
    .with_endpoint(Url::parse(&emulator.endpoint()).unwrap());
    let error = BigquerySink::new(config).unwrap_err();
    assert!(error.to_string().starts_with("spec.endpoint:"), "{error}");
    // Names are checked again when dialed, by the guarded resolver the object stores share
    // (tested there); IP literals never reach a resolver, so they are refused here.
}

#[tokio::test]
async fn a_preview_names_the_table_without_contacting_it() {
    let Some(emulator) = server().await else { return };
    let sink = BigquerySink::new(config(emulator, "preview")).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "api");
    let preview = sink.preview(&request_at(&inventory, &names(1), 1, 1_800_000_000));
    assert_eq!(preview.provisioning_mode.as_deref(), Some("ensure"));
    assert!(
        preview.warnings[0].contains("kollect-test.inventory.preview"),
        "{:?}",
        preview.warnings
    );
    assert!(
        emulator
            .table(BIGQUERY_DATASET, "preview")
            .await
            .unwrap()
            .is_none()
    );
}
