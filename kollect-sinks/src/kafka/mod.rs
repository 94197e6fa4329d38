//! The `kafka` sink (`KollectEventSink`): inventories as messages on one topic, so a consumer
//! that reads the topic from the beginning can rebuild them ([`crate::events::Replay`]).
//!
//! - `spec.options.messageMode`: `snapshot` (default; one message per export part in the Go
//!   operator's value shape, keyed `<cluster>/<namespace>/<inventory>`, a tombstone when the
//!   inventory is deleted) or `row` (one message per changed row keyed by the row, tombstones
//!   for deleted rows and for every row of a deleted inventory). See [`crate::events`].
//! - Row mode applies deltas: one changed object publishes one message. Without a delta (the
//!   first export after a start) the sink reads the topic back and publishes only the rows
//!   whose latest message differs, plus tombstones for rows that are gone, so a restart with
//!   unchanged content publishes nothing.
//! - The producer is idempotent with `acks=all`; an export succeeds only when every message is
//!   acknowledged. Delivery is at least once: an export retried after a failure may publish a
//!   message again (same key and value, so compaction and [`crate::events::Replay`] are
//!   unaffected).
//! - Security: TLS when `spec.tls` is set (even `{}`) or the credentials Secret holds a client
//!   certificate (`tls.crt`, `tls.key`); SASL when the Secret has `username` and `password` (or
//!   `token`), mechanism `spec.options.saslMechanism` (`SCRAM-SHA-256` by default, `SCRAM-SHA-512`,
//!   or `PLAIN`, which is refused without TLS).
//! - `provisioning.mode: ensure` (default) creates a missing topic with `cleanup.policy=compact`,
//!   `spec.options.partitions` and `spec.options.replicationFactor` (broker defaults otherwise);
//!   `existing` never creates or alters a topic and fails clearly when it is missing. Automatic
//!   topic creation by the broker is turned off for this client in both modes.
//! - SSRF: every bootstrap broker is resolved and checked before a client is created, and every
//!   broker the cluster advertises is checked after the first metadata response and again on
//!   every export, before a message is queued. librdkafka connects sparsely (a bootstrap broker
//!   for metadata, partition leaders when producing), but it resolves names itself and may open
//!   a connection to an advertised broker for a background metadata refresh, so a name that
//!   changes to a refused address between two checks can be reached until the next check.
//! - Errors: authentication failures (reported by librdkafka's error callback, not left to
//!   surface as timeouts) are terminal, authorization failures forbidden, unavailable brokers
//!   transient. Passwords and client keys are scrubbed from every message and log line.

mod client;
mod config;
mod sink;

pub use self::config::{KafkaConfig, MAX_MESSAGE_BYTES, OPTIONS, Sasl, SaslMechanism};
pub use self::sink::KafkaSink;
pub use crate::events::TlsSettings;

use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::netguard::EndpointKind;
use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily, EndpointField, SecretRefs};
use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// The type name of this backend.
pub const TYPE: &str = "kafka";

/// The `kafka` backend. Its capabilities depend on the message mode; the descriptor states
/// the snapshot mode's.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Crd(SinkFamily::Event),
    Capabilities::MESSAGES.with_delta(false),
    build,
)
.with_endpoints(&[EndpointField::new(
    "spec.kafka.brokers",
    EndpointKind::KafkaBroker,
)])
.with_secrets(secret_refs);

fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Event(spec) => Ok(Box::new(KafkaSink::from_spec(spec, context)?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}

/// Credentials come from `spec.kafka.secretRef`, else `spec.secretRef`.
fn secret_refs(sink: &FamilySink) -> SecretRefs {
    let own = match sink {
        FamilySink::Event(s) => s.spec.kafka.as_ref().and_then(|k| k.secret_ref.clone()),
        _ => None,
    };
    SecretRefs::common(sink).with_credentials_override(own)
}
