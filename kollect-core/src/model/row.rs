//! The canonical inventory row (`Item` on the wire) and its identity keys.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::canonical;

/// Attribute values of one row, keyed by attribute name.
pub type Attributes = Map<String, Value>;

/// One collected object as exported: who collected it, what it is, and the extracted attributes.
///
/// The JSON form is the Go operator's `Item`: fields in declaration order, `group` omitted when
/// empty (the core group), `attributes` an object (or `null` when absent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Namespace of the target that collected the object.
    #[serde(default)]
    pub target_namespace: String,
    /// Name of the target that collected the object.
    #[serde(default)]
    pub target_name: String,
    /// Namespace of the collected object; empty for cluster-scoped objects.
    #[serde(default)]
    pub namespace: String,
    /// Name of the collected object.
    #[serde(default)]
    pub name: String,
    /// API group of the object (empty for the core group).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version of the object.
    #[serde(default)]
    pub version: String,
    /// Kind of the object.
    #[serde(default)]
    pub kind: String,
    /// `metadata.uid` of the object.
    #[serde(default)]
    pub uid: String,
    /// Extracted attributes; `None` serialises as `null`.
    #[serde(default)]
    pub attributes: Option<Attributes>,
}

impl Row {
    /// The store/delta identity of this row: (targetNamespace, targetName, uid).
    pub fn key(&self) -> RowKey {
        RowKey {
            target_namespace: self.target_namespace.clone(),
            target_name: self.target_name.clone(),
            uid: self.uid.clone(),
        }
    }

    /// True when `self` and `key` name the same row.
    pub fn has_key(&self, key: &RowKey) -> bool {
        self.uid == key.uid
            && self.target_name == key.target_name
            && self.target_namespace == key.target_namespace
    }

    /// Compares two rows by the canonical sort key: targetNamespace, targetName, namespace, name,
    /// uid, group, version, kind (each compared bytewise, as Go compares the NUL-joined key).
    pub fn canonical_cmp(&self, other: &Row) -> Ordering {
        self.sort_fields().cmp(&other.sort_fields())
    }

    fn sort_fields(&self) -> [&[u8]; 8] {
        [
            self.target_namespace.as_bytes(),
            self.target_name.as_bytes(),
            self.namespace.as_bytes(),
            self.name.as_bytes(),
            self.uid.as_bytes(),
            self.group.as_bytes(),
            self.version.as_bytes(),
            self.kind.as_bytes(),
        ]
    }

    /// Appends the canonical (Go `encoding/json`) encoding of this row to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        self.write_canonical_marked(out);
    }

    /// [`Row::write_canonical`], returning where in `out` the attributes' encoding starts.
    pub(super) fn write_canonical_marked(&self, out: &mut Vec<u8>) -> usize {
        let field = |out: &mut Vec<u8>, first: bool, name: &str, value: &str| {
            if !first {
                out.push(b',');
            }
            canonical::write_str(out, name);
            out.push(b':');
            canonical::write_str(out, value);
        };
        out.push(b'{');
        field(out, true, "targetNamespace", &self.target_namespace);
        field(out, false, "targetName", &self.target_name);
        field(out, false, "namespace", &self.namespace);
        field(out, false, "name", &self.name);
        if !self.group.is_empty() {
            field(out, false, "group", &self.group);
        }
        field(out, false, "version", &self.version);
        field(out, false, "kind", &self.kind);
        field(out, false, "uid", &self.uid);
        out.extend_from_slice(b",\"attributes\":");
        let attributes_at = out.len();
        match &self.attributes {
            Some(attributes) => canonical::write_map(out, attributes),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        attributes_at
    }

    /// The canonical encoding of this row as a new buffer.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(&mut out);
        out
    }
}

impl AsRef<Row> for Row {
    fn as_ref(&self) -> &Row {
        self
    }
}

/// The Go operator's name for a row.
pub type Item = Row;

/// The identity of a row within one inventory: (targetNamespace, targetName, uid).
///
/// This is the store key; two rows with the same key are the same row
/// in two versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// Namespace of the collecting target.
    pub target_namespace: String,
    /// Name of the collecting target.
    pub target_name: String,
    /// UID of the collected object.
    pub uid: String,
}

/// Sorts rows into canonical order in place.
pub fn sort_canonical(rows: &mut [Row]) {
    rows.sort_by(Row::canonical_cmp);
}

/// Appends the canonical JSON array of `rows` (in the given order) to `out`.
pub fn write_canonical_array<I>(out: &mut Vec<u8>, rows: I)
where
    I: IntoIterator,
    I::Item: super::shared::Canonical,
{
    out.push(b'[');
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        super::shared::Canonical::append_canonical(&row, out);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn row(tns: &str, tn: &str, ns: &str, name: &str, uid: &str) -> Row {
        Row {
            target_namespace: tns.into(),
            target_name: tn.into(),
            namespace: ns.into(),
            name: name.into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: uid.into(),
            attributes: Some(Map::new()),
        }
    }

    #[test]
    fn canonical_encoding_matches_serde_field_order_and_omits_empty_group() {
        let mut r = row("team-a", "deploys", "shop", "web", "u1");
        r.attributes = Some(
            json!({"z": 1, "image": "nginx:1.27 <latest>"})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert_eq!(
            String::from_utf8(r.canonical_bytes()).unwrap(),
            r#"{"targetNamespace":"team-a","targetName":"deploys","namespace":"shop","name":"web","group":"apps","version":"v1","kind":"Deployment","uid":"u1","attributes":{"image":"nginx:1.27 \u003clatest\u003e","z":1}}"#
        );
        r.group.clear();
        r.attributes = None;
        let text = String::from_utf8(r.canonical_bytes()).unwrap();
        assert!(!text.contains("group"));
        assert!(text.ends_with(r#""uid":"u1","attributes":null}"#));
        // serde's field order is the same as the canonical one.
        let via_serde: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&via_serde["uid"]).unwrap(), "\"u1\"");
        let back: Row = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn canonical_order_uses_documented_key_sequence() {
        let mut rows = vec![
            row("b", "t", "ns", "a", "1"),
            row("a", "t", "ns", "b", "2"),
            row("a", "t", "ns", "a", "9"),
            row("a", "t", "ns", "a", "3"),
            row("a", "s", "zz", "z", "0"),
        ];
        sort_canonical(&mut rows);
        let order: Vec<_> = rows
            .iter()
            .map(|r| format!("{}/{}/{}/{}", r.target_namespace, r.target_name, r.name, r.uid))
            .collect();
        assert_eq!(order, ["a/s/z/0", "a/t/a/3", "a/t/a/9", "a/t/b/2", "b/t/a/1"]);
    }

    proptest::proptest! {
        /// Field-wise comparison equals Go's comparison of the NUL-joined key for NUL-free fields.
        #[test]
        fn field_order_equals_nul_joined_order(a in proptest::collection::vec("[a-c-]{0,3}", 8), b in proptest::collection::vec("[a-c-]{0,3}", 8)) {
            let mk = |f: &Vec<String>| Row {
                target_namespace: f[0].clone(), target_name: f[1].clone(), namespace: f[2].clone(), name: f[3].clone(),
                uid: f[4].clone(), group: f[5].clone(), version: f[6].clone(), kind: f[7].clone(), attributes: None,
            };
            let (x, y) = (mk(&a), mk(&b));
            proptest::prop_assert_eq!(x.canonical_cmp(&y), a.join("\0").cmp(&b.join("\0")));
        }
    }
}
