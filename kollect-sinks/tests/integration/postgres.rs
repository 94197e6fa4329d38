//! The PostgreSQL sink against a real PostgreSQL server: the conformance suite and the
//! database-specific behaviour.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use async_trait::async_trait;
use kollect_core::api::v1alpha1::{DeletedRows, ProvisioningMode};
use kollect_core::model::{Row, Snapshot};
use kollect_core::netguard::{GuardedResolver, NetPolicy};
use kollect_core::sink::{ErrorClass, ExportRequest, InventoryRef, Sink};
use kollect_sinks::postgres::{PostgresConfig, PostgresSink};
use kollect_testkit::backends::{self, Postgres};
use kollect_testkit::conformance::{Inspect, sample_row};

/// One server per test binary; tests use their own tables.
fn server() -> Option<&'static Postgres> {
    static SERVER: OnceLock<Option<Postgres>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(Postgres::start))
        .as_ref()
}

fn config(pg: &Postgres, table: &str) -> PostgresConfig {
    PostgresConfig::new(
        pg.dsn("postgres"),
        table,
        GuardedResolver::new(NetPolicy::permissive_for_tests()),
    )
    .with_options(vec![("statement_timeout".into(), "30s".into())])
}

async fn connect(pg: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.dsn("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Reads an inventory's rows back with a SELECT.
pub(crate) struct Table {
    dsn: String,
    table: String,
    /// Soft-deleted rows are not held: only live ones count.
    live_only: bool,
}

#[async_trait]
impl Inspect for Table {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let (client, connection) = tokio_postgres::connect(&self.dsn, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let rows = client
            .query(
                &format!(
                    "SELECT payload::text FROM \"{}\" WHERE inventory_namespace = $1 AND inventory_name = $2 AND cluster = $3{}",
                    self.table,
                    if self.live_only { " AND deleted_at IS NULL" } else { "" }
                ),
                &[&inventory.path_namespace(), &inventory.name, &inventory.cluster],
            )
            .await
            .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| serde_json::from_str::<Row>(r.get(0)).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// A sink on a fresh table and its reader.
pub(crate) async fn setup() -> (PostgresSink, Table) {
    setup_with(DeletedRows::Delete).await
}

async fn setup_with(deleted_rows: DeletedRows) -> (PostgresSink, Table) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let pg = server().expect("PostgreSQL (run hack/setup.sh)");
    let table = format!(
        "conformance_{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let sink = PostgresSink::new(config(pg, &table).with_deleted_rows(deleted_rows)).unwrap();
    (
        sink,
        Table {
            dsn: pg.dsn("postgres"),
            table,
            live_only: deleted_rows == DeletedRows::SoftDelete,
        },
    )
}

kollect_testkit::sink_conformance_tests!(setup());

/// The same suite when vanished objects are kept as soft-deleted rows.
mod soft_delete {
    use super::*;

    kollect_testkit::sink_conformance_tests!(setup_with(DeletedRows::SoftDelete));
}

fn request(inventory: &InventoryRef, names: &[String], version: i64) -> ExportRequest {
    ExportRequest::full(
        inventory.clone(),
        1,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        Snapshot::new(names.iter().map(|n| sample_row(inventory, n, version)).collect()),
    )
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("obj-{i:03}")).collect()
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn bulk_path_and_rollback_leave_previous_rows_intact() {
    let Some(pg) = server() else { return };
    let sink = PostgresSink::new(config(pg, "bulk")).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request(&inventory, &names(100), 1)).await.unwrap();
    let client = connect(pg).await;
    assert_eq!(count(&client, "bulk").await, 100);

    // The table rejects writing one row mid-batch (a CHECK constraint on its uid, not
    // validated against the rows already there).
    client
        .batch_execute(
            "ALTER TABLE bulk ADD CONSTRAINT no_poison CHECK (source_uid <> 'uid-obj-050') NOT VALID",
        )
        .await
        .unwrap();
    let mut second = names(100);
    second.truncate(60);
    let error = sink.export(&request(&inventory, &second, 2)).await.unwrap_err();
    assert!(error.message().contains("postgres bulk upsert"), "{error}");
    // Nothing of the failed export is visible: still 100 rows, all at version 1.
    assert_eq!(count(&client, "bulk").await, 100);
    let versions: i64 = client
        .query_one(
            "SELECT count(*) FROM bulk WHERE (payload->'attributes'->>'replicas')::int = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 100);
}

#[tokio::test]
async fn migrates_a_table_created_by_the_go_operator() {
    let Some(pg) = server() else { return };
    let client = connect(pg).await;
    client
        .batch_execute(
            "CREATE TABLE legacy (inventory_namespace TEXT NOT NULL, inventory_name TEXT NOT NULL, target_name TEXT NOT NULL, \
             source_uid TEXT NOT NULL, cluster TEXT NOT NULL DEFAULT '', resource_namespace TEXT NOT NULL DEFAULT '', \
             payload JSONB NOT NULL, exported_at TIMESTAMPTZ NOT NULL, \
             PRIMARY KEY (inventory_namespace, inventory_name, target_name, source_uid)); \
             INSERT INTO legacy VALUES ('team-a','apps','deployments','uid-old','east','shop','{}', now());",
        )
        .await
        .unwrap();
    let sink = PostgresSink::new(config(pg, "legacy")).unwrap();
    let west = InventoryRef::namespaced("team-a", "apps").with_cluster("west");
    sink.export(&request(&west, &names(2), 1)).await.unwrap();
    let key: Vec<String> = client
        .query_one(
            "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint c \
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
             WHERE c.conrelid = 'legacy'::regclass AND c.contype = 'p'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        key,
        [
            "cluster",
            "inventory_namespace",
            "inventory_name",
            "target_name",
            "source_uid"
        ]
    );
    // The old row (another cluster) survived; west's reconcile did not touch it.
    assert_eq!(count(&client, "legacy").await, 3);
}

#[tokio::test]
async fn two_clusters_with_the_same_inventory_and_uid_stay_apart() {
    let Some(pg) = server() else { return };
    let sink = PostgresSink::new(config(pg, "clusters")).unwrap();
    let east = InventoryRef::namespaced("team-a", "apps").with_cluster("east");
    let west = InventoryRef::namespaced("team-a", "apps").with_cluster("west");
    sink.export(&request(&east, &names(3), 1)).await.unwrap();
    sink.export(&request(&west, &names(3), 2)).await.unwrap();
    let client = connect(pg).await;
    assert_eq!(count(&client, "clusters").await, 6);
    sink.export(&request(&east, &[], 1)).await.unwrap();
    let left: Vec<String> = client
        .query("SELECT DISTINCT cluster FROM clusters", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["west"]);
}

#[tokio::test]
async fn existing_mode_never_creates_and_fails_clearly() {
    let Some(pg) = server() else { return };
    let sink =
        PostgresSink::new(config(pg, "not_there").with_provisioning(ProvisioningMode::Existing)).unwrap();
    let error = sink
        .export(&request(&InventoryRef::namespaced("a", "b"), &names(1), 1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(
        error
            .message()
            .contains("\"public\".\"not_there\" does not exist"),
        "{error}"
    );
    let client = connect(pg).await;
    let exists: bool = client
        .query_one("SELECT to_regclass('public.not_there') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "existing mode must not create the table");
}

#[tokio::test]
async fn a_wrong_password_fails_fast_without_leaking() {
    let Some(pg) = server() else { return };
    let dsn = pg.dsn("postgres").replace(pg.password(), "not-the-password");
    let sink = PostgresSink::new(config(pg, "auth").with_dsn(dsn)).unwrap();
    let error = sink.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert_eq!(error.message(), "connect postgres: authentication failed");
    let probe = PostgresSink::new(config(pg, "auth"))
        .unwrap()
        .probe()
        .await
        .unwrap();
    assert_eq!(probe.message, "PostgreSQL ping succeeded");
}

#[tokio::test]
async fn loopback_is_refused_by_the_release_network_policy() {
    let Some(pg) = server() else { return };
    let sink =
        PostgresSink::new(config(pg, "ssrf").with_resolver(GuardedResolver::new(NetPolicy::new(false))))
            .unwrap();
    let error = sink.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(!error.message().contains(pg.password()));
}

#[tokio::test]
async fn tls_follows_the_dsn_and_trusts_the_configured_ca() {
    let Some(pg) = backends::start_for_test(Postgres::start_tls) else {
        return;
    };
    let pg = &pg;
    let dsn = pg.dsn("postgres").replace("sslmode=disable", "sslmode=require");
    let with_ca = PostgresSink::new(
        config(pg, "tls")
            .with_dsn(dsn.clone())
            .with_ca_pem(pg.ca_pem().map(str::to_owned)),
    )
    .unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    with_ca.export(&request(&inventory, &names(2), 1)).await.unwrap();
    // The server saw an encrypted session.
    let client = connect_tls_check(pg).await;
    assert_eq!(count(&client, "tls").await, 2);
    // Without the CA the server certificate is not trusted: the connection fails, fixed text.
    let error = PostgresSink::new(config(pg, "tls").with_dsn(dsn))
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert_eq!(error.message(), "connect postgres: connection failed");
}

async fn connect_tls_check(pg: &Postgres) -> tokio_postgres::Client {
    let client = connect(pg).await;
    let ssl_sessions: i64 = client
        .query_one("SELECT count(*) FROM pg_stat_ssl WHERE ssl", &[])
        .await
        .unwrap()
        .get(0);
    assert!(ssl_sessions >= 1, "the sink's session should use TLS");
    client
}

#[test]
fn preview_shows_the_ddl() {
    let Some(pg) = server() else { return };
    let sink = PostgresSink::new(config(pg, "preview_table")).unwrap();
    let preview = sink.preview(&request(&InventoryRef::namespaced("a", "b"), &names(1), 1));
    let ddl = preview.postgres.unwrap().expected_ddl.unwrap();
    assert!(
        ddl.starts_with("CREATE TABLE IF NOT EXISTS \"public\".\"preview_table\""),
        "{ddl}"
    );
    assert_eq!(preview.provisioning_mode.as_deref(), Some("ensure"));
}

#[tokio::test]
async fn soft_deleted_rows_keep_their_history_and_come_back() {
    let Some(pg) = server() else { return };
    let client = connect(pg).await;
    // A table made without history gains the column in ensure mode.
    let plain = PostgresSink::new(config(pg, "history")).unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    plain.export(&request(&inventory, &names(40), 1)).await.unwrap();
    let sink = PostgresSink::new(config(pg, "history").with_deleted_rows(DeletedRows::SoftDelete)).unwrap();
    let mut later = request(&inventory, &names(40)[..5], 1);
    later.exported_at = k8s_openapi::jiff::Timestamp::from_second(1_800_000_060).unwrap();
    sink.export(&later).await.unwrap();
    assert_eq!(count(&client, "history").await, 40);
    let deleted: i64 = client
        .query_one(
            "SELECT count(*) FROM history WHERE deleted_at = to_timestamp(1800000060)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(deleted, 35, "the bulk path marks the stale rows");
    // Below the bulk threshold, the same; the first deletion time stays.
    let mut again = request(&inventory, &names(40)[..2], 1);
    again.exported_at = k8s_openapi::jiff::Timestamp::from_second(1_800_000_120).unwrap();
    sink.export(&again).await.unwrap();
    let times: Vec<i64> = client
        .query(
            "SELECT DISTINCT extract(epoch FROM deleted_at)::bigint FROM history WHERE deleted_at IS NOT NULL ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(times, [1_800_000_060, 1_800_000_120]);
    // Everything comes back: no row is soft-deleted any more, none duplicated.
    sink.export(&request(&inventory, &names(40), 2)).await.unwrap();
    let live: i64 = client
        .query_one("SELECT count(*) FROM history WHERE deleted_at IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((live, count(&client, "history").await), (40, 40));
    // Removing the inventory removes its rows, history included.
    sink.export(&request(&inventory, &[], 2)).await.unwrap();
    assert_eq!(
        count(&client, "history").await,
        40,
        "an empty snapshot soft-deletes"
    );
    sink.remove(&kollect_core::sink::RemoveRequest {
        inventory: inventory.clone(),
        generation: 2,
    })
    .await
    .unwrap();
    assert_eq!(count(&client, "history").await, 0);
}

#[tokio::test]
async fn soft_delete_on_an_existing_table_without_the_column_fails_clearly() {
    let Some(pg) = server() else { return };
    let plain = PostgresSink::new(config(pg, "no_history")).unwrap();
    let inventory = InventoryRef::namespaced("a", "b");
    plain.export(&request(&inventory, &names(1), 1)).await.unwrap();
    let sink = PostgresSink::new(
        config(pg, "no_history")
            .with_provisioning(ProvisioningMode::Existing)
            .with_deleted_rows(DeletedRows::SoftDelete),
    )
    .unwrap();
    let error = sink.export(&request(&inventory, &names(1), 1)).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert_eq!(
        error.message(),
        "table \"public\".\"no_history\" has no deleted_at column, which spec.deletedRows: SoftDelete needs, and provisioning.mode is existing \
         (run ALTER TABLE \"public\".\"no_history\" ADD COLUMN deleted_at TIMESTAMPTZ, or use mode ensure)"
    );
}
