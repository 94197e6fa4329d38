//! Creating a missing bucket or container (`provisioning.mode: ensure`).
//!
//! `object_store` reads and writes objects but has no call that creates buckets, so each store's
//! creation request is made here, through the same guarded HTTP client:
//!
//! - S3 (and GCS with HMAC keys, through its XML API): `PUT /<bucket>` on a URL presigned by
//!   the store's own SigV4 signer, with a `LocationConstraint` outside `us-east-1`;
//! - GCS with a service-account key or ambient credentials: the JSON API's bucket insert
//!   (`POST /storage/v1/b?project=<project_id of the key>`) with the store's OAuth token;
//! - Azure Blob: `PUT /<container>?restype=container`, authorised by the SAS token or signed
//!   with the account key (the Shared Key scheme; no maintained crate signs one request without
//!   a whole Azure SDK).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kollect_core::sink::SinkError;
use object_store::aws::AmazonS3;
use object_store::gcp::GoogleCloudStorage;
use object_store::path::Path;
use object_store::signer::Signer;

use super::location::Location;

/// How a missing bucket or container can be created with the sink's credentials.
#[derive(Debug, Clone)]
pub(crate) enum Creator {
    /// A presigned `PUT /<bucket>`.
    S3 {
        /// The store, as a signer.
        store: Arc<AmazonS3>,
        /// The signing region (`LocationConstraint` when not `us-east-1`).
        region: String,
    },
    /// The JSON API's bucket insert.
    Gcs {
        /// The store, for its OAuth token.
        store: Arc<GoogleCloudStorage>,
        /// `https://storage.googleapis.com` or the endpoint's base.
        base_url: String,
        /// `project_id` of the service-account key.
        project: Option<String>,
    },
    /// `PUT /<container>?restype=container`.
    Azure {
        /// The storage account.
        account: String,
        /// `https://<account>.blob.core.windows.net` or the emulator's account URL.
        endpoint: String,
        /// The account key (base64) or SAS query string.
        auth: AzureAuth,
    },
    /// No way to create it with these credentials.
    Unavailable(&'static str),
}

/// Azure credentials that can create a container.
#[derive(Clone)]
pub(crate) enum AzureAuth {
    /// An account key, base64.
    SharedKey(String),
    /// A SAS query string (`sv=...&sig=...`).
    Sas(String),
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SharedKey(_) => "SharedKey(***)",
            Self::Sas(_) => "Sas(***)",
        })
    }
}

/// The Azure Blob REST API version the container request is signed for.
const AZURE_API_VERSION: &str = "2021-08-06";

impl Creator {
    /// Creates `location`'s bucket or container. A bucket that already exists (a race with
    /// another writer) is success.
    pub(crate) async fn create(&self, http: &reqwest::Client, location: &Location) -> Result<(), SinkError> {
        let kind = location.kind.type_name();
        let what = location.kind.bucket_word();
        let failed = |e: &dyn std::fmt::Display| {
            SinkError::transient(format!("{kind} create {what} {}: {e}", location.bucket))
        };
        let response = match self {
            Creator::S3 { store, region } => {
                let url = store
                    .signed_url(reqwest::Method::PUT, &Path::from(""), Duration::from_secs(300))
                    .await
                    .map_err(|e| failed(&e))?;
                let mut request = http.put(url);
                if region != "us-east-1" && region != "auto" {
                    request = request.body(format!(
                        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
                    ));
                }
                request.send().await
            }
            Creator::Gcs { store, base_url, project } => {
                let Some(project) = project else {
                    return Err(SinkError::terminal(format!(
                        "gcs create bucket {}: the credentials name no project (a service-account key's project_id); create the bucket, or use provisioning.mode: existing",
                        location.bucket
                    )));
                };
                let token = store.credentials().get_credential().await.map_err(|e| failed(&e))?;
                let mut url = url::Url::parse(&format!("{base_url}/storage/v1/b")).map_err(|e| failed(&e))?;
                url.query_pairs_mut().append_pair("project", project);
                let mut request = http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(serde_json::json!({ "name": location.bucket }).to_string());
                if !token.bearer.is_empty() {
                    request = request.bearer_auth(&token.bearer);
                }
                request.send().await
            }
            Creator::Azure { account, endpoint, auth } => {
                let url = format!("{endpoint}/{}", location.bucket);
                let request = match auth {
                    AzureAuth::Sas(query) => http.put(format!("{url}?restype=container&{query}")),
                    AzureAuth::SharedKey(key) => {
                        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
                        let path = url::Url::parse(&url).map_err(|e| failed(&e))?.path().to_owned();
                        let string_to_sign = format!(
                            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{AZURE_API_VERSION}\n/{account}{path}\nrestype:container"
                        );
                        let signature = shared_key_signature(key, &string_to_sign)?;
                        http.put(format!("{url}?restype=container"))
                            .header("x-ms-date", date)
                            .header("Content-Length", "0")
                            .header("Authorization", format!("SharedKey {account}:{signature}"))
                    }
                };
                request.header("x-ms-version", AZURE_API_VERSION).send().await
            }
            Creator::Unavailable(why) => {
                return Err(SinkError::terminal(format!(
                    "{kind} create {what} {}: {why}; create it, or use provisioning.mode: existing",
                    location.bucket
                )));
            }
        }
        // Without the URL: a presigned URL or a SAS token is a credential.
        .map_err(|e| failed(&e.without_url()))?;
        let status = response.status();
        // 409: it exists (someone else created it meanwhile, or it was there all along).
        if status.is_success() || status.as_u16() == 409 {
            return Ok(());
        }
        let class = kollect_core::error::ErrorClass::from_http_status(status.as_u16());
        Err(SinkError::new(
            class,
            format!(
                "{kind} create {what} {}: the store answered {status}",
                location.bucket
            ),
        ))
    }
}

/// `base64(HMAC-SHA256(base64decode(key), string_to_sign))`.
fn shared_key_signature(key: &str, string_to_sign: &str) -> Result<String, SinkError> {
    let key = STANDARD
        .decode(key)
        .map_err(|_| SinkError::terminal("azureblob: the account key in the Secret is not base64"))?;
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        string_to_sign.as_bytes(),
    );
    Ok(STANDARD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_key_signatures_are_hmac_sha256_of_the_decoded_key() {
        // HMAC-SHA256 with key "key" over "The quick brown fox jumps over the lazy dog".
        let key = STANDARD.encode("key");
        assert_eq!(
            shared_key_signature(&key, "The quick brown fox jumps over the lazy dog").unwrap(),
            "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
        );
        assert!(shared_key_signature("not base64!", "x").is_err());
    }
}
