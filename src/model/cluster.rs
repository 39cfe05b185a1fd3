//! The Kubernetes objects the desired state is computed from, indexed by
//! the Service they belong to, so one Service's slices are found without
//! scanning every slice.
//!
//! Only what the desired state reads is kept: a Service is pruned to the
//! fields kube-proxy's rules look at ([`prune_service`]), an EndpointSlice
//! becomes a [`Slice`] (addresses parsed, conditions, node name, topology
//! hints). A large cluster's objects carry much more (managed fields, owner
//! references, target references, zones, last-applied annotations); holding
//! 200,000 endpoints as full API objects cost hundreds of MiB.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::object_ref::{
    ObjectRef, SCHEDULER_ANNOTATION, SERVICE_NAME_LABEL, SERVICE_PROXY_NAME_LABEL,
};

/// An EndpointSlice as the desired state reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The Service it belongs to (its `kubernetes.io/service-name` label,
    /// in the slice's namespace); `None` without the label.
    pub service: Option<ObjectRef>,
    /// `addressType` (`IPv4`, `IPv6`, `FQDN`).
    pub address_type: String,
    /// `ports`, sorted by [`SlicePort::match_key`] (equal keys in their
    /// order in the slice): see [`Slice::ports_matching`].
    pub ports: Vec<SlicePort>,
    /// `endpoints`.
    pub endpoints: Vec<SliceEndpoint>,
}

impl Slice {
    /// The ports a Service port named `name` (`""`: unnamed) with
    /// `protocol` takes its endpoints' port from: a binary search. Each
    /// port of a Service looks its own up, and a scan of every port made
    /// one Service with 20,000 ports cost 20,000² comparisons (issue 16).
    pub fn ports_matching(&self, name: &str, protocol: &str) -> &[SlicePort] {
        let key = (name, protocol);
        let start = self.ports.partition_point(|port| port.match_key() < key);
        let count = self.ports[start..].partition_point(|port| port.match_key() == key);
        &self.ports[start..start + count]
    }
}

/// One of a slice's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePort {
    /// Its position in the slice's `ports` (for error messages: the
    /// compact slice keeps them sorted).
    pub index: u32,
    /// `name` (`None`: the unnamed port).
    pub name: Option<String>,
    /// `protocol` (`None`: TCP).
    pub protocol: Option<String>,
    /// `port`.
    pub port: Option<i32>,
}

impl SlicePort {
    /// What a Service port is matched by: the name (`""` when unnamed)
    /// and the protocol (TCP when unset).
    pub fn match_key(&self) -> (&str, &str) {
        (
            self.name.as_deref().unwrap_or(""),
            self.protocol.as_deref().unwrap_or("TCP"),
        )
    }
}

/// One of a slice's `endpoints`: its first address (the one kube-proxy
/// uses), conditions and node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// `addresses[0]` (`None` when there is none).
    pub address: Option<EndpointAddress>,
    /// `conditions.ready`.
    pub ready: Option<bool>,
    /// `conditions.serving`.
    pub serving: Option<bool>,
    /// `conditions.terminating`.
    pub terminating: Option<bool>,
    /// `nodeName`.
    pub node_name: Option<Box<str>>,
    /// `hints` (`None` when it names no zone and no node: most endpoints,
    /// so a pointer, not two lists, in every endpoint).
    pub hints: Option<Box<EndpointHints>>,
}

/// An endpoint's topology hints, as kube-proxy reads them
/// (`endpointslicecache.go`: the names of `hints.forZones` and
/// `hints.forNodes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointHints {
    /// `hints.forZones[].name`.
    pub for_zones: Box<[Box<str>]>,
    /// `hints.forNodes[].name` (PreferSameNode).
    pub for_nodes: Box<[Box<str>]>,
}

impl EndpointHints {
    /// The hints of an API endpoint; `None` when there are none.
    fn of(hints: Option<&k8s_openapi::api::discovery::v1::EndpointHints>) -> Option<Box<Self>> {
        let hints = hints?;
        let for_zones: Box<[Box<str>]> = hints
            .for_zones
            .iter()
            .flatten()
            .map(|zone| Box::from(zone.name.as_str()))
            .collect();
        let for_nodes: Box<[Box<str>]> = hints
            .for_nodes
            .iter()
            .flatten()
            .map(|node| Box::from(node.name.as_str()))
            .collect();
        if for_zones.is_empty() && for_nodes.is_empty() {
            return None;
        }
        Some(Box::new(Self {
            for_zones,
            for_nodes,
        }))
    }
}

