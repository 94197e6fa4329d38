//! A single-node Kafka broker in KRaft mode (broker and controller in one JVM), from the Maven
//! Central jars `hack/install-kafka.sh` resolves, run with the machine's `java`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{BackendError, find, log_file, start_error, temp_dir, wait_for_port};
use crate::control_plane::free_port;

/// A running Kafka broker with a PLAINTEXT listener on loopback.
#[derive(Debug)]
pub struct Kafka {
    server: super::ServerProcess,
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
        let config = dir.path().join("server.properties");
        let properties = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={logs}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n",
            logs = dir.path().join("logs").display()
        );
        std::fs::write(&config, properties).map_err(|e| start_error("kafka", e.to_string(), None))?;

        let format_log = dir.path().join("format.log");
        let (out, err) = log_file(&format_log)?;
        // Any fixed cluster id works for a throwaway single-node cluster.
        let status = Command::new(&java)
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "format"])
            .args(["-t", "a2FmbGxlY3QtdGVzdGtpdA"])
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
        let (out, err) = log_file(&log)?;
        let mut child = Command::new(&java)
            .args([
                "-Xms128m",
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp",
                &classpath,
                "kafka.Kafka",
            ])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| start_error("kafka", format!("start the broker: {e}"), None))?;
        wait_for_port("kafka", port, &mut child, &log, Duration::from_secs(90))?;
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
        })
    }

    /// `127.0.0.1:<port>`: the `bootstrap.servers` value.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }
}
