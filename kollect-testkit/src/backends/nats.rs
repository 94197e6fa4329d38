//! NATS with JetStream from the Debian packages: plain, or with TLS (a throwaway CA, client
//! certificates optional or required) and authentication (users with passwords and an NKey,
//! a token, or operator mode with JWTs and a credentials file).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

use super::{BackendError, find, log_file, start_error, wait_for_port};
use crate::control_plane::free_port;

/// The user with a password on an [`NatsAuth::Users`] server.
pub const NATS_USER: &str = "kollect";
/// [`NATS_USER`]'s password.
pub const NATS_PASSWORD: &str = "nats-pw-3c9e1f";
/// A user that may call the JetStream API but publish to no stream subject.
pub const NATS_RESTRICTED_USER: &str = "reader";
/// [`NATS_RESTRICTED_USER`]'s password.
pub const NATS_RESTRICTED_PASSWORD: &str = "reader-pw-77a0";
/// The token of an [`NatsAuth::Token`] server.
pub const NATS_TOKEN: &str = "nats-token-5b2d8a";

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// Anyone may connect.
    #[default]
    None,
    /// [`NATS_USER`] with [`NATS_PASSWORD`], [`NATS_RESTRICTED_USER`], and a user NKey
    /// ([`Nats::nkey_seed`]).
    Users,
    /// [`NATS_TOKEN`].
    Token,
    /// Operator mode: an operator, an account with JetStream, and a user whose credentials
    /// file is [`Nats::creds`].
    Operator,
}

/// Whether the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatsTls {
    /// Plain TCP.
    #[default]
    Off,
    /// TLS with a certificate of a throwaway CA ([`Nats::pki`]).
    Server,
    /// TLS that also requires a client certificate of that CA.
    Mutual,
}

/// How to start a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatsOptions {
    /// Authentication.
    pub auth: NatsAuth,
    /// TLS.
    pub tls: NatsTls,
}

/// A NATS server with JetStream enabled.
#[derive(Debug)]
pub struct Nats {
    server: super::ServerProcess,
    binary: PathBuf,
    options: NatsOptions,
    pki: Option<crate::pki::ServingPki>,
    nkey_seed: Option<String>,
    creds: Option<String>,
}

