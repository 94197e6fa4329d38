//! The Kafka sink against a real KRaft broker: the conformance suite in both message modes,
//! and what a consumer reads back (keys, headers, tombstones, a replay that rebuilds the
//! inventory), provisioning and restarts.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::ProvisioningMode;
use kollect_core::model::{Delta, Row, Snapshot};
use kollect_core::netguard::{GuardedResolver, NetPolicy};
use kollect_core::sink::{ErrorClass, ExportRequest, InventoryRef, RemoveRequest, Sink};
use kollect_sinks::events::{self, MessageMode, Replay};
use kollect_sinks::kafka::{KafkaConfig, KafkaSink, Sasl, SaslMechanism, TlsSettings};
use kollect_testkit::backends::{
    self, KAFKA_PASSWORD, KAFKA_UNAUTHORIZED_USER, KAFKA_USER, Kafka, KafkaRecord,
};
use kollect_testkit::conformance::{Inspect, sample_row};

/// One broker per test binary; tests use their own topics.
fn server() -> &'static Kafka {
    static SERVER: OnceLock<Option<Kafka>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(Kafka::start))
        .as_ref()
        .expect("Kafka (run hack/setup.sh)")
}

fn fresh_topic(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn config(topic: &str, mode: MessageMode) -> KafkaConfig {
    let bootstrap = server().bootstrap_servers();
    KafkaConfig::new(
        &[bootstrap.as_str()],
        topic,
        GuardedResolver::new(NetPolicy::permissive_for_tests()),
    )
    .unwrap()
    .with_mode(mode)
}

/// Every message of `topic`, from the beginning to its current end.
async fn read_topic(topic: &str) -> Vec<KafkaRecord> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || server().records(&topic))
        .await
        .unwrap()
        .unwrap()
}

/// Rebuilds inventories from `records` the way a consumer does.
fn replay_of(records: &[KafkaRecord]) -> Replay {
    let mut replay = Replay::default();
    for record in records {
        replay
            .apply(
                &record.key,
                record.value.as_deref(),
                record.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            )
            .unwrap();
    }
    replay
}

/// Rebuilds the inventories of a topic.
async fn replay(topic: &str) -> Replay {
    replay_of(&read_topic(topic).await)
}

/// Reads an inventory back by replaying the topic.
pub(crate) struct Topic(String);

#[async_trait]
impl Inspect for Topic {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        Ok(Some(replay(&self.0).await.rows(inventory)))
    }
}

async fn setup(mode: MessageMode) -> (KafkaSink, Topic) {
    let topic = fresh_topic("conformance");
    (KafkaSink::new(config(&topic, mode)), Topic(topic))
}

mod row_mode {
    kollect_testkit::sink_conformance_tests!(super::setup(kollect_sinks::events::MessageMode::Row));
}

mod snapshot_mode {
    kollect_testkit::sink_conformance_tests!(super::setup(kollect_sinks::events::MessageMode::Snapshot));
}

fn at() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn inventory() -> InventoryRef {
    InventoryRef::namespaced("shop", "images").with_cluster("prod")
}

fn rows(names: &[&str], version: i64) -> Vec<Row> {
    names
        .iter()
        .map(|n| sample_row(&inventory(), n, version))
        .collect()
}

/// A full export, then exports carrying their delta, as the export engine sends them.
struct Exporter<'a> {
    sink: &'a KafkaSink,
    previous: Option<Snapshot>,
}

impl Exporter<'_> {
    async fn export(&mut self, rows: Vec<Row>) {
        let snapshot = Snapshot::new(rows);
        let mut request = ExportRequest::full(inventory(), 1, at(), snapshot.clone());
        if let Some(previous) = &self.previous {
            request = request.with_delta(Delta::between(previous, &snapshot));
        }
        self.sink.export(&request).await.unwrap();
        self.previous = Some(snapshot);
    }
}

