//! The webhook's HTTPS server: `tls.crt` and `tls.key` from a certificate directory (as
//! cert-manager or the chart mount them), reloaded when either file changes, so a rotated
//! certificate is served without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use super::{Admission, KINDS, path_of};

/// How often the certificate files are checked for a rotation.
const RELOAD_CHECK: Duration = Duration::from_secs(10);

/// Where the webhook listens and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// Listen address (`:9443` by default).
    pub bind_address: SocketAddr,
    /// Directory holding the certificate and key (`--webhook-cert-path`).
    pub cert_dir: PathBuf,
    /// File name of the certificate chain in `cert_dir` (`--webhook-cert-name`).
    pub cert_name: String,
    /// File name of the private key in `cert_dir` (`--webhook-cert-key`).
    pub key_name: String,
    /// Offer HTTP/2 (`--enable-http2`); HTTP/1.1 only otherwise.
    pub http2: bool,
}

impl WebhookOptions {
    fn cert(&self) -> PathBuf {
        self.cert_dir.join(&self.cert_name)
    }

    fn key(&self) -> PathBuf {
        self.cert_dir.join(&self.key_name)
    }
}

/// A webhook server that is listening.
#[derive(Debug)]
pub struct Serving {
    /// The bound address (useful when the port was 0).
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    reload: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
        self.reload.abort();
    }
}

/// Starts the webhook server; fails with a message naming the files when the certificate cannot
/// be loaded or the address cannot be bound.
pub async fn serve(admission: Admission, options: &WebhookOptions) -> Result<Serving, String> {
    let (cert, key) = (options.cert(), options.key());
    let tls = crate::serving::reloadable(&cert, &key, options.http2)
        .map_err(|e| format!("load the webhook certificate (--webhook-cert-path): {e}"))?;
    let mut router = Router::new();
    for kind in KINDS {
        router = router.route(&path_of(kind), post(move |state, body| handle(state, kind, body)));
    }
    let app = router.with_state(Arc::new(admission));
    let (address, task) =
        crate::serving::spawn_https("webhook server", options.bind_address, tls.clone(), app)?;
    let reload = tokio::spawn(reload_on_change(tls, cert, key, options.http2));
    tracing::info!(%address, "serving the validating webhooks");
    Ok(Serving {
        address,
        task,
        reload,
    })
}

async fn handle(
    State(admission): State<Arc<Admission>>,
    kind: &'static str,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, kind, "malformed admission review");
            return Json(AdmissionResponse::invalid(error.to_string()).into_review());
        }
    };
    let response = admission.review(kind, &request).await;
    if !response.allowed {
        tracing::debug!(kind, message = %response.result.message, "admission denied");
    }
    Json(response.into_review())
}

/// Reloads the certificate whenever one of its files changes (rotation by cert-manager or a
/// mounted Secret update); a broken pair is logged and the previous one kept.
async fn reload_on_change(tls: RustlsConfig, cert: PathBuf, key: PathBuf, http2: bool) {
    let mut seen = modified(&cert, &key);
    loop {
        tokio::time::sleep(RELOAD_CHECK).await;
        let now = modified(&cert, &key);
        if now == seen {
            continue;
        }
        match crate::serving::from_files(&cert, &key, http2) {
            Ok(config) => {
                tls.reload_from_config(config);
                tracing::info!(cert = %cert.display(), "reloaded the webhook certificate");
                seen = now;
            }
            Err(error) => {
                tracing::warn!(%error, cert = %cert.display(), "the new webhook certificate does not load; serving the previous one");
            }
        }
    }
}

fn modified(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let time = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (time(cert), time(key))
}
