//! The MongoDB sink: ordered write commands per export, a delta when the engine has one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::mongodb::bson::{Bson, DateTime, Document, doc};
use ::mongodb::options::IndexOptions;
use ::mongodb::{Database, IndexModel};
use async_trait::async_trait;
use futures::TryStreamExt;
use kollect_core::api::v1alpha1::{
    DeletedRows, KollectDatabaseSinkSpec, MongodbPreview, ProvisioningMode, SinkPreview,
};
use kollect_core::model::{Rows, SharedRow};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use tokio::sync::Mutex;

use super::config::MongodbConfig;
use super::document::{Batch, Partition, delete_statement, soft_delete_statement, upsert_statement};
use super::transport::{self, Connection, driver_error};
use crate::context::BuildContext;

/// The name of the unique index the sink creates.
const INDEX_NAME: &str = "kollect_identity";
/// The unique index the Go operator created (without `cluster`); `ensure` replaces it, since it
/// refuses two clusters holding the same inventory and object.
const GO_INDEX_NAME: &str = "inventory_namespace_1_inventory_name_1_target_name_1_source_uid_1";
/// Ids per `$in` filter when retiring stale documents.
const IDS_PER_STATEMENT: usize = 10_000;
/// How long a probe waits for the server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// MongoDB's `NamespaceExists`, answered when the collection was created in between.
const NAMESPACE_EXISTS: i32 = 48;

/// The MongoDB sink.
pub struct MongodbSink {
    config: MongodbConfig,
    connection: Mutex<Option<Arc<Connection>>>,
    prepared: Mutex<bool>,
}

impl std::fmt::Debug for MongodbSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongodbSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MongodbSink {
    /// Builds the sink from a `KollectDatabaseSink` spec and its resolved database Secret.
    pub fn from_spec(spec: &KollectDatabaseSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        MongodbConfig::from_spec(spec, context).and_then(Self::new)
    }

    /// Builds the sink; checks the configuration without connecting.
    pub fn new(config: MongodbConfig) -> Result<Self, SinkError> {
        config.check()?;
        Ok(Self {
            config,
            connection: Mutex::new(None),
            prepared: Mutex::new(false),
        })
    }

    /// The client, built on first use (the driver pools and reconnects by itself).
    async fn connection(&self) -> Result<Arc<Connection>, SinkError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            connection.check_policy()?;
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(transport::connect(&self.config).await?);
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    fn database(&self, connection: &Connection) -> Database {
        connection.client.database(&self.config.database)
    }

    fn qualified(&self) -> String {
        format!("{}.{}", self.config.database, self.config.collection)
    }

    /// Creates the collection and index (ensure) or checks the collection exists (existing),
    /// once per sink.
    async fn prepare(&self, database: &Database) -> Result<(), SinkError> {
        let mut prepared = self.prepared.lock().await;
        if *prepared {
            return Ok(());
        }
        let exists = !database
            .list_collection_names()
            .filter(doc! {"name": &self.config.collection})
            .await
            .map_err(|e| driver_error("mongodb list collections", &e))?
            .is_empty();
        match self.config.provisioning {
            ProvisioningMode::Existing if !exists => {
                return Err(SinkError::terminal(format!(
                    "collection {} does not exist and provisioning.mode is existing (create it with a unique index on {}, or use mode ensure)",
                    self.qualified(),
                    super::INDEX_KEYS.join(", ")
                )));
            }
            ProvisioningMode::Existing => {}
            ProvisioningMode::Ensure => self.ensure(database, exists).await?,
        }
        *prepared = true;
        Ok(())
    }

