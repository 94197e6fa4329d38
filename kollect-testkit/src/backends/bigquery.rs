//! A BigQuery-API server: goccy's bigquery-emulator (GoogleSQL through ZetaSQL on SQLite),
//! built by `hack/install-bigquery-emulator.sh`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{BackendError, find, go_backends_dir, log_file, start_error, wait_for_http};
use crate::control_plane::free_port;

/// The project every emulator serves.
pub const BIGQUERY_PROJECT: &str = "kollect-test";
/// The dataset it starts with.
pub const BIGQUERY_DATASET: &str = "inventory";

/// A BigQuery-API server on loopback, with [`BIGQUERY_PROJECT`] and [`BIGQUERY_DATASET`].
///
/// For outage tests a gate stands in front of it ([`BigqueryEmulator::gated_endpoint`]):
/// [`BigqueryEmulator::stop`] closes the gate (connections are refused, as when a server is
/// down) and [`BigqueryEmulator::resume`] opens it again with every table intact. (The emulator
/// itself cannot be restarted on its database file: it creates its project's catalog anew and
/// loses the dataset.) Upload sessions the emulator hands out name its own port, so a staged
/// export through the gate is refused by the sink's same-origin check.
pub struct BigqueryEmulator {
    server: super::ServerProcess,
    gate: crate::http_server::Gate,
}

impl std::fmt::Debug for BigqueryEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigqueryEmulator")
            .field("port", &self.gate.port())
            .finish_non_exhaustive()
    }
}

impl BigqueryEmulator {
    /// Starts the emulator on a free port.
    pub fn start() -> Result<Self, BackendError> {
        let fail = |e: &dyn std::fmt::Display| start_error("bigquery-emulator", e.to_string(), None);
        let binary = find("bigquery-emulator", &[go_backends_dir()])?;
        let dir = super::temp_dir("bigquery")?;
        let port = free_port().map_err(|e| fail(&e))?;
        let grpc_port = free_port().map_err(|e| fail(&e))?;
        let child = launch(&binary, dir.path(), port, grpc_port)?;
        let server = super::ServerProcess::new(dir, child, port);
        let gate = crate::http_server::Gate::open(([127, 0, 0, 1], port).into()).map_err(|e| fail(&e))?;
        Ok(Self { server, gate })
    }

    /// `http://127.0.0.1:<port>`: the API root (`spec.endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `127.0.0.1:<port>` (the `BIGQUERY_EMULATOR_HOST` form).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// The API root through the gate that [`Self::stop`] and [`Self::resume`] close and open.
    pub fn gated_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.gate.port())
    }

    /// Takes the gated endpoint off the network: connections are refused until [`Self::resume`].
    pub fn stop(&mut self) {
        self.gate.down();
    }

    /// Brings the gated endpoint back on the same port, the tables as they were.
    pub fn resume(&mut self) -> Result<(), BackendError> {
        self.gate
            .up()
            .map_err(|e| start_error("bigquery-emulator", format!("reopen the port: {e}"), None))
    }

    /// Runs a GoogleSQL statement and returns the result rows as JSON arrays of the cells'
    /// values (BigQuery's REST encoding: strings, or null).
    pub async fn query(&self, sql: &str) -> Result<Vec<Vec<Value>>, BackendError> {
        let body = self
            .call(
                reqwest::Method::POST,
                "queries",
                Some(json!({"query": sql, "useLegacySql": false})),
            )
            .await?;
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        Ok(rows
            .iter()
            .map(|row| {
                row["f"]
                    .as_array()
                    .map(|cells| cells.iter().map(|c| c["v"].clone()).collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    /// The table resource of `dataset.table` (`GET .../tables/<table>`), or `None` when the
    /// table does not exist.
    pub async fn table(&self, dataset: &str, table: &str) -> Result<Option<Value>, BackendError> {
        match self
            .call(
                reqwest::Method::GET,
                &format!("datasets/{dataset}/tables/{table}"),
                None,
            )
            .await
        {
            Ok(table) => Ok(Some(table)),
            Err(BackendError::Start { message, .. }) if message.starts_with("HTTP 404") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The table ids of `dataset`.
    pub async fn tables(&self, dataset: &str) -> Result<Vec<String>, BackendError> {
        let body = self
            .call(reqwest::Method::GET, &format!("datasets/{dataset}/tables"), None)
            .await?;
        Ok(body["tables"]
            .as_array()
            .map(|tables| {
                tables
                    .iter()
                    .filter_map(|t| t["tableReference"]["tableId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Creates `dataset.table` with `fields` (`(name, type)`, all required).
    pub async fn create_table(
        &self,
        dataset: &str,
        table: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), BackendError> {
        let fields: Vec<Value> = fields
            .iter()
            .map(|(name, kind)| json!({"name": name, "type": kind, "mode": "REQUIRED"}))
            .collect();
        let resource = json!({
            "tableReference": {"projectId": BIGQUERY_PROJECT, "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields},
        });
        self.call(
            reqwest::Method::POST,
            &format!("datasets/{dataset}/tables"),
            Some(resource),
        )
        .await
        .map(drop)
    }

    /// Deletes `dataset.table`.
    pub async fn drop_table(&self, dataset: &str, table: &str) -> Result<(), BackendError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("datasets/{dataset}/tables/{table}"),
            None,
        )
        .await
        .map(drop)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BackendError> {
        let fail = |message: String| start_error("bigquery-emulator", message, None);
        let url = format!(
            "{}/bigquery/v2/projects/{BIGQUERY_PROJECT}/{path}",
            self.endpoint()
        );
        let mut request = super::http_client("bigquery-emulator")?.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {}: {text}", status.as_u16())));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| fail(format!("unreadable answer: {e}")))
    }
}

fn launch(binary: &Path, dir: &Path, port: u16, grpc_port: u16) -> Result<Child, BackendError> {
    let log = dir.join("bigquery.log");
    let (out, err) = log_file(&log)?;
    let mut child = Command::new(binary)
        .arg(format!("--project={BIGQUERY_PROJECT}"))
        .arg(format!("--dataset={BIGQUERY_DATASET}"))
        .args(["--host=127.0.0.1", "--log-level=warn"])
        .arg(format!("--port={port}"))
        .arg(format!("--grpc-port={grpc_port}"))
        .arg(format!("--database={}", dir.join("bigquery.db").display()))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| start_error("bigquery-emulator", format!("start bigquery-emulator: {e}"), None))?;
    let ready = format!("/bigquery/v2/projects/{BIGQUERY_PROJECT}/datasets");
    wait_for_http(
        "bigquery-emulator",
        port,
        &ready,
        &mut child,
        &log,
        Duration::from_secs(30),
    )?;
    Ok(child)
}
