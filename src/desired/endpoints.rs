//! Which endpoints become real servers of a Service port, by kube-proxy's
//! rules:
//!
//! - endpoints come from the Service's EndpointSlices of the virtual
//!   server's address family (FQDN slices are ignored), and, for a Service
//!   without a selector, from its legacy Endpoints object as the
//!   EndpointSlice mirroring controller would mirror it (`addresses` are
//!   ready, `notReadyAddresses` are not; skipped when labelled
//!   `endpointslice.kubernetes.io/skip-mirror: "true"`);
//! - a slice port matches a Service port by **name and protocol**; the
//!   port number is the slice's, so a named targetPort that differs per
//!   endpoint gives one real server per address and port;
//! - conditions: ready when `ready` is unset or true, serving when
//!   `serving` is unset or true, terminating only when set true; the same
//!   endpoint in two slices is merged, ready in either wins;
//! - cluster endpoints are the ready ones that topology leaves this node
//!   (see [`super::topology`]: all of them unless the hints say
//!   otherwise), or when none is ready the serving and terminating ones
//!   (topology not considered); local endpoints (`nodeName` is this node)
//!   are the local ready ones, or else the local serving and terminating
//!   ones (hints ignored).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Endpoints;

use super::topology::{available_for_topology, topology_mode};
use super::{port_number, FieldError};
use crate::model::cluster::{ClusterState, EndpointAddress, EndpointHints, PrunedService};
use crate::model::ObjectRef;

/// The label that stops the mirroring of a legacy Endpoints object.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// What is known of one endpoint address and port (its hints borrowed
/// from the slice it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointState<'a> {
    /// Ready to receive traffic.
    pub ready: bool,
    /// Serving (may be terminating).
    pub serving: bool,
    /// Terminating.
    pub terminating: bool,
    /// On this node.
    pub local: bool,
    /// Its topology hints (`None`: none; legacy Endpoints have none).
    pub hints: Option<&'a EndpointHints>,
}

impl<'a> EndpointState<'a> {
    /// Merges the same endpoint seen in another slice: a ready one wins
    /// as a whole (hints included).
    fn merge(&mut self, other: EndpointState<'a>) {
        if other.ready && !self.ready {
            *self = other;
        } else if !self.ready && !other.ready {
            self.serving |= other.serving;
            self.terminating &= other.terminating;
            self.local |= other.local;
        }
    }
}

/// The real servers a Service port can use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSets {
    /// For `Cluster` traffic policies.
    pub cluster: BTreeSet<SocketAddr>,
    /// For `Local` traffic policies.
    pub local: BTreeSet<SocketAddr>,
}

/// Chooses the cluster and local endpoints from every known endpoint, for
/// the node `node_name` in `zone` (kube-proxy's `CategorizeEndpoints`).
pub fn select(
    endpoints: &BTreeMap<SocketAddr, EndpointState<'_>>,
    node_name: &str,
    zone: Option<&str>,
) -> EndpointSets {
    let pick = |wanted: &dyn Fn(&EndpointState) -> bool| -> BTreeSet<SocketAddr> {
        endpoints
            .iter()
            .filter(|(_, state)| wanted(state))
            .map(|(address, _)| *address)
            .collect()
    };
    let hints = endpoints.values().map(|state| (state.ready, state.hints));
    let mode = topology_mode(hints, node_name, zone);
    let mut cluster =
        pick(&|state| state.ready && available_for_topology(state.hints, mode, node_name, zone));
    // No topology here: when a mode was chosen a ready endpoint matched
    // it, so an empty set means that no endpoint is ready anywhere.
    if cluster.is_empty() {
        cluster = pick(&|state| state.serving && state.terminating);
    }
    let mut local = pick(&|state| state.local && state.ready);
    if local.is_empty() {
        local = pick(&|state| state.local && state.serving && state.terminating);
    }
    EndpointSets { cluster, local }
}

/// A Service port, as endpoints are matched to it.
#[derive(Debug, Clone, Copy)]
pub struct PortMatch<'a> {
    /// The port's name (`""` when unnamed).
    pub name: &'a str,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: &'a str,
    /// IPv6 endpoints (else IPv4).
    pub ipv6: bool,
}

/// Endpoints being collected for one Service port, and the problems found.
struct Collector<'a, 'p> {
    endpoints: BTreeMap<SocketAddr, EndpointState<'a>>,
    problems: &'p mut Vec<FieldError>,
}

impl<'a> Collector<'a, '_> {
    /// Adds an endpoint (merged with the same address from another slice).
    fn add(&mut self, address: SocketAddr, state: EndpointState<'a>) {
        self.endpoints
            .entry(address)
            .and_modify(|existing| existing.merge(state))
            .or_insert(state);
    }

    /// Notes a problem, once per field.
    fn problem(&mut self, kind: &'static str, object: &ObjectRef, field: String, message: String) {
        let error = FieldError {
            kind,
            object: object.to_string(),
            field,
            message,
        };
        if !self.problems.contains(&error) {
            self.problems.push(error);
        }
    }
}

