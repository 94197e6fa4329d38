//! # kollect-sinks
//!
//! Sink backends, one cargo feature each, built from family sink specs by the [`registry`]:
//!
//! | Feature | Type | Family |
//! |---|---|---|
//! | `local` | [`local::LocalSink`]: files under a directory (CLI) | snapshot |
//! | `stdout` | [`stdout::StdoutSink`]: records on standard output (CLI) | stream |
//! | `git` | [`git::SharedGitSink`]: files committed and pushed to a Git branch | snapshot |
//! | `postgres` | [`postgres::PostgresSink`]: rows in a PostgreSQL table | database |
//!
//! Every backend implements [`kollect_core::sink::Sink`] and passes the conformance suite of
//! `kollect-testkit` against the real service.
#![forbid(unsafe_code)]

pub mod format;
#[cfg(feature = "git")]
pub mod git;
#[cfg(feature = "local")]
pub mod local;
pub mod path;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod registry;
pub mod secret;
#[cfg(feature = "stdout")]
pub mod stdout;

pub use registry::{BuildContext, SinkConfig, build, supported_types};
pub use secret::SecretData;
