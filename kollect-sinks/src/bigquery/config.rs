//! The BigQuery sink's configuration: table, location, API endpoint, credentials, cluster
//! identity and provisioning, checked without contacting anything.

use kollect_core::api::v1alpha1::{KollectDatabaseSinkSpec, ProvisioningMode};
use kollect_core::netguard::{EndpointKind, GuardedResolver, NetPolicy};
use kollect_core::sink::SinkError;
use url::Url;

use super::auth::{Credentials, ServiceAccountKey};
use super::statement::Dialect;
use crate::context::BuildContext;
use crate::family::Unused;

/// The API root of Google's BigQuery service.
pub const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";
/// The Secret key holding the service-account key.
pub const CREDENTIALS_KEY: &str = "credentials.json";
/// Read when building from a spec: the metadata server's `host[:port]` when it is not the
/// standard address (the variable Google's client libraries honour).
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";
/// Read when building from a spec without `spec.endpoint`: `host:port` of an emulator, reached
/// over plain HTTP without credentials (the variable Google's client libraries honour).
pub const EMULATOR_HOST_ENV: &str = "BIGQUERY_EMULATOR_HOST";

/// Configuration of a [`BigquerySink`](super::BigquerySink).
#[derive(Clone)]
#[non_exhaustive]
pub struct BigqueryConfig {
    /// Project id (`my-project`, or domain-scoped `example.com:my-project`).
    pub project: String,
    /// Dataset (never created by the sink).
    pub dataset: String,
    /// Table.
    pub table: String,
    /// Job location (`EU`, `us-central1`); absent lets BigQuery infer it from the dataset.
    pub location: Option<String>,
    /// The API root (`https://bigquery.googleapis.com`, or an emulator's `http://host:port`).
    pub endpoint: Url,
    /// How requests are authorised.
    pub credentials: Credentials,
    /// Where the metadata server answers ([`super::METADATA_HOST`], or `GCE_METADATA_HOST`).
    pub metadata_host: String,
    /// Which SQL to speak: `MERGE` for BigQuery, or what the emulator implements.
    pub dialect: Dialect,
    /// Cluster identity written into every row (`spec.cluster`, default empty).
    pub cluster: String,
    /// Create the table (`ensure`) or only use it (`existing`).
    pub provisioning: ProvisioningMode,
    /// Extra CA certificates (PEM) for a custom HTTPS endpoint.
    pub ca_pem: Option<String>,
    /// Skip certificate verification (`spec.tls.insecureSkipVerify`).
    pub insecure_skip_verify: bool,
    /// The SSRF policy the endpoint is checked against.
    pub policy: NetPolicy,
    /// The SSRF guard every connection resolves through.
    pub resolver: GuardedResolver,
}

impl std::fmt::Debug for BigqueryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigqueryConfig")
            .field("table", &self.qualified())
            .field("location", &self.location)
            .field("endpoint", &self.endpoint.as_str())
            .field("credentials", &self.credentials)
            .field("dialect", &self.dialect)
            .field("cluster", &self.cluster)
            .field("provisioning", &self.provisioning)
            .finish_non_exhaustive()
    }
}

impl BigqueryConfig {
    /// The table `project.dataset.table` on Google's endpoint, with `credentials`, checked by
    /// `policy`; `ensure` provisioning, no cluster identity.
    pub fn new(
        project: impl Into<String>,
        dataset: impl Into<String>,
        table: impl Into<String>,
        credentials: Credentials,
        policy: NetPolicy,
    ) -> Self {
        Self {
            project: project.into(),
            dataset: dataset.into(),
            table: table.into(),
            location: None,
            // A constant that parses.
            endpoint: Url::parse(DEFAULT_ENDPOINT).unwrap_or_else(|_| unreachable!()),
            credentials,
            metadata_host: super::METADATA_HOST.to_owned(),
            dialect: Dialect::Merge,
            cluster: String::new(),
            provisioning: ProvisioningMode::Ensure,
            ca_pem: None,
            insecure_skip_verify: false,
            policy,
            resolver: GuardedResolver::new(policy),
        }
    }

