//! Rows shared by the store, snapshots and deltas, each encoded once and kept compact.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::row::{Attributes, Row, RowKey};

/// A stored row: its canonical encoding and its fields, in one allocation behind one reference
/// count.
///
/// The row store keeps every row as a `SharedRow`; snapshots and deltas hold the same values, so
/// taking a snapshot or computing a delta copies pointers, not rows, and the canonical bytes
/// (what checksums and envelopes are made of) are computed once per row version instead of once
/// per export pass.
///
/// A `SharedRow` does not keep a [`Row`]: its identity fields are read from one buffer and its
/// attributes are decoded on request ([`SharedRow::attributes`]), because a hundred thousand
/// stored rows each holding eight strings and an attribute map cost several times their encoded
/// size. [`SharedRow::to_row`] builds the owned form.
///
/// ```
/// use kollect_core::model::{Row, SharedRow};
///
/// let row = Row {
///     name: "web".into(),
///     uid: "u1".into(),
///     attributes: serde_json::json!({"image": "web:1"}).as_object().cloned(),
///     ..Row::default()
/// };
/// let shared = SharedRow::new(row.clone());
/// assert_eq!(shared.name(), "web");
/// assert_eq!(shared.attributes(), row.attributes);
/// assert_eq!(shared.canonical(), row.canonical_bytes().as_slice());
/// assert_eq!(shared.to_row(), row);
/// assert!(SharedRow::ptr_eq(&shared, &shared.clone()));
/// ```
#[derive(Clone)]
pub struct SharedRow(Arc<Encoded>);

/// The string fields in the order they are laid out in [`Encoded::data`].
#[derive(Clone, Copy)]
enum Field {
    TargetNamespace,
    TargetName,
    Namespace,
    Name,
    Group,
    Version,
    Kind,
    Uid,
}

const FIELDS: usize = 8;

struct Encoded {
    /// The canonical encoding, then the eight string fields, then the attributes as serde_json
    /// encodes them (so they decode back to exactly the values stored), or nothing for `None`.
    data: Box<str>,
    /// Where the attributes' canonical encoding starts (it ends one byte before the canonical
    /// encoding does).
    attributes_at: usize,
    /// Where the canonical encoding ends.
    canonical_end: usize,
    /// Where each string field ends.
    field_ends: [usize; FIELDS],
}

impl Encoded {
    /// Where `field` is in `data`.
    fn range(&self, field: Field) -> std::ops::Range<usize> {
        let index = field as usize;
        let start = match index {
            0 => self.canonical_end,
            _ => self.field_ends[index - 1],
        };
        start..self.field_ends[index]
    }

    fn field(&self, field: Field) -> &str {
        self.data.get(self.range(field)).unwrap_or_default()
    }

    /// The field's bytes (compared as a `str` compares, without the UTF-8 boundary checks).
    fn field_bytes(&self, field: Field) -> &[u8] {
        self.data.as_bytes().get(self.range(field)).unwrap_or_default()
    }

    fn attributes_json(&self) -> &str {
        self.data.get(self.field_ends[FIELDS - 1]..).unwrap_or_default()
    }
}

impl SharedRow {
    /// Encodes `row` and stores it.
    pub fn new(row: Row) -> Self {
        let mut data = Vec::with_capacity(512);
        let attributes_at = row.write_canonical_marked(&mut data);
        let canonical_end = data.len();
        let mut field_ends = [0; FIELDS];
        let fields = [
            &row.target_namespace,
            &row.target_name,
            &row.namespace,
            &row.name,
            &row.group,
            &row.version,
            &row.kind,
            &row.uid,
        ];
        for (end, value) in field_ends.iter_mut().zip(fields) {
            data.extend_from_slice(value.as_bytes());
            *end = data.len();
        }
        if let Some(attributes) = &row.attributes {
            // Writing a map of JSON values into a buffer cannot fail.
            let _ = serde_json::to_writer(&mut data, attributes);
        }
        // Canonical bytes, `str`s and serde_json output are all UTF-8.
        let data = String::from_utf8(data).unwrap_or_default().into_boxed_str();
        Self(Arc::new(Encoded {
            data,
            attributes_at,
            canonical_end,
            field_ends,
        }))
    }

