//! What an inventory is bound to: the identity of a binding and the sink with its effective
//! settings.

use std::sync::Arc;
use std::time::Duration;

use crate::api::v1alpha1::SinkFamily;
use crate::sink::Sink;

/// The identity of one binding of an inventory: family and sink name (and, for cluster
/// inventories, the sink's namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    /// Sink family.
    pub family: SinkFamily,
    /// Sink name.
    pub name: String,
    /// Sink namespace, for bindings of cluster inventories.
    pub namespace: Option<String>,
}

impl BindingKey {
    /// A binding to the sink `name` of `family`.
    pub fn new(family: SinkFamily, name: impl Into<String>) -> Self {
        Self {
            family,
            name: name.into(),
            namespace: None,
        }
    }

    /// `<family>/<name>`, the key of `status.sinkExports[]`.
    pub fn export_name(&self) -> String {
        self.family.export_key(&self.name)
    }
}

/// One bound sink with its effective settings.
#[derive(Clone)]
pub struct Binding {
    /// Which binding this is.
    pub key: BindingKey,
    /// The sink, normally wrapped in the middleware stack ([`super::build_stack`]).
    pub sink: Arc<dyn Sink>,
    /// Effective interval ([`super::effective_interval`]).
    pub interval: Duration,
    /// Effective size ceiling in bytes ([`super::effective_ceiling`]).
    pub ceiling: u64,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("key", &self.key)
            .field("sink_type", &self.sink.sink_type())
            .field("interval", &self.interval)
            .field("ceiling", &self.ceiling)
            .finish()
    }
}
