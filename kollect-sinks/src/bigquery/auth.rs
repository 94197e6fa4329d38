//! Credentials of BigQuery requests: a service-account key, the metadata server (Workload
//! Identity, GCE), or none (an emulator).
//!
//! A service-account key signs its own short-lived JWT with the BigQuery scope (Google's
//! "self-signed JWT" flow), so the key never leaves the process and no token endpoint is
//! dialed: the `token_uri` a key file names is never trusted with a connection. The JWT is
//! assembled here from three base64url parts signed by `ring` (RS256); a JWT crate would bring
//! a second cryptography backend for those few lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kollect_core::sink::SinkError;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use tokio::sync::Mutex;

/// The OAuth scope of every request.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// Lifetime of a self-signed token (Google accepts up to one hour).
const JWT_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is replaced this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The metadata server, by address: a fixed link-local service, not a user-supplied host (the
/// SSRF guard refuses link-local addresses for user endpoints), so its client is not guarded.
pub const METADATA_HOST: &str = "169.254.169.254";
/// The path of the default service account's token on the metadata server.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// How long the metadata server may take to answer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How BigQuery requests are authorised.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// A service-account key (the `credentials.json` of the sink's Secret).
    ServiceAccount(ServiceAccountKey),
    /// Tokens of the instance's service account from the metadata server: Workload Identity on
    /// GKE, the VM's account on Compute Engine.
    MetadataServer,
    /// No `Authorization` header: an emulator.
    Anonymous,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServiceAccount(key) => write!(f, "ServiceAccount({})", key.client_email),
            Self::MetadataServer => f.write_str("MetadataServer"),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// A parsed service-account key.
#[derive(Clone)]
pub struct ServiceAccountKey {
    client_email: String,
    private_key_id: String,
    key: std::sync::Arc<RsaKeyPair>,
}

/// The fields of a key file that signing needs.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    private_key: String,
}

