//! Documents and write commands of the MongoDB sink.

use ::mongodb::bson::{Bson, DateTime, Document, RawArrayBuf, RawBson, RawDocumentBuf, doc};
use kollect_core::model::SharedRow;
use kollect_core::sink::SinkError;
use serde_json::Value;

/// Statements per write command. Servers accept 100,000; smaller commands keep the memory of
/// one command and the work lost to a failure small.
const MAX_STATEMENTS: usize = 10_000;
/// Bytes of statements per write command, well below the 16 MiB document limit (a command is
/// one BSON document).
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// The inventory and cluster a document belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Partition<'a> {
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    pub(super) cluster: &'a str,
}

impl Partition<'_> {
    /// Matches every document of the partition.
    pub(super) fn filter(&self) -> Document {
        doc! {
            "cluster": self.cluster,
            "inventory_namespace": self.namespace,
            "inventory_name": self.name,
        }
    }

    /// The `_id` of one object's document: `cluster/namespace/inventory/target/uid`, each part
    /// with `%` and `/` percent-encoded so that distinct identities never share an id.
    ///
    /// A deterministic id makes every write a lookup on the primary index, which every server
    /// has (FerretDB, for one, uses no other index for writes).
    pub(super) fn id(&self, target_name: &str, uid: &str) -> String {
        let parts = [self.cluster, self.namespace, self.name, target_name, uid];
        let encoded: Vec<String> = parts
            .iter()
            .map(|part| part.replace('%', "%25").replace('/', "%2F"))
            .collect();
        encoded.join("/")
    }

    /// Matches the document of one object.
    pub(super) fn key_filter(&self, target_name: &str, uid: &str) -> Document {
        doc! {"_id": self.id(target_name, uid)}
    }

    /// The document of `row` (without `deleted_at`, so a replacement revives a soft-deleted
    /// document).
    pub(super) fn document(&self, row: &SharedRow, exported_at: DateTime) -> Result<Document, SinkError> {
        let payload =
            serde_json::to_value(row).map_err(|e| SinkError::terminal(format!("encode row: {e}")))?;
        let Bson::Document(payload) = json_to_bson(payload) else {
            return Err(SinkError::terminal("encode row: a row is not a JSON object"));
        };
        let resource_namespace = if row.namespace().is_empty() {
            self.namespace
        } else {
            row.namespace()
        };
        Ok(doc! {
            "_id": self.id(row.target_name(), row.uid()),
            "inventory_namespace": self.namespace,
            "inventory_name": self.name,
            "target_name": row.target_name(),
            "source_uid": row.uid(),
            "cluster": self.cluster,
            "resource_namespace": resource_namespace,
            "payload": payload,
            "exported_at": exported_at,
        })
    }
}

/// JSON to BSON keeping number types: integers become 64-bit integers and only fractional
/// numbers doubles (integers above `i64::MAX`, which BSON cannot hold as integers, become
/// doubles too).
pub(super) fn json_to_bson(value: Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s),
        Value::Array(items) => Bson::Array(items.into_iter().map(json_to_bson).collect()),
        Value::Object(map) => Bson::Document(map.into_iter().map(|(k, v)| (k, json_to_bson(v))).collect()),
    }
}

/// One write command (`update` or `delete`) being filled with statements.
pub(super) struct Batch {
    command: &'static str,
    collection: String,
    statements: RawArrayBuf,
    count: usize,
    bytes: usize,
}

impl Batch {
    /// An empty `update` command on `collection`.
    pub(super) fn update(collection: &str) -> Self {
        Self::new("update", collection)
    }

    /// An empty `delete` command on `collection`.
    pub(super) fn delete(collection: &str) -> Self {
        Self::new("delete", collection)
    }

    fn new(command: &'static str, collection: &str) -> Self {
        Self {
            command,
            collection: collection.to_owned(),
            statements: RawArrayBuf::new(),
            count: 0,
            bytes: 0,
        }
    }

    /// Adds a statement; returns the full command to send first when this one would not fit.
    pub(super) fn push(&mut self, statement: &Document) -> Result<Option<RawDocumentBuf>, SinkError> {
        let raw = RawDocumentBuf::from_document(statement)
            .map_err(|e| SinkError::terminal(format!("encode mongodb statement: {e}")))?;
        let size = raw.as_bytes().len();
        let full = (self.count >= MAX_STATEMENTS || self.bytes + size > MAX_COMMAND_BYTES) && self.count > 0;
        let ready = if full { self.take() } else { None };
        self.statements.push(RawBson::Document(raw));
        self.count += 1;
        self.bytes += size;
        Ok(ready)
    }

