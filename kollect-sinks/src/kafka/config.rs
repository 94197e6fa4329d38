//! The Kafka sink's configuration: brokers, topic, message mode, security (TLS and SASL) and
//! topic provisioning, checked without connecting, and its librdkafka client properties.

use kollect_core::api::v1alpha1::{Compression, KollectEventSinkSpec, ProvisioningMode};
use kollect_core::error::Redactor;
use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::SinkError;

use crate::context::BuildContext;
use crate::events::{MessageMode, TlsSettings};
use crate::family::Unused;

/// The largest message the producer sends and a topic created in `ensure` mode accepts
/// (`max.message.bytes`): room for the default 1.5 MiB export ceiling and the event wrapper.
pub const MAX_MESSAGE_BYTES: u32 = 4 * 1024 * 1024;

/// The `spec.options` keys the Kafka sink reads.
pub const OPTIONS: &[&str] = &["messageMode", "saslMechanism", "partitions", "replicationFactor"];

/// SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (only over TLS: the password travels as is).
    Plain,
    /// `SCRAM-SHA-256` (the default when the Secret has a username, as in the Go operator).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
            _ => None,
        }
    }
}

/// SASL credentials.
#[derive(Clone)]
pub struct Sasl {
    /// Mechanism.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password (or token).
    pub password: String,
}

/// Configuration of a [`KafkaSink`](super::KafkaSink).
#[derive(Clone)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// Bootstrap brokers as `(host, port)`.
    pub brokers: Vec<(String, u16)>,
    /// Topic.
    pub topic: String,
    /// Cluster identity in keys, headers and values (`spec.cluster`, default empty).
    pub cluster: String,
    /// Snapshot or row messages.
    pub mode: MessageMode,
    /// Create the topic (`ensure`) or only use it (`existing`).
    pub provisioning: ProvisioningMode,
    /// Partitions of a created topic (`None`: the broker's default).
    pub partitions: Option<i32>,
    /// Replication factor of a created topic (`None`: the broker's default).
    pub replication_factor: Option<i32>,
    /// Producer compression.
    pub compression: Compression,
    /// TLS, when on.
    pub tls: Option<TlsSettings>,
    /// SASL, when the Secret has a username.
    pub sasl: Option<Sasl>,
    /// The SSRF guard every broker address is checked with.
    pub resolver: GuardedResolver,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("cluster", &self.cluster)
            .field("mode", &self.mode)
            .field("provisioning", &self.provisioning)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| s.mechanism))
            .finish_non_exhaustive()
    }
}

impl KafkaConfig {
    /// Snapshot messages to `topic` on `brokers` (`host:port` each), plaintext, no SASL, the
    /// topic created when missing.
    pub fn new(
        brokers: &[&str],
        topic: impl Into<String>,
        resolver: GuardedResolver,
    ) -> Result<Self, SinkError> {
        Ok(Self {
            brokers: parse_brokers(brokers.iter().copied())?,
            topic: topic.into(),
            cluster: String::new(),
            mode: MessageMode::Snapshot,
            provisioning: ProvisioningMode::Ensure,
            partitions: None,
            replication_factor: None,
            compression: Compression::None,
            tls: None,
            sasl: None,
            resolver,
        })
    }