    /// The row's canonical (Go `encoding/json`) encoding.
    pub fn canonical(&self) -> &[u8] {
        let data = self.0.data.as_bytes();
        data.get(..self.0.canonical_end).unwrap_or(data)
    }

    /// The canonical encoding of the attributes alone (`null` without them): the part of
    /// [`SharedRow::canonical`] after `"attributes":`.
    pub fn canonical_attributes(&self) -> &[u8] {
        let end = self.0.canonical_end.saturating_sub(1);
        self.0
            .data
            .as_bytes()
            .get(self.0.attributes_at..end)
            .unwrap_or_default()
    }

    /// Appends the canonical encoding to `out` (a copy of the cached bytes).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.canonical());
    }

    /// Namespace of the target that collected the object.
    pub fn target_namespace(&self) -> &str {
        self.0.field(Field::TargetNamespace)
    }

    /// Name of the target that collected the object.
    pub fn target_name(&self) -> &str {
        self.0.field(Field::TargetName)
    }

    /// Namespace of the collected object; empty for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        self.0.field(Field::Namespace)
    }

    /// Name of the collected object.
    pub fn name(&self) -> &str {
        self.0.field(Field::Name)
    }

    /// API group of the object (empty for the core group).
    pub fn group(&self) -> &str {
        self.0.field(Field::Group)
    }

    /// API version of the object.
    pub fn version(&self) -> &str {
        self.0.field(Field::Version)
    }

    /// Kind of the object.
    pub fn kind(&self) -> &str {
        self.0.field(Field::Kind)
    }

    /// `metadata.uid` of the object.
    pub fn uid(&self) -> &str {
        self.0.field(Field::Uid)
    }

    /// True when the row has an attribute map (`attributes` is not `null`).
    pub fn has_attributes(&self) -> bool {
        !self.0.attributes_json().is_empty()
    }

    /// The extracted attributes, decoded from the stored form (each call decodes again; keep the
    /// result when reading several values).
    pub fn attributes(&self) -> Option<Attributes> {
        let json = self.0.attributes_json();
        if json.is_empty() {
            return None;
        }
        // Written by serde_json from an attribute map in `new`, so it decodes back to it.
        serde_json::from_str(json).ok()
    }

    /// The store/delta identity of this row: (targetNamespace, targetName, uid).
    pub fn key(&self) -> RowKey {
        RowKey {
            target_namespace: self.target_namespace().to_owned(),
            target_name: self.target_name().to_owned(),
            uid: self.uid().to_owned(),
        }
    }

    /// True when this row and `key` name the same row.
    pub fn has_key(&self, key: &RowKey) -> bool {
        self.uid() == key.uid
            && self.target_name() == key.target_name
            && self.target_namespace() == key.target_namespace
    }

    /// True when both are the same stored value (one row version); `false` says nothing about
    /// their content.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The row as serde_json encodes a [`Row`] (not the canonical form: attributes in their
    /// stored order, numbers as given), written from the stored fields without decoding.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(self.0.data.len());
        out.push(b'{');
        let mut field = |name: &str, value: &str| {
            if out.len() > 1 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            // Writing a `str` into a buffer cannot fail.
            let _ = serde_json::to_writer(&mut out, value);
        };
        field("targetNamespace", self.target_namespace());
        field("targetName", self.target_name());
        field("namespace", self.namespace());
        field("name", self.name());
        if !self.group().is_empty() {
            field("group", self.group());
        }
        field("version", self.version());
        field("kind", self.kind());
        field("uid", self.uid());
        out.extend_from_slice(b",\"attributes\":");
        match self.0.attributes_json() {
            "" => out.extend_from_slice(b"null"),
            json => out.extend_from_slice(json.as_bytes()),
        }
        out.push(b'}');
        // Field names, serde_json's output and the stored JSON are all UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The owned row.
    pub fn to_row(&self) -> Row {
        let field = |field| self.0.field(field).to_owned();
        Row {
            target_namespace: field(Field::TargetNamespace),
            target_name: field(Field::TargetName),
            namespace: field(Field::Namespace),
            name: field(Field::Name),
            group: field(Field::Group),
            version: field(Field::Version),
            kind: field(Field::Kind),
            uid: field(Field::Uid),
            attributes: self.attributes(),
        }
    }

    /// [`Row::canonical_cmp`] of the two rows. Fields are compared in the sort key's order and
    /// only until one differs (rows of one partition usually differ by name, the fourth).
    pub fn canonical_cmp(&self, other: &Self) -> Ordering {
        if Self::ptr_eq(self, other) {
            return Ordering::Equal;
        }
        const SORT_KEY: [Field; FIELDS] = [
            Field::TargetNamespace,
            Field::TargetName,
            Field::Namespace,
            Field::Name,
            Field::Uid,
            Field::Group,
            Field::Version,
            Field::Kind,
        ];
        for field in SORT_KEY {
            match self.0.field_bytes(field).cmp(other.0.field_bytes(field)) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl From<Row> for SharedRow {
    fn from(row: Row) -> Self {
        Self::new(row)
    }
}

impl From<&SharedRow> for Row {
    fn from(row: &SharedRow) -> Self {
        row.to_row()
    }
}

impl From<SharedRow> for Row {
    fn from(row: SharedRow) -> Self {
        row.to_row()
    }
}

impl PartialEq for SharedRow {
    fn eq(&self, other: &Self) -> bool {
        // The stored form is a function of the row, so equal rows have equal bytes.
        Self::ptr_eq(self, other) || self.0.data == other.0.data
    }
}

impl Eq for SharedRow {}

impl PartialEq<Row> for SharedRow {
    /// Compares the fields in place; the attributes by their stored bytes when those match
    /// (the usual case: a row extracted again the same way), decoded otherwise.
    fn eq(&self, other: &Row) -> bool {
        let fields_equal = self.target_namespace() == other.target_namespace
            && self.target_name() == other.target_name
            && self.namespace() == other.namespace
            && self.name() == other.name
            && self.group() == other.group
            && self.version() == other.version
            && self.kind() == other.kind
            && self.uid() == other.uid;
        if !fields_equal {
            return false;
        }
        let stored = self.0.attributes_json();
        match &other.attributes {
            None => stored.is_empty(),
            Some(_) if stored.is_empty() => false,
            Some(attributes) => {
                serde_json::to_string(attributes).is_ok_and(|json| json == stored)
                    || self.attributes().as_ref() == Some(attributes)
            }
        }
    }
}

impl PartialEq<SharedRow> for Row {
    fn eq(&self, other: &SharedRow) -> bool {
        other == self
    }
}

impl fmt::Debug for SharedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_row().fmt(f)
    }
}

