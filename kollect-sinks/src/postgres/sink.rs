//! The PostgreSQL sink: one transaction per export, a delta when the engine has one.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use kollect_core::api::v1alpha1::{
    DeletedRows, KollectDatabaseSinkSpec, PostgresPreview, ProvisioningMode, SinkPreview,
};
use kollect_core::model::{RowKey, SharedRow};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use tokio::sync::Mutex;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient};

use super::config::PostgresConfig;
use super::sql::{ddl, quote};
use super::transport::{self, db_error};
use crate::context::BuildContext;

/// Rows at or above this count go through `COPY` instead of per-row upserts.
const BULK_THRESHOLD: usize = 32;

/// The PostgreSQL sink.
pub struct PostgresSink {
    config: PostgresConfig,
    client: Mutex<Option<Arc<Client>>>,
    ensured: Mutex<bool>,
    /// One connection carries one transaction at a time: exports of different inventories
    /// through the same sink take turns.
    transaction: Mutex<()>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// Builds the sink from a `KollectDatabaseSink` spec and its resolved database Secret.
    pub fn from_spec(spec: &KollectDatabaseSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        PostgresConfig::from_spec(spec, context).and_then(Self::new)
    }

    /// Builds the sink; checks the DSN and options without connecting.
    pub fn new(config: PostgresConfig) -> Result<Self, SinkError> {
        config.check()?;
        Ok(Self {
            config,
            client: Mutex::new(None),
            ensured: Mutex::new(false),
            transaction: Mutex::new(()),
        })
    }

    fn table(&self) -> String {
        format!("{}.{}", quote(&self.config.schema), quote(&self.config.table))
    }

