//! The connection to Kafka: the librdkafka client context (logs through `tracing`, remembers
//! authentication failures so they surface as such instead of as timeouts), the SSRF checks of
//! bootstrap and advertised brokers, topic provisioning, the error classes, and reading an
//! inventory's live row keys back from the topic.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kollect_core::api::v1alpha1::ProvisioningMode;
use kollect_core::error::Redactor;
use kollect_core::sink::{ErrorClass, InventoryRef, SinkError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::{KafkaConfig, MAX_MESSAGE_BYTES};
use crate::events::MessageHeaders;

/// How long a metadata request may take before the brokers count as unavailable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The client context: routes librdkafka's logs to `tracing` (scrubbed) and keeps the last
/// authentication failure it reported.
pub(super) struct KollectContext {
    redactor: Redactor,
    auth_failure: AuthFailure,
}

/// The last authentication failure a client reported, shared with whoever waits on it
/// (librdkafka's wrappers do not hand the context back).
#[derive(Clone, Default)]
struct AuthFailure(Arc<Mutex<Option<String>>>);

impl AuthFailure {
    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, reason: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }
}

impl KollectContext {
    fn new(redactor: Redactor) -> (Self, AuthFailure) {
        let auth_failure = AuthFailure::default();
        let context = Self {
            redactor,
            auth_failure: auth_failure.clone(),
        };
        (context, auth_failure)
    }
}

impl ClientContext for KollectContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let message = self.redactor.scrub(message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.redactor.scrub(reason);
        if is_auth_failure(error.rdkafka_error_code()) {
            self.auth_failure.set(reason.clone());
        }
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    }

    fn stats(&self, _statistics: rdkafka::Statistics) {}
}

impl ConsumerContext for KollectContext {}