    async fn ensure(&self, database: &Database, exists: bool) -> Result<(), SinkError> {
        if !exists
            && let Err(error) = database.create_collection(&self.config.collection).await
            && !matches!(error.kind.as_ref(), ::mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_EXISTS)
        {
            return Err(driver_error("mongodb create collection", &error));
        }
        let collection = database.collection::<Document>(&self.config.collection);
        let indexes = collection
            .list_index_names()
            .await
            .map_err(|e| driver_error("mongodb list indexes", &e))?;
        if indexes.iter().any(|name| name == GO_INDEX_NAME) {
            tracing::info!(collection = %self.qualified(), "replacing the unique index without cluster");
            collection
                .drop_index(GO_INDEX_NAME)
                .await
                .map_err(|e| driver_error("mongodb drop index", &e))?;
        }
        if indexes.iter().any(|name| name == INDEX_NAME) {
            return Ok(());
        }
        // Documents written before this sink created its index may carry server-generated ids;
        // they get their deterministic id first, so the unique index cannot refuse the upserts.
        self.rekey_documents(&collection).await?;
        let keys: Document = super::INDEX_KEYS
            .iter()
            .map(|k| ((*k).to_owned(), Bson::Int32(1)))
            .collect();
        let index = IndexModel::builder()
            .keys(keys)
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name(INDEX_NAME.to_owned())
                    .build(),
            )
            .build();
        collection
            .create_index(index)
            .await
            .map_err(|e| driver_error("mongodb create index", &e))?;
        Ok(())
    }

    /// Gives every document whose `_id` is not a string (the Go operator let the server
    /// generate ObjectIds) its deterministic id: a copy under the new id, then the old one
    /// deleted, batch by batch. Idempotent, so an interrupted run is finished by the next one.
    async fn rekey_documents(&self, collection: &::mongodb::Collection<Document>) -> Result<(), SinkError> {
        let database = collection.client().database(&self.config.database);
        let mut cursor = collection
            .find(doc! {"_id": {"$not": {"$type": "string"}}})
            .await
            .map_err(|e| driver_error("mongodb find documents to re-key", &e))?;
        let mut copies = Batch::update(&self.config.collection);
        let mut old_ids = Vec::new();
        let mut rekeyed = 0_u64;
        while let Some(mut document) = cursor
            .try_next()
            .await
            .map_err(|e| driver_error("mongodb find documents to re-key", &e))?
        {
            let Some(old_id) = document.remove("_id") else {
                continue;
            };
            let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
            let partition = Partition {
                namespace: &text("inventory_namespace"),
                name: &text("inventory_name"),
                cluster: &text("cluster"),
            }
            .id(&text("target_name"), &text("source_uid"));
            document.insert("_id", partition.clone());
            if let Some(command) = copies.push(&upsert_statement(doc! {"_id": partition}, document))? {
                transport::write(&database, command, "mongodb re-key").await?;
                self.retire_ids(&database, std::mem::take(&mut old_ids)).await?;
            }
            old_ids.push(old_id);
            rekeyed += 1;
        }
        if let Some(command) = copies.take() {
            transport::write(&database, command, "mongodb re-key").await?;
            self.retire_ids(&database, old_ids).await?;
        }
        if rekeyed > 0 {
            tracing::info!(collection = %self.qualified(), documents = rekeyed, "gave documents their deterministic ids");
        }
        Ok(())
    }

    /// Deletes the documents with the ids `ids`.
    async fn retire_ids(&self, database: &Database, ids: Vec<Bson>) -> Result<(), SinkError> {
        let statements = ids
            .chunks(IDS_PER_STATEMENT)
            .map(|chunk| Ok(delete_statement(doc! {"_id": {"$in": chunk}})));
        send(
            database,
            Batch::delete(&self.config.collection),
            statements,
            "mongodb delete",
        )
        .await
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

    /// Upserts `rows` in ordered `update` commands.
    async fn upsert<'r>(
        &self,
        database: &Database,
        rows: impl Iterator<Item = &'r SharedRow>,
        partition: Partition<'_>,
        at: DateTime,
    ) -> Result<u64, SinkError> {
        let mut count = 0;
        let statements = rows.map(|row| {
            count += 1;
            let document = partition.document(row, at)?;
            Ok(upsert_statement(
                partition.key_filter(row.target_name(), row.uid()),
                document,
            ))
        });
        send(
            database,
            Batch::update(&self.config.collection),
            statements,
            "mongodb upsert",
        )
        .await?;
        Ok(count)
    }

    /// Deletes (or marks deleted) the documents matching each filter.
    async fn retire(
        &self,
        database: &Database,
        filters: impl Iterator<Item = Document>,
        at: DateTime,
    ) -> Result<(), SinkError> {
        if self.config.deleted_rows == DeletedRows::SoftDelete {
            let statements = filters.map(|filter| Ok(soft_delete_statement(filter, at)));
            send(
                database,
                Batch::update(&self.config.collection),
                statements,
                "mongodb soft delete",
            )
            .await
        } else {
            let statements = filters.map(|filter| Ok(delete_statement(filter)));
            send(
                database,
                Batch::delete(&self.config.collection),
                statements,
                "mongodb delete",
            )
            .await
        }
    }

    /// The ids of the partition's live documents that `snapshot` does not hold: `(vanished,
    /// foreign)`, the documents of objects that disappeared, and documents under ids this sink
    /// does not give (server-generated ones in an `existing` collection the Go operator wrote).
    async fn stale_ids(
        &self,
        database: &Database,
        partition: Partition<'_>,
        snapshot: &Rows,
    ) -> Result<(Vec<Bson>, Vec<Bson>), SinkError> {
        let held: HashSet<String> = snapshot
            .iter()
            .map(|r| partition.id(r.target_name(), r.uid()))
            .collect();
        let mut filter = partition.filter();
        if self.config.deleted_rows == DeletedRows::SoftDelete {
            filter.insert("deleted_at", Bson::Null);
        }
        let mut cursor = database
            .collection::<Document>(&self.config.collection)
            .find(filter)
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| driver_error("mongodb find stale", &e))?;
        let (mut vanished, mut foreign) = (Vec::new(), Vec::new());
        while let Some(mut document) = cursor
            .try_next()
            .await
            .map_err(|e| driver_error("mongodb find stale", &e))?
        {
            match document.remove("_id") {
                Some(Bson::String(id)) if held.contains(&id) => {}
                Some(id @ Bson::String(_)) => vanished.push(id),
                Some(id) => foreign.push(id),
                None => {}
            }
        }
        Ok((vanished, foreign))
    }

    /// The writes of one export.
    async fn apply(&self, database: &Database, request: &ExportRequest) -> Result<u64, SinkError> {
        let partition = self.partition(&request.inventory);
        let at = DateTime::from_millis(request.exported_at.as_millisecond());
        if let Some(delta) = &request.delta {
            let count = self.upsert(database, delta.upserts.iter(), partition, at).await?;
            let keys = delta
                .deletes
                .iter()
                .map(|k| partition.key_filter(&k.target_name, &k.uid));
            self.retire(database, keys, at).await?;
            return Ok(count);
        }
        let count = self.upsert(database, request.rows(), partition, at).await?;
        if !request.is_last_part() {
            return Ok(count);
        }
        // Upserts first, then the stale documents (all of them for an empty snapshot): a failure
        // in between leaves extra documents that the retry deletes, never missing ones.
        let (vanished, foreign) = self
            .stale_ids(database, partition, request.snapshot.rows())
            .await?;
        let filters = vanished
            .chunks(IDS_PER_STATEMENT)
            .map(|ids| doc! {"_id": {"$in": ids}});
        self.retire(database, filters, at).await?;
        // A foreign document duplicates one just upserted under its own id: never history.
        self.retire_ids(database, foreign).await?;
        Ok(count)
    }
}

