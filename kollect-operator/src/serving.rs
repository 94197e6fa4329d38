//! TLS for the HTTPS servers of `kollect run` (the webhooks and secure `/metrics`): a rustls
//! configuration from PEM files that offers HTTP/1.1 only unless `--enable-http2` is set, as
//! Kubernetes components do since HTTP/2 stream floods ("rapid reset") became a known attack.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server configuration for the certificate chain and key in `cert_pem` and `key_pem`.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8], http2: bool) -> Result<Arc<ServerConfig>, String> {
    // kube uses ring as well; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("read the certificate: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("read the private key: {e}"))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not form a pair: {e}"))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// The configuration for the PEM files `cert` and `key`; errors name both files.
pub fn from_files(cert: &Path, key: &Path, http2: bool) -> Result<Arc<ServerConfig>, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()));
    server_config(&read(cert)?, &read(key)?, http2)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

/// A reloadable axum-server configuration for the PEM files `cert` and `key`.
pub fn reloadable(cert: &Path, key: &Path, http2: bool) -> Result<RustlsConfig, String> {
    Ok(RustlsConfig::from_config(from_files(cert, key, http2)?))
}

/// Binds `address` and serves `router` over TLS with `tls` on a task of its own; returns the
/// bound address (port 0 picks a free one) and the task. `what` names the server in errors
/// and logs.
pub fn spawn_https(
    what: &'static str,
    address: SocketAddr,
    tls: RustlsConfig,
    router: axum::Router,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let bind = |e: std::io::Error| format!("bind the {what} to {address}: {e}");
    let listener = std::net::TcpListener::bind(address).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let server = axum_server::from_tcp_rustls(listener, tls).map_err(bind)?;
    let task = tokio::spawn(async move {
        if let Err(error) = server.serve(router.into_make_service()).await {
            tracing::error!(%error, address = %local, "the {what} stopped");
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_is_offered_only_when_enabled() {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let (cert, key) = (generated.cert.pem(), generated.signing_key.serialize_pem());
        let plain = server_config(cert.as_bytes(), key.as_bytes(), false).expect("config");
        assert_eq!(plain.alpn_protocols, [b"http/1.1".to_vec()]);
        let both = server_config(cert.as_bytes(), key.as_bytes(), true).expect("config");
        assert_eq!(both.alpn_protocols.first().map(Vec::as_slice), Some(&b"h2"[..]));
        let error = server_config(b"", key.as_bytes(), false).expect_err("no certificate");
        assert!(error.contains("no certificate"), "{error}");
    }
}
