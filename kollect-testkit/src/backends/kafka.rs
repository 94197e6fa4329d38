//! A single-node Kafka broker in KRaft mode (broker and controller in one JVM), from the Maven
//! Central jars `hack/install-kafka.sh` resolves, run with the machine's `java`.
//!
//! Three client listeners: `PLAINTEXT` on `127.0.0.1`; `SASL_SSL` on `localhost` with `PLAIN`,
//! `SCRAM-SHA-256` and `SCRAM-SHA-512` for one user (SCRAM credentials are written when the log
//! directory is formatted); and `SSL` on `localhost` requiring a client certificate. The TLS
//! listeners serve a certificate of a throwaway CA ([`Kafka::pki`]). The standard authorizer
//! runs, so a user without ACLs ([`KAFKA_UNAUTHORIZED_USER`]) is refused access to topics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{BackendError, find, log_file, start_error, temp_dir, wait_for_port};
use crate::control_plane::free_port;

/// A running Kafka broker.
#[derive(Debug)]
pub struct Kafka {
    server: super::ServerProcess,
    sasl_port: u16,
    mtls_port: u16,
    pki: crate::pki::ServingPki,
    java: PathBuf,
    classpath: String,
    config: PathBuf,
}

/// Starts the broker JVM with `config`, logging to `log`, and waits for its listener.
fn launch(java: &Path, classpath: &str, config: &Path, log: &Path, port: u16) -> Result<Child, BackendError> {
    let (out, err) = log_file(log)?;
    let mut child = Command::new(java)
        .args([
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            classpath,
            "kafka.Kafka",
        ])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| start_error("kafka", format!("start the broker: {e}"), None))?;
    wait_for_port("kafka", port, &mut child, log, Duration::from_secs(90))?;
    Ok(child)
}

/// The SASL user of the `SASL_SSL` listener.
pub const KAFKA_USER: &str = "kollect";
/// Its password (also the password of [`KAFKA_UNAUTHORIZED_USER`]).
pub const KAFKA_PASSWORD: &str = "kollect-test-secret-4711";
/// A SCRAM-SHA-256 user that authenticates but is granted nothing: the broker runs the
/// standard authorizer, and only the listeners' own principals ([`KAFKA_USER`], the client
/// certificate, plaintext's anonymous user) are super users.
pub const KAFKA_UNAUTHORIZED_USER: &str = "outsider";

/// A PEM value as one line of a Java properties file.
fn property_pem(pem: &str) -> String {
    pem.trim().replace('\n', "\\n")
}

/// The newest complete jar folder under `$KOLLECT_CACHE/kafka/<version>/libs`.
fn kafka_libs() -> Result<PathBuf, BackendError> {
    let root = crate::control_plane::cache_dir().join("kafka");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(".complete").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|v| v.join("libs"))
        .ok_or_else(|| BackendError::Missing {
            binary: "kafka jars",
            looked: root.display().to_string(),
        })
}