    /// A connected client (reused while its connection lives).
    async fn client(&self) -> Result<Arc<Client>, SinkError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref()
            && !client.is_closed()
        {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(transport::connect(&self.config).await?);
        for (key, value) in &self.config.options {
            client
                .execute("SELECT set_config($1, $2, false)", &[key, value])
                .await
                .map_err(|e| db_error(&format!("apply spec.options.{key}"), &e))?;
        }
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Runs the DDL (ensure) or checks the table exists (existing), once per sink.
    async fn prepare(&self, client: &Client) -> Result<(), SinkError> {
        let mut ensured = self.ensured.lock().await;
        if *ensured {
            return Ok(());
        }
        let qualified = format!("{}.{}", quote(&self.config.schema), quote(&self.config.table));
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
            .await
            .map_err(|e| db_error("check table", &e))?
            .get(0);
        match self.config.provisioning {
            ProvisioningMode::Existing => {
                if !exists {
                    return Err(SinkError::terminal(format!(
                        "table {qualified} does not exist and provisioning.mode is existing (create it, or use mode ensure)"
                    )));
                }
                if self.config.deleted_rows == DeletedRows::SoftDelete {
                    self.require_deleted_at(client, &qualified).await?;
                }
            }
            ProvisioningMode::Ensure => {
                client
                    .batch_execute(&ddl(
                        &self.config.schema,
                        &self.config.table,
                        self.config.deleted_rows,
                    ))
                    .await
                    .map_err(|e| db_error("create table", &e))?;
                self.migrate_primary_key(client).await?;
                if self.config.deleted_rows == DeletedRows::SoftDelete {
                    // A table created without history gains the column; rows keep NULL (live).
                    client
                        .batch_execute(&format!(
                            "ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMPTZ"
                        ))
                        .await
                        .map_err(|e| db_error("add deleted_at column", &e))?;
                }
            }
        }
        *ensured = true;
        Ok(())
    }

    /// Fails clearly when an existing table lacks the `deleted_at` column history needs.
    async fn require_deleted_at(&self, client: &Client, qualified: &str) -> Result<(), SinkError> {
        let present: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'deleted_at' AND NOT attisdropped)",
                &[&qualified],
            )
            .await
            .map_err(|e| db_error("check deleted_at column", &e))?
            .get(0);
        if present {
            return Ok(());
        }
        Err(SinkError::terminal(format!(
            "table {qualified} has no deleted_at column, which spec.deletedRows: SoftDelete needs, and provisioning.mode is existing \
             (run ALTER TABLE {qualified} ADD COLUMN deleted_at TIMESTAMPTZ, or use mode ensure)"
        )))
    }

    /// The statement retiring the rows that match `predicate` (over alias `t`): `DELETE`, or
    /// with history an `UPDATE` setting `deleted_at` to parameter `$at` (the export time).
    fn retire_statement(&self, predicate: &str, at: usize) -> String {
        match self.config.deleted_rows {
            DeletedRows::Delete => format!("DELETE FROM {} t WHERE {predicate}", self.table()),
            DeletedRows::SoftDelete => format!(
                "UPDATE {} t SET deleted_at = ${at}::text::timestamptz WHERE t.deleted_at IS NULL AND {predicate}",
                self.table()
            ),
        }
    }

    /// `params`, followed by the export time when history needs it for `deleted_at`.
    fn retire_params<'a>(
        &self,
        mut params: Vec<&'a (dyn ToSql + Sync)>,
        exported_at: &'a String,
    ) -> Vec<&'a (dyn ToSql + Sync)> {
        if self.config.deleted_rows == DeletedRows::SoftDelete {
            params.push(exported_at);
        }
        params
    }

    /// Moves a table created by the Go operator (primary key without `cluster`) to the current
    /// key, in one transaction.
    async fn migrate_primary_key(&self, client: &Client) -> Result<(), SinkError> {
        let qualified = format!("{}.{}", quote(&self.config.schema), quote(&self.config.table));
        let row = client
            .query_opt(
                "SELECT c.conname, array_agg(a.attname::text ORDER BY k.ord) \
                 FROM pg_constraint c \
                 CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
                 WHERE c.conrelid = to_regclass($1) AND c.contype = 'p' \
                 GROUP BY c.conname",
                &[&qualified],
            )
            .await
            .map_err(|e| db_error("inspect primary key", &e))?;
        let Some(row) = row else {
            return Ok(());
        };
        let name: String = row.get(0);
        let columns: Vec<String> = row.get(1);
        if columns.iter().any(|c| c == "cluster") {
            return Ok(());
        }
        tracing::info!(table = %qualified, "migrating the primary key to include cluster");
        client
            .batch_execute(&format!(
                "BEGIN; ALTER TABLE {qualified} DROP CONSTRAINT {}, ADD PRIMARY KEY (cluster, inventory_namespace, inventory_name, target_name, source_uid); COMMIT;",
                quote(&name)
            ))
            .await
            .map_err(|e| db_error("migrate primary key", &e))
    }

    fn partition<'a>(&'a self, inventory: &'a InventoryRef) -> (&'a str, &'a str, &'a str) {
        let cluster = if inventory.cluster.is_empty() {
            self.config.cluster.as_str()
        } else {
            inventory.cluster.as_str()
        };
        (inventory.path_namespace(), inventory.name.as_str(), cluster)
    }

    async fn upsert_rows(
        &self,
        tx: &Client,
        rows: &[&SharedRow],
        partition: (&str, &str, &str),
        exported_at: &String,
    ) -> Result<(), SinkError> {
        let (namespace, name, cluster) = partition;
        let table = self.table();
        let revive = match self.config.deleted_rows {
            DeletedRows::SoftDelete => ", deleted_at = NULL",
            DeletedRows::Delete => "",
        };
        let update = format!(
            "ON CONFLICT (cluster, inventory_namespace, inventory_name, target_name, source_uid) \
             DO UPDATE SET payload = EXCLUDED.payload, exported_at = EXCLUDED.exported_at, \
             resource_namespace = EXCLUDED.resource_namespace{revive}"
        );
        if rows.len() < BULK_THRESHOLD {
            let statement = tx
                .prepare(&format!(
                    "INSERT INTO {table} (inventory_namespace, inventory_name, target_name, source_uid, cluster, resource_namespace, payload, exported_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::timestamptz) {update}"
                ))
                .await
                .map_err(|e| db_error("postgres upsert", &e))?;
            for row in rows {
                let payload = payload(row);
                let resource_namespace = resource_namespace(row, namespace);
                tx.execute(
                    &statement,
                    &[
                        &namespace,
                        &name,
                        &row.target_name(),
                        &row.uid(),
                        &cluster,
                        &resource_namespace,
                        &payload,
                        &exported_at,
                    ],
                )
                .await
                .map_err(|e| db_error("postgres upsert", &e))?;
            }
            return Ok(());
        }
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS kollect_export_staging (target_name TEXT, source_uid TEXT, resource_namespace TEXT, payload TEXT) ON COMMIT DROP",
        )
        .await
        .map_err(|e| db_error("postgres bulk upsert: create staging", &e))?;
        let sink = tx
            .copy_in("COPY kollect_export_staging (target_name, source_uid, resource_namespace, payload) FROM STDIN BINARY")
            .await
            .map_err(|e| db_error("postgres bulk upsert: copy", &e))?;
        let mut writer = std::pin::pin!(tokio_postgres::binary_copy::BinaryCopyInWriter::new(
            sink,
            &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
        ));
        for row in rows {
            let payload = payload(row);
            let resource_namespace = resource_namespace(row, namespace);
            writer
                .as_mut()
                .write(&[&row.target_name(), &row.uid(), &resource_namespace, &payload])
                .await
                .map_err(|e| db_error("postgres bulk upsert: copy", &e))?;
        }
        writer
            .finish()
            .await
            .map_err(|e| db_error("postgres bulk upsert: copy", &e))?;
        tx.execute(
            &format!(
                "INSERT INTO {table} (inventory_namespace, inventory_name, target_name, source_uid, cluster, resource_namespace, payload, exported_at) \
                 SELECT $1, $2, target_name, source_uid, $3, resource_namespace, payload::jsonb, $4::text::timestamptz FROM kollect_export_staging {update}"
            ),
            &[&namespace, &name, &cluster, &exported_at],
        )
        .await
        .map_err(|e| db_error("postgres bulk upsert: merge", &e))?;
        // The staging table stays until the commit: the stale-row delete of a whole snapshot
        // anti-joins against it.
        Ok(())
    }

    async fn delete_all(
        &self,
        client: &impl GenericClient,
        partition: (&str, &str, &str),
    ) -> Result<u64, SinkError> {
        let (namespace, name, cluster) = partition;
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE inventory_namespace = $1 AND inventory_name = $2 AND cluster = $3",
                    self.table()
                ),
                &[&namespace, &name, &cluster],
            )
            .await
            .map_err(|e| db_error("postgres delete all", &e))
    }
}

