//! # kollect-core
//!
//! The vocabulary every Kollect crate speaks, with no Kubernetes or backend I/O:
//!
//! - [`api::v1alpha1`]: the eleven `kollect.dev/v1alpha1` custom resources, wire-compatible with
//!   the Go operator, from which the CRD YAML is generated;
//! - [`model`]: rows, snapshots, deltas, the export envelope, canonical JSON and checksums,
//!   multipart partitioning;
//! - [`sink`]: the [`Sink`](sink::Sink) trait that every backend implements, its request and
//!   response types and the error taxonomy;
//! - [`collect`]: who collected a row ([`RowOwner`](collect::RowOwner));
//! - [`middleware`]: tower layers over any sink (retry, circuit breaker, timeout, concurrency
//!   limit, metrics) and the export coalescing rule;
//! - [`export`]: the export engine between a row store and the sinks of one inventory;
//! - [`netguard`]: the SSRF policy for sink endpoints and a guarded resolver.
#![forbid(unsafe_code)]

pub mod api;
pub mod collect;
pub mod duration;
pub mod error;
pub mod export;
pub mod middleware;
pub mod model;
pub mod netguard;
pub mod sink;

pub use duration::{GoDuration, ParseDurationError};
