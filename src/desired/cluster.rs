//! The Kubernetes objects the desired state is computed from, indexed by
//! the Service they belong to, so one Service's slices are found without
//! scanning every slice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `namespace/name` of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    /// Namespace (`default` when the object gives none).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceRef {
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

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Services, EndpointSlices and legacy Endpoints, with the slices indexed
/// by Service. Change it through the `insert_*` / `remove_*` methods so
/// the index stays right.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    /// Services by `namespace/name`.
    pub services: BTreeMap<ServiceRef, Service>,
    /// EndpointSlices by their own `namespace/name`.
    pub endpoint_slices: BTreeMap<ServiceRef, EndpointSlice>,
    /// Legacy Endpoints by `namespace/name` (the Service's).
    pub endpoints: BTreeMap<ServiceRef, Endpoints>,
    slices_by_service: BTreeMap<ServiceRef, BTreeSet<ServiceRef>>,
}

impl ClusterState {
    /// The Service an EndpointSlice belongs to (its
    /// `kubernetes.io/service-name` label, in the slice's namespace).
    pub fn service_of_slice(slice: &EndpointSlice) -> Option<ServiceRef> {
        let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(ServiceRef::new(
            slice.metadata.namespace.as_deref().unwrap_or("default"),
            name.clone(),
        ))
    }

    /// Adds or replaces a Service.
    pub fn insert_service(&mut self, service: Service) {
        self.services
            .insert(ServiceRef::of(&service.metadata), service);
    }

    /// Removes a Service.
    pub fn remove_service(&mut self, service: &ServiceRef) -> Option<Service> {
        self.services.remove(service)
    }

    /// Adds or replaces an EndpointSlice; returns the Services whose state
    /// it may change (the old one's and the new one's).
    pub fn insert_slice(&mut self, slice: EndpointSlice) -> BTreeSet<ServiceRef> {
        let slice_ref = ServiceRef::of(&slice.metadata);
        let mut touched = self.remove_slice(&slice_ref);
        if let Some(service) = Self::service_of_slice(&slice) {
            self.slices_by_service
                .entry(service.clone())
                .or_default()
                .insert(slice_ref.clone());
            touched.insert(service);
        }
        self.endpoint_slices.insert(slice_ref, slice);
        touched
    }

    /// Removes an EndpointSlice; returns the Service it belonged to.
    pub fn remove_slice(&mut self, slice_ref: &ServiceRef) -> BTreeSet<ServiceRef> {
        let mut touched = BTreeSet::new();
        if let Some(old) = self.endpoint_slices.remove(slice_ref) {
            if let Some(service) = Self::service_of_slice(&old) {
                if let Some(slices) = self.slices_by_service.get_mut(&service) {
                    slices.remove(slice_ref);
                    if slices.is_empty() {
                        self.slices_by_service.remove(&service);
                    }
                }
                touched.insert(service);
            }
        }
        touched
    }

    /// Adds or replaces a legacy Endpoints object.
    pub fn insert_endpoints(&mut self, endpoints: Endpoints) {
        self.endpoints
            .insert(ServiceRef::of(&endpoints.metadata), endpoints);
    }

    /// Removes a legacy Endpoints object.
    pub fn remove_endpoints(&mut self, endpoints: &ServiceRef) -> Option<Endpoints> {
        self.endpoints.remove(endpoints)
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of(
        &self,
        service: &ServiceRef,
    ) -> impl Iterator<Item = (&ServiceRef, &EndpointSlice)> {
        self.slices_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|slice_ref| {
                self.endpoint_slices
                    .get(slice_ref)
                    .map(|slice| (slice_ref, slice))
            })
    }
}
