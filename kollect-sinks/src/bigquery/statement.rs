//! The SQL the sink runs, in two dialects.
//!
//! - [`Dialect::Merge`] (BigQuery): one `MERGE` per write. Rows travel as one
//!   `ARRAY<STRUCT<...>>` query parameter, never spliced into the SQL text, so values need no
//!   quoting; the partition and export time are scalar parameters.
//! - [`Dialect::Emulator`]: the BigQuery emulator implements neither array or struct query
//!   parameters nor a `MERGE` matching on more than one column, and drops parameters in
//!   multi-statement queries. There each write is one transaction (`BEGIN TRANSACTION`, a
//!   `DELETE`, an `INSERT`, `COMMIT TRANSACTION`) with every value a GoogleSQL literal. It is
//!   atomic as well; it rewrites every row of a snapshot instead of merging.
//!
//! Only the table name is spliced into both, quoted as one backticked path after its parts
//! were checked not to hold backticks or backslashes.

use kollect_core::model::SharedRow;
use kollect_core::sink::SinkError;
use serde_json::{Value, json};

/// The columns of the table, with their types.
pub(super) const COLUMNS: [(&str, &str); 8] = [
    ("inventory_namespace", "STRING"),
    ("inventory_name", "STRING"),
    ("target_name", "STRING"),
    ("source_uid", "STRING"),
    ("cluster", "STRING"),
    ("resource_namespace", "STRING"),
    ("payload", "JSON"),
    ("exported_at", "TIMESTAMP"),
];
/// The clustering columns, in order.
pub(super) const CLUSTERING: [&str; 4] = [
    "cluster",
    "inventory_namespace",
    "inventory_name",
    "resource_namespace",
];
/// The fields of one source row (the `@rows` parameter, a staging table).
pub(super) const SOURCE_FIELDS: [(&str, &str); 5] = [
    ("target_name", "STRING"),
    ("source_uid", "STRING"),
    ("resource_namespace", "STRING"),
    ("payload", "STRING"),
    ("deleted", "BOOL"),
];
/// Bytes of encoded rows per statement: below BigQuery's 10 MB request limit, with room for
/// the statement and the other parameters. A snapshot above it is staged.
pub(super) const MAX_ROW_BYTES: usize = 8 * 1024 * 1024;

const COLUMN_LIST: &str = "inventory_namespace, inventory_name, target_name, source_uid, cluster, resource_namespace, payload, exported_at";
const SOURCE_TYPE: &str =
    "STRUCT<target_name STRING, source_uid STRING, resource_namespace STRING, payload STRING, deleted BOOL>";

/// Which SQL the sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// BigQuery: `MERGE` with query parameters.
    Merge,
    /// The BigQuery emulator: transactions of `DELETE` and `INSERT` with literal values.
    Emulator,
}

/// The inventory and cluster the rows belong to, and the export time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Partition<'a> {
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    pub(super) cluster: &'a str,
}

/// One row of a write's source: an object's row, or (`deleted`) the key of a vanished one.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SourceRow {
    target_name: String,
    source_uid: String,
    resource_namespace: String,
    payload: String,
    deleted: bool,
}

impl SourceRow {
    /// The row of `row` within `partition`.
    pub(super) fn of(row: &SharedRow, partition: Partition<'_>) -> Result<Self, SinkError> {
        let payload = row.to_json();
        let resource_namespace = if row.namespace().is_empty() {
            partition.namespace
        } else {
            row.namespace()
        };
        Ok(Self {
            target_name: row.target_name().to_owned(),
            source_uid: row.uid().to_owned(),
            resource_namespace: resource_namespace.to_owned(),
            payload,
            deleted: false,
        })
    }

    /// The key of a vanished object (a delta's delete).
    pub(super) fn deleted(target_name: &str, uid: &str) -> Self {
        Self {
            target_name: target_name.to_owned(),
            source_uid: uid.to_owned(),
            resource_namespace: String::new(),
            payload: "null".to_owned(),
            deleted: true,
        }
    }

    /// The row as a parameter value of `@rows`.
    fn parameter_value(&self) -> Value {
        json!({"structValues": {
            "target_name": {"value": self.target_name},
            "source_uid": {"value": self.source_uid},
            "resource_namespace": {"value": self.resource_namespace},
            "payload": {"value": self.payload},
            "deleted": {"value": if self.deleted { "true" } else { "false" }},
        }})
    }

