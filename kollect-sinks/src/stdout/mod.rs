//! The `stdout` sink: one record per exported document, written to standard output (or any
//! writer) in the formats of the CLI's `--output -`:
//!
//! `{"context","targetNamespace","targetName","path","envelope":{…}}`, as NDJSON (one compact
//! record per line), YAML (each record preceded by `---`), or JSON (one array indented by two
//! spaces, written by [`StdoutSink::finish`]; `[]` when there were no records).
//!
//! Removing an inventory writes a record with an empty envelope, so a consumer of the stream
//! sees the inventory emptied.

mod sink;

pub use self::sink::StdoutSink;

use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily};
use crate::context::BuildContext;
use crate::family::SinkConfig;

/// The type name of this backend.
pub const TYPE: &str = "stdout";

/// The `stdout` backend (command line only). Records are whole parts; a delta would go unused.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Cli,
    Capabilities::MESSAGES.with_delta(false),
    build,
);

fn build(config: &SinkConfig, _context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Stdout(format) => Ok(Box::new(StdoutSink::stdout(*format))),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}
