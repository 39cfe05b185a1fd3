//! Which virtual servers a Service gets, kube-proxy's IPVS way:
//!
//! - one per Service port on each ClusterIP (`spec.clusterIPs`, else
//!   `spec.clusterIP`), each `spec.externalIPs` entry, each
//!   `status.loadBalancer.ingress[].ip` whose `ipMode` is `VIP` or unset,
//!   and, for NodePort and LoadBalancer Services, each node address (see
//!   [`super::node_addresses`]) with the port's `nodePort`;
//! - only addresses of the agent's families (`--ip-family`);
//! - none for headless Services (`clusterIP: None`), ExternalName Services
//!   and Services labelled `service.kubernetes.io/service-proxy-name`
//!   (another proxy's);
//! - scheduler `--ipvs-scheduler`, or the Service's
//!   [`SCHEDULER_ANNOTATION`]; netmask /32 or /128; `sessionAffinity:
//!   ClientIP` makes every virtual server of the Service persistent for
//!   `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800);
//! - real servers masquerading with weight 1: the port's local endpoints
//!   for the ClusterIPs when `internalTrafficPolicy: Local`, and for the
//!   externalIPs, LoadBalancer IPs and NodePorts when
//!   `externalTrafficPolicy: Local`; the cluster endpoints otherwise
//!   (topology-aware: [`super::topology`]);
//! - a Local policy without local endpoints falls back to the cluster
//!   endpoints, as kube-proxy's IPVS proxier does (`syncEndpoint`, from
//!   kubernetes PR 97081, current through v1.35): see
//!   `fallback_to_cluster`;
//! - on `kube-ipvs0`: every ClusterIP, and the externalIPs and
//!   LoadBalancer IPs that no other interface of the node already holds.

use std::collections::BTreeSet;
use std::net::IpAddr;

use netlink_ipvs::{
    IpvsDestination, IpvsForwardingMethod, IpvsProtocol, IpvsService, IpvsServiceKey,
};

use super::endpoints::{collect, select, EndpointSets, PortMatch};
use super::health_check;
use super::netfilter::{self, hairpin, vip, ServiceSets};
use super::node_addresses::nodeport_addresses;
use super::{port_number, FieldError, ServiceDesired};
use crate::model::cluster::{ClusterState, PrunedService, PrunedServicePort, PrunedServiceSpec};
use crate::model::netfilter::NetfilterFamily;
use crate::model::object_ref::{ObjectRef, SCHEDULER_ANNOTATION};
use crate::model::TableEntry;
use crate::model::KUBE_IPVS_INTERFACE;
use crate::model::{NodeContext, ProxySettings};

/// kube-proxy's default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// Which endpoint set a virtual server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traffic {
    /// ClusterIPs: `internalTrafficPolicy`.
    Internal,
    /// externalIPs, LoadBalancer IPs, NodePorts: `externalTrafficPolicy`.
    External,
}

struct Problems<'a> {
    service: &'a ObjectRef,
    list: Vec<FieldError>,
}

impl Problems<'_> {
    fn add(&mut self, field: impl Into<String>, message: impl std::fmt::Display) {
        self.list
            .push(FieldError::service(self.service, field, message));
    }
}

fn parse_addresses(
    texts: impl IntoIterator<Item = (String, String)>,
    settings: &ProxySettings,
    problems: &mut Problems<'_>,
) -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    for (field, text) in texts {
        match text.parse::<IpAddr>() {
            Ok(address) if settings.ip_family.includes(&address) => {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
            Ok(_) => {}
            Err(_) => problems.add(field, format!("{text:?} is not an IP address")),
        }
    }
    addresses
}

fn is_valid_scheduler(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn scheduler(
    service: &PrunedService,
    settings: &ProxySettings,
    problems: &mut Problems<'_>,
) -> String {
    match &service.scheduler_annotation {
        Some(name) if is_valid_scheduler(name) => name.clone(),
        Some(name) => {
            problems.add(
                format!("metadata.annotations[{SCHEDULER_ANNOTATION}]"),
                format!(
                    "{name:?} is not a scheduler name; using {:?}",
                    settings.scheduler
                ),
            );
            settings.scheduler.clone()
        }
        None => settings.scheduler.clone(),
    }
}

/// The persistence timeout when `sessionAffinity: ClientIP`.
fn affinity_timeout(spec: &PrunedServiceSpec, problems: &mut Problems<'_>) -> Option<u32> {
    match spec.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            Some(match spec.client_ip_timeout_seconds {
                None => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
                Some(seconds @ 1..=86400) => seconds as u32,
                Some(seconds) => {
                    problems.add(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        format!("{seconds} is outside 1-86400; using {DEFAULT_AFFINITY_TIMEOUT_SECONDS}"),
                    );
                    DEFAULT_AFFINITY_TIMEOUT_SECONDS
                }
            })
        }
        Some(other) => {
            problems.add(
                "spec.sessionAffinity",
                format!("{other:?} is neither None nor ClientIP; no affinity"),
            );
            None
        }
    }
}