    /// The row as a GoogleSQL struct literal `(...)`.
    fn literal(&self) -> String {
        format!(
            "({}, {}, {}, {}, {})",
            string_literal(&self.target_name),
            string_literal(&self.source_uid),
            string_literal(&self.resource_namespace),
            string_literal(&self.payload),
            if self.deleted { "TRUE" } else { "FALSE" }
        )
    }

    /// The row as one line of newline-delimited JSON (a load into a staging table).
    pub(super) fn json_line(&self) -> String {
        json!({
            "target_name": self.target_name,
            "source_uid": self.source_uid,
            "resource_namespace": self.resource_namespace,
            "payload": self.payload,
            "deleted": self.deleted,
        })
        .to_string()
    }

    /// Bytes this row adds to a statement of `dialect`.
    fn encoded_len(&self, dialect: Dialect) -> usize {
        match dialect {
            Dialect::Merge => self.parameter_value().to_string().len() + 1,
            Dialect::Emulator => self.literal().len() + 2,
        }
    }
}

/// A GoogleSQL single-quoted string literal: backslash, quote and control characters escaped,
/// everything else (any Unicode) as is.
fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Source rows grouped into statements of at most [`MAX_ROW_BYTES`] each.
pub(super) struct Chunks {
    dialect: Dialect,
    chunks: Vec<Vec<SourceRow>>,
    bytes: usize,
    limit: usize,
}

impl Chunks {
    pub(super) fn new(dialect: Dialect) -> Self {
        Self::with_limit(dialect, MAX_ROW_BYTES)
    }

    pub(super) fn with_limit(dialect: Dialect, limit: usize) -> Self {
        Self {
            dialect,
            chunks: vec![Vec::new()],
            bytes: 0,
            limit,
        }
    }

    /// Adds one row (`label` names it in errors); a single row above the limit can never be
    /// sent and is refused.
    pub(super) fn push(&mut self, row: SourceRow, label: &str) -> Result<(), SinkError> {
        let size = row.encoded_len(self.dialect);
        if size > self.limit {
            return Err(SinkError::terminal(format!(
                "bigquery export: the row of {label} encodes to {size} bytes, above the {} bytes one request may carry",
                self.limit
            )));
        }
        if self.bytes + size > self.limit {
            self.chunks.push(Vec::new());
            self.bytes = 0;
        }
        self.bytes += size;
        if let Some(last) = self.chunks.last_mut() {
            last.push(row);
        }
        Ok(())
    }

    /// The groups, in order; one (possibly empty) group at least.
    pub(super) fn into_inner(self) -> Vec<Vec<SourceRow>> {
        self.chunks
    }
}

/// Where a write's rows come from.
pub(super) enum Source<'a> {
    /// Rows carried by the statement itself.
    Rows(&'a [SourceRow]),
    /// A staging table (its quoted path) loaded beforehand.
    Table(&'a str),
}

/// One statement and its parameters.
#[derive(Debug)]
pub(super) struct Statement {
    pub(super) sql: String,
    pub(super) parameters: Vec<Value>,
}

/// Renders the writes of a partition in one dialect.
pub(super) struct Writer<'a> {
    pub(super) dialect: Dialect,
    /// The quoted table path.
    pub(super) table: &'a str,
    pub(super) partition: Partition<'a>,
    /// The export time (RFC 3339).
    pub(super) exported_at: &'a str,
}

