//! Listing a kind once ([`super::RuntimeConfig::list_only`]): one unpaginated LIST whose items
//! are decoded and queued for the workers as the response arrives, so extraction overlaps the
//! API server's sending and no more than the items in flight are held.

use std::collections::HashSet;
use std::sync::Arc;

use futures::AsyncBufReadExt;
use kube::Resource;
use kube::api::ListParams;
use kube::core::Status;

use super::Shared;
use super::object::WatchedObject;
use super::split::{FeedError, ItemSplitter, SplitError};
use super::watch::{Job, WatchContext, enqueue};

/// Why a list failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListError {
    /// The request failed or the API server answered with an error.
    #[error(transparent)]
    Request(#[from] kube::Error),
    /// The response broke off.
    #[error("reading the list response: {0}")]
    Read(#[source] std::io::Error),
    /// The response is not a list.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// An item does not decode.
    #[error("an item of the list response does not decode: {0}")]
    Decode(#[source] serde_json::Error),
}

impl ListError {
    /// The API server's answer, for an error response.
    pub(crate) fn status(&self) -> Option<&Status> {
        match self {
            Self::Request(kube::Error::Api(status)) => Some(&**status),
            _ => None,
        }
    }
}

/// Lists the objects of `context`'s kind in `namespace` (every namespace for `None`) and queues
/// each for the workers; returns the uids listed.
pub(crate) async fn list_once(
    shared: &Shared,
    context: &Arc<WatchContext>,
    epoch: u64,
    namespace: Option<&str>,
) -> Result<HashSet<String>, ListError> {
    let url = WatchedObject::url_path(&context.resource, namespace);
    let request = kube::core::Request::new(url)
        .list(&ListParams::default())
        .map_err(kube::Error::BuildRequest)?;
    let mut body = Box::pin(shared.client.request_stream(request).await?);
    let mut splitter = ItemSplitter::new();
    let mut seen = HashSet::new();
    let mut decoded = Vec::new();
    loop {
        let chunk = body.fill_buf().await.map_err(ListError::Read)?;
        if chunk.is_empty() {
            break;
        }
        let length = chunk.len();
        splitter
            .feed(chunk, |item| {
                decoded.push(serde_json::from_slice::<WatchedObject>(item)?);
                Ok(())
            })
            .map_err(|error| match error {
                FeedError::Split(error) => ListError::Split(error),
                FeedError::Item(error) => ListError::Decode(error),
            })?;
        body.consume_unpin(length);
        for object in decoded.drain(..) {
            let uid = object.uid().to_owned();
            seen.insert(uid.clone());
            let job = Job::Apply {
                context: Arc::clone(context),
                epoch,
                object: Box::new(object),
            };
            enqueue(shared, &uid, job).await;
        }
    }
    splitter.finish()?;
    Ok(seen)
}
