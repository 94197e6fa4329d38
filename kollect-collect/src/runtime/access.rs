//! Access checks: a SelfSubjectAccessReview for `list` on a resource in a namespace (or
//! cluster-wide for cluster-scoped resources, decision A8), cached for a short TTL so a busy
//! resource costs one review per namespace per TTL.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::metrics::CollectMetrics;

/// The outcome of an access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The operator may list the resource there.
    Allowed,
    /// It may not; the text is the API server's reason, when it gave one.
    Denied(String),
    /// The review itself failed (the API is unreachable, ...): keep what was collected.
    Unknown(String),
}

type Key = (String, String, String);

/// SelfSubjectAccessReview results with a TTL.
pub(crate) struct AccessCache {
    client: kube::Client,
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Instant, bool, String)>>,
    metrics: CollectMetrics,
}

impl std::fmt::Debug for AccessCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// At most this many cached decisions; the cache is cleared when full (the TTL is short, so a
/// full clear only costs a burst of reviews).
const MAX_ENTRIES: usize = 4096;

impl AccessCache {
    /// A cache of reviews made with `client`, valid for `ttl`.
    pub(crate) fn new(client: kube::Client, ttl: Duration, metrics: CollectMetrics) -> Self {
        Self {
            client,
            ttl,
            entries: Mutex::default(),
            metrics,
        }
    }

    /// Whether `list` on `group/resource` is allowed in `namespace` (`""`: cluster-wide).
    pub(crate) async fn check(&self, group: &str, resource: &str, namespace: &str) -> Access {
        let key = (group.to_owned(), resource.to_owned(), namespace.to_owned());
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, allowed, reason)) = entries.get(&key)
                && at.elapsed() < self.ttl
            {
                self.metrics.access_cache(true);
                return if *allowed {
                    Access::Allowed
                } else {
                    Access::Denied(reason.clone())
                };
            }
        }
        self.metrics.access_cache(false);
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                    verb: Some("list".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &review).await {
            Ok(result) => {
                let status = result.status.unwrap_or_default();
                // RBAC denies without a reason; say what was asked, which is what the person
                // granting the permission needs.
                let reason = status.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| {
                    let resource = if group.is_empty() {
                        resource.to_owned()
                    } else {
                        format!("{resource}.{group}")
                    };
                    match namespace {
                        "" => format!("cannot list {resource} cluster-wide"),
                        namespace => format!("cannot list {resource} in namespace {namespace}"),
                    }
                });
                let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(key, (Instant::now(), status.allowed, reason.clone()));
                if status.allowed {
                    Access::Allowed
                } else {
                    Access::Denied(reason)
                }
            }
            Err(error) => Access::Unknown(error.to_string()),
        }
    }
}
