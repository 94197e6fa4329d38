//! The MongoDB sink's configuration: URI, database and collection, cluster identity,
//! provisioning, deleted-row handling and TLS, checked without connecting.

use kollect_core::api::v1alpha1::{DeletedRows, KollectDatabaseSinkSpec, ProvisioningMode};
use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::SinkError;

use crate::context::BuildContext;
use crate::family::Unused;

/// The Secret keys the URI is read from, in order.
const URI_KEYS: [&str; 4] = ["uri", "url", "connectionString", "MONGODB_URI"];

/// Configuration of a [`MongodbSink`](super::MongodbSink).
#[derive(Clone)]
#[non_exhaustive]
pub struct MongodbConfig {
    /// The connection string (`mongodb://` or `mongodb+srv://`).
    pub uri: String,
    /// Database.
    pub database: String,
    /// Collection.
    pub collection: String,
    /// Cluster identity written into every document (`spec.cluster`, default empty).
    pub cluster: String,
    /// Create the collection and index (`ensure`) or only use them (`existing`).
    pub provisioning: ProvisioningMode,
    /// Delete the documents of objects that disappear, or keep them with `deleted_at` set.
    pub deleted_rows: DeletedRows,
    /// Extra CA certificates (PEM) for TLS; setting them turns TLS on.
    pub ca_pem: Option<String>,
    /// Skip certificate verification (`spec.tls.insecureSkipVerify`); turns TLS on.
    pub insecure_skip_verify: bool,
    /// The SSRF guard.
    pub resolver: GuardedResolver,
}

impl std::fmt::Debug for MongodbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongodbConfig")
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("cluster", &self.cluster)
            .field("provisioning", &self.provisioning)
            .field("deleted_rows", &self.deleted_rows)
            .finish_non_exhaustive()
    }
}

impl MongodbConfig {
    /// The collection `collection` of database `database` on the server `uri` names, reached
    /// through `resolver`; `ensure` provisioning, no cluster identity, rows deleted.
    pub fn new(
        uri: impl Into<String>,
        database: impl Into<String>,
        collection: impl Into<String>,
        resolver: GuardedResolver,
    ) -> Self {
        Self {
            uri: uri.into(),
            database: database.into(),
            collection: collection.into(),
            cluster: String::new(),
            provisioning: ProvisioningMode::Ensure,
            deleted_rows: DeletedRows::Delete,
            ca_pem: None,
            insecure_skip_verify: false,
            resolver,
        }
    }

    /// Reads a `KollectDatabaseSink` spec (type `mongodb`) with its resolved database Secret,
    /// checking names and the URI's scheme without connecting.
    pub fn from_spec(spec: &KollectDatabaseSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        let mongodb = spec
            .mongodb
            .as_ref()
            .ok_or_else(|| SinkError::terminal("spec.mongodb is required for type mongodb"))?;
        let common = &spec.common;
        crate::family::refuse_unused(
            "mongodb",
            &[
                Unused::endpoint(common, "the servers are in the URI of spec.mongodb.databaseRef"),
                Unused::secret_ref(
                    common,
                    "credentials belong in the URI of spec.mongodb.databaseRef",
                ),
                Unused::path_template(
                    common,
                    "documents are keyed by cluster, inventory, target and object",
                ),
                Unused::naming(common, "the collection is spec.mongodb.collection"),
                Unused::options(common, "driver options belong in the URI's query string"),
            ],
        )?;
        let uri = context.database_text("spec.mongodb.databaseRef", &mongodb.database_ref.name, &URI_KEYS)?;
        let config = MongodbConfig {
            uri,
            database: mongodb.database.clone(),
            collection: mongodb.collection.clone(),
            cluster: common.cluster.clone().unwrap_or_default(),
            provisioning: common.provisioning_mode(),
            deleted_rows: spec.deleted_rows(),
            ca_pem: context.ca_pem,
            insecure_skip_verify: common.tls_insecure(),
            resolver: GuardedResolver::new(context.net_policy),
        };
        config.check()?;
        Ok(config)
    }

    /// The same configuration with another connection string.
    pub fn with_uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// The same configuration writing `cluster` into every document.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// The same configuration with `provisioning`.
    pub fn with_provisioning(mut self, provisioning: ProvisioningMode) -> Self {
        self.provisioning = provisioning;
        self
    }

    /// The same configuration handling documents of objects that disappear as `deleted_rows`
    /// says.
    pub fn with_deleted_rows(mut self, deleted_rows: DeletedRows) -> Self {
        self.deleted_rows = deleted_rows;
        self
    }

    /// The same configuration trusting the CA certificates of `ca_pem` as well.
    pub fn with_ca_pem(mut self, ca_pem: Option<String>) -> Self {
        self.ca_pem = ca_pem;
        self
    }

