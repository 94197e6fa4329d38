//! The `object_store` client of a sink: credentials from the Secret, TLS from `spec.tls`, every
//! connection's addresses checked by the SSRF guard, and no retries of the crate's own.
//!
//! `object_store` builds its HTTP client through a connector; ours builds a `reqwest` client
//! whose DNS resolver is the guard (so every dial, redirects and credential endpoints included,
//! goes to checked addresses), with redirects off (a redirect to an IP literal would skip the
//! resolver), no proxy from the environment, and rustls trusting the web roots plus the sink's
//! CA bundle. IP-literal hosts never reach a resolver, so the endpoint's own host is checked when
//! the client is built.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kollect_core::netguard::{EndpointKind, GuardedResolver, NetPolicy, Resolve};
use kollect_core::sink::SinkError;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::location::{Location, StoreKind};
use crate::secret::SecretData;

/// Secret keys read for S3 (and GCS HMAC) access keys, in order of preference.
pub(crate) const ACCESS_KEY_KEYS: &[&str] = &["accessKeyID", "accessKeyId", "AWS_ACCESS_KEY_ID"];
/// Secret keys read for the S3 (and GCS HMAC) secret key.
pub(crate) const SECRET_KEY_KEYS: &[&str] = &["secretAccessKey", "AWS_SECRET_ACCESS_KEY"];
/// Secret keys read for an S3 session token.
pub(crate) const SESSION_TOKEN_KEYS: &[&str] = &["sessionToken", "AWS_SESSION_TOKEN"];
/// Secret keys read for a GCS service-account JSON key.
pub(crate) const GCS_KEY_KEYS: &[&str] = &["credentials.json", "serviceAccountKey", "service-account.json"];
/// Secret keys read for the Azure storage account name.
pub(crate) const AZURE_ACCOUNT_KEYS: &[&str] = &["accountName", "AZURE_STORAGE_ACCOUNT"];
/// Secret keys read for an Azure account key.
pub(crate) const AZURE_KEY_KEYS: &[&str] = &["accountKey", "AZURE_STORAGE_KEY"];
/// Secret keys read for an Azure SAS token.
pub(crate) const AZURE_SAS_KEYS: &[&str] = &["sasToken", "AZURE_STORAGE_SAS_TOKEN"];

/// The region S3 requests are signed for when `spec.options.region` is not set.
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// The region GCS HMAC requests are signed for (the XML API accepts `auto`).
const GCS_HMAC_REGION: &str = "auto";
/// Google's XML API, which takes HMAC keys the way S3 takes access keys.
const GCS_XML_ENDPOINT: &str = "https://storage.googleapis.com";

/// Everything a client is built from.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Where the sink writes.
    pub location: Location,
    /// The credentials Secret's data (possibly empty: ambient credentials).
    pub secret: SecretData,
    /// Extra CA certificates (PEM), from `spec.tls`.
    pub ca_pem: Option<String>,
    /// `spec.tls.insecureSkipVerify`.
    pub insecure_skip_verify: bool,
    /// The S3 signing region (`spec.options.region`).
    pub region: Option<String>,
    /// The SSRF policy.
    pub policy: NetPolicy,
}

/// Builds the store client. Fails (terminally) on incomplete credentials or a denied endpoint;
/// nothing is contacted.
pub fn build(settings: &ClientSettings) -> Result<Arc<dyn ObjectStore>, SinkError> {
    build_with_resolver(settings, GuardedResolver::new(settings.policy))
}

