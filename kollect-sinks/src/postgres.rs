//! The `postgres` sink: one table row per collected object, keyed
//! `(cluster, inventory_namespace, inventory_name, target_name, source_uid)` (decision S1).
//!
//! - Every export runs in one transaction: a delta (upserts and deletes) when the engine gives
//!   one, otherwise a full reconcile (per-row upserts below 32 rows, `COPY` into a temporary
//!   table and one merge above), then deleting the rows of this inventory and cluster that are
//!   not in the snapshot. An empty snapshot deletes the inventory's rows. A failure rolls back,
//!   leaving the previous rows intact.
//! - `provisioning.mode: ensure` (default) creates the table and migrates a table created by the
//!   Go operator (primary key without `cluster`) in a transaction; `existing` never runs DDL and
//!   fails clearly when the table is missing.
//! - `spec.options` are applied to each session with `set_config` (`statement_timeout`,
//!   `lock_timeout`, ...); keys that look like secrets are refused.
//! - The host is resolved through the SSRF guard and the connection goes to the checked address;
//!   TLS follows the DSN's `sslmode` (rustls, with `spec.tls` CA material when given).
//! - DSN and connection errors are replaced with fixed texts: no host, user or password leaks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kollect_core::api::v1alpha1::{
    KollectDatabaseSinkSpec, PostgresPreview, ProvisioningMode, SECRET_LIKE_OPTION_WORDS, SinkPreview,
};
use kollect_core::model::{Row, RowKey};
use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use tokio::sync::Mutex;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, GenericClient};

use crate::registry::BuildContext;

/// Rows at or above this count go through `COPY` instead of per-row upserts.
const BULK_THRESHOLD: usize = 32;

/// Configuration of a [`PostgresSink`].
#[derive(Clone)]
pub struct PostgresConfig {
    /// The connection string (libpq URL or key/value form).
    pub dsn: String,
    /// Schema (default `public`).
    pub schema: String,
    /// Table.
    pub table: String,
    /// Cluster identity written into every row (`spec.cluster`, default empty).
    pub cluster: String,
    /// Create and migrate the table (`ensure`) or only use it (`existing`).
    pub provisioning: ProvisioningMode,
    /// Session settings.
    pub options: Vec<(String, String)>,
    /// Extra CA certificates (PEM) for TLS.
    pub ca_pem: Option<String>,
    /// The SSRF guard.
    pub resolver: GuardedResolver,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("cluster", &self.cluster)
            .field("provisioning", &self.provisioning)
            .finish_non_exhaustive()
    }
}

/// Quotes an identifier (`"` doubled).
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The table DDL.
pub fn ddl(schema: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (\n  inventory_namespace TEXT NOT NULL,\n  inventory_name TEXT NOT NULL,\n  target_name TEXT NOT NULL,\n  source_uid TEXT NOT NULL,\n  cluster TEXT NOT NULL DEFAULT '',\n  resource_namespace TEXT NOT NULL DEFAULT '',\n  payload JSONB NOT NULL,\n  exported_at TIMESTAMPTZ NOT NULL,\n  PRIMARY KEY (cluster, inventory_namespace, inventory_name, target_name, source_uid)\n)",
        quote(schema),
        quote(table)
    )
}

/// Checks `spec.options`: identifiers only, nothing secret-like.
fn check_options(options: &[(String, String)]) -> Result<(), SinkError> {
    for (key, _) in options {
        let lower = key.to_ascii_lowercase();
        if let Some(word) = SECRET_LIKE_OPTION_WORDS.iter().find(|w| lower.contains(*w)) {
            return Err(SinkError::terminal(format!(
                "spec.options.{key}: keys containing \"{word}\" are not allowed (secrets belong in the database Secret)"
            )));
        }
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(SinkError::terminal(format!(
                "spec.options.{key}: not a PostgreSQL setting name"
            )));
        }
    }
    Ok(())
}

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

