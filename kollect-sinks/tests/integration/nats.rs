//! The NATS JetStream sink against a real nats-server: the conformance suite in both message
//! modes, what a consumer reads back (subjects, headers, delete markers, a replay that rebuilds
//! the inventory), message-ID deduplication, provisioning, authentication and restarts.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::ProvisioningMode;
use kollect_core::model::{Delta, Row, Snapshot};
use kollect_core::netguard::{GuardedResolver, NetPolicy};
use kollect_core::sink::{ErrorClass, ExportRequest, InventoryRef, RemoveRequest, Sink, SinkError};
use kollect_sinks::events::{self, MessageMode, Replay};
use kollect_sinks::nats::{NatsAuth, NatsConfig, NatsSink, OPERATION_HEADER, TlsSettings};
use kollect_testkit::backends::{
    self, NATS_PASSWORD, NATS_RESTRICTED_PASSWORD, NATS_RESTRICTED_USER, NATS_TOKEN, NATS_USER, Nats,
    NatsOptions, NatsRecord, NatsTls,
};
use kollect_testkit::conformance::{Inspect, sample_row};

fn start(options: NatsOptions) -> Nats {
    backends::start_for_test(|| Nats::start_with(options)).expect("nats-server (run hack/setup.sh)")
}

/// One plain server per test binary; tests use their own streams and subjects.
fn server() -> &'static Nats {
    static SERVER: OnceLock<Nats> = OnceLock::new();
    SERVER.get_or_init(|| start(NatsOptions::default()))
}

/// TLS with users (password, NKey, restricted).
fn users_server() -> &'static Nats {
    static SERVER: OnceLock<Nats> = OnceLock::new();
    SERVER.get_or_init(|| {
        start(NatsOptions {
            auth: backends::NatsAuth::Users,
            tls: NatsTls::Server,
        })
    })
}

/// A unique stream name and subject prefix.
fn fresh(prefix: &str) -> (String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("{prefix}{}x{n}", std::process::id());
    (format!("s_{id}"), format!("k{id}"))
}

fn permissive() -> GuardedResolver {
    GuardedResolver::new(NetPolicy::permissive_for_tests())
}

fn config_on(nats: &Nats, stream: &str, prefix: &str, mode: MessageMode) -> NatsConfig {
    NatsConfig::new(
        &nats.url(),
        &format!("{prefix}.{{cluster}}.{{namespace}}.{{name}}"),
        permissive(),
    )
    .unwrap()
    .with_stream(stream)
    .unwrap()
    .with_mode(mode)
}

fn config(stream: &str, prefix: &str, mode: MessageMode) -> NatsConfig {
    config_on(server(), stream, prefix, mode)
}

fn replay_of(records: &[NatsRecord]) -> Replay {
    let mut replay = Replay::default();
    for record in records {
        let delete = record.header(OPERATION_HEADER).is_some();
        replay
            .apply(
                &record.subject,
                (!delete).then_some(record.payload.as_slice()),
                record.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
            )
            .unwrap();
    }
    replay
}

async fn records(stream: &str) -> Vec<NatsRecord> {
    server().records(stream).await.unwrap()
}

/// Reads an inventory back by replaying the stream.
pub(crate) struct Stream(String);

#[async_trait]
impl Inspect for Stream {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        // Nothing exported yet: no stream, no rows.
        let records = match server().records(&self.0).await {
            Ok(records) => records,
            Err(e) if e.contains("stream not found") => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Some(replay_of(&records).rows(inventory)))
    }
}

async fn setup(mode: MessageMode) -> (NatsSink, Stream) {
    let (stream, prefix) = fresh("conf");
    (NatsSink::new(config(&stream, &prefix, mode)), Stream(stream))
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
    sink: &'a NatsSink,
    previous: Option<Snapshot>,
}

impl Exporter<'_> {
    async fn export(&mut self, rows: Vec<Row>) -> bool {
        let snapshot = Snapshot::new(rows);
        let mut request = ExportRequest::full(inventory(), 1, at(), snapshot.clone());
        if let Some(previous) = &self.previous {
            request = request.with_delta(Delta::between(previous, &snapshot));
        }
        let receipt = self.sink.export(&request).await.unwrap();
        self.previous = Some(snapshot);
        !receipt.unchanged
    }
}

fn full(rows: Vec<Row>) -> ExportRequest {
    ExportRequest::full(inventory(), 1, at(), Snapshot::new(rows))
}

