//! The local sink: documents written atomically under the configured directory.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError,
};

use super::config::LocalConfig;
use crate::format::Format;
use crate::path;

/// Writes documents under a directory.
#[derive(Debug, Clone)]
pub struct LocalSink {
    config: LocalConfig,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> SinkError {
    let message = format!("{what} {}: {error}", path.display());
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => SinkError::forbidden(message),
        _ => SinkError::transient(message),
    }
}

impl LocalSink {
    /// A sink writing under `config.dir`; the template is checked now.
    pub fn new(config: LocalConfig) -> Result<Self, SinkError> {
        if config.dir.as_os_str().is_empty() {
            return Err(SinkError::terminal("local sink: the output directory is empty"));
        }
        let sink = Self { config };
        // Render once with sample values so a bad template fails at construction.
        let sample = kollect_core::sink::InventoryRef::namespaced("ns", "name").with_cluster("c");
        path::render(
            &sink.template_for(&sample),
            &sample,
            1,
            sink.config.format.extension(),
        )
        .and_then(|p| path::check_relative(&p))?;
        Ok(sink)
    }

    fn template_for(&self, inventory: &kollect_core::sink::InventoryRef) -> String {
        path::template_for(self.config.path_template.as_deref(), inventory)
    }

    /// The relative path of the document (or part) of `request`.
    pub fn relative_path(&self, request: &ExportRequest) -> Result<String, SinkError> {
        let relative = path::render_for(
            &self.template_for(&request.inventory),
            request,
            self.config.format.extension(),
        )?;
        path::check_relative(&relative)?;
        Ok(relative)
    }

    /// The absolute path of an inventory's document (without part suffix).
    pub fn base_path(
        &self,
        inventory: &kollect_core::sink::InventoryRef,
        generation: i64,
    ) -> Result<PathBuf, SinkError> {
        let relative = path::render(
            &self.template_for(inventory),
            inventory,
            generation,
            self.config.format.extension(),
        )?;
        path::check_relative(&relative)?;
        Ok(self.config.dir.join(relative))
    }

    /// The format documents are written in.
    pub fn format(&self) -> Format {
        self.config.format
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Every file of an inventory's document: the single file and any `.part-NNNN-of-NNNN`
    /// siblings.
    pub fn files_of(&self, base: &Path) -> Vec<PathBuf> {
        let (Some(parent), Some(file)) = (base.parent(), base.file_name().and_then(|f| f.to_str())) else {
            return Vec::new();
        };
        let (stem, extension) = match file.rfind('.') {
            Some(dot) => (&file[..dot], &file[dot..]),
            None => (file, ""),
        };
        let prefix = format!("{stem}.part-");
        let mut files: Vec<PathBuf> = std::fs::read_dir(parent)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().and_then(|f| f.to_str()).is_some_and(|name| {
                            name == file
                                || (name.starts_with(&prefix)
                                    && name.ends_with(extension)
                                    && path::is_part_name(&name[prefix.len()..name.len() - extension.len()]))
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    if let Some(parent) = target.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| io_error("create directory", parent, e))?;
    }
    let temporary = target.with_extension(format!(
        "{}.tmp-{}",
        target.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temporary)
        .map_err(|e| io_error("create", &temporary, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", &temporary, e))?;
    std::fs::rename(&temporary, target).map_err(|e| io_error("rename into", target, e))
}

#[async_trait]
impl Sink for LocalSink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::DOCUMENTS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let target = self.config.dir.join(self.relative_path(request)?);
        let bytes = self.config.format.render(request)?;
        let sink = self.clone();
        let base = self.base_path(&request.inventory, request.generation)?;
        let last = request.is_last_part();
        // After the last part, files of this document that are not parts of this set are stale.
        let keep_suffix = request
            .marker()
            .map(|m| format!("-of-{:04}{}", m.total, self.config.format.extension()));
        tokio::task::spawn_blocking(move || {
            let unchanged = std::fs::read(&target).is_ok_and(|existing| existing == bytes);
            if !unchanged {
                write_atomically(&target, &bytes)?;
            }
            if last {
                let stale = sink.files_of(&base).into_iter().filter(|p| {
                    let name = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
                    match &keep_suffix {
                        Some(suffix) => !name.ends_with(suffix.as_str()),
                        None => *p != target,
                    }
                });
                for stale in stale {
                    std::fs::remove_file(&stale).map_err(|e| io_error("remove stale part", &stale, e))?;
                }
            }
            Ok(if unchanged {
                ExportReceipt::unchanged()
            } else {
                ExportReceipt::written(bytes.len() as u64)
            })
        })
        .await
        .map_err(|e| SinkError::transient(format!("local sink task: {e}")))?
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let base = self.base_path(&request.inventory, request.generation)?;
        let sink = self.clone();
        tokio::task::spawn_blocking(move || {
            for file in sink.files_of(&base) {
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("remove", &file, e)),
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| SinkError::transient(format!("local sink task: {e}")))?
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = std::time::Instant::now();
        let dir = self.config.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&dir)
                .map_err(|e| io_error("create directory", &dir, e))?;
            let metadata = std::fs::metadata(&dir).map_err(|e| io_error("inspect", &dir, e))?;
            if metadata.permissions().readonly() {
                return Err(SinkError::forbidden(format!("{} is read-only", dir.display())));
            }
            Ok(())
        })
        .await
        .map_err(|e| SinkError::transient(format!("local sink task: {e}")))??;
        Ok(ProbeReport::new(
            started.elapsed(),
            format!("directory {} is writable", self.config.dir.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_are_recognised() {
        assert!(path::is_part_name("0001-of-0003"));
        assert!(!path::is_part_name("0001-of-"));
        assert!(!path::is_part_name("x-of-0003"));
    }

    #[test]
    fn templates_escaping_the_directory_are_refused_at_construction() {
        let error = LocalSink::new(LocalConfig {
            dir: "/tmp/out".into(),
            format: Format::Json,
            path_template: Some("../{name}.json".into()),
        })
        .unwrap_err();
        assert_eq!(error.class(), kollect_core::sink::ErrorClass::Terminal);
        assert!(error.message().contains("stay inside"), "{error}");
    }
}
