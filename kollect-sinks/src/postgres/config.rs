//! The PostgreSQL sink's configuration: DSN, table, cluster identity, provisioning and
//! session options, checked without connecting.

use kollect_core::api::v1alpha1::{
    DeletedRows, KollectDatabaseSinkSpec, ProvisioningMode, SECRET_LIKE_OPTION_WORDS,
};
use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::SinkError;
use tokio_postgres::Config;

use crate::context::BuildContext;
use crate::family::Unused;

/// Configuration of a [`PostgresSink`](super::PostgresSink).
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// The connection string (libpq URL or key/value form).
    pub dsn: String,
    /// Schema (default `public`).
    pub schema: String,
    /// Table.
    pub table: String,
    /// Cluster identity written into every row (`spec.cluster`, default empty).
    pub cluster: String,
    /// Create and migrate the table (`ensure`) or only use it (`existing`).
    pub provisioning: ProvisioningMode,
    /// Session settings.
    pub options: Vec<(String, String)>,
    /// Delete the rows of objects that disappear, or keep them with `deleted_at` set.
    pub deleted_rows: DeletedRows,
    /// Extra CA certificates (PEM) for TLS.
    pub ca_pem: Option<String>,
    /// The SSRF guard.
    pub resolver: GuardedResolver,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("cluster", &self.cluster)
            .field("provisioning", &self.provisioning)
            .field("deleted_rows", &self.deleted_rows)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// The table `table` in schema `public` of the database `dsn` names, reached through
    /// `resolver`; `ensure` provisioning, no cluster identity, no session options.
    pub fn new(dsn: impl Into<String>, table: impl Into<String>, resolver: GuardedResolver) -> Self {
        Self {
            dsn: dsn.into(),
            schema: "public".into(),
            table: table.into(),
            cluster: String::new(),
            provisioning: ProvisioningMode::Ensure,
            options: Vec::new(),
            deleted_rows: DeletedRows::Delete,
            ca_pem: None,
            resolver,
        }
    }

    /// Reads a `KollectDatabaseSink` spec (type `postgres`) with its resolved database Secret,
    /// checking the DSN and options without connecting.
    pub fn from_spec(spec: &KollectDatabaseSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        let postgres = spec
            .postgres
            .as_ref()
            .ok_or_else(|| SinkError::terminal("spec.postgres is required for type postgres"))?;
        if postgres.table.trim().is_empty() {
            return Err(SinkError::terminal("spec.postgres.table is required"));
        }
        let common = &spec.common;
        crate::family::refuse_unused(
            "postgres",
            &[
                Unused::endpoint(common, "the server is in the DSN of spec.postgres.databaseRef"),
                Unused::path_template(common, "rows are keyed by cluster, inventory, target and object"),
                Unused::naming(common, "the table is spec.postgres.table"),
            ],
        )?;
        let dsn = context.database_text(
            "spec.postgres.databaseRef",
            &postgres.database_ref.name,
            &["dsn", "url", "connectionString", "DATABASE_URL"],
        )?;
        let config = PostgresConfig {
            dsn,
            schema: postgres.schema.clone().unwrap_or_else(|| "public".into()),
            table: postgres.table.clone(),
            cluster: spec.common.cluster.clone().unwrap_or_default(),
            provisioning: spec.common.provisioning_mode(),
            options: spec
                .common
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            deleted_rows: spec.deleted_rows(),
            ca_pem: context.ca_pem,
            resolver: GuardedResolver::new(context.net_policy),
        };
        config.check()?;
        Ok(config)
    }

    /// The same configuration with another connection string.
    pub fn with_dsn(mut self, dsn: impl Into<String>) -> Self {
        self.dsn = dsn.into();
        self
    }

    /// The same configuration in schema `schema`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
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

    /// The same configuration applying `options` to each session.
    pub fn with_options(mut self, options: Vec<(String, String)>) -> Self {
        self.options = options;
        self
    }

    /// The same configuration handling rows of objects that disappear as `deleted_rows` says.
    pub fn with_deleted_rows(mut self, deleted_rows: DeletedRows) -> Self {
        self.deleted_rows = deleted_rows;
        self
    }

    /// The same configuration trusting the CA certificates of `ca_pem` as well.
    pub fn with_ca_pem(mut self, ca_pem: Option<String>) -> Self {
        self.ca_pem = ca_pem;
        self
    }

    /// The same configuration reached through `resolver`.
    pub fn with_resolver(mut self, resolver: GuardedResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Checks the DSN and options.
    pub fn check(&self) -> Result<(), SinkError> {
        check_options(&self.options)?;
        self.parsed_dsn().map(|_| ())
    }

    /// The parsed DSN; the error never echoes it (it may hold a password).
    pub(super) fn parsed_dsn(&self) -> Result<Config, SinkError> {
        self.dsn
            .parse::<Config>()
            .map_err(|_| SinkError::terminal("parse postgres DSN: invalid connection string"))
    }
}

/// Checks `spec.options`: identifiers only, nothing secret-like.
fn check_options(options: &[(String, String)]) -> Result<(), SinkError> {
    for (key, _) in options {
        let lower = key.to_ascii_lowercase();
        if let Some(word) = SECRET_LIKE_OPTION_WORDS.iter().find(|w| lower.contains(*w)) {
            return Err(SinkError::terminal(format!(
                "spec.options.{key}: keys containing \"{word}\" are not allowed (secrets belong in the database Secret)"
            )));
        }
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(SinkError::terminal(format!(
                "spec.options.{key}: not a PostgreSQL setting name"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_like_options_are_refused() {
        let error = check_options(&[("db_password".into(), "x".into())]).unwrap_err();
        assert!(error.message().contains("\"password\""), "{error}");
        assert!(!error.message().contains("\"x\""));
        assert!(check_options(&[("statement_timeout".into(), "5s".into())]).is_ok());
        assert!(check_options(&[("a;drop".into(), "x".into())]).is_err());
    }

    #[test]
    fn shared_fields_without_meaning_for_a_table_are_refused_by_name() {
        let spec: KollectDatabaseSinkSpec = serde_json::from_value(serde_json::json!({
            "type": "postgres",
            "postgres": {"databaseRef": {"name": "pg"}, "table": "inventory"},
            "endpoint": "postgres.example.com:5432"
        }))
        .unwrap();
        let context = BuildContext::new("ns/pg", kollect_core::netguard::NetPolicy::new(false));
        let error = PostgresConfig::from_spec(&spec, context).unwrap_err();
        assert_eq!(
            error.message(),
            "spec.endpoint is not used by postgres sinks: the server is in the DSN of spec.postgres.databaseRef"
        );
    }

    #[test]
    fn an_invalid_dsn_does_not_echo_itself() {
        let config = PostgresConfig::new(
            "postgres://user:s3cret@host:notaport/db",
            "t",
            GuardedResolver::new(kollect_core::netguard::NetPolicy::new(false)),
        );
        let error = config.check().unwrap_err();
        assert_eq!(error.message(), "parse postgres DSN: invalid connection string");
    }
}