#[tokio::test]
async fn row_messages_carry_subjects_headers_and_delete_markers() {
    let (stream, prefix) = fresh("rows");
    let sink = NatsSink::new(config(&stream, &prefix, MessageMode::Row));
    let mut exporter = Exporter {
        sink: &sink,
        previous: None,
    };
    exporter.export(rows(&["web", "cart"], 1)).await;
    exporter.export(rows(&["web"], 2)).await;
    let records = records(&stream).await;
    let base = format!("{prefix}.prod.shop.images.shop.deployments");
    let subjects: Vec<(&str, bool)> = records
        .iter()
        .map(|r| (r.subject.as_str(), r.header(OPERATION_HEADER).is_some()))
        .collect();
    // One message per row subject survives (the stream keeps the latest per subject): the
    // update of web and the delete marker of cart.
    assert_eq!(
        subjects,
        [
            (format!("{base}.uid-web").as_str(), false),
            (format!("{base}.uid-cart").as_str(), true),
        ]
    );
    let update = &records[0];
    assert_eq!(update.header(events::HEADER_CLUSTER), Some("prod"));
    assert_eq!(update.header(events::HEADER_NAMESPACE), Some("shop"));
    assert_eq!(update.header(events::HEADER_INVENTORY), Some("images"));
    assert_eq!(update.header(events::HEADER_MESSAGE), Some("row"));
    assert_eq!(
        update.header(events::HEADER_SCHEMA_VERSION),
        Some("kollect.dev/v1alpha1")
    );
    assert_eq!(update.header("Nats-Msg-Id").map(str::len), Some(64));
    let row = &rows(&["web"], 2)[0];
    assert_eq!(
        update.header(events::HEADER_CHECKSUM),
        Some(kollect_core::model::Checksum::of_bytes(&row.canonical_bytes()).as_str())
    );
    let value: serde_json::Value = serde_json::from_slice(&update.payload).unwrap();
    assert_eq!(value["inventory"], "images");
    assert_eq!(value["item"]["attributes"]["replicas"], 2);
    let marker = &records[1];
    assert_eq!(marker.header(OPERATION_HEADER), Some("PURGE"));
    assert_eq!(marker.header("Nats-Rollup"), Some("sub"));
    assert_eq!(marker.header(events::HEADER_MESSAGE), Some("row"));
    assert_eq!(marker.header(events::HEADER_CHECKSUM), None);
    assert!(marker.payload.is_empty());
    // The created stream captures the rows of every inventory and keeps one message per row.
    let created = server().stream_config(&stream).await.unwrap();
    assert_eq!(created.subjects, [format!("{prefix}.*.*.*.>")]);
    assert_eq!(created.max_messages_per_subject, 1);
    assert!(created.allow_rollup);
}

#[tokio::test]
async fn a_replay_rebuilds_the_inventory_after_changes_and_its_deletion() {
    for mode in [MessageMode::Row, MessageMode::Snapshot] {
        let (stream, prefix) = fresh("replay");
        let sink = NatsSink::new(config(&stream, &prefix, mode));
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
        assert_eq!(
            replay_of(&records(&stream).await).rows(&inventory()),
            current,
            "{mode:?}"
        );

        sink.remove(&RemoveRequest {
            inventory: inventory(),
            generation: 1,
        })
        .await
        .unwrap();
        let after = records(&stream).await;
        assert!(replay_of(&after).rows(&inventory()).is_empty(), "{mode:?}");
        let markers = after
            .iter()
            .filter(|r| r.header(OPERATION_HEADER).is_some())
            .count();
        match mode {
            // cart was deleted earlier, the other three on removal; nothing else remains.
            MessageMode::Row => assert_eq!((markers, after.len()), (4, 4)),
            // The marker rolled the inventory's snapshots up: it is all that is left.
            MessageMode::Snapshot => assert_eq!((markers, after.len()), (1, 1)),
        }
    }
}