impl Writer<'_> {
    /// The statement making `source` the partition's whole content: rows upserted, the
    /// partition's rows that `source` lacks deleted, atomically.
    pub(super) fn snapshot(&self, source: &Source<'_>) -> Statement {
        let (from, mut parameters) = self.source(source);
        match self.dialect {
            Dialect::Merge => {
                parameters.extend(self.parameters());
                Statement {
                    sql: format!(
                        "MERGE {table} t USING {from} s ON {identity} \
                         WHEN MATCHED THEN {update} \
                         WHEN NOT MATCHED BY TARGET THEN {insert} \
                         WHEN NOT MATCHED BY SOURCE AND {partition} THEN DELETE",
                        table = self.table,
                        identity = self.identity(),
                        update = self.update(),
                        insert = self.merge_insert(),
                        partition = self.partition_filter("t."),
                    ),
                    parameters,
                }
            }
            Dialect::Emulator => Statement {
                sql: format!(
                    "BEGIN TRANSACTION; DELETE FROM {table} WHERE {partition}; {insert}; COMMIT TRANSACTION;",
                    table = self.table,
                    partition = self.partition_filter(""),
                    insert = self.insert_select(&from, ""),
                ),
                parameters,
            },
        }
    }

    /// The statement applying a delta: rows marked deleted removed, the others upserted; no
    /// other row touched.
    pub(super) fn delta(&self, source: &Source<'_>) -> Statement {
        let (from, mut parameters) = self.source(source);
        match self.dialect {
            Dialect::Merge => {
                parameters.extend(self.parameters());
                Statement {
                    sql: format!(
                        "MERGE {table} t USING {from} s ON {identity} \
                         WHEN MATCHED AND s.deleted THEN DELETE \
                         WHEN MATCHED THEN {update} \
                         WHEN NOT MATCHED BY TARGET AND NOT s.deleted THEN {insert}",
                        table = self.table,
                        identity = self.identity(),
                        update = self.update(),
                        insert = self.merge_insert(),
                    ),
                    parameters,
                }
            }
            // The emulator evaluates a correlated EXISTS as if uncorrelated, so the keys are
            // matched as `target/uid` strings (neither part can hold a slash: both are
            // Kubernetes names).
            Dialect::Emulator => Statement {
                sql: format!(
                    "BEGIN TRANSACTION; DELETE FROM {table} WHERE {partition} AND CONCAT(target_name, '/', source_uid) \
                     IN (SELECT CONCAT(s.target_name, '/', s.source_uid) FROM {from} s); {insert}; COMMIT TRANSACTION;",
                    table = self.table,
                    partition = self.partition_filter(""),
                    insert = self.insert_select(&from, " WHERE NOT s.deleted"),
                ),
                parameters,
            },
        }
    }

    /// Every row of the partition deleted (inventory deletion).
    pub(super) fn remove(&self) -> Statement {
        let parameters = match self.dialect {
            Dialect::Merge => self.partition_parameters(),
            Dialect::Emulator => Vec::new(),
        };
        Statement {
            sql: format!("DELETE FROM {} WHERE {}", self.table, self.partition_filter("")),
            parameters,
        }
    }

    /// The `FROM` item of `source`, with the parameters it needs.
    fn source(&self, source: &Source<'_>) -> (String, Vec<Value>) {
        match (source, self.dialect) {
            (Source::Table(table), _) => (format!("(SELECT * FROM {table})"), Vec::new()),
            (Source::Rows(rows), Dialect::Merge) => (
                "(SELECT * FROM UNNEST(@rows))".to_owned(),
                vec![rows_parameter(rows)],
            ),
            (Source::Rows(rows), Dialect::Emulator) => {
                let literals: Vec<String> = rows.iter().map(SourceRow::literal).collect();
                (
                    format!(
                        "(SELECT * FROM UNNEST(ARRAY<{SOURCE_TYPE}>[{}]))",
                        literals.join(", ")
                    ),
                    Vec::new(),
                )
            }
        }
    }

    /// `@cluster`, `@inventory_namespace`, `@inventory_name` and `@exported_at`.
    fn parameters(&self) -> Vec<Value> {
        let mut parameters = self.partition_parameters();
        parameters.push(scalar("exported_at", "TIMESTAMP", self.exported_at));
        parameters
    }

    fn partition_parameters(&self) -> Vec<Value> {
        vec![
            scalar("cluster", "STRING", self.partition.cluster),
            scalar("inventory_namespace", "STRING", self.partition.namespace),
            scalar("inventory_name", "STRING", self.partition.name),
        ]
    }

    /// A value of the partition or the export time: a parameter, or a literal for the emulator.
    fn value(&self, name: &str) -> String {
        let literal = match (self.dialect, name) {
            (Dialect::Merge, _) => return format!("@{name}"),
            (Dialect::Emulator, "cluster") => self.partition.cluster,
            (Dialect::Emulator, "inventory_namespace") => self.partition.namespace,
            (Dialect::Emulator, "inventory_name") => self.partition.name,
            (Dialect::Emulator, _) => return format!("TIMESTAMP {}", string_literal(self.exported_at)),
        };
        string_literal(literal)
    }

    /// The partition's rows (columns prefixed with `alias`).
    fn partition_filter(&self, alias: &str) -> String {
        format!(
            "{alias}cluster = {} AND {alias}inventory_namespace = {} AND {alias}inventory_name = {}",
            self.value("cluster"),
            self.value("inventory_namespace"),
            self.value("inventory_name")
        )
    }

    /// A source row `s` matching a table row `t` of the partition.
    fn identity(&self) -> String {
        format!(
            "{} AND t.target_name = s.target_name AND t.source_uid = s.source_uid",
            self.partition_filter("t.")
        )
    }

    fn update(&self) -> String {
        format!(
            "UPDATE SET resource_namespace = s.resource_namespace, payload = PARSE_JSON(s.payload), exported_at = {}",
            self.value("exported_at")
        )
    }

    fn merge_insert(&self) -> String {
        format!(
            "INSERT ({COLUMN_LIST}) VALUES ({}, {}, s.target_name, s.source_uid, {}, s.resource_namespace, \
             PARSE_JSON(s.payload), {})",
            self.value("inventory_namespace"),
            self.value("inventory_name"),
            self.value("cluster"),
            self.value("exported_at")
        )
    }

    fn insert_select(&self, from: &str, condition: &str) -> String {
        format!(
            "INSERT INTO {table} ({COLUMN_LIST}) SELECT {}, {}, s.target_name, s.source_uid, {}, s.resource_namespace, \
             PARSE_JSON(s.payload), {} FROM {from} s{condition}",
            self.value("inventory_namespace"),
            self.value("inventory_name"),
            self.value("cluster"),
            self.value("exported_at"),
            table = self.table,
        )
    }
}

