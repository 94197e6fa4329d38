//! Object stores: MinIO (S3), fake-gcs-server (GCS JSON and XML APIs) and Azurite (Azure Blob).
//!
//! Each launcher can create the bucket or container a test writes to: the object store clients
//! the sinks use read and write objects but never create buckets.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{
    BackendError, find, go_backends_dir, http_client, log_file, start_error, temp_dir, wait_for_http,
};
use crate::control_plane::free_port;

fn free(backend: &'static str) -> Result<u16, BackendError> {
    free_port().map_err(|e| start_error(backend, e.to_string(), None))
}

fn http_error(backend: &'static str, what: &str, error: impl std::fmt::Display) -> BackendError {
    start_error(backend, format!("{what}: {error}"), None)
}

async fn expect_success(
    backend: &'static str,
    what: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<(), BackendError> {
    let response = response.map_err(|e| http_error(backend, what, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(http_error(backend, what, format!("{status}: {body}")))
}

/// A MinIO server (S3 API) with a root access key.
#[derive(Debug)]
pub struct Minio {
    server: super::ServerProcess,
    tls: bool,
}

impl Minio {
    /// The access key id.
    pub const ACCESS_KEY: &'static str = "kollect-test";
    /// The secret access key.
    pub const SECRET_KEY: &'static str = "kollect-test-secret";
    /// The region MinIO reports.
    pub const REGION: &'static str = "us-east-1";

    /// Starts MinIO on a free port with its data in a temporary directory.
    pub fn start() -> Result<Self, BackendError> {
        Self::start_with(None)
    }

    /// Starts MinIO serving HTTPS with `pki`'s serving certificate (clients trust
    /// `pki.ca_pem`). The port is open when this returns; MinIO may answer `503` for a moment
    /// after that ([`Minio::create_bucket`] waits that out).
    pub fn start_tls(pki: &crate::pki::ServingPki) -> Result<Self, BackendError> {
        Self::start_with(Some(pki))
    }

    fn start_with(pki: Option<&crate::pki::ServingPki>) -> Result<Self, BackendError> {
        let binary = find("minio", &[go_backends_dir()])?;
        let dir = temp_dir("minio")?;
        let port = free("minio")?;
        let console = free("minio")?;
        let log = dir.path().join("minio.log");
        let (out, err) = log_file(&log)?;
        let mut command = Command::new(binary);
        if let Some(pki) = pki {
            let certs = dir.path().join("certs");
            std::fs::create_dir_all(&certs)
                .and_then(|()| std::fs::write(certs.join("public.crt"), &pki.cert_pem))
                .and_then(|()| std::fs::write(certs.join("private.key"), &pki.key_pem))
                .map_err(|e| start_error("minio", format!("write the certificates: {e}"), None))?;
            command.arg("--certs-dir").arg(&certs);
        }
        let mut child = command
            .arg("server")
            .arg(dir.path().join("data"))
            .args(["--address", &format!("127.0.0.1:{port}")])
            .args(["--console-address", &format!("127.0.0.1:{console}")])
            .arg("--quiet")
            .env("MINIO_ROOT_USER", Self::ACCESS_KEY)
            .env("MINIO_ROOT_PASSWORD", Self::SECRET_KEY)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| start_error("minio", format!("start minio: {e}"), None))?;
        if pki.is_some() {
            super::wait_for_port("minio", port, &mut child, &log, Duration::from_secs(60))?;
        } else {
            wait_for_http(
                "minio",
                port,
                "/minio/health/ready",
                &mut child,
                &log,
                Duration::from_secs(60),
            )?;
        }
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
            tls: pki.is_some(),
        })
    }

    /// `http://127.0.0.1:<port>`, or `https://` when started with [`Minio::start_tls`].
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.server.port)
    }

    /// Creates a bucket (path-style `PUT /<bucket>`), signed with the root key through
    /// object_store's SigV4 URL signer.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), BackendError> {
        use object_store::signer::Signer;
        // The store builds a reqwest client, which needs the process's rustls provider.
        super::install_crypto_provider();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region(Self::REGION)
            .with_bucket_name(bucket)
            .with_access_key_id(Self::ACCESS_KEY)
            .with_secret_access_key(Self::SECRET_KEY)
            .build()
            .map_err(|e| http_error("minio", "configure the S3 client", e))?;
        let url = store
            .signed_url(
                http::Method::PUT,
                &object_store::path::Path::from(""),
                Duration::from_secs(60),
            )
            .await
            .map_err(|e| http_error("minio", "sign CreateBucket", e))?;
        let what = format!("create bucket {bucket}");
        let client = http_client("minio")?;
        // MinIO reports ready before its identity subsystem has loaded, and answers signed
        // requests with `503 XMinioServerNotInitialized` until it has; that state passes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let response = client.put(url.clone()).send().await;
            let initializing =
                matches!(&response, Ok(r) if r.status() == http::StatusCode::SERVICE_UNAVAILABLE);
            if !initializing || tokio::time::Instant::now() >= deadline {
                return expect_success("minio", &what, response).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// fake-gcs-server: the GCS JSON API (and the XML API object_store uses for uploads), without
/// authentication.
#[derive(Debug)]
pub struct FakeGcs {
    server: super::ServerProcess,
}

impl FakeGcs {
    /// Starts fake-gcs-server on a free port, storing objects in a temporary directory.
    pub fn start() -> Result<Self, BackendError> {
        let binary = find("fake-gcs-server", &[go_backends_dir()])?;
        let dir = temp_dir("gcs")?;
        let port = free("fake-gcs-server")?;
        let log = dir.path().join("fake-gcs-server.log");
        let (out, err) = log_file(&log)?;
        let storage = dir.path().join("storage");
        let preload = dir.path().join("preload");
        std::fs::create_dir_all(&preload).map_err(|e| start_error("gcs", e.to_string(), None))?;
        // `-public-host` must equal the Host header clients send (`127.0.0.1:<port>`): only then
        // are path-style `PUT /<bucket>/<object>` uploads routed to the XML API handler.
        let mut child = Command::new(binary)
            .args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &port.to_string()])
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-external-url", &format!("http://127.0.0.1:{port}")])
            .args(["-backend", "filesystem", "-log-level", "warn"])
            .arg("-filesystem-root")
            .arg(&storage)
            .arg("-data")
            .arg(&preload)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| start_error("gcs", format!("start fake-gcs-server: {e}"), None))?;
        wait_for_http(
            "gcs",
            port,
            "/storage/v1/b",
            &mut child,
            &log,
            Duration::from_secs(30),
        )?;
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
        })
    }

    /// `http://127.0.0.1:<port>`: the `gcs_base_url` for object_store.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// A service-account key document that points object_store at this server and turns OAuth
    /// off (the emulator does not check credentials).
    pub fn service_account_key(&self) -> String {
        serde_json::json!({
            "type": "service_account",
            "gcs_base_url": self.base_url(),
            "disable_oauth": true,
            "client_email": "kollect-test@example.iam.gserviceaccount.com",
            "private_key": "",
            "private_key_id": "",
        })
        .to_string()
    }

    /// Creates a bucket through the JSON API.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), BackendError> {
        let response = http_client("gcs")?
            .post(format!("{}/storage/v1/b", self.base_url()))
            .json(&serde_json::json!({ "name": bucket }))
            .send()
            .await;
        expect_success("gcs", &format!("create bucket {bucket}"), response).await
    }
}