#[tokio::test]
async fn a_restarted_sink_publishes_only_what_changed_since_the_stream_was_written() {
    let (stream, prefix) = fresh("restart");
    let first = NatsSink::new(config(&stream, &prefix, MessageMode::Row));
    let snapshot = rows(&["web", "cart", "search"], 1);
    first.export(&full(snapshot.clone())).await.unwrap();
    let before = records(&stream).await;
    assert_eq!(before.len(), 3);

    // A new process has no delta: it reads the stream back and publishes nothing new.
    let restarted = NatsSink::new(config(&stream, &prefix, MessageMode::Row));
    assert!(restarted.export(&full(snapshot)).await.unwrap().unchanged);
    assert_eq!(records(&stream).await, before);

    // One changed and one deleted row: one update and one delete marker.
    let again = NatsSink::new(config(&stream, &prefix, MessageMode::Row));
    let mut changed = vec![
        sample_row(&inventory(), "web", 2),
        sample_row(&inventory(), "search", 1),
    ];
    again.export(&full(changed.clone())).await.unwrap();
    let after = records(&stream).await;
    let last_before = before.iter().map(|r| r.sequence).max().unwrap();
    assert_eq!(after.iter().filter(|r| r.sequence > last_before).count(), 2);
    kollect_core::model::sort_canonical(&mut changed);
    assert_eq!(replay_of(&after).rows(&inventory()), changed);
}

#[tokio::test]
async fn a_publish_whose_acknowledgement_was_lost_is_deduplicated_when_sent_again() {
    let (stream, prefix) = fresh("dedupe");
    for mode in [MessageMode::Row, MessageMode::Snapshot] {
        let (stream, prefix) = (format!("{stream}_{mode:?}"), format!("{prefix}{mode:?}"));
        let before = rows(&["web", "cart"], 1);
        let after = rows(&["web", "cart"], 2);
        let writer = NatsSink::new(config(&stream, &prefix, mode));
        writer.export(&full(before.clone())).await.unwrap();
        // A second instance that knows the stream as it was: a sink whose acknowledgement
        // for the next publish never arrived (a retry), or a restarted operator that read the
        // stream back while that publish was still in flight.
        let stale = NatsSink::new(config(&stream, &prefix, mode));
        let mut stale_exporter = Exporter {
            sink: &stale,
            previous: None,
        };
        stale_exporter.export(before.clone()).await;
        writer
            .export(&full(after.clone()).with_delta(Delta::between(
                &Snapshot::new(before.clone()),
                &Snapshot::new(after.clone()),
            )))
            .await
            .unwrap();
        let published = records(&stream).await;
        // The stale instance sends the same content after the same message: same IDs, and
        // JetStream drops them.
        stale_exporter.export(after.clone()).await;
        assert_eq!(
            records(&stream).await,
            published,
            "{mode:?}: nothing new on the stream"
        );
        let mut expected = after.clone();
        kollect_core::model::sort_canonical(&mut expected);
        assert_eq!(replay_of(&published).rows(&inventory()), expected, "{mode:?}");
    }
}

#[tokio::test]
async fn content_that_returns_to_an_earlier_state_is_published_again() {
    for mode in [MessageMode::Row, MessageMode::Snapshot] {
        let (stream, prefix) = fresh("flap");
        let sink = NatsSink::new(config(&stream, &prefix, mode));
        let mut exporter = Exporter {
            sink: &sink,
            previous: None,
        };
        // Within the duplicate window: an ID made of the content alone would drop the third.
        for version in [1, 2, 1, 2, 1] {
            assert!(
                exporter.export(rows(&["web"], version)).await,
                "{mode:?} v{version}"
            );
        }
        let published = records(&stream).await;
        assert_eq!(
            replay_of(&published).rows(&inventory()),
            rows(&["web"], 1),
            "{mode:?}"
        );
        let unique: std::collections::BTreeSet<_> =
            published.iter().filter_map(|r| r.header("Nats-Msg-Id")).collect();
        assert_eq!(
            unique.len(),
            published.len(),
            "{mode:?}: every message has its own ID"
        );
        if mode == MessageMode::Snapshot {
            assert_eq!(published.len(), 5);
        }
    }
}

