//! The `nats` sink (`KollectEventSink`): inventories as messages on a NATS JetStream stream,
//! so a consumer that reads the stream from the beginning can rebuild them
//! ([`crate::events::Replay`]; a message with the [`OPERATION_HEADER`] is a delete).
//!
//! - `spec.nats.subject` is a template with `{cluster}`, `{namespace}` and `{name}` tokens,
//!   each a whole token between dots (see [`SubjectTemplate`]); without tokens it is the fixed
//!   subject the Go operator publishes to.
//! - `spec.options.messageMode`: `snapshot` (default; one message per export part in the Go
//!   operator's value shape on the rendered subject, a delete marker when the inventory is
//!   deleted) or `row` (one message per changed row on `<subject>.<targetNamespace>.
//!   <targetName>.<uid>`, a delete marker per deleted row and per row of a deleted
//!   inventory; the template must then name the inventory completely).
//! - Deletes are KV-style purge markers: an empty message with `KV-Operation: PURGE` and the
//!   Kollect headers, and `Nats-Rollup: sub` where the subject belongs to one row or inventory
//!   and the stream allows rollups, so the server drops the subject's earlier messages too.
//! - Row mode applies deltas: one changed object publishes one message. Without a delta (the
//!   first export after a start) the sink reads the last message of every row subject back
//!   (headers only) and publishes only rows whose checksum differs, plus markers for rows that
//!   are gone, so a restart with unchanged content publishes nothing.
//! - `Nats-Msg-Id` derives from the content and the sequence it follows, never from the
//!   export time, so JetStream deduplicates a retried or re-sent publish within the stream's
//!   duplicate window, also across restarts. Delivery is at least once beyond that window.
//! - Security: `token`, `username` + `password`, `nkey` (a user seed) or `creds` (a `.creds`
//!   file) from the credentials Secret; TLS when `spec.tls` is set (even `{}`), a URL says
//!   `tls://`, or the Secret holds `tls.crt` and `tls.key` (a client certificate).
//! - `provisioning.mode: ensure` (default) creates a missing stream capturing the template's
//!   subjects (file storage, rollups allowed, one message per subject in row mode) and never
//!   changes an existing one; `existing` never creates one. Either way a stream that does not
//!   capture the subjects is an error naming both.
//! - SSRF: every configured server is resolved and checked before connecting and again on
//!   every export; servers the cluster advertises are never dialled. The client resolves names
//!   itself on reconnect, so a name that changes to a refused address between two checks can
//!   be reached until the next export checks it.
//! - Errors: refused credentials and TLS failures are terminal, permission violations
//!   forbidden, unreachable servers and timeouts transient. Secrets are scrubbed from every
//!   message and log line.

mod client;
mod config;
mod sink;
mod subject;

pub use self::client::OPERATION_HEADER;
pub use self::config::{DEFAULT_STREAM, NatsAuth, NatsConfig, OPTIONS};
pub use self::sink::NatsSink;
pub use self::subject::{SubjectTemplate, row_subject};
pub use crate::events::TlsSettings;

use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::netguard::EndpointKind;
use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily, EndpointField, SecretRefs};
use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// The type name of this backend.
pub const TYPE: &str = "nats";

/// The `nats` backend. Its capabilities depend on the message mode; the descriptor states
/// the snapshot mode's.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Crd(SinkFamily::Event),
    Capabilities::MESSAGES.with_delta(false),
    build,
)
.with_endpoints(&[
    EndpointField::new("spec.nats.url", EndpointKind::NatsUrl),
    EndpointField::new("spec.endpoint", EndpointKind::NatsUrl),
])
.with_secrets(secret_refs);

fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Event(spec) => Ok(Box::new(NatsSink::from_spec(spec, context)?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}

/// Credentials come from `spec.nats.secretRef`, else `spec.secretRef`.
fn secret_refs(sink: &FamilySink) -> SecretRefs {
    let own = match sink {
        FamilySink::Event(s) => s.spec.nats.as_ref().and_then(|n| n.secret_ref.clone()),
        _ => None,
    };
    SecretRefs::common(sink).with_credentials_override(own)
}
