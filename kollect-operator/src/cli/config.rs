//! The CLI's configuration directory: Kollect objects and Secrets from `*.yaml` / `*.yml` files
//! (non-recursive, in file name order; multi-document files allowed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kollect_core::api::strict::unknown_fields;
use kollect_core::api::v1alpha1::{
    KollectDatabaseSink, KollectEventSink, KollectInventory, KollectProfile, KollectSnapshotSink,
    KollectTarget, SecretReference, SinkFamily,
};
use kollect_sinks::SecretData;
use serde_json::Value;

/// Why the configuration could not be loaded. Each names the file and document or object.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The directory or a file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A document is not valid YAML, or not a valid object of its kind.
    #[error("{path} (document {document}): {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based document number.
        document: usize,
        /// What is wrong.
        message: String,
    },
    /// A reference does not resolve inside the directory.
    #[error("{0}")]
    Reference(String),
    /// A `${env:NAME}` value names an unset or empty variable.
    #[error(
        "secret {secret} key {key}: environment variable {variable} is not set (the value is ${{env:{variable}}})"
    )]
    MissingEnv {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The key.
        key: String,
        /// The variable.
        variable: String,
    },
}

/// Everything the directory declares.
#[derive(Debug, Default)]
pub struct Config {
    /// The directory.
    pub dir: PathBuf,
    /// Profiles.
    pub profiles: Vec<KollectProfile>,
    /// Targets.
    pub targets: Vec<KollectTarget>,
    /// Inventories.
    pub inventories: Vec<KollectInventory>,
    /// Snapshot sinks.
    pub snapshot_sinks: Vec<KollectSnapshotSink>,
    /// Database sinks.
    pub database_sinks: Vec<KollectDatabaseSink>,
    /// Event sinks.
    pub event_sinks: Vec<KollectEventSink>,
    /// Secrets.
    pub secrets: Vec<Secret>,
    /// Documents that were skipped, with why (unknown kinds).
    pub warnings: Vec<String>,
}

fn namespace_of(metadata: &kube::api::ObjectMeta) -> &str {
    metadata.namespace.as_deref().unwrap_or("default")
}

