//! The NATS sink's configuration: servers, subject template, stream, message mode,
//! authentication and TLS, checked without connecting.

use kollect_core::api::v1alpha1::{Compression, KollectEventSinkSpec, ProvisioningMode};
use kollect_core::error::Redactor;
use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::SinkError;

use super::subject::SubjectTemplate;
use crate::context::BuildContext;
use crate::events::{MessageMode, TlsSettings};
use crate::family::Unused;

/// The stream used when `spec.nats.stream` is not set (the Go operator's default).
pub const DEFAULT_STREAM: &str = "kollect_events";

/// The `spec.options` keys the NATS sink reads.
pub const OPTIONS: &[&str] = &["messageMode", "replicas"];

/// How the client authenticates, from the credentials Secret.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// `token`.
    Token(String),
    /// `username` and `password`.
    UserPassword {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `nkey`: a user NKey seed (`SU...`).
    NKey(String),
    /// `creds`: the contents of a `.creds` file (user JWT and NKey seed).
    Credentials(String),
}

impl NatsAuth {
    /// What kind of credentials these are, for messages (never the values).
    pub fn kind(&self) -> &'static str {
        match self {
            NatsAuth::None => "none",
            NatsAuth::Token(_) => "token",
            NatsAuth::UserPassword { .. } => "username/password",
            NatsAuth::NKey(_) => "nkey",
            NatsAuth::Credentials(_) => "creds",
        }
    }

    /// Reads the credentials Secret: `creds`, `nkey`, `token`, or `username` + `password`.
    /// `token` wins over `username`/`password` as in the Go operator; any other combination
    /// of two methods is refused rather than guessed.
    fn from_secret(secret: &crate::secret::SecretData) -> Result<Self, SinkError> {
        let creds = secret.text("creds");
        let nkey = secret.text("nkey");
        let token = secret.text("token");
        let username = secret.text("username");
        let present: Vec<&str> = [
            ("creds", creds.is_some()),
            ("nkey", nkey.is_some()),
            ("token or username", token.is_some() || username.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if present.len() > 1 {
            return Err(SinkError::terminal(format!(
                "the credentials Secret holds more than one NATS authentication method ({}): keep one",
                present.join(", ")
            )));
        }
        Ok(match (creds, nkey, token, username) {
            (Some(creds), ..) => NatsAuth::Credentials(creds),
            (_, Some(seed), ..) => {
                if !seed.starts_with("SU") {
                    return Err(SinkError::terminal(
                        "nkey in the credentials Secret is not a user NKey seed (it starts with SU)",
                    ));
                }
                NatsAuth::NKey(seed)
            }
            (_, _, Some(token), _) => NatsAuth::Token(token),
            (_, _, None, Some(username)) => NatsAuth::UserPassword {
                username,
                password: secret.text("password").ok_or_else(|| {
                    SinkError::terminal("the credentials Secret has a username but no password")
                })?,
            },
            (None, None, None, None) => NatsAuth::None,
        })
    }

    fn secret_values(&self) -> Vec<String> {
        match self {
            NatsAuth::None => Vec::new(),
            NatsAuth::Token(token) => vec![token.clone()],
            NatsAuth::UserPassword { password, .. } => vec![password.clone()],
            NatsAuth::NKey(seed) => vec![seed.clone()],
            NatsAuth::Credentials(creds) => creds
                .lines()
                .map(str::trim)
                .filter(|l| l.len() > 16 && !l.starts_with("---") && !l.starts_with('*'))
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// Configuration of a [`NatsSink`](super::NatsSink).
#[derive(Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URLs (`nats://host:4222`, `tls://host:4222` or `host:port`).
    pub servers: Vec<String>,
    /// Where messages go.
    pub subject: SubjectTemplate,
    /// JetStream stream that captures the subjects.
    pub stream: String,
    /// Cluster identity in subjects, headers and values (`spec.cluster`, default empty).
    pub cluster: String,
    /// Snapshot or row messages.
    pub mode: MessageMode,
    /// Create the stream (`ensure`) or only use it (`existing`).
    pub provisioning: ProvisioningMode,
    /// Replicas of a created stream.
    pub replicas: usize,
    /// Credentials.
    pub auth: NatsAuth,
    /// TLS, when required.
    pub tls: Option<TlsSettings>,
    /// The SSRF guard every server address is checked with.
    pub resolver: GuardedResolver,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("servers", &self.servers)
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .field("cluster", &self.cluster)
            .field("mode", &self.mode)
            .field("provisioning", &self.provisioning)
            .field("auth", &self.auth.kind())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl NatsConfig {
    /// Snapshot messages on `subject` (a template) in the default stream, no credentials, the
    /// stream created when missing.
    pub fn new(server: &str, subject: &str, resolver: GuardedResolver) -> Result<Self, SinkError> {
        Ok(Self {
            servers: parse_servers(server, "spec.nats.url")?,
            subject: SubjectTemplate::parse(subject).map_err(SinkError::terminal)?,
            stream: DEFAULT_STREAM.to_owned(),
            cluster: String::new(),
            mode: MessageMode::Snapshot,
            provisioning: ProvisioningMode::Ensure,
            replicas: 1,
            auth: NatsAuth::None,
            tls: None,
            resolver,
        })
    }

    /// Reads a `KollectEventSink` spec (type `nats`) with its resolved Secret, without
    /// connecting.
    pub fn from_spec(spec: &KollectEventSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        let nats = spec
            .nats
            .as_ref()
            .ok_or_else(|| SinkError::terminal("spec.nats is required for type nats"))?;
        let common = &spec.common;
        let url = nats.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let endpoint = common
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let (servers, field) = match (url, endpoint) {
            (Some(url), Some(endpoint)) if url != endpoint => {
                return Err(SinkError::terminal(
                    "spec.nats.url and spec.endpoint are both set and differ: keep spec.nats.url",
                ));
            }
            (Some(url), _) => (url, "spec.nats.url"),
            (None, Some(endpoint)) => (endpoint, "spec.endpoint"),
            (None, None) => {
                return Err(SinkError::terminal(
                    "nats sinks need spec.nats.url or spec.endpoint",
                ));
            }
        };
        let servers = parse_servers(servers, field)?;
        refuse_unused_fields(spec)?;
        let options = &common.options;
        crate::events::check_options("nats", options, OPTIONS)?;
        let mode = MessageMode::from_options(options)?;
        let replicas = match options.get("replicas") {
            None => 1,
            Some(value) => value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| {
                    SinkError::terminal(format!(
                        "spec.options.replicas: {value:?} is not a whole number from 1 to 5"
                    ))
                })?,
        };
        let tls_url = servers.iter().any(|s| s.starts_with("tls://"));
        let tls = TlsSettings::from_spec(common, &context, tls_url)?;
        let config = NatsConfig {
            servers,
            subject: SubjectTemplate::parse(&nats.subject).map_err(SinkError::terminal)?,
            stream: stream_name(nats.stream.as_deref())?,
            cluster: common.cluster.clone().unwrap_or_default(),
            mode,
            provisioning: common.provisioning_mode(),
            replicas,
            auth: NatsAuth::from_secret(&context.secret)?,
            tls,
            resolver: GuardedResolver::new(context.net_policy),
        };
        config.check()?;
        Ok(config)
    }

    /// The same configuration publishing `mode` messages.
    pub fn with_mode(mut self, mode: MessageMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same configuration with a cluster identity.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// The same configuration using stream `stream` (`.` becomes `_`).
    pub fn with_stream(mut self, stream: &str) -> Result<Self, SinkError> {
        self.stream = stream_name(Some(stream))?;
        Ok(self)
    }

    /// The same configuration with `provisioning`.
    pub fn with_provisioning(mut self, provisioning: ProvisioningMode) -> Self {
        self.provisioning = provisioning;
        self
    }

    /// The same configuration authenticating with `auth`.
    pub fn with_auth(mut self, auth: NatsAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The same configuration speaking TLS.
    pub fn with_tls(mut self, tls: Option<TlsSettings>) -> Self {
        self.tls = tls;
        self
    }

    /// Checks what can be checked without connecting.
    pub fn check(&self) -> Result<(), SinkError> {
        if self.cluster.chars().any(char::is_control) {
            return Err(SinkError::terminal(
                "spec.cluster contains control characters, which a message header cannot carry",
            ));
        }
        if self.mode == MessageMode::Row && !self.subject.is_per_inventory() {
            return Err(SinkError::terminal(
                "spec.nats.subject must contain {cluster}, {namespace} and {name} for messageMode row, so every row has a subject of its own (e.g. kollect.{cluster}.{namespace}.{name})",
            ));
        }
        if let NatsAuth::Credentials(creds) = &self.auth
            && !(creds.contains("BEGIN NATS USER JWT") && creds.contains("BEGIN USER NKEY SEED"))
        {
            return Err(SinkError::terminal(
                "creds in the credentials Secret is not a NATS credentials file (a user JWT and an NKey seed block)",
            ));
        }
        Ok(())
    }

    /// Values that must never appear in a message: passwords, tokens, seeds and client keys.
    pub(super) fn redactor(&self) -> Redactor {
        let mut secrets = self.auth.secret_values();
        if let Some((_, key)) = self.tls.as_ref().and_then(|t| t.client.as_ref()) {
            secrets.push(key.clone());
        }
        Redactor::new(secrets)
    }
}

/// `spec.nats.stream` or the default, with `.` replaced by `_` (stream names cannot contain
/// dots), refusing characters a stream name cannot hold.
fn stream_name(stream: Option<&str>) -> Result<String, SinkError> {
    let name = stream
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_STREAM)
        .replace('.', "_");
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>' | '/' | '\\'))
    {
        return Err(SinkError::terminal(format!(
            "spec.nats.stream {name:?}: a stream name cannot contain whitespace, '*', '>', '/' or '\\'"
        )));
    }
    Ok(name)
}

/// Splits a comma-separated server list and checks each entry's form.
fn parse_servers(value: &str, field: &str) -> Result<Vec<String>, SinkError> {
    let mut servers = Vec::new();
    for server in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let invalid = |why: &str| SinkError::terminal(format!("{field}: {server:?} {why}"));
        let rest = match server.split_once("://") {
            Some(("nats" | "tls", rest)) => rest,
            Some((scheme, _)) => {
                return Err(invalid(&format!("has scheme {scheme:?}; use nats:// or tls://")));
            }
            None => server,
        };
        if rest.contains('@') {
            return Err(invalid(
                "carries a user name or password: keep credentials out of the URL (the sink reads them from its credentials reference)",
            ));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(invalid("is not host:port"));
        }
        servers.push(server.to_owned());
    }
    if servers.is_empty() {
        return Err(SinkError::terminal(format!("{field}: no server URL")));
    }
    Ok(servers)
}

/// Fields of the shared sink spec that mean nothing for a stream.
fn refuse_unused_fields(spec: &KollectEventSinkSpec) -> Result<(), SinkError> {
    let common = &spec.common;
    let compressed = common
        .serialization
        .as_ref()
        .and_then(|s| s.compression)
        .is_some_and(|c| c != Compression::None);
    crate::family::refuse_unused(
        "nats",
        &[
            Unused::path_template(common, "the subject is spec.nats.subject"),
            Unused::naming(common, "the stream is spec.nats.stream"),
            Unused::field(
                "spec.serialization.compression",
                compressed,
                "NATS messages are sent uncompressed (a stream can compress at rest)",
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretData;
    use kollect_core::netguard::NetPolicy;

    fn spec(value: serde_json::Value) -> KollectEventSinkSpec {
        serde_json::from_value(value).unwrap()
    }

    fn context(secret: &[(&str, &str)]) -> BuildContext {
        BuildContext::new("ns/nats", NetPolicy::new(false)).with_secret(SecretData::new(
            secret
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
        ))
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "type": "nats",
            "nats": {"url": "nats://nats.example.com:4222", "subject": "kollect.{cluster}.{namespace}.{name}", "stream": "kollect.events"},
        })
    }

    #[test]
    fn a_spec_reads_servers_stream_mode_and_credentials() {
        let mut value = base();
        value["options"] = serde_json::json!({"messageMode": "row", "replicas": "3"});
        value["nats"]["url"] = serde_json::json!("nats://a.example.com:4222, tls://b.example.com:4222");
        let config = NatsConfig::from_spec(
            &spec(value),
            context(&[("username", "kollect"), ("password", "pw-1234")]),
        )
        .unwrap();
        assert_eq!(
            config.servers,
            ["nats://a.example.com:4222", "tls://b.example.com:4222"]
        );
        assert_eq!(config.stream, "kollect_events");
        assert_eq!(config.mode, MessageMode::Row);
        assert_eq!(config.replicas, 3);
        assert!(config.tls.is_some(), "a tls:// URL turns TLS on");
        assert_eq!(config.auth.kind(), "username/password");
        let printed = format!("{config:?}");
        assert!(!printed.contains("pw-1234"), "{printed}");
        assert_eq!(config.redactor().scrub("bad pw-1234"), "bad ***");
    }

    #[test]
    fn the_secret_picks_one_authentication_method() {
        let auth = |secret: &[(&str, &str)]| NatsAuth::from_secret(&context(secret).secret);
        assert_eq!(auth(&[]).unwrap().kind(), "none");
        assert_eq!(
            auth(&[("token", "t"), ("username", "u")]).unwrap().kind(),
            "token"
        );
        assert_eq!(auth(&[("nkey", "SUABC")]).unwrap().kind(), "nkey");
        let error = auth(&[("nkey", "UABC")]).err().unwrap();
        assert!(error.message().contains("not a user NKey seed"), "{error}");
        let error = auth(&[("creds", "x"), ("token", "t")]).err().unwrap();
        assert_eq!(
            error.message(),
            "the credentials Secret holds more than one NATS authentication method (creds, token or username): keep one"
        );
        let error = auth(&[("username", "u")]).err().unwrap();
        assert!(error.message().contains("no password"), "{error}");
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value = base();
            edit(&mut value);
            NatsConfig::from_spec(&spec(value), context(&[]))
                .unwrap_err()
                .message()
                .to_owned()
        };
        assert!(
            refused(&|v| v["options"] = serde_json::json!({"acks": "1"}))
                .starts_with("spec.options.acks: not a nats option")
        );
        assert_eq!(
            refused(&|v| v["options"] = serde_json::json!({"messageMode": "rows"})),
            "spec.options.messageMode: \"rows\" is not snapshot or row"
        );
        assert!(
            refused(&|v| {
                v["nats"]["subject"] = serde_json::json!("inventory.events");
                v["options"] = serde_json::json!({"messageMode": "row"});
            })
            .contains("must contain {cluster}, {namespace} and {name} for messageMode row")
        );
        assert_eq!(
            refused(&|v| v["endpoint"] = serde_json::json!("nats://other:4222")),
            "spec.nats.url and spec.endpoint are both set and differ: keep spec.nats.url"
        );
        assert!(
            refused(&|v| v["nats"]["url"] = serde_json::json!("nats://u:p@nats:4222"))
                .contains("carries a user name or password")
        );
        assert!(
            refused(&|v| v["nats"]["url"] = serde_json::json!("ws://nats:80"))
                .contains("use nats:// or tls://")
        );
        assert_eq!(
            refused(&|v| v["pathTemplate"] = serde_json::json!("x")),
            "spec.pathTemplate is not used by nats sinks: the subject is spec.nats.subject"
        );
        assert!(
            refused(&|v| v["serialization"] = serde_json::json!({"compression": "gzip"}))
                .starts_with("spec.serialization.compression is not used by nats sinks")
        );
        assert!(
            refused(&|v| v["nats"]["stream"] = serde_json::json!("a b"))
                .contains("cannot contain whitespace")
        );
    }

    #[test]
    fn spec_endpoint_is_the_fallback_server() {
        let mut value = base();
        value["nats"].as_object_mut().unwrap().remove("url");
        value["endpoint"] = serde_json::json!("nats.example.com:4222");
        let config = NatsConfig::from_spec(&spec(value), context(&[])).unwrap();
        assert_eq!(config.servers, ["nats.example.com:4222"]);
        assert!(config.tls.is_none());
    }
}
