//! The integration tests of kollect-collect, as one test binary: each module was a binary of its
//! own, and one binary links the dependency graph once instead of once per module.
//!
//! Each module says what it covers; run one with `cargo test -p kollect-collect --test integration <module>::`.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod golden;
mod jsonpath_conformance;
mod runtime;
