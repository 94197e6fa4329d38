//! How objects are deleted. `object_store` deletes in bulk only (S3 `DeleteObjects`, Azure Blob
//! Batch), which two of our targets do not serve:
//!
//! - GCS's XML API, reached with HMAC keys, long had no multi-object delete, and
//!   fake-gcs-server answers one with success without deleting anything;
//! - Azure Blob answers Blob Batch with a SAS token with 500 in Azurite.
//!
//! There each object is deleted with its own request through the sink's guarded HTTP client: a
//! `DELETE` on a URL presigned by the store's SigV4 signer, or a `Delete Blob` carrying the SAS
//! token. Everything else keeps the bulk calls.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kollect_core::error::ErrorClass;
use kollect_core::sink::SinkError;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::Signer;

use super::location::Location;

/// The Azure Blob REST API version of `Delete Blob`.
const AZURE_API_VERSION: &str = "2021-08-06";

/// Deletions in flight at once.
const CONCURRENCY: usize = 16;

/// How long a presigned `DELETE` is valid.
const PRESIGNED_FOR: Duration = Duration::from_secs(300);

/// The deletion strategy of a store client.
#[derive(Clone)]
pub(crate) enum Deletes {
    /// `object_store`'s bulk deletes.
    Bulk,
    /// One presigned `DELETE` per object (GCS with HMAC keys).
    Presigned(Arc<AmazonS3>),
    /// One `Delete Blob` per object with the SAS query string.
    AzureSas {
        /// The account URL.
        endpoint: String,
        /// The SAS query string.
        sas: String,
    },
}

impl std::fmt::Debug for Deletes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bulk => "Bulk",
            Self::Presigned(_) => "Presigned",
            Self::AzureSas { .. } => "AzureSas(***)",
        })
    }
}

impl Deletes {
    /// Deletes `objects` one request each (`Bulk` is handled by the caller). A missing object is
    /// fine.
    pub(crate) async fn one_by_one(
        &self,
        http: &reqwest::Client,
        location: &Location,
        objects: Vec<Path>,
        operation: &str,
    ) -> Result<(), SinkError> {
        let kind = location.kind.type_name();
        let failed = |detail: String| SinkError::transient(format!("{kind} {operation}: {detail}"));
        let mut deletions = futures::stream::iter(objects)
            .map(|object| async move {
                let url = match self {
                    Self::Bulk => return Err(failed("bulk deletes are not sent one by one".to_owned())),
                    Self::Presigned(store) => store
                        .signed_url(reqwest::Method::DELETE, &object, PRESIGNED_FOR)
                        .await
                        .map_err(|e| failed(e.to_string()))?,
                    Self::AzureSas { endpoint, sas } => {
                        let mut url = url::Url::parse(endpoint).map_err(|e| failed(e.to_string()))?;
                        url.path_segments_mut()
                            .map_err(|()| failed(format!("{endpoint} cannot take a path")))?
                            .pop_if_empty()
                            .push(&location.bucket)
                            .extend(object.as_ref().split('/'));
                        url.set_query(Some(sas));
                        url
                    }
                };
                let mut request = http.delete(url);
                if matches!(self, Self::AzureSas { .. }) {
                    request = request.header("x-ms-version", AZURE_API_VERSION);
                }
                // `without_url`: the URL carries a signature or the token.
                let response = request
                    .send()
                    .await
                    .map_err(|e| failed(e.without_url().to_string()))?;
                let status = response.status();
                if status.is_success() || status.as_u16() == 404 {
                    return Ok(());
                }
                Err(SinkError::new(
                    ErrorClass::from_http_status(status.as_u16()),
                    format!("{kind} {operation} {object}: the store answered {status}"),
                ))
            })
            .buffer_unordered(CONCURRENCY);
        while let Some(outcome) = deletions.next().await {
            outcome?;
        }
        Ok(())
    }
}
