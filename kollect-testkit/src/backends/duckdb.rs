//! DuckDB, the engine the tests read Parquet and CSV objects with, as an analyst would: its
//! Python package and httpfs extension, installed by `hack/install-duckdb.sh` into a virtual
//! environment under the cache. Each query runs in a fresh `python` process.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::BackendError;

/// Runs a query: loads httpfs from its wheel, creates the S3 secret described by the
/// environment, reads the SQL from stdin and prints `{"columns", "types", "rows"}` as JSON.
const RUNNER: &str = r#"
import glob, json, os, sys
import duckdb, duckdb_extension_httpfs
root = os.path.dirname(duckdb_extension_httpfs.__file__)
extension = glob.glob(os.path.join(root, "extensions", "*", "httpfs.duckdb_extension"))[0]
db = duckdb.connect()
db.execute("SET TimeZone = 'UTC'")
db.execute("LOAD '" + extension.replace("'", "''") + "'")
def quoted(name):
    return "'" + os.environ[name].replace("'", "''") + "'"
if "KOLLECT_S3_ENDPOINT" in os.environ:
    db.execute(
        "CREATE SECRET bucket (TYPE s3, KEY_ID " + quoted("KOLLECT_S3_KEY_ID")
        + ", SECRET " + quoted("KOLLECT_S3_SECRET") + ", ENDPOINT " + quoted("KOLLECT_S3_ENDPOINT")
        + ", REGION " + quoted("KOLLECT_S3_REGION") + ", URL_STYLE 'path', USE_SSL false)"
    )
relation = db.sql(sys.stdin.read())
print(json.dumps({
    "columns": relation.columns,
    "types": [str(t) for t in relation.types],
    "rows": [list(row) for row in relation.fetchall()],
}, default=str))
"#;

/// S3 access for a query: an endpoint served over plain HTTP with path-style addressing (as
/// MinIO is in the tests).
#[derive(Debug, Clone)]
pub struct S3Access {
    /// `host:port`.
    pub endpoint: String,
    /// Access key ID.
    pub key_id: String,
    /// Secret access key.
    pub secret: String,
    /// Region.
    pub region: String,
}

/// A query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// DuckDB's type of each column (`VARCHAR`, `TIMESTAMP WITH TIME ZONE`, `JSON`, ...).
    pub types: Vec<String>,
    /// The rows; values as JSON (timestamps and other non-JSON values as their text).
    pub rows: Vec<Vec<Value>>,
}

impl QueryResult {
    /// The value of `column` in every row.
    pub fn column(&self, column: &str) -> Vec<Value> {
        let Some(index) = self.columns.iter().position(|c| c == column) else {
            return Vec::new();
        };
        self.rows.iter().map(|row| row[index].clone()).collect()
    }

    /// DuckDB's type of `column`.
    pub fn type_of(&self, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.types.get(index).map(String::as_str)
    }
}

/// The installed DuckDB.
#[derive(Debug, Clone)]
pub struct DuckDb {
    python: PathBuf,
}

impl DuckDb {
    /// The newest DuckDB `hack/install-duckdb.sh` installed.
    pub fn locate() -> Result<Self, BackendError> {
        let root = crate::control_plane::cache_dir().join("duckdb");
        let mut pythons: Vec<PathBuf> = std::fs::read_dir(&root)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin/python")))
                    .filter(|p| p.exists())
                    .collect()
            })
            .unwrap_or_default();
        pythons.sort();
        match pythons.pop() {
            Some(python) => Ok(Self { python }),
            None => Err(BackendError::Missing {
                binary: "duckdb",
                looked: root.join("<version>/bin/python").display().to_string(),
            }),
        }
    }

    /// Runs `sql`, with access to an S3 endpoint when given.
    pub fn query(&self, sql: &str, s3: Option<&S3Access>) -> Result<QueryResult, String> {
        let mut command = Command::new(&self.python);
        command
            .arg("-c")
            .arg(RUNNER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(s3) = s3 {
            command
                .env("KOLLECT_S3_ENDPOINT", &s3.endpoint)
                .env("KOLLECT_S3_KEY_ID", &s3.key_id)
                .env("KOLLECT_S3_SECRET", &s3.secret)
                .env("KOLLECT_S3_REGION", &s3.region);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.python.display()))?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(sql.as_bytes())
            .map_err(|e| format!("send the query: {e}"))?;
        let output = child.wait_with_output().map_err(|e| format!("run duckdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "duckdb failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let result: Value =
            serde_json::from_slice(&output.stdout).map_err(|e| format!("duckdb output: {e}"))?;
        let strings = |key: &str| -> Vec<String> {
            result[key]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        Ok(QueryResult {
            columns: strings("columns"),
            types: strings("types"),
            rows: result["rows"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.as_array().cloned().unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}
