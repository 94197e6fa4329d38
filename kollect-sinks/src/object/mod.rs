//! Object stores — `s3`, `gcs` and `azureblob` — on one backend built on the `object_store`
//! crate.
//!
//! - [`Location`]: what `spec.endpoint` names (store, bucket, prefix, service endpoint);
//! - [`client`]: credentials from the Secret, TLS from `spec.tls`, the SSRF guard as the HTTP
//!   client's resolver, the crate's own retries off;
//! - [`ObjectTarget`]: a bucket and prefix with its client, the probe, bucket creation in
//!   `provisioning.mode: ensure`, and the error classes every operation reports;
//! - [`ObjectSink`]: the [`Sink`](kollect_core::sink::Sink): documents at the path template in
//!   the format and compression of [`Encoding`], a `latest` pointer per inventory written after
//!   the data, stale parts and inventory removal.
//!
//! Parquet, Snappy compression and `objectStore.hotAttributes` are not written by this build: a sink asking for them is refused, at admission and when it is reconciled, with
//! a message naming the field.
//!
//! Credentials (`spec.secretRef`):
//!
//! | Type | Keys | Without them |
//! |---|---|---|
//! | `s3` | `accessKeyID` (or `accessKeyId`, `AWS_ACCESS_KEY_ID`) and `secretAccessKey` (or `AWS_SECRET_ACCESS_KEY`), optional `sessionToken` | the ambient AWS credentials (environment, web identity, instance metadata) |
//! | `gcs` | HMAC keys under the S3 names (the XML API, as the Go operator), or a service-account JSON key in `credentials.json` (or `serviceAccountKey`) (the JSON API) | application default credentials |
//! | `azureblob` | `accountKey` (or `AZURE_STORAGE_KEY`) or `sasToken` (or `AZURE_STORAGE_SAS_TOKEN`); `accountName` when the endpoint does not name the account | — |
//!
//! `spec.options.region` sets the S3 signing region (default `us-east-1`).

pub mod client;
mod deletes;
pub mod encoding;
mod errors;
mod location;
pub mod parquet;
mod provision;
pub mod resources;
mod sink;

use std::sync::Arc;

use kollect_core::api::v1alpha1::{KollectSnapshotSinkSpec, SinkFamily};
use kollect_core::error::Redactor;
use kollect_core::netguard::EndpointKind;
use kollect_core::sink::{BoxSink, Capabilities, ProbeReport, SinkError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

pub use self::client::ClientSettings;
pub use self::encoding::{Encoding, ObjectCompression, ObjectFormat};
pub use self::location::{Location, StoreKind};
pub use self::sink::{ObjectSink, PARQUET_TEMPLATE, POINTER_SCHEMA};
use crate::backend::{Backend, BackendFamily, BuildFn, EndpointField};
use crate::context::BuildContext;
use crate::family::SinkConfig;

/// The endpoint every object store sink dials (bare buckets and `s3://`-style forms name no
/// host and are not checked; `http(s)://` endpoints are).
const ENDPOINTS: &[EndpointField] = &[EndpointField::new("spec.endpoint", EndpointKind::ObjectStore)];

/// A snapshot-family object store backend of `type_name`, built by `build`.
const fn backend(type_name: &'static str, build: BuildFn) -> Backend {
    Backend::new(
        type_name,
        BackendFamily::Crd(SinkFamily::Snapshot),
        Capabilities::DOCUMENTS,
        build,
    )
    .with_endpoints(ENDPOINTS)
}

/// The `s3` backend.
pub(crate) const S3_BACKEND: Backend = backend("s3", build_s3);
/// The `gcs` backend.
pub(crate) const GCS_BACKEND: Backend = backend("gcs", build_gcs);
/// The `azureblob` backend.
pub(crate) const AZURE_BACKEND: Backend = backend("azureblob", build_azure);

fn build_s3(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    build(StoreKind::S3, config, &context)
}

fn build_gcs(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    build(StoreKind::Gcs, config, &context)
}

fn build_azure(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    build(StoreKind::AzureBlob, config, &context)
}

fn build(kind: StoreKind, config: &SinkConfig, context: &BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Snapshot(spec) => Ok(Box::new(ObjectSink::from_spec(kind, spec, context)?)),
        other => Err(crate::backend::wrong_family(kind.type_name(), other)),
    }
}

/// The `spec.options` object store sinks read; any other key is refused rather than ignored.
const OPTIONS: &[&str] = &["region"];

/// A bucket (or container) and key prefix with a client for it.
#[derive(Debug, Clone)]
pub struct ObjectTarget {
    location: Location,
    client: client::StoreClient,
    redactor: Redactor,
}

impl ObjectTarget {
    /// The settings a snapshot sink spec of `kind` and its build context describe.
    pub fn settings(
        kind: StoreKind,
        spec: &KollectSnapshotSinkSpec,
        context: &BuildContext,
    ) -> Result<ClientSettings, SinkError> {
        let endpoint = spec.common.endpoint.as_deref().unwrap_or_default();
        if let Some(unknown) = spec
            .common
            .options
            .keys()
            .find(|k| !OPTIONS.contains(&k.as_str()))
        {
            return Err(SinkError::terminal(format!(
                "spec.options.{unknown}: not an option of {} sinks (supported: {})",
                kind.type_name(),
                OPTIONS.join(", ")
            )));
        }
        let location = Location::parse(kind, endpoint).map_err(SinkError::terminal)?;
        Ok(ClientSettings {
            location,
            secret: context.secret.clone(),
            ca_pem: context.ca_pem.clone(),
            insecure_skip_verify: spec.common.tls_insecure(),
            region: spec.common.options.get("region").cloned(),
            policy: context.net_policy,
        })
    }

