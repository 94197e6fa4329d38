//! What a backend is built with: the sink's name, its resolved Secret material and the SSRF
//! policy. Backends never read Kubernetes Secrets; the caller resolves the references the
//! backend's descriptor names ([`crate::backend::SecretRefs`]) into this context.

use kollect_core::netguard::NetPolicy;
use kollect_core::sink::SinkError;

use crate::secret::SecretData;

/// Resolved material a backend may need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildContext {
    /// `<namespace>/<name>` of the sink, for messages.
    pub name: String,
    /// The credentials Secret ([`crate::backend::SecretRefs::credentials`]), resolved.
    pub secret: SecretData,
    /// The database Secret (`postgres.databaseRef`, `mongodb.databaseRef`, ...), resolved.
    pub database_secret: SecretData,
    /// CA bundle PEM (`spec.tls.caBundle` or the CA Secret's value).
    pub ca_pem: Option<String>,
    /// The SSRF policy every connection is checked against.
    pub net_policy: NetPolicy,
}

impl BuildContext {
    /// A context with no secrets, under `policy`.
    pub fn new(name: impl Into<String>, policy: NetPolicy) -> Self {
        Self {
            name: name.into(),
            secret: SecretData::default(),
            database_secret: SecretData::default(),
            ca_pem: None,
            net_policy: policy,
        }
    }

    /// The same context with the credentials Secret's data.
    pub fn with_secret(mut self, secret: SecretData) -> Self {
        self.secret = secret;
        self
    }

    /// The same context with the database Secret's data.
    pub fn with_database_secret(mut self, secret: SecretData) -> Self {
        self.database_secret = secret;
        self
    }

    /// The same context with a CA bundle (PEM).
    pub fn with_ca_pem(mut self, ca_pem: Option<String>) -> Self {
        self.ca_pem = ca_pem;
        self
    }

    /// The first non-blank value of `keys` in the database Secret, which `field` (such as
    /// `spec.postgres.databaseRef`) names as `secret`; an error naming the keys otherwise.
    #[cfg_attr(not(any(feature = "postgres", feature = "mongodb")), allow(dead_code))]
    pub(crate) fn database_text(
        &self,
        field: &str,
        secret: &str,
        keys: &[&str],
    ) -> Result<String, SinkError> {
        self.database_secret.first_text(keys).ok_or_else(|| {
            SinkError::terminal(format!(
                "the Secret of {field} ({secret}) has none of the keys {}",
                keys.join(", ")
            ))
        })
    }
}
