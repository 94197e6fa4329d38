//! The Kollect operator and the `kollect` command-line tool.
//!
//! For now this crate provides CRD generation (`kollect crds`); the operator (`kollect run`) and
//! the pipeline CLI (`kollect collect | validate | init`) build on the library crates.
#![forbid(unsafe_code)]

pub mod crds;
