//! TLS material shared by every backend that speaks TLS through rustls: CA bundles from
//! `spec.tls` (inline or from a Secret) as root stores, client configurations, and checking a
//! certificate a non-rustls transport (libgit2) presents.

use std::sync::Arc;

#[cfg(any(
    feature = "postgres",
    feature = "object",
    feature = "nats",
    feature = "bigquery",
    feature = "gitlab"
))]
use kollect_core::sink::SinkError;
use rustls::RootCertStore;
#[cfg(any(
    feature = "git",
    feature = "object",
    feature = "nats",
    feature = "bigquery",
    feature = "gitlab"
))]
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
#[cfg(any(
    feature = "git",
    feature = "object",
    feature = "nats",
    feature = "bigquery",
    feature = "gitlab"
))]
use rustls_pki_types::{ServerName, UnixTime};

/// The certificates of a PEM bundle as a root store.
pub(crate) fn roots_from_pem(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(certificate.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting the public web roots and, when given, the CA certificates of
/// `ca_pem` (`spec.tls`).
#[cfg(any(
    feature = "postgres",
    feature = "object",
    feature = "bigquery",
    feature = "gitlab"
))]
pub(crate) fn client_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, SinkError> {
    Ok(verifying_builder(ca_pem)?.with_no_client_auth())
}

#[cfg(any(
    feature = "postgres",
    feature = "object",
    feature = "nats",
    feature = "bigquery",
    feature = "gitlab"
))]
fn verifying_builder(
    ca_pem: Option<&str>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, SinkError> {
    let mut roots = match ca_pem {
        Some(pem) => {
            roots_from_pem(pem).map_err(|e| SinkError::terminal(format!("spec.tls CA bundle: {e}")))?
        }
        None => RootCertStore::empty(),
    };
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::terminal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots))
}

/// A client configuration that accepts any server certificate (`spec.tls.insecureSkipVerify`);
/// signatures are still checked, so the peer must hold the key of the certificate it shows.
#[cfg(any(feature = "object", feature = "bigquery", feature = "gitlab"))]
pub(crate) fn insecure_client_config() -> Result<rustls::ClientConfig, SinkError> {
    Ok(insecure_builder()?.with_no_client_auth())
}

#[cfg(any(
    feature = "object",
    feature = "nats",
    feature = "bigquery",
    feature = "gitlab"
))]
fn insecure_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, SinkError> {
    let provider = provider();
    Ok(rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::terminal(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))))
}

/// A client configuration for `spec.tls`: the CA bundle (or, with `insecure`, no verification)
/// and, when given, a client certificate chain and key (PEM) from the credentials Secret.
#[cfg(feature = "nats")]
pub(crate) fn client_config_with_identity(
    ca_pem: Option<&str>,
    insecure: bool,
    identity: Option<(&str, &str)>,
) -> Result<rustls::ClientConfig, SinkError> {
    let builder = if insecure {
        insecure_builder()?
    } else {
        verifying_builder(ca_pem)?
    };
    let Some((cert_pem, key_pem)) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SinkError::terminal(format!("tls.crt in the credentials Secret: {e}")))?;
    if chain.is_empty() {
        return Err(SinkError::terminal(
            "tls.crt in the credentials Secret holds no certificate",
        ));
    }
    // The key's parse error never includes the key material.
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| SinkError::terminal(format!("tls.key in the credentials Secret: {e}")))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| SinkError::terminal(format!("client certificate: {e}")))
}

#[cfg(any(
    feature = "object",
    feature = "nats",
    feature = "bigquery",
    feature = "gitlab"
))]
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

#[cfg(any(
    feature = "object",
    feature = "nats",
    feature = "bigquery",
    feature = "gitlab"
))]
impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies a server certificate (DER) for `host` against the CA certificates in `pem`, for
/// transports that hand the certificate to us instead of using rustls themselves.
#[cfg(feature = "git")]
pub(crate) fn verify_with_ca(pem: &str, der: &[u8], host: &str) -> Result<(), String> {
    let roots = roots_from_pem(pem)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(
            &CertificateDer::from(der.to_vec()),
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(all(test, any(feature = "postgres", feature = "object", feature = "bigquery")))]
mod tests {
    use super::*;

    #[test]
    fn a_bad_bundle_names_the_field() {
        let pem = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        let error = client_config(Some(pem)).unwrap_err();
        assert!(error.message().starts_with("spec.tls CA bundle: "), "{error}");
        assert!(client_config(None).is_ok());
    }
}
