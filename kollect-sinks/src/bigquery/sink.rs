//! The BigQuery sink: each export is one atomic `MERGE`, a delta's when the engine has one.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::jiff;
use kollect_core::api::v1alpha1::{KollectDatabaseSinkSpec, ProvisioningMode, SinkPreview};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use tokio::sync::{Mutex, OnceCell};

use super::config::BigqueryConfig;
use super::rest::Api;
use super::statement::{self, Chunks, Partition, Source, SourceRow, Statement, Writer};
use crate::context::BuildContext;

/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The BigQuery sink.
pub struct BigquerySink {
    config: BigqueryConfig,
    api: OnceCell<Api>,
    prepared: Mutex<bool>,
}

impl std::fmt::Debug for BigquerySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigquerySink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BigquerySink {
    /// Builds the sink from a `KollectDatabaseSink` spec and its resolved credentials Secret.
    pub fn from_spec(spec: &KollectDatabaseSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        BigqueryConfig::from_spec(spec, context).and_then(Self::new)
    }

    /// Builds the sink; checks the configuration without contacting anything.
    pub fn new(config: BigqueryConfig) -> Result<Self, SinkError> {
        config.check()?;
        Ok(Self {
            config,
            api: OnceCell::new(),
            prepared: Mutex::new(false),
        })
    }

    async fn api(&self) -> Result<&Api, SinkError> {
        self.api
            .get_or_try_init(|| async { Api::new(&self.config) })
            .await
    }

    fn table_path(&self) -> String {
        statement::table_path(&self.config.project, &self.config.dataset, &self.config.table)
    }

    fn partition<'a>(&'a self, inventory: &'a InventoryRef) -> Partition<'a> {
        let cluster = if inventory.cluster.is_empty() {
            self.config.cluster.as_str()
        } else {
            inventory.cluster.as_str()
        };
        Partition {
            namespace: inventory.path_namespace(),
            name: inventory.name.as_str(),
            cluster,
        }
    }

    /// Creates the table (ensure) or checks it (existing), once per sink; either way the
    /// table must have the sink's columns.
    async fn prepare(&self, api: &Api) -> Result<(), SinkError> {
        let mut prepared = self.prepared.lock().await;
        if *prepared {
            return Ok(());
        }
        let config = &self.config;
        let existing = api
            .table(&config.dataset, &config.table)
            .await
            .map_err(|e| e.into_sink_error("bigquery verify table"))?;
        match (existing, config.provisioning) {
            (Some(table), _) => check_columns(&table, &config.dataset_table())?,
            (None, ProvisioningMode::Existing) => {
                return Err(SinkError::terminal(format!(
                    "bigquery verify table: {} does not exist (provisioning.mode=existing; create it with the columns {}, or use mode ensure)",
                    config.dataset_table(),
                    statement::COLUMNS.map(|(name, _)| name).join(", ")
                )));
            }
            (None, ProvisioningMode::Ensure) => {
                let resource = statement::table_resource(&config.project, &config.dataset, &config.table);
                match api.create_table(&config.dataset, &resource).await {
                    Ok(()) => tracing::info!(table = %config.qualified(), "created the BigQuery table"),
                    Err(error) if error.is_duplicate() => {}
                    Err(error) if error.is_not_found() => {
                        return Err(SinkError::terminal(format!(
                            "bigquery ensure table: dataset {} does not exist (the sink never creates datasets): {error}",
                            config.dataset
                        )));
                    }
                    Err(error) => return Err(error.into_sink_error("bigquery ensure table")),
                }
            }
        }
        *prepared = true;
        Ok(())
    }

    fn writer<'a>(&'a self, table: &'a str, partition: Partition<'a>, exported_at: &'a str) -> Writer<'a> {
        Writer {
            dialect: self.config.dialect,
            table,
            partition,
            exported_at,
        }
    }

    /// Runs `statement`. After a failure the next attempt checks the table again, so a table
    /// dropped meanwhile is created again (`ensure`) or reported as missing (`existing`).
    async fn run(&self, api: &Api, statement: &Statement, stage: &str) -> Result<u64, SinkError> {
        match api.query(statement).await {
            Ok(outcome) => Ok(outcome.affected_rows),
            Err(error) => {
                *self.prepared.lock().await = false;
                if error.is_not_found() && self.config.provisioning == ProvisioningMode::Ensure {
                    return Err(SinkError::transient(format!(
                        "{stage}: table {} is gone; the next attempt creates it again ({error})",
                        self.config.dataset_table()
                    )));
                }
                Err(error.into_sink_error(stage))
            }
        }
    }

    /// The writes of one export.
    async fn apply(&self, api: &Api, request: &ExportRequest) -> Result<u64, SinkError> {
        let partition = self.partition(&request.inventory);
        let exported_at = request.exported_at.to_string();
        let table = self.table_path();
        let writer = self.writer(&table, partition, &exported_at);
        let mut chunks = Chunks::new(self.config.dialect);
        if let Some(delta) = &request.delta {
            for row in &delta.upserts {
                chunks.push(SourceRow::of(row, partition)?, &row_label(row))?;
            }
            for key in &delta.deletes {
                chunks.push(SourceRow::deleted(&key.target_name, &key.uid), &key.uid)?;
            }
            let mut affected = 0;
            // Each chunk of a delta is a complete change on its own, so a delta larger than
            // one request is applied chunk by chunk.
            for rows in chunks.into_inner().into_iter().filter(|rows| !rows.is_empty()) {
                let statement = writer.delta(&Source::Rows(&rows));
                affected += self.run(api, &statement, "bigquery merge delta").await?;
            }
            return Ok(affected);
        }
        for row in request.snapshot.rows() {
            chunks.push(SourceRow::of(row, partition)?, &row_label(row))?;
        }
        let groups = chunks.into_inner();
        if let [rows] = groups.as_slice() {
            let statement = writer.snapshot(&Source::Rows(rows));
            return self.run(api, &statement, "bigquery merge snapshot").await;
        }
        self.merge_staged(api, &writer, groups.concat()).await
    }