    /// The command with the statements so far (ordered: the server stops at the first error),
    /// leaving the batch empty; `None` when there are none.
    pub(super) fn take(&mut self) -> Option<RawDocumentBuf> {
        if self.count == 0 {
            return None;
        }
        let statements = std::mem::take(&mut self.statements);
        self.count = 0;
        self.bytes = 0;
        let mut command = RawDocumentBuf::new();
        command.append(self.command, self.collection.as_str());
        command.append(
            if self.command == "update" {
                "updates"
            } else {
                "deletes"
            },
            statements,
        );
        command.append("ordered", true);
        Some(command)
    }
}

/// A replacement upsert of the document matching `filter`.
pub(super) fn upsert_statement(filter: Document, document: Document) -> Document {
    doc! {"q": filter, "u": document, "upsert": true}
}

/// Deletes every document matching `filter`.
pub(super) fn delete_statement(filter: Document) -> Document {
    doc! {"q": filter, "limit": 0}
}

/// Marks every live document matching `filter` deleted at `at`.
pub(super) fn soft_delete_statement(mut filter: Document, at: DateTime) -> Document {
    filter.insert("deleted_at", Bson::Null);
    doc! {"q": filter, "u": {"$set": {"deleted_at": at}}, "multi": true}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_stay_integers() {
        let bson = json_to_bson(
            json!({"replicas": 3, "ratio": 0.5, "big": u64::MAX, "neg": -7, "list": [1, "a", null]}),
        );
        let Bson::Document(doc) = bson else {
            panic!("not a document")
        };
        assert_eq!(doc.get("replicas"), Some(&Bson::Int64(3)));
        assert_eq!(doc.get("neg"), Some(&Bson::Int64(-7)));
        assert_eq!(doc.get("ratio"), Some(&Bson::Double(0.5)));
        assert_eq!(doc.get("big"), Some(&Bson::Double(u64::MAX as f64)));
        assert_eq!(
            doc.get("list"),
            Some(&Bson::Array(vec![
                Bson::Int64(1),
                Bson::String("a".into()),
                Bson::Null
            ]))
        );
    }

    #[test]
    fn batches_split_by_statement_count_and_bytes() {
        let mut batch = Batch::delete("items");
        let mut commands = 0;
        for i in 0..(MAX_STATEMENTS + 5) {
            if batch
                .push(&delete_statement(doc! {"source_uid": i.to_string()}))
                .unwrap()
                .is_some()
            {
                commands += 1;
            }
        }
        assert_eq!(commands, 1);
        let last = batch.take().unwrap().to_document().unwrap();
        assert_eq!(last.get_array("deletes").unwrap().len(), 5);
        assert_eq!(last.get_str("delete").unwrap(), "items");
        assert!(last.get_bool("ordered").unwrap());
        assert!(batch.take().is_none());

        let mut batch = Batch::update("items");
        let large = "x".repeat(3 * 1024 * 1024);
        let mut sizes = Vec::new();
        for _ in 0..5 {
            if let Some(command) = batch
                .push(&upsert_statement(doc! {}, doc! {"payload": &large}))
                .unwrap()
            {
                sizes.push(command.as_bytes().len());
            }
        }
        assert_eq!(sizes.len(), 2, "two full commands of two statements each");
        assert!(sizes.iter().all(|s| *s < 16 * 1024 * 1024));
    }

    #[test]
    fn ids_are_unambiguous() {
        let partition = |cluster| Partition {
            namespace: "team-a",
            name: "apps",
            cluster,
        };
        assert_eq!(
            partition("").id("deployments", "u-1"),
            "/team-a/apps/deployments/u-1"
        );
        assert_eq!(partition("eu/1").id("t", "u"), "eu%2F1/team-a/apps/t/u");
        assert_ne!(partition("a/b").id("t", "u"), partition("a").id("t", "u"));
        assert_eq!(partition("100%").id("t", "u"), "100%25/team-a/apps/t/u");
        let row = kollect_core::model::Row {
            target_name: "t".into(),
            uid: "u".into(),
            ..kollect_core::model::Row::default()
        };
        let document = partition("prod")
            .document(&row.into(), DateTime::from_millis(0))
            .unwrap();
        assert_eq!(document.get_str("_id").unwrap(), "prod/team-a/apps/t/u");
    }

    #[test]
    fn a_soft_delete_touches_live_documents_only() {
        let at = DateTime::from_millis(1_000);
        let statement = soft_delete_statement(doc! {"source_uid": "u"}, at);
        assert_eq!(
            statement,
            doc! {"q": {"source_uid": "u", "deleted_at": Bson::Null}, "u": {"$set": {"deleted_at": at}}, "multi": true}
        );
    }
}