/// A stored row as [`Row`] serialises, borrowing its strings.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RowView<'a> {
    target_namespace: &'a str,
    target_name: &'a str,
    namespace: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    version: &'a str,
    kind: &'a str,
    uid: &'a str,
    attributes: Option<Attributes>,
}

impl Serialize for SharedRow {
    /// The same as the [`Row`]'s serialisation (with serde_json, [`SharedRow::to_json`] gives
    /// those bytes without decoding the attributes).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RowView {
            target_namespace: self.target_namespace(),
            target_name: self.target_name(),
            namespace: self.namespace(),
            name: self.name(),
            group: self.group(),
            version: self.version(),
            kind: self.kind(),
            uid: self.uid(),
            attributes: self.attributes(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Row::deserialize(deserializer).map(Self::new)
    }
}

/// Rows that can append their canonical encoding: [`Row`] encodes, [`SharedRow`] copies its
/// cached bytes. Lets the envelope and checksum functions take either.
pub trait Canonical {
    /// Appends the canonical encoding of this row to `out`.
    fn append_canonical(&self, out: &mut Vec<u8>);
}

impl Canonical for Row {
    fn append_canonical(&self, out: &mut Vec<u8>) {
        self.write_canonical(out);
    }
}

impl Canonical for SharedRow {
    fn append_canonical(&self, out: &mut Vec<u8>) {
        self.write_canonical(out);
    }
}

