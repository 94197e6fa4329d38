//! The integration tests of kollect-sinks, as one test binary: each module was a binary of its
//! own, and one binary links the dependency graph once instead of once per module.
//!
//! Each module says what it covers; run one with `cargo test -p kollect-sinks --test integration <module>::`.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bigquery;
mod git;
mod gitlab;
mod kafka;
mod local_conformance;
mod mongodb_sink;
mod nats;
mod object;
mod postgres;
mod stdout_conformance;
