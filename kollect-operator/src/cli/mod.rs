//! The pipeline CLI: `kollect collect` and `kollect validate` over a configuration directory.

pub mod collect;
pub mod config;
pub mod validate;