fn scalar(name: &str, kind: &str, value: &str) -> Value {
    json!({"name": name, "parameterType": {"type": kind}, "parameterValue": {"value": value}})
}

/// The `@rows` parameter holding `rows`.
fn rows_parameter(rows: &[SourceRow]) -> Value {
    let fields: Vec<Value> = SOURCE_FIELDS
        .iter()
        .map(|(name, kind)| json!({"name": name, "type": {"type": kind}}))
        .collect();
    let values: Vec<Value> = rows.iter().map(SourceRow::parameter_value).collect();
    json!({
        "name": "rows",
        "parameterType": {"type": "ARRAY", "arrayType": {"type": "STRUCT", "structTypes": fields}},
        "parameterValue": {"arrayValues": values},
    })
}

/// A table path as one quoted identifier: `` `project.dataset.table` ``.
pub(super) fn table_path(project: &str, dataset: &str, table: &str) -> String {
    format!("`{project}.{dataset}.{table}`")
}

/// The table resource `ensure` creates: the columns, day partitions on `exported_at`, and
/// clustering by cluster, inventory and resource namespace.
pub(super) fn table_resource(project: &str, dataset: &str, table: &str) -> Value {
    json!({
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "description": "Kollect inventory rows: one per collected object and cluster.",
        "schema": {"fields": schema(&COLUMNS)},
        "timePartitioning": {"type": "DAY", "field": "exported_at"},
        "clustering": {"fields": CLUSTERING},
    })
}

/// The resource of a staging table holding source rows, expiring at `expires_ms` (Unix
/// milliseconds) should the sink not delete it.
pub(super) fn staging_resource(project: &str, dataset: &str, table: &str, expires_ms: i64) -> Value {
    json!({
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "description": "Kollect export staging rows; deleted after the export, expires on its own.",
        "schema": {"fields": schema(&SOURCE_FIELDS)},
        "expirationTime": expires_ms.to_string(),
    })
}

