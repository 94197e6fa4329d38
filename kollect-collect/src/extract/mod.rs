//! The extraction engine.

pub mod cel;
pub mod jsonpath;