    /// A target over an already built client (see [`client::build`]).
    pub fn new(settings: &ClientSettings, client: client::StoreClient) -> Self {
        Self {
            location: settings.location.clone(),
            client,
            redactor: Redactor::new(settings.secret.values()),
        }
    }

    /// Builds the client for `settings` and the target over it.
    pub fn connect(settings: &ClientSettings) -> Result<Self, SinkError> {
        Ok(Self::new(settings, client::build(settings)?))
    }

    /// Where this target writes.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The client.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.client.store
    }

    /// Creates the bucket (or container) when it does not exist.
    pub async fn ensure_bucket(&self) -> Result<(), SinkError> {
        match self.list_one().await {
            Err(e) if errors::is_missing_bucket(&e) => self.create_bucket().await,
            other => other,
        }
    }

    /// Creates the bucket (or container); one that exists already is success.
    pub async fn create_bucket(&self) -> Result<(), SinkError> {
        self.client
            .creator
            .create(&self.client.http, &self.location)
            .await
    }

    /// Lists at most one key under the prefix: the bucket exists and may be listed.
    async fn list_one(&self) -> Result<(), SinkError> {
        use futures::StreamExt;
        let prefix = (!self.location.prefix.is_empty()).then(|| Path::from(self.location.prefix.as_str()));
        let mut listing = self.store().list(prefix.as_ref());
        match listing.next().await {
            Some(Err(e)) => Err(self.error("list", &e)),
            _ => Ok(()),
        }
    }

    /// Deletes `objects`; one already gone is fine. GCS with HMAC keys and Azure with a SAS
    /// token delete one object a request (see `deletes`), every other store in bulk.
    pub async fn delete_objects(&self, objects: Vec<Path>, operation: &str) -> Result<(), SinkError> {
        use futures::StreamExt;
        if objects.is_empty() {
            return Ok(());
        }
        if !matches!(self.client.deletes, deletes::Deletes::Bulk) {
            return self
                .client
                .deletes
                .one_by_one(&self.client.http, &self.location, objects, operation)
                .await;
        }
        let mut deletions = self
            .store()
            .delete_stream(futures::stream::iter(objects.into_iter().map(Ok)).boxed());
        while let Some(outcome) = deletions.next().await {
            match outcome {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(operation, &e)),
            }
        }
        Ok(())
    }

    /// The store path of `key` under the prefix.
    pub fn path(&self, key: &str) -> Path {
        Path::from(self.location.key(key))
    }

    /// Whether `error` says the bucket or container is missing.
    pub fn is_missing_bucket(error: &SinkError) -> bool {
        errors::is_missing_bucket(error)
    }

    /// An error of `operation` in the sink's words: classified, without credentials.
    pub fn error(&self, operation: &str, error: &object_store::Error) -> SinkError {
        errors::classify(&self.location, operation, error, &self.redactor)
    }

    /// Checks that the bucket exists and the credentials may list it (the HeadBucket of the
    /// Go operator, which no store-neutral call has). With `ensure`, a missing bucket is created
    /// first, and a marker object is written under the prefix and deleted, proving write access.
    pub async fn probe(&self, ensure: bool) -> Result<ProbeReport, SinkError> {
        let started = std::time::Instant::now();
        if ensure {
            self.ensure_bucket().await?;
        } else {
            self.list_one().await?;
        }
        let kind = self.location.kind.type_name();
        let what = self.location.kind.bucket_word();
        let mut message = format!("{kind} {what} {} is reachable and listable", self.location.bucket);
        if ensure {
            let marker = self.path(".kollect-probe");
            self.store()
                .put(
                    &marker,
                    object_store::PutPayload::from_static(b"kollect connection test\n"),
                )
                .await
                .map_err(|e| self.error("write the probe marker", &e))?;
            self.delete_objects(vec![marker], "delete the probe marker")
                .await?;
            message.push_str("; a marker object was written and deleted");
        }
        Ok(ProbeReport::new(started.elapsed(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::netguard::NetPolicy;

    #[test]
    fn unknown_options_are_refused_by_name() {
        let spec: KollectSnapshotSinkSpec = serde_norway::from_str(
            "type: s3\nendpoint: s3://b\noptions: {region: eu-west-1, storageClass: GLACIER}\n",
        )
        .unwrap();
        let context = BuildContext::new("ns/s", NetPolicy::new(false));
        let error = ObjectTarget::settings(StoreKind::S3, &spec, &context).unwrap_err();
        assert_eq!(
            error.message(),
            "spec.options.storageClass: not an option of s3 sinks (supported: region)"
        );
        let mut spec = spec;
        spec.common.options.remove("storageClass");
        let settings = ObjectTarget::settings(StoreKind::S3, &spec, &context).unwrap();
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
    }
}