fn is_auth_failure(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// The class of a librdkafka error: authentication and invalid requests are terminal,
/// authorization is forbidden, everything else (brokers unavailable, timeouts) transient.
pub(super) fn class_of(error: &KafkaError) -> ErrorClass {
    use RDKafkaErrorCode as Code;
    match error.rdkafka_error_code() {
        Some(Code::Authentication | Code::SaslAuthenticationFailed) => ErrorClass::Terminal,
        Some(
            Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::TransactionalIdAuthorizationFailed,
        ) => ErrorClass::Forbidden,
        Some(
            Code::MessageSizeTooLarge
            | Code::InvalidReplicationFactor
            | Code::InvalidPartitions
            | Code::PolicyViolation
            | Code::InvalidConfig
            | Code::InvalidTopic,
        ) => ErrorClass::Terminal,
        _ => match error {
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => ErrorClass::Terminal,
            _ => ErrorClass::Transient,
        },
    }
}

/// A connected producer, the context it shares, and the topic's partition count.
pub(super) struct Connection {
    pub(super) producer: FutureProducer<KollectContext>,
    pub(super) partitions: i32,
    auth_failure: AuthFailure,
    config: KafkaConfig,
}

impl Connection {
    /// Checks the bootstrap brokers, creates the producer, fetches the metadata, checks every
    /// advertised broker, and provisions the topic (`ensure`) or requires it (`existing`).
    pub(super) async fn open(config: &KafkaConfig) -> Result<Self, SinkError> {
        check_bootstrap(config).await?;
        let (context, auth_failure) = KollectContext::new(config.redactor());
        let producer: FutureProducer<KollectContext> = client_config(&config.producer_properties())
            .create_with_context(context)
            .map_err(|e| error(config, "kafka producer", &e))?;
        let mut connection = Connection {
            producer,
            partitions: 0,
            auth_failure,
            config: config.clone(),
        };
        let mut partitions = connection.check_metadata().await?;
        if partitions == 0 {
            match config.provisioning {
                ProvisioningMode::Existing => {
                    return Err(SinkError::terminal(format!(
                        "kafka topic \"{}\" does not exist (provisioning.mode existing never creates it)",
                        config.topic
                    )));
                }
                ProvisioningMode::Ensure => {
                    create_topic(config).await?;
                    partitions = connection.wait_for_topic().await?;
                }
            }
        }
        connection.partitions = partitions;
        Ok(connection)
    }

    /// Fetches the cluster metadata (with authentication), checks every advertised broker
    /// through the SSRF guard, and returns the topic's partition count (0 when it is missing).
    pub(super) async fn check_metadata(&self) -> Result<i32, SinkError> {
        let (brokers, partitions) = metadata(&self.producer, &self.auth_failure, &self.config).await?;
        for (host, port) in brokers {
            let port = u16::try_from(port).unwrap_or(0);
            crate::net::resolve_all(
                &self.config.resolver,
                &host,
                port,
                &format!("kafka broker {}", super::config::format_broker(&host, port)),
            )
            .await?;
        }
        Ok(partitions)
    }

    async fn wait_for_topic(&self) -> Result<i32, SinkError> {
        for _ in 0..50 {
            let partitions = self.check_metadata().await?;
            if partitions > 0 {
                return Ok(partitions);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(SinkError::transient(format!(
            "kafka topic \"{}\" was created but has no partitions yet",
            self.config.topic
        )))
    }

    /// The latest checksum of every live row message of `inventory` (tombstoned keys are left
    /// out), read from the beginning of the topic up to its current end.
    pub(super) async fn live_rows(
        &self,
        inventory: &InventoryRef,
    ) -> Result<BTreeMap<String, String>, SinkError> {
        let config = self.config.clone();
        let inventory = inventory.clone();
        let partitions = self.partitions;
        tokio::task::spawn_blocking(move || read_live_rows(&config, &inventory, partitions))
            .await
            .map_err(|e| SinkError::transient(format!("kafka read back: {e}")))?
    }
}

fn client_config(properties: &[(&'static str, String)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in properties {
        client.set(*key, value);
    }
    client.set_log_level(RDKafkaLogLevel::Warning);
    client
}

/// A sink error for a librdkafka error, classified, scrubbed of credentials.
pub(super) fn error(config: &KafkaConfig, stage: &str, error: &KafkaError) -> SinkError {
    let redactor = config.redactor();
    let text = match error {
        // The rendering of a configuration error includes the value: keep the key only.
        KafkaError::ClientConfig(_, description, key, _) => format!("{description} ({key})"),
        other => other.to_string(),
    };
    SinkError::new(class_of(error), redactor.scrub(&format!("{stage}: {text}")))
}

async fn check_bootstrap(config: &KafkaConfig) -> Result<(), SinkError> {
    for (host, port) in &config.brokers {
        crate::net::resolve_all(
            &config.resolver,
            host,
            *port,
            &format!("spec.kafka.brokers {}", super::config::format_broker(host, *port)),
        )
        .await?;
    }
    Ok(())
}

/// Advertised brokers and the topic's partition count (0 when it does not exist).
async fn metadata(
    producer: &FutureProducer<KollectContext>,
    auth_failure: &AuthFailure,
    config: &KafkaConfig,
) -> Result<(Vec<(String, i32)>, i32), SinkError> {
    let producer = producer.clone();
    let auth_failure = auth_failure.clone();
    let topic = config.topic.clone();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let metadata = producer.client().fetch_metadata(Some(&topic), METADATA_TIMEOUT);
        let auth = auth_failure.get();
        (metadata, auth)
    })
    .await
    .map_err(|e| SinkError::transient(format!("kafka metadata: {e}")))?;
    match result {
        (_, Some(auth)) => Err(SinkError::terminal(format!(
            "kafka authentication failed: {auth}"
        ))),
        (Err(e), None) => Err(error(
            config,
            &format!(
                "kafka metadata: brokers {} unavailable after {} s",
                bootstrap_list(config),
                started.elapsed().as_secs()
            ),
            &e,
        )),
        (Ok(metadata), None) => {
            let brokers = metadata
                .brokers()
                .iter()
                .map(|b| (b.host().to_owned(), b.port()))
                .collect();
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == config.topic)
                .map_or(Ok(0), |t| match t.error() {
                    None => Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)),
                    Some(code) => match RDKafkaErrorCode::from(code) {
                        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(0),
                        code => Err(error(
                            config,
                            &format!("kafka topic \"{}\"", config.topic),
                            &KafkaError::MetadataFetch(code),
                        )),
                    },
                })?;
            Ok((brokers, partitions))
        }
    }
}

