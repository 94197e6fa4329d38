//! Watched objects as the JSON values extraction reads.
//!
//! kube's `DynamicObject` decodes `metadata` into a typed `ObjectMeta` and keeps the rest as a
//! value, so extraction (which reads the whole object as one value) had to encode it back into
//! JSON: a second pass over every object, `managedFields` and all. A [`WatchedObject`] is
//! decoded once, straight into a value; only the identity fields the watcher and the workers
//! need are copied out of it.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// One object of a watch or list: its JSON value, and its name, namespace, uid and resource
/// version for kube's [`kube::Resource`] (every other `ObjectMeta` field is left empty).
#[derive(Debug, Clone)]
pub(crate) struct WatchedObject {
    identity: ObjectMeta,
    value: Value,
}

impl WatchedObject {
    /// The uid (empty when the object has none).
    pub(crate) fn uid(&self) -> &str {
        self.identity.uid.as_deref().unwrap_or_default()
    }

    /// The namespace (empty for cluster-scoped objects).
    pub(crate) fn namespace(&self) -> &str {
        self.identity.namespace.as_deref().unwrap_or_default()
    }

    /// The name.
    pub(crate) fn name(&self) -> &str {
        self.identity.name.as_deref().unwrap_or_default()
    }

    /// The object as extraction reads it, with `apiVersion` and `kind` first. The items of a
    /// list of built-in kinds come without them; they are filled in from `resource` so an object
    /// reads the same whether a list or a watch event delivered it.
    pub(crate) fn into_value(self, resource: &ApiResource) -> Value {
        let Value::Object(fields) = self.value else {
            return self.value;
        };
        if fields.contains_key("apiVersion") && fields.contains_key("kind") {
            return Value::Object(fields);
        }
        let mut object = Map::with_capacity(fields.len() + 2);
        object.insert("apiVersion".into(), resource.api_version.clone().into());
        object.insert("kind".into(), resource.kind.clone().into());
        object.extend(fields);
        Value::Object(object)
    }
}

impl<'de> Deserialize<'de> for WatchedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let metadata = value.get("metadata");
        let field = |key: &str| {
            metadata
                .and_then(|metadata| metadata.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let identity = ObjectMeta {
            name: field("name"),
            namespace: field("namespace"),
            uid: field("uid"),
            resource_version: field("resourceVersion"),
            ..ObjectMeta::default()
        };
        Ok(Self { identity, value })
    }
}

impl kube::Resource for WatchedObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(resource: &ApiResource) -> Cow<'_, str> {
        resource.kind.as_str().into()
    }

    fn group(resource: &ApiResource) -> Cow<'_, str> {
        resource.group.as_str().into()
    }

    fn version(resource: &ApiResource) -> Cow<'_, str> {
        resource.version.as_str().into()
    }

    fn api_version(resource: &ApiResource) -> Cow<'_, str> {
        resource.api_version.as_str().into()
    }

    fn plural(resource: &ApiResource) -> Cow<'_, str> {
        resource.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.identity
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.identity
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn configmaps() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        )
    }

    #[test]
    fn identity_comes_from_metadata_and_the_value_is_the_whole_object() {
        let object = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "uid": "u1", "resourceVersion": "7", "labels": {"x": "y"}},
            "data": {"k": "v"},
        });
        let watched: WatchedObject = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(
            (watched.name(), watched.namespace(), watched.uid()),
            ("a", "n", "u1")
        );
        assert_eq!(
            kube::ResourceExt::resource_version(&watched).as_deref(),
            Some("7")
        );
        assert_eq!(watched.into_value(&configmaps()), object);
    }

    #[test]
    fn a_listed_item_without_type_fields_gets_them_first() {
        let watched: WatchedObject =
            serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).unwrap();
        assert_eq!(watched.uid(), "");
        assert_eq!(watched.namespace(), "");
        let value = watched.into_value(&configmaps());
        assert_eq!(
            value,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})
        );
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "data"]);
    }

    #[test]
    fn an_object_without_metadata_has_an_empty_identity() {
        let watched: WatchedObject = serde_json::from_value(json!({"kind": "ConfigMap"})).unwrap();
        assert_eq!((watched.name(), watched.namespace(), watched.uid()), ("", "", ""));
    }
}
