//! Strict decoding: the fields of a manifest that its typed decoding did not keep.
//!
//! The API server's strict field validation (`fieldValidation=Strict`) refuses a manifest that
//! names a field the schema does not have, instead of silently dropping it. Our types derive
//! `Deserialize` with flattened blocks, so serde cannot report ignored keys itself; instead the
//! decoded value is serialized again and every key of the input that did not survive is an
//! unknown field. Empty values (`null`, `{}`, `[]`) are not reported: a type that omits empty
//! defaults on output would otherwise flag them.

use serde::Serialize;
use serde_json::Value;

/// The dotted paths (`spec.sinks`, `spec.attributes[1].pth`) of every field of `input` that
/// `decoded` does not hold, in document order.
pub fn unknown_fields<T: Serialize>(input: &Value, decoded: &T) -> Vec<String> {
    let output = serde_json::to_value(decoded).unwrap_or(Value::Null);
    let mut unknown = Vec::new();
    walk(input, &output, String::new(), &mut unknown);
    unknown
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn walk(input: &Value, output: &Value, path: String, unknown: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    Some(inner) => walk(value, inner, child, unknown),
                    None if is_empty(value) => {}
                    None => unknown.push(child),
                }
            }
        }
        (Value::Array(given), Value::Array(kept)) if given.len() == kept.len() => {
            for (index, (value, inner)) in given.iter().zip(kept).enumerate() {
                walk(value, inner, format!("{path}[{index}]"), unknown);
            }
        }
        // Scalars, maps decoded into other shapes (a bare-string sink ref), and lists whose
        // length changed are the type's business, not unknown fields.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{KollectInventory, KollectProfile};

    #[test]
    fn unknown_keys_are_named_by_path() {
        let input = serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectInventory",
            "metadata": {"name": "i", "namespace": "n", "creationTimestamp": null},
            "spec": {"sinks": {"snapshotSinkRefs": [{"name": "git"}]}, "options": {}}
        });
        let decoded: KollectInventory = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(unknown_fields(&input, &decoded), ["spec.sinks"]);
    }

    #[test]
    fn known_fields_pass_and_list_items_are_checked() {
        let input = serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectProfile",
            "metadata": {"name": "p"},
            "spec": {"targetGVK": {"group": "apps", "version": "v1", "kind": "Deployment"},
                     "attributes": [{"name": "a", "path": "$.metadata.name"},
                                    {"name": "b", "path": "$.x", "requird": true}]}
        });
        let decoded: KollectProfile = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(unknown_fields(&input, &decoded), ["spec.attributes[1].requird"]);
    }
}
