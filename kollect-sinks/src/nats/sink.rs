//! The NATS JetStream sink: publishes snapshot or row messages ([`crate::events`]) and waits
//! for every acknowledgement before an export counts as done.
//!
//! Message IDs (`Nats-Msg-Id`) name the content and the stream position it follows: a hash of
//! the subject, the sequence of the subject's previous message as the sink knows it, and the
//! content checksum (or `PURGE`). A retried publish of the same content after the same message
//! carries the same ID, so JetStream drops it within the stream's duplicate window, across
//! retries and across restarts (a restarted sink reads the previous sequence back from the
//! stream). Content that returns to an earlier state follows a newer message and gets a new
//! ID, so it is never mistaken for a duplicate.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::{KollectEventSinkSpec, NatsPreview, SinkPreview};
use kollect_core::model::{Checksum, RowKey};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use tokio::sync::Mutex;

use super::client::{Connection, OPERATION_HEADER, StreamFacts};
use super::config::NatsConfig;
use super::subject::{row_subject, rows_filter};
use crate::context::BuildContext;
use crate::events::{self, MessageMode};

/// The part limit before the server has said what it accepts (NATS's default `max_payload`
/// of 1 MiB, less room for headers and the event wrapper).
const DEFAULT_PART_LIMIT: u64 = 1024 * 1024 - HEADROOM;
/// Room left in a message for headers and the event wrapper around a snapshot part.
const HEADROOM: u64 = 16 * 1024;
/// How long the sink remembers the sequence of a deleted row: longer than any duplicate
/// window the server applies by default (2 minutes), so a row that comes back soon after is
/// never taken for a duplicate of its first message.
const FORGET_DELETED_AFTER: Duration = Duration::from_secs(30 * 60);
/// Messages published and not yet acknowledged, at most.
const IN_FLIGHT: usize = 2048;

/// The content hash of a delete marker.
const DELETED: u64 = 0;

/// One message to publish.
struct Outgoing {
    subject: String,
    payload: Vec<u8>,
    headers: HeaderMap,
    /// What it says: [`content_hash`] of its content, [`DELETED`] for a delete marker.
    content: u64,
}

/// The last message of a subject (or of an inventory's snapshots) as the sink knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Last {
    sequence: u64,
    content: u64,
}

/// What the sink knows of one inventory's messages on the stream. Per row it keeps two
/// integers keyed by a hash of the subject, not the subject itself, to stay small.
#[derive(Default)]
struct Known {
    /// Snapshot mode: the inventory's last snapshot message.
    snapshot: Option<Last>,
    /// Row mode: the last message per row subject (by hash), once read back.
    rows: Option<HashMap<u64, Last>>,
    /// Row mode: deleted rows whose sequence is kept for a while, oldest first.
    deleted: VecDeque<(Instant, u64, u64)>,
}

impl Known {
    fn forget_old_deletes(&mut self, now: Instant) {
        while let Some((at, hash, sequence)) = self.deleted.front().copied() {
            if now.duration_since(at) < FORGET_DELETED_AFTER {
                break;
            }
            self.deleted.pop_front();
            if let Some(rows) = self.rows.as_mut()
                && rows.get(&hash).map(|last| last.sequence) == Some(sequence)
            {
                rows.remove(&hash);
            }
        }
    }
}

/// An open connection and what the stream allows.
struct Session {
    connection: Connection,
    facts: StreamFacts,
}

