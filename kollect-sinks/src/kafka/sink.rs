//! The Kafka sink: publishes snapshot or row messages ([`crate::events`]) and waits for every
//! acknowledgement before an export counts as done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::{KafkaPreview, KollectEventSinkSpec, SinkPreview};
use kollect_core::model::SharedRow;
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, future_producer::OwnedDeliveryResult};
use rdkafka::util::Timeout;
use tokio::sync::Mutex;

use super::client::{Connection, KollectContext, SharedConnection, error};
use super::config::KafkaConfig;
use crate::context::BuildContext;
use crate::events::{self, MessageMode};

/// How many messages are in flight at once (librdkafka batches them).
const IN_FLIGHT: usize = 10_000;

/// One message to publish: key, value (`None` for a tombstone) and headers.
struct Outgoing {
    key: String,
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
}

/// Publishes inventories to one Kafka topic.
pub struct KafkaSink {
    config: KafkaConfig,
    connection: Mutex<Option<SharedConnection>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A sink for `config`; nothing connects until the first export or probe.
    pub fn new(config: KafkaConfig) -> Self {
        Self {
            config,
            connection: Mutex::new(None),
        }
    }

    /// Reads a `KollectEventSink` spec (type `kafka`) with its resolved Secret.
    pub fn from_spec(spec: &KollectEventSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        KafkaConfig::from_spec(spec, context).map(Self::new)
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The open connection, opened (checked, the topic provisioned) on first use. Every use
    /// re-checks the advertised brokers, so a broker that moved to a refused address is not
    /// published to again.
    async fn connection(&self) -> Result<SharedConnection, SinkError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            connection.check_metadata().await?;
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(Connection::open(&self.config).await?);
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// The inventory this sink publishes `inventory` as (its cluster identity is the sink's).
    fn identity(&self, inventory: &InventoryRef) -> InventoryRef {
        let mut inventory = inventory.clone();
        if !self.config.cluster.is_empty() {
            inventory.cluster.clone_from(&self.config.cluster);
        }
        inventory
    }

    /// Publishes `messages` in order and waits for every acknowledgement; returns the bytes
    /// sent.
    async fn publish(&self, connection: &Connection, messages: Vec<Outgoing>) -> Result<u64, SinkError> {
        let topic = self.config.topic.as_str();
        let mut bytes = 0u64;
        // Chunks keep the number of pending futures bounded; within a chunk every message is
        // queued in order before the first acknowledgement is awaited.
        for chunk in messages.chunks(IN_FLIGHT) {
            let sends: Vec<_> = chunk
                .iter()
                .map(|message| send(&connection.producer, topic, message))
                .collect();
            for result in futures::future::join_all(sends).await {
                if let Err((e, _)) = result {
                    return Err(error(&self.config, "kafka publish", &e));
                }
            }
        }
        for message in &messages {
            bytes += (message.key.len() + message.value.as_ref().map_or(0, Vec::len)) as u64;
        }
        Ok(bytes)
    }

    /// Row messages for a request: the delta when there is one, otherwise every row whose
    /// latest message differs and a tombstone for every live key the snapshot no longer has.
    async fn row_messages(
        &self,
        connection: &Connection,
        inventory: &InventoryRef,
        request: &ExportRequest,
    ) -> Result<Vec<Outgoing>, SinkError> {
        let mut messages = Vec::new();
        let row = |row: &SharedRow| {
            let (value, checksum) = events::row_value(inventory, row);
            Outgoing {
                key: events::row_key(inventory, &row.key()),
                headers: events::headers(inventory, MessageMode::Row, Some(&checksum)),
                value: Some(value),
            }
        };
        let tombstone = |key: String| Outgoing {
            key,
            value: None,
            headers: events::headers(inventory, MessageMode::Row, None),
        };
        match request.delta.as_deref() {
            Some(delta) => {
                messages.extend(delta.upserts.iter().map(row));
                messages.extend(
                    delta
                        .deletes
                        .iter()
                        .map(|k| tombstone(events::row_key(inventory, k))),
                );
            }
            None => {
                let mut live = connection.live_rows(inventory).await?;
                for current in request.snapshot.rows() {
                    let message = row(current);
                    let published = live.remove(&message.key);
                    let checksum = message
                        .headers
                        .iter()
                        .find(|(k, _)| *k == events::HEADER_CHECKSUM)
                        .map(|(_, v)| v.as_str());
                    if published.as_deref() != checksum {
                        messages.push(message);
                    }
                }
                messages.extend(live.into_keys().map(tombstone));
            }
        }
        Ok(messages)
    }
}

/// Queues `message` on `topic` and resolves when the broker acknowledged it.
fn send<'a>(
    producer: &'a FutureProducer<KollectContext>,
    topic: &'a str,
    message: &'a Outgoing,
) -> impl Future<Output = OwnedDeliveryResult> + Send + 'a {
    let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
    for (key, value) in &message.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let mut record: FutureRecord<'a, str, [u8]> =
        FutureRecord::to(topic).key(message.key.as_str()).headers(headers);
    if let Some(value) = &message.value {
        record = record.payload(value.as_slice());
    }
    producer.send(record, Timeout::Never)
}

