//! `namespace/name` of an object, and the labels and annotations the agent
//! reads by name.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation that picks a Service's IPVS scheduler
/// (`ipvs-agent.io/scheduler: wrr`), instead of `--ipvs-scheduler`.
pub const SCHEDULER_ANNOTATION: &str = "ipvs-agent.io/scheduler";

/// The label that gives a Service to another proxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Node label that names the node's zone (`v1.LabelTopologyZone`):
/// the only Node label kube-proxy's topology rules read.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// `namespace/name` of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Namespace (`default` when the object gives none).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The reference of an object from its metadata (namespace `default`
    /// when unset).
    pub fn of(metadata: &ObjectMeta) -> Self {
        Self::new(
            metadata.namespace.as_deref().unwrap_or("default"),
            metadata.name.as_deref().unwrap_or(""),
        )
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