impl Config {
    /// Loads `dir`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let read = |path: &Path, e: std::io::Error| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| e == "yaml" || e == "yml")
            })
            .collect();
        files.sort();
        let mut config = Config {
            dir: dir.to_owned(),
            ..Config::default()
        };
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| read(&file, e))?;
            for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
                let invalid = |message: String| ConfigError::Invalid {
                    path: file.clone(),
                    document: i + 1,
                    message,
                };
                let value: Value =
                    serde::Deserialize::deserialize(document).map_err(|e| invalid(e.to_string()))?;
                if value.is_null() {
                    continue;
                }
                config.add(value).map_err(invalid)?;
            }
        }
        Ok(config)
    }

    fn add(&mut self, value: Value) -> Result<(), String> {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("the document has no kind")?
            .to_owned();
        // Strict, as the API server's `fieldValidation=Strict`: a field the kind does not have
        // is an error naming its path, never silently dropped.
        fn parse<T: serde::de::DeserializeOwned + serde::Serialize>(
            kind: &str,
            value: Value,
        ) -> Result<T, String> {
            let decoded: T = serde_json::from_value(value.clone()).map_err(|e| format!("{kind}: {e}"))?;
            let unknown = unknown_fields(&value, &decoded);
            if unknown.is_empty() {
                Ok(decoded)
            } else {
                let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                Err(format!("{kind}: strict decoding error: {}", fields.join(", ")))
            }
        }
        let kollect = api_version == "kollect.dev/v1alpha1";
        match (kollect, kind.as_str()) {
            (true, "KollectProfile") => self.profiles.push(parse(&kind, value)?),
            (true, "KollectTarget") => self.targets.push(parse(&kind, value)?),
            (true, "KollectInventory") => self.inventories.push(parse(&kind, value)?),
            (true, "KollectSnapshotSink") => self.snapshot_sinks.push(parse(&kind, value)?),
            (true, "KollectDatabaseSink") => self.database_sinks.push(parse(&kind, value)?),
            (true, "KollectEventSink") => self.event_sinks.push(parse(&kind, value)?),
            (false, "Secret") if api_version == "v1" => self.secrets.push(parse(&kind, value)?),
            _ => {
                let name = value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("(unnamed)");
                self.warnings.push(format!(
                    "{}: skipping {api_version} {kind} {name}: not a kind the CLI reads",
                    self.dir.display()
                ));
            }
        }
        Ok(())
    }

    /// The profile a target refers to (same namespace).
    pub fn profile_of(&self, target: &KollectTarget) -> Option<&KollectProfile> {
        let namespace = namespace_of(&target.metadata);
        self.profiles.iter().find(|p| {
            p.metadata.name.as_deref() == Some(target.spec.profile_ref.as_str())
                && namespace_of(&p.metadata) == namespace
        })
    }

    /// Whether the directory declares the sink `name` of `family` in `namespace`.
    pub fn declares_sink(&self, family: SinkFamily, namespace: &str, name: &str) -> bool {
        let matches = |metadata: &kube::api::ObjectMeta| {
            metadata.name.as_deref() == Some(name) && namespace_of(metadata) == namespace
        };
        match family {
            SinkFamily::Snapshot => self.snapshot_sinks.iter().any(|s| matches(&s.metadata)),
            SinkFamily::Database => self.database_sinks.iter().any(|s| matches(&s.metadata)),
            SinkFamily::Event => self.event_sinks.iter().any(|s| matches(&s.metadata)),
        }
    }

    /// Checks that every target's profile is in the directory.
    pub fn check_references(&self) -> Result<(), ConfigError> {
        for target in &self.targets {
            if self.profile_of(target).is_none() {
                return Err(ConfigError::Reference(format!(
                    "KollectTarget {}/{}: profileRef \"{}\" is not a KollectProfile in {} (same namespace)",
                    namespace_of(&target.metadata),
                    target.metadata.name.as_deref().unwrap_or_default(),
                    target.spec.profile_ref,
                    self.dir.display()
                )));
            }
        }
        Ok(())
    }

    /// Resolves a Secret reference from the directory: `stringData` over `data`, and values
    /// that are exactly `${env:NAME}` read from the environment.
    pub fn secret(
        &self,
        reference: &SecretReference,
        default_namespace: &str,
    ) -> Result<SecretData, ConfigError> {
        let namespace = reference.namespace.as_deref().unwrap_or(default_namespace);
        let secret = self
            .secrets
            .iter()
            .find(|s| {
                s.metadata.name.as_deref() == Some(reference.name.as_str())
                    && (reference.namespace.is_none() || namespace_of(&s.metadata) == namespace)
            })
            .ok_or_else(|| {
                ConfigError::Reference(format!(
                    "secret \"{}\" not found in {} (namespace {namespace})",
                    reference.name,
                    self.dir.display()
                ))
            })?;
        let name = format!(
            "{}/{}",
            namespace_of(&secret.metadata),
            secret.metadata.name.as_deref().unwrap_or_default()
        );
        let mut values: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        for (key, value) in secret.string_data.iter().flatten() {
            values.insert(key.clone(), value.clone().into_bytes());
        }
        for (key, value) in values.iter_mut() {
            if let Some(variable) = env_placeholder(value) {
                let resolved = std::env::var(&variable)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| ConfigError::MissingEnv {
                        secret: name.clone(),
                        key: key.clone(),
                        variable: variable.clone(),
                    })?;
                *value = resolved.into_bytes();
            }
        }
        Ok(SecretData::new(values))
    }
}

/// `NAME` when `value` is exactly `${env:NAME}` with a valid variable name.
fn env_placeholder(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let name = text.strip_prefix("${env:")?.strip_suffix('}')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_placeholders_are_exact() {
        assert_eq!(env_placeholder(b"${env:GIT_TOKEN}").as_deref(), Some("GIT_TOKEN"));
        assert_eq!(env_placeholder(b"prefix ${env:X}"), None);
        assert_eq!(env_placeholder(b"${env:1X}"), None);
        assert_eq!(env_placeholder(b"${env:}"), None);
    }
}