#[async_trait]
impl Sink for KafkaSink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        match self.config.mode {
            // Every part of every export is a message; a delta would go unused.
            MessageMode::Snapshot => Capabilities::MESSAGES.with_delta(false),
            // One request per export, whatever its size: rows are messages of their own.
            MessageMode::Row => Capabilities::ROWS,
        }
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let connection = self.connection().await?;
        let inventory = self.identity(&request.inventory);
        let messages = match self.config.mode {
            MessageMode::Snapshot => vec![Outgoing {
                key: events::inventory_key(&inventory),
                value: Some(events::snapshot_value(
                    &inventory,
                    Timestamp::now(),
                    &request.envelope(),
                )),
                headers: {
                    let mut headers =
                        events::headers(&inventory, MessageMode::Snapshot, Some(request.part.checksum()));
                    let (index, total) = request.marker().map_or((1, 1), |m| (m.index, m.total));
                    headers.push((events::HEADER_PART, format!("{index}/{total}")));
                    headers
                },
            }],
            MessageMode::Row => self.row_messages(&connection, &inventory, request).await?,
        };
        if messages.is_empty() {
            return Ok(ExportReceipt::unchanged());
        }
        let count = messages.len();
        let bytes = self.publish(&connection, messages).await?;
        tracing::debug!(topic = %self.config.topic, inventory = %inventory, messages = count, bytes, "published to Kafka");
        Ok(ExportReceipt::written(bytes))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let connection = self.connection().await?;
        let inventory = self.identity(&request.inventory);
        let messages = match self.config.mode {
            MessageMode::Snapshot => vec![Outgoing {
                key: events::inventory_key(&inventory),
                value: None,
                headers: events::headers(&inventory, MessageMode::Snapshot, None),
            }],
            MessageMode::Row => {
                let live: BTreeMap<String, String> = connection.live_rows(&inventory).await?;
                live.into_keys()
                    .map(|key| Outgoing {
                        key,
                        value: None,
                        headers: events::headers(&inventory, MessageMode::Row, None),
                    })
                    .collect()
            }
        };
        self.publish(&connection, messages).await.map(drop)
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = Instant::now();
        let connection = self.connection().await?;
        Ok(ProbeReport::new(
            started.elapsed(),
            format!(
                "Kafka broker metadata request succeeded (topic \"{}\", {} partitions)",
                self.config.topic, connection.partitions
            ),
        ))
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        let inventory = self.identity(&request.inventory);
        let key = match self.config.mode {
            MessageMode::Snapshot => events::inventory_key(&inventory),
            MessageMode::Row => request.rows().next().map_or_else(
                || {
                    format!(
                        "{}/<targetNamespace>/<targetName>/<uid>",
                        events::inventory_key(&inventory)
                    )
                },
                |row| events::row_key(&inventory, &row.key()),
            ),
        };
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            object_path: Some(key),
            kafka: Some(KafkaPreview {
                topic: Some(self.config.topic.clone()),
            }),
            ..SinkPreview::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::model::{Row, Snapshot};
    use kollect_core::netguard::{GuardedResolver, NetPolicy};

    fn sink(mode: MessageMode) -> KafkaSink {
        KafkaSink::new(
            KafkaConfig::new(
                &["kafka:9092"],
                "inventory",
                GuardedResolver::new(NetPolicy::new(false)),
            )
            .unwrap()
            .with_mode(mode)
            .with_cluster("prod"),
        )
    }

    #[test]
    fn previews_name_the_topic_and_the_first_key_and_capabilities_follow_the_mode() {
        let row = Row {
            target_namespace: "shop".into(),
            target_name: "t".into(),
            namespace: "shop".into(),
            name: "web".into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: "u1".into(),
            attributes: None,
        };
        let request = ExportRequest::full(
            InventoryRef::namespaced("shop", "images"),
            1,
            Timestamp::UNIX_EPOCH,
            Snapshot::new(vec![row]),
        );
        let snapshot = sink(MessageMode::Snapshot);
        let preview = snapshot.preview(&request);
        assert_eq!(preview.object_path.as_deref(), Some("prod/shop/images"));
        assert_eq!(preview.kafka.and_then(|k| k.topic).as_deref(), Some("inventory"));
        assert!(!snapshot.capabilities().accepts_delta);
        let rows = sink(MessageMode::Row);
        assert_eq!(
            rows.preview(&request).object_path.as_deref(),
            Some("prod/shop/images/shop/t/u1")
        );
        assert_eq!(rows.capabilities(), Capabilities::ROWS);
    }
}
