//! The pipeline CLI: `kollect collect`, `kollect validate` and `kollect init` over a
//! configuration directory.

pub mod collect;
pub mod config;
pub mod init;
pub mod validate;
