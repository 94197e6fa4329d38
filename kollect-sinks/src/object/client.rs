//! The `object_store` client of a sink: credentials from the Secret, TLS from `spec.tls`, every
//! connection's addresses checked by the SSRF guard, and no retries of the crate's own.
//!
//! `object_store` builds its HTTP client through a connector; ours is the guarded client of the
//! crate's `http` module, so credential endpoints are dialed through the guard too. IP-literal
//! hosts never reach a resolver, so the endpoint's own host is checked when the client is built.

use std::sync::Arc;
use std::time::Duration;

use kollect_core::netguard::{EndpointKind, GuardedResolver, NetPolicy, Resolve};
use kollect_core::sink::SinkError;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::deletes::Deletes;
use super::location::{Location, StoreKind};
use super::provision::{AzureAuth, Creator};
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

/// A built client: the store, how to create its bucket, and the guarded HTTP client for that.
#[derive(Debug, Clone)]
pub struct StoreClient {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) creator: Creator,
    pub(crate) deletes: Deletes,
    pub(crate) http: reqwest::Client,
}

/// Builds the store client. Fails (terminally) on incomplete credentials or a denied endpoint;
/// nothing is contacted.
pub fn build(settings: &ClientSettings) -> Result<StoreClient, SinkError> {
    build_with_resolver(settings, GuardedResolver::new(settings.policy))
}