    /// A snapshot larger than one request: its rows are loaded into a staging table of their
    /// own (a load job, which has no such limit), merged from there in one statement, so the
    /// table still changes atomically, and the staging table is deleted. Should the deletion
    /// fail, the staging table expires by itself.
    async fn merge_staged(
        &self,
        api: &Api,
        writer: &Writer<'_>,
        rows: Vec<SourceRow>,
    ) -> Result<u64, SinkError> {
        let config = &self.config;
        let suffix = random_suffix()?;
        let staging = format!("{}_kollect_stage_{suffix}", config.table);
        let expires = jiff::Timestamp::now().as_millisecond() + STAGING_LIFETIME.as_millis() as i64;
        let resource = statement::staging_resource(&config.project, &config.dataset, &staging, expires);
        api.create_table(&config.dataset, &resource)
            .await
            .map_err(|e| e.into_sink_error("bigquery create staging table"))?;
        let mut lines = Vec::new();
        for row in &rows {
            lines.extend_from_slice(row.json_line().as_bytes());
            lines.push(b'\n');
        }
        drop(rows);
        let merged = async {
            api.load(
                &config.dataset,
                &staging,
                lines,
                &format!("kollect_load_{suffix}"),
            )
            .await
            .map_err(|e| e.into_sink_error("bigquery load staging rows"))?;
            let path = statement::table_path(&config.project, &config.dataset, &staging);
            let statement = writer.snapshot(&Source::Table(&path));
            self.run(api, &statement, "bigquery merge snapshot").await
        }
        .await;
        if let Err(error) = api.delete_table(&config.dataset, &staging).await {
            tracing::warn!(table = %staging, %error, "could not delete the staging table; it expires by itself");
        }
        merged
    }
}

/// How long a staging table lives if the sink cannot delete it.
const STAGING_LIFETIME: Duration = Duration::from_secs(3600);

/// 16 random hex digits: staging tables and load jobs of concurrent exports never collide.
fn random_suffix() -> Result<String, SinkError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0_u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SinkError::transient("bigquery export: no randomness for a staging table name"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn row_label(row: &kollect_core::model::SharedRow) -> String {
    if row.namespace().is_empty() {
        row.name().to_owned()
    } else {
        format!("{}/{}", row.namespace(), row.name())
    }
}

/// Refuses a table that lacks one of the sink's columns or has it with another type.
fn check_columns(table: &super::rest::Table, name: &str) -> Result<(), SinkError> {
    let problems: Vec<String> = statement::COLUMNS
        .iter()
        .filter_map(|(column, kind)| {
            match table
                .schema
                .fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(column))
            {
                None => Some(format!("{column} is missing")),
                Some(field) if !field.kind.eq_ignore_ascii_case(kind) => {
                    Some(format!("{column} is {} (expected {kind})", field.kind))
                }
                Some(_) => None,
            }
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(SinkError::terminal(format!(
        "bigquery verify table: {name} does not have the sink's columns: {}",
        problems.join("; ")
    )))
}

#[async_trait]
impl Sink for BigquerySink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ROWS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        if !request.is_last_part() {
            // Rows sinks get whole snapshots; should parts arrive, the last one carries the
            // whole snapshot and writes it in one statement.
            return Ok(ExportReceipt::written(0));
        }
        let api = self.api().await?;
        self.prepare(api).await?;
        let count = self.apply(api, request).await?;
        Ok(ExportReceipt::written(count))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let api = self.api().await?;
        self.prepare(api).await?;
        let table = self.table_path();
        let statement = self
            .writer(&table, self.partition(&request.inventory), "")
            .remove();
        self.run(api, &statement, "bigquery delete").await.map(drop)
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = Instant::now();
        let api = self.api().await?;
        let config = &self.config;
        let check = async {
            api.dataset(&config.dataset)
                .await
                .map_err(|e| e.into_sink_error("bigquery dataset metadata"))?;
            api.dry_run("SELECT 1")
                .await
                .map_err(|e| e.into_sink_error("bigquery dry-run query"))
        };
        tokio::time::timeout(PROBE_TIMEOUT, check)
            .await
            .map_err(|_| SinkError::transient("bigquery probe: no answer within 15s"))??;
        Ok(ProbeReport::new(
            started.elapsed(),
            "BigQuery dataset metadata and dry-run query succeeded",
        ))
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            provisioning_mode: Some(self.config.provisioning.as_str().to_owned()),
            object_path: Some(request.inventory.default_object_path(".json")),
            warnings: vec![format!(
                "bigquery: rows merged into {} (one MERGE per export)",
                self.config.qualified()
            )],
            ..SinkPreview::default()
        }
    }
}