/// Publishes inventories to a NATS JetStream stream.
pub struct NatsSink {
    config: NatsConfig,
    session: Mutex<Option<Arc<Session>>>,
    /// Per inventory subject; an inventory's lock is held for a whole export, so the
    /// sequences its messages follow are never read while another export moves them.
    known: std::sync::Mutex<HashMap<String, Arc<Mutex<Known>>>>,
    part_limit: AtomicU64,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn subject_hash(subject: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    subject.hash(&mut hasher);
    hasher.finish()
}

/// A hash of a message's content; never [`DELETED`].
fn content_hash(content: &str) -> u64 {
    subject_hash(content) | 1
}

/// The message ID of content `what` published on `subject` after the message `prior`.
fn message_id(scope: &str, subject: &str, prior: u64, what: &str) -> String {
    Checksum::of_bytes(format!("{scope}\n{subject}\n{prior}\n{what}").as_bytes()).to_string()
}

impl NatsSink {
    /// A sink for `config`; nothing connects until the first export or probe.
    pub fn new(config: NatsConfig) -> Self {
        Self {
            config,
            session: Mutex::new(None),
            known: std::sync::Mutex::new(HashMap::new()),
            part_limit: AtomicU64::new(DEFAULT_PART_LIMIT),
        }
    }

    /// Reads a `KollectEventSink` spec (type `nats`) with its resolved Secret.
    pub fn from_spec(spec: &KollectEventSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        NatsConfig::from_spec(spec, context).map(Self::new)
    }

    /// The configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// What the sink knows of the inventory whose messages go to `subject`.
    fn known(&self, subject: &str) -> Arc<Mutex<Known>> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(known.entry(subject.to_owned()).or_default())
    }

    /// The filter the stream must capture.
    fn stream_filter(&self) -> String {
        let filter = self.config.subject.filter();
        match self.config.mode {
            MessageMode::Snapshot => filter,
            MessageMode::Row => rows_filter(&filter),
        }
    }

