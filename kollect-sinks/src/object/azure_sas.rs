//! Deleting Azure blobs with a SAS token. `object_store` deletes Azure blobs only through Blob
//! Batch (`POST ?comp=batch`), which Azurite answers with 500 when the request carries a SAS
//! token; so with a token each object is deleted with its own `Delete Blob` request through the
//! sink's guarded HTTP client. Account-key sinks keep the batch.

use futures::StreamExt;
use kollect_core::error::ErrorClass;
use kollect_core::sink::SinkError;
use object_store::path::Path;

use super::location::Location;

/// The Azure Blob REST API version of the requests.
const API_VERSION: &str = "2021-08-06";

/// Deletions in flight at once.
const CONCURRENCY: usize = 16;

/// Deletes `objects` from `location`'s container at `endpoint` (the account URL), authorised by
/// the SAS query string `sas`. A blob already gone is fine.
pub(crate) async fn delete_blobs(
    http: &reqwest::Client,
    endpoint: &str,
    sas: &str,
    location: &Location,
    objects: Vec<Path>,
    operation: &str,
) -> Result<(), SinkError> {
    let failed = |detail: String| SinkError::transient(format!("azureblob {operation}: {detail}"));
    let base = url::Url::parse(endpoint).map_err(|e| failed(e.to_string()))?;
    let mut deletions = futures::stream::iter(objects)
        .map(|object| {
            let mut url = base.clone();
            let prepared = url
                .path_segments_mut()
                .map(|mut segments| {
                    segments.pop_if_empty().push(&location.bucket);
                    segments.extend(object.as_ref().split('/'));
                })
                .map_err(|()| failed(format!("{endpoint} cannot take a path")));
            url.set_query(Some(sas));
            async move {
                prepared?;
                // `without_url`: the URL carries the token.
                let response = http
                    .delete(url)
                    .header("x-ms-version", API_VERSION)
                    .send()
                    .await
                    .map_err(|e| failed(e.without_url().to_string()))?;
                let status = response.status();
                if status.is_success() || status.as_u16() == 404 {
                    return Ok(());
                }
                Err(SinkError::new(
                    ErrorClass::from_http_status(status.as_u16()),
                    format!("azureblob {operation} {object}: the store answered {status}"),
                ))
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(outcome) = deletions.next().await {
        outcome?;
    }
    Ok(())
}