/// [`build`], resolving names with `resolver` (tests point a name at a chosen address).
pub fn build_with_resolver<R>(
    settings: &ClientSettings,
    resolver: GuardedResolver<R>,
) -> Result<StoreClient, SinkError>
where
    R: Resolve + Clone + std::fmt::Debug + 'static,
{
    let location = &settings.location;
    let kind = location.kind.type_name();
    if let Some(endpoint) = &location.endpoint {
        settings
            .policy
            .check_endpoint(endpoint.as_str(), EndpointKind::ObjectStore)
            .map_err(|e| SinkError::terminal(format!("spec.endpoint: {e}")))?;
    }
    let connector = GuardedConnector::new(settings, resolver)?;
    let http = connector
        .reqwest_client()
        .map_err(|e| SinkError::terminal(format!("{kind} HTTP client: {e}")))?;
    let options = ClientOptions::new()
        .with_allow_http(location.endpoint.as_ref().is_some_and(|u| u.scheme() == "http"));
    // Our retry and circuit-breaker stack is the only one: the crate must not retry as well.
    let no_retries = RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    };
    let configured = |e: object_store::Error| SinkError::terminal(format!("{kind} client: {e}"));
    let secret = &settings.secret;
    let s3 = |region: &str, endpoint: Option<&str>, one_by_one: bool| -> Result<StoreClient, SinkError> {
        let store = Arc::new(
            s3_builder(settings, region, endpoint)?
                .with_client_options(options.clone())
                .with_retry(no_retries.clone())
                .with_http_connector(connector.clone())
                .build()
                .map_err(configured)?,
        );
        Ok(StoreClient {
            store: store.clone(),
            deletes: if one_by_one {
                Deletes::Presigned(store.clone())
            } else {
                Deletes::Bulk
            },
            creator: Creator::S3 {
                store,
                region: region.to_owned(),
            },
            http: http.clone(),
        })
    };
    match location.kind {
        StoreKind::S3 => s3(
            settings.region.as_deref().unwrap_or(DEFAULT_S3_REGION),
            location.endpoint.as_ref().map(url::Url::as_str),
            false,
        ),
        // HMAC keys: the XML API through the S3 client, as the Go operator does.
        StoreKind::Gcs if secret.first_text(ACCESS_KEY_KEYS).is_some() => s3(
            settings.region.as_deref().unwrap_or(GCS_HMAC_REGION),
            Some(
                location
                    .endpoint
                    .as_ref()
                    .map_or(GCS_XML_ENDPOINT, url::Url::as_str),
            ),
            true,
        ),
        StoreKind::Gcs => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&location.bucket);
            let key = secret.first_text(GCS_KEY_KEYS);
            if let Some(key) = &key {
                builder = builder.with_service_account_key(key);
            }
            let base_url = location
                .endpoint
                .as_ref()
                .map_or(GCS_XML_ENDPOINT, url::Url::as_str)
                .trim_end_matches('/')
                .to_owned();
            if location.endpoint.is_some() {
                builder = builder.with_base_url(&base_url);
            }
            let store = Arc::new(
                builder
                    .with_client_options(options.clone())
                    .with_retry(no_retries.clone())
                    .with_http_connector(connector.clone())
                    .build()
                    .map_err(configured)?,
            );
            let project = key
                .and_then(|k| serde_json::from_str::<serde_json::Value>(&k).ok())
                .and_then(|k| k.get("project_id").and_then(|p| p.as_str()).map(str::to_owned))
                .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok());
            Ok(StoreClient {
                store: store.clone(),
                deletes: Deletes::Bulk,
                creator: Creator::Gcs {
                    store,
                    base_url,
                    project,
                },
                http: http.clone(),
            })
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
            let endpoint = location.endpoint.as_ref().map_or_else(
                || format!("https://{account}.blob.core.windows.net"),
                |e| e.as_str().trim_end_matches('/').to_owned(),
            );
            let mut builder = MicrosoftAzureBuilder::new()
                .with_account(&account)
                .with_container_name(&location.bucket);
            let mut creator = Creator::Unavailable("the Secret has neither an account key nor a SAS token");
            let mut deletes = Deletes::Bulk;
            if let Some(key) = secret.first_text(AZURE_KEY_KEYS) {
                builder = builder.with_access_key(&key);
                creator = Creator::Azure {
                    account: account.clone(),
                    endpoint: endpoint.clone(),
                    auth: AzureAuth::SharedKey(key),
                };
            } else if let Some(sas) = secret.first_text(AZURE_SAS_KEYS) {
                let query = sas.trim_start_matches('?').to_owned();
                let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                builder = builder.with_sas_authorization(pairs);
                deletes = Deletes::AzureSas {
                    endpoint: endpoint.clone(),
                    sas: query.clone(),
                };
                creator = Creator::Azure {
                    account: account.clone(),
                    endpoint: endpoint.clone(),
                    auth: AzureAuth::Sas(query),
                };
            }
            if location.endpoint.is_some() {
                builder = builder.with_endpoint(endpoint);
            }
            let store = builder
                .with_client_options(options)
                .with_retry(no_retries)
                .with_http_connector(connector)
                .build()
                .map_err(configured)?;
            Ok(StoreClient {
                store: Arc::new(store),
                creator,
                deletes,
                http,
            })
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
#[derive(Debug, Clone)]
struct GuardedConnector<R> {
    resolver: GuardedResolver<R>,
    tls: rustls::ClientConfig,
}

impl<R> GuardedConnector<R> {
    fn new(settings: &ClientSettings, resolver: GuardedResolver<R>) -> Result<Self, SinkError> {
        let tls = if settings.insecure_skip_verify {
            crate::tls::insecure_client_config()?
        } else {
            crate::tls::client_config(settings.ca_pem.as_deref())?
        };
        Ok(Self { resolver, tls })
    }
}

impl<R: Resolve + Clone + 'static> GuardedConnector<R> {
    fn reqwest_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        crate::http::guarded_client(&self.resolver, self.tls.clone(), Duration::from_secs(120))
    }
}

impl<R: Resolve + Clone + std::fmt::Debug + 'static> HttpConnector for GuardedConnector<R> {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = self.reqwest_client().map_err(|e| object_store::Error::Generic {
            store: "HTTP client",
            source: Box::new(e),
        })?;
        Ok(HttpClient::new(client))
    }
}