    /// Reads a `KollectEventSink` spec (type `kafka`) with its resolved Secret, without
    /// connecting.
    pub fn from_spec(spec: &KollectEventSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        let kafka = spec
            .kafka
            .as_ref()
            .ok_or_else(|| SinkError::terminal("spec.kafka is required for type kafka"))?;
        if kafka.topic.trim().is_empty() {
            return Err(SinkError::terminal("spec.kafka.topic is required"));
        }
        let brokers = parse_brokers(kafka.brokers.iter().map(String::as_str))?;
        refuse_unused_fields(spec)?;
        let options = &spec.common.options;
        crate::events::check_options("kafka", options, OPTIONS)?;
        let mode = MessageMode::from_options(options)?;
        let mechanism = match options.get("saslMechanism") {
            None => None,
            Some(value) => Some(SaslMechanism::parse(value).ok_or_else(|| {
                SinkError::terminal(format!(
                    "spec.options.saslMechanism: {value:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ))
            })?),
        };
        let count = |key: &str, max: i32| -> Result<Option<i32>, SinkError> {
            options
                .get(key)
                .map(|value| {
                    value
                        .parse::<i32>()
                        .ok()
                        .filter(|n| (1..=max).contains(n))
                        .ok_or_else(|| {
                            SinkError::terminal(format!(
                                "spec.options.{key}: {value:?} is not a whole number from 1 to {max}"
                            ))
                        })
                })
                .transpose()
        };
        let secret = &context.secret;
        let username = secret.text("username");
        let password = secret
            .text("token")
            .or_else(|| secret.text("password"))
            .unwrap_or_default();
        let sasl = match (username, mechanism) {
            (Some(username), mechanism) => Some(Sasl {
                mechanism: mechanism.unwrap_or(SaslMechanism::ScramSha256),
                username,
                password,
            }),
            (None, Some(_)) => {
                return Err(SinkError::terminal(
                    "spec.options.saslMechanism is set but the credentials Secret has no username",
                ));
            }
            (None, None) => None,
        };
        let tls = TlsSettings::from_spec(&spec.common, &context, false)?;
        let config = KafkaConfig {
            brokers,
            topic: kafka.topic.trim().to_owned(),
            cluster: spec.common.cluster.clone().unwrap_or_default(),
            mode,
            provisioning: spec.common.provisioning_mode(),
            partitions: count("partitions", 10_000)?,
            replication_factor: count("replicationFactor", 32)?,
            compression: spec
                .common
                .serialization
                .as_ref()
                .and_then(|s| s.compression)
                .unwrap_or(Compression::None),
            tls,
            sasl,
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

    /// The same configuration with `provisioning`.
    pub fn with_provisioning(mut self, provisioning: ProvisioningMode) -> Self {
        self.provisioning = provisioning;
        self
    }

    /// The same configuration creating topics with these partitions and replication factor.
    pub fn with_topic_layout(mut self, partitions: Option<i32>, replication_factor: Option<i32>) -> Self {
        self.partitions = partitions;
        self.replication_factor = replication_factor;
        self
    }

    /// The same configuration authenticating with SASL.
    pub fn with_sasl(mut self, sasl: Option<Sasl>) -> Self {
        self.sasl = sasl;
        self
    }

    /// The same configuration speaking TLS.
    pub fn with_tls(mut self, tls: Option<TlsSettings>) -> Self {
        self.tls = tls;
        self
    }

    /// Checks what can be checked without connecting.
    pub fn check(&self) -> Result<(), SinkError> {
        if self.brokers.is_empty() {
            return Err(SinkError::terminal(
                "spec.kafka.brokers: at least one host:port is required",
            ));
        }
        if let Some(sasl) = &self.sasl {
            if sasl.password.is_empty() {
                return Err(SinkError::terminal(
                    "the credentials Secret has a username but neither password nor token",
                ));
            }
            if sasl.mechanism == SaslMechanism::Plain && self.tls.is_none() {
                return Err(SinkError::terminal(
                    "spec.options.saslMechanism PLAIN sends the password unencrypted: set spec.tls to use it over TLS, or use SCRAM",
                ));
            }
        }
        Ok(())
    }

    /// Values that must never appear in a message: the password and the client key.
    pub(super) fn redactor(&self) -> Redactor {
        let mut secrets = Vec::new();
        if let Some(sasl) = &self.sasl {
            secrets.push(sasl.password.clone());
        }
        if let Some((_, key)) = self.tls.as_ref().and_then(|t| t.client.as_ref()) {
            secrets.push(key.clone());
        }
        Redactor::new(secrets)
    }

    /// The librdkafka properties every client of this sink shares (connection and security).
    pub(super) fn client_properties(&self) -> Vec<(&'static str, String)> {
        let bootstrap = self
            .brokers
            .iter()
            .map(|(host, port)| format_broker(host, *port))
            .collect::<Vec<_>>()
            .join(",");
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        let mut properties = vec![
            ("bootstrap.servers", bootstrap),
            ("security.protocol", protocol.to_owned()),
            ("client.id", "kollect".to_owned()),
            ("allow.auto.create.topics", "false".to_owned()),
            ("socket.keepalive.enable", "true".to_owned()),
            ("reconnect.backoff.max.ms", "5000".to_owned()),
        ];
        if let Some(sasl) = &self.sasl {
            properties.push(("sasl.mechanisms", sasl.mechanism.as_str().to_owned()));
            properties.push(("sasl.username", sasl.username.clone()));
            properties.push(("sasl.password", sasl.password.clone()));
        }
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_pem {
                properties.push(("ssl.ca.pem", ca.clone()));
            }
            if let Some((cert, key)) = &tls.client {
                properties.push(("ssl.certificate.pem", cert.clone()));
                properties.push(("ssl.key.pem", key.clone()));
            }
            if tls.insecure_skip_verify {
                properties.push(("enable.ssl.certificate.verification", "false".to_owned()));
                properties.push(("ssl.endpoint.identification.algorithm", "none".to_owned()));
            } else {
                properties.push(("ssl.endpoint.identification.algorithm", "https".to_owned()));
            }
        }
        properties
    }

    /// The producer's own properties: idempotent, every in-sync replica acknowledging.
    pub(super) fn producer_properties(&self) -> Vec<(&'static str, String)> {
        let compression = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
        };
        let mut properties = self.client_properties();
        properties.extend([
            ("enable.idempotence", "true".to_owned()),
            ("acks", "all".to_owned()),
            ("compression.type", compression.to_owned()),
            ("message.max.bytes", (MAX_MESSAGE_BYTES + 64 * 1024).to_string()),
            ("delivery.timeout.ms", "120000".to_owned()),
            ("linger.ms", "5".to_owned()),
        ]);
        properties
    }
}

/// Fields of the shared sink spec that mean nothing for a topic.
fn refuse_unused_fields(spec: &KollectEventSinkSpec) -> Result<(), SinkError> {
    let common = &spec.common;
    crate::family::refuse_unused(
        "kafka",
        &[
            Unused::endpoint(common, "list the bootstrap brokers in spec.kafka.brokers"),
            Unused::path_template(common, "message keys are fixed by the message mode"),
            Unused::naming(common, "the topic is spec.kafka.topic"),
        ],
    )
}

/// `host:port` with brackets around IPv6 literals.
pub(super) fn format_broker(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `host:port` (or `[v6]:port`; port 9092 when absent) entries, dropping blank ones.
fn parse_brokers<'a>(brokers: impl Iterator<Item = &'a str>) -> Result<Vec<(String, u16)>, SinkError> {
    let mut parsed = Vec::new();
    for broker in brokers.map(str::trim).filter(|b| !b.is_empty()) {
        let invalid = || {
            SinkError::terminal(format!(
                "spec.kafka.brokers: {broker:?} is not host:port or [ipv6]:port"
            ))
        };
        let (host, port) = if let Some(rest) = broker.strip_prefix('[') {
            let (host, rest) = rest.split_once(']').ok_or_else(invalid)?;
            let port = match rest.strip_prefix(':') {
                Some(port) => port.parse().map_err(|_| invalid())?,
                None if rest.is_empty() => 9092,
                None => return Err(invalid()),
            };
            (host.to_owned(), port)
        } else {
            match broker.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => {
                    (host.to_owned(), port.parse().map_err(|_| invalid())?)
                }
                Some(_) => return Err(invalid()),
                None => (broker.to_owned(), 9092),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid());
        }
        parsed.push((host, port));
    }
    Ok(parsed)
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
        BuildContext::new("ns/kafka", NetPolicy::new(false)).with_secret(SecretData::new(
            secret
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
        ))
    }