    /// Reads a `KollectDatabaseSink` spec (type `bigquery`) with its resolved credentials
    /// Secret, checking names, the endpoint and the key without contacting anything.
    pub fn from_spec(spec: &KollectDatabaseSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        Self::from_spec_with_env(spec, context, std::env::var(EMULATOR_HOST_ENV).ok())
    }

    /// [`BigqueryConfig::from_spec`] with the value of `BIGQUERY_EMULATOR_HOST` given.
    pub(crate) fn from_spec_with_env(
        spec: &KollectDatabaseSinkSpec,
        context: BuildContext,
        emulator_host: Option<String>,
    ) -> Result<Self, SinkError> {
        let bigquery = spec
            .bigquery
            .as_ref()
            .ok_or_else(|| SinkError::terminal("spec.bigquery is required for type bigquery"))?;
        let common = &spec.common;
        crate::family::refuse_unused(
            "bigquery",
            &[
                Unused::path_template(common, "rows are keyed by cluster, inventory, target and object"),
                Unused::naming(common, "the table is spec.bigquery.table"),
                Unused::options(common, "the job location is spec.bigquery.location"),
            ],
        )?;
        let endpoint_text = match (&common.endpoint, emulator_host.filter(|h| !h.trim().is_empty())) {
            (Some(endpoint), _) => endpoint.trim().to_owned(),
            (None, Some(host)) => format!("http://{}", host.trim()),
            (None, None) => DEFAULT_ENDPOINT.to_owned(),
        };
        let endpoint = parse_endpoint(&endpoint_text)?;
        let has_secret = bigquery.secret_ref.is_some() || common.secret_ref.is_some();
        if has_secret && endpoint.scheme() == "http" {
            return Err(plaintext_credentials(&endpoint));
        }
        let credentials = if has_secret {
            let json = context.secret.text(CREDENTIALS_KEY).ok_or_else(|| {
                SinkError::terminal(format!(
                    "the credentials Secret of sink {} has no key {CREDENTIALS_KEY} (a service-account key file)",
                    context.name
                ))
            })?;
            Credentials::ServiceAccount(ServiceAccountKey::from_json(&json)?)
        } else if endpoint.scheme() == "http" {
            // Plain HTTP is for emulators; credentials are never sent over it.
            Credentials::Anonymous
        } else {
            Credentials::MetadataServer
        };
        // Plain HTTP means an emulator (credentials never go over it).
        let dialect = if endpoint.scheme() == "http" {
            Dialect::Emulator
        } else {
            Dialect::Merge
        };
        let config = BigqueryConfig {
            project: bigquery.project.trim().to_owned(),
            dataset: bigquery.dataset.trim().to_owned(),
            table: bigquery.table.trim().to_owned(),
            location: bigquery
                .location
                .as_ref()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty()),
            endpoint,
            credentials,
            metadata_host: std::env::var(METADATA_HOST_ENV)
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| super::METADATA_HOST.to_owned()),
            dialect,
            cluster: common.cluster.clone().unwrap_or_default(),
            provisioning: common.provisioning_mode(),
            ca_pem: context.ca_pem,
            insecure_skip_verify: common.tls_insecure(),
            policy: context.net_policy,
            resolver: GuardedResolver::new(context.net_policy),
        };
        config.check()?;
        Ok(config)
    }

    /// The same configuration talking to `endpoint` (an emulator, or a private endpoint).
    pub fn with_endpoint(mut self, endpoint: Url) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// The same configuration speaking `dialect` ([`Dialect::Emulator`] for the BigQuery
    /// emulator).
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The same configuration asking the metadata server at `host` (`host[:port]`) for tokens.
    pub fn with_metadata_host(mut self, host: impl Into<String>) -> Self {
        self.metadata_host = host.into();
        self
    }

    /// The same configuration running jobs in `location`.
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// The same configuration writing `cluster` into every row.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// The same configuration with `provisioning`.
    pub fn with_provisioning(mut self, provisioning: ProvisioningMode) -> Self {
        self.provisioning = provisioning;
        self
    }

    /// `project.dataset.table`, for messages.
    pub fn qualified(&self) -> String {
        format!("{}.{}.{}", self.project, self.dataset, self.table)
    }

    /// `dataset.table`, for messages that name the table within its project.
    pub(crate) fn dataset_table(&self) -> String {
        format!("{}.{}", self.dataset, self.table)
    }

    /// Checks the names, the location, the endpoint against the SSRF policy, and that
    /// credentials never travel over plain HTTP.
    pub fn check(&self) -> Result<(), SinkError> {
        check_project(&self.project)?;
        check_dataset(&self.dataset)?;
        check_table(&self.table)?;
        if let Some(location) = &self.location
            && (location.is_empty() || !location.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(SinkError::terminal(format!(
                "spec.bigquery.location {location:?}: a location is letters, digits and dashes (EU, us-central1)"
            )));
        }
        self.policy
            .check_endpoint(self.endpoint.as_str(), EndpointKind::Url)
            .map_err(|e| SinkError::terminal(format!("spec.endpoint: {e}")))?;
        if self.endpoint.scheme() == "http" && !matches!(self.credentials, Credentials::Anonymous) {
            return Err(plaintext_credentials(&self.endpoint));
        }
        Ok(())
    }
}