impl ServiceAccountKey {
    /// Parses a service-account key file (JSON). Errors name the field, never its value.
    pub fn from_json(json: &str) -> Result<Self, SinkError> {
        let file: KeyFile = serde_json::from_str(json).map_err(|e| {
            SinkError::terminal(format!(
                "credentials.json: not a service-account key file (JSON error at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if file.kind != "service_account" {
            return Err(SinkError::terminal(format!(
                "credentials.json: type {:?} is not supported; use a service-account key (type service_account), or no secretRef for Workload Identity",
                file.kind
            )));
        }
        if file.client_email.is_empty() {
            return Err(SinkError::terminal("credentials.json: client_email is missing"));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(file.private_key.as_bytes()).map_err(|_| {
            SinkError::terminal("credentials.json: private_key is not a PEM-encoded PKCS#8 private key")
        })?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|_| SinkError::terminal("credentials.json: private_key is not a usable RSA key"))?;
        Ok(Self {
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            key: std::sync::Arc::new(key),
        })
    }

    /// The service account's e-mail address.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// A JWT for [`SCOPE`], valid from `now` for [`JWT_LIFETIME`].
    fn sign(&self, now: u64) -> Result<String, SinkError> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": self.client_email,
            "scope": SCOPE,
            "iat": now,
            "exp": now + JWT_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| SinkError::terminal("credentials.json: signing the access token failed"))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A token and when it stops being used.
#[derive(Clone)]
struct Token {
    value: String,
    refresh_at: SystemTime,
}

/// Hands out bearer tokens, reusing one until shortly before it expires.
pub(super) struct TokenSource {
    credentials: Credentials,
    /// The metadata server's client and `host[:port]`.
    metadata: Option<(reqwest::Client, String)>,
    current: Mutex<Option<Token>>,
}

impl TokenSource {
    /// A source of `credentials`' tokens; `metadata_host` is where the metadata server
    /// answers ([`METADATA_HOST`] in Google Cloud).
    pub(super) fn new(credentials: Credentials, metadata_host: &str) -> Result<Self, SinkError> {
        let metadata = match credentials {
            Credentials::MetadataServer => Some((
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .timeout(METADATA_TIMEOUT)
                    .tls_backend_preconfigured(crate::tls::client_config(None)?)
                    .build()
                    .map_err(|e| SinkError::terminal(format!("bigquery metadata client: {e}")))?,
                metadata_host.to_owned(),
            )),
            _ => None,
        };
        Ok(Self {
            credentials,
            metadata,
            current: Mutex::new(None),
        })
    }

    /// The `Authorization` header value, or `None` for anonymous requests.
    pub(super) async fn authorization(&self) -> Result<Option<String>, SinkError> {
        if matches!(self.credentials, Credentials::Anonymous) {
            return Ok(None);
        }
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some(token) = current.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(Some(format!("Bearer {}", token.value)));
        }
        let token = self.fetch(now).await?;
        let header = format!("Bearer {}", token.value);
        *current = Some(token);
        Ok(Some(header))
    }

    async fn fetch(&self, now: SystemTime) -> Result<Token, SinkError> {
        match (&self.credentials, &self.metadata) {
            (Credentials::ServiceAccount(key), _) => {
                let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                Ok(Token {
                    value: key.sign(seconds)?,
                    refresh_at: now + JWT_LIFETIME - REFRESH_MARGIN,
                })
            }
            (Credentials::MetadataServer, Some((client, host))) => metadata_token(client, host, now).await,
            _ => Err(SinkError::terminal("bigquery credentials: no token source")),
        }
    }
}

/// The metadata server's answer.
#[derive(Deserialize)]
struct MetadataToken {
    access_token: String,
    expires_in: u64,
}

async fn metadata_token(client: &reqwest::Client, host: &str, now: SystemTime) -> Result<Token, SinkError> {
    let unavailable = |detail: String| {
        SinkError::transient(format!(
            "bigquery credentials: spec.bigquery.secretRef is not set and the metadata server (Workload Identity) {detail}"
        ))
    };
    let mut url = url::Url::parse(&format!("http://{host}{METADATA_TOKEN_PATH}"))
        .map_err(|e| SinkError::terminal(format!("bigquery metadata server {host:?}: {e}")))?;
    url.query_pairs_mut().append_pair("scopes", SCOPE);
    let response = client
        .get(url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| unavailable(format!("did not answer: {}", crate::http::cause(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(unavailable(format!("answered HTTP {}", status.as_u16())));
    }
    let not_a_token = || unavailable("answered something that is not a token".to_owned());
    let body = response.bytes().await.map_err(|_| not_a_token())?;
    let token: MetadataToken = serde_json::from_slice(&body).map_err(|_| not_a_token())?;
    let lifetime = Duration::from_secs(token.expires_in);
    Ok(Token {
        value: token.access_token,
        refresh_at: now + lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throwaway 2048-bit RSA key in a service-account key file (generated for these tests;
    /// it authorises nothing).
    pub(crate) fn key_json() -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "test",
            "private_key_id": "k1",
            "private_key": include_str!("testdata/test-key.pem"),
            "client_email": "kollect@test.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token"
        })
        .to_string()
    }

    #[test]
    fn a_self_signed_token_carries_the_scope_and_verifies() {
        let key = ServiceAccountKey::from_json(&key_json()).expect("key");
        let jwt = key.sign(1_700_000_000).expect("jwt");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
        };
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})
        );
        let claims = decode(parts[1]);
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["iss"], "kollect@test.iam.gserviceaccount.com");
        assert_eq!(claims["exp"], 1_700_003_600);
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.key.public().as_ref(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies with the key's public half");
    }

    #[test]
    fn bad_key_files_are_refused_without_echoing_them() {
        let cases = [
            ("{not json", "not a service-account key file"),
            (
                r#"{"type": "authorized_user"}"#,
                "type \"authorized_user\" is not supported",
            ),
            (
                r#"{"type": "service_account", "private_key": "x"}"#,
                "client_email is missing",
            ),
            (
                r#"{"type": "service_account", "client_email": "a@b", "private_key": "SECRETSECRET"}"#,
                "private_key is not a PEM-encoded PKCS#8 private key",
            ),
        ];
        for (json, expected) in cases {
            let Err(error) = ServiceAccountKey::from_json(json) else {
                panic!("{json} was accepted");
            };
            assert!(error.to_string().contains(expected), "{json}: {error}");
            assert!(!error.to_string().contains("SECRETSECRET"));
        }
    }

    #[tokio::test]
    async fn tokens_are_reused_until_shortly_before_they_expire() {
        let key = ServiceAccountKey::from_json(&key_json()).expect("key");
        let source = TokenSource::new(Credentials::ServiceAccount(key), METADATA_HOST).expect("source");
        let first = source.authorization().await.expect("token");
        let second = source.authorization().await.expect("token");
        assert!(first.as_deref().is_some_and(|h| h.starts_with("Bearer ey")));
        assert_eq!(first, second);
        let anonymous = TokenSource::new(Credentials::Anonymous, METADATA_HOST).expect("source");
        assert_eq!(anonymous.authorization().await.expect("none"), None);
    }
}