    /// Checks the URI's scheme and the database and collection names.
    pub fn check(&self) -> Result<(), SinkError> {
        if !(self.uri.starts_with("mongodb://") || self.uri.starts_with("mongodb+srv://")) {
            // Never echo the URI: it usually holds a password.
            return Err(SinkError::terminal(
                "parse mongodb URI: the connection string must start with mongodb:// or mongodb+srv://",
            ));
        }
        check_database(&self.database)?;
        check_collection(&self.collection)
    }
}

/// MongoDB's database name rules: 1 to 63 bytes, none of `/\. "$` or NUL.
fn check_database(name: &str) -> Result<(), SinkError> {
    if name.is_empty() || name.len() > 63 {
        return Err(SinkError::terminal(format!(
            "spec.mongodb.database {name:?}: must be 1 to 63 bytes long"
        )));
    }
    if let Some(c) = name.chars().find(|c| "/\\. \"$\0".contains(*c)) {
        return Err(SinkError::terminal(format!(
            "spec.mongodb.database {name:?}: the character {c:?} is not allowed in a database name"
        )));
    }
    Ok(())
}

/// MongoDB's collection name rules: not empty, no `$` or NUL, not in the `system.` namespace.
fn check_collection(name: &str) -> Result<(), SinkError> {
    if name.is_empty() {
        return Err(SinkError::terminal("spec.mongodb.collection must not be empty"));
    }
    if let Some(c) = name.chars().find(|c| "$\0".contains(*c)) {
        return Err(SinkError::terminal(format!(
            "spec.mongodb.collection {name:?}: the character {c:?} is not allowed in a collection name"
        )));
    }
    if name.starts_with("system.") {
        return Err(SinkError::terminal(format!(
            "spec.mongodb.collection {name:?}: names starting with system. are reserved by MongoDB"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretData;
    use kollect_core::netguard::NetPolicy;

    fn spec(extra: serde_json::Value) -> KollectDatabaseSinkSpec {
        let mut value = serde_json::json!({
            "type": "mongodb",
            "mongodb": {"databaseRef": {"name": "mongo"}, "database": "inventory", "collection": "items"}
        });
        if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            target.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    fn context(uri: &str) -> BuildContext {
        BuildContext::new("ns/mongo", NetPolicy::new(false))
            .with_database_secret(SecretData::new([("uri".to_owned(), uri.as_bytes().to_vec())]))
    }

    #[test]
    fn the_database_secret_is_resolved() {
        let config = MongodbConfig::from_spec(
            &spec(serde_json::json!({"cluster": "prod", "deletedRows": "SoftDelete"})),
            context("mongodb://user:pw@db.example.com/"),
        )
        .unwrap();
        assert_eq!(config.uri, "mongodb://user:pw@db.example.com/");
        assert_eq!(config.cluster, "prod");
        assert_eq!(config.deleted_rows, DeletedRows::SoftDelete);
        assert!(!format!("{config:?}").contains("pw"));
    }

    #[test]
    fn a_secret_without_a_uri_names_the_keys_it_looked_for() {
        let context = BuildContext::new("ns/mongo", NetPolicy::new(false));
        let error = MongodbConfig::from_spec(&spec(serde_json::json!({})), context).unwrap_err();
        assert_eq!(
            error.message(),
            "the Secret of spec.mongodb.databaseRef (mongo) has none of the keys uri, url, connectionString, MONGODB_URI"
        );
    }

    #[test]
    fn a_uri_with_another_scheme_is_refused_without_echoing_it() {
        let error = MongodbConfig::from_spec(&spec(serde_json::json!({})), context("postgres://u:s3cret@h/"))
            .unwrap_err();
        assert!(error.message().contains("mongodb://"), "{error}");
        assert!(!error.message().contains("s3cret"));
    }

    #[test]
    fn fields_without_meaning_for_a_collection_are_refused_by_name() {
        let error = MongodbConfig::from_spec(
            &spec(serde_json::json!({"options": {"w": "majority"}})),
            context("mongodb://h/"),
        )
        .unwrap_err();
        assert_eq!(
            error.message(),
            "spec.options is not used by mongodb sinks: driver options belong in the URI's query string"
        );
    }

    #[test]
    fn names_follow_mongodb_rules() {
        assert!(check_database("inventory").is_ok());
        assert!(
            check_database("in.ventory")
                .unwrap_err()
                .message()
                .contains("'.'")
        );
        assert!(check_database(&"d".repeat(64)).is_err());
        assert!(check_collection("items.v1").is_ok());
        assert!(check_collection("it$ems").is_err());
        assert!(
            check_collection("system.users")
                .unwrap_err()
                .message()
                .contains("reserved")
        );
    }
}
