//! # kollect-collect
//!
//! The extraction engine (JSONPath, CEL, Helm release fields, redaction, full-resource export)
//! and the collection runtime (shared watches, target matching, the row store). Under
//! construction: the crate currently only reserves its place in the workspace.
#![forbid(unsafe_code)]
