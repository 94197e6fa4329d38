//! The row and export model: rows, snapshots, deltas, envelopes, checksums and partitioning.
//!
//! Everything here is pure and deterministic; the encodings are byte-compatible with the Go
//! operator (decision X1).

pub mod canonical;
mod checksum;
mod envelope;
mod partition;
mod row;
mod rows;
mod shared;
mod snapshot;

pub use checksum::{
    Checksum, ContentChecksum, canonical_array, items_fingerprint, partitions_checksum, rollup_checksum,
};
pub use envelope::{
    DecodeError, Envelope, EnvelopeHeader, PartMarker, SCHEMA_VERSION, decode, decode_items, encode,
    format_exported_at,
};
pub use partition::{ExportMeta, ItemTooLarge, Part, Partitioning, part_path, partition};
pub use row::{Attributes, Item, Row, RowKey, sort_canonical, write_canonical_array};
pub use rows::{MAX_CHUNK, Rows, RowsIter, SortedRows};
pub use shared::{Canonical, SharedRow};
pub use snapshot::{Delta, Snapshot};
