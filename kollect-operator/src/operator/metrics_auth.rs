//! `--metrics-secure`: `/metrics` over HTTPS, answering only callers the cluster's RBAC allows
//! to `get` the non-resource URL `/metrics`. The bearer token is authenticated with a
//! TokenReview and authorized with a SubjectAccessReview, as Kubernetes components do, so the
//! same ClusterRole that lets Prometheus scrape the API server lets it scrape the operator.
//!
//! Verdicts are cached per token for a short while, so that a scrape every few seconds does not
//! cost two API requests each time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// How long a verdict on a token is reused.
const VERDICT_TTL: Duration = Duration::from_secs(60);

/// Where the metrics certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTls {
    /// `--metrics-cert-path`; `None` generates a self-signed certificate at start.
    pub cert_dir: Option<PathBuf>,
    /// `--metrics-cert-name`.
    pub cert_name: String,
    /// `--metrics-cert-key`.
    pub key_name: String,
    /// Offer HTTP/2 (`--enable-http2`); HTTP/1.1 only otherwise.
    pub http2: bool,
}

impl MetricsTls {
    /// The server TLS configuration: the files of `cert_dir`, or a self-signed certificate.
    pub fn config(&self) -> Result<RustlsConfig, String> {
        let config = match &self.cert_dir {
            Some(dir) => {
                crate::serving::from_files(&dir.join(&self.cert_name), &dir.join(&self.key_name), self.http2)
                    .map_err(|e| format!("load the metrics certificate (--metrics-cert-path): {e}"))?
            }
            None => {
                let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                    .map_err(|e| format!("generate a self-signed metrics certificate: {e}"))?;
                crate::serving::server_config(
                    generated.cert.pem().as_bytes(),
                    generated.signing_key.serialize_pem().as_bytes(),
                    self.http2,
                )?
            }
        };
        Ok(RustlsConfig::from_config(config))
    }
}

/// SHA-256 of a bearer token: tokens themselves are never kept.
type TokenDigest = [u8; 32];

/// Whether a token may scrape, and when that was decided.
type Verdict = (bool, Instant);

/// Authenticates and authorizes scrapes of `/metrics` against the API server.
#[derive(Clone)]
pub struct MetricsAuth {
    client: kube::Client,
    verdicts: Arc<Mutex<HashMap<TokenDigest, Verdict>>>,
}

impl std::fmt::Debug for MetricsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAuth").finish_non_exhaustive()
    }
}

impl MetricsAuth {
    /// Reviews through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            verdicts: Arc::default(),
        }
    }

    /// Whether the holder of `token` may `get /metrics`; `Err` when the API server could not
    /// be asked (the scrape fails, nothing is cached).
    async fn allows(&self, token: &str) -> Result<bool, kube::Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((allowed, at)) = self
            .verdicts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < VERDICT_TTL
        {
            return Ok(*allowed);
        }
        let allowed = self.review(token).await?;
        let mut verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        verdicts.retain(|_, (_, at)| at.elapsed() < VERDICT_TTL);
        verdicts.insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }

    async fn review(&self, token: &str) -> Result<bool, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let Some(status) = reviewed.status.filter(|s| s.authenticated == Some(true)) else {
            return Ok(false);
        };
        let Some(user) = status.user else {
            return Ok(false);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(decided.status.is_some_and(|s| s.allowed))
    }
}

/// The middleware in front of `/metrics`: 401 without a bearer token, 403 for a token the API
/// server does not authenticate or RBAC does not allow, 503 when the API server cannot be asked.
pub async fn require_access(State(auth): State<MetricsAuth>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
    };
    match auth.allows(&token).await {
        Ok(true) => next.run(request).await,
        Ok(false) => (StatusCode::FORBIDDEN, "not allowed to get /metrics").into_response(),
        Err(error) => {
            tracing::warn!(%error, "could not review a metrics scrape");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the API server could not review the token",
            )
                .into_response()
        }
    }
}