#[tokio::test]
async fn snapshot_messages_keep_the_go_shape_on_a_fixed_subject() {
    let (stream, prefix) = fresh("snapshot");
    let subject = format!("{prefix}.inventory");
    let sink = NatsSink::new(
        NatsConfig::new(&server().url(), &subject, permissive())
            .unwrap()
            .with_stream(&stream)
            .unwrap()
            .with_cluster("prod"),
    );
    let request = ExportRequest::full(inventory(), 7, at(), Snapshot::new(rows(&["web"], 1)));
    sink.export(&request).await.unwrap();
    let other = InventoryRef::namespaced("shop", "other").with_cluster("prod");
    sink.export(&ExportRequest::full(
        other.clone(),
        1,
        at(),
        Snapshot::new(vec![sample_row(&other, "db", 1)]),
    ))
    .await
    .unwrap();
    sink.remove(&RemoveRequest {
        inventory: inventory(),
        generation: 7,
    })
    .await
    .unwrap();
    let records = records(&stream).await;
    assert_eq!(
        records.len(),
        3,
        "a marker never rolls up a subject other inventories share"
    );
    assert!(records.iter().all(|r| r.subject == subject));
    let value: serde_json::Value = serde_json::from_slice(&records[0].payload).unwrap();
    let fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        ["schemaVersion", "timestamp", "cluster", "namespace", "payload"]
    );
    assert_eq!(value["payload"]["generation"], 7);
    assert_eq!(value["payload"]["itemCount"], 1);
    assert_eq!(
        records[0].header(events::HEADER_CHECKSUM),
        Some(request.part.checksum().as_str())
    );
    assert_eq!(records[0].header(events::HEADER_PART), Some("1/1"));
    assert_eq!(records[2].header(OPERATION_HEADER), Some("PURGE"));
    assert_eq!(records[2].header("Nats-Rollup"), None);
    let replay = replay_of(&records);
    assert!(replay.rows(&inventory()).is_empty());
    assert_eq!(replay.rows(&other).len(), 1);
}

#[tokio::test]
async fn existing_mode_refuses_a_missing_stream_without_creating_it() {
    let (stream, prefix) = fresh("existing");
    let sink = NatsSink::new(
        config(&stream, &prefix, MessageMode::Row).with_provisioning(ProvisioningMode::Existing),
    );
    let error = sink.export(&full(rows(&["web"], 1))).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert_eq!(
        error.message(),
        format!("nats stream \"{stream}\" does not exist (provisioning.mode existing never creates it)")
    );
    let probe = sink.probe().await.unwrap_err();
    assert_eq!(probe.message(), error.message());
    assert!(!server().stream_names().await.unwrap().contains(&stream));
}

#[tokio::test]
async fn a_stream_someone_else_configured_is_used_as_it_is_or_refused_by_name() {
    let (stream, prefix) = fresh("theirs");
    let client = server().client().await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let theirs = async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.>")],
        max_age: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    jetstream.create_stream(theirs.clone()).await.unwrap();
    let sink = NatsSink::new(config(&stream, &prefix, MessageMode::Row));
    sink.export(&full(rows(&["web", "cart"], 1))).await.unwrap();
    let after = server().stream_config(&stream).await.unwrap();
    assert_eq!(after.subjects, theirs.subjects);
    assert_eq!(after.max_age, theirs.max_age);
    assert!(!after.allow_rollup, "the stream's settings are left alone");
    // Without rollups a delete is still a marker a consumer applies.
    let mut exporter = Exporter {
        sink: &sink,
        previous: Some(Snapshot::new(rows(&["web", "cart"], 1))),
    };
    exporter.export(rows(&["web"], 1)).await;
    let records = records(&stream).await;
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].header("Nats-Rollup"), None);
    assert_eq!(replay_of(&records).rows(&inventory()), rows(&["web"], 1));

    // A stream that does not capture the subjects is refused, naming both.
    let (_, other_prefix) = fresh("elsewhere");
    let elsewhere = NatsSink::new(config(&stream, &other_prefix, MessageMode::Row));
    let error = elsewhere.export(&full(rows(&["web"], 1))).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(
        error.message().starts_with(&format!(
            "nats stream \"{stream}\" captures [\"{prefix}.>\"], not \"{other_prefix}.*.*.*.>\""
        )),
        "{error}"
    );
}

#[tokio::test]
async fn a_stream_deleted_under_the_sink_is_provisioned_again() {
    let (stream, prefix) = fresh("deleted");
    let sink = NatsSink::new(config(&stream, &prefix, MessageMode::Row));
    sink.export(&full(rows(&["web"], 1))).await.unwrap();
    let jetstream = async_nats::jetstream::new(server().client().await.unwrap());
    jetstream.delete_stream(&stream).await.unwrap();
    // The engine sends the change since the last acknowledged export: the new row only.
    let request = full(rows(&["web", "cart"], 1)).with_delta(Delta::between(
        &Snapshot::new(rows(&["web"], 1)),
        &Snapshot::new(rows(&["web", "cart"], 1)),
    ));
    let error = sink.export(&request).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    // The retry (the engine's next attempt) creates the stream again and, knowing nothing of
    // it, publishes the whole inventory rather than the delta.
    sink.export(&request).await.unwrap();
    let records = records(&stream).await;
    assert_eq!(replay_of(&records).rows(&inventory()), {
        let mut expected = rows(&["web", "cart"], 1);
        kollect_core::model::sort_canonical(&mut expected);
        expected
    });
}

