//! Where an object store sink writes: the store, the bucket (or container), the key prefix, and
//! a custom service endpoint, parsed from `spec.endpoint`.
//!
//! | Type | Accepted `spec.endpoint` forms |
//! |---|---|
//! | `s3` | `s3://bucket[/prefix]` (AWS), `http(s)://host[:port]/bucket[/prefix]` (any S3-compatible service, path-style), bare `bucket[/prefix]` |
//! | `gcs` | `gs://bucket[/prefix]`, `https://storage.googleapis.com/bucket[/prefix]`, `http(s)://host[:port]/bucket[/prefix]` (another GCS-compatible service), bare `bucket[/prefix]` |
//! | `azureblob` | `azblob://container[/prefix]` (account from the Secret), `https://<account>.blob.core.windows.net/container[/prefix]`, `http(s)://host[:port]/<account>/container[/prefix]` (Azurite and other emulators, account in the path) |
//!
//! The Go operator parsed `gs://bucket/prefix` as host `bucket` and bucket `prefix`; here the
//! bucket is the bucket.

use url::Url;

/// Which object store API a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Amazon S3 or an S3-compatible service.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    AzureBlob,
}

impl StoreKind {
    /// `spec.type` as the CRD spells it.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Gcs => "gcs",
            Self::AzureBlob => "azureblob",
        }
    }

    /// The URL scheme of the store's own form (`s3://`, `gs://`, `azblob://`).
    fn scheme(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Gcs => "gs",
            Self::AzureBlob => "azblob",
        }
    }

    /// What the store calls a bucket: `container` for Azure Blob, `bucket` otherwise.
    pub fn bucket_word(self) -> &'static str {
        match self {
            Self::AzureBlob => "container",
            Self::S3 | Self::Gcs => "bucket",
        }
    }
}

/// A parsed `spec.endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The store.
    pub kind: StoreKind,
    /// Bucket (container for Azure Blob).
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for none.
    pub prefix: String,
    /// The service endpoint (`scheme://host[:port]`, with the account's path for Azure Blob
    /// emulators), when the sink does not use the store's default one.
    pub endpoint: Option<Url>,
    /// The Azure storage account, when the endpoint names it.
    pub account: Option<String>,
}

/// Google's public endpoint, which `https://storage.googleapis.com/bucket` names explicitly.
const GCS_PUBLIC_HOST: &str = "storage.googleapis.com";
/// What Azure Blob hosts have after the account (`<account>.blob.core.windows.net`).
const AZURE_HOST_MARKER: &str = ".blob.";