#[tokio::test]
async fn row_messages_carry_keys_headers_and_tombstones() {
    let topic = fresh_topic("rows");
    let sink = KafkaSink::new(config(&topic, MessageMode::Row));
    let mut exporter = Exporter {
        sink: &sink,
        previous: None,
    };
    exporter.export(rows(&["web", "cart"], 1)).await;
    exporter.export(rows(&["web"], 2)).await;
    let records = read_topic(&topic).await;
    let keys: Vec<(&str, bool)> = records
        .iter()
        .map(|r| (r.key.as_str(), r.value.is_some()))
        .collect();
    // The full export publishes both rows; the delta one update and one tombstone.
    assert_eq!(
        keys,
        [
            ("prod/shop/images/shop/deployments/uid-cart", true),
            ("prod/shop/images/shop/deployments/uid-web", true),
            ("prod/shop/images/shop/deployments/uid-web", true),
            ("prod/shop/images/shop/deployments/uid-cart", false),
        ]
    );
    let update = &records[2];
    assert_eq!(update.header(events::HEADER_CLUSTER).as_deref(), Some("prod"));
    assert_eq!(update.header(events::HEADER_NAMESPACE).as_deref(), Some("shop"));
    assert_eq!(update.header(events::HEADER_INVENTORY).as_deref(), Some("images"));
    assert_eq!(update.header(events::HEADER_MESSAGE).as_deref(), Some("row"));
    assert_eq!(
        update.header(events::HEADER_SCHEMA_VERSION).as_deref(),
        Some("kollect.dev/v1alpha1")
    );
    let value: serde_json::Value = serde_json::from_slice(update.value.as_ref().unwrap()).unwrap();
    assert_eq!(value["inventory"], "images");
    assert_eq!(value["item"]["attributes"]["replicas"], 2);
    let row = &rows(&["web"], 2)[0];
    assert_eq!(
        update.header(events::HEADER_CHECKSUM),
        Some(kollect_core::model::Checksum::of_bytes(&row.canonical_bytes()).to_string())
    );
    let tombstone = &records[3];
    assert_eq!(tombstone.header(events::HEADER_MESSAGE).as_deref(), Some("row"));
    assert_eq!(tombstone.header(events::HEADER_CHECKSUM), None);
}

#[tokio::test]
async fn a_replay_rebuilds_the_inventory_after_changes_and_its_deletion() {
    let topic = fresh_topic("replay");
    let sink = KafkaSink::new(config(&topic, MessageMode::Row));
    let mut exporter = Exporter {
        sink: &sink,
        previous: None,
    };
    exporter.export(rows(&["web", "cart", "search"], 1)).await;
    exporter.export(rows(&["web", "search", "pay"], 2)).await;
    let mut current = rows(&["web", "search", "pay"], 2);
    current[0] = sample_row(&inventory(), "web", 3);
    exporter.export(current.clone()).await;
    kollect_core::model::sort_canonical(&mut current);
    assert_eq!(replay(&topic).await.rows(&inventory()), current);

    sink.remove(&RemoveRequest {
        inventory: inventory(),
        generation: 1,
    })
    .await
    .unwrap();
    assert!(replay(&topic).await.rows(&inventory()).is_empty());
    let tombstones = read_topic(&topic)
        .await
        .into_iter()
        .rev()
        .take_while(|r| r.value.is_none())
        .count();
    assert_eq!(tombstones, 3, "one tombstone per remaining row");
}

#[tokio::test]
async fn a_restarted_sink_publishes_only_what_changed_since_the_topic_was_written() {
    let topic = fresh_topic("restart");
    let first = KafkaSink::new(config(&topic, MessageMode::Row));
    let snapshot = rows(&["web", "cart", "search"], 1);
    first
        .export(&ExportRequest::full(
            inventory(),
            1,
            at(),
            Snapshot::new(snapshot.clone()),
        ))
        .await
        .unwrap();
    let before = read_topic(&topic).await.len();
    assert_eq!(before, 3);

    // A new process has no delta: it reads the topic back and publishes nothing new.
    let restarted = KafkaSink::new(config(&topic, MessageMode::Row));
    let receipt = restarted
        .export(&ExportRequest::full(
            inventory(),
            1,
            at(),
            Snapshot::new(snapshot),
        ))
        .await
        .unwrap();
    assert!(receipt.unchanged);
    assert_eq!(read_topic(&topic).await.len(), before);

    // One changed and one deleted row: one update and one tombstone.
    let again = KafkaSink::new(config(&topic, MessageMode::Row));
    let mut changed = vec![
        sample_row(&inventory(), "web", 2),
        sample_row(&inventory(), "search", 1),
    ];
    again
        .export(&ExportRequest::full(
            inventory(),
            1,
            at(),
            Snapshot::new(changed.clone()),
        ))
        .await
        .unwrap();
    let records = read_topic(&topic).await;
    assert_eq!(records.len(), before + 2);
    kollect_core::model::sort_canonical(&mut changed);
    assert_eq!(replay(&topic).await.rows(&inventory()), changed);
}