fn db_error(stage: &str, error: &tokio_postgres::Error) -> SinkError {
    // The server's message names objects and values, never credentials; the client-side text
    // of a connection error can name the host, so only the server part is kept.
    match error.as_db_error() {
        Some(db) => {
            let message = format!("{stage}: {} ({})", db.message(), db.code().code());
            match *db.code() {
                SqlState::INSUFFICIENT_PRIVILEGE => SinkError::forbidden(message),
                SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    SinkError::terminal(message)
                }
                SqlState::UNDEFINED_TABLE
                | SqlState::UNDEFINED_COLUMN
                | SqlState::INVALID_PARAMETER_VALUE
                | SqlState::UNDEFINED_OBJECT
                | SqlState::CANT_CHANGE_RUNTIME_PARAM => SinkError::terminal(message),
                _ => SinkError::transient(message),
            }
        }
        None if error.is_closed() => SinkError::transient(format!("{stage}: connection closed")),
        None => SinkError::transient(format!("{stage}: connection failed")),
    }
}

impl PostgresSink {
    /// Builds the sink from a `KollectDatabaseSink` spec and its resolved database Secret.
    pub fn from_spec(spec: &KollectDatabaseSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        let postgres = spec
            .postgres
            .as_ref()
            .ok_or_else(|| SinkError::terminal("spec.postgres is required for type postgres"))?;
        if postgres.table.trim().is_empty() {
            return Err(SinkError::terminal("spec.postgres.table is required"));
        }
        let dsn = context
            .database_secret
            .first_text(&["dsn", "url", "connectionString", "DATABASE_URL"])
            .ok_or_else(|| {
                SinkError::terminal(format!(
                    "the Secret of spec.postgres.databaseRef ({}) has none of the keys dsn, url, connectionString, DATABASE_URL",
                    postgres.database_ref.name
                ))
            })?;
        Self::new(PostgresConfig {
            dsn,
            schema: postgres.schema.clone().unwrap_or_else(|| "public".into()),
            table: postgres.table.clone(),
            cluster: spec.common.cluster.clone().unwrap_or_default(),
            provisioning: spec.common.provisioning_mode(),
            options: spec
                .common
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ca_pem: context.ca_pem,
            resolver: GuardedResolver::new(context.net_policy),
        })
    }