/// An endpoint's address, parsed once when the slice arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAddress {
    /// An IP address.
    Ip(IpAddr),
    /// Text that is not an IP address (reported as a problem).
    Invalid(Box<str>),
}

impl From<&EndpointSlice> for Slice {
    fn from(slice: &EndpointSlice) -> Self {
        // Exact sizes: an iterator without one starts a Vec at four.
        let mut ports: Vec<SlicePort> = slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, port)| SlicePort {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                name: port.name.clone(),
                protocol: port.protocol.clone(),
                port: port.port,
            })
            .collect();
        // Stable: equal keys keep their order.
        ports.sort_by(|a, b| a.match_key().cmp(&b.match_key()));
        Self {
            service: ClusterState::service_of_slice(slice),
            address_type: slice.address_type.clone(),
            ports,
            endpoints: slice
                .endpoints
                .iter()
                .map(|endpoint| {
                    let conditions = endpoint.conditions.as_ref();
                    SliceEndpoint {
                        address: endpoint.addresses.first().map(|text| {
                            text.parse()
                                .map(EndpointAddress::Ip)
                                .unwrap_or_else(|_| EndpointAddress::Invalid(text.as_str().into()))
                        }),
                        ready: conditions.and_then(|c| c.ready),
                        serving: conditions.and_then(|c| c.serving),
                        terminating: conditions.and_then(|c| c.terminating),
                        node_name: endpoint.node_name.as_deref().map(Box::from),
                        hints: EndpointHints::of(endpoint.hints.as_ref()),
                    }
                })
                .collect(),
        }
    }
}

/// A Service as the desired state reads it: only the fields of
/// kube-proxy's rules, named after their API paths. Two Services that
/// prune equal program the same. Held instead of the API object: a
/// k8s-openapi `Service` is 824 bytes before its strings and maps (its
/// selector alone a B-tree node of 544), and 20,000 of them were the
/// agent's largest holding after its tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedService {
    /// `metadata.annotations[ipvs-agent.io/scheduler]`.
    pub scheduler_annotation: Option<String>,
    /// Whether `metadata.labels` has `service.kubernetes.io/service-proxy-name`
    /// (the Service belongs to another proxy).
    pub other_proxy: bool,
    /// `spec` (`None` when the object has none).
    pub spec: Option<PrunedServiceSpec>,
    /// `status.loadBalancer.ingress`.
    pub load_balancer_ingress: Vec<PrunedIngress>,
}