#[tokio::test]
async fn snapshot_messages_keep_the_go_shape_under_the_inventory_key() {
    let topic = fresh_topic("snapshot");
    let sink = KafkaSink::new(config(&topic, MessageMode::Snapshot));
    let request = ExportRequest::full(inventory(), 7, at(), Snapshot::new(rows(&["web"], 1)));
    sink.export(&request).await.unwrap();
    sink.remove(&RemoveRequest {
        inventory: inventory(),
        generation: 7,
    })
    .await
    .unwrap();
    let records = read_topic(&topic).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].key, "prod/shop/images");
    let value: serde_json::Value = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    let fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        ["schemaVersion", "timestamp", "cluster", "namespace", "payload"]
    );
    assert_eq!(value["payload"]["generation"], 7);
    assert_eq!(value["payload"]["itemCount"], 1);
    assert_eq!(
        records[0].header(events::HEADER_CHECKSUM),
        Some(request.part.checksum().to_string())
    );
    assert_eq!(records[0].header(events::HEADER_PART).as_deref(), Some("1/1"));
    assert_eq!(records[1].key, "prod/shop/images");
    assert!(
        records[1].value.is_none(),
        "deleting the inventory publishes a tombstone"
    );
    assert_eq!(
        records[1].header(events::HEADER_MESSAGE).as_deref(),
        Some("snapshot")
    );
}