/// Every endpoint of `service_ref` for `port`, with its state. Problems in
/// slices and Endpoints are added to `problems`, once per field.
pub fn collect<'a>(
    service_ref: &ObjectRef,
    service: &PrunedService,
    port: PortMatch<'_>,
    cluster: &'a ClusterState,
    node_name: &str,
    problems: &mut Vec<FieldError>,
) -> BTreeMap<SocketAddr, EndpointState<'a>> {
    let mut collector = Collector {
        endpoints: BTreeMap::new(),
        problems,
    };
    collect_from_slices(service_ref, port, cluster, node_name, &mut collector);
    let has_selector = service.spec.as_ref().is_some_and(|spec| spec.has_selector);
    if let Some(legacy) = cluster
        .endpoints()
        .get(service_ref)
        .filter(|_| !has_selector)
    {
        collect_from_endpoints(service_ref, legacy, port, node_name, &mut collector);
    }
    collector.endpoints
}

/// The endpoints of the Service's EndpointSlices.
fn collect_from_slices<'a>(
    service_ref: &ObjectRef,
    port: PortMatch<'_>,
    cluster: &'a ClusterState,
    node_name: &str,
    collector: &mut Collector<'a, '_>,
) {
    let wanted_type = if port.ipv6 { "IPv6" } else { "IPv4" };
    for (slice_ref, slice) in cluster.slices_of(service_ref) {
        if slice.address_type != wanted_type {
            continue;
        }
        for slice_port in slice.ports_matching(port.name, port.protocol) {
            let port_index = slice_port.index;
            let Some(number) = slice_port.port.and_then(port_number) else {
                collector.problem(
                    "EndpointSlice",
                    slice_ref,
                    format!("ports[{port_index}].port"),
                    match slice_port.port {
                        Some(value) => format!("{value} is not a port number (1-65535)"),
                        None => "missing: a port number (1-65535) is required".to_owned(),
                    },
                );
                continue;
            };
            for (index, endpoint) in slice.endpoints.iter().enumerate() {
                // kube-proxy uses an endpoint's first address.
                let address = match &endpoint.address {
                    None => continue,
                    Some(EndpointAddress::Ip(address)) => *address,
                    Some(EndpointAddress::Invalid(text)) => {
                        collector.problem(
                            "EndpointSlice",
                            slice_ref,
                            format!("endpoints[{index}].addresses[0]"),
                            format!("{text:?} is not an IP address"),
                        );
                        continue;
                    }
                };
                if address.is_ipv6() != port.ipv6 {
                    collector.problem(
                        "EndpointSlice",
                        slice_ref,
                        format!("endpoints[{index}].addresses[0]"),
                        format!("{address} is not of the slice's addressType {wanted_type}"),
                    );
                    continue;
                }
                collector.add(
                    SocketAddr::new(address, number),
                    EndpointState {
                        ready: endpoint.ready.unwrap_or(true),
                        serving: endpoint.serving.unwrap_or(true),
                        terminating: endpoint.terminating.unwrap_or(false),
                        local: endpoint.node_name.as_deref() == Some(node_name),
                        hints: endpoint.hints.as_deref(),
                    },
                );
            }
        }
    }
}

/// The endpoints of a selector-less Service's legacy Endpoints object
/// (unless it asks not to be mirrored).
fn collect_from_endpoints(
    service_ref: &ObjectRef,
    legacy: &Endpoints,
    port: PortMatch<'_>,
    node_name: &str,
    collector: &mut Collector<'_, '_>,
) {
    let skip_mirror = legacy
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SKIP_MIRROR_LABEL))
        .is_some_and(|value| value == "true");
    if skip_mirror {
        return;
    }
    for (subset_index, subset) in legacy.subsets.iter().flatten().enumerate() {
        for (port_index, legacy_port) in subset.ports.iter().flatten().enumerate() {
            let name = legacy_port.name.as_deref().unwrap_or("");
            let protocol = legacy_port.protocol.as_deref().unwrap_or("TCP");
            if name != port.name || protocol != port.protocol {
                continue;
            }
            let Some(number) = port_number(legacy_port.port) else {
                collector.problem(
                    "Endpoints",
                    service_ref,
                    format!("subsets[{subset_index}].ports[{port_index}].port"),
                    format!("{} is not a port number (1-65535)", legacy_port.port),
                );
                continue;
            };
            let lists = [
                ("addresses", subset.addresses.as_ref(), true),
                (
                    "notReadyAddresses",
                    subset.not_ready_addresses.as_ref(),
                    false,
                ),
            ];
            for (field, list, ready) in lists {
                for (index, legacy_address) in list.into_iter().flatten().enumerate() {
                    let Ok(address) = legacy_address.ip.parse::<IpAddr>() else {
                        collector.problem(
                            "Endpoints",
                            service_ref,
                            format!("subsets[{subset_index}].{field}[{index}].ip"),
                            format!("{:?} is not an IP address", legacy_address.ip),
                        );
                        continue;
                    };
                    if address.is_ipv6() != port.ipv6 {
                        continue;
                    }
                    collector.add(
                        SocketAddr::new(address, number),
                        EndpointState {
                            ready,
                            serving: ready,
                            terminating: false,
                            local: legacy_address.node_name.as_deref() == Some(node_name),
                            hints: None,
                        },
                    );
                }
            }
        }
    }
}