/// The `spec` fields of a [`PrunedService`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedServiceSpec {
    /// `type` (`None`: ClusterIP).
    pub type_: Option<String>,
    /// `clusterIP`.
    pub cluster_ip: Option<String>,
    /// `clusterIPs` (empty when unset).
    pub cluster_ips: Vec<String>,
    /// `externalIPs` (empty when unset).
    pub external_ips: Vec<String>,
    /// `ports`.
    pub ports: Vec<PrunedServicePort>,
    /// Whether `selector` has an entry.
    pub has_selector: bool,
    /// `sessionAffinity`.
    pub session_affinity: Option<String>,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds`.
    pub client_ip_timeout_seconds: Option<i32>,
    /// `internalTrafficPolicy`.
    pub internal_traffic_policy: Option<String>,
    /// `externalTrafficPolicy`.
    pub external_traffic_policy: Option<String>,
    /// `allocateLoadBalancerNodePorts`.
    pub allocate_load_balancer_node_ports: Option<bool>,
    /// `loadBalancerSourceRanges` (empty when unset).
    pub load_balancer_source_ranges: Vec<String>,
    /// `healthCheckNodePort`.
    pub health_check_node_port: Option<i32>,
}

/// One of `spec.ports` of a [`PrunedService`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedServicePort {
    /// `name`.
    pub name: Option<String>,
    /// `protocol` (`None`: TCP).
    pub protocol: Option<String>,
    /// `port`.
    pub port: i32,
    /// `nodePort`.
    pub node_port: Option<i32>,
}

/// One of `status.loadBalancer.ingress` of a [`PrunedService`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedIngress {
    /// `ip`.
    pub ip: Option<String>,
    /// `ipMode`.
    pub ip_mode: Option<String>,
}

/// `list` without spare capacity (a deserialized one-element list has
/// room for four).
fn exact<T>(mut list: Vec<T>) -> Vec<T> {
    list.shrink_to_fit();
    list
}

/// The fields of `service` the desired state reads ([`PrunedService`]).
pub fn prune_service(service: Service) -> PrunedService {
    let Service {
        metadata,
        spec,
        status,
    } = service;
    let spec = spec.map(|spec| PrunedServiceSpec {
        type_: spec.type_,
        cluster_ip: spec.cluster_ip,
        cluster_ips: exact(spec.cluster_ips.unwrap_or_default()),
        external_ips: exact(spec.external_ips.unwrap_or_default()),
        ports: exact(
            spec.ports
                .unwrap_or_default()
                .into_iter()
                .map(|port| PrunedServicePort {
                    name: port.name,
                    protocol: port.protocol,
                    port: port.port,
                    node_port: port.node_port,
                })
                .collect(),
        ),
        has_selector: spec.selector.is_some_and(|selector| !selector.is_empty()),
        session_affinity: spec.session_affinity,
        client_ip_timeout_seconds: spec
            .session_affinity_config
            .and_then(|config| config.client_ip)
            .and_then(|client_ip| client_ip.timeout_seconds),
        internal_traffic_policy: spec.internal_traffic_policy,
        external_traffic_policy: spec.external_traffic_policy,
        allocate_load_balancer_node_ports: spec.allocate_load_balancer_node_ports,
        load_balancer_source_ranges: exact(spec.load_balancer_source_ranges.unwrap_or_default()),
        health_check_node_port: spec.health_check_node_port,
    });
    let load_balancer_ingress = status
        .and_then(|status| status.load_balancer)
        .and_then(|load_balancer| load_balancer.ingress)
        .into_iter()
        .flatten()
        .map(|ingress| PrunedIngress {
            ip: ingress.ip,
            ip_mode: ingress.ip_mode,
        })
        .collect();
    PrunedService {
        scheduler_annotation: metadata
            .annotations
            .and_then(|mut annotations| annotations.remove(SCHEDULER_ANNOTATION)),
        other_proxy: metadata
            .labels
            .is_some_and(|labels| labels.contains_key(SERVICE_PROXY_NAME_LABEL)),
        spec,
        load_balancer_ingress,
    }
}

/// Services, EndpointSlices and legacy Endpoints, with the slices indexed
/// by Service. Change it through the `insert_*` / `remove_*` methods so
/// the index stays right.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    /// Services by `namespace/name`, pruned ([`prune_service`]).
    services: BTreeMap<ObjectRef, PrunedService>,
    /// EndpointSlices by their own `namespace/name`.
    endpoint_slices: BTreeMap<ObjectRef, Slice>,
    /// Legacy Endpoints by `namespace/name` (the Service's).
    endpoints: BTreeMap<ObjectRef, Endpoints>,
    /// Each Service's slices, sorted (a Vec: most Services have one
    /// slice, and a one-element set would cost a whole B-tree node).
    slices_by_service: BTreeMap<ObjectRef, Vec<ObjectRef>>,
}

impl ClusterState {
    /// Services by `namespace/name`, pruned ([`prune_service`]).
    pub fn services(&self) -> &BTreeMap<ObjectRef, PrunedService> {
        &self.services
    }

    /// EndpointSlices by their own `namespace/name`.
    pub fn endpoint_slices(&self) -> &BTreeMap<ObjectRef, Slice> {
        &self.endpoint_slices
    }

    /// Legacy Endpoints by `namespace/name` (the Service's).
    pub fn endpoints(&self) -> &BTreeMap<ObjectRef, Endpoints> {
        &self.endpoints
    }

    /// Replaces every Service (a completed relist).
    pub fn replace_services(&mut self, services: BTreeMap<ObjectRef, PrunedService>) {
        self.services = services;
    }

    /// The Service an EndpointSlice belongs to (its
    /// `kubernetes.io/service-name` label, in the slice's namespace).
    pub fn service_of_slice(slice: &EndpointSlice) -> Option<ObjectRef> {
        let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(ObjectRef::new(
            slice.metadata.namespace.as_deref().unwrap_or("default"),
            name.clone(),
        ))
    }

    /// Adds or replaces a Service (pruned: [`prune_service`]).
    pub fn insert_service(&mut self, service: Service) {
        self.insert_pruned_service(ObjectRef::of(&service.metadata), prune_service(service));
    }

    /// Adds or replaces the Service `service_ref`, already pruned.
    pub fn insert_pruned_service(&mut self, service_ref: ObjectRef, service: PrunedService) {
        self.services.insert(service_ref, service);
    }

    /// Removes a Service.
    pub fn remove_service(&mut self, service: &ObjectRef) -> Option<PrunedService> {
        self.services.remove(service)
    }

    /// Adds or replaces an EndpointSlice; returns the Services whose state
    /// it may change (the old one's and the new one's).
    pub fn insert_slice(&mut self, slice: &EndpointSlice) -> BTreeSet<ObjectRef> {
        self.insert_compact_slice(ObjectRef::of(&slice.metadata), Slice::from(slice))
    }

    /// Adds or replaces the slice `slice_ref`, already made compact.
    pub fn insert_compact_slice(
        &mut self,
        slice_ref: ObjectRef,
        slice: Slice,
    ) -> BTreeSet<ObjectRef> {
        let mut touched = self.remove_slice(&slice_ref);
        if let Some(service) = slice.service.clone() {
            let slices = self.slices_by_service.entry(service.clone()).or_default();
            if let Err(at) = slices.binary_search(&slice_ref) {
                slices.reserve_exact(1);
                slices.insert(at, slice_ref.clone());
            }
            touched.insert(service);
        }
        self.endpoint_slices.insert(slice_ref, slice);
        touched
    }

    /// Removes an EndpointSlice; returns the Service it belonged to.
    pub fn remove_slice(&mut self, slice_ref: &ObjectRef) -> BTreeSet<ObjectRef> {
        let mut touched = BTreeSet::new();
        if let Some(old) = self.endpoint_slices.remove(slice_ref) {
            if let Some(service) = old.service {
                if let Some(slices) = self.slices_by_service.get_mut(&service) {
                    if let Ok(at) = slices.binary_search(slice_ref) {
                        slices.remove(at);
                    }
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
            .insert(ObjectRef::of(&endpoints.metadata), endpoints);
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of(&self, service: &ObjectRef) -> impl Iterator<Item = (&ObjectRef, &Slice)> {
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

/// The Services whose desired state may differ between `old` and `new`.
pub fn changed_services(old: &ClusterState, new: &ClusterState) -> BTreeSet<ObjectRef> {
    let mut changed = BTreeSet::new();
    for (service, object) in &new.services {
        if old.services.get(service) != Some(object) {
            changed.insert(service.clone());
        }
    }
    for service in old.services.keys() {
        if !new.services.contains_key(service) {
            changed.insert(service.clone());
        }
    }
    for (name, slice) in &new.endpoint_slices {
        if old.endpoint_slices.get(name) != Some(slice) {
            changed.extend(slice.service.clone());
        }
    }
    for (name, slice) in &old.endpoint_slices {
        if new.endpoint_slices.get(name) != Some(slice) {
            changed.extend(slice.service.clone());
        }
    }
    for (name, endpoints) in &new.endpoints {
        if old.endpoints.get(name) != Some(endpoints) {
            changed.insert(name.clone());
        }
    }
    for name in old.endpoints.keys() {
        if !new.endpoints.contains_key(name) {
            changed.insert(name.clone());
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pruned_service_keeps_what_the_rules_read_and_nothing_else() {
        let full: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "1234", "resourceVersion": "9",
                "labels": {"app": "web", SERVICE_PROXY_NAME_LABEL: "other"},
                "annotations": {SCHEDULER_ANNOTATION: "wrr",
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u"}]},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "externalIPs": ["192.0.2.1"], "selector": {"app": "web"},
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                    "nodePort": 30080, "appProtocol": "http"}],
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                "externalTrafficPolicy": "Local",
                "internalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": false,
                "loadBalancerSourceRanges": ["192.0.2.0/24"],
                "ipFamilies": ["IPv4"], "healthCheckNodePort": 31000},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP",
                "hostname": "lb.example", "ports": [{"port": 80, "protocol": "TCP"}]}]},
                "conditions": []}
        }))
        .unwrap();
        let pruned = prune_service(full);
        assert_eq!(
            pruned,
            PrunedService {
                scheduler_annotation: Some("wrr".into()),
                other_proxy: true,
                spec: Some(PrunedServiceSpec {
                    type_: Some("LoadBalancer".into()),
                    cluster_ip: Some("10.96.0.10".into()),
                    cluster_ips: vec!["10.96.0.10".into()],
                    external_ips: vec!["192.0.2.1".into()],
                    ports: vec![PrunedServicePort {
                        name: Some("http".into()),
                        protocol: Some("TCP".into()),
                        port: 80,
                        node_port: Some(30080),
                    }],
                    has_selector: true,
                    session_affinity: Some("ClientIP".into()),
                    client_ip_timeout_seconds: Some(600),
                    internal_traffic_policy: Some("Cluster".into()),
                    external_traffic_policy: Some("Local".into()),
                    allocate_load_balancer_node_ports: Some(false),
                    load_balancer_source_ranges: vec!["192.0.2.0/24".into()],
                    health_check_node_port: Some(31000),
                }),
                load_balancer_ingress: vec![PrunedIngress {
                    ip: Some("203.0.113.7".into()),
                    ip_mode: Some("VIP".into()),
                }],
            }
        );
    }

    #[test]
    fn a_pruned_service_reads_missing_and_empty_fields_alike() {
        let bare: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "annotations": {"other": "x"}, "labels": {"app": "web"}},
            "spec": {"selector": {}, "clusterIPs": [], "ports": []},
            "status": {}
        }))
        .unwrap();
        assert_eq!(
            prune_service(bare),
            PrunedService {
                spec: Some(PrunedServiceSpec::default()),
                ..PrunedService::default()
            }
        );
        let no_spec: Service =
            serde_json::from_value(json!({"metadata": {"name": "web"}})).unwrap();
        assert_eq!(prune_service(no_spec), PrunedService::default());
    }

    #[test]
    fn a_slices_ports_are_found_by_name_and_protocol_with_their_positions() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "shop"},
            "addressType": "IPv4",
            "endpoints": [],
            "ports": [
                {"name": "b", "port": 1},
                {"name": "a", "protocol": "UDP", "port": 2},
                {"name": "a", "port": 3},
                {"port": 4},
                {"name": "a", "protocol": "TCP", "port": 5},
                {"name": "", "protocol": "SCTP", "port": 6}
            ]
        }))
        .unwrap();
        let compact = Slice::from(&slice);
        // name, protocol, (position, port) of each match
        type Case<'a> = (&'a str, &'a str, &'a [(u32, i32)]);
        let cases: &[Case] = &[
            ("a", "TCP", &[(2, 3), (4, 5)]),
            ("a", "UDP", &[(1, 2)]),
            ("b", "TCP", &[(0, 1)]),
            ("", "TCP", &[(3, 4)]),
            ("", "SCTP", &[(5, 6)]),
            ("b", "UDP", &[]),
            ("c", "TCP", &[]),
        ];
        for (name, protocol, expected) in cases {
            let found: Vec<(u32, i32)> = compact
                .ports_matching(name, protocol)
                .iter()
                .map(|port| (port.index, port.port.unwrap()))
                .collect();
            assert_eq!(found, *expected, "{name:?} {protocol}");
        }
    }

    #[test]
    fn a_slice_keeps_first_addresses_parsed_conditions_node_and_hints() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "shop",
                "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.244.0.5", "10.244.0.6"], "conditions": {"ready": false,
                    "serving": true, "terminating": true}, "nodeName": "node1",
                    "zone": "a", "targetRef": {"kind": "Pod", "name": "web-1"},
                    "hints": {"forZones": [{"name": "a"}], "forNodes": [{"name": "node1"}]}},
                {"addresses": ["not-an-ip"], "hints": {"forZones": []}},
                {"addresses": []}
            ]
        }))
        .unwrap();
        let compact = Slice::from(&slice);
        assert_eq!(
            compact,
            Slice {
                service: Some(ObjectRef::new("shop", "web")),
                address_type: "IPv4".into(),
                ports: vec![SlicePort {
                    index: 0,
                    name: Some("http".into()),
                    protocol: None,
                    port: Some(8080)
                }],
                endpoints: vec![
                    SliceEndpoint {
                        address: Some(EndpointAddress::Ip("10.244.0.5".parse().unwrap())),
                        ready: Some(false),
                        serving: Some(true),
                        terminating: Some(true),
                        node_name: Some("node1".into()),
                        hints: Some(Box::new(EndpointHints {
                            for_zones: vec!["a".into()].into(),
                            for_nodes: vec!["node1".into()].into(),
                        })),
                    },
                    SliceEndpoint {
                        address: Some(EndpointAddress::Invalid("not-an-ip".into())),
                        ready: None,
                        serving: None,
                        terminating: None,
                        node_name: None,
                        hints: None,
                    },
                    SliceEndpoint {
                        address: None,
                        ready: None,
                        serving: None,
                        terminating: None,
                        node_name: None,
                        hints: None,
                    },
                ],
            }
        );
    }
}