impl<T: Canonical + ?Sized> Canonical for &T {
    fn append_canonical(&self, out: &mut Vec<u8>) {
        (**self).append_canonical(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::canonical;
    use serde_json::{Value, json};

    fn row(name: &str) -> Row {
        Row {
            target_namespace: "ns".into(),
            target_name: "t".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            attributes: serde_json::json!({"v": 1}).as_object().cloned(),
            ..Row::default()
        }
    }

    #[test]
    fn shared_rows_compare_and_encode_as_their_rows() {
        let a = SharedRow::new(row("a"));
        let again = SharedRow::new(row("a"));
        assert_eq!(a, again);
        assert!(!SharedRow::ptr_eq(&a, &again));
        assert_eq!(a, row("a"));
        assert_ne!(a, SharedRow::new(row("b")));
        assert_eq!(a.canonical_cmp(&SharedRow::new(row("b"))), Ordering::Less);
        let mut out = Vec::new();
        a.append_canonical(&mut out);
        assert_eq!(out, row("a").canonical_bytes());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&row("a")).unwrap()
        );
        let back: SharedRow = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back.canonical(), a.canonical());
        assert_eq!(a.to_row(), row("a"));
    }

    fn every_field(attributes: Option<Value>) -> Row {
        Row {
            target_namespace: "team-a".into(),
            target_name: "deploys".into(),
            namespace: "shop".into(),
            name: "web <\"1\">\u{2028}".into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: "u-1".into(),
            attributes: attributes.and_then(|a| a.as_object().cloned()),
        }
    }

    #[test]
    fn fields_attributes_and_encodings_read_back_as_stored() {
        let attributes = json!({
            "z": 1.0, "image": "nginx <latest>", "big": u64::MAX, "nested": {"b": [1, null, true], "a": -0.5}
        });
        for row in [
            every_field(Some(attributes.clone())),
            every_field(None),
            Row {
                group: String::new(),
                ..every_field(Some(json!({})))
            },
            Row::default(),
        ] {
            let shared = SharedRow::new(row.clone());
            assert_eq!(
                [
                    shared.target_namespace(),
                    shared.target_name(),
                    shared.namespace(),
                    shared.name()
                ],
                [
                    &*row.target_namespace,
                    &*row.target_name,
                    &*row.namespace,
                    &*row.name
                ]
            );
            assert_eq!(
                [shared.group(), shared.version(), shared.kind(), shared.uid()],
                [&*row.group, &*row.version, &*row.kind, &*row.uid]
            );
            // Attributes decode to exactly the stored values (1.0 stays a float, u64::MAX exact).
            assert_eq!(shared.attributes(), row.attributes);
            assert_eq!(shared.has_attributes(), row.attributes.is_some());
            assert_eq!(shared.to_row(), row);
            assert_eq!(shared.key(), row.key());
            assert!(shared.has_key(&row.key()));
            assert_eq!(shared.canonical(), row.canonical_bytes().as_slice());
            let attributes_alone = match &row.attributes {
                Some(map) => canonical::to_vec(&Value::Object(map.clone())),
                None => b"null".to_vec(),
            };
            assert_eq!(shared.canonical_attributes(), attributes_alone.as_slice());
            // The serde forms, borrowed and written directly, are the row's.
            let expected = serde_json::to_string(&row).unwrap();
            assert_eq!(shared.to_json(), expected);
            assert_eq!(serde_json::to_string(&shared).unwrap(), expected);
            assert_eq!(format!("{shared:?}"), format!("{row:?}"));
        }
    }

    #[test]
    fn a_stored_row_equals_a_row_with_the_same_content_in_any_attribute_order() {
        let stored = SharedRow::new(every_field(Some(json!({"a": 1, "b": "x"}))));
        assert_eq!(stored, every_field(Some(json!({"a": 1, "b": "x"}))));
        let mut reordered = Attributes::new();
        reordered.insert("b".into(), json!("x"));
        reordered.insert("a".into(), json!(1));
        let other_order = Row {
            attributes: Some(reordered),
            ..every_field(None)
        };
        assert_eq!(stored, other_order);
        assert_ne!(stored, every_field(Some(json!({"a": 2, "b": "x"}))));
        assert_ne!(stored, every_field(None));
        assert_ne!(
            stored,
            Row {
                uid: "u-2".into(),
                ..every_field(Some(json!({"a": 1, "b": "x"})))
            }
        );
        assert_ne!(SharedRow::new(every_field(None)), every_field(Some(json!({}))));
    }
}