fn protocol(text: &str) -> Option<IpvsProtocol> {
    match text {
        "TCP" => Some(IpvsProtocol::Tcp),
        "UDP" => Some(IpvsProtocol::Udp),
        "SCTP" => Some(IpvsProtocol::Sctp),
        _ => None,
    }
}

/// The desired state of one Service.
pub fn service_desired(
    service_ref: &ObjectRef,
    service: &PrunedService,
    cluster: &ClusterState,
    node: &NodeContext,
    settings: &ProxySettings,
) -> ServiceDesired {
    let mut problems = Problems {
        service: service_ref,
        list: Vec::new(),
    };
    let mut desired = ServiceDesired::default();
    build(
        service_ref,
        service,
        cluster,
        node,
        settings,
        &mut desired,
        &mut problems,
    );
    desired.problems = problems.list;
    desired
}

/// Where a Service's virtual servers are: its addresses by kind.
struct ServiceAddresses {
    /// `spec.type` (`ClusterIP`, `NodePort`, `LoadBalancer`).
    service_type: String,
    cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs`.
    external_ips: Vec<IpAddr>,
    /// LoadBalancer ingress IPs (VIP mode).
    load_balancer_ips: Vec<IpAddr>,
    /// The node addresses NodePorts are made on (none for ClusterIP).
    node_addresses: BTreeSet<IpAddr>,
}

/// What every virtual server of a Service shares.
struct ServicePolicy {
    scheduler: String,
    affinity: Option<u32>,
    internal_local: bool,
    external_local: bool,
}

fn build(
    service_ref: &ObjectRef,
    service: &PrunedService,
    cluster: &ClusterState,
    node: &NodeContext,
    settings: &ProxySettings,
    desired: &mut ServiceDesired,
    problems: &mut Problems<'_>,
) {
    if service.other_proxy {
        return;
    }
    let Some(spec) = service.spec.as_ref() else {
        problems.add("spec", "missing");
        return;
    };
    let Some(addresses) = service_addresses(service, spec, node, settings, problems) else {
        return;
    };
    let policy = ServicePolicy {
        scheduler: scheduler(service, settings, problems),
        affinity: affinity_timeout(spec, problems),
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
    };
    let source_ranges = netfilter::source_ranges(
        service_ref,
        &spec.load_balancer_source_ranges,
        &mut problems.list,
    );
    let node_port_families: Vec<NetfilterFamily> = NetfilterFamily::ALL
        .into_iter()
        .filter(|family| {
            addresses
                .node_addresses
                .iter()
                .any(|address| NetfilterFamily::of(address) == *family)
        })
        .collect();
    let sets = ServiceSets {
        cluster_ips: &addresses.cluster_ips,
        external_ips: &addresses.external_ips,
        load_balancer_ips: &addresses.load_balancer_ips,
        node_port_families: &node_port_families,
        external_local: policy.external_local,
        source_ranges: &source_ranges,
    };
    desired.health_check =
        health_check::health_check(service_ref, service, spec, cluster, &node.name, settings);
    if addresses.service_type == "LoadBalancer" && policy.external_local {
        netfilter::health_check_port(
            service_ref,
            spec.health_check_node_port,
            &node_port_families,
            &mut desired.elements,
            &mut problems.list,
        );
    }
    for (index, port) in spec.ports.iter().enumerate() {
        let protocol_text = port.protocol.as_deref().unwrap_or("TCP");
        let Some(ipvs_protocol) = protocol(protocol_text) else {
            problems.add(
                format!("spec.ports[{index}].protocol"),
                format!("unsupported protocol {protocol_text:?} (TCP, UDP or SCTP)"),
            );
            continue;
        };
        let Some(service_port) = port_number(port.port) else {
            problems.add(
                format!("spec.ports[{index}].port"),
                format!("{} is not a port number (1-65535)", port.port),
            );
            continue;
        };
        let node_port = node_port(index, port, spec, &addresses, settings, problems);
        let mut virtual_servers: Vec<(IpvsServiceKey, Traffic)> = Vec::new();
        let key = |address: IpAddr, port: u16| IpvsServiceKey::Inet {
            protocol: ipvs_protocol,
            address,
            port,
        };
        virtual_servers.extend(
            addresses
                .cluster_ips
                .iter()
                .map(|ip| (key(*ip, service_port), Traffic::Internal)),
        );
        for ip in addresses
            .external_ips
            .iter()
            .chain(&addresses.load_balancer_ips)
        {
            // On an address another interface of the node holds, the
            // virtual server is not bound on kube-ipvs0 (and so not in the
            // VIP filter, which would close the node's other ports): the
            // agent can tell it is its own only by the NodePort range.
            if let Some(interface) = held_elsewhere(node, ip) {
                if !settings.node_port_range.contains(&service_port) {
                    problems.add(
                        format!("spec.ports[{index}].port"),
                        format!(
                            "{} is this node's own address (on {interface}); a virtual server \
                             on it at port {service_port}, outside the NodePort range {}-{} \
                             (--service-node-port-range), could not be told from another \
                             tool's, so it is not programmed on this node",
                            ip,
                            settings.node_port_range.start(),
                            settings.node_port_range.end()
                        ),
                    );
                    continue;
                }
            }
            virtual_servers.push((key(*ip, service_port), Traffic::External));
        }
        sets.add_port(
            ipvs_protocol,
            service_port,
            node_port,
            &mut desired.elements,
        );
        if let Some(node_port) = node_port {
            virtual_servers.extend(
                addresses
                    .node_addresses
                    .iter()
                    .map(|ip| (key(*ip, node_port), Traffic::External)),
            );
        }
        let port_match = PortMatch {
            name: port.name.as_deref().unwrap_or(""),
            protocol: protocol_text,
            ipv6: false,
        };
        // kube-proxy's `ExternallyAccessible()`, per family as each of its
        // proxiers sees the Service.
        let externally_accessible = [false, true].map(|ipv6| {
            node_port.is_some()
                || addresses
                    .external_ips
                    .iter()
                    .chain(&addresses.load_balancer_ips)
                    .any(|ip| ip.is_ipv6() == ipv6)
        });
        let context = PortContext {
            service_ref,
            service,
            cluster,
            node,
            port_match,
            policy: &policy,
            externally_accessible,
        };
        add_virtual_servers(&context, virtual_servers, desired, &mut problems.list);
    }
    desired.bound_addresses = bound_addresses(&addresses, node);
    desired
        .elements
        .extend(desired.bound_addresses.iter().map(|address| vip(*address)));
}

/// The addresses of a Service's virtual servers; `None` when it has none
/// (ExternalName, headless) or cannot be read (the problem is added).
fn service_addresses(
    service: &PrunedService,
    spec: &PrunedServiceSpec,
    node: &NodeContext,
    settings: &ProxySettings,
    problems: &mut Problems<'_>,
) -> Option<ServiceAddresses> {
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    let node_ports = match service_type {
        "ExternalName" => return None,
        "ClusterIP" => false,
        "NodePort" | "LoadBalancer" => true,
        other => {
            problems.add(
                "spec.type",
                format!(
                    "unknown type {other:?} (ClusterIP, NodePort, LoadBalancer or ExternalName)"
                ),
            );
            return None;
        }
    };
    let cluster_ip_texts: Vec<(String, String)> = match &spec.cluster_ips {
        ips if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip.clone()))
            .collect(),
        _ => spec
            .cluster_ip
            .iter()
            .filter(|ip| !ip.is_empty())
            .map(|ip| ("spec.clusterIP".to_owned(), ip.clone()))
            .collect(),
    };
    if cluster_ip_texts.is_empty() {
        problems.add(
            "spec.clusterIP",
            "not set (the API server assigns it; a manifest must give it)",
        );
        return None;
    }
    if cluster_ip_texts.iter().any(|(_, ip)| ip == "None") {
        // Headless: DNS only.
        return None;
    }
    let cluster_ips = parse_addresses(cluster_ip_texts, settings, problems);
    if cluster_ips.is_empty() {
        // No ClusterIP of the agent's families (a single-stack Service of
        // the other family): kube-proxy's proxier of a family skips such a
        // Service whole (`serviceToServiceMap`), NodePorts and externalIPs
        // included.
        return None;
    }
    let external_ips = parse_addresses(
        spec.external_ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spec.externalIPs[{i}]"), ip.clone())),
        settings,
        problems,
    );
    let load_balancer_ips = parse_addresses(
        service
            .load_balancer_ingress
            .iter()
            .enumerate()
            .filter(|(_, ingress)| matches!(ingress.ip_mode.as_deref(), None | Some("VIP")))
            .filter_map(|(i, ingress)| {
                ingress
                    .ip
                    .as_ref()
                    .map(|ip| (format!("status.loadBalancer.ingress[{i}].ip"), ip.clone()))
            }),
        settings,
        problems,
    );
    // A family gets the Service's ports only if the Service has a
    // ClusterIP of it (its `spec.ipFamilies`, which the API server keeps
    // equal to the families of `spec.clusterIPs`): kube-proxy runs one
    // proxier per family, each skipping Services without a ClusterIP of
    // its family and ignoring externalIPs and ingress IPs of the other
    // (`newBaseServiceInfo`). So a single-stack IPv4 NodePort Service gets
    // no virtual server on the node's IPv6 addresses.
    let service_family = |address: &IpAddr| {
        cluster_ips
            .iter()
            .any(|cluster_ip| cluster_ip.is_ipv6() == address.is_ipv6())
    };
    let of_service_families = |addresses: Vec<IpAddr>| -> Vec<IpAddr> {
        addresses.into_iter().filter(service_family).collect()
    };
    let node_addresses = if node_ports {
        nodeport_addresses(node, settings)
            .into_iter()
            .filter(service_family)
            .collect()
    } else {
        BTreeSet::new()
    };
    Some(ServiceAddresses {
        service_type: service_type.to_owned(),
        external_ips: of_service_families(external_ips),
        load_balancer_ips: of_service_families(load_balancer_ips),
        cluster_ips,
        node_addresses,
    })
}

/// The NodePort of the Service port `index`, if it has one here.
fn node_port(
    index: usize,
    port: &PrunedServicePort,
    spec: &PrunedServiceSpec,
    addresses: &ServiceAddresses,
    settings: &ProxySettings,
    problems: &mut Problems<'_>,
) -> Option<u16> {
    if addresses.service_type == "ClusterIP" {
        return None;
    }
    let allocates_node_ports = spec.allocate_load_balancer_node_ports != Some(false);
    match port.node_port {
        Some(value) => {
            let Some(number) = port_number(value) else {
                problems.add(
                    format!("spec.ports[{index}].nodePort"),
                    format!("{value} is not a port number (1-65535)"),
                );
                return None;
            };
            if !settings.node_port_range.contains(&number) {
                // The agent owns node-address virtual servers by this
                // range: one outside it could never be deleted again.
                problems.add(
                    format!("spec.ports[{index}].nodePort"),
                    format!(
                        "{number} is outside the NodePort range {}-{} \
                         (--service-node-port-range, which must match the API server's); \
                         not programmed",
                        settings.node_port_range.start(),
                        settings.node_port_range.end()
                    ),
                );
                return None;
            }
            Some(number)
        }
        None if addresses.service_type == "LoadBalancer" && !allocates_node_ports => None,
        None => {
            problems.add(
                format!("spec.ports[{index}].nodePort"),
                "not set (the API server assigns it; a manifest must give it)",
            );
            None
        }
    }
}

/// What the virtual servers of one Service port are made from.
struct PortContext<'a> {
    service_ref: &'a ObjectRef,
    service: &'a PrunedService,
    cluster: &'a ClusterState,
    node: &'a NodeContext,
    port_match: PortMatch<'a>,
    policy: &'a ServicePolicy,
    /// Whether the port has a NodePort, externalIPs or LoadBalancer IPs,
    /// per family (`[IPv4, IPv6]`).
    externally_accessible: [bool; 2],
}

/// Whether a Local-policy virtual server with no local endpoint gets the
/// cluster endpoints, by kube-proxy's IPVS proxier (v1.35
/// `pkg/proxy/ipvs/proxier.go`, `syncEndpoint`): every virtual server
/// synced with `onlyNodeLocalEndpoints` (the ClusterIPs under
/// `internalTrafficPolicy: Local`; the externalIPs, LoadBalancer IPs and
/// NodePorts under `externalTrafficPolicy: Local`) takes
/// `clusterEndpoints` when `localEndpoints` is empty ("Allow access from
/// local PODs even if no local endpoints exist", kubernetes PR 97081).
/// External clients still get no answer: their traffic is not
/// masqueraded under a Local policy, so the remote pod answers from its
/// own address straight to the client, which drops the reply.
///
/// `clusterEndpoints` is empty when the port never uses Cluster policy
/// (`CategorizeEndpoints` computes it only when `UsesClusterEndpoints()`:
/// `internalTrafficPolicy` is not Local, or the port is externally
/// accessible). So a ClusterIP-only Service with `internalTrafficPolicy:
/// Local` keeps an empty virtual server, while the ClusterIP of a NodePort,
/// externalIP or LoadBalancer Service with `internalTrafficPolicy: Local`
/// falls back too: upstream behaves so, and so does the agent.
fn fallback_to_cluster(policy: &ServicePolicy, externally_accessible: bool) -> bool {
    !policy.internal_local || externally_accessible
}

/// Adds the virtual servers of one Service port, each with the real
/// servers its traffic policy picks (endpoints collected once per family).
fn add_virtual_servers(
    context: &PortContext<'_>,
    virtual_servers: Vec<(IpvsServiceKey, Traffic)>,
    desired: &mut ServiceDesired,
    problems: &mut Vec<FieldError>,
) {
    let mut sets: [Option<EndpointSets>; 2] = [None, None];
    for (key, traffic) in virtual_servers {
        if desired.table.contains_key(&key) {
            continue;
        }
        let IpvsServiceKey::Inet { address, .. } = key else {
            continue;
        };
        let sets = sets[usize::from(address.is_ipv6())].get_or_insert_with(|| {
            let port_match = PortMatch {
                ipv6: address.is_ipv6(),
                ..context.port_match
            };
            let endpoints = collect(
                context.service_ref,
                context.service,
                port_match,
                context.cluster,
                &context.node.name,
                problems,
            );
            let sets = select(&endpoints, &context.node.name, context.node.zone.as_deref());
            desired
                .elements
                .extend(sets.local.iter().map(|endpoint| hairpin(endpoint.ip())));
            sets
        });
        let policy = context.policy;
        let local = match traffic {
            Traffic::Internal => policy.internal_local,
            Traffic::External => policy.external_local,
        };
        let no_endpoints = BTreeSet::new();
        let chosen = if !local {
            &sets.cluster
        } else if !sets.local.is_empty() {
            &sets.local
        } else {
            // `sets.cluster` is non-empty exactly when kube-proxy's
            // `hasAnyEndpoints` is (a ready or serving-terminating
            // endpoint anywhere; topology never empties it).
            if !sets.cluster.is_empty() {
                match traffic {
                    Traffic::Internal => desired.no_local_endpoints.internal = true,
                    Traffic::External => desired.no_local_endpoints.external = true,
                }
            }
            let accessible = context.externally_accessible[usize::from(address.is_ipv6())];
            if fallback_to_cluster(policy, accessible) {
                &sets.cluster
            } else {
                &no_endpoints
            }
        };
        let mut ipvs_service = IpvsService::new(key, policy.scheduler.clone());
        if let Some(timeout) = policy.affinity {
            ipvs_service = ipvs_service.persistent(timeout);
        }
        let real_servers = chosen
            .iter()
            .map(|endpoint| {
                let real = IpvsDestination::new(
                    endpoint.ip(),
                    endpoint.port(),
                    IpvsForwardingMethod::Masquerade,
                    1,
                );
                (real.key, real)
            })
            .collect();
        desired.table.insert(
            key,
            TableEntry {
                service: ipvs_service,
                real_servers,
            },
        );
    }
}

/// The addresses a Service needs on `kube-ipvs0`: its ClusterIPs, and its
/// external and LoadBalancer IPs unless another interface holds them.
fn bound_addresses(addresses: &ServiceAddresses, node: &NodeContext) -> BTreeSet<IpAddr> {
    addresses
        .cluster_ips
        .iter()
        .chain(
            addresses
                .external_ips
                .iter()
                .chain(&addresses.load_balancer_ips)
                .filter(|address| held_elsewhere(node, address).is_none()),
        )
        .copied()
        .collect()
}

/// The interface other than `kube-ipvs0` that holds `address` on the
/// node, if one does.
fn held_elsewhere<'n>(node: &'n NodeContext, address: &IpAddr) -> Option<&'n str> {
    node.local_addresses
        .iter()
        .find(|local| local.address == *address && local.interface != KUBE_IPVS_INTERFACE)
        .map(|local| local.interface.as_str())
}