    /// Builds the sink; checks the DSN and options without connecting.
    pub fn new(config: PostgresConfig) -> Result<Self, SinkError> {
        check_options(&config.options)?;
        config
            .dsn
            .parse::<Config>()
            .map_err(|_| SinkError::terminal("parse postgres DSN: invalid connection string"))?;
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
        let client = Arc::new(self.connect().await?);
        for (key, value) in &self.config.options {
            client
                .execute("SELECT set_config($1, $2, false)", &[key, value])
                .await
                .map_err(|e| db_error(&format!("apply spec.options.{key}"), &e))?;
        }
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn connect(&self) -> Result<Client, SinkError> {
        let mut config: Config = self
            .config
            .dsn
            .parse()
            .map_err(|_| SinkError::terminal("parse postgres DSN: invalid connection string"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(30));
        }
        // Resolve every host through the SSRF guard and pin the checked address.
        let hosts = config.get_hosts().to_vec();
        let ports = config.get_ports().to_vec();
        let mut addresses: Vec<IpAddr> = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let Host::Tcp(name) = host else {
                return Err(SinkError::terminal(
                    "connect postgres: Unix-socket hosts are not allowed; use a TCP host",
                ));
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let resolved = self
                .config
                .resolver
                .resolve(name, port)
                .await
                .map_err(|e| SinkError::terminal(format!("connect postgres: {e}")))?;
            let ip = resolved
                .first()
                .map(std::net::SocketAddr::ip)
                .ok_or_else(|| SinkError::transient("connect postgres: the host did not resolve"))?;
            addresses.push(ip);
        }
        if addresses.is_empty() {
            return Err(SinkError::terminal("connect postgres: the DSN names no host"));
        }
        for ip in addresses {
            config.hostaddr(ip);
        }
        let result = match config.get_ssl_mode() {
            SslMode::Disable => config
                .connect(tokio_postgres::NoTls)
                .await
                .map(|(client, connection)| {
                    tokio::spawn(connection);
                    client
                }),
            _ => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
                config.connect(tls).await.map(|(client, connection)| {
                    tokio::spawn(connection);
                    client
                })
            }
        };
        result.map_err(|error| match error.as_db_error() {
            Some(db)
                if matches!(
                    *db.code(),
                    SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                ) =>
            {
                SinkError::terminal("connect postgres: authentication failed")
            }
            Some(db) if *db.code() == SqlState::INVALID_CATALOG_NAME => {
                SinkError::terminal("connect postgres: the database does not exist")
            }
            _ => SinkError::transient("connect postgres: connection failed"),
        })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, SinkError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = &self.config.ca_pem {
            for certificate in
                <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::pem_slice_iter(
                    pem.as_bytes(),
                )
            {
                let certificate =
                    certificate.map_err(|e| SinkError::terminal(format!("spec.tls CA bundle: {e}")))?;
                roots
                    .add(certificate)
                    .map_err(|e| SinkError::terminal(format!("spec.tls CA bundle: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SinkError::terminal(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth())
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
            }
            ProvisioningMode::Ensure => {
                client
                    .batch_execute(&ddl(&self.config.schema, &self.config.table))
                    .await
                    .map_err(|e| db_error("create table", &e))?;
                self.migrate_primary_key(client).await?;
            }
        }
        *ensured = true;
        Ok(())
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
        rows: &[&Row],
        partition: (&str, &str, &str),
        exported_at: &str,
    ) -> Result<(), SinkError> {
        let (namespace, name, cluster) = partition;
        let table = self.table();
        let update = "ON CONFLICT (cluster, inventory_namespace, inventory_name, target_name, source_uid) \
                      DO UPDATE SET payload = EXCLUDED.payload, exported_at = EXCLUDED.exported_at, \
                      resource_namespace = EXCLUDED.resource_namespace";
        if rows.len() < BULK_THRESHOLD {
            let statement = tx
                .prepare(&format!(
                    "INSERT INTO {table} (inventory_namespace, inventory_name, target_name, source_uid, cluster, resource_namespace, payload, exported_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::timestamptz) {update}"
                ))
                .await
                .map_err(|e| db_error("postgres upsert", &e))?;
            for row in rows {
                let payload = payload(row)?;
                let resource_namespace = resource_namespace(row, namespace);
                tx.execute(
                    &statement,
                    &[
                        &namespace,
                        &name,
                        &row.target_name,
                        &row.uid,
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
        let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
            sink,
            &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
        );
        futures::pin_mut!(writer);
        for row in rows {
            let payload = payload(row)?;
            let resource_namespace = resource_namespace(row, namespace);
            writer
                .as_mut()
                .write(&[&row.target_name, &row.uid, &resource_namespace, &payload])
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

fn payload(row: &Row) -> Result<String, SinkError> {
    serde_json::to_string(row).map_err(|e| SinkError::terminal(format!("encode row: {e}")))
}

fn resource_namespace<'a>(row: &'a Row, inventory_namespace: &'a str) -> &'a str {
    if row.namespace.is_empty() {
        inventory_namespace
    } else {
        &row.namespace
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn sink_type(&self) -> &str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::RELATIONAL_STORE.with_delta(true)
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
                Ok(ExportReceipt {
                    bytes,
                    unchanged: false,
                })
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
        Ok(ProbeReport {
            latency: started.elapsed(),
            message: "PostgreSQL ping succeeded".into(),
        })
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            provisioning_mode: Some(
                match self.config.provisioning {
                    ProvisioningMode::Ensure => "ensure",
                    ProvisioningMode::Existing => "existing",
                }
                .to_owned(),
            ),
            object_path: Some(request.inventory.default_object_path(".json")),
            postgres: Some(PostgresPreview {
                expected_ddl: Some(ddl(&self.config.schema, &self.config.table)),
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
        exported_at: &str,
    ) -> Result<u64, SinkError> {
        if let Some(delta) = &request.delta {
            let upserts: Vec<&Row> = delta.upserts.iter().collect();
            self.upsert_rows(client, &upserts, partition, exported_at).await?;
            self.delete_keys(client, &delta.deletes, partition).await?;
            return Ok(delta.upserts.len() as u64);
        }
        if request.snapshot.is_empty() {
            self.delete_all(client, partition).await?;
            return Ok(0);
        }
        // The rows of this part; stale rows are deleted with the last part, against the whole
        // snapshot, so a multipart set never deletes what a later part brings.
        let rows: Vec<&Row> = request.rows().collect();
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
            client
                .execute(
                    &format!(
                        "DELETE FROM {} t WHERE t.inventory_namespace = $1 AND t.inventory_name = $2 AND t.cluster = $3 \
                         AND NOT EXISTS (SELECT 1 FROM kollect_export_staging s \
                         WHERE s.target_name = t.target_name AND s.source_uid = t.source_uid)",
                        self.table()
                    ),
                    &[&namespace, &name, &cluster],
                )
                .await
                .map_err(|e| db_error("postgres delete stale", &e))?;
            return Ok(rows.len() as u64);
        }
        let (target_names, uids): (Vec<&str>, Vec<&str>) = request
            .snapshot
            .rows()
            .iter()
            .map(|r| (r.target_name.as_str(), r.uid.as_str()))
            .unzip();
        client
            .execute(
                &format!(
                    "DELETE FROM {} t WHERE t.inventory_namespace = $1 AND t.inventory_name = $2 AND t.cluster = $3 \
                     AND (t.target_name, t.source_uid) NOT IN \
                     (SELECT s.target_name, s.source_uid FROM unnest($4::text[], $5::text[]) AS s(target_name, source_uid))",
                    self.table()
                ),
                &[&namespace, &name, &cluster, &target_names, &uids],
            )
            .await
            .map_err(|e| db_error("postgres delete stale", &e))?;
        Ok(rows.len() as u64)
    }

    async fn delete_keys(
        &self,
        client: &Client,
        keys: &[RowKey],
        partition: (&str, &str, &str),
    ) -> Result<(), SinkError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (namespace, name, cluster) = partition;
        let (target_names, uids): (Vec<&str>, Vec<&str>) = keys
            .iter()
            .map(|k| (k.target_name.as_str(), k.uid.as_str()))
            .unzip();
        client
            .execute(
                &format!(
                    "DELETE FROM {} t WHERE t.inventory_namespace = $1 AND t.inventory_name = $2 AND t.cluster = $3 \
                     AND (t.target_name, t.source_uid) IN (SELECT * FROM unnest($4::text[], $5::text[]))",
                    self.table()
                ),
                &[&namespace, &name, &cluster, &target_names, &uids],
            )
            .await
            .map_err(|e| db_error("postgres delete", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_quotes_identifiers_and_keys_on_cluster() {
        let ddl = ddl("my\"schema", "items");
        assert!(
            ddl.starts_with("CREATE TABLE IF NOT EXISTS \"my\"\"schema\".\"items\""),
            "{ddl}"
        );
        assert!(
            ddl.contains(
                "PRIMARY KEY (cluster, inventory_namespace, inventory_name, target_name, source_uid)"
            )
        );
    }

    #[test]
    fn secret_like_options_are_refused() {
        let error = check_options(&[("db_password".into(), "x".into())]).unwrap_err();
        assert!(error.message().contains("\"password\""), "{error}");
        assert!(!error.message().contains("\"x\""));
        assert!(check_options(&[("statement_timeout".into(), "5s".into())]).is_ok());
        assert!(check_options(&[("a;drop".into(), "x".into())]).is_err());
    }

    #[test]
    fn an_invalid_dsn_does_not_echo_itself() {
        let error = PostgresSink::new(PostgresConfig {
            dsn: "postgres://user:s3cret@host:notaport/db".into(),
            schema: "public".into(),
            table: "t".into(),
            cluster: String::new(),
            provisioning: ProvisioningMode::Ensure,
            options: vec![],
            ca_pem: None,
            resolver: GuardedResolver::new(kollect_core::netguard::NetPolicy::new(false)),
        })
        .unwrap_err();
        assert_eq!(error.message(), "parse postgres DSN: invalid connection string");
    }
}
