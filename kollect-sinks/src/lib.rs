//! # kollect-sinks
//!
//! Sink backends, one cargo feature and one folder each, described by a
//! [`Backend`] descriptor and built through the [`registry`]:
//!
//! | Feature | Type | Family |
//! |---|---|---|
//! | `local` | [`local::LocalSink`]: files under a directory (CLI) | CLI only |
//! | `stdout` | [`stdout::StdoutSink`]: records on standard output (CLI) | CLI only |
//! | `git` | [`git::GitSink`]: files committed and pushed to a Git branch | snapshot |
//! | `gitlab` | [`gitlab::GitlabSink`]: the same on GitLab or Gitea/Forgejo, directly or through merge requests | snapshot |
//! | `postgres` | [`postgres::PostgresSink`]: rows in a PostgreSQL table | database |
//! | `mongodb` | [`mongodb::MongodbSink`]: documents in a MongoDB collection | database |
//! | `bigquery` | [`bigquery::BigquerySink`]: rows in a BigQuery table, one `MERGE` per export | database |
//! | `object` | [`object::ObjectSink`]: `s3`, `gcs` and `azureblob`, documents in a bucket or container | snapshot |
//! | `kafka` | [`kafka::KafkaSink`]: snapshot or row messages on a topic ([`events`]) | event |
//! | `nats` | [`nats::NatsSink`]: snapshot or row messages on a JetStream stream ([`events`]) | event |
//!
//! Every backend implements [`kollect_core::sink::Sink`] and passes the conformance suite of
//! `kollect-testkit` against the real service. Backends never read Kubernetes Secrets: the
//! caller resolves the references a descriptor names into a [`BuildContext`].
//!
//! Shared pieces every backend uses: [`mod@format`] (the one format enum), [`path`] (path
//! templates), [`secret`] (resolved Secret data), and, inside the crate, TLS material and
//! guarded DNS.
#![forbid(unsafe_code)]

pub mod backend;
#[cfg(feature = "bigquery")]
pub mod bigquery;
pub mod context;
#[cfg(any(feature = "kafka", feature = "nats"))]
pub mod events;
pub mod family;
pub mod format;
#[cfg(feature = "git")]
pub mod git;
#[cfg(feature = "gitlab")]
pub mod gitlab;
#[cfg(any(feature = "object", feature = "bigquery", feature = "gitlab"))]
mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(any(feature = "git", feature = "object"))]
pub mod layout;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(any(
    feature = "git",
    feature = "postgres",
    feature = "mongodb",
    feature = "kafka",
    feature = "nats"
))]
mod net;
#[cfg(feature = "object")]
pub mod object;
pub mod path;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod preview;
pub mod registry;
pub mod secret;
#[cfg(feature = "stdout")]
pub mod stdout;
#[cfg(feature = "tls")]
mod tls;

pub use backend::{Backend, BackendFamily, EndpointField, SecretRefs};
pub use context::BuildContext;
pub use family::{FamilySink, SinkConfig};
pub use registry::{Registry, UnsupportedType, build, supported_types};
pub use secret::SecretData;
