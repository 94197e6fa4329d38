//! # kollect-sinks
//!
//! Sink backends (local directory, stdout, Git, GitLab, object stores, PostgreSQL, MongoDB,
//! BigQuery, Kafka, NATS), one cargo feature each, built from family sink specs by a registry.
//! Under construction: the crate currently only reserves its place in the workspace.
#![forbid(unsafe_code)]
