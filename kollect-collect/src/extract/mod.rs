//! The extraction engine.

pub mod jsonpath;