// Worded without "Secret": admission, which builds sinks without their Secrets, reports it.
fn plaintext_credentials(endpoint: &Url) -> SinkError {
    SinkError::terminal(format!(
        "spec.endpoint {endpoint}: credentials are never sent over plain http; use https (an emulator over http takes no credentials)"
    ))
}

fn parse_endpoint(text: &str) -> Result<Url, SinkError> {
    let url = Url::parse(text)
        .map_err(|e| SinkError::terminal(format!("spec.endpoint {text:?}: not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(SinkError::terminal(format!(
            "spec.endpoint {text:?}: the BigQuery API root must be an http(s) URL with a host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(SinkError::terminal(format!(
            "spec.endpoint {text:?}: the API root takes no user, query or fragment"
        )));
    }
    Ok(url)
}

/// Project ids: lowercase letters, digits and dashes, optionally behind a `domain:` prefix.
fn check_project(project: &str) -> Result<(), SinkError> {
    let id = project.rsplit(':').next().unwrap_or(project);
    let domain_ok = project.strip_suffix(id).is_none_or(|d| {
        d.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:".contains(c))
    });
    if id.is_empty()
        || id.len() > 30
        || !domain_ok
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(SinkError::terminal(format!(
            "spec.bigquery.project {project:?}: a project id is up to 30 lowercase letters, digits and dashes"
        )));
    }
    Ok(())
}

/// Dataset ids: letters, digits and underscores, up to 1,024.
fn check_dataset(dataset: &str) -> Result<(), SinkError> {
    if dataset.is_empty()
        || dataset.len() > 1024
        || !dataset.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(SinkError::terminal(format!(
            "spec.bigquery.dataset {dataset:?}: a dataset id is up to 1024 letters, digits and underscores"
        )));
    }
    Ok(())
}