impl PostgresSink {
    /// Retires every row of the partition (an empty snapshot): deleted, or marked deleted.
    async fn retire_all(
        &self,
        client: &Client,
        partition: (&str, &str, &str),
        exported_at: &String,
    ) -> Result<(), SinkError> {
        let (namespace, name, cluster) = partition;
        let statement = self.retire_statement(
            "t.inventory_namespace = $1 AND t.inventory_name = $2 AND t.cluster = $3",
            4,
        );
        let params = self.retire_params(vec![&namespace, &name, &cluster], exported_at);
        client
            .execute(&statement, &params)
            .await
            .map_err(|e| db_error("postgres delete all", &e))?;
        Ok(())
    }
}

fn payload(row: &SharedRow) -> String {
    row.to_json()
}

fn resource_namespace<'a>(row: &'a SharedRow, inventory_namespace: &'a str) -> &'a str {
    if row.namespace().is_empty() {
        inventory_namespace
    } else {
        row.namespace()
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ROWS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let client = self.client().await?;
        self.prepare(&client).await?;
        let partition = self.partition(&request.inventory);
        let exported_at = request.exported_at.to_string();
        // `Client::transaction` needs `&mut`; the shared client runs the same statements, one
        // transaction at a time.
        let _turn = self.transaction.lock().await;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| db_error("begin tx", &e))?;
        let result = self.apply(&client, request, partition, &exported_at).await;
        match result {
            Ok(bytes) => {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|e| db_error("commit tx", &e))?;
                Ok(ExportReceipt::written(bytes))
            }
            Err(error) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(error)
            }
        }
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let client = self.client().await?;
        self.prepare(&client).await?;
        let _turn = self.transaction.lock().await;
        self.delete_all(&*client, self.partition(&request.inventory))
            .await
            .map(|_| ())
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = Instant::now();
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| db_error("ping", &e))?;
        Ok(ProbeReport::new(started.elapsed(), "PostgreSQL ping succeeded"))
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            provisioning_mode: Some(self.config.provisioning.as_str().to_owned()),
            object_path: Some(request.inventory.default_object_path(".json")),
            postgres: Some(PostgresPreview {
                expected_ddl: Some(ddl(
                    &self.config.schema,
                    &self.config.table,
                    self.config.deleted_rows,
                )),
            }),
            ..SinkPreview::default()
        }
    }
}