#[tokio::test]
async fn parts_stay_within_the_servers_payload_limit() {
    let (stream, prefix) = fresh("payload");
    let sink = NatsSink::new(config(&stream, &prefix, MessageMode::Snapshot));
    sink.export(&full(rows(&["web"], 1))).await.unwrap();
    let ceiling = sink.capabilities().ceiling(10 * 1024 * 1024).unwrap();
    assert!(
        ceiling < 1024 * 1024,
        "the server's default max_payload bounds parts: {ceiling}"
    );
    let many: Vec<Row> = (0..8000)
        .map(|i| sample_row(&inventory(), &format!("svc-{i:05}"), 1))
        .collect();
    let error = sink.export(&full(many)).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    assert!(
        error.message().contains("exceeds the server's max_payload"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_transient_and_a_refused_one_terminal() {
    let port = kollect_testkit::control_plane::free_port().unwrap();
    let (stream, prefix) = fresh("down");
    let unreachable = NatsSink::new(
        NatsConfig::new(
            &format!("nats://127.0.0.1:{port}"),
            &format!("{prefix}.x"),
            permissive(),
        )
        .unwrap()
        .with_stream(&stream)
        .unwrap(),
    );
    let error = unreachable.export(&full(rows(&["web"], 1))).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(error.message().starts_with("nats connect"), "{error}");
    let refused = NatsSink::new(
        NatsConfig::new(
            &server().url(),
            &format!("{prefix}.x"),
            GuardedResolver::new(NetPolicy::new(false)),
        )
        .unwrap(),
    );
    let error = refused.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(
        error.message().contains("nats server nats://127.0.0.1"),
        "{error}"
    );
}

fn tls_to(nats: &Nats, client: bool) -> TlsSettings {
    let pki = nats.pki().unwrap();
    TlsSettings {
        ca_pem: Some(pki.ca_pem.clone()),
        insecure_skip_verify: false,
        client: client.then(|| (pki.client_cert_pem.clone(), pki.client_key_pem.clone())),
    }
}

async fn export_one(config: NatsConfig) -> Result<(), SinkError> {
    let sink = NatsSink::new(config);
    sink.probe().await?;
    sink.export(&full(rows(&["web"], 1))).await.map(drop)
}

#[tokio::test]
async fn every_kind_of_credentials_authenticates() {
    let nats = users_server();
    let (stream, prefix) = fresh("auth");
    let password = NatsAuth::UserPassword {
        username: NATS_USER.to_owned(),
        password: NATS_PASSWORD.to_owned(),
    };
    let nkey = NatsAuth::NKey(nats.nkey_seed().unwrap().to_owned());
    for (n, auth) in [password, nkey].into_iter().enumerate() {
        let config = config_on(
            nats,
            &format!("{stream}_{n}"),
            &format!("{prefix}{n}"),
            MessageMode::Row,
        )
        .with_auth(auth)
        .with_tls(Some(tls_to(nats, false)));
        export_one(config).await.unwrap();
    }

    let token = start(NatsOptions {
        auth: backends::NatsAuth::Token,
        tls: NatsTls::Off,
    });
    export_one(
        config_on(&token, &stream, &prefix, MessageMode::Row)
            .with_auth(NatsAuth::Token(NATS_TOKEN.to_owned())),
    )
    .await
    .unwrap();
    let operator = start(NatsOptions {
        auth: backends::NatsAuth::Operator,
        tls: NatsTls::Off,
    });
    let creds = NatsAuth::Credentials(operator.creds().unwrap().to_owned());
    export_one(config_on(&operator, &stream, &prefix, MessageMode::Row).with_auth(creds))
        .await
        .unwrap();
    assert_eq!(operator.records(&stream).await.unwrap().len(), 1);

    let mutual = start(NatsOptions {
        auth: backends::NatsAuth::None,
        tls: NatsTls::Mutual,
    });
    export_one(config_on(&mutual, &stream, &prefix, MessageMode::Row).with_tls(Some(tls_to(&mutual, true))))
        .await
        .unwrap();
    let error = export_one(
        config_on(&mutual, &stream, &prefix, MessageMode::Row).with_tls(Some(tls_to(&mutual, false))),
    )
    .await
    .unwrap_err();
    assert_ne!(error.class(), ErrorClass::Forbidden, "{error}");
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn a_spec_and_its_secret_configure_credentials_and_tls() {
    let nats = users_server();
    let (stream, prefix) = fresh("spec");
    let pki = nats.pki().unwrap();
    let spec: kollect_core::api::v1alpha1::KollectEventSinkSpec = serde_json::from_value(serde_json::json!({
        "type": "nats",
        "cluster": "prod",
        "nats": {"url": nats.url(), "subject": format!("{prefix}.{{cluster}}.{{namespace}}.{{name}}"), "stream": stream},
        "tls": {"caBundle": base64_of(&pki.ca_pem)},
        "options": {"messageMode": "row"},
    }))
    .unwrap();
    let secret = kollect_sinks::secret::SecretData::new([(
        "nkey".to_owned(),
        nats.nkey_seed().unwrap().as_bytes().to_vec(),
    )]);
    let context = kollect_sinks::context::BuildContext::new("shop/events", NetPolicy::permissive_for_tests())
        .with_secret(secret)
        .with_ca_pem(Some(pki.ca_pem.clone()));
    let sink = NatsSink::from_spec(&spec, context).unwrap();
    let report = sink.probe().await.unwrap();
    assert!(
        report
            .message
            .starts_with("NATS JetStream account info request succeeded"),
        "{}",
        report.message
    );
    sink.export(&full(rows(&["web"], 1))).await.unwrap();
    let records = nats.records(&stream).await.unwrap();
    assert_eq!(
        records[0].subject,
        format!("{prefix}.prod.shop.images.shop.deployments.uid-web")
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_terminal_error_that_does_not_repeat_it() {
    let nats = users_server();
    let (stream, prefix) = fresh("wrong");
    let config = config_on(nats, &stream, &prefix, MessageMode::Row)
        .with_auth(NatsAuth::UserPassword {
            username: NATS_USER.to_owned(),
            password: "not-the-password-1f2e".to_owned(),
        })
        .with_tls(Some(tls_to(nats, false)));
    let error = export_one(config).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(
        error
            .message()
            .contains("authentication failed (username/password credentials refused)"),
        "{error}"
    );
    assert!(!error.message().contains("not-the-password-1f2e"), "{error}");
}

#[tokio::test]
async fn a_user_without_publish_rights_is_forbidden() {
    let nats = users_server();
    let (stream, prefix) = fresh("forbidden");
    let config = config_on(nats, &stream, &prefix, MessageMode::Row)
        .with_auth(NatsAuth::UserPassword {
            username: NATS_RESTRICTED_USER.to_owned(),
            password: NATS_RESTRICTED_PASSWORD.to_owned(),
        })
        .with_tls(Some(tls_to(nats, false)));
    let error = export_one(config).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Forbidden, "{error}");
    assert!(
        error.message().to_lowercase().contains("permissions violation"),
        "{error}"
    );
    assert!(!error.message().contains(NATS_RESTRICTED_PASSWORD), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_during_an_export_loses_nothing() {
    let mut nats = start(NatsOptions::default());
    let (stream, prefix) = fresh("outage");
    let sink = std::sync::Arc::new(NatsSink::new(config_on(
        &nats,
        &stream,
        &prefix,
        MessageMode::Row,
    )));
    sink.export(&full(rows(&["warmup"], 1))).await.unwrap();
    let many: Vec<Row> = (0..20_000)
        .map(|i| sample_row(&inventory(), &format!("svc-{i:05}"), 1))
        .collect();
    let request = full(many.clone());
    let exporting = {
        let sink = std::sync::Arc::clone(&sink);
        let request = request.clone();
        tokio::spawn(async move { sink.export(&request).await })
    };
    // Stop the server once the export is under way.
    while nats.message_count(&stream).await.unwrap() < 2_000 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    nats.stop();
    let interrupted = exporting.await.unwrap();
    nats.resume().unwrap();
    let error = interrupted.expect_err("the export was still publishing when the server stopped");
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    eprintln!("interrupted export: {error}");
    // The engine retries a failed export; the client reconnects on its own.
    let mut attempts = 0;
    while let Err(error) = sink.export(&request).await {
        assert_eq!(error.class(), ErrorClass::Transient, "{error}");
        attempts += 1;
        assert!(attempts < 60, "still failing: {error}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let records = nats.records(&stream).await.unwrap();
    let mut expected = many;
    kollect_core::model::sort_canonical(&mut expected);
    assert_eq!(replay_of(&records).rows(&inventory()), expected);
    // One message per row survives: redeliveries replaced earlier copies of the same row.
    assert_eq!(records.len(), expected.len() + 1);
}