impl Kafka {
    /// Formats a KRaft log directory and starts the broker on free ports.
    pub fn start() -> Result<Self, BackendError> {
        let java = find("java", &[])?;
        let libs = kafka_libs()?;
        let classpath = format!("{}/*", libs.display());
        let dir = temp_dir("kafka")?;
        let port = free_port().map_err(|e| start_error("kafka", e.to_string(), None))?;
        let controller = free_port().map_err(|e| start_error("kafka", e.to_string(), None))?;
        let sasl_port = free_port().map_err(|e| start_error("kafka", e.to_string(), None))?;
        let mtls_port = free_port().map_err(|e| start_error("kafka", e.to_string(), None))?;
        let pki = crate::pki::serving_pki("kafka").map_err(|e| start_error("kafka", e.to_string(), None))?;
        let config = dir.path().join("server.properties");
        let properties = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port},SSL://127.0.0.1:{mtls_port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://localhost:{sasl_port},SSL://localhost:{mtls_port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT\n\
             sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n\
             listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{KAFKA_USER}=\"{KAFKA_PASSWORD}\";\n\
             listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.ssl.ssl.client.auth=required\n\
             authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users=User:ANONYMOUS;User:{KAFKA_USER};User:CN=kollect-client\n\
             ssl.keystore.type=PEM\n\
             ssl.keystore.certificate.chain={cert}\n\
             ssl.keystore.key={key}\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.certificates={ca}\n\
             log.dirs={logs}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n",
            logs = dir.path().join("logs").display(),
            cert = property_pem(&pki.cert_pem),
            key = property_pem(&pki.key_pem),
            ca = property_pem(&pki.ca_pem),
        );
        std::fs::write(&config, properties).map_err(|e| start_error("kafka", e.to_string(), None))?;

        let format_log = dir.path().join("format.log");
        let (out, err) = log_file(&format_log)?;
        // Any fixed cluster id works for a throwaway single-node cluster.
        let status = Command::new(&java)
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "format"])
            .args(["-t", "a2FmbGxlY3QtdGVzdGtpdA"])
            .args([
                "--add-scram",
                &format!("SCRAM-SHA-256=[name={KAFKA_USER},password={KAFKA_PASSWORD}]"),
                "--add-scram",
                &format!("SCRAM-SHA-512=[name={KAFKA_USER},password={KAFKA_PASSWORD}]"),
                "--add-scram",
                &format!("SCRAM-SHA-256=[name={KAFKA_UNAUTHORIZED_USER},password={KAFKA_PASSWORD}]"),
            ])
            .arg("-c")
            .arg(&config)
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| start_error("kafka", format!("run the storage format tool: {e}"), None))?;
        if !status.success() {
            return Err(start_error(
                "kafka",
                format!("formatting the log directory failed ({status})"),
                Some(&format_log),
            ));
        }

        let log = dir.path().join("kafka.log");
        let child = launch(&java, &classpath, &config, &log, port)?;
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
            sasl_port,
            mtls_port,
            pki,
            java,
            classpath,
            config,
        })
    }

    /// Kills the broker and starts it again on the same ports and log directory (what it
    /// acknowledged survives), waiting until it listens again.
    pub fn restart(&mut self) -> Result<(), BackendError> {
        self.server.kill();
        let log = self.server.dir().join("kafka-restart.log");
        let child = launch(&self.java, &self.classpath, &self.config, &log, self.server.port)?;
        self.server.respawn(child);
        Ok(())
    }

    /// `localhost:<port>` of the `SASL_SSL` listener ([`KAFKA_USER`], [`KAFKA_PASSWORD`]).
    pub fn sasl_ssl_bootstrap(&self) -> String {
        format!("localhost:{}", self.sasl_port)
    }

    /// `localhost:<port>` of the `SSL` listener that requires a client certificate
    /// ([`crate::pki::ServingPki::client_cert_pem`]).
    pub fn mtls_bootstrap(&self) -> String {
        format!("localhost:{}", self.mtls_port)
    }

    /// The CA, serving and client certificates of the TLS listeners.
    pub fn pki(&self) -> &crate::pki::ServingPki {
        &self.pki
    }

    /// `127.0.0.1:<port>`: the `bootstrap.servers` value.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// Every message of `topic` on the plaintext listener, partition by partition, from the
    /// beginning to the end it has now (blocking; call it from `spawn_blocking` in async code).
    pub fn records(&self, topic: &str) -> Result<Vec<KafkaRecord>, String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::{Headers, Message};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("group.id", "kollect-testkit-reader")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
        let mut assignment = rdkafka::TopicPartitionList::new();
        let mut ends = std::collections::BTreeMap::new();
        for partition in 0..i32::try_from(partitions).map_err(|e| e.to_string())? {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            if high > low {
                ends.insert(partition, high);
                assignment
                    .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut records = Vec::new();
        if ends.is_empty() {
            return Ok(records);
        }
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ends.is_empty() {
            if std::time::Instant::now() > deadline {
                return Err(format!("reading topic {topic} stalled"));
            }
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.map_err(|e| e.to_string())?;
            if ends
                .get(&message.partition())
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&message.partition());
            }
            records.push(KafkaRecord {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                value: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        Ok(records)
    }

    /// The topics the broker has.
    pub fn topics(&self) -> Result<Vec<String>, String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        Ok(metadata.topics().iter().map(|t| t.name().to_owned()).collect())
    }
}

/// One message as a consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The key (lossy UTF-8).
    pub key: String,
    /// The value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaRecord {
    /// The value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}
