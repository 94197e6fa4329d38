//! The integration tests of kollect-operator, as one test binary: each module was a binary of its
//! own, and one binary links the dependency graph once instead of once per module.
//!
//! Each module says what it covers; run one with `cargo test -p kollect-operator --test integration <module>::`.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod chart;
mod cli;
mod crd_rules;
mod crds_up_to_date;
mod init;
mod manifests;
mod operator;
mod run;