/// [`build`], resolving names with `resolver` (tests point a name at a chosen address).
pub fn build_with_resolver<R>(
    settings: &ClientSettings,
    resolver: GuardedResolver<R>,
) -> Result<Arc<dyn ObjectStore>, SinkError>
where
    R: Resolve + Clone + std::fmt::Debug + 'static,
{
    let location = &settings.location;
    if let Some(endpoint) = &location.endpoint {
        settings
            .policy
            .check_endpoint(endpoint.as_str(), EndpointKind::ObjectStore)
            .map_err(|e| SinkError::terminal(format!("spec.endpoint: {e}")))?;
    }
    let connector = GuardedConnector::new(settings, resolver)?;
    let options = ClientOptions::new()
        .with_allow_http(location.endpoint.as_ref().is_some_and(|u| u.scheme() == "http"))
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(120));
    // Our retry and circuit-breaker stack is the only one: the crate must not retry as well.
    let no_retries = RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    };
    let configured =
        |e: object_store::Error| SinkError::terminal(format!("{} client: {}", location.kind.type_name(), e));
    let secret = &settings.secret;
    match location.kind {
        StoreKind::S3 => s3_builder(
            settings,
            settings.region.as_deref().unwrap_or(DEFAULT_S3_REGION),
            location.endpoint.as_ref().map(url::Url::as_str),
        )?
        .with_client_options(options)
        .with_retry(no_retries)
        .with_http_connector(connector)
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(configured),
        StoreKind::Gcs if secret.first_text(ACCESS_KEY_KEYS).is_some() => {
            // HMAC keys: the XML API through the S3 client, as the Go operator does.
            let endpoint = location
                .endpoint
                .as_ref()
                .map_or(GCS_XML_ENDPOINT, url::Url::as_str);
            s3_builder(
                settings,
                settings.region.as_deref().unwrap_or(GCS_HMAC_REGION),
                Some(endpoint),
            )?
            .with_client_options(options)
            .with_retry(no_retries)
            .with_http_connector(connector)
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            .map_err(configured)
        }
        StoreKind::Gcs => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&location.bucket);
            if let Some(key) = secret.first_text(GCS_KEY_KEYS) {
                builder = builder.with_service_account_key(key);
            }
            if let Some(endpoint) = &location.endpoint {
                builder = builder.with_base_url(endpoint.as_str().trim_end_matches('/'));
            }
            builder
                .with_client_options(options)
                .with_retry(no_retries)
                .with_http_connector(connector)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(configured)
        }
        StoreKind::AzureBlob => {
            let account = location
                .account
                .clone()
                .or_else(|| secret.first_text(AZURE_ACCOUNT_KEYS))
                .ok_or_else(|| {
                    SinkError::terminal(
                        "azureblob: no storage account: use an https://<account>.blob.core.windows.net endpoint or set accountName in the Secret",
                    )
                })?;
            let mut builder = MicrosoftAzureBuilder::new()
                .with_account(account)
                .with_container_name(&location.bucket);
            if let Some(key) = secret.first_text(AZURE_KEY_KEYS) {
                builder = builder.with_access_key(key);
            } else if let Some(sas) = secret.first_text(AZURE_SAS_KEYS) {
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                builder = builder.with_sas_authorization(pairs);
            }
            if let Some(endpoint) = &location.endpoint {
                builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/').to_owned());
            }
            builder
                .with_client_options(options)
                .with_retry(no_retries)
                .with_http_connector(connector)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(configured)
        }
    }
}

/// An S3 client builder for `settings`' bucket, signing for `region`, with static keys from the
/// Secret when it has them (both or neither) and the ambient AWS credentials otherwise.
fn s3_builder(
    settings: &ClientSettings,
    region: &str,
    endpoint: Option<&str>,
) -> Result<AmazonS3Builder, SinkError> {
    let secret = &settings.secret;
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.location.bucket)
        .with_region(region);
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_virtual_hosted_style_request(false);
    }
    match (
        secret.first_text(ACCESS_KEY_KEYS),
        secret.first_text(SECRET_KEY_KEYS),
    ) {
        (Some(id), Some(key)) => {
            builder = builder.with_access_key_id(id).with_secret_access_key(key);
            if let Some(token) = secret.first_text(SESSION_TOKEN_KEYS) {
                builder = builder.with_token(token);
            }
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(SinkError::terminal(format!(
                "{}: the Secret has an access key id but no secret key ({})",
                settings.location.kind.type_name(),
                SECRET_KEY_KEYS.join(" or ")
            )));
        }
        (None, Some(_)) => {
            return Err(SinkError::terminal(format!(
                "{}: the Secret has a secret key but no access key id ({})",
                settings.location.kind.type_name(),
                ACCESS_KEY_KEYS.join(" or ")
            )));
        }
    }
    Ok(builder)
}

/// Builds `object_store`'s HTTP client: reqwest with the SSRF guard as its resolver.
#[derive(Debug)]
struct GuardedConnector<R> {
    resolver: GuardedResolver<R>,
    tls: rustls::ClientConfig,
}

impl<R> GuardedConnector<R> {
    fn new(settings: &ClientSettings, resolver: GuardedResolver<R>) -> Result<Self, SinkError> {
        let mut tls = crate::tls::client_config(settings.ca_pem.as_deref())?;
        if settings.insecure_skip_verify {
            tls = crate::tls::insecure_client_config()?;
        }
        Ok(Self { resolver, tls })
    }
}

impl<R: Resolve + Clone + std::fmt::Debug + 'static> HttpConnector for GuardedConnector<R> {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedDns(self.resolver.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tls_backend_preconfigured(self.tls.clone())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "HTTP client",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// The guard as reqwest's resolver: a denied or unresolvable name fails the connection.
struct GuardedDns<R>(GuardedResolver<R>);

impl<R: Resolve + Clone + 'static> reqwest::dns::Resolve for GuardedDns<R> {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            // reqwest sets the port on the returned addresses itself.
            let addresses: Vec<SocketAddr> = resolver.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