fn schema(fields: &[(&str, &str)]) -> Vec<Value> {
    fields
        .iter()
        .map(|(name, kind)| json!({"name": name, "type": kind, "mode": "REQUIRED"}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition() -> Partition<'static> {
        Partition {
            namespace: "team",
            name: "apps",
            cluster: "east",
        }
    }

    fn writer(dialect: Dialect) -> Writer<'static> {
        Writer {
            dialect,
            table: "`p.d.t`",
            partition: partition(),
            exported_at: "2027-01-15T08:00:00Z",
        }
    }

    fn source_row() -> SourceRow {
        let row = kollect_core::model::Row {
            target_name: "deployments".into(),
            uid: "u1".into(),
            name: "it's \\ \"web\"\n".into(),
            ..kollect_core::model::Row::default()
        };
        SourceRow::of(&row.into(), partition()).expect("row")
    }

    #[test]
    fn rows_travel_as_one_typed_array_parameter() {
        let rows = [source_row()];
        let statement = writer(Dialect::Merge).snapshot(&Source::Rows(&rows));
        let names: Vec<&str> = statement
            .parameters
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names,
            [
                "rows",
                "cluster",
                "inventory_namespace",
                "inventory_name",
                "exported_at"
            ]
        );
        let rows = &statement.parameters[0];
        assert_eq!(
            rows["parameterType"]["arrayType"]["structTypes"][4]["name"],
            "deleted"
        );
        let fields = &rows["parameterValue"]["arrayValues"][0]["structValues"];
        assert_eq!(
            fields["resource_namespace"]["value"], "team",
            "an unnamespaced row takes the inventory's"
        );
        assert_eq!(fields["deleted"]["value"], "false");
        let payload: Value =
            serde_json::from_str(fields["payload"]["value"].as_str().expect("text")).expect("json");
        assert_eq!(payload["name"], "it's \\ \"web\"\n");
        assert!(!statement.sql.contains("web"), "no value is spliced into the SQL");
    }

    #[test]
    fn the_snapshot_merge_deletes_only_within_the_partition() {
        let statement = writer(Dialect::Merge).snapshot(&Source::Rows(&[]));
        assert!(statement.sql.starts_with(
            "MERGE `p.d.t` t USING (SELECT * FROM UNNEST(@rows)) s ON t.cluster = @cluster AND \
             t.inventory_namespace = @inventory_namespace AND t.inventory_name = @inventory_name AND \
             t.target_name = s.target_name AND t.source_uid = s.source_uid"
        ));
        assert!(statement.sql.ends_with(
            "WHEN NOT MATCHED BY SOURCE AND t.cluster = @cluster AND t.inventory_namespace = @inventory_namespace \
             AND t.inventory_name = @inventory_name THEN DELETE"
        ));
        let delta = writer(Dialect::Merge).delta(&Source::Table("`p.d.stage`"));
        assert!(delta.sql.contains("USING (SELECT * FROM `p.d.stage`) s"));
        assert!(delta.sql.contains("WHEN MATCHED AND s.deleted THEN DELETE"));
        assert!(!delta.sql.contains("NOT MATCHED BY SOURCE"));
        assert_eq!(
            delta.parameters.len(),
            4,
            "a staged source needs no rows parameter"
        );
    }

    #[test]
    fn the_emulator_dialect_quotes_every_value_as_a_literal() {
        let rows = [source_row(), SourceRow::deleted("deployments", "u2")];
        let statement = writer(Dialect::Emulator).delta(&Source::Rows(&rows));
        assert!(statement.parameters.is_empty());
        assert!(statement.sql.starts_with(
            "BEGIN TRANSACTION; DELETE FROM `p.d.t` WHERE cluster = 'east' AND inventory_namespace = 'team' AND inventory_name = 'apps'"
        ));
        assert!(statement.sql.contains(r#"'{"targetNamespace":"","targetName":"deployments","namespace":"","name":"it\'s \\\\ \\"web\\"\\n""#), "{}", statement.sql);
        assert!(statement.sql.contains("('deployments', 'u2', '', 'null', TRUE)"));
        assert!(statement.sql.contains("TIMESTAMP '2027-01-15T08:00:00Z' FROM"));
        assert!(
            statement
                .sql
                .ends_with(" WHERE NOT s.deleted; COMMIT TRANSACTION;")
        );
        assert_eq!(string_literal("a\u{1}b"), "'a\\u0001b'");
    }

    #[test]
    fn chunks_split_by_bytes_and_refuse_a_row_that_cannot_fit() {
        let row = source_row();
        let size = row.encoded_len(Dialect::Merge);
        let mut chunks = Chunks::with_limit(Dialect::Merge, size * 2);
        for _ in 0..5 {
            chunks.push(row.clone(), "r").expect("fits");
        }
        let groups = chunks.into_inner();
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        let mut chunks = Chunks::with_limit(Dialect::Emulator, 10);
        let error = chunks.push(row, "team/web").expect_err("too big");
        assert!(
            error.to_string().contains("the row of team/web encodes to"),
            "{error}"
        );
        assert_eq!(
            Chunks::new(Dialect::Merge).into_inner().len(),
            1,
            "an empty snapshot is one empty group"
        );
    }

    #[test]
    fn the_table_is_partitioned_by_day_and_clustered() {
        let table = table_resource("p", "d", "t");
        assert_eq!(
            table["timePartitioning"],
            json!({"type": "DAY", "field": "exported_at"})
        );
        assert_eq!(table["clustering"]["fields"][0], "cluster");
        assert_eq!(
            table["schema"]["fields"][6],
            json!({"name": "payload", "type": "JSON", "mode": "REQUIRED"})
        );
        let staging = staging_resource("p", "d", "t_stage", 1_800_000_000_000);
        assert_eq!(staging["expirationTime"], "1800000000000");
        assert_eq!(staging["schema"]["fields"][4]["name"], "deleted");
    }
}
