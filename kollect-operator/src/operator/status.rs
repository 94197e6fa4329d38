//! Conditions and status writes.
//!
//! Conditions keep their `lastTransitionTime` while their status stays the same, and a status is
//! sent to the API server only when its content differs from what the object already carries
//! (decision A11): a steady state costs no writes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kollect_core::export::ConditionSpec;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The field manager of every write the operator makes.
pub const MANAGER: &str = "kollect-operator";

/// A status time as the API server keeps it: whole seconds. Times in a status being built are
/// truncated the same way, so comparing it with the status read back is exact.
pub fn time(at: Timestamp) -> Time {
    Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
}

/// Sets `spec` in `conditions`, keeping `lastTransitionTime` when the status is unchanged.
pub fn set(conditions: &mut Vec<Condition>, spec: &ConditionSpec, generation: Option<i64>) {
    set_parts(
        conditions,
        spec.type_,
        spec.status,
        spec.reason,
        &spec.message,
        generation,
    );
}

/// Sets a condition from its parts (see [`set`]).
pub fn set_parts(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" };
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(condition) => {
            if condition.status != status {
                condition.last_transition_time = time(Timestamp::now());
                condition.status = status.to_owned();
            }
            condition.reason = reason.to_owned();
            condition.message = message.to_owned();
            condition.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: time(Timestamp::now()),
        }),
    }
}

/// Sets several conditions that share a reason and message, e.g. `Degraded=True` and
/// `SinkReachable=False` for one cause.
pub fn set_each(
    conditions: &mut Vec<Condition>,
    each: &[(&str, bool)],
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    for (type_, status) in each {
        set_parts(conditions, type_, *status, reason, message, generation);
    }
}

/// Removes the condition of `type_`.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The statuses this process wrote last, by object, with the resourceVersion the object had
/// before the write. A reconcile that still sees that version works from a cache that has not
/// caught up with the write yet; comparing with what was written avoids writing it again.
#[derive(Debug, Default)]
pub struct Written {
    last: Mutex<HashMap<String, (Option<String>, serde_json::Value)>>,
}

impl Written {
    /// Forgets a deleted object.
    pub fn forget<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(object));
    }
}

/// `<Kind>/<namespace>/<name>`: the identity of an object across kinds.
pub(crate) fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// Writes `status` through the status subresource when it differs from `current` (and from what
/// this process last wrote for the same object version). Returns whether a write happened.
pub async fn patch_if_changed<K, S>(
    api: &Api<K>,
    object: &K,
    current: Option<&S>,
    status: &S,
    written: &Written,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let mut new = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    let version = object.meta().resource_version.clone();
    let object_key = key(object);
    if let Some((seen, last)) = written
        .last
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&object_key)
        && *seen == version
        && *last == new
    {
        return Ok(false);
    }
    let desired = new.clone();
    // A merge patch only removes what it sets to null: clear the fields the new status drops.
    if let (Some(old), Some(fields)) = (current.map(serde_json::to_value), new.as_object_mut())
        && let Ok(serde_json::Value::Object(old)) = old
    {
        for field in old.keys() {
            fields.entry(field.clone()).or_insert(serde_json::Value::Null);
        }
    }
    tracing::debug!(object = %object_key, status = %desired, "status write");
    let patch = serde_json::json!({ "status": new });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(MANAGER),
        &Patch::Merge(&patch),
    )
    .await?;
    written
        .last
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(object_key, (version, desired));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set_parts(
            &mut conditions,
            "Ready",
            true,
            "Collecting",
            "collecting 1",
            Some(1),
        );
        let first = conditions[0].last_transition_time.clone();
        set_parts(
            &mut conditions,
            "Ready",
            true,
            "Collecting",
            "collecting 2",
            Some(2),
        );
        assert_eq!(conditions[0].last_transition_time, first);
        assert_eq!(conditions[0].message, "collecting 2");
        assert_eq!(conditions[0].observed_generation, Some(2));
        // A flip stamps the time anew (the old one is set far back, so no clock wait is needed),
        // in whole seconds as the API server keeps it.
        let long_ago = Time(Timestamp::from_second(1_000_000_000).unwrap());
        conditions[0].last_transition_time = long_ago.clone();
        set_parts(&mut conditions, "Ready", false, "Suspended", "suspended", Some(2));
        let flipped = &conditions[0].last_transition_time;
        assert_ne!(*flipped, long_ago);
        assert_eq!(flipped.0.subsec_nanosecond(), 0);
        assert!(flipped.0 >= first.0);
        remove(&mut conditions, "Ready");
        assert!(conditions.is_empty());
    }
}
