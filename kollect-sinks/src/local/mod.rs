//! The `local` sink: inventory documents as files under a directory (the CLI's `--output <dir>`).
//!
//! Paths come from a template and must stay inside the directory. Parent directories are created
//! with mode 0755 and files written with mode 0644, through a temporary file and a rename so a
//! reader never sees half a document. A file whose bytes are already identical is not rewritten.
//! After the last part of an export, part files left over from an earlier export with a different
//! number of parts are removed.

mod config;
mod sink;

pub use self::config::LocalConfig;
pub use self::sink::LocalSink;

use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily};
use crate::context::BuildContext;
use crate::family::SinkConfig;

/// The type name of this backend.
pub const TYPE: &str = "local";

/// The `local` backend (command line only).
pub(crate) const BACKEND: Backend = Backend::new(TYPE, BackendFamily::Cli, Capabilities::DOCUMENTS, build);

fn build(config: &SinkConfig, _context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Local(local) => Ok(Box::new(LocalSink::new(local.clone())?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}