    #[test]
    fn brokers_parse_with_default_ports_and_ipv6_brackets() {
        let parsed = parse_brokers(["kafka-0:9093", " ", "[fd00::1]:9094", "kafka-1"].into_iter()).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("kafka-0".to_owned(), 9093),
                ("fd00::1".to_owned(), 9094),
                ("kafka-1".to_owned(), 9092)
            ]
        );
        assert_eq!(format_broker("fd00::1", 9094), "[fd00::1]:9094");
        let error = parse_brokers(["kafka:port"].into_iter()).unwrap_err();
        assert_eq!(
            error.message(),
            "spec.kafka.brokers: \"kafka:port\" is not host:port or [ipv6]:port"
        );
    }

    #[test]
    fn options_and_secret_decide_mode_and_security() {
        let spec = spec(serde_json::json!({
            "type": "kafka",
            "kafka": {"brokers": ["kafka.example.com:9093"], "topic": "inventory"},
            "tls": {},
            "options": {"messageMode": "row", "saslMechanism": "scram-sha-512", "partitions": "6"}
        }));
        let config = KafkaConfig::from_spec(
            &spec,
            context(&[("username", "kollect"), ("password", "pw-1234")]),
        )
        .unwrap();
        assert_eq!(config.mode, MessageMode::Row);
        assert_eq!(config.partitions, Some(6));
        let properties = config.producer_properties();
        let get = |key: &str| {
            properties
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(get("allow.auto.create.topics"), Some("false"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("pw-1234"), "{printed}");
        assert_eq!(config.redactor().scrub("bad pw-1234"), "bad ***");
    }

    #[test]
    fn unknown_options_and_plain_without_tls_are_refused_by_name() {
        let base = serde_json::json!({
            "type": "kafka",
            "kafka": {"brokers": ["kafka:9092"], "topic": "inventory"},
        });
        let mut unknown = base.clone();
        unknown["options"] = serde_json::json!({"acks": "1"});
        let error = KafkaConfig::from_spec(&spec(unknown), context(&[])).unwrap_err();
        assert!(
            error
                .message()
                .starts_with("spec.options.acks: not a kafka option"),
            "{error}"
        );
        let mut plain = base.clone();
        plain["options"] = serde_json::json!({"saslMechanism": "PLAIN"});
        let error = KafkaConfig::from_spec(
            &spec(plain),
            context(&[("username", "u"), ("password", "pw-1234")]),
        )
        .unwrap_err();
        assert!(
            error.message().contains("PLAIN sends the password unencrypted"),
            "{error}"
        );
        let mut endpoint = base.clone();
        endpoint["endpoint"] = serde_json::json!("kafka:9092");
        let error = KafkaConfig::from_spec(&spec(endpoint), context(&[])).unwrap_err();
        assert_eq!(
            error.message(),
            "spec.endpoint is not used by kafka sinks: list the bootstrap brokers in spec.kafka.brokers"
        );
        let mut mode = base;
        mode["options"] = serde_json::json!({"messageMode": "rows"});
        let error = KafkaConfig::from_spec(&spec(mode), context(&[])).unwrap_err();
        assert_eq!(
            error.message(),
            "spec.options.messageMode: \"rows\" is not snapshot or row"
        );
    }
}