/// Table names: up to 1,024 bytes of letters, marks, digits, `_`, `-` and spaces (what
/// BigQuery allows, without the characters that would need escaping in a quoted name).
fn check_table(table: &str) -> Result<(), SinkError> {
    if table.is_empty() || table.len() > 1024 {
        return Err(SinkError::terminal(format!(
            "spec.bigquery.table {table:?}: must be 1 to 1024 bytes long"
        )));
    }
    if let Some(c) = table
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | ' ')))
    {
        return Err(SinkError::terminal(format!(
            "spec.bigquery.table {table:?}: the character {c:?} is not allowed in a table name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretData;
    use kollect_core::sink::ErrorClass;

    fn spec(extra: serde_json::Value) -> KollectDatabaseSinkSpec {
        let mut value = serde_json::json!({
            "type": "bigquery",
            "bigquery": {"project": "my-project", "dataset": "inventory", "table": "rows"}
        });
        if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            for (key, extra) in extra {
                match (target.get_mut(key), extra) {
                    (Some(serde_json::Value::Object(inner)), serde_json::Value::Object(more)) => {
                        inner.extend(more.clone());
                    }
                    _ => {
                        target.insert(key.clone(), extra.clone());
                    }
                }
            }
        }
        serde_json::from_value(value).expect("spec")
    }

    fn context() -> BuildContext {
        BuildContext::new("ns/bq", NetPolicy::default())
    }

    fn build(spec: &KollectDatabaseSinkSpec, emulator: Option<&str>) -> Result<BigqueryConfig, SinkError> {
        BigqueryConfig::from_spec_with_env(spec, context(), emulator.map(str::to_owned))
    }

    #[test]
    fn defaults_to_google_with_the_metadata_server() {
        let config = build(&spec(serde_json::json!({})), None).expect("config");
        assert_eq!(config.endpoint.as_str(), "https://bigquery.googleapis.com/");
        assert!(matches!(config.credentials, Credentials::MetadataServer));
        assert_eq!(config.dialect, Dialect::Merge);
        assert_eq!(config.qualified(), "my-project.inventory.rows");
        assert_eq!(config.provisioning, ProvisioningMode::Ensure);
    }

    #[test]
    fn the_emulator_variable_means_plain_http_without_credentials() {
        let config = build(&spec(serde_json::json!({})), Some("bq.example.com:9050")).expect("config");
        assert_eq!(config.endpoint.as_str(), "http://bq.example.com:9050/");
        assert!(matches!(config.credentials, Credentials::Anonymous));
        assert_eq!(config.dialect, Dialect::Emulator);
        // spec.endpoint wins over the variable.
        let spec = spec(serde_json::json!({"endpoint": "https://bigquery.example.com"}));
        let config = build(&spec, Some("bq.example.com:9050")).expect("config");
        assert_eq!(config.endpoint.host_str(), Some("bigquery.example.com"));
    }

    #[test]
    fn a_secret_without_the_key_file_is_refused_by_key_name() {
        let spec = spec(serde_json::json!({"bigquery": {"secretRef": {"name": "gcp"}}}));
        let context = context().with_secret(SecretData::new([("key.json".to_owned(), b"{}".to_vec())]));
        let error = BigqueryConfig::from_spec_with_env(&spec, context, None).expect_err("no key");
        assert!(
            error.to_string().contains("has no key credentials.json"),
            "{error}"
        );
    }

    #[test]
    fn credentials_never_go_over_plain_http() {
        let spec = spec(serde_json::json!({
            "endpoint": "http://bq.example.com:9050",
            "bigquery": {"secretRef": {"name": "gcp"}}
        }));
        let key = super::super::auth::tests::key_json();
        let context =
            context().with_secret(SecretData::new([(CREDENTIALS_KEY.to_owned(), key.into_bytes())]));
        let error = BigqueryConfig::from_spec_with_env(&spec, context, None).expect_err("plaintext");
        assert!(
            error.to_string().contains("never sent over plain http"),
            "{error}"
        );
    }

    #[test]
    fn names_are_checked_with_the_field_in_the_message() {
        for (extra, field) in [
            (
                serde_json::json!({"bigquery": {"project": "My_Project"}}),
                "spec.bigquery.project",
            ),
            (
                serde_json::json!({"bigquery": {"dataset": "in-ventory"}}),
                "spec.bigquery.dataset",
            ),
            (
                serde_json::json!({"bigquery": {"table": "rows`; DROP"}}),
                "spec.bigquery.table",
            ),
            (
                serde_json::json!({"bigquery": {"location": "eu west"}}),
                "spec.bigquery.location",
            ),
            (
                serde_json::json!({"endpoint": "ftp://bq.example.com"}),
                "spec.endpoint",
            ),
            (serde_json::json!({"options": {"a": "b"}}), "spec.options"),
        ] {
            let error = build(&spec(extra.clone()), None).expect_err("refused");
            assert!(error.to_string().contains(field), "{extra}: {error}");
            assert_eq!(error.class(), ErrorClass::Terminal);
        }
        let domain_scoped = spec(serde_json::json!({"bigquery": {"project": "example.com:my-project"}}));
        assert!(build(&domain_scoped, None).is_ok());
    }

    #[test]
    fn a_private_endpoint_is_refused_by_the_ssrf_policy() {
        let spec = spec(serde_json::json!({"endpoint": "https://10.0.0.8"}));
        let error = build(&spec, None).expect_err("private");
        assert!(error.to_string().starts_with("spec.endpoint:"), "{error}");
    }
}