/// Sends `statements` in as few commands of `batch`'s kind as the limits allow, in order,
/// stopping at the first statement that could not be built.
async fn send(
    database: &Database,
    mut batch: Batch,
    statements: impl Iterator<Item = Result<Document, SinkError>>,
    stage: &str,
) -> Result<(), SinkError> {
    for statement in statements {
        if let Some(command) = batch.push(&statement?)? {
            transport::write(database, command, stage).await?;
        }
    }
    if let Some(command) = batch.take() {
        transport::write(database, command, stage).await?;
    }
    Ok(())
}

#[async_trait]
impl Sink for MongodbSink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ROWS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let connection = self.connection().await?;
        let database = self.database(&connection);
        self.prepare(&database).await?;
        let count = self.apply(&database, request).await?;
        connection.check_policy()?;
        Ok(ExportReceipt::written(count))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let connection = self.connection().await?;
        let database = self.database(&connection);
        self.prepare(&database).await?;
        // The inventory is gone: its documents go, soft-deleted ones included.
        let statement = delete_statement(self.partition(&request.inventory).filter());
        send(
            &database,
            Batch::delete(&self.config.collection),
            std::iter::once(Ok(statement)),
            "mongodb delete all",
        )
        .await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = Instant::now();
        let connection = self.connection().await?;
        let database = self.database(&connection);
        let ping = database.run_command(doc! {"ping": 1});
        tokio::time::timeout(PROBE_TIMEOUT, ping)
            .await
            .map_err(|_| SinkError::transient("mongodb ping: no answer within 15s"))?
            .map_err(|e| driver_error("mongodb ping", &e))?;
        connection.check_policy()?;
        Ok(ProbeReport::new(started.elapsed(), "MongoDB ping succeeded"))
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            provisioning_mode: Some(self.config.provisioning.as_str().to_owned()),
            object_path: Some(request.inventory.default_object_path(".json")),
            mongodb: Some(MongodbPreview {
                expected_index_keys: super::INDEX_KEYS.iter().map(|k| (*k).to_owned()).collect(),
            }),
            warnings: vec![format!("mongodb: documents upserted into {}", self.qualified())],
            ..SinkPreview::default()
        }
    }
}