/// One message of a stream as a consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsRecord {
    /// Subject.
    pub subject: String,
    /// Stream sequence.
    pub sequence: u64,
    /// Headers sorted by name (one entry per value).
    pub headers: Vec<(String, String)>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl NatsRecord {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Nats {
    /// Starts `nats-server` with JetStream, no TLS and no authentication.
    pub fn start() -> Result<Self, BackendError> {
        Self::start_with(NatsOptions::default())
    }

    /// Starts `nats-server` with JetStream on a free port, its store in a temporary directory.
    pub fn start_with(options: NatsOptions) -> Result<Self, BackendError> {
        let fail = |e: &dyn std::fmt::Display| start_error("nats", e.to_string(), None);
        let binary = find(
            "nats-server",
            &[PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")],
        )?;
        let dir = tempfile::Builder::new()
            .prefix("kollect-nats-")
            .tempdir()
            .map_err(|e| fail(&e))?;
        let port = free_port().map_err(|e| fail(&e))?;
        let pki = match options.tls {
            NatsTls::Off => None,
            NatsTls::Server | NatsTls::Mutual => Some(crate::pki::serving_pki("nats").map_err(|e| fail(&e))?),
        };
        let mut config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n",
            dir.path().join("jetstream").display().to_string()
        );
        let mut nkey_seed = None;
        let mut creds = None;
        match options.auth {
            NatsAuth::None => {}
            NatsAuth::Users => {
                let user = nkeys::KeyPair::new_user();
                config.push_str(&format!(
                    "authorization {{\n  users = [\n    {{ user: {NATS_USER:?}, password: {NATS_PASSWORD:?} }}\n    {{ nkey: {:?} }}\n    {{ user: {NATS_RESTRICTED_USER:?}, password: {NATS_RESTRICTED_PASSWORD:?}, permissions: {{ publish: {{ allow: [\"$JS.API.>\", \"_INBOX.>\"] }}, subscribe: {{ allow: [\"_INBOX.>\"] }} }} }}\n  ]\n}}\n",
                    user.public_key()
                ));
                nkey_seed = Some(user.seed().map_err(|e| fail(&e))?);
            }
            NatsAuth::Token => config.push_str(&format!("authorization {{ token: {NATS_TOKEN:?} }}\n")),
            NatsAuth::Operator => {
                let (server_config, user_creds) = operator_mode(dir.path()).map_err(|e| fail(&e))?;
                config.push_str(&server_config);
                creds = Some(user_creds);
            }
        }
        if let Some(pki) = &pki {
            for (name, pem) in [
                ("ca.pem", &pki.ca_pem),
                ("cert.pem", &pki.cert_pem),
                ("key.pem", &pki.key_pem),
            ] {
                std::fs::write(dir.path().join(name), pem).map_err(|e| fail(&e))?;
            }
            config.push_str(&format!(
                "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: {}\n}}\n",
                dir.path().join("cert.pem").display().to_string(),
                dir.path().join("key.pem").display().to_string(),
                dir.path().join("ca.pem").display().to_string(),
                options.tls == NatsTls::Mutual,
            ));
        }
        std::fs::write(dir.path().join("nats.conf"), config).map_err(|e| fail(&e))?;
        let child = launch(&binary, dir.path(), port, "nats.log")?;
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
            binary,
            options,
            pki,
            nkey_seed,
            creds,
        })
    }

    /// The server URL: `nats://127.0.0.1:<port>`, or `tls://localhost:<port>` with TLS (the
    /// certificate names `localhost`).
    pub fn url(&self) -> String {
        match self.options.tls {
            NatsTls::Off => format!("nats://127.0.0.1:{}", self.server.port),
            NatsTls::Server | NatsTls::Mutual => format!("tls://localhost:{}", self.server.port),
        }
    }

    /// The CA, serving and client certificates when the server speaks TLS.
    pub fn pki(&self) -> Option<&crate::pki::ServingPki> {
        self.pki.as_ref()
    }

    /// The seed of the user NKey an [`NatsAuth::Users`] server accepts.
    pub fn nkey_seed(&self) -> Option<&str> {
        self.nkey_seed.as_deref()
    }

    /// The credentials file (user JWT and seed) of an [`NatsAuth::Operator`] server.
    pub fn creds(&self) -> Option<&str> {
        self.creds.as_deref()
    }

    /// Kills the server (its store stays): clients see it go away.
    pub fn stop(&mut self) {
        self.server.kill();
    }

    /// Starts the server again on the same port with the same store.
    pub fn resume(&mut self) -> Result<(), BackendError> {
        let child = launch(
            &self.binary,
            self.server.dir(),
            self.server.port,
            "nats-restart.log",
        )?;
        self.server.respawn(child);
        Ok(())
    }

    /// [`Nats::stop`], then [`Nats::resume`].
    pub fn restart(&mut self) -> Result<(), BackendError> {
        self.stop();
        self.resume()
    }

    /// A client connected with the server's full-rights credentials.
    pub async fn client(&self) -> Result<async_nats::Client, String> {
        let mut options = async_nats::ConnectOptions::new().name("kollect-testkit");
        options = match self.options.auth {
            NatsAuth::None => options,
            NatsAuth::Users => options.user_and_password(NATS_USER.to_owned(), NATS_PASSWORD.to_owned()),
            NatsAuth::Token => options.token(NATS_TOKEN.to_owned()),
            NatsAuth::Operator => options
                .credentials(self.creds.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?,
        };
        if let Some(pki) = &self.pki {
            options = options.tls_client_config(client_tls(pki, self.options.tls == NatsTls::Mutual)?);
        }
        options.connect(self.url()).await.map_err(|e| e.to_string())
    }

    /// The names of the streams on the server.
    pub async fn stream_names(&self) -> Result<Vec<String>, String> {
        use futures::TryStreamExt as _;
        let jetstream = async_nats::jetstream::new(self.client().await?);
        jetstream
            .stream_names()
            .try_collect()
            .await
            .map_err(|e| e.to_string())
    }

    /// The configuration of stream `name`.
    pub async fn stream_config(&self, name: &str) -> Result<async_nats::jetstream::stream::Config, String> {
        let jetstream = async_nats::jetstream::new(self.client().await?);
        let mut stream = jetstream.get_stream(name).await.map_err(|e| e.to_string())?;
        Ok(stream.info().await.map_err(|e| e.to_string())?.config.clone())
    }

    /// How many messages stream `name` holds now.
    pub async fn message_count(&self, name: &str) -> Result<u64, String> {
        let jetstream = async_nats::jetstream::new(self.client().await?);
        let mut stream = jetstream.get_stream(name).await.map_err(|e| e.to_string())?;
        Ok(stream.info().await.map_err(|e| e.to_string())?.state.messages)
    }

    /// Every message stream `name` holds now, in sequence order.
    pub async fn records(&self, name: &str) -> Result<Vec<NatsRecord>, String> {
        use futures::StreamExt as _;
        let jetstream = async_nats::jetstream::new(self.client().await?);
        let stream = jetstream.get_stream(name).await.map_err(|e| e.to_string())?;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut remaining = consumer.cached_info().num_pending;
        let mut records = Vec::new();
        if remaining == 0 {
            return Ok(records);
        }
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        while remaining > 0 {
            let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .map_err(|_| format!("reading stream {name} stalled with {remaining} messages to go"))?
                .ok_or("the consumer ended early")?
                .map_err(|e| e.to_string())?;
            let info = message.info().map_err(|e| e.to_string())?;
            remaining = info.pending;
            let sequence = info.stream_sequence;
            let mut headers: Vec<(String, String)> = message
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_owned()))
                })
                .collect();
            // The client keeps headers in a hash map: sorted, two reads of a message compare equal.
            headers.sort();
            records.push(NatsRecord {
                subject: message.subject.to_string(),
                sequence,
                headers,
                payload: message.payload.to_vec(),
            });
        }
        Ok(records)
    }
}