    /// The open session, opened (servers checked, stream provisioned) on first use. Every use
    /// re-checks what the server names resolve to.
    async fn session(&self) -> Result<Arc<Session>, SinkError> {
        let mut slot = self.session.lock().await;
        // A session whose stream went away (deleted, or no longer capturing the subjects) is
        // replaced: the new one provisions the stream again (`ensure`) or says it is missing.
        if let Some(session) = slot.as_ref().filter(|s| !s.connection.stream_gone()) {
            session.connection.recheck().await?;
            return Ok(Arc::clone(session));
        }
        if slot.take().is_some() {
            // What the sink knew of the old stream says nothing about the new one: the next
            // export of every inventory reconciles against what the stream holds.
            self.known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
        let connection = Connection::open(&self.config).await?;
        let facts = connection.provision(&self.stream_filter()).await?;
        let max_payload = connection.client.server_info().max_payload as u64;
        self.part_limit.store(
            max_payload.saturating_sub(HEADROOM).max(HEADROOM),
            Ordering::Relaxed,
        );
        let session = Arc::new(Session { connection, facts });
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// The inventory this sink publishes `inventory` as (its cluster identity is the sink's).
    fn identity(&self, inventory: &InventoryRef) -> InventoryRef {
        let mut inventory = inventory.clone();
        if !self.config.cluster.is_empty() {
            inventory.cluster.clone_from(&self.config.cluster);
        }
        inventory
    }

    fn headers(
        &self,
        inventory: &InventoryRef,
        mode: MessageMode,
        checksum: Option<&Checksum>,
        id: &str,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in events::headers(inventory, mode, checksum) {
            headers.insert(name, value.as_str());
        }
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        headers.insert(
            async_nats::header::NATS_EXPECTED_STREAM,
            self.config.stream.as_str(),
        );
        headers
    }

    /// A delete marker on `subject`; it rolls the subject's earlier messages up when the
    /// subject belongs to one row or inventory and the stream allows it.
    fn marker(
        &self,
        inventory: &InventoryRef,
        mode: MessageMode,
        subject: String,
        prior: u64,
        rollup: bool,
    ) -> Outgoing {
        let id = message_id(&events::inventory_key(inventory), &subject, prior, "PURGE");
        let mut headers = self.headers(inventory, mode, None, &id);
        headers.insert(OPERATION_HEADER, "PURGE");
        if rollup {
            headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        }
        Outgoing {
            subject,
            payload: Vec::new(),
            headers,
            content: DELETED,
        }
    }

    fn row_message(
        &self,
        inventory: &InventoryRef,
        subject: String,
        prior: u64,
        row: &kollect_core::model::SharedRow,
    ) -> Outgoing {
        let (payload, checksum) = events::row_value(inventory, row);
        let id = message_id(
            &events::inventory_key(inventory),
            &subject,
            prior,
            checksum.as_str(),
        );
        Outgoing {
            headers: self.headers(inventory, MessageMode::Row, Some(&checksum), &id),
            subject,
            payload,
            content: content_hash(checksum.as_str()),
        }
    }

    /// Publishes `messages` and waits for every acknowledgement, keeping up to [`IN_FLIGHT`]
    /// unacknowledged. Returns the stream sequence of each message that was acknowledged (in
    /// order, `None` where it failed) and the first error.
    async fn publish(
        &self,
        connection: &Connection,
        messages: &[Outgoing],
    ) -> (Vec<Option<u64>>, Option<SinkError>) {
        use futures::StreamExt as _;
        // Indices, not references, as stream items: a closure over borrowed items trips the
        // compiler's higher-ranked lifetime check inside the `async_trait` futures.
        let mut acks = std::pin::pin!(
            futures::stream::iter(0..messages.len())
                .map(|i| publish_one(connection, &messages[i]))
                .buffered(IN_FLIGHT)
        );
        let mut sequences = Vec::with_capacity(messages.len());
        let mut first_error = None;
        while let Some(result) = acks.next().await {
            match result {
                Ok(sequence) => sequences.push(Some(sequence)),
                Err(e) => {
                    // Stop at the first failure instead of waiting out every timeout behind
                    // it; what was in flight is re-sent by the retry under the same IDs.
                    first_error = Some(connection.publish_error(&e));
                    break;
                }
            }
        }
        sequences.resize(messages.len(), None);
        (sequences, first_error)
    }

    /// Row mode: the messages for a request and the sequences they follow.
    async fn row_messages(
        &self,
        session: &Session,
        inventory: &InventoryRef,
        request: &ExportRequest,
        known: &mut Known,
    ) -> Result<Vec<Outgoing>, SinkError> {
        let base = self.config.subject.render(inventory);
        let mut messages = Vec::new();
        let rollup = session.facts.allow_rollup;
        match (request.delta.as_deref(), known.rows.as_ref()) {
            (Some(delta), Some(rows)) => {
                // A row whose last acknowledged message already says the same (an export
                // retried after a partial failure) is not sent again.
                for row in &delta.upserts {
                    let subject = row_subject(&base, &row.key());
                    let last = rows.get(&subject_hash(&subject)).copied();
                    let message = self.row_message(inventory, subject, last.map_or(0, |l| l.sequence), row);
                    if last.is_none_or(|l| l.content != message.content) {
                        messages.push(message);
                    }
                }
                for key in &delta.deletes {
                    let subject = row_subject(&base, key);
                    let last = rows.get(&subject_hash(&subject)).copied();
                    if last.is_none_or(|l| l.content != DELETED) {
                        let prior = last.map_or(0, |l| l.sequence);
                        messages.push(self.marker(inventory, MessageMode::Row, subject, prior, rollup));
                    }
                }
            }
            _ => {
                // No delta, or nothing known yet: compare with what the stream holds.
                let last = session.connection.last_per_subject(&rows_filter(&base)).await?;
                let mut rows = HashMap::with_capacity(last.len());
                let mut live = HashMap::new();
                for (subject, message) in last {
                    let content = message.checksum.as_deref().map_or(DELETED, content_hash);
                    rows.insert(
                        subject_hash(&subject),
                        Last {
                            sequence: message.sequence,
                            content,
                        },
                    );
                    if let Some(checksum) = message.checksum {
                        live.insert(subject, checksum);
                    }
                }
                let prior_of = |rows: &HashMap<u64, Last>, subject: &str| {
                    rows.get(&subject_hash(subject)).map_or(0, |l| l.sequence)
                };
                for row in request.snapshot.rows() {
                    let subject = row_subject(&base, &row.key());
                    let prior = prior_of(&rows, &subject);
                    let message = self.row_message(inventory, subject, prior, row);
                    let published = live.remove(&message.subject);
                    let checksum = message.headers.get(events::HEADER_CHECKSUM).map(|v| v.as_str());
                    if published.as_deref() != checksum {
                        messages.push(message);
                    }
                }
                let mut vanished: Vec<String> = live.into_keys().collect();
                vanished.sort();
                for subject in vanished {
                    let prior = prior_of(&rows, &subject);
                    messages.push(self.marker(inventory, MessageMode::Row, subject, prior, rollup));
                }
                known.rows = Some(rows);
            }
        }
        Ok(messages)
    }

    /// Snapshot mode: the message for this part, following the inventory's last snapshot
    /// message.
    async fn snapshot_message(
        &self,
        session: &Session,
        inventory: &InventoryRef,
        request: &ExportRequest,
        known: &mut Known,
    ) -> Result<Option<Outgoing>, SinkError> {
        let subject = self.config.subject.render(inventory);
        let (index, total) = request.marker().map_or((1, 1), |m| (m.index, m.total));
        let checksum = request.part.checksum();
        let what = format!("{index}/{total}/{checksum}");
        let content = content_hash(&what);
        let last = match known.snapshot {
            Some(last) => last,
            None => self.last_snapshot(&session.connection, &subject).await?,
        };
        known.snapshot = Some(last);
        if last.content == content {
            // The inventory's last message on the stream is this very part.
            return Ok(None);
        }
        let prior = last.sequence;
        let id = message_id(&events::inventory_key(inventory), &subject, prior, &what);
        let payload = events::snapshot_value(inventory, Timestamp::now(), &request.envelope());
        let limit = self.part_limit.load(Ordering::Relaxed) + HEADROOM;
        if payload.len() as u64 > limit {
            // The engine partitions within the server's limit from the next attempt on.
            return Err(SinkError::transient(format!(
                "nats publish: a snapshot message of {} bytes exceeds the server's max_payload of {limit} bytes; the next attempt is split into smaller parts",
                payload.len()
            )));
        }
        let mut headers = self.headers(inventory, MessageMode::Snapshot, Some(checksum), &id);
        headers.insert(events::HEADER_PART, format!("{index}/{total}"));
        Ok(Some(Outgoing {
            headers,
            subject,
            payload,
            content,
        }))
    }

    /// The inventory's last snapshot message when the sink has not published one yet. On a
    /// subject of its own that is the subject's last message; on a shared subject the stream's
    /// end stands in (no earlier message can have followed it, so no content is mistaken for a
    /// duplicate, at the price of publishing once more what may already be there).
    async fn last_snapshot(&self, connection: &Connection, subject: &str) -> Result<Last, SinkError> {
        if !self.config.subject.is_per_inventory() {
            let sequence = connection.stream_last_sequence().await?;
            return Ok(Last {
                sequence,
                content: DELETED,
            });
        }
        Ok(match connection.last_message_of(subject).await? {
            None => Last {
                sequence: 0,
                content: DELETED,
            },
            Some((sequence, headers)) => {
                let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
                let content = match (
                    header(OPERATION_HEADER),
                    header(events::HEADER_PART),
                    header(events::HEADER_CHECKSUM),
                ) {
                    (None, Some(part), Some(checksum)) => content_hash(&format!("{part}/{checksum}")),
                    _ => DELETED,
                };
                Last { sequence, content }
            }
        })
    }

    /// Publishes `messages` and records the sequences acknowledged.
    async fn publish_and_record(
        &self,
        session: &Session,
        entry: &mut Known,
        messages: Vec<Outgoing>,
    ) -> Result<u64, SinkError> {
        let (sequences, error) = self.publish(&session.connection, &messages).await;
        let now = Instant::now();
        let mut bytes = 0u64;
        for (message, sequence) in messages.iter().zip(&sequences) {
            let Some(sequence) = *sequence else { continue };
            bytes += (message.subject.len() + message.payload.len()) as u64;
            let last = Last {
                sequence,
                content: message.content,
            };
            match self.config.mode {
                MessageMode::Snapshot => entry.snapshot = Some(last),
                MessageMode::Row => {
                    let hash = subject_hash(&message.subject);
                    if let Some(rows) = entry.rows.as_mut() {
                        rows.insert(hash, last);
                    }
                    if message.content == DELETED {
                        entry.deleted.push_back((now, hash, sequence));
                    }
                }
            }
        }
        entry.forget_old_deletes(now);
        match error {
            Some(error) => Err(error),
            None => Ok(bytes),
        }
    }
}

/// Publishes one message and waits for its acknowledgement: the stream sequence it got (the
/// original one for a duplicate).
async fn publish_one(
    connection: &Connection,
    message: &Outgoing,
) -> Result<u64, async_nats::jetstream::context::PublishError> {
    let publish = PublishMessage::build()
        .headers(message.headers.clone())
        .payload(message.payload.clone().into());
    let ack = connection
        .jetstream
        .send_publish(message.subject.clone(), publish)
        .await?;
    Ok(ack.await?.sequence)
}

#[async_trait]
impl Sink for NatsSink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        match self.config.mode {
            // Every part is a message within the server's payload limit; a delta would go
            // unused.
            MessageMode::Snapshot => Capabilities::MESSAGES
                .with_delta(false)
                .with_part_limit(self.part_limit.load(Ordering::Relaxed)),
            // One request per export, whatever its size: rows are messages of their own.
            MessageMode::Row => Capabilities::ROWS,
        }
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let session = self.session().await?;
        let inventory = self.identity(&request.inventory);
        let known = self.known(&self.config.subject.render(&inventory));
        let mut entry = known.lock().await;
        let messages = match self.config.mode {
            MessageMode::Snapshot => self
                .snapshot_message(&session, &inventory, request, &mut entry)
                .await?
                .into_iter()
                .collect(),
            MessageMode::Row => {
                self.row_messages(&session, &inventory, request, &mut entry)
                    .await?
            }
        };
        if messages.is_empty() {
            return Ok(ExportReceipt::unchanged());
        }
        let count = messages.len();
        let bytes = self.publish_and_record(&session, &mut entry, messages).await?;
        tracing::debug!(stream = %self.config.stream, inventory = %inventory, messages = count, bytes, "published to NATS JetStream");
        Ok(ExportReceipt::written(bytes))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let session = self.session().await?;
        let inventory = self.identity(&request.inventory);
        let subject = self.config.subject.render(&inventory);
        let known = self.known(&subject);
        let mut entry = known.lock().await;
        let messages = match self.config.mode {
            MessageMode::Snapshot => {
                let prior = match entry.snapshot {
                    Some(last) => last.sequence,
                    None => self.last_snapshot(&session.connection, &subject).await?.sequence,
                };
                // Rolling up a shared subject would remove other inventories' messages.
                let rollup = session.facts.allow_rollup && self.config.subject.is_per_inventory();
                vec![self.marker(&inventory, MessageMode::Snapshot, subject.clone(), prior, rollup)]
            }
            MessageMode::Row => {
                let last = session
                    .connection
                    .last_per_subject(&rows_filter(&subject))
                    .await?;
                last.into_iter()
                    .filter(|(_, message)| message.checksum.is_some())
                    .map(|(row, message)| {
                        self.marker(
                            &inventory,
                            MessageMode::Row,
                            row,
                            message.sequence,
                            session.facts.allow_rollup,
                        )
                    })
                    .collect()
            }
        };
        self.publish_and_record(&session, &mut entry, messages).await?;
        drop(entry);
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&subject);
        Ok(())
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = Instant::now();
        // The probe proves the connection and credentials without creating anything.
        let connection = Connection::open(&self.config).await?;
        let account = connection.account().await?;
        let stream = match connection.stream_config().await? {
            Some(config) => format!("stream \"{}\" captures {:?}", config.name, config.subjects),
            None => match self.config.provisioning {
                kollect_core::api::v1alpha1::ProvisioningMode::Ensure => format!(
                    "stream \"{}\" does not exist yet and is created on the first export",
                    self.config.stream
                ),
                kollect_core::api::v1alpha1::ProvisioningMode::Existing => {
                    return Err(SinkError::terminal(format!(
                        "nats stream \"{}\" does not exist (provisioning.mode existing never creates it)",
                        self.config.stream
                    )));
                }
            },
        };
        Ok(ProbeReport::new(
            started.elapsed(),
            format!(
                "NATS JetStream account info request succeeded ({} streams in the account; {stream})",
                account.streams
            ),
        ))
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        let inventory = self.identity(&request.inventory);
        let base = self.config.subject.render(&inventory);
        let subject = match self.config.mode {
            MessageMode::Snapshot => base,
            MessageMode::Row => request.rows().next().map_or_else(
                || {
                    row_subject(
                        &base,
                        &RowKey {
                            target_namespace: "<targetNamespace>".into(),
                            target_name: "<targetName>".into(),
                            uid: "<uid>".into(),
                        },
                    )
                },
                |row| row_subject(&base, &row.key()),
            ),
        };
        SinkPreview {
            input_sample_source: Some("synthetic".to_owned()),
            object_path: Some(subject.clone()),
            nats: Some(NatsPreview {
                stream: Some(self.config.stream.clone()),
                subject: Some(subject),
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

    fn sink(mode: MessageMode) -> NatsSink {
        NatsSink::new(
            NatsConfig::new(
                "nats://nats.example.com:4222",
                "kollect.{cluster}.{namespace}.{name}",
                GuardedResolver::new(NetPolicy::new(false)),
            )
            .unwrap()
            .with_mode(mode)
            .with_cluster("prod"),
        )
    }

    #[test]
    fn message_ids_follow_content_and_position() {
        let a = message_id("prod/shop/images", "s", 7, "abc");
        assert_eq!(
            a,
            message_id("prod/shop/images", "s", 7, "abc"),
            "stable across attempts"
        );
        assert_ne!(
            a,
            message_id("prod/shop/images", "s", 9, "abc"),
            "same content after a newer message"
        );
        assert_ne!(a, message_id("prod/shop/images", "s", 7, "abd"));
        assert_ne!(a, message_id("prod/shop/other", "s", 7, "abc"));
    }

    #[test]
    fn deleted_rows_are_remembered_for_a_while_then_forgotten() {
        let start = Instant::now();
        let last = |sequence| Last { sequence, content: 3 };
        let mut known = Known {
            rows: Some(HashMap::from([(1, last(10)), (2, last(20))])),
            ..Known::default()
        };
        known.deleted.push_back((start, 1, 10));
        known.deleted.push_back((start, 2, 19));
        known.forget_old_deletes(start + Duration::from_secs(60));
        assert_eq!(known.rows.as_ref().map(HashMap::len), Some(2));
        known.forget_old_deletes(start + FORGET_DELETED_AFTER);
        // Row 2 was written again after its delete (sequence 20): it stays.
        assert_eq!(known.rows, Some(HashMap::from([(2, last(20))])));
        assert!(known.deleted.is_empty());
    }

    #[test]
    fn previews_name_the_stream_and_subject_and_capabilities_follow_the_mode() {
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
        assert_eq!(preview.object_path.as_deref(), Some("kollect.prod.shop.images"));
        assert_eq!(
            preview.nats.and_then(|n| n.stream).as_deref(),
            Some("kollect_events")
        );
        assert_eq!(
            snapshot.capabilities().ceiling(10 * 1024 * 1024),
            Some(DEFAULT_PART_LIMIT),
            "parts stay within the server's payload limit"
        );
        let rows = sink(MessageMode::Row);
        assert_eq!(
            rows.preview(&request).object_path.as_deref(),
            Some("kollect.prod.shop.images.shop.t.u1")
        );
        assert_eq!(rows.capabilities(), Capabilities::ROWS);
    }
}