/// Azurite's Blob service with the emulator's well-known development account.
#[derive(Debug)]
pub struct Azurite {
    server: super::ServerProcess,
}

/// The directories `hack/install-azurite.sh` installs Azurite into (one per version).
fn azurite_bin_dirs() -> Vec<PathBuf> {
    let root = crate::control_plane::cache_dir().join("azurite");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("node_modules/.bin")))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

impl Azurite {
    /// The development storage account.
    pub const ACCOUNT: &'static str = "devstoreaccount1";
    /// The development account's published key.
    pub const KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// Starts `azurite-blob` on a free port with its data in a temporary directory.
    pub fn start() -> Result<Self, BackendError> {
        let binary = find("azurite-blob", &azurite_bin_dirs())?;
        let dir = temp_dir("azurite")?;
        let port = free("azurite")?;
        let log = dir.path().join("azurite.log");
        let (out, err) = log_file(&log)?;
        let mut child = Command::new(binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            .args(["--silent", "--skipApiVersionCheck", "--disableProductStyleUrl"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| start_error("azurite", format!("start azurite-blob: {e}"), None))?;
        super::wait_for_port("azurite", port, &mut child, &log, Duration::from_secs(60))?;
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
        })
    }

    /// The Blob endpoint including the account: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{}", self.server.port, Self::ACCOUNT)
    }

    /// Creates a container, authorised with the account key (Shared Key scheme). Azurite can
    /// accept connections a moment before it answers them, so a request that could not be
    /// sent is tried again for a few seconds.
    pub async fn create_container(&self, container: &str) -> Result<(), BackendError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let client = http_client("azurite")?;
        loop {
            let response = self.put_container(&client, container).await?;
            if response.is_ok() || tokio::time::Instant::now() >= deadline {
                return expect_success("azurite", &format!("create container {container}"), response).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An account SAS token for the Blob service (`ss=b`, every resource type, over HTTP or
    /// HTTPS, valid until 2099) with `permissions` in Azure's canonical order (for example
    /// `rwdlac`), as the query string a Secret's `sasToken` holds. Signed as Azure documents
    /// for service version 2020-12-06 and later: the account, permissions, services, resource
    /// types, start, expiry, IP range, protocol, version and encryption scope, each followed by
    /// a newline.
    pub fn account_sas(&self, permissions: &str) -> Result<String, BackendError> {
        let (version, expiry, protocol) = ("2021-08-06", "2099-01-01T00:00:00Z", "https,http");
        let string_to_sign = format!(
            "{account}\n{permissions}\nb\nsco\n\n{expiry}\n\n{protocol}\n{version}\n\n",
            account = Self::ACCOUNT
        );
        let signature = azure_signature(Self::KEY, &string_to_sign)?;
        // Base64's `+`, `/` and `=` are the only characters of a signature a query escapes.
        let signature = signature
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        Ok(format!(
            "sv={version}&ss=b&srt=sco&sp={permissions}&se={expiry}&spr={protocol}&sig={signature}"
        ))
    }

    /// One container PUT; the outer error is ours (signing), the inner one the transport's.
    async fn put_container(
        &self,
        client: &reqwest::Client,
        container: &str,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, BackendError> {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let authorization = shared_key_authorization(
            Self::ACCOUNT,
            Self::KEY,
            &format!(
                "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}/{account}/{container}\nrestype:container",
                account = Self::ACCOUNT
            ),
        )?;
        Ok(client
            .put(format!("{}/{container}?restype=container", self.blob_endpoint()))
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("Authorization", authorization)
            .header("Content-Length", "0")
            .send()
            .await)
    }
}

/// `SharedKey <account>:<base64 HMAC-SHA256 of the string to sign>`.
///
/// Written here because object_store (the client the Azure sink uses) does not create containers
/// and only signs Service SAS URLs, which cannot authorise container creation; a full Azure SDK
/// crate for one request in a test launcher would be out of proportion.
pub(super) fn shared_key_authorization(
    account: &str,
    key: &str,
    string_to_sign: &str,
) -> Result<String, BackendError> {
    Ok(format!(
        "SharedKey {account}:{}",
        azure_signature(key, string_to_sign)?
    ))
}

/// Azure's signature of Shared Key requests and SAS tokens: base64 of the HMAC-SHA256 of
/// `string_to_sign` keyed with the decoded account key.
fn azure_signature(key: &str, string_to_sign: &str) -> Result<String, BackendError> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hmac::Mac;
    let key = STANDARD
        .decode(key)
        .map_err(|e| http_error("azurite", "decode the account key", e))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|e| http_error("azurite", "key the HMAC", e))?;
    mac.update(string_to_sign.as_bytes());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}