#[tokio::test]
async fn existing_mode_refuses_a_missing_topic_without_creating_it() {
    let topic = fresh_topic("existing");
    let sink = KafkaSink::new(config(&topic, MessageMode::Row).with_provisioning(ProvisioningMode::Existing));
    let error = sink
        .export(&ExportRequest::full(
            inventory(),
            1,
            at(),
            Snapshot::new(rows(&["web"], 1)),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert_eq!(
        error.message(),
        format!("kafka topic \"{topic}\" does not exist (provisioning.mode existing never creates it)")
    );
    // The broker auto-creates topics by default; the sink's client must not have asked it to.
    let probe = KafkaSink::new(config(&fresh_topic("other"), MessageMode::Row));
    probe.probe().await.unwrap();
    let topics = tokio::task::spawn_blocking(|| server().topics())
        .await
        .unwrap()
        .unwrap();
    assert!(!topics.contains(&topic), "{topics:?}");
}

#[tokio::test]
async fn an_unreachable_broker_is_a_transient_error_and_a_refused_one_terminal() {
    let port = kollect_testkit::control_plane::free_port().unwrap();
    let address = format!("127.0.0.1:{port}");
    let sink = KafkaSink::new(
        KafkaConfig::new(
            &[address.as_str()],
            "t",
            GuardedResolver::new(NetPolicy::permissive_for_tests()),
        )
        .unwrap(),
    );
    let error = sink.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(error.message().starts_with("kafka metadata"), "{error}");

    let guarded = KafkaSink::new(
        KafkaConfig::new(
            &[address.as_str()],
            "t",
            GuardedResolver::new(NetPolicy::new(false)),
        )
        .unwrap(),
    );
    let error = guarded.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(
        error.message().starts_with("spec.kafka.brokers 127.0.0.1:"),
        "{error}"
    );
}

fn tls(client: bool) -> TlsSettings {
    let pki = server().pki();
    TlsSettings {
        ca_pem: Some(pki.ca_pem.clone()),
        client: client.then(|| (pki.client_cert_pem.clone(), pki.client_key_pem.clone())),
        ..TlsSettings::default()
    }
}

fn secured(bootstrap: &str, topic: &str) -> KafkaConfig {
    KafkaConfig::new(
        &[bootstrap],
        topic,
        GuardedResolver::new(NetPolicy::permissive_for_tests()),
    )
    .unwrap()
    .with_mode(MessageMode::Row)
}

async fn export_one(sink: &KafkaSink) -> Result<(), kollect_core::sink::SinkError> {
    sink.export(&ExportRequest::full(
        inventory(),
        1,
        at(),
        Snapshot::new(rows(&["web"], 1)),
    ))
    .await
    .map(drop)
}

#[tokio::test]
async fn sasl_over_tls_authenticates_with_every_mechanism() {
    let bootstrap = server().sasl_ssl_bootstrap();
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let topic = fresh_topic("sasl");
        let sink = KafkaSink::new(
            secured(&bootstrap, &topic)
                .with_tls(Some(tls(false)))
                .with_sasl(Some(Sasl {
                    mechanism,
                    username: KAFKA_USER.to_owned(),
                    password: KAFKA_PASSWORD.to_owned(),
                })),
        );
        export_one(&sink)
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        assert_eq!(replay(&topic).await.rows(&inventory()), rows(&["web"], 1));
    }
}

#[tokio::test]
async fn a_spec_and_its_secret_configure_scram_over_tls() {
    use kollect_sinks::{BuildContext, SecretData};
    let topic = fresh_topic("spec");
    let spec: kollect_core::api::v1alpha1::KollectEventSinkSpec = serde_json::from_value(serde_json::json!({
        "type": "kafka",
        "kafka": {"brokers": [server().sasl_ssl_bootstrap()], "topic": topic},
        "tls": {"caBundle": base64_of(&server().pki().ca_pem)},
        "cluster": "prod",
        "options": {"messageMode": "row", "saslMechanism": "SCRAM-SHA-512"}
    }))
    .unwrap();
    let context = BuildContext::new("ns/kafka", NetPolicy::permissive_for_tests())
        .with_secret(SecretData::new([
            ("username".to_owned(), KAFKA_USER.as_bytes().to_vec()),
            ("password".to_owned(), KAFKA_PASSWORD.as_bytes().to_vec()),
        ]))
        .with_ca_pem(Some(server().pki().ca_pem.clone()));
    let sink = KafkaSink::from_spec(&spec, context).unwrap();
    let report = sink.probe().await.unwrap();
    assert!(
        report
            .message
            .starts_with("Kafka broker metadata request succeeded"),
        "{}",
        report.message
    );
    export_one(&sink).await.unwrap();
    assert_eq!(replay(&topic).await.rows(&inventory()), rows(&["web"], 1));
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn a_wrong_password_is_a_terminal_error_that_does_not_repeat_it() {
    let topic = fresh_topic("wrong");
    let sink = KafkaSink::new(
        secured(&server().sasl_ssl_bootstrap(), &topic)
            .with_tls(Some(tls(false)))
            .with_sasl(Some(Sasl {
                mechanism: SaslMechanism::ScramSha256,
                username: KAFKA_USER.to_owned(),
                password: "not-the-password-9931".to_owned(),
            })),
    );
    let error = export_one(&sink).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(
        error.message().starts_with("kafka authentication failed: "),
        "{error}"
    );
    assert!(!error.message().contains("not-the-password-9931"), "{error}");
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_a_listener_that_requires_one() {
    let topic = fresh_topic("mtls");
    let sink = KafkaSink::new(secured(&server().mtls_bootstrap(), &topic).with_tls(Some(tls(true))));
    export_one(&sink).await.unwrap();
    assert_eq!(replay(&topic).await.rows(&inventory()), rows(&["web"], 1));

    let without = KafkaSink::new(secured(&server().mtls_bootstrap(), &topic).with_tls(Some(tls(false))));
    let error = without.probe().await.unwrap_err();
    assert!(!error.message().contains("PRIVATE KEY"), "{error}");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_unknown_ca() {
    let topic = fresh_topic("insecure");
    let sink = KafkaSink::new(
        secured(&server().mtls_bootstrap(), &topic).with_tls(Some(TlsSettings {
            client: self::tls(true).client,
            insecure_skip_verify: true,
            ..TlsSettings::default()
        })),
    );
    export_one(&sink).await.unwrap();

    let verified = KafkaSink::new(
        secured(&server().mtls_bootstrap(), &topic).with_tls(Some(TlsSettings {
            client: self::tls(true).client,
            ..TlsSettings::default()
        })),
    );
    assert!(
        verified.probe().await.is_err(),
        "the system store does not know the test CA"
    );
}

#[tokio::test]
async fn a_broker_restarted_during_an_export_loses_nothing() {
    // A broker of its own: the shared one stays up for the other tests.
    let Some(mut broker) = backends::start_for_test(Kafka::start) else {
        return;
    };
    let topic = fresh_topic("restart-broker");
    let bootstrap = broker.bootstrap_servers();
    let sink = std::sync::Arc::new(KafkaSink::new(
        KafkaConfig::new(
            &[bootstrap.as_str()],
            topic.as_str(),
            GuardedResolver::new(NetPolicy::permissive_for_tests()),
        )
        .unwrap()
        .with_mode(MessageMode::Row),
    ));
    sink.probe().await.unwrap();
    let names: Vec<String> = (0..20_000).map(|i| format!("svc-{i:05}")).collect();
    let rows: Vec<Row> = names.iter().map(|n| sample_row(&inventory(), n, 1)).collect();
    let request = ExportRequest::full(inventory(), 1, at(), Snapshot::new(rows.clone()));
    let export = {
        let (sink, request) = (std::sync::Arc::clone(&sink), request.clone());
        tokio::spawn(async move { sink.export(&request).await })
    };
    // The broker goes away while messages are in flight and comes back on the same ports.
    let broker = tokio::task::spawn_blocking(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        broker.restart().map(|()| broker)
    })
    .await
    .unwrap()
    .unwrap();
    // Either the export rode out the restart, or it failed and the engine's retry (here: one
    // more export of the same request) completes it.
    if let Err(error) = export.await.unwrap() {
        assert!(error.is_retryable(), "{error}");
        sink.export(&request).await.unwrap();
    }
    let topic_name = topic.clone();
    let records = tokio::task::spawn_blocking(move || broker.records(&topic_name))
        .await
        .unwrap()
        .unwrap();
    let replay = replay_of(&records);
    let mut expected = rows;
    kollect_core::model::sort_canonical(&mut expected);
    assert_eq!(replay.rows(&inventory()), expected, "every row is on the topic");
    assert!(records.len() >= expected.len());
}

#[tokio::test]
async fn rows_spread_over_partitions_are_read_back_from_all_of_them() {
    let topic = fresh_topic("partitions");
    let sink = KafkaSink::new(config(&topic, MessageMode::Row).with_topic_layout(Some(3), Some(1)));
    let report = sink.probe().await.unwrap();
    assert!(report.message.ends_with("3 partitions)"), "{}", report.message);
    let names: Vec<String> = (0..60).map(|i| format!("svc-{i:02}")).collect();
    let all: Vec<Row> = names.iter().map(|n| sample_row(&inventory(), n, 1)).collect();
    sink.export(&ExportRequest::full(
        inventory(),
        1,
        at(),
        Snapshot::new(all.clone()),
    ))
    .await
    .unwrap();
    // A new sink reads all three partitions back: nothing to publish, then one tombstone.
    let restarted = KafkaSink::new(config(&topic, MessageMode::Row));
    let receipt = restarted
        .export(&ExportRequest::full(
            inventory(),
            1,
            at(),
            Snapshot::new(all.clone()),
        ))
        .await
        .unwrap();
    assert!(receipt.unchanged);
    let fewer = all[1..].to_vec();
    restarted
        .export(&ExportRequest::full(
            inventory(),
            1,
            at(),
            Snapshot::new(fewer.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(read_topic(&topic).await.len(), 61);
    assert_eq!(
        replay(&topic).await.rows(&inventory()),
        Snapshot::new(fewer).rows().to_vec()
    );
}

#[tokio::test]
async fn a_user_without_rights_on_the_topic_is_forbidden() {
    let topic = fresh_topic("acl");
    // The topic exists (created by a user with rights), the outsider may not touch it.
    KafkaSink::new(config(&topic, MessageMode::Row))
        .probe()
        .await
        .unwrap();
    let sink = KafkaSink::new(
        secured(&server().sasl_ssl_bootstrap(), &topic)
            .with_tls(Some(tls(false)))
            .with_sasl(Some(Sasl {
                mechanism: SaslMechanism::ScramSha256,
                username: KAFKA_UNAUTHORIZED_USER.to_owned(),
                password: KAFKA_PASSWORD.to_owned(),
            })),
    );
    let error = export_one(&sink).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Forbidden, "{error}");
    assert!(error.message().contains("TopicAuthorizationFailed"), "{error}");
    assert!(!error.message().contains(KAFKA_PASSWORD), "{error}");
}
