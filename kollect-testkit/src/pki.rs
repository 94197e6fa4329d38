//! Throwaway certificates for loopback test servers: a CA, a serving certificate for
//! `localhost` and `127.0.0.1` and a client certificate, both signed by it.

/// A CA and a serving certificate with its key, all PEM.
#[derive(Clone)]
pub struct ServingPki {
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
    /// A client certificate (common name `kollect-client`) for servers that require one.
    pub client_cert_pem: String,
    /// The client certificate's private key.
    pub client_key_pem: String,
}

impl std::fmt::Debug for ServingPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingPki").finish_non_exhaustive()
    }
}

/// Generates a CA and a serving certificate named `common_name` for `localhost` and
/// `127.0.0.1`.
pub fn serving_pki(common_name: &str) -> Result<ServingPki, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kollect-testkit-ca");
    let ca = ca_params.self_signed(&ca_key)?;
    let serving_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&serving_key, &issuer)?;
    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kollect-client");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &issuer)?;
    Ok(ServingPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: serving_key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}
