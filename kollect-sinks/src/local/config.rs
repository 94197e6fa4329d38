//! Where and how the local sink writes.

use std::path::PathBuf;

use crate::format::Format;

/// Configuration of a [`LocalSink`](super::LocalSink).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalConfig {
    /// The output directory (created when missing).
    pub dir: PathBuf,
    /// Document format.
    pub format: Format,
    /// Path template relative to `dir` (default [`crate::path::DEFAULT_TEMPLATE`]).
    pub path_template: Option<String>,
}

impl LocalConfig {
    /// Documents in `format` under `dir`, at the default path template.
    pub fn new(dir: impl Into<PathBuf>, format: Format) -> Self {
        Self {
            dir: dir.into(),
            format,
            path_template: None,
        }
    }

    /// The same configuration with a path template relative to the directory.
    pub fn with_path_template(mut self, template: Option<String>) -> Self {
        self.path_template = template;
        self
    }
}
