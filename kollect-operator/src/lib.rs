//! The Kollect operator and the `kollect` command-line tool.
//!
//! - [`crds`]: CRD generation (`kollect crds`);
//! - [`cli`]: the pipeline CLI (`kollect collect`, `kollect validate`, `kollect init`) over the
//!   library crates.
//!
//! The operator (`kollect run`) joins them here.
#![forbid(unsafe_code)]

pub mod cli;
pub mod crds;