impl Location {
    /// Parses `endpoint` for a sink of `kind`. Errors name the field and say what is expected.
    pub fn parse(kind: StoreKind, endpoint: &str) -> Result<Self, String> {
        let endpoint = endpoint.trim();
        let own_scheme = format!("{}://", kind.scheme());
        if let Some(rest) = endpoint.strip_prefix(&own_scheme) {
            return Self::from_path(kind, rest, None, None);
        }
        if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
            let url = Url::parse(endpoint).map_err(|e| format!("spec.endpoint: {e}"))?;
            let host = url.host_str().unwrap_or_default().to_owned();
            if !url.username().is_empty() || url.password().is_some() {
                return Err("spec.endpoint: credentials do not belong in the URL; put them in the Secret named by spec.secretRef".into());
            }
            let mut base = url.clone();
            base.set_path("");
            base.set_query(None);
            base.set_fragment(None);
            let path = url.path().trim_start_matches('/');
            return match kind {
                StoreKind::Gcs if host == GCS_PUBLIC_HOST => Self::from_path(kind, path, None, None),
                // `<account>.blob.core.windows.net`, and the sovereign clouds' equivalents.
                StoreKind::AzureBlob if host.contains(AZURE_HOST_MARKER) => {
                    let account = host.split('.').next().unwrap_or_default().to_owned();
                    Self::from_path(kind, path, Some(base), Some(account))
                }
                StoreKind::AzureBlob => {
                    let (account, rest) = path.split_once('/').unwrap_or((path, ""));
                    if account.is_empty() {
                        return Err(format!(
                            "spec.endpoint: an Azure Blob emulator endpoint names the account and the container, as in {base}<account>/<container>"
                        ));
                    }
                    // Emulators serve each account under its own path.
                    base.set_path(account);
                    Self::from_path(kind, rest, Some(base), Some(account.to_owned()))
                }
                StoreKind::S3 | StoreKind::Gcs => Self::from_path(kind, path, Some(base), None),
            };
        }
        if let Some((scheme, _)) = endpoint.split_once("://") {
            return Err(format!(
                "spec.endpoint: {} sinks take {own_scheme}<{}>, an http(s):// service URL or a bare {}, not {scheme}://",
                kind.type_name(),
                kind.bucket_word(),
                kind.bucket_word()
            ));
        }
        Self::from_path(kind, endpoint, None, None)
    }

    fn from_path(
        kind: StoreKind,
        path: &str,
        endpoint: Option<Url>,
        account: Option<String>,
    ) -> Result<Self, String> {
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(format!(
                "spec.endpoint: {} endpoint must include a {}",
                kind.type_name(),
                kind.bucket_word()
            ));
        }
        Ok(Self {
            kind,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint,
            account,
        })
    }

    /// `prefix/key`, or `key` without a prefix.
    pub fn key(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: StoreKind, endpoint: &str) -> Location {
        Location::parse(kind, endpoint).unwrap()
    }

    #[test]
    fn s3_forms() {
        let l = parse(StoreKind::S3, "s3://inv/fleet/a/");
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str(), l.endpoint),
            ("inv", "fleet/a", None)
        );
        let l = parse(StoreKind::S3, "http://minio.local:9000/inv/p");
        assert_eq!(l.endpoint.unwrap().as_str(), "http://minio.local:9000/");
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("inv", "p"));
        let l = parse(StoreKind::S3, "inv");
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("inv", ""));
        assert_eq!(l.key("inventory/a.json"), "inventory/a.json");
        assert_eq!(parse(StoreKind::S3, "inv/p").key("/k"), "p/k");
    }

    #[test]
    fn gcs_bucket_is_the_bucket() {
        let l = parse(StoreKind::Gcs, "gs://inv/fleet");
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str(), l.endpoint),
            ("inv", "fleet", None)
        );
        let l = parse(StoreKind::Gcs, "https://storage.googleapis.com/inv/x");
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str(), l.endpoint),
            ("inv", "x", None)
        );
        let l = parse(StoreKind::Gcs, "http://127.0.0.1:4443/inv");
        assert_eq!(l.endpoint.unwrap().as_str(), "http://127.0.0.1:4443/");
    }

    #[test]
    fn azure_forms() {
        let l = parse(StoreKind::AzureBlob, "azblob://c/p");
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str(), l.account),
            ("c", "p", None)
        );
        let l = parse(StoreKind::AzureBlob, "https://acct.blob.core.windows.net/c/p");
        assert_eq!((l.bucket.as_str(), l.account.as_deref()), ("c", Some("acct")));
        let l = parse(StoreKind::AzureBlob, "http://127.0.0.1:10000/devstoreaccount1/c");
        assert_eq!(
            (l.bucket.as_str(), l.account.as_deref()),
            ("c", Some("devstoreaccount1"))
        );
        assert_eq!(
            l.endpoint.unwrap().as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (kind, endpoint, want) in [
            (
                StoreKind::S3,
                "s3://",
                "spec.endpoint: s3 endpoint must include a bucket",
            ),
            (
                StoreKind::S3,
                "http://minio:9000/",
                "spec.endpoint: s3 endpoint must include a bucket",
            ),
            (
                StoreKind::Gcs,
                "s3://x",
                "spec.endpoint: gcs sinks take gs://<bucket>, an http(s):// service URL or a bare bucket, not s3://",
            ),
            (
                StoreKind::AzureBlob,
                "azblob:///p",
                "spec.endpoint: azureblob endpoint must include a container",
            ),
            (
                StoreKind::AzureBlob,
                "http://127.0.0.1:10000/",
                "spec.endpoint: an Azure Blob emulator endpoint names the account and the container, as in http://127.0.0.1:10000/<account>/<container>",
            ),
            (
                StoreKind::S3,
                "https://key:secret@minio/inv",
                "spec.endpoint: credentials do not belong in the URL; put them in the Secret named by spec.secretRef",
            ),
        ] {
            assert_eq!(Location::parse(kind, endpoint).unwrap_err(), want, "{endpoint}");
        }
    }
}