/// Statements of one export, run inside the caller's transaction.
impl PostgresSink {
    async fn apply(
        &self,
        client: &Client,
        request: &ExportRequest,
        partition: (&str, &str, &str),
        exported_at: &String,
    ) -> Result<u64, SinkError> {
        if let Some(delta) = &request.delta {
            let upserts: Vec<&SharedRow> = delta.upserts.iter().collect();
            self.upsert_rows(client, &upserts, partition, exported_at).await?;
            self.delete_keys(client, &delta.deletes, partition, exported_at)
                .await?;
            return Ok(delta.upserts.len() as u64);
        }
        if request.snapshot.is_empty() {
            self.retire_all(client, partition, exported_at).await?;
            return Ok(0);
        }
        // The rows of this part; stale rows are deleted with the last part, against the whole
        // snapshot, so a multipart set never deletes what a later part brings.
        let rows: Vec<&SharedRow> = request.rows().collect();
        self.upsert_rows(client, &rows, partition, exported_at).await?;
        if !request.is_last_part() {
            return Ok(rows.len() as u64);
        }
        let (namespace, name, cluster) = partition;
        let whole = request.marker().is_none();
        if whole && rows.len() >= BULK_THRESHOLD {
            // The staging table holds exactly the snapshot's keys. Without statistics of the
            // fresh rows the planner prefers a nested loop (quadratic at 100k rows); a hash
            // anti-join, linear in the table and the snapshot, is always right here.
            client
                .batch_execute("ANALYZE kollect_export_staging; SET LOCAL enable_nestloop = off")
                .await
                .map_err(|e| db_error("postgres delete stale", &e))?;
            let statement = self.retire_statement(
                "t.inventory_namespace = $1 AND t.inventory_name = $2 AND t.cluster = $3 \
                 AND NOT EXISTS (SELECT 1 FROM kollect_export_staging s \
                 WHERE s.target_name = t.target_name AND s.source_uid = t.source_uid)",
                4,
            );
            let params = self.retire_params(vec![&namespace, &name, &cluster], exported_at);
            client
                .execute(&statement, &params)
                .await
                .map_err(|e| db_error("postgres delete stale", &e))?;
            return Ok(rows.len() as u64);
        }
        let (target_names, uids): (Vec<&str>, Vec<&str>) = request
            .snapshot
            .rows()
            .iter()
            .map(|r| (r.target_name(), r.uid()))
            .unzip();
        let statement = self.retire_statement(
            "t.inventory_namespace = $1 AND t.inventory_name = $2 AND t.cluster = $3 \
             AND (t.target_name, t.source_uid) NOT IN \
             (SELECT s.target_name, s.source_uid FROM unnest($4::text[], $5::text[]) AS s(target_name, source_uid))",
            6,
        );
        let params = self.retire_params(
            vec![&namespace, &name, &cluster, &target_names, &uids],
            exported_at,
        );
        client
            .execute(&statement, &params)
            .await
            .map_err(|e| db_error("postgres delete stale", &e))?;
        Ok(rows.len() as u64)
    }

    async fn delete_keys(
        &self,
        client: &Client,
        keys: &[RowKey],
        partition: (&str, &str, &str),
        exported_at: &String,
    ) -> Result<(), SinkError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (namespace, name, cluster) = partition;
        let (target_names, uids): (Vec<&str>, Vec<&str>) = keys
            .iter()
            .map(|k| (k.target_name.as_str(), k.uid.as_str()))
            .unzip();
        let statement = self.retire_statement(
            "t.inventory_namespace = $1 AND t.inventory_name = $2 AND t.cluster = $3 \
             AND (t.target_name, t.source_uid) IN (SELECT * FROM unnest($4::text[], $5::text[]))",
            6,
        );
        let params = self.retire_params(
            vec![&namespace, &name, &cluster, &target_names, &uids],
            exported_at,
        );
        client
            .execute(&statement, &params)
            .await
            .map_err(|e| db_error("postgres delete", &e))?;
        Ok(())
    }
}