fn launch(binary: &Path, dir: &Path, port: u16, log: &str) -> Result<Child, BackendError> {
    let log = dir.join(log);
    let (out, err) = log_file(&log)?;
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(dir.join("nats.conf"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| start_error("nats", format!("start nats-server: {e}"), None))?;
    wait_for_port("nats", port, &mut child, &log, Duration::from_secs(20))?;
    Ok(child)
}

/// A client TLS configuration trusting the throwaway CA, presenting its client certificate
/// when `mutual`.
fn client_tls(pki: &crate::pki::ServingPki, mutual: bool) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    if !mutual {
        return Ok(builder.with_no_client_auth());
    }
    let chain = CertificateDer::pem_slice_iter(pki.client_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).map_err(|e| e.to_string())?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())
}

/// A signed NATS JWT (`ed25519-nkey`) with `claims`, issued by `issuer`.
fn jwt(mut claims: serde_json::Value, issuer: &nkeys::KeyPair) -> Result<String, String> {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    claims["iss"] = issuer.public_key().into();
    claims["iat"] = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .into();
    claims["jti"] = format!("kollect-testkit-{}", claims["sub"].as_str().unwrap_or_default()).into();
    let header = encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    let signature = issuer.sign(signing_input.as_bytes()).map_err(|e| e.to_string())?;
    Ok(format!("{signing_input}.{}", encode(&signature)))
}

/// Operator-mode server configuration (an operator, one account with JetStream, preloaded in
/// a memory resolver) and the credentials file of a user of that account.
fn operator_mode(dir: &Path) -> Result<(String, String), String> {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    // JetStream needs a system account in operator mode.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        serde_json::json!({"sub": system.public_key(), "name": "SYS", "nats": {"type": "account", "version": 2}}),
        &operator,
    )?;
    let operator_jwt = jwt(
        serde_json::json!({"sub": operator.public_key(), "name": "kollect-testkit", "nats": {"type": "operator", "version": 2}}),
        &operator,
    )?;
    let account_jwt = jwt(
        serde_json::json!({
            "sub": account.public_key(),
            "name": "kollect",
            "nats": {
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
                },
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account",
                "version": 2
            }
        }),
        &operator,
    )?;
    let user_jwt = jwt(
        serde_json::json!({
            "sub": user.public_key(),
            "name": "kollect",
            "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}
        }),
        &account,
    )?;
    let operator_file = dir.join("operator.jwt");
    std::fs::write(&operator_file, &operator_jwt).map_err(|e| e.to_string())?;
    let config = format!(
        "operator: {:?}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {:?}\n  {}: {:?}\n}}\n",
        operator_file.display().to_string(),
        system.public_key(),
        account.public_key(),
        account_jwt,
        system.public_key(),
        system_jwt
    );
    let seed = user.seed().map_err(|e| e.to_string())?;
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    Ok((config, creds))
}
