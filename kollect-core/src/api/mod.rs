//! The Kubernetes API of Kollect and the well-known names that go with it.
//!
//! Annotation and label keys, finalizers, condition types and reasons are part of the wire contract
//! with the Go operator (decision A1): users script `kubectl wait` and alerts against them.

pub mod strict;
pub mod v1alpha1;

/// The API group of every Kollect resource.
pub const GROUP: &str = "kollect.dev";

/// Annotation and label keys honoured by the operator.
pub mod keys {
    /// Resource or namespace label opting an object in (`enabled`) or out (`disabled`) of collection.
    pub const WATCH_LABEL: &str = "kollect.dev/watch";
    /// Namespace annotation opting a namespace in (`enabled`) or out (`disabled`) of collection.
    pub const NAMESPACE_WATCH_ANNOTATION: &str = "kollect.dev/namespace-watch";
    /// Sink annotation requesting a one-shot connection probe (`"true"`).
    pub const TEST_CONNECTION_ANNOTATION: &str = "kollect.dev/test-connection";
    /// Sink annotation requesting `status.preview` while it is `"true"`.
    pub const PREVIEW_ANNOTATION: &str = "kollect.dev/preview";
    /// Profile annotation permitting attribute paths into `Secret.data`.
    pub const ALLOW_SECRET_EXTRACTION_ANNOTATION: &str = "kollect.dev/allow-secret-extraction";
    /// Profile annotation permitting `export.mode: Resource` on Secrets.
    pub const ALLOW_FULL_RESOURCE_EXPORT_ANNOTATION: &str = "kollect.dev/allow-full-resource-export";
    /// The namespace label Kubernetes sets to the namespace's own name.
    pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
}

/// Finalizer names (shared with the Go operator so either can delete the other's objects).
pub mod finalizers {
    /// On `KollectTarget`.
    pub const TARGET: &str = "kollect.dev/target-cleanup";
    /// On `KollectClusterTarget`.
    pub const CLUSTER_TARGET: &str = "kollect.dev/cluster-target-cleanup";
    /// On `KollectInventory`.
    pub const INVENTORY: &str = "kollect.dev/inventory-cleanup";
    /// On `KollectClusterInventory`.
    pub const CLUSTER_INVENTORY: &str = "kollect.dev/cluster-inventory-cleanup";
}

/// Condition types written into `status.conditions`.
pub mod condition_types {
    /// The object is doing its job.
    pub const READY: &str = "Ready";
    /// The last export (or collection) reached its sinks.
    pub const SYNCED: &str = "Synced";
    /// Something prevents the object from working; the reason says what.
    pub const DEGRADED: &str = "Degraded";
    /// Whether the bound sinks resolve and accept exports.
    pub const SINK_REACHABLE: &str = "SinkReachable";
    /// The sink's last connection probe result.
    pub const CONNECTION_VERIFIED: &str = "ConnectionVerified";
    /// TLS verification is disabled on the sink.
    pub const TLS_INSECURE: &str = "TLSInsecure";
    /// Cluster inventory export result.
    pub const EXPORT_SUCCEEDED: &str = "ExportSucceeded";
    /// The inventory approaches the size at which exports should be sharded.
    pub const EXPORT_SHARD_WARNING: &str = "ExportShardWarning";
}

/// Condition reasons (the Go operator's exact spellings, decision A1).
pub mod reasons {
    #![allow(missing_docs)]
    pub const COLLECTING: &str = "Collecting";
    pub const SCOPE_FORBIDDEN: &str = "ScopeForbidden";
    pub const NO_SINKS_IN_NAMESPACE: &str = "NoSinksInNamespace";
    pub const SINKS_REACHABLE: &str = "SinksReachable";
    pub const CONNECTION_VERIFIED: &str = "ConnectionVerified";
    pub const SINK_RESOLVED: &str = "SinkResolved";
    pub const SUSPENDED: &str = "Suspended";
    pub const MISSING_PROFILE_REF: &str = "MissingProfileRef";
    pub const PROFILE_NOT_FOUND: &str = "ProfileNotFound";
    pub const PROFILE_FORBIDDEN: &str = "ProfileForbidden";
    pub const PROFILE_INVALID: &str = "ProfileInvalid";
    pub const SCOPE_LOOKUP_FAILED: &str = "ScopeLookupFailed";
    pub const SCOPE_GVK_DENIED: &str = "ScopeGVKDenied";
    pub const SCOPE_NAMESPACE_DENIED: &str = "ScopeNamespaceDenied";
    pub const SCOPE_SINK_DENIED: &str = "ScopeSinkDenied";
    pub const INFORMER_REGISTRATION_FAILED: &str = "InformerRegistrationFailed";
    pub const ACCESS_CHECK_FAILED: &str = "AccessCheckFailed";
    pub const EXTRACTION_FAILED: &str = "ExtractionFailed";
    pub const SINK_NOT_FOUND: &str = "SinkNotFound";
    pub const SINK_FORBIDDEN: &str = "SinkForbidden";
    pub const SINK_UNREACHABLE: &str = "SinkUnreachable";
    pub const SINK_LOOKUP_FAILED: &str = "SinkLookupFailed";
    pub const INVENTORY_LIST_FAILED: &str = "InventoryListFailed";
    pub const EXPORTED: &str = "Exported";
    pub const PARTIALLY_SYNCED: &str = "PartiallySynced";
    pub const PROGRESSING: &str = "Progressing";
    pub const EXPORT_TERMINAL: &str = "ExportTerminal";
    pub const NO_EXPORT: &str = "NoExport";
    pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLarge";
    pub const SPILL_REQUIRED: &str = "SpillRequired";
    pub const CLEANUP_TERMINAL: &str = "CleanupTerminal";
    pub const NO_SINKS_CONFIGURED: &str = "NoSinksConfigured";
    pub const EXPORT_SUCCEEDED: &str = "ExportSucceeded";
    pub const EXPORT_FAILED: &str = "ExportFailed";
    pub const APPROACHING_EXPORT_CAP: &str = "ApproachingExportCap";
    pub const DEBOUNCED: &str = "Debounced";
    pub const NO_TARGETS: &str = "NoTargets";
    pub const TARGET_DEGRADED: &str = "TargetDegraded";
    pub const SINK_NAMESPACE_DENIED: &str = "SinkNamespaceDenied";
    pub const EXPORT_UNAVAILABLE: &str = "ExportUnavailable";
    pub const ROLLED_UP: &str = "RolledUp";
    pub const CONNECTION_OK: &str = "ConnectionOK";
    pub const SECRET_RESOLVE_FAILED: &str = "SecretResolveFailed";
    pub const CONNECTION_TEST_FAILED: &str = "ConnectionTestFailed";
    pub const INSECURE_SKIP_VERIFY: &str = "InsecureSkipVerify";
    pub const PROBE_SUCCEEDED: &str = "ProbeSucceeded";
    pub const INVALID_SINK_REF: &str = "InvalidSinkRef";
    /// A sink type the CRDs admit but this build has no backend for (terminal; not in the
    /// Go operator, which reported such sinks as missing Secrets or unknown types).
    pub const SINK_TYPE_UNSUPPORTED: &str = "SinkTypeUnsupported";
}