fn bootstrap_list(config: &KafkaConfig) -> String {
    config
        .brokers
        .iter()
        .map(|(h, p)| super::config::format_broker(h, *p))
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates the topic: compacted (the latest message per key is the state), partitions and
/// replication from the options or the broker's defaults, room for snapshot parts.
async fn create_topic(config: &KafkaConfig) -> Result<(), SinkError> {
    let (context, auth_failure) = KollectContext::new(config.redactor());
    let admin: AdminClient<KollectContext> = client_config(&config.client_properties())
        .create_with_context(context)
        .map_err(|e| error(config, "kafka admin client", &e))?;
    let max_bytes = MAX_MESSAGE_BYTES.to_string();
    let topic = NewTopic::new(
        &config.topic,
        config.partitions.unwrap_or(-1),
        TopicReplication::Fixed(config.replication_factor.unwrap_or(-1)),
    )
    .set("cleanup.policy", "compact")
    .set("max.message.bytes", &max_bytes);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| error(config, "kafka create topic", &e))?;
    if let Some(auth) = auth_failure.get() {
        return Err(SinkError::terminal(format!(
            "kafka authentication failed: {auth}"
        )));
    }
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(error(
                    config,
                    &format!("kafka create topic \"{name}\""),
                    &KafkaError::AdminOp(code),
                ));
            }
        }
    }
    tracing::info!(topic = %config.topic, "created Kafka topic (cleanup.policy=compact)");
    Ok(())
}

/// Reads the topic from the beginning to the end it has now and keeps, per key of
/// `inventory`'s row messages, the checksum of the latest value (tombstones remove the key).
fn read_live_rows(
    config: &KafkaConfig,
    inventory: &InventoryRef,
    partitions: i32,
) -> Result<BTreeMap<String, String>, SinkError> {
    let mut properties = config.client_properties();
    properties.extend([
        ("group.id", "kollect-read-back".to_owned()),
        ("enable.auto.commit", "false".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        ("fetch.max.bytes", (64 * 1024 * 1024).to_string()),
    ]);
    let (context, _) = KollectContext::new(config.redactor());
    let consumer: BaseConsumer<KollectContext> = client_config(&properties)
        .create_with_context(context)
        .map_err(|e| error(config, "kafka read back", &e))?;
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(&config.topic, partition, METADATA_TIMEOUT)
            .map_err(|e| error(config, "kafka read back: watermarks", &e))?;
        if high > low {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(&config.topic, partition, Offset::Beginning)
                .map_err(|e| error(config, "kafka read back", &e))?;
        }
    }
    let mut live = BTreeMap::new();
    if ends.is_empty() {
        return Ok(live);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| error(config, "kafka read back: assign", &e))?;
    // Bounded by the amount to read: a stalled read is an error, not an endless wait.
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        if last_progress.elapsed() > Duration::from_secs(60) {
            return Err(SinkError::transient(format!(
                "kafka read back of topic \"{}\" made no progress for 60 s",
                config.topic
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(|e| error(config, "kafka read back", &e))?;
        last_progress = Instant::now();
        let partition = message.partition();
        if ends
            .get(&partition)
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&partition);
        }
        let headers = MessageHeaders::from_pairs(
            message
                .headers()
                .into_iter()
                .flat_map(|h| h.iter())
                .map(|h| (h.key, h.value.unwrap_or_default())),
        );
        if headers.message != Some(crate::events::MessageMode::Row) || !headers.is_of(inventory) {
            continue;
        }
        let Some(key) = message.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
            continue;
        };
        match (message.payload(), headers.checksum) {
            (Some(_), Some(checksum)) => {
                live.insert(key, checksum);
            }
            (Some(_), None) => {
                live.insert(key, String::new());
            }
            (None, _) => {
                live.remove(&key);
            }
        }
    }
    Ok(live)
}

/// Shared handle to an open connection.
pub(super) type SharedConnection = Arc<Connection>;
